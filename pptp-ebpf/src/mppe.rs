//! The MPPE stage (RFC 3078, 128-bit keys, stateless and stateful): decryption of what a client sends, in the
//! decapsulation, and encryption of what goes to it, in the encapsulation. RC4, SHA-1 and the key
//! change are `pptp_common::mppe`, the same code the controller and the tests run.
//!
//! One CPU at a time per session and direction: a direction's key chain and coherency count are
//! sequential, so its work runs under that direction's lock (an atomic compare-and-exchange in
//! the session's `MppeState`; receive and send have one each and run in parallel). A CPU that
//! finds the lock taken spins for a bounded while (another CPU's packet takes a few
//! microseconds), then drops the packet and counts it (`mppe_busy`): never is a packet processed
//! on a half-updated key. On the way out the GRE sequence number is taken under the same lock,
//! so sequence numbers and coherency counts are handed out in the same order.

use aya_ebpf::{helpers::bpf_ktime_get_ns, programs::XdpContext};
use pptp_common::{
    mppe::{
        BIT_ENCRYPTED, BIT_FLUSHED, CCOUNT_SPACE, HEADER_LEN, LATE_KEYS, MppeDirection,
        MppeScratch, MppeState, StatefulRx, StatelessRx, ccount_ahead, header, parse_header,
        recent_after, rekey, stateful_rx, stateful_tx_rekeys, stateless_late, stateless_rx,
    },
    stats::DropReason,
};

use crate::{
    maps::{MPPE_SCRATCH, MPPE_STATE},
    packet::read_at,
};

/// Re-keys one received packet may cost (each ≈ 1.7 µs: SHA-1 of two blocks, two key
/// schedules). A bigger jump catches up by this much and drops the packet.
pub const MAX_REKEYS: u16 = 16;
/// The longest payload encrypted or decrypted (a bound for the verifier; tunnel MTU ≤ 1500).
const MAX_PAYLOAD: usize = 1536;

/// Lock attempts before a packet is given up as busy (a few tens of microseconds: several
/// packets' worth of another CPU's work).
const LOCK_SPINS: u32 = 4096;

/// The session's state and this CPU's scratch, with one direction locked; unlocked on drop.
pub struct Locked {
    state: *mut MppeState,
    scratch: *mut MppeScratch,
    lock: *mut u32,
}

impl Locked {
    #[inline(always)]
    pub fn take(slot: u32, rx: bool) -> Result<Self, DropReason> {
        let state = MPPE_STATE
            .get_ptr_mut(slot)
            .ok_or(DropReason::MppeNoState)?;
        let scratch = MPPE_SCRATCH.get_ptr_mut(0).ok_or(DropReason::MppeNoState)?;
        // SAFETY: `state` points into a map value that outlives this program run.
        let lock = unsafe {
            if rx {
                &raw mut (*state).rx_lock
            } else {
                &raw mut (*state).tx_lock
            }
        };
        let mut n = 0;
        while n < LOCK_SPINS {
            // SAFETY: `lock` as above.
            if unsafe { try_lock(lock) } {
                return Ok(Self {
                    state,
                    scratch,
                    lock,
                });
            }
            n += 1;
        }
        Err(DropReason::MppeBusy)
    }
}

impl Drop for Locked {
    #[inline(always)]
    fn drop(&mut self) {
        // SAFETY: as in `take`; we hold the lock.
        unsafe { unlock(self.lock) };
    }
}

/// Bytes XORed per `bpf_loop` step.
const CHUNK: usize = 64;

/// XORs the keystream of the CPU's scratch RC4 into the packet bytes `[from, to)` (offsets from
/// the packet start).
///
/// Through `bpf_loop`, a chunk a step: the verifier checks one chunk once. An open-coded byte
/// loop here was walked once per path reaching it, with everything after it each time (556k
/// of the 1M instructions for the stateless decapsulation alone; stateful mode's extra paths
/// took it past the limit). A step costs an indirect call: ~22 per 1400-byte packet.
#[inline(always)]
fn apply(ctx: &XdpContext, from: usize, to: usize) {
    let len = to.saturating_sub(from);
    let steps = len.div_ceil(CHUNK).min(MAX_PAYLOAD / CHUNK);
    let mut c = ApplyCtx {
        xdp: ctx.ctx,
        from: from as u64,
        to: to as u64,
    };
    // SAFETY: the callback is a static function taking (index, ctx); `c` outlives the call.
    unsafe {
        aya_ebpf::helpers::bpf_loop(
            steps as u32,
            apply_chunk as *const () as *mut aya_ebpf::cty::c_void,
            (&raw mut c).cast(),
            0,
        );
    }
}

/// What an `apply` step needs: the packet (through its context) and the byte range.
#[repr(C)]
struct ApplyCtx {
    xdp: *mut aya_ebpf::bindings::xdp_md,
    from: u64,
    to: u64,
}

/// One chunk of `apply`: `bpf_loop`'s callback. Returns 0 to go on, 1 to stop.
///
/// Shaped for the verifier: the chunk's start is masked to a bounded offset, one pointer walks
/// the bytes and is itself compared with `data_end` (recomputing `data + offset` per byte would
/// give the access and the check different identities); and the comparison is `p + 1 > end`
/// with an addend LLVM cannot see through, since it folds the plain form into `p >= end`, from
/// which the verifier grants no byte.
#[inline(never)]
extern "C" fn apply_chunk(index: u64, ctx: *mut aya_ebpf::cty::c_void) -> i64 {
    // SAFETY: `ctx` is the `ApplyCtx` on the caller's stack (see `apply`).
    let c = unsafe { &*(ctx as *const ApplyCtx) };
    let Some(scratch) = MPPE_SCRATCH.get_ptr_mut(0) else {
        return 1;
    };
    // SAFETY: a per-CPU map value, valid for the program run; the caller holds the lock of the
    // session whose bytes these are.
    let rc4 = unsafe { &mut (*scratch).rc4 };
    // SAFETY: the program's own context, valid for the run.
    let (data, data_end) = unsafe { ((*c.xdp).data as usize, (*c.xdp).data_end as usize) };
    let start = ((c.from + index * CHUNK as u64) & 0x1fff) as usize;
    let n = (c.to as usize).saturating_sub(start);
    // RC4's indices in registers for the chunk: through the map value, every packet store
    // (which might alias it, as far as LLVM knows) would force them back to memory, byte by byte.
    let (mut i, mut j) = (rc4.i, rc4.j);
    let s = &mut rc4.s;
    let mut p = data + start;
    let mut k = 0;
    let mut stop = 0;
    while k < CHUNK {
        if k >= n || p + core::hint::black_box(1usize) > data_end {
            stop = 1;
            break;
        }
        i = i.wrapping_add(1);
        let si = s[i as usize];
        j = j.wrapping_add(si);
        let sj = s[j as usize];
        s[i as usize] = sj;
        s[j as usize] = si;
        // SAFETY: `p` lies inside the packet (checked just above).
        unsafe { *(p as *mut u8) ^= s[si.wrapping_add(sj) as usize] };
        p += 1;
        k += 1;
    }
    rc4.i = i;
    rc4.j = j;
    stop
}

/// What became of a received MPPE packet that was not dropped.
pub enum Received {
    /// Decrypted in place.
    Plain,
    /// Stateful, and it showed a loss: hand it to the controller, which answers with a CCP
    /// Reset-Request (as pppd does on the kernel's decompression error).
    ToController,
}

/// A lost-packet signal is handed up at most this often per session while discarding (pppd
/// repeats its Reset-Request after a second without a Reset-Ack).
const SIGNAL_INTERVAL_NS: u64 = 1_000_000_000;

/// Decrypts in place the MPPE packet whose 2-byte header is at `off` and whose PPP payload ends
/// at `end`; on success the plaintext (PPP protocol, then the packet) starts at `off + 2`.
///
/// Either mode works on copies in the CPU's scratch (the key, and for stateful mode the RC4
/// state) and commits them only when the plaintext is IPv4: a forged or corrupt packet leaves
/// the session's state as it was.
#[inline(always)]
pub fn decrypt(
    ctx: &XdpContext,
    slot: u32,
    off: usize,
    end: usize,
) -> Result<Received, DropReason> {
    let (bits, ccount) = parse_header(read_at::<[u8; HEADER_LEN]>(ctx, off)?);
    if bits & BIT_ENCRYPTED == 0 {
        return Err(DropReason::MppePlaintext);
    }
    let l = Locked::take(slot, true)?;
    // SAFETY: `Locked` holds pointers into map values valid for this run, and the lock.
    let (dir, scratch) = unsafe { (&mut (*l.state).rx, &mut *l.scratch) };
    let stateful = dir.stateful != 0;
    let (n, deliver) = if stateful {
        match stateful_rx(
            dir.ccount,
            dir.discard != 0,
            ccount,
            bits & BIT_FLUSHED != 0,
        ) {
            StatefulRx::Late => return Err(DropReason::MppeLate),
            StatefulRx::Loss { expected } => {
                dir.ccount = expected;
                dir.discard = 1;
                // SAFETY: plain helper call.
                dir.signal_ns = unsafe { bpf_ktime_get_ns() };
                return Ok(Received::ToController);
            }
            StatefulRx::Discard => {
                // SAFETY: plain helper call.
                let now = unsafe { bpf_ktime_get_ns() };
                if now.wrapping_sub(dir.signal_ns) < SIGNAL_INTERVAL_NS {
                    return Err(DropReason::MppeDiscard);
                }
                dir.signal_ns = now;
                return Ok(Received::ToController);
            }
            StatefulRx::Decrypt { rekeys } => (rekeys, true),
        }
    } else {
        match stateless_rx(dir.ccount, ccount, MAX_REKEYS) {
            StatelessRx::Late => return decrypt_late(ctx, dir, scratch, ccount, off, end),
            StatelessRx::Rekey(n) => (n, true),
            StatelessRx::CatchUp(n) => (n, false),
        }
    };
    scratch.key = dir.session_key;
    rekeys(slot, true, dir.ccount, n);
    if !deliver {
        dir.session_key = scratch.key;
        dir.ccount = (dir.ccount + n) % CCOUNT_SPACE;
        dir.recent = recent_after(dir.recent, n, false);
        return Err(DropReason::MppeCatchUp);
    }
    let key = scratch.key;
    // A new key starts a new RC4 stream (every packet when stateless); otherwise stateful RC4
    // runs on from where the last packet left it.
    if n > 0 || !stateful {
        key_rc4();
    } else {
        scratch.rc4 = dir.rc4;
    }
    apply(ctx, off + HEADER_LEN, end);
    // A wrong key leaves the state as it was (a forged count cannot move it on).
    decrypted_ip(ctx, off)?;
    dir.session_key = key;
    if stateful {
        dir.rc4 = scratch.rc4;
        dir.discard = 0;
    } else {
        dir.recent = recent_after(dir.recent, ccount_ahead(dir.ccount, ccount), true);
    }
    dir.ccount = ccount;
    Ok(Received::Plain)
}

/// A stateless packet at or behind the receive count: reordered (a count not yet seen, within
/// `LATE_KEYS`) is decrypted with the key kept for its count and delivered; a duplicate or an
/// older one is dropped with no work. The count stays where it is.
#[inline(always)]
fn decrypt_late(
    ctx: &XdpContext,
    dir: &mut MppeDirection,
    scratch: &mut MppeScratch,
    ccount: u16,
    off: usize,
    end: usize,
) -> Result<Received, DropReason> {
    let Some(k) = stateless_late(dir.ccount, dir.recent, ccount) else {
        return Err(DropReason::MppeLate);
    };
    scratch.key = dir.keys[k & (LATE_KEYS - 1)];
    key_rc4();
    apply(ctx, off + HEADER_LEN, end);
    decrypted_ip(ctx, off)?;
    dir.recent |= 1 << (ccount_ahead(ccount, dir.ccount) & (LATE_KEYS as u16 - 1));
    Ok(Received::Plain)
}

/// MPPE has no integrity check: that the decrypted PPP protocol (after the header at `off`) is
/// IPv4 or IPv6 (with or without protocol-field compression) is the test that the key was right.
#[inline(always)]
fn decrypted_ip(ctx: &XdpContext, off: usize) -> Result<(), DropReason> {
    let p: [u8; 2] = read_at(ctx, off + HEADER_LEN)?;
    let ok = matches!(p, [0x00, 0x21] | [0x00, 0x57]) || p[0] == 0x21 || p[0] == 0x57;
    if !ok {
        return Err(DropReason::MppeBadDecrypt);
    }
    Ok(())
}

/// Encrypts in place what follows the MPPE header at `off` up to `end`, writes the header, and
/// returns the GRE sequence number `next_seq` hands out under the session's lock. `reset` is the
/// session's reset generation (`GreState::mppe_reset`): a stateful sender that has not seen it
/// yet re-keys and sends this packet flushed.
#[inline(always)]
pub fn encrypt(
    ctx: &XdpContext,
    slot: u32,
    off: usize,
    end: usize,
    reset: u32,
    next_seq: impl FnOnce() -> u32,
) -> Result<u32, DropReason> {
    let l = Locked::take(slot, false)?;
    // SAFETY: as in `decrypt`.
    let (dir, scratch) = unsafe { (&mut (*l.state).tx, &mut *l.scratch) };
    let stateful = dir.stateful != 0;
    let ccount = (dir.ccount + 1) % CCOUNT_SPACE;
    // Stateless: a new key for every packet (RFC 3078 §8.1). Stateful: on flag packets and
    // after a Reset-Request (§8.2). Either way such a packet is flushed.
    let flush = !stateful || stateful_tx_rekeys(ccount, reset != dir.reset_seen);
    dir.reset_seen = reset;
    if flush {
        scratch.key = dir.session_key;
        rekeys(slot, false, dir.ccount, 1);
        dir.session_key = scratch.key;
        key_rc4();
    } else {
        scratch.rc4 = dir.rc4;
    }
    dir.ccount = ccount;
    let bits = if flush {
        BIT_FLUSHED | BIT_ENCRYPTED
    } else {
        BIT_ENCRYPTED
    };
    let h = crate::packet::ptr_at_mut::<[u8; HEADER_LEN]>(ctx, off)?;
    // SAFETY: `ptr_at_mut` checked both bytes lie inside the packet.
    unsafe { *h = header(bits, ccount) };
    apply(ctx, off + HEADER_LEN, end);
    if stateful {
        dir.rc4 = scratch.rc4;
    }
    Ok(next_seq())
}

/// Keys the CPU's scratch RC4 with the scratch key (RC4's key schedule: two loops of 256).
///
/// Through `bpf_loop` (one step) for the verifier's sake: inline, the schedule's 512 iterations
/// were walked again for every path reaching it, with all that follows each time.
#[inline(always)]
fn key_rc4() {
    // SAFETY: the callback is a static function taking (index, ctx); it needs no context.
    unsafe {
        aya_ebpf::helpers::bpf_loop(
            1,
            key_rc4_step as *const () as *mut aya_ebpf::cty::c_void,
            core::ptr::null_mut(),
            0,
        );
    }
}

/// `key_rc4`'s callback.
#[inline(never)]
extern "C" fn key_rc4_step(_index: u64, _ctx: *mut aya_ebpf::cty::c_void) -> i64 {
    let Some(scratch) = MPPE_SCRATCH.get_ptr_mut(0) else {
        return 1;
    };
    // SAFETY: a per-CPU map value, valid for the program run; the caller holds the session's
    // lock.
    let scratch = unsafe { &mut *scratch };
    let key = scratch.key;
    scratch.rc4.init(&key);
    1
}

/// What a re-key step needs: which session, which direction, and the count before the first
/// step. The key itself is in the CPU's scratch (`MppeScratch::key`).
#[repr(C)]
struct RekeyCtx {
    slot: u32,
    rx: u32,
    base: u32,
}

/// Re-keys `MppeScratch::key` `n` times with the start key of `slot`'s direction; a receive
/// direction keeps each count's key (for reordered packets).
///
/// Through `bpf_loop`: the verifier checks one step once, however many steps a packet needs,
/// where an open-coded loop with a data-dependent count would be walked once per possible count,
/// each continuing through the rest of the program (past the instruction limit).
#[inline(always)]
fn rekeys(slot: u32, rx: bool, base: u16, n: u16) {
    let mut c = RekeyCtx {
        slot,
        rx: rx as u32,
        base: u32::from(base),
    };
    // SAFETY: the callback is a static function taking (index, ctx); `c` outlives the call.
    unsafe {
        aya_ebpf::helpers::bpf_loop(
            u32::from(n),
            rekey_step as *const () as *mut aya_ebpf::cty::c_void,
            (&raw mut c).cast(),
            0,
        );
    }
}

/// One re-key: `bpf_loop`'s callback. Returns 0 to go on, 1 to stop.
#[inline(never)]
extern "C" fn rekey_step(index: u64, ctx: *mut aya_ebpf::cty::c_void) -> i64 {
    // SAFETY: `ctx` is the `RekeyCtx` on the caller's stack (see `rekeys`).
    let c = unsafe { &*(ctx as *const RekeyCtx) };
    let (Some(state), Some(scratch)) =
        (MPPE_STATE.get_ptr_mut(c.slot), MPPE_SCRATCH.get_ptr_mut(0))
    else {
        return 1;
    };
    // SAFETY: map values valid for the program run; the caller holds the session's lock.
    let (state, scratch) = unsafe { (&mut *state, &mut *scratch) };
    let start = if c.rx != 0 {
        state.rx.start_key
    } else {
        state.tx.start_key
    };
    rekey(&start, &mut scratch.key, &mut scratch.sha, &mut scratch.rc4);
    if c.rx != 0 {
        // The key of count base + index + 1 (4096 is a multiple of LATE_KEYS).
        let k = (c.base as u64 + index + 1) as usize & (LATE_KEYS - 1);
        state.rx.keys[k] = scratch.key;
    }
    0
}

/// Takes a 0/1 lock word: true when it was free.
///
/// # Safety
/// `p` must be valid for reads and writes and 4-byte aligned.
#[cfg(target_arch = "bpf")]
#[inline(always)]
unsafe fn try_lock(p: *mut u32) -> bool {
    use core::intrinsics::{AtomicOrdering::SeqCst, atomic_cxchg};
    // SAFETY: the caller's contract. SeqCst, as for the sequence counter (see encap.rs): the
    // fetching instruction, BPF_CMPXCHG (ISA v3).
    unsafe { atomic_cxchg::<u32, { SeqCst }, { SeqCst }>(p, 0, 1).1 }
}

/// # Safety
/// As [`try_lock`]; the caller holds the lock.
#[cfg(target_arch = "bpf")]
#[inline(always)]
unsafe fn unlock(p: *mut u32) {
    use core::intrinsics::{AtomicOrdering::SeqCst, atomic_xchg};
    // SAFETY: the caller's contract.
    unsafe { atomic_xchg::<u32, { SeqCst }>(p, 0) };
}

/// Host builds (clippy) only.
#[cfg(not(target_arch = "bpf"))]
unsafe fn try_lock(p: *mut u32) -> bool {
    use core::sync::atomic::{AtomicU32, Ordering::SeqCst};
    // SAFETY: the caller's contract.
    unsafe { AtomicU32::from_ptr(p) }
        .compare_exchange(0, 1, SeqCst, SeqCst)
        .is_ok()
}

/// Host builds (clippy) only.
#[cfg(not(target_arch = "bpf"))]
unsafe fn unlock(p: *mut u32) {
    use core::sync::atomic::{AtomicU32, Ordering::SeqCst};
    // SAFETY: the caller's contract.
    unsafe { AtomicU32::from_ptr(p) }.store(0, SeqCst);
}
