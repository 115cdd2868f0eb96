//! DHCPv6 prefix delegation (RFC 8415 IA_PD) on a session's link: a client behind which a
//! network sits (a CPE router dialling PPTP) asks for a prefix, and gets a /64 from
//! `[ipv6] delegated_pool` (or RADIUS's Delegated-IPv6-Prefix), routed to the session behind
//! its link /64. The server is stateless but for the binding, which lives with the session:
//! Solicit → Advertise (Reply with Rapid Commit), Request/Renew/Rebind → Reply (bound: routed
//! and programmed), Release → Reply (unbound, lease kept until the session ends),
//! Information-request → Reply (DNS). Addresses (IA_NA) are answered NoAddrsAvail: SLAAC
//! gives those.

use std::net::Ipv6Addr;

use super::{Command, Gateway, SessionId};
use crate::{
    pool6::Prefix6,
    wire::dhcpv6::{
        self, ADVERTISE, Delegation, INFORMATION_REQUEST, Message, OPT_CLIENTID, OPT_DNS_SERVERS,
        OPT_RAPID_COMMIT, OPT_SERVERID, REBIND, RELEASE, RENEW, REPLY, REQUEST, Reply, SOLICIT,
        STATUS_NO_ADDRS_AVAIL, STATUS_NO_BINDING, STATUS_NO_PREFIX_AVAIL, STATUS_SUCCESS,
    },
};

/// A session's delegation.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub(super) struct Delegated {
    /// The leased prefix (from the first Solicit or Request, kept until the session ends).
    pub prefix: Option<Prefix6>,
    /// The IA it was given to; the prefix is routed and programmed while it is bound.
    pub iaid: Option<u32>,
    pub bound: bool,
    /// Answers sent since the last periodic Router Advertisement (see [`ANSWERS_PER_INTERVAL`]).
    pub answers: u32,
}

/// A session gets at most this many DHCPv6 answers per `ra_interval` (the periodic RA resets
/// the count): a client needs a handful (Solicit, Request, a Renew per T1, retransmissions),
/// and one sending as fast as it can must not make us answer as fast.
pub(super) const ANSWERS_PER_INTERVAL: u32 = 32;

impl Gateway {
    /// A DHCPv6 message from the client's link (`src` its link-local address); answered from
    /// `ours`, our link-local address. Invalid or not-for-us messages are dropped (§16).
    pub(super) fn dhcpv6_from_client(
        &mut self,
        sid: SessionId,
        packet: &[u8],
        ours: Ipv6Addr,
        out: &mut Vec<Command>,
    ) {
        let (src, dst, msg) = match dhcpv6::from_client(packet) {
            Ok(x) => x,
            Err(e) => return self.dhcpv6_drop(sid, &e.to_string()),
        };
        let m = match Message::parse(msg) {
            Ok(m) => m,
            Err(e) => return self.dhcpv6_drop(sid, &e.to_string()),
        };
        let duid = self.config.ipv6.server_duid.clone();
        if !(src.is_unicast_link_local() && (dst == dhcpv6::ALL_SERVERS || dst == ours)) {
            return self.dhcpv6_drop(sid, "not between link-local addresses");
        }
        // §16: Solicit, Rebind and Information-request carry no Server ID (or, for the last,
        // maybe ours); Request, Renew and Release carry ours; all but Information-request a
        // Client ID.
        let server_ok = match (m.kind, m.server_id()) {
            (SOLICIT | REBIND, None) => true,
            (INFORMATION_REQUEST, s) => s.is_none_or(|s| s == duid),
            (REQUEST | RENEW | RELEASE, Some(s)) => s == duid,
            _ => false,
        };
        if !server_ok || (m.kind != INFORMATION_REQUEST && m.client_id().is_none()) {
            return self.dhcpv6_drop(sid, "server or client identifier missing or not ours");
        }
        let ia_pds = match m.ia_pds() {
            Ok(i) => i,
            Err(e) => return self.dhcpv6_drop(sid, &e.to_string()),
        };
        let rapid = m.kind == SOLICIT && m.rapid_commit();
        let kind = if m.kind == SOLICIT && !rapid {
            ADVERTISE
        } else {
            REPLY
        };
        let mut r = Reply::new(kind, m.xid).option(OPT_SERVERID, &duid);
        if let Some(c) = m.client_id() {
            r = r.option(OPT_CLIENTID, c);
        }
        if rapid {
            r = r.option(OPT_RAPID_COMMIT, &[]);
        }
        match m.kind {
            INFORMATION_REQUEST => {}
            RELEASE => {
                self.undelegate(sid, out);
                r = r.status(STATUS_SUCCESS, "released");
            }
            _ => {
                let commit = rapid || matches!(m.kind, REQUEST | RENEW | REBIND);
                for (i, ia) in ia_pds.iter().enumerate() {
                    // One prefix a session, to its first IA (or to the IA already bound).
                    let given =
                        self.delegation(sid, ia.iaid, i == 0, matches!(m.kind, SOLICIT | REQUEST));
                    let status = if matches!(m.kind, RENEW | REBIND) {
                        (STATUS_NO_BINDING, "no binding for this IA")
                    } else {
                        (STATUS_NO_PREFIX_AVAIL, "no prefix for this IA")
                    };
                    r = r.ia_pd(ia.iaid, given.as_ref(), status);
                    if given.is_some() && commit {
                        self.bind(sid, ia.iaid, out);
                    }
                }
                for iaid in m.ia_nas() {
                    r = r.ia_na_status(iaid, STATUS_NO_ADDRS_AVAIL, "addresses by SLAAC");
                }
            }
        }
        let dns = &self.config.ipv6.dns;
        if !dns.is_empty() && m.requests(OPT_DNS_SERVERS) {
            let v: Vec<u8> = dns.iter().flat_map(|d| d.octets()).collect();
            r = r.option(OPT_DNS_SERVERS, &v);
        }
        let Some(s) = self.sessions.get_mut(&sid) else {
            return;
        };
        if s.ipv6.delegated.answers >= ANSWERS_PER_INTERVAL {
            return self.dhcpv6_drop(sid, "over the session's answer budget");
        }
        s.ipv6.delegated.answers += 1;
        self.stats.dhcpv6_replies += 1;
        out.push(Command::SendIpv6 {
            prefix: s.map.prefix6,
            packet: dhcpv6::to_client(ours, src, &r.into_bytes()),
        });
    }

    fn dhcpv6_drop(&mut self, sid: SessionId, why: &str) {
        self.stats.ipv6_slowpath_dropped += 1;
        tracing::debug!(session = sid, why, "DHCPv6 message dropped");
    }

    /// The prefix for IA `iaid`, leasing one if `lease` allows and the session has none.
    fn delegation(
        &mut self,
        sid: SessionId,
        iaid: u32,
        first: bool,
        lease: bool,
    ) -> Option<Delegation> {
        let pool = self.config.ipv6.delegated_pool.clone();
        let s = self.sessions.get_mut(&sid)?;
        let pd = &mut s.ipv6.delegated;
        if pd.iaid.is_some_and(|bound| bound != iaid) || (pd.iaid.is_none() && !first) {
            return None;
        }
        if pd.prefix.is_none() && lease {
            let got = match (s.authorization.delegated_ipv6_prefix, pool) {
                (Some(p), _) => self.pools6.allocate_specific(p.first8()).map(|()| p),
                (None, Some(pool)) => self.pools6.allocate(&pool),
                (None, None) => return None,
            };
            match got {
                Ok(p) => pd.prefix = Some(p),
                Err(e) => {
                    tracing::warn!(session = sid, error = %e, "no prefix to delegate");
                    return None;
                }
            }
        }
        let c = &self.config.ipv6;
        let p = pd.prefix?;
        Some(Delegation {
            prefix: p.network,
            len: p.len,
            preferred: u32::try_from(c.preferred_lifetime.as_secs()).unwrap_or(u32::MAX),
            valid: u32::try_from(c.valid_lifetime.as_secs()).unwrap_or(u32::MAX),
        })
    }

    /// The delegated prefix is the client's: routed to it and taken from it as a source.
    fn bind(&mut self, sid: SessionId, iaid: u32, out: &mut Vec<Command>) {
        let Some(s) = self.sessions.get_mut(&sid) else {
            return;
        };
        let Some(prefix) = s.ipv6.delegated.prefix else {
            return;
        };
        s.ipv6.delegated.iaid = Some(iaid);
        if std::mem::replace(&mut s.ipv6.delegated.bound, true) || !s.ipv6.routed {
            return;
        }
        s.map.delegated6 = prefix.first8();
        s.map.delegated6_len = prefix.len;
        out.push(Command::ProjectRoute6 {
            session: sid,
            prefix,
        });
        out.push(Command::ProgramSession(s.map));
        tracing::info!(session = sid, prefix = %prefix, "prefix delegated");
        if let Some(r) = self.record(sid) {
            out.push(Command::Rejournal(Box::new(r)));
        }
    }

    /// Released, or IPv6 went down: no longer routed (the lease stays with the session).
    pub(super) fn undelegate(&mut self, sid: SessionId, out: &mut Vec<Command>) {
        let Some(s) = self.sessions.get_mut(&sid) else {
            return;
        };
        s.ipv6.delegated.iaid = None;
        if !std::mem::take(&mut s.ipv6.delegated.bound) {
            return;
        }
        let prefix = Prefix6::of(
            std::mem::take(&mut s.map.delegated6),
            std::mem::take(&mut s.map.delegated6_len),
        );
        out.push(Command::UnprogramDelegated { prefix });
        out.push(Command::ProgramSession(s.map));
        out.push(Command::WithdrawRoute6 { prefix });
        if let Some(r) = self.record(sid) {
            out.push(Command::Rejournal(Box::new(r)));
        }
    }
}
