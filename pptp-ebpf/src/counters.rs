//! Global per-CPU counters: `STATS` by [`Stat`], `DROPS` by [`DropReason`]. Counters, not logs, on
//! the hot path.

use aya_ebpf::{macros::map, maps::PerCpuArray};
use pptp_common::{
    maps::{DROPS_LEN, STATS_LEN},
    stats::{DropReason, Stat},
};

#[map]
static STATS: PerCpuArray<u64> = PerCpuArray::with_max_entries(STATS_LEN, 0);

#[map]
static DROPS: PerCpuArray<u64> = PerCpuArray::with_max_entries(DROPS_LEN, 0);

#[inline(always)]
fn bump(map: &PerCpuArray<u64>, index: u32) {
    if let Some(p) = map.get_ptr_mut(index) {
        // SAFETY: a per-CPU array slot belongs to this CPU for the duration of the program; the
        // pointer comes from a successful lookup.
        unsafe { *p += 1 };
    }
}

#[inline(always)]
pub fn count(stat: Stat) {
    bump(&STATS, stat as u32);
}

#[inline(always)]
pub fn count_drop(reason: DropReason) {
    bump(&DROPS, reason as u32);
}
