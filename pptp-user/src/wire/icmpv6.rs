//! The IPv6 packets the gateway itself speaks on a client's link (RFC 4861): Router
//! Solicitations parsed, Router Advertisements built, as whole IPv6 packets (header, ICMPv6,
//! checksum) carried in PPP protocol 0x0057.

use std::net::Ipv6Addr;

pub const IPV6_HLEN: usize = 40;
pub const NEXT_ICMPV6: u8 = 58;
pub const ROUTER_SOLICITATION: u8 = 133;
pub const ROUTER_ADVERTISEMENT: u8 = 134;
/// Neighbour Discovery packets are only valid with hop limit 255 (RFC 4861 §6.1): they never
/// crossed a router.
pub const ND_HOP_LIMIT: u8 = 255;
pub const ALL_NODES: Ipv6Addr = Ipv6Addr::new(0xff02, 0, 0, 0, 0, 0, 0, 1);
pub const ALL_ROUTERS: Ipv6Addr = Ipv6Addr::new(0xff02, 0, 0, 0, 0, 0, 0, 2);

/// The RFC 4443 §2.3 checksum: the pseudo-header (addresses, upper-layer length, next header)
/// and the ICMPv6 message.
pub fn checksum(src: &Ipv6Addr, dst: &Ipv6Addr, icmp: &[u8]) -> u16 {
    upper_layer_checksum(src, dst, NEXT_ICMPV6, icmp)
}

/// RFC 8200 §8.1: the checksum over the pseudo-header and an upper-layer message (ICMPv6, UDP).
pub fn upper_layer_checksum(src: &Ipv6Addr, dst: &Ipv6Addr, next: u8, upper: &[u8]) -> u16 {
    let mut sum: u32 = 0;
    let mut add = |b: &[u8]| {
        for c in b.chunks(2) {
            sum += u32::from(u16::from_be_bytes([c[0], *c.get(1).unwrap_or(&0)]));
        }
    };
    add(&src.octets());
    add(&dst.octets());
    add(&(upper.len() as u32).to_be_bytes());
    add(&[0, 0, 0, next]);
    add(upper);
    while sum > 0xffff {
        sum = (sum & 0xffff) + (sum >> 16);
    }
    !(sum as u16)
}

/// A valid Router Solicitation (RFC 4861 §6.1.1: hop limit 255, code 0, checksum right, at
/// least 8 bytes of ICMPv6, options well-formed): its source (`::` before the client has an
/// address). `None` for anything else.
pub fn router_solicitation(packet: &[u8]) -> Option<Ipv6Addr> {
    if packet.len() < IPV6_HLEN + 8 || packet[0] >> 4 != 6 {
        return None;
    }
    let payload_len = usize::from(u16::from_be_bytes([packet[4], packet[5]]));
    let icmp = packet.get(IPV6_HLEN..IPV6_HLEN + payload_len)?;
    if packet[6] != NEXT_ICMPV6 || packet[7] != ND_HOP_LIMIT || icmp.len() < 8 {
        return None;
    }
    let src = Ipv6Addr::from(<[u8; 16]>::try_from(&packet[8..24]).ok()?);
    let dst = Ipv6Addr::from(<[u8; 16]>::try_from(&packet[24..40]).ok()?);
    if icmp[0] != ROUTER_SOLICITATION || icmp[1] != 0 || checksum(&src, &dst, icmp) != 0 {
        return None;
    }
    let mut opts = &icmp[8..];
    while !opts.is_empty() {
        let len = usize::from(*opts.get(1)?) * 8;
        // §6.1.1: a zero-length option, or a source link-layer option from `::`, invalidates it.
        if len == 0 || len > opts.len() || (opts[0] == 1 && src.is_unspecified()) {
            return None;
        }
        opts = &opts[len..];
    }
    Some(src)
}

/// What one Router Advertisement to a client says.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RouterAdvert {
    /// Our link-local address (fe80::<our IPV6CP identifier>).
    pub src: Ipv6Addr,
    pub dst: Ipv6Addr,
    /// How long the client may use us as its default router, seconds (0: not a default router).
    pub router_lifetime: u16,
    /// The session's /64, autonomous (SLAAC) and on-link.
    pub prefix: Ipv6Addr,
    pub valid_lifetime: u32,
    pub preferred_lifetime: u32,
    /// The link MTU (the session's), so the client does not send what the tunnel would drop.
    pub mtu: u32,
    /// Recursive DNS servers (RFC 8106) and their lifetime, seconds.
    pub dns: Vec<Ipv6Addr>,
    pub dns_lifetime: u32,
}

impl RouterAdvert {
    /// The whole IPv6 packet.
    pub fn to_packet(&self) -> Vec<u8> {
        let mut icmp = vec![
            ROUTER_ADVERTISEMENT,
            0,
            0,
            0,  // checksum, below
            64, // the hop limit clients should use
            0,  // M and O clear: addresses by SLAAC, no DHCPv6
        ];
        icmp.extend_from_slice(&self.router_lifetime.to_be_bytes());
        icmp.extend_from_slice(&[0; 8]); // reachable time, retrans timer: unspecified
        // Prefix Information (§4.6.2): on-link and autonomous.
        icmp.extend_from_slice(&[3, 4, 64, 0xc0]);
        icmp.extend_from_slice(&self.valid_lifetime.to_be_bytes());
        icmp.extend_from_slice(&self.preferred_lifetime.to_be_bytes());
        icmp.extend_from_slice(&[0; 4]);
        icmp.extend_from_slice(&self.prefix.octets());
        // MTU (§4.6.4).
        icmp.extend_from_slice(&[5, 1, 0, 0]);
        icmp.extend_from_slice(&self.mtu.to_be_bytes());
        if !self.dns.is_empty() {
            // RDNSS (RFC 8106 §5.1): 8 bytes of header, 16 per server.
            icmp.extend_from_slice(&[25, (1 + 2 * self.dns.len()) as u8, 0, 0]);
            icmp.extend_from_slice(&self.dns_lifetime.to_be_bytes());
            for d in &self.dns {
                icmp.extend_from_slice(&d.octets());
            }
        }
        let c = checksum(&self.src, &self.dst, &icmp);
        icmp[2..4].copy_from_slice(&c.to_be_bytes());
        let mut p = Vec::with_capacity(IPV6_HLEN + icmp.len());
        p.extend_from_slice(&[0x60, 0, 0, 0]);
        p.extend_from_slice(&(icmp.len() as u16).to_be_bytes());
        p.extend_from_slice(&[NEXT_ICMPV6, ND_HOP_LIMIT]);
        p.extend_from_slice(&self.src.octets());
        p.extend_from_slice(&self.dst.octets());
        p.extend_from_slice(&icmp);
        p
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A Router Solicitation as Linux sends it on a PPP link (no link-layer option: PPP has no
    /// link-layer address), from fe80::1122:3344:5566:7788 to ff02::2.
    fn linux_rs() -> Vec<u8> {
        let src: Ipv6Addr = "fe80::1122:3344:5566:7788".parse().unwrap();
        let mut icmp = vec![ROUTER_SOLICITATION, 0, 0, 0, 0, 0, 0, 0];
        let c = checksum(&src, &ALL_ROUTERS, &icmp);
        icmp[2..4].copy_from_slice(&c.to_be_bytes());
        let mut p = vec![0x60, 0, 0, 0, 0, 8, 58, 255];
        p.extend_from_slice(&src.octets());
        p.extend_from_slice(&ALL_ROUTERS.octets());
        p.extend_from_slice(&icmp);
        p
    }

    #[test]
    fn checksum_matches_rfc_1071_arithmetic() {
        // An Echo Request ::1 → ::1 with id 0 seq 0 and no data: 0xffff minus the sum of the
        // pseudo-header (1 + 1 + 8 + 58) and the type word (0x8000) = 0x7fbb.
        let one: Ipv6Addr = "::1".parse().unwrap();
        assert_eq!(checksum(&one, &one, &[128, 0, 0, 0, 0, 0, 0, 0]), 0x7fbb);
    }

    #[test]
    fn solicitations_are_validated() {
        let rs = linux_rs();
        assert_eq!(
            router_solicitation(&rs),
            Some("fe80::1122:3344:5566:7788".parse().unwrap())
        );
        let mut hop = rs.clone();
        hop[7] = 64;
        assert_eq!(router_solicitation(&hop), None);
        let mut sum = rs.clone();
        sum[43] ^= 1;
        assert_eq!(router_solicitation(&sum), None);
        let mut kind = rs.clone();
        kind[40] = 135;
        assert_eq!(router_solicitation(&kind), None);
        assert_eq!(router_solicitation(&rs[..44]), None);
        let mut long = rs.clone();
        long[5] = 200; // payload length past the packet
        assert_eq!(router_solicitation(&long), None);
    }

    #[test]
    fn an_advert_is_a_valid_icmpv6_packet() {
        let ra = RouterAdvert {
            src: "fe80::1".parse().unwrap(),
            dst: ALL_NODES,
            router_lifetime: 1800,
            prefix: "2001:db8:0:7::".parse().unwrap(),
            valid_lifetime: 86400,
            preferred_lifetime: 14400,
            mtu: 1400,
            dns: vec!["2001:db8::53".parse().unwrap()],
            dns_lifetime: 1200,
        }
        .to_packet();
        assert_eq!(ra.len(), 40 + 16 + 32 + 8 + 24);
        assert_eq!(
            usize::from(u16::from_be_bytes([ra[4], ra[5]])),
            ra.len() - 40
        );
        assert_eq!((ra[6], ra[7], ra[40]), (58, 255, 134));
        let (src, dst) = ("fe80::1".parse().unwrap(), ALL_NODES);
        assert_eq!(checksum(&src, &dst, &ra[40..]), 0, "checksum verifies");
        // Prefix option: type 3, len 4, /64, L and A.
        assert_eq!(&ra[56..60], &[3, 4, 64, 0xc0]);
        assert_eq!(&ra[72..80], &[0x20, 0x01, 0x0d, 0xb8, 0, 0, 0, 7]);
        assert_eq!(&ra[88..96], &[5, 1, 0, 0, 0, 0, 0x05, 0x78]);
        assert_eq!(&ra[96..100], &[25, 3, 0, 0]);
    }
}
