//! Per-session rate limits: a token bucket per direction, in each session's `RATE_LIMITS` entry.
//! The arithmetic is here so the programs and the host tests run the same code.

/// One direction's bucket. `rate` 0 means unlimited (and nothing else is looked at).
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Bucket {
    /// Bytes per second.
    pub rate: u64,
    /// Bytes the bucket holds at most (the burst a session may send at line rate).
    pub burst: u64,
    pub tokens: u64,
    /// When tokens were last added (`bpf_ktime_get_ns`).
    pub last_ns: u64,
}

const NS: u64 = 1_000_000_000;

impl Bucket {
    /// A full bucket for `bits_per_second` (0: unlimited). The burst is 100 ms of the rate, at
    /// least 16 full-sized packets: a policer with less makes TCP crawl.
    pub const fn new(bits_per_second: u64) -> Self {
        let rate = bits_per_second / 8;
        let burst = if rate / 10 > 16 * 1500 {
            rate / 10
        } else {
            16 * 1500
        };
        Self {
            rate,
            burst,
            tokens: burst,
            last_ns: 0,
        }
    }

    /// Whether a packet of `bytes` may pass at `now_ns` (taking its tokens if so).
    #[inline(always)]
    pub fn take(&mut self, now_ns: u64, bytes: u64) -> bool {
        if self.rate == 0 {
            return true;
        }
        // At most a second's worth at once (keeps the product below 2^64 up to 18 Gbyte/s).
        let elapsed = now_ns.saturating_sub(self.last_ns);
        let elapsed = if elapsed > NS { NS } else { elapsed };
        let add = elapsed * self.rate / NS;
        if add > 0 {
            let t = self.tokens + add;
            self.tokens = if t > self.burst { self.burst } else { t };
            self.last_ns = now_ns;
        }
        if self.tokens >= bytes {
            self.tokens -= bytes;
            true
        } else {
            false
        }
    }
}

/// `RATE_LIMITS` value: up is what the client sends, down what it receives.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct RateLimit {
    pub up: Bucket,
    pub down: Bucket,
}
const _: () = assert!(core::mem::size_of::<RateLimit>() == 64);

#[cfg(feature = "user")]
mod pod {
    // SAFETY: plain `#[repr(C)]` integers, no padding.
    unsafe impl aya::Pod for super::RateLimit {}
}

#[cfg(test)]
mod tests {
    use super::*;

    /// 10 Mbit/s offered 20 Mbit/s of 1250-byte packets for 10 s passes 10 Mbit/s (plus the
    /// burst), and an idle bucket refills to its burst, not beyond.
    #[test]
    fn passes_the_rate_and_the_burst_and_no_more() {
        let mut b = Bucket::new(10_000_000);
        assert_eq!(b.burst, 125_000);
        let mut passed = 0u64;
        let step = 500_000; // 2,000 packets a second: 20 Mbit/s
        let mut now = 1_000_000_000;
        for _ in 0..20_000 {
            now += step;
            if b.take(now, 1250) {
                passed += 1250;
            }
        }
        let expect = 10_000_000 / 8 * 10 + b.burst;
        assert!(
            passed.abs_diff(expect) < expect / 100,
            "{passed} bytes vs {expect}"
        );
        now += 60 * NS;
        assert!(b.take(now, 0));
        assert_eq!(b.tokens, b.burst);
        // Unlimited takes anything.
        let mut u = Bucket::default();
        assert!(u.take(0, u64::MAX));
    }
}
