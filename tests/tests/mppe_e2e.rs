//! MPPE end to end: the real `pptpgw` with each `[ppp] mppe` policy, the project's client with
//! and without MPPE-128. Encrypted traffic takes the XDP path both ways (the slow path sees no
//! data), and what a policy cannot agree to is refused with a reason.

use std::time::Duration;

use pptp_client::{DialError, dial, gre::GreMux, peer::PeerDown};
use pptp_tests::{
    gateway::{Rig, SECRETS, SERVER, config_mppe, dial_config, num, rt},
    require_root,
    transfer::{Moved, TRANSFER, tcp_both_ways},
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

/// Stateful MPPE (`mppe_stateful = "force"`, the client allowing it as pppd's `mppe-stateful`):
/// pings through XDP, then one packet lost each way (an nftables rule in the client's namespace
/// drops one large GRE packet). Client → gateway: the data path hands the packet after the gap
/// up, the controller sends a CCP Reset-Request, the client's next packet is flushed and the
/// session carries on. Gateway → client: the client asks, the controller tells the data path,
/// whose next packet is flushed. Without the reset, 255 packets would be lost each time.
#[test]
fn stateful_sessions_recover_from_loss_both_ways_with_ccp_resets() {
    require_root();
    let rig = Rig::start(
        "mppesf",
        &config_mppe("require", "mppe_stateful = \"force\""),
        SECRETS,
    );
    let before = rig.stats();
    let nft = |script: &str| {
        let out = rig
            .client
            .command("nft")
            .args(["-f", "-"])
            .stdin(std::process::Stdio::piped())
            .spawn()
            .and_then(|mut c| {
                use std::io::Write as _;
                c.stdin.take().unwrap().write_all(script.as_bytes())?;
                c.wait_with_output()
            });
        assert!(out.is_ok_and(|o| o.status.success()), "nft {script}");
    };
    let drop_big_gre = |hook: &str| {
        nft(&format!(
            "table ip lossy {{ chain c {{ type filter hook {hook} priority 0; \
             ip protocol gre meta length > 1000 drop; }}; }}"
        ))
    };
    let (stateful, pings) = rig.client.enter(|| {
        rt().block_on(async {
            let mux = GreMux::open().unwrap();
            let mut cfg = dial_config(&rig, "alice", "s3cret", 0x500);
            cfg.peer.mppe = true;
            cfg.peer.mppe_stateful = true;
            cfg.peer.methods = MSCHAPV2.to_vec();
            let mut s = dial(cfg, &mux).await.expect("dial");
            let stateful = s.info.network.mppe.is_some() && s.info.network.mppe_stateful;
            let mut pings = vec![s.ping(SERVER, 5, Duration::from_secs(2)).await.received];
            for hook in ["output", "input"] {
                drop_big_gre(hook);
                let big = pptp_client::packet::echo_request(
                    s.info.network.address,
                    SERVER,
                    0x77,
                    1,
                    1100,
                );
                s.send_ip(big);
                tokio::time::sleep(Duration::from_millis(300)).await;
                nft("delete table ip lossy");
                pings.push(s.ping(SERVER, 5, Duration::from_secs(2)).await.received);
            }
            s.hangup().await;
            (stateful, pings)
        })
    });
    let after = rig.stats();
    let d = |path: &[&str]| num(&after, path) - num(&before, path);
    assert!(stateful, "stateful MPPE agreed\n{}", rig.log());
    // All 5; then each loss costs the one packet that showed it, no more.
    assert_eq!(pings[0], 5, "{}", rig.log());
    // Exactly 4: the loss happened (the rule dropped the large packet) and cost one more.
    assert_eq!(pings[1], 4, "client → gateway loss: {pings:?}\n{after}");
    assert_eq!(pings[2], 4, "gateway → client loss: {pings:?}\n{after}");
    assert!(d(&["drops", "mppe_loss"]) >= 1, "{after}");
    assert!(
        num(&after, &["controller", "slowpath_mppe_frames"]) >= 1,
        "{after}"
    );
    assert_eq!(num(&after, &["controller", "slowpath_data_frames"]), 0);
    assert_eq!(d(&["drops", "mppe_bad_decrypt"]), 0, "{after}");
    assert!(
        rig.log().contains("encryption=mppe-128-stateful"),
        "{}",
        rig.log()
    );
    rig.assert_clean();
}

/// TCP both ways through stateless and stateful sessions: every byte arrives, every data packet
/// is decrypted and encrypted by XDP (the slow path sees none), and no MPPE packet is dropped.
#[test]
fn tcp_transfers_both_ways_stateless_and_stateful() {
    require_root();
    for (stateful, config) in [(false, ""), (true, "mppe_stateful = \"force\"")] {
        let rig = Rig::start("mppetcp", &config_mppe("require", config), SECRETS);
        let before = rig.stats();
        let mut cfg = dial_config(&rig, "alice", "s3cret", 0x600);
        cfg.peer.mppe = true;
        cfg.peer.mppe_stateful = stateful;
        cfg.peer.methods = MSCHAPV2.to_vec();
        let moved = tcp_both_ways(&rig, cfg, 5001);
        let after = rig.stats();
        let d = |path: &[&str]| num(&after, path) - num(&before, path);
        assert_eq!(
            moved,
            Moved {
                pings: 3,
                up: TRANSFER,
                down: TRANSFER,
                encrypted: true,
                stateful,
            },
            "stateful {stateful}: {after}"
        );
        // ~3,000 full-sized segments each way, plus acks.
        let segments = (TRANSFER / 1400) as u64;
        assert!(d(&["datapath", "xdp_decap"]) >= segments, "{after}");
        assert!(d(&["datapath", "encapsulated"]) >= segments, "{after}");
        assert_eq!(num(&after, &["controller", "slowpath_data_frames"]), 0);
        for reason in ["mppe_bad_decrypt", "mppe_no_state", "mppe_plaintext"] {
            assert_eq!(d(&["drops", reason]), 0, "{reason}: {after}");
        }
        rig.assert_clean();
    }
}
