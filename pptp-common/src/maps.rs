//! Names and capacities of the maps both sides use.

/// `PerCpuArray<u64>` indexed by [`crate::stats::Stat`].
pub const STATS: &str = "STATS";
pub const STATS_LEN: u32 = crate::stats::Stat::COUNT as u32;
/// `PerCpuArray<u64>` indexed by [`crate::stats::DropReason`].
pub const DROPS: &str = "DROPS";
pub const DROPS_LEN: u32 = crate::stats::DropReason::COUNT as u32;

/// Program names as they appear in the object file.
pub const PROG_XDP_DECAP: &str = "pptp_decap";
pub const PROG_TC_ENCAP: &str = "pptp_encap";
