//! Prometheus metrics and probes over HTTP (axum): `/metrics` (OpenMetrics text, encoded by
//! prometheus-client), `/healthz` (the controller's loop answers), `/readyz` (running, not
//! stopping). Every request is answered from the controller's own loop, so what is exported is
//! a consistent snapshot, and a wedged loop fails the probes.

use std::time::Duration;

use axum::{Router, extract::State, http::StatusCode, response::IntoResponse, routing::get};
use prometheus_client::{
    encoding::text::encode,
    metrics::{counter::Counter, family::Family, gauge::Gauge},
    registry::Registry,
};
use tokio::sync::{mpsc, oneshot};

use crate::{gateway::GatewayStats, pool::Usage};

/// The shell's own counters (the core's are `GatewayStats`, the data path's are in maps).
#[derive(Clone, Debug, Default, serde::Serialize)]
pub struct ShellStats {
    pub connections_rate_limited: u64,
    /// `accept()` failures (descriptors exhausted, mostly); each backs the listener off.
    pub accept_errors: u64,
    /// Control connections closed because the client did not read what we sent.
    pub control_send_overflow: u64,
    pub route_projection_errors: u64,
    pub route_withdrawal_errors: u64,
    pub map_errors: u64,
    pub reloads: u64,
    pub reloads_refused: u64,
    /// Data-path bytes and packets of sessions that have ended (so totals stay monotonic).
    pub ended_rx_bytes: u64,
    pub ended_tx_bytes: u64,
    pub ended_rx_packets: u64,
    pub ended_tx_packets: u64,
    /// Dynamic authorization (RFC 5176): requests taken, refused (dropped unanswered: unknown
    /// client, authenticator, Message-Authenticator, stale or replayed), ACKed, NAKed.
    pub das_requests: u64,
    pub das_refused: u64,
    pub das_acks: u64,
    pub das_naks: u64,
    /// Session journal writes that failed (those sessions would not survive a restart).
    pub journal_errors: u64,
    /// Sessions taken over from a previous worker at start, and those it left that could not be.
    pub sessions_carried: u64,
    pub sessions_lost_in_restart: u64,
}

/// Everything `/metrics` exports, gathered by the controller in one go.
#[derive(Clone, Debug, Default)]
pub struct Snapshot {
    pub sessions_up: u64,
    pub sessions_starting: u64,
    pub gateway: GatewayStats,
    pub shell: ShellStats,
    /// Data-path event counters and drops by reason, summed over CPUs.
    pub datapath: Vec<(&'static str, u64)>,
    pub drops: Vec<(&'static str, u64)>,
    pub pools: Vec<Usage>,
    /// Bytes/packets of live sessions (ended sessions are in `shell`).
    pub live: Traffic,
    pub map_sessions: u64,
    pub routes: u64,
    /// IPv6 /64s leased to sessions.
    pub ipv6_leased: u64,
    /// One entry per session when per-session series are on.
    pub per_session: Vec<(SessionLabels, Traffic)>,
}

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Traffic {
    pub rx_bytes: u64,
    pub tx_bytes: u64,
    pub rx_packets: u64,
    pub tx_packets: u64,
    pub rx_dropped: u64,
    pub tx_dropped: u64,
}

#[derive(Clone, Debug, PartialEq, Eq, Hash, prometheus_client::encoding::EncodeLabelSet)]
pub struct SessionLabels {
    pub session: u64,
    pub user: String,
    pub peer: String,
    /// The IPv4 address ("" for an IPv6-only session) and the /64 ("" without IPv6).
    pub assigned: String,
    pub prefix6: String,
}

type Labels = Vec<(&'static str, String)>;

fn counter(registry: &mut Registry, name: &str, help: &str, v: u64) {
    let c: Counter = Counter::default();
    c.inc_by(v);
    registry.register(name, help, c);
}

fn gauge(registry: &mut Registry, name: &str, help: &str, v: u64) {
    let g: Gauge = Gauge::default();
    g.set(v as i64);
    registry.register(name, help, g);
}

/// The OpenMetrics text for a snapshot.
pub fn render(s: &Snapshot) -> String {
    let mut r = Registry::with_prefix("pptpgw");
    let sessions = Family::<Labels, Gauge>::default();
    sessions
        .get_or_create(&vec![("state", "up".into())])
        .set(s.sessions_up as i64);
    sessions
        .get_or_create(&vec![("state", "starting".into())])
        .set(s.sessions_starting as i64);
    r.register("sessions", "Sessions by state", sessions);
    register_gateway(&mut r, s);
    register_shell(&mut r, s);
    register_pools(&mut r, s);
    register_datapath(&mut r, s);
    let mut out = String::new();
    // Writing into a String cannot fail.
    let _ = encode(&mut out, &r);
    out
}

/// The core's series: calls, sessions set up and ended, authentication, IPv6 control, the slow path.
fn register_gateway(r: &mut Registry, s: &Snapshot) {
    let g = &s.gateway;
    counter(
        r,
        "control_connections",
        "Control connections accepted",
        g.control_connections,
    );
    counter(r, "calls", "Outgoing-Call-Requests received", g.calls);
    counter(
        r,
        "calls_refused",
        "Calls refused in Outgoing-Call-Reply",
        g.calls_refused,
    );
    counter(r, "session_setups", "Sessions that came up", g.sessions_up);
    let ended = Family::<Labels, Counter>::default();
    for (reason, n) in &g.ended {
        ended
            .get_or_create(&vec![("reason", reason.clone())])
            .inc_by(*n);
    }
    r.register("session_teardowns", "Sessions ended, by reason", ended);
    let auth = Family::<Labels, Counter>::default();
    for (method, n) in &g.auth_failures {
        auth.get_or_create(&vec![("method", method.clone())])
            .inc_by(*n);
    }
    r.register("auth_failures", "Failed authentications, by method", auth);
    counter(
        r,
        "pool_exhausted",
        "Calls refused for want of an address",
        g.pool_exhausted,
    );
    counter(
        r,
        "router_advertisements",
        "IPv6 Router Advertisements sent to clients",
        g.router_adverts,
    );
    counter(
        r,
        "router_solicitations",
        "IPv6 Router Solicitations received from clients",
        g.router_solicitations,
    );
    counter(
        r,
        "dhcpv6_replies",
        "DHCPv6 Advertise and Reply messages sent to clients",
        g.dhcpv6_replies,
    );
    counter(
        r,
        "ipv6_slowpath_dropped",
        "IPv6 packets from clients that reached the controller and were not for it",
        g.ipv6_slowpath_dropped,
    );
    counter(
        r,
        "user_limit_refused",
        "Sessions refused by the per-user limit",
        g.user_limit_refused,
    );
    counter(
        r,
        "user_limit_replaced",
        "Sessions ended to make room for a newer one",
        g.user_limit_replaced,
    );
    let slow = Family::<Labels, Counter>::default();
    for (kind, n) in [
        ("data", g.slowpath_data_frames),
        ("mppe", g.slowpath_mppe_frames),
        ("control", g.slowpath_control_frames),
        ("unknown_call", g.slowpath_unknown_call),
        ("malformed", g.slowpath_malformed),
    ] {
        slow.get_or_create(&vec![("kind", kind.into())]).inc_by(n);
    }
    r.register(
        "slowpath_frames",
        "GRE frames handled by the controller's raw socket",
        slow,
    );
}

/// The shell's series: admission, the journal, restarts, routes and maps, reloads.
fn register_shell(r: &mut Registry, s: &Snapshot) {
    let g = &s.gateway;
    let sh = &s.shell;
    counter(
        r,
        "connections_rate_limited",
        "Control connections refused by the per-source rate limit",
        sh.connections_rate_limited,
    );
    // Every reason is exported (zero included), so alerts need not wait for a first refusal.
    let refused = Family::<Labels, Counter>::default();
    for reason in crate::admission::Refusal::ALL {
        let n = match reason {
            crate::admission::Refusal::ConnectionRate => sh.connections_rate_limited,
            _ => g.refused.get(reason.label()).copied().unwrap_or(0),
        };
        refused
            .get_or_create(&vec![("reason", reason.label().into())])
            .inc_by(n);
    }
    r.register(
        "refusals",
        "Control connections and calls refused by a limit, by reason",
        refused,
    );
    counter(
        r,
        "accept_errors",
        "Failed accept() calls on the control listeners (each backs off)",
        sh.accept_errors,
    );
    counter(
        r,
        "journal_errors",
        "Session journal writes that failed (those sessions would not survive a restart)",
        sh.journal_errors,
    );
    counter(
        r,
        "sessions_carried",
        "Sessions taken over from a previous worker at start (hitless restart)",
        sh.sessions_carried,
    );
    counter(
        r,
        "sessions_lost_in_restart",
        "Sessions a previous run left that could not be carried on (ended at start)",
        sh.sessions_lost_in_restart,
    );
    counter(
        r,
        "control_send_overflow",
        "Control connections closed because the client did not read",
        sh.control_send_overflow,
    );
    counter(
        r,
        "control_malformed",
        "Malformed control messages (answered or refused per RFC 2637)",
        g.control_malformed,
    );
    counter(
        r,
        "route_projection_errors",
        "Failed route projections (each retry counts)",
        sh.route_projection_errors,
    );
    counter(
        r,
        "route_withdrawal_errors",
        "Failed route withdrawals",
        sh.route_withdrawal_errors,
    );
    counter(r, "map_errors", "Failed BPF map updates", sh.map_errors);
    let reloads = Family::<Labels, Counter>::default();
    reloads
        .get_or_create(&vec![("result", "applied".into())])
        .inc_by(sh.reloads);
    reloads
        .get_or_create(&vec![("result", "refused".into())])
        .inc_by(sh.reloads_refused);
    r.register("reloads", "Configuration reloads", reloads);
}

/// Leases (IPv4 pools, IPv6 prefixes) and what the kernel holds.
fn register_pools(r: &mut Registry, s: &Snapshot) {
    let pool_size = Family::<Labels, Gauge>::default();
    let pool_leased = Family::<Labels, Gauge>::default();
    for u in &s.pools {
        pool_size
            .get_or_create(&vec![("pool", u.name.clone())])
            .set(u.size as i64);
        pool_leased
            .get_or_create(&vec![("pool", u.name.clone())])
            .set(u.leased as i64);
    }
    r.register("pool_addresses", "Addresses in each pool", pool_size);
    r.register(
        "pool_leased",
        "Addresses leased from each pool",
        pool_leased,
    );
    gauge(
        r,
        "ipv6_prefixes_leased",
        "IPv6 /64s leased to sessions",
        s.ipv6_leased,
    );
    gauge(
        r,
        "datapath_sessions",
        "Sessions programmed in the data path",
        s.map_sessions,
    );
    gauge(r, "routes", "Routes projected (protocol 241)", s.routes);
}

/// The data path's series: events, drops, traffic in total and (when asked) per session.
fn register_datapath(r: &mut Registry, s: &Snapshot) {
    let sh = &s.shell;
    let events = Family::<Labels, Counter>::default();
    for (name, n) in &s.datapath {
        events
            .get_or_create(&vec![("event", (*name).into())])
            .inc_by(*n);
    }
    r.register(
        "datapath_events",
        "Data-path packet events (XDP), summed over CPUs",
        events,
    );
    let drops = Family::<Labels, Counter>::default();
    for (name, n) in &s.drops {
        drops
            .get_or_create(&vec![("reason", (*name).into())])
            .inc_by(*n);
    }
    r.register(
        "datapath_drops",
        "Data-path drops by reason, summed over CPUs",
        drops,
    );
    let bytes = Family::<Labels, Counter>::default();
    let packets = Family::<Labels, Counter>::default();
    bytes
        .get_or_create(&vec![("direction", "rx".into())])
        .inc_by(sh.ended_rx_bytes + s.live.rx_bytes);
    bytes
        .get_or_create(&vec![("direction", "tx".into())])
        .inc_by(sh.ended_tx_bytes + s.live.tx_bytes);
    packets
        .get_or_create(&vec![("direction", "rx".into())])
        .inc_by(sh.ended_rx_packets + s.live.rx_packets);
    packets
        .get_or_create(&vec![("direction", "tx".into())])
        .inc_by(sh.ended_tx_packets + s.live.tx_packets);
    r.register(
        "datapath_bytes",
        "Inner bytes carried by the data path (rx: from clients)",
        bytes,
    );
    r.register(
        "datapath_packets",
        "Inner packets carried by the data path",
        packets,
    );
    if !s.per_session.is_empty() {
        let rx = Family::<SessionLabels, Gauge>::default();
        let tx = Family::<SessionLabels, Gauge>::default();
        for (labels, t) in &s.per_session {
            rx.get_or_create(labels).set(t.rx_bytes as i64);
            tx.get_or_create(labels).set(t.tx_bytes as i64);
        }
        r.register("session_rx_bytes", "Bytes from this session's client", rx);
        r.register("session_tx_bytes", "Bytes to this session's client", tx);
    }
}

/// What the HTTP side asks the controller's loop.
pub enum Query {
    Metrics(oneshot::Sender<String>),
    /// Ready (running, not stopping)?
    Health(oneshot::Sender<bool>),
}

pub async fn serve(listener: tokio::net::TcpListener, tx: mpsc::UnboundedSender<Query>) {
    let app = Router::new()
        .route("/metrics", get(metrics))
        .route("/healthz", get(healthz))
        .route("/readyz", get(readyz))
        .with_state(tx);
    if let Err(e) = axum::serve(listener, app).await {
        tracing::error!(error = %e, "metrics server stopped");
    }
}

const LOOP_DEADLINE: Duration = Duration::from_secs(3);

async fn ask<T>(
    tx: &mpsc::UnboundedSender<Query>,
    q: impl FnOnce(oneshot::Sender<T>) -> Query,
) -> Option<T> {
    let (reply, rx) = oneshot::channel();
    tx.send(q(reply)).ok()?;
    tokio::time::timeout(LOOP_DEADLINE, rx).await.ok()?.ok()
}

async fn metrics(State(tx): State<mpsc::UnboundedSender<Query>>) -> impl IntoResponse {
    match ask(&tx, Query::Metrics).await {
        Some(text) => (
            StatusCode::OK,
            [(
                axum::http::header::CONTENT_TYPE,
                "application/openmetrics-text; version=1.0.0; charset=utf-8",
            )],
            text,
        )
            .into_response(),
        None => (
            StatusCode::SERVICE_UNAVAILABLE,
            "controller not answering\n",
        )
            .into_response(),
    }
}

async fn healthz(State(tx): State<mpsc::UnboundedSender<Query>>) -> impl IntoResponse {
    match ask(&tx, Query::Health).await {
        Some(_) => (StatusCode::OK, "ok\n"),
        None => (
            StatusCode::SERVICE_UNAVAILABLE,
            "controller not answering\n",
        ),
    }
}

async fn readyz(State(tx): State<mpsc::UnboundedSender<Query>>) -> impl IntoResponse {
    match ask(&tx, Query::Health).await {
        Some(true) => (StatusCode::OK, "ready\n"),
        Some(false) => (StatusCode::SERVICE_UNAVAILABLE, "stopping\n"),
        None => (
            StatusCode::SERVICE_UNAVAILABLE,
            "controller not answering\n",
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renders_openmetrics() {
        let mut s = Snapshot {
            sessions_up: 3,
            datapath: vec![("xdp_decap", 10)],
            drops: vec![("spoofed_inner_source", 2)],
            pools: vec![Usage {
                name: "default".into(),
                size: 4,
                leased: 3,
            }],
            ..Snapshot::default()
        };
        s.gateway.ended.insert("echo_timeout".into(), 1);
        s.gateway.auth_failures.insert("pap".into(), 2);
        let text = render(&s);
        for line in [
            "pptpgw_sessions{state=\"up\"} 3",
            "pptpgw_datapath_events_total{event=\"xdp_decap\"} 10",
            "pptpgw_datapath_drops_total{reason=\"spoofed_inner_source\"} 2",
            "pptpgw_pool_leased{pool=\"default\"} 3",
            "pptpgw_session_teardowns_total{reason=\"echo_timeout\"} 1",
            "pptpgw_auth_failures_total{method=\"pap\"} 2",
            "# EOF",
        ] {
            assert!(text.lines().any(|l| l == line), "{line} missing:\n{text}");
        }
    }
}
