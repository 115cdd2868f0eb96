//! Carrying up sessions over from another process (hitless restart): what the journal keeps
//! of each one ([`SessionRecord`], written when it comes up), and how a fresh core takes them
//! back without a word to the clients. The data path kept forwarding meanwhile: its state (keys,
//! sequence numbers, counters, rate buckets) lives in pinned maps, so nothing here programs it
//! anew.

use std::{collections::BTreeMap, net::Ipv4Addr, time::Duration};

use pptp_common::session::{STATE_UP, Session};

use super::{Command, Conn, ConnId, Gateway, Sess, SessionId, TimerKey, session_key};
use crate::{
    control::connection::Connection,
    pool6::Prefix6,
    ppp::link::{Link, LinkSnapshot},
    radius::access::Authorization,
};

/// An up session as another process needs it.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct SessionRecord {
    pub id: SessionId,
    /// The control connection carrying the call (its descriptor outlives the process).
    pub conn: ConnId,
    /// The address the client dialled, and its own outer address.
    pub local: Ipv4Addr,
    pub peer: Ipv4Addr,
    pub call_id: u16,
    pub peer_call_id: u16,
    pub slot: u32,
    /// The client's IPv4 address; `None`: an IPv6-only session.
    pub addr: Option<Ipv4Addr>,
    pub user: Option<String>,
    pub mtu: u16,
    pub mss: u16,
    pub flags: u8,
    pub mode: u8,
    pub link: LinkSnapshot,
    pub authorization: Authorization,
    /// The session's /64 while IPv6 is up on it.
    #[serde(default)]
    pub prefix6: Option<[u8; 8]>,
    /// The prefix delegated to it by DHCPv6 while bound, and to which IA.
    #[serde(default)]
    pub delegated6: Option<(Prefix6, u32)>,
}

impl SessionRecord {
    /// The session as the data path has it programmed.
    pub fn map(&self) -> Session {
        // A delegation is routed behind the session's /64: without it, none.
        let delegated = self
            .delegated6
            .filter(|_| self.prefix6.is_some())
            .map(|(p, _)| p);
        Session {
            slot: self.slot,
            assigned: self.addr.map_or([0; 4], |a| a.octets()),
            key: session_key(self.local, self.peer, self.call_id),
            peer_call_id: self.peer_call_id.to_be_bytes(),
            mtu: self.mtu,
            mss: self.mss,
            state: STATE_UP,
            mode: self.mode,
            flags: self.flags,
            prefix6: self.prefix6.unwrap_or_default(),
            delegated6: delegated.map(|p| p.first8()).unwrap_or_default(),
            delegated6_len: delegated.map_or(0, |p| p.len),
            ..Session::default()
        }
    }
}

/// Why a record could not be taken back (the session is then ended by the shell).
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum RestoreError {
    #[error("slot {0} or call {1} is taken twice")]
    Duplicate(u32, u16),
    #[error("address {0} is leased twice")]
    AddressInUse(Ipv4Addr),
}

impl Gateway {
    /// The highest control connection ID in use (new ones are numbered above it).
    pub fn max_conn_id(&self) -> Option<ConnId> {
        self.conns.keys().max().copied()
    }

    /// The journal's record of an up session.
    pub(super) fn record(&self, sid: SessionId) -> Option<SessionRecord> {
        let s = self.sessions.get(&sid)?;
        let c = self.conns.get(&s.conn)?;
        Some(SessionRecord {
            id: sid,
            conn: s.conn,
            local: c.local,
            peer: c.peer,
            call_id: u16::from_be_bytes(s.map.key.call_id),
            peer_call_id: u16::from_be_bytes(s.map.peer_call_id),
            slot: s.map.slot,
            addr: s.addr,
            user: s.user.clone(),
            mtu: s.map.mtu,
            mss: s.map.mss,
            flags: s.map.flags,
            mode: s.map.mode,
            link: s.link.snapshot()?,
            authorization: s.authorization.clone(),
            prefix6: s.ipv6.routed.then_some(s.map.prefix6),
            delegated6: s
                .ipv6
                .delegated
                .prefix
                .zip(s.ipv6.delegated.iaid)
                .filter(|_| s.ipv6.delegated.bound),
        })
    }

    /// Takes back up sessions another process ran, with their control connections. `limits`
    /// gives each session's remaining RADIUS Session-Timeout. Returns what to do (timers, the
    /// route and the lookups made sure of) and the records refused, which the caller ends.
    /// Called once, on a core with no sessions yet.
    pub fn restore(
        &mut self,
        records: Vec<SessionRecord>,
        limits: &BTreeMap<SessionId, Duration>,
    ) -> (Vec<Command>, Vec<(SessionRecord, RestoreError)>) {
        let mut out = Vec::new();
        let mut refused = Vec::new();
        let mut by_conn: BTreeMap<ConnId, Vec<SessionRecord>> = BTreeMap::new();
        for r in records {
            by_conn.entry(r.conn).or_default().push(r);
        }
        let mut used_slots = std::collections::BTreeSet::new();
        for (conn, records) in by_conn {
            let mut calls = Vec::new();
            let mut kept = Vec::new();
            for r in records {
                let key = session_key(r.local, r.peer, r.call_id);
                if self.by_key.contains_key(&key) || !used_slots.insert(r.slot) {
                    let e = RestoreError::Duplicate(r.slot, r.call_id);
                    refused.push((r, e));
                    continue;
                }
                if let Some(a) = r.addr.filter(|&a| self.pools.is_leased(a)) {
                    used_slots.remove(&r.slot);
                    refused.push((r, RestoreError::AddressInUse(a)));
                    continue;
                }
                if let Some(a) = r.addr {
                    self.pools.adopt(a);
                }
                if let Some(p) = r.prefix6 {
                    self.pools6.adopt(p);
                }
                if let Some((p, _)) = r.delegated6 {
                    self.pools6.adopt(p.first8());
                }
                self.by_key.insert(key, r.id);
                calls.push((r.call_id, r.peer_call_id));
                kept.push(r);
            }
            let Some(first) = kept.first() else { continue };
            let (local, peer) = (first.local, first.peer);
            // Counted against its source like any connection, but never refused: it is up.
            let _ = self.ledger.connect(peer, &self.config.limits);
            let (machine, o) = Connection::restored(self.config.control.clone(), &calls);
            let mut c = Conn::new(local, peer, machine);
            c.calls = kept.iter().map(|r| (r.call_id, r.id)).collect();
            self.conns.insert(conn, c);
            self.conn_outputs(conn, o, &mut out);
            for r in kept {
                self.restore_session(r, limits, &mut out);
            }
        }
        // New sessions get slots and IDs the restored ones do not hold.
        let top = used_slots.last().map_or(0, |s| s + 1);
        self.next_slot = self.next_slot.max(top);
        self.free_slots = (0..self.next_slot)
            .rev()
            .filter(|s| !used_slots.contains(s))
            .collect();
        (out, refused)
    }

    fn restore_session(
        &mut self,
        r: SessionRecord,
        limits: &BTreeMap<SessionId, Duration>,
        out: &mut Vec<Command>,
    ) {
        let sid = r.id;
        self.next_session = self.next_session.max(sid + 1);
        let (link, o) = Link::restored(
            self.config.link.clone(),
            self.seed ^ sid.rotate_left(17),
            &r.link,
        );
        let map = r.map();
        self.sessions.insert(
            sid,
            Sess {
                conn: r.conn,
                map,
                link,
                user: r.user.clone(),
                addr: r.addr,
                routed: true,
                negotiating: false,
                authorization: r.authorization.clone(),
                ipv6: super::ipv6::SessionV6 {
                    ids: r.link.ipv6,
                    prefix: r.prefix6,
                    routed: r.prefix6.is_some() && r.link.ipv6.is_some(),
                    quiet: false,
                    delegated: super::dhcpv6::Delegated {
                        prefix: r.delegated6.map(|(p, _)| p),
                        iaid: r.delegated6.map(|(_, i)| i),
                        bound: r.delegated6.is_some() && map.delegated6 != [0; 8],
                        answers: 0,
                    },
                },
                // The previous process sent its Start (or the shell's carry-over does).
                accounted: true,
            },
        );
        self.link_outputs(sid, o, out);
        if let Some(&left) = limits.get(&sid) {
            out.push(Command::SetTimer(TimerKey::SessionLimit(sid), left));
        }
        // Both idempotent: the route is replaced, the lookups rewritten as they are.
        if let Some(addr) = r.addr {
            out.push(Command::ProjectRoute { session: sid, addr });
        }
        out.push(Command::ProgramSession(map));
        if let Some(p) = r.prefix6 {
            out.push(Command::ProjectRoute6 {
                session: sid,
                prefix: Prefix6::slash64(p),
            });
            self.advertise(sid, true, out);
        }
        if map.delegated6 != [0; 8] {
            out.push(Command::ProjectRoute6 {
                session: sid,
                prefix: Prefix6::of(map.delegated6, map.delegated6_len),
            });
        }
        self.stats.sessions_up += 1;
    }
}
