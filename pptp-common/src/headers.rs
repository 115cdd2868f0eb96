//! Fixed header layouts as the eBPF programs read them from packet memory.
//!
//! Fields are byte arrays so every struct has alignment 1: reading one through a packet pointer is
//! never an unaligned access, whatever offset the IPv4 options leave it at.

/// Ethernet II header.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct EthHdr {
    pub dst: [u8; 6],
    pub src: [u8; 6],
    pub ether_type: [u8; 2],
}

pub const ETH_HLEN: usize = 14;
pub const ETH_P_IP: u16 = 0x0800;
pub const ETH_P_IPV6: u16 = 0x86dd;
const _: () = assert!(core::mem::size_of::<EthHdr>() == ETH_HLEN);

/// IPv4 header without options (RFC 791).
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Ipv4Hdr {
    pub version_ihl: u8,
    pub tos: u8,
    pub total_len: [u8; 2],
    pub id: [u8; 2],
    pub frag_off: [u8; 2],
    pub ttl: u8,
    pub protocol: u8,
    pub check: [u8; 2],
    pub src: [u8; 4],
    pub dst: [u8; 4],
}

pub const IPV4_MIN_HLEN: usize = 20;
pub const IPPROTO_TCP: u8 = 6;
pub const IPPROTO_UDP: u8 = 17;
/// DHCPv6's ports (RFC 8415 §7.2): clients listen on 546, servers on 547.
pub const DHCPV6_CLIENT_PORT: u16 = 546;
pub const DHCPV6_SERVER_PORT: u16 = 547;
pub const IPPROTO_GRE: u8 = 47;
/// More-fragments flag and fragment offset bits of `frag_off`.
pub const IPV4_MF_OFFSET_MASK: u16 = 0x3fff;
const _: () = assert!(core::mem::size_of::<Ipv4Hdr>() == IPV4_MIN_HLEN);

impl Ipv4Hdr {
    pub const fn version(&self) -> u8 {
        self.version_ihl >> 4
    }
    /// Header length in bytes, options included (IHL × 4).
    pub const fn header_len(&self) -> usize {
        ((self.version_ihl & 0x0f) as usize) * 4
    }
    pub const fn total_len(&self) -> u16 {
        u16::from_be_bytes(self.total_len)
    }
    /// True for any fragment but an unfragmented datagram (MF set or non-zero offset).
    pub const fn is_fragment(&self) -> bool {
        u16::from_be_bytes(self.frag_off) & IPV4_MF_OFFSET_MASK != 0
    }
}

/// IPv6 fixed header (RFC 8200 §3).
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Ipv6Hdr {
    pub version_class_flow: [u8; 4],
    pub payload_len: [u8; 2],
    pub next_header: u8,
    pub hop_limit: u8,
    pub src: [u8; 16],
    pub dst: [u8; 16],
}

pub const IPV6_HLEN: usize = 40;
pub const IPPROTO_ICMPV6: u8 = 58;
const _: () = assert!(core::mem::size_of::<Ipv6Hdr>() == IPV6_HLEN);

impl Ipv6Hdr {
    pub const fn version(&self) -> u8 {
        self.version_class_flow[0] >> 4
    }
    pub const fn payload_len(&self) -> u16 {
        u16::from_be_bytes(self.payload_len)
    }
    /// Header and payload.
    pub const fn total_len(&self) -> usize {
        IPV6_HLEN + self.payload_len() as usize
    }
    /// The link's own traffic, not a client's: to a multicast (ff00::/8) or link-local
    /// (fe80::/10) destination, or from a link-local source.
    pub const fn is_link_traffic(&self) -> bool {
        self.dst[0] == 0xff
            || (self.dst[0] == 0xfe && self.dst[1] & 0xc0 == 0x80)
            || (self.src[0] == 0xfe && self.src[1] & 0xc0 == 0x80)
    }
    /// The first 8 bytes of an address: a /64 as sessions hold them.
    pub const fn prefix64(a: &[u8; 16]) -> [u8; 8] {
        [a[0], a[1], a[2], a[3], a[4], a[5], a[6], a[7]]
    }
}

/// The mandatory 8 bytes of an enhanced GRE (version 1) header, RFC 2637 §4.1. Sequence and
/// acknowledgement numbers follow when the S and A flags say so; see [`crate::gre::GreShape`].
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct GreHdr {
    pub flags_version: [u8; 2],
    pub protocol: [u8; 2],
    pub payload_len: [u8; 2],
    pub call_id: [u8; 2],
}

pub const GRE_FIXED_LEN: usize = 8;
const _: () = assert!(core::mem::size_of::<GreHdr>() == GRE_FIXED_LEN);

impl GreHdr {
    pub const fn flags_version(&self) -> u16 {
        u16::from_be_bytes(self.flags_version)
    }
    pub const fn protocol(&self) -> u16 {
        u16::from_be_bytes(self.protocol)
    }
    pub const fn payload_len(&self) -> u16 {
        u16::from_be_bytes(self.payload_len)
    }
    pub const fn call_id(&self) -> u16 {
        u16::from_be_bytes(self.call_id)
    }
}
