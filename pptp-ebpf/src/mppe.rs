//! The MPPE stage (RFC 3078, 128-bit keys, stateless): decryption of what a client sends, in the
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

use aya_ebpf::programs::XdpContext;
use pptp_common::{
    mppe::{
        BIT_ENCRYPTED, BIT_FLUSHED, CCOUNT_SPACE, HEADER_LEN, MppeState, Rc4, StatelessRx, header,
        parse_header, rekey, stateless_rx,
    },
    stats::DropReason,
};

use crate::{
    maps::{MPPE_SCRATCH, MPPE_STATE},
    packet::read_at,
};

/// Re-keys one received packet may cost (each ≈ 1.7 µs: SHA-1 of two blocks, two key
/// schedules). A bigger jump catches up by this much and drops the packet.
pub const MAX_REKEYS: u16 = 8;
/// The longest payload encrypted or decrypted (a bound for the verifier; tunnel MTU ≤ 1500).
const MAX_PAYLOAD: usize = 1536;

/// Lock attempts before a packet is given up as busy (a few tens of microseconds: several
/// packets' worth of another CPU's work).
const LOCK_SPINS: u32 = 4096;

/// The session's state and this CPU's scratch, with one direction locked; unlocked on drop.
pub struct Locked {
    state: *mut MppeState,
    scratch: *mut pptp_common::mppe::MppeScratch,
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

/// XORs `rc4`'s keystream into the packet bytes `[from, to)` (offsets from the packet start).
///
/// Shaped for the verifier: one pointer walks the bytes and is itself compared with `data_end`
/// (recomputing `data + offset` per byte would give the access and the check different
/// identities); and the comparison is `p + 1 > end` with an addend LLVM cannot see through,
/// since it folds the plain form into `p >= end`, from which the verifier grants no byte.
#[inline(always)]
fn apply(ctx: &XdpContext, rc4: &mut Rc4, from: usize, to: usize) {
    let len = to.saturating_sub(from);
    let mut p = ctx.data() + from;
    let mut k = 0;
    while k < MAX_PAYLOAD {
        if k >= len || p + core::hint::black_box(1usize) > ctx.data_end() {
            break;
        }
        // SAFETY: `p` lies inside the packet (checked just above).
        unsafe { *(p as *mut u8) ^= rc4.keystream() };
        p += 1;
        k += 1;
    }
}

/// Decrypts in place the MPPE packet whose 2-byte header is at `off` and whose PPP payload ends
/// at `end`; on success the plaintext (PPP protocol, then the packet) starts at `off + 2`.
#[inline(always)]
pub fn decrypt(ctx: &XdpContext, slot: u32, off: usize, end: usize) -> Result<(), DropReason> {
    let (bits, ccount) = parse_header(read_at::<[u8; HEADER_LEN]>(ctx, off)?);
    if bits & BIT_ENCRYPTED == 0 {
        return Err(DropReason::MppePlaintext);
    }
    let l = Locked::take(slot, true)?;
    // SAFETY: `Locked` holds pointers into map values valid for this run, and the lock.
    let (dir, scratch) = unsafe { (&mut (*l.state).rx, &mut *l.scratch) };
    if dir.stateful != 0 {
        return Err(DropReason::MppeStateful);
    }
    let (n, deliver) = match stateless_rx(dir.ccount, ccount, MAX_REKEYS) {
        StatelessRx::Late => return Err(DropReason::MppeLate),
        StatelessRx::Rekey(n) => (n, true),
        StatelessRx::CatchUp(n) => (n, false),
    };
    scratch.key = dir.session_key;
    rekeys(slot, true, n);
    if !deliver {
        dir.session_key = scratch.key;
        dir.ccount = (dir.ccount + n) % CCOUNT_SPACE;
        return Err(DropReason::MppeCatchUp);
    }
    let key = scratch.key;
    scratch.rc4.init(&key);
    apply(ctx, &mut scratch.rc4, off + HEADER_LEN, end);
    // MPPE has no integrity check; the decrypted PPP protocol is the test that the key was
    // right. A wrong one leaves the state as it was (a forged count cannot move it on).
    let p: [u8; 2] = read_at(ctx, off + HEADER_LEN)?;
    if p != [0x00, 0x21] && p[0] != 0x21 {
        return Err(DropReason::MppeBadDecrypt);
    }
    dir.session_key = key;
    dir.ccount = ccount;
    Ok(())
}

/// Encrypts in place what follows the MPPE header at `off` up to `end`, writes the header, and
/// returns the GRE sequence number `next_seq` hands out under the session's lock.
#[inline(always)]
pub fn encrypt(
    ctx: &XdpContext,
    slot: u32,
    off: usize,
    end: usize,
    next_seq: impl FnOnce() -> u32,
) -> Result<u32, DropReason> {
    let l = Locked::take(slot, false)?;
    // SAFETY: as in `decrypt`.
    let (dir, scratch) = unsafe { (&mut (*l.state).tx, &mut *l.scratch) };
    if dir.stateful != 0 {
        return Err(DropReason::MppeStateful);
    }
    // Stateless: a new key for every packet (RFC 3078 §8.1), flushed bit set.
    let ccount = (dir.ccount + 1) % CCOUNT_SPACE;
    scratch.key = dir.session_key;
    rekeys(slot, false, 1);
    dir.session_key = scratch.key;
    dir.ccount = ccount;
    let h = crate::packet::ptr_at_mut::<[u8; HEADER_LEN]>(ctx, off)?;
    // SAFETY: `ptr_at_mut` checked both bytes lie inside the packet.
    unsafe { *h = header(BIT_FLUSHED | BIT_ENCRYPTED, ccount) };
    let key = dir.session_key;
    scratch.rc4.init(&key);
    apply(ctx, &mut scratch.rc4, off + HEADER_LEN, end);
    Ok(next_seq())
}

/// What a re-key step needs: which session, which direction. The key itself is in the CPU's
/// scratch (`MppeScratch::key`).
#[repr(C)]
struct RekeyCtx {
    slot: u32,
    rx: u32,
}

/// Re-keys `MppeScratch::key` `n` times with the start key of `slot`'s direction.
///
/// Through `bpf_loop`: the verifier checks one step once, however many steps a packet needs,
/// where an open-coded loop with a data-dependent count would be walked once per possible count,
/// each continuing through the rest of the program (past the instruction limit).
#[inline(always)]
fn rekeys(slot: u32, rx: bool, n: u16) {
    let mut c = RekeyCtx {
        slot,
        rx: rx as u32,
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
extern "C" fn rekey_step(_index: u64, ctx: *mut aya_ebpf::cty::c_void) -> i64 {
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
