//! The gateway end to end with the project's own PPTP client: the real `pptpgw` binary and config
//! file in a gateway namespace, clients in a client namespace, a host to ping in a server
//! namespace. Every test ends with nothing left: no session, lease, map entry or route.

use std::{
    io::{BufRead as _, BufReader},
    net::Ipv4Addr,
    process::Stdio,
    time::{Duration, Instant},
};

use pptp_client::{DialError, Ended, dial, gre::GreMux, packet};
use pptp_tests::{
    gateway::{
        CLIENT, GW_WAN, Rig, SECRETS, SERVER, XDP_FORWARDING, client_line, config, dial_config,
        num, rt,
    },
    require_root,
};
use pptp_user::wire::{
    gre::GreHeader,
    lcp::AuthProtocol,
    ppp::{Compression, PppFrame, proto},
};

#[test]
fn each_auth_method_gets_an_address_and_pings_through_xdp() {
    require_root();
    let rig = Rig::start("auth", &config(""), SECRETS);
    let before = rig.stats();
    for (i, method) in ["mschapv2", "chap-md5", "pap"].iter().enumerate() {
        let call_id = (100 + i).to_string();
        let out = rig.client(&[
            "--user",
            "alice",
            "--password",
            "s3cret",
            "--auth",
            method,
            "--call-id",
            &call_id,
            "--ping",
            &SERVER.to_string(),
            "--count",
            "5",
        ]);
        let stdout = String::from_utf8_lossy(&out.stdout);
        assert!(out.status.success(), "{method}: {stdout}\n{}", rig.log());
        let up = client_line(&out.stdout, "up").expect("up line");
        let addr: Ipv4Addr = up["address"].parse().unwrap();
        assert!(
            (Ipv4Addr::new(10, 99, 0, 10)..=Ipv4Addr::new(10, 99, 0, 250)).contains(&addr),
            "{method}: {stdout}"
        );
        assert_eq!(up["peer"], "10.99.0.1");
        let ping = client_line(&out.stdout, "ping").expect("ping line");
        assert_eq!(ping["received"], "5", "{method}: {stdout}\n{}", rig.log());
        rig.assert_clean();
    }
    let after = rig.stats();
    let moved = |k: &str| num(&after, &["datapath", k]) - num(&before, &["datapath", k]);
    // 15 echo requests decapsulated by XDP, 15 replies encapsulated by XDP on pptp0's peer.
    assert!(moved("xdp_decap") >= 15, "{after}");
    assert!(moved("encapsulated") >= 15, "{after}");
    // ...and not one data packet reached the slow path's raw socket.
    assert_eq!(
        num(&after, &["controller", "slowpath_data_frames"]),
        0,
        "{after}"
    );
    assert_eq!(num(&after, &["controller", "sessions_up"]), 3, "{after}");
    // One "session down" line per session, with its reason and counters.
    let log = rig.log();
    let downs: Vec<&str> = log.lines().filter(|l| l.contains("session down")).collect();
    assert_eq!(downs.len(), 3, "{log}");
    for l in downs {
        assert!(l.contains("reason=") && l.contains("rx_packets=5"), "{l}");
    }
}

#[test]
fn wrong_password_is_refused_with_691_then_disconnected() {
    require_root();
    let rig = Rig::start("badpw", &config(""), SECRETS);
    for (method, attempts) in [("mschapv2", "3"), ("chap-md5", "1"), ("pap", "1")] {
        let out = rig.client(&["--user", "alice", "--password", "wrong", "--auth", method]);
        let stdout = String::from_utf8_lossy(&out.stdout);
        assert_eq!(
            out.status.code(),
            Some(2),
            "{method}: {stdout}\n{}",
            rig.log()
        );
        assert!(
            stdout.contains(&format!("after {attempts} attempt")),
            "{method}: {stdout}"
        );
        if method == "mschapv2" {
            // RFC 2759: E=691 with R=1 (retry allowed) until the last, which says R=0.
            assert!(stdout.contains("E=691 R=0"), "{stdout}");
        }
        rig.assert_clean();
    }
    let s = rig.stats();
    for m in ["mschap-v2", "chap-md5", "pap"] {
        assert_eq!(num(&s, &["controller", "auth_failures", m]), 1, "{s}");
    }
    assert_eq!(num(&s, &["controller", "ended", "auth_failed"]), 3, "{s}");
}

/// Spoofed inner source, GRE from a wrong outer address, an unknown call ID: each is dropped
/// and counted, and the real session is unaffected.
#[test]
fn hostile_data_is_dropped_and_counted_and_the_session_survives() {
    hostile("hostile", "");
}

#[test]
fn hostile_data_is_dropped_and_counted_and_the_session_survives_in_xdp_mode() {
    hostile("hostxdp", XDP_FORWARDING);
}

fn hostile(tag: &str, extra: &str) {
    require_root();
    let rig = Rig::start(tag, &config(extra), SECRETS);
    // A second outer address on the client side, for the wrong-outer case.
    let other = Ipv4Addr::new(198, 51, 100, 8);
    rig.client
        .ip(&["addr", "add", &format!("{other}/24"), "dev", "c0"]);
    let before = rig.stats();
    rig.client.enter(|| {
        rt().block_on(async {
            let mux = GreMux::open().unwrap();
            let mut s = dial(dial_config(&rig, "bob", "hunter2", 0x2001), &mux)
                .await
                .unwrap_or_else(|e| panic!("dial: {e}\n{}", rig.log()));
            let me = s.info.network.address;
            assert_eq!(s.ping(SERVER, 3, Duration::from_secs(2)).await.received, 3);

            // 1. Inner source is not the assigned address.
            let spoofed = Ipv4Addr::new(10, 99, 0, 200);
            for seq in 0..5 {
                s.send_ip(packet::echo_request(spoofed, SERVER, 0x77, seq, 8));
            }
            // 2. The session's key from another outer address, 3. an unknown call ID.
            let mut frame = Vec::new();
            let echo = packet::echo_request(me, SERVER, 0x78, 1, 8);
            PppFrame {
                protocol: proto::IPV4,
                info: &echo,
            }
            .emit(Compression::default(), &mut frame);
            for i in 0..5u32 {
                let h = GreHeader {
                    call_id: s.info.peer_call_id,
                    seq: Some(1000 + i),
                    ack: None,
                };
                mux.send(other, GW_WAN, &h, &frame).unwrap();
                let h = GreHeader {
                    call_id: s.info.peer_call_id ^ 0x5a5a,
                    seq: Some(1000 + i),
                    ack: None,
                };
                mux.send(CLIENT, GW_WAN, &h, &frame).unwrap();
            }
            // None of them may produce a reply.
            let deadline = Instant::now() + Duration::from_millis(800);
            while let Some(left) = deadline.checked_duration_since(Instant::now()) {
                if let Some(p) = s.recv_ip(left).await {
                    assert_eq!(packet::echo_reply(&p), None, "a hostile packet got through");
                }
            }
            // The real session still works.
            assert_eq!(s.ping(SERVER, 3, Duration::from_secs(2)).await.received, 3);
            assert_eq!(s.hangup().await, Ended::HungUp);
        })
    });
    rig.assert_clean();
    let after = rig.stats();
    let d = |path: &[&str]| num(&after, path) - num(&before, path);
    assert_eq!(d(&["drops", "spoofed_inner_source"]), 5, "{after}");
    // Both kinds match no session: XDP drops them, the controller never sees them.
    assert_eq!(d(&["drops", "unknown_call"]), 10, "{after}");
    assert_eq!(d(&["controller", "slowpath_unknown_call"]), 0, "{after}");
    assert_eq!(
        num(&after, &["controller", "slowpath_data_frames"]),
        0,
        "{after}"
    );
}

/// A client that stops answering (TCP stays open) is found by LCP echo, and everything is
/// removed; one killed outright (TCP reset by its kernel) is removed at once.
#[test]
fn vanished_clients_are_cleaned_up() {
    require_root();
    let rig = Rig::start(
        "vanish",
        &config(
            "[timers]\necho_interval = \"1s\"\necho_failures = 2\nrestart_timer = \"1s\"\n\
             control_echo_interval = \"6s\"\ncontrol_echo_timeout = \"2s\"\n",
        ),
        SECRETS,
    );
    let started = Instant::now();
    let ended = rig.client.enter(|| {
        rt().block_on(async {
            let mux = GreMux::open().unwrap();
            let mut s = dial(dial_config(&rig, "alice", "s3cret", 0x3001), &mux)
                .await
                .unwrap_or_else(|e| panic!("dial: {e}\n{}", rig.log()));
            assert_eq!(s.ping(SERVER, 2, Duration::from_secs(2)).await.received, 2);
            s.go_silent(Duration::from_secs(30)).await
        })
    });
    assert_eq!(ended, Some(Ended::ControlLost), "{}", rig.log());
    rig.assert_clean();
    let s = rig.stats();
    assert_eq!(num(&s, &["controller", "ended", "echo_timeout"]), 1, "{s}");
    eprintln!("silent client removed after {:?}", started.elapsed());

    // Killed with SIGKILL while up.
    let mut child = rig
        .client_command(&[
            "--user",
            "alice",
            "--password",
            "s3cret",
            "--call-id",
            "12290",
            "--hold",
            "60",
        ])
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    let first = lines.next().and_then(Result::ok).unwrap_or_default();
    assert!(first.starts_with("up "), "{first}\n{}", rig.log());
    assert_eq!(rig.stats()["sessions"]["up"], 1);
    child.kill().unwrap();
    child.wait().unwrap();
    rig.assert_clean();
}

#[test]
fn a_client_dialling_with_a_refused_method_gets_nothing() {
    require_root();
    // The gateway offers PAP only; a client that accepts MS-CHAPv2 only cannot agree.
    let rig = Rig::start("method", &config("[auth]\nmethods = [\"pap\"]\n"), SECRETS);
    let r = rig.client.enter(|| {
        rt().block_on(async {
            let mux = GreMux::open().unwrap();
            let mut c = dial_config(&rig, "alice", "s3cret", 0x4001);
            c.peer.methods = vec![AuthProtocol::MsChapV2];
            c.timeout = Duration::from_secs(60);
            dial(c, &mux).await.map(|_| ())
        })
    });
    assert!(
        matches!(r, Err(DialError::Link(_)) | Err(DialError::Control(_))),
        "{r:?}"
    );
    rig.assert_clean();
}
