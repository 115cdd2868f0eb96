//! Codec round trips and protocol conversations on sessions of the real Debian client
//! (pptp-linux 1.10 + pppd 2.4.9) against the reference server pptpd, captured in the VM by
//! `cargo xtask capture`. Every byte the client or pptpd sent must parse, and re-emit identically.

use std::{collections::BTreeMap, net::Ipv4Addr};

use pptp_user::{
    auth::authenticator::{AuthConfig, AuthOutput, Authenticator, Secret},
    control::connection::{self, Admission, Connection, ControlConfig},
    ppp::{
        fsm::{Config, Fsm, Output},
        ipcp::{IpcpConfig, IpcpPolicy},
        lcp::{Lcp, LcpConfig},
    },
    wire::{
        cp::{CpPacket, code, emit_options, parse_options},
        gre::GreHeader,
        ipcp::IpcpOption,
        lcp::{AuthProtocol, LcpOption},
        ppp::{PppFrame, proto},
        pptp::{ControlMessage, ControlType, Framer},
    },
};

const CLIENT: Ipv4Addr = Ipv4Addr::new(192, 0, 2, 2);

/// One PPP frame of the capture: who sent it, protocol, information field.
struct Frame {
    from_client: bool,
    protocol: u16,
    info: Vec<u8>,
}

struct Session {
    control_from_client: Vec<ControlMessage>,
    control_from_server: Vec<ControlMessage>,
    frames: Vec<Frame>,
}

/// Reads a pcap (Ethernet link type) and checks every PPTP byte on the way.
fn load(name: &str) -> Session {
    let path = format!(
        "{}/tests/captures/pptp-linux-{name}.pcap",
        env!("CARGO_MANIFEST_DIR")
    );
    let pcap =
        std::fs::read(&path).unwrap_or_else(|e| panic!("{path}: {e} (run `cargo xtask capture`)"));
    assert_eq!(
        &pcap[..4],
        &[0xd4, 0xc3, 0xb2, 0xa1],
        "little-endian microsecond pcap"
    );
    assert_eq!(
        u32::from_le_bytes(pcap[20..24].try_into().unwrap()),
        1,
        "Ethernet link type"
    );
    let mut streams: [Vec<u8>; 2] = [Vec::new(), Vec::new()];
    let mut frames = Vec::new();
    let mut at = 24;
    while at + 16 <= pcap.len() {
        let caplen = u32::from_le_bytes(pcap[at + 8..at + 12].try_into().unwrap()) as usize;
        let pkt = &pcap[at + 16..at + 16 + caplen];
        at += 16 + caplen;
        if pkt.len() < 34 || pkt[12..14] != [0x08, 0x00] {
            continue;
        }
        let ip = &pkt[14..];
        let ihl = usize::from(ip[0] & 0x0f) * 4;
        let total = usize::from(u16::from_be_bytes([ip[2], ip[3]]));
        let from_client = Ipv4Addr::new(ip[12], ip[13], ip[14], ip[15]) == CLIENT;
        let body = &ip[ihl..total];
        match ip[9] {
            6 => {
                let data_off = usize::from(body[12] >> 4) * 4;
                streams[usize::from(from_client)].extend_from_slice(&body[data_off..]);
            }
            47 => {
                let (h, payload) =
                    GreHeader::parse(body).unwrap_or_else(|e| panic!("GRE {body:02x?}: {e}"));
                let mut again = Vec::new();
                h.emit(payload, &mut again);
                assert_eq!(again, body, "GRE round trip");
                if payload.is_empty() {
                    continue;
                }
                let (f, form) =
                    PppFrame::parse(payload).unwrap_or_else(|e| panic!("PPP {payload:02x?}: {e}"));
                let mut again = Vec::new();
                f.emit(form, &mut again);
                assert_eq!(again, payload, "PPP round trip");
                frames.push(Frame {
                    from_client,
                    protocol: f.protocol,
                    info: f.info.to_vec(),
                });
            }
            _ => {}
        }
    }
    let mut control = [Vec::new(), Vec::new()];
    for (dir, stream) in streams.iter().enumerate() {
        let mut framer = Framer::new();
        framer.push(stream);
        while let Some(m) = framer.next_message() {
            let m = m.unwrap_or_else(|e| panic!("control message: {e}"));
            control[dir].push(m);
        }
        assert_eq!(framer.buffered(), 0, "stream ends on a message boundary");
        let mut again = Vec::new();
        for m in &control[dir] {
            m.emit(&mut again);
        }
        assert_eq!(&again, stream, "control stream round trip");
    }
    let [from_server, from_client] = control;
    Session {
        control_from_client: from_client,
        control_from_server: from_server,
        frames,
    }
}

fn check_cp_round_trips(s: &Session) -> BTreeMap<(u16, u8), usize> {
    let mut seen = BTreeMap::new();
    for f in &s.frames {
        if !matches!(
            f.protocol,
            proto::LCP | proto::IPCP | proto::CCP | proto::IPV6CP
        ) {
            continue;
        }
        let p = CpPacket::parse(&f.info)
            .unwrap_or_else(|e| panic!("{:#06x} {:02x?}: {e}", f.protocol, f.info));
        assert_eq!(p.to_bytes(), &f.info[..4 + p.data.len()]);
        *seen.entry((f.protocol, p.code)).or_default() += 1;
        if (code::CONFIGURE_REQUEST..=code::CONFIGURE_REJECT).contains(&p.code) {
            let raws = parse_options(p.data).unwrap();
            assert_eq!(emit_options(&raws), p.data);
            let mut typed = Vec::new();
            for r in &raws {
                match f.protocol {
                    proto::LCP => LcpOption::decode(r).emit(&mut typed),
                    proto::IPCP => IpcpOption::decode(r).emit(&mut typed),
                    _ => r.emit(&mut typed),
                }
            }
            assert_eq!(typed, p.data);
        }
    }
    seen
}

fn first(s: &Session, from_client: bool, protocol: u16, code: u8) -> Vec<u8> {
    s.frames
        .iter()
        .find(|f| {
            f.from_client == from_client && f.protocol == protocol && f.info.first() == Some(&code)
        })
        .map(|f| f.info.clone())
        .unwrap_or_else(|| panic!("no {protocol:#06x} code {code} from client={from_client}"))
}

#[test]
fn every_captured_byte_round_trips() {
    for name in ["mschapv2", "chapmd5", "pap"] {
        let s = load(name);
        let types = |v: &[ControlMessage]| {
            v.iter()
                .map(ControlMessage::control_type)
                .collect::<Vec<_>>()
        };
        let c = types(&s.control_from_client);
        let sv = types(&s.control_from_server);
        for t in [
            ControlType::StartControlConnectionRequest,
            ControlType::OutgoingCallRequest,
        ] {
            assert!(c.contains(&t), "{name}: client sent {c:?}");
        }
        for t in [
            ControlType::StartControlConnectionReply,
            ControlType::OutgoingCallReply,
        ] {
            assert!(sv.contains(&t), "{name}: server sent {sv:?}");
        }
        let seen = check_cp_round_trips(&s);
        assert!(
            seen.contains_key(&(proto::LCP, code::CONFIGURE_REQUEST)),
            "{name}: {seen:?}"
        );
        assert!(
            seen.contains_key(&(proto::IPCP, code::CONFIGURE_ACK)),
            "{name}: {seen:?}"
        );
    }
}

#[test]
fn the_real_clients_control_messages_drive_our_pac() {
    let s = load("mschapv2");
    let (mut conn, _) = Connection::new(ControlConfig::default(), Admission::Accept);
    let mut established_call = false;
    for m in &s.control_from_client {
        for o in conn.receive(*m) {
            if let connection::Output::CallRequested { peer_call_id, .. } = o {
                let out = conn.accept_call(peer_call_id, 0x4000);
                assert!(matches!(
                    out[..],
                    [connection::Output::Send(ControlMessage::OutgoingCallReply(
                        _
                    ))]
                ));
                established_call = true;
            }
        }
    }
    assert!(established_call);
    assert_eq!(conn.state(), connection::State::Established);
}

#[test]
fn our_lcp_and_ipcp_accept_the_real_clients_requests() {
    let s = load("mschapv2");
    let mut lcp = Lcp::new(LcpConfig::default(), 0x0bad_cafe, Config::default());
    lcp.fsm.open();
    lcp.fsm.up();
    let out = lcp.receive(&first(&s, true, proto::LCP, code::CONFIGURE_REQUEST));
    assert!(
        out.iter().any(|o| matches!(
            o,
            Output::Send {
                code: code::CONFIGURE_ACK,
                ..
            }
        )),
        "client's LCP request acked: {out:?}"
    );

    // pppd's IPCP requests, in order: VJ rejected, then the address nak'd, then acked.
    let config = IpcpConfig {
        local: Ipv4Addr::new(10, 99, 0, 1),
        assigned: Ipv4Addr::new(10, 99, 0, 10),
        dns: [Some(Ipv4Addr::new(10, 99, 0, 53)), None],
        nbns: [None, None],
    };
    let mut ipcp = Fsm::new(IpcpPolicy::new(config), Config::default());
    ipcp.open();
    ipcp.up();
    // The client's first request as captured; then what pppd does with our answers: drop what
    // we reject, take what we nak, until we ack.
    let first_request = first(&s, true, proto::IPCP, code::CONFIGURE_REQUEST);
    let mut options = CpPacket::parse(&first_request).unwrap().data.to_vec();
    let mut answers = Vec::new();
    for id in 1..=5u8 {
        let out = ipcp.receive(&CpPacket {
            code: code::CONFIGURE_REQUEST,
            identifier: id,
            data: &options,
        });
        let (c, data) = out
            .into_iter()
            .find_map(|o| match o {
                Output::Send { code, data, .. } if code != code::CONFIGURE_REQUEST => {
                    Some((code, data))
                }
                _ => None,
            })
            .expect("an answer");
        answers.push(c);
        let ours = parse_options(&data).unwrap();
        let theirs = parse_options(&options).unwrap();
        options = match c {
            code::CONFIGURE_REJECT => emit_options(
                theirs
                    .iter()
                    .filter(|o| !ours.iter().any(|r| r.kind == o.kind)),
            ),
            code::CONFIGURE_NAK => {
                let mut next: Vec<_> = theirs
                    .iter()
                    .filter(|o| !ours.iter().any(|n| n.kind == o.kind))
                    .collect();
                next.extend(ours.iter());
                emit_options(next)
            }
            _ => break,
        };
    }
    // VJ compression rejected, the address nak'd to the pool's, then acked.
    assert_eq!(
        answers,
        vec![
            code::CONFIGURE_REJECT,
            code::CONFIGURE_NAK,
            code::CONFIGURE_ACK
        ]
    );
    let acked: Vec<IpcpOption> = parse_options(&options)
        .unwrap()
        .iter()
        .map(IpcpOption::decode)
        .collect();
    assert!(acked.contains(&IpcpOption::Address {
        kind: 3,
        addr: Ipv4Addr::new(10, 99, 0, 10)
    }));
}

/// The client's real credentials against pptpd's real challenge: our authenticator must accept
/// them and, for MS-CHAPv2, compute the very authenticator response pptpd sent.
#[test]
fn our_authenticator_accepts_the_real_clients_responses() {
    let secret = |user: &str| (user == "user").then(|| Secret::Plain("clientPass".into()));
    for (name, method) in [
        ("mschapv2", AuthProtocol::MsChapV2),
        ("chapmd5", AuthProtocol::ChapMd5),
    ] {
        let s = load(name);
        let challenge = first(&s, false, proto::CHAP, 1);
        let response = first(&s, true, proto::CHAP, 2);
        let server_success = first(&s, false, proto::CHAP, 3);
        let value = &challenge[5..5 + usize::from(challenge[4])];
        let mut a = Authenticator::new(method, AuthConfig::default());
        // Our challenge is pptpd's, with its identifier (CHAP-MD5's hash covers it).
        a.start(value, challenge[1]);
        let out = a.receive(&response, secret, [0; 16]);
        if method == AuthProtocol::ChapMd5 {
            assert!(
                out.iter().any(|o| matches!(o, AuthOutput::Success { .. })),
                "{name}: {out:?}"
            );
            continue;
        }
        let sent = out.iter().find_map(|o| match o {
            AuthOutput::Send { info, .. } => Some(info.clone()),
            _ => None,
        });
        let sent = sent.expect("a reply");
        assert_eq!(sent[0], 3, "{name}: success");
        assert_eq!(
            &sent[4..46],
            &server_success[4..46],
            "{name}: same S= as pptpd"
        );
    }
    let s = load("pap");
    let request = first(&s, true, proto::PAP, 1);
    let mut a = Authenticator::new(AuthProtocol::Pap, AuthConfig::default());
    a.start(&[0; 16], 0);
    let out = a.receive(&request, secret, [0; 16]);
    assert!(
        out.iter().any(|o| matches!(o, AuthOutput::Success { .. })),
        "pap: {out:?}"
    );
}
