//! RADIUS replies and requests from the network: the parser, the authenticator checks, the
//! Microsoft attribute lookup, MPPE key decryption and the verdict on arbitrary bytes never
//! panic, and whatever parses has attributes that lie inside the packet.
#![no_main]
use libfuzzer_sys::fuzz_target;
use pptp_user::{
    auth::authenticator::Credentials,
    radius::{access, client::Reply, dict::ms, packet::{self, Packet}},
};

fuzz_target!(|data: &[u8]| {
    let Ok(p) = Packet::parse(data) else { return };
    let inside: usize = p.attributes.iter().map(|(_, v)| v.len() + 2).sum();
    assert_eq!(inside + packet::HEADER_LEN, p.bytes.len());
    let ra = [1u8; 16];
    let _ = p.response_authentic(&ra, b"s");
    let _ = p.request_authentic(b"s");
    let _ = p.message_authentic(Some(&ra), b"s");
    for t in [ms::MPPE_SEND_KEY, ms::MPPE_RECV_KEY, ms::CHAP2_SUCCESS] {
        if let Some(v) = p.microsoft(t) {
            let _ = packet::decrypt_mppe_key(v, b"s", &ra);
        }
    }
    let reply = Reply {
        bytes: p.bytes.to_vec(),
        request_authenticator: ra,
        secret: b"s".to_vec(),
        server: "127.0.0.1:1812".parse().unwrap(),
    };
    let creds = Credentials::MsChapV2 {
        user: "u".into(),
        name: b"u".to_vec(),
        identifier: 1,
        challenge: [0; 16],
        response: [0; 49],
    };
    let _ = access::verdict(&reply, &creds);
});
