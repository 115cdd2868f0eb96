//! Kernel fixtures for IPv6 inside the tunnel: the real programs run by BPF_PROG_TEST_RUN in a
//! namespace. Decapsulation (data from the session's /64 delivered, spoofed sources and
//! non-ICMPv6 link traffic dropped, Router Solicitations to the controller, MSS clamped),
//! encapsulation (to a client's /64, the controller's own packets, the kernel's link chatter
//! dropped), and `xdp` mode (hop limit, FIB forwarding towards the LAN).
//!
//! ```text
//!  gateway ns: upa 192.0.2.1/24 → router 192.0.2.254 (clients 198.51.100.0/24 via it)
//!              lan 2001:db8:ffff::1/64 → server 2001:db8:ffff::5 (neighbour known)
//!              p0 (stands for pptp0; the client's 2001:db8:0:7::/64 routed to it)
//! ```

use std::net::{Ipv4Addr, Ipv6Addr};

use pptp_common::{
    maps::{ETH_P_CONTROLLER6, PROG_XDP_DECAP, PROG_XDP_ENCAP, PROG_XDP_FORWARD, PROG_XDP_LAN},
    session::{DatapathConfig, STATE_UP, Session},
    stats::{DropReason, Stat},
};
use pptp_tests::{
    frames::*,
    kernel::{self, xdp_run},
    netns::{Netns, fmt_mac, gateway_with_uplink, run_ok, veth_pair},
    require_root,
};
use pptp_user::kernel::datapath::Datapath;

const XDP_DROP: u32 = 1;
const XDP_PASS: u32 = 2;
const XDP_REDIRECT: u32 = 4;

const DIALLED: Ipv4Addr = Ipv4Addr::new(192, 0, 2, 1);
const CLIENT: Ipv4Addr = Ipv4Addr::new(198, 51, 100, 7);
const ASSIGNED: Ipv4Addr = Ipv4Addr::new(10, 99, 0, 10);
const PREFIX: [u8; 8] = [0x20, 0x01, 0x0d, 0xb8, 0, 0, 0, 7];
const PPTP0_MAC: [u8; 6] = [2, 0, 0, 0, 0x70, 1];
const PPTP0_PEER_MAC: [u8; 6] = [2, 0, 0, 0, 0x70, 2];
const SERVER_MAC: [u8; 6] = [2, 0, 0, 0, 0x5e, 0x06];
const CALL: u16 = 0x4000;

fn a(s: &str) -> Ipv6Addr {
    s.parse().unwrap()
}

/// The client's SLAAC address, a server on the LAN, somewhere else.
fn client6() -> Ipv6Addr {
    a("2001:db8:0:7:3c11:2233:4455:6677")
}
fn server6() -> Ipv6Addr {
    a("2001:db8:ffff::5")
}

struct Topology {
    gw: Netns,
    _router: Netns,
    _server: Netns,
    upa_mac: [u8; 6],
    router_mac: [u8; 6],
    lan_mac: [u8; 6],
    p0: u32,
    p0p: u32,
}

fn topology(tag: &str) -> Topology {
    let (gw, router) = gateway_with_uplink(&format!("{tag}g"), 0x66);
    let server = Netns::new(&format!("{tag}s"));
    let (lan, _) = veth_pair(&gw, "lan", &server, "s0", 0x67);
    // The rig's namespaces start without IPv6; these devices carry it.
    let enable6 = |dev: &str| {
        run_ok(
            gw.command("sysctl")
                .args(["-qw", &format!("net.ipv6.conf.{dev}.disable_ipv6=0")]),
        )
    };
    enable6("lan");
    run_ok(
        gw.command("sysctl")
            .args(["-qw", "net.ipv6.conf.all.forwarding=1"]),
    );
    gw.ip(&[
        "-6",
        "addr",
        "add",
        "2001:db8:ffff::1/64",
        "dev",
        "lan",
        "nodad",
    ]);
    gw.ip(&[
        "-6",
        "neigh",
        "replace",
        &server6().to_string(),
        "lladdr",
        &fmt_mac(&SERVER_MAC),
        "dev",
        "lan",
        "nud",
        "permanent",
    ]);
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
    enable6("p0");
    gw.ip(&["link", "set", "p0", "up"]);
    gw.ip(&["link", "set", "p0p", "up"]);
    gw.ip(&["-6", "route", "add", "2001:db8:0:7::/64", "dev", "p0"]);
    let read = |path: String| {
        let out = run_ok(gw.command("cat").arg(path));
        String::from_utf8_lossy(&out.stdout).trim().to_string()
    };
    let mac = |name: &str| -> [u8; 6] {
        let v: Vec<u8> = read(format!("/sys/class/net/{name}/address"))
            .split(':')
            .map(|h| u8::from_str_radix(h, 16).unwrap())
            .collect();
        v.try_into().unwrap()
    };
    Topology {
        upa_mac: mac("upa"),
        router_mac: [2, 0, 0, 0, 0x66, 0xfe],
        lan_mac: lan.mac,
        p0: read("/sys/class/net/p0/ifindex".into()).parse().unwrap(),
        p0p: read("/sys/class/net/p0p/ifindex".into()).parse().unwrap(),
        gw,
        _router: router,
        _server: server,
    }
}

/// The data path loaded and configured for the topology, with one session (slot 3) up from
/// CLIENT, its /64 PREFIX and IPv4 address `assigned` (0.0.0.0: an IPv6-only session).
fn load_with(t: &Topology, xdp_forwarding: bool, assigned: Ipv4Addr) -> (Datapath, Session) {
    let mut dp = Datapath::load().expect("load");
    dp.set_config(&DatapathConfig {
        pptp0_peer_ifindex: t.p0p,
        pptp0_mac: PPTP0_MAC,
        pptp0_peer_mac: PPTP0_PEER_MAC,
        enabled: 1,
        reorder_window: 0,
        pptp0_ifindex: t.p0,
        steer_cpus: 0,
    })
    .unwrap();
    if xdp_forwarding {
        dp.enable_xdp_forwarding().unwrap();
    }
    let s = Session {
        prefix6: PREFIX,
        ..kernel::session(3, DIALLED, CLIENT, CALL, assigned, STATE_UP)
    };
    dp.install_session(&s).unwrap();
    (dp, s)
}

fn load(t: &Topology, xdp_forwarding: bool) -> Datapath {
    load_with(t, xdp_forwarding, ASSIGNED).0
}

/// A client's GRE frame carrying PPP `protocol` + `info`, sequence number `seq`.
fn from_client(t: &Topology, seq: u32, protocol: u16, info: &[u8]) -> Vec<u8> {
    let mut ppp = vec![0xff, 0x03];
    ppp.extend_from_slice(&protocol.to_be_bytes());
    ppp.extend_from_slice(info);
    let gre = gre_v1(CALL, Some(seq), None, &ppp);
    ethernet(
        t.upa_mac,
        t.router_mac,
        ETH_P_IP,
        &ipv4(CLIENT, DIALLED, IPPROTO_GRE, &gre),
    )
}

fn udp6(src: Ipv6Addr, dst: Ipv6Addr, hop: u8, size: usize) -> Vec<u8> {
    let mut u = udp(5000, 53, &vec![0x5a; size]);
    let c = checksum6(src, dst, IPPROTO_UDP, &u);
    u[6..8].copy_from_slice(&c.to_be_bytes());
    ipv6(src, dst, IPPROTO_UDP, hop, &u)
}

fn router_solicitation() -> Vec<u8> {
    let src = a("fe80::3c11:2233:4455:6677");
    let dst = a("ff02::2");
    ipv6(
        src,
        dst,
        IPPROTO_ICMPV6,
        255,
        &icmpv6(src, dst, 133, &[0; 4]),
    )
}

#[test]
fn decapsulates_the_sessions_prefix_and_hands_link_traffic_up() {
    require_root();
    let t = topology("v6d");
    t.gw.enter(|| {
        let dp = load(&t, false);
        let mut seq = 0;
        let mut next = || {
            seq += 1;
            seq
        };

        // Data from the client's /64: delivered into pptp0 as Ethernet + the same packet.
        let data = udp6(client6(), server6(), 64, 100);
        let (verdict, out, c) =
            xdp_run(&dp, PROG_XDP_DECAP, &from_client(&t, next(), 0x0057, &data));
        assert_eq!(verdict, XDP_REDIRECT);
        assert_eq!(out, ethernet(PPTP0_MAC, PPTP0_PEER_MAC, ETH_P_IPV6, &data));
        assert_eq!((c.get(Stat::XdpDecap), c.get(Stat::XdpDecap6)), (1, 1));
        let st = dp.session_stats(3).unwrap();
        assert_eq!((st.rx_packets, st.rx_bytes), (1, data.len() as u64));

        // A SYN from the client promising 1460 is clamped to the tunnel: 1400 - 60.
        let syn = ipv6(
            client6(),
            server6(),
            6,
            64,
            &tcp6_syn(client6(), server6(), 1460),
        );
        let (verdict, out, _) =
            xdp_run(&dp, PROG_XDP_DECAP, &from_client(&t, next(), 0x0057, &syn));
        assert_eq!(verdict, XDP_REDIRECT);
        let tcp = &out[14 + 40..];
        assert_eq!(u16::from_be_bytes([tcp[22], tcp[23]]), 1340);
        assert_eq!(
            checksum6(client6(), server6(), 6, tcp),
            0,
            "TCP checksum still valid"
        );

        // A Router Solicitation is the link's: to the controller, untouched.
        let rs = from_client(&t, next(), 0x0057, &router_solicitation());
        let (verdict, out, c) = xdp_run(&dp, PROG_XDP_DECAP, &rs);
        assert_eq!((verdict, c.get(Stat::XdpLink6)), (XDP_PASS, 1));
        assert_eq!(out, rs);
        // So is DHCPv6 to the servers' group.
        let ll = a("fe80::3c11:2233:4455:6677");
        let solicit = ipv6(
            ll,
            a("ff02::1:2"),
            IPPROTO_UDP,
            1,
            &udp(546, 547, &[1, 0, 0, 1]),
        );
        let (verdict, _, c) = xdp_run(
            &dp,
            PROG_XDP_DECAP,
            &from_client(&t, next(), 0x0057, &solicit),
        );
        assert_eq!((verdict, c.get(Stat::XdpLink6)), (XDP_PASS, 1));

        // Drops, each with its reason; none moves the session's counters.
        let spoofed = udp6(a("2001:db8:0:8::1"), server6(), 64, 10);
        let ll = a("fe80::1");
        let link_udp = ipv6(ll, a("ff02::fb"), IPPROTO_UDP, 1, &udp(5353, 5353, b"mdns"));
        let mut short = udp6(client6(), server6(), 64, 10);
        short[5] += 40; // payload length past the frame
        let mut v4_in_v6 = udp6(client6(), server6(), 64, 10);
        v4_in_v6[0] = 0x45;
        let cases: Vec<(&str, Vec<u8>, DropReason)> = vec![
            ("another /64", spoofed, DropReason::SpoofedInnerSource6),
            (
                "link traffic that is neither ICMPv6 nor DHCPv6",
                link_udp,
                DropReason::SpoofedInnerSource6,
            ),
            (
                "payload length past the frame",
                short,
                DropReason::InnerMalformed,
            ),
            ("not version 6", v4_in_v6, DropReason::InnerMalformed),
        ];
        for (name, packet, reason) in cases {
            let (verdict, _, c) = xdp_run(
                &dp,
                PROG_XDP_DECAP,
                &from_client(&t, next(), 0x0057, &packet),
            );
            assert_eq!(verdict, XDP_DROP, "{name}");
            assert_eq!(c.dropped(reason), 1, "{name}");
        }
        assert_eq!(dp.session_stats(3).unwrap().rx_packets, 2);
    });
}

#[test]
fn a_delegated_prefix_is_a_source_and_a_destination() {
    require_root();
    let t = topology("v6p");
    t.gw.enter(|| {
        let mut dp = load(&t, false);
        // (prefix, length, a host inside behind the CPE, the next prefix over: not the client's).
        let cases = [
            (
                [0x20, 0x01, 0x0d, 0xb8, 0, 1, 0, 9],
                64,
                "2001:db8:1:9::42",
                "2001:db8:1:a::42",
            ),
            // A /56 (what ISPs commonly give a CPE): any of its 256 /64s, found by the
            // longest-prefix match.
            (
                [0x20, 0x01, 0x0d, 0xb8, 0, 1, 0x09, 0],
                56,
                "2001:db8:1:9ab::42",
                "2001:db8:1:a00::42",
            ),
        ];
        for (n, (delegated, len, inside, outside)) in cases.into_iter().enumerate() {
            let seq = n as u32 * 10;
            let session = Session {
                prefix6: PREFIX,
                delegated6: delegated,
                delegated6_len: len,
                ..kernel::session(3, DIALLED, CLIENT, CALL, ASSIGNED, STATE_UP)
            };
            dp.install_session(&session).unwrap();
            let behind = a(inside);
            let data = udp6(behind, server6(), 63, 100);
            let (verdict, out, _) = xdp_run(
                &dp,
                PROG_XDP_DECAP,
                &from_client(&t, seq + 1, 0x0057, &data),
            );
            assert_eq!(verdict, XDP_REDIRECT, "/{len}");
            assert_eq!(out, ethernet(PPTP0_MAC, PPTP0_PEER_MAC, ETH_P_IPV6, &data));
            let spoofed = udp6(a(outside), server6(), 63, 100);
            let (verdict, _, c) = xdp_run(
                &dp,
                PROG_XDP_DECAP,
                &from_client(&t, seq + 2, 0x0057, &spoofed),
            );
            assert_eq!(
                (verdict, c.dropped(DropReason::SpoofedInnerSource6)),
                (XDP_DROP, 1),
                "/{len}"
            );
            // Towards the host behind the client: encapsulated to the session; the prefix
            // next to it leads nowhere.
            let back = udp6(server6(), behind, 63, 100);
            let (verdict, out, c) = xdp_run(
                &dp,
                PROG_XDP_ENCAP,
                &ethernet(PPTP0_PEER_MAC, PPTP0_MAC, ETH_P_IPV6, &back),
            );
            assert_eq!(
                (verdict, c.get(Stat::Encapsulated6)),
                (XDP_REDIRECT, 1),
                "/{len}: {:?}",
                c.named_drops()
            );
            assert_eq!(&out[out.len() - back.len()..], &back[..]);
            let stray = udp6(server6(), a(outside), 63, 100);
            let (_, _, c) = xdp_run(
                &dp,
                PROG_XDP_ENCAP,
                &ethernet(PPTP0_PEER_MAC, PPTP0_MAC, ETH_P_IPV6, &stray),
            );
            assert_eq!(c.get(Stat::Encapsulated6), 0, "/{len}");
            // Released (the session stays): the prefix stops leading to it.
            dp.unprogram_delegated(delegated, len).unwrap();
            let (_, _, c) = xdp_run(
                &dp,
                PROG_XDP_ENCAP,
                &ethernet(PPTP0_PEER_MAC, PPTP0_MAC, ETH_P_IPV6, &back),
            );
            assert_eq!(c.get(Stat::Encapsulated6), 0, "/{len}");
            // Removed with the session: neither prefix leads anywhere.
            dp.update_session(&session).unwrap();
            assert_eq!(dp.clients6_entries().unwrap(), 2);
            dp.remove_session(&session).unwrap();
            assert_eq!(dp.clients6_entries().unwrap(), 0, "/{len}");
        }
    });
}

#[test]
fn a_session_without_a_prefix_carries_no_ipv6() {
    require_root();
    let t = topology("v6n");
    t.gw.enter(|| {
        let mut dp = load(&t, false);
        let s = kernel::session(3, DIALLED, CLIENT, CALL, ASSIGNED, STATE_UP);
        dp.update_session(&s).unwrap();
        dp.unprogram6(PREFIX).unwrap();
        let data = udp6(client6(), server6(), 64, 10);
        let (verdict, _, c) = xdp_run(&dp, PROG_XDP_DECAP, &from_client(&t, 1, 0x0057, &data));
        assert_eq!(
            (verdict, c.dropped(DropReason::SpoofedInnerSource6)),
            (XDP_DROP, 1)
        );
        let towards = ethernet(
            PPTP0_PEER_MAC,
            PPTP0_MAC,
            ETH_P_IPV6,
            &udp6(server6(), client6(), 64, 10),
        );
        let (verdict, _, c) = xdp_run(&dp, PROG_XDP_ENCAP, &towards);
        assert_eq!((verdict, c.dropped(DropReason::NoSession6)), (XDP_DROP, 1));
        assert_eq!(dp.clients6_entries().unwrap(), 0);
    });
}

#[test]
fn an_ipv6_only_session_carries_no_ipv4() {
    require_root();
    let t = topology("v6o");
    t.gw.enter(|| {
        // The client refused IPCP: no IPv4 address (0.0.0.0), its /64 only.
        let (mut dp, s) = load_with(&t, false, Ipv4Addr::UNSPECIFIED);
        assert_eq!(dp.session_entries().unwrap(), (1, 0), "no IPv4 lookup");
        assert_eq!(dp.clients6_entries().unwrap(), 1);
        // IPv6 from its /64 is carried.
        let data = udp6(client6(), server6(), 64, 10);
        let (verdict, _, _) = xdp_run(&dp, PROG_XDP_DECAP, &from_client(&t, 1, 0x0057, &data));
        assert_eq!(verdict, XDP_REDIRECT);
        // IPv4 is not, not even from the unspecified address it "has".
        for src in [Ipv4Addr::UNSPECIFIED, ASSIGNED] {
            let v4 = ipv4(
                src,
                Ipv4Addr::new(10, 0, 0, 5),
                IPPROTO_UDP,
                &udp(5000, 53, b"q"),
            );
            let (verdict, _, c) = xdp_run(&dp, PROG_XDP_DECAP, &from_client(&t, 2, 0x0021, &v4));
            assert_eq!(
                (verdict, c.dropped(DropReason::SpoofedInnerSource)),
                (XDP_DROP, 1),
                "from {src}"
            );
        }
        assert_eq!(dp.session_stats(3).unwrap().rx_packets, 1);
        dp.remove_session(&s).unwrap();
        assert_eq!(dp.session_entries().unwrap(), (0, 0));
        assert_eq!(dp.clients6_entries().unwrap(), 0);
    });
}

#[test]
fn encapsulates_towards_the_prefix_and_the_controllers_own_packets() {
    require_root();
    let t = topology("v6e");
    t.gw.enter(|| {
        let dp = load(&t, false);
        // The client's LCP frame (seq 5) arrives first: it is the ack we send.
        xdp_run(
            &dp,
            PROG_XDP_DECAP,
            &from_client(&t, 5, 0xc021, &[9, 1, 0, 8, 1, 2, 3, 4]),
        );
        let expect = |seq: u32, inner: &[u8], out: &[u8]| {
            assert_eq!(&out[0..6], &t.router_mac, "to the uplink's router");
            assert_eq!(
                &out[14 + 12..14 + 20],
                &[DIALLED.octets(), CLIENT.octets()].concat()
            );
            let gre = &out[34..];
            assert_eq!(&gre[..4], &[0x30, 0x81, 0x88, 0x0b]);
            assert_eq!(
                u16::from_be_bytes([gre[4], gre[5]]) as usize,
                4 + inner.len()
            );
            assert_eq!(
                &gre[8..16],
                &[seq.to_be_bytes(), 5u32.to_be_bytes()].concat()
            );
            assert_eq!(&gre[16..20], &[0xff, 0x03, 0x00, 0x57]);
            assert_eq!(&gre[20..], inner);
        };

        let data = udp6(server6(), client6(), 63, 200);
        let frame = ethernet(PPTP0_PEER_MAC, PPTP0_MAC, ETH_P_IPV6, &data);
        let (verdict, out, c) = xdp_run(&dp, PROG_XDP_ENCAP, &frame);
        assert_eq!(verdict, XDP_REDIRECT);
        assert_eq!(
            (c.get(Stat::Encapsulated), c.get(Stat::Encapsulated6)),
            (1, 1)
        );
        expect(0, &data, &out);

        // The controller's Router Advertisement (to ff02::1), handed in with the /64 in front.
        let src = a("fe80::1");
        let ra = ipv6(
            src,
            a("ff02::1"),
            IPPROTO_ICMPV6,
            255,
            &icmpv6(
                src,
                a("ff02::1"),
                134,
                &[64, 0, 7, 8, 0, 0, 0, 0, 0, 0, 0, 0],
            ),
        );
        let mut body = PREFIX.to_vec();
        body.extend_from_slice(&ra);
        let frame = ethernet(PPTP0_PEER_MAC, PPTP0_MAC, ETH_P_CONTROLLER6, &body);
        let (verdict, out, c) = xdp_run(&dp, PROG_XDP_ENCAP, &frame);
        assert_eq!((verdict, c.get(Stat::Encapsulated6)), (XDP_REDIRECT, 1));
        expect(1, &ra, &out);

        // A SYN towards the client is clamped to 1340 as well.
        let syn = ipv6(
            server6(),
            client6(),
            6,
            64,
            &tcp6_syn(server6(), client6(), 1460),
        );
        let (_, out, _) = xdp_run(
            &dp,
            PROG_XDP_ENCAP,
            &ethernet(PPTP0_PEER_MAC, PPTP0_MAC, ETH_P_IPV6, &syn),
        );
        let tcp = &out[34 + 20 + 40..];
        assert_eq!(u16::from_be_bytes([tcp[22], tcp[23]]), 1340);
        assert_eq!(checksum6(server6(), client6(), 6, tcp), 0);

        let cases: Vec<(&str, Vec<u8>, DropReason)> = vec![
            (
                "another /64",
                ethernet(
                    PPTP0_PEER_MAC,
                    PPTP0_MAC,
                    ETH_P_IPV6,
                    &udp6(server6(), a("2001:db8:0:8::1"), 64, 10),
                ),
                DropReason::NoSession6,
            ),
            (
                "the kernel's own multicast on pptp0",
                ethernet(
                    [0x33, 0x33, 0, 0, 0, 0x16],
                    PPTP0_MAC,
                    ETH_P_IPV6,
                    &ipv6(
                        a("fe80::9"),
                        a("ff02::16"),
                        IPPROTO_ICMPV6,
                        1,
                        &icmpv6(a("fe80::9"), a("ff02::16"), 143, &[0; 4]),
                    ),
                ),
                DropReason::NotIpv4,
            ),
            (
                "larger than the tunnel",
                ethernet(
                    PPTP0_PEER_MAC,
                    PPTP0_MAC,
                    ETH_P_IPV6,
                    &udp6(server6(), client6(), 64, 1400),
                ),
                DropReason::TooBig,
            ),
            (
                "a controller frame for no session",
                ethernet(
                    PPTP0_PEER_MAC,
                    PPTP0_MAC,
                    ETH_P_CONTROLLER6,
                    &[[0x20, 1, 0xd, 0xb8, 9, 9, 9, 9].as_slice(), &ra].concat(),
                ),
                DropReason::NoSession6,
            ),
        ];
        for (name, frame, reason) in cases {
            let (verdict, _, c) = xdp_run(&dp, PROG_XDP_ENCAP, &frame);
            assert_eq!(verdict, XDP_DROP, "{name}");
            assert_eq!(c.dropped(reason), 1, "{name}");
        }
        let st = dp.session_stats(3).unwrap();
        assert_eq!(st.tx_packets, 3);
    });
}

#[test]
fn xdp_mode_forwards_ipv6_with_the_hop_limit() {
    require_root();
    let t = topology("v6f");
    t.gw.enter(|| {
        let dp = load(&t, true);
        // Decapsulated and forwarded to the LAN server by the FIB: hop limit 64 → 63.
        let data = udp6(client6(), server6(), 64, 100);
        let decapped = ethernet(PPTP0_MAC, PPTP0_PEER_MAC, ETH_P_IPV6, &data);
        let (verdict, out, c) = xdp_run(&dp, PROG_XDP_FORWARD, &decapped);
        assert_eq!((verdict, c.get(Stat::ForwardXdp)), (XDP_REDIRECT, 1));
        assert_eq!(&out[0..12], &[SERVER_MAC, t.lan_mac].concat());
        assert_eq!(out[14 + 7], 63);
        assert_eq!(&out[14 + 8..], &data[8..], "nothing else changed");
        // Hop limit 1: the stack's (it sends Time Exceeded).
        let expiring = ethernet(
            PPTP0_MAC,
            PPTP0_PEER_MAC,
            ETH_P_IPV6,
            &udp6(client6(), server6(), 1, 10),
        );
        let (verdict, _, c) = xdp_run(&dp, PROG_XDP_FORWARD, &expiring);
        assert_eq!((verdict, c.get(Stat::ForwardStack)), (XDP_REDIRECT, 1));

        // From the LAN to the client: encapsulated there, hop limit decremented; an expiring
        // one is the stack's.
        xdp_run(
            &dp,
            PROG_XDP_DECAP,
            &from_client(&t, 5, 0xc021, &[9, 1, 0, 8, 1, 2, 3, 4]),
        );
        let back = udp6(server6(), client6(), 64, 100);
        let (verdict, out, c) = xdp_run(
            &dp,
            PROG_XDP_LAN,
            &ethernet(t.lan_mac, SERVER_MAC, ETH_P_IPV6, &back),
        );
        assert_eq!((verdict, c.get(Stat::Encapsulated6)), (XDP_REDIRECT, 1));
        let inner = &out[14 + 20 + 16 + 4..];
        assert_eq!(inner[7], 63);
        assert_eq!(&inner[8..], &back[8..]);
        let (verdict, _, c) = xdp_run(
            &dp,
            PROG_XDP_LAN,
            &ethernet(
                t.lan_mac,
                SERVER_MAC,
                ETH_P_IPV6,
                &udp6(server6(), client6(), 1, 10),
            ),
        );
        assert_eq!((verdict, c.get(Stat::LanPassed)), (XDP_PASS, 1));
    });
}
