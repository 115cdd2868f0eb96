//! Kernel fixtures for `[forwarding] mode = "xdp"`: the real `pptp_forward` (a decapsulated packet
//! to its egress) and `pptp_lan` (packets for clients encapsulated on a LAN interface) run by
//! BPF_PROG_TEST_RUN inside a namespace whose routes and neighbours decide. Every case XDP should
//! not decide must reach the stack unchanged.
//!
//! ```text
//!  gateway ns: upa 192.0.2.1/24 → router 192.0.2.254 (clients 198.51.100.0/24 via it)
//!              lan 203.0.113.1/24 (MTU 1000) → server 203.0.113.5 (neighbour known)
//!                                              203.0.114.0/24 via 203.0.113.253 (never resolved)
//!              p0 (stands for pptp0; clients' addresses 10.99.0.0/24 routed to it)
//! ```

use std::net::Ipv4Addr;

use pptp_common::{
    maps::{PROG_XDP_DECAP, PROG_XDP_FORWARD, PROG_XDP_LAN},
    session::{DatapathConfig, STATE_NEGOTIATING, STATE_UP},
    stats::Stat,
};
use pptp_tests::{
    frames::*,
    kernel::{self, xdp_run},
    netns::{Netns, fmt_mac, gateway_with_uplink, run_ok, veth_pair},
    require_root,
};
use pptp_user::kernel::datapath::Datapath;

const XDP_PASS: u32 = 2;
const XDP_REDIRECT: u32 = 4;

const DIALLED: Ipv4Addr = Ipv4Addr::new(192, 0, 2, 1);
const CLIENT: Ipv4Addr = Ipv4Addr::new(198, 51, 100, 7);
const ASSIGNED: Ipv4Addr = Ipv4Addr::new(10, 99, 0, 10);
const OTHER_CLIENT: Ipv4Addr = Ipv4Addr::new(10, 99, 0, 11);
const SERVER: Ipv4Addr = Ipv4Addr::new(203, 0, 113, 5);
const UNRESOLVED: Ipv4Addr = Ipv4Addr::new(203, 0, 114, 9);
const SERVER_MAC: [u8; 6] = [2, 0, 0, 0, 0x5e, 0x05];
const PPTP0_MAC: [u8; 6] = [2, 0, 0, 0, 0x70, 1];
const PPTP0_PEER_MAC: [u8; 6] = [2, 0, 0, 0, 0x70, 2];

struct Topology {
    gw: Netns,
    _router: Netns,
    _server: Netns,
    lan_mac: [u8; 6],
    router_mac: [u8; 6],
    upa_mac: [u8; 6],
    pptp0_ifindex: u32,
}

fn topology(tag: &str) -> Topology {
    let (gw, router) = gateway_with_uplink(&format!("{tag}g"), 0x61);
    let server = Netns::new(&format!("{tag}s"));
    let (lan, _) = veth_pair(&gw, "lan", &server, "s0", 0x62);
    gw.ip(&["addr", "add", "203.0.113.1/24", "dev", "lan"]);
    gw.ip(&["link", "set", "lan", "mtu", "1000"]);
    gw.ip(&[
        "neigh",
        "replace",
        &SERVER.to_string(),
        "lladdr",
        &fmt_mac(&SERVER_MAC),
        "dev",
        "lan",
        "nud",
        "permanent",
    ]);
    gw.ip(&["route", "add", "203.0.114.0/24", "via", "203.0.113.253"]);
    // pptp0 is a veth in production too; this one is its stand-in.
    gw.ip(&[
        "link",
        "add",
        "p0",
        "address",
        &fmt_mac(&PPTP0_MAC),
        "type",
        "veth",
        "peer",
        "p0p",
        "address",
        &fmt_mac(&PPTP0_PEER_MAC),
    ]);
    gw.ip(&["link", "set", "p0", "up"]);
    gw.ip(&["link", "set", "p0p", "up"]);
    gw.ip(&["route", "add", "10.99.0.0/24", "dev", "p0"]);
    let ifindex = |name: &str| -> u32 {
        let out = run_ok(
            gw.command("cat")
                .arg(format!("/sys/class/net/{name}/ifindex")),
        );
        String::from_utf8_lossy(&out.stdout).trim().parse().unwrap()
    };
    let mac = |name: &str| -> [u8; 6] {
        let out = run_ok(
            gw.command("cat")
                .arg(format!("/sys/class/net/{name}/address")),
        );
        let s = String::from_utf8_lossy(&out.stdout);
        let v: Vec<u8> = s
            .trim()
            .split(':')
            .map(|h| u8::from_str_radix(h, 16).unwrap())
            .collect();
        v.try_into().unwrap()
    };
    Topology {
        lan_mac: lan.mac,
        router_mac: [2, 0, 0, 0, 0x61, 0xfe],
        upa_mac: mac("upa"),
        pptp0_ifindex: ifindex("p0"),
        gw,
        _router: router,
        _server: server,
    }
}

fn load(t: &Topology) -> Datapath {
    let mut dp = Datapath::load().expect("load");
    let peer_ifindex = {
        let out = run_ok(t.gw.command("cat").arg("/sys/class/net/p0p/ifindex"));
        String::from_utf8_lossy(&out.stdout).trim().parse().unwrap()
    };
    dp.set_config(&DatapathConfig {
        pptp0_peer_ifindex: peer_ifindex,
        pptp0_mac: PPTP0_MAC,
        pptp0_peer_mac: PPTP0_PEER_MAC,
        enabled: 1,
        reorder_window: 0,
        pptp0_ifindex: t.pptp0_ifindex,
        steer_cpus: 0,
    })
    .unwrap();
    dp.enable_xdp_forwarding().unwrap();
    dp
}

/// A decapsulated packet as the decapsulation leaves it (addressed to `pptp0`).
fn decapped(inner: &[u8]) -> Vec<u8> {
    ethernet(PPTP0_MAC, PPTP0_PEER_MAC, ETH_P_IP, inner)
}

fn with_ttl(mut ip: Vec<u8>, ttl: u8) -> Vec<u8> {
    ip[8] = ttl;
    ip[10..12].copy_from_slice(&[0, 0]);
    let c = checksum(&ip[..20]);
    ip[10..12].copy_from_slice(&c.to_be_bytes());
    ip
}

fn udp_packet(src: Ipv4Addr, dst: Ipv4Addr, size: usize) -> Vec<u8> {
    ipv4(src, dst, IPPROTO_UDP, &udp(5000, 53, &vec![0x5a; size]))
}

#[test]
fn forwards_decapsulated_packets_and_leaves_the_rest_to_the_stack() {
    require_root();
    let t = topology("fwd");
    t.gw.enter(|| {
        let mut dp = load(&t);

        // To the server: TTL 64 → 63, checksum still valid, MACs of the LAN hop, redirected.
        let inner = udp_packet(ASSIGNED, SERVER, 100);
        let (verdict, out, moved) = xdp_run(&dp, PROG_XDP_FORWARD, &decapped(&inner));
        assert_eq!(verdict, XDP_REDIRECT);
        assert_eq!(moved.get(Stat::ForwardXdp), 1);
        assert_eq!(&out[0..6], &SERVER_MAC);
        assert_eq!(&out[6..12], &t.lan_mac);
        assert_eq!(out[14 + 8], 63, "TTL decremented");
        assert_eq!(checksum(&out[14..34]), 0, "IPv4 checksum valid");
        assert_eq!(&out[34..], &inner[20..], "payload untouched");

        // What the stack must decide reaches pptp0 unchanged.
        let big = udp_packet(ASSIGNED, SERVER, 1200); // LAN MTU 1000: the stack's ICMP
        let cases: [(&str, Vec<u8>); 5] = [
            ("no neighbour", udp_packet(ASSIGNED, UNRESOLVED, 100)),
            (
                "TTL expiring",
                with_ttl(udp_packet(ASSIGNED, SERVER, 100), 1),
            ),
            (
                "local destination",
                udp_packet(ASSIGNED, Ipv4Addr::new(203, 0, 113, 1), 100),
            ),
            ("too big for the egress", big),
            ("client to client", udp_packet(ASSIGNED, OTHER_CLIENT, 100)),
        ];
        for (what, inner) in cases {
            let frame = decapped(&inner);
            let (verdict, out, moved) = xdp_run(&dp, PROG_XDP_FORWARD, &frame);
            assert_eq!(verdict, XDP_REDIRECT, "{what}");
            assert_eq!(out, frame, "{what}: unchanged, to pptp0");
            assert_eq!(
                (moved.get(Stat::ForwardStack), moved.get(Stat::ForwardXdp)),
                (1, 0),
                "{what}"
            );
        }

        // Through the decapsulation: a client's data packet is forwarded by the tail call.
        let s = kernel::session(3, DIALLED, CLIENT, 0x4000, ASSIGNED, STATE_UP);
        dp.install_session(&s).unwrap();
        let inner = udp_packet(ASSIGNED, SERVER, 64);
        let mut ppp = vec![0xff, 0x03, 0x00, 0x21];
        ppp.extend_from_slice(&inner);
        let frame = ethernet(
            t.upa_mac,
            t.router_mac,
            ETH_P_IP,
            &ipv4(
                CLIENT,
                DIALLED,
                IPPROTO_GRE,
                &gre_v1(0x4000, Some(1), None, &ppp),
            ),
        );
        let (verdict, out, moved) = xdp_run(&dp, PROG_XDP_DECAP, &frame);
        assert_eq!(verdict, XDP_REDIRECT);
        assert_eq!(
            (moved.get(Stat::XdpDecap), moved.get(Stat::ForwardXdp)),
            (1, 1)
        );
        assert_eq!(&out[0..6], &SERVER_MAC);
        assert_eq!(out[14 + 8], 63);
        assert_eq!(&out[14 + 20..], &inner[20..]);
    });
}

#[test]
fn lan_program_encapsulates_for_clients_and_passes_everything_else() {
    require_root();
    let t = topology("lanp");
    t.gw.enter(|| {
        let mut dp = load(&t);
        let s = kernel::session(3, DIALLED, CLIENT, 0x4000, ASSIGNED, STATE_UP);
        dp.install_session(&s).unwrap();
        let from_server = |inner: &[u8]| ethernet(t.lan_mac, SERVER_MAC, ETH_P_IP, inner);

        // Nothing received from the client yet: the stack's (pptp0's program drops it there).
        let inner = udp_packet(SERVER, ASSIGNED, 100);
        let (verdict, _, moved) = xdp_run(&dp, PROG_XDP_LAN, &from_server(&inner));
        assert_eq!((verdict, moved.get(Stat::LanPassed)), (XDP_PASS, 1));

        // The client's LCP frame arrives: the session has an ack to send now.
        let lcp = gre_v1(
            0x4000,
            Some(5),
            None,
            &[0xff, 0x03, 0xc0, 0x21, 9, 1, 0, 8, 1, 2, 3, 4],
        );
        let frame = ethernet(
            t.upa_mac,
            t.router_mac,
            ETH_P_IP,
            &ipv4(CLIENT, DIALLED, IPPROTO_GRE, &lcp),
        );
        xdp_run(&dp, PROG_XDP_DECAP, &frame);

        let (verdict, out, moved) = xdp_run(&dp, PROG_XDP_LAN, &from_server(&inner));
        assert_eq!(verdict, XDP_REDIRECT);
        assert_eq!(
            (moved.get(Stat::Encapsulated), moved.get(Stat::LanPassed)),
            (1, 0)
        );
        assert_eq!(
            &out[0..6],
            &t.router_mac,
            "to the router towards the client"
        );
        assert_eq!(&out[26..30], &DIALLED.octets(), "from the dialled address");
        assert_eq!(&out[30..34], &CLIENT.octets());
        // Ethernet, IPv4, GRE with seq and ack (16), PPP FF 03 00 21, then the inner packet.
        let inner_out = &out[14 + 20 + 16 + 4..];
        assert_eq!(inner_out[8], 63, "forwarded: TTL decremented");
        assert_eq!(checksum(&inner_out[..20]), 0, "inner checksum valid");
        assert_eq!(&inner_out[20..], &inner[20..]);
        assert_eq!(
            u32::from_be_bytes(out[42..46].try_into().unwrap()),
            0,
            "seq 0"
        );
        assert_eq!(
            u32::from_be_bytes(out[46..50].try_into().unwrap()),
            5,
            "ack 5"
        );

        // Everything else passes unchanged.
        let mut multicast = from_server(&inner);
        multicast[0..6].copy_from_slice(&[0x01, 0, 0x5e, 0, 0, 1]);
        let cases: [(&str, Vec<u8>); 5] = [
            (
                "not for a client",
                from_server(&udp_packet(SERVER, Ipv4Addr::new(10, 99, 0, 77), 10)),
            ),
            ("TTL expiring", from_server(&with_ttl(inner.clone(), 1))),
            (
                "bigger than the tunnel MTU",
                from_server(&udp_packet(SERVER, ASSIGNED, 1400)),
            ),
            ("multicast", multicast),
            (
                "not IPv4",
                ethernet(t.lan_mac, SERVER_MAC, 0x86dd, &[0x60; 40]),
            ),
        ];
        for (what, frame) in cases {
            let (verdict, out, moved) = xdp_run(&dp, PROG_XDP_LAN, &frame);
            assert_eq!(verdict, XDP_PASS, "{what}");
            assert_eq!(out, frame, "{what}: unchanged");
            assert_eq!(
                (moved.get(Stat::LanPassed), moved.get(Stat::Encapsulated)),
                (1, 0),
                "{what}"
            );
        }

        // A negotiating session's address is not ours to encapsulate yet.
        let n = kernel::session(4, DIALLED, CLIENT, 0x4001, OTHER_CLIENT, STATE_NEGOTIATING);
        dp.install_session(&n).unwrap();
        let (verdict, _, _) = xdp_run(
            &dp,
            PROG_XDP_LAN,
            &from_server(&udp_packet(SERVER, OTHER_CLIENT, 10)),
        );
        assert_eq!(verdict, XDP_PASS);

        // Non-GRE arriving on the WAN for a client takes the same path (decap tail-calls).
        let (verdict, out, moved) = xdp_run(&dp, PROG_XDP_DECAP, &from_server(&inner));
        assert_eq!(verdict, XDP_REDIRECT);
        assert_eq!(
            (moved.get(Stat::LanSeen), moved.get(Stat::Encapsulated)),
            (1, 1)
        );
        assert_eq!(
            u32::from_be_bytes(out[42..46].try_into().unwrap()),
            1,
            "seq 1"
        );
    });
}
