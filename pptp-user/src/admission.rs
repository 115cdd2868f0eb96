//! What an unauthenticated source may make the gateway hold. Until a client has authenticated,
//! everything it costs us (a control connection, a call with its call ID, map entry and PPP
//! link, timers) is counted against its source address and against a total, and refused past
//! the limits, so one address flooding us cannot crowd out anybody else. Pure: the gateway core
//! asks before it creates anything and tells when it lets go.

use std::{collections::HashMap, net::Ipv4Addr, time::Duration};

/// The limits (the `[limits]` section of the config).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Limits {
    /// Control connections open at once from one source address (0: no limit).
    pub max_connections_per_source: u32,
    /// Calls one control connection may carry (PPTP clients use one).
    pub max_calls_per_connection: u32,
    /// Sessions not yet authenticated, in total and from one source address.
    pub max_unauthenticated: u32,
    pub max_unauthenticated_per_source: u32,
    /// From Outgoing-Call-Request to the network being up (LCP, authentication, IPCP): a call
    /// that takes longer is ended.
    pub negotiation_timeout: Duration,
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            max_connections_per_source: 64,
            max_calls_per_connection: 1,
            max_unauthenticated: 4096,
            max_unauthenticated_per_source: 16,
            negotiation_timeout: Duration::from_secs(60),
        }
    }
}

/// Why something was refused: one label each in logs and `/metrics`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Refusal {
    /// New control connections from the source arrive faster than `connection_rate_per_source`.
    ConnectionRate,
    ConnectionsPerSource,
    CallsPerConnection,
    /// Too many sessions still negotiating, in total or from the source.
    Unauthenticated,
    UnauthenticatedPerSource,
    /// `max_sessions`.
    SessionLimit,
    PoolExhausted,
    /// Every call ID is taken for this (dialled address, client address) pair.
    CallIdsExhausted,
    ShuttingDown,
}

impl Refusal {
    pub const ALL: [Refusal; 9] = [
        Self::ConnectionRate,
        Self::ConnectionsPerSource,
        Self::CallsPerConnection,
        Self::Unauthenticated,
        Self::UnauthenticatedPerSource,
        Self::SessionLimit,
        Self::PoolExhausted,
        Self::CallIdsExhausted,
        Self::ShuttingDown,
    ];

    pub const fn label(self) -> &'static str {
        match self {
            Self::ConnectionRate => "connection_rate",
            Self::ConnectionsPerSource => "connections_per_source",
            Self::CallsPerConnection => "calls_per_connection",
            Self::Unauthenticated => "unauthenticated",
            Self::UnauthenticatedPerSource => "unauthenticated_per_source",
            Self::SessionLimit => "session_limit",
            Self::PoolExhausted => "pool_exhausted",
            Self::CallIdsExhausted => "call_ids_exhausted",
            Self::ShuttingDown => "shutting_down",
        }
    }
}

#[derive(Clone, Copy, Debug, Default)]
struct Held {
    connections: u32,
    unauthenticated: u32,
}

/// What each source holds now.
#[derive(Debug, Default)]
pub struct Ledger {
    by_source: HashMap<Ipv4Addr, Held>,
    unauthenticated: u32,
}

impl Ledger {
    /// A control connection from `peer`: admitted (and counted) or refused.
    pub fn connect(&mut self, peer: Ipv4Addr, limits: &Limits) -> Result<(), Refusal> {
        let held = self.by_source.entry(peer).or_default();
        if limits.max_connections_per_source != 0
            && held.connections >= limits.max_connections_per_source
        {
            self.forget_if_idle(peer);
            return Err(Refusal::ConnectionsPerSource);
        }
        held.connections += 1;
        Ok(())
    }

    pub fn disconnect(&mut self, peer: Ipv4Addr) {
        if let Some(h) = self.by_source.get_mut(&peer) {
            h.connections = h.connections.saturating_sub(1);
        }
        self.forget_if_idle(peer);
    }

    /// A new call from `peer` that will negotiate before it authenticates.
    pub fn begin_negotiation(&mut self, peer: Ipv4Addr, limits: &Limits) -> Result<(), Refusal> {
        if self.unauthenticated >= limits.max_unauthenticated {
            return Err(Refusal::Unauthenticated);
        }
        let held = self.by_source.entry(peer).or_default();
        if held.unauthenticated >= limits.max_unauthenticated_per_source {
            self.forget_if_idle(peer);
            return Err(Refusal::UnauthenticatedPerSource);
        }
        held.unauthenticated += 1;
        self.unauthenticated += 1;
        Ok(())
    }

    /// A negotiating call from `peer` authenticated, or ended before it did.
    pub fn end_negotiation(&mut self, peer: Ipv4Addr) {
        if let Some(h) = self.by_source.get_mut(&peer)
            && h.unauthenticated > 0
        {
            h.unauthenticated -= 1;
            self.unauthenticated -= 1;
        }
        self.forget_if_idle(peer);
    }

    fn forget_if_idle(&mut self, peer: Ipv4Addr) {
        if self
            .by_source
            .get(&peer)
            .is_some_and(|h| h.connections == 0 && h.unauthenticated == 0)
        {
            self.by_source.remove(&peer);
        }
    }

    /// Sessions negotiating now, in total.
    pub fn unauthenticated(&self) -> u32 {
        self.unauthenticated
    }

    /// Sources holding anything (connections or negotiating calls).
    pub fn sources(&self) -> usize {
        self.by_source.len()
    }
}

/// Logs refusals once per source and reason per interval: a flood is a line every few seconds,
/// with the count of what was not logged, never a line per packet or connection.
#[derive(Debug, Default)]
pub struct LogThrottle {
    /// Per source and reason: when it was last logged and how many were not logged since.
    last: HashMap<(Ipv4Addr, Refusal), (Duration, u64)>,
}

/// Sources remembered before those outside their interval are forgotten.
const THROTTLE_PRUNE_ABOVE: usize = 16_384;

impl LogThrottle {
    /// `Some(suppressed)` when a refusal from `peer` at `now` should be logged (with how many
    /// went unlogged before it), `None` when it is only counted.
    pub fn admit(
        &mut self,
        peer: Ipv4Addr,
        reason: Refusal,
        now: Duration,
        interval: Duration,
    ) -> Option<u64> {
        let key = (peer, reason);
        if self.last.len() >= THROTTLE_PRUNE_ABOVE {
            self.last
                .retain(|_, (at, _)| now.saturating_sub(*at) < interval);
        }
        match self.last.get_mut(&key) {
            Some((at, suppressed)) if now.saturating_sub(*at) < interval => {
                *suppressed += 1;
                None
            }
            Some((at, suppressed)) => {
                *at = now;
                Some(std::mem::take(suppressed))
            }
            None => {
                // Still full after pruning: every source is loud; log without remembering.
                if self.last.len() < THROTTLE_PRUNE_ABOVE {
                    self.last.insert(key, (now, 0));
                }
                Some(0)
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const A: Ipv4Addr = Ipv4Addr::new(192, 0, 2, 1);
    const B: Ipv4Addr = Ipv4Addr::new(192, 0, 2, 2);

    #[test]
    fn per_source_limits_leave_other_sources_alone() {
        let limits = Limits {
            max_connections_per_source: 2,
            max_unauthenticated: 3,
            max_unauthenticated_per_source: 2,
            ..Limits::default()
        };
        let mut l = Ledger::default();
        assert_eq!(l.connect(A, &limits), Ok(()));
        assert_eq!(l.connect(A, &limits), Ok(()));
        assert_eq!(l.connect(A, &limits), Err(Refusal::ConnectionsPerSource));
        assert_eq!(l.connect(B, &limits), Ok(()));
        assert_eq!(l.begin_negotiation(A, &limits), Ok(()));
        assert_eq!(l.begin_negotiation(A, &limits), Ok(()));
        assert_eq!(
            l.begin_negotiation(A, &limits),
            Err(Refusal::UnauthenticatedPerSource)
        );
        assert_eq!(l.begin_negotiation(B, &limits), Ok(()));
        // The total is reached: even a fresh source waits for somebody to authenticate.
        assert_eq!(
            l.begin_negotiation(Ipv4Addr::new(192, 0, 2, 3), &limits),
            Err(Refusal::Unauthenticated)
        );
        l.end_negotiation(A);
        assert_eq!(l.unauthenticated(), 2);
        assert_eq!(l.begin_negotiation(A, &limits), Ok(()));
        // Letting go of everything forgets the source (memory per source is bounded by use).
        for _ in 0..2 {
            l.end_negotiation(A);
            l.disconnect(A);
        }
        l.end_negotiation(B);
        l.disconnect(B);
        assert_eq!((l.unauthenticated(), l.sources()), (0, 0));
        // Ending what was never begun changes nothing.
        l.end_negotiation(A);
        l.disconnect(A);
        assert_eq!((l.unauthenticated(), l.sources()), (0, 0));
    }

    #[test]
    fn zero_means_no_connection_limit() {
        let limits = Limits {
            max_connections_per_source: 0,
            ..Limits::default()
        };
        let mut l = Ledger::default();
        assert!((0..1000).all(|_| l.connect(A, &limits).is_ok()));
    }

    #[test]
    fn refusals_are_logged_once_per_source_and_reason_per_interval() {
        let mut t = LogThrottle::default();
        let i = Duration::from_secs(10);
        let at = Duration::from_secs;
        let r = Refusal::ConnectionRate;
        assert_eq!(t.admit(A, r, at(100), i), Some(0));
        assert_eq!(t.admit(A, r, at(101), i), None);
        assert_eq!(t.admit(A, r, at(105), i), None);
        assert_eq!(
            t.admit(B, r, at(105), i),
            Some(0),
            "another source is its own"
        );
        assert_eq!(
            t.admit(A, Refusal::SessionLimit, at(105), i),
            Some(0),
            "so is another reason"
        );
        assert_eq!(
            t.admit(A, r, at(110), i),
            Some(2),
            "with what was not logged"
        );
        assert_eq!(t.admit(A, r, at(111), i), None);
        // Memory stays bounded under a flood of distinct sources.
        for n in 0..100_000u32 {
            t.admit(Ipv4Addr::from(n), r, at(200), i);
        }
        assert!(t.last.len() <= THROTTLE_PRUNE_ABOVE);
    }
}
