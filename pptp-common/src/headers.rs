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
