//! pptpgw data path.
//!
//! `pptp_decap` (XDP, WAN ingress) and `pptp_encap_xdp` (XDP on `pptp0`'s peer, what the kernel
//! routes to clients), `pptp_pass` for `pptp0` itself; in `xdp` forwarding mode also
//! `pptp_forward` (decapsulated packets to their egress) and `pptp_lan` (XDP on LAN interfaces:
//! packets for clients encapsulated without the stack). Each program is one
//! disposition table: `try_*` returns a verdict or a [`DropReason`], and the entry point turns the
//! reason into a counted drop, so every path out of a program is counted exactly once.
#![cfg_attr(target_arch = "bpf", no_std, no_main)]
// The BPF target has atomic loads and stores but no `fetch_add` in `core::sync::atomic`; the
// intrinsic compiles to the ISA v3 atomic add-with-fetch.
#![cfg_attr(
    target_arch = "bpf",
    feature(core_intrinsics),
    expect(internal_features)
)]

mod bench;
mod counters;
mod decap;
mod decap6;
mod encap;
mod fib;
mod forward;
mod maps;
mod mppe;
mod mss;
mod packet;
mod police;

use aya_ebpf::{bindings::xdp_action, macros::xdp, programs::XdpContext};
use pptp_common::stats::Stat;

#[xdp]
pub fn pptp_decap(ctx: XdpContext) -> u32 {
    counters::count(Stat::XdpSeen);
    match decap::try_decap(&ctx) {
        Ok(action) => action,
        Err(reason) => {
            counters::count(Stat::XdpDropped);
            counters::count_drop(reason);
            xdp_action::XDP_DROP
        }
    }
}

#[xdp]
pub fn pptp_encap_xdp(ctx: XdpContext) -> u32 {
    counters::count(Stat::EncapSeen);
    match encap::try_encap::<false, false>(&ctx) {
        Ok(action) => action,
        Err(reason) => {
            counters::count(Stat::EncapDropped);
            counters::count_drop(reason);
            xdp_action::XDP_DROP
        }
    }
}

/// `xdp` mode: a decapsulated packet (tail-called by `pptp_decap`) to its egress, or to `pptp0`.
#[xdp]
pub fn pptp_forward(ctx: XdpContext) -> u32 {
    forward::forward(&ctx)
}

/// `xdp` mode, on LAN interfaces (and tail-called by `pptp_decap` for non-GRE IPv4): packets for
/// clients encapsulated and sent to the WAN; everything else passes.
#[xdp]
pub fn pptp_lan(ctx: XdpContext) -> u32 {
    counters::count(Stat::LanSeen);
    lan_verdict(encap::try_encap::<true, true>(&ctx))
}

/// `xdp` mode: the LAN program on a session's home CPU (run by `HOME_CPUS`).
#[xdp(map = "cpumap")]
pub fn pptp_lan_home(ctx: XdpContext) -> u32 {
    lan_verdict(encap::try_encap::<true, false>(&ctx))
}

#[inline(always)]
fn lan_verdict(r: Result<u32, pptp_common::stats::DropReason>) -> u32 {
    match r {
        Ok(action) => action,
        Err(reason) => {
            counters::count(Stat::EncapDropped);
            counters::count_drop(reason);
            xdp_action::XDP_DROP
        }
    }
}

/// On `pptp0`: a veth must run an XDP program to take frames redirected into it natively.
#[xdp]
pub fn pptp_pass(_ctx: XdpContext) -> u32 {
    xdp_action::XDP_PASS
}

/// The benchmarks' generator (see `bench.rs`). Never attached by the controller.
#[xdp]
pub fn pptp_bench_gen(ctx: XdpContext) -> u32 {
    bench::generate(&ctx)
}

/// The benchmarks' baseline: the same veth path with the cheapest XDP forwarding (a redirect to a
/// fixed interface, no parsing). Never attached by the controller.
#[xdp]
pub fn pptp_bench_redirect(_ctx: XdpContext) -> u32 {
    match maps::BENCH_REDIRECT.get(0) {
        // SAFETY: bpf_redirect takes any ifindex; an invalid one makes the redirect fail (drop).
        Some(&ifindex) if ifindex != 0 => unsafe {
            aya_ebpf::helpers::bpf_redirect(ifindex, 0) as u32
        },
        _ => xdp_action::XDP_PASS,
    }
}

/// The benchmarks' sink: counts and drops (see `pptp_common::maps::PROG_XDP_BENCH_SINK`).
#[xdp]
pub fn pptp_bench_sink(_ctx: XdpContext) -> u32 {
    if let Some(n) = maps::BENCH_SINK.get_ptr_mut(0) {
        // SAFETY: this CPU's slot, from a successful lookup.
        unsafe { *n += 1 };
    }
    xdp_action::XDP_DROP
}

#[cfg(target_arch = "bpf")]
#[panic_handler]
fn panic(_info: &core::panic::PanicInfo) -> ! {
    // Unreachable in a verified program: the verifier rejects anything that could get here.
    loop {}
}

#[cfg(target_arch = "bpf")]
#[unsafe(link_section = "license")]
#[unsafe(no_mangle)]
static LICENSE: [u8; 13] = *b"Dual MIT/GPL\0";

/// Host builds (`cargo clippy --workspace`) compile the programs as plain code; nothing runs.
#[cfg(not(target_arch = "bpf"))]
fn main() {}
