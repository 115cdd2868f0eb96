//! Inner IPv4 packets the client makes itself (ICMP echo for `ping`), and the tests' hand-built
//! frames start from the same builders.

use std::net::Ipv4Addr;

pub const IPPROTO_ICMP: u8 = 1;

/// RFC 1071 Internet checksum.
pub fn checksum(bytes: &[u8]) -> u16 {
    let mut sum: u32 = 0;
    for chunk in bytes.chunks(2) {
        let word = u16::from_be_bytes([chunk[0], *chunk.get(1).unwrap_or(&0)]);
        sum += u32::from(word);
    }
    while sum > 0xffff {
        sum = (sum & 0xffff) + (sum >> 16);
    }
    !(sum as u16)
}

/// An IPv4 header (no options, DF clear, TTL 64, valid checksum) followed by `payload`.
pub fn ipv4(src: Ipv4Addr, dst: Ipv4Addr, protocol: u8, payload: &[u8]) -> Vec<u8> {
    let total = 20 + payload.len();
    let mut p = Vec::with_capacity(total);
    p.extend_from_slice(&[0x45, 0]);
    p.extend_from_slice(&(total as u16).to_be_bytes());
    p.extend_from_slice(&[0, 1, 0, 0, 64, protocol, 0, 0]);
    p.extend_from_slice(&src.octets());
    p.extend_from_slice(&dst.octets());
    let c = checksum(&p);
    p[10..12].copy_from_slice(&c.to_be_bytes());
    p.extend_from_slice(payload);
    p
}

/// An ICMP Echo-Request in IPv4, with `size` bytes of data.
pub fn echo_request(src: Ipv4Addr, dst: Ipv4Addr, id: u16, seq: u16, size: usize) -> Vec<u8> {
    let mut icmp = vec![8, 0, 0, 0];
    icmp.extend_from_slice(&id.to_be_bytes());
    icmp.extend_from_slice(&seq.to_be_bytes());
    icmp.extend((0..size).map(|i| i as u8));
    let c = checksum(&icmp);
    icmp[2..4].copy_from_slice(&c.to_be_bytes());
    ipv4(src, dst, IPPROTO_ICMP, &icmp)
}

/// An ICMP Echo-Reply's (source, id, seq), if `packet` is a well-formed one.
pub fn echo_reply(packet: &[u8]) -> Option<(Ipv4Addr, u16, u16)> {
    let ihl = usize::from(packet.first()? & 0x0f) * 4;
    if packet.first()? >> 4 != 4 || ihl < 20 || *packet.get(9)? != IPPROTO_ICMP {
        return None;
    }
    let icmp = packet.get(ihl..)?;
    if icmp.len() < 8 || icmp[0] != 0 || checksum(icmp) != 0 {
        return None;
    }
    let src = Ipv4Addr::new(packet[12], packet[13], packet[14], packet[15]);
    Some((
        src,
        u16::from_be_bytes([icmp[4], icmp[5]]),
        u16::from_be_bytes([icmp[6], icmp[7]]),
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn echo_round_trip_and_checksums() {
        let a = Ipv4Addr::new(10, 99, 0, 10);
        let b = Ipv4Addr::new(203, 0, 113, 5);
        let mut p = echo_request(a, b, 0x1234, 7, 33);
        assert_eq!(checksum(&p[..20]), 0);
        assert_eq!(checksum(&p[20..]), 0);
        // Turn it into the reply the server would send.
        p[20] = 0;
        p[22..24].copy_from_slice(&[0, 0]);
        let c = checksum(&p[20..]);
        p[22..24].copy_from_slice(&c.to_be_bytes());
        p[12..16].copy_from_slice(&b.octets());
        assert_eq!(echo_reply(&p), Some((b, 0x1234, 7)));
        p[30] ^= 1; // corrupt the data: checksum fails
        assert_eq!(echo_reply(&p), None);
        assert_eq!(echo_reply(&p[..10]), None);
    }
}
