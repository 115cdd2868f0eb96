//! The data path end to end through real kernel forwarding: client namespace ↔ gateway namespace
//! (XDP decap on the WAN veth, `pptp0` made by the controller's own code, a projected route, XDP
//! encap on `pptp0`'s peer) ↔ server namespace. A hand-made PPTP data packet from the client
//! reaches a UDP socket in the server namespace; the server's reply comes back to the client as
//! enhanced GRE with the client's call ID, the session's sequence number and our ack.

use std::{
    net::{Ipv4Addr, SocketAddrV4, UdpSocket},
    time::Duration,
};

use aya::programs::XdpMode;
use pptp_common::{
    session::{DatapathConfig, STATE_UP},
    stats::Stat,
};
use pptp_tests::{
    frames::*,
    kernel,
    netns::{Netns, run_ok, veth_pair},
    require_root,
    sockets::{GreReceiver, PacketSender},
};
use pptp_user::{
    kernel::{datapath::Datapath, netdev, route},
    wire::{
        gre::GreHeader,
        ppp::{PppFrame, proto},
    },
};

const CLIENT_OUTER: Ipv4Addr = Ipv4Addr::new(198, 51, 100, 7);
const GW_WAN: Ipv4Addr = Ipv4Addr::new(198, 51, 100, 1);
const ASSIGNED: Ipv4Addr = Ipv4Addr::new(10, 99, 0, 10);
const SERVER: Ipv4Addr = Ipv4Addr::new(203, 0, 113, 5);

fn rt() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap()
}

#[test]
fn client_to_server_and_back_through_xdp() {
    require_root();
    let cl = Netns::new("e2ecl");
    let gw = Netns::new("e2egw");
    let srv = Netns::new("e2esrv");
    let (c0, wan0) = veth_pair(&cl, "c0", &gw, "wan0", 0x31);
    veth_pair(&gw, "lan0", &srv, "s0", 0x32);
    cl.ip(&["addr", "add", "198.51.100.7/24", "dev", "c0"]);
    gw.ip(&["addr", "add", "198.51.100.1/24", "dev", "wan0"]);
    gw.ip(&["addr", "add", "203.0.113.1/24", "dev", "lan0"]);
    srv.ip(&["addr", "add", "203.0.113.5/24", "dev", "s0"]);
    srv.ip(&["route", "add", "default", "via", "203.0.113.1"]);
    run_ok(gw.command("sysctl").args(["-qw", "net.ipv4.ip_forward=1"]));
    // Frames redirected into c0's peer need NAPI on c0: GRO on (the client has no XDP).
    run_ok(cl.command("ethtool").args(["-K", "c0", "gro", "on"]));
    // The gateway's neighbour entry for the client, as the control connection would have made it.
    gw.ip(&[
        "neigh",
        "replace",
        "198.51.100.7",
        "lladdr",
        &pptp_tests::netns::fmt_mac(&c0.mac),
        "dev",
        "wan0",
    ]);

    let session = kernel::session(0, GW_WAN, CLIENT_OUTER, 0x4000, ASSIGNED, STATE_UP);
    let (dp, pptp0) = gw.enter(|| {
        rt().block_on(async {
            let (conn, handle, _) = rtnetlink::new_connection().unwrap();
            tokio::spawn(conn);
            let pptp0 = netdev::create(&handle, "pptp0", 1400)
                .await
                .expect("create pptp0");
            let mut dp = Datapath::load().expect("load");
            dp.attach_xdp("wan0", XdpMode::Driver).unwrap();
            dp.attach_encap(&pptp0.peer_name).unwrap();
            dp.attach_pass(&pptp0.name).unwrap();
            dp.set_config(&DatapathConfig {
                pptp0_peer_ifindex: pptp0.peer_ifindex,
                pptp0_mac: pptp0.mac,
                pptp0_peer_mac: pptp0.peer_mac,
                enabled: 1,
                reorder_window: 0,
                pptp0_ifindex: 0,
                steer_cpus: 0,
            })
            .unwrap();
            dp.install_session(&session).unwrap();
            route::project(&handle, ASSIGNED, pptp0.ifindex)
                .await
                .unwrap();
            (dp, pptp0)
        })
    });

    let server = srv.enter(|| {
        let s = UdpSocket::bind(SocketAddrV4::new(SERVER, 7)).unwrap();
        s.set_read_timeout(Some(Duration::from_secs(3))).unwrap();
        s
    });
    let client_rx = cl.enter(|| GreReceiver::new(Duration::from_secs(3)).unwrap());

    // The client: an LCP echo (seq 0, as LCP would have been), then a UDP datagram in PPP (seq 1).
    cl.enter(|| {
        let tx = PacketSender::new("c0").unwrap();
        let lcp = gre_v1(
            0x4000,
            Some(0),
            None,
            &[0xff, 0x03, 0xc0, 0x21, 9, 1, 0, 8, 1, 2, 3, 4],
        );
        tx.send(&ethernet(
            wan0.mac,
            c0.mac,
            ETH_P_IP,
            &ipv4(CLIENT_OUTER, GW_WAN, IPPROTO_GRE, &lcp),
        ))
        .unwrap();
        let inner = ipv4(
            ASSIGNED,
            SERVER,
            IPPROTO_UDP,
            &udp(5000, 7, b"ping through pptpgw"),
        );
        let mut ppp = vec![0xff, 0x03, 0x00, 0x21];
        ppp.extend_from_slice(&inner);
        let data = gre_v1(0x4000, Some(1), None, &ppp);
        tx.send(&ethernet(
            wan0.mac,
            c0.mac,
            ETH_P_IP,
            &ipv4(CLIENT_OUTER, GW_WAN, IPPROTO_GRE, &data),
        ))
        .unwrap();
    });

    let mut buf = [0u8; 2048];
    let (n, from) = server
        .recv_from(&mut buf)
        .expect("the server got the client's datagram");
    assert_eq!(&buf[..n], b"ping through pptpgw");
    assert_eq!(from.to_string(), "10.99.0.10:5000");
    srv.enter(|| server.send_to(b"pong from the server", from).unwrap());

    // The client receives the reply as enhanced GRE (its raw socket also sees the LCP frame the
    // controller would answer; look for the data packet).
    let mut reply = None;
    for _ in 0..8 {
        let Some(pkt) = client_rx.recv().unwrap() else {
            break;
        };
        let ihl = usize::from(pkt[0] & 0x0f) * 4;
        assert_eq!(
            &pkt[12..16],
            &GW_WAN.octets(),
            "sourced from the dialled address"
        );
        let (h, payload) = GreHeader::parse(&pkt[ihl..]).expect("valid enhanced GRE");
        let (frame, _) = PppFrame::parse(payload).unwrap();
        if frame.protocol == proto::IPV4 {
            reply = Some((h, frame.info.to_vec()));
            break;
        }
    }
    let (h, inner) = reply.expect("an encapsulated reply");
    assert_eq!(h.call_id, 0x0080, "the client's call ID");
    assert_eq!(
        (h.seq, h.ack),
        (Some(0), Some(1)),
        "first sequence number, acking the client's data"
    );
    assert_eq!(&inner[12..16], &SERVER.octets());
    assert_eq!(&inner[16..20], &ASSIGNED.octets());
    assert_eq!(&inner[28..], b"pong from the server");

    // One sequence space: the controller takes the next number from the shared page (the
    // program used 0), and the program's next packet continues after it.
    let seq = dp.seq_space().expect("mmap GRE_STATE");
    assert_eq!(seq.rx_highest(0), Some(1));
    assert_eq!(seq.ack_sent(0), Some(1));
    assert_eq!(seq.next_tx(0), Some(1));
    srv.enter(|| server.send_to(b"second", from).unwrap());
    let mut second = None;
    for _ in 0..8 {
        let Some(pkt) = client_rx.recv().unwrap() else {
            break;
        };
        let ihl = usize::from(pkt[0] & 0x0f) * 4;
        let (h, payload) = GreHeader::parse(&pkt[ihl..]).unwrap();
        if PppFrame::parse(payload).unwrap().0.protocol == proto::IPV4 {
            second = h.seq;
            break;
        }
    }
    assert_eq!(
        second,
        Some(2),
        "the program continued after the controller's number"
    );

    let c = dp.counters().unwrap();
    assert_eq!(c.get(Stat::XdpDecap), 1, "{c:?}");
    assert_eq!(c.get(Stat::Encapsulated), 2, "{c:?}");
    let st = dp.session_stats(0).unwrap();
    assert_eq!((st.rx_packets, st.tx_packets), (1, 2));
    drop(seq);
    drop(dp);
    let _ = pptp0;
}
