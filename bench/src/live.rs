//! Part 7: forwarding with a generator that is not the bottleneck. BPF_PROG_TEST_RUN with live
//! frames runs the generator program (`pptp-ebpf/src/bench.rs`) on N frames in the kernel: each
//! becomes the next data packet of one of the rig's 64 sessions and goes through the real
//! decapsulation, whose redirect into `pptp0` then happens for real; what reaches the server's
//! veth is counted. The offered load is N over the run's time: millions of packets a second from
//! one core, where the AF_PACKET sender of parts 2, 3 and 6 offers a few hundred thousand.

use std::time::Instant;

use aya::programs::{TestRun as _, TestRunAttrs, TestRunOptions};
use pptp_common::{
    maps::{PROG_XDP_BENCH_GEN, PROG_XDP_BENCH_REDIRECT, PROG_XDP_DECAP},
    session::{BENCH_HEADER_LEN, BenchGen},
};
use pptp_tests::frames;

use crate::{
    dataplane::{Gateway, LIVE, assigned},
    table::Row,
    topo::{CLIENT, GW_WAN, SERVER, inner_udp, median, rx_packets},
};

/// Frames per run.
const FRAMES: u32 = 2_000_000;

/// The template: session 0's data frame; the generator rewrites call ID, sequence number and
/// inner source per packet.
fn template(gw: &Gateway, size: usize) -> (BenchGen, Vec<u8>) {
    let inner = inner_udp(assigned(0), SERVER, size);
    let mut ppp = vec![0xff, 0x03, 0x00, 0x21];
    ppp.extend_from_slice(&inner);
    let gre = frames::gre_v1(0x4000, Some(0), None, &ppp);
    let ip = frames::ipv4(CLIENT, GW_WAN, frames::IPPROTO_GRE, &gre);
    let frame = frames::ethernet(gw.topo.wan0.mac, gw.topo.c0.mac, frames::ETH_P_IP, &ip);
    let mut header = [0u8; BENCH_HEADER_LEN];
    header.copy_from_slice(&frame[..BENCH_HEADER_LEN]);
    let t = BenchGen {
        sessions: u32::from(LIVE),
        call_base: 0x4000,
        _pad: 0,
        addr_base: assigned(0).octets(),
        header,
        _pad2: [0; 2],
    };
    (t, frame)
}

/// One run: (delivered per second, offered per second).
fn run(gw: &mut Gateway, frame: &[u8]) -> (f64, f64) {
    gw.reset_live_sessions(None);
    let before = rx_packets(&gw.topo.srv, "s0");
    let dp = &gw.dp;
    let elapsed = gw.topo.gw.enter(|| {
        let prog = dp.xdp_program(PROG_XDP_BENCH_GEN).expect("generator");
        let opts = TestRunOptions {
            data_in: Some(frame),
            repeat: FRAMES,
            attrs: TestRunAttrs::new().xdp_live_frames(64),
            ..TestRunOptions::new()
        };
        let t = Instant::now();
        prog.test_run(opts).expect("live test run");
        t.elapsed()
    });
    std::thread::sleep(std::time::Duration::from_millis(300));
    let got = rx_packets(&gw.topo.srv, "s0").saturating_sub(before);
    let secs = elapsed.as_secs_f64();
    (got as f64 / secs, f64::from(FRAMES) / secs)
}

pub fn forwarding(runs: usize) -> Vec<Row> {
    let mut gw = Gateway::new("live");
    let lan0 = {
        let out = gw.topo.gw.ip(&["-j", "link", "show", "dev", "lan0"]);
        let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap_or_default();
        v[0]["ifindex"].as_u64().unwrap_or(0) as u32
    };
    gw.dp.set_bench_redirect(lan0).expect("bench redirect");
    let mut rows = Vec::new();
    let g7 = "7 forwarding, live-frames generator";
    for size in [64usize, 1400] {
        let (t, frame) = template(&gw, size);
        // [pptpgw delivered, offered, baseline delivered, offered]
        let mut m: [Vec<f64>; 4] = Default::default();
        for _ in 0..runs {
            gw.dp.set_bench_gen(&t, PROG_XDP_DECAP).expect("template");
            let (g, o) = run(&mut gw, &frame);
            m[0].push(g);
            m[1].push(o);
            // Baseline: the same generator, then the cheapest XDP forwarding (a redirect to
            // lan0, no parsing) on the same veths.
            gw.dp
                .set_bench_gen(&t, PROG_XDP_BENCH_REDIRECT)
                .expect("template");
            let (g, o) = run(&mut gw, &frame);
            m[2].push(g);
            m[3].push(o);
        }
        let [g, o, bg, bo] = m.map(median);
        let shown = |g: f64, o: f64| {
            let capped = if g >= 0.8 * o {
                " — generator-capped"
            } else {
                ""
            };
            format!(
                "{:.0} kpps ({:.0} Mbit/s) of {:.0} kpps offered{capped}",
                g / 1e3,
                g * size as f64 * 8.0 / 1e6,
                o / 1e3
            )
        };
        let capped = g >= 0.8 * o || bg >= 0.8 * bo;
        if capped {
            rows.push(Row::info(
                g7,
                &format!("client→server, {size} B inner, {LIVE} sessions (stack mode)"),
                format!("{} vs redirect {}", shown(g, o), shown(bg, bo)),
            ));
        } else {
            rows.push(Row::ratio(
                g7,
                &format!("client→server, {size} B inner, {LIVE} sessions (stack mode)"),
                shown(g, o),
                format!("{} (XDP redirect)", shown(bg, bo)),
                g / bg,
                "≥ 0.8×",
                g / bg >= 0.8,
            ));
        }
    }
    if let Ok(c) = gw.dp.counters() {
        rows.push(Row::info(
            "7 forwarding, live-frames generator",
            "decapsulated by XDP over the runs / data-path drops",
            format!(
                "{} / {}",
                c.get(pptp_common::stats::Stat::XdpDecap),
                c.named_drops()
                    .into_iter()
                    .filter(|(_, v)| *v > 0)
                    .map(|(k, v)| format!("{k}={v}"))
                    .collect::<Vec<_>>()
                    .join(" ")
            ),
        ));
    }
    rows
}
