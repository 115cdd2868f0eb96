//! Kernel fixtures for session decapsulation: the real XDP program with a session programmed
//! through the controller's own `Datapath` API, run by BPF_PROG_TEST_RUN on captured-shape frames.

use std::net::Ipv4Addr;

use pptp_common::{
    maps::PROG_XDP_DECAP,
    session::{DatapathConfig, STATE_NEGOTIATING, STATE_UP, Session},
    stats::{DropReason, Stat},
};
use pptp_tests::{
    frames::*,
    kernel::{self, xdp_run},
    require_root,
};
use pptp_user::kernel::datapath::{Counters, Datapath};

const XDP_DROP: u32 = 1;
const XDP_PASS: u32 = 2;
const XDP_REDIRECT: u32 = 4;

const CLIENT: Ipv4Addr = Ipv4Addr::new(198, 51, 100, 7);
const SERVER: Ipv4Addr = Ipv4Addr::new(192, 0, 2, 1);
const ASSIGNED: Ipv4Addr = Ipv4Addr::new(10, 99, 0, 10);
const FAR: Ipv4Addr = Ipv4Addr::new(203, 0, 113, 5);
const WAN_MAC: [u8; 6] = [2, 0, 0, 0, 0, 1];
const CLIENT_MAC: [u8; 6] = [2, 0, 0, 0, 0, 2];
const PPTP0_MAC: [u8; 6] = [2, 0, 0, 0, 9, 1];
const PPTP0_PEER_MAC: [u8; 6] = [2, 0, 0, 0, 9, 2];
const CALL_ID: u16 = 0x4000;
const SLOT: u32 = 7;

fn session(state: u8) -> Session {
    kernel::session(SLOT, SERVER, CLIENT, CALL_ID, ASSIGNED, state)
}

fn gre_frame(
    from: Ipv4Addr,
    call_id: u16,
    seq: Option<u32>,
    ack: Option<u32>,
    ppp: &[u8],
) -> Vec<u8> {
    ethernet(
        WAN_MAC,
        CLIENT_MAC,
        ETH_P_IP,
        &ipv4(from, SERVER, IPPROTO_GRE, &gre_v1(call_id, seq, ack, ppp)),
    )
}

fn ppp_ip(inner: &[u8], compressed: bool) -> Vec<u8> {
    let mut p = if compressed {
        vec![0x21]
    } else {
        vec![0xff, 0x03, 0x00, 0x21]
    };
    p.extend_from_slice(inner);
    p
}

fn inner_udp(src: Ipv4Addr) -> Vec<u8> {
    ipv4(src, FAR, IPPROTO_UDP, &udp(5000, 53, b"query"))
}

struct Run {
    verdict: u32,
    out: Vec<u8>,
    delta: Counters,
}

fn run(dp: &Datapath, frame: &[u8]) -> Run {
    let (verdict, out, delta) = xdp_run(dp, PROG_XDP_DECAP, frame);
    Run {
        verdict,
        out,
        delta,
    }
}

fn loaded() -> Datapath {
    require_root();
    let mut dp = Datapath::load().expect("load");
    dp.set_config(&DatapathConfig {
        pptp0_peer_ifindex: 1,
        pptp0_mac: PPTP0_MAC,
        pptp0_peer_mac: PPTP0_PEER_MAC,
        enabled: 1,
        reorder_window: 0,
        pptp0_ifindex: 0,
        steer_cpus: 0,
    })
    .unwrap();
    dp
}

/// The reorder window in the program, as a table of arrivals: (sequence number, delivered or the
/// drop reason), run in order against one session; then the strict window (1) of pptp.ko.
#[test]
fn the_reorder_window_delivers_reordered_packets_once() {
    let mut dp = loaded();
    let inner = inner_udp(ASSIGNED);
    let table: &[(u32, Option<DropReason>)] = &[
        (100, None),
        (101, None),
        // Swapped.
        (103, None),
        (102, None),
        // Duplicated: the highest, and one inside the window.
        (103, Some(DropReason::SequenceDuplicate)),
        (102, Some(DropReason::SequenceDuplicate)),
        // Far ahead, then what the window still reaches and what it no longer does.
        (1000, None),
        (1000 - 63, None),
        (1000 - 64, Some(DropReason::SequenceLate)),
        (103, Some(DropReason::SequenceLate)),
        // Far behind by the serial arithmetic (more than half the space ahead).
        (
            1000u32.wrapping_add(1 << 31),
            Some(DropReason::SequenceLate),
        ),
    ];
    let check = |dp: &Datapath, table: &[(u32, Option<DropReason>)]| {
        for &(seq, expect) in table {
            let r = run(
                dp,
                &gre_frame(CLIENT, CALL_ID, Some(seq), None, &ppp_ip(&inner, true)),
            );
            match expect {
                None => assert_eq!((seq, r.verdict), (seq, XDP_REDIRECT), "{:?}", r.delta),
                Some(reason) => assert_eq!(
                    (seq, r.verdict, r.delta.dropped(reason)),
                    (seq, XDP_DROP, 1),
                    "{:?}",
                    r.delta.named_drops()
                ),
            }
        }
    };
    dp.install_session(&session(STATE_UP)).unwrap();
    check(&dp, table);
    assert_eq!(dp.gre_state(SLOT).unwrap().rx_highest, 1000);
    // Around 2^32: a fresh session starting just below the wrap.
    dp.install_session(&session(STATE_UP)).unwrap();
    check(
        &dp,
        &[
            (u32::MAX - 1, None),
            (1, None),
            (u32::MAX, None),
            (0, None),
            (u32::MAX, Some(DropReason::SequenceDuplicate)),
            (u32::MAX - 61, None),
            (u32::MAX - 62, Some(DropReason::SequenceLate)),
        ],
    );
    // Window 1: every late packet is dropped, as pptp.ko does.
    dp.set_config(&DatapathConfig {
        pptp0_peer_ifindex: 1,
        pptp0_mac: PPTP0_MAC,
        pptp0_peer_mac: PPTP0_PEER_MAC,
        enabled: 1,
        reorder_window: 1,
        pptp0_ifindex: 0,
        steer_cpus: 0,
    })
    .unwrap();
    dp.install_session(&session(STATE_UP)).unwrap();
    check(
        &dp,
        &[
            (10, None),
            (12, None),
            (11, Some(DropReason::SequenceLate)),
            (12, Some(DropReason::SequenceDuplicate)),
        ],
    );
}

#[test]
fn session_data_is_decapsulated_sequenced_and_checked() {
    let mut dp = loaded();
    dp.install_session(&session(STATE_UP)).unwrap();

    // Uncompressed PPP: out comes Ethernet(pptp0) + the inner packet, byte for byte.
    let inner = inner_udp(ASSIGNED);
    let r = run(
        &dp,
        &gre_frame(CLIENT, CALL_ID, Some(1), None, &ppp_ip(&inner, false)),
    );
    assert_eq!(r.verdict, XDP_REDIRECT);
    assert_eq!(r.out, ethernet(PPTP0_MAC, PPTP0_PEER_MAC, ETH_P_IP, &inner));
    assert_eq!(r.delta.get(Stat::XdpDecap), 1);
    let st = dp.session_stats(SLOT).unwrap();
    assert_eq!((st.rx_packets, st.rx_bytes), (1, inner.len() as u64));
    assert_eq!(dp.gre_state(SLOT).unwrap().rx_highest, 1);

    // ACFC + PFC, with an ack piggybacked.
    let r = run(
        &dp,
        &gre_frame(CLIENT, CALL_ID, Some(2), Some(9), &ppp_ip(&inner, true)),
    );
    assert_eq!(r.verdict, XDP_REDIRECT);
    assert_eq!(r.out, ethernet(PPTP0_MAC, PPTP0_PEER_MAC, ETH_P_IP, &inner));
    let g = dp.gre_state(SLOT).unwrap();
    assert_eq!((g.rx_highest, g.peer_ack), (2, 9));

    // A duplicate: dropped and counted.
    let r = run(
        &dp,
        &gre_frame(CLIENT, CALL_ID, Some(2), None, &ppp_ip(&inner, true)),
    );
    assert_eq!(
        (r.verdict, r.delta.dropped(DropReason::SequenceDuplicate)),
        (XDP_DROP, 1)
    );

    // A late LCP echo still reaches the slow path, without moving the sequence back.
    let echo = [0xff, 0x03, 0xc0, 0x21, 9, 1, 0, 8, 1, 2, 3, 4];
    let r = run(&dp, &gre_frame(CLIENT, CALL_ID, Some(1), None, &echo));
    assert_eq!(
        (r.verdict, r.delta.get(Stat::XdpSessionControl)),
        (XDP_PASS, 1)
    );
    assert_eq!(dp.gre_state(SLOT).unwrap().rx_highest, 2);
    // An in-order control frame moves it forward (one sequence space for data and control).
    let r = run(&dp, &gre_frame(CLIENT, CALL_ID, Some(5), None, &echo));
    assert_eq!(r.verdict, XDP_PASS);
    assert_eq!(dp.gre_state(SLOT).unwrap().rx_highest, 5);

    // Spoofed inner source.
    let r = run(
        &dp,
        &gre_frame(
            CLIENT,
            CALL_ID,
            Some(6),
            None,
            &ppp_ip(&inner_udp(Ipv4Addr::new(10, 99, 0, 11)), true),
        ),
    );
    assert_eq!(
        (r.verdict, r.delta.dropped(DropReason::SpoofedInnerSource)),
        (XDP_DROP, 1)
    );

    // From another outer address, or for another call ID: no session, dropped in XDP.
    for frame in [
        gre_frame(
            Ipv4Addr::new(198, 51, 100, 8),
            CALL_ID,
            Some(7),
            None,
            &ppp_ip(&inner, true),
        ),
        gre_frame(CLIENT, CALL_ID + 1, Some(7), None, &ppp_ip(&inner, true)),
    ] {
        let r = run(&dp, &frame);
        assert_eq!(
            (r.verdict, r.delta.dropped(DropReason::UnknownCall)),
            (XDP_DROP, 1)
        );
        assert_eq!(r.delta.get(Stat::XdpSlowPath), 0);
    }

    // Ack-only packets are consumed after recording the ack.
    let r = run(&dp, &gre_frame(CLIENT, CALL_ID, None, Some(20), &[]));
    assert_eq!(r.verdict, XDP_DROP);
    assert_eq!(r.delta.get(Stat::XdpSessionControl), 1);
    assert_eq!(dp.gre_state(SLOT).unwrap().peer_ack, 20);

    // Bad PPP address/control, and an inner packet longer than the GRE payload.
    let r = run(
        &dp,
        &gre_frame(
            CLIENT,
            CALL_ID,
            Some(8),
            None,
            &[0xff, 0x05, 0x00, 0x21, 0x45],
        ),
    );
    assert_eq!(
        (r.verdict, r.delta.dropped(DropReason::PppMalformed)),
        (XDP_DROP, 1)
    );
    let mut short = ppp_ip(&inner, true);
    short.truncate(short.len() - 3);
    let r = run(&dp, &gre_frame(CLIENT, CALL_ID, Some(9), None, &short));
    assert_eq!(
        (r.verdict, r.delta.dropped(DropReason::InnerMalformed)),
        (XDP_DROP, 1)
    );

    // Removed: its GRE is nobody's now (dropped, never passed up), and no entries left.
    dp.remove_session(&session(STATE_UP)).unwrap();
    dp.remove_session(&session(STATE_UP)).unwrap(); // idempotent
    assert_eq!(dp.session_entries().unwrap(), (0, 0));
    for (seq, ack) in [(Some(10), None), (None, Some(11))] {
        let payload = if seq.is_some() {
            ppp_ip(&inner, true)
        } else {
            Vec::new()
        };
        let r = run(&dp, &gre_frame(CLIENT, CALL_ID, seq, ack, &payload));
        assert_eq!(
            (r.verdict, r.delta.dropped(DropReason::UnknownCall)),
            (XDP_DROP, 1)
        );
    }
}

#[test]
fn tcp_syn_mss_is_clamped_with_a_valid_checksum() {
    let mut dp = loaded();
    dp.install_session(&session(STATE_UP)).unwrap();
    let syn = tcp_syn(ASSIGNED, FAR, 1460);
    let inner = ipv4(ASSIGNED, FAR, 6, &syn);
    let r = run(
        &dp,
        &gre_frame(CLIENT, CALL_ID, Some(1), None, &ppp_ip(&inner, true)),
    );
    assert_eq!(r.verdict, XDP_REDIRECT);
    let tcp = &r.out[14 + 20..];
    assert_eq!(u16::from_be_bytes([tcp[22], tcp[23]]), 1360);
    assert_eq!(tcp_checksum(ASSIGNED, FAR, tcp), 0, "checksum still valid");
    // A SYN already below the clamp is left alone.
    let inner = ipv4(ASSIGNED, FAR, 6, &tcp_syn(ASSIGNED, FAR, 1200));
    let r = run(
        &dp,
        &gre_frame(CLIENT, CALL_ID, Some(2), None, &ppp_ip(&inner, true)),
    );
    assert_eq!(&r.out[14..], &inner[..]);
}

#[test]
fn negotiating_sessions_and_disabled_fast_path_use_the_slow_path() {
    let mut dp = loaded();
    dp.install_session(&session(STATE_NEGOTIATING)).unwrap();
    let inner = inner_udp(ASSIGNED);
    let r = run(
        &dp,
        &gre_frame(CLIENT, CALL_ID, Some(1), None, &ppp_ip(&inner, true)),
    );
    assert_eq!(
        (r.verdict, r.delta.get(Stat::XdpSessionControl)),
        (XDP_PASS, 1)
    );
    assert_eq!(
        dp.gre_state(SLOT).unwrap().rx_highest,
        1,
        "sequence recorded while negotiating"
    );

    dp.install_session(&session(STATE_UP)).unwrap();
    dp.set_config(&DatapathConfig::default()).unwrap();
    let r = run(
        &dp,
        &gre_frame(CLIENT, CALL_ID, Some(1), None, &ppp_ip(&inner, true)),
    );
    assert_eq!((r.verdict, r.delta.get(Stat::XdpSlowPath)), (XDP_PASS, 1));
}
