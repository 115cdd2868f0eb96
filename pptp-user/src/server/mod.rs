//! The tokio shell around the gateway core: it owns the sockets, the eBPF maps, `pptp0` and the
//! routes, turns what happens on them into core events, and carries out the core's commands.
//! One task owns the core; connection readers and the GRE socket feed it through a channel.
//!
//! Under the supervisor (`handover`), every socket is also held by the supervisor and every up
//! session is journaled, so that a worker that dies or hands over (`carry`) loses nothing.

mod carry;

use std::{
    collections::{BTreeMap, HashMap},
    net::{Ipv4Addr, SocketAddr},
    sync::Arc,
    time::Duration,
};

use anyhow::Context as _;
use aya::programs::XdpMode;
use pptp_common::session::{DatapathConfig, SessionKey};
use tokio::{
    io::{AsyncReadExt as _, AsyncWriteExt as _, unix::AsyncFd},
    net::{TcpListener, TcpStream},
    sync::mpsc,
    time::Instant,
};

use crate::{
    admission::{LogThrottle, Refusal},
    api,
    gateway::{Command, ConnId, Event, Gateway, TimerKey},
    handover::{
        fds::{GRE_TOKEN, Worker, conn_token, listener_token},
        journal::{Entry, Journal, JournaledSession, Recovered, unix_ms},
    },
    kernel::{
        datapath::{Adopted, Datapath},
        netdev, route,
        seqspace::SeqSpace,
        slowpath::GreSocket,
    },
    metrics::ShellStats,
    wire::gre::GreHeader,
};

/// Inputs waiting for the core at most. Readers wait for room (TCP pushes back on their
/// clients), so a fast sender slows itself down instead of growing our memory.
const INPUT_QUEUE: usize = 1024;
/// Bytes queued towards one control connection before we stop reading its requests (TCP then
/// pushes back on a client that pipelines requests without reading the replies)...
const CONN_QUEUE_PAUSE: usize = 16 * 1024;
/// ...and the most we queue: past it the connection is closed rather than buffered for (only
/// replies to requests already read can get there).
const CONN_QUEUE_MAX: usize = 256 * 1024;
/// How long one control write may wait for a client to read.
const WRITE_TIMEOUT: Duration = Duration::from_secs(10);
/// Refusals are logged once per source and reason per this interval.
const LOG_INTERVAL: Duration = Duration::from_secs(10);

/// How long a direction may stay silent before an owed ack goes out on its own.
const IDLE_ACK_NS: u64 = 250_000_000;

/// What the shell needs besides the core's own configuration.
#[derive(Clone, Debug)]
pub struct ServerConfig {
    pub listen: Vec<SocketAddr>,
    pub wan: Vec<String>,
    pub xdp_mode: XdpMode,
    pub pptp0: String,
    pub mtu: u16,
    /// Also put this address on `pptp0` (the clients' point-to-point peer), so it answers pings.
    pub tunnel_local: Ipv4Addr,
    pub shutdown_grace: Duration,
    /// The control API's Unix socket (`None`: no API).
    pub api_socket: Option<std::path::PathBuf>,
    /// HTTP address for `/metrics`, `/healthz`, `/readyz` (`None`: off).
    pub metrics: Option<SocketAddr>,
    pub per_session_metrics: bool,
    /// New control connections per second per source address (0: unlimited).
    pub connection_rate_per_source: u32,
    /// The data path's GRE reorder window (`forwarding.reorder_window`).
    pub reorder_window: u32,
    /// `forwarding.mode = "xdp"`: XDP forwards client traffic itself.
    pub xdp_forwarding: bool,
    /// `forwarding.lan`: interfaces that get the LAN program (`xdp` mode).
    pub lan: Vec<String>,
    /// `[radius]` with servers: credentials are checked there.
    pub radius: Option<Arc<crate::radius::Radius>>,
    /// `[radius] accounting_servers`: records go there.
    pub accounting: Option<AccountingSetup>,
    /// `[radius] das_listen` and its clients.
    pub das: Option<(SocketAddr, crate::radius::dynamic::Clients)>,
    /// `restart.pin_dir`: the data path is pinned there and outlives us (`None`: it goes with
    /// the process).
    pub pin_dir: Option<std::path::PathBuf>,
    /// `restart.state_dir`: the session journal's directory (`None`: no journal).
    pub state_dir: Option<std::path::PathBuf>,
    /// `ppp.ipv6` is on: `pptp0` carries IPv6.
    pub ipv6: bool,
}

/// How the worker ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Exit {
    /// A stop: sessions ended, routes, maps, programs and `pptp0` removed.
    Stopped,
    /// An upgrade: everything left running for the next worker, which takes it over.
    HandedOver,
}

/// Set once a handover begins: connection tasks then leave their sockets open for the next
/// worker instead of closing them.
static HANDING_OVER: std::sync::atomic::AtomicBool = std::sync::atomic::AtomicBool::new(false);

/// What accounting needs from the configuration.
#[derive(Clone, Debug)]
pub struct AccountingSetup {
    pub client: Arc<crate::radius::client::Client>,
    pub nas: crate::radius::accounting::Nas,
    /// Interim-Updates unless RADIUS says otherwise.
    pub interim: Option<Duration>,
}

/// The shell's accounting: the sender task's queue and each up session's record.
struct Accounting {
    tx: mpsc::Sender<crate::radius::accounting::Record>,
    task: tokio::task::JoinHandle<()>,
    interim: Option<Duration>,
    sessions: HashMap<u64, AcctSession>,
    /// A prefix that makes Acct-Session-Id unique across restarts (our start time).
    id_prefix: u32,
}

struct AcctSession {
    info: crate::radius::accounting::SessionInfo,
    slot: u32,
    started: Instant,
    interim: Option<Duration>,
    /// `None` also while the Start waits (`Command::AccountingStart`): no Interim before it.
    next_interim: Option<Instant>,
    /// The Start went out.
    start_sent: bool,
}

/// What a reload brings: the core's new configuration, users and pools, and the shell's limits.
pub struct ReloadPlan {
    pub gateway: crate::gateway::GatewayConfig,
    pub secrets: crate::secrets::Secrets,
    pub pools: crate::pool::Pools,
    pub connection_rate_per_source: u32,
}

/// Reads and validates the configuration afresh (SIGHUP, `pptpgw reload`).
pub type Reloader = Box<dyn FnMut() -> anyhow::Result<ReloadPlan> + Send>;

enum Input {
    Accepted {
        conn: ConnId,
        local: Ipv4Addr,
        peer: Ipv4Addr,
        out: ConnQueue,
    },
    Bytes {
        conn: ConnId,
        bytes: Vec<u8>,
    },
    Closed {
        conn: ConnId,
    },
    Gre {
        local: Ipv4Addr,
        peer: Ipv4Addr,
        call_id: u16,
        payload: Vec<u8>,
    },
    Api {
        request: api::Request,
        reply: tokio::sync::oneshot::Sender<serde_json::Value>,
    },
    /// A dynamic authorization request that passed its checks (`radius::dynamic`).
    Dynamic {
        request: Box<crate::radius::dynamic::Request>,
        from: SocketAddr,
        socket: Arc<tokio::net::UdpSocket>,
    },
    /// One the checks refused (dropped unanswered, counted here).
    DynamicRefused,
    /// A RADIUS verdict (from a task `Command::Verify` started).
    Verdict {
        session: u64,
        creds: Box<crate::auth::authenticator::Credentials>,
        verdict: crate::auth::authenticator::Verdict,
        authorization: Box<crate::radius::access::Authorization>,
    },
}

/// Counted and logged outside the core's loop (by the accept loops), read by it.
#[derive(Default)]
struct Refusals {
    rate_limited: std::sync::atomic::AtomicU64,
    accept_errors: std::sync::atomic::AtomicU64,
    log: std::sync::Mutex<LogThrottle>,
}

impl Refusals {
    /// Logs a refusal unless this source was logged for it within the interval.
    fn log(&self, peer: Ipv4Addr, reason: Refusal, origin: Instant) {
        let shown = self.log.lock().unwrap_or_else(|e| e.into_inner()).admit(
            peer,
            reason,
            origin.elapsed(),
            LOG_INTERVAL,
        );
        if let Some(suppressed) = shown {
            tracing::info!(%peer, reason = %reason.label(), suppressed, "refused");
        }
    }
}

/// Timers as deadlines; the loop sleeps until the earliest.
#[derive(Default)]
struct Timers {
    by_key: HashMap<TimerKey, Instant>,
    by_time: BTreeMap<(Instant, TimerKey), ()>,
}

impl Timers {
    fn set(&mut self, key: TimerKey, after: Duration) {
        self.cancel(key);
        let at = Instant::now() + after;
        self.by_key.insert(key, at);
        self.by_time.insert((at, key), ());
    }
    fn cancel(&mut self, key: TimerKey) {
        if let Some(at) = self.by_key.remove(&key) {
            self.by_time.remove(&(at, key));
        }
    }
    fn next(&self) -> Option<Instant> {
        self.by_time.keys().next().map(|(at, _)| *at)
    }
    fn remaining(&self, key: TimerKey) -> Option<Duration> {
        self.by_key
            .get(&key)
            .map(|at| at.saturating_duration_since(Instant::now()))
    }
    fn pop_due(&mut self, now: Instant) -> Option<TimerKey> {
        let (&(at, key), _) = self.by_time.iter().next()?;
        if at > now {
            return None;
        }
        self.by_time.remove(&(at, key));
        self.by_key.remove(&key);
        Some(key)
    }
}

struct Shell {
    dp: Datapath,
    seq: SeqSpace,
    gre: Arc<AsyncFd<GreSocket>>,
    /// Each control connection's outgoing queue; dropping it closes the connection.
    conns: HashMap<ConnId, ConnQueue>,
    /// Programmed sessions, for the idle-ack scan.
    programmed: HashMap<SessionKey, pptp_common::session::Session>,
    timers: Timers,
    rt: rtnetlink::Handle,
    pptp0_ifindex: u32,
    /// The controller's IPv6 packets to clients go through the data path (`SendIpv6`).
    inject: Option<crate::kernel::inject::Injector>,
    /// Sessions whose route could not be projected, for the core to end.
    route_failed: Vec<u64>,
    refusals: Arc<Refusals>,
    origin: Instant,
    /// When each session came up (for uptime).
    up_since: HashMap<u64, Instant>,
    stats: ShellStats,
    limiter: Arc<std::sync::Mutex<crate::ratelimit::RateLimiter>>,
    per_session_metrics: bool,
    stopping: bool,
    /// RADIUS, when configured; its verdicts come back through `inputs`.
    radius: Option<Arc<crate::radius::Radius>>,
    inputs: mpsc::Sender<Input>,
    accounting: Option<Accounting>,
    /// Sessions with a RADIUS Idle-Timeout: their slot and the timeout.
    idle: HashMap<u64, (u32, Duration)>,
    /// The supervisor's channel (a no-op handle when unsupervised).
    worker: Arc<Worker>,
    /// The session journal (`restart.state_dir`).
    journal: Option<Journal>,
}

impl Shell {
    /// Records a session event; a journal that cannot be written is logged, never fatal (the
    /// sessions run on; only a restart would lose them).
    fn journal_entry(&mut self, entry: Entry) {
        if let Some(j) = self.journal.as_mut()
            && let Err(e) = j.append(entry)
        {
            self.stats.journal_errors += 1;
            tracing::error!(error = %format!("{e:#}"), "session journal write failed");
        }
    }

    /// A session came up: uptime, idle timeout, its accounting (the Start waits for the core's
    /// `AccountingStart`), the journal.
    fn session_up(&mut self, command: Command) {
        let Command::SessionUp {
            session,
            user,
            addr,
            local,
            peer,
            encryption,
            slot,
            call_id,
            class,
            interim,
            idle_timeout,
            record,
        } = command
        else {
            return;
        };
        self.up_since.insert(session, Instant::now());
        if let Some(t) = idle_timeout {
            self.idle
                .insert(session, (slot, Duration::from_secs(u64::from(t))));
        }
        let addr_text = addr.map_or_else(|| "-".to_string(), |a| a.to_string());
        tracing::info!(session, user = user.as_deref().unwrap_or("-"), addr = %addr_text, %local, %peer, encryption = %encryption, "session up");
        if let Some(a) = self.accounting.as_mut() {
            let info = crate::radius::accounting::SessionInfo {
                session_id: format!("{:08X}{session:08X}", a.id_prefix),
                user: user.unwrap_or_default(),
                framed_ip: addr,
                calling: peer,
                called: local,
                nas_port: u32::from(call_id),
                class,
                framed_ipv6_prefix: None,
                delegated_ipv6_prefix: None,
            };
            let interim = interim
                .map(|s| Duration::from_secs(u64::from(s).max(10)))
                .or(a.interim);
            a.sessions.insert(
                session,
                AcctSession {
                    info,
                    slot,
                    started: Instant::now(),
                    interim,
                    next_interim: None,
                    start_sent: false,
                },
            );
        }
        if let Some(record) = record {
            self.journal_up(*record);
        }
    }

    /// A session ended: counters folded into the totals, accounting Stop, the journal.
    fn session_down(&mut self, command: Command) {
        let Command::SessionDown {
            session,
            user,
            reason,
            slot,
        } = command
        else {
            return;
        };
        if self
            .journal
            .as_ref()
            .is_some_and(|j| j.get(session).is_some())
        {
            self.journal_entry(Entry::Down { id: session });
        }
        // The slot's counters stay until the slot is reused by a new session.
        let c = self.dp.session_stats(slot).unwrap_or_default();
        self.stats.ended_rx_bytes += c.rx_bytes;
        self.stats.ended_tx_bytes += c.tx_bytes;
        self.stats.ended_rx_packets += c.rx_packets;
        self.stats.ended_tx_packets += c.tx_packets;
        self.idle.remove(&session);
        let uptime = self
            .up_since
            .remove(&session)
            .map_or(0.0, |t| t.elapsed().as_secs_f64());
        if let Some(a) = self.accounting.as_mut() {
            // Ended before IPv6 settled: the Start still goes first.
            a.send_start(session, None);
        }
        if let Some(a) = self.accounting.as_mut()
            && let Some(s) = a.sessions.remove(&session)
        {
            a.send(crate::radius::accounting::Record {
                status: crate::radius::accounting::STOP,
                session_time: Some(s.started.elapsed().as_secs() as u32),
                traffic: Some(traffic(&c)),
                terminate_cause: Some(crate::radius::accounting::terminate_cause(&reason)),
                session: Some(s.info),
                at: Instant::now(),
            });
        }
        tracing::info!(
            session,
            user = user.as_deref().unwrap_or("-"),
            reason = %reason.label(),
            detail = ?reason,
            uptime_s = format!("{uptime:.1}"),
            rx_packets = c.rx_packets,
            rx_bytes = c.rx_bytes,
            tx_packets = c.tx_packets,
            tx_bytes = c.tx_bytes,
            rx_dropped = c.rx_dropped,
            tx_dropped = c.tx_dropped,
            "session down"
        );
    }
    /// A journaled session's record changed (IPv6 came or went): the entry is written again
    /// with what the shell had added (uptime, Acct-Session-Id, limit).
    fn rejournal(&mut self, session: crate::gateway::SessionRecord) {
        let Some(old) = self
            .journal
            .as_ref()
            .and_then(|j| j.get(session.id))
            .cloned()
        else {
            return;
        };
        self.journal_entry(Entry::Up(Box::new(JournaledSession { session, ..old })));
    }

    /// Journals a session that came up, with what the shell adds to the core's record.
    fn journal_up(&mut self, session: crate::gateway::SessionRecord) {
        if self.journal.is_none() {
            return;
        }
        let id = session.id;
        let acct_id = self
            .accounting
            .as_ref()
            .and_then(|a| a.sessions.get(&id))
            .map(|s| s.info.session_id.clone());
        let limit_ms = self
            .timers
            .remaining(TimerKey::SessionLimit(id))
            .map(|d| unix_ms() + d.as_millis() as u64);
        self.journal_entry(Entry::Up(Box::new(JournaledSession {
            session,
            up_ms: unix_ms(),
            acct_id,
            limit_ms,
        })));
    }

    /// Sends ack-only packets for sessions whose client sent data we have not acknowledged and
    /// towards which nothing has gone for a while.
    fn send_idle_acks(&self) {
        let now = crate::kernel::seqspace::monotonic_ns();
        for s in self.programmed.values() {
            let slot = s.slot;
            let (Some(ack_sent), Some(last_tx)) =
                (self.seq.ack_sent(slot), self.seq.last_tx_ns(slot))
            else {
                continue;
            };
            let Some(ack) = crate::kernel::seqspace::ack_due(
                self.seq.rx_highest(slot),
                ack_sent,
                last_tx,
                now,
                IDLE_ACK_NS,
            ) else {
                continue;
            };
            let h = GreHeader {
                call_id: u16::from_be_bytes(s.peer_call_id),
                seq: None,
                ack: Some(ack),
            };
            if self
                .gre
                .get_ref()
                .send(s.key.local.into(), s.key.peer.into(), &h, &[])
                .is_ok()
            {
                self.seq.set_ack_sent(slot, ack);
                self.seq.set_last_tx_ns(slot, now);
            }
        }
    }

    /// What `/metrics` exports, now.
    async fn snapshot(&self, gateway: &Gateway) -> crate::metrics::Snapshot {
        use crate::metrics::{SessionLabels, Snapshot, Traffic};
        let views = gateway.sessions();
        let up = views.iter().filter(|v| v.state == "up").count() as u64;
        let mut snap = Snapshot {
            sessions_up: up,
            sessions_starting: views.len() as u64 - up,
            gateway: gateway.stats.clone(),
            shell: self.stats(),
            pools: gateway.pool_usage(),
            ipv6_leased: gateway.leased6() as u64,
            ..Snapshot::default()
        };
        if let Ok(c) = self.dp.counters() {
            snap.datapath = c.named_stats();
            snap.drops = c.named_drops();
        }
        snap.map_sessions = self.dp.session_entries().map_or(0, |e| e.0 as u64);
        snap.routes = route::list(&self.rt).await.map_or(0, |r| r.len() as u64);
        for v in &views {
            let c = self.dp.session_stats(v.slot).unwrap_or_default();
            let t = Traffic {
                rx_bytes: c.rx_bytes,
                tx_bytes: c.tx_bytes,
                rx_packets: c.rx_packets,
                tx_packets: c.tx_packets,
                rx_dropped: c.rx_dropped,
                tx_dropped: c.tx_dropped,
            };
            snap.live.rx_bytes += t.rx_bytes;
            snap.live.tx_bytes += t.tx_bytes;
            snap.live.rx_packets += t.rx_packets;
            snap.live.tx_packets += t.tx_packets;
            if self.per_session_metrics {
                snap.per_session.push((
                    SessionLabels {
                        session: v.id,
                        user: v.user.clone().unwrap_or_default(),
                        peer: v.peer.to_string(),
                        assigned: v.assigned.map(|a| a.to_string()).unwrap_or_default(),
                        prefix6: v.prefix6.map(|p| format!("{p}/64")).unwrap_or_default(),
                    },
                    t,
                ));
            }
        }
        snap
    }

    /// Re-reads the configuration and applies it to new sessions; live ones stay.
    async fn reload(
        &mut self,
        gateway: &mut Gateway,
        reloader: &mut Reloader,
    ) -> serde_json::Value {
        match reloader() {
            Ok(plan) => {
                self.limiter
                    .lock()
                    .unwrap_or_else(|e| e.into_inner())
                    .set_rate(plan.connection_rate_per_source);
                let (outside, cmds) = gateway.reload(plan.gateway, plan.secrets, plan.pools);
                self.execute(cmds).await;
                self.stats.reloads += 1;
                tracing::info!(
                    sessions = gateway.session_count(),
                    outside_pools = outside.len(),
                    "configuration reloaded"
                );
                serde_json::json!({"reloaded": true, "sessions": gateway.session_count(), "outside_pools": outside})
            }
            Err(e) => {
                self.stats.reloads_refused += 1;
                tracing::warn!(error = %format!("{e:#}"), "reload refused; the running configuration is unchanged");
                serde_json::json!({"error": format!("{e:#}")})
            }
        }
    }

    /// Answers a control API request.
    async fn answer(
        &mut self,
        gateway: &mut Gateway,
        reloader: &mut Reloader,
        request: api::Request,
    ) -> serde_json::Value {
        use serde_json::json;
        match request {
            api::Request::Reload => self.reload(gateway, reloader).await,
            api::Request::Upgrade => {
                if self.worker.supervised() {
                    tracing::info!("upgrade requested: handing over to the installed binary");
                    // Asked a moment later, so that this answer is written before the worker
                    // hands over and exits.
                    let worker = self.worker.clone();
                    tokio::spawn(async move {
                        tokio::time::sleep(Duration::from_millis(100)).await;
                        worker.upgrade();
                    });
                    json!({"upgrading": true})
                } else {
                    json!({"error": "not supervised: nothing to hand over to (run without --no-supervisor)"})
                }
            }
            api::Request::Stats => {
                let views = gateway.sessions();
                let up = views.iter().filter(|v| v.state == "up").count();
                let c = self.dp.counters().unwrap_or_default();
                let object =
                    |pairs: Vec<(&str, u64)>| -> serde_json::Map<String, serde_json::Value> {
                        pairs
                            .into_iter()
                            .map(|(k, v)| (k.into(), v.into()))
                            .collect()
                    };
                let (datapath, drops) = (object(c.named_stats()), object(c.named_drops()));
                let (map_sessions, map_clients) = self.dp.session_entries().unwrap_or((0, 0));
                let routes = route::list(&self.rt).await.map(|r| r.len()).unwrap_or(0);
                let pools: Vec<_> = gateway
                    .pool_usage()
                    .into_iter()
                    .map(|u| json!({"name": u.name, "size": u.size, "leased": u.leased}))
                    .collect();
                json!({
                    "sessions": {"total": views.len(), "up": up, "starting": views.len() - up},
                    "leases": gateway.leased(),
                    "controller": gateway.stats,
                    "shell": self.stats(),
                    "datapath": datapath,
                    "drops": drops,
                    "maps": {"sessions": map_sessions, "clients": map_clients},
                    "routes": routes,
                    "pools": pools,
                })
            }
            api::Request::Sessions => {
                let list: Vec<_> = gateway
                    .sessions()
                    .into_iter()
                    .map(|v| {
                        let c = self.dp.session_stats(v.slot).unwrap_or_default();
                        let uptime = self
                            .up_since
                            .get(&v.id)
                            .map_or(0.0, |t| t.elapsed().as_secs_f64());
                        let mut o = serde_json::to_value(&v).unwrap_or_default();
                        if let Some(m) = o.as_object_mut() {
                            m.insert("uptime_s".into(), json!((uptime * 10.0).round() / 10.0));
                            m.insert("rx_packets".into(), c.rx_packets.into());
                            m.insert("rx_bytes".into(), c.rx_bytes.into());
                            m.insert("tx_packets".into(), c.tx_packets.into());
                            m.insert("tx_bytes".into(), c.tx_bytes.into());
                            m.insert("rx_dropped".into(), c.rx_dropped.into());
                            m.insert("tx_dropped".into(), c.tx_dropped.into());
                        }
                        o
                    })
                    .collect();
                json!({ "sessions": list })
            }
            api::Request::Kill(selector) => {
                if selector.is_empty() {
                    return json!({"error": "kill needs --id, --user, --ip or --all"});
                }
                let ids: Vec<u64> = gateway
                    .sessions()
                    .iter()
                    .filter(|v| selector.matches(v))
                    .map(|v| v.id)
                    .collect();
                for &id in &ids {
                    tracing::info!(session = id, "killed by operator");
                    let c = gateway.handle(Event::Kill { session: id });
                    self.execute(c).await;
                }
                json!({ "killed": ids })
            }
        }
    }

    /// A Disconnect-Request ends the sessions it names, a CoA-Request gives them a new
    /// Session-Timeout; ACK, or NAK with the Error-Cause (no such session, an attribute we
    /// cannot apply).
    async fn dynamic(
        &mut self,
        gateway: &mut Gateway,
        req: &crate::radius::dynamic::Request,
        from: SocketAddr,
        socket: &tokio::net::UdpSocket,
    ) {
        use crate::radius::{dict, dynamic::error_cause};
        self.stats.das_requests += 1;
        let sel = &req.selector;
        let ids: Vec<u64> = if sel.is_empty() {
            Vec::new()
        } else {
            gateway
                .sessions()
                .iter()
                .filter(|v| v.assigned.is_some() || v.prefix6.is_some())
                .filter(|v| sel.user.as_ref().is_none_or(|u| v.user.as_ref() == Some(u)))
                .filter(|v| sel.framed_ip.is_none_or(|a| v.assigned == Some(a)))
                .filter(|v| {
                    sel.session_id.as_ref().is_none_or(|id| {
                        self.accounting.as_ref().is_some_and(|a| {
                            a.sessions
                                .get(&v.id)
                                .is_some_and(|s| &s.info.session_id == id)
                        })
                    })
                })
                .map(|v| v.id)
                .collect()
        };
        let cause = if sel.is_empty() {
            Some(error_cause::MISSING_ATTRIBUTE)
        } else if ids.is_empty() {
            Some(error_cause::SESSION_CONTEXT_NOT_FOUND)
        } else if req.code == dict::COA_REQUEST
            && (!req.unsupported.is_empty()
                || (req.session_timeout.is_none() && req.rate_limit.is_none()))
        {
            Some(error_cause::UNSUPPORTED_ATTRIBUTE)
        } else {
            None
        };
        if cause.is_none() {
            for &id in &ids {
                let c = if req.code == dict::DISCONNECT_REQUEST {
                    tracing::info!(session = id, %from, "Disconnect-Request: session ended");
                    gateway.handle(Event::Kill { session: id })
                } else {
                    let mut c = Vec::new();
                    if let Some(secs) = req.session_timeout {
                        tracing::info!(session = id, %from, secs, "CoA-Request: new Session-Timeout");
                        c.extend(gateway.handle(Event::SessionTimeout {
                            session: id,
                            after: Duration::from_secs(u64::from(secs.max(1))),
                        }));
                    }
                    if let Some((up, down)) = req.rate_limit {
                        tracing::info!(session = id, %from, up, down, "CoA-Request: new rate limit");
                        c.extend(gateway.handle(Event::RateLimit {
                            session: id,
                            up,
                            down,
                        }));
                    }
                    c
                };
                self.execute(c).await;
            }
            self.stats.das_acks += 1;
        } else {
            tracing::info!(%from, code = req.code, cause = ?cause, "dynamic authorization NAKed");
            self.stats.das_naks += 1;
        }
        let _ = socket
            .send_to(&crate::radius::dynamic::answer(req, cause), from)
            .await;
    }

    /// Sessions that sent no data for their Idle-Timeout (the data path's last-packet time, or
    /// the session's start when it sent none).
    fn idle_sessions(&self) -> Vec<u64> {
        let now = crate::kernel::seqspace::monotonic_ns();
        self.idle
            .iter()
            .filter(|(id, (slot, timeout))| {
                let last = self.seq.last_rx_ns(*slot).unwrap_or(0);
                let since = if last == 0 {
                    self.up_since
                        .get(id)
                        .map_or(Duration::ZERO, |t| t.elapsed())
                } else {
                    Duration::from_nanos(now.saturating_sub(last))
                };
                since >= *timeout
            })
            .map(|(id, _)| *id)
            .collect()
    }

    /// The shell's counters, with those the accept loops keep.
    fn stats(&self) -> ShellStats {
        use std::sync::atomic::Ordering::Relaxed;
        ShellStats {
            connections_rate_limited: self.refusals.rate_limited.load(Relaxed),
            accept_errors: self.refusals.accept_errors.load(Relaxed),
            ..self.stats.clone()
        }
    }

    async fn execute(&mut self, cmds: Vec<Command>) {
        for c in cmds {
            match c {
                Command::SendControl { conn, bytes } => {
                    if let Some(q) = self.conns.get(&conn)
                        && !q.push(bytes)
                    {
                        // Full (the client does not read) or gone: either way the connection
                        // closes, and its reader tells the core.
                        self.conns.remove(&conn);
                        self.stats.control_send_overflow += 1;
                        tracing::info!(conn, "control connection not reading; closing");
                    }
                }
                Command::CloseControl { conn } => {
                    // What is queued is still written; then the socket closes.
                    self.conns.remove(&conn);
                }
                Command::Verify {
                    session,
                    creds,
                    peer,
                    local,
                    call_id,
                } => {
                    let Some(radius) = self.radius.clone() else {
                        continue;
                    };
                    let tx = self.inputs.clone();
                    // Bounded by the negotiating sessions (each asks at most once at a time).
                    tokio::spawn(async move {
                        let (verdict, authorization) = radius
                            .authenticate(creds.clone(), peer, local, call_id)
                            .await;
                        let _ = tx
                            .send(Input::Verdict {
                                session,
                                creds: Box::new(creds),
                                verdict,
                                authorization: Box::new(authorization),
                            })
                            .await;
                    });
                }
                Command::SendPpp {
                    key,
                    peer_call_id,
                    slot,
                    frame,
                    ..
                } => {
                    let seq = self.seq.next_tx(slot);
                    let ack = self.seq.rx_highest(slot);
                    if let Some(a) = ack {
                        self.seq.set_ack_sent(slot, a);
                    }
                    let h = GreHeader {
                        call_id: peer_call_id,
                        seq,
                        ack,
                    };
                    if let Err(e) =
                        self.gre
                            .get_ref()
                            .send(key.local.into(), key.peer.into(), &h, &frame)
                    {
                        tracing::info!(peer = %Ipv4Addr::from(key.peer), error = %e, "GRE send failed");
                    }
                }
                Command::SetTimer(k, d) => {
                    self.timers.set(k, d);
                    if let TimerKey::SessionLimit(id) = k
                        && self.journal.as_ref().is_some_and(|j| j.get(id).is_some())
                    {
                        let at_ms = unix_ms() + d.as_millis() as u64;
                        self.journal_entry(Entry::Limit { id, at_ms });
                    }
                }
                Command::CancelTimer(k) => self.timers.cancel(k),
                Command::ProgramSession(s) => {
                    let r = if self.programmed.insert(s.key, s).is_none() {
                        self.dp.install_session(&s)
                    } else {
                        self.dp.update_session(&s)
                    };
                    if let Err(e) = r {
                        self.stats.map_errors += 1;
                        tracing::error!(error = %format!("{e:#}"), "programming a session failed");
                    }
                }
                Command::SetRateLimit { slot, up, down } => {
                    if let Err(e) = self.dp.set_rate_limit(slot, up, down) {
                        self.stats.map_errors += 1;
                        tracing::error!(error = %format!("{e:#}"), "setting a rate limit failed");
                    } else {
                        tracing::info!(slot, up, down, "rate limit set");
                    }
                }
                Command::ProgramMppe {
                    slot,
                    keys,
                    stateful,
                } => {
                    if let Err(e) = self.dp.program_mppe(slot, keys.send, keys.recv, stateful) {
                        self.stats.map_errors += 1;
                        tracing::error!(error = %format!("{e:#}"), "programming MPPE failed");
                    }
                }
                Command::ResetMppe { slot } => self.seq.request_mppe_reset(slot),
                Command::RemoveSession(s) => {
                    self.programmed.remove(&s.key);
                    if let Err(e) = self.dp.remove_session(&s) {
                        self.stats.map_errors += 1;
                        tracing::error!(error = %format!("{e:#}"), "removing a session failed");
                    }
                }
                Command::ProjectRoute { session, addr } => {
                    let mut ok = false;
                    for attempt in 0..3 {
                        match route::project(&self.rt, addr, self.pptp0_ifindex).await {
                            Ok(()) => {
                                ok = true;
                                break;
                            }
                            Err(e) => {
                                self.stats.route_projection_errors += 1;
                                tracing::warn!(session, %addr, attempt, error = %format!("{e:#}"), "route projection failed")
                            }
                        }
                        tokio::time::sleep(Duration::from_millis(50 << attempt)).await;
                    }
                    if !ok {
                        self.route_failed.push(session);
                    }
                }
                Command::WithdrawRoute { addr } => {
                    if let Err(e) = route::withdraw(&self.rt, addr, self.pptp0_ifindex).await {
                        self.stats.route_withdrawal_errors += 1;
                        tracing::warn!(%addr, error = %format!("{e:#}"), "route withdrawal failed");
                    }
                }
                Command::ProjectRoute6 { session, prefix } => {
                    if let Err(e) = route::project6(&self.rt, prefix, self.pptp0_ifindex).await {
                        self.stats.route_projection_errors += 1;
                        tracing::warn!(session, %prefix, error = %format!("{e:#}"), "IPv6 route projection failed");
                        self.route_failed.push(session);
                    }
                }
                Command::WithdrawRoute6 { prefix } => {
                    if let Err(e) = route::withdraw6(&self.rt, prefix, self.pptp0_ifindex).await {
                        self.stats.route_withdrawal_errors += 1;
                        tracing::warn!(%prefix, error = %format!("{e:#}"), "IPv6 route withdrawal failed");
                    }
                }
                Command::Unprogram6 { prefix } => {
                    if let Err(e) = self.dp.unprogram6(prefix) {
                        self.stats.map_errors += 1;
                        tracing::error!(error = %format!("{e:#}"), "removing an IPv6 lookup failed");
                    }
                }
                Command::UnprogramDelegated { prefix } => {
                    if let Err(e) = self.dp.unprogram_delegated(prefix.first8(), prefix.len) {
                        self.stats.map_errors += 1;
                        tracing::error!(%prefix, error = %format!("{e:#}"), "removing a delegated prefix's lookup failed");
                    }
                }
                Command::SendIpv6 { prefix, packet } => {
                    if let Some(i) = &self.inject
                        && let Err(e) = i.send(prefix, &packet)
                    {
                        tracing::info!(error = %e, "sending IPv6 to a client failed");
                    }
                }
                Command::Rejournal(record) => {
                    // IPv6 came or went: Interim and Stop records say so from now on.
                    if let Some(s) = self
                        .accounting
                        .as_mut()
                        .and_then(|a| a.sessions.get_mut(&record.id))
                    {
                        s.info.framed_ipv6_prefix = record.prefix6;
                        s.info.delegated_ipv6_prefix = record.delegated6.map(|(p, _)| p);
                    }
                    self.rejournal(*record);
                }
                c @ Command::SessionUp { .. } => self.session_up(c),
                Command::AccountingStart { session, prefix6 } => {
                    if let Some(a) = self.accounting.as_mut() {
                        a.send_start(session, prefix6);
                    }
                }
                c @ Command::SessionDown { .. } => self.session_down(c),
                Command::Refused { peer, reason } => self.refusals.log(peer, reason, self.origin),
            }
        }
    }
}

fn traffic(c: &pptp_common::session::SessionStats) -> crate::radius::accounting::Traffic {
    crate::radius::accounting::Traffic {
        input_octets: c.rx_bytes,
        output_octets: c.tx_bytes,
        input_packets: c.rx_packets,
        output_packets: c.tx_packets,
    }
}

impl Accounting {
    /// The session's Start, naming its /64 when IPv6 is live; Interims run from now.
    fn send_start(&mut self, session: crate::gateway::SessionId, prefix6: Option<[u8; 8]>) {
        let Some(s) = self.sessions.get_mut(&session) else {
            return;
        };
        if std::mem::replace(&mut s.start_sent, true) {
            return;
        }
        if prefix6.is_some() {
            s.info.framed_ipv6_prefix = prefix6;
        }
        s.next_interim = s.interim.map(|d| Instant::now() + d);
        let record = crate::radius::accounting::Record {
            status: crate::radius::accounting::START,
            session: Some(s.info.clone()),
            session_time: None,
            traffic: None,
            terminate_cause: None,
            at: Instant::now(),
        };
        self.send(record);
    }

    fn start(setup: AccountingSetup) -> Self {
        let (tx, rx) = mpsc::channel(4096);
        let stats = Arc::new(crate::radius::accounting::AccountingStats::default());
        let task = tokio::spawn(crate::radius::accounting::run(
            setup.client,
            setup.nas,
            rx,
            stats,
            Duration::from_secs(5),
        ));
        let id_prefix = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_secs() as u32);
        Self {
            tx,
            task,
            interim: setup.interim,
            sessions: HashMap::new(),
            id_prefix,
        }
    }

    fn on_off(status: u32) -> crate::radius::accounting::Record {
        crate::radius::accounting::Record {
            status,
            session: None,
            session_time: None,
            traffic: None,
            terminate_cause: None,
            at: Instant::now(),
        }
    }

    /// Never blocks the core: the sender's own queue is bounded and counted.
    fn send(&self, r: crate::radius::accounting::Record) {
        if self.tx.try_send(r).is_err() {
            tracing::warn!("accounting channel full: record dropped");
        }
    }

    /// Interim-Updates that are due, with the data path's counters.
    fn interims(&mut self, dp: &Datapath) {
        let now = Instant::now();
        let mut due = Vec::new();
        for s in self.sessions.values_mut() {
            if let (Some(next), Some(every)) = (s.next_interim, s.interim)
                && next <= now
            {
                s.next_interim = Some(now + every);
                let c = dp.session_stats(s.slot).unwrap_or_default();
                due.push(crate::radius::accounting::Record {
                    status: crate::radius::accounting::INTERIM_UPDATE,
                    session: Some(s.info.clone()),
                    session_time: Some(s.started.elapsed().as_secs() as u32),
                    traffic: Some(traffic(&c)),
                    terminate_cause: None,
                    at: now,
                });
            }
        }
        for r in due {
            self.send(r);
        }
    }

    /// Accounting-Off, then up to `grace` for the queue to drain.
    async fn finish(self, grace: Duration) {
        self.send(Self::on_off(crate::radius::accounting::ACCOUNTING_OFF));
        self.drain(grace).await;
    }

    /// Up to `grace` for what is queued to go out.
    async fn drain(self, grace: Duration) {
        drop(self.tx);
        if tokio::time::timeout(grace, self.task).await.is_err() {
            tracing::warn!("accounting records still queued at exit");
        }
    }
}

/// The signals the worker answers: stop (TERM, INT), reload (HUP), hand over (USR2).
struct Signals {
    term: tokio::signal::unix::Signal,
    int: tokio::signal::unix::Signal,
    hup: tokio::signal::unix::Signal,
    usr2: tokio::signal::unix::Signal,
}

impl Signals {
    fn new() -> anyhow::Result<Self> {
        use tokio::signal::unix::{SignalKind, signal};
        Ok(Self {
            term: signal(SignalKind::terminate())?,
            int: signal(SignalKind::interrupt())?,
            hup: signal(SignalKind::hangup())?,
            usr2: signal(SignalKind::user_defined2())?,
        })
    }
}

/// The sockets the gateway serves on, bound here or taken back from the supervisor.
struct Sockets {
    listeners: Vec<(SocketAddr, TcpListener)>,
    metrics: Option<(SocketAddr, TcpListener)>,
    das: Option<(tokio::net::UdpSocket, crate::radius::dynamic::Clients)>,
    api: Option<(std::path::PathBuf, tokio::net::UnixListener)>,
    gre: GreSocket,
}

/// A control listener: the one the previous worker had (its backlog kept: no SYN is refused
/// across a restart), or a new one, whose copy the supervisor then keeps.
async fn control_listener(addr: SocketAddr, worker: &Worker) -> anyhow::Result<TcpListener> {
    let token = listener_token(addr);
    if let Some(fd) = worker.take(&token) {
        let l = std::net::TcpListener::from(fd);
        l.set_nonblocking(true)?;
        return TcpListener::from_std(l).with_context(|| format!("inherited listener {addr}"));
    }
    let l = TcpListener::bind(addr)
        .await
        .with_context(|| format!("listen on {addr}"))?;
    use std::os::fd::AsFd as _;
    worker.hold(&token, l.as_fd());
    Ok(l)
}

impl Sockets {
    /// Bound before anything is created, so a busy port leaves nothing behind.
    async fn open(config: &ServerConfig, worker: &Worker) -> anyhow::Result<Self> {
        let mut listeners = Vec::new();
        for addr in &config.listen {
            listeners.push((*addr, control_listener(*addr, worker).await?));
        }
        let metrics = match config.metrics {
            Some(addr) => Some((
                addr,
                TcpListener::bind(addr)
                    .await
                    .with_context(|| format!("metrics.listen {addr}"))?,
            )),
            None => None,
        };
        let das = match &config.das {
            Some((addr, clients)) => Some((
                tokio::net::UdpSocket::bind(addr)
                    .await
                    .with_context(|| format!("radius.das_listen {addr}"))?,
                clients.clone(),
            )),
            None => None,
        };
        let api = match &config.api_socket {
            Some(path) => Some((path.clone(), api_listener(path)?)),
            None => None,
        };
        // What clients sent on the slow path while no worker ran waits in its queue.
        let gre = match worker.take(GRE_TOKEN) {
            Some(fd) => GreSocket::from_fd(fd),
            None => {
                let g = GreSocket::open().context("raw GRE socket")?;
                worker.hold(GRE_TOKEN, g.fd());
                g
            }
        };
        Ok(Self {
            listeners,
            metrics,
            das,
            api,
            gre,
        })
    }
}

/// The data path, up: programs attached, `pptp0` there, the sequence space mapped.
struct Kernel {
    dp: Datapath,
    pptp0: netdev::Pptp0,
    seq: SeqSpace,
    adopted: Adopted,
}

impl Kernel {
    /// Loads (or adopts, when pinned) the data path and attaches it. A failure after `pptp0`
    /// was created removes it again.
    async fn bring_up(config: &ServerConfig, rt: &rtnetlink::Handle) -> anyhow::Result<Self> {
        let (mut dp, adopted) = match &config.pin_dir {
            Some(dir) => match crate::kernel::pins::Pins::open(dir) {
                Ok(pins) => Datapath::load_pinned(&pins, config.xdp_forwarding)?,
                // Runs, but without the data path outliving us: said loudly, once.
                Err(e) => {
                    tracing::warn!(error = %format!("{e:#}"), "hitless restart off: the data path is not pinned");
                    (Datapath::load()?, Adopted::Fresh)
                }
            },
            None => (Datapath::load()?, Adopted::Fresh),
        };
        let mtu = u32::from(config.mtu);
        let reused = match adopted {
            Adopted::Fresh => None,
            _ => netdev::adopt(rt, &config.pptp0, mtu).await?,
        };
        let created = reused.is_none();
        let pptp0 = match reused {
            Some(p) => p,
            None => netdev::create(rt, &config.pptp0, mtu).await?,
        };
        tracing::info!(adopted = ?adopted, pptp0_reused = !created, "data path loaded");
        match Self::attach(&mut dp, config, rt, &pptp0).await {
            Ok(seq) => Ok(Self {
                dp,
                pptp0,
                seq,
                adopted,
            }),
            Err(e) => {
                if created {
                    dp.unpin();
                    drop(dp);
                    let _ = netdev::delete(rt, &config.pptp0).await;
                }
                Err(e)
            }
        }
    }

    async fn attach(
        dp: &mut Datapath,
        config: &ServerConfig,
        rt: &rtnetlink::Handle,
        pptp0: &netdev::Pptp0,
    ) -> anyhow::Result<SeqSpace> {
        netdev::add_address(rt, pptp0.ifindex, config.tunnel_local).await?;
        if config.ipv6 {
            netdev::enable_ipv6(&pptp0.name)?;
        }
        for w in &config.wan {
            dp.attach_xdp(w, config.xdp_mode)?;
        }
        dp.attach_encap(&pptp0.peer_name)?;
        dp.attach_pass(&pptp0.name)?;
        // `xdp` mode: the LAN program on every CPU, each session encapsulated on its home CPU.
        // Adopted as is, the program arrays and CPU map already hold this very object's.
        let steer_cpus = if !config.xdp_forwarding {
            dp.disable_xdp_forwarding()?;
            0
        } else if dp.adopted_as_is() {
            dp.config()?.steer_cpus
        } else {
            dp.enable_xdp_forwarding()?;
            dp.enable_steering()?
        };
        if config.xdp_forwarding {
            for lan in &config.lan {
                dp.attach_lan(lan, config.xdp_mode)?;
            }
            tracing::info!(lan = ?config.lan, steer_cpus, "forwarding mode xdp: client traffic bypasses netfilter");
        }
        dp.set_config(&DatapathConfig {
            pptp0_peer_ifindex: pptp0.peer_ifindex,
            pptp0_mac: pptp0.mac,
            pptp0_peer_mac: pptp0.peer_mac,
            enabled: 1,
            reorder_window: config.reorder_window,
            pptp0_ifindex: pptp0.ifindex,
            steer_cpus,
        })?;
        dp.settle()?;
        dp.seq_space()
    }
}

/// Runs the gateway until SIGINT/SIGTERM (then tells clients, and removes routes, maps, `pptp0`
/// and programs) or a handover (then leaves everything to the next worker).
pub async fn run(
    config: ServerConfig,
    mut gateway: Gateway,
    mut reloader: Reloader,
) -> anyhow::Result<Exit> {
    // Signals first: a SIGTERM during start-up must still mean "stop cleanly", not the default
    // action (which would leave pptp0 and the programs behind).
    let mut signals = Signals::new()?;
    let worker = Arc::new(Worker::from_env()?);
    let (conn, rt, _) = rtnetlink::new_connection().context("rtnetlink")?;
    tokio::spawn(conn);
    let sockets = Sockets::open(&config, &worker).await?;
    // Until start-up has succeeded, an error return removes the socket file again.
    let mut api_file = RemoveOnDrop(config.api_socket.clone());
    let (journal, recovered) = match &config.state_dir {
        Some(dir) => {
            let (j, r) = Journal::open(dir, crate::kernel::pins::layout())
                .with_context(|| format!("restart.state_dir {}", dir.display()))?;
            (Some(j), r)
        }
        None => (None, Recovered::Nothing),
    };
    let Kernel {
        dp,
        pptp0,
        seq,
        adopted,
    } = Kernel::bring_up(&config, &rt).await?;
    // The next-hop caches follow routing changes; without the watch they stay off (every packet
    // is looked up, as correct and slower).
    let route_watch = match dp.route_generation() {
        Ok(g) => Some(tokio::spawn(async move {
            if let Err(e) = crate::kernel::routewatch::watch(g).await {
                tracing::warn!(error = %format!("{e:#}"), "route monitor stopped: next-hop caching off");
            }
        })),
        Err(e) => {
            tracing::warn!(error = %format!("{e:#}"), "no route monitor: next-hop caching off");
            None
        }
    };
    let gre = Arc::new(
        sockets
            .gre
            .into_async()
            .context("register the GRE socket")?,
    );
    let (tx, rx) = mpsc::channel(INPUT_QUEUE);
    let limiter = Arc::new(std::sync::Mutex::new(crate::ratelimit::RateLimiter::new(
        config.connection_rate_per_source,
    )));
    let refusals = Arc::new(Refusals::default());
    let origin = Instant::now();
    spawn_gre_reader(gre.clone(), tx.clone());
    let mut shell = Shell {
        dp,
        seq,
        gre,
        conns: HashMap::new(),
        programmed: HashMap::new(),
        timers: Timers::default(),
        rt: rt.clone(),
        pptp0_ifindex: pptp0.ifindex,
        inject: if config.ipv6 {
            Some(
                crate::kernel::inject::Injector::open(pptp0.ifindex, pptp0.mac, pptp0.peer_mac)
                    .context("open the packet socket on pptp0")?,
            )
        } else {
            None
        },
        route_failed: Vec::new(),
        refusals: refusals.clone(),
        origin,
        up_since: HashMap::new(),
        stats: ShellStats::default(),
        limiter: limiter.clone(),
        per_session_metrics: config.per_session_metrics,
        stopping: false,
        radius: config.radius.clone(),
        inputs: tx.clone(),
        accounting: config.accounting.clone().map(Accounting::start),
        idle: HashMap::new(),
        worker: worker.clone(),
        journal,
    };
    // Sessions first, then the listeners: a new connection never races a carried one for an ID.
    let carried = shell
        .take_over(&mut gateway, recovered, adopted != Adopted::Fresh)
        .await;
    shell.stats.sessions_carried = carried.sessions as u64;
    shell.stats.sessions_lost_in_restart = carried.ended as u64;
    if let Some(a) = &shell.accounting
        && carried.sessions == 0
    {
        // Nothing carried on: RADIUS may close whatever it still thinks we have open.
        a.send(Accounting::on_off(crate::radius::accounting::ACCOUNTING_ON));
    }
    if carried.routes_removed > 0 {
        tracing::info!(
            removed = carried.routes_removed,
            "removed stale routes of a previous run"
        );
    }
    if carried.sessions + carried.ended + carried.orphans + carried.routes_removed > 0 {
        tracing::info!(
            carried = carried.sessions,
            ended = carried.ended,
            orphan_entries = carried.orphans,
            stale_routes = carried.routes_removed,
            "took over from the previous run"
        );
    }
    let next = Arc::new(std::sync::atomic::AtomicU64::new(
        gateway.max_conn_id().map_or(1, |c| c + 1),
    ));
    for (addr, listener) in sockets.listeners {
        tracing::info!(%addr, "listening");
        let accept = Acceptor {
            tx: tx.clone(),
            limiter: limiter.clone(),
            refusals: refusals.clone(),
            origin,
            next: next.clone(),
            worker: worker.clone(),
        };
        tokio::spawn(accept.run(listener));
    }
    let (query_tx, queries) = mpsc::unbounded_channel();
    if let Some((addr, listener)) = sockets.metrics {
        tracing::info!(%addr, "metrics and probes listening");
        tokio::spawn(crate::metrics::serve(listener, query_tx));
    } else {
        drop(query_tx);
    }
    if let Some((socket, clients)) = sockets.das {
        tracing::info!(addr = %socket.local_addr()?, "dynamic authorization (RFC 5176) listening");
        tokio::spawn(das_loop(Arc::new(socket), clients, tx.clone()));
    }
    if let Some((path, listener)) = sockets.api {
        tracing::info!(socket = %path.display(), "control API listening");
        tokio::spawn(api_loop(listener, tx));
    }
    // Running: the socket is removed at the end of the main loop instead.
    api_file.0 = None;
    worker.ready();
    tracing::info!(pptp0 = %pptp0.name, wan = ?config.wan, supervised = worker.supervised(), pinned = config.pin_dir.is_some(), "pptpgw running");
    let mut inputs = Inputs { rx, queries };
    let exit = serve(
        &mut shell,
        &mut gateway,
        &mut reloader,
        &mut signals,
        &mut inputs,
        config.shutdown_grace,
    )
    .await;
    if let Some(w) = route_watch {
        w.abort();
    }
    match exit {
        Exit::HandedOver => hand_over(shell).await,
        Exit::Stopped => tear_down(shell, &config, &rt).await?,
    }
    Ok(exit)
}

fn spawn_gre_reader(gre: Arc<AsyncFd<GreSocket>>, tx: mpsc::Sender<Input>) {
    tokio::spawn(async move {
        while let Ok(r) = crate::kernel::slowpath::next_packet(&gre).await {
            match r {
                Ok(r) => {
                    let input = Input::Gre {
                        local: r.local,
                        peer: r.peer,
                        call_id: r.header.call_id,
                        payload: r.payload,
                    };
                    if tx.send(input).await.is_err() {
                        return;
                    }
                }
                Err(e) => tracing::debug!(error = %e, "slow-path packet dropped"),
            }
        }
    });
}

/// What the main loop reads besides signals and timers.
struct Inputs {
    rx: mpsc::Receiver<Input>,
    queries: mpsc::UnboundedReceiver<crate::metrics::Query>,
}

/// The main loop: events in, commands out, until a stop has ended every session (or its grace
/// ran out, or a second signal came) or a handover was asked for.
async fn serve(
    shell: &mut Shell,
    gateway: &mut Gateway,
    reloader: &mut Reloader,
    signals: &mut Signals,
    inputs: &mut Inputs,
    shutdown_grace: Duration,
) -> Exit {
    let mut stopping: Option<Instant> = None;
    let mut ack_tick = tokio::time::interval(Duration::from_millis(100));
    ack_tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
    loop {
        let wake = shell
            .timers
            .next()
            .unwrap_or_else(|| Instant::now() + Duration::from_secs(3600));
        let deadline = stopping.map(|t| t + shutdown_grace);
        tokio::select! {
            // The first signal stops gracefully; a second exits at once (the next start reconciles).
            _ = async { tokio::select! { _ = signals.term.recv() => {}, _ = signals.int.recv() => {} } } => {
                if stopping.is_some() {
                    return Exit::Stopped;
                }
                stopping = Some(Instant::now());
                shell.stopping = true;
                let c = gateway.handle(Event::Shutdown);
                shell.execute(c).await;
            }
            _ = signals.usr2.recv(), if stopping.is_none() => return Exit::HandedOver,
            _ = tokio::time::sleep_until(deadline.unwrap_or(wake)), if deadline.is_some() && gateway.session_count() > 0 => return Exit::Stopped,
            _ = tokio::time::sleep_until(wake) => {
                while let Some(k) = shell.timers.pop_due(Instant::now()) {
                    let c = gateway.handle(Event::Timer(k));
                    shell.execute(c).await;
                }
            }
            _ = ack_tick.tick() => shell.tick(gateway).await,
            _ = signals.hup.recv() => {
                shell.reload(gateway, reloader).await;
            }
            Some(q) = inputs.queries.recv() => match q {
                crate::metrics::Query::Metrics(reply) => {
                    let snapshot = shell.snapshot(gateway).await;
                    let _ = reply.send(crate::metrics::render(&snapshot));
                }
                crate::metrics::Query::Health(reply) => {
                    let _ = reply.send(!shell.stopping);
                }
            },
            Some(input) = inputs.rx.recv() => {
                let cmds = shell.input(gateway, reloader, input).await;
                shell.execute(cmds).await;
            }
        }
        // Routes that could not be projected end their sessions (which may fail again: bounded
        // by the sessions there are).
        while let Some(session) = shell.route_failed.pop() {
            let c = gateway.handle(Event::RouteFailed { session });
            shell.execute(c).await;
        }
        if stopping.is_some() && gateway.session_count() == 0 && shell.conns.is_empty() {
            return Exit::Stopped;
        }
    }
}

impl Shell {
    /// Every 100 ms: owed acks, due Interim-Updates, idle sessions.
    async fn tick(&mut self, gateway: &mut Gateway) {
        self.send_idle_acks();
        if let Some(a) = self.accounting.as_mut() {
            a.interims(&self.dp);
        }
        for session in self.idle_sessions() {
            self.idle.remove(&session);
            let c = gateway.handle(Event::Idle { session });
            self.execute(c).await;
        }
    }

    /// One input from the sockets, the API or a RADIUS task, as core events.
    async fn input(
        &mut self,
        gateway: &mut Gateway,
        reloader: &mut Reloader,
        input: Input,
    ) -> Vec<Command> {
        match input {
            Input::Accepted {
                conn,
                local,
                peer,
                out,
            } => {
                self.conns.insert(conn, out);
                gateway.handle(Event::Accepted { conn, local, peer })
            }
            Input::Bytes { conn, bytes } => gateway.handle(Event::ControlBytes {
                conn,
                bytes: &bytes,
            }),
            Input::Closed { conn } => {
                self.conns.remove(&conn);
                gateway.handle(Event::ControlClosed { conn })
            }
            Input::Gre {
                local,
                peer,
                call_id,
                payload,
            } => gateway.handle(Event::Gre {
                local,
                peer,
                call_id,
                payload: &payload,
            }),
            Input::Api { request, reply } => {
                let answer = self.answer(gateway, reloader, request).await;
                let _ = reply.send(answer);
                Vec::new()
            }
            Input::Dynamic {
                request,
                from,
                socket,
            } => {
                self.dynamic(gateway, &request, from, &socket).await;
                Vec::new()
            }
            Input::DynamicRefused => {
                self.stats.das_refused += 1;
                Vec::new()
            }
            Input::Verdict {
                session,
                creds,
                verdict,
                authorization,
            } => gateway.handle(Event::Verdict {
                session,
                creds,
                verdict,
                authorization,
            }),
        }
    }

    fn log_counters(&self) {
        let Ok(c) = self.dp.counters() else { return };
        let stats: Vec<String> = c
            .named_stats()
            .into_iter()
            .map(|(k, v)| format!("{k}={v}"))
            .collect();
        let drops: Vec<String> = c
            .named_drops()
            .into_iter()
            .filter(|(_, v)| *v > 0)
            .map(|(k, v)| format!("{k}={v}"))
            .collect();
        tracing::info!(stats = %stats.join(" "), drops = %drops.join(" "), "data path counters");
    }
}

/// An upgrade: nothing is torn down. The sessions are journaled, the sockets held by the
/// supervisor, the data path pinned; the accounting records already queued get a moment to go.
async fn hand_over(mut shell: Shell) {
    HANDING_OVER.store(true, std::sync::atomic::Ordering::Release);
    if let Some(a) = shell.accounting.take() {
        a.drain(Duration::from_secs(2)).await;
    }
    tracing::info!(
        sessions = shell.up_since.len(),
        "handed over: sessions, sockets and the data path left to the next worker"
    );
    // Gone at once, without unwinding anything: dropping the runtime's tasks would shut the
    // control connections' write halves (a FIN to every client). The pinned maps and links
    // stay; the supervisor holds the sockets.
    let _ = shell;
    std::process::exit(crate::handover::fds::EXIT_HANDED_OVER);
}

/// A stop: leave nothing behind — the routes of ours, the journal, the maps and programs (pins
/// included), `pptp0`.
async fn tear_down(
    mut shell: Shell,
    config: &ServerConfig,
    rt: &rtnetlink::Handle,
) -> anyhow::Result<()> {
    shell.log_counters();
    let removed = route::reconcile(rt, &[]).await.unwrap_or(0)
        + route::reconcile6(rt, &[]).await.unwrap_or(0);
    // The Stops of the sessions just ended, and Accounting-Off, get a few seconds to go out.
    if let Some(a) = shell.accounting.take() {
        a.finish(Duration::from_secs(5)).await;
    }
    if let Some(j) = shell.journal.take() {
        j.remove();
    }
    shell.dp.unpin();
    drop(shell);
    if let Some(path) = &config.api_socket {
        let _ = std::fs::remove_file(path);
    }
    netdev::delete(rt, &config.pptp0).await?;
    tracing::info!(
        routes_removed = removed,
        "pptpgw stopped; routes, pptp0 and programs removed"
    );
    Ok(())
}

/// Accepts control connections on one listener and starts a task for each.
struct Acceptor {
    tx: mpsc::Sender<Input>,
    limiter: Arc<std::sync::Mutex<crate::ratelimit::RateLimiter>>,
    refusals: Arc<Refusals>,
    origin: Instant,
    /// Connection IDs, shared by the listeners; they start above any a previous worker used.
    next: Arc<std::sync::atomic::AtomicU64>,
    worker: Arc<Worker>,
}

impl Acceptor {
    async fn run(self, listener: TcpListener) {
        let mut backoff = Duration::ZERO;
        loop {
            let (stream, peer) = match listener.accept().await {
                Ok(a) => {
                    backoff = Duration::ZERO;
                    a
                }
                Err(e) => {
                    // Out of descriptors (EMFILE/ENFILE) or memory: the pending connection stays
                    // in the backlog and the listener stays readable, so retrying at once would
                    // spin. Back off (10 ms doubling to 1 s) until something is freed.
                    backoff =
                        (backoff * 2).clamp(Duration::from_millis(10), Duration::from_secs(1));
                    let n = self
                        .refusals
                        .accept_errors
                        .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                    if n.is_power_of_two()
                        || backoff == Duration::from_secs(1) && n.is_multiple_of(60)
                    {
                        tracing::warn!(error = %e, accept_errors = n + 1, retry_in = ?backoff, "accept failed; backing off");
                    }
                    tokio::time::sleep(backoff).await;
                    continue;
                }
            };
            let (SocketAddr::V4(peer), Ok(SocketAddr::V4(local))) = (peer, stream.local_addr())
            else {
                continue;
            };
            let admitted = self
                .limiter
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .admit(*peer.ip(), self.origin.elapsed());
            if !admitted {
                // Closed at once: no control connection state, no timers, nothing to clean up.
                drop(stream);
                self.refusals
                    .rate_limited
                    .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                self.refusals
                    .log(*peer.ip(), Refusal::ConnectionRate, self.origin);
                continue;
            }
            let _ = stream.set_nodelay(true);
            let conn = self.next.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            // The supervisor keeps a copy: the connection outlives this worker.
            {
                use std::os::fd::AsFd as _;
                self.worker.hold(&conn_token(conn), stream.as_fd());
            }
            let (out, out_rx) = ConnQueue::new();
            let accepted = Input::Accepted {
                conn,
                local: *local.ip(),
                peer: *peer.ip(),
                out,
            };
            // The core hears of the connection before any of its bytes (one FIFO channel).
            if self.tx.send(accepted).await.is_err() {
                return;
            }
            tokio::spawn(connection(
                conn,
                stream,
                self.tx.clone(),
                out_rx,
                self.worker.clone(),
            ));
        }
    }
}

/// The core's end of a control connection's outgoing queue, counted in bytes. Dropping it closes
/// the connection once what it holds is written.
struct ConnQueue {
    tx: mpsc::UnboundedSender<Vec<u8>>,
    queued: Arc<std::sync::atomic::AtomicUsize>,
}

/// The connection task's end.
struct ConnQueueRx {
    rx: mpsc::UnboundedReceiver<Vec<u8>>,
    queued: Arc<std::sync::atomic::AtomicUsize>,
}

impl ConnQueue {
    fn new() -> (Self, ConnQueueRx) {
        let (tx, rx) = mpsc::unbounded_channel();
        let queued = Arc::new(std::sync::atomic::AtomicUsize::new(0));
        let rx = ConnQueueRx {
            rx,
            queued: queued.clone(),
        };
        (Self { tx, queued }, rx)
    }

    /// Queues a message; false when the connection is gone or holds too much already.
    fn push(&self, bytes: Vec<u8>) -> bool {
        let len = bytes.len();
        let before = self
            .queued
            .fetch_add(len, std::sync::atomic::Ordering::Relaxed);
        before + len <= CONN_QUEUE_MAX && self.tx.send(bytes).is_ok()
    }
}

impl ConnQueueRx {
    fn paused(&self) -> bool {
        self.queued.load(std::sync::atomic::Ordering::Relaxed) >= CONN_QUEUE_PAUSE
    }

    fn written(&self, len: usize) {
        self.queued
            .fetch_sub(len, std::sync::atomic::Ordering::Relaxed);
    }
}

/// One control connection: its bytes go to the core, the core's messages go out. Its requests
/// are not read while too many replies wait to be written. Ends when the client closes, a write
/// stalls, or the core drops the queue (after writing what it holds); then the core is told and
/// the socket closes.
async fn connection(
    conn: ConnId,
    stream: TcpStream,
    tx: mpsc::Sender<Input>,
    mut out: ConnQueueRx,
    worker: Arc<Worker>,
) {
    let (mut read, mut write) = stream.into_split();
    let end = |read: tokio::net::tcp::OwnedReadHalf| {
        // The supervisor's copy would keep the connection open: shut it for every holder.
        use std::os::fd::AsRawFd as _;
        let raw = read.as_ref().as_raw_fd();
        // SAFETY: shutdown(2) on the live socket this task owns.
        unsafe { libc::shutdown(raw, libc::SHUT_RDWR) };
        worker.release(&conn_token(conn));
    };
    // Control messages are at most 220 bytes: a small buffer per connection (there may be
    // 100,000 of them) costs a few more reads in a burst and nothing else.
    let mut buf = [0u8; 256];
    loop {
        tokio::select! {
            biased;
            m = out.rx.recv() => match m {
                Some(bytes) => {
                    let w = tokio::time::timeout(WRITE_TIMEOUT, write.write_all(&bytes)).await;
                    out.written(bytes.len());
                    if !matches!(w, Ok(Ok(()))) {
                        break;
                    }
                }
                None => {
                    if HANDING_OVER.load(std::sync::atomic::Ordering::Acquire) {
                        // The next worker carries it on: no FIN (dropping the write half
                        // would send one).
                        write.forget();
                        return;
                    }
                    let _ = write.shutdown().await;
                    break;
                }
            },
            r = read.read(&mut buf), if !out.paused() => match r {
                Ok(0) | Err(_) => break,
                Ok(n) => {
                    let bytes = buf[..n].to_vec();
                    if tx.send(Input::Bytes { conn, bytes }).await.is_err() {
                        return;
                    }
                }
            },
        }
    }
    if HANDING_OVER.load(std::sync::atomic::Ordering::Acquire) {
        write.forget();
        return;
    }
    end(read);
    let _ = tx.send(Input::Closed { conn }).await;
}

/// Removes a file when dropped (unless emptied first).
struct RemoveOnDrop(Option<std::path::PathBuf>);

impl Drop for RemoveOnDrop {
    fn drop(&mut self) {
        if let Some(p) = &self.0 {
            let _ = std::fs::remove_file(p);
        }
    }
}

/// Binds the API socket: its directory made if missing, a stale socket of a previous run
/// replaced, the socket itself root-only (0600).
fn api_listener(path: &std::path::Path) -> anyhow::Result<tokio::net::UnixListener> {
    use std::os::unix::fs::PermissionsExt as _;
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir).with_context(|| format!("create {}", dir.display()))?;
    }
    match std::fs::remove_file(path) {
        Ok(()) => {}
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => return Err(e).with_context(|| format!("remove stale {}", path.display())),
    }
    let listener = tokio::net::UnixListener::bind(path)
        .with_context(|| format!("bind the API socket {}", path.display()))?;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600))
        .with_context(|| format!("chmod 0600 {}", path.display()))?;
    Ok(listener)
}

/// Receives dynamic authorization requests and hands the ones that pass their checks to the
/// core's loop; the checks (and the replay cache) live here, so a flood of forgeries costs the
/// core nothing but a counter.
async fn das_loop(
    socket: Arc<tokio::net::UdpSocket>,
    clients: crate::radius::dynamic::Clients,
    tx: mpsc::Sender<Input>,
) {
    let mut replay = crate::radius::dynamic::ReplayCache::default();
    let mut buf = vec![0u8; crate::radius::packet::MAX_LEN];
    loop {
        let Ok((n, from)) = socket.recv_from(&mut buf).await else {
            continue;
        };
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_secs());
        let input = match crate::radius::dynamic::accept(
            &buf[..n],
            from.ip(),
            &clients,
            now,
            &mut replay,
        ) {
            Ok(request) => Input::Dynamic {
                request: Box::new(request),
                from,
                socket: socket.clone(),
            },
            Err(why) => {
                tracing::warn!(%from, reason = why.label(), "dynamic authorization request refused");
                Input::DynamicRefused
            }
        };
        if tx.send(input).await.is_err() {
            return;
        }
    }
}

async fn api_loop(listener: tokio::net::UnixListener, tx: mpsc::Sender<Input>) {
    use tokio::io::AsyncBufReadExt as _;
    loop {
        let Ok((stream, _)) = listener.accept().await else {
            // Out of descriptors: wait for some to be freed rather than spin.
            tokio::time::sleep(Duration::from_millis(100)).await;
            continue;
        };
        let tx = tx.clone();
        tokio::spawn(async move {
            let (read, mut write) = stream.into_split();
            let mut line = String::new();
            let mut reader = tokio::io::BufReader::new(read);
            // One bounded request line.
            let read = tokio::time::timeout(Duration::from_secs(5), async {
                let mut limited = (&mut reader).take(64 * 1024);
                limited.read_line(&mut line).await
            })
            .await;
            let answer = match read {
                Ok(Ok(_)) => match serde_json::from_str::<api::Request>(line.trim()) {
                    Ok(request) => {
                        let (reply, rx) = tokio::sync::oneshot::channel();
                        if tx.send(Input::Api { request, reply }).await.is_err() {
                            return;
                        }
                        rx.await
                            .unwrap_or_else(|_| serde_json::json!({"error": "stopping"}))
                    }
                    Err(e) => serde_json::json!({"error": format!("bad request: {e}")}),
                },
                _ => return,
            };
            let mut text = answer.to_string();
            text.push('\n');
            let _ = write.write_all(text.as_bytes()).await;
        });
    }
}
