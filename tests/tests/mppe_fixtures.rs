//! Kernel fixtures for MPPE in the data path: the real XDP programs, an MPPE session programmed
//! through the controller's `Datapath`, and the project client's independent MPPE
//! (`pptp_client::mppe`, RustCrypto RC4 and SHA-1) on the other end. What the client encrypts XDP
//! must decrypt to the exact packet, what XDP encrypts the client must decrypt, and the key state
//! must follow the RFC 3078 rules through loss, reordering and forgery.

use std::net::Ipv4Addr;

use pptp_client::mppe::Direction;
use pptp_common::{
    maps::{PROG_XDP_DECAP, PROG_XDP_ENCAP},
    session::{DatapathConfig, MODE_MPPE, STATE_UP, Session},
    stats::{DropReason, Stat},
};
use pptp_tests::{
    frames::*,
    kernel::{self, xdp_run},
    netns::{Netns, gateway_with_uplink},
    require_root,
};
use pptp_user::kernel::datapath::{Counters, Datapath};

const XDP_DROP: u32 = 1;
const XDP_PASS: u32 = 2;
const XDP_REDIRECT: u32 = 4;

const GW: Ipv4Addr = Ipv4Addr::new(192, 0, 2, 1);
const CLIENT: Ipv4Addr = Ipv4Addr::new(198, 51, 100, 7);
const ASSIGNED: Ipv4Addr = Ipv4Addr::new(10, 99, 0, 10);
const FAR: Ipv4Addr = Ipv4Addr::new(203, 0, 113, 5);
const PPTP0_MAC: [u8; 6] = [2, 0, 0, 0, 9, 1];
const PPTP0_PEER_MAC: [u8; 6] = [2, 0, 0, 0, 9, 2];
const CALL_ID: u16 = 0x4000;
const SLOT: u32 = 3;
/// Our send key (the client's receive key) and our receive key (the client's send key).
const SEND_KEY: [u8; 16] = [0x5a; 16];
const RECV_KEY: [u8; 16] = [0xa5; 16];

fn mppe_session() -> Session {
    Session {
        mode: MODE_MPPE,
        ..kernel::session(SLOT, GW, CLIENT, CALL_ID, ASSIGNED, STATE_UP)
    }
}

/// A namespace where the client is reachable (for the encapsulation's FIB lookup), with the
/// data path loaded and the MPPE session programmed.
fn setup() -> (Netns, Netns, Datapath) {
    setup_mode(false)
}

fn setup_mode(stateful: bool) -> (Netns, Netns, Datapath) {
    require_root();
    let (gw, up) = gateway_with_uplink("mppegw", 0xc);
    let dp = gw.enter(|| {
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
        dp.install_session(&mppe_session()).unwrap();
        dp.program_mppe(SLOT, SEND_KEY, RECV_KEY, stateful).unwrap();
        dp
    });
    (gw, up, dp)
}

fn inner_udp(payload: &[u8]) -> Vec<u8> {
    ipv4(ASSIGNED, FAR, IPPROTO_UDP, &udp(5000, 53, payload))
}

/// The client's GRE frame carrying `mppe_packet` (the MPPE header and ciphertext) as PPP 0x00FD.
fn gre_mppe(seq: u32, mppe_packet: &[u8]) -> Vec<u8> {
    let mut ppp = vec![0xff, 0x03, 0x00, 0xfd];
    ppp.extend_from_slice(mppe_packet);
    ethernet(
        [2, 0, 0, 0, 0, 1],
        [2, 0, 0, 0, 0, 2],
        ETH_P_IP,
        &ipv4(
            CLIENT,
            GW,
            IPPROTO_GRE,
            &gre_v1(CALL_ID, Some(seq), None, &ppp),
        ),
    )
}

/// The client encrypts `inner` (PPP protocol 00 21 in front).
fn client_packet(tx: &mut Direction, inner: &[u8]) -> Vec<u8> {
    let mut plain = vec![0x00, 0x21];
    plain.extend_from_slice(inner);
    tx.encrypt(&plain)
}

fn decap(dp: &Datapath, frame: &[u8]) -> (u32, Vec<u8>, Counters) {
    xdp_run(dp, PROG_XDP_DECAP, frame)
}

fn rx_ccount(dp: &Datapath) -> u16 {
    dp.mppe_state(SLOT).unwrap().rx.ccount
}

#[test]
fn what_the_client_encrypts_xdp_decrypts_to_the_exact_packet() {
    let (gw, _up, dp) = setup();
    gw.enter(|| {
        let mut tx = Direction::new(RECV_KEY, false);
        let mut seq = 0;
        let mut send = |tx: &mut Direction, inner: &[u8]| {
            seq += 1;
            decap(&dp, &gre_mppe(seq, &client_packet(tx, inner)))
        };
        // In order: every packet out as Ethernet(pptp0) + the inner packet, byte for byte.
        for n in 0..5u8 {
            let inner = inner_udp(&[n; 40]);
            let (v, out, d) = send(&mut tx, &inner);
            assert_eq!(v, XDP_REDIRECT, "{d:?}");
            assert_eq!(out, ethernet(PPTP0_MAC, PPTP0_PEER_MAC, ETH_P_IP, &inner));
            assert_eq!(rx_ccount(&dp), u16::from(n));
        }
        // The session key follows the client's.
        assert_eq!(
            dp.mppe_state(SLOT).unwrap().rx.session_key,
            tx.session_key()
        );
        // A 1400-byte packet.
        let inner = inner_udp(&[0x77; 1372]);
        assert_eq!(inner.len(), 1400);
        let (v, out, _) = send(&mut tx, &inner);
        assert_eq!((v, &out[14..]), (XDP_REDIRECT, &inner[..]));

        // Coherency-count jumps: 2 (one lost), 8, and 16 (the most one packet re-keys for).
        for lost in [1, 7, 15] {
            for _ in 0..lost {
                client_packet(&mut tx, &inner_udp(b"lost"));
            }
            let inner = inner_udp(b"after loss");
            let (v, out, _) = send(&mut tx, &inner);
            assert_eq!(
                (v, &out[14..]),
                (XDP_REDIRECT, &inner[..]),
                "after {lost} lost"
            );
            assert_eq!(rx_ccount(&dp), tx.ccount());
        }
        // A jump of 255: more than one packet may cost. Each packet catches up 8 counts and is
        // dropped, until the state is in step and packets are delivered again.
        for _ in 0..254 {
            client_packet(&mut tx, &inner_udp(b"lost"));
        }
        let (mut caught_up, mut dropped) = (false, 0);
        for _ in 0..40 {
            let inner = inner_udp(b"catching up");
            let (v, out, d) = send(&mut tx, &inner);
            if v == XDP_REDIRECT {
                assert_eq!(&out[14..], &inner[..]);
                caught_up = true;
                break;
            }
            assert_eq!(d.dropped(DropReason::MppeCatchUp), 1, "{d:?}");
            dropped += 1;
        }
        // Each dropped packet closes the gap by 16 and opens it by 1: 255 - 15k <= 16 at k = 16.
        assert!(caught_up, "never caught up");
        assert_eq!(dropped, 16);
        assert_eq!(rx_ccount(&dp), tx.ccount());
    });
}

#[test]
fn late_duplicate_forged_and_plain_packets_leave_the_key_state_alone() {
    let (gw, _up, dp) = setup();
    gw.enter(|| {
        let mut tx = Direction::new(RECV_KEY, false);
        let first = client_packet(&mut tx, &inner_udp(b"one"));
        let second = client_packet(&mut tx, &inner_udp(b"two"));
        assert_eq!(decap(&dp, &gre_mppe(1, &second)).0, XDP_REDIRECT);
        let state = dp.mppe_state(SLOT).unwrap();
        let unchanged = |dp: &Datapath| {
            let now = dp.mppe_state(SLOT).unwrap();
            assert_eq!(
                (now.rx.ccount, now.rx.session_key),
                (state.rx.ccount, state.rx.session_key)
            );
        };
        // Reordered: the first packet after the second is still new, decrypted with the key kept
        // for its count; the count stays where it is.
        let (v, out, d) = decap(&dp, &gre_mppe(2, &first));
        assert_eq!(v, XDP_REDIRECT, "{d:?}");
        assert_eq!(&out[14..], &inner_udp(b"one")[..]);
        unchanged(&dp);
        // Duplicates now (though their GRE sequence numbers are new): dropped with no work.
        for (seq, p) in [(3, &first), (4, &second)] {
            let (v, _, d) = decap(&dp, &gre_mppe(seq, p));
            assert_eq!((v, d.dropped(DropReason::MppeLate)), (XDP_DROP, 1));
            unchanged(&dp);
        }
        // 4095 ahead is one behind (a duplicate of the first): late, no 4,095 re-keys.
        let mut behind = second.clone();
        let c = tx.ccount().wrapping_sub(1) & 0x0fff;
        behind[0] = (behind[0] & 0xf0) | (c >> 8) as u8;
        behind[1] = c as u8;
        let (v, _, d) = decap(&dp, &gre_mppe(5, &behind));
        assert_eq!((v, d.dropped(DropReason::MppeLate)), (XDP_DROP, 1));
        unchanged(&dp);
        // Forged: the next count with garbage in it decrypts to no IPv4, and moves nothing.
        let mut forged = client_packet(&mut Direction::new([9; 16], false), &inner_udp(b"x"));
        forged[1] = (tx.ccount() + 1) as u8;
        let (v, _, d) = decap(&dp, &gre_mppe(6, &forged));
        assert_eq!((v, d.dropped(DropReason::MppeBadDecrypt)), (XDP_DROP, 1));
        unchanged(&dp);
        // Not encrypted (D bit clear), and plain IPv4 on an encrypted session.
        let mut clear = client_packet(&mut Direction::new([1; 16], false), &inner_udp(b"x"));
        clear[0] &= !0x10;
        let (v, _, d) = decap(&dp, &gre_mppe(7, &clear));
        assert_eq!((v, d.dropped(DropReason::MppePlaintext)), (XDP_DROP, 1));
        let mut ppp = vec![0xff, 0x03, 0x00, 0x21];
        ppp.extend_from_slice(&inner_udp(b"plain"));
        let frame = ethernet(
            [2, 0, 0, 0, 0, 1],
            [2, 0, 0, 0, 0, 2],
            ETH_P_IP,
            &ipv4(
                CLIENT,
                GW,
                IPPROTO_GRE,
                &gre_v1(CALL_ID, Some(8), None, &ppp),
            ),
        );
        let (v, _, d) = decap(&dp, &frame);
        assert_eq!((v, d.dropped(DropReason::MppePlaintext)), (XDP_DROP, 1));
        unchanged(&dp);
        // The next real packet still decrypts.
        let inner = inner_udp(b"three");
        let (v, out, _) = decap(&dp, &gre_mppe(9, &client_packet(&mut tx, &inner)));
        assert_eq!((v, &out[14..]), (XDP_REDIRECT, &inner[..]));
    });
}

#[test]
fn what_xdp_encrypts_the_client_decrypts() {
    let (gw, _up, dp) = setup();
    gw.enter(|| {
        // The session needs a received sequence number before it sends (its ack).
        let mut tx = Direction::new(RECV_KEY, false);
        assert_eq!(
            decap(
                &dp,
                &gre_mppe(1, &client_packet(&mut tx, &inner_udp(b"hi")))
            )
            .0,
            XDP_REDIRECT
        );
        let mut rx = Direction::new(SEND_KEY, false);
        let mut last_seq = 0;
        for (n, size) in [(0u8, 20), (1, 200), (2, 1372)] {
            let inner = ipv4(FAR, ASSIGNED, IPPROTO_UDP, &udp(53, 5000, &vec![n; size]));
            let frame = ethernet(PPTP0_PEER_MAC, PPTP0_MAC, ETH_P_IP, &inner);
            let (v, out, d) = xdp_run(&dp, PROG_XDP_ENCAP, &frame);
            assert_eq!(v, XDP_REDIRECT, "{d:?}");
            assert_eq!(d.get(Stat::Encapsulated), 1);
            // Ethernet 14, IPv4 20, GRE 16, PPP FF 03 00 FD, then the MPPE packet.
            assert_eq!(&out[50..54], &[0xff, 0x03, 0x00, 0xfd]);
            let seq = u32::from_be_bytes(out[42..46].try_into().unwrap());
            assert!(seq >= last_seq, "sequence numbers in order");
            last_seq = seq;
            assert_eq!(out[54] & 0x90, 0x90, "flushed and encrypted (stateless)");
            let plain = rx.decrypt(&out[54..]).expect("the client decrypts it");
            assert_eq!(&plain[..2], &[0x00, 0x21]);
            assert_eq!(&plain[2..], &inner[..]);
            // The GRE payload length covers PPP (4), MPPE (2), the protocol (2), the packet.
            let payload_len = u16::from_be_bytes([out[38], out[39]]) as usize;
            assert_eq!(payload_len, 4 + 2 + 2 + inner.len());
            assert_eq!(dp.mppe_state(SLOT).unwrap().tx.ccount, u16::from(n));
        }
        assert_eq!(
            dp.mppe_state(SLOT).unwrap().tx.session_key,
            rx.session_key()
        );
    });
}

/// Stateful receive (RFC 3078 §8.2, Linux's rules): RC4 runs on across packets and the key
/// changes on flag packets; a gap goes up to the controller (which sends the Reset-Request) and
/// everything is discarded until a flushed packet, which decrypts after the key changes missed.
#[test]
fn stateful_receive_through_flag_packets_loss_and_reset() {
    let (gw, _up, dp) = setup_mode(true);
    gw.enter(|| {
        let mut tx = Direction::new(RECV_KEY, true);
        let mut seq = 0;
        let mut send = |tx: &mut Direction, inner: &[u8]| {
            seq += 1;
            decap(&dp, &gre_mppe(seq, &client_packet(tx, inner)))
        };
        let delivered = |r: (u32, Vec<u8>, Counters), inner: &[u8], what: &str| {
            assert_eq!(r.0, XDP_REDIRECT, "{what}: {:?}", r.2);
            assert_eq!(&r.1[14..], inner, "{what}");
        };
        // 300 in order: past the flag packet 255 (a key change), sizes up to 1400 bytes.
        for n in 0..300u32 {
            let inner = inner_udp(&vec![n as u8; 20 + (n as usize * 5) % 1352]);
            delivered(send(&mut tx, &inner), &inner, &format!("packet {n}"));
        }
        let st = dp.mppe_state(SLOT).unwrap().rx;
        assert_eq!((st.ccount, st.session_key), (tx.ccount(), tx.session_key()));
        assert_ne!(
            tx.session_key(),
            Direction::new(RECV_KEY, true).session_key()
        );

        // One lost: the next goes to the controller, the one after is discarded.
        client_packet(&mut tx, &inner_udp(b"lost"));
        let (v, _, d) = send(&mut tx, &inner_udp(b"gap"));
        assert_eq!((v, d.dropped(DropReason::MppeLoss)), (XDP_PASS, 1));
        assert_eq!(dp.mppe_state(SLOT).unwrap().rx.discard, 1);
        let (v, _, d) = send(&mut tx, &inner_udp(b"discarded"));
        assert_eq!((v, d.dropped(DropReason::MppeDiscard)), (XDP_DROP, 1));
        // A forged flushed packet does not end the discard.
        let mut forged = client_packet(&mut Direction::new([9; 16], true), &inner_udp(b"x"));
        forged[0] |= 0x80;
        forged[1] = (tx.ccount() + 1) as u8;
        // (Its GRE sequence number is far ahead; a dropped packet does not move the GRE state.)
        let (v, _, d) = decap(&dp, &gre_mppe(100_000, &forged));
        assert_eq!((v, d.dropped(DropReason::MppeBadDecrypt)), (XDP_DROP, 1));
        assert_eq!(dp.mppe_state(SLOT).unwrap().rx.discard, 1);
        // The Reset-Request reached the client: its next packet is flushed and decrypts.
        tx.flush();
        let inner = inner_udp(b"after reset");
        delivered(send(&mut tx, &inner), &inner, "after the reset");
        assert_eq!(dp.mppe_state(SLOT).unwrap().rx.discard, 0);

        // 300 lost (a flag packet among them): the key changes missed are made up when the
        // flushed packet comes.
        for _ in 0..300 {
            client_packet(&mut tx, &inner_udp(b"lost"));
        }
        let (v, _, _) = send(&mut tx, &inner_udp(b"gap"));
        assert_eq!(v, XDP_PASS);
        tx.flush();
        for n in 0..300u32 {
            let inner = inner_udp(&n.to_be_bytes());
            delivered(
                send(&mut tx, &inner),
                &inner,
                &format!("after the long loss, {n}"),
            );
        }
        let st = dp.mppe_state(SLOT).unwrap().rx;
        assert_eq!((st.ccount, st.session_key), (tx.ccount(), tx.session_key()));
    });
}

/// Stateful send: RC4 runs on, the key changes on flag packets (flushed), and a reset requested
/// by the controller (the client's Reset-Request) makes the next packet flushed, which brings a
/// client that lost packets back in step.
#[test]
fn stateful_send_with_flag_packets_and_a_reset() {
    let (gw, _up, dp) = setup_mode(true);
    let seqs = gw.enter(|| dp.seq_space().unwrap());
    gw.enter(|| {
        let mut tx = Direction::new(RECV_KEY, true);
        assert_eq!(
            decap(
                &dp,
                &gre_mppe(1, &client_packet(&mut tx, &inner_udp(b"hi")))
            )
            .0,
            XDP_REDIRECT
        );
        let mut rx = Direction::new(SEND_KEY, true);
        let encap = |n: u32| {
            let inner = ipv4(FAR, ASSIGNED, IPPROTO_UDP, &udp(53, 5000, &n.to_be_bytes()));
            let frame = ethernet(PPTP0_PEER_MAC, PPTP0_MAC, ETH_P_IP, &inner);
            let (v, out, d) = xdp_run(&dp, PROG_XDP_ENCAP, &frame);
            assert_eq!(v, XDP_REDIRECT, "{d:?}");
            (out[54..].to_vec(), inner)
        };
        for n in 0..300u32 {
            let (p, inner) = encap(n);
            let ccount = (u16::from(p[0] & 0x0f) << 8) | u16::from(p[1]);
            assert_eq!(ccount as u32, n);
            assert_eq!(
                p[0] & 0x80 != 0,
                n == 255,
                "flushed on the flag packet only ({n})"
            );
            let plain = rx.decrypt(&p).expect("decrypts");
            assert_eq!(&plain[2..], &inner[..]);
        }
        // The client loses one and asks for a reset (its Reset-Request reaches the controller).
        encap(300);
        assert_eq!(rx.decrypt(&encap(301).0), None);
        assert!(rx.wants_reset());
        seqs.request_mppe_reset(SLOT);
        let (p, inner) = encap(302);
        assert_eq!(p[0] & 0x80, 0x80, "flushed after the reset");
        assert_eq!(&rx.decrypt(&p).expect("back in step")[2..], &inner[..]);
        let (p, _) = encap(303);
        assert_eq!(p[0] & 0x80, 0, "one flushed packet per reset");
        assert!(rx.decrypt(&p).is_some());
        assert_eq!(
            dp.mppe_state(SLOT).unwrap().tx.session_key,
            rx.session_key()
        );
    });
}

#[test]
fn ipv6_is_encrypted_both_ways_and_link_traffic_reaches_the_controller_decrypted() {
    let (gw, _up, mut dp) = setup();
    gw.enter(|| {
        let prefix = [0x20, 0x01, 0x0d, 0xb8, 0, 0, 0, 7];
        dp.update_session(&Session {
            prefix6: prefix,
            ..mppe_session()
        })
        .unwrap();
        let v6 = |s: &str| s.parse::<std::net::Ipv6Addr>().unwrap();
        let (client6, far6) = (v6("2001:db8:0:7::1"), v6("2001:db8:ffff::5"));
        let mut tx = Direction::new(RECV_KEY, false);
        let encrypted = |tx: &mut Direction, protocol: &[u8], packet: &[u8]| {
            tx.encrypt(&[protocol, packet].concat())
        };

        // Data, with the inner protocol as 00 57 and compressed to 57: the exact packet out.
        let data = ipv6(client6, far6, IPPROTO_UDP, 64, &udp(5000, 53, b"six"));
        for (seq, protocol) in [(1, &[0x00, 0x57][..]), (2, &[0x57][..])] {
            let frame = gre_mppe(seq, &encrypted(&mut tx, protocol, &data));
            let (v, out, c) = decap(&dp, &frame);
            assert_eq!((v, c.get(Stat::XdpDecap6)), (XDP_REDIRECT, 1), "{c:?}");
            assert_eq!(out, ethernet(PPTP0_MAC, PPTP0_PEER_MAC, ETH_P_IPV6, &data));
        }

        // A Router Solicitation: decrypted in place, relabelled 0x0057, passed up.
        let ll = v6("fe80::3c11:2233:4455:6677");
        let all_routers = v6("ff02::2");
        let rs = ipv6(
            ll,
            all_routers,
            IPPROTO_ICMPV6,
            255,
            &icmpv6(ll, all_routers, 133, &[0; 4]),
        );
        let frame = gre_mppe(3, &encrypted(&mut tx, &[0x00, 0x57], &rs));
        let (v, out, c) = decap(&dp, &frame);
        assert_eq!((v, c.get(Stat::XdpLink6)), (XDP_PASS, 1));
        let ppp = 14 + 20 + 12;
        assert_eq!(&out[ppp..ppp + 4], &[0xff, 0x03, 0x00, 0x57], "relabelled");
        assert_eq!(&out[ppp + 6..ppp + 8], &[0x00, 0x57]);
        assert_eq!(&out[ppp + 8..], &rs[..], "decrypted");

        // Plaintext IPv6 on the encrypted session is refused.
        let mut plain = vec![0xff, 0x03, 0x00, 0x57];
        plain.extend_from_slice(&data);
        let frame = ethernet(
            [2, 0, 0, 0, 0, 1],
            [2, 0, 0, 0, 0, 2],
            ETH_P_IP,
            &ipv4(
                CLIENT,
                GW,
                IPPROTO_GRE,
                &gre_v1(CALL_ID, Some(4), None, &plain),
            ),
        );
        let (v, _, c) = decap(&dp, &frame);
        assert_eq!((v, c.dropped(DropReason::MppePlaintext)), (XDP_DROP, 1));

        // Towards the client: encrypted, with 00 57 inside.
        let mut rx = Direction::new(SEND_KEY, false);
        let back = ipv6(far6, client6, IPPROTO_UDP, 64, &udp(53, 5000, &[6; 300]));
        let frame = ethernet(PPTP0_PEER_MAC, PPTP0_MAC, ETH_P_IPV6, &back);
        let (v, out, c) = xdp_run(&dp, PROG_XDP_ENCAP, &frame);
        assert_eq!((v, c.get(Stat::Encapsulated6)), (XDP_REDIRECT, 1));
        assert_eq!(&out[50..54], &[0xff, 0x03, 0x00, 0xfd]);
        let plain = rx.decrypt(&out[54..]).expect("the client decrypts it");
        assert_eq!(&plain[..2], &[0x00, 0x57]);
        assert_eq!(&plain[2..], &back[..]);
    });
}
