//! Per-source admission of new control connections: a token bucket per client address (rate
//! per second, bursts of twice that). Pure: the caller passes the time.

use std::{collections::HashMap, net::Ipv4Addr, time::Duration};

#[derive(Debug, Default)]
pub struct RateLimiter {
    /// Connections per second per source; 0 admits everything.
    rate: u32,
    buckets: HashMap<Ipv4Addr, Bucket>,
}

#[derive(Clone, Copy, Debug)]
struct Bucket {
    tokens: f64,
    /// When `tokens` was computed (time since an arbitrary origin).
    at: Duration,
}

/// Buckets kept before idle (full) ones are forgotten.
const PRUNE_ABOVE: usize = 65_536;

impl RateLimiter {
    pub fn new(rate: u32) -> Self {
        Self {
            rate,
            buckets: HashMap::new(),
        }
    }

    pub fn set_rate(&mut self, rate: u32) {
        self.rate = rate;
        self.buckets.clear();
    }

    fn burst(&self) -> f64 {
        f64::from(self.rate) * 2.0
    }

    /// Whether a connection from `peer` at time `now` is admitted.
    pub fn admit(&mut self, peer: Ipv4Addr, now: Duration) -> bool {
        if self.rate == 0 {
            return true;
        }
        let (rate, burst) = (f64::from(self.rate), self.burst());
        if self.buckets.len() > PRUNE_ABOVE {
            // Sources whose bucket has refilled are indistinguishable from new ones.
            self.buckets
                .retain(|_, b| b.tokens + (now.saturating_sub(b.at)).as_secs_f64() * rate < burst);
        }
        let b = self.buckets.entry(peer).or_insert(Bucket {
            tokens: burst,
            at: now,
        });
        b.tokens = (b.tokens + now.saturating_sub(b.at).as_secs_f64() * rate).min(burst);
        b.at = now;
        if b.tokens >= 1.0 {
            b.tokens -= 1.0;
            true
        } else {
            false
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bursts_then_the_rate_per_source() {
        let mut r = RateLimiter::new(2);
        let a = Ipv4Addr::new(192, 0, 2, 1);
        let b = Ipv4Addr::new(192, 0, 2, 2);
        let t0 = Duration::from_secs(100);
        // A burst of 4 (twice the rate), then refused.
        let admitted = (0..10).filter(|_| r.admit(a, t0)).count();
        assert_eq!(admitted, 4);
        // Another source is not affected.
        assert!(r.admit(b, t0));
        // Half a second later one token is back (2/s).
        assert!(r.admit(a, t0 + Duration::from_millis(500)));
        assert!(!r.admit(a, t0 + Duration::from_millis(500)));
        // Off: everything passes.
        r.set_rate(0);
        assert!((0..100).all(|_| r.admit(a, t0)));
    }
}
