//! TC classifier for `pptp0` egress: parses and counts what the kernel routes to clients.
//! Encapsulation itself is XDP on `pptp0`'s peer (see `encap.rs` for why); this program stays as
//! an observation point and for hosts whose veth lacks native XDP.

use aya_ebpf::programs::TcContext;
use pptp_common::{
    headers::{ETH_HLEN, ETH_P_IP, EthHdr, IPV4_MIN_HLEN, Ipv4Hdr},
    stats::{DropReason, Stat},
};

use crate::{counters::count, packet::read_at};

/// TC verdicts (linux/pkt_cls.h). The generated bindings type them differently per target arch;
/// these are the values as the classifier returns them.
pub const TC_ACT_OK: i32 = 0;
pub const TC_ACT_SHOT: i32 = 2;

#[inline(always)]
pub fn try_classify(ctx: &TcContext) -> Result<i32, DropReason> {
    let eth: EthHdr = read_at(ctx, 0)?;
    if u16::from_be_bytes(eth.ether_type) == ETH_P_IP {
        let ip: Ipv4Hdr = read_at(ctx, ETH_HLEN)?;
        if ip.version() != 4 || ip.header_len() < IPV4_MIN_HLEN {
            return Err(DropReason::Ipv4Malformed);
        }
    }
    count(Stat::TcPassed);
    Ok(TC_ACT_OK)
}
