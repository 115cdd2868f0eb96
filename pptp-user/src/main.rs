//! `pptpgw`: the PPTP concentrator's controller and CLI.
use std::time::Duration;

use anyhow::Context as _;
use aya::programs::XdpMode;
use clap::{Parser, Subcommand, ValueEnum};
use pptp_common::stats::{DropReason, Stat};
use pptp_user::datapath::{Counters, Datapath};
use tokio::signal::unix::{SignalKind, signal};

#[derive(Parser)]
#[command(
    name = "pptpgw",
    version,
    about = "PPTP VPN concentrator with an eBPF data path"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Load the data path, attach it, and run until SIGINT/SIGTERM; everything attached is
    /// detached on exit.
    Run {
        /// WAN interface(s) for XDP decapsulation. Default: the interface of the IPv4 default route.
        #[arg(long = "wan")]
        wan: Vec<String>,
        /// Interface whose egress gets the TC encapsulation program.
        #[arg(long = "tc")]
        tc: Option<String>,
        #[arg(long, value_enum, default_value_t = Mode::Auto)]
        xdp_mode: Mode,
        /// Seconds between counter lines in the log (0: only at exit).
        #[arg(long, default_value_t = 10)]
        stats_interval: u64,
    },
}

#[derive(Clone, Copy, ValueEnum)]
enum Mode {
    Auto,
    Native,
    Generic,
}

impl From<Mode> for XdpMode {
    fn from(m: Mode) -> Self {
        match m {
            Mode::Auto => XdpMode::Default,
            Mode::Native => XdpMode::Driver,
            Mode::Generic => XdpMode::Skb,
        }
    }
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "info".into()),
        )
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .init();
    match Cli::parse().command {
        Command::Run {
            wan,
            tc,
            xdp_mode,
            stats_interval,
        } => run(wan, tc, xdp_mode.into(), stats_interval).await,
    }
}

async fn run(
    mut wan: Vec<String>,
    tc: Option<String>,
    mode: XdpMode,
    stats_interval: u64,
) -> anyhow::Result<()> {
    if wan.is_empty() {
        wan.push(default_route_interface().context("no --wan given")?);
    }
    let mut dp = Datapath::load()?;
    for iface in &wan {
        dp.attach_xdp(iface, mode)?;
        tracing::info!(iface, "XDP decapsulation attached");
    }
    if let Some(iface) = &tc {
        dp.attach_tc_egress(iface)?;
        tracing::info!(iface, "TC encapsulation attached");
    }
    tracing::info!("pptpgw running; SIGINT or SIGTERM to stop");

    let mut term = signal(SignalKind::terminate())?;
    let mut int = signal(SignalKind::interrupt())?;
    let period = Duration::from_secs(stats_interval.max(1));
    let mut tick = tokio::time::interval_at(tokio::time::Instant::now() + period, period);
    loop {
        tokio::select! {
            _ = term.recv() => break,
            _ = int.recv() => break,
            _ = tick.tick(), if stats_interval > 0 => log_counters(&dp.counters()?),
        }
    }
    log_counters(&dp.counters()?);
    drop(dp);
    tracing::info!("data path detached; exiting");
    Ok(())
}

fn log_counters(c: &Counters) {
    let stats: Vec<String> = Stat::ALL
        .iter()
        .map(|s| format!("{}={}", s.name(), c.get(*s)))
        .collect();
    let drops: Vec<String> = DropReason::ALL
        .iter()
        .filter(|r| c.dropped(**r) > 0)
        .map(|r| format!("{}={}", r.name(), c.dropped(*r)))
        .collect();
    tracing::info!(stats = %stats.join(" "), drops = %drops.join(" "), "counters");
}

/// The interface of the IPv4 default route, from /proc/net/route (a fallback for `run` without
/// `--wan`; a configured WAN list replaces it with the config file).
fn default_route_interface() -> anyhow::Result<String> {
    let table = std::fs::read_to_string("/proc/net/route").context("read /proc/net/route")?;
    table
        .lines()
        .skip(1)
        .filter_map(|l| {
            let mut cols = l.split_whitespace();
            let iface = cols.next()?;
            let dest = cols.next()?;
            (dest == "00000000").then(|| iface.to_string())
        })
        .next()
        .context("no IPv4 default route")
}
