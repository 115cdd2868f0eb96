//! `pptp-client`: dial a PPTP server, report the session, optionally ping through it, hold it,
//! and hang up. One line per event on stdout (`key=value` pairs) for scripts and tests.
use std::{net::Ipv4Addr, process::ExitCode, time::Duration};

use clap::{Parser, ValueEnum};
use pptp_client::{DialConfig, DialError, Ended, dial, gre::GreMux, peer::PeerConfig};
use pptp_user::wire::lcp::AuthProtocol;

/// A line on stdout; a reader that went away (a test that stopped listening) is not an error.
macro_rules! say {
    ($($t:tt)*) => {{
        use std::io::Write as _;
        let mut out = std::io::stdout().lock();
        let _ = writeln!(out, $($t)*);
        let _ = out.flush();
    }};
}

#[derive(Parser)]
#[command(
    name = "pptp-client",
    version,
    about = "PPTP client for tests and load generation"
)]
struct Args {
    /// The server address to dial.
    #[arg(long)]
    server: Ipv4Addr,
    #[arg(long, default_value_t = 1723)]
    port: u16,
    /// Our source address (default: chosen by the route to the server).
    #[arg(long)]
    local: Option<Ipv4Addr>,
    #[arg(long)]
    user: String,
    #[arg(long)]
    password: String,
    /// Authentication methods we accept (repeatable; default: all three).
    #[arg(long = "auth", value_enum)]
    auth: Vec<Method>,
    /// Our call ID (default: from the process ID). Unique per client address.
    #[arg(long)]
    call_id: Option<u16>,
    /// Ping this address through the tunnel after the session is up.
    #[arg(long)]
    ping: Option<Ipv4Addr>,
    #[arg(long, default_value_t = 5)]
    count: u16,
    /// Keep the session this many seconds (after pinging); 0 hangs up at once.
    #[arg(long, default_value_t = 0.0)]
    hold: f64,
    /// Give up dialling after this many seconds.
    #[arg(long, default_value_t = 30.0)]
    timeout: f64,
    /// Require MPPE-128 (stateless), as pppd's require-mppe-128: MS-CHAPv2 only.
    #[arg(long)]
    mppe: bool,
    /// Agree to stateful MPPE when the server asks for it (pppd's mppe-stateful).
    #[arg(long)]
    mppe_stateful: bool,
}

#[derive(Clone, Copy, ValueEnum)]
enum Method {
    Mschapv2,
    ChapMd5,
    Pap,
}

impl From<Method> for AuthProtocol {
    fn from(m: Method) -> Self {
        match m {
            Method::Mschapv2 => AuthProtocol::MsChapV2,
            Method::ChapMd5 => AuthProtocol::ChapMd5,
            Method::Pap => AuthProtocol::Pap,
        }
    }
}

#[tokio::main(flavor = "current_thread")]
async fn main() -> ExitCode {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "warn".into()),
        )
        .with_writer(std::io::stderr)
        .init();
    let args = Args::parse();
    let mux = match GreMux::open() {
        Ok(m) => m,
        Err(e) => {
            say!("error=\"raw GRE socket: {e}\"");
            return ExitCode::from(3);
        }
    };
    let mut peer = PeerConfig {
        user: args.user.clone(),
        password: args.password.clone(),
        mppe: args.mppe,
        mppe_stateful: args.mppe_stateful,
        ..PeerConfig::default()
    };
    if !args.auth.is_empty() {
        peer.methods = args.auth.iter().map(|m| (*m).into()).collect();
    }
    let cfg = DialConfig {
        server: args.server,
        port: args.port,
        local: args.local,
        peer,
        call_id: args.call_id.unwrap_or((std::process::id() as u16).max(1)),
        timeout: Duration::from_secs_f64(args.timeout),
    };
    let mut session = match dial(cfg, &mux).await {
        Ok(s) => s,
        Err(e) => {
            let code = match &e {
                DialError::AuthFailed { .. } => 2,
                _ => 3,
            };
            say!("down error=\"{e}\"");
            return ExitCode::from(code);
        }
    };
    let i = &session.info;
    say!(
        "up address={} peer={} local={} server={} call_id={} peer_call_id={} auth={:?} encryption={}",
        i.network.address,
        i.network.peer,
        i.local,
        i.server,
        i.call_id,
        i.peer_call_id,
        i.network.auth,
        if i.network.mppe.is_some() && i.network.mppe_stateful {
            "mppe-128-stateful"
        } else if i.network.mppe.is_some() {
            "mppe-128"
        } else {
            "none"
        }
    );
    if let Some(dst) = args.ping {
        let r = session.ping(dst, args.count, Duration::from_secs(2)).await;
        say!("ping dst={dst} sent={} received={}", r.sent, r.received);
    }
    if args.hold > 0.0 {
        let hold = tokio::time::sleep(Duration::from_secs_f64(args.hold));
        let mut term =
            tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()).ok();
        let signalled = async {
            match term.as_mut() {
                Some(t) => {
                    t.recv().await;
                }
                None => std::future::pending().await,
            }
        };
        // The server may end it first (an operator, RADIUS Disconnect, a session timeout).
        let by_server = tokio::select! {
            _ = hold => None,
            _ = signalled => None,
            _ = tokio::signal::ctrl_c() => None,
            e = session.server_ended() => Some(e),
        };
        if let Some(ended) = by_server {
            say!("down ended={ended:?}");
            return ExitCode::from(4);
        }
    }
    let ended = session.hangup().await;
    say!("down ended={ended:?}");
    if ended == Ended::HungUp {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(4)
    }
}
