//! `[forwarding] mode = "xdp"` end to end: the real `pptpgw` with XDP forwarding between its WAN
//! (`wan0`) and LAN (`lan0`) interfaces, the project's client. Client traffic is forwarded by
//! `pptp_forward` and the server's by `pptp_lan` (neither crosses `pptp0`), while what XDP should
//! not decide still reaches the stack: the first packet to an unresolved neighbour, packets too
//! big for the next link (the stack's ICMP comes back), and everything is still checked (spoofed
//! sources) and clamped (MSS) as in `stack` mode.

use std::{
    net::Ipv4Addr,
    os::fd::{AsRawFd as _, FromRawFd as _, OwnedFd},
    time::{Duration, Instant},
};

use pptp_client::{dial, gre::GreMux, packet};
use pptp_tests::{
    frames::tcp_syn,
    gateway::{Rig, SECRETS, SERVER, XDP_FORWARDING, config_mppe, dial_config, num, rt},
    require_root,
    transfer::{Moved, TRANSFER, tcp_both_ways},
};
use pptp_user::wire::lcp::AuthProtocol;

#[test]
fn each_auth_method_pings_and_moves_tcp_both_ways() {
    require_root();
    let rig = Rig::start("xdpauth", &config_mppe("allow", XDP_FORWARDING), SECRETS);
    let cases = [
        (AuthProtocol::MsChapV2, true),
        (AuthProtocol::MsChapV2, false),
        (AuthProtocol::ChapMd5, false),
        (AuthProtocol::Pap, false),
    ];
    for (i, (method, mppe)) in cases.into_iter().enumerate() {
        let before = rig.stats();
        let mut cfg = dial_config(&rig, "alice", "s3cret", 0x700 + i as u16);
        cfg.peer.methods = vec![method];
        cfg.peer.mppe = mppe;
        let moved = tcp_both_ways(&rig, cfg, 5001 + i as u16);
        let after = rig.stats();
        let d = |path: &[&str]| num(&after, path) - num(&before, path);
        assert_eq!(
            moved,
            Moved {
                pings: 3,
                up: TRANSFER,
                down: TRANSFER,
                encrypted: mppe,
                stateful: false,
            },
            "{method:?} mppe {mppe}: {after}\n{}",
            rig.log()
        );
        // ~3,000 full-sized segments each way, every one forwarded by XDP: up by the forward
        // stage, down by the LAN program; none of them through pptp0.
        let segments = (TRANSFER / 1400) as u64;
        assert!(d(&["datapath", "forward_xdp"]) >= segments, "{after}");
        assert!(d(&["datapath", "lan_seen"]) >= segments, "{after}");
        assert!(d(&["datapath", "encapsulated"]) >= segments, "{after}");
        // Only the first packets (the LAN neighbour, resolved by the stack once) and none of the
        // transfer took the stack.
        assert!(d(&["datapath", "forward_stack"]) <= 2, "{after}");
        assert_eq!(num(&after, &["controller", "slowpath_data_frames"]), 0);
        rig.assert_clean();
        eprintln!(
            "{method:?} mppe {mppe}: {} forwarded by XDP up, {} encapsulated down",
            d(&["datapath", "forward_xdp"]),
            d(&["datapath", "encapsulated"])
        );
    }
}

/// A raw TCP socket in the server's namespace: a copy of every TCP segment arriving there.
fn tcp_tap(rig: &Rig) -> OwnedFd {
    rig.server.enter(|| {
        // SAFETY: plain socket(2); owned at once.
        let fd = unsafe { libc::socket(libc::AF_INET, libc::SOCK_RAW, libc::IPPROTO_TCP) };
        assert!(fd >= 0, "raw TCP socket");
        // SAFETY: `fd` was just returned by socket(2).
        let fd = unsafe { OwnedFd::from_raw_fd(fd) };
        let tv = libc::timeval {
            tv_sec: 0,
            tv_usec: 200_000,
        };
        // SAFETY: valid socket and option value.
        unsafe {
            libc::setsockopt(
                fd.as_raw_fd(),
                libc::SOL_SOCKET,
                libc::SO_RCVTIMEO,
                (&raw const tv).cast(),
                size_of::<libc::timeval>() as u32,
            )
        };
        fd
    })
}

/// The MSS option of the first SYN from `src` the tap sees within 2 s.
fn syn_mss(tap: &OwnedFd, src: Ipv4Addr) -> Option<u16> {
    let deadline = Instant::now() + Duration::from_secs(2);
    let mut buf = [0u8; 2048];
    while Instant::now() < deadline {
        // SAFETY: `buf` is writable for its length.
        let n = unsafe { libc::recv(tap.as_raw_fd(), buf.as_mut_ptr().cast(), buf.len(), 0) };
        if n <= 0 {
            continue;
        }
        let p = &buf[..n as usize];
        if let Some(mss) = mss_of_syn(p).filter(|_| p[12..16] == src.octets()) {
            return Some(mss);
        }
    }
    None
}

/// The MSS option of a TCP SYN in IPv4 (first option only, as every common stack sends it).
fn mss_of_syn(ip: &[u8]) -> Option<u16> {
    let ihl = usize::from(ip.first()? & 0x0f) * 4;
    let tcp = ip.get(ihl..)?;
    if ip.get(9) != Some(&6) || tcp.get(13)? & 0x02 == 0 {
        return None;
    }
    let opt = tcp.get(20..24)?;
    (opt[0] == 2 && opt[1] == 4).then(|| u16::from_be_bytes([opt[2], opt[3]]))
}

#[test]
fn the_stack_takes_what_xdp_should_not_decide_and_checks_still_apply() {
    require_root();
    let rig = Rig::start("xdpedge", &config_mppe("deny", XDP_FORWARDING), SECRETS);
    // Nothing has resolved the server's address on the gateway's LAN yet.
    rig.gw.ip(&["neigh", "flush", "dev", "lan0"]);
    let tap = tcp_tap(&rig);
    // A listener, so that the server answers the SYN below with a SYN-ACK (MSS 1460 on s0).
    let listener = rig
        .server
        .enter(|| std::net::TcpListener::bind((SERVER, 80)).expect("listen"));
    // The API is asked from a thread of its own (the test's runtime is busy with the session).
    let stats = || std::thread::scope(|sc| sc.spawn(|| rig.stats()).join().unwrap());
    let d = |after: &serde_json::Value, before: &serde_json::Value, path: &[&str]| {
        num(after, path) - num(before, path)
    };
    rig.client.enter(|| {
        rt().block_on(async {
            let mux = GreMux::open().unwrap();
            let mut s = dial(dial_config(&rig, "alice", "s3cret", 0x900), &mux)
                .await
                .unwrap_or_else(|e| panic!("dial: {e}\n{}", rig.log()));
            let me = s.info.network.address;

            // 1. The first packet to an unresolved neighbour goes through the stack (which
            //    resolves it), the next ones take XDP.
            let before = stats();
            let first = s.ping(SERVER, 1, Duration::from_secs(2)).await.received;
            let mid = stats();
            let rest = s.ping(SERVER, 4, Duration::from_secs(2)).await.received;
            let after = stats();
            assert_eq!((first, rest), (1, 4), "{after}");
            assert_eq!(d(&mid, &before, &["datapath", "forward_stack"]), 1, "{mid}");
            assert_eq!(d(&mid, &before, &["datapath", "forward_xdp"]), 0, "{mid}");
            assert_eq!(d(&after, &mid, &["datapath", "forward_xdp"]), 4, "{after}");
            assert_eq!(
                d(&after, &mid, &["datapath", "forward_stack"]),
                0,
                "{after}"
            );

            // 2. A spoofed inner source is dropped before forwarding.
            let before = stats();
            for seq in 0..5 {
                s.send_ip(packet::echo_request(
                    Ipv4Addr::new(10, 99, 0, 200),
                    SERVER,
                    0x77,
                    seq,
                    8,
                ));
            }
            tokio::time::sleep(Duration::from_millis(300)).await;
            let after = stats();
            assert_eq!(
                d(&after, &before, &["drops", "spoofed_inner_source"]),
                5,
                "{after}"
            );
            assert_eq!(
                d(&after, &before, &["datapath", "forward_xdp"]),
                0,
                "{after}"
            );

            // 3. MSS clamped both ways: the client's SYN says 1460 and the server sees 1360; the
            //    server's SYN-ACK says 1460 and the client sees 1360.
            s.send_ip(packet::ipv4(me, SERVER, 6, &tcp_syn(me, SERVER, 1460)));
            // Let the session send it (the tap's socket keeps what arrives meanwhile).
            tokio::time::sleep(Duration::from_millis(200)).await;
            assert_eq!(syn_mss(&tap, me), Some(1360), "{}", stats());
            let deadline = Instant::now() + Duration::from_secs(2);
            let mut syn_ack = None;
            while let Some(left) = deadline.checked_duration_since(Instant::now()) {
                match s.recv_ip(left).await {
                    Some(p) if mss_of_syn(&p).is_some() => {
                        syn_ack = mss_of_syn(&p);
                        break;
                    }
                    Some(_) => {}
                    None => break,
                }
            }
            assert_eq!(syn_ack, Some(1360), "the server's SYN-ACK, clamped");

            // 4. Too big for the LAN link (MTU 1200 now), DF set: the forward stage leaves it to
            //    the stack, whose Fragmentation Needed comes back through the tunnel.
            rig.gw.ip(&["link", "set", "lan0", "mtu", "1200"]);
            let before = stats();
            let mut big = packet::echo_request(me, SERVER, 0x79, 1, 1272);
            big[6] = 0x40; // DF
            big[10..12].copy_from_slice(&[0, 0]);
            let c = packet::checksum(&big[..20]);
            big[10..12].copy_from_slice(&c.to_be_bytes());
            s.send_ip(big);
            let deadline = Instant::now() + Duration::from_secs(2);
            let mut icmp = None;
            while let Some(left) = deadline.checked_duration_since(Instant::now()) {
                match s.recv_ip(left).await {
                    Some(p) if p.len() >= 28 && p[9] == 1 && p[20] == 3 => {
                        icmp = Some((p[21], u16::from_be_bytes([p[26], p[27]])));
                        break;
                    }
                    Some(_) => {}
                    None => break,
                }
            }
            assert_eq!(
                icmp,
                Some((4, 1200)),
                "Fragmentation Needed, next-hop MTU 1200"
            );
            let after = stats();
            assert_eq!(
                d(&after, &before, &["datapath", "forward_stack"]),
                1,
                "{after}"
            );
            rig.gw.ip(&["link", "set", "lan0", "mtu", "1500"]);

            // 5. Too big for the tunnel from the server's side (DF, 1450 bytes for a 1400-byte
            //    tunnel): the LAN program passes it, the stack answers Fragmentation Needed and
            //    the server's kernel learns the path MTU.
            let before = stats();
            let pmtu = rig.server.enter(|| udp_path_mtu(me));
            let after = stats();
            assert_eq!(pmtu, Some(1400), "{after}");
            assert!(
                d(&after, &before, &["datapath", "lan_passed"]) >= 1,
                "{after}"
            );

            // The session is unharmed by all of it.
            assert_eq!(s.ping(SERVER, 3, Duration::from_secs(2)).await.received, 3);
            s.hangup().await;
        })
    });
    drop(listener);
    rig.assert_clean();
}

/// Sends a 1450-byte UDP datagram with DF to `dst` and waits (2 s at most) for the kernel to
/// learn a smaller path MTU from an ICMP answer; returns what it learned.
fn udp_path_mtu(dst: Ipv4Addr) -> Option<u32> {
    let sock = std::net::UdpSocket::bind("0.0.0.0:0").expect("udp");
    sock.connect((dst, 9)).expect("connect");
    let on: libc::c_int = libc::IP_PMTUDISC_DO;
    // SAFETY: valid socket and option value.
    unsafe {
        libc::setsockopt(
            sock.as_raw_fd(),
            libc::IPPROTO_IP,
            libc::IP_MTU_DISCOVER,
            (&raw const on).cast(),
            size_of::<libc::c_int>() as u32,
        )
    };
    let _ = sock.send(&[0u8; 1450 - 28]);
    let deadline = Instant::now() + Duration::from_secs(2);
    while Instant::now() < deadline {
        let mut mtu: libc::c_int = 0;
        let mut len = size_of::<libc::c_int>() as u32;
        // SAFETY: valid socket, writable value of `len` bytes.
        let rc = unsafe {
            libc::getsockopt(
                sock.as_raw_fd(),
                libc::IPPROTO_IP,
                libc::IP_MTU,
                (&raw mut mtu).cast(),
                &mut len,
            )
        };
        if rc == 0 && mtu < 1500 {
            return Some(mtu as u32);
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    None
}
