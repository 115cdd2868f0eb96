//! The real programs attached to a veth in a network namespace, real frames sent from a peer
//! namespace: verdicts are checked by what reaches the gateway's kernel, counters by the maps.
//! Also the `pptpgw` binary itself: it attaches, and on SIGTERM leaves nothing attached.

use std::{
    net::Ipv4Addr,
    process::Stdio,
    time::{Duration, Instant},
};

use aya::programs::XdpMode;
use pptp_common::stats::{DropReason, Stat};
use pptp_tests::{
    frames::*,
    netns::{Netns, veth_pair},
    pptpgw_bin, require_root,
    sockets::{GreReceiver, PacketSender},
};
use pptp_user::kernel::datapath::Datapath;

const GW: Ipv4Addr = Ipv4Addr::new(192, 0, 2, 1);
const PEER: Ipv4Addr = Ipv4Addr::new(192, 0, 2, 2);

#[test]
fn veth_verdicts_and_counters() {
    require_root();
    let gw = Netns::new("gw");
    let peer = Netns::new("peer");
    let (vg, vp) = veth_pair(&gw, "vg", &peer, "vp", 1);
    gw.ip(&["addr", "add", "192.0.2.1/24", "dev", "vg"]);
    peer.ip(&["addr", "add", "192.0.2.2/24", "dev", "vp"]);
    // The peer answers nothing over XDP; this lets the gateway's replies (ICMP) be sent.
    peer.ip(&[
        "neigh",
        "replace",
        "192.0.2.1",
        "lladdr",
        &pptp_tests::netns::fmt_mac(&vg.mac),
        "dev",
        "vp",
    ]);
    gw.ip(&[
        "neigh",
        "replace",
        "192.0.2.2",
        "lladdr",
        &pptp_tests::netns::fmt_mac(&vp.mac),
        "dev",
        "vg",
    ]);

    let (dp, rx) = gw.enter(|| {
        let mut dp = Datapath::load().expect("load");
        dp.attach_xdp("vg", XdpMode::Driver)
            .expect("native XDP on veth");
        let rx = GreReceiver::new(Duration::from_millis(300)).expect("raw GRE socket");
        (dp, rx)
    });

    let lcp = [0xff, 0x03, 0xc0, 0x21, 1, 1, 0, 4];
    let to_gw = |ip: Vec<u8>| ethernet(vg.mac, vp.mac, ETH_P_IP, &ip);
    let good = to_gw(ipv4(
        PEER,
        GW,
        IPPROTO_GRE,
        &gre_v1(0x4242, Some(1), None, &lcp),
    ));
    let gre_v0 = to_gw(ipv4(
        PEER,
        GW,
        IPPROTO_GRE,
        &[0, 0, 0x08, 0x00, 0x45, 0, 0, 20],
    ));
    let udp_pkt = to_gw(ipv4(PEER, GW, IPPROTO_UDP, &udp(40000, 9, b"not gre")));
    // IPv4 total length claims a GRE header; only 5 bytes of it are on the wire.
    let mut truncated = to_gw(ipv4(
        PEER,
        GW,
        IPPROTO_GRE,
        &gre_v1(0x4242, Some(2), None, &lcp),
    ));
    truncated.truncate(14 + 20 + 5);
    let mut no_key_gre = gre_v1(0x4242, Some(3), None, &lcp);
    no_key_gre[0] &= !0x20;
    let no_key = to_gw(ipv4(PEER, GW, IPPROTO_GRE, &no_key_gre));

    peer.enter(|| {
        let tx = PacketSender::new("vp").expect("AF_PACKET socket");
        for f in [&good, &gre_v0, &udp_pkt, &truncated, &no_key] {
            tx.send(f).expect("send");
        }
    });

    // What the gateway's kernel received: the two GRE packets XDP passed, nothing it dropped.
    let got = rx.drain(16).expect("recv");
    let call_ids: Vec<Vec<u8>> = got.iter().map(|p| p[20..].to_vec()).collect();
    assert_eq!(got.len(), 2, "raw GRE socket saw {call_ids:02x?}");
    assert_eq!(
        &got[0][20..],
        &good[34..],
        "PPTP GRE passed to the stack unchanged"
    );
    assert_eq!(
        &got[1][20..],
        &gre_v0[34..],
        "GRE v0 passed to the stack unchanged"
    );

    let c = dp.counters().expect("counters");
    assert!(c.get(Stat::XdpSeen) >= 5, "{c:?}");
    assert_eq!(c.get(Stat::XdpSlowPath), 1, "{c:?}");
    assert_eq!(c.get(Stat::XdpGreOther), 1, "{c:?}");
    assert!(c.get(Stat::XdpNotGre) >= 1, "{c:?}");
    assert_eq!(c.get(Stat::XdpDropped), 2, "{c:?}");
    assert_eq!(c.dropped(DropReason::Truncated), 1, "{c:?}");
    assert_eq!(c.dropped(DropReason::GreBadFlags), 1, "{c:?}");
    drop(dp);
}

/// (XDP attached to `ifname`, `pptp0` present) in the namespace.
fn attached(ns: &Netns, ifname: &str) -> (bool, bool) {
    let out = ns.ip(&["-d", "link", "show", ifname]);
    let xdp = String::from_utf8_lossy(&out.stdout).contains("prog/xdp");
    let links = ns.ip(&["link", "show"]);
    (
        xdp,
        String::from_utf8_lossy(&links.stdout).contains("pptp0"),
    )
}

#[test]
fn pptpgw_run_cleans_up_everything_on_sigterm() {
    require_root();
    let gw = Netns::new("gwbin");
    let peer = Netns::new("peerbin");
    veth_pair(&gw, "wan0", &peer, "wp0", 2);
    gw.ip(&["addr", "add", "192.0.2.1/24", "dev", "wan0"]);
    // A stale route of ours from a "previous run", which start-up reconciliation must remove.
    gw.ip(&[
        "route",
        "add",
        "10.99.0.77/32",
        "dev",
        "wan0",
        "proto",
        "241",
    ]);
    assert_eq!(attached(&gw, "wan0"), (false, false));
    let dir = std::env::temp_dir().join(format!("pptpgw-run-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let secrets = dir.join("chap-secrets");
    std::fs::write(&secrets, "alice * s3cret *\n").unwrap();

    let mut child = gw
        .command(pptpgw_bin())
        .args(["run", "--wan", "wan0", "--xdp-mode", "native", "--secrets"])
        .arg(&secrets)
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn pptpgw");
    let deadline = Instant::now() + Duration::from_secs(20);
    let mut state = attached(&gw, "wan0");
    while state != (true, true) && Instant::now() < deadline {
        if let Some(status) = child.try_wait().unwrap() {
            let err = std::io::read_to_string(child.stderr.take().unwrap()).unwrap();
            panic!("pptpgw exited early: {status}: {err}");
        }
        std::thread::sleep(Duration::from_millis(100));
        state = attached(&gw, "wan0");
    }
    if state != (true, true) {
        let _ = child.kill();
        let _ = child.wait();
        panic!("pptpgw did not come up within 20 s: {state:?}");
    }
    // Reconciliation runs once the data path is attached (after the journal is read), so the
    // route may outlive the attachment by a moment.
    let ours =
        || String::from_utf8_lossy(&gw.ip(&["route", "show", "proto", "241"]).stdout).into_owned();
    let deadline = Instant::now() + Duration::from_secs(10);
    let mut routes = ours();
    while !routes.is_empty() && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(100));
        routes = ours();
    }
    assert!(routes.is_empty(), "stale route reconciled away: {routes}");

    let status = pptp_tests::terminate(&mut child, Duration::from_secs(10))
        .expect("pptpgw exits within 10 s of SIGTERM");
    let stderr = std::io::read_to_string(child.stderr.take().unwrap()).unwrap();
    let _ = std::fs::remove_dir_all(&dir);
    assert!(status.success(), "pptpgw exit {status}: {stderr}");
    assert!(stderr.contains("pptpgw stopped"), "{stderr}");
    assert_eq!(
        attached(&gw, "wan0"),
        (false, false),
        "something left behind: {stderr}"
    );
}
