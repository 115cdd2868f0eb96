//! MPPE: the header rule the data path applies (any header after any state: bounded re-keys,
//! never a late packet accepted), decryption of hostile bytes (never panics, a refused packet
//! leaves the receive state alone), and CCP's MPPE option under every policy (never agrees to
//! anything but 128-bit, both ways alike).
#![no_main]
use libfuzzer_sys::fuzz_target;
use pptp_common::mppe::{
    BIT_FLUSHED, CCOUNT_SPACE, LATE_KEYS, StatefulRx, StatelessRx, ccount_ahead, parse_header,
    stateful_rx, stateless_late, stateless_rx,
};
use pptp_user::ppp::{
    ccp::{CcpPolicy, MppePolicy, StatefulMppe},
    fsm::{Negotiator, Verdict},
};

fuzz_target!(|data: &[u8]| {
    if data.len() < 5 {
        return;
    }
    let current = u16::from_be_bytes([data[0], data[1]]) % CCOUNT_SPACE;
    let (_, ccount) = parse_header([data[2], data[3]]);
    match stateless_rx(current, ccount, 8) {
        StatelessRx::Late => {
            let a = ccount_ahead(current, ccount);
            assert!(a == 0 || a > CCOUNT_SPACE / 2);
        }
        StatelessRx::Rekey(n) => assert!((1..=8).contains(&n)),
        StatelessRx::CatchUp(n) => assert_eq!(n, 8),
    }
    // A reordered packet is decrypted only with a kept key, never for the current count.
    if let Some(k) = stateless_late(current, u16::from(data[4]), ccount) {
        let behind = ccount_ahead(ccount, current);
        assert!(behind >= 1 && (behind as usize) < LATE_KEYS && k < LATE_KEYS);
        assert_eq!(u16::from(data[4]) & (1 << behind), 0);
    }
    // The stateful rule: at most one key change per 256-count block plus one, never a decrypt
    // of a gap.
    let flushed = data[2] & BIT_FLUSHED != 0;
    match stateful_rx(current, data[4] & 1 != 0, ccount, flushed) {
        StatefulRx::Decrypt { rekeys } => {
            assert!(rekeys <= 16);
            if data[4] & 1 == 0 {
                assert_eq!(ccount, (current + 1) % CCOUNT_SPACE);
            } else {
                assert!(flushed);
            }
        }
        StatefulRx::Loss { expected } => assert_eq!(expected, (current + 1) % CCOUNT_SPACE),
        StatefulRx::Late | StatefulRx::Discard => {}
    }
    // The client's receiver on hostile bytes: no panic.
    let mut rx = pptp_client_free::Direction::new();
    let _ = rx.decrypt(&data[2..]);
    let policy = match data[4] % 4 {
        0 => MppePolicy::Require,
        1 => MppePolicy::Prefer,
        2 => MppePolicy::Allow,
        _ => MppePolicy::Deny,
    };
    let stateful = match (data[4] >> 5) % 3 {
        0 => StatefulMppe::No,
        1 => StatefulMppe::Allow,
        _ => StatefulMppe::Force,
    };
    let mut p = CcpPolicy::new(policy, data[4] & 4 != 0, stateful);
    match p.check(&data[5..], data[4] & 16 != 0) {
        Verdict::Ack => {
            // Whatever was acked: 128-bit MPPE or nothing.
            if let Some(pptp_user::ppp::ccp::CcpOutcome::Mppe { .. }) = p.outcome() {
                assert!(policy != MppePolicy::Deny);
            }
        }
        Verdict::Nak(n) => {
            // Naks suggest exactly 128-bit MPPE (never 40/56-bit, never MPPC).
            assert_eq!(n.len(), 6);
            assert_eq!(n[0], 18);
            assert_eq!(u32::from_be_bytes([n[2], n[3], n[4], n[5]]) & 0x00ff_ffff, 0x40);
        }
        Verdict::Reject(_) | Verdict::Discard => {}
    }
    let _ = p.request();
});

/// A receiver keyed with a fixed key (the fuzz input is the packet, not the key).
mod pptp_client_free {
    pub struct Direction(pptp_common::mppe::MppeDirection, pptp_common::mppe::MppeScratch);
    impl Direction {
        pub fn new() -> Self {
            let mut s = pptp_common::mppe::Sha1Scratch::default();
            Self(
                pptp_common::mppe::MppeDirection::new([7; 16], false, &mut s),
                pptp_common::mppe::MppeScratch::default(),
            )
        }
        /// The data path's receive rule on a host buffer.
        pub fn decrypt(&mut self, packet: &[u8]) -> Option<Vec<u8>> {
            let (h, body) = packet.split_at_checked(2)?;
            let (bits, ccount) = pptp_common::mppe::parse_header([h[0], h[1]]);
            if bits & pptp_common::mppe::BIT_ENCRYPTED == 0 {
                return None;
            }
            let n = match pptp_common::mppe::stateless_rx(self.0.ccount, ccount, 8) {
                pptp_common::mppe::StatelessRx::Rekey(n) => n,
                _ => return None,
            };
            let mut key = self.0.session_key;
            for _ in 0..n {
                pptp_common::mppe::rekey(&self.0.start_key, &mut key, &mut self.1.sha, &mut self.1.rc4);
            }
            self.1.rc4.init(&key);
            let mut out = body.to_vec();
            self.1.rc4.apply(&mut out);
            if out.first() == Some(&0x21) || out.starts_with(&[0, 0x21]) {
                self.0.session_key = key;
                self.0.ccount = ccount;
            }
            Some(out)
        }
    }
}
