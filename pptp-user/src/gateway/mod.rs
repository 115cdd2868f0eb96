//! The gateway core: every control connection, call and PPP link of the concentrator as one pure
//! state machine. Events in (bytes from a control connection, a PPP frame from the slow path, a
//! timer, an operator's command), commands out (bytes to send, sessions to program, routes to
//! project, timers to arm). The tokio shell executes the commands against sockets, the eBPF maps
//! and rtnetlink, and feeds results back as events.
//!
//! Because it is pure, "never leak a session, route or lease" is a property of command sequences
//! and is tested as such (see the tests at the bottom).

use std::{
    collections::{BTreeMap, HashMap},
    net::{Ipv4Addr, Ipv6Addr},
    time::Duration,
};

use pptp_common::session::{
    FLAG_ACFC, FLAG_PFC, MODE_MPPE, MODE_PLAIN, STATE_NEGOTIATING, STATE_UP, Session, SessionKey,
};

use crate::{
    admission::{self, Ledger, Refusal},
    auth::authenticator::{Credentials, Verdict, verify_local},
    config::{PerUserPolicy, RemovedAddressPolicy},
    control::connection::{self, Admission, ClearReason, CloseReason, Connection, ControlConfig},
    pool::Pools,
    pool6::{Pools6, Prefix6},
    ppp::{
        ipcp::IpcpConfig,
        link::{DownReason, Link, LinkConfig, LinkOutput, LinkTimer, Phase},
    },
    radius::access::Authorization,
    secrets::Secrets,
    wire::{
        ppp::{Compression, PppFrame},
        pptp::{self, Framer},
    },
};

mod acct_start;
mod dhcpv6;
mod ipv6;
mod restore;
pub use ipv6::Ipv6Config;
pub use restore::SessionRecord;

pub type ConnId = u64;
pub type SessionId = u64;

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct GatewayConfig {
    pub control: ControlConfig,
    pub link: LinkConfig,
    /// The pool new sessions draw from.
    pub pool: String,
    /// Our end of every client's point-to-point link (what the client sees as the peer).
    pub tunnel_local: Ipv4Addr,
    pub dns: [Option<Ipv4Addr>; 2],
    pub nbns: [Option<Ipv4Addr>; 2],
    /// The largest inner packet towards clients, before the client's MRU lowers it.
    pub mtu: u16,
    /// Clamp the MSS of TCP SYNs both ways to the tunnel MTU − 40.
    pub mss_clamp: bool,
    pub max_sessions: usize,
    /// 0: no per-user limit.
    pub max_sessions_per_user: usize,
    pub per_user_policy: PerUserPolicy,
    pub on_reload_removed: RemovedAddressPolicy,
    /// What an unauthenticated source may hold.
    pub limits: admission::Limits,
    /// With RADIUS (`link.auth.remote`): when no server answers, check the secrets file
    /// (`true`) or refuse (`false`).
    pub radius_fallback_local: bool,
    /// Every session's rate limits (upload, download bits per second) unless RADIUS says.
    pub rate_limit: Option<(u64, u64)>,
    /// IPv6 in the tunnel (used when `link.ipv6` is not `deny`).
    pub ipv6: Ipv6Config,
}

impl Default for GatewayConfig {
    fn default() -> Self {
        Self {
            control: ControlConfig::default(),
            link: LinkConfig::default(),
            pool: "default".into(),
            tunnel_local: Ipv4Addr::new(10, 99, 0, 1),
            dns: [None, None],
            nbns: [None, None],
            mtu: 1400,
            mss_clamp: true,
            max_sessions: 100_000,
            max_sessions_per_user: 0,
            per_user_policy: PerUserPolicy::Deny,
            on_reload_removed: RemovedAddressPolicy::Keep,
            limits: admission::Limits::default(),
            radius_fallback_local: false,
            rate_limit: None,
            ipv6: Ipv6Config::default(),
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum TimerKey {
    Control(ConnId, connection::Timer),
    Link(SessionId, LinkTimer),
    /// The whole negotiation (LCP, authentication, IPCP) must be done before it fires.
    Negotiation(SessionId),
    /// RADIUS Session-Timeout: the session ends when it fires.
    SessionLimit(SessionId),
    /// The next unsolicited Router Advertisement to the session.
    RouterAdvert(SessionId),
    /// RFC 4861 §6.2.6: solicited advertisements at most every 3 s; until this fires,
    /// solicitations are not answered again.
    RouterAdvertQuiet(SessionId),
    /// The longest an up session's accounting Start waits for IPV6CP to settle.
    AccountingStart(SessionId),
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Event<'a> {
    /// A TCP connection to port 1723 was accepted on our address `local` from `peer`.
    Accepted {
        conn: ConnId,
        local: Ipv4Addr,
        peer: Ipv4Addr,
    },
    ControlBytes {
        conn: ConnId,
        bytes: &'a [u8],
    },
    /// The client closed TCP, or it broke.
    ControlClosed {
        conn: ConnId,
    },
    /// An enhanced GRE packet with payload from the slow path.
    Gre {
        local: Ipv4Addr,
        peer: Ipv4Addr,
        call_id: u16,
        payload: &'a [u8],
    },
    Timer(TimerKey),
    /// The shell could not project a session's route (after its retries).
    RouteFailed {
        session: SessionId,
    },
    /// An operator ends a session (clean: LCP Terminate, then CDN).
    Kill {
        session: SessionId,
    },
    /// Stop everything (clients are told: CDN and StopCCRQ).
    Shutdown,
    /// The session sent no data for its Idle-Timeout (the shell watches the data path).
    Idle {
        session: SessionId,
    },
    /// New rate limits for a live session, bits per second (RADIUS CoA).
    RateLimit {
        session: SessionId,
        up: u64,
        down: u64,
    },
    /// A new Session-Timeout for a live session, counted from now (RADIUS CoA).
    SessionTimeout {
        session: SessionId,
        after: Duration,
    },
    /// The verdict on a session's credentials (`Command::Verify`), with what RADIUS granted.
    Verdict {
        session: SessionId,
        creds: Box<Credentials>,
        verdict: Verdict,
        authorization: Box<Authorization>,
    },
}

/// Why a session ended (one log line each).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum EndReason {
    Link(DownReason),
    Control(ClearReason),
    PoolExhausted,
    RouteFailed,
    /// The user already had `max_sessions_per_user` sessions (policy deny).
    UserLimit,
    /// Ended to make room for the same user's newer session (policy replace).
    Replaced,
    /// A reload took the session's address out of every pool (policy disconnect).
    AddressRemoved,
    /// The network was not up within `limits.negotiation_timeout` of the call.
    NegotiationTimeout,
    /// RADIUS Session-Timeout reached.
    SessionTimeout,
    /// RADIUS Idle-Timeout: no data from the client for that long.
    IdleTimeout,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Command {
    SendControl {
        conn: ConnId,
        bytes: Vec<u8>,
    },
    CloseControl {
        conn: ConnId,
    },
    /// A PPP frame to the client; the shell takes the sequence number from the session's slot.
    SendPpp {
        session: SessionId,
        key: SessionKey,
        peer_call_id: u16,
        slot: u32,
        frame: Vec<u8>,
    },
    SetTimer(TimerKey, Duration),
    CancelTimer(TimerKey),
    /// Program (or reprogram) the session in the maps.
    ProgramSession(Session),
    /// Key the session's MPPE state in the data path (before it is programmed up).
    ProgramMppe {
        slot: u32,
        keys: crate::auth::authenticator::MppeKeys,
        stateful: bool,
    },
    /// A session's rate limits, bits per second (0: unlimited).
    SetRateLimit {
        slot: u32,
        up: u64,
        down: u64,
    },
    /// Stateful MPPE: the client sent a CCP Reset-Request; the data path's next packet to it
    /// re-keys and goes out flushed.
    ResetMppe {
        slot: u32,
    },
    RemoveSession(Session),
    ProjectRoute {
        session: SessionId,
        addr: Ipv4Addr,
    },
    WithdrawRoute {
        addr: Ipv4Addr,
    },
    /// The session's /64 or delegated prefix routed to `pptp0` (same replace semantics as
    /// IPv4's).
    ProjectRoute6 {
        session: SessionId,
        prefix: Prefix6,
    },
    WithdrawRoute6 {
        prefix: Prefix6,
    },
    /// The data path stops taking packets for the session /64 `prefix` (IPV6CP went down, the
    /// session stays).
    Unprogram6 {
        prefix: [u8; 8],
    },
    /// The same for a delegated prefix (released, or IPv6 went down).
    UnprogramDelegated {
        prefix: Prefix6,
    },
    /// An IPv6 packet from the gateway to the client owning `prefix` (a Router Advertisement):
    /// the shell hands it to the data path, which frames (and with MPPE encrypts) it like the
    /// session's data.
    SendIpv6 {
        prefix: [u8; 8],
        packet: Vec<u8>,
    },
    /// The session's journal record changed (IPv6 came up or went down after IPv4).
    Rejournal(Box<SessionRecord>),
    /// Send the session's accounting Start now (after `SessionUp`, once IPv6 has settled: see
    /// `acct_start.rs`), naming its /64 when IPv6 is live.
    AccountingStart {
        session: SessionId,
        prefix6: Option<[u8; 8]>,
    },
    SessionUp {
        session: SessionId,
        user: Option<String>,
        /// The client's IPv4 address; `None`: an IPv6-only session.
        addr: Option<Ipv4Addr>,
        local: Ipv4Addr,
        peer: Ipv4Addr,
        /// "mppe-128", "mppe-128-stateful" or "none", for the log line.
        encryption: &'static str,
        /// For accounting: the data-path slot (counters), our call ID, and what RADIUS granted
        /// (Class to echo, the interim interval).
        slot: u32,
        call_id: u16,
        class: Vec<Vec<u8>>,
        interim: Option<u32>,
        /// RADIUS Idle-Timeout, seconds.
        idle_timeout: Option<u32>,
        /// What another process needs to carry the session on (the shell journals it).
        record: Option<Box<SessionRecord>>,
    },
    SessionDown {
        session: SessionId,
        user: Option<String>,
        reason: EndReason,
        /// The data-path slot (its counters are read for the log line).
        slot: u32,
    },
    /// Check a session's credentials with RADIUS; the answer comes back as `Event::Verdict`.
    Verify {
        session: SessionId,
        creds: Credentials,
        /// The client's outer address, the address it dialled, our call ID.
        peer: Ipv4Addr,
        local: Ipv4Addr,
        call_id: u16,
    },
    /// A connection or call refused by a limit (the shell logs it, once per source per while).
    Refused {
        peer: Ipv4Addr,
        reason: Refusal,
    },
}

/// The controller's own counters (the data path's are in the eBPF maps).
#[derive(Clone, Debug, Default, PartialEq, Eq, serde::Serialize)]
pub struct GatewayStats {
    pub control_connections: u64,
    pub calls: u64,
    pub calls_refused: u64,
    pub sessions_up: u64,
    /// Sessions ended, by reason (the `EndReason` label).
    pub ended: BTreeMap<String, u64>,
    /// Failed authentications by method.
    pub auth_failures: BTreeMap<String, u64>,
    pub pool_exhausted: u64,
    /// IPv4 data frames that reached the slow path (the raw GRE socket); zero when the data path
    /// carries everything.
    pub slowpath_data_frames: u64,
    pub slowpath_control_frames: u64,
    /// MPPE packets handed up by the data path: stateful sessions' losses (answered with a CCP
    /// Reset-Request), or packets racing a session's programming.
    pub slowpath_mppe_frames: u64,
    /// GRE for no known call (wrong outer address, unknown call ID), and undecodable PPP.
    pub slowpath_unknown_call: u64,
    pub slowpath_malformed: u64,
    pub user_limit_refused: u64,
    pub user_limit_replaced: u64,
    /// Connections and calls refused by a limit, by the `Refusal` label.
    pub refused: BTreeMap<String, u64>,
    /// Malformed control messages (answered as `Connection::malformed` says).
    pub control_malformed: u64,
    /// Router Advertisements sent, Router Solicitations received.
    pub router_adverts: u64,
    pub router_solicitations: u64,
    /// IPv6 packets that reached the slow path and were not for the gateway (or malformed).
    pub ipv6_slowpath_dropped: u64,
    /// DHCPv6 answers sent (Advertise and Reply).
    pub dhcpv6_replies: u64,
}

/// One session as operators see it.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize)]
pub struct SessionView {
    pub id: SessionId,
    pub user: Option<String>,
    /// The client's outer address and the address it dialled.
    pub peer: Ipv4Addr,
    pub local: Ipv4Addr,
    pub assigned: Option<Ipv4Addr>,
    /// The session's /64 while IPv6 is up on it.
    pub prefix6: Option<Ipv6Addr>,
    /// The prefix delegated to it by DHCPv6, while bound.
    pub delegated6: Option<Prefix6>,
    pub call_id: u16,
    pub peer_call_id: u16,
    pub state: &'static str,
    pub slot: u32,
}

impl EndReason {
    /// A short stable label for counters and logs.
    pub fn label(&self) -> String {
        match self {
            EndReason::Link(DownReason::Lcp(r)) => format!("lcp_{r:?}").to_lowercase(),
            EndReason::Link(DownReason::AuthFailed { .. }) => "auth_failed".into(),
            EndReason::Link(DownReason::MppeRequired { .. }) => "mppe_required".into(),
            EndReason::Link(DownReason::MppeRefused { .. }) => "mppe_refused".into(),
            EndReason::Link(DownReason::Ipcp(_)) => "ipcp_failed".into(),
            EndReason::Link(DownReason::Ipv6cp(_)) => "ipv6cp_failed".into(),
            EndReason::Link(DownReason::EchoTimeout) => "echo_timeout".into(),
            EndReason::Link(DownReason::Closed) => "closed".into(),
            EndReason::Control(r) => format!("control_{r:?}").to_lowercase(),
            EndReason::PoolExhausted => "pool_exhausted".into(),
            EndReason::RouteFailed => "route_failed".into(),
            EndReason::UserLimit => "user_limit".into(),
            EndReason::Replaced => "replaced".into(),
            EndReason::AddressRemoved => "address_removed".into(),
            EndReason::NegotiationTimeout => "negotiation_timeout".into(),
            EndReason::SessionTimeout => "session_timeout".into(),
            EndReason::IdleTimeout => "idle_timeout".into(),
        }
    }
}

struct Conn {
    local: Ipv4Addr,
    peer: Ipv4Addr,
    framer: Framer,
    machine: Connection,
    /// Our call ID → session.
    calls: HashMap<u16, SessionId>,
}

impl Conn {
    fn new(local: Ipv4Addr, peer: Ipv4Addr, machine: Connection) -> Self {
        Self {
            local,
            peer,
            framer: Framer::new(),
            machine,
            calls: HashMap::new(),
        }
    }
}

struct Sess {
    conn: ConnId,
    map: Session,
    link: Link,
    user: Option<String>,
    addr: Option<Ipv4Addr>,
    routed: bool,
    /// Counted in the admission ledger until it authenticates or ends.
    negotiating: bool,
    /// What RADIUS granted (address, pool, timeouts, Class).
    authorization: Authorization,
    ipv6: ipv6::SessionV6,
    /// `AccountingStart` was emitted (or, restored, the previous process emitted it).
    accounted: bool,
}

pub struct Gateway {
    config: GatewayConfig,
    secrets: Secrets,
    pools: Pools,
    pools6: Pools6,
    conns: BTreeMap<ConnId, Conn>,
    sessions: BTreeMap<SessionId, Sess>,
    by_key: HashMap<SessionKey, SessionId>,
    next_session: SessionId,
    free_slots: Vec<u32>,
    next_slot: u32,
    seed: u64,
    shutting_down: bool,
    /// A reason that overrides the link's when it goes down (the link only knows it was closed).
    pending: HashMap<SessionId, EndReason>,
    ledger: Ledger,
    /// Where the next call-ID search starts (random at start, then next-fit).
    call_id_cursor: u16,
    pub stats: GatewayStats,
}

impl Gateway {
    pub fn new(config: GatewayConfig, secrets: Secrets, pools: Pools, seed: u64) -> Self {
        Self {
            config,
            secrets,
            pools,
            pools6: Pools6::default(),
            conns: BTreeMap::new(),
            sessions: BTreeMap::new(),
            by_key: HashMap::new(),
            next_session: 1,
            free_slots: Vec::new(),
            next_slot: 0,
            seed,
            shutting_down: false,
            pending: HashMap::new(),
            ledger: Ledger::default(),
            call_id_cursor: seed as u16,
            stats: GatewayStats::default(),
        }
    }

    /// Applies the per-user session limit to `sid`, newly authenticated as `user`. True when
    /// the new session was refused (it is terminating).
    fn per_user_limit(&mut self, sid: SessionId, user: &str, out: &mut Vec<Command>) -> bool {
        let limit = self.config.max_sessions_per_user;
        if limit == 0 {
            return false;
        }
        // The user's other sessions, oldest first (ids grow with time).
        let others: Vec<SessionId> = self
            .sessions
            .iter()
            .filter(|(id, s)| {
                **id != sid
                    && s.user.as_deref() == Some(user)
                    && !matches!(s.link.phase(), Phase::Terminate | Phase::Dead)
            })
            .map(|(id, _)| *id)
            .collect();
        if others.len() < limit {
            return false;
        }
        match self.config.per_user_policy {
            PerUserPolicy::Deny => {
                tracing::info!(
                    session = sid,
                    user,
                    limit,
                    "session refused: per-user limit"
                );
                self.stats.user_limit_refused += 1;
                if let Some(s) = self.sessions.get_mut(&sid) {
                    let o = s
                        .link
                        .refuse_network(DownReason::Closed, "too many sessions for this user");
                    self.pending.insert(sid, EndReason::UserLimit);
                    self.link_outputs(sid, o, out);
                }
                true
            }
            PerUserPolicy::Replace => {
                for old in &others[..others.len() + 1 - limit] {
                    tracing::info!(
                        session = old,
                        user,
                        newer = sid,
                        "session replaced: per-user limit"
                    );
                    self.stats.user_limit_replaced += 1;
                    if let Some(s) = self.sessions.get_mut(old) {
                        let o = s.link.close();
                        self.pending.insert(*old, EndReason::Replaced);
                        self.link_outputs(*old, o, out);
                    }
                }
                false
            }
        }
    }

    /// A new configuration: users, pools, timers and limits for new sessions. Live sessions keep
    /// their leases (adopted by the new pools); one whose address is in no pool any more is kept
    /// or ended as `on_reload_removed` says. Returns the addresses left outside every pool.
    pub fn reload(
        &mut self,
        config: GatewayConfig,
        secrets: Secrets,
        mut pools: Pools,
    ) -> (Vec<Ipv4Addr>, Vec<Command>) {
        let mut outside = Vec::new();
        for (&sid, s) in &self.sessions {
            if let Some(a) = s.addr
                && !pools.adopt(a)
            {
                outside.push((sid, a));
            }
        }
        self.config = config;
        self.secrets = secrets;
        self.pools = pools;
        let mut out = Vec::new();
        if self.config.on_reload_removed == RemovedAddressPolicy::Disconnect {
            for &(sid, a) in &outside {
                tracing::info!(session = sid, addr = %a, "address left every pool: disconnecting");
                if let Some(s) = self.sessions.get_mut(&sid) {
                    let o = s.link.close();
                    self.pending.insert(sid, EndReason::AddressRemoved);
                    self.link_outputs(sid, o, &mut out);
                }
            }
        }
        (outside.into_iter().map(|(_, a)| a).collect(), out)
    }

    /// Every session, in id order.
    pub fn sessions(&self) -> Vec<SessionView> {
        self.sessions
            .iter()
            .map(|(&id, s)| SessionView {
                id,
                user: s.user.clone(),
                peer: Ipv4Addr::from(s.map.key.peer),
                local: Ipv4Addr::from(s.map.key.local),
                assigned: s.addr,
                prefix6: s.ipv6.routed.then(|| crate::pool6::network(s.map.prefix6)),
                delegated6: (s.map.delegated6 != [0; 8])
                    .then(|| Prefix6::of(s.map.delegated6, s.map.delegated6_len)),
                call_id: u16::from_be_bytes(s.map.key.call_id),
                peer_call_id: u16::from_be_bytes(s.map.peer_call_id),
                state: match s.link.phase() {
                    Phase::Opened if s.routed => "up",
                    Phase::Terminate | Phase::Dead => "stopping",
                    _ => "starting",
                },
                slot: s.map.slot,
            })
            .collect()
    }

    pub fn pool_usage(&self) -> Vec<crate::pool::Usage> {
        self.pools.usage()
    }

    /// The MSS clamp for a tunnel MTU (0: no clamping, as the data path reads it).
    fn mss(&self, mtu: u16) -> u16 {
        if self.config.mss_clamp {
            mtu.saturating_sub(40)
        } else {
            0
        }
    }

    pub fn session_count(&self) -> usize {
        self.sessions.len()
    }

    /// Addresses currently leased from the pools (or static).
    pub fn leased(&self) -> usize {
        self.pools.leased()
    }

    pub fn handle(&mut self, event: Event<'_>) -> Vec<Command> {
        let mut out = Vec::new();
        match event {
            Event::Accepted { conn, local, peer } => self.accepted(conn, local, peer, &mut out),
            Event::ControlBytes { conn, bytes } => self.control_bytes(conn, bytes, &mut out),
            Event::ControlClosed { conn } => {
                if let Some(c) = self.conns.get_mut(&conn) {
                    let o = c.machine.lost(CloseReason::PeerClosed);
                    self.conn_outputs(conn, o, &mut out);
                }
            }
            Event::Gre {
                local,
                peer,
                call_id,
                payload,
            } => self.gre(local, peer, call_id, payload, &mut out),
            Event::Timer(TimerKey::Control(conn, t)) => {
                if let Some(c) = self.conns.get_mut(&conn) {
                    let o = c.machine.timeout(t);
                    self.conn_outputs(conn, o, &mut out);
                }
            }
            Event::Timer(TimerKey::Link(sid, t)) => {
                if let Some(s) = self.sessions.get_mut(&sid) {
                    let o = s.link.timeout(t);
                    self.link_outputs(sid, o, &mut out);
                }
            }
            Event::Timer(TimerKey::SessionLimit(sid)) => {
                if let Some(s) = self.sessions.get_mut(&sid) {
                    tracing::info!(session = sid, "RADIUS Session-Timeout reached");
                    self.pending.insert(sid, EndReason::SessionTimeout);
                    let o = s.link.close();
                    self.link_outputs(sid, o, &mut out);
                }
            }
            Event::Idle { session } => {
                if let Some(s) = self.sessions.get_mut(&session) {
                    tracing::info!(session, "RADIUS Idle-Timeout reached");
                    self.pending.insert(session, EndReason::IdleTimeout);
                    let o = s.link.close();
                    self.link_outputs(session, o, &mut out);
                }
            }
            Event::RateLimit { session, up, down } => {
                if let Some(s) = self.sessions.get(&session) {
                    out.push(Command::SetRateLimit {
                        slot: s.map.slot,
                        up,
                        down,
                    });
                }
            }
            Event::SessionTimeout { session, after } => {
                if self.sessions.contains_key(&session) {
                    out.push(Command::SetTimer(TimerKey::SessionLimit(session), after));
                }
            }
            Event::Verdict {
                session,
                creds,
                verdict,
                authorization,
            } => {
                let verdict = match verdict {
                    Verdict::Unavailable if self.config.radius_fallback_local => {
                        tracing::warn!(
                            session,
                            user = creds.user(),
                            "no RADIUS server answered: checked against the secrets file"
                        );
                        let secret = self.secrets.get(creds.user()).map(|e| e.secret.clone());
                        verify_local(&creds, secret)
                    }
                    v => v,
                };
                if let Some(s) = self.sessions.get_mut(&session) {
                    s.authorization = *authorization;
                    let o = s.link.resolve_auth(*creds, verdict);
                    self.link_outputs(session, o, &mut out);
                }
            }
            Event::Timer(TimerKey::RouterAdvert(sid)) => {
                if let Some(s) = self.sessions.get_mut(&sid) {
                    s.ipv6.delegated.answers = 0;
                }
                self.advertise(sid, true, &mut out)
            }
            Event::Timer(TimerKey::RouterAdvertQuiet(sid)) => {
                if let Some(s) = self.sessions.get_mut(&sid) {
                    s.ipv6.quiet = false;
                }
            }
            Event::Timer(TimerKey::AccountingStart(sid)) => self.maybe_account(sid, true, &mut out),
            Event::Timer(TimerKey::Negotiation(sid)) => {
                if self.sessions.get(&sid).is_some_and(|s| !s.routed) {
                    tracing::info!(session = sid, "negotiation took too long; call ended");
                    self.end(sid, EndReason::NegotiationTimeout, true, &mut out);
                }
            }
            Event::RouteFailed { session } => {
                self.end(session, EndReason::RouteFailed, true, &mut out)
            }
            Event::Kill { session } => {
                if let Some(s) = self.sessions.get_mut(&session) {
                    let o = s.link.close();
                    self.link_outputs(session, o, &mut out);
                }
            }
            Event::Shutdown => {
                self.shutting_down = true;
                let conns: Vec<ConnId> = self.conns.keys().copied().collect();
                for conn in conns {
                    if let Some(c) = self.conns.get_mut(&conn) {
                        let o = c.machine.stop();
                        self.conn_outputs(conn, o, &mut out);
                    }
                }
            }
        }
        out
    }

    /// A control connection arrived: admitted (a connection machine) or closed at once.
    fn accepted(&mut self, conn: ConnId, local: Ipv4Addr, peer: Ipv4Addr, out: &mut Vec<Command>) {
        let admission = if self.shutting_down {
            Admission::Busy
        } else {
            Admission::Accept
        };
        if let Err(reason) = self.ledger.connect(peer, &self.config.limits) {
            // Closed at once: no state, no timers, nothing the source can hold.
            self.refuse(peer, reason, out);
            out.push(Command::CloseControl { conn });
            return;
        }
        self.stats.control_connections += 1;
        let (machine, o) = Connection::new(self.config.control.clone(), admission);
        self.conns.insert(conn, Conn::new(local, peer, machine));
        self.conn_outputs(conn, o, out);
    }

    /// Bytes on a control connection: framed, and each message to its connection machine.
    fn control_bytes(&mut self, conn: ConnId, bytes: &[u8], out: &mut Vec<Command>) {
        let Some(c) = self.conns.get_mut(&conn) else {
            return;
        };
        // The shell reads at most a few hundred bytes at a time, so this loop is bounded
        // by what one read can hold.
        c.framer.push(bytes);
        while let Some(c) = self.conns.get_mut(&conn) {
            match c.framer.next_frame() {
                None => break,
                Some(Ok(m)) => {
                    let o = c.machine.receive(m);
                    self.conn_outputs(conn, o, out);
                }
                Some(Err(r)) if r.error.is_fatal() => {
                    tracing::info!(conn, peer = %c.peer, error = %r.error, "control stream unusable; closing");
                    let o = c.machine.lost(CloseReason::ProtocolError);
                    self.conn_outputs(conn, o, out);
                    break;
                }
                Some(Err(r)) => {
                    self.stats.control_malformed += 1;
                    let o = c.machine.malformed(r);
                    self.conn_outputs(conn, o, out);
                }
            }
        }
    }

    /// A GRE payload the data path handed up: to its session's link (IPv6 to the core's
    /// own handling); for no call, or undecodable, counted and dropped.
    fn gre(
        &mut self,
        local: Ipv4Addr,
        peer: Ipv4Addr,
        call_id: u16,
        payload: &[u8],
        out: &mut Vec<Command>,
    ) {
        let key = SessionKey {
            local: local.octets(),
            peer: peer.octets(),
            call_id: call_id.to_be_bytes(),
            _pad: [0; 2],
        };
        let Some(&sid) = self.by_key.get(&key) else {
            self.stats.slowpath_unknown_call += 1;
            tracing::debug!(%peer, %local, call_id, "GRE for no call dropped");
            return;
        };
        let Ok((frame, _)) = PppFrame::parse(payload) else {
            self.stats.slowpath_malformed += 1;
            tracing::debug!(session = sid, "malformed PPP frame dropped");
            return;
        };
        if frame.protocol == crate::wire::ppp::proto::IPV6 {
            self.ipv6_from_client(sid, frame.info, out);
            return;
        }
        if frame.protocol == crate::wire::ppp::proto::IPV4 {
            self.stats.slowpath_data_frames += 1;
        } else if frame.protocol == crate::wire::ppp::proto::COMPRESSED {
            self.stats.slowpath_mppe_frames += 1;
        } else {
            self.stats.slowpath_control_frames += 1;
        }
        let Some(s) = self.sessions.get_mut(&sid) else {
            return;
        };
        let secrets = &self.secrets;
        let o = s.link.receive(frame.protocol, frame.info, |u| {
            secrets.get(u).map(|e| e.secret.clone())
        });
        self.link_outputs(sid, o, out);
    }

    fn conn_outputs(
        &mut self,
        conn: ConnId,
        outputs: Vec<connection::Output>,
        out: &mut Vec<Command>,
    ) {
        for o in outputs {
            match o {
                connection::Output::Send(m) => out.push(Command::SendControl {
                    conn,
                    bytes: m.to_bytes(),
                }),
                connection::Output::SetTimer(t, d) => {
                    out.push(Command::SetTimer(TimerKey::Control(conn, t), d))
                }
                connection::Output::CancelTimer(t) => {
                    out.push(Command::CancelTimer(TimerKey::Control(conn, t)))
                }
                connection::Output::CallRequested { peer_call_id, .. } => {
                    self.new_call(conn, peer_call_id, out)
                }
                connection::Output::CallCleared { call_id, reason } => {
                    let sid = self
                        .conns
                        .get_mut(&conn)
                        .and_then(|c| c.calls.remove(&call_id));
                    if let Some(sid) = sid {
                        // The control side already ended the call (no CDN owed). A link that was
                        // already terminating knows the better reason (e.g. MPPE required).
                        let why = self
                            .sessions
                            .get(&sid)
                            .and_then(|s| s.link.terminating_because().cloned())
                            .map_or(EndReason::Control(reason), EndReason::Link);
                        self.end(sid, why, false, out);
                    }
                }
                connection::Output::Close(reason) => {
                    tracing::info!(conn, ?reason, "control connection closed");
                    out.push(Command::CloseControl { conn });
                    if let Some(c) = self.conns.remove(&conn) {
                        self.ledger.disconnect(c.peer);
                        // Normally emptied by CallCleared first; make sure.
                        for (_, sid) in c.calls {
                            self.end(
                                sid,
                                EndReason::Control(ClearReason::ConnectionLost),
                                false,
                                out,
                            );
                        }
                    }
                }
            }
        }
    }

    /// Counts and reports a refusal.
    fn refuse(&mut self, peer: Ipv4Addr, reason: Refusal, out: &mut Vec<Command>) {
        *self
            .stats
            .refused
            .entry(reason.label().to_string())
            .or_default() += 1;
        out.push(Command::Refused { peer, reason });
    }

    /// Whether a new call on `conn` from `peer` may be made, cheapest checks first; the
    /// negotiation is counted against the source when it may.
    fn admit_call(&mut self, conn: ConnId, peer: Ipv4Addr) -> Result<(), Refusal> {
        let calls = self.conns.get(&conn).map_or(0, |c| c.calls.len());
        if self.shutting_down {
            Err(Refusal::ShuttingDown)
        } else if calls >= self.config.limits.max_calls_per_connection as usize {
            Err(Refusal::CallsPerConnection)
        } else if self.sessions.len() >= self.config.max_sessions {
            Err(Refusal::SessionLimit)
        } else if !self.pools.has_free(&self.config.pool) {
            // No address for anybody without a free static one: refuse now, in OCRP, rather than
            // after authentication. (A user with a static address may still get in.)
            self.stats.pool_exhausted += 1;
            Err(Refusal::PoolExhausted)
        } else {
            self.ledger.begin_negotiation(peer, &self.config.limits)
        }
    }

    /// A free call ID for calls from `peer` to `local` (the session key includes both addresses,
    /// so IDs need only be unique per pair), searched next-fit from where the last one was
    /// found. The search is bounded: a pair whose IDs around the cursor are all taken is refused
    /// rather than searched for ever.
    fn free_call_id(&mut self, local: Ipv4Addr, peer: Ipv4Addr) -> Option<u16> {
        const PROBES: u16 = 4096;
        let start = self.call_id_cursor;
        let id = (0..PROBES)
            .map(|i| start.wrapping_add(i))
            .find(|&id| id != 0 && !self.by_key.contains_key(&session_key(local, peer, id)))?;
        self.call_id_cursor = id.wrapping_add(1);
        Some(id)
    }

    fn new_call(&mut self, conn: ConnId, peer_call_id: u16, out: &mut Vec<Command>) {
        let Some(c) = self.conns.get(&conn) else {
            return;
        };
        let (local, peer) = (c.local, c.peer);
        self.stats.calls += 1;
        let admitted = self.admit_call(conn, peer).and_then(|()| {
            self.free_call_id(local, peer).ok_or_else(|| {
                self.ledger.end_negotiation(peer);
                Refusal::CallIdsExhausted
            })
        });
        let call_id = match admitted {
            Ok(id) => id,
            Err(reason) => {
                self.stats.calls_refused += 1;
                self.refuse(peer, reason, out);
                let c = self.conns.get_mut(&conn).expect("checked above");
                let o = c.machine.refuse_call(
                    peer_call_id,
                    pptp::result::OCRP_GENERAL_ERROR,
                    pptp::error_code::NO_RESOURCE,
                );
                self.conn_outputs(conn, o, out);
                return;
            }
        };
        let key = |id: u16| session_key(local, peer, id);
        let slot = self.free_slots.pop().unwrap_or_else(|| {
            self.next_slot += 1;
            self.next_slot - 1
        });
        let sid = self.next_session;
        self.next_session += 1;
        let map = Session {
            slot,
            assigned: [0; 4],
            key: key(call_id),
            peer_call_id: peer_call_id.to_be_bytes(),
            mtu: self.config.mtu,
            mss: self.mss(self.config.mtu),
            state: STATE_NEGOTIATING,
            mode: MODE_PLAIN,
            ..Session::default()
        };
        let (link, o) = Link::new(self.config.link.clone(), self.seed ^ sid.rotate_left(17));
        self.by_key.insert(map.key, sid);
        self.sessions.insert(
            sid,
            Sess {
                conn,
                map,
                link,
                user: None,
                addr: None,
                routed: false,
                negotiating: true,
                authorization: Authorization::default(),
                ipv6: ipv6::SessionV6::default(),
                accounted: false,
            },
        );
        out.push(Command::SetTimer(
            TimerKey::Negotiation(sid),
            self.config.limits.negotiation_timeout,
        ));
        let c = self.conns.get_mut(&conn).expect("checked above");
        c.calls.insert(call_id, sid);
        // Programmed before the reply, so the client's first GRE packet is already counted in
        // the session's sequence space.
        out.push(Command::ProgramSession(map));
        let reply = c.machine.accept_call(peer_call_id, call_id);
        self.conn_outputs(conn, reply, out);
        self.link_outputs(sid, o, out);
    }

    fn link_outputs(&mut self, sid: SessionId, outputs: Vec<LinkOutput>, out: &mut Vec<Command>) {
        let start = out.len();
        self.link_outputs_in_order(sid, outputs, out);
        self.maybe_account(sid, false, out);
        // When this batch brings the network (or IPv6 on it) up, the frames (the final IPCP or
        // IPV6CP Configure-Ack among them) leave after the session is programmed up and its
        // route projected: the client may send data the moment it sees that Ack, and XDP drops
        // data of a session not yet up.
        let batch = &mut out[start..];
        // (`SessionUp` comes with the /32 when there is one; `ProjectRoute6` marks the /64 going
        // live, with the session or later.)
        if batch
            .iter()
            .any(|c| matches!(c, Command::SessionUp { .. } | Command::ProjectRoute6 { .. }))
        {
            // A stable sort: frames to the end, everything else (and the frames among
            // themselves) in order.
            batch.sort_by_key(|c| matches!(c, Command::SendPpp { .. }));
        }
    }

    fn link_outputs_in_order(
        &mut self,
        sid: SessionId,
        outputs: Vec<LinkOutput>,
        out: &mut Vec<Command>,
    ) {
        for o in outputs {
            let Some(s) = self.sessions.get_mut(&sid) else {
                return;
            };
            match o {
                LinkOutput::Send { protocol, info } => {
                    let mut frame = Vec::with_capacity(info.len() + 4);
                    PppFrame {
                        protocol,
                        info: &info,
                    }
                    .emit(Compression::default(), &mut frame);
                    out.push(Command::SendPpp {
                        session: sid,
                        key: s.map.key,
                        peer_call_id: u16::from_be_bytes(s.map.peer_call_id),
                        slot: s.map.slot,
                        frame,
                    });
                }
                LinkOutput::SetTimer(t, d) => {
                    out.push(Command::SetTimer(TimerKey::Link(sid, t), d))
                }
                LinkOutput::MppeReset => out.push(Command::ResetMppe { slot: s.map.slot }),
                LinkOutput::CancelTimer(t) => {
                    out.push(Command::CancelTimer(TimerKey::Link(sid, t)))
                }
                LinkOutput::Verify(creds) => out.push(Command::Verify {
                    session: sid,
                    creds,
                    peer: Ipv4Addr::from(s.map.key.peer),
                    local: Ipv4Addr::from(s.map.key.local),
                    call_id: u16::from_be_bytes(s.map.key.call_id),
                }),
                LinkOutput::Authenticated { user, .. } => self.authenticated(sid, user, out),
                LinkOutput::Up {
                    negotiated,
                    mppe,
                    ipv4,
                } => self.network_up(sid, negotiated, mppe, ipv4, out),
                LinkOutput::Down(reason) => {
                    let reason = self.pending.remove(&sid).unwrap_or(EndReason::Link(reason));
                    self.end(sid, reason, true, out);
                }
                LinkOutput::Ipv6Up { local, peer } => self.ipv6_up(sid, local, peer, out),
                LinkOutput::Ipv6Down => self.ipv6_down(sid, out),
            }
        }
    }
    /// Authenticated: the per-user limit, then the client's address (RADIUS, the secrets file,
    /// the pool), and the network phase starts; or the link ends without an address.
    fn authenticated(&mut self, sid: SessionId, user: Option<String>, out: &mut Vec<Command>) {
        let Some(s) = self.sessions.get_mut(&sid) else {
            return;
        };
        s.user = user.clone();
        if std::mem::take(&mut s.negotiating) {
            self.ledger.end_negotiation(Ipv4Addr::from(s.map.key.peer));
        }
        if let Some(u) = user.as_deref()
            && self.per_user_limit(sid, u, out)
        {
            return;
        }
        let fixed = user
            .as_deref()
            .and_then(|u| self.secrets.get(u))
            .and_then(|e| e.static_address);
        let authz = &self.sessions[&sid].authorization;
        // RADIUS's Framed-IP-Address, then its Framed-Pool, then the secrets
        // file's static address, then the default pool.
        let got = match (authz.framed_ip, &authz.framed_pool, fixed) {
            (Some(a), _, _) => self.pools.allocate_specific(a).map(|()| a),
            (None, Some(pool), _) => self.pools.allocate(pool),
            (None, None, Some(a)) => self.pools.allocate_static(a).map(|()| a),
            (None, None, None) => self.pools.allocate(&self.config.pool),
        };
        let s = self.sessions.get_mut(&sid).expect("present");
        match got {
            Ok(addr) => {
                s.addr = Some(addr);
                let dns = match s.authorization.dns {
                    [None, None] => self.config.dns,
                    d => d,
                };
                let ipcp = IpcpConfig {
                    local: self.config.tunnel_local,
                    assigned: addr,
                    dns,
                    nbns: self.config.nbns,
                };
                let o = s.link.start_network(ipcp);
                self.link_outputs(sid, o, out);
            }
            Err(e) => {
                tracing::warn!(session = sid, user = ?s.user, error = %e, "no address for the client");
                let o = s.link.refuse_network(DownReason::Closed, &e.to_string());
                self.pending.insert(sid, EndReason::PoolExhausted);
                self.link_outputs(sid, o, out);
            }
        }
    }

    /// The network is up (IPCP, or IPV6CP alone when `!ipv4`): the session is programmed up,
    /// routed, limited and reported.
    fn network_up(
        &mut self,
        sid: SessionId,
        negotiated: crate::ppp::lcp::Negotiated,
        mppe: Option<crate::ppp::link::MppeSession>,
        ipv4: bool,
        out: &mut Vec<Command>,
    ) {
        let Some(s) = self.sessions.get_mut(&sid) else {
            return;
        };
        if !ipv4 {
            tracing::info!(session = sid, user = ?s.user, "the client refused IPCP: up on IPv6 alone");
            // An IPv6-only client: the address IPCP offered goes back to its pool.
            if let Some(a) = s.addr.take() {
                self.pools.release(a);
            }
        }
        let addr = s.addr;
        // Nothing to carry: the link is ending already (no prefix for it).
        if (ipv4 && addr.is_none()) || (!ipv4 && s.ipv6.prefix.is_none()) {
            return;
        }
        s.map.assigned = addr.map_or([0; 4], |a| a.octets());
        s.map.state = STATE_UP;
        let encryption = match mppe {
            Some(m) if m.stateful => "mppe-128-stateful",
            Some(_) => "mppe-128",
            None => "none",
        };
        if let Some(m) = mppe {
            s.map.mode = MODE_MPPE;
            out.push(Command::ProgramMppe {
                slot: s.map.slot,
                keys: m.keys,
                stateful: m.stateful,
            });
        }
        let peer_mru = negotiated.peer_mru.min(self.config.mtu);
        s.map.mtu = peer_mru;
        s.map.mss = if self.config.mss_clamp {
            peer_mru.saturating_sub(40)
        } else {
            0
        };
        s.map.flags = (if negotiated.peer_acfc { FLAG_ACFC } else { 0 })
            | (if negotiated.peer_pfc { FLAG_PFC } else { 0 });
        s.routed = true;
        out.push(Command::CancelTimer(TimerKey::Negotiation(sid)));
        if let Some((up, down)) = s.authorization.rate_limit.or(self.config.rate_limit) {
            out.push(Command::SetRateLimit {
                slot: s.map.slot,
                up,
                down,
            });
        }
        if let Some(t) = s.authorization.session_timeout {
            out.push(Command::SetTimer(
                TimerKey::SessionLimit(sid),
                Duration::from_secs(u64::from(t)),
            ));
        }
        if let Some(addr) = addr {
            out.push(Command::ProjectRoute { session: sid, addr });
        }
        out.push(Command::ProgramSession(s.map));
        self.stats.sessions_up += 1;
        out.push(Command::SessionUp {
            session: sid,
            user: s.user.clone(),
            addr,
            local: s.map.key.local.into(),
            peer: s.map.key.peer.into(),
            encryption,
            slot: s.map.slot,
            call_id: u16::from_be_bytes(s.map.key.call_id),
            class: s.authorization.class.clone(),
            interim: s.authorization.interim_interval,
            idle_timeout: s.authorization.idle_timeout,
            record: None,
        });
        let journaled = self.record(sid).map(Box::new);
        if let Some(Command::SessionUp { record, .. }) = out.last_mut() {
            *record = journaled;
        }
        // IPV6CP may have opened first: its prefix goes live with the session.
        self.ipv6_ready(sid, out);
        self.arm_accounting(sid, out);
    }
}

fn session_key(local: Ipv4Addr, peer: Ipv4Addr, call_id: u16) -> SessionKey {
    SessionKey {
        local: local.octets(),
        peer: peer.octets(),
        call_id: call_id.to_be_bytes(),
        _pad: [0; 2],
    }
}

impl Gateway {
    /// Ends a session: maps, route, lease, slot, timers; a CDN unless the control side already
    /// ended the call; one `SessionDown`. Idempotent.
    fn end(&mut self, sid: SessionId, reason: EndReason, send_cdn: bool, out: &mut Vec<Command>) {
        let Some(s) = self.sessions.remove(&sid) else {
            return;
        };
        self.pending.remove(&sid);
        self.by_key.remove(&s.map.key);
        if s.negotiating {
            self.ledger.end_negotiation(Ipv4Addr::from(s.map.key.peer));
        }
        out.push(Command::RemoveSession(s.map));
        if s.routed
            && let Some(addr) = s.addr
        {
            out.push(Command::WithdrawRoute { addr });
        }
        if let Some(addr) = s.addr {
            self.pools.release(addr);
        }
        self.ipv6_end(&s, out);
        self.free_slots.push(s.map.slot);
        for t in [
            LinkTimer::Lcp,
            LinkTimer::Auth,
            LinkTimer::Ipcp,
            LinkTimer::Ccp,
            LinkTimer::Ipv6cp,
            LinkTimer::Echo,
        ] {
            out.push(Command::CancelTimer(TimerKey::Link(sid, t)));
        }
        out.push(Command::CancelTimer(TimerKey::Negotiation(sid)));
        out.push(Command::CancelTimer(TimerKey::SessionLimit(sid)));
        out.push(Command::CancelTimer(TimerKey::RouterAdvert(sid)));
        out.push(Command::CancelTimer(TimerKey::RouterAdvertQuiet(sid)));
        out.push(Command::CancelTimer(TimerKey::AccountingStart(sid)));
        let call_id = u16::from_be_bytes(s.map.key.call_id);
        if let Some(c) = self.conns.get_mut(&s.conn) {
            c.calls.remove(&call_id);
            if send_cdn {
                let result = match &reason {
                    EndReason::Link(DownReason::EchoTimeout) => pptp::result::CDN_LOST_CARRIER,
                    EndReason::Link(DownReason::Closed) => pptp::result::CDN_ADMIN_SHUTDOWN,
                    EndReason::Link(DownReason::Lcp(_)) => pptp::result::CDN_REQUEST,
                    _ => pptp::result::CDN_GENERAL_ERROR,
                };
                let o = c.machine.clear_call(call_id, result);
                self.conn_outputs(s.conn, o, out);
            }
        }
        *self.stats.ended.entry(reason.label()).or_default() += 1;
        match &reason {
            EndReason::Link(DownReason::AuthFailed { .. }) => {
                let method = s.link.negotiated().auth.map_or("none", |a| a.name());
                *self.stats.auth_failures.entry(method.into()).or_default() += 1;
            }
            EndReason::PoolExhausted => self.stats.pool_exhausted += 1,
            _ => {}
        }
        out.push(Command::SessionDown {
            session: sid,
            user: s.user,
            reason,
            slot: s.map.slot,
        });
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeSet;

    use super::*;
    use crate::{
        auth::mschap,
        pool::{Policy, PoolConfig},
        pool6::Pools6,
        ppp::link::Ipv6Policy,
        wire::{
            cp::{CpPacket, code},
            ppp::proto,
            pptp::{
                CallClearRequest, ControlMessage, OutgoingCallReply, OutgoingCallRequest,
                PROTOCOL_VERSION, StartControlConnectionRequest, Text,
            },
        },
    };

    const LOCAL: Ipv4Addr = Ipv4Addr::new(192, 0, 2, 1);

    /// What the shell would hold after executing the commands: programmed sessions, routes.
    #[derive(Default)]
    struct Ledger {
        sessions: BTreeMap<[u8; 12], Session>,
        routes: BTreeSet<Ipv4Addr>,
        routes6: BTreeSet<Prefix6>,
        /// The encapsulation's IPv6 lookups: /64 → session key.
        clients6: BTreeMap<[u8; 8], SessionKey>,
        adverts: Vec<Vec<u8>>,
        ups: usize,
        downs: Vec<EndReason>,
        refused: usize,
    }

    impl Ledger {
        fn apply(&mut self, cmds: &[Command]) {
            for c in cmds {
                let k = |s: &Session| {
                    let mut b = [0u8; 12];
                    b[..4].copy_from_slice(&s.key.local);
                    b[4..8].copy_from_slice(&s.key.peer);
                    b[8..10].copy_from_slice(&s.key.call_id);
                    b
                };
                match c {
                    Command::ProgramSession(s) => {
                        self.sessions.insert(k(s), *s);
                        for p in [s.prefix6, s.delegated6] {
                            if p != [0; 8] {
                                self.clients6.insert(p, s.key);
                            }
                        }
                    }
                    Command::RemoveSession(s) => {
                        assert!(
                            self.sessions.remove(&k(s)).is_some(),
                            "removing a session never programmed"
                        );
                        for p in [s.prefix6, s.delegated6] {
                            if self.clients6.get(&p) == Some(&s.key) {
                                self.clients6.remove(&p);
                            }
                        }
                    }
                    Command::Unprogram6 { prefix } => {
                        assert!(self.clients6.remove(prefix).is_some());
                    }
                    Command::UnprogramDelegated { prefix } => {
                        assert!(self.clients6.remove(&prefix.first8()).is_some());
                    }
                    Command::ProjectRoute6 { prefix, .. } => {
                        assert!(
                            self.routes6.insert(*prefix),
                            "route {prefix} projected twice"
                        );
                    }
                    Command::WithdrawRoute6 { prefix } => {
                        assert!(
                            self.routes6.remove(prefix),
                            "withdrawing route {prefix} never projected"
                        );
                    }
                    Command::SendIpv6 { prefix, packet } => {
                        assert!(
                            self.clients6.contains_key(prefix),
                            "IPv6 sent to a prefix not programmed"
                        );
                        self.adverts.push(packet.clone());
                    }
                    Command::ProjectRoute { addr, .. } => {
                        // Replace semantics: projecting twice is fine, but the core never should.
                        assert!(self.routes.insert(*addr), "route {addr} projected twice");
                    }
                    Command::WithdrawRoute { addr } => {
                        assert!(
                            self.routes.remove(addr),
                            "withdrawing route {addr} never projected"
                        );
                    }
                    Command::SessionUp { .. } => self.ups += 1,
                    Command::SessionDown { reason, .. } => self.downs.push(reason.clone()),
                    Command::Refused { .. } => self.refused += 1,
                    _ => {}
                }
            }
        }
    }

    struct Client {
        conn: ConnId,
        peer: Ipv4Addr,
        call_id: u16,
        our_call_id: u16,
        user: String,
        password: String,
    }

    fn gateway(pool: &str) -> Gateway {
        let secrets = Secrets::parse(
            "alice * s3cret *\nbob * hunter2 *\ncarol * pw 10.99.9.9\n",
            "pptpgw",
        )
        .unwrap();
        let pools = Pools::new(
            vec![PoolConfig {
                name: "default".into(),
                ranges: vec![pool.parse().unwrap()],
                next: None,
            }],
            Policy::LowestFree,
            &[],
            &[],
            &[("carol".into(), Ipv4Addr::new(10, 99, 9, 9))],
        )
        .unwrap();
        Gateway::new(GatewayConfig::default(), secrets, pools, 99)
    }

    fn control(m: impl Into<ControlMessage>) -> Vec<u8> {
        m.into().to_bytes()
    }

    fn frames(cmds: &[Command], protocol: u16) -> Vec<Vec<u8>> {
        cmds.iter()
            .filter_map(|c| match c {
                Command::SendPpp { frame, .. } => {
                    let (f, _) = PppFrame::parse(frame).unwrap();
                    (f.protocol == protocol).then(|| f.info.to_vec())
                }
                _ => None,
            })
            .collect()
    }

    fn ppp(protocol: u16, info: &[u8]) -> Vec<u8> {
        let mut v = Vec::new();
        PppFrame { protocol, info }.emit(Compression::default(), &mut v);
        v
    }

    impl Client {
        fn new(conn: ConnId, peer_last: u8, user: &str, password: &str) -> Self {
            Client {
                conn,
                peer: Ipv4Addr::new(198, 51, 100, peer_last),
                call_id: 0x80 + conn as u16,
                our_call_id: 0,
                user: user.into(),
                password: password.into(),
            }
        }

        fn gre(&self, g: &mut Gateway, l: &mut Ledger, protocol: u16, info: &[u8]) -> Vec<Command> {
            let payload = ppp(protocol, info);
            let out = g.handle(Event::Gre {
                local: LOCAL,
                peer: self.peer,
                call_id: self.our_call_id,
                payload: &payload,
            });
            l.apply(&out);
            out
        }

        /// Dials and negotiates like pppd; returns the commands of the last step.
        fn dial(&mut self, g: &mut Gateway, l: &mut Ledger) -> Vec<Command> {
            let out = self.authenticate(g, l);
            let Some(our_ipcp) = frames(&out, proto::IPCP).into_iter().next() else {
                return out;
            };
            let addr_req = |a: [u8; 4], id: u8| {
                CpPacket {
                    code: 1,
                    identifier: id,
                    data: &[3, 6, a[0], a[1], a[2], a[3]],
                }
                .to_bytes()
            };
            let out = self.gre(g, l, proto::IPCP, &addr_req([0; 4], 1));
            let nak = frames(&out, proto::IPCP)
                .into_iter()
                .find(|f| f[0] == code::CONFIGURE_NAK);
            let Some(nak) = nak else { return out };
            let addr = [nak[6], nak[7], nak[8], nak[9]];
            // Our Ack of the client's address brings the session up (the client may send data
            // as soon as it has that Ack and ours is acked); then the client acks our request.
            let mut out = self.gre(g, l, proto::IPCP, &addr_req(addr, 2));
            let mut ack = our_ipcp.clone();
            ack[0] = code::CONFIGURE_ACK;
            out.extend(self.gre(g, l, proto::IPCP, &ack));
            out
        }

        /// Connects, calls, runs LCP and MS-CHAPv2; returns the commands of the last step (the
        /// network protocols' first requests among them).
        fn authenticate(&mut self, g: &mut Gateway, l: &mut Ledger) -> Vec<Command> {
            let out = g.handle(Event::Accepted {
                conn: self.conn,
                local: LOCAL,
                peer: self.peer,
            });
            l.apply(&out);
            let sccrq = control(StartControlConnectionRequest {
                protocol_version: PROTOCOL_VERSION,
                host_name: Text::new("local"),
                ..Default::default()
            });
            let out = g.handle(Event::ControlBytes {
                conn: self.conn,
                bytes: &sccrq,
            });
            l.apply(&out);
            let ocrq = control(OutgoingCallRequest {
                call_id: self.call_id,
                packet_recv_window_size: 3,
                ..Default::default()
            });
            let out = g.handle(Event::ControlBytes {
                conn: self.conn,
                bytes: &ocrq,
            });
            l.apply(&out);
            let Some(ocrp) = out.iter().find_map(|c| match c {
                Command::SendControl { bytes, .. } => match ControlMessage::parse(bytes) {
                    Ok(ControlMessage::OutgoingCallReply(r)) => Some(r),
                    _ => None,
                },
                _ => None,
            }) else {
                return out;
            };
            if ocrp.result_code != pptp::result::OCRP_CONNECTED {
                return out;
            }
            self.our_call_id = ocrp.call_id;
            let our_lcp = frames(&out, proto::LCP).remove(0);
            self.gre(
                g,
                l,
                proto::LCP,
                &[
                    1, 1, 0, 20, 2, 6, 0, 0, 0, 0, 5, 6, 0x3c, 0x5a, 0x1e, 0x47, 7, 2, 8, 2,
                ],
            );
            let mut ack = our_lcp.clone();
            ack[0] = code::CONFIGURE_ACK;
            let out = self.gre(g, l, proto::LCP, &ack);
            let challenge = frames(&out, proto::CHAP).remove(0);
            let mut c16 = [0u8; 16];
            c16.copy_from_slice(&challenge[5..21]);
            let peer = [3u8; 16];
            let nt = mschap::generate_nt_response(
                &c16,
                &peer,
                self.user.as_bytes(),
                &mschap::nt_password_hash(&self.password),
            );
            let mut body = vec![49];
            body.extend_from_slice(&peer);
            body.extend_from_slice(&[0; 8]);
            body.extend_from_slice(&nt);
            body.push(0);
            body.extend_from_slice(self.user.as_bytes());
            self.gre(
                g,
                l,
                proto::CHAP,
                &CpPacket {
                    code: 2,
                    identifier: challenge[1],
                    data: &body,
                }
                .to_bytes(),
            )
        }

        fn hang_up(&self, g: &mut Gateway, l: &mut Ledger) -> Vec<Command> {
            let ccrq = control(CallClearRequest {
                call_id: self.call_id,
                ..Default::default()
            });
            let mut out = g.handle(Event::ControlBytes {
                conn: self.conn,
                bytes: &ccrq,
            });
            out.extend(g.handle(Event::ControlClosed { conn: self.conn }));
            l.apply(&out);
            out
        }
    }

    fn up_addr(cmds: &[Command]) -> Option<Ipv4Addr> {
        cmds.iter().find_map(|c| match c {
            Command::SessionUp { addr, .. } => *addr,
            _ => None,
        })
    }

    fn clean(g: &Gateway, l: &Ledger) {
        assert!(
            l.sessions.is_empty(),
            "sessions left in the maps: {:?}",
            l.sessions.len()
        );
        assert!(l.routes.is_empty(), "routes left: {:?}", l.routes);
        assert!(l.routes6.is_empty(), "IPv6 routes left: {:?}", l.routes6);
        assert!(l.clients6.is_empty(), "IPv6 lookups left: {:?}", l.clients6);
        assert_eq!(g.leased(), 0, "leases left");
        assert_eq!(g.leased6(), 0, "IPv6 prefixes left");
        assert_eq!(g.session_count(), 0);
    }

    #[test]
    fn a_call_comes_up_programmed_and_routed_and_goes_away_cleanly() {
        let mut g = gateway("10.99.0.10-10.99.0.13");
        let mut l = Ledger::default();
        let mut c = Client::new(1, 7, "alice", "s3cret");
        let out = c.dial(&mut g, &mut l);
        assert_eq!(up_addr(&out), Some(Ipv4Addr::new(10, 99, 0, 10)));
        let s = l.sessions.values().next().unwrap();
        assert_eq!(
            (s.state, s.assigned, s.peer_call_id),
            (STATE_UP, [10, 99, 0, 10], 0x81u16.to_be_bytes())
        );
        assert_eq!(s.key.local, LOCAL.octets(), "keyed by the dialled address");
        assert_eq!(
            l.routes.iter().copied().collect::<Vec<_>>(),
            vec![Ipv4Addr::new(10, 99, 0, 10)]
        );
        let out = c.hang_up(&mut g, &mut l);
        assert!(out.iter().any(|c| matches!(c, Command::SendControl { bytes, .. }
            if matches!(ControlMessage::parse(bytes), Ok(ControlMessage::CallDisconnectNotify(_))))));
        assert_eq!(l.downs, vec![EndReason::Control(ClearReason::ClientClear)]);
        clean(&g, &l);
    }

    #[test]
    fn every_teardown_path_releases_everything() {
        // TCP loss, operator kill (LCP Terminate then CDN), echo timeout, shutdown.
        for path in 0..4 {
            let mut g = gateway("10.99.0.10-10.99.0.13");
            let mut l = Ledger::default();
            let mut c = Client::new(1, 7, "alice", "s3cret");
            assert!(up_addr(&c.dial(&mut g, &mut l)).is_some());
            let sid = 1;
            match path {
                0 => l.apply(&g.handle(Event::ControlClosed { conn: 1 })),
                1 => {
                    let out = g.handle(Event::Kill { session: sid });
                    l.apply(&out);
                    assert_eq!(frames(&out, proto::LCP)[0][0], code::TERMINATE_REQUEST);
                    let out = c.gre(&mut g, &mut l, proto::LCP, &[6, 2, 0, 4]);
                    assert!(out.iter().any(|c| matches!(c, Command::SendControl { bytes, .. }
                        if matches!(ControlMessage::parse(bytes), Ok(ControlMessage::CallDisconnectNotify(n)) if n.result_code == pptp::result::CDN_ADMIN_SHUTDOWN))));
                }
                2 => {
                    for _ in 0..8 {
                        l.apply(&g.handle(Event::Timer(TimerKey::Link(sid, LinkTimer::Echo))));
                    }
                    l.apply(&g.handle(Event::Timer(TimerKey::Link(sid, LinkTimer::Lcp))));
                    l.apply(&g.handle(Event::Timer(TimerKey::Link(sid, LinkTimer::Lcp))));
                    l.apply(&g.handle(Event::Timer(TimerKey::Link(sid, LinkTimer::Lcp))));
                }
                _ => {
                    let out = g.handle(Event::Shutdown);
                    l.apply(&out);
                    l.apply(&g.handle(Event::Timer(TimerKey::Control(1, connection::Timer::Stop))));
                }
            }
            assert_eq!(l.downs.len(), 1, "path {path}: {:?}", l.downs);
            clean(&g, &l);
        }
    }

    #[test]
    fn recycled_addresses_and_exhaustion() {
        let mut g = gateway("10.99.0.10-10.99.0.13");
        let mut l = Ledger::default();
        let mut conn = 0;
        // 10 rounds of 4 concurrent sessions, dropped and redialled; every dial gets an address.
        for round in 0..10 {
            let mut clients: Vec<Client> = (0..4)
                .map(|i| {
                    conn += 1;
                    Client::new(conn, 10 + i, "alice", "s3cret")
                })
                .collect();
            for c in clients.iter_mut() {
                assert!(up_addr(&c.dial(&mut g, &mut l)).is_some(), "round {round}");
            }
            assert_eq!(l.routes.len(), 4);
            // The 5th concurrent client is refused cleanly; the others keep their sessions.
            if round == 0 {
                conn += 1;
                let mut fifth = Client::new(conn, 99, "bob", "hunter2");
                let out = fifth.dial(&mut g, &mut l);
                assert!(up_addr(&out).is_none());
                assert_eq!(
                    frames(&out, proto::LCP).first().map(|f| f[0]),
                    Some(code::TERMINATE_REQUEST)
                );
                fifth.gre(&mut g, &mut l, proto::LCP, &[6, 2, 0, 4]);
                assert_eq!(l.downs.last(), Some(&EndReason::PoolExhausted));
                l.apply(&g.handle(Event::ControlClosed { conn }));
                assert_eq!(l.routes.len(), 4);
            }
            // Half leave cleanly, half vanish (TCP gone without CCRQ).
            for (i, c) in clients.iter().enumerate() {
                if i % 2 == 0 {
                    c.hang_up(&mut g, &mut l);
                } else {
                    l.apply(&g.handle(Event::ControlClosed { conn: c.conn }));
                }
            }
        }
        assert_eq!(l.ups, 40);
        clean(&g, &l);
    }

    #[test]
    fn wrong_password_and_static_addresses() {
        let mut g = gateway("10.99.0.10-10.99.0.13");
        let mut l = Ledger::default();
        let mut c = Client::new(1, 7, "alice", "nope");
        let out = c.dial(&mut g, &mut l);
        assert!(up_addr(&out).is_none());
        // The harness answers the challenge once (wrongly) and not the E=691 retry: the retry
        // times out, LCP terminates, and the call ends with nothing left behind.
        for _ in 0..40 {
            l.apply(&g.handle(Event::Timer(TimerKey::Link(1, LinkTimer::Auth))));
            l.apply(&g.handle(Event::Timer(TimerKey::Link(1, LinkTimer::Lcp))));
        }
        assert_eq!(l.downs.len(), 1, "{:?}", l.downs);
        l.apply(&g.handle(Event::ControlClosed { conn: 1 }));
        clean(&g, &l);

        let mut carol = Client::new(2, 8, "carol", "pw");
        assert_eq!(
            up_addr(&carol.dial(&mut g, &mut l)),
            Some(Ipv4Addr::new(10, 99, 9, 9))
        );
        carol.hang_up(&mut g, &mut l);
        clean(&g, &l);
    }

    /// A control connection from `peer` with SCCRQ done; returns what the gateway said.
    fn connect(g: &mut Gateway, l: &mut Ledger, conn: ConnId, peer: Ipv4Addr) -> Vec<Command> {
        let mut out = g.handle(Event::Accepted {
            conn,
            local: LOCAL,
            peer,
        });
        let sccrq = control(StartControlConnectionRequest {
            protocol_version: PROTOCOL_VERSION,
            ..Default::default()
        });
        out.extend(g.handle(Event::ControlBytes {
            conn,
            bytes: &sccrq,
        }));
        l.apply(&out);
        out
    }

    fn ocrq(g: &mut Gateway, l: &mut Ledger, conn: ConnId, call_id: u16) -> OutgoingCallReply {
        let out = g.handle(Event::ControlBytes {
            conn,
            bytes: &control(OutgoingCallRequest {
                call_id,
                ..Default::default()
            }),
        });
        l.apply(&out);
        out.iter()
            .find_map(|c| match c {
                Command::SendControl { bytes, .. } => match ControlMessage::parse(bytes) {
                    Ok(ControlMessage::OutgoingCallReply(r)) => Some(r),
                    _ => None,
                },
                _ => None,
            })
            .expect("an OCRP")
    }

    fn refusals(out: &[Command]) -> Vec<Refusal> {
        out.iter()
            .filter_map(|c| match c {
                Command::Refused { reason, .. } => Some(*reason),
                _ => None,
            })
            .collect()
    }

    #[test]
    fn one_source_is_held_to_its_limits_and_others_are_still_served() {
        let mut g = gateway("10.99.0.10-10.99.0.250");
        g.config.limits = admission::Limits {
            max_connections_per_source: 4,
            max_calls_per_connection: 1,
            max_unauthenticated: 100,
            max_unauthenticated_per_source: 3,
            ..admission::Limits::default()
        };
        let mut l = Ledger::default();
        let hostile = Ipv4Addr::new(198, 51, 100, 66);
        // A second call on one connection is refused with "general error, no resource".
        connect(&mut g, &mut l, 1, hostile);
        assert_eq!(
            ocrq(&mut g, &mut l, 1, 10).result_code,
            pptp::result::OCRP_CONNECTED
        );
        let r = ocrq(&mut g, &mut l, 1, 11);
        assert_eq!(
            (r.result_code, r.error_code, r.peer_call_id),
            (
                pptp::result::OCRP_GENERAL_ERROR,
                pptp::error_code::NO_RESOURCE,
                11
            )
        );
        // Connections 2 and 3 get one call each; the 4th connection's call is over the
        // unauthenticated-per-source limit; a 5th connection is closed at once.
        for conn in 2..=4 {
            connect(&mut g, &mut l, conn, hostile);
        }
        assert_eq!(
            ocrq(&mut g, &mut l, 2, 20).result_code,
            pptp::result::OCRP_CONNECTED
        );
        assert_eq!(
            ocrq(&mut g, &mut l, 3, 30).result_code,
            pptp::result::OCRP_CONNECTED
        );
        let out = g.handle(Event::ControlBytes {
            conn: 4,
            bytes: &control(OutgoingCallRequest {
                call_id: 40,
                ..Default::default()
            }),
        });
        l.apply(&out);
        assert_eq!(refusals(&out), vec![Refusal::UnauthenticatedPerSource]);
        let out = g.handle(Event::Accepted {
            conn: 5,
            local: LOCAL,
            peer: hostile,
        });
        assert_eq!(refusals(&out), vec![Refusal::ConnectionsPerSource]);
        assert!(out.contains(&Command::CloseControl { conn: 5 }));
        assert_eq!(g.stats.refused["calls_per_connection"], 1);
        // Meanwhile another source dials and comes up.
        let mut c = Client::new(9, 9, "alice", "s3cret");
        assert!(up_addr(&c.dial(&mut g, &mut l)).is_some());
        c.hang_up(&mut g, &mut l);
        // The hostile calls never authenticate: the negotiation deadline ends them, and their
        // places are free again.
        for sid in 1..=3 {
            l.apply(&g.handle(Event::Timer(TimerKey::Negotiation(sid))));
        }
        assert_eq!(
            l.downs
                .iter()
                .filter(|d| **d == EndReason::NegotiationTimeout)
                .count(),
            3
        );
        assert_eq!(
            ocrq(&mut g, &mut l, 4, 41).result_code,
            pptp::result::OCRP_CONNECTED
        );
        for conn in 1..=4 {
            l.apply(&g.handle(Event::ControlClosed { conn }));
        }
        clean(&g, &l);
        assert_eq!((g.ledger.unauthenticated(), g.ledger.sources()), (0, 0));
    }

    #[test]
    fn a_full_call_id_space_is_refused_not_searched_for_ever() {
        let mut g = gateway("10.99.0.10-10.99.0.250");
        g.config.limits = admission::Limits {
            max_connections_per_source: 0,
            max_calls_per_connection: u32::MAX,
            max_unauthenticated: u32::MAX,
            max_unauthenticated_per_source: u32::MAX,
            ..admission::Limits::default()
        };
        let mut l = Ledger::default();
        let peer = Ipv4Addr::new(198, 51, 100, 66);
        connect(&mut g, &mut l, 1, peer);
        // 65,535 call IDs per address pair (0 is never one).
        let mut connected = 0u32;
        let mut first_refusal = None;
        for i in 0..70_000u32 {
            let out = g.handle(Event::ControlBytes {
                conn: 1,
                bytes: &control(OutgoingCallRequest {
                    call_id: i as u16,
                    ..Default::default()
                }),
            });
            match refusals(&out).first() {
                None if i < 65_536 => connected += 1,
                // Past 65,536 the client's own call IDs repeat: duplicates are ignored.
                None => assert!(
                    !out.iter().any(|c| matches!(c, Command::SendControl { .. })),
                    "{out:?}"
                ),
                Some(r) => {
                    assert_eq!(*r, Refusal::CallIdsExhausted);
                    first_refusal.get_or_insert(i);
                }
            }
        }
        assert_eq!(connected, 65_535);
        assert_eq!(first_refusal, Some(65_535));
        // The unauthenticated count was given back for every refused call.
        assert_eq!(g.ledger.unauthenticated(), connected);
        // Another client address has its own call IDs.
        connect(&mut g, &mut l, 2, Ipv4Addr::new(198, 51, 100, 67));
        assert_eq!(
            ocrq(&mut g, &mut l, 2, 7).result_code,
            pptp::result::OCRP_CONNECTED
        );
    }

    /// RFC 2637 answers to malformed messages (`Connection::malformed`), through the framer:
    /// each control type made wrong twice (a length that is not its size: Bad-Format; a
    /// non-zero reserved header field: Bad-Value).
    #[test]
    fn malformed_control_messages_get_the_tables_answer() {
        use pptp::{ControlType, error_code, result};
        #[derive(Debug, PartialEq)]
        enum Answer {
            Reply(ControlType, u8, u8),
            StopAndStay,
            Close,
        }
        let bodies = |code: u16| -> Vec<u8> {
            let size = ControlType::from_code(code).map_or(16, |k| k.size());
            let mut b = vec![0u8; size];
            b[..2].copy_from_slice(&(size as u16).to_be_bytes());
            b[2..4].copy_from_slice(&1u16.to_be_bytes());
            b[4..8].copy_from_slice(&pptp::MAGIC_COOKIE.to_be_bytes());
            b[8..10].copy_from_slice(&code.to_be_bytes());
            b[12..14].copy_from_slice(&0x4242u16.to_be_bytes());
            b
        };
        for code in [
            0u16, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15, 16, 255,
        ] {
            let known = ControlType::from_code(code).is_some();
            for bad_value in [false, true] {
                let mut bytes = bodies(code);
                if bad_value {
                    bytes[11] = 1;
                } else if known {
                    // Four bytes more than the type's size (four fewer for the 220-byte ICRQ).
                    let n = if bytes.len() == 220 {
                        216
                    } else {
                        bytes.len() + 4
                    };
                    bytes.resize(n, 0);
                    bytes[..2].copy_from_slice(&(n as u16).to_be_bytes());
                } else {
                    continue;
                }
                let e = if bad_value || !known {
                    error_code::BAD_VALUE
                } else {
                    error_code::BAD_FORMAT
                };
                let expected = match code {
                    1 => Answer::Reply(
                        ControlType::StartControlConnectionReply,
                        result::SCCRP_GENERAL_ERROR,
                        e,
                    ),
                    3 => Answer::Close,
                    5 => Answer::Reply(ControlType::EchoReply, result::ECHO_GENERAL_ERROR, e),
                    7 => Answer::Reply(
                        ControlType::OutgoingCallReply,
                        result::OCRP_GENERAL_ERROR,
                        e,
                    ),
                    9 => Answer::Reply(
                        ControlType::IncomingCallReply,
                        result::ICRP_GENERAL_ERROR,
                        e,
                    ),
                    12 => Answer::Reply(
                        ControlType::CallDisconnectNotify,
                        result::CDN_GENERAL_ERROR,
                        e,
                    ),
                    _ => Answer::StopAndStay,
                };
                let mut g = gateway("10.99.0.10-10.99.0.13");
                let mut l = Ledger::default();
                connect(&mut g, &mut l, 1, Ipv4Addr::new(198, 51, 100, 7));
                let out = g.handle(Event::ControlBytes {
                    conn: 1,
                    bytes: &bytes,
                });
                let sent: Vec<ControlMessage> = out
                    .iter()
                    .filter_map(|c| match c {
                        Command::SendControl { bytes, .. } => ControlMessage::parse(bytes).ok(),
                        _ => None,
                    })
                    .collect();
                let closed = out
                    .iter()
                    .any(|c| matches!(c, Command::CloseControl { .. }));
                let got = match (sent.as_slice(), closed) {
                    ([ControlMessage::StopControlConnectionRequest(rq)], false) => {
                        assert_eq!(rq.reason, pptp::stop_reason::NONE);
                        Answer::StopAndStay
                    }
                    ([ControlMessage::StopControlConnectionReply(rp)], true) => {
                        assert_eq!(
                            (rp.result_code, rp.error_code),
                            (result::STOPCCRP_GENERAL_ERROR, e)
                        );
                        Answer::Close
                    }
                    ([m], false) => {
                        let (r, err, echoed) = match m {
                            ControlMessage::StartControlConnectionReply(m) => {
                                (m.result_code, m.error_code, 0x4242)
                            }
                            ControlMessage::EchoReply(m) => {
                                (m.result_code, m.error_code, (m.identifier >> 16) as u16)
                            }
                            ControlMessage::OutgoingCallReply(m) => {
                                (m.result_code, m.error_code, m.peer_call_id)
                            }
                            ControlMessage::IncomingCallReply(m) => {
                                (m.result_code, m.error_code, m.peer_call_id)
                            }
                            ControlMessage::CallDisconnectNotify(m) => {
                                (m.result_code, m.error_code, 0x4242)
                            }
                            other => panic!("type {code}: unexpected {other:?}"),
                        };
                        assert_eq!(echoed, 0x4242, "type {code}: the answer names the request");
                        Answer::Reply(m.control_type(), r, err)
                    }
                    other => panic!("type {code} (bad value {bad_value}): {other:?}"),
                };
                assert_eq!(got, expected, "type {code}, bad value {bad_value}");
                assert_eq!(g.stats.control_malformed, 1);
            }
        }
    }

    /// Dials `conn` up and returns the last step's commands and the journal's record of it.
    fn dial_up(
        g: &mut Gateway,
        l: &mut Ledger,
        conn: ConnId,
    ) -> (Vec<Command>, Option<SessionRecord>) {
        let mut c = Client::new(conn, conn as u8, "alice", "s3cret");
        let out = c.dial(g, l);
        let record = out.iter().find_map(|c| match c {
            Command::SessionUp { record, .. } => record.as_deref().cloned(),
            _ => None,
        });
        (out, record)
    }

    #[test]
    fn a_restored_session_answers_as_before_and_ends_cleanly() {
        let mut old = gateway("10.99.0.10-10.99.0.13");
        let mut l = Ledger::default();
        let (cmds, record) = dial_up(&mut old, &mut l, 7);
        let addr = up_addr(&cmds).expect("up");
        let record = record.expect("an up session is journaled");
        assert_eq!((record.conn, record.addr), (7, Some(addr)));

        // Another process: a fresh core takes the record back.
        let mut new = gateway("10.99.0.10-10.99.0.13");
        let mut l2 = Ledger::default();
        let (out, refused) = new.restore(vec![record.clone()], &BTreeMap::new());
        assert!(refused.is_empty());
        l2.apply(&out);
        assert_eq!(new.session_count(), 1);
        assert_eq!(new.sessions()[0].state, "up");
        assert!(new.pools.is_leased(addr));
        assert_eq!(l2.sessions.values().next().copied(), Some(record.map()));
        // Nothing goes to the client: the takeover is invisible to it.
        assert!(
            !out.iter()
                .any(|c| matches!(c, Command::SendPpp { .. } | Command::SendControl { .. }))
        );
        // Keepalives run again.
        assert!(
            out.iter()
                .any(|c| matches!(c, Command::SetTimer(TimerKey::Link(_, LinkTimer::Echo), _)))
        );
        // An LCP Echo-Request from the client is answered with the same magic number.
        let echo = ppp(proto::LCP, &[code::ECHO_REQUEST, 9, 0, 8, 1, 2, 3, 4]);
        let answer = new.handle(Event::Gre {
            local: record.local,
            peer: record.peer,
            call_id: record.call_id,
            payload: &echo,
        });
        let replies = frames(&answer, proto::LCP);
        assert_eq!(replies.len(), 1);
        assert_eq!(replies[0][..2], [code::ECHO_REPLY, 9]);
        assert_eq!(replies[0][4..8], record.link.magic.to_be_bytes());
        // A new call gets another slot and address.
        let mut other = Client::new(8, 8, "bob", "hunter2");
        let up = other.dial(&mut new, &mut l2);
        assert_ne!(up_addr(&up), Some(addr));
        assert_eq!(
            new.sessions()
                .iter()
                .map(|v| v.slot)
                .collect::<BTreeSet<_>>()
                .len(),
            2
        );

        // The client hangs up: everything the restored session held is released.
        l2.apply(&new.handle(Event::ControlClosed { conn: 7 }));
        l2.apply(&new.handle(Event::ControlClosed { conn: 8 }));
        clean(&new, &l2);
    }

    #[test]
    fn a_duplicate_record_is_refused_not_half_adopted() {
        let mut old = gateway("10.99.0.10-10.99.0.13");
        let mut l = Ledger::default();
        let record = dial_up(&mut old, &mut l, 3).1.expect("journaled");
        let mut twin = record.clone();
        twin.id += 100;
        twin.conn = 4;
        let mut new = gateway("10.99.0.10-10.99.0.13");
        let (_, refused) = new.restore(vec![record, twin], &BTreeMap::new());
        assert_eq!(refused.len(), 1);
        assert_eq!(new.session_count(), 1);
    }

    fn gateway6(prefixes: &str, policy: Ipv6Policy) -> Gateway {
        let mut g = gateway("10.99.0.10-10.99.0.20");
        g.config.link.ipv6 = policy;
        g.set_pools6(
            Pools6::new(vec![crate::pool6::Pool6Config {
                name: "default".into(),
                prefixes: vec![prefixes.parse().unwrap()],
                length: 64,
                next: None,
            }])
            .unwrap(),
        );
        g
    }

    fn session_of(out: &[Command]) -> SessionId {
        out.iter()
            .find_map(|c| match c {
                Command::SessionUp { session, .. } => Some(*session),
                _ => None,
            })
            .expect("the session came up")
    }

    /// A Router Solicitation from `fe80::<iid>` to ff02::2, as Linux sends one on PPP.
    fn router_solicitation(iid: [u8; 8]) -> Vec<u8> {
        let mut src = [0u8; 16];
        src[0] = 0xfe;
        src[1] = 0x80;
        src[8..].copy_from_slice(&iid);
        let src = Ipv6Addr::from(src);
        let mut icmp = vec![133, 0, 0, 0, 0, 0, 0, 0];
        let c = crate::wire::icmpv6::checksum(&src, &crate::wire::icmpv6::ALL_ROUTERS, &icmp);
        icmp[2..4].copy_from_slice(&c.to_be_bytes());
        let mut p = vec![0x60, 0, 0, 0, 0, 8, 58, 255];
        p.extend_from_slice(&src.octets());
        p.extend_from_slice(&crate::wire::icmpv6::ALL_ROUTERS.octets());
        p.extend_from_slice(&icmp);
        p
    }

    const CLIENT_IID: [u8; 8] = [0x3c, 0x11, 0x22, 0x33, 0x44, 0x55, 0x66, 0x77];

    impl Client {
        /// Runs IPV6CP on an up session as pppd `+ipv6` does; returns every command.
        fn ipv6cp(&self, g: &mut Gateway, l: &mut Ledger, sid: SessionId) -> Vec<Command> {
            let req = [[1u8, 1, 0, 14, 1, 10].as_slice(), &CLIENT_IID].concat();
            let mut out = self.gre(g, l, proto::IPV6CP, &req);
            assert_eq!(frames(&out, proto::IPV6CP)[0][0], code::CONFIGURE_ACK);
            // Our request again (the restart timer), acked by the client.
            let again = g.handle(Event::Timer(TimerKey::Link(sid, LinkTimer::Ipv6cp)));
            l.apply(&again);
            let mut ack = frames(&again, proto::IPV6CP).remove(0);
            assert_eq!(ack[0], code::CONFIGURE_REQUEST);
            ack[0] = code::CONFIGURE_ACK;
            out.extend(again);
            out.extend(self.gre(g, l, proto::IPV6CP, &ack));
            out
        }
    }

    fn advert_prefix(ra: &[u8]) -> Ipv6Addr {
        assert_eq!((ra[6], ra[7], ra[40]), (58, 255, 134), "an RA");
        assert_eq!(&ra[56..60], &[3, 4, 64, 0xc0], "a SLAAC prefix option");
        Ipv6Addr::from(<[u8; 16]>::try_from(&ra[72..88]).unwrap())
    }

    #[test]
    fn ipv6_comes_up_routed_and_advertised_and_goes_away_cleanly() {
        let mut g = gateway6("2001:db8:0:10::/63", Ipv6Policy::Prefer);
        let mut l = Ledger::default();
        let mut c = Client::new(1, 7, "alice", "s3cret");
        let sid = session_of(&c.dial(&mut g, &mut l));
        // A solicitation before IPV6CP opened is nobody's.
        c.gre(
            &mut g,
            &mut l,
            proto::IPV6,
            &router_solicitation(CLIENT_IID),
        );
        assert!(l.adverts.is_empty());
        let out = c.ipv6cp(&mut g, &mut l, sid);
        let prefix: Ipv6Addr = "2001:db8:0:10::".parse().unwrap();
        assert_eq!(
            l.routes6,
            BTreeSet::from([Prefix6 {
                network: prefix,
                len: 64
            }])
        );
        assert!(
            out.iter()
                .any(|c| matches!(c, Command::Rejournal(r) if r.prefix6.is_some()))
        );
        assert_eq!(l.adverts.len(), 1, "advertised at once");
        assert_eq!(advert_prefix(&l.adverts[0]), prefix);
        let view = &g.sessions()[0];
        assert_eq!(view.prefix6, Some(prefix));

        // Solicited: answered, then not again within 3 s, then again.
        c.gre(
            &mut g,
            &mut l,
            proto::IPV6,
            &router_solicitation(CLIENT_IID),
        );
        c.gre(
            &mut g,
            &mut l,
            proto::IPV6,
            &router_solicitation(CLIENT_IID),
        );
        assert_eq!(l.adverts.len(), 2);
        l.apply(&g.handle(Event::Timer(TimerKey::RouterAdvertQuiet(sid))));
        c.gre(
            &mut g,
            &mut l,
            proto::IPV6,
            &router_solicitation(CLIENT_IID),
        );
        assert_eq!(l.adverts.len(), 3);
        // A corrupt solicitation is dropped.
        let mut bad = router_solicitation(CLIENT_IID);
        bad[42] ^= 0xff;
        l.apply(&g.handle(Event::Timer(TimerKey::RouterAdvertQuiet(sid))));
        c.gre(&mut g, &mut l, proto::IPV6, &bad);
        assert_eq!(l.adverts.len(), 3);
        // Unsolicited, and re-armed.
        let out = g.handle(Event::Timer(TimerKey::RouterAdvert(sid)));
        l.apply(&out);
        assert_eq!(l.adverts.len(), 4);
        assert!(out.contains(&Command::SetTimer(
            TimerKey::RouterAdvert(sid),
            g.config.ipv6.ra_interval
        )));

        c.hang_up(&mut g, &mut l);
        clean(&g, &l);
    }

    /// A DHCPv6 message from the client's link-local address to ff02::1:2, as dhclient sends.
    fn dhcpv6(kind: u8, server: Option<&[u8]>, iaid: u32, held: Option<Ipv6Addr>) -> Vec<u8> {
        use crate::wire::dhcpv6 as d;
        let mut ia = iaid.to_be_bytes().to_vec();
        ia.extend_from_slice(&[0; 8]);
        if let Some(p) = held {
            ia.extend_from_slice(&[0, 26, 0, 25, 0, 0, 0, 0, 0, 0, 0, 0, 64]);
            ia.extend_from_slice(&p.octets());
        }
        let mut m = d::Reply::new(kind, [0xab, 0xcd, kind])
            .option(d::OPT_CLIENTID, &[0, 3, 0, 1, 2, 3, 4, 5, 6, 7])
            .option(d::OPT_ORO, &[0, 23]);
        if let Some(s) = server {
            m = m.option(d::OPT_SERVERID, s);
        }
        let msg = m.option(d::OPT_IA_PD, &ia).into_bytes();
        let mut src = [0u8; 16];
        src[0] = 0xfe;
        src[1] = 0x80;
        src[8..].copy_from_slice(&CLIENT_IID);
        let src = Ipv6Addr::from(src);
        let mut udp = vec![2, 0x22, 2, 0x23];
        udp.extend_from_slice(&((8 + msg.len()) as u16).to_be_bytes());
        udp.extend_from_slice(&[0, 0]);
        udp.extend_from_slice(&msg);
        let c = crate::wire::icmpv6::upper_layer_checksum(&src, &d::ALL_SERVERS, 17, &udp);
        udp[6..8].copy_from_slice(&c.to_be_bytes());
        let mut p = vec![0x60, 0, 0, 0];
        p.extend_from_slice(&(udp.len() as u16).to_be_bytes());
        p.extend_from_slice(&[17, 1]);
        p.extend_from_slice(&src.octets());
        p.extend_from_slice(&d::ALL_SERVERS.octets());
        p.extend_from_slice(&udp);
        p
    }

    /// A DHCPv6 answer's type and the prefix its (first) IA_PD delegates.
    fn delegated_in(packet: &[u8]) -> (u8, Option<Prefix6>) {
        assert_eq!((packet[6], &packet[40..44]), (17, &[2, 0x23, 2, 0x22][..]));
        let msg = &packet[48..];
        let mut opts = &msg[4..];
        while opts.len() >= 4 {
            let (code, len) = (
                u16::from_be_bytes([opts[0], opts[1]]),
                usize::from(u16::from_be_bytes([opts[2], opts[3]])),
            );
            let v = &opts[4..4 + len];
            if code == 25 && v.len() >= 16 + 25 && v[12..14] == [0, 26] {
                let p = <[u8; 16]>::try_from(&v[16 + 9..16 + 25]).unwrap();
                let len = v[16 + 8];
                return (
                    msg[0],
                    Some(Prefix6 {
                        network: Ipv6Addr::from(p),
                        len,
                    }),
                );
            }
            opts = &opts[4 + len..];
        }
        (msg[0], None)
    }

    #[test]
    fn dhcpv6_delegates_a_prefix_routes_it_and_leaves_nothing_behind() {
        delegation_round_trip("2001:db8:1::/64", 64);
    }

    #[test]
    fn dhcpv6_delegates_a_shorter_prefix_to_a_cpe_router() {
        // A pool of one /60, handed to each round's client in turn.
        delegation_round_trip("2001:db8:1::/60", 60);
    }

    fn delegation_round_trip(pool: &str, length: u8) {
        let mut g = gateway("10.99.0.10-10.99.0.20");
        g.config.link.ipv6 = Ipv6Policy::Prefer;
        g.config.ipv6.delegated_pool = Some("pd".into());
        g.set_pools6(
            Pools6::new(vec![
                crate::pool6::Pool6Config {
                    name: "default".into(),
                    prefixes: vec!["2001:db8:0:10::/64".parse().unwrap()],
                    length: 64,
                    next: None,
                },
                crate::pool6::Pool6Config {
                    name: "pd".into(),
                    prefixes: vec![pool.parse().unwrap()],
                    length,
                    next: None,
                },
            ])
            .unwrap(),
        );
        let duid = g.config.ipv6.server_duid.clone();
        let link = Prefix6::slash64([0x20, 0x01, 0x0d, 0xb8, 0, 0, 0, 0x10]);
        let pd = Prefix6 {
            network: "2001:db8:1::".parse().unwrap(),
            len: length,
        };
        let mut l = Ledger::default();
        for round in 0..3 {
            let mut c = Client::new(round + 1, 7, "alice", "s3cret");
            let sid = session_of(&c.dial(&mut g, &mut l));
            // Before IPV6CP: not served.
            c.gre(&mut g, &mut l, proto::IPV6, &dhcpv6(1, None, 9, None));
            assert!(l.adverts.is_empty());
            c.ipv6cp(&mut g, &mut l, sid);
            l.adverts.clear();
            // Solicit → Advertise offering the /64, not yet routed.
            c.gre(&mut g, &mut l, proto::IPV6, &dhcpv6(1, None, 9, None));
            assert_eq!(delegated_in(&l.adverts[0]), (2, Some(pd)));
            assert_eq!(l.routes6, BTreeSet::from([link]));
            // A Request to another server, or garbage, is not answered.
            c.gre(
                &mut g,
                &mut l,
                proto::IPV6,
                &dhcpv6(3, Some(&[0, 4, 1, 2]), 9, None),
            );
            let mut bad = dhcpv6(3, Some(&duid), 9, None);
            bad[60] ^= 0x40;
            c.gre(&mut g, &mut l, proto::IPV6, &bad);
            assert_eq!(l.adverts.len(), 1);
            // Request → Reply: routed and a source the data path takes.
            let out = c.gre(
                &mut g,
                &mut l,
                proto::IPV6,
                &dhcpv6(3, Some(&duid), 9, None),
            );
            assert_eq!(delegated_in(&l.adverts[1]), (7, Some(pd)));
            assert_eq!(l.routes6, BTreeSet::from([link, pd]));
            assert!(l.clients6.contains_key(&pd.first8()));
            assert!(l.sessions.values().any(|s| s.delegated6_len == length));
            assert_eq!(g.sessions()[0].delegated6, Some(pd));
            assert!(out.iter().any(|c| matches!(c,
                Command::Rejournal(r) if r.delegated6 == Some((pd, 9)))));
            // Renew and Rebind: answered with the same binding, nothing projected twice.
            c.gre(
                &mut g,
                &mut l,
                proto::IPV6,
                &dhcpv6(5, Some(&duid), 9, Some(pd.network)),
            );
            c.gre(
                &mut g,
                &mut l,
                proto::IPV6,
                &dhcpv6(6, None, 9, Some(pd.network)),
            );
            assert_eq!(delegated_in(&l.adverts[3]), (7, Some(pd)));
            // Another IA of the same client gets none.
            c.gre(&mut g, &mut l, proto::IPV6, &dhcpv6(6, None, 10, None));
            assert_eq!(delegated_in(&l.adverts[4]), (7, None));
            if round == 1 {
                // Release: unrouted at once, then the session ends.
                c.gre(
                    &mut g,
                    &mut l,
                    proto::IPV6,
                    &dhcpv6(8, Some(&duid), 9, Some(pd.network)),
                );
                assert_eq!(l.routes6, BTreeSet::from([link]));
                assert_eq!(g.sessions()[0].delegated6, None);
            }
            c.hang_up(&mut g, &mut l);
            clean(&g, &l);
            l.adverts.clear();
        }
        assert!(g.stats.dhcpv6_replies >= 15);
    }

    #[test]
    fn a_flood_of_dhcpv6_gets_a_bounded_number_of_answers() {
        let mut g = gateway6("2001:db8:0:10::/64", Ipv6Policy::Prefer);
        let mut l = Ledger::default();
        let mut c = Client::new(1, 7, "alice", "s3cret");
        let sid = session_of(&c.dial(&mut g, &mut l));
        c.ipv6cp(&mut g, &mut l, sid);
        l.adverts.clear();
        let ask = dhcpv6(crate::wire::dhcpv6::INFORMATION_REQUEST, None, 9, None);
        for _ in 0..100 {
            c.gre(&mut g, &mut l, proto::IPV6, &ask);
        }
        assert_eq!(l.adverts.len(), dhcpv6::ANSWERS_PER_INTERVAL as usize);
        // The next periodic advertisement opens a new budget.
        l.apply(&g.handle(Event::Timer(TimerKey::RouterAdvert(sid))));
        l.adverts.clear();
        c.gre(&mut g, &mut l, proto::IPV6, &ask);
        assert_eq!(l.adverts.len(), 1);
        assert_eq!(delegated_in(&l.adverts[0]).0, crate::wire::dhcpv6::REPLY);
        c.hang_up(&mut g, &mut l);
        clean(&g, &l);
    }

    #[test]
    fn recycled_prefixes_leave_nothing_stale() {
        // Two /64s for three clients in turn, 50 times over: every prefix is reused many times,
        // each is routed to exactly its current session, and nothing is left at the end.
        let mut g = gateway6("2001:db8:0:20::/63", Ipv6Policy::Prefer);
        let mut l = Ledger::default();
        let mut seen = BTreeSet::new();
        for round in 0..50u64 {
            let mut live = Vec::new();
            for i in 0..2u64 {
                let conn = round * 10 + i + 1;
                let mut c = Client::new(conn, (i + 1) as u8, "alice", "s3cret");
                let sid = session_of(&c.dial(&mut g, &mut l));
                c.ipv6cp(&mut g, &mut l, sid);
                live.push(c);
            }
            // A third finds the pool empty and carries on IPv4-only (`prefer`).
            let mut third = Client::new(round * 10 + 9, 9, "bob", "hunter2");
            let sid = session_of(&third.dial(&mut g, &mut l));
            third.ipv6cp(&mut g, &mut l, sid);
            assert_eq!(l.routes6.len(), 2, "round {round}");
            assert_eq!(l.clients6.len(), 2);
            assert_eq!(
                g.sessions().iter().filter(|v| v.prefix6.is_some()).count(),
                2
            );
            seen.extend(l.routes6.iter().copied());
            live.push(third);
            // Hang up in a different order each round.
            if round % 2 == 1 {
                live.reverse();
            }
            for c in &live {
                c.hang_up(&mut g, &mut l);
            }
            clean(&g, &l);
        }
        assert_eq!(seen.len(), 2);
    }

    #[test]
    fn ipv6_required_ends_a_client_that_rejects_ipv6cp() {
        let mut g = gateway6("2001:db8:0:30::/64", Ipv6Policy::Require);
        let mut l = Ledger::default();
        let mut c = Client::new(1, 7, "alice", "s3cret");
        let sid = session_of(&c.dial(&mut g, &mut l));
        // pppd without `+ipv6`: LCP Protocol-Reject of IPV6CP (80 57 and the rejected packet).
        let req = g.handle(Event::Timer(TimerKey::Link(sid, LinkTimer::Ipv6cp)));
        l.apply(&req);
        let rejected = frames(&req, proto::IPV6CP).remove(0);
        let mut body = vec![0x80, 0x57];
        body.extend_from_slice(&rejected);
        let prej = CpPacket {
            code: code::PROTOCOL_REJECT,
            identifier: 9,
            data: &body,
        }
        .to_bytes();
        let out = c.gre(&mut g, &mut l, proto::LCP, &prej);
        assert_eq!(frames(&out, proto::LCP)[0][0], code::TERMINATE_REQUEST);
        // The same with `prefer`: the session stays, IPv4-only.
        let mut g = gateway6("2001:db8:0:30::/64", Ipv6Policy::Prefer);
        let mut l = Ledger::default();
        let mut c = Client::new(1, 7, "alice", "s3cret");
        let sid = session_of(&c.dial(&mut g, &mut l));
        let req = g.handle(Event::Timer(TimerKey::Link(sid, LinkTimer::Ipv6cp)));
        l.apply(&req);
        let out = c.gre(&mut g, &mut l, proto::LCP, &prej);
        assert!(frames(&out, proto::LCP).is_empty(), "{out:?}");
        assert_eq!(g.sessions()[0].state, "up");
        c.hang_up(&mut g, &mut l);
        clean(&g, &l);
    }

    #[test]
    fn a_restored_session_keeps_its_ipv6_prefix() {
        let prefix: Ipv6Addr = "2001:db8:0:40::".parse().unwrap();
        let mut old = gateway6("2001:db8:0:40::/63", Ipv6Policy::Prefer);
        let mut l = Ledger::default();
        let mut c = Client::new(7, 7, "alice", "s3cret");
        let sid = session_of(&c.dial(&mut old, &mut l));
        let out = c.ipv6cp(&mut old, &mut l, sid);
        let record = out
            .iter()
            .find_map(|c| match c {
                Command::Rejournal(r) => Some((**r).clone()),
                _ => None,
            })
            .expect("journaled again once IPv6 is up");
        assert_eq!(record.prefix6.map(crate::pool6::network), Some(prefix));
        assert_eq!(record.link.ipv6.map(|(_, peer)| peer), Some(CLIENT_IID));
        // Through the journal's encoding.
        let record: SessionRecord =
            serde_json::from_str(&serde_json::to_string(&record).unwrap()).unwrap();

        let mut new = gateway6("2001:db8:0:40::/63", Ipv6Policy::Prefer);
        let mut l2 = Ledger::default();
        let (out, refused) = new.restore(vec![record.clone()], &BTreeMap::new());
        assert!(refused.is_empty());
        l2.apply(&out);
        assert_eq!(
            l2.routes6,
            BTreeSet::from([Prefix6 {
                network: prefix,
                len: 64
            }])
        );
        assert_eq!(l2.adverts.len(), 1, "advertised again");
        assert_eq!(advert_prefix(&l2.adverts[0]), prefix);
        assert_eq!(new.sessions()[0].prefix6, Some(prefix));
        // The carried prefix is not handed out again.
        let mut other = Client::new(8, 8, "bob", "hunter2");
        let sid2 = session_of(&other.dial(&mut new, &mut l2));
        other.ipv6cp(&mut new, &mut l2, sid2);
        assert_eq!(l2.routes6.len(), 2);
        // A record written before IPv6 existed (no such fields) still reads, without IPv6.
        let mut v = serde_json::to_value(&record).unwrap();
        v.as_object_mut().unwrap().remove("prefix6");
        v["link"].as_object_mut().unwrap().remove("ipv6");
        let older: SessionRecord = serde_json::from_value(v).unwrap();
        assert_eq!((older.prefix6, older.link.ipv6), (None, None));

        l2.apply(&new.handle(Event::ControlClosed { conn: 7 }));
        l2.apply(&new.handle(Event::ControlClosed { conn: 8 }));
        clean(&new, &l2);
    }

    /// A gateway with IPv6 from `prefixes`, its ledger, and alice to dial it.
    fn alice6(prefixes: &str, policy: Ipv6Policy) -> (Gateway, Ledger, Client) {
        (
            gateway6(prefixes, policy),
            Ledger::default(),
            Client::new(1, 7, "alice", "s3cret"),
        )
    }

    impl Client {
        /// Authenticates, then Protocol-Rejects our IPCP as pppd `noip` does; returns the
        /// commands of authentication (our first IPV6CP request among them).
        fn noip(&mut self, g: &mut Gateway, l: &mut Ledger) -> Vec<Command> {
            let out = self.authenticate(g, l);
            let our_ipcp = frames(&out, proto::IPCP).remove(0);
            self.gre(g, l, proto::LCP, &protocol_reject(0x8021, &our_ipcp));
            out
        }
    }

    /// The LCP Protocol-Reject pppd sends for a protocol it does not run (`noip`: IPCP).
    fn protocol_reject(protocol: u16, rejected: &[u8]) -> Vec<u8> {
        let body = [protocol.to_be_bytes().as_slice(), rejected].concat();
        CpPacket {
            code: code::PROTOCOL_REJECT,
            identifier: 9,
            data: &body,
        }
        .to_bytes()
    }

    #[test]
    fn an_ipv6_only_client_comes_up_without_an_ipv4_address() {
        let prefix: Ipv6Addr = "2001:db8:0:50::".parse().unwrap();
        let (mut g, mut l, mut c) = alice6("2001:db8:0:50::/64", Ipv6Policy::Prefer);
        let out = c.authenticate(&mut g, &mut l);
        let our_ipcp = frames(&out, proto::IPCP).remove(0);
        let mut ack = frames(&out, proto::IPV6CP).remove(0);
        // pppd `noip +ipv6`: IPCP is Protocol-Rejected; the link waits for IPV6CP.
        let out = c.gre(
            &mut g,
            &mut l,
            proto::LCP,
            &protocol_reject(0x8021, &our_ipcp),
        );
        assert!(frames(&out, proto::LCP).is_empty(), "{out:?}");
        assert_eq!(l.ups, 0);
        let sid = g.sessions()[0].id;
        // The client acks our IPV6CP request, then asks for its identifier: our Ack of it opens
        // IPV6CP, and with it the session.
        ack[0] = code::CONFIGURE_ACK;
        c.gre(&mut g, &mut l, proto::IPV6CP, &ack);
        assert_eq!(l.ups, 0);
        let req = [[1u8, 1, 0, 14, 1, 10].as_slice(), &CLIENT_IID].concat();
        let out = c.gre(&mut g, &mut l, proto::IPV6CP, &req);
        assert_eq!(frames(&out, proto::IPV6CP)[0][0], code::CONFIGURE_ACK);
        let (addr, record) = out
            .iter()
            .find_map(|c| match c {
                Command::SessionUp { addr, record, .. } => Some((*addr, record.clone())),
                _ => None,
            })
            .expect("up once IPV6CP opened");
        assert_eq!(addr, None);
        let prefix6 = accounting_starts(&out)[0];
        assert_eq!(prefix6.map(crate::pool6::network), Some(prefix));
        // The address IPCP offered is back in its pool; nothing IPv4 is routed or programmed.
        assert_eq!(g.leased(), 0);
        assert!(l.routes.is_empty());
        let programmed = l.sessions.values().next().unwrap();
        assert_eq!((programmed.state, programmed.assigned), (STATE_UP, [0; 4]));
        assert_eq!(
            l.routes6,
            BTreeSet::from([Prefix6 {
                network: prefix,
                len: 64
            }])
        );
        assert_eq!(l.adverts.len(), 1);
        // Our Ack leaves after the session is programmed up (the client sends at once).
        let last_program = out
            .iter()
            .rposition(|c| matches!(c, Command::ProgramSession(_)))
            .unwrap();
        let last_frame = out
            .iter()
            .rposition(|c| matches!(c, Command::SendPpp { .. }))
            .unwrap();
        assert!(last_frame > last_program, "{out:?}");
        let view = &g.sessions()[0];
        assert_eq!((view.state, view.assigned), ("up", None));
        // Keepalives run without IPCP.
        assert!(out.iter().any(
            |c| matches!(c, Command::SetTimer(TimerKey::Link(s, LinkTimer::Echo), _) if *s == sid)
        ));
        let record = *record.expect("journaled");
        assert_eq!((record.addr, record.link.ipcp.as_ref()), (None, None));
        // Journaled again with its prefix routed.
        let record = out
            .iter()
            .rev()
            .find_map(|c| match c {
                Command::Rejournal(r) => Some((**r).clone()),
                _ => None,
            })
            .expect("rejournaled");
        assert_eq!(record.prefix6, prefix6);

        // Carried over to another process as it is.
        let record: SessionRecord =
            serde_json::from_str(&serde_json::to_string(&record).unwrap()).unwrap();
        let mut new = gateway6("2001:db8:0:50::/64", Ipv6Policy::Prefer);
        let mut l2 = Ledger::default();
        let (out, refused) = new.restore(vec![record], &BTreeMap::new());
        assert!(refused.is_empty());
        l2.apply(&out);
        assert!(l2.routes.is_empty());
        assert_eq!(l2.routes6.len(), 1);
        assert_eq!(new.leased(), 0);
        assert_eq!(new.sessions()[0].state, "up");
        l2.apply(&new.handle(Event::ControlClosed { conn: 1 }));
        clean(&new, &l2);

        c.hang_up(&mut g, &mut l);
        clean(&g, &l);
    }

    #[test]
    fn a_client_refusing_ipcp_ends_without_ipv6_or_with_ipv4_required() {
        for (ipv6, ipv4) in [
            (Ipv6Policy::Deny, crate::ppp::link::Ipv4Policy::Prefer),
            (Ipv6Policy::Prefer, crate::ppp::link::Ipv4Policy::Require),
        ] {
            let (mut g, mut l, mut c) = alice6("2001:db8:0:60::/64", ipv6);
            g.config.link.ipv4 = ipv4;
            let out = c.authenticate(&mut g, &mut l);
            let our_ipcp = frames(&out, proto::IPCP).remove(0);
            let out = c.gre(
                &mut g,
                &mut l,
                proto::LCP,
                &protocol_reject(0x8021, &our_ipcp),
            );
            assert_eq!(
                frames(&out, proto::LCP)[0][0],
                code::TERMINATE_REQUEST,
                "{ipv6:?} {ipv4:?}"
            );
            c.hang_up(&mut g, &mut l);
            clean(&g, &l);
        }
        // IPCP refused, then IPV6CP too: nothing is left to carry.
        let (mut g, mut l, mut c) = alice6("2001:db8:0:60::/64", Ipv6Policy::Prefer);
        let our_ipv6cp = frames(&c.noip(&mut g, &mut l), proto::IPV6CP).remove(0);
        let out = c.gre(
            &mut g,
            &mut l,
            proto::LCP,
            &protocol_reject(0x8057, &our_ipv6cp),
        );
        assert_eq!(frames(&out, proto::LCP)[0][0], code::TERMINATE_REQUEST);
        assert_eq!(l.ups, 0);
        c.hang_up(&mut g, &mut l);
        clean(&g, &l);
    }

    fn accounting_starts(out: &[Command]) -> Vec<Option<[u8; 8]>> {
        out.iter()
            .filter_map(|c| match c {
                Command::AccountingStart { prefix6, .. } => Some(*prefix6),
                _ => None,
            })
            .collect()
    }

    #[test]
    fn the_accounting_start_waits_for_ipv6_to_settle_and_no_longer() {
        let prefix = [0x20, 0x01, 0x0d, 0xb8, 0, 0, 0, 0x70];
        // Without IPv6: with the session.
        let mut g = gateway("10.99.0.10-10.99.0.20");
        let mut l = Ledger::default();
        let mut c = Client::new(1, 7, "alice", "s3cret");
        assert_eq!(accounting_starts(&c.dial(&mut g, &mut l)), vec![None]);
        c.hang_up(&mut g, &mut l);
        clean(&g, &l);

        // Dual-stack: IPv4 up first; the Start waits for IPV6CP and names the /64.
        let (mut g, mut l, mut c) = alice6("2001:db8:0:70::/64", Ipv6Policy::Prefer);
        let out = c.dial(&mut g, &mut l);
        let sid = session_of(&out);
        assert!(accounting_starts(&out).is_empty());
        assert!(out.contains(&Command::SetTimer(
            TimerKey::AccountingStart(sid),
            acct_start::WAIT
        )));
        let out = c.ipv6cp(&mut g, &mut l, sid);
        assert_eq!(accounting_starts(&out), vec![Some(prefix)]);
        assert!(out.contains(&Command::CancelTimer(TimerKey::AccountingStart(sid))));
        // Once only: the wait's end, IPv6 going and coming again start nothing more.
        let mut later = g.handle(Event::Timer(TimerKey::AccountingStart(sid)));
        l.apply(&later);
        let req = [[1u8, 2, 0, 14, 1, 10].as_slice(), &CLIENT_IID].concat();
        later.extend(c.gre(&mut g, &mut l, proto::IPV6CP, &req));
        assert!(accounting_starts(&later).is_empty());
        c.hang_up(&mut g, &mut l);
        clean(&g, &l);

        // A client without IPv6 (Protocol-Reject of IPV6CP): the Start goes then, without.
        let (mut g, mut l, mut c) = alice6("2001:db8:0:70::/64", Ipv6Policy::Prefer);
        let sid = session_of(&c.dial(&mut g, &mut l));
        let req = g.handle(Event::Timer(TimerKey::Link(sid, LinkTimer::Ipv6cp)));
        l.apply(&req);
        let rejected = frames(&req, proto::IPV6CP).remove(0);
        let out = c.gre(
            &mut g,
            &mut l,
            proto::LCP,
            &protocol_reject(0x8057, &rejected),
        );
        assert_eq!(accounting_starts(&out), vec![None]);
        c.hang_up(&mut g, &mut l);
        clean(&g, &l);

        // A client that lets IPV6CP hang: the wait ends it; IPv6 opening later starts nothing.
        let (mut g, mut l, mut c) = alice6("2001:db8:0:70::/64", Ipv6Policy::Prefer);
        let sid = session_of(&c.dial(&mut g, &mut l));
        let out = g.handle(Event::Timer(TimerKey::AccountingStart(sid)));
        l.apply(&out);
        assert_eq!(accounting_starts(&out), vec![None]);
        assert!(accounting_starts(&c.ipv6cp(&mut g, &mut l, sid)).is_empty());
        // Nor does a session ending before it ever starts (the shell sends Start and Stop).
        c.hang_up(&mut g, &mut l);
        clean(&g, &l);

        // IPv6-only: with the session, with its /64.
        let (mut g, mut l, mut c) = alice6("2001:db8:0:70::/64", Ipv6Policy::Prefer);
        c.noip(&mut g, &mut l);
        let sid = g.sessions()[0].id;
        let out = c.ipv6cp(&mut g, &mut l, sid);
        assert_eq!(up_addr(&out), None);
        assert_eq!(accounting_starts(&out), vec![Some(prefix)]);
        c.hang_up(&mut g, &mut l);
        clean(&g, &l);
    }
}
