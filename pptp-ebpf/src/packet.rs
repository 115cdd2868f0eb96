//! Bounds-checked access to packet memory.

use aya_ebpf::programs::XdpContext;
use pptp_common::stats::DropReason;

/// A program context with a linear packet window `[data, data_end)`.
pub trait Packet {
    fn start(&self) -> usize;
    fn end(&self) -> usize;
}

impl Packet for XdpContext {
    #[inline(always)]
    fn start(&self) -> usize {
        self.data()
    }
    #[inline(always)]
    fn end(&self) -> usize {
        self.data_end()
    }
}

/// A pointer to a `T` at `offset`, or `Truncated` when the packet ends first.
///
/// The comparison is against `data_end` itself, the form the verifier recognises as a packet range
/// check; `T` must have alignment 1 (the header structs in `pptp_common::headers` do).
#[inline(always)]
pub fn ptr_at<T>(ctx: &impl Packet, offset: usize) -> Result<*const T, DropReason> {
    let start = ctx.start();
    if start + offset + core::mem::size_of::<T>() > ctx.end() {
        return Err(DropReason::Truncated);
    }
    Ok((start + offset) as *const T)
}

/// Reads a `T` at `offset`. `T` is a plain header struct, `Copy`, alignment 1.
#[inline(always)]
pub fn read_at<T: Copy>(ctx: &impl Packet, offset: usize) -> Result<T, DropReason> {
    let p = ptr_at::<T>(ctx, offset)?;
    // SAFETY: `ptr_at` checked that `size_of::<T>()` bytes at `p` lie inside the packet, and `T`
    // has alignment 1, so the read is in bounds and aligned.
    Ok(unsafe { *p })
}

/// A mutable pointer to a `T` at `offset`, bounds-checked like [`ptr_at`].
#[inline(always)]
pub fn ptr_at_mut<T>(ctx: &impl Packet, offset: usize) -> Result<*mut T, DropReason> {
    Ok(ptr_at::<T>(ctx, offset)?.cast_mut())
}
