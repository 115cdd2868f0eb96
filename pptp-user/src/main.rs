//! `pptpgw`: the PPTP concentrator's controller and CLI.
use std::time::Duration;

use anyhow::Context as _;
use aya::programs::XdpMode;
use clap::{Parser, Subcommand, ValueEnum};
use pptp_user::{
    gateway::{Gateway, GatewayConfig},
    pool::{Policy, PoolConfig, Pools, Range},
    ppp::link::LinkConfig,
    secrets::Secrets,
    server::ServerConfig,
};

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
    /// Run the concentrator until SIGINT/SIGTERM (a second signal exits at once); clients are told,
    /// and routes, maps, `pptp0` and programs are removed on the way out.
    Run(RunArgs),
}

#[derive(clap::Args)]
struct RunArgs {
    /// WAN interface(s) for XDP decapsulation. Default: the interface of the IPv4 default route.
    #[arg(long = "wan")]
    wan: Vec<String>,
    /// Addresses to accept PPTP control connections on.
    #[arg(long = "listen", default_value = "0.0.0.0:1723")]
    listen: Vec<std::net::SocketAddr>,
    /// Users, in pppd's chap-secrets format (plain or `nthash:` secrets, optional static address).
    #[arg(long, default_value = "/etc/ppp/chap-secrets")]
    secrets: std::path::PathBuf,
    /// Our name in the secrets file's second column and in CHAP challenges.
    #[arg(long, default_value = "pptpgw")]
    name: String,
    /// Client address pool: ranges (`A-B`) or CIDRs, comma-separated.
    #[arg(long, default_value = "10.99.0.10-10.99.0.250")]
    pool: String,
    /// Our end of every client's point-to-point link.
    #[arg(long, default_value = "10.99.0.1")]
    tunnel_local: std::net::Ipv4Addr,
    /// DNS servers handed to clients (up to two).
    #[arg(long)]
    dns: Vec<std::net::Ipv4Addr>,
    /// Tunnel MTU (the MRU we ask clients for; TCP MSS is clamped to MTU − 40).
    #[arg(long, default_value_t = 1400)]
    mtu: u16,
    #[arg(long, value_enum, default_value_t = Mode::Auto)]
    xdp_mode: Mode,
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
        Command::Run(args) => run(args).await,
    }
}

async fn run(mut args: RunArgs) -> anyhow::Result<()> {
    if args.wan.is_empty() {
        args.wan
            .push(default_route_interface().context("no --wan given")?);
    }
    let text = std::fs::read_to_string(&args.secrets)
        .with_context(|| format!("--secrets {}: cannot read", args.secrets.display()))?;
    let secrets = Secrets::parse(&text, &args.name)
        .with_context(|| format!("--secrets {}", args.secrets.display()))?;
    let ranges = args
        .pool
        .split(',')
        .map(|r| r.parse::<Range>())
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| anyhow::anyhow!("--pool: {e}"))?;
    let statics: Vec<(String, std::net::Ipv4Addr)> = secrets
        .static_addresses()
        .map(|(u, a)| (u.to_string(), a))
        .collect();
    let pools = Pools::new(
        vec![PoolConfig {
            name: "default".into(),
            ranges,
            next: None,
        }],
        Policy::LowestFree,
        &[],
        &[args.tunnel_local],
        &statics,
    )
    .map_err(|e| anyhow::anyhow!("--pool: {e}"))?;
    let mut dns = [None, None];
    for (slot, d) in dns.iter_mut().zip(&args.dns) {
        *slot = Some(*d);
    }
    let mut link = LinkConfig::default();
    link.lcp.mru = args.mtu;
    link.auth.name = args.name.clone();
    let gw_config = GatewayConfig {
        link,
        tunnel_local: args.tunnel_local,
        dns,
        mtu: args.mtu,
        ..GatewayConfig::default()
    };
    let seed = {
        let mut b = [0u8; 8];
        std::fs::File::open("/dev/urandom")
            .and_then(|mut f| std::io::Read::read_exact(&mut f, &mut b))
            .context("read /dev/urandom")?;
        u64::from_le_bytes(b)
    };
    tracing::info!(users = secrets.len(), pool = %args.pool, "configuration loaded");
    let gateway = Gateway::new(gw_config, secrets, pools, seed);
    let server = ServerConfig {
        listen: args.listen,
        wan: args.wan,
        xdp_mode: args.xdp_mode.into(),
        pptp0: "pptp0".into(),
        mtu: args.mtu,
        tunnel_local: args.tunnel_local,
        shutdown_grace: Duration::from_secs(5),
    };
    pptp_user::server::run(server, gateway).await
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
