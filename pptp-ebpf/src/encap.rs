//! Encapsulation towards clients, as XDP on `pptp0`'s veth peer.
//!
//! Routes to clients point at `pptp0`; what the kernel sends there arrives at the peer, where
//! this program wraps it: Ethernet / IPv4 (from the address the client dialled, to its outer
//! address) / enhanced GRE (the client's call ID, the session's next sequence number, the
//! highest received as ack) / PPP, and redirects it out of the interface a FIB lookup *from that
//! source address* picks, so policy routing decides the egress of a multihomed gateway.
//!
//! Why XDP on the peer rather than TC on `pptp0` egress: TC egress runs before GSO segmentation,
//! so it would see TCP super-packets that cannot be wrapped in sequenced GRE; with an XDP program
//! on its peer, a veth drops its GSO features, the kernel segments before transmitting, and every
//! packet here is one wire-sized IPv4 packet.

use aya_ebpf::{
    bindings::{BPF_FIB_LKUP_RET_NO_NEIGH, BPF_FIB_LKUP_RET_SUCCESS, xdp_action},
    helpers::{
        bpf_get_smp_processor_id, bpf_ktime_get_coarse_ns, bpf_redirect, bpf_xdp_adjust_head,
    },
    maps::lpm_trie::Key,
    programs::XdpContext,
};
use pptp_common::{
    gre::{FLAG_ACK, FLAG_KEY, FLAG_SEQ, PROTO_PPP, VERSION_PPTP},
    headers::{
        ETH_HLEN, ETH_P_IP, ETH_P_IPV6, EthHdr, IPPROTO_GRE, IPPROTO_TCP, IPV4_MIN_HLEN, IPV6_HLEN,
        Ipv4Hdr, Ipv6Hdr,
    },
    maps::ETH_P_CONTROLLER6,
    mppe::PPP_MPPE,
    session::{GreState, MODE_MPPE, STATE_UP, Session},
    stats::{DropReason, Stat},
};

use crate::{
    counters::count,
    fib::{self, FibLookup},
    maps::{
        CLIENTS, CLIENTS6, CONFIG, DELEGATED6, GRE_STATE, HOME_CPUS, ROUTE_GENERATION,
        SESSION_STATS,
    },
    packet::{ptr_at_mut, read_at},
};

/// PPP header for IPv4, uncompressed.
const PPP_LEN: usize = 4;
/// Ethernet + outer IPv4 + GRE with seq and ack + PPP: the headers in front of the inner packet.
pub const HEADER_LEN: usize = ETH_HLEN + IPV4_MIN_HLEN + 16 + PPP_LEN;
/// What MPPE adds behind them: its header and the (encrypted) PPP protocol of the packet.
const MPPE_EXTRA: usize = 4;

/// Behind `pptp0` (`LAN = false`) every packet is for a client and one that cannot go is dropped
/// with its reason. On a LAN interface (`LAN = true`, `xdp` mode) only packets for a client's
/// address that XDP can finish are taken; the rest goes to the stack unchanged, which routes it
/// to `pptp0` (and so to the `LAN = false` program), fragments, or answers with ICMP.
#[inline(always)]
fn refuse<const LAN: bool>(reason: DropReason) -> Result<u32, DropReason> {
    if LAN {
        count(Stat::LanPassed);
        Ok(xdp_action::XDP_PASS)
    } else {
        Err(reason)
    }
}

/// `STEER` (the LAN program on the CPU a packet arrived on): a session whose home CPU is another
/// goes there (`HOME_CPUS`), where this runs again with `STEER = false`.
/// The packet behind the Ethernet header, as the encapsulation needs it.
struct Inner {
    session: Session,
    /// The whole IP packet, header included.
    len: usize,
    v6: bool,
    /// TTL or hop limit.
    ttl: u8,
    /// The transport protocol, and where its header starts.
    l4: u8,
    l4_off: usize,
    /// Bytes between the Ethernet header and the packet (the controller's frames carry the
    /// session's /64 there).
    skip: usize,
}

/// Classifies the frame: IPv4 to a client's address, IPv6 to a client's /64, or (behind
/// `pptp0` only) the controller's own IPv6 packet to a client; the reason it is none of them.
#[inline(always)]
fn inner<const LAN: bool>(ctx: &XdpContext) -> Result<Inner, DropReason> {
    let eth = read_at::<EthHdr>(ctx, 0)?;
    if LAN && eth.dst[0] & 1 != 0 {
        // Broadcast and multicast are the stack's.
        return Err(DropReason::NotIpv4);
    }
    let ether_type = u16::from_be_bytes(eth.ether_type);
    if ether_type == ETH_P_IP {
        let ip = read_at::<Ipv4Hdr>(ctx, ETH_HLEN)?;
        let ihl = ip.header_len();
        let len = ip.total_len() as usize;
        if ip.version() != 4
            || ihl < IPV4_MIN_HLEN
            || len < ihl
            || ETH_HLEN + len > ctx.data_end() - ctx.data()
        {
            return Err(DropReason::InnerMalformed);
        }
        // SAFETY: the value is copied out at once.
        let session = unsafe { CLIENTS.get(ip.dst) }
            .copied()
            .ok_or(DropReason::NoSession)?;
        return Ok(Inner {
            session,
            len,
            v6: false,
            ttl: ip.ttl,
            l4: ip.protocol,
            l4_off: ETH_HLEN + ihl,
            skip: 0,
        });
    }
    let (skip, key) = if ether_type == ETH_P_IPV6 {
        (0, None)
    } else if !LAN && ether_type == ETH_P_CONTROLLER6 {
        (8, Some(read_at::<[u8; 8]>(ctx, ETH_HLEN)?))
    } else {
        return Err(DropReason::NotIpv4);
    };
    let ip = read_at::<Ipv6Hdr>(ctx, ETH_HLEN + skip)?;
    let len = ip.total_len();
    if ip.version() != 6 || ETH_HLEN + skip + len > ctx.data_end() - ctx.data() {
        return Err(DropReason::InnerMalformed);
    }
    let key = match key {
        Some(k) => k,
        // The kernel's own multicast and link-local packets on `pptp0` are nobody's.
        None if ip.is_link_traffic() => return Err(DropReason::NotIpv4),
        None => Ipv6Hdr::prefix64(&ip.dst),
    };
    // A session's own /64 first (one hash lookup), then the prefixes delegated to sessions.
    // SAFETY: the values are copied out at once.
    let session = unsafe { CLIENTS6.get(key) }
        .copied()
        .or_else(|| DELEGATED6.get(Key::new(64, key)).copied())
        .ok_or(DropReason::NoSession6)?;
    Ok(Inner {
        session,
        len,
        v6: true,
        ttl: ip.hop_limit,
        l4: ip.next_header,
        l4_off: ETH_HLEN + skip + IPV6_HLEN,
        skip,
    })
}

/// `STEER` (the LAN program on the CPU a packet arrived on): a session whose home CPU is another
/// goes there (`HOME_CPUS`), where this runs again with `STEER = false`.
#[inline(always)]
pub fn try_encap<const LAN: bool, const STEER: bool>(ctx: &XdpContext) -> Result<u32, DropReason> {
    let inner = match inner::<LAN>(ctx) {
        Ok(i) => i,
        Err(reason) => return refuse::<LAN>(reason),
    };
    let session = inner.session;
    let inner_len = inner.len;
    let key = session.key;
    if session.state != STATE_UP {
        return refuse::<LAN>(DropReason::SessionNotUp);
    }
    if STEER && let Some(action) = steer(session.slot) {
        return Ok(action);
    }
    let mppe = session.mode == MODE_MPPE;
    // MPPE adds its 2-byte header and carries the PPP protocol (00 21) inside the encryption.
    let extra = if mppe { MPPE_EXTRA } else { 0 };
    if inner_len > session.mtu as usize {
        return refuse::<LAN>(DropReason::TooBig);
    }
    // Forwarded here rather than by the stack: an expiring TTL is the stack's (Time Exceeded).
    if LAN && inner.ttl <= 1 {
        return refuse::<LAN>(DropReason::TooBig);
    }
    let Some(state) = GRE_STATE.get_ptr_mut(session.slot) else {
        return refuse::<LAN>(DropReason::NoSession);
    };

    // One fixed header layout: GRE always with seq and ack, PPP always uncompressed (FF 03 00 21;
    // RFC 1661 §6.5–6.6 receivers accept it even after ACFC/PFC). Constant offsets keep the
    // writes below verifier-simple, at a cost of 3 bytes against a fully compressed header. A
    // session is only up after LCP, authentication and IPCP frames arrived, so the ack is known.
    // SAFETY: `state` is from a successful array lookup; reads of plain integers.
    let (rx_seen, rx_highest) = unsafe { ((*state).rx_seen, (*state).rx_highest) };
    if rx_seen == 0 {
        return refuse::<LAN>(DropReason::SessionNotUp);
    }
    let outer_len = HEADER_LEN - ETH_HLEN + extra + inner_len;

    let hop = match next_hop(ctx, state, key.local, key.peer, outer_len) {
        Ok(hop) => hop,
        Err(reason) => return refuse::<LAN>(reason),
    };
    // Policed, not passed: in either mode a packet over the limit is dropped here.
    if !crate::police::within_rate(session.slot, false, inner_len) {
        return Err(DropReason::RateLimited);
    }
    // Past the last refusal: from here the packet is ours.
    if LAN && inner.v6 {
        let iph = ptr_at_mut::<Ipv6Hdr>(ctx, ETH_HLEN)?;
        // SAFETY: checked in bounds; hop limit > 1 checked above (no checksum in IPv6).
        unsafe { (*iph).hop_limit -= 1 };
    } else if LAN {
        let iph = ptr_at_mut::<Ipv4Hdr>(ctx, ETH_HLEN)?;
        // SAFETY: checked in bounds; TTL > 1 checked above.
        unsafe { fib::decrement_ttl(iph) };
    }
    if inner.l4 == IPPROTO_TCP {
        // IPv6's fixed header is 20 bytes longer than IPv4's.
        let mss = if inner.v6 {
            session.mss.saturating_sub(20)
        } else {
            session.mss
        };
        crate::mss::clamp_mss(ctx, inner.l4_off, mss);
    }
    let grow = (HEADER_LEN - ETH_HLEN + extra) as i32 - inner.skip as i32;
    // SAFETY: plain helper call on this program's own context.
    if unsafe { bpf_xdp_adjust_head(ctx.ctx, -grow) } != 0 {
        return Err(DropReason::AdjustFailed);
    }
    let ip_protocol: u8 = if inner.v6 { 0x57 } else { 0x21 };
    let next_seq = || {
        // SAFETY: `state` points into a map value that outlives this program run.
        unsafe { fetch_add(&raw mut (*state).tx_next) as u32 }
    };
    let seq = if mppe {
        let m = ptr_at_mut::<[u8; MPPE_EXTRA]>(ctx, HEADER_LEN)?;
        // SAFETY: checked in bounds; the PPP protocol after the (not yet written) MPPE header.
        unsafe { *m = [0, 0, 0x00, ip_protocol] };
        crate::mppe::encrypt(
            ctx,
            session.slot,
            HEADER_LEN,
            HEADER_LEN + MPPE_EXTRA + inner_len,
            // SAFETY: `state` as above; a plain 4-byte read (the controller bumps it).
            unsafe { core::ptr::read_volatile(&raw const (*state).mppe_reset) },
            next_seq,
        )?
    } else {
        next_seq()
    };
    let mut b = [0u8; HEADER_LEN];
    b[0..6].copy_from_slice(&hop.dmac);
    b[6..12].copy_from_slice(&hop.smac);
    b[12..14].copy_from_slice(&ETH_P_IP.to_be_bytes());
    let ip_out = &mut b[ETH_HLEN..ETH_HLEN + IPV4_MIN_HLEN];
    ip_out[0] = 0x45;
    ip_out[2..4].copy_from_slice(&(outer_len as u16).to_be_bytes());
    ip_out[8] = 64;
    ip_out[9] = IPPROTO_GRE;
    ip_out[12..16].copy_from_slice(&key.local);
    ip_out[16..20].copy_from_slice(&key.peer);
    let c = ipv4_checksum(ip_out);
    ip_out[10..12].copy_from_slice(&c.to_be_bytes());
    const G: usize = ETH_HLEN + IPV4_MIN_HLEN;
    let flags = FLAG_KEY | FLAG_SEQ | FLAG_ACK | VERSION_PPTP;
    b[G..G + 2].copy_from_slice(&flags.to_be_bytes());
    b[G + 2..G + 4].copy_from_slice(&PROTO_PPP.to_be_bytes());
    b[G + 4..G + 6].copy_from_slice(&((PPP_LEN + extra + inner_len) as u16).to_be_bytes());
    b[G + 6..G + 8].copy_from_slice(&session.peer_call_id);
    b[G + 8..G + 12].copy_from_slice(&seq.to_be_bytes());
    b[G + 12..G + 16].copy_from_slice(&rx_highest.to_be_bytes());
    let protocol = if mppe {
        PPP_MPPE
    } else {
        u16::from(ip_protocol)
    };
    b[G + 16..G + 18].copy_from_slice(&[0xff, 0x03]);
    b[G + 18..G + 20].copy_from_slice(&protocol.to_be_bytes());
    let hdr = ptr_at_mut::<[u8; HEADER_LEN]>(ctx, 0)?;
    // SAFETY: `ptr_at_mut` checked the whole header block; the array type has alignment 1.
    unsafe { *hdr = b };

    // SAFETY: `state` as above.
    unsafe {
        (*state).ack_sent = rx_highest;
        (*state).last_tx_ns = bpf_ktime_get_coarse_ns();
    }
    if let Some(st) = SESSION_STATS.get_ptr_mut(session.slot) {
        // SAFETY: per-CPU slot from a successful lookup.
        unsafe {
            (*st).tx_packets += 1;
            (*st).tx_bytes += inner_len as u64;
        }
    }
    count(Stat::Encapsulated);
    if inner.v6 {
        count(Stat::Encapsulated6);
    }
    // SAFETY: plain helper call; XDP_REDIRECT on success.
    Ok(unsafe { bpf_redirect(hop.ifindex, 0) } as u32)
}

/// One session, one CPU at a time (`docs/architecture.md`): packets for a session that arrive on
/// another CPU than its home are handed to the home CPU; `None` when this is the home (or
/// steering is off, or the home has no entry), and the packet is encapsulated here.
#[inline(always)]
fn steer(slot: u32) -> Option<u32> {
    let cpus = CONFIG.get(0)?.steer_cpus;
    if cpus < 2 {
        return None;
    }
    let home = slot % cpus;
    // SAFETY: plain helper call.
    if home == unsafe { bpf_get_smp_processor_id() } {
        return None;
    }
    count(Stat::LanSteered);
    HOME_CPUS.redirect(home, 0).ok()
}

/// Where an encapsulated packet goes: egress interface and MACs.
struct Hop {
    ifindex: u32,
    smac: [u8; 6],
    dmac: [u8; 6],
}

/// The session's outer next hop: cached in its GRE state while the routing generation has not
/// moved, else a FIB lookup from the dialled address (so policy routing picks the uplink), whose
/// answer is cached. One lookup per session and routing change instead of one per packet.
#[inline(always)]
fn next_hop(
    ctx: &XdpContext,
    state: *mut GreState,
    local: [u8; 4],
    peer: [u8; 4],
    outer_len: usize,
) -> Result<Hop, DropReason> {
    let generation = ROUTE_GENERATION.get(0).copied().unwrap_or(0);
    // SAFETY: `state` is from a successful array lookup; plain reads.
    unsafe {
        if generation != 0 && (*state).hop_generation == generation {
            count(Stat::EncapHopCached);
            return Ok(Hop {
                ifindex: (*state).hop_ifindex,
                smac: (*state).hop_smac,
                dmac: (*state).hop_dmac,
            });
        }
    }
    let mut fib = FibLookup::ipv4(
        IPPROTO_GRE,
        outer_len as u16,
        ctx.ingress_ifindex() as u32,
        0,
        local,
        peer,
    );
    let rc = fib::lookup(ctx, &mut fib);
    if rc == BPF_FIB_LKUP_RET_NO_NEIGH as i64 {
        // Not cached: the stack resolves the neighbour, and a later packet finds it.
        return Err(DropReason::NoNeighbour);
    }
    if rc != BPF_FIB_LKUP_RET_SUCCESS as i64 {
        return Err(DropReason::NoRoute);
    }
    // SAFETY: as above; the generation is written last, so a reader on another CPU sees either
    // the old generation or the whole new entry (the encapsulation runs on one queue anyway).
    unsafe {
        (*state).hop_ifindex = fib.ifindex;
        (*state).hop_smac = fib.smac;
        (*state).hop_dmac = fib.dmac;
        (*state).hop_generation = generation;
    }
    Ok(Hop {
        ifindex: fib.ifindex,
        smac: fib.smac,
        dmac: fib.dmac,
    })
}

/// IPv4 header checksum over 20 bytes (checksum field zero).
#[inline(always)]
fn ipv4_checksum(h: &[u8]) -> u16 {
    let mut sum: u32 = 0;
    let mut i = 0;
    while i < IPV4_MIN_HLEN {
        sum += u16::from_be_bytes([h[i], h[i + 1]]) as u32;
        i += 2;
    }
    sum = (sum & 0xffff) + (sum >> 16);
    sum = (sum & 0xffff) + (sum >> 16);
    !(sum as u16)
}

/// Atomic `*p += 1`, returning the previous value: one BPF ISA v3 instruction
/// (`-C target-cpu=v3`, see pptp-user/build.rs), so CPUs encapsulating for one session never
/// hand out the same sequence number.
///
/// # Safety
/// `p` must be valid for reads and writes and 8-byte aligned.
#[cfg(target_arch = "bpf")]
#[inline(always)]
unsafe fn fetch_add(p: *mut u64) -> u64 {
    // SeqCst, not Relaxed: with a relaxed ordering LLVM 22's BPF backend emits the non-fetching
    // `lock xadd` and then treats its source register as the old value (seen in the object: every
    // packet got sequence number 1). SeqCst selects BPF_ADD | BPF_FETCH.
    // SAFETY: the caller's contract.
    unsafe {
        core::intrinsics::atomic_xadd::<u64, u64, { core::intrinsics::AtomicOrdering::SeqCst }>(
            p, 1,
        )
    }
}

/// Host builds (clippy) only.
#[cfg(not(target_arch = "bpf"))]
unsafe fn fetch_add(p: *mut u64) -> u64 {
    // SAFETY: the caller's contract.
    unsafe { core::sync::atomic::AtomicU64::from_ptr(p) }
        .fetch_add(1, core::sync::atomic::Ordering::Relaxed)
}
