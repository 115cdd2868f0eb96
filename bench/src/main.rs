//! `pptp-bench` (run by `cargo xtask bench`, as root): pptpgw's benchmarks, each figure the
//! median of several runs and a ratio against a baseline measured in the same run, printed as one
//! table with the machine's facts. All traffic stays in namespaces the benchmark creates.

mod control;
mod dataplane;
mod live;
mod mppe;
mod table;
mod topo;

use std::time::{Duration, Instant};

use clap::Parser;

#[derive(Parser)]
#[command(name = "pptp-bench", about = "pptpgw benchmarks (root)")]
struct Args {
    /// Runs per figure (the median is reported).
    #[arg(long, default_value_t = 3)]
    runs: usize,
    /// Packets per per-packet-cost measurement.
    #[arg(long, default_value_t = 1_000_000)]
    packets: u64,
    /// Seconds of traffic per forwarding measurement.
    #[arg(long, default_value_t = 2.0)]
    seconds: f64,
    /// Sessions per setup-rate round.
    #[arg(long, default_value_t = 2000)]
    setups: u32,
    /// Sessions held idle for the memory figure (capped by the descriptor hard limit: one TCP
    /// socket per session on each side).
    #[arg(long, default_value_t = 100_000)]
    held: u32,
    /// Dials in flight.
    #[arg(long, default_value_t = 128)]
    parallel: usize,
    /// Churn soak length in seconds.
    #[arg(long, default_value_t = 60)]
    soak: u64,
    /// Only these parts (1–7); default all.
    #[arg(long = "only")]
    only: Vec<u8>,
}

fn machine() -> String {
    let cpu = std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("model name"))
                .and_then(|l| l.split_once(':'))
                .map(|(_, v)| v.trim().to_string())
        })
        .unwrap_or_else(|| "unknown CPU".into());
    let cores = std::thread::available_parallelism().map_or(0, |n| n.get());
    let kernel = std::fs::read_to_string("/proc/sys/kernel/osrelease")
        .unwrap_or_default()
        .trim()
        .to_string();
    format!("{cpu}, {cores} cores, Linux {kernel}")
}

fn main() {
    pptp_tests::require_root();
    let args = Args::parse();
    let want = |n: u8| args.only.is_empty() || args.only.contains(&n);
    let started = Instant::now();
    let mut rows = Vec::new();
    let time = Duration::from_secs_f64(args.seconds);
    if want(1) {
        eprintln!(
            "bench 1: per-packet cost ({} packets × {} runs)",
            args.packets, args.runs
        );
        rows.extend(dataplane::per_packet_cost(args.packets, args.runs));
    }
    if want(2) || want(3) {
        eprintln!("bench 2+3: forwarding and alternatives");
        rows.extend(dataplane::forwarding(args.runs, time));
    }
    if want(4) {
        eprintln!("bench 4: control plane");
        rows.extend(control::control_plane(
            args.setups,
            args.held,
            args.runs,
            args.parallel,
        ));
    }
    if want(5) {
        eprintln!("bench 5: churn soak ({} s)", args.soak);
        rows.extend(control::churn(
            500,
            Duration::from_secs(args.soak),
            args.parallel.min(64),
        ));
    }
    if want(6) {
        eprintln!("bench 6: MPPE per-packet cost");
        rows.extend(mppe::per_packet_cost(
            (args.packets as usize).clamp(500, 4000),
            args.runs,
        ));
        eprintln!("bench 6: MPPE forwarding");
        rows.extend(mppe::forwarding(args.runs, time));
    }
    if want(7) {
        eprintln!("bench 7: forwarding with the live-frames generator");
        rows.extend(live::forwarding(args.runs));
    }
    if want(8) {
        eprintln!("bench 8: AAA (RADIUS setup rate, rate-limit cost)");
        rows.extend(control::radius_setup_rate(
            args.setups.min(1000),
            args.runs,
            args.parallel,
        ));
        rows.extend(dataplane::rate_limit_cost(args.packets, args.runs));
    }
    println!("\npptpgw benchmarks — {}", machine());
    println!(
        "medians of {} runs; every ratio against a baseline measured in the same run; took {:.0} s\n",
        args.runs,
        started.elapsed().as_secs_f64()
    );
    table::print(&rows);
}
