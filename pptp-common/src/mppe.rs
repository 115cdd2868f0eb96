//! MPPE (RFC 3078) with 128-bit keys (RFC 3079): the packet header, RC4, SHA-1 and the key
//! change, with no allocation and no recursion, so that the XDP programs run exactly this code on
//! packets and the controller and the tests run it on the host.
//!
//! Everything large (the RC4 S-box, SHA-1's message schedule) is passed in by reference: the
//! programs keep them in map values, since the eBPF stack holds 512 bytes.

/// PPP protocol of an MPPE packet.
pub const PPP_MPPE: u16 = 0x00fd;
/// The MPPE header: four flag bits and a 12-bit coherency count.
pub const HEADER_LEN: usize = 2;
/// "A": the sender re-keyed (stateful: flushed; stateless: every packet).
pub const BIT_FLUSHED: u8 = 0x80;
/// "D": the packet is encrypted.
pub const BIT_ENCRYPTED: u8 = 0x10;
pub const CCOUNT_SPACE: u16 = 4096;
pub const KEY_LEN: usize = 16;
/// Stateful mode re-keys on the coherency counts whose low byte is 0xff ("flag" packets).
pub const STATEFUL_FLAG: u16 = 0xff;

/// The coherency count and flag bits of an MPPE header.
#[inline(always)]
pub fn parse_header(h: [u8; 2]) -> (u8, u16) {
    (h[0] & 0xf0, u16::from_be_bytes([h[0] & 0x0f, h[1]]))
}

#[inline(always)]
pub fn header(bits: u8, ccount: u16) -> [u8; 2] {
    let c = (ccount & (CCOUNT_SPACE - 1)).to_be_bytes();
    [bits | c[0], c[1]]
}

/// How far `ccount` is ahead of `current` in the 12-bit space (0..4096).
#[inline(always)]
pub fn ccount_ahead(current: u16, ccount: u16) -> u16 {
    ccount.wrapping_sub(current) & (CCOUNT_SPACE - 1)
}

/// What a stateless receiver does with a packet (RFC 3078 §8.1: re-key once per coherency count
/// it moved on), bounded: per packet at most `max` re-keys are spent.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum StatelessRx {
    /// Behind (or equal to) the last count, as the kernel judges it (more than half the space
    /// back): dropped, no work.
    Late,
    /// Re-key this many times (1..=max), then decrypt.
    Rekey(u16),
    /// Further ahead than `max`: re-key `max` times (catching up), and drop the packet; after a
    /// long loss the session is in step again within a few packets.
    CatchUp(u16),
}

#[inline(always)]
pub fn stateless_rx(current: u16, ccount: u16, max: u16) -> StatelessRx {
    let ahead = ccount_ahead(current, ccount);
    if ahead == 0 || ahead > CCOUNT_SPACE / 2 {
        StatelessRx::Late
    } else if ahead <= max {
        StatelessRx::Rekey(ahead)
    } else {
        StatelessRx::CatchUp(max)
    }
}

/// What a stateful receiver does with a packet (RFC 3078 §8.2, as Linux's `ppp_mppe` does it):
/// RC4 runs on across packets, so a gap cannot be decrypted past; the receiver discards until
/// a flushed packet (the sender re-keys on every "flag" packet, whose count ends in 0xff, and
/// on the first packet after a CCP Reset-Request).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum StatefulRx {
    /// At or behind the last count (a duplicate, or more than half the space back): dropped, no
    /// state change.
    Late,
    /// A gap: the receiver goes into discard at the expected count and asks for a reset.
    Loss { expected: u16 },
    /// Discarding, and this packet is not flushed: dropped.
    Discard,
    /// Decrypt: change the key `rekeys` times first (one per flag packet missed while
    /// discarding, one more when the packet is flushed), re-keying RC4 if `rekeys > 0`.
    Decrypt { rekeys: u16 },
}

/// The stateful receive rule. `current` is the last count accepted (or the expected one, while
/// `discarding`).
#[inline(always)]
pub fn stateful_rx(current: u16, discarding: bool, ccount: u16, flushed: bool) -> StatefulRx {
    if !discarding {
        let expected = (current + 1) % CCOUNT_SPACE;
        // A duplicate is late too (Linux would take it for a gap and ask for a reset: a
        // replayed packet must not cost the session a round trip).
        let ahead = ccount_ahead(current, ccount);
        if ahead == 0 || ahead > CCOUNT_SPACE / 2 {
            return StatefulRx::Late;
        }
        if ccount != expected {
            return StatefulRx::Loss { expected };
        }
        return StatefulRx::Decrypt {
            rekeys: flushed as u16,
        };
    }
    if !flushed {
        return StatefulRx::Discard;
    }
    // The flag packets passed while discarding: one key change per 256-count block entered.
    let blocks = ((ccount >> 8).wrapping_sub(current >> 8)) & 0x0f;
    StatefulRx::Decrypt { rekeys: blocks + 1 }
}

/// Whether a stateful sender changes the key before this count: on flag packets, and on the
/// first packet after a Reset-Request (`reset`). The packet then carries the flushed bit.
#[inline(always)]
pub fn stateful_tx_rekeys(ccount: u16, reset: bool) -> bool {
    ccount & 0xff == STATEFUL_FLAG || reset
}

/// RC4's state. 258 bytes: the programs keep it in a map value.
#[repr(C)]
#[derive(Clone, Copy)]
pub struct Rc4 {
    pub s: [u8; 256],
    pub i: u8,
    pub j: u8,
}

impl Default for Rc4 {
    fn default() -> Self {
        Self {
            s: [0; 256],
            i: 0,
            j: 0,
        }
    }
}

impl Rc4 {
    /// The key schedule (KSA) for a 16-byte key.
    #[inline(always)]
    pub fn init(&mut self, key: &[u8; KEY_LEN]) {
        let mut n: usize = 0;
        while n < 256 {
            self.s[n] = n as u8;
            n += 1;
        }
        let mut j: u8 = 0;
        let mut n: usize = 0;
        while n < 256 {
            let si = self.s[n & 0xff];
            j = j.wrapping_add(si).wrapping_add(key[n & (KEY_LEN - 1)]);
            self.s[n & 0xff] = self.s[j as usize];
            self.s[j as usize] = si;
            n += 1;
        }
        self.i = 0;
        self.j = 0;
    }

    /// The next keystream byte (PRGA).
    #[inline(always)]
    pub fn keystream(&mut self) -> u8 {
        self.i = self.i.wrapping_add(1);
        let si = self.s[self.i as usize];
        self.j = self.j.wrapping_add(si);
        let sj = self.s[self.j as usize];
        self.s[self.i as usize] = sj;
        self.s[self.j as usize] = si;
        self.s[si.wrapping_add(sj) as usize]
    }

    /// XORs the keystream into `data` (encrypts and decrypts alike).
    #[inline(always)]
    pub fn apply(&mut self, data: &mut [u8]) {
        for b in data {
            *b ^= self.keystream();
        }
    }
}

/// SHA-1's working memory: the message schedule (320 bytes) and one block.
#[repr(C)]
#[derive(Clone, Copy)]
pub struct Sha1Scratch {
    pub w: [u32; 80],
    pub block: [u8; 64],
}

impl Default for Sha1Scratch {
    fn default() -> Self {
        Self {
            w: [0; 80],
            block: [0; 64],
        }
    }
}

const SHA1_INIT: [u32; 5] = [
    0x6745_2301,
    0xefcd_ab89,
    0x98ba_dcfe,
    0x1032_5476,
    0xc3d2_e1f0,
];

/// One SHA-1 compression of `scratch.block` into `h` (FIPS 180-4 §6.1.2).
#[inline(always)]
fn sha1_compress(h: &mut [u32; 5], scratch: &mut Sha1Scratch) {
    let mut t: usize = 0;
    while t < 16 {
        let b = &scratch.block;
        let o = (t * 4) & 0x3f;
        scratch.w[t & 0x7f & 0x0f] = u32::from_be_bytes([
            b[o & 0x3f],
            b[(o + 1) & 0x3f],
            b[(o + 2) & 0x3f],
            b[(o + 3) & 0x3f],
        ]);
        t += 1;
    }
    while t < 80 {
        let w = &mut scratch.w;
        // Masks keep every index visibly in range for the verifier (t < 80 already).
        let x = w[(t - 3) % 80] ^ w[(t - 8) % 80] ^ w[(t - 14) % 80] ^ w[(t - 16) % 80];
        w[t % 80] = x.rotate_left(1);
        t += 1;
    }
    let [mut a, mut b, mut c, mut d, mut e] = *h;
    let mut t: usize = 0;
    while t < 80 {
        let (f, k) = if t < 20 {
            ((b & c) | (!b & d), 0x5a82_7999)
        } else if t < 40 {
            (b ^ c ^ d, 0x6ed9_eba1)
        } else if t < 60 {
            ((b & c) | (b & d) | (c & d), 0x8f1b_bcdc)
        } else {
            (b ^ c ^ d, 0xca62_c1d6)
        };
        let tmp = a
            .rotate_left(5)
            .wrapping_add(f)
            .wrapping_add(e)
            .wrapping_add(k)
            .wrapping_add(scratch.w[t % 80]);
        e = d;
        d = c;
        c = b.rotate_left(30);
        b = a;
        a = tmp;
        t += 1;
    }
    h[0] = h[0].wrapping_add(a);
    h[1] = h[1].wrapping_add(b);
    h[2] = h[2].wrapping_add(c);
    h[3] = h[3].wrapping_add(d);
    h[4] = h[4].wrapping_add(e);
}

/// GetNewKeyFromSHA (RFC 3078 §7.3) for 128-bit keys: the first 16 bytes of
/// SHA-1(start_key ‖ 40×0x00 ‖ session_key ‖ 40×0xF2). The message is 112 bytes: two blocks.
#[inline(always)]
pub fn get_new_key_from_sha(
    start: &[u8; KEY_LEN],
    session: &[u8; KEY_LEN],
    scratch: &mut Sha1Scratch,
) -> [u8; KEY_LEN] {
    let mut h = SHA1_INIT;
    // Block 1: start key, pad1 (40 zeros), the first 8 bytes of the session key.
    let mut n: usize = 0;
    while n < 64 {
        scratch.block[n & 0x3f] = if n < 16 {
            start[n & 0x0f]
        } else if n < 56 {
            0
        } else {
            session[(n - 56) & 0x0f]
        };
        n += 1;
    }
    sha1_compress(&mut h, scratch);
    // Block 2: the session key's last 8 bytes, pad2 (40 × 0xF2), then SHA-1's own padding:
    // 0x80, zeros, and the length in bits (112 × 8 = 896 = 0x0380).
    let mut n: usize = 0;
    while n < 64 {
        scratch.block[n & 0x3f] = if n < 8 {
            session[(n + 8) & 0x0f]
        } else if n < 48 {
            0xf2
        } else if n == 48 {
            0x80
        } else if n == 62 {
            0x03
        } else if n == 63 {
            0x80
        } else {
            0
        };
        n += 1;
    }
    sha1_compress(&mut h, scratch);
    let mut out = [0u8; KEY_LEN];
    let mut n: usize = 0;
    while n < 4 {
        let b = h[n & 3].to_be_bytes();
        out[(n * 4) & 0x0f] = b[0];
        out[(n * 4 + 1) & 0x0f] = b[1];
        out[(n * 4 + 2) & 0x0f] = b[2];
        out[(n * 4 + 3) & 0x0f] = b[3];
        n += 1;
    }
    out
}

/// The first session key of a direction (RFC 3079 §3.5: GetNewKeyFromSHA(StartKey, StartKey)).
#[inline(always)]
pub fn initial_session_key(start: &[u8; KEY_LEN], scratch: &mut Sha1Scratch) -> [u8; KEY_LEN] {
    get_new_key_from_sha(start, start, scratch)
}

/// A key change (RFC 3078 §7.3): the interim key from SHA-1, encrypted with RC4 keyed by
/// itself, becomes the session key. `rc4` is working memory (left keyed by the interim key).
#[inline(always)]
pub fn rekey(
    start: &[u8; KEY_LEN],
    session: &mut [u8; KEY_LEN],
    scratch: &mut Sha1Scratch,
    rc4: &mut Rc4,
) {
    let mut interim = get_new_key_from_sha(start, session, scratch);
    rc4.init(&interim);
    let mut n: usize = 0;
    while n < KEY_LEN {
        interim[n & 0x0f] ^= rc4.keystream();
        n += 1;
    }
    *session = interim;
}

/// One direction's MPPE state, as the data path keeps it per session.
#[repr(C)]
#[derive(Clone, Copy, Default)]
pub struct MppeDirection {
    pub start_key: [u8; KEY_LEN],
    pub session_key: [u8; KEY_LEN],
    /// The last coherency count used (sent, or received and accepted).
    pub ccount: u16,
    /// 1: stateful (RC4 runs on across packets; re-key on flag packets).
    pub stateful: u8,
    /// Stateful receive: a packet was lost; discard until a flushed one arrives.
    pub discard: u8,
    /// Stateful send: the last reset generation acted on (`GreState::mppe_reset`, which the
    /// controller bumps for every CCP Reset-Request).
    pub reset_seen: u32,
    /// Stateful mode's RC4 (stateless mode keys a fresh one per packet).
    pub rc4: Rc4,
    /// Stateless receive: which of the last `LATE_KEYS` counts up to `ccount` were accepted
    /// (bit d: `ccount - d`); a reordered packet of a count not yet seen is still decrypted.
    pub recent: u16,
    pub _pad2: [u8; 4],
    /// Stateful receive: `bpf_ktime_get_ns` when a lost packet was last handed to the
    /// controller (it answers with a Reset-Request; at most one a second while discarding).
    pub signal_ns: u64,
    /// Stateless receive: the session keys of the last `LATE_KEYS` counts (count % LATE_KEYS),
    /// for reordered packets.
    pub keys: [[u8; KEY_LEN]; LATE_KEYS],
}

/// How far behind a stateless receiver's count a reordered packet can still be decrypted: the
/// keys of that many counts are kept (RFC 3078 leaves late packets to the implementation;
/// Linux drops them). 16 keys, 256 bytes a direction.
pub const LATE_KEYS: usize = 16;

/// What a stateless receiver does with a packet at or behind its count: the slot of the kept
/// key to decrypt it with, or `None` (a duplicate, or too far behind).
#[inline(always)]
pub fn stateless_late(current: u16, recent: u16, ccount: u16) -> Option<usize> {
    let behind = ccount_ahead(ccount, current);
    if behind == 0 || behind as usize >= LATE_KEYS || recent & (1 << behind) != 0 {
        return None;
    }
    Some(ccount as usize % LATE_KEYS)
}

/// `recent` after the count moved on by `n` (`accepted`: the new count's packet was delivered).
#[inline(always)]
pub fn recent_after(recent: u16, n: u16, accepted: bool) -> u16 {
    let moved = if n as usize >= LATE_KEYS {
        0
    } else {
        recent << n
    };
    moved | accepted as u16
}

impl MppeDirection {
    /// A direction keyed from its start key, before its first packet (the count before 0).
    pub fn new(start_key: [u8; KEY_LEN], stateful: bool, scratch: &mut Sha1Scratch) -> Self {
        let mut d = Self {
            start_key,
            session_key: initial_session_key(&start_key, scratch),
            ccount: CCOUNT_SPACE - 1,
            stateful: stateful as u8,
            ..Self::default()
        };
        let key = d.session_key;
        d.rc4.init(&key);
        d
    }
}

/// Per-session MPPE state in the data path: both directions, each with the lock that keeps one
/// CPU at a time on it (the two directions are independent and run in parallel).
#[repr(C)]
#[derive(Clone, Copy, Default)]
pub struct MppeState {
    /// 0 free, 1 held (an atomic compare-and-exchange takes it): receive, send.
    pub rx_lock: u32,
    pub tx_lock: u32,
    /// Client → us.
    pub rx: MppeDirection,
    /// Us → client.
    pub tx: MppeDirection,
}

/// Per-CPU working memory of the programs' MPPE stage (too large for the eBPF stack).
#[repr(C)]
#[derive(Clone, Copy, Default)]
pub struct MppeScratch {
    pub sha: Sha1Scratch,
    pub rc4: Rc4,
    pub _pad: [u8; 6],
    /// The key being re-keyed (committed to the session only when the packet checks out).
    pub key: [u8; KEY_LEN],
}

impl MppeState {
    /// Both directions keyed for a new session: we send with `send`, receive with `recv`.
    pub fn new(send: [u8; KEY_LEN], recv: [u8; KEY_LEN], stateful: bool) -> Self {
        let mut scratch = Sha1Scratch::default();
        Self {
            rx_lock: 0,
            tx_lock: 0,
            rx: MppeDirection::new(recv, stateful, &mut scratch),
            tx: MppeDirection::new(send, stateful, &mut scratch),
        }
    }
}

#[cfg(feature = "user")]
mod pod {
    // SAFETY: #[repr(C)] byte arrays and integers with explicit padding: every bit pattern is
    // valid and there are no implicit padding bytes (sizes asserted in the tests).
    unsafe impl aya::Pod for super::MppeState {}
    // SAFETY: as above.
    unsafe impl aya::Pod for super::MppeScratch {}
}

#[cfg(test)]
mod tests {
    use super::*;

    fn hex(s: &str) -> [u8; 16] {
        core::array::from_fn(|i| u8::from_str_radix(&s[i * 2..i * 2 + 2], 16).unwrap())
    }

    #[test]
    fn rfc3079_128_bit_session_key_and_encrypted_test_message() {
        let mut scratch = Sha1Scratch::default();
        // RFC 3079 §3.5.3: SendStartKey128 → SendSessionKey128 → "test message" encrypted.
        let start = hex("8B7CDC149B993A1BA118CB153F56DCCB");
        let session = initial_session_key(&start, &mut scratch);
        assert_eq!(session, hex("405CB2247A7956E6E211007AE27B22D4"));
        let mut rc4 = Rc4::default();
        rc4.init(&session);
        let mut msg = *b"test message";
        rc4.apply(&mut msg);
        assert_eq!(
            msg,
            [
                0x81, 0x84, 0x83, 0x17, 0xDF, 0x68, 0x84, 0x62, 0x72, 0xFB, 0x5A, 0xBE
            ]
        );
    }

    #[test]
    fn headers_and_the_stateless_receive_rule() {
        assert_eq!(header(BIT_FLUSHED | BIT_ENCRYPTED, 0x123), [0x91, 0x23]);
        assert_eq!(parse_header([0x91, 0x23]), (0x90, 0x123));
        assert_eq!(header(BIT_ENCRYPTED, 4096 + 5), [0x10, 5], "12 bits wrap");
        use StatelessRx::*;
        assert_eq!(stateless_rx(4095, 0, 32), Rekey(1), "the first packet");
        assert_eq!(stateless_rx(10, 11, 32), Rekey(1));
        assert_eq!(stateless_rx(10, 12, 32), Rekey(2), "one lost");
        assert_eq!(stateless_rx(10, 42, 32), Rekey(32));
        assert_eq!(stateless_rx(10, 43, 32), CatchUp(32));
        assert_eq!(stateless_rx(10, 10, 32), Late, "duplicate");
        assert_eq!(stateless_rx(10, 9, 32), Late);
        assert_eq!(stateless_rx(4090, 5, 32), Rekey(11), "wrap-around");
        assert_eq!(stateless_rx(10, 10 + 2048, 32), CatchUp(32));
        assert_eq!(stateless_rx(10, 10 + 2049, 32), Late, "more than half back");
    }

    #[test]
    fn reordered_stateless_packets_and_their_keys() {
        // Counts 19 and 20 accepted (recent: 20, 19); 18 was never seen.
        let recent = recent_after(recent_after(0, 1, true), 1, true);
        assert_eq!(recent, 0b11);
        let recent = recent_after(recent, 1, true); // 21 accepted: 21, 20, 19 = 0b111
        assert_eq!(
            stateless_late(21, recent, 18),
            Some(18 % LATE_KEYS),
            "reordered, new"
        );
        assert_eq!(stateless_late(21, recent, 20), None, "duplicate");
        assert_eq!(
            stateless_late(21, recent, 21),
            None,
            "duplicate of the current"
        );
        assert_eq!(stateless_late(21, recent, 5), None, "too far behind");
        assert_eq!(stateless_late(21, recent, 6), Some(6 % LATE_KEYS));
        assert_eq!(
            stateless_late(2, 0b1, 4095),
            Some(4095 % LATE_KEYS),
            "across the wrap"
        );
        // A jump of 3 keeps the bits, shifted; a catch-up accepts nothing; 8 clears all.
        assert_eq!(recent_after(0b101, 3, true), 0b101001);
        assert_eq!(recent_after(0b101, 3, false), 0b101000);
        assert_eq!(recent_after(0xff, 8, true), 0xff01);
        assert_eq!(recent_after(0xffff, 16, true), 1);
    }

    #[test]
    fn the_stateful_receive_rule() {
        use StatefulRx::*;
        assert_eq!(stateful_rx(4095, false, 0, false), Decrypt { rekeys: 0 });
        assert_eq!(
            stateful_rx(254, false, 255, true),
            Decrypt { rekeys: 1 },
            "flag"
        );
        assert_eq!(stateful_rx(10, false, 12, false), Loss { expected: 11 });
        assert_eq!(stateful_rx(10, false, 10, false), Late, "duplicate");
        assert_eq!(stateful_rx(10, false, 4000, false), Late);
        assert_eq!(stateful_rx(11, true, 20, false), Discard);
        // Discarding from 11: a flushed 20 (a reset) is in the same block: one change.
        assert_eq!(stateful_rx(11, true, 20, true), Decrypt { rekeys: 1 });
        // From 11 to the flag packet 255: still block 0, one change (the flag's own).
        assert_eq!(stateful_rx(11, true, 255, true), Decrypt { rekeys: 1 });
        // Flag 255 lost too, then a reset at 300: block 1 entered (255's change) + 300's.
        assert_eq!(stateful_rx(11, true, 300, true), Decrypt { rekeys: 2 });
        // Across the wrap: from 4000 (block 15) to 5 (block 0).
        assert_eq!(stateful_rx(4000, true, 5, true), Decrypt { rekeys: 2 });
        assert!(stateful_tx_rekeys(255, false) && stateful_tx_rekeys(4095, false));
        assert!(!stateful_tx_rekeys(256, false) && stateful_tx_rekeys(256, true));
    }

    /// The rule against a stateful sender written from the RFC's words, through loss of every
    /// kind: after each Loss the sender is told to reset, and the receiver's key and count must
    /// be the sender's whenever it decrypts.
    #[test]
    fn stateful_rule_follows_a_sender_through_losses() {
        let start = [9u8; KEY_LEN];
        let mut scratch = Sha1Scratch::default();
        let mut rc4 = Rc4::default();
        let (mut tx_key, mut rx_key) = (
            initial_session_key(&start, &mut scratch),
            initial_session_key(&start, &mut scratch),
        );
        let (mut tx_count, mut rx_count, mut discarding, mut reset) =
            (4095u16, 4095u16, false, false);
        let mut decrypted = 0;
        for n in 0..3000u32 {
            tx_count = (tx_count + 1) % CCOUNT_SPACE;
            let flushed = stateful_tx_rekeys(tx_count, core::mem::take(&mut reset));
            if flushed {
                rekey(&start, &mut tx_key, &mut scratch, &mut rc4);
            }
            // Lose runs of packets: short ones, and one of 600 (two flag packets).
            let lost = n % 97 == 5 || (1000..1600).contains(&n);
            if lost {
                continue;
            }
            match stateful_rx(rx_count, discarding, tx_count, flushed) {
                StatefulRx::Late => panic!("{n}: late"),
                StatefulRx::Loss { expected } => {
                    (rx_count, discarding, reset) = (expected, true, true);
                }
                StatefulRx::Discard => {}
                StatefulRx::Decrypt { rekeys: k } => {
                    for _ in 0..k {
                        rekey(&start, &mut rx_key, &mut scratch, &mut rc4);
                    }
                    (rx_count, discarding) = (tx_count, false);
                    assert_eq!(rx_key, tx_key, "{n}");
                    decrypted += 1;
                }
            }
        }
        assert!(decrypted > 2000, "{decrypted}");
    }

    #[test]
    fn sizes() {
        assert_eq!(core::mem::size_of::<Rc4>(), 258);
        assert_eq!(core::mem::size_of::<MppeDirection>(), 568);
        assert_eq!(core::mem::size_of::<MppeState>(), 1144);
        assert_eq!(core::mem::size_of::<Sha1Scratch>(), 384);
        assert_eq!(core::mem::size_of::<MppeScratch>(), 664);
    }
}
