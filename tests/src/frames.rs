//! Hand-built Ethernet/IPv4/GRE frames for data-path tests, including deliberately broken ones.

use std::net::{Ipv4Addr, Ipv6Addr};

pub const ETH_P_IP: u16 = 0x0800;
pub const ETH_P_IPV6: u16 = 0x86dd;
pub const IPPROTO_ICMPV6: u8 = 58;
pub const IPPROTO_UDP: u8 = 17;
pub const IPPROTO_GRE: u8 = 47;

pub use pptp_client::packet::{checksum, ipv4};

pub fn ethernet(dst: [u8; 6], src: [u8; 6], ether_type: u16, payload: &[u8]) -> Vec<u8> {
    let mut f = Vec::with_capacity(14 + payload.len());
    f.extend_from_slice(&dst);
    f.extend_from_slice(&src);
    f.extend_from_slice(&ether_type.to_be_bytes());
    f.extend_from_slice(payload);
    f
}

/// An enhanced GRE header and payload as a PPTP peer sends it (RFC 2637 §4.1).
pub fn gre_v1(call_id: u16, seq: Option<u32>, ack: Option<u32>, payload: &[u8]) -> Vec<u8> {
    let mut flags: u16 = 0x2001; // K, version 1
    if seq.is_some() {
        flags |= 0x1000;
    }
    if ack.is_some() {
        flags |= 0x0080;
    }
    let mut g = Vec::new();
    g.extend_from_slice(&flags.to_be_bytes());
    g.extend_from_slice(&0x880bu16.to_be_bytes());
    g.extend_from_slice(&(payload.len() as u16).to_be_bytes());
    g.extend_from_slice(&call_id.to_be_bytes());
    if let Some(s) = seq {
        g.extend_from_slice(&s.to_be_bytes());
    }
    if let Some(a) = ack {
        g.extend_from_slice(&a.to_be_bytes());
    }
    g.extend_from_slice(payload);
    g
}

/// A UDP datagram with a zero (absent) checksum.
pub fn udp(src_port: u16, dst_port: u16, payload: &[u8]) -> Vec<u8> {
    let mut u = Vec::new();
    u.extend_from_slice(&src_port.to_be_bytes());
    u.extend_from_slice(&dst_port.to_be_bytes());
    u.extend_from_slice(&((8 + payload.len()) as u16).to_be_bytes());
    u.extend_from_slice(&[0, 0]);
    u.extend_from_slice(payload);
    u
}

/// A TCP SYN with one option, MSS, and a valid checksum for `src`→`dst`.
pub fn tcp_syn(src: Ipv4Addr, dst: Ipv4Addr, mss: u16) -> Vec<u8> {
    let mut t = vec![0u8; 24];
    t[0..2].copy_from_slice(&40000u16.to_be_bytes());
    t[2..4].copy_from_slice(&80u16.to_be_bytes());
    t[4..8].copy_from_slice(&1u32.to_be_bytes());
    t[12] = 6 << 4; // data offset 24 bytes
    t[13] = 0x02; // SYN
    t[14..16].copy_from_slice(&65535u16.to_be_bytes());
    t[20] = 2;
    t[21] = 4;
    t[22..24].copy_from_slice(&mss.to_be_bytes());
    let c = tcp_checksum(src, dst, &t);
    t[16..18].copy_from_slice(&c.to_be_bytes());
    t
}

/// The TCP checksum over the pseudo-header and `segment` (checksum field included as it is:
/// a segment with a correct checksum yields 0).
pub fn tcp_checksum(src: Ipv4Addr, dst: Ipv4Addr, segment: &[u8]) -> u16 {
    let mut buf = Vec::new();
    buf.extend_from_slice(&src.octets());
    buf.extend_from_slice(&dst.octets());
    buf.extend_from_slice(&[0, 6]);
    buf.extend_from_slice(&(segment.len() as u16).to_be_bytes());
    buf.extend_from_slice(segment);
    checksum(&buf)
}

/// An IPv6 packet (no extension headers).
pub fn ipv6(src: Ipv6Addr, dst: Ipv6Addr, next: u8, hop_limit: u8, payload: &[u8]) -> Vec<u8> {
    let mut p = vec![0x60, 0, 0, 0];
    p.extend_from_slice(&(payload.len() as u16).to_be_bytes());
    p.push(next);
    p.push(hop_limit);
    p.extend_from_slice(&src.octets());
    p.extend_from_slice(&dst.octets());
    p.extend_from_slice(payload);
    p
}

/// The upper-layer checksum over IPv6's pseudo-header (RFC 8200 §8.1) and `segment` (checksum
/// field included as it is: a correct segment yields 0).
pub fn checksum6(src: Ipv6Addr, dst: Ipv6Addr, next: u8, segment: &[u8]) -> u16 {
    let mut buf = Vec::new();
    buf.extend_from_slice(&src.octets());
    buf.extend_from_slice(&dst.octets());
    buf.extend_from_slice(&(segment.len() as u32).to_be_bytes());
    buf.extend_from_slice(&[0, 0, 0, next]);
    buf.extend_from_slice(segment);
    checksum(&buf)
}

/// A TCP SYN with one option, MSS, and a valid checksum for `src`→`dst` over IPv6.
pub fn tcp6_syn(src: Ipv6Addr, dst: Ipv6Addr, mss: u16) -> Vec<u8> {
    let mut t = tcp_syn(Ipv4Addr::UNSPECIFIED, Ipv4Addr::UNSPECIFIED, mss);
    t[16..18].copy_from_slice(&[0, 0]);
    let c = checksum6(src, dst, 6, &t);
    t[16..18].copy_from_slice(&c.to_be_bytes());
    t
}

/// An ICMPv6 message with its checksum filled in.
pub fn icmpv6(src: Ipv6Addr, dst: Ipv6Addr, kind: u8, body: &[u8]) -> Vec<u8> {
    let mut m = vec![kind, 0, 0, 0];
    m.extend_from_slice(body);
    let c = checksum6(src, dst, IPPROTO_ICMPV6, &m);
    m[2..4].copy_from_slice(&c.to_be_bytes());
    m
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ipv4_checksum_verifies_to_zero() {
        let p = ipv4(
            Ipv4Addr::new(10, 0, 0, 1),
            Ipv4Addr::new(10, 0, 0, 2),
            47,
            &[1, 2, 3],
        );
        assert_eq!(checksum(&p[..20]), 0);
        assert_eq!(u16::from_be_bytes([p[2], p[3]]), 23);
    }

    #[test]
    fn gre_header_matches_pptp_linux_bytes() {
        // pptp-linux data packet: 30 01 88 0b <len> <call id> <seq>
        let g = gre_v1(0x1234, Some(7), None, &[0xff, 0x03]);
        assert_eq!(
            g,
            [
                0x30, 0x01, 0x88, 0x0b, 0, 2, 0x12, 0x34, 0, 0, 0, 7, 0xff, 0x03
            ]
        );
    }
}
