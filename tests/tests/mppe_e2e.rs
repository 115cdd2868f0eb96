//! MPPE end to end: the real `pptpgw` with each `[ppp] mppe` policy, the project's client with
//! and without MPPE-128. Encrypted traffic takes the XDP path both ways (the slow path sees no
//! data), and what a policy cannot agree to is refused with a reason.

use std::time::Duration;

use pptp_client::{DialError, dial, gre::GreMux, peer::PeerDown};
use pptp_tests::{
    gateway::{Rig, SECRETS, SERVER, config_mppe, dial_config, num, rt},
    require_root,
};
use pptp_user::wire::lcp::AuthProtocol;

/// Dials as alice with MPPE required or not (and only `methods`); pings 5 times when up.
/// Ok(encrypted) with the ping count, or the dial's error.
fn session(
    rig: &Rig,
    call_id: u16,
    mppe: bool,
    methods: &[AuthProtocol],
) -> Result<(bool, u32), DialError> {
    rig.client.enter(|| {
        rt().block_on(async {
            let mux = GreMux::open().unwrap();
            let mut cfg = dial_config(rig, "alice", "s3cret", call_id);
            cfg.peer.mppe = mppe;
            cfg.peer.methods = methods.to_vec();
            let mut s = dial(cfg, &mux).await?;
            let encrypted = s.info.network.mppe.is_some();
            let r = s.ping(SERVER, 5, Duration::from_secs(2)).await;
            s.hangup().await;
            Ok((encrypted, r.received))
        })
    })
}

const MSCHAPV2: &[AuthProtocol] = &[AuthProtocol::MsChapV2];

#[test]
fn require_encrypts_in_xdp_and_refuses_what_cannot_be_encrypted() {
    require_root();
    let rig = Rig::start("mppereq", &config_mppe("require", ""), SECRETS);
    let before = rig.stats();
    assert_eq!(session(&rig, 0x100, true, MSCHAPV2).unwrap(), (true, 5));
    rig.assert_clean();
    let after = rig.stats();
    let d = |path: &[&str]| num(&after, path) - num(&before, path);
    // Five echo requests decrypted and five replies encrypted by XDP; none to the slow path.
    assert!(d(&["datapath", "xdp_decap"]) >= 5, "{after}");
    assert!(d(&["datapath", "encapsulated"]) >= 5, "{after}");
    assert_eq!(num(&after, &["controller", "slowpath_data_frames"]), 0);
    for reason in [
        "mppe_bad_decrypt",
        "mppe_plaintext",
        "mppe_busy",
        "mppe_no_state",
    ] {
        assert_eq!(d(&["drops", reason]), 0, "{reason}: {after}");
    }
    assert!(rig.log().contains("encryption=mppe-128"), "{}", rig.log());

    // A client that will not encrypt, and one that authenticates with PAP (no keys): refused,
    // told why, nothing left behind.
    for (call_id, methods) in [(0x101, MSCHAPV2), (0x102, &[AuthProtocol::Pap][..])] {
        match session(&rig, call_id, false, methods) {
            Err(DialError::Link(PeerDown::ServerTerminated(m))) => {
                assert!(m.contains("MPPE-128 is required"), "{m}")
            }
            other => panic!("{methods:?} without MPPE: {other:?}\n{}", rig.log()),
        }
        rig.assert_clean();
    }
    let s = rig.stats();
    assert_eq!(num(&s, &["controller", "ended", "mppe_refused"]), 2, "{s}");
}

#[test]
fn prefer_and_allow_agree_with_either_client_and_deny_refuses_one_that_requires_it() {
    require_root();
    let rig = Rig::start("mppepref", &config_mppe("prefer", ""), SECRETS);
    assert_eq!(session(&rig, 0x200, true, MSCHAPV2).unwrap(), (true, 5));
    assert_eq!(session(&rig, 0x201, false, MSCHAPV2).unwrap(), (false, 5));
    rig.assert_clean();
    drop(rig);
    let rig = Rig::start("mppeallow", &config_mppe("allow", ""), SECRETS);
    assert_eq!(session(&rig, 0x300, true, MSCHAPV2).unwrap(), (true, 5));
    assert_eq!(session(&rig, 0x301, false, MSCHAPV2).unwrap(), (false, 5));
    rig.assert_clean();
    drop(rig);
    let rig = Rig::start("mppedeny", &config_mppe("deny", ""), SECRETS);
    match session(&rig, 0x400, true, MSCHAPV2) {
        Err(DialError::Link(PeerDown::MppeRefused)) => {}
        other => panic!("deny against require-mppe: {other:?}\n{}", rig.log()),
    }
    assert_eq!(session(&rig, 0x401, false, MSCHAPV2).unwrap(), (false, 5));
    rig.assert_clean();
}
