//! Kernel fixtures for encapsulation towards clients: the real XDP program (on `pptp0`'s peer in
//! production) run by BPF_PROG_TEST_RUN inside a namespace whose routes and neighbours decide the
//! egress, including a policy route that picks the uplink by the dialled (source) address.

use std::net::Ipv4Addr;

use pptp_common::{
    maps::{PROG_XDP_DECAP, PROG_XDP_ENCAP},
    session::{DatapathConfig, STATE_NEGOTIATING, STATE_UP, Session},
    stats::{DropReason, Stat},
};
use pptp_tests::{
    frames::*,
    kernel::{self, xdp_run},
    netns::{Netns, fmt_mac, veth_pair},
    require_root,
};
use pptp_user::kernel::datapath::Datapath;

const XDP_DROP: u32 = 1;
const XDP_REDIRECT: u32 = 4;

const DIALLED_A: Ipv4Addr = Ipv4Addr::new(192, 0, 2, 1);
const DIALLED_B: Ipv4Addr = Ipv4Addr::new(198, 18, 0, 1);
const CLIENT: Ipv4Addr = Ipv4Addr::new(198, 51, 100, 7);
const ASSIGNED: Ipv4Addr = Ipv4Addr::new(10, 99, 0, 10);
const ASSIGNED_B: Ipv4Addr = Ipv4Addr::new(10, 99, 0, 11);
const FAR: Ipv4Addr = Ipv4Addr::new(203, 0, 113, 5);
const ROUTER_A_MAC: [u8; 6] = [2, 0, 0, 0, 0xa, 0xfe];
const ROUTER_B_MAC: [u8; 6] = [2, 0, 0, 0, 0xb, 0xfe];

fn session(slot: u32, local: Ipv4Addr, assigned: Ipv4Addr, call_id: u16, state: u8) -> Session {
    kernel::session(slot, local, CLIENT, call_id, assigned, state)
}

fn run(dp: &Datapath, prog: &str, frame: &[u8]) -> (u32, Vec<u8>) {
    let (verdict, out, _) = xdp_run(dp, prog, frame);
    (verdict, out)
}

/// A frame as `pptp0` sends it to its peer (the MACs do not matter to the program).
fn to_client(inner: &[u8]) -> Vec<u8> {
    ethernet([2, 0, 0, 0, 9, 2], [2, 0, 0, 0, 9, 1], ETH_P_IP, inner)
}

/// A gateway namespace with two uplinks: the main table reaches the client via uplink A, and a
/// rule sends traffic *from* address B out of uplink B.
fn gateway() -> (Netns, Netns, [u8; 6], [u8; 6]) {
    let gw = Netns::new("encgw");
    let up = Netns::new("encup");
    let (a, _) = veth_pair(&gw, "upa", &up, "ra", 0xa);
    let (b, _) = veth_pair(&gw, "upb", &up, "rb", 0xb);
    gw.ip(&["addr", "add", "192.0.2.1/24", "dev", "upa"]);
    gw.ip(&["addr", "add", "198.18.0.1/24", "dev", "upb"]);
    gw.ip(&[
        "neigh",
        "replace",
        "192.0.2.254",
        "lladdr",
        &fmt_mac(&ROUTER_A_MAC),
        "dev",
        "upa",
        "nud",
        "permanent",
    ]);
    gw.ip(&[
        "neigh",
        "replace",
        "198.18.0.254",
        "lladdr",
        &fmt_mac(&ROUTER_B_MAC),
        "dev",
        "upb",
        "nud",
        "permanent",
    ]);
    gw.ip(&[
        "route",
        "add",
        "198.51.100.0/24",
        "via",
        "192.0.2.254",
        "dev",
        "upa",
    ]);
    gw.ip(&[
        "route",
        "add",
        "default",
        "via",
        "198.18.0.254",
        "dev",
        "upb",
        "table",
        "100",
    ]);
    gw.ip(&["rule", "add", "from", "198.18.0.1", "lookup", "100"]);
    // 203.0.113.0/24 is routed via a next hop with no neighbour entry (and we stop ARP from
    // resolving it during the test by not having anything answer).
    gw.ip(&[
        "route",
        "add",
        "203.0.113.0/24",
        "via",
        "192.0.2.253",
        "dev",
        "upa",
    ]);
    pptp_tests::netns::run_ok(gw.command("sysctl").args(["-qw", "net.ipv4.ip_forward=1"]));
    (gw, up, a.mac, b.mac)
}

#[test]
fn encapsulates_with_one_sequence_space_and_the_dialled_source() {
    require_root();
    let (gw, _up, mac_a, mac_b) = gateway();
    gw.enter(|| {
        let mut dp = Datapath::load().expect("load");
        dp.set_config(&DatapathConfig {
            pptp0_peer_ifindex: 1,
            enabled: 1,
            reorder_window: 0,
            ..DatapathConfig::default()
        })
        .unwrap();
        let s = session(3, DIALLED_A, ASSIGNED, 0x4000, STATE_UP);
        dp.install_session(&s).unwrap();

        // Nothing received from the client yet: not up for data.
        let inner = ipv4(FAR, ASSIGNED, IPPROTO_UDP, &udp(53, 5000, b"answer"));
        let before = dp.counters().unwrap();
        assert_eq!(run(&dp, PROG_XDP_ENCAP, &to_client(&inner)).0, XDP_DROP);
        assert_eq!(
            dp.counters().unwrap().dropped(DropReason::SessionNotUp)
                - before.dropped(DropReason::SessionNotUp),
            1
        );

        // The client's LCP frame (seq 3) arrives through XDP decap: it is the ack we send.
        let lcp = gre_v1(
            0x4000,
            Some(3),
            None,
            &[0xff, 0x03, 0xc0, 0x21, 9, 1, 0, 8, 1, 2, 3, 4],
        );
        let frame = ethernet(
            mac_a,
            ROUTER_A_MAC,
            ETH_P_IP,
            &ipv4(CLIENT, DIALLED_A, IPPROTO_GRE, &lcp),
        );
        run(&dp, PROG_XDP_DECAP, &frame);

        for seq in 0..2u32 {
            let (verdict, out) = run(&dp, PROG_XDP_ENCAP, &to_client(&inner));
            assert_eq!(verdict, XDP_REDIRECT);
            let mut gre = vec![0x30, 0x81, 0x88, 0x0b];
            gre.extend_from_slice(&((4 + inner.len()) as u16).to_be_bytes());
            gre.extend_from_slice(&[0x00, 0x80]);
            gre.extend_from_slice(&seq.to_be_bytes());
            gre.extend_from_slice(&3u32.to_be_bytes());
            gre.extend_from_slice(&[0xff, 0x03, 0x00, 0x21]);
            gre.extend_from_slice(&inner);
            let mut expected = ethernet(
                ROUTER_A_MAC,
                mac_a,
                ETH_P_IP,
                &ipv4(DIALLED_A, CLIENT, IPPROTO_GRE, &gre),
            );
            expected[14 + 4..14 + 6].copy_from_slice(&[0, 0]); // id
            let c = checksum(&{
                let mut h = expected[14..34].to_vec();
                h[10] = 0;
                h[11] = 0;
                h
            });
            expected[24..26].copy_from_slice(&c.to_be_bytes());
            assert_eq!(out, expected, "seq {seq}");
            assert_eq!(checksum(&out[14..34]), 0, "outer IPv4 checksum valid");
        }
        let g = dp.gre_state(3).unwrap();
        assert_eq!((g.tx_next, g.ack_sent), (2, 3));
        let st = dp.session_stats(3).unwrap();
        assert_eq!((st.tx_packets, st.tx_bytes), (2, 2 * inner.len() as u64));

        // A session dialled on address B leaves through uplink B, from B, although the main
        // table's route to the client is via uplink A (lesson 2: answer from the dialled address).
        let sb = session(4, DIALLED_B, ASSIGNED_B, 0x4001, STATE_UP);
        dp.install_session(&sb).unwrap();
        let lcp = gre_v1(
            0x4001,
            Some(0),
            None,
            &[0xff, 0x03, 0xc0, 0x21, 9, 1, 0, 8, 1, 2, 3, 4],
        );
        let frame = ethernet(
            mac_b,
            ROUTER_B_MAC,
            ETH_P_IP,
            &ipv4(CLIENT, DIALLED_B, IPPROTO_GRE, &lcp),
        );
        run(&dp, PROG_XDP_DECAP, &frame);
        let inner_b = ipv4(FAR, ASSIGNED_B, IPPROTO_UDP, &udp(53, 5000, b"b"));
        let (verdict, out) = run(&dp, PROG_XDP_ENCAP, &to_client(&inner_b));
        assert_eq!(verdict, XDP_REDIRECT);
        assert_eq!(&out[0..6], &ROUTER_B_MAC, "next hop of uplink B");
        assert_eq!(&out[6..12], &mac_b, "from uplink B");
        assert_eq!(
            &out[14 + 12..14 + 16],
            &DIALLED_B.octets(),
            "sourced from the dialled address"
        );

        // A SYN towards the client is clamped too.
        let syn = tcp_syn(FAR, ASSIGNED, 1460);
        let (verdict, out) = run(
            &dp,
            PROG_XDP_ENCAP,
            &to_client(&ipv4(FAR, ASSIGNED, 6, &syn)),
        );
        assert_eq!(verdict, XDP_REDIRECT);
        let tcp = &out[14 + 20 + 16 + 4 + 20..];
        assert_eq!(u16::from_be_bytes([tcp[22], tcp[23]]), 1360);
        assert_eq!(tcp_checksum(FAR, ASSIGNED, tcp), 0);

        // Drops, each with its reason.
        let drops: Vec<(&str, Vec<u8>, DropReason)> = vec![
            (
                "no session",
                to_client(&ipv4(
                    FAR,
                    Ipv4Addr::new(10, 99, 0, 99),
                    IPPROTO_UDP,
                    &udp(1, 2, b"x"),
                )),
                DropReason::NoSession,
            ),
            (
                "too big",
                to_client(&ipv4(FAR, ASSIGNED, IPPROTO_UDP, &udp(1, 2, &[0; 1400]))),
                DropReason::TooBig,
            ),
            (
                "arp",
                ethernet([2, 0, 0, 0, 9, 2], [2, 0, 0, 0, 9, 1], 0x0806, &[0; 28]),
                DropReason::NotIpv4,
            ),
        ];
        for (name, frame, reason) in drops {
            let before = dp.counters().unwrap();
            assert_eq!(run(&dp, PROG_XDP_ENCAP, &frame).0, XDP_DROP, "{name}");
            let after = dp.counters().unwrap();
            assert_eq!(after.dropped(reason) - before.dropped(reason), 1, "{name}");
            assert_eq!(
                after.get(Stat::EncapDropped) - before.get(Stat::EncapDropped),
                1,
                "{name}"
            );
        }

        // No route / no neighbour: a session whose client sits behind them.
        let mut unroutable = session(
            5,
            Ipv4Addr::new(192, 0, 2, 1),
            Ipv4Addr::new(10, 99, 0, 12),
            0x4002,
            STATE_UP,
        );
        unroutable.key.peer = Ipv4Addr::new(100, 64, 0, 1).octets();
        dp.install_session(&unroutable).unwrap();
        let mut unresolved = session(
            6,
            Ipv4Addr::new(192, 0, 2, 1),
            Ipv4Addr::new(10, 99, 0, 13),
            0x4003,
            STATE_UP,
        );
        unresolved.key.peer = Ipv4Addr::new(203, 0, 113, 9).octets();
        dp.install_session(&unresolved).unwrap();
        for (s, reason) in [
            (&unroutable, DropReason::NoRoute),
            (&unresolved, DropReason::NoNeighbour),
        ] {
            // Mark something received so the session counts as up for data.
            let lcp = gre_v1(
                u16::from_be_bytes(s.key.call_id),
                Some(0),
                None,
                &[0xff, 0x03, 0xc0, 0x21, 9, 1, 0, 8, 1, 2, 3, 4],
            );
            let peer = Ipv4Addr::from(s.key.peer);
            run(
                &dp,
                PROG_XDP_DECAP,
                &ethernet(
                    mac_a,
                    ROUTER_A_MAC,
                    ETH_P_IP,
                    &ipv4(peer, DIALLED_A, IPPROTO_GRE, &lcp),
                ),
            );
            let assigned = Ipv4Addr::from(s.assigned);
            let before = dp.counters().unwrap();
            let v = run(
                &dp,
                PROG_XDP_ENCAP,
                &to_client(&ipv4(FAR, assigned, IPPROTO_UDP, &udp(1, 2, b"x"))),
            )
            .0;
            assert_eq!(v, XDP_DROP, "{reason:?}");
            assert_eq!(
                dp.counters().unwrap().dropped(reason) - before.dropped(reason),
                1,
                "{reason:?}"
            );
        }

        // A session still negotiating gets no data.
        dp.install_session(&session(3, DIALLED_A, ASSIGNED, 0x4000, STATE_NEGOTIATING))
            .unwrap();
        assert_eq!(run(&dp, PROG_XDP_ENCAP, &to_client(&inner)).0, XDP_DROP);
    });
}

/// The per-session next-hop cache: off while the routing generation is 0 (every packet looked
/// up); on, the first packet looks up and the rest reuse it, even after the neighbour changed
/// (nobody said so yet); a new generation (what the controller's route monitor does on every
/// change) makes the next packet look up again and follow the new neighbour.
#[test]
fn the_next_hop_is_cached_per_session_until_the_routing_generation_moves() {
    require_root();
    let (gw, _up, _mac_a, _mac_b) = gateway();
    gw.enter(|| {
        let mut dp = Datapath::load().expect("load");
        dp.set_config(&DatapathConfig {
            pptp0_peer_ifindex: 1,
            enabled: 1,
            reorder_window: 0,
            ..DatapathConfig::default()
        })
        .unwrap();
        dp.install_session(&session(3, DIALLED_A, ASSIGNED, 0x4000, STATE_UP))
            .unwrap();
        let lcp = gre_v1(
            0x4000,
            Some(3),
            None,
            &[0xff, 0x03, 0xc0, 0x21, 9, 1, 0, 8, 1, 2, 3, 4],
        );
        run(
            &dp,
            PROG_XDP_DECAP,
            &ethernet(
                [2; 6],
                ROUTER_A_MAC,
                ETH_P_IP,
                &ipv4(CLIENT, DIALLED_A, IPPROTO_GRE, &lcp),
            ),
        );
        let inner = ipv4(FAR, ASSIGNED, IPPROTO_UDP, &udp(53, 5000, b"answer"));
        // (verdict, destination MAC, cache hits) of one packet.
        let send = |dp: &Datapath| {
            let (v, out, d) = xdp_run(dp, PROG_XDP_ENCAP, &to_client(&inner));
            assert_eq!(v, XDP_REDIRECT, "{:?}", d.named_drops());
            (out[0..6].to_vec(), d.get(Stat::EncapHopCached))
        };
        assert_eq!(send(&dp), (ROUTER_A_MAC.to_vec(), 0), "caching off");
        assert_eq!(send(&dp), (ROUTER_A_MAC.to_vec(), 0), "caching off");
        let mut generation = dp.route_generation().unwrap();
        generation.bump().unwrap();
        assert_eq!(send(&dp), (ROUTER_A_MAC.to_vec(), 0), "the first looks up");
        assert_eq!(send(&dp), (ROUTER_A_MAC.to_vec(), 1), "the next reuse it");
        let moved: [u8; 6] = [2, 0, 0, 0, 0xa, 0x77];
        gw.ip(&[
            "neigh",
            "replace",
            "192.0.2.254",
            "lladdr",
            &fmt_mac(&moved),
            "dev",
            "upa",
            "nud",
            "permanent",
        ]);
        assert_eq!(send(&dp), (ROUTER_A_MAC.to_vec(), 1), "cached until told");
        generation.bump().unwrap();
        assert_eq!(send(&dp), (moved.to_vec(), 0), "looked up again");
        assert_eq!(send(&dp), (moved.to_vec(), 1));
        // A session (re)installed in the slot starts without a cache.
        dp.install_session(&session(3, DIALLED_A, ASSIGNED, 0x4000, STATE_UP))
            .unwrap();
        run(
            &dp,
            PROG_XDP_DECAP,
            &ethernet(
                [2; 6],
                ROUTER_A_MAC,
                ETH_P_IP,
                &ipv4(CLIENT, DIALLED_A, IPPROTO_GRE, &lcp),
            ),
        );
        assert_eq!(send(&dp).1, 0);
    });
}
