//! XDP on the WAN interface: classify what arrives, take session data apart.
//!
//! Disposition: not IPv4/GRE, other GRE versions, outer fragments and outer IPv4 options pass to
//! the kernel untouched; malformed enhanced GRE is dropped with a reason, and so is enhanced GRE
//! of no programmed session; a session's PPP control frames go to the controller's raw GRE
//! socket (the slow path) after their sequence number is recorded. A session's IPv4 data is
//! checked (inner source = assigned address; sequence number new and inside the reorder window:
//! reordered packets are delivered in arrival order, duplicates and older ones dropped),
//! MSS-clamped, stripped to Ethernet + inner IPv4 and redirected so it arrives on `pptp0`
//! (`stack` mode), or handed to `forward.rs` (`xdp` mode).

use aya_ebpf::{
    bindings::xdp_action,
    helpers::{bpf_ktime_get_coarse_ns, bpf_redirect, bpf_xdp_adjust_head},
    programs::XdpContext,
};
use pptp_common::{
    gre,
    headers::{
        ETH_HLEN, ETH_P_IP, ETH_P_IPV6, EthHdr, GreHdr, IPPROTO_GRE, IPPROTO_TCP, IPV4_MIN_HLEN,
        Ipv4Hdr,
    },
    maps::{FORWARD_DECAPPED, FORWARD_LAN},
    mppe::PPP_MPPE,
    seq::{Arrival, MAX_WINDOW, RxWindow, seq_after},
    session::{DatapathConfig, GreState, MODE_MPPE, STATE_UP, Session, SessionKey},
    stats::{DropReason, Stat},
};

use crate::{
    counters::{count, count_drop},
    maps::{CONFIG, FORWARD, GRE_STATE, SESSION_STATS, SESSIONS},
    packet::{ptr_at_mut, read_at},
};

const PPP_IPV4: u16 = 0x0021;
const PPP_IPV6: u16 = 0x0057;

#[inline(always)]
pub fn try_decap(ctx: &XdpContext) -> Result<u32, DropReason> {
    let eth: EthHdr = read_at(ctx, 0)?;
    let ether_type = u16::from_be_bytes(eth.ether_type);
    if ether_type != ETH_P_IP {
        count(Stat::XdpNotGre);
        if ether_type == ETH_P_IPV6 {
            // As for non-GRE IPv4 below: `xdp` mode takes IPv6 for clients here too.
            // SAFETY: a tail call either does not return or leaves the context untouched.
            unsafe { FORWARD.tail_call(ctx, FORWARD_LAN) };
        }
        return Ok(xdp_action::XDP_PASS);
    }
    let ip: Ipv4Hdr = read_at(ctx, ETH_HLEN)?;
    let ip_hlen = ip.header_len();
    let ip_len = ip.total_len() as usize;
    if ip.version() != 4 || ip_hlen < IPV4_MIN_HLEN || ip_len < ip_hlen {
        return Err(DropReason::Ipv4Malformed);
    }
    if ip.protocol != IPPROTO_GRE {
        count(Stat::XdpNotGre);
        // `xdp` mode: traffic for clients may arrive on the WAN too (one-armed gateways, or
        // return traffic routed in over the uplink). No-op in `stack` mode (empty slot).
        // SAFETY: a tail call either does not return or leaves the context untouched.
        unsafe { FORWARD.tail_call(ctx, FORWARD_LAN) };
        return Ok(xdp_action::XDP_PASS);
    }
    if ip.is_fragment() {
        // Only the first fragment holds the GRE header; the kernel reassembles for the slow path.
        count(Stat::XdpFragment);
        return Ok(xdp_action::XDP_PASS);
    }

    let gre_off = ETH_HLEN + ip_hlen;
    let hdr: GreHdr = read_at(ctx, gre_off)?;
    let Some(shape) = gre::classify(hdr.flags_version(), hdr.protocol())? else {
        count(Stat::XdpGreOther);
        return Ok(xdp_action::XDP_PASS);
    };
    let payload_off = gre_off + shape.header_len();
    // The whole header must be there, and the IPv4 total length must cover it.
    if payload_off > ctx.data_end() - ctx.data() {
        return Err(DropReason::Truncated);
    }
    if ETH_HLEN + ip_len < payload_off {
        return Err(DropReason::Ipv4Malformed);
    }
    let payload_len = hdr.payload_len() as usize;
    if !shape.has_seq && payload_len != 0 {
        // RFC 2637 §4.1: a packet without payload carries no sequence number, and vice versa.
        return Err(DropReason::GreBadLength);
    }
    if payload_off + payload_len > ETH_HLEN + ip_len {
        return Err(DropReason::GreBadLength);
    }

    // Sessions live on the fast path only with a 20-byte outer header: the offsets below are then
    // constants, which keeps the verifier's job (and ours) simple. Options are vanishingly rare
    // on PPTP and go to the slow path.
    let Some(cfg) = CONFIG.get(0) else {
        return Ok(slow_path());
    };
    if cfg.enabled == 0 || ip_hlen != IPV4_MIN_HLEN {
        return Ok(slow_path());
    }
    let key = SessionKey {
        local: ip.dst,
        peer: ip.src,
        call_id: hdr.call_id,
        _pad: [0; 2],
    };
    // Every call the controller accepted is in SESSIONS from its Outgoing-Call-Reply on (its
    // negotiation included), so GRE that matches none is nobody's: dropped here, so that a flood
    // of it costs the controller nothing.
    // SAFETY: the value is copied out at once; map values stay valid while the program runs.
    let Some(session) = (unsafe { SESSIONS.get(key) }).copied() else {
        return Err(DropReason::UnknownCall);
    };
    let cfg = *cfg;
    decap_session(ctx, &session, shape, payload_off, payload_len, &cfg)
}

#[inline(always)]
fn slow_path() -> u32 {
    count(Stat::XdpSlowPath);
    xdp_action::XDP_PASS
}

const GRE_OFF: usize = ETH_HLEN + IPV4_MIN_HLEN;

#[inline(always)]
fn decap_session(
    ctx: &XdpContext,
    session: &Session,
    shape: gre::GreShape,
    payload_off: usize,
    payload_len: usize,
    cfg: &DatapathConfig,
) -> Result<u32, DropReason> {
    let Some(state) = GRE_STATE.get_ptr_mut(session.slot) else {
        return Ok(slow_path());
    };
    if shape.has_ack {
        let ack = u32::from_be_bytes(read_at::<[u8; 4]>(ctx, GRE_OFF + shape.ack_offset())?);
        // SAFETY: `state` comes from a successful array lookup and stays valid for the program.
        unsafe {
            if seq_after(ack, (*state).peer_ack) {
                (*state).peer_ack = ack;
            }
        }
    }
    if !shape.has_seq {
        // Ack-only: nothing more to do with it.
        count(Stat::XdpSessionControl);
        return Ok(xdp_action::XDP_DROP);
    }
    let seq = u32::from_be_bytes(read_at::<[u8; 4]>(ctx, GRE_OFF + 8)?);
    // SAFETY: as above.
    let (seen, highest, bits) =
        unsafe { ((*state).rx_seen, (*state).rx_highest, (*state).rx_window) };
    let arrival = if seen == 0 {
        Arrival::Accept(RxWindow::first(seq))
    } else {
        let size = if cfg.reorder_window == 0 {
            MAX_WINDOW
        } else {
            cfg.reorder_window
        };
        RxWindow {
            highest,
            seen: bits,
        }
        .arrival(seq, size)
    };

    // PPP header: optional FF 03, then a protocol of one byte (odd first byte) or two.
    let b: [u8; 2] = read_at(ctx, payload_off)?;
    let ac_len = if b[0] == 0xff {
        if b[1] != 0x03 {
            return Err(DropReason::PppMalformed);
        }
        2
    } else {
        0
    };
    let p: [u8; 2] = read_at(ctx, payload_off + ac_len)?;
    let (protocol, proto_len) = if p[0] & 1 == 1 {
        (p[0] as u16, 1)
    } else {
        (u16::from_be_bytes(p), 2)
    };
    let inner_off = payload_off + ac_len + proto_len;
    let mppe = session.mode == MODE_MPPE;
    let plain_ip = protocol == PPP_IPV4 || protocol == PPP_IPV6;
    if mppe && plain_ip && session.state == STATE_UP {
        // Encryption was agreed: plaintext data is not accepted (RFC 3078 §1).
        return Err(DropReason::MppePlaintext);
    }
    let data = if mppe { protocol == PPP_MPPE } else { plain_ip };

    if !data || session.state != STATE_UP {
        // Control frames keep their place in the sequence space but are never dropped here:
        // pptp.ko exempts LCP echo from the late check, and the slow path sorts out the rest.
        if let Arrival::Accept(w) = arrival {
            record(state, w);
        }
        count(Stat::XdpSessionControl);
        return Ok(xdp_action::XDP_PASS);
    }
    let window = match arrival {
        Arrival::Accept(w) => w,
        Arrival::Duplicate => return Err(DropReason::SequenceDuplicate),
        Arrival::TooOld => return Err(DropReason::SequenceLate),
    };
    let (inner_off, v6) = if mppe {
        // The MPPE header, then (encrypted) the PPP protocol and the packet.
        match crate::mppe::decrypt(ctx, session.slot, inner_off, payload_off + payload_len)? {
            crate::mppe::Received::Plain => {}
            crate::mppe::Received::ToController => {
                count_drop(DropReason::MppeLoss);
                return Ok(xdp_action::XDP_PASS);
            }
        }
        // Two bytes read, one maybe used: a 1-byte read's bounds check compiles to a form
        // the verifier cannot follow (`p >= end`).
        // Decryption checked it is one of 21, 57, 00 21, 00 57.
        let p: [u8; 2] = read_at(ctx, inner_off + pptp_common::mppe::HEADER_LEN)?;
        let plen = if p[0] & 1 == 1 { 1 } else { 2 };
        let v6 = p[0] == 0x57 || (p[0] == 0 && p[1] == 0x57);
        (inner_off + pptp_common::mppe::HEADER_LEN + plen, v6)
    } else {
        (inner_off, protocol == PPP_IPV6)
    };
    if v6 {
        let frame = crate::decap6::Frame {
            window,
            inner_off,
            end: payload_off + payload_len,
            protocol_off: payload_off + ac_len,
            protocol_len: proto_len,
            mppe,
        };
        return crate::decap6::decap_ipv6(ctx, session, state, &frame, cfg);
    }

    let inner: Ipv4Hdr = read_at(ctx, inner_off)?;
    let inner_hlen = inner.header_len();
    let inner_len = inner.total_len() as usize;
    if inner.version() != 4 || inner_hlen < IPV4_MIN_HLEN || inner_len < inner_hlen {
        return Err(DropReason::InnerMalformed);
    }
    if inner_off + inner_len > payload_off + payload_len {
        return Err(DropReason::InnerMalformed);
    }
    // An IPv6-only session has no IPv4 address (0.0.0.0): every IPv4 source is spoofed.
    if inner.src != session.assigned || session.assigned == [0; 4] {
        return Err(DropReason::SpoofedInnerSource);
    }
    if !crate::police::within_rate(session.slot, true, inner_len) {
        return Err(DropReason::RateLimited);
    }
    if inner.protocol == IPPROTO_TCP {
        crate::mss::clamp_mss(ctx, inner_off + inner_hlen, session.mss);
    }
    deliver(
        ctx, session, state, window, inner_off, inner_len, cfg, ETH_P_IP,
    )
}

/// The last stage for a checked inner packet at `inner_off` (`len` bytes, of `ether_type`):
/// its sequence number and timestamps recorded, counted, stripped to Ethernet + the packet and
/// sent into `pptp0` (or, in `xdp` mode, to `forward.rs`).
#[expect(
    clippy::too_many_arguments,
    reason = "one call site per family; inlined"
)]
#[inline(always)]
pub fn deliver(
    ctx: &XdpContext,
    session: &Session,
    state: *mut GreState,
    window: RxWindow,
    inner_off: usize,
    inner_len: usize,
    cfg: &DatapathConfig,
    ether_type: u16,
) -> Result<u32, DropReason> {
    record(state, window);
    // The coarse clock (CLOCK_MONOTONIC at tick resolution): the controller's idle and ack timers
    // need milliseconds, and in a VM the fine clock (kvm-clock) cost ~25 ns a packet.
    // SAFETY: as above.
    unsafe { (*state).last_rx_ns = bpf_ktime_get_coarse_ns() };
    if let Some(st) = SESSION_STATS.get_ptr_mut(session.slot) {
        // SAFETY: per-CPU slot from a successful lookup.
        unsafe {
            (*st).rx_packets += 1;
            (*st).rx_bytes += inner_len as u64;
        }
    }

    // Keep an Ethernet header's worth of room in front of the inner packet and drop the rest.
    let delta = (inner_off - ETH_HLEN) as i32;
    // SAFETY: plain helper call on this program's own context.
    if unsafe { bpf_xdp_adjust_head(ctx.ctx, delta) } != 0 {
        return Err(DropReason::AdjustFailed);
    }
    // Offsets are relative to the new start now.
    let eth = ptr_at_mut::<EthHdr>(ctx, 0)?;
    // SAFETY: `ptr_at_mut` checked that the header lies inside the packet.
    unsafe {
        *eth = EthHdr {
            dst: cfg.pptp0_mac,
            src: cfg.pptp0_peer_mac,
            ether_type: ether_type.to_be_bytes(),
        };
    }
    count(Stat::XdpDecap);
    // `xdp` mode forwards it from here (`forward.rs`); in `stack` mode the slot is empty and the
    // packet goes to `pptp0`.
    // SAFETY: a tail call either does not return or leaves the context untouched.
    unsafe { FORWARD.tail_call(ctx, FORWARD_DECAPPED) };
    // SAFETY: plain helper call; returns XDP_REDIRECT, or XDP_ABORTED for a bad ifindex.
    Ok(unsafe { bpf_redirect(cfg.pptp0_peer_ifindex, 0) } as u32)
}

/// Records an accepted sequence number's window in the session's GRE state.
#[inline(always)]
pub fn record(state: *mut GreState, w: RxWindow) {
    // SAFETY: `state` comes from a successful array lookup and stays valid for the program.
    unsafe {
        (*state).rx_highest = w.highest;
        (*state).rx_window = w.seen;
        (*state).rx_seen = 1;
    }
}
