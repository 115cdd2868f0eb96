//! Taking over from the previous worker (hitless restart, see `docs/architecture.md`): the
//! journal says which sessions were up, the supervisor hands back their control connections,
//! the pinned maps still hold their data-path state. A session whose connection came back is
//! carried on without a word to its client; one whose connection is gone (the whole process
//! tree died, or the journal is refused) is ended as cleanly as it can be without a client to
//! tell: its map entries and route removed, its lease freed, RADIUS told with a Stop. Whatever
//! else the maps or the routing table hold is an orphan and goes.

use std::{
    collections::{BTreeMap, BTreeSet, HashSet},
    net::Ipv4Addr,
    os::fd::OwnedFd,
    time::Duration,
};

use tokio::time::Instant;

use super::{AcctSession, ConnQueue, Input, Shell, connection};
use crate::{
    control::connection::ClearReason,
    gateway::{Command, ConnId, EndReason, Gateway},
    handover::{
        fds::conn_token,
        journal::{Entry, JournaledSession, Recovered, unix_ms},
    },
    kernel::route,
};

/// What the take-over did, for the log and the caller.
#[derive(Debug, Default)]
pub(super) struct Carried {
    pub sessions: usize,
    pub ended: usize,
    pub orphans: usize,
    pub routes_removed: usize,
}

impl Shell {
    /// Carries on what the journal and the supervisor give back; ends the rest.
    pub(super) async fn take_over(
        &mut self,
        gateway: &mut Gateway,
        recovered: Recovered,
        maps_adopted: bool,
    ) -> Carried {
        let inherited: BTreeMap<ConnId, OwnedFd> =
            self.worker.take_connections().into_iter().collect();
        let journaled = match recovered {
            Recovered::Nothing => BTreeMap::new(),
            Recovered::Sessions(s) => s,
            Recovered::Refused(e) => {
                tracing::error!(error = %e, "session journal refused: the sessions it held are torn down, none is adopted");
                BTreeMap::new()
            }
        };
        let mut lost: Vec<(JournaledSession, &'static str)> = Vec::new();
        let mut carry = Vec::new();
        for (_, s) in journaled {
            if !maps_adopted {
                lost.push((s, "the data path did not survive"));
            } else if inherited.contains_key(&s.session.conn) {
                carry.push(s);
            } else {
                lost.push((s, "its control connection is gone"));
            }
        }
        let now_ms = unix_ms();
        let limits: BTreeMap<_, _> = carry
            .iter()
            .filter_map(|s| {
                let at = s.limit_ms?;
                Some((
                    s.session.id,
                    Duration::from_millis(at.saturating_sub(now_ms)),
                ))
            })
            .collect();
        // Programmed already: what restore asks for is an update, never a reset of the
        // sequence state and counters the data path kept.
        for s in &carry {
            let map = s.session.map();
            self.programmed.insert(map.key, map);
        }
        let records = carry.iter().map(|s| s.session.clone()).collect();
        let (cmds, refused) = gateway.restore(records, &limits);
        let refused_ids: BTreeSet<u64> = refused.iter().map(|(r, _)| r.id).collect();
        for (r, e) in &refused {
            tracing::error!(session = r.id, error = %e, "journaled session refused");
        }
        let (carry, refused): (Vec<_>, Vec<_>) = carry
            .into_iter()
            .partition(|s| !refused_ids.contains(&s.session.id));
        for s in refused {
            self.programmed.remove(&s.session.map().key);
            lost.push((s, "its journal record is inconsistent"));
        }
        let conns: BTreeSet<ConnId> = carry.iter().map(|s| s.session.conn).collect();
        for (conn, fd) in inherited {
            if conns.contains(&conn) {
                self.resume_connection(conn, fd);
            } else {
                // Negotiating when the worker died, or its sessions cannot go on: closed.
                close_inherited(fd);
                self.worker.release(&conn_token(conn));
            }
        }
        for s in &carry {
            self.resume_session(s);
        }
        // A route the previous run projected is left as it is (adoption touches nothing that
        // works); a missing one is projected.
        let present: HashSet<Ipv4Addr> = route::list(&self.rt)
            .await
            .map(|routes| {
                routes
                    .into_iter()
                    .filter(|r| r.ifindex == Some(self.pptp0_ifindex))
                    .map(|r| r.addr)
                    .collect()
            })
            .unwrap_or_default();
        let present6: HashSet<crate::pool6::Prefix6> = route::list6(&self.rt)
            .await
            .map(|routes| routes.into_iter().map(|(p, _)| p).collect())
            .unwrap_or_default();
        let cmds: Vec<Command> = cmds
            .into_iter()
            .filter(|c| match c {
                Command::ProjectRoute { addr, .. } => !present.contains(addr),
                Command::ProjectRoute6 { prefix, .. } => !present6.contains(prefix),
                _ => true,
            })
            .collect();
        self.execute(cmds).await;
        let mut done = Carried {
            sessions: carry.len(),
            ..Carried::default()
        };
        for (s, why) in lost {
            self.end_lost(&s, why);
            done.ended += 1;
        }
        let keep: HashSet<_> = carry.iter().map(|s| s.session.map().key).collect();
        match self.dp.sweep(&keep) {
            Ok(n) => done.orphans = n,
            Err(e) => {
                tracing::error!(error = %format!("{e:#}"), "sweeping orphaned map entries failed")
            }
        }
        let addrs: Vec<Ipv4Addr> = carry.iter().filter_map(|s| s.session.addr).collect();
        match route::reconcile(&self.rt, &addrs).await {
            Ok(n) => done.routes_removed = n,
            Err(e) => tracing::error!(error = %format!("{e:#}"), "reconciling routes failed"),
        }
        let prefixes: Vec<crate::pool6::Prefix6> = carry
            .iter()
            .flat_map(|s| {
                let m = s.session.map();
                [(m.prefix6, 64), (m.delegated6, m.delegated6_len)]
            })
            .filter(|(p, _)| *p != [0; 8])
            .map(|(p, len)| crate::pool6::Prefix6::of(p, len))
            .collect();
        match route::reconcile6(&self.rt, &prefixes).await {
            Ok(n) => done.routes_removed += n,
            Err(e) => tracing::error!(error = %format!("{e:#}"), "reconciling IPv6 routes failed"),
        }
        done
    }

    /// A carried session's shell state: uptime, idle timeout, accounting, as before.
    fn resume_session(&mut self, s: &JournaledSession) {
        let r = &s.session;
        let age = Duration::from_millis(unix_ms().saturating_sub(s.up_ms));
        let up = Instant::now().checked_sub(age).unwrap_or_else(Instant::now);
        self.up_since.insert(r.id, up);
        if let Some(t) = r.authorization.idle_timeout {
            self.idle
                .insert(r.id, (r.slot, Duration::from_secs(u64::from(t))));
        }
        if let (Some(a), Some(id)) = (self.accounting.as_mut(), &s.acct_id) {
            let interim = r
                .authorization
                .interim_interval
                .map(|s| Duration::from_secs(u64::from(s).max(10)))
                .or(a.interim);
            a.sessions.insert(
                r.id,
                AcctSession {
                    info: acct_info(s, id),
                    slot: r.slot,
                    started: up,
                    interim,
                    next_interim: interim.map(|d| Instant::now() + d),
                    // Sent by the previous worker (one that died before sending it lost it:
                    // the server learns of the session from its Interim).
                    start_sent: true,
                },
            );
        }
        self.journal_entry(Entry::Up(Box::new(s.clone())));
        tracing::info!(session = r.id, user = r.user.as_deref().unwrap_or("-"), addr = ?r.addr, peer = %r.peer, uptime_s = age.as_secs(), "session carried over");
    }

    /// A control connection the previous worker held: a task for it again.
    fn resume_connection(&mut self, conn: ConnId, fd: OwnedFd) {
        let std_stream = std::net::TcpStream::from(fd);
        let stream = std_stream
            .set_nonblocking(true)
            .and_then(|()| tokio::net::TcpStream::from_std(std_stream));
        let stream = match stream {
            Ok(s) => s,
            Err(e) => {
                tracing::warn!(conn, error = %e, "inherited control connection unusable");
                self.worker.release(&conn_token(conn));
                let _ = self.inputs.try_send(Input::Closed { conn });
                return;
            }
        };
        let (out, out_rx) = ConnQueue::new();
        self.conns.insert(conn, out);
        tokio::spawn(connection(
            conn,
            stream,
            self.inputs.clone(),
            out_rx,
            self.worker.clone(),
        ));
    }

    /// Ends a journaled session nobody can carry on: map entries, the lease (never taken), the
    /// route (by reconciliation), RADIUS Stop with the counters the data path kept.
    fn end_lost(&mut self, s: &JournaledSession, why: &str) {
        let r = &s.session;
        let c = self.dp.session_stats(r.slot).unwrap_or_default();
        if let Err(e) = self.dp.remove_session(&r.map()) {
            tracing::error!(session = r.id, error = %format!("{e:#}"), "removing a lost session failed");
        }
        let age = Duration::from_millis(unix_ms().saturating_sub(s.up_ms));
        if let (Some(a), Some(id)) = (self.accounting.as_ref(), &s.acct_id) {
            let reason = EndReason::Control(ClearReason::ConnectionLost);
            a.send(crate::radius::accounting::Record {
                status: crate::radius::accounting::STOP,
                session: Some(acct_info(s, id)),
                session_time: Some(age.as_secs() as u32),
                traffic: Some(super::traffic(&c)),
                terminate_cause: Some(crate::radius::accounting::terminate_cause(&reason)),
                at: Instant::now(),
            });
        }
        self.journal_entry(Entry::Down { id: r.id });
        self.stats.ended_rx_bytes += c.rx_bytes;
        self.stats.ended_tx_bytes += c.tx_bytes;
        self.stats.ended_rx_packets += c.rx_packets;
        self.stats.ended_tx_packets += c.tx_packets;
        tracing::info!(
            session = r.id,
            user = r.user.as_deref().unwrap_or("-"),
            addr = ?r.addr,
            reason = "lost-across-restart",
            detail = why,
            uptime_s = age.as_secs(),
            rx_bytes = c.rx_bytes,
            tx_bytes = c.tx_bytes,
            "session down"
        );
    }
}

fn acct_info(s: &JournaledSession, id: &str) -> crate::radius::accounting::SessionInfo {
    let r = &s.session;
    crate::radius::accounting::SessionInfo {
        session_id: id.to_string(),
        user: r.user.clone().unwrap_or_default(),
        framed_ip: r.addr,
        calling: r.peer,
        called: r.local,
        nas_port: u32::from(r.call_id),
        class: r.authorization.class.clone(),
        framed_ipv6_prefix: r.prefix6,
        delegated_ipv6_prefix: r.delegated6.map(|(p, _)| p),
    }
}

/// Closes a control connection for every process holding it (the supervisor's copy too):
/// the client sees the FIN now rather than a silent peer.
pub(super) fn close_inherited(fd: OwnedFd) {
    use std::os::fd::AsRawFd as _;
    // SAFETY: shutdown(2) on a descriptor we own.
    unsafe { libc::shutdown(fd.as_raw_fd(), libc::SHUT_RDWR) };
}
