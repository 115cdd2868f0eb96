//! The session maps (types and names in `pptp_common::session` / `maps`).

use aya_ebpf::{
    bindings::{BPF_F_MMAPABLE, BPF_F_NO_PREALLOC},
    macros::map,
    maps::{Array, CpuMap, HashMap, LpmTrie, PerCpuArray, ProgramArray},
};
use pptp_common::{
    maps::{DEFAULT_MAX_SESSIONS, MAX_HOME_CPUS},
    mppe::{MppeScratch, MppeState},
    session::{BenchGen, DatapathConfig, GreState, Session, SessionKey, SessionStats},
};

#[map]
pub static SESSIONS: HashMap<SessionKey, Session> =
    HashMap::with_max_entries(DEFAULT_MAX_SESSIONS, 0);

/// The encapsulation's copy of each session, by its assigned address (written with `SESSIONS`).
#[map]
pub static CLIENTS: HashMap<[u8; 4], Session> = HashMap::with_max_entries(DEFAULT_MAX_SESSIONS, 0);

/// The same, by the client's IPv6 /64 (first 8 bytes), for sessions with IPv6 up.
#[map]
pub static CLIENTS6: HashMap<[u8; 8], Session> = HashMap::with_max_entries(DEFAULT_MAX_SESSIONS, 0);

/// The same, by the prefix delegated to the session (a /48 to a /64), longest match: looked up
/// only for destinations no session's /64 holds. (Not preallocated: the kernel requires it.)
#[map]
pub static DELEGATED6: LpmTrie<[u8; 8], Session> =
    LpmTrie::with_max_entries(DEFAULT_MAX_SESSIONS, 0);

/// Mmapable: the controller takes sequence numbers for its own PPP frames from the same
/// `tx_next` with an atomic add on the shared page, and reads `rx_highest` for its acks.
#[map]
pub static GRE_STATE: Array<GreState> =
    Array::with_max_entries(DEFAULT_MAX_SESSIONS, BPF_F_MMAPABLE);

#[map]
pub static SESSION_STATS: PerCpuArray<SessionStats> =
    PerCpuArray::with_max_entries(DEFAULT_MAX_SESSIONS, 0);

/// MPPE sessions' key state by slot; entries only for encrypted sessions (616 bytes each).
#[map]
pub static MPPE_STATE: HashMap<u32, MppeState> =
    HashMap::with_max_entries(DEFAULT_MAX_SESSIONS, BPF_F_NO_PREALLOC);

/// SHA-1 and RC4 working memory, one per CPU (the eBPF stack holds 512 bytes).
#[map]
pub static MPPE_SCRATCH: PerCpuArray<MppeScratch> = PerCpuArray::with_max_entries(1, 0);

/// Per-session rate limits (see `pptp_common::rate`).
#[map]
pub static RATE_LIMITS: Array<pptp_common::rate::RateLimit> =
    Array::with_max_entries(DEFAULT_MAX_SESSIONS, 0);

#[map]
pub static CONFIG: Array<DatapathConfig> = Array::with_max_entries(1, 0);

/// See `pptp_common::maps::ROUTE_GENERATION`.
#[map]
pub static ROUTE_GENERATION: Array<u32> = Array::with_max_entries(1, 0);

/// `xdp` mode's stages, tail-called by the decapsulation (see `pptp_common::maps::FORWARD`).
#[map]
pub static FORWARD: ProgramArray = ProgramArray::with_max_entries(2, 0);

/// `xdp` mode: each session's home CPU runs `pptp_lan_home` (see `DatapathConfig::steer_cpus`).
#[map]
pub static HOME_CPUS: CpuMap = CpuMap::with_max_entries(MAX_HOME_CPUS, 0);

/// Benchmark generator only (see `bench.rs`).
#[map]
pub static BENCH_GEN: Array<BenchGen> = Array::with_max_entries(1, 0);

/// One counter, not per CPU: a test run may move between CPUs between batches, and the
/// sequence numbers must go on from where they were (runs are single-threaded).
#[map]
pub static BENCH_COUNTER: Array<u64> = Array::with_max_entries(1, 0);

#[map]
pub static BENCH_TAIL: ProgramArray = ProgramArray::with_max_entries(1, 0);

/// Benchmark sink only (see `pptp_bench_sink`).
#[map]
pub static BENCH_SINK: PerCpuArray<u64> = PerCpuArray::with_max_entries(1, 0);

/// Benchmark baseline only (see `pptp_bench_redirect`).
#[map]
pub static BENCH_REDIRECT: Array<u32> = Array::with_max_entries(1, 0);
