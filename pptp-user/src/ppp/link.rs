//! One call's PPP link, server side, as a pure state machine: LCP, then authentication, then
//! IPCP and CCP, then keepalive; and termination from any side. Inputs are received PPP frames,
//! timer expiries and the shell's decisions; outputs are frames to send (the shell wraps them in
//! GRE), timers, and the milestones the session needs (authenticated, up, down with a reason).
//!
//! The client's address is not known when the link starts: it depends on who authenticates
//! (per-user static addresses, pools per user). So the link stops after authentication with
//! [`LinkOutput::Authenticated`], and the shell answers with [`Link::start_network`].

use std::time::Duration;

use super::{
    ccp::{CcpOutcome, CcpPolicy, MppePolicy, StatefulMppe},
    fsm::{self, Fsm, Output, Reason},
    ipcp::{IpcpConfig, IpcpPolicy},
    ipv6cp::{InterfaceId, Ipv6cpPolicy},
    lcp::{Lcp, LcpConfig, Negotiated},
};
use crate::{
    auth::authenticator::{
        AuthConfig, AuthOutput, Authenticator, Credentials, Failure, MppeKeys, Secret, Verdict,
    },
    wire::{cp::CpPacket, ppp::proto},
};

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LinkConfig {
    pub lcp: LcpConfig,
    pub fsm: fsm::Config,
    pub auth: AuthConfig,
    /// LCP Echo-Request interval once the link is up, and how many may go unanswered.
    pub echo_interval: Duration,
    pub echo_failures: u32,
    /// Encryption (MPPE-128); the shipped config says `require`, the protocol core's own
    /// default is `deny` (no CCP beyond rejecting), as its transcripts were written for.
    pub mppe: MppePolicy,
    /// Stateful MPPE: never, for clients that will not do stateless, or always.
    pub mppe_stateful: StatefulMppe,
    /// IPV6CP: run it (and end the link without it), offer it, or Protocol-Reject it.
    pub ipv6: Ipv6Policy,
    /// IPCP: end the link without it, or let a client that refuses it go on IPv6 alone.
    pub ipv4: Ipv4Policy,
}

/// `[ppp] ipv4`: whether a session needs IPv4 (IPCP) to come up.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Ipv4Policy {
    /// IPCP must open, or the link ends.
    Require,
    /// IPCP runs; a client that Protocol-Rejects it, or with which it does not converge, comes
    /// up on IPv6 alone once IPV6CP opens (an IPv6-only client). Without IPv6 it is `require`:
    /// a link with no network protocol ends.
    #[default]
    Prefer,
}

/// `[ppp] ipv6`: whether sessions carry IPv6 (RFC 5072).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Ipv6Policy {
    /// IPV6CP must open, or the link ends.
    Require,
    /// IPV6CP runs; a client that rejects it or does not converge stays IPv4-only.
    Prefer,
    /// IPV6CP is Protocol-Rejected (the client sees a gateway without IPv6).
    #[default]
    Deny,
}

impl Default for LinkConfig {
    fn default() -> Self {
        Self {
            lcp: LcpConfig::default(),
            fsm: fsm::Config::default(),
            auth: AuthConfig::default(),
            echo_interval: Duration::from_secs(30),
            echo_failures: 4,
            mppe: MppePolicy::Deny,
            mppe_stateful: StatefulMppe::Allow,
            ipv6: Ipv6Policy::Deny,
            ipv4: Ipv4Policy::Prefer,
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum LinkTimer {
    Lcp,
    Auth,
    Ipcp,
    Ccp,
    Ipv6cp,
    Echo,
}

/// Why a link ended, for the session's log line and counters.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum DownReason {
    /// LCP ended (timeout, peer terminated, not converging...).
    Lcp(Reason),
    AuthFailed {
        user: Option<String>,
        failure: Failure,
    },
    /// The client wanted MPPE, which is not enabled, and left over it.
    MppeRequired {
        offered: String,
    },
    /// We require MPPE and the client would not (or could not: no MS-CHAPv2 keys) agree to it.
    MppeRefused {
        why: &'static str,
    },
    /// IPCP could not be negotiated.
    Ipcp(Reason),
    /// `ipv6 = require` and IPV6CP did not open (rejected by the client, or not converging).
    Ipv6cp(Reason),
    EchoTimeout,
    /// The shell closed the link (administrative kill, shutdown, lower layer gone).
    Closed,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum LinkOutput {
    Send {
        protocol: u16,
        info: Vec<u8>,
    },
    SetTimer(LinkTimer, Duration),
    CancelTimer(LinkTimer),
    Authenticated {
        user: Option<String>,
        mppe: Option<MppeKeys>,
    },
    /// Check these credentials elsewhere (RADIUS) and call [`Link::resolve_auth`].
    Verify(Credentials),
    Up {
        negotiated: Negotiated,
        /// MPPE both ways with these keys, or plain.
        mppe: Option<MppeSession>,
        /// IPCP opened (false: the client refused IPv4 and is up on IPv6 alone; the address the
        /// shell offered is not the client's).
        ipv4: bool,
    },
    Down(DownReason),
    /// IPV6CP opened: the link-local identifiers of both ends. The client may now solicit a
    /// Router Advertisement and configure addresses in the prefix it announces.
    Ipv6Up {
        local: InterfaceId,
        peer: InterfaceId,
    },
    /// IPV6CP went down (the client closed it, or renegotiates) while the link stays.
    Ipv6Down,
    /// Stateful MPPE: the client asked for a reset; the next packet to it re-keys and is sent
    /// flushed.
    MppeReset,
}

/// CCP codes beyond RFC 1661's (RFC 1962 §2.1).
const CCP_RESET_REQUEST: u8 = 14;
const CCP_RESET_ACK: u8 = 15;

/// An encrypted session's parameters for the data path.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct MppeSession {
    pub keys: MppeKeys,
    pub stateful: bool,
}

/// What an up link is, in the terms another process needs to carry it on (hitless restart):
/// everything else (retransmission state, the authenticator) is over once the network is up.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct LinkSnapshot {
    /// Our LCP magic number (the client checks it in our echoes).
    pub magic: u32,
    pub negotiated: Negotiated,
    /// What IPCP agreed; `None`: an IPv6-only link.
    pub ipcp: Option<IpcpConfig>,
    /// MPPE, stateful or not; `None`: plain. The keys stay in the data path's pinned state.
    pub mppe: Option<bool>,
    /// IPV6CP's identifiers (ours, the client's) when it is open.
    #[serde(default)]
    pub ipv6: Option<(InterfaceId, InterfaceId)>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Phase {
    Establish,
    Authenticate,
    /// Authenticated; waiting for the shell's address.
    AwaitAddress,
    Network,
    Opened,
    Terminate,
    Dead,
}

/// Deterministic randomness for magic numbers, challenges and identifiers: seeded by the shell
/// from the OS, by tests with a constant (xorshift64*; no secrecy needed beyond unpredictability
/// to the peer, which the OS seed gives).
#[derive(Clone, Debug)]
pub struct Entropy(u64);

impl Entropy {
    pub fn new(seed: u64) -> Self {
        Self(seed | 1)
    }
    pub fn next_u64(&mut self) -> u64 {
        let mut x = self.0;
        x ^= x >> 12;
        x ^= x << 25;
        x ^= x >> 27;
        self.0 = x;
        x.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }
    pub fn bytes16(&mut self) -> [u8; 16] {
        let mut b = [0u8; 16];
        b[..8].copy_from_slice(&self.next_u64().to_le_bytes());
        b[8..].copy_from_slice(&self.next_u64().to_le_bytes());
        b
    }
}

pub struct Link {
    config: LinkConfig,
    entropy: Entropy,
    phase: Phase,
    lcp: Lcp,
    auth: Option<Authenticator>,
    ipcp: Option<Fsm<IpcpPolicy>>,
    ccp: Option<Fsm<CcpPolicy>>,
    ipv6cp: Option<Fsm<Ipv6cpPolicy>>,
    /// `Ipv6Up` was reported and no `Ipv6Down` since.
    ipv6_up: bool,
    echo_identifier: u8,
    echo_unanswered: u32,
    identifier: u8,
    /// What ends the link once LCP has finished terminating.
    down: Option<DownReason>,
    /// `Up` was reported (once our IPCP acked the client's request and CCP settled).
    network_reported: bool,
    /// Our IPCP acked the client's request (the client may send data from then on).
    ipcp_acked: bool,
    /// IPCP is over without opening and the link goes on IPv6 alone (`ipv4 = prefer`).
    ipv4_refused: bool,
    /// From MS-CHAPv2, kept for the data path until the session is up.
    mppe_keys: Option<MppeKeys>,
    /// What CCP settled on (None: still negotiating, or not started).
    ccp_outcome: Option<CcpOutcome>,
}

impl Link {
    /// A call was accepted: LCP starts.
    pub fn new(config: LinkConfig, seed: u64) -> (Self, Vec<LinkOutput>) {
        let mut entropy = Entropy::new(seed);
        let magic = entropy.next_u64() as u32;
        let lcp = Lcp::new(config.lcp.clone(), magic, config.fsm);
        let mut link = Self {
            config,
            entropy,
            phase: Phase::Establish,
            lcp,
            auth: None,
            ipcp: None,
            ccp: None,
            ipv6cp: None,
            ipv6_up: false,
            echo_identifier: 0,
            echo_unanswered: 0,
            identifier: 0,
            down: None,
            network_reported: false,
            ipcp_acked: false,
            ipv4_refused: false,
            mppe_keys: None,
            ccp_outcome: None,
        };
        let mut out = Vec::new();
        let o = link.lcp.fsm.open();
        link.lcp_outputs(o, &mut out);
        let o = link.lcp.fsm.up();
        link.lcp_outputs(o, &mut out);
        (link, out)
    }

    /// An up link carried over from another process: LCP, IPCP and (with MPPE) CCP opened with
    /// what they agreed; only keepalives start again. Nothing is sent to the client, which never
    /// learns the process changed.
    pub fn restored(config: LinkConfig, seed: u64, snap: &LinkSnapshot) -> (Self, Vec<LinkOutput>) {
        let lcp = Lcp::restored(config.lcp.clone(), snap.magic, snap.negotiated, config.fsm);
        let ccp = snap.mppe.map(|_| {
            Fsm::opened(
                CcpPolicy::new(config.mppe, true, config.mppe_stateful),
                config.fsm,
            )
        });
        let link = Self {
            entropy: Entropy::new(seed),
            phase: Phase::Opened,
            lcp,
            auth: None,
            ipcp: snap
                .ipcp
                .clone()
                .map(|c| Fsm::opened(IpcpPolicy::new(c), config.fsm)),
            ccp,
            ipv6cp: snap
                .ipv6
                .map(|(l, p)| Fsm::opened(Ipv6cpPolicy::restored(l, p), config.fsm)),
            ipv6_up: snap.ipv6.is_some(),
            echo_identifier: 0,
            echo_unanswered: 0,
            identifier: 0,
            down: None,
            network_reported: true,
            ipcp_acked: snap.ipcp.is_some(),
            ipv4_refused: snap.ipcp.is_none(),
            mppe_keys: None,
            ccp_outcome: Some(match snap.mppe {
                Some(stateful) => CcpOutcome::Mppe { stateful },
                None => CcpOutcome::Plain,
            }),
            config,
        };
        let out = vec![LinkOutput::SetTimer(
            LinkTimer::Echo,
            link.config.echo_interval,
        )];
        (link, out)
    }

    /// What another process needs to carry this link on; `None` until the network is up.
    pub fn snapshot(&self) -> Option<LinkSnapshot> {
        if !self.network_reported || matches!(self.phase, Phase::Terminate | Phase::Dead) {
            return None;
        }
        Some(LinkSnapshot {
            magic: self.lcp.magic(),
            negotiated: self.lcp.negotiated(),
            ipcp: match &self.ipcp {
                Some(f) => Some(f.negotiator.config().clone()),
                None if self.ipv4_refused => None,
                None => return None,
            },
            mppe: match self.ccp_outcome? {
                CcpOutcome::Mppe { stateful } => Some(stateful),
                CcpOutcome::Plain => None,
            },
            ipv6: self
                .ipv6cp
                .as_ref()
                .filter(|_| self.ipv6_up)
                .and_then(|f| f.negotiator.agreed()),
        })
    }

    pub fn phase(&self) -> Phase {
        self.phase
    }

    /// IPV6CP runs and has not opened yet (it may still, or fail).
    pub fn ipv6_negotiating(&self) -> bool {
        self.ipv6cp.is_some() && !self.ipv6_up
    }

    /// IPCP ended without opening and the link goes on (or is up) on IPv6 alone.
    pub fn ipv4_refused(&self) -> bool {
        self.ipv4_refused
    }

    pub fn negotiated(&self) -> Negotiated {
        self.lcp.negotiated()
    }

    /// Why the link is terminating, once that is known (before `Down` is reported): the session
    /// uses it when the control connection clears the call first, as pptp-linux does right after
    /// its LCP Terminate-Request.
    pub fn terminating_because(&self) -> Option<&DownReason> {
        self.down.as_ref()
    }

    /// A PPP frame from the client (through the slow path).
    pub fn receive(
        &mut self,
        protocol: u16,
        info: &[u8],
        secret: impl FnOnce(&str) -> Option<Secret>,
    ) -> Vec<LinkOutput> {
        let mut out = Vec::new();
        if self.phase == Phase::Dead {
            return out;
        }
        match protocol {
            proto::LCP => {
                let o = self.lcp.receive(info);
                self.lcp_outputs(o, &mut out);
            }
            proto::PAP | proto::CHAP if self.phase == Phase::Authenticate => {
                let next = self.entropy.bytes16();
                if let Some(a) = self.auth.as_mut() {
                    let o = a.receive(info, secret, next);
                    self.auth_outputs(o, &mut out);
                }
            }
            proto::IPCP if matches!(self.phase, Phase::Network | Phase::Opened) => {
                if let (Some(f), Ok(p)) = (self.ipcp.as_mut(), CpPacket::parse(info)) {
                    let o = f.receive(&p);
                    self.ncp_outputs(proto::IPCP, o, &mut out);
                }
            }
            proto::CCP if matches!(self.phase, Phase::Network | Phase::Opened) => {
                if let (Some(f), Ok(p)) = (self.ccp.as_mut(), CpPacket::parse(info)) {
                    match p.code {
                        CCP_RESET_REQUEST | CCP_RESET_ACK => self.ccp_reset(&p, &mut out),
                        _ => {
                            let o = f.receive(&p);
                            self.ncp_outputs(proto::CCP, o, &mut out);
                        }
                    }
                }
            }
            proto::IPV6CP
                if self.config.ipv6 != Ipv6Policy::Deny
                    && matches!(self.phase, Phase::Network | Phase::Opened) =>
            {
                if let (Some(f), Ok(p)) = (self.ipv6cp.as_mut(), CpPacket::parse(info)) {
                    let o = f.receive(&p);
                    self.ncp_outputs(proto::IPV6CP, o, &mut out);
                }
            }
            // An MPPE packet the data path handed up: in stateful mode it showed a loss (the
            // data path now discards until a flushed packet); ask the client for one, as pppd
            // does on the kernel's decompression error. Otherwise (racing the programming of
            // the session) dropped: never Protocol-Rejected while CCP runs.
            proto::COMPRESSED if self.ccp_outcome == Some(CcpOutcome::Mppe { stateful: true }) => {
                self.identifier = self.identifier.wrapping_add(1);
                out.push(send_cp(proto::CCP, CCP_RESET_REQUEST, self.identifier, &[]));
            }
            // Data on the slow path (before the session is programmed, or racing it): dropped.
            proto::IPV4 | proto::COMPRESSED => {}
            // IPv6 on the slow path: the gateway core answers what is for the link (Router
            // Solicitations) before the link sees it; the rest is dropped.
            proto::IPV6 => {}
            other
                if self.lcp.fsm.is_opened()
                    && !matches!(other, proto::PAP | proto::CHAP | proto::IPCP | proto::CCP)
                    && !(other == proto::IPV6CP && self.config.ipv6 != Ipv6Policy::Deny) =>
            {
                // RFC 1661 §5.7: a protocol we do not run (IPV6CP, BACP, ...).
                self.identifier = self.identifier.wrapping_add(1);
                if let Some(Output::Send {
                    code,
                    identifier,
                    data,
                }) = self.lcp.protocol_reject(self.identifier, other, info)
                {
                    out.push(send_cp(proto::LCP, code, identifier, &data));
                }
            }
            _ => {} // a protocol out of its phase: silently discarded (RFC 1661 §3.2)
        }
        out
    }

    /// The shell's address for an authenticated client: the network phase starts.
    pub fn start_network(&mut self, ipcp: IpcpConfig) -> Vec<LinkOutput> {
        let mut out = Vec::new();
        if self.phase != Phase::AwaitAddress {
            return out;
        }
        self.phase = Phase::Network;
        let mut f = Fsm::new(IpcpPolicy::new(ipcp), self.config.fsm);
        let mut o = f.open();
        o.extend(f.up());
        self.ipcp = Some(f);
        self.ncp_outputs(proto::IPCP, o, &mut out);
        let policy = CcpPolicy::new(
            self.config.mppe,
            self.mppe_keys.is_some(),
            self.config.mppe_stateful,
        );
        if !policy.asks_for_mppe() {
            // Nothing to wait for: CCP only answers (and rejects) what the client asks.
            self.ccp_outcome = Some(CcpOutcome::Plain);
        }
        let mut c = Fsm::new(policy, self.config.fsm);
        let mut o = c.open();
        o.extend(c.up());
        self.ccp = Some(c);
        self.ncp_outputs(proto::CCP, o, &mut out);
        if self.config.ipv6 != Ipv6Policy::Deny {
            let (local, suggest) = (self.interface_id(), self.interface_id());
            let suggest = if suggest == local {
                let mut s = suggest;
                s[7] ^= 1;
                s
            } else {
                suggest
            };
            let mut f = Fsm::new(Ipv6cpPolicy::new(local, suggest), self.config.fsm);
            let mut o = f.open();
            o.extend(f.up());
            self.ipv6cp = Some(f);
            self.ncp_outputs(proto::IPV6CP, o, &mut out);
        }
        out
    }

    /// A random, non-zero interface identifier with the universal/local bit clear (RFC 4291
    /// §2.5.1: not derived from a hardware address).
    fn interface_id(&mut self) -> InterfaceId {
        let mut id = self.entropy.next_u64().to_be_bytes();
        id[0] &= !0x02;
        if id == [0; 8] {
            id[7] = 1;
        }
        id
    }

    /// IPV6CP is over without opening (rejected, not converging, closed by the client): with
    /// `require` the link ends, otherwise it carries on IPv4-only.
    fn ipv6cp_failed(&mut self, reason: Reason, out: &mut Vec<LinkOutput>) {
        self.ipv6cp = None;
        out.push(LinkOutput::CancelTimer(LinkTimer::Ipv6cp));
        if std::mem::take(&mut self.ipv6_up) {
            out.push(LinkOutput::Ipv6Down);
        }
        if self.config.ipv6 == Ipv6Policy::Require {
            out.extend(self.terminate_with(DownReason::Ipv6cp(reason), "IPv6 is required"));
        } else if self.ipv4_refused {
            out.extend(
                self.terminate_with(DownReason::Ipv6cp(reason), "neither IPv4 nor IPv6 is up"),
            );
        }
    }

    /// IPCP is over without opening (Protocol-Rejected, rejected options, not converging): with
    /// `ipv4 = prefer` and IPV6CP still running the link goes on towards IPv6 alone; otherwise
    /// it ends. Once the session is up on IPv4 it ends as before (its address is in use).
    fn ipcp_failed(&mut self, reason: Reason, out: &mut Vec<LinkOutput>) {
        if self.network_reported || self.config.ipv4 == Ipv4Policy::Require || self.ipv6cp.is_none()
        {
            out.extend(self.terminate(DownReason::Ipcp(reason)));
            return;
        }
        self.ipcp = None;
        self.ipcp_acked = false;
        self.ipv4_refused = true;
        out.push(LinkOutput::CancelTimer(LinkTimer::Ipcp));
        self.maybe_up(out);
    }

    /// CCP Reset-Request and Reset-Ack (RFC 1962 §2.1), meaningful once CCP agreed on MPPE.
    /// The client's Reset-Request: a stateful session's sender re-keys and sends its next
    /// packet flushed (the data path does it: [`LinkOutput::MppeReset`]), and the request is
    /// acked with its identifier. A Reset-Ack to ours needs nothing: the data path leaves its
    /// discard state on the flushed packet itself.
    fn ccp_reset(&mut self, p: &CpPacket<'_>, out: &mut Vec<LinkOutput>) {
        let Some(CcpOutcome::Mppe { stateful }) = self.ccp_outcome else {
            return;
        };
        if p.code == CCP_RESET_REQUEST {
            if stateful {
                out.push(LinkOutput::MppeReset);
            }
            out.push(send_cp(proto::CCP, CCP_RESET_ACK, p.identifier, p.data));
        }
    }

    /// Reports `Up` once the client may send data (our IPCP Ack is out, or IPCP refused and
    /// IPV6CP open) and CCP has settled (MPPE agreed, or plain allowed): with MPPE required, no
    /// user data before CCP opened.
    fn maybe_up(&mut self, out: &mut Vec<LinkOutput>) {
        let network = self.ipcp_acked || (self.ipv4_refused && self.ipv6_up);
        if self.network_reported || !network {
            return;
        }
        let Some(outcome) = self.ccp_outcome else {
            return;
        };
        self.network_reported = true;
        let mppe = match (outcome, self.mppe_keys) {
            (CcpOutcome::Mppe { stateful }, Some(keys)) => Some(MppeSession { keys, stateful }),
            _ => None,
        };
        out.push(LinkOutput::Up {
            negotiated: self.lcp.negotiated(),
            mppe,
            ipv4: !self.ipv4_refused,
        });
        if self.ipv4_refused && self.phase == Phase::Network {
            // No IPCP to open the link: it is open now, and keepalives start.
            self.phase = Phase::Opened;
            self.echo_unanswered = 0;
            out.push(LinkOutput::SetTimer(
                LinkTimer::Echo,
                self.config.echo_interval,
            ));
        }
    }

    /// CCP is over without agreeing (rejected, not converging): plain if the policy allows.
    fn ccp_failed(&mut self, out: &mut Vec<LinkOutput>) {
        let plain = self
            .ccp
            .as_ref()
            .map_or(self.config.mppe != MppePolicy::Require, |c| {
                c.negotiator.without_ccp().is_some()
            });
        self.ccp = None;
        out.push(LinkOutput::CancelTimer(LinkTimer::Ccp));
        if plain {
            self.ccp_outcome = Some(CcpOutcome::Plain);
            self.maybe_up(out);
        } else {
            out.extend(self.terminate_with(
                DownReason::MppeRefused {
                    why: "the client does not run CCP",
                },
                "MPPE-128 is required",
            ));
        }
    }

    /// The shell could not give the client an address (pool exhausted): terminate, saying why
    /// in the Terminate-Request.
    pub fn refuse_network(&mut self, reason: DownReason, message: &str) -> Vec<LinkOutput> {
        self.terminate_with(reason, message)
    }

    /// Administrative close (kill, shutdown): LCP Terminate, then Down(Closed).
    pub fn close(&mut self) -> Vec<LinkOutput> {
        self.terminate(DownReason::Closed)
    }

    fn terminate(&mut self, reason: DownReason) -> Vec<LinkOutput> {
        self.terminate_with(reason, "")
    }

    fn terminate_with(&mut self, reason: DownReason, message: &str) -> Vec<LinkOutput> {
        let mut out = Vec::new();
        if matches!(self.phase, Phase::Terminate | Phase::Dead) {
            return out;
        }
        self.down = Some(reason);
        self.phase = Phase::Terminate;
        let o = self.lcp.fsm.close_with_message(Reason::LocalClose, message);
        self.lcp_outputs(o, &mut out);
        if self.phase == Phase::Terminate && !self.lcp.fsm.state().timer_running() {
            // LCP was not far enough to send Terminate-Request: done at once.
            self.finish(&mut out);
        }
        out
    }

    pub fn timeout(&mut self, timer: LinkTimer) -> Vec<LinkOutput> {
        let mut out = Vec::new();
        match timer {
            LinkTimer::Lcp => {
                let o = self.lcp.fsm.timeout();
                self.lcp_outputs(o, &mut out);
            }
            LinkTimer::Auth => {
                if let Some(a) = self.auth.as_mut() {
                    let o = a.timeout();
                    self.auth_outputs(o, &mut out);
                }
            }
            LinkTimer::Ipcp => {
                if let Some(f) = self.ipcp.as_mut() {
                    let o = f.timeout();
                    self.ncp_outputs(proto::IPCP, o, &mut out);
                }
            }
            LinkTimer::Ccp => {
                if let Some(f) = self.ccp.as_mut() {
                    let o = f.timeout();
                    self.ncp_outputs(proto::CCP, o, &mut out);
                }
            }
            LinkTimer::Ipv6cp => {
                if let Some(f) = self.ipv6cp.as_mut() {
                    let o = f.timeout();
                    self.ncp_outputs(proto::IPV6CP, o, &mut out);
                }
            }
            LinkTimer::Echo if self.phase == Phase::Opened => {
                if self.echo_unanswered >= self.config.echo_failures {
                    out.extend(self.terminate(DownReason::EchoTimeout));
                    return out;
                }
                self.echo_unanswered += 1;
                self.echo_identifier = self.echo_identifier.wrapping_add(1);
                if let Output::Send {
                    code,
                    identifier,
                    data,
                } = self.lcp.echo_request(self.echo_identifier)
                {
                    out.push(send_cp(proto::LCP, code, identifier, &data));
                }
                out.push(LinkOutput::SetTimer(
                    LinkTimer::Echo,
                    self.config.echo_interval,
                ));
            }
            LinkTimer::Echo => {}
        }
        out
    }

    fn finish(&mut self, out: &mut Vec<LinkOutput>) {
        if self.phase == Phase::Dead {
            return;
        }
        self.phase = Phase::Dead;
        for t in [
            LinkTimer::Lcp,
            LinkTimer::Auth,
            LinkTimer::Ipcp,
            LinkTimer::Ccp,
            LinkTimer::Ipv6cp,
            LinkTimer::Echo,
        ] {
            out.push(LinkOutput::CancelTimer(t));
        }
        let reason = self.down.take().unwrap_or(DownReason::Closed);
        out.push(LinkOutput::Down(reason));
    }

    fn lcp_outputs(&mut self, outputs: Vec<Output>, out: &mut Vec<LinkOutput>) {
        for o in outputs {
            match o {
                Output::Send {
                    code,
                    identifier,
                    data,
                } => out.push(send_cp(proto::LCP, code, identifier, &data)),
                Output::StartTimer(d) => out.push(LinkOutput::SetTimer(LinkTimer::Lcp, d)),
                Output::StopTimer => out.push(LinkOutput::CancelTimer(LinkTimer::Lcp)),
                Output::Up => self.lcp_up(out),
                Output::Down(reason) => {
                    // Leaving Opened: whatever ran above LCP is gone.
                    if self.down.is_none() {
                        self.down = Some(self.reason_for(reason));
                    }
                    if self.phase != Phase::Terminate {
                        self.phase = Phase::Terminate;
                    }
                }
                Output::Finished(reason) => {
                    if self.down.is_none() {
                        self.down = Some(self.reason_for(reason));
                    }
                    self.finish(out);
                }
                Output::EchoReply(id) => {
                    if id == self.echo_identifier {
                        self.echo_unanswered = 0;
                    }
                }
                Output::ProtocolRejected(p) => {
                    // The client does not run CCP (or IPCP): stop that protocol, keep the link
                    // unless encryption is required.
                    if p == proto::CCP && self.ccp.is_some() {
                        self.ccp_failed(out);
                    }
                    if p == proto::IPV6CP && self.ipv6cp.is_some() {
                        self.ipv6cp_failed(Reason::Rejected, out);
                    }
                    if p == proto::IPCP && self.ipcp.is_some() {
                        self.ipcp_failed(Reason::Rejected, out);
                    }
                }
                Output::Started => {}
            }
        }
    }

    fn reason_for(&self, lcp_reason: Reason) -> DownReason {
        // A client that asked for MPPE and leaves after our CCP Configure-Reject leaves over it
        // (before the network came up: later it is an ordinary hang-up).
        if let Some(c) = &self.ccp
            && c.negotiator.client_offered_mppe
            && !self.network_reported
            && lcp_reason == Reason::PeerTerminated
        {
            return DownReason::MppeRequired {
                offered: c.negotiator.describe_client_mppe(),
            };
        }
        DownReason::Lcp(lcp_reason)
    }

    fn lcp_up(&mut self, out: &mut Vec<LinkOutput>) {
        let negotiated = self.lcp.negotiated();
        match negotiated.auth {
            Some(protocol) => {
                self.phase = Phase::Authenticate;
                let mut a = Authenticator::new(protocol, self.config.auth.clone());
                let challenge = self.entropy.bytes16();
                let id = self.entropy.next_u64() as u8;
                let o = a.start(&challenge, id);
                self.auth = Some(a);
                self.auth_outputs(o, out);
            }
            None if self.config.mppe == MppePolicy::Require => {
                out.extend(self.terminate_with(
                    DownReason::MppeRefused {
                        why: "no authentication, so no MPPE keys",
                    },
                    "MPPE-128 is required: authenticate with MS-CHAPv2",
                ));
            }
            None => {
                self.phase = Phase::AwaitAddress;
                out.push(LinkOutput::Authenticated {
                    user: None,
                    mppe: None,
                });
            }
        }
    }

    fn auth_outputs(&mut self, outputs: Vec<AuthOutput>, out: &mut Vec<LinkOutput>) {
        for o in outputs {
            match o {
                AuthOutput::Send { protocol, info } => {
                    out.push(LinkOutput::Send { protocol, info })
                }
                AuthOutput::StartTimer(d) => out.push(LinkOutput::SetTimer(LinkTimer::Auth, d)),
                AuthOutput::StopTimer => out.push(LinkOutput::CancelTimer(LinkTimer::Auth)),
                AuthOutput::Success { user, mppe: None }
                    if self.config.mppe == MppePolicy::Require =>
                {
                    // PAP and CHAP-MD5 give no keys: the session could never be encrypted.
                    self.auth = None;
                    tracing::info!(%user, "MPPE required but the method gives no keys");
                    out.extend(self.terminate_with(
                        DownReason::MppeRefused {
                            why: "authenticated without MS-CHAPv2, so no MPPE keys",
                        },
                        "MPPE-128 is required: authenticate with MS-CHAPv2",
                    ));
                }
                AuthOutput::Success { user, mppe } => {
                    self.phase = Phase::AwaitAddress;
                    self.mppe_keys = mppe;
                    // Authentication frames are only looked at in the Authenticate phase, so the
                    // authenticator (challenge, last reply) is done with: free it (memory per
                    // idle session counts at 100,000 sessions).
                    self.auth = None;
                    out.push(LinkOutput::Authenticated {
                        user: Some(user),
                        mppe,
                    });
                }
                AuthOutput::Failed { user, reason } => {
                    out.extend(self.terminate(DownReason::AuthFailed {
                        user,
                        failure: reason,
                    }));
                }
                AuthOutput::Verify(creds) => out.push(LinkOutput::Verify(creds)),
            }
        }
    }

    /// The verdict on credentials this link asked to have checked ([`LinkOutput::Verify`]).
    pub fn resolve_auth(&mut self, creds: Credentials, verdict: Verdict) -> Vec<LinkOutput> {
        let mut out = Vec::new();
        if self.phase != Phase::Authenticate {
            return out;
        }
        let next = self.entropy.bytes16();
        if let Some(a) = self.auth.as_mut() {
            let o = a.resolve(creds, verdict, next);
            self.auth_outputs(o, &mut out);
        }
        out
    }

    fn ncp_outputs(&mut self, protocol: u16, outputs: Vec<Output>, out: &mut Vec<LinkOutput>) {
        if protocol == proto::IPV6CP {
            return self.ipv6cp_outputs(outputs, out);
        }
        let timer = if protocol == proto::IPCP {
            LinkTimer::Ipcp
        } else {
            LinkTimer::Ccp
        };
        for o in outputs {
            match o {
                Output::Send {
                    code,
                    identifier,
                    data,
                } => {
                    out.push(send_cp(protocol, code, identifier, &data));
                    // Acking the client's IPCP request (its address is the assigned one, or we
                    // would have Nak'd) lets the client go up as soon as its own request is
                    // acked too, and send data at once: the data path must accept it from
                    // now, not only when our side's IPCP opens a round trip later.
                    if protocol == proto::IPCP && code == crate::wire::cp::code::CONFIGURE_ACK {
                        self.ipcp_acked = true;
                        self.maybe_up(out);
                    }
                }
                Output::StartTimer(d) => out.push(LinkOutput::SetTimer(timer, d)),
                Output::StopTimer => out.push(LinkOutput::CancelTimer(timer)),
                Output::Up if protocol == proto::IPCP => {
                    self.phase = Phase::Opened;
                    self.echo_unanswered = 0;
                    self.ipcp_acked = true;
                    self.maybe_up(out);
                    out.push(LinkOutput::SetTimer(
                        LinkTimer::Echo,
                        self.config.echo_interval,
                    ));
                }
                Output::Finished(reason) if protocol == proto::IPCP => {
                    self.ipcp_failed(reason, out);
                }
                Output::Up => {
                    // CCP opened: with MPPE both ways, or plain where the policy allows.
                    match self.ccp.as_ref().and_then(|c| c.negotiator.outcome()) {
                        Some(outcome) => {
                            self.ccp_outcome = Some(outcome);
                            self.maybe_up(out);
                        }
                        None => out.extend(self.terminate_with(
                            DownReason::MppeRefused {
                                why: "the client would not agree to MPPE-128",
                            },
                            "MPPE-128 is required",
                        )),
                    }
                }
                Output::Finished(_) if self.ccp_outcome.is_none() => self.ccp_failed(out),
                _ => {}
            }
        }
    }
}

impl Link {
    fn ipv6cp_outputs(&mut self, outputs: Vec<Output>, out: &mut Vec<LinkOutput>) {
        for o in outputs {
            match o {
                Output::Send {
                    code,
                    identifier,
                    data,
                } => out.push(send_cp(proto::IPV6CP, code, identifier, &data)),
                Output::StartTimer(d) => out.push(LinkOutput::SetTimer(LinkTimer::Ipv6cp, d)),
                Output::StopTimer => out.push(LinkOutput::CancelTimer(LinkTimer::Ipv6cp)),
                Output::Up => {
                    if let Some((local, peer)) =
                        self.ipv6cp.as_ref().and_then(|f| f.negotiator.agreed())
                    {
                        self.ipv6_up = true;
                        out.push(LinkOutput::Ipv6Up { local, peer });
                        self.maybe_up(out);
                    }
                }
                // The client renegotiates (or closes): no IPv6 until it opens again.
                Output::Down(_) if self.ipv6_up => {
                    self.ipv6_up = false;
                    out.push(LinkOutput::Ipv6Down);
                }
                Output::Finished(reason) => self.ipv6cp_failed(reason, out),
                _ => {}
            }
        }
    }
}

fn send_cp(protocol: u16, code: u8, identifier: u8, data: &[u8]) -> LinkOutput {
    LinkOutput::Send {
        protocol,
        info: CpPacket {
            code,
            identifier,
            data,
        }
        .to_bytes(),
    }
}

#[cfg(test)]
mod tests {
    use std::net::Ipv4Addr;

    use super::*;
    use crate::{
        auth::mschap,
        ppp::ccp::{MppePolicy, StatefulMppe},
        wire::cp::{code, parse_options},
    };

    const PPPD_LCP_CONFREQ: [u8; 20] = [
        1, 1, 0, 20, 2, 6, 0, 0, 0, 0, 5, 6, 0x3c, 0x5a, 0x1e, 0x47, 7, 2, 8, 2,
    ];
    const PEER_CHALLENGE: [u8; 16] = [7; 16];

    fn secret(user: &str) -> Option<Secret> {
        (user == "alice").then(|| Secret::Plain("s3cret".into()))
    }

    fn sent(out: &[LinkOutput], protocol: u16) -> Vec<Vec<u8>> {
        out.iter()
            .filter_map(|o| match o {
                LinkOutput::Send { protocol: p, info } if *p == protocol => Some(info.clone()),
                _ => None,
            })
            .collect()
    }

    fn ipcp_config() -> IpcpConfig {
        IpcpConfig {
            local: Ipv4Addr::new(10, 99, 0, 1),
            assigned: Ipv4Addr::new(10, 99, 0, 10),
            dns: [Some(Ipv4Addr::new(10, 99, 0, 53)), None],
            nbns: [None, None],
        }
    }

    fn ack_of(request: &[u8]) -> Vec<u8> {
        let mut a = request.to_vec();
        a[0] = code::CONFIGURE_ACK;
        a
    }

    fn ms_chap_v2_response(challenge_packet: &[u8], user: &str, password: &str) -> Vec<u8> {
        let mut challenge = [0u8; 16];
        challenge.copy_from_slice(&challenge_packet[5..21]);
        let nt = mschap::generate_nt_response(
            &challenge,
            &PEER_CHALLENGE,
            user.as_bytes(),
            &mschap::nt_password_hash(password),
        );
        let mut body = vec![49];
        body.extend_from_slice(&PEER_CHALLENGE);
        body.extend_from_slice(&[0; 8]);
        body.extend_from_slice(&nt);
        body.push(0);
        body.extend_from_slice(user.as_bytes());
        CpPacket {
            code: 2,
            identifier: challenge_packet[1],
            data: &body,
        }
        .to_bytes()
    }

    /// Drives a link through LCP and MS-CHAPv2 as pppd would; returns it at AwaitAddress.
    fn authenticated(password: &str) -> (Link, Vec<LinkOutput>) {
        let (mut link, out) = Link::new(LinkConfig::default(), 42);
        let our_req = sent(&out, proto::LCP).remove(0);
        let out = link.receive(proto::LCP, &PPPD_LCP_CONFREQ, secret);
        assert_eq!(sent(&out, proto::LCP)[0][0], code::CONFIGURE_ACK);
        let out = link.receive(proto::LCP, &ack_of(&our_req), secret);
        assert_eq!(link.phase(), Phase::Authenticate);
        let challenge = sent(&out, proto::CHAP).remove(0);
        let out = link.receive(
            proto::CHAP,
            &ms_chap_v2_response(&challenge, "alice", password),
            secret,
        );
        (link, out)
    }

    #[test]
    fn full_conversation_then_echo_timeout() {
        let (mut link, out) = authenticated("s3cret");
        assert!(
            matches!(&out[..], [.., LinkOutput::Authenticated { user: Some(u), mppe: Some(_) }] if u == "alice"),
            "{out:?}"
        );
        assert_eq!(link.phase(), Phase::AwaitAddress);

        let out = link.start_network(ipcp_config());
        let our_ipcp = sent(&out, proto::IPCP).remove(0);
        assert_eq!(sent(&out, proto::CCP).len(), 1);
        // pppd: VJ + 0.0.0.0 → Reject VJ; 0.0.0.0 → Nak 10.99.0.10; then Ack.
        let r = link.receive(
            proto::IPCP,
            &[1, 1, 0, 16, 2, 6, 0, 0x2d, 0x0f, 1, 3, 6, 0, 0, 0, 0],
            secret,
        );
        assert_eq!(sent(&r, proto::IPCP)[0][0], code::CONFIGURE_REJECT);
        let r = link.receive(proto::IPCP, &[1, 2, 0, 10, 3, 6, 0, 0, 0, 0], secret);
        let nak = sent(&r, proto::IPCP).remove(0);
        assert_eq!(nak[0], code::CONFIGURE_NAK);
        assert_eq!(parse_options(&nak[4..]).unwrap()[0].value, &[10, 99, 0, 10]);
        let r = link.receive(proto::IPCP, &[1, 3, 0, 10, 3, 6, 10, 99, 0, 10], secret);
        assert_eq!(sent(&r, proto::IPCP)[0][0], code::CONFIGURE_ACK);
        // Up with our Ack of the client's address: the client may send data from now on.
        assert!(
            r.iter()
                .any(|o| matches!(o, LinkOutput::Up { negotiated, .. } if negotiated.peer_pfc)),
            "{r:?}"
        );
        let r = link.receive(proto::IPCP, &ack_of(&our_ipcp), secret);
        assert!(
            !r.iter().any(|o| matches!(o, LinkOutput::Up { .. })),
            "Up once: {r:?}"
        );
        assert_eq!(link.phase(), Phase::Opened);

        // IPV6CP is protocol-rejected; CCP with MPPE is rejected.
        let r = link.receive(
            proto::IPV6CP,
            &[1, 1, 0, 14, 1, 10, 1, 2, 3, 4, 5, 6, 7, 8],
            secret,
        );
        assert_eq!(&sent(&r, proto::LCP)[0][..1], &[code::PROTOCOL_REJECT]);
        let r = link.receive(proto::CCP, &[1, 1, 0, 10, 18, 6, 1, 0, 0, 0x40], secret);
        assert_eq!(sent(&r, proto::CCP)[0][0], code::CONFIGURE_REJECT);

        // Keepalive: unanswered echoes end the link.
        let mut echoes = 0;
        let mut down = None;
        for _ in 0..10 {
            let o = link.timeout(LinkTimer::Echo);
            echoes += sent(&o, proto::LCP)
                .iter()
                .filter(|p| p[0] == code::ECHO_REQUEST)
                .count();
            if sent(&o, proto::LCP)
                .iter()
                .any(|p| p[0] == code::TERMINATE_REQUEST)
            {
                let o = link.receive(proto::LCP, &[6, 2, 0, 4], secret);
                down = o.into_iter().find_map(|x| match x {
                    LinkOutput::Down(r) => Some(r),
                    _ => None,
                });
                break;
            }
        }
        assert_eq!(echoes, 4);
        assert_eq!(down, Some(DownReason::EchoTimeout));
        assert_eq!(link.phase(), Phase::Dead);
    }

    /// With MPPE required the network is reported up only once CCP agreed on MPPE too (no user
    /// data before it), carrying the MS-CHAPv2 keys; a client that will not is refused.
    #[test]
    fn mppe_required_holds_the_network_until_ccp_agrees() {
        for client_agrees in [true, false] {
            let config = LinkConfig {
                mppe: MppePolicy::Require,
                ..LinkConfig::default()
            };
            let (mut link, out) = Link::new(config, 42);
            let our_req = sent(&out, proto::LCP).remove(0);
            link.receive(proto::LCP, &PPPD_LCP_CONFREQ, secret);
            let out = link.receive(proto::LCP, &ack_of(&our_req), secret);
            let challenge = sent(&out, proto::CHAP).remove(0);
            let out = link.receive(
                proto::CHAP,
                &ms_chap_v2_response(&challenge, "alice", "s3cret"),
                secret,
            );
            let keys = out.iter().find_map(|o| match o {
                LinkOutput::Authenticated { mppe, .. } => *mppe,
                _ => None,
            });
            assert!(keys.is_some());
            let out = link.start_network(ipcp_config());
            let our_ipcp = sent(&out, proto::IPCP).remove(0);
            let our_ccp = sent(&out, proto::CCP).remove(0);
            assert_eq!(
                &our_ccp[4..],
                &[18, 6, 1, 0, 0, 0x40],
                "we ask for stateless 128"
            );
            // IPCP completes first: no Up yet.
            let mut r = link.receive(proto::IPCP, &[1, 3, 0, 10, 3, 6, 10, 99, 0, 10], secret);
            r.extend(link.receive(proto::IPCP, &ack_of(&our_ipcp), secret));
            assert!(
                !r.iter().any(|o| matches!(o, LinkOutput::Up { .. })),
                "{r:?}"
            );
            let r = if client_agrees {
                let mut r = link.receive(proto::CCP, &[1, 1, 0, 10, 18, 6, 1, 0, 0, 0x40], secret);
                r.extend(link.receive(proto::CCP, &ack_of(&our_ccp), secret));
                r
            } else {
                // pppd with nomppe: CCP is Protocol-Rejected.
                let mut rej = vec![8, 9, 0, 0, 0x80, 0xfd];
                rej.extend_from_slice(&our_ccp);
                let len = rej.len() as u16;
                rej[2..4].copy_from_slice(&len.to_be_bytes());
                link.receive(proto::LCP, &rej, secret)
            };
            let up = r.iter().find_map(|o| match o {
                LinkOutput::Up { mppe, .. } => Some(*mppe),
                _ => None,
            });
            if client_agrees {
                let m = up.flatten().expect("up with MPPE");
                assert_eq!((Some(m.keys), m.stateful), (keys, false));
            } else {
                assert_eq!(up, None, "{r:?}");
                let term = sent(&r, proto::LCP).remove(0);
                assert_eq!(term[0], code::TERMINATE_REQUEST);
                assert!(String::from_utf8_lossy(&term[4..]).contains("MPPE-128 is required"));
                assert!(matches!(
                    link.terminating_because(),
                    Some(DownReason::MppeRefused { .. })
                ));
            }
        }
    }

    /// `mppe_stateful = "force"` against pppd with `mppe-stateful`: our Nak clears the H bit,
    /// the session comes up stateful, and the CCP reset exchange runs both ways: an MPPE packet
    /// handed up by the data path (a loss) → our Reset-Request; the client's Reset-Request → the
    /// data path re-keys (MppeReset) and the request is acked with its identifier.
    #[test]
    fn forced_stateful_mppe_and_the_reset_exchange() {
        let config = LinkConfig {
            mppe: MppePolicy::Require,
            mppe_stateful: StatefulMppe::Force,
            ..LinkConfig::default()
        };
        let (mut link, out) = Link::new(config, 42);
        let our_req = sent(&out, proto::LCP).remove(0);
        link.receive(proto::LCP, &PPPD_LCP_CONFREQ, secret);
        let out = link.receive(proto::LCP, &ack_of(&our_req), secret);
        let challenge = sent(&out, proto::CHAP).remove(0);
        link.receive(
            proto::CHAP,
            &ms_chap_v2_response(&challenge, "alice", "s3cret"),
            secret,
        );
        // Before CCP opened, an MPPE packet (racing) is dropped, not Protocol-Rejected.
        assert!(
            link.receive(proto::COMPRESSED, &[0x90, 0, 1, 2], secret)
                .is_empty()
        );
        let out = link.start_network(ipcp_config());
        let our_ipcp = sent(&out, proto::IPCP).remove(0);
        let our_ccp = sent(&out, proto::CCP).remove(0);
        assert_eq!(
            &our_ccp[4..],
            &[18, 6, 0, 0, 0, 0x40],
            "we ask for stateful 128"
        );
        link.receive(proto::IPCP, &[1, 3, 0, 10, 3, 6, 10, 99, 0, 10], secret);
        link.receive(proto::IPCP, &ack_of(&our_ipcp), secret);
        // pppd asks for stateless first: Nak'd to stateful; it asks again without H.
        let r = link.receive(proto::CCP, &[1, 1, 0, 10, 18, 6, 1, 0, 0, 0x40], secret);
        assert_eq!(sent(&r, proto::CCP)[0], [3, 1, 0, 10, 18, 6, 0, 0, 0, 0x40]);
        let mut r = link.receive(proto::CCP, &[1, 2, 0, 10, 18, 6, 0, 0, 0, 0x40], secret);
        r.extend(link.receive(proto::CCP, &ack_of(&our_ccp), secret));
        let m = r
            .iter()
            .find_map(|o| match o {
                LinkOutput::Up { mppe, .. } => *mppe,
                _ => None,
            })
            .expect("up with MPPE");
        assert!(m.stateful);
        // A loss seen by the data path: a Reset-Request, each time it hands one up.
        for _ in 0..2 {
            let r = link.receive(proto::COMPRESSED, &[0x10, 7, 1, 2], secret);
            let req = sent(&r, proto::CCP).remove(0);
            assert_eq!((req[0], &req[2..]), (14, &[0u8, 4][..]));
        }
        // The client's Reset-Request: the data path re-keys, and the Ack carries its identifier.
        let r = link.receive(proto::CCP, &[14, 77, 0, 4], secret);
        assert!(r.contains(&LinkOutput::MppeReset), "{r:?}");
        assert_eq!(sent(&r, proto::CCP)[0], [15, 77, 0, 4]);
        // A Reset-Ack needs nothing, and is not Code-Rejected.
        assert!(link.receive(proto::CCP, &[15, 5, 0, 4], secret).is_empty());
    }

    #[test]
    fn answered_echoes_keep_the_link() {
        let (mut link, _) = authenticated("s3cret");
        let out = link.start_network(ipcp_config());
        let our_ipcp = sent(&out, proto::IPCP).remove(0);
        link.receive(proto::IPCP, &[1, 3, 0, 10, 3, 6, 10, 99, 0, 10], secret);
        link.receive(proto::IPCP, &ack_of(&our_ipcp), secret);
        for _ in 0..10 {
            let o = link.timeout(LinkTimer::Echo);
            let req = sent(&o, proto::LCP).remove(0);
            assert_eq!(req[0], code::ECHO_REQUEST);
            link.receive(
                proto::LCP,
                &[code::ECHO_REPLY, req[1], 0, 8, 0x3c, 0x5a, 0x1e, 0x47],
                secret,
            );
        }
        assert_eq!(link.phase(), Phase::Opened);
    }

    #[test]
    fn wrong_password_ends_with_auth_failed() {
        let (mut link, mut out) = authenticated("wrong");
        // E=691 R=1 with a fresh challenge, answered (wrongly) with identifier + 1, until the
        // authenticator gives up with R=0 and LCP terminates.
        let mut failures = 0;
        for _ in 0..5 {
            if sent(&out, proto::LCP)
                .iter()
                .any(|p| p[0] == code::TERMINATE_REQUEST)
            {
                break;
            }
            let failure = sent(&out, proto::CHAP).remove(0);
            assert_eq!(failure[0], 4);
            failures += 1;
            let text = String::from_utf8_lossy(&failure[4..]).into_owned();
            assert!(text.starts_with("E=691 R=1 C="), "{text}");
            let hex = &text[text.find("C=").unwrap() + 2..][..32];
            let mut challenge = vec![1, failure[1].wrapping_add(1), 0, 0, 16];
            challenge
                .extend((0..16).map(|i| u8::from_str_radix(&hex[2 * i..2 * i + 2], 16).unwrap()));
            out = link.receive(
                proto::CHAP,
                &ms_chap_v2_response(&challenge, "alice", "still wrong"),
                secret,
            );
        }
        assert_eq!(failures, 2, "max_attempts 3: two retries, then the end");
        assert!(String::from_utf8_lossy(&sent(&out, proto::CHAP)[0][4..]).starts_with("E=691 R=0"));
        let o = link.receive(proto::LCP, &[6, 2, 0, 4], secret);
        assert!(
            o.contains(&LinkOutput::Down(DownReason::AuthFailed {
                user: Some("alice".into()),
                failure: Failure::BadCredentials
            })),
            "{o:?}"
        );
    }

    #[test]
    fn client_requiring_mppe_leaves_with_a_clear_reason() {
        let (mut link, _) = authenticated("s3cret");
        link.start_network(ipcp_config());
        link.receive(proto::CCP, &[1, 1, 0, 10, 18, 6, 1, 0, 0, 0x40], secret);
        // pppd: "MPPE required but peer refused" → LCP Terminate-Request.
        let o = link.receive(proto::LCP, &[5, 9, 0, 4], secret);
        assert_eq!(sent(&o, proto::LCP)[0][0], code::TERMINATE_ACK);
        let o = link.timeout(LinkTimer::Lcp);
        assert!(
            o.contains(&LinkOutput::Down(DownReason::MppeRequired {
                offered: "stateless 128-bit".into()
            })),
            "{o:?}"
        );
    }

    #[test]
    fn administrative_close_and_garbage() {
        let (mut link, _) = authenticated("s3cret");
        for (p, junk) in [
            (proto::LCP, &[1u8, 2][..]),
            (proto::CHAP, &[2, 0, 0, 99]),
            (proto::IPCP, &[1]),
            (0x1234, &[0]),
        ] {
            let _ = link.receive(p, junk, secret);
        }
        let o = link.close();
        assert!(
            sent(&o, proto::LCP)
                .iter()
                .any(|p| p[0] == code::TERMINATE_REQUEST)
        );
        let o = link.receive(proto::LCP, &[6, 2, 0, 4], secret);
        assert!(o.contains(&LinkOutput::Down(DownReason::Closed)), "{o:?}");
        assert!(link.close().is_empty());
    }
}
