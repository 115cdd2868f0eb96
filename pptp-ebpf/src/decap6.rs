//! The decapsulation's IPv6 stage: a session's PPP protocol 0x0057 (plain, or decrypted by the
//! MPPE stage). Data from the client's /64 is policed, MSS-clamped and delivered like IPv4; the
//! link's own traffic (to multicast or link-local addresses: Router Solicitations, neighbour
//! discovery, DHCPv6) goes to the controller — on an encrypted session decrypted, with its
//! PPP protocol field relabelled 0x0057 so the controller knows (plaintext 0x0057 is dropped on
//! such a session before it gets here); anything else is dropped as spoofed.

use aya_ebpf::{bindings::xdp_action, programs::XdpContext};
use pptp_common::{
    headers::{
        DHCPV6_SERVER_PORT, ETH_P_IPV6, IPPROTO_ICMPV6, IPPROTO_TCP, IPPROTO_UDP, IPV6_HLEN,
        Ipv6Hdr,
    },
    seq::RxWindow,
    session::{DatapathConfig, GreState, Session},
    stats::{DropReason, Stat},
};

use crate::{
    counters::count,
    decap::{deliver, record},
    packet::{ptr_at_mut, read_at},
};

/// Where things are in the frame being decapsulated.
pub struct Frame {
    /// The sequence number's window, accepted already.
    pub window: RxWindow,
    /// The IPv6 header, and the end of the PPP payload.
    pub inner_off: usize,
    pub end: usize,
    /// The outer PPP protocol field (1 or 2 bytes).
    pub protocol_off: usize,
    pub protocol_len: usize,
    pub mppe: bool,
}

#[inline(always)]
pub fn decap_ipv6(
    ctx: &XdpContext,
    session: &Session,
    state: *mut GreState,
    f: &Frame,
    cfg: &DatapathConfig,
) -> Result<u32, DropReason> {
    let ip: Ipv6Hdr = read_at(ctx, f.inner_off)?;
    let len = ip.total_len();
    if ip.version() != 6 || f.inner_off + len > f.end {
        return Err(DropReason::InnerMalformed);
    }
    if ip.is_link_traffic() {
        // ICMPv6 (RS, ND) and DHCPv6 to the servers' multicast group or our link-local
        // address (UDP port 547) are the controller's; nothing else on the link is.
        let dhcpv6 = ip.next_header == IPPROTO_UDP
            && read_at::<[u8; 4]>(ctx, f.inner_off + IPV6_HLEN)?[2..]
                == DHCPV6_SERVER_PORT.to_be_bytes();
        if ip.next_header != IPPROTO_ICMPV6 && !dhcpv6 {
            return Err(DropReason::SpoofedInnerSource6);
        }
        if f.mppe {
            let p = ptr_at_mut::<[u8; 2]>(ctx, f.protocol_off)?;
            // SAFETY: `ptr_at_mut` checked both bytes lie inside the packet.
            unsafe {
                if f.protocol_len == 1 {
                    (*p)[0] = 0x57;
                } else {
                    (*p)[1] = 0x57;
                }
            }
        }
        record(state, f.window);
        count(Stat::XdpLink6);
        return Ok(xdp_action::XDP_PASS);
    }
    let src64 = Ipv6Hdr::prefix64(&ip.src);
    if session.prefix6 == [0; 8] || (src64 != session.prefix6 && !session.in_delegated6(src64)) {
        return Err(DropReason::SpoofedInnerSource6);
    }
    if !crate::police::within_rate(session.slot, true, len) {
        return Err(DropReason::RateLimited);
    }
    // Only a TCP header right behind the fixed header is clamped (no extension headers: SYNs
    // carry none in practice). IPv6's header is 20 bytes longer than IPv4's.
    if ip.next_header == IPPROTO_TCP && session.mss > 20 {
        crate::mss::clamp_mss(ctx, f.inner_off + IPV6_HLEN, session.mss - 20);
    }
    count(Stat::XdpDecap6);
    deliver(
        ctx,
        session,
        state,
        f.window,
        f.inner_off,
        len,
        cfg,
        ETH_P_IPV6,
    )
}
