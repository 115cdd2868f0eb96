//! Per-session rate limits: each direction's token bucket (`pptp_common::rate`) in
//! `RATE_LIMITS`, checked before a packet is decapsulated or encapsulated.

/// Whether a session's packet of `bytes` is within its rate limit for this direction (`up`:
/// from the client); unlimited sessions cost one array lookup and a compare.
#[inline(always)]
pub fn within_rate(slot: u32, up: bool, bytes: usize) -> bool {
    let Some(r) = crate::maps::RATE_LIMITS.get_ptr_mut(slot) else {
        return true;
    };
    // SAFETY: a value of a successful array lookup, valid for the program's run. CPUs updating
    // one session's bucket at once may lose a few tokens' accuracy, never memory safety.
    let bucket = unsafe { if up { &mut (*r).up } else { &mut (*r).down } };
    if bucket.rate == 0 {
        return true;
    }
    // The coarse clock (tick resolution): buckets hold 100 ms of their rate, so refilling in
    // 4 ms steps changes nothing measurable, and the fine clock cost ~45 ns a packet in a VM.
    // SAFETY: plain helper call.
    let now = unsafe { aya_ebpf::helpers::bpf_ktime_get_coarse_ns() };
    bucket.take(now, bytes as u64)
}
