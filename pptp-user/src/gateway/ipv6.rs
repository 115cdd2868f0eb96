//! IPv6 on a session: once IPV6CP opens, a /64 from the session's pool6 is routed to the
//! client and announced to it by Router Advertisement (unsolicited every `ra_interval`, and in
//! answer to its solicitations), so the client configures its addresses by SLAAC. The data path
//! carries the client's traffic from that prefix; what reaches the core here is the link's own
//! traffic (solicitations, neighbour discovery, DHCPv6), of which Router Solicitations are
//! answered, DHCPv6 served (`dhcpv6.rs`) and the rest dropped.

use std::{net::Ipv6Addr, time::Duration};

use super::{Command, EndReason, Gateway, Sess, SessionId, TimerKey};
use crate::{
    pool6::{Pools6, Prefix6, network},
    ppp::{ipv6cp::InterfaceId, link::Ipv6Policy},
    wire::icmpv6::{self, ALL_NODES, RouterAdvert},
};

/// `[ipv6]`: the pool sessions draw their /64 from, and what the advertisements say.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Ipv6Config {
    pub pool: String,
    /// Unsolicited Router Advertisements this often (RFC 4861 MaxRtrAdvInterval).
    pub ra_interval: Duration,
    /// How long the client may use the gateway as its default router.
    pub router_lifetime: Duration,
    /// The prefix's valid and preferred lifetimes.
    pub valid_lifetime: Duration,
    pub preferred_lifetime: Duration,
    /// Recursive DNS servers for the RDNSS option (RFC 8106).
    pub dns: Vec<Ipv6Addr>,
    /// Where DHCPv6 prefix delegation takes its /64s (none: IA_PDs get NoPrefixAvail).
    pub delegated_pool: Option<String>,
    /// Our DHCPv6 DUID (RFC 8415 §11), stable across restarts.
    pub server_duid: Vec<u8>,
}

impl Default for Ipv6Config {
    fn default() -> Self {
        Self {
            pool: "default".into(),
            ra_interval: Duration::from_secs(200),
            router_lifetime: Duration::from_secs(1800),
            valid_lifetime: Duration::from_secs(86_400),
            preferred_lifetime: Duration::from_secs(14_400),
            dns: Vec::new(),
            delegated_pool: None,
            // DUID-UUID (RFC 6355) of nothing in particular; the shell puts the machine's in.
            server_duid: vec![
                0, 4, 0x70, 0x70, 0x74, 0x70, 0x67, 0x77, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
            ],
        }
    }
}

/// A session's IPv6 state in the core.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub(super) struct SessionV6 {
    /// IPV6CP's identifiers (ours, the client's) while it is open.
    pub ids: Option<(InterfaceId, InterfaceId)>,
    /// The leased /64 (kept across an IPV6CP renegotiation, released when the session ends).
    pub prefix: Option<[u8; 8]>,
    /// The prefix is routed, programmed and advertised.
    pub routed: bool,
    /// A solicited advertisement went out less than 3 s ago.
    pub quiet: bool,
    /// The DHCPv6-delegated prefix.
    pub delegated: super::dhcpv6::Delegated,
}

/// RFC 4861 §10: MIN_DELAY_BETWEEN_RAS.
const QUIET: Duration = Duration::from_secs(3);

fn link_local(id: InterfaceId) -> Ipv6Addr {
    let mut o = [0u8; 16];
    o[0] = 0xfe;
    o[1] = 0x80;
    o[8..].copy_from_slice(&id);
    Ipv6Addr::from(o)
}

fn secs(d: Duration) -> u32 {
    u32::try_from(d.as_secs()).unwrap_or(u32::MAX)
}

impl Gateway {
    /// The prefix pools (`[[pool6]]`), replacing the current ones; live sessions' prefixes are
    /// adopted so they are never handed out twice.
    pub fn set_pools6(&mut self, mut pools: Pools6) {
        for s in self.sessions.values() {
            if let Some(p) = s.ipv6.prefix {
                pools.adopt(p);
            }
        }
        self.pools6 = pools;
    }

    pub fn leased6(&self) -> usize {
        self.pools6.leased()
    }

    /// IPV6CP opened: lease the session's /64 (once), and go live if the session is up already
    /// (an IPv6-only session goes up right after, and live with it).
    pub(super) fn ipv6_up(
        &mut self,
        sid: SessionId,
        local: InterfaceId,
        peer: InterfaceId,
        out: &mut Vec<Command>,
    ) {
        let Some(s) = self.sessions.get_mut(&sid) else {
            return;
        };
        s.ipv6.ids = Some((local, peer));
        if s.ipv6.prefix.is_none() {
            // RADIUS's Framed-IPv6-Prefix, then its Framed-IPv6-Pool, then the default pool6.
            let got = match (
                s.authorization.framed_ipv6_prefix,
                &s.authorization.framed_ipv6_pool,
            ) {
                (Some(p), _) => self.pools6.allocate_specific(p).map(|()| p),
                (None, Some(pool)) => self.pools6.allocate64(pool),
                (None, None) => self.pools6.allocate64(&self.config.ipv6.pool),
            };
            match got {
                Ok(p) => s.ipv6.prefix = Some(p),
                Err(e) => {
                    tracing::warn!(session = sid, user = ?s.user, error = %e, "no IPv6 prefix for the client");
                    // Without IPv6 the session would carry nothing when IPv6 is required, or
                    // when it is all the client runs.
                    if self.config.link.ipv6 == Ipv6Policy::Require || s.link.ipv4_refused() {
                        let o = s
                            .link
                            .refuse_network(crate::ppp::link::DownReason::Closed, &e.to_string());
                        self.pending.insert(sid, EndReason::PoolExhausted);
                        self.link_outputs(sid, o, out);
                    }
                    return;
                }
            }
        }
        self.ipv6_ready(sid, out);
    }

    /// The session is up (on IPv4, or IPv6-only) and IPV6CP is up with a prefix: route it,
    /// program it, advertise it.
    pub(super) fn ipv6_ready(&mut self, sid: SessionId, out: &mut Vec<Command>) {
        let Some(s) = self.sessions.get_mut(&sid) else {
            return;
        };
        let (Some(prefix), Some(_)) = (s.ipv6.prefix, s.ipv6.ids) else {
            return;
        };
        if !s.routed || s.ipv6.routed {
            return;
        }
        s.ipv6.routed = true;
        s.map.prefix6 = prefix;
        out.push(Command::ProjectRoute6 {
            session: sid,
            prefix: Prefix6::slash64(prefix),
        });
        out.push(Command::ProgramSession(s.map));
        tracing::info!(session = sid, prefix = %format!("{}/64", network(prefix)), "IPv6 up");
        self.advertise(sid, true, out);
        if let Some(r) = self.record(sid) {
            out.push(Command::Rejournal(Box::new(r)));
        }
    }

    /// IPV6CP went down with the link still up: the prefix stops being routed (it stays
    /// leased to the session in case IPV6CP opens again).
    pub(super) fn ipv6_down(&mut self, sid: SessionId, out: &mut Vec<Command>) {
        let Some(s) = self.sessions.get_mut(&sid) else {
            return;
        };
        s.ipv6.ids = None;
        self.undelegate(sid, out);
        let Some(s) = self.sessions.get_mut(&sid) else {
            return;
        };
        if !std::mem::take(&mut s.ipv6.routed) {
            return;
        }
        let prefix = std::mem::take(&mut s.map.prefix6);
        out.push(Command::Unprogram6 { prefix });
        out.push(Command::ProgramSession(s.map));
        out.push(Command::WithdrawRoute6 {
            prefix: Prefix6::slash64(prefix),
        });
        out.push(Command::CancelTimer(TimerKey::RouterAdvert(sid)));
        if let Some(r) = self.record(sid) {
            out.push(Command::Rejournal(Box::new(r)));
        }
    }

    /// The session ended (it is out of the tables already): route and lease.
    pub(super) fn ipv6_end(&mut self, s: &Sess, out: &mut Vec<Command>) {
        if let Some(p) = s.ipv6.prefix {
            if s.ipv6.routed {
                out.push(Command::WithdrawRoute6 {
                    prefix: Prefix6::slash64(p),
                });
            }
            self.pools6.release(p);
        }
        if let Some(p) = s.ipv6.delegated.prefix {
            if s.ipv6.delegated.bound {
                out.push(Command::WithdrawRoute6 { prefix: p });
            }
            self.pools6.release(p.first8());
        }
    }

    /// A Router Advertisement to the session; `periodic` re-arms the unsolicited timer.
    pub(super) fn advertise(&mut self, sid: SessionId, periodic: bool, out: &mut Vec<Command>) {
        let Some(s) = self.sessions.get(&sid) else {
            return;
        };
        let (Some(prefix), Some((local, _)), true) = (s.ipv6.prefix, s.ipv6.ids, s.ipv6.routed)
        else {
            return;
        };
        let c = &self.config.ipv6;
        let ra = RouterAdvert {
            src: link_local(local),
            dst: ALL_NODES,
            router_lifetime: u16::try_from(c.router_lifetime.as_secs()).unwrap_or(9000),
            prefix: network(prefix),
            valid_lifetime: secs(c.valid_lifetime),
            preferred_lifetime: secs(c.preferred_lifetime),
            mtu: u32::from(s.map.mtu),
            dns: c.dns.clone(),
            dns_lifetime: secs(c.ra_interval * 3),
        };
        out.push(Command::SendIpv6 {
            prefix,
            packet: ra.to_packet(),
        });
        self.stats.router_adverts += 1;
        if periodic {
            out.push(Command::SetTimer(
                TimerKey::RouterAdvert(sid),
                c.ra_interval,
            ));
        }
    }

    /// An IPv6 packet the data path handed up: the link's own traffic. A Router Solicitation
    /// is answered (at most every 3 s); everything else is dropped here.
    pub(super) fn ipv6_from_client(&mut self, sid: SessionId, info: &[u8], out: &mut Vec<Command>) {
        let Some(s) = self.sessions.get_mut(&sid) else {
            return;
        };
        // On an encrypted session the data path decrypted the packet in place and relabelled
        // the frame: the MPPE header and the inner PPP protocol (1 or 2 bytes) come first.
        let packet = if s.map.mode == pptp_common::session::MODE_MPPE {
            match info {
                [_, _, 0x57, rest @ ..] | [_, _, 0x00, 0x57, rest @ ..] => rest,
                _ => {
                    self.stats.ipv6_slowpath_dropped += 1;
                    return;
                }
            }
        } else {
            info
        };
        if packet.get(6) == Some(&pptp_common::headers::IPPROTO_UDP) {
            let Some((local, _)) = s.ipv6.ids.filter(|_| s.ipv6.routed) else {
                self.stats.ipv6_slowpath_dropped += 1;
                return;
            };
            return self.dhcpv6_from_client(sid, packet, link_local(local), out);
        }
        if icmpv6::router_solicitation(packet).is_none() || !s.ipv6.routed {
            self.stats.ipv6_slowpath_dropped += 1;
            return;
        }
        self.stats.router_solicitations += 1;
        if std::mem::replace(&mut s.ipv6.quiet, true) {
            return;
        }
        out.push(Command::SetTimer(TimerKey::RouterAdvertQuiet(sid), QUIET));
        self.advertise(sid, false, out);
    }
}
