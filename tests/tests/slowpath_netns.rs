//! The slow-path GRE socket in namespaces: it receives enhanced GRE addressed as it arrived, and
//! sends from the address the client dialled, out of the uplink policy routing gives that address
//! (not the one with the best route back).

use std::{net::Ipv4Addr, time::Duration};

use pptp_tests::{
    frames::*,
    netns::{Netns, run_ok, veth_pair},
    require_root,
    sockets::{GreReceiver, PacketSender},
};
use pptp_user::{
    kernel::slowpath::{GreSocket, RecvError},
    wire::gre::GreHeader,
};

const CLIENT: Ipv4Addr = Ipv4Addr::new(198, 51, 100, 7);
const A: Ipv4Addr = Ipv4Addr::new(192, 0, 2, 1);
const B: Ipv4Addr = Ipv4Addr::new(198, 18, 0, 1);

fn rx_packets(ns: &Netns, ifname: &str) -> u64 {
    let out = ns.ip(&["-s", "-j", "link", "show", ifname]);
    let text = String::from_utf8_lossy(&out.stdout);
    // "stats64":{"rx":{"bytes":N,"packets":M,...
    let rx = &text[text.find("\"rx\"").expect("rx stats")..];
    let p = &rx[rx.find("\"packets\":").unwrap() + 10..];
    p[..p.find(|c: char| !c.is_ascii_digit()).unwrap()]
        .parse()
        .unwrap()
}

#[test]
fn receives_as_addressed_and_sends_from_the_dialled_address() {
    require_root();
    let gw = Netns::new("spgw");
    let up = Netns::new("spup");
    let (upa, ra) = veth_pair(&gw, "upa", &up, "ra", 0x41);
    veth_pair(&gw, "upb", &up, "rb", 0x42);
    gw.ip(&["addr", "add", "192.0.2.1/24", "dev", "upa"]);
    gw.ip(&["addr", "add", "198.18.0.1/24", "dev", "upb"]);
    up.ip(&["addr", "add", "192.0.2.254/24", "dev", "ra"]);
    up.ip(&["addr", "add", "198.18.0.254/24", "dev", "rb"]);
    up.ip(&["addr", "add", "198.51.100.7/32", "dev", "lo"]);
    // Best route back to the client: uplink A. Traffic from B: uplink B.
    gw.ip(&["route", "add", "198.51.100.0/24", "via", "192.0.2.254"]);
    gw.ip(&[
        "route",
        "add",
        "default",
        "via",
        "198.18.0.254",
        "table",
        "100",
    ]);
    gw.ip(&["rule", "add", "from", "198.18.0.1", "lookup", "100"]);
    run_ok(
        up.command("sysctl")
            .args(["-qw", "net.ipv4.conf.all.rp_filter=0"]),
    );

    let sock = gw.enter(|| GreSocket::open().unwrap());
    let client_rx = up.enter(|| GreReceiver::new(Duration::from_secs(2)).unwrap());

    // Receive: a client's LCP frame to address A, and a malformed one.
    up.enter(|| {
        let tx = PacketSender::new("ra").unwrap();
        let lcp = gre_v1(0x4000, Some(0), None, &[0xff, 0x03, 0xc0, 0x21, 1, 1, 0, 4]);
        tx.send(&ethernet(
            upa.mac,
            ra.mac,
            ETH_P_IP,
            &ipv4(CLIENT, A, IPPROTO_GRE, &lcp),
        ))
        .unwrap();
        let mut bad = lcp.clone();
        bad[0] &= !0x20; // no key
        tx.send(&ethernet(
            upa.mac,
            ra.mac,
            ETH_P_IP,
            &ipv4(CLIENT, A, IPPROTO_GRE, &bad),
        ))
        .unwrap();
    });
    std::thread::sleep(Duration::from_millis(200));
    let got = sock.recv().expect("a GRE packet");
    assert_eq!((got.local, got.peer), (A, CLIENT));
    assert_eq!(
        got.header,
        GreHeader {
            call_id: 0x4000,
            seq: Some(0),
            ack: None
        }
    );
    assert_eq!(got.payload, [0xff, 0x03, 0xc0, 0x21, 1, 1, 0, 4]);
    assert!(matches!(
        sock.recv(),
        Err(RecvError::BadGre { peer: CLIENT, .. })
    ));
    assert!(
        matches!(sock.recv(), Err(RecvError::Io(e)) if e.kind() == std::io::ErrorKind::WouldBlock)
    );

    // Send from each dialled address: the source is that address and the uplink is its own.
    // Twice each: the first resolves the next hop (ARP adds packets); the second must add
    // exactly one packet to that uplink's counter and none to the other's.
    for (local, iface, other) in [(A, "ra", "rb"), (B, "rb", "ra")] {
        for round in 0..2 {
            let (before, before_other) = (rx_packets(&up, iface), rx_packets(&up, other));
            let h = GreHeader {
                call_id: 0x0080,
                seq: Some(5 + round),
                ack: Some(0),
            };
            sock.send(local, CLIENT, &h, &[0xff, 0x03, 0xc0, 0x21, 2, 1, 0, 4])
                .unwrap();
            let pkt = client_rx.recv().unwrap().expect("the client got it");
            assert_eq!(
                &pkt[12..16],
                &local.octets(),
                "sourced from the dialled address"
            );
            assert_eq!(GreHeader::parse(&pkt[20..]).unwrap().0, h);
            if round == 1 {
                assert_eq!(
                    rx_packets(&up, iface) - before,
                    1,
                    "over the uplink of {local}"
                );
                assert_eq!(
                    rx_packets(&up, other),
                    before_other,
                    "not over the other uplink"
                );
            }
        }
    }
}
