//! Names and capacities of the maps both sides use.

/// `PerCpuArray<u64>` indexed by [`crate::stats::Stat`].
pub const STATS: &str = "STATS";
pub const STATS_LEN: u32 = crate::stats::Stat::COUNT as u32;
/// `PerCpuArray<u64>` indexed by [`crate::stats::DropReason`].
pub const DROPS: &str = "DROPS";
pub const DROPS_LEN: u32 = crate::stats::DropReason::COUNT as u32;

/// `Array<u32>` of one entry: the routing generation the encapsulation's next-hop caches are
/// checked against (0 turns the caches off).
pub const ROUTE_GENERATION: &str = "ROUTE_GENERATION";

/// Program names as they appear in the object file.
pub const PROG_XDP_DECAP: &str = "pptp_decap";
pub const PROG_XDP_ENCAP: &str = "pptp_encap_xdp";
/// `[forwarding] mode = "xdp"`: decapsulated packets forwarded by a FIB lookup (tail-called
/// by the decapsulation through `FORWARD[FORWARD_DECAPPED]`).
pub const PROG_XDP_FORWARD: &str = "pptp_forward";
/// `[forwarding] mode = "xdp"`: XDP on LAN interfaces (and tail-called by the decapsulation for
/// non-GRE IPv4 arriving on the WAN through `FORWARD[FORWARD_LAN]`): packets for client
/// addresses are encapsulated and redirected to the WAN, everything else passes.
pub const PROG_XDP_LAN: &str = "pptp_lan";
/// `xdp` mode: the LAN program run on a session's home CPU (a `BPF_MAP_TYPE_CPUMAP` program).
pub const PROG_XDP_LAN_HOME: &str = "pptp_lan_home";
/// `CpuMap` of the home CPUs (each entry runs `PROG_XDP_LAN_HOME`).
pub const HOME_CPUS: &str = "HOME_CPUS";
/// Capacity of `HOME_CPUS`: CPUs past it are not steered to.
pub const MAX_HOME_CPUS: u32 = 256;
/// `ProgramArray` the decapsulation tail-calls in `xdp` mode; empty in `stack` mode (a tail
/// call into an empty slot falls through to the stack path).
pub const FORWARD: &str = "FORWARD";
pub const FORWARD_DECAPPED: u32 = 0;
pub const FORWARD_LAN: u32 = 1;
/// XDP_PASS, for `pptp0` (a veth needs an XDP program to receive redirected frames).
pub const PROG_XDP_PASS: &str = "pptp_pass";
/// Benchmark baseline only: redirects every frame to `BENCH_REDIRECT[0]` (an ifindex), the
/// cheapest XDP forwarding there is. Never attached by the controller.
pub const PROG_XDP_BENCH_REDIRECT: &str = "pptp_bench_redirect";
/// Benchmark generator only: fills in each frame from `BENCH_GEN[0]` (a `BenchGen`) and tail-calls
/// `BENCH_TAIL[0]` (the decapsulation). Driven by BPF_PROG_TEST_RUN with live frames. Never
/// attached by the controller.
pub const PROG_XDP_BENCH_GEN: &str = "pptp_bench_gen";
pub const BENCH_GEN: &str = "BENCH_GEN";
pub const BENCH_TAIL: &str = "BENCH_TAIL";
/// Benchmark sink only: counts every frame in `BENCH_SINK` (per CPU) and drops it, so that what
/// the receiving end does with a packet costs the same whoever forwarded it. Never attached by the
/// controller.
pub const PROG_XDP_BENCH_SINK: &str = "pptp_bench_sink";
pub const BENCH_SINK: &str = "BENCH_SINK";
/// `Array<u32>` of one entry: the benchmark redirect's target ifindex.
pub const BENCH_REDIRECT: &str = "BENCH_REDIRECT";

/// `HashMap<SessionKey, Session>`: calls by how their packets arrive.
pub const SESSIONS: &str = "SESSIONS";
/// `HashMap<[u8; 4], Session>`: calls by the client's assigned address (the encapsulation's
/// copy of `SESSIONS`, so a packet costs it one lookup).
pub const CLIENTS: &str = "CLIENTS";
/// `HashMap<[u8; 8], Session>`: calls by the client's IPv6 /64 (the first 8 bytes).
pub const CLIENTS6: &str = "CLIENTS6";
/// `LpmTrie<[u8; 8], Session>`: calls by the prefix delegated to them (`Session::delegated6`,
/// a /48 to a /64): the encapsulation's lookup for destinations outside every session's /64.
pub const DELEGATED6: &str = "DELEGATED6";
/// The EtherType of the controller's own IPv6 packets to a client (Router Advertisements),
/// sent into `pptp0` as `[Ethernet][the session's /64, 8 bytes][IPv6 packet]`: the
/// encapsulation behind `pptp0` frames them like the session's data (MPPE included). IEEE
/// 802 local experimental EtherType 1; the kernel never sends it.
pub const ETH_P_CONTROLLER6: u16 = 0x88b5;
/// `Array<GreState>` by session slot.
pub const GRE_STATE: &str = "GRE_STATE";
/// `PerCpuArray<SessionStats>` by session slot.
pub const SESSION_STATS: &str = "SESSION_STATS";
/// `HashMap<u32, MppeState>` by session slot: MPPE sessions only (not preallocated: 616 bytes
/// each).
pub const MPPE_STATE: &str = "MPPE_STATE";
/// `PerCpuArray<MppeScratch>` of one entry: SHA-1 and RC4 working memory.
pub const MPPE_SCRATCH: &str = "MPPE_SCRATCH";
/// `Array<RateLimit>` by session slot: each direction's token bucket (rate 0: unlimited).
pub const RATE_LIMITS: &str = "RATE_LIMITS";
/// `Array<DatapathConfig>` of one entry.
pub const CONFIG: &str = "CONFIG";
/// Compiled-in capacity of the per-session maps; the controller may set another at load time.
pub const DEFAULT_MAX_SESSIONS: u32 = 131_072;
