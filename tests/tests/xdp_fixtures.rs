//! Kernel fixtures: the real programs run by BPF_PROG_TEST_RUN on a table of input frames, each
//! with the verdict and the counter it must produce. Needs root (loads programs).

use std::net::Ipv4Addr;

use aya::programs::{TestRun as _, TestRunOptions};
use pptp_common::stats::{DropReason, Stat};
use pptp_tests::{frames::*, require_root};
use pptp_user::kernel::datapath::{Counters, Datapath};

const XDP_DROP: u32 = 1;
const XDP_PASS: u32 = 2;

const CLIENT: Ipv4Addr = Ipv4Addr::new(198, 51, 100, 7);
const SERVER: Ipv4Addr = Ipv4Addr::new(192, 0, 2, 1);
const MAC_A: [u8; 6] = [2, 0, 0, 0, 0, 1];
const MAC_B: [u8; 6] = [2, 0, 0, 0, 0, 2];

fn frame(ip: Vec<u8>) -> Vec<u8> {
    ethernet(MAC_B, MAC_A, ETH_P_IP, &ip)
}

fn gre_frame(gre: &[u8]) -> Vec<u8> {
    frame(ipv4(CLIENT, SERVER, IPPROTO_GRE, gre))
}

/// What a fixture must do: the verdict and which counter moves by one.
enum Expect {
    Stat(Stat),
    Drop(DropReason),
}

fn lcp_conf_req() -> Vec<u8> {
    // FF 03 C0 21 | Configure-Request id 1 len 14 | magic 0x01020304 | PFC | ACFC
    vec![
        0xff, 0x03, 0xc0, 0x21, 1, 1, 0, 14, 5, 6, 1, 2, 3, 4, 7, 2, 8, 2,
    ]
}

fn xdp_table() -> Vec<(&'static str, Vec<u8>, u32, Expect)> {
    let ppp = lcp_conf_req();
    let good = gre_v1(0x4000, Some(0), None, &ppp);

    let mut truncated_gre = gre_frame(&good);
    truncated_gre.truncate(14 + 20 + 6); // IPv4 says 20 + GRE, only 6 GRE bytes present
    let mut seq_missing = gre_frame(&good);
    seq_missing.truncate(14 + 20 + 10); // fixed 8 bytes present, 2 of the 4 sequence bytes

    let mut no_key = good.clone();
    no_key[0] &= !0x20;
    let mut checksum_flag = good.clone();
    checksum_flag[0] |= 0x80;
    let mut wrong_proto = good.clone();
    wrong_proto[2..4].copy_from_slice(&0x0800u16.to_be_bytes());
    let mut long_payload = good.clone();
    long_payload[4..6].copy_from_slice(&500u16.to_be_bytes());
    let mut gre_v0 = good.clone();
    gre_v0[0..2].copy_from_slice(&0x0000u16.to_be_bytes());

    let mut bad_ihl = gre_frame(&good);
    bad_ihl[14] = 0x44; // IHL 4 (16 bytes) is below the minimum
    let mut fragment = gre_frame(&good);
    fragment[14 + 6] = 0x20; // MF
    let c = checksum(&{
        let mut h = fragment[14..34].to_vec();
        h[10] = 0;
        h[11] = 0;
        h
    });
    fragment[14 + 10..14 + 12].copy_from_slice(&c.to_be_bytes());

    vec![
        (
            "pptp gre with seq",
            gre_frame(&good),
            XDP_PASS,
            Expect::Stat(Stat::XdpSlowPath),
        ),
        (
            "ack-only gre",
            gre_frame(&gre_v1(0x4000, None, Some(9), &[])),
            XDP_PASS,
            Expect::Stat(Stat::XdpSlowPath),
        ),
        (
            "udp",
            frame(ipv4(CLIENT, SERVER, IPPROTO_UDP, &udp(1, 2, b"x"))),
            XDP_PASS,
            Expect::Stat(Stat::XdpNotGre),
        ),
        (
            "arp",
            ethernet(MAC_B, MAC_A, 0x0806, &[0; 28]),
            XDP_PASS,
            Expect::Stat(Stat::XdpNotGre),
        ),
        (
            "gre version 0",
            gre_frame(&gre_v0),
            XDP_PASS,
            Expect::Stat(Stat::XdpGreOther),
        ),
        (
            "outer fragment",
            fragment,
            XDP_PASS,
            Expect::Stat(Stat::XdpFragment),
        ),
        (
            "truncated gre",
            truncated_gre,
            XDP_DROP,
            Expect::Drop(DropReason::Truncated),
        ),
        (
            "seq cut short",
            seq_missing,
            XDP_DROP,
            Expect::Drop(DropReason::Truncated),
        ),
        (
            "bad ihl",
            bad_ihl,
            XDP_DROP,
            Expect::Drop(DropReason::Ipv4Malformed),
        ),
        (
            "no key flag",
            gre_frame(&no_key),
            XDP_DROP,
            Expect::Drop(DropReason::GreBadFlags),
        ),
        (
            "checksum flag",
            gre_frame(&checksum_flag),
            XDP_DROP,
            Expect::Drop(DropReason::GreBadFlags),
        ),
        (
            "not ppp",
            gre_frame(&wrong_proto),
            XDP_DROP,
            Expect::Drop(DropReason::GreBadProtocol),
        ),
        (
            "payload length lies",
            gre_frame(&long_payload),
            XDP_DROP,
            Expect::Drop(DropReason::GreBadLength),
        ),
    ]
}

#[test]
fn xdp_disposition_table() {
    require_root();
    let dp = Datapath::load().expect("load eBPF object");
    let prog = dp.xdp().unwrap();
    for (name, input, verdict, expect) in xdp_table() {
        let before = dp.counters().unwrap();
        let mut out = vec![0u8; input.len() + 256];
        let opts = TestRunOptions {
            data_in: Some(&input),
            data_out: Some(&mut out),
            ..TestRunOptions::new()
        };
        let r = prog
            .test_run(opts)
            .unwrap_or_else(|e| panic!("{name}: test_run: {e}"));
        assert_eq!(r.return_value, verdict, "{name}: verdict");
        let d = dp.counters().unwrap().since(&before);
        assert_eq!(d.get(Stat::XdpSeen), 1, "{name}: seen");
        let mut expected = Counters::default();
        expected.stats[Stat::XdpSeen as usize] = 1;
        match expect {
            Expect::Stat(s) => expected.stats[s as usize] += 1,
            Expect::Drop(r) => {
                expected.stats[Stat::XdpDropped as usize] += 1;
                expected.drops[r as usize] += 1;
            }
        }
        assert_eq!(d, expected, "{name}: counters moved as {d:?}");
        if verdict == XDP_PASS {
            assert_eq!(
                &out[..r.data_size_out as usize],
                &input[..],
                "{name}: passed unchanged"
            );
        }
    }
}
