//! MPPE-128 as a client runs it (RFC 3078 stateless and stateful, keys per RFC 3079), written on
//! RustCrypto's RC4 and SHA-1 and independently of the gateway's `pptp_common::mppe`, so that
//! the two check each other: the tests encrypt with one and decrypt with the other.

use rc4::{KeyInit as _, Rc4, StreamCipher as _, consts::U16};
use sha1::{Digest as _, Sha1};

const PAD1: [u8; 40] = [0x00; 40];
const PAD2: [u8; 40] = [0xf2; 40];
const FLUSHED: u8 = 0x80;
const ENCRYPTED: u8 = 0x10;

/// GetNewKeyFromSHA (RFC 3078 §7.3), 128-bit.
pub fn get_new_key(start: &[u8; 16], session: &[u8; 16]) -> [u8; 16] {
    let d = Sha1::new()
        .chain_update(start)
        .chain_update(PAD1)
        .chain_update(session)
        .chain_update(PAD2)
        .finalize();
    let mut k = [0u8; 16];
    k.copy_from_slice(&d[..16]);
    k
}

/// The key change: the interim key encrypted with RC4 keyed by itself.
pub fn change_key(start: &[u8; 16], session: &[u8; 16]) -> [u8; 16] {
    let mut interim = get_new_key(start, session);
    let mut rc4 = Rc4::<U16>::new(&interim.into());
    rc4.apply_keystream(&mut interim);
    interim
}

fn rc4(key: &[u8; 16]) -> Rc4<U16> {
    Rc4::<U16>::new(&(*key).into())
}

/// One direction of MPPE.
pub struct Direction {
    start: [u8; 16],
    key: [u8; 16],
    /// The last coherency count (4095 before the first packet).
    ccount: u16,
    stateful: Option<Rc4<U16>>,
    /// Stateful: receiving, a packet was lost and all is discarded until a flushed one;
    /// sending, the next packet re-keys and goes out flushed (a Reset-Request came).
    resync: bool,
}

impl Direction {
    pub fn new(start: [u8; 16], stateful: bool) -> Self {
        let key = get_new_key(&start, &start);
        Self {
            start,
            key,
            ccount: 4095,
            stateful: stateful.then(|| rc4(&key)),
            resync: false,
        }
    }

    pub fn session_key(&self) -> [u8; 16] {
        self.key
    }

    pub fn ccount(&self) -> u16 {
        self.ccount
    }

    /// Stateful: the peer asked for a reset (CCP Reset-Request): the next packet re-keys and is
    /// sent flushed.
    pub fn flush(&mut self) {
        self.resync = true;
    }

    /// Whether a stateful receiver lost a packet and waits for a flushed one (send a CCP
    /// Reset-Request).
    pub fn wants_reset(&self) -> bool {
        self.resync
    }

    /// Encrypts `plain` (PPP protocol and packet): the MPPE packet (header first).
    pub fn encrypt(&mut self, plain: &[u8]) -> Vec<u8> {
        self.ccount = (self.ccount + 1) % 4096;
        let mut bits = ENCRYPTED;
        let mut data = plain.to_vec();
        match &mut self.stateful {
            None => {
                self.key = change_key(&self.start, &self.key);
                bits |= FLUSHED;
                rc4(&self.key).apply_keystream(&mut data);
            }
            Some(r) => {
                // A new key on flag packets, and on the first packet after a Reset-Request.
                if self.ccount & 0xff == 0xff || std::mem::take(&mut self.resync) {
                    self.key = change_key(&self.start, &self.key);
                    *r = rc4(&self.key);
                    bits |= FLUSHED;
                }
                r.apply_keystream(&mut data);
            }
        }
        let mut out = vec![bits | (self.ccount >> 8) as u8, self.ccount as u8];
        out.extend_from_slice(&data);
        out
    }

    /// Decrypts an MPPE packet (header first) as the Linux kernel does (`ppp_mppe.c`): `None`
    /// for a late or undecryptable packet (stateful: a loss; send a CCP Reset-Request).
    pub fn decrypt(&mut self, packet: &[u8]) -> Option<Vec<u8>> {
        let (&h0, rest) = packet.split_first()?;
        let (&h1, data) = rest.split_first()?;
        if h0 & ENCRYPTED == 0 {
            return None;
        }
        let flushed = h0 & FLUSHED != 0;
        let ccount = (u16::from(h0 & 0x0f) << 8) | u16::from(h1);
        let mut data = data.to_vec();
        match &mut self.stateful {
            None => {
                let ahead = ccount.wrapping_sub(self.ccount) & 0x0fff;
                if ahead == 0 || ahead > 2048 {
                    return None;
                }
                for _ in 0..ahead {
                    self.key = change_key(&self.start, &self.key);
                }
                self.ccount = ccount;
                rc4(&self.key).apply_keystream(&mut data);
            }
            Some(r) => {
                // As Linux's ppp_mppe (RFC 3078 §8.2): a gap sends the receiver into discard
                // until a flushed packet; the key changes once per flag packet missed, and once
                // more for every flushed packet (flag packets and flushes after Reset-Request).
                if !self.resync {
                    let expected = (self.ccount + 1) % 4096;
                    if ccount != expected {
                        self.ccount = expected;
                        self.resync = true;
                        return None;
                    }
                } else {
                    if !flushed {
                        return None;
                    }
                    while self.ccount & !0xff != ccount & !0xff {
                        self.key = change_key(&self.start, &self.key);
                        self.ccount = (self.ccount + 256) % 4096;
                    }
                    self.resync = false;
                }
                self.ccount = ccount;
                if flushed {
                    self.key = change_key(&self.start, &self.key);
                    *r = rc4(&self.key);
                }
                r.apply_keystream(&mut data);
            }
        }
        Some(data)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rfc3079_vector_and_the_gateways_key_change_agree() {
        let start = [
            0x8B, 0x7C, 0xDC, 0x14, 0x9B, 0x99, 0x3A, 0x1B, 0xA1, 0x18, 0xCB, 0x15, 0x3F, 0x56,
            0xDC, 0xCB,
        ];
        let d = Direction::new(start, false);
        let mut msg = *b"test message";
        rc4(&d.session_key()).apply_keystream(&mut msg);
        assert_eq!(
            msg,
            [
                0x81, 0x84, 0x83, 0x17, 0xDF, 0x68, 0x84, 0x62, 0x72, 0xFB, 0x5A, 0xBE
            ]
        );
        // The gateway's no_std key change (the code XDP runs) against this one, 300 changes on.
        let mut scratch = pptp_common::mppe::Sha1Scratch::default();
        let mut r = pptp_common::mppe::Rc4::default();
        let mut theirs = pptp_common::mppe::initial_session_key(&start, &mut scratch);
        let mut ours = d.session_key();
        assert_eq!(theirs, ours);
        for _ in 0..300 {
            pptp_common::mppe::rekey(&start, &mut theirs, &mut scratch, &mut r);
            ours = change_key(&start, &ours);
            assert_eq!(theirs, ours);
        }
    }

    #[test]
    fn stateful_loss_is_recovered_by_a_reset() {
        let mut tx = Direction::new([3; 16], true);
        let mut rx = Direction::new([3; 16], true);
        for n in 0..300u32 {
            let p = tx.encrypt(&n.to_be_bytes());
            assert_eq!(rx.decrypt(&p).as_deref(), Some(&n.to_be_bytes()[..]), "{n}");
        }
        // One packet lost: the next is refused, and so is all until a flushed one.
        tx.encrypt(b"lost");
        assert_eq!(rx.decrypt(&tx.encrypt(b"gap")), None);
        assert!(rx.wants_reset());
        assert_eq!(rx.decrypt(&tx.encrypt(b"still")), None);
        // The Reset-Request reaches the sender: its next packet is flushed, and decrypts.
        tx.flush();
        let p = tx.encrypt(b"again");
        assert_eq!(p[0] & FLUSHED, FLUSHED);
        assert_eq!(rx.decrypt(&p).as_deref(), Some(&b"again"[..]));
        assert!(!rx.wants_reset());
        for n in 0..600u32 {
            let p = tx.encrypt(&n.to_be_bytes());
            assert_eq!(rx.decrypt(&p).as_deref(), Some(&n.to_be_bytes()[..]), "{n}");
        }
    }

    #[test]
    fn both_modes_round_trip_with_loss() {
        for stateful in [false, true] {
            let mut tx = Direction::new([7; 16], stateful);
            let mut rx = Direction::new([7; 16], stateful);
            for n in 0..600u32 {
                let plain = n.to_be_bytes();
                let p = tx.encrypt(&plain);
                // Stateless: drop every 7th packet, the next decrypts anyway.
                if !stateful && n % 7 == 3 {
                    continue;
                }
                assert_eq!(
                    rx.decrypt(&p).as_deref(),
                    Some(&plain[..]),
                    "{stateful} {n}"
                );
            }
        }
    }
}
