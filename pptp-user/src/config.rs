//! The configuration file: one TOML document, documented field by field in
//! `config/pptpgw.toml`, which is also the built-in default.
//!
//! Parsing (serde + toml) rejects unknown fields and wrong types with the line and the key;
//! [`Config::validate`] then checks what types cannot say (pools, addresses, ranges), naming the
//! field as `section.key` (or `pool[name].key`).

use std::{
    net::{Ipv4Addr, SocketAddr, SocketAddrV4},
    path::{Path, PathBuf},
    time::Duration,
};

use serde::{Deserialize, Deserializer};

use crate::{
    pool::{Policy, PoolConfig, Pools, Range},
    wire::lcp::AuthProtocol,
};

/// The built-in default (the shipped example config, verbatim).
pub const DEFAULT_TOML: &str = include_str!("../../config/pptpgw.toml");

#[derive(Clone, Debug, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct Config {
    pub listen: Listen,
    pub interfaces: Interfaces,
    pub auth: Auth,
    pub ppp: Ppp,
    pub timers: Timers,
    pub pools: PoolSettings,
    pub pool: Vec<PoolEntry>,
    pub ipv6: Ipv6,
    pub pool6: Vec<Pool6Entry>,
    pub limits: Limits,
    pub forwarding: Forwarding,
    pub radius: Radius,
    pub api: Api,
    pub metrics: Metrics,
    pub log: Log,
    pub restart: Restart,
}

impl Default for Config {
    fn default() -> Self {
        Self {
            listen: Listen::default(),
            interfaces: Interfaces::default(),
            auth: Auth::default(),
            ppp: Ppp::default(),
            timers: Timers::default(),
            pools: PoolSettings::default(),
            pool: vec![PoolEntry {
                name: "default".into(),
                ranges: vec!["10.99.0.10-10.99.0.250".into()],
                next: None,
            }],
            ipv6: Ipv6::default(),
            pool6: Vec::new(),
            limits: Limits::default(),
            radius: Radius::default(),
            api: Api::default(),
            metrics: Metrics::default(),
            forwarding: Forwarding::default(),
            log: Log::default(),
            restart: Restart::default(),
        }
    }
}

/// Hitless restart: what outlives the controller process.
#[derive(Clone, Debug, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct Restart {
    /// Run the worker under a supervisor that holds every socket and restarts it (a crash drops
    /// no session; `pptpgw upgrade` swaps the binary under live sessions).
    pub supervise: bool,
    /// bpffs directory the data path is pinned under (one subdirectory per network namespace);
    /// empty: not pinned, the data path goes with the process.
    pub pin_dir: PathBuf,
    /// The session journal's directory (tmpfs); empty: the API socket's directory.
    pub state_dir: PathBuf,
}

impl Default for Restart {
    fn default() -> Self {
        Self {
            supervise: true,
            pin_dir: "/sys/fs/bpf/pptpgw".into(),
            state_dir: PathBuf::new(),
        }
    }
}

impl Restart {
    /// Where this gateway pins its data path: `pin_dir/net-<netns inode>`, so gateways in
    /// different network namespaces of one host (one bpffs) never adopt each other's.
    pub fn pin_dir_here(&self) -> Result<Option<PathBuf>, ConfigError> {
        if self.pin_dir.as_os_str().is_empty() {
            return Ok(None);
        }
        if !self.pin_dir.is_absolute() {
            return Err(ConfigError::new(
                "restart.pin_dir",
                format!("{}: must be an absolute path", self.pin_dir.display()),
            ));
        }
        use std::os::unix::fs::MetadataExt as _;
        let ino = std::fs::metadata("/proc/self/ns/net")
            .map(|m| m.ino())
            .map_err(|e| ConfigError::new("restart.pin_dir", format!("/proc/self/ns/net: {e}")))?;
        Ok(Some(self.pin_dir.join(format!("net-{ino}"))))
    }

    /// The journal's directory (`state_dir`, else the API socket's, else /run/pptpgw).
    pub fn state_dir_or(&self, api_socket: &std::path::Path) -> PathBuf {
        if !self.state_dir.as_os_str().is_empty() {
            return self.state_dir.clone();
        }
        api_socket
            .parent()
            .filter(|p| !p.as_os_str().is_empty())
            .map_or_else(|| PathBuf::from("/run/pptpgw"), PathBuf::from)
    }
}

/// The default control API socket (also the CLI verbs' default).
pub const DEFAULT_API_SOCKET: &str = "/run/pptpgw/api.sock";

#[derive(Clone, Debug, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct Api {
    /// Unix socket of the control API; an empty string turns the API off.
    pub socket: PathBuf,
}

impl Default for Api {
    fn default() -> Self {
        Self {
            socket: DEFAULT_API_SOCKET.into(),
        }
    }
}

#[derive(Clone, Debug, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct Listen {
    pub addresses: Vec<Ipv4Addr>,
    pub port: u16,
}

impl Default for Listen {
    fn default() -> Self {
        Self {
            addresses: vec![Ipv4Addr::UNSPECIFIED],
            port: 1723,
        }
    }
}

#[derive(Clone, Copy, Debug, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "kebab-case")]
pub enum XdpModeName {
    Auto,
    Native,
    Generic,
}

#[derive(Clone, Debug, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct Interfaces {
    pub wan: Vec<String>,
    pub xdp_mode: XdpModeName,
    pub tunnel_device: String,
}

impl Default for Interfaces {
    fn default() -> Self {
        Self {
            wan: Vec::new(),
            xdp_mode: XdpModeName::Auto,
            tunnel_device: "pptp0".into(),
        }
    }
}

#[derive(Clone, Copy, Debug, Deserialize, PartialEq, Eq)]
pub enum AuthMethod {
    #[serde(rename = "mschapv2")]
    MsChapV2,
    #[serde(rename = "chap-md5")]
    ChapMd5,
    #[serde(rename = "pap")]
    Pap,
}

impl From<AuthMethod> for AuthProtocol {
    fn from(m: AuthMethod) -> Self {
        match m {
            AuthMethod::MsChapV2 => AuthProtocol::MsChapV2,
            AuthMethod::ChapMd5 => AuthProtocol::ChapMd5,
            AuthMethod::Pap => AuthProtocol::Pap,
        }
    }
}

#[derive(Clone, Debug, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct Auth {
    pub methods: Vec<AuthMethod>,
    pub secrets: PathBuf,
    pub server_name: String,
    pub max_attempts: u32,
}

impl Default for Auth {
    fn default() -> Self {
        Self {
            methods: vec![AuthMethod::MsChapV2, AuthMethod::ChapMd5, AuthMethod::Pap],
            secrets: "/etc/ppp/chap-secrets".into(),
            server_name: "pptpgw".into(),
            max_attempts: 3,
        }
    }
}

#[derive(Clone, Debug, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct Ppp {
    pub tunnel_local: Ipv4Addr,
    pub mtu: u16,
    pub mss_clamp: bool,
    pub dns: Vec<Ipv4Addr>,
    pub wins: Vec<Ipv4Addr>,
    /// Encryption: MPPE-128 "require" | "prefer" | "allow" | "deny".
    pub mppe: crate::ppp::ccp::MppePolicy,
    /// Stateful MPPE: "no" | "allow" | "force".
    pub mppe_stateful: crate::ppp::ccp::StatefulMppe,
    /// IPv6 in the tunnel (IPV6CP, a /64 per session by SLAAC): "require" | "prefer" | "deny".
    pub ipv6: crate::ppp::link::Ipv6Policy,
    /// IPv4 in the tunnel (IPCP): "require" | "prefer" ("prefer": a client that refuses IPCP
    /// comes up on IPv6 alone, when IPv6 is on).
    pub ipv4: crate::ppp::link::Ipv4Policy,
}

impl Default for Ppp {
    fn default() -> Self {
        Self {
            tunnel_local: Ipv4Addr::new(10, 99, 0, 1),
            mtu: 1400,
            mss_clamp: true,
            dns: Vec::new(),
            wins: Vec::new(),
            mppe: crate::ppp::ccp::MppePolicy::Require,
            mppe_stateful: crate::ppp::ccp::StatefulMppe::No,
            ipv6: crate::ppp::link::Ipv6Policy::Deny,
            ipv4: crate::ppp::link::Ipv4Policy::Prefer,
        }
    }
}

#[derive(Clone, Debug, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct Timers {
    #[serde(deserialize_with = "duration")]
    pub echo_interval: Duration,
    pub echo_failures: u32,
    #[serde(deserialize_with = "duration")]
    pub restart_timer: Duration,
    pub max_configure: u32,
    pub max_terminate: u32,
    pub max_failure: u32,
    #[serde(deserialize_with = "duration")]
    pub control_start_timeout: Duration,
    #[serde(deserialize_with = "duration")]
    pub control_echo_interval: Duration,
    #[serde(deserialize_with = "duration")]
    pub control_echo_timeout: Duration,
    #[serde(deserialize_with = "duration")]
    pub shutdown_grace: Duration,
}

impl Default for Timers {
    fn default() -> Self {
        Self {
            echo_interval: Duration::from_secs(30),
            echo_failures: 4,
            restart_timer: Duration::from_secs(3),
            max_configure: 10,
            max_terminate: 2,
            max_failure: 5,
            control_start_timeout: Duration::from_secs(60),
            control_echo_interval: Duration::from_secs(60),
            control_echo_timeout: Duration::from_secs(60),
            shutdown_grace: Duration::from_secs(5),
        }
    }
}

#[derive(Clone, Copy, Debug, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "kebab-case")]
pub enum PolicyName {
    LowestFree,
    LeastRecentlyReleased,
}

impl From<PolicyName> for Policy {
    fn from(p: PolicyName) -> Self {
        match p {
            PolicyName::LowestFree => Policy::LowestFree,
            PolicyName::LeastRecentlyReleased => Policy::LeastRecentlyReleased,
        }
    }
}

#[derive(Clone, Debug, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct PoolSettings {
    pub policy: PolicyName,
    pub default: String,
    pub client_ranges: Vec<String>,
    pub on_reload_removed: RemovedAddressPolicy,
}

impl Default for PoolSettings {
    fn default() -> Self {
        Self {
            policy: PolicyName::LowestFree,
            default: "default".into(),
            client_ranges: Vec::new(),
            on_reload_removed: RemovedAddressPolicy::Keep,
        }
    }
}

#[derive(Clone, Debug, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct PoolEntry {
    pub name: String,
    pub ranges: Vec<String>,
    #[serde(default)]
    pub next: Option<String>,
}

/// `[[pool6]]`: IPv6 prefixes (each /64 or shorter) sessions get a /64 of (or, for
/// `ipv6.delegated_pool`, a prefix of `length` bits).
#[derive(Clone, Debug, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct Pool6Entry {
    pub name: String,
    pub prefixes: Vec<String>,
    #[serde(default = "default_pool6_length")]
    pub length: u8,
    #[serde(default)]
    pub next: Option<String>,
}

fn default_pool6_length() -> u8 {
    64
}

/// `[ipv6]`: which pool6 sessions draw from and what the Router Advertisements say.
#[derive(Clone, Debug, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct Ipv6 {
    pub pool: String,
    #[serde(deserialize_with = "duration")]
    pub ra_interval: Duration,
    #[serde(deserialize_with = "duration")]
    pub router_lifetime: Duration,
    #[serde(deserialize_with = "duration")]
    pub valid_lifetime: Duration,
    #[serde(deserialize_with = "duration")]
    pub preferred_lifetime: Duration,
    pub dns: Vec<std::net::Ipv6Addr>,
    /// The [[pool6]] DHCPv6 prefix delegation hands /64s out of (absent: no delegation).
    pub delegated_pool: Option<String>,
}

impl Default for Ipv6 {
    fn default() -> Self {
        let d = crate::gateway::Ipv6Config::default();
        Self {
            pool: d.pool,
            ra_interval: d.ra_interval,
            router_lifetime: d.router_lifetime,
            valid_lifetime: d.valid_lifetime,
            preferred_lifetime: d.preferred_lifetime,
            dns: d.dns,
            delegated_pool: d.delegated_pool,
        }
    }
}

impl Ipv6 {
    pub fn gateway(&self) -> crate::gateway::Ipv6Config {
        crate::gateway::Ipv6Config {
            pool: self.pool.clone(),
            ra_interval: self.ra_interval,
            router_lifetime: self.router_lifetime,
            valid_lifetime: self.valid_lifetime,
            preferred_lifetime: self.preferred_lifetime,
            dns: self.dns.clone(),
            delegated_pool: self.delegated_pool.clone(),
            server_duid: server_duid(),
        }
    }
}

/// Our DHCPv6 DUID: a DUID-UUID (RFC 6355) from /etc/machine-id, the same across restarts and
/// upgrades of this host; the built-in one where the file is missing or odd.
fn server_duid() -> Vec<u8> {
    let id = std::fs::read_to_string("/etc/machine-id").unwrap_or_default();
    let id = id.trim();
    let bytes: Option<Vec<u8>> = (id.len() == 32)
        .then(|| {
            (0..32)
                .step_by(2)
                .map(|i| u8::from_str_radix(&id[i..i + 2], 16).ok())
                .collect()
        })
        .flatten();
    match bytes {
        Some(b) => [vec![0, 4], b].concat(),
        None => crate::gateway::Ipv6Config::default().server_duid,
    }
}

#[derive(Clone, Copy, Debug, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "kebab-case")]
pub enum PerUserPolicy {
    /// Refuse the new session.
    Deny,
    /// End the user's oldest session to make room for the new one.
    Replace,
}

#[derive(Clone, Debug, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct Limits {
    pub max_sessions: usize,
    /// 0: no per-user limit.
    pub max_sessions_per_user: usize,
    pub per_user_policy: PerUserPolicy,
    /// New control connections per second from one source address (burst of twice that);
    /// 0: no limit.
    pub connection_rate_per_source: u32,
    /// Control connections open at once from one source address (0: no limit).
    pub max_connections_per_source: u32,
    pub max_calls_per_connection: u32,
    /// Sessions not yet authenticated, in total and per source address.
    pub max_unauthenticated: u32,
    pub max_unauthenticated_per_source: u32,
    /// From the call to the network being up (LCP, authentication, IPCP).
    #[serde(deserialize_with = "duration")]
    pub negotiation_timeout: Duration,
    /// Every session's rate limits unless RADIUS gives others, in MikroTik-Rate-Limit's form
    /// "UPLOAD/DOWNLOAD" (bits per second, k/M/G suffixes; "" : unlimited).
    pub rate_limit: String,
}

impl Default for Limits {
    fn default() -> Self {
        let a = crate::admission::Limits::default();
        Self {
            max_sessions: 100_000,
            max_sessions_per_user: 0,
            per_user_policy: PerUserPolicy::Deny,
            connection_rate_per_source: 10,
            max_connections_per_source: a.max_connections_per_source,
            max_calls_per_connection: a.max_calls_per_connection,
            max_unauthenticated: a.max_unauthenticated,
            max_unauthenticated_per_source: a.max_unauthenticated_per_source,
            negotiation_timeout: a.negotiation_timeout,
            rate_limit: String::new(),
        }
    }
}

impl Limits {
    /// `rate_limit` as (upload, download) bits per second, None for unlimited.
    pub fn rate(&self) -> Result<Option<(u64, u64)>, ConfigError> {
        if self.rate_limit.is_empty() {
            return Ok(None);
        }
        crate::radius::access::parse_rate_limit(&self.rate_limit)
            .map(Some)
            .ok_or_else(|| {
                ConfigError::new(
                    "limits.rate_limit",
                    format!(
                        "{:?}: want UPLOAD/DOWNLOAD like \"10M/20M\"",
                        self.rate_limit
                    ),
                )
            })
    }

    /// What the gateway core enforces.
    pub fn admission(&self) -> crate::admission::Limits {
        crate::admission::Limits {
            max_connections_per_source: self.max_connections_per_source,
            max_calls_per_connection: self.max_calls_per_connection,
            max_unauthenticated: self.max_unauthenticated,
            max_unauthenticated_per_source: self.max_unauthenticated_per_source,
            negotiation_timeout: self.negotiation_timeout,
        }
    }
}

/// One RADIUS server.
#[derive(Clone, Debug, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct RadiusServer {
    /// "ADDRESS:PORT" (authentication port, 1812 usually).
    pub address: String,
    pub secret: String,
}

/// What happens when no RADIUS server answers.
#[derive(Clone, Copy, Debug, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum RadiusUnreachable {
    /// The client is refused (as with a wrong password).
    Refuse,
    /// The secrets file decides.
    Local,
}

#[derive(Clone, Debug, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct Radius {
    /// Tried in order (the last one that answered first); empty: the secrets file alone.
    pub servers: Vec<RadiusServer>,
    /// How long to wait for an answer before sending again.
    #[serde(deserialize_with = "duration")]
    pub timeout: Duration,
    /// Sends after the first, per server.
    pub retries: u32,
    /// NAS-Identifier (empty: not sent).
    pub nas_identifier: String,
    /// NAS-IP-Address (empty: not sent).
    pub nas_ip: String,
    pub when_unreachable: RadiusUnreachable,
    /// Accounting (RFC 2866) goes to these, in order (empty: no accounting).
    pub accounting_servers: Vec<RadiusServer>,
    /// Interim-Updates this often unless the Access-Accept's Acct-Interim-Interval says
    /// otherwise ("0s": only when it does).
    #[serde(deserialize_with = "duration")]
    pub interim_interval: Duration,
    /// Dynamic authorization (RFC 5176): Disconnect-Request and CoA-Request taken on this
    /// "ADDRESS:PORT" (3799 usually; empty: off), from `das_clients` only.
    pub das_listen: String,
    pub das_clients: Vec<RadiusServer>,
}

impl Default for Radius {
    fn default() -> Self {
        Self {
            servers: Vec::new(),
            timeout: Duration::from_secs(3),
            retries: 2,
            nas_identifier: "pptpgw".into(),
            nas_ip: String::new(),
            when_unreachable: RadiusUnreachable::Refuse,
            accounting_servers: Vec::new(),
            interim_interval: Duration::ZERO,
            das_listen: String::new(),
            das_clients: Vec::new(),
        }
    }
}

impl Radius {
    /// The client's configuration, or None without servers. Errors name the field.
    pub fn client(&self) -> Result<Option<crate::radius::client::ClientConfig>, ConfigError> {
        self.client_for("servers", &self.servers)
    }

    /// The accounting client's configuration, or None without accounting servers.
    pub fn accounting_client(
        &self,
    ) -> Result<Option<crate::radius::client::ClientConfig>, ConfigError> {
        self.client_for("accounting_servers", &self.accounting_servers)
    }

    fn client_for(
        &self,
        field: &str,
        list: &[RadiusServer],
    ) -> Result<Option<crate::radius::client::ClientConfig>, ConfigError> {
        if list.is_empty() {
            return Ok(None);
        }
        let mut servers = Vec::new();
        for (i, s) in list.iter().enumerate() {
            let addr = s.address.parse().map_err(|e| {
                ConfigError::new(
                    format!("radius.{field}[{i}].address"),
                    format!("{:?}: {e} (want ADDRESS:PORT)", s.address),
                )
            })?;
            if s.secret.is_empty() {
                return Err(ConfigError::new(
                    format!("radius.{field}[{i}].secret"),
                    "must not be empty",
                ));
            }
            servers.push(crate::radius::client::Server {
                addr,
                secret: s.secret.as_bytes().to_vec(),
            });
        }
        if self.timeout.is_zero() {
            return Err(ConfigError::new("radius.timeout", "must be above 0"));
        }
        Ok(Some(crate::radius::client::ClientConfig {
            servers,
            timeout: self.timeout,
            retries: self.retries,
        }))
    }

    /// The dynamic authorization listener and its clients (address, secret), or None.
    #[allow(clippy::type_complexity)]
    pub fn das(
        &self,
    ) -> Result<Option<(std::net::SocketAddr, Vec<(std::net::IpAddr, Vec<u8>)>)>, ConfigError> {
        if self.das_listen.is_empty() {
            return Ok(None);
        }
        let listen = self.das_listen.parse().map_err(|e| {
            ConfigError::new(
                "radius.das_listen",
                format!("{:?}: {e} (want ADDRESS:PORT)", self.das_listen),
            )
        })?;
        let mut clients = Vec::new();
        for (i, c) in self.das_clients.iter().enumerate() {
            let a = c.address.parse().map_err(|e| {
                ConfigError::new(
                    format!("radius.das_clients[{i}].address"),
                    format!("{:?}: {e} (want an IP address)", c.address),
                )
            })?;
            if c.secret.is_empty() {
                return Err(ConfigError::new(
                    format!("radius.das_clients[{i}].secret"),
                    "must not be empty",
                ));
            }
            clients.push((a, c.secret.as_bytes().to_vec()));
        }
        if clients.is_empty() {
            return Err(ConfigError::new(
                "radius.das_clients",
                "das_listen needs at least one client",
            ));
        }
        Ok(Some((listen, clients)))
    }

    pub fn nas_ip(&self) -> Result<Option<Ipv4Addr>, ConfigError> {
        if self.nas_ip.is_empty() {
            return Ok(None);
        }
        self.nas_ip
            .parse()
            .map(Some)
            .map_err(|e| ConfigError::new("radius.nas_ip", format!("{:?}: {e}", self.nas_ip)))
    }
}

/// Who forwards client traffic between the tunnel and the network.
#[derive(Clone, Copy, Debug, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum ForwardingMode {
    /// Through `pptp0` and the kernel's IP stack: netfilter, conntrack, NAT, qdiscs and every
    /// routing feature apply to client traffic. The default.
    Stack,
    /// XDP forwards on its own (FIB lookup, TTL, MACs) between the WAN and the LAN interfaces:
    /// faster, and netfilter/conntrack never see client traffic it forwards. What XDP should not
    /// decide (local destinations, unresolved neighbours, too big, TTL expiry) still goes
    /// through `pptp0`.
    Xdp,
}

#[derive(Clone, Debug, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct Forwarding {
    pub mode: ForwardingMode,
    /// `xdp` mode: the interfaces traffic for clients arrives on besides the WAN ones (which
    /// always take it in `xdp` mode); each gets the LAN program, in `interfaces.xdp_mode`.
    pub lan: Vec<String>,
    /// Data packets may arrive this far behind the newest one received (1..=64) and still be
    /// delivered; duplicates and older ones are dropped. 1 is pptp.ko's strict late-drop.
    pub reorder_window: u32,
}

impl Default for Forwarding {
    fn default() -> Self {
        Self {
            mode: ForwardingMode::Stack,
            lan: Vec::new(),
            reorder_window: 64,
        }
    }
}

#[derive(Clone, Debug, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct Metrics {
    /// HTTP address for `/metrics`, `/healthz` and `/readyz`; empty turns it off.
    pub listen: String,
    /// Also export one series per session (off: cardinality grows with sessions).
    pub per_session: bool,
}

impl Default for Metrics {
    fn default() -> Self {
        Self {
            listen: "127.0.0.1:9723".into(),
            per_session: false,
        }
    }
}

impl Metrics {
    pub fn address(&self) -> Result<Option<SocketAddr>, ConfigError> {
        if self.listen.is_empty() {
            return Ok(None);
        }
        self.listen
            .parse()
            .map(Some)
            .map_err(|e| ConfigError::new("metrics.listen", format!("`{}`: {e}", self.listen)))
    }
}

#[derive(Clone, Copy, Debug, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "kebab-case")]
pub enum LogFormat {
    Text,
    Json,
}

#[derive(Clone, Debug, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct Log {
    pub format: LogFormat,
    /// A tracing filter: "info", "debug", "info,pptp_user::gateway=debug", ...
    pub level: String,
}

impl Default for Log {
    fn default() -> Self {
        Self {
            format: LogFormat::Text,
            level: "info".into(),
        }
    }
}

#[derive(Clone, Copy, Debug, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "kebab-case")]
pub enum RemovedAddressPolicy {
    /// A live session whose address is in no pool after a reload keeps it until it ends.
    Keep,
    /// Such sessions are ended (cleanly) by the reload.
    Disconnect,
}

/// A configuration problem, naming the field.
#[derive(Clone, Debug, thiserror::Error, PartialEq, Eq)]
#[error("{field}: {reason}")]
pub struct ConfigError {
    pub field: String,
    pub reason: String,
}

impl ConfigError {
    pub fn new(field: impl Into<String>, reason: impl std::fmt::Display) -> Self {
        Self {
            field: field.into(),
            reason: reason.to_string(),
        }
    }
}

/// "250ms", "30s", "5m", "1h", or a number of seconds.
fn duration<'de, D: Deserializer<'de>>(d: D) -> Result<Duration, D::Error> {
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum Raw {
        Secs(u64),
        Text(String),
    }
    match Raw::deserialize(d)? {
        Raw::Secs(s) => Ok(Duration::from_secs(s)),
        Raw::Text(t) => parse_duration(&t).map_err(serde::de::Error::custom),
    }
}

pub fn parse_duration(t: &str) -> Result<Duration, String> {
    let t = t.trim();
    let split = t.find(|c: char| !c.is_ascii_digit()).unwrap_or(t.len());
    let (num, unit) = t.split_at(split);
    let n: u64 = num
        .parse()
        .map_err(|_| format!("`{t}` is not a duration (like \"250ms\", \"30s\", \"5m\")"))?;
    let d = match unit {
        "ms" => Duration::from_millis(n),
        "" | "s" => Duration::from_secs(n),
        "m" => Duration::from_secs(n * 60),
        "h" => Duration::from_secs(n * 3600),
        _ => return Err(format!("`{t}`: unknown unit `{unit}` (ms, s, m, h)")),
    };
    Ok(d)
}

impl Config {
    /// Parses a document: unknown keys, wrong types and malformed TOML are errors with the line.
    pub fn parse(text: &str) -> Result<Self, ConfigError> {
        toml::from_str(text).map_err(|e: toml::de::Error| {
            let field = e
                .span()
                .and_then(|s| key_before(text, s.start))
                .unwrap_or_else(|| "config".into());
            ConfigError::new(field, e.message().trim_end())
        })
    }

    pub fn load(path: &Path) -> Result<Self, ConfigError> {
        let text = std::fs::read_to_string(path)
            .map_err(|e| ConfigError::new("--config", format!("{}: {e}", path.display())))?;
        Self::parse(&text)
    }

    /// The checks types cannot make. `local` are this host's addresses (a pool may not contain
    /// them); pass an empty slice to skip that check.
    pub fn validate(&self, local: &[Ipv4Addr]) -> Result<(), ConfigError> {
        if self.listen.port == 0 {
            return Err(ConfigError::new("listen.port", "must not be 0"));
        }
        if self.listen.addresses.is_empty() {
            return Err(ConfigError::new(
                "listen.addresses",
                "empty: nothing to listen on (\"0.0.0.0\" means every address)",
            ));
        }
        if self.listen.addresses.len() > 1 && self.listen.addresses.contains(&Ipv4Addr::UNSPECIFIED)
        {
            return Err(ConfigError::new(
                "listen.addresses",
                "0.0.0.0 already covers every address; list it alone",
            ));
        }
        if self.auth.methods.is_empty() {
            return Err(ConfigError::new(
                "auth.methods",
                "at least one method is needed",
            ));
        }
        if self.auth.server_name.is_empty() {
            return Err(ConfigError::new("auth.server_name", "must not be empty"));
        }
        if self.auth.max_attempts == 0 {
            return Err(ConfigError::new("auth.max_attempts", "must be at least 1"));
        }
        if !(1..=pptp_common::seq::MAX_WINDOW).contains(&self.forwarding.reorder_window) {
            return Err(ConfigError::new(
                "forwarding.reorder_window",
                format!(
                    "{} is outside 1..={}",
                    self.forwarding.reorder_window,
                    pptp_common::seq::MAX_WINDOW
                ),
            ));
        }
        self.limits.rate()?;
        self.radius.client()?;
        self.radius.accounting_client()?;
        self.radius.das()?;
        self.radius.nas_ip()?;
        if self.forwarding.mode == ForwardingMode::Stack && !self.forwarding.lan.is_empty() {
            return Err(ConfigError::new(
                "forwarding.lan",
                "LAN interfaces take XDP only with forwarding.mode = \"xdp\"",
            ));
        }
        for lan in &self.forwarding.lan {
            if self.interfaces.wan.contains(lan) {
                return Err(ConfigError::new(
                    "forwarding.lan",
                    format!("{lan} is a WAN interface (interfaces.wan); those forward both ways"),
                ));
            }
            if lan.is_empty() || lan == &self.interfaces.tunnel_device {
                return Err(ConfigError::new(
                    "forwarding.lan",
                    format!("{lan:?} cannot be a LAN interface"),
                ));
            }
        }
        if !(576..=1500).contains(&self.ppp.mtu) {
            return Err(ConfigError::new(
                "ppp.mtu",
                format!("{} is outside 576..=1500", self.ppp.mtu),
            ));
        }
        for (field, list) in [("ppp.dns", &self.ppp.dns), ("ppp.wins", &self.ppp.wins)] {
            if list.len() > 2 {
                return Err(ConfigError::new(field, "at most two servers"));
            }
        }
        if self.timers.echo_interval.is_zero() {
            return Err(ConfigError::new("timers.echo_interval", "must not be 0"));
        }
        if self.timers.restart_timer < Duration::from_millis(100) {
            return Err(ConfigError::new(
                "timers.restart_timer",
                "must be at least 100ms",
            ));
        }
        let capacity = pptp_common::maps::DEFAULT_MAX_SESSIONS as usize;
        if !(1..=capacity).contains(&self.limits.max_sessions) {
            return Err(ConfigError::new(
                "limits.max_sessions",
                format!("must be 1..={capacity} (the data path's map size)"),
            ));
        }
        for (field, v) in [
            (
                "limits.max_calls_per_connection",
                self.limits.max_calls_per_connection,
            ),
            (
                "limits.max_unauthenticated",
                self.limits.max_unauthenticated,
            ),
            (
                "limits.max_unauthenticated_per_source",
                self.limits.max_unauthenticated_per_source,
            ),
        ] {
            if v == 0 {
                return Err(ConfigError::new(field, "must be at least 1"));
            }
        }
        if self.limits.negotiation_timeout < Duration::from_secs(1) {
            return Err(ConfigError::new(
                "limits.negotiation_timeout",
                "must be at least 1s",
            ));
        }
        self.metrics.address()?;
        if tracing_subscriber::EnvFilter::try_new(&self.log.level).is_err() {
            return Err(ConfigError::new(
                "log.level",
                format!(
                    "`{}` is not a filter like \"info\" or \"info,pptp_user=debug\"",
                    self.log.level
                ),
            ));
        }
        self.pools(local, &[])?;
        self.pools6()?;
        Ok(())
    }

    /// Whether sessions carry IPv6.
    pub fn ipv6_enabled(&self) -> bool {
        self.ppp.ipv6 != crate::ppp::link::Ipv6Policy::Deny
    }

    /// The IPv6 prefix pools, validated; with `ppp.ipv6` on, `ipv6.pool` must name one.
    pub fn pools6(&self) -> Result<crate::pool6::Pools6, ConfigError> {
        use crate::pool6::{Pool6Config, Pool6Error as E, Pools6};
        let mut configs = Vec::new();
        for p in &self.pool6 {
            let field = format!("pool6[{}].prefixes", p.name);
            let prefixes = p
                .prefixes
                .iter()
                .map(|r| r.parse().map_err(|e: String| ConfigError::new(&field, e)))
                .collect::<Result<Vec<_>, _>>()?;
            configs.push(Pool6Config {
                name: p.name.clone(),
                prefixes,
                length: p.length,
                next: p.next.clone(),
            });
        }
        let pools = Pools6::new(configs).map_err(|e| {
            let field = match &e {
                E::Overlap { b: pool, .. } | E::Empty { pool } => format!("pool6[{pool}].prefixes"),
                E::UnknownNext { pool, .. } | E::ChainLoops { pool } => {
                    format!("pool6[{pool}].next")
                }
                E::Duplicate { pool } => format!("pool6[{pool}].name"),
                E::Length { pool, .. } | E::ChainLength { pool, .. } => {
                    format!("pool6[{pool}].length")
                }
                E::Exhausted(_) | E::UnknownPool(_) | E::InUse(_) | E::NotSlash64(_) => {
                    "pool6".into()
                }
            };
            ConfigError::new(field, e)
        })?;
        if self.ipv6_enabled() && !pools.has(&self.ipv6.pool) {
            return Err(ConfigError::new(
                "ipv6.pool",
                format!(
                    "ppp.ipv6 is on, and there is no [[pool6]] named `{}`",
                    self.ipv6.pool
                ),
            ));
        }
        if let Some(d) = &self.ipv6.delegated_pool
            && !pools.has(d)
        {
            return Err(ConfigError::new(
                "ipv6.delegated_pool",
                format!("there is no [[pool6]] named `{d}`"),
            ));
        }
        if self.ipv6_enabled() && pools.length(&self.ipv6.pool) != Some(64) {
            return Err(ConfigError::new(
                "ipv6.pool",
                format!(
                    "[[pool6]] `{}` hands out /{}s; a session's link needs a /64",
                    self.ipv6.pool,
                    pools.length(&self.ipv6.pool).unwrap_or(0)
                ),
            ));
        }
        if self.ipv6.ra_interval < Duration::from_secs(4)
            || self.ipv6.ra_interval > Duration::from_secs(1800)
        {
            return Err(ConfigError::new(
                "ipv6.ra_interval",
                "must be 4 s to 30 min (RFC 4861 §6.2.1)",
            ));
        }
        if self.ipv6.router_lifetime > Duration::from_secs(9000) {
            return Err(ConfigError::new(
                "ipv6.router_lifetime",
                "at most 9000 s (RFC 4861 §6.2.1)",
            ));
        }
        if self.ipv6.preferred_lifetime > self.ipv6.valid_lifetime {
            return Err(ConfigError::new(
                "ipv6.preferred_lifetime",
                "longer than ipv6.valid_lifetime",
            ));
        }
        Ok(pools)
    }

    /// The fields a running gateway cannot change (sockets, interfaces, devices): a reload that
    /// changes any of them is refused as a whole, naming them.
    pub fn restart_only_changes(&self, new: &Config) -> Vec<&'static str> {
        let mut v = Vec::new();
        if self.listen != new.listen {
            v.push("listen");
        }
        if self.interfaces != new.interfaces {
            v.push("interfaces");
        }
        if self.ppp.tunnel_local != new.ppp.tunnel_local {
            v.push("ppp.tunnel_local");
        }
        if self.ppp.mtu != new.ppp.mtu {
            v.push("ppp.mtu");
        }
        if self.api != new.api {
            v.push("api");
        }
        if self.metrics.listen != new.metrics.listen {
            v.push("metrics.listen");
        }
        if self.log != new.log {
            v.push("log");
        }
        if self.radius != new.radius {
            v.push("radius");
        }
        if self.forwarding != new.forwarding {
            v.push("forwarding");
        }
        if self.timers.shutdown_grace != new.timers.shutdown_grace {
            v.push("timers.shutdown_grace");
        }
        if self.restart != new.restart {
            v.push("restart");
        }
        if self.ppp.ipv6 != new.ppp.ipv6 {
            v.push("ppp.ipv6");
        }
        if self.ppp.ipv4 != new.ppp.ipv4 {
            v.push("ppp.ipv4");
        }
        if self.ipv6 != new.ipv6 {
            v.push("ipv6");
        }
        if self.pool6 != new.pool6 {
            v.push("pool6");
        }
        v
    }

    /// Client outer ranges, parsed.
    fn client_ranges(&self) -> Result<Vec<Range>, ConfigError> {
        self.pools
            .client_ranges
            .iter()
            .map(|r| {
                r.parse::<Range>()
                    .map_err(|e| ConfigError::new("pools.client_ranges", e))
            })
            .collect()
    }

    /// The address pools, validated (ranges, overlaps, chains, client ranges, local addresses,
    /// static addresses of users).
    pub fn pools(
        &self,
        local: &[Ipv4Addr],
        statics: &[(String, Ipv4Addr)],
    ) -> Result<Pools, ConfigError> {
        if self.pool.is_empty() {
            return Err(ConfigError::new("pool", "at least one [[pool]] is needed"));
        }
        let mut configs = Vec::new();
        for p in &self.pool {
            let field = format!("pool[{}].ranges", p.name);
            if p.ranges.is_empty() {
                return Err(ConfigError::new(field, "no ranges"));
            }
            let ranges = p
                .ranges
                .iter()
                .map(|r| r.parse::<Range>().map_err(|e| ConfigError::new(&field, e)))
                .collect::<Result<Vec<_>, _>>()?;
            configs.push(PoolConfig {
                name: p.name.clone(),
                ranges,
                next: p.next.clone(),
            });
        }
        if !self.pool.iter().any(|p| p.name == self.pools.default) {
            return Err(ConfigError::new(
                "pools.default",
                format!("no [[pool]] named `{}`", self.pools.default),
            ));
        }
        let mut local = local.to_vec();
        local.push(self.ppp.tunnel_local);
        Pools::new(
            configs,
            self.pools.policy.into(),
            &self.client_ranges()?,
            &local,
            statics,
        )
        .map_err(|e| ConfigError::new(pool_error_field(&e), e))
    }

    pub fn dns(&self) -> [Option<Ipv4Addr>; 2] {
        [self.ppp.dns.first().copied(), self.ppp.dns.get(1).copied()]
    }

    pub fn wins(&self) -> [Option<Ipv4Addr>; 2] {
        [
            self.ppp.wins.first().copied(),
            self.ppp.wins.get(1).copied(),
        ]
    }

    pub fn listen_addresses(&self) -> Vec<SocketAddr> {
        self.listen
            .addresses
            .iter()
            .map(|a| SocketAddr::V4(SocketAddrV4::new(*a, self.listen.port)))
            .collect()
    }
}

fn pool_error_field(e: &crate::pool::PoolError) -> String {
    use crate::pool::PoolError as E;
    match e {
        E::Overlap { b, .. } => format!("pool[{b}].ranges"),
        E::InsideClientRange { pool, .. } | E::LocalAddress { pool, .. } | E::Empty { pool } => {
            format!("pool[{pool}].ranges")
        }
        E::UnknownNext { pool, .. } | E::ChainLoops { pool } => format!("pool[{pool}].next"),
        E::Duplicate { pool } => format!("pool[{pool}].name"),
        E::BadStatic { .. } => "auth.secrets".into(),
    }
}

/// The dotted key of the line holding byte `at` (`section.key`), for error messages.
fn key_before(text: &str, at: usize) -> Option<String> {
    let at = at.min(text.len());
    let line_start = text[..at].rfind('\n').map_or(0, |i| i + 1);
    let line_end = text[at..].find('\n').map_or(text.len(), |i| at + i);
    let line = text[line_start..line_end].trim();
    let section = text[..line_start]
        .lines()
        .rev()
        .map(str::trim)
        .find(|l| l.starts_with('['))
        .map(|l| l.trim_matches(|c| c == '[' || c == ']').trim().to_string());
    let key = line
        .split_once('=')
        .map(|(k, _)| k.trim().to_string())
        .filter(|k| !k.is_empty() && !k.starts_with('['));
    match (section, key) {
        (Some(s), Some(k)) => Some(format!("{s}.{k}")),
        (None, Some(k)) => Some(k),
        (Some(_), None) if line.starts_with('[') => Some(line.to_string()),
        (Some(s), None) => Some(s),
        (None, None) => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_shipped_example_is_the_default_and_valid() {
        let c = Config::parse(DEFAULT_TOML).unwrap();
        assert_eq!(c, Config::default());
        c.validate(&[]).unwrap();
        assert_eq!(
            c.listen_addresses(),
            vec!["0.0.0.0:1723".parse::<SocketAddr>().unwrap()]
        );
        // An empty document is the default too.
        assert_eq!(Config::parse("").unwrap(), Config::default());
    }

    #[test]
    fn a_full_file_parses() {
        let c = Config::parse(
            r#"
[listen]
addresses = ["192.0.2.1", "198.51.100.1"]
port = 1724
[interfaces]
wan = ["eth0", "eth1"]
xdp_mode = "generic"
[auth]
methods = ["pap"]
secrets = "/tmp/s"
[ppp]
dns = ["192.0.2.53"]
mtu = 1380
[timers]
echo_interval = "500ms"
echo_failures = 2
[pools]
policy = "least-recently-released"
default = "a"
client_ranges = ["192.0.2.0/24"]
[[pool]]
name = "a"
ranges = ["10.0.0.1-10.0.0.4"]
next = "b"
[[pool]]
name = "b"
ranges = ["10.0.1.0/30"]
"#,
        )
        .unwrap();
        c.validate(&[]).unwrap();
        assert_eq!(c.timers.echo_interval, Duration::from_millis(500));
        assert_eq!(c.interfaces.xdp_mode, XdpModeName::Generic);
        assert_eq!(c.dns(), [Some(Ipv4Addr::new(192, 0, 2, 53)), None]);
        assert_eq!(c.listen_addresses().len(), 2);
        let pools = c.pools(&[], &[]).unwrap();
        // 4 + the two hosts of a /30.
        assert_eq!(pools.usage().iter().map(|u| u.size).sum::<usize>(), 6);
    }

    fn error(text: &str) -> ConfigError {
        let c = match Config::parse(text) {
            Ok(c) => c,
            Err(e) => return e,
        };
        c.validate(&[Ipv4Addr::new(10, 0, 0, 9)])
            .expect_err("config should be refused")
    }

    #[test]
    fn bad_files_name_the_field() {
        let cases: &[(&str, &str, &str)] = &[
            ("[ppp]\nmtu = \"big\"\n", "ppp.mtu", "invalid type"),
            ("[ppp]\nmtu = 100\n", "ppp.mtu", "outside"),
            ("[ppp]\nmut = 1400\n", "ppp.mut", "unknown field"),
            ("[listen]\nport = 0\n", "listen.port", "0"),
            (
                "[listen]\naddresses = [\"10.0.0\"]\n",
                "listen.addresses",
                "invalid",
            ),
            (
                "[auth]\nmethods = [\"eap\"]\n",
                "auth.methods",
                "unknown variant",
            ),
            (
                "[timers]\necho_interval = \"3 weeks\"\n",
                "timers.echo_interval",
                "unit",
            ),
            (
                "[[pool]]\nname = \"default\"\nranges = [\"10.0.0.0/33\"]\n",
                "pool[default].ranges",
                "10.0.0.0/33",
            ),
            (
                "[[pool]]\nname = \"default\"\nranges = [\"10.0.0.0/30\"]\n[[pool]]\nname = \"b\"\nranges = [\"10.0.0.2-10.0.0.7\"]\n",
                "pool[b].ranges",
                "overlap",
            ),
            (
                "[pools]\nclient_ranges = [\"10.0.0.0/24\"]\n[[pool]]\nname = \"default\"\nranges = [\"10.0.0.100-10.0.0.103\"]\n",
                "pool[default].ranges",
                "client address range",
            ),
            (
                "[[pool]]\nname = \"default\"\nranges = [\"10.0.0.8/30\"]\n",
                "pool[default].ranges",
                "10.0.0.9",
            ),
            (
                "[[pool]]\nname = \"default\"\nranges = [\"10.1.0.0/30\"]\nnext = \"nope\"\n",
                "pool[default].next",
                "nope",
            ),
            ("[pools]\ndefault = \"x\"\n", "pools.default", "x"),
            ("[ppp]\nipv6 = \"prefer\"\n", "ipv6.pool", "no [[pool6]]"),
            ("[ppp]\nipv6 = \"always\"\n", "ppp.ipv6", "unknown variant"),
            (
                "[[pool6]]\nname = \"a\"\nprefixes = [\"2001:db8::/80\"]\n",
                "pool6[a].prefixes",
                "each session gets a /64",
            ),
            (
                "[[pool6]]\nname = \"a\"\nprefixes = [\"2001:db8::/48\"]\n[[pool6]]\nname = \"b\"\nprefixes = [\"2001:db8:0:9::/64\"]\n",
                "pool6[b].prefixes",
                "overlap",
            ),
            (
                "[[pool6]]\nname = \"a\"\nprefixes = [\"2001:db8::/64\"]\nnext = \"z\"\n",
                "pool6[a].next",
                "z",
            ),
            (
                "[ipv6]\nra_interval = \"1s\"\n",
                "ipv6.ra_interval",
                "RFC 4861",
            ),
            (
                "[ipv6]\ndelegated_pool = \"pd\"\n",
                "ipv6.delegated_pool",
                "no [[pool6]] named `pd`",
            ),
            (
                "[[pool6]]\nname = \"pd\"\nprefixes = [\"2001:db8::/56\"]\nlength = 48\n",
                "pool6[pd].length",
                "shorter than its prefixes",
            ),
            (
                "[ppp]\nipv6 = \"prefer\"\n[ipv6]\npool = \"pd\"\n[[pool6]]\nname = \"pd\"\nprefixes = [\"2001:db8::/48\"]\nlength = 56\n",
                "ipv6.pool",
                "needs a /64",
            ),
            (
                "[ppp]\ndns = [\"1.1.1.1\", \"1.0.0.1\", \"8.8.8.8\"]\n",
                "ppp.dns",
                "two",
            ),
            ("[listen\n", "config", ""),
            (
                "[[radius.servers]]\naddress = \"10.0.0.1\"\nsecret = \"x\"\n",
                "radius.servers[0].address",
                "ADDRESS:PORT",
            ),
            (
                "[[radius.servers]]\naddress = \"10.0.0.1:1812\"\nsecret = \"\"\n",
                "radius.servers[0].secret",
                "empty",
            ),
            (
                "[radius]\nwhen_unreachable = \"maybe\"\n",
                "radius.when_unreachable",
                "unknown variant",
            ),
            (
                "[limits]\nrate_limit = \"fast\"\n",
                "limits.rate_limit",
                "10M/20M",
            ),
            (
                "[forwarding]\nmode = \"fast\"\n",
                "forwarding.mode",
                "unknown variant",
            ),
            (
                "[forwarding]\nlan = [\"eth1\"]\n",
                "forwarding.lan",
                "mode = \"xdp\"",
            ),
            (
                "[interfaces]\nwan = [\"eth0\"]\n[forwarding]\nmode = \"xdp\"\nlan = [\"eth0\"]\n",
                "forwarding.lan",
                "WAN",
            ),
        ];
        for (text, field, reason) in cases {
            let e = error(text);
            assert_eq!(&e.field, field, "{text}: {e}");
            assert!(e.reason.contains(reason), "{text}: {e}");
        }
    }

    #[test]
    fn durations() {
        assert_eq!(parse_duration("250ms"), Ok(Duration::from_millis(250)));
        assert_eq!(parse_duration("5m"), Ok(Duration::from_secs(300)));
        assert_eq!(parse_duration("7"), Ok(Duration::from_secs(7)));
        assert!(parse_duration("s").is_err());
        assert!(parse_duration("1d").is_err());
    }
}
