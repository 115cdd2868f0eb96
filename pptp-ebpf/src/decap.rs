//! XDP on the WAN interface: classify what arrives, take PPTP GRE apart.
//!
//! Disposition: not IPv4/GRE, other GRE versions and outer fragments pass to the kernel untouched;
//! malformed enhanced GRE is dropped with a reason; well-formed enhanced GRE goes to the
//! controller's raw GRE socket (the slow path) until a session is programmed for it.

use aya_ebpf::{bindings::xdp_action, programs::XdpContext};
use pptp_common::{
    gre,
    headers::{ETH_HLEN, ETH_P_IP, EthHdr, GreHdr, IPPROTO_GRE, IPV4_MIN_HLEN, Ipv4Hdr},
    stats::{DropReason, Stat},
};

use crate::{counters::count, packet::read_at};

#[inline(always)]
pub fn try_decap(ctx: &XdpContext) -> Result<u32, DropReason> {
    let eth: EthHdr = read_at(ctx, 0)?;
    if u16::from_be_bytes(eth.ether_type) != ETH_P_IP {
        count(Stat::XdpNotGre);
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

    count(Stat::XdpSlowPath);
    Ok(xdp_action::XDP_PASS)
}
