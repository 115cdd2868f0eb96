//! `[forwarding] mode = "xdp"`: a decapsulated packet forwarded by XDP.
//!
//! Tail-called by the decapsulation once the packet is Ethernet + inner IPv4 (addressed to
//! `pptp0`, where the stack path would deliver it). A FIB lookup on the inner addresses, made as
//! if the packet arrived on `pptp0` (so `iif pptp0` rules apply), picks the egress; the program
//! decrements the TTL, rewrites the MACs and redirects. Whatever XDP should not decide goes on to
//! `pptp0` unchanged, and the stack decides as in `stack` mode: local destinations, a next hop
//! with no neighbour entry yet (the stack resolves it, later packets take XDP), packets bigger
//! than the egress MTU (the stack fragments or sends the ICMP), an expiring TTL (the stack sends
//! Time Exceeded), unreachable or prohibited destinations (the stack's ICMP), and traffic from
//! one client to another (routed out of `pptp0` itself).

use aya_ebpf::{
    bindings::{BPF_FIB_LKUP_RET_SUCCESS, xdp_action},
    helpers::bpf_redirect,
    programs::XdpContext,
};
use pptp_common::{
    headers::{ETH_HLEN, ETH_P_IPV6, EthHdr, IPV4_MIN_HLEN, Ipv4Hdr, Ipv6Hdr},
    stats::Stat,
};

use crate::{
    counters::count,
    fib::{self, FibLookup},
    maps::CONFIG,
    packet::{ptr_at_mut, read_at},
};

#[inline(always)]
pub fn forward(ctx: &XdpContext) -> u32 {
    let Some(cfg) = CONFIG.get(0) else {
        return xdp_action::XDP_DROP;
    };
    let to_stack = || {
        count(Stat::ForwardStack);
        // SAFETY: plain helper call; the frame is addressed to `pptp0` already.
        unsafe { bpf_redirect(cfg.pptp0_peer_ifindex, 0) as u32 }
    };
    let Ok(eth) = read_at::<EthHdr>(ctx, 0) else {
        return to_stack();
    };
    if u16::from_be_bytes(eth.ether_type) == ETH_P_IPV6 {
        return forward_ipv6(ctx, cfg.pptp0_ifindex).unwrap_or_else(to_stack);
    }
    let Ok(ip) = read_at::<Ipv4Hdr>(ctx, ETH_HLEN) else {
        return to_stack();
    };
    if ip.ttl <= 1 || ip.header_len() < IPV4_MIN_HLEN {
        return to_stack();
    }
    let mut lookup = FibLookup::ipv4(
        ip.protocol,
        ip.total_len(),
        cfg.pptp0_ifindex,
        ip.tos,
        ip.src,
        ip.dst,
    );
    let rc = fib::lookup(ctx, &mut lookup);
    if rc != BPF_FIB_LKUP_RET_SUCCESS as i64 || lookup.ifindex == cfg.pptp0_ifindex {
        return to_stack();
    }
    let Ok(iph) = ptr_at_mut::<Ipv4Hdr>(ctx, ETH_HLEN) else {
        return to_stack();
    };
    // SAFETY: `ptr_at_mut` checked the header lies inside the packet.
    unsafe { fib::decrement_ttl(iph) };
    let Ok(eth) = ptr_at_mut::<EthHdr>(ctx, 0) else {
        return to_stack();
    };
    // SAFETY: as above.
    unsafe {
        (*eth).dst = lookup.dmac;
        (*eth).src = lookup.smac;
    }
    count(Stat::ForwardXdp);
    // SAFETY: plain helper call; XDP_REDIRECT on success.
    unsafe { bpf_redirect(lookup.ifindex, 0) as u32 }
}

/// The IPv6 case: hop limit instead of TTL (no header checksum); `None` leaves it to the stack.
#[inline(always)]
fn forward_ipv6(ctx: &XdpContext, pptp0_ifindex: u32) -> Option<u32> {
    let ip = read_at::<Ipv6Hdr>(ctx, ETH_HLEN).ok()?;
    if ip.hop_limit <= 1 {
        return None;
    }
    let mut lookup = FibLookup::ipv6(
        ip.next_header,
        ip.total_len() as u16,
        pptp0_ifindex,
        ip.version_class_flow,
        ip.src,
        ip.dst,
    );
    let rc = fib::lookup(ctx, &mut lookup);
    if rc != BPF_FIB_LKUP_RET_SUCCESS as i64 || lookup.ifindex == pptp0_ifindex {
        return None;
    }
    let iph = ptr_at_mut::<Ipv6Hdr>(ctx, ETH_HLEN).ok()?;
    let eth = ptr_at_mut::<EthHdr>(ctx, 0).ok()?;
    // SAFETY: `ptr_at_mut` checked both headers lie inside the packet; hop limit > 1 above.
    unsafe {
        (*iph).hop_limit -= 1;
        (*eth).dst = lookup.dmac;
        (*eth).src = lookup.smac;
    }
    count(Stat::ForwardXdp);
    // SAFETY: plain helper call; XDP_REDIRECT on success.
    Some(unsafe { bpf_redirect(lookup.ifindex, 0) as u32 })
}
