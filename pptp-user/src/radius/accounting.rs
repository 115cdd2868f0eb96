//! RADIUS accounting (RFC 2866, RFC 2869's Gigawords and Interim-Update): the records (pure:
//! what a Start, Interim-Update, Stop, Accounting-On/Off says) and the sender, a task that
//! delivers them in order and keeps what no server took in a bounded queue, resent until one
//! does — so a briefly unreachable accounting server loses nothing.

use std::{
    collections::VecDeque,
    net::Ipv4Addr,
    sync::{
        Arc,
        atomic::{AtomicU64, Ordering},
    },
    time::Duration,
};

use tokio::{sync::mpsc, time::Instant};

use super::{
    client::{Attempt, Client},
    dict::{self, Attr},
    packet::{self, Builder},
};
use crate::{gateway::EndReason, ppp::link::DownReason};

/// Acct-Status-Type values.
pub const START: u32 = 1;
pub const STOP: u32 = 2;
pub const INTERIM_UPDATE: u32 = 3;
pub const ACCOUNTING_ON: u32 = 7;
pub const ACCOUNTING_OFF: u32 = 8;

/// A session's traffic as the data path counted it (from the NAS's side: input is what the
/// client sent).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Traffic {
    pub input_octets: u64,
    pub output_octets: u64,
    pub input_packets: u64,
    pub output_packets: u64,
}

/// What a session's records say about it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SessionInfo {
    pub session_id: String,
    pub user: String,
    /// `None`: an IPv6-only session (no Framed-IP-Address).
    pub framed_ip: Option<Ipv4Addr>,
    pub calling: Ipv4Addr,
    pub called: Ipv4Addr,
    pub nas_port: u32,
    pub class: Vec<Vec<u8>>,
    /// The session's /64 while IPv6 is up on it. The Start waits for IPV6CP to settle (10 s at
    /// most, `gateway/acct_start.rs`), so it names the /64 too unless the client was slower.
    pub framed_ipv6_prefix: Option<[u8; 8]>,
    /// The DHCPv6-delegated prefix (Delegated-IPv6-Prefix, RFC 4818), once bound.
    pub delegated_ipv6_prefix: Option<crate::pool6::Prefix6>,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Record {
    pub status: u32,
    /// None for Accounting-On/Off.
    pub session: Option<SessionInfo>,
    pub session_time: Option<u32>,
    pub traffic: Option<Traffic>,
    pub terminate_cause: Option<u32>,
    /// When the event happened (Acct-Delay-Time counts from it).
    pub at: Instant,
}

/// RFC 2866 §5.10 Acct-Terminate-Cause for why a session ended.
pub fn terminate_cause(reason: &EndReason) -> u32 {
    const USER_REQUEST: u32 = 1;
    const LOST_CARRIER: u32 = 2;
    const IDLE_TIMEOUT: u32 = 4;
    const SESSION_TIMEOUT: u32 = 5;
    const ADMIN_RESET: u32 = 6;
    const NAS_ERROR: u32 = 9;
    const NAS_REQUEST: u32 = 10;
    const SERVICE_UNAVAILABLE: u32 = 15;
    match reason {
        EndReason::Link(DownReason::Lcp(_)) => USER_REQUEST,
        EndReason::Link(DownReason::EchoTimeout) => LOST_CARRIER,
        EndReason::Link(DownReason::Closed) => ADMIN_RESET,
        EndReason::Link(_) => SERVICE_UNAVAILABLE,
        EndReason::Control(crate::control::connection::ClearReason::LocalStop) => NAS_REQUEST,
        EndReason::Control(crate::control::connection::ClearReason::ConnectionLost) => LOST_CARRIER,
        EndReason::Control(_) => USER_REQUEST,
        EndReason::SessionTimeout => SESSION_TIMEOUT,
        EndReason::IdleTimeout => IDLE_TIMEOUT,
        EndReason::Replaced | EndReason::AddressRemoved => ADMIN_RESET,
        EndReason::UserLimit | EndReason::PoolExhausted | EndReason::NegotiationTimeout => {
            SERVICE_UNAVAILABLE
        }
        EndReason::RouteFailed => NAS_ERROR,
    }
}

/// Who we are in every record.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Nas {
    pub ip: Option<Ipv4Addr>,
    pub identifier: String,
}

/// The Accounting-Request for a record, signed for this attempt's server; Acct-Delay-Time is
/// how long ago the event was (so a record resent from the queue says so).
pub fn request(record: &Record, nas: &Nas, attempt: &Attempt, now: Instant) -> Vec<u8> {
    let mut b = Builder::new(packet::ACCOUNTING_REQUEST, attempt.identifier, [0; 16]);
    b.u32(Attr::AcctStatusType, record.status);
    let delay = now.saturating_duration_since(record.at).as_secs();
    b.u32(
        Attr::AcctDelayTime,
        u32::try_from(delay).unwrap_or(u32::MAX),
    );
    if let Some(ip) = nas.ip {
        b.attr(Attr::NasIpAddress, &ip.octets());
    }
    if !nas.identifier.is_empty() {
        b.attr(Attr::NasIdentifier, nas.identifier.as_bytes());
    }
    if let Some(s) = &record.session {
        b.attr(Attr::AcctSessionId, s.session_id.as_bytes())
            .attr(Attr::UserName, s.user.as_bytes());
        if let Some(ip) = s.framed_ip {
            b.attr(Attr::FramedIpAddress, &ip.octets());
        }
        b.attr(Attr::CallingStationId, s.calling.to_string().as_bytes())
            .attr(Attr::CalledStationId, s.called.to_string().as_bytes())
            .u32(Attr::NasPort, s.nas_port)
            .u32(Attr::NasPortType, dict::PORT_TYPE_VIRTUAL)
            .u32(Attr::ServiceType, dict::SERVICE_FRAMED)
            .u32(Attr::FramedProtocol, dict::PROTOCOL_PPP)
            // RADIUS authenticated the session.
            .u32(Attr::AcctAuthentic, 1);
        for c in &s.class {
            b.attr(Attr::Class, c);
        }
        for (attr, p) in [
            (
                Attr::FramedIpv6Prefix,
                s.framed_ipv6_prefix.map(crate::pool6::Prefix6::slash64),
            ),
            (Attr::DelegatedIpv6Prefix, s.delegated_ipv6_prefix),
        ] {
            if let Some(p) = p {
                let mut v = vec![0, p.len];
                v.extend_from_slice(&p.first8());
                b.attr(attr, &v);
            }
        }
    }
    if let Some(t) = record.session_time {
        b.u32(Attr::AcctSessionTime, t);
    }
    if let Some(t) = record.traffic {
        let lo = |v: u64| v as u32;
        let hi = |v: u64| (v >> 32) as u32;
        b.u32(Attr::AcctInputOctets, lo(t.input_octets))
            .u32(Attr::AcctOutputOctets, lo(t.output_octets))
            .u32(Attr::AcctInputGigawords, hi(t.input_octets))
            .u32(Attr::AcctOutputGigawords, hi(t.output_octets))
            .u32(Attr::AcctInputPackets, lo(t.input_packets))
            .u32(Attr::AcctOutputPackets, lo(t.output_packets));
    }
    if let Some(c) = record.terminate_cause {
        b.u32(Attr::AcctTerminateCause, c);
    }
    b.finish_request(attempt.secret)
}

/// Records waiting at most (then the oldest Interim-Updates go first, counted).
pub const QUEUE_MAX: usize = 10_000;

#[derive(Debug, Default)]
pub struct AccountingStats {
    pub sent: AtomicU64,
    pub queued: AtomicU64,
    /// Records given up (queue full): never Start or Stop while an Interim-Update can go.
    pub dropped: AtomicU64,
}

/// Delivers records in order; what no server takes waits in a bounded queue and is retried
/// every `retry` (each attempt already tries every server with its timeouts and retries).
pub async fn run(
    client: Arc<Client>,
    nas: Nas,
    mut rx: mpsc::Receiver<Record>,
    stats: Arc<AccountingStats>,
    retry: Duration,
) {
    let mut queue: VecDeque<Record> = VecDeque::new();
    loop {
        if queue.is_empty() {
            match rx.recv().await {
                Some(r) => queue.push_back(r),
                None => return,
            }
        }
        while let Ok(r) = rx.try_recv() {
            push(&mut queue, r, &stats);
        }
        let Some(r) = queue.front() else { continue };
        let sent = client
            .request(|a| request(r, &nas, a, Instant::now()), super::random16)
            .await;
        match sent {
            Ok(_) => {
                stats.sent.fetch_add(1, Ordering::Relaxed);
                queue.pop_front();
            }
            Err(e) => {
                stats.queued.store(queue.len() as u64, Ordering::Relaxed);
                tracing::warn!(queued = queue.len(), error = %e, "accounting not delivered; kept");
                // Wait, taking new records meanwhile.
                let until = tokio::time::Instant::now() + retry;
                loop {
                    match tokio::time::timeout_at(until, rx.recv()).await {
                        Ok(Some(r)) => push(&mut queue, r, &stats),
                        Ok(None) if queue.is_empty() => return,
                        Ok(None) => {
                            tokio::time::sleep_until(until).await;
                            break;
                        }
                        Err(_) => break,
                    }
                }
            }
        }
        stats.queued.store(queue.len() as u64, Ordering::Relaxed);
    }
}

fn push(queue: &mut VecDeque<Record>, r: Record, stats: &AccountingStats) {
    if queue.len() >= QUEUE_MAX {
        // Interim-Updates are superseded by the Stop that follows; Starts and Stops are billing.
        if let Some(i) = queue.iter().position(|q| q.status == INTERIM_UPDATE) {
            queue.remove(i);
        } else {
            queue.pop_front();
        }
        stats.dropped.fetch_add(1, Ordering::Relaxed);
    }
    queue.push_back(r);
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::radius::packet::Packet;

    #[test]
    fn a_stop_carries_counters_with_gigawords_the_cause_and_class() {
        let at = Instant::now();
        let r = Record {
            status: STOP,
            session: Some(SessionInfo {
                session_id: "0000000A".into(),
                user: "alice".into(),
                framed_ip: Some(Ipv4Addr::new(10, 99, 0, 10)),
                calling: Ipv4Addr::new(198, 51, 100, 7),
                called: Ipv4Addr::new(198, 51, 100, 1),
                nas_port: 300,
                class: vec![b"plan-a".to_vec()],
                framed_ipv6_prefix: Some([0x20, 0x01, 0x0d, 0xb8, 0, 0, 0, 7]),
                delegated_ipv6_prefix: Some(crate::pool6::Prefix6::of(
                    [0x20, 0x01, 0x0d, 0xb8, 0, 9, 1, 0],
                    56,
                )),
            }),
            session_time: Some(61),
            traffic: Some(Traffic {
                input_octets: 5 << 32 | 7,
                output_octets: 9,
                input_packets: 3,
                output_packets: 4,
            }),
            terminate_cause: Some(1),
            at,
        };
        let attempt = Attempt {
            secret: b"k",
            identifier: 1,
            authenticator: [0; 16],
        };
        let bytes = request(&r, &Nas::default(), &attempt, at + Duration::from_secs(4));
        let p = Packet::parse(&bytes).unwrap();
        assert!(p.request_authentic(b"k"));
        assert_eq!(p.u32_attr(Attr::AcctStatusType), Some(STOP));
        assert_eq!(p.u32_attr(Attr::AcctInputOctets), Some(7));
        assert_eq!(p.u32_attr(Attr::AcctInputGigawords), Some(5));
        assert_eq!(p.u32_attr(Attr::AcctOutputOctets), Some(9));
        assert_eq!(p.u32_attr(Attr::AcctSessionTime), Some(61));
        assert_eq!(p.u32_attr(Attr::AcctDelayTime), Some(4));
        assert_eq!(p.u32_attr(Attr::AcctTerminateCause), Some(1));
        assert_eq!(p.attr(Attr::Class), Some(&b"plan-a"[..]));
        assert_eq!(p.attr(Attr::AcctSessionId), Some(&b"0000000A"[..]));
        // RFC 3162 §2.3: reserved 0, length 64, the prefix.
        assert_eq!(
            p.attr(Attr::FramedIpv6Prefix),
            Some(&[0, 64, 0x20, 0x01, 0x0d, 0xb8, 0, 0, 0, 7][..])
        );
        assert_eq!(
            p.attr(Attr::DelegatedIpv6Prefix),
            Some(&[0, 56, 0x20, 0x01, 0x0d, 0xb8, 0, 9, 1, 0][..])
        );
    }

    #[test]
    fn an_ipv6_only_start_has_a_prefix_and_no_ipv4_address() {
        let at = Instant::now();
        let r = Record {
            status: START,
            session: Some(SessionInfo {
                session_id: "0000000B".into(),
                user: "v6only".into(),
                framed_ip: None,
                calling: Ipv4Addr::new(198, 51, 100, 7),
                called: Ipv4Addr::new(198, 51, 100, 1),
                nas_port: 301,
                class: Vec::new(),
                framed_ipv6_prefix: Some([0x20, 0x01, 0x0d, 0xb8, 0, 0, 0, 8]),
                delegated_ipv6_prefix: None,
            }),
            session_time: None,
            traffic: None,
            terminate_cause: None,
            at,
        };
        let attempt = Attempt {
            secret: b"k",
            identifier: 2,
            authenticator: [0; 16],
        };
        let bytes = request(&r, &Nas::default(), &attempt, at);
        let p = Packet::parse(&bytes).unwrap();
        assert!(p.request_authentic(b"k"));
        assert_eq!(p.u32_attr(Attr::AcctStatusType), Some(START));
        assert_eq!(p.attr(Attr::FramedIpAddress), None);
        assert_eq!(
            p.attr(Attr::FramedIpv6Prefix),
            Some(&[0, 64, 0x20, 0x01, 0x0d, 0xb8, 0, 0, 0, 8][..])
        );
        assert_eq!(p.attr(Attr::CallingStationId), Some(&b"198.51.100.7"[..]));
    }

    #[test]
    fn a_full_queue_gives_up_interims_before_starts_and_stops() {
        let stats = AccountingStats::default();
        let mut q = VecDeque::new();
        let rec = |status| Record {
            status,
            session: None,
            session_time: None,
            traffic: None,
            terminate_cause: None,
            at: Instant::now(),
        };
        for i in 0..QUEUE_MAX {
            push(
                &mut q,
                rec(if i == 5 { INTERIM_UPDATE } else { START }),
                &stats,
            );
        }
        push(&mut q, rec(STOP), &stats);
        assert_eq!(q.len(), QUEUE_MAX);
        assert!(q.iter().all(|r| r.status != INTERIM_UPDATE));
        assert_eq!(q.back().unwrap().status, STOP);
        assert_eq!(stats.dropped.load(Ordering::Relaxed), 1);
    }
}
