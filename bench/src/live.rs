//! Part 7: forwarding with a generator that is not the bottleneck. BPF_PROG_TEST_RUN with live
//! frames runs the generator program (`pptp-ebpf/src/bench.rs`) on N frames in the kernel: each
//! becomes the next data packet of one of the rig's 64 sessions and goes through the real
//! decapsulation, whose redirect into `pptp0` then happens for real; what reaches the server's
//! veth is counted. In `xdp` mode the decapsulation forwards itself (client → server), and the
//! LAN program encapsulates the server's packets (server → client), each against a plain
//! redirect to the same egress. The offered load is N over the run's time: millions of packets a second from
//! one core, where the AF_PACKET sender of parts 2, 3 and 6 offers a few hundred thousand.

use std::time::Instant;

use aya::programs::{TestRun as _, TestRunAttrs, TestRunOptions};
use pptp_common::{
    maps::{
        PROG_XDP_BENCH_GEN, PROG_XDP_BENCH_REDIRECT, PROG_XDP_BENCH_SINK, PROG_XDP_DECAP,
        PROG_XDP_LAN,
    },
    session::{BENCH_FROM_CLIENTS, BENCH_HEADER_LEN, BENCH_TO_CLIENTS, BenchGen},
};
use pptp_tests::frames;

use crate::{
    dataplane::{Gateway, LIVE, assigned},
    table::Row,
    topo::{CLIENT, GW_WAN, SERVER, inner_udp, median},
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
    (gen_template(&frame, BENCH_FROM_CLIENTS), frame)
}

/// The server's packet to session 0's address; the generator rewrites the destination.
fn server_template(gw: &Gateway, size: usize) -> (BenchGen, Vec<u8>) {
    let frame = frames::ethernet(
        gw.topo.lan0.mac,
        gw.topo.s0.mac,
        frames::ETH_P_IP,
        &inner_udp(SERVER, assigned(0), size),
    );
    (gen_template(&frame, BENCH_TO_CLIENTS), frame)
}

fn gen_template(frame: &[u8], kind: u16) -> BenchGen {
    let mut header = [0u8; BENCH_HEADER_LEN];
    header.copy_from_slice(&frame[..BENCH_HEADER_LEN]);
    BenchGen {
        sessions: u32::from(LIVE),
        call_base: 0x4000,
        kind,
        addr_base: assigned(0).octets(),
        header,
        _pad2: [0; 2],
    }
}

/// One run of `frames` frames: (delivered per second at the sinks, offered per second).
fn run(gw: &Gateway, frame: &[u8], frames: u32) -> (f64, f64) {
    let before = gw.dp.bench_sink_count().expect("sink");
    let dp = &gw.dp;
    let elapsed = gw.topo.gw.enter(|| {
        let prog = dp.xdp_program(PROG_XDP_BENCH_GEN).expect("generator");
        let opts = TestRunOptions {
            data_in: Some(frame),
            repeat: frames,
            attrs: TestRunAttrs::new().xdp_live_frames(64),
            ..TestRunOptions::new()
        };
        let t = Instant::now();
        prog.test_run(opts).expect("live test run");
        t.elapsed()
    });
    std::thread::sleep(std::time::Duration::from_millis(300));
    let got = gw
        .dp
        .bench_sink_count()
        .expect("sink")
        .saturating_sub(before);
    let secs = elapsed.as_secs_f64();
    (got as f64 / secs, f64::from(frames) / secs)
}

fn ifindex(gw: &Gateway, dev: &str) -> u32 {
    let out = gw.topo.gw.ip(&["-j", "link", "show", "dev", dev]);
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap_or_default();
    v[0]["ifindex"].as_u64().unwrap_or(0) as u32
}

/// What one row compares: a forwarding mode and direction.
struct Case {
    label: &'static str,
    xdp_mode: bool,
    to_clients: bool,
}

const CASES: [Case; 3] = [
    Case {
        label: "client→server (stack mode)",
        xdp_mode: false,
        to_clients: false,
    },
    Case {
        label: "client→server (xdp mode)",
        xdp_mode: true,
        to_clients: false,
    },
    Case {
        label: "server→client (xdp mode)",
        xdp_mode: true,
        to_clients: true,
    },
];

pub fn forwarding(runs: usize) -> Vec<Row> {
    let mut gw = Gateway::new("live");
    let (lan0, wan0) = (ifindex(&gw, "lan0"), ifindex(&gw, "wan0"));
    // Both ends count and drop in XDP: the receivers' stacks (a server answering every datagram
    // with Port Unreachable) would otherwise be what is measured.
    let sinks: Vec<_> = [(&gw.topo.srv, "s0"), (&gw.topo.cl, "c0")]
        .into_iter()
        .map(|(ns, dev)| {
            let dp = &mut gw.dp;
            ns.enter(|| {
                dp.attach_named(PROG_XDP_BENCH_SINK, dev, aya::programs::XdpMode::Driver)
                    .expect("sink")
            })
        })
        .collect();
    let mut rows = Vec::new();
    for case in &CASES {
        if case.xdp_mode {
            gw.dp.enable_xdp_forwarding().expect("xdp mode");
        } else {
            gw.dp.disable_xdp_forwarding().expect("stack mode");
        }
        for size in [64usize, 1400] {
            rows.push(measure(&mut gw, case, size, runs, (lan0, wan0)));
        }
    }
    gw.dp.disable_xdp_forwarding().expect("stack mode");
    for link in sinks {
        let _ = gw.dp.detach_named(PROG_XDP_BENCH_SINK, link);
    }
    if let Ok(c) = gw.dp.counters() {
        use pptp_common::stats::Stat;
        rows.push(Row::info(
            G7,
            "decapsulated / forwarded by XDP / to the stack / encapsulated by the LAN program / drops",
            format!(
                "{} / {} / {} / {} / {}",
                c.get(Stat::XdpDecap),
                c.get(Stat::ForwardXdp),
                c.get(Stat::ForwardStack),
                c.get(Stat::LanSeen) - c.get(Stat::LanPassed),
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

const G7: &str = "7 forwarding, live-frames generator";

/// One row: the case against the cheapest XDP forwarding (a redirect to the same egress, no
/// parsing) fed by the same generator, interleaved run by run. Both include the generator's own
/// cost (same loop, same core): the ratio is one core's forwarding rate against another's.
fn measure(
    gw: &mut Gateway,
    case: &Case,
    size: usize,
    runs: usize,
    (lan0, wan0): (u32, u32),
) -> Row {
    let (t, frame) = if case.to_clients {
        server_template(gw, size)
    } else {
        template(gw, size)
    };
    let (egress, prog) = if case.to_clients {
        (wan0, PROG_XDP_LAN)
    } else {
        (lan0, PROG_XDP_DECAP)
    };
    gw.dp.set_bench_redirect(egress).expect("bench redirect");
    // [pptpgw delivered, offered, baseline delivered, offered]
    let mut m: [Vec<f64>; 4] = Default::default();
    for _ in 0..runs {
        gw.reset_live_sessions(None);
        if case.to_clients {
            // Sessions send nothing before their client did: one packet from each first.
            let (ct, cf) = template(gw, 64);
            gw.dp.set_bench_gen(&ct, PROG_XDP_DECAP).expect("template");
            run(gw, &cf, u32::from(LIVE));
        }
        gw.dp.set_bench_gen(&t, prog).expect("template");
        let (g, o) = run(gw, &frame, FRAMES);
        m[0].push(g);
        m[1].push(o);
        gw.dp
            .set_bench_gen(&t, PROG_XDP_BENCH_REDIRECT)
            .expect("template");
        let (g, o) = run(gw, &frame, FRAMES);
        m[2].push(g);
        m[3].push(o);
    }
    let [g, o, bg, bo] = m.map(median);
    // The generator runs in the same loop as the program it feeds, on one core: what it can offer
    // at most is what it offered into the bare redirect (`bo`). A forwarding rate near that
    // is capped by the generator; below it, the generator had room and the program set the rate.
    let shown = |g: f64, o: f64| {
        format!(
            "{:.0} kpps ({:.0} Mbit/s) of {:.0} kpps offered",
            g / 1e3,
            g * size as f64 * 8.0 / 1e6,
            o / 1e3
        )
    };
    let what = format!("{}, {size} B inner, {LIVE} sessions", case.label);
    let target = if case.xdp_mode { 0.7 } else { 0.8 };
    if g >= 0.8 * bo {
        Row::info(
            G7,
            &what,
            format!(
                "{} — generator-capped (it offers {:.0} kpps into a bare redirect)",
                shown(g, o),
                bo / 1e3
            ),
        )
    } else {
        Row::ratio(
            G7,
            &what,
            shown(g, o),
            format!("{} (generator + XDP redirect)", shown(bg, bo)),
            g / bg,
            &format!("≥ {target}×"),
            g / bg >= target,
        )
    }
}
