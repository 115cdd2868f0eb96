//! The controller's view of the per-session GRE sequence state: the `GRE_STATE` array mapped
//! into our memory (it is created `BPF_F_MMAPABLE`).
//!
//! DESIGN.md asks for one sequence-number source per session. The XDP encapsulation program takes
//! `tx_next` with an atomic fetch-and-add; the controller, sending its own PPP frames (LCP echo,
//! IPCP, Terminate) through the slow path, takes it with an atomic fetch-and-add on the very same
//! eight bytes. Neither can hand out a number the other did, and neither needs the other's
//! cooperation. Acks come from `rx_highest`, which the XDP decapsulation program records for data
//! and control frames alike.

use std::{
    io,
    os::fd::{AsRawFd as _, BorrowedFd},
    ptr::NonNull,
    sync::atomic::{AtomicU32, AtomicU64, Ordering},
};

use pptp_common::session::GreState;

pub struct SeqSpace {
    base: NonNull<GreState>,
    len: usize,
    entries: u32,
}

// SAFETY: the mapping is process memory shared with the kernel; every access goes through
// atomics, so sharing the handle between threads is sound.
unsafe impl Send for SeqSpace {}
// SAFETY: as above.
unsafe impl Sync for SeqSpace {}

impl SeqSpace {
    /// Maps the `GRE_STATE` array behind `fd`, which has `entries` slots.
    pub fn map(fd: BorrowedFd<'_>, entries: u32) -> io::Result<Self> {
        // Array elements are laid out at a stride of the value size rounded up to 8.
        let len = (entries as usize) * std::mem::size_of::<GreState>();
        // SAFETY: a fresh shared mapping of a BPF array map fd; the kernel checks the length.
        let p = unsafe {
            libc::mmap(
                std::ptr::null_mut(),
                len,
                libc::PROT_READ | libc::PROT_WRITE,
                libc::MAP_SHARED,
                fd.as_raw_fd(),
                0,
            )
        };
        if p == libc::MAP_FAILED {
            return Err(io::Error::last_os_error());
        }
        let base = NonNull::new(p.cast::<GreState>())
            .ok_or_else(|| io::Error::other("mmap returned null"))?;
        Ok(Self { base, len, entries })
    }

    fn slot(&self, slot: u32) -> Option<*mut GreState> {
        // SAFETY: in bounds of the mapping for slot < entries.
        (slot < self.entries).then(|| unsafe { self.base.as_ptr().add(slot as usize) })
    }

    /// Takes the session's next GRE sequence number.
    pub fn next_tx(&self, slot: u32) -> Option<u32> {
        let s = self.slot(slot)?;
        // SAFETY: `s` points into the live mapping; tx_next is 8-byte aligned (the stride is 80).
        // SeqCst matches the kernel side's BPF_ADD | BPF_FETCH.
        let v =
            unsafe { AtomicU64::from_ptr(&raw mut (*s).tx_next) }.fetch_add(1, Ordering::SeqCst);
        Some(v as u32)
    }

    /// The highest sequence number received from the client, if any.
    pub fn rx_highest(&self, slot: u32) -> Option<u32> {
        let s = self.slot(slot)?;
        // SAFETY: as above; u32 fields at 4-byte aligned offsets, read atomically.
        let (seen, highest) = unsafe {
            (
                AtomicU32::from_ptr(&raw mut (*s).rx_seen).load(Ordering::Acquire),
                AtomicU32::from_ptr(&raw mut (*s).rx_highest).load(Ordering::Acquire),
            )
        };
        (seen != 0).then_some(highest)
    }

    /// Records the ack the controller just sent (so the idle-ack logic knows it is current).
    pub fn set_ack_sent(&self, slot: u32, ack: u32) {
        if let Some(s) = self.slot(slot) {
            // SAFETY: as above.
            unsafe { AtomicU32::from_ptr(&raw mut (*s).ack_sent) }.store(ack, Ordering::Release);
        }
    }

    /// The last ack sent, by either side.
    pub fn ack_sent(&self, slot: u32) -> Option<u32> {
        let s = self.slot(slot)?;
        // SAFETY: as above.
        Some(unsafe { AtomicU32::from_ptr(&raw mut (*s).ack_sent) }.load(Ordering::Acquire))
    }
}

impl SeqSpace {
    /// Stateful MPPE: the client sent a CCP Reset-Request; the encapsulation's next packet for
    /// this session re-keys and goes out flushed (it compares this generation with the last it
    /// acted on, so no write of ours can race one of its own).
    pub fn request_mppe_reset(&self, slot: u32) {
        if let Some(s) = self.slot(slot) {
            // SAFETY: as above; a 4-byte aligned u32.
            unsafe { AtomicU32::from_ptr(&raw mut (*s).mppe_reset) }.fetch_add(1, Ordering::AcqRel);
        }
    }

    /// When the session's last data packet from the client arrived (the data path's coarse
    /// monotonic clock; 0: none yet). Idle-Timeout counts from it.
    pub fn last_rx_ns(&self, slot: u32) -> Option<u64> {
        let s = self.slot(slot)?;
        // SAFETY: as above; 8-byte aligned u64 read atomically.
        Some(unsafe { AtomicU64::from_ptr(&raw mut (*s).last_rx_ns) }.load(Ordering::Acquire))
    }

    /// `bpf_ktime_get_ns` of the session's last data packet towards the client.
    pub fn last_tx_ns(&self, slot: u32) -> Option<u64> {
        let s = self.slot(slot)?;
        // SAFETY: as above; 8-byte aligned u64 read atomically.
        Some(unsafe { AtomicU64::from_ptr(&raw mut (*s).last_tx_ns) }.load(Ordering::Acquire))
    }

    /// Records that the controller sent something at `now_ns` (monotonic, like bpf_ktime_get_ns).
    pub fn set_last_tx_ns(&self, slot: u32, now_ns: u64) {
        if let Some(s) = self.slot(slot) {
            // SAFETY: as above.
            unsafe { AtomicU64::from_ptr(&raw mut (*s).last_tx_ns) }
                .store(now_ns, Ordering::Release);
        }
    }
}

/// The ack an idle direction owes: the client's data must be acknowledged within a few hundred
/// milliseconds even when nothing flows back to piggyback it on (Windows and pptp-linux wait
/// ~0.5 s before acting on a missing ack). Due when something received is not yet acked and we
/// have sent nothing for `idle_ns`.
pub fn ack_due(
    rx_highest: Option<u32>,
    ack_sent: u32,
    last_tx_ns: u64,
    now_ns: u64,
    idle_ns: u64,
) -> Option<u32> {
    let rx = rx_highest?;
    (rx != ack_sent && now_ns.saturating_sub(last_tx_ns) >= idle_ns).then_some(rx)
}

/// CLOCK_MONOTONIC in nanoseconds, the clock of `bpf_ktime_get_ns` (the data path writes its
/// timestamps with the coarse variant: the same clock at tick resolution).
pub fn monotonic_ns() -> u64 {
    // SAFETY: all-zero is a valid timespec; clock_gettime only writes it.
    let mut ts: libc::timespec = unsafe { std::mem::zeroed() };
    // SAFETY: valid pointer to a timespec.
    unsafe { libc::clock_gettime(libc::CLOCK_MONOTONIC, &raw mut ts) };
    ts.tv_sec as u64 * 1_000_000_000 + ts.tv_nsec as u64
}

impl Drop for SeqSpace {
    fn drop(&mut self) {
        // SAFETY: unmapping exactly what `map` mapped.
        unsafe { libc::munmap(self.base.as_ptr().cast(), self.len) };
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MS: u64 = 1_000_000;

    #[test]
    fn ack_is_due_only_for_unacked_data_on_an_idle_direction() {
        // Nothing received: nothing to ack.
        assert_eq!(ack_due(None, 0, 0, 10_000 * MS, 250 * MS), None);
        // Received 7, acked 7 already (piggybacked): nothing.
        assert_eq!(ack_due(Some(7), 7, 0, 10_000 * MS, 250 * MS), None);
        // Received 8, we sent something 100 ms ago: wait (the next data packet may carry it).
        assert_eq!(ack_due(Some(8), 7, 9_900 * MS, 10_000 * MS, 250 * MS), None);
        // Idle for 250 ms: ack-only packet with 8.
        assert_eq!(
            ack_due(Some(8), 7, 9_750 * MS, 10_000 * MS, 250 * MS),
            Some(8)
        );
        // Sequence numbers wrap; "different" is what matters.
        assert_eq!(
            ack_due(Some(0), u32::MAX, 0, 10_000 * MS, 250 * MS),
            Some(0)
        );
    }
}
