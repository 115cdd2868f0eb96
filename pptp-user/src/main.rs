//! `pptpgw`: the PPTP concentrator's controller and CLI.
use std::{
    net::{Ipv4Addr, SocketAddrV4},
    path::{Path, PathBuf},
    process::ExitCode,
};

use anyhow::Context as _;
use aya::programs::XdpMode;
use clap::{Parser, Subcommand, ValueEnum};
use pptp_user::{
    api::{self, Request, Selector},
    config::{Config, ConfigError, DEFAULT_API_SOCKET, DEFAULT_TOML, LogFormat, XdpModeName},
    control::connection::ControlConfig,
    gateway::{Gateway, GatewayConfig},
    pool::Pools,
    ppp::link::LinkConfig,
    secrets::Secrets,
    server::{ReloadPlan, Reloader, ServerConfig},
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
    /// Validate a configuration file (and the secrets file it names) without running anything.
    CheckConfig {
        /// The file to check.
        file: PathBuf,
        /// Overrides `auth.secrets`.
        #[arg(long)]
        secrets: Option<PathBuf>,
    },
    /// Print the built-in default configuration (a commented example of every field).
    DefaultConfig,
    /// List sessions: user, addresses, call IDs, uptime, data-path counters.
    Sessions {
        #[arg(long)]
        json: bool,
        #[command(flatten)]
        api: ApiArgs,
    },
    /// End sessions cleanly (LCP Terminate-Request, then Call-Disconnect-Notify).
    Kill {
        #[arg(long)]
        id: Option<u64>,
        #[arg(long)]
        user: Option<String>,
        /// The assigned address or the client's outer address.
        #[arg(long)]
        ip: Option<Ipv4Addr>,
        #[arg(long)]
        all: bool,
        #[command(flatten)]
        api: ApiArgs,
    },
    /// Global counters: controller, data path, drop reasons, maps, pools (JSON).
    Stats {
        #[command(flatten)]
        api: ApiArgs,
    },
    /// Re-read the config and secrets (as SIGHUP does): users, pools, timers and limits for new
    /// sessions; live sessions stay up. A change only a restart can make is refused, not
    /// half-applied.
    Reload {
        #[command(flatten)]
        api: ApiArgs,
    },
    /// Hand the running gateway over to the binary now installed at its path (as SIGUSR2 to
    /// `pptpgw run`): sockets, sessions and the pinned data path carry on, nothing is dropped.
    Upgrade {
        #[command(flatten)]
        api: ApiArgs,
    },
}

#[derive(clap::Args)]
struct ApiArgs {
    /// The running gateway's control API socket.
    #[arg(long, default_value = DEFAULT_API_SOCKET)]
    socket: PathBuf,
}

#[derive(clap::Args)]
struct RunArgs {
    /// Configuration file (TOML). Without it, the built-in default (`pptpgw default-config`).
    #[arg(long, short)]
    config: Option<PathBuf>,
    /// Overrides `interfaces.wan`.
    #[arg(long = "wan")]
    wan: Vec<String>,
    /// Overrides `listen.addresses` and `listen.port` (`ADDRESS:PORT`, repeatable).
    #[arg(long = "listen")]
    listen: Vec<SocketAddrV4>,
    /// Overrides `auth.secrets`.
    #[arg(long)]
    secrets: Option<PathBuf>,
    /// Overrides `interfaces.xdp_mode`.
    #[arg(long, value_enum)]
    xdp_mode: Option<Mode>,
    /// Overrides `api.socket`.
    #[arg(long)]
    api_socket: Option<PathBuf>,
    /// Overrides `log.format`.
    #[arg(long, value_enum)]
    log_format: Option<LogFormatArg>,
    /// Overrides `restart.supervise` (one process: a crash drops the control connections).
    #[arg(long)]
    no_supervisor: bool,
    /// Overrides `restart.pin_dir` (an empty string: not pinned).
    #[arg(long)]
    pin_dir: Option<PathBuf>,
    /// Overrides `restart.state_dir`.
    #[arg(long)]
    state_dir: Option<PathBuf>,
}

#[derive(Clone, Copy, ValueEnum)]
enum LogFormatArg {
    Text,
    Json,
}

impl From<LogFormatArg> for LogFormat {
    fn from(f: LogFormatArg) -> Self {
        match f {
            LogFormatArg::Text => LogFormat::Text,
            LogFormatArg::Json => LogFormat::Json,
        }
    }
}

#[derive(Clone, Copy, ValueEnum)]
enum Mode {
    Auto,
    Native,
    Generic,
}

impl From<Mode> for XdpModeName {
    fn from(m: Mode) -> Self {
        match m {
            Mode::Auto => XdpModeName::Auto,
            Mode::Native => XdpModeName::Native,
            Mode::Generic => XdpModeName::Generic,
        }
    }
}

fn xdp_mode(m: XdpModeName) -> XdpMode {
    match m {
        XdpModeName::Auto => XdpMode::Default,
        XdpModeName::Native => XdpMode::Driver,
        XdpModeName::Generic => XdpMode::Skb,
    }
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    if let Command::Run(args) = &cli.command
        && let Some(config) = supervised(args)
    {
        // The supervisor holds every socket: as many descriptors as the worker may open.
        raise_nofile_limit();
        let json = config.log.format == LogFormat::Json;
        return pptp_user::handover::supervisor::run(std::env::args_os().skip(1).collect(), json);
    }
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(r) => r,
        Err(e) => {
            eprintln!("pptpgw: tokio runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    runtime.block_on(cli_main(cli))
}

/// `run` starts the supervisor unless this is its worker, or supervision is off (a config that
/// does not parse runs unsupervised, to report its error the one way).
fn supervised(args: &RunArgs) -> Option<Config> {
    if std::env::var_os(pptp_user::handover::fds::ENV_WORKER).is_some() || args.no_supervisor {
        return None;
    }
    read_config(args).ok().filter(|c| c.restart.supervise)
}

async fn cli_main(cli: Cli) -> ExitCode {
    if !matches!(cli.command, Command::Run(_)) {
        // `run` sets logging up from its config.
        init_logging(&pptp_user::config::Log::default());
    }
    let result = match cli.command {
        Command::Run(args) => match run(args).await {
            Ok(pptp_user::server::Exit::HandedOver) => {
                return ExitCode::from(pptp_user::handover::fds::EXIT_HANDED_OVER as u8);
            }
            Ok(pptp_user::server::Exit::Stopped) => Ok(()),
            Err(e) => Err(e),
        },
        Command::CheckConfig { file, secrets } => check_config(&file, secrets.as_deref()),
        Command::DefaultConfig => {
            print!("{DEFAULT_TOML}");
            Ok(())
        }
        Command::Sessions { json, api } => sessions(&api.socket, json).await,
        Command::Kill {
            id,
            user,
            ip,
            all,
            api,
        } => {
            let selector = Selector { id, user, ip, all };
            if selector.is_empty() {
                Err(anyhow::anyhow!("kill: give --id, --user, --ip or --all"))
            } else {
                api::call(&api.socket, &Request::Kill(selector))
                    .await
                    .map(|v| println!("{}", v["killed"]))
            }
        }
        Command::Stats { api } => api::call(&api.socket, &Request::Stats)
            .await
            .map(|v| println!("{}", serde_json::to_string_pretty(&v).unwrap_or_default())),
        Command::Reload { api } => api::call(&api.socket, &Request::Reload)
            .await
            .map(|v| println!("{}", serde_json::to_string_pretty(&v).unwrap_or_default())),
        Command::Upgrade { api } => api::call(&api.socket, &Request::Upgrade)
            .await
            .and_then(|v| match v["error"].as_str() {
                Some(e) => Err(anyhow::anyhow!("upgrade: {e}")),
                None => {
                    println!("upgrade started");
                    Ok(())
                }
            }),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("pptpgw: {e:#}");
            ExitCode::FAILURE
        }
    }
}

/// Everything `run` needs from the files, validated.
struct Loaded {
    config: Config,
    secrets: Secrets,
    pools: Pools,
}

fn load(config: Config, secrets_override: Option<&Path>) -> anyhow::Result<Loaded> {
    // Validation needs this host's addresses; a reload reads them afresh.
    let mut config = config;
    if let Some(s) = secrets_override {
        config.auth.secrets = s.to_path_buf();
    }
    let local =
        pptp_user::kernel::netdev::local_ipv4_addresses().context("list local addresses")?;
    config.validate(&local)?;
    let path = &config.auth.secrets;
    let text = std::fs::read_to_string(path)
        .map_err(|e| ConfigError::new("auth.secrets", format!("{}: {e}", path.display())))?;
    let secrets = Secrets::parse(&text, &config.auth.server_name)
        .map_err(|e| ConfigError::new("auth.secrets", format!("{}: {e}", path.display())))?;
    let statics: Vec<(String, Ipv4Addr)> = secrets
        .static_addresses()
        .map(|(u, a)| (u.to_string(), a))
        .collect();
    let pools = config.pools(&local, &statics)?;
    Ok(Loaded {
        config,
        secrets,
        pools,
    })
}

fn check_config(file: &Path, secrets: Option<&Path>) -> anyhow::Result<()> {
    let loaded = load(Config::load(file)?, secrets)?;
    let size: usize = loaded.pools.usage().iter().map(|u| u.size).sum();
    println!(
        "{}: ok ({} users, {} pools with {} addresses)",
        file.display(),
        loaded.secrets.len(),
        loaded.config.pool.len(),
        size
    );
    Ok(())
}

/// The config from `--config` (or the built-in default) with the command line's overrides.
fn read_config(args: &RunArgs) -> anyhow::Result<Config> {
    let mut config = match &args.config {
        Some(path) => Config::load(path)?,
        None => Config::parse(DEFAULT_TOML)?,
    };
    if !args.wan.is_empty() {
        config.interfaces.wan = args.wan.clone();
    }
    if let Some(m) = args.xdp_mode {
        config.interfaces.xdp_mode = m.into();
    }
    if !args.listen.is_empty() {
        config.listen.addresses = args.listen.iter().map(|a| *a.ip()).collect();
        config.listen.port = args.listen[0].port();
    }
    if let Some(s) = &args.secrets {
        config.auth.secrets = s.clone();
    }
    if let Some(p) = &args.api_socket {
        config.api.socket = p.clone();
    }
    if let Some(f) = args.log_format {
        config.log.format = f.into();
    }
    if args.no_supervisor {
        config.restart.supervise = false;
    }
    if let Some(p) = &args.pin_dir {
        config.restart.pin_dir = p.clone();
    }
    if let Some(p) = &args.state_dir {
        config.restart.state_dir = p.clone();
    }
    Ok(config)
}

/// What the gateway core takes from the config (everything that applies to new sessions).
/// The RADIUS client, when servers are configured.
fn radius(config: &Config) -> anyhow::Result<Option<std::sync::Arc<pptp_user::radius::Radius>>> {
    let Some(client) = config.radius.client()? else {
        return Ok(None);
    };
    tracing::info!(
        servers = client.servers.len(),
        "authentication through RADIUS"
    );
    Ok(Some(std::sync::Arc::new(pptp_user::radius::Radius {
        client: pptp_user::radius::client::Client::new(client),
        nas_ip: config.radius.nas_ip()?,
        nas_identifier: config.radius.nas_identifier.clone(),
    })))
}

/// The accounting sender's setup, when accounting servers are configured.
fn accounting(config: &Config) -> anyhow::Result<Option<pptp_user::server::AccountingSetup>> {
    let Some(client) = config.radius.accounting_client()? else {
        return Ok(None);
    };
    tracing::info!(servers = client.servers.len(), "RADIUS accounting");
    Ok(Some(pptp_user::server::AccountingSetup {
        client: std::sync::Arc::new(pptp_user::radius::client::Client::new(client)),
        nas: pptp_user::radius::accounting::Nas {
            ip: config.radius.nas_ip()?,
            identifier: config.radius.nas_identifier.clone(),
        },
        interim: Some(config.radius.interim_interval).filter(|d| !d.is_zero()),
    }))
}

fn gateway_config(config: &Config) -> GatewayConfig {
    let t = &config.timers;
    let mut link = LinkConfig::default();
    link.lcp.mru = config.ppp.mtu;
    link.lcp.auth = config.auth.methods.iter().map(|m| (*m).into()).collect();
    link.auth.name = config.auth.server_name.clone();
    link.auth.max_attempts = config.auth.max_attempts;
    link.auth.remote = !config.radius.servers.is_empty();
    link.mppe = config.ppp.mppe;
    link.mppe_stateful = config.ppp.mppe_stateful;
    link.ipv6 = config.ppp.ipv6;
    link.ipv4 = config.ppp.ipv4;
    link.echo_interval = t.echo_interval;
    link.echo_failures = t.echo_failures;
    link.fsm = pptp_user::ppp::fsm::Config {
        restart_timer: t.restart_timer,
        max_terminate: t.max_terminate,
        max_configure: t.max_configure,
        max_failure: t.max_failure,
    };
    let control = ControlConfig {
        host_name: config.auth.server_name.clone(),
        start_timeout: t.control_start_timeout,
        echo_interval: t.control_echo_interval,
        echo_timeout: t.control_echo_timeout,
        ..ControlConfig::default()
    };
    GatewayConfig {
        control,
        link,
        pool: config.pools.default.clone(),
        tunnel_local: config.ppp.tunnel_local,
        dns: config.dns(),
        nbns: config.wins(),
        mtu: config.ppp.mtu,
        mss_clamp: config.ppp.mss_clamp,
        max_sessions: config.limits.max_sessions,
        max_sessions_per_user: config.limits.max_sessions_per_user,
        per_user_policy: config.limits.per_user_policy,
        on_reload_removed: config.pools.on_reload_removed,
        limits: config.limits.admission(),
        rate_limit: config.limits.rate().ok().flatten(),
        radius_fallback_local: config.radius.when_unreachable
            == pptp_user::config::RadiusUnreachable::Local,
        ipv6: config.ipv6.gateway(),
    }
}

fn init_logging(log: &pptp_user::config::Log) {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(&log.level));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    match log.format {
        LogFormat::Json => builder.json().flatten_event(true).init(),
        LogFormat::Text => builder
            .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
            .init(),
    }
}

/// One descriptor per control connection: a concentrator needs the hard limit, not the default
/// soft 1024.
fn raise_nofile_limit() {
    let mut l = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit/setrlimit with a valid rlimit struct.
    unsafe {
        if libc::getrlimit(libc::RLIMIT_NOFILE, &mut l) == 0 && l.rlim_cur < l.rlim_max {
            l.rlim_cur = l.rlim_max;
            libc::setrlimit(libc::RLIMIT_NOFILE, &l);
        }
    }
}

/// The capabilities `run` needs, with what each is for: checked before anything is created, so
/// a container or unit missing one fails with its name rather than with the first EPERM.
const CAPABILITIES: [(u32, &str, &str); 4] = [
    (
        12,
        "CAP_NET_ADMIN",
        "create pptp0, attach XDP, project routes",
    ),
    (13, "CAP_NET_RAW", "the raw GRE socket of the slow path"),
    (39, "CAP_BPF", "load the eBPF programs and maps"),
    (
        38,
        "CAP_PERFMON",
        "the data path's pointer arithmetic and helpers",
    ),
];

fn check_capabilities() -> anyhow::Result<()> {
    let status = std::fs::read_to_string("/proc/self/status").context("read /proc/self/status")?;
    let effective = status
        .lines()
        .find_map(|l| l.strip_prefix("CapEff:"))
        .and_then(|v| u64::from_str_radix(v.trim(), 16).ok())
        .context("no CapEff in /proc/self/status")?;
    let missing: Vec<String> = CAPABILITIES
        .iter()
        .filter(|(bit, _, _)| effective & (1 << bit) == 0)
        .map(|(_, name, why)| format!("{name} ({why})"))
        .collect();
    if !missing.is_empty() {
        anyhow::bail!("missing capabilities: {}", missing.join(", "));
    }
    Ok(())
}

async fn run(args: RunArgs) -> anyhow::Result<pptp_user::server::Exit> {
    let config = read_config(&args)?;
    init_logging(&config.log);
    check_capabilities()?;
    raise_nofile_limit();
    let Loaded {
        config,
        secrets,
        pools,
    } = load(config, None)?;
    let mut wan = config.interfaces.wan.clone();
    if wan.is_empty() {
        wan.push(default_route_interface().context("interfaces.wan is empty")?);
    }
    let seed = {
        let mut b = [0u8; 8];
        std::fs::File::open("/dev/urandom")
            .and_then(|mut f| std::io::Read::read_exact(&mut f, &mut b))
            .context("read /dev/urandom")?;
        u64::from_le_bytes(b)
    };
    tracing::info!(
        config = %args.config.as_deref().map_or("(built-in default)".into(), |p| p.display().to_string()),
        users = secrets.len(),
        pools = config.pool.len(),
        "configuration loaded"
    );
    let mut gateway = Gateway::new(gateway_config(&config), secrets, pools, seed);
    gateway.set_pools6(config.pools6()?);
    let t = &config.timers;
    let server = ServerConfig {
        listen: config.listen_addresses(),
        wan,
        xdp_mode: xdp_mode(config.interfaces.xdp_mode),
        pptp0: config.interfaces.tunnel_device.clone(),
        mtu: config.ppp.mtu,
        tunnel_local: config.ppp.tunnel_local,
        shutdown_grace: t.shutdown_grace,
        api_socket: Some(config.api.socket.clone()).filter(|p| !p.as_os_str().is_empty()),
        metrics: config.metrics.address()?,
        per_session_metrics: config.metrics.per_session,
        connection_rate_per_source: config.limits.connection_rate_per_source,
        reorder_window: config.forwarding.reorder_window,
        xdp_forwarding: config.forwarding.mode == pptp_user::config::ForwardingMode::Xdp,
        lan: config.forwarding.lan.clone(),
        radius: radius(&config)?,
        accounting: accounting(&config)?,
        das: config.radius.das()?,
        pin_dir: config.restart.pin_dir_here()?,
        state_dir: Some(config.restart.state_dir_or(&config.api.socket)),
        ipv6: config.ipv6_enabled(),
    };
    // Reload (SIGHUP, `pptpgw reload`): the same files and overrides, read afresh; refused as a
    // whole when it fails validation or changes what only a restart can.
    let mut current = config;
    let reloader: Reloader = Box::new(move || {
        let new = read_config(&args)?;
        let Loaded {
            config: new,
            secrets,
            pools,
        } = load(new, None)?;
        let restart = current.restart_only_changes(&new);
        if !restart.is_empty() {
            anyhow::bail!(
                "not reloaded: {} can only change with a restart",
                restart.join(", ")
            );
        }
        let plan = ReloadPlan {
            gateway: gateway_config(&new),
            secrets,
            pools,
            connection_rate_per_source: new.limits.connection_rate_per_source,
        };
        current = new;
        Ok(plan)
    });
    pptp_user::server::run(server, gateway, reloader).await
}

async fn sessions(socket: &Path, json: bool) -> anyhow::Result<()> {
    let v = api::call(socket, &Request::Sessions).await?;
    if json {
        println!("{}", serde_json::to_string_pretty(&v["sessions"])?);
        return Ok(());
    }
    println!(
        "{:>5} {:<16} {:<15} {:<15} {:<15} {:<22} {:>11} {:<8} {:>8} {:>10} {:>10} {:>10} {:>10} {:>6}",
        "ID",
        "USER",
        "CLIENT",
        "DIALLED",
        "ASSIGNED",
        "PREFIX6",
        "CALL/PEER",
        "STATE",
        "UPTIME",
        "RX_PKTS",
        "RX_BYTES",
        "TX_PKTS",
        "TX_BYTES",
        "DROPS"
    );
    for s in v["sessions"].as_array().into_iter().flatten() {
        let str_of = |k: &str| s[k].as_str().unwrap_or("-").to_string();
        let num = |k: &str| s[k].as_u64().unwrap_or(0);
        println!(
            "{:>5} {:<16} {:<15} {:<15} {:<15} {:<22} {:>11} {:<8} {:>8} {:>10} {:>10} {:>10} {:>10} {:>6}",
            num("id"),
            str_of("user"),
            str_of("peer"),
            str_of("local"),
            str_of("assigned"),
            s["prefix6"]
                .as_str()
                .map_or("-".into(), |p| format!("{p}/64")),
            format!("{}/{}", num("call_id"), num("peer_call_id")),
            str_of("state"),
            format!("{:.0}s", s["uptime_s"].as_f64().unwrap_or(0.0)),
            num("rx_packets"),
            num("rx_bytes"),
            num("tx_packets"),
            num("tx_bytes"),
            num("rx_dropped") + num("tx_dropped"),
        );
    }
    Ok(())
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
