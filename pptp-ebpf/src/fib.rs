//! The kernel's FIB from XDP (`bpf_fib_lookup`, both families), and what forwarding does to the
//! IPv4 header.

use aya_ebpf::{helpers::bpf_fib_lookup, programs::XdpContext};
use pptp_common::{checksum, headers::Ipv4Hdr};

/// `struct bpf_fib_lookup` (64 bytes): IPv4 addresses in the first 4 bytes of `src`/`dst`.
#[repr(C)]
#[derive(Clone, Copy)]
pub struct FibLookup {
    family: u8,
    l4_protocol: u8,
    sport: [u8; 2],
    dport: [u8; 2],
    /// In: the packet's IPv4 total length (the kernel checks it against the egress MTU).
    tot_len: u16,
    /// In: the interface the packet is treated as arriving on; out: the egress.
    pub ifindex: u32,
    /// IPv4 TOS, or IPv6 flow information (network order).
    tos: u32,
    src: [u8; 16],
    dst: [u8; 16],
    vlan: u32,
    pub smac: [u8; 6],
    pub dmac: [u8; 6],
}
const _: () = assert!(core::mem::size_of::<FibLookup>() == 64);

const AF_INET: u8 = 2;
const AF_INET6: u8 = 10;

impl FibLookup {
    #[inline(always)]
    pub fn ipv4(
        protocol: u8,
        tot_len: u16,
        ifindex: u32,
        tos: u8,
        src: [u8; 4],
        dst: [u8; 4],
    ) -> Self {
        let mut s = [0u8; 16];
        let mut d = [0u8; 16];
        s[..4].copy_from_slice(&src);
        d[..4].copy_from_slice(&dst);
        Self {
            family: AF_INET,
            l4_protocol: protocol,
            sport: [0; 2],
            dport: [0; 2],
            tot_len,
            ifindex,
            tos: tos as u32,
            src: s,
            dst: d,
            vlan: 0,
            smac: [0; 6],
            dmac: [0; 6],
        }
    }

    /// `tot_len` is the whole packet (header included), as for IPv4.
    #[inline(always)]
    pub fn ipv6(
        next_header: u8,
        tot_len: u16,
        ifindex: u32,
        flowinfo: [u8; 4],
        src: [u8; 16],
        dst: [u8; 16],
    ) -> Self {
        Self {
            family: AF_INET6,
            l4_protocol: next_header,
            sport: [0; 2],
            dport: [0; 2],
            tot_len,
            ifindex,
            // The kernel takes the flow label from here (`params->flowinfo`, network order).
            tos: u32::from_ne_bytes([flowinfo[0] & 0x0f, flowinfo[1], flowinfo[2], flowinfo[3]]),
            src,
            dst,
            vlan: 0,
            smac: [0; 6],
            dmac: [0; 6],
        }
    }
}

/// `bpf_fib_lookup` with no flags (the full FIB with policy rules, neighbour resolved, MTU
/// checked against `tot_len`); returns its `BPF_FIB_LKUP_RET_*`.
#[inline(always)]
pub fn lookup(ctx: &XdpContext, fib: &mut FibLookup) -> i64 {
    // SAFETY: `fib` is a valid, writable 64-byte `struct bpf_fib_lookup`.
    unsafe {
        bpf_fib_lookup(
            ctx.ctx.cast(),
            (fib as *mut FibLookup).cast(),
            core::mem::size_of::<FibLookup>() as i32,
            0,
        )
    }
}

/// Forwarding's TTL decrement, with the header checksum updated incrementally.
///
/// # Safety
/// `ip` must point to a whole IPv4 header inside the packet; the caller checked TTL > 1.
#[inline(always)]
pub unsafe fn decrement_ttl(ip: *mut Ipv4Hdr) {
    // SAFETY: the caller's contract.
    unsafe {
        let (ttl, protocol) = ((*ip).ttl, (*ip).protocol);
        let check = u16::from_be_bytes((*ip).check);
        let new = checksum::replace16(
            check,
            u16::from_be_bytes([ttl, protocol]),
            u16::from_be_bytes([ttl - 1, protocol]),
        );
        (*ip).ttl = ttl - 1;
        (*ip).check = new.to_be_bytes();
    }
}
