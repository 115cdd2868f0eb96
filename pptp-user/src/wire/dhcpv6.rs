//! DHCPv6 (RFC 8415) as the gateway speaks it on a client's link: the client/server messages
//! parsed into a view over their options, replies built, each as a whole IPv6/UDP packet. Only
//! prefix delegation (IA_PD) and DNS servers are served; addresses come by SLAAC.

use std::net::Ipv6Addr;

use thiserror::Error;

use super::icmpv6::{IPV6_HLEN, upper_layer_checksum};
use pptp_common::headers::{DHCPV6_CLIENT_PORT, DHCPV6_SERVER_PORT, IPPROTO_UDP};

// Message types (§7.3).
pub const SOLICIT: u8 = 1;
pub const ADVERTISE: u8 = 2;
pub const REQUEST: u8 = 3;
pub const CONFIRM: u8 = 4;
pub const RENEW: u8 = 5;
pub const REBIND: u8 = 6;
pub const REPLY: u8 = 7;
pub const RELEASE: u8 = 8;
pub const DECLINE: u8 = 9;
pub const INFORMATION_REQUEST: u8 = 11;

// Options (§21).
pub const OPT_CLIENTID: u16 = 1;
pub const OPT_SERVERID: u16 = 2;
pub const OPT_IA_NA: u16 = 3;
pub const OPT_ORO: u16 = 6;
pub const OPT_STATUS_CODE: u16 = 13;
pub const OPT_RAPID_COMMIT: u16 = 14;
pub const OPT_DNS_SERVERS: u16 = 23;
pub const OPT_IA_PD: u16 = 25;
pub const OPT_IAPREFIX: u16 = 26;

// Status codes (§21.13).
pub const STATUS_SUCCESS: u16 = 0;
pub const STATUS_NO_ADDRS_AVAIL: u16 = 2;
pub const STATUS_NO_BINDING: u16 = 3;
pub const STATUS_NO_PREFIX_AVAIL: u16 = 6;

/// ff02::1:2, All_DHCP_Relay_Agents_and_Servers.
pub const ALL_SERVERS: Ipv6Addr = Ipv6Addr::new(0xff02, 0, 0, 0, 0, 0, 1, 2);

/// A DUID is at most 128 bytes of identifier behind its 2-byte type (§11.1).
const MAX_DUID: usize = 130;

#[derive(Clone, Debug, PartialEq, Eq, Error)]
pub enum Dhcpv6Error {
    #[error("shorter than a DHCPv6 header")]
    Short,
    #[error("option {code} runs past the message's end")]
    OptionOverrun { code: u16 },
    #[error("a relay or server message type {0} from a client")]
    NotFromClient(u8),
    #[error("option {code} is malformed")]
    BadOption { code: u16 },
    #[error("not UDP from port {DHCPV6_CLIENT_PORT} to {DHCPV6_SERVER_PORT} with a valid checksum")]
    NotDhcpv6,
}

/// A client's message: its type, transaction ID and option area (validated: every option lies
/// inside it).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Message<'a> {
    pub kind: u8,
    pub xid: [u8; 3],
    options: &'a [u8],
}

/// One IA_PD a client asked for (§21.21): its IAID and any prefixes it named (hints, or
/// those it holds when renewing).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct IaPd {
    pub iaid: u32,
    pub prefixes: Vec<(Ipv6Addr, u8)>,
}

/// Iterates a well-formed option area as (code, value).
fn options(mut b: &[u8]) -> impl Iterator<Item = (u16, &[u8])> {
    std::iter::from_fn(move || {
        let code = u16::from_be_bytes([*b.first()?, *b.get(1)?]);
        let len = usize::from(u16::from_be_bytes([*b.get(2)?, *b.get(3)?]));
        let value = b.get(4..4 + len)?;
        b = &b[4 + len..];
        Some((code, value))
    })
}

fn check_options(mut b: &[u8]) -> Result<(), Dhcpv6Error> {
    while !b.is_empty() {
        if b.len() < 4 {
            return Err(Dhcpv6Error::OptionOverrun { code: 0 });
        }
        let code = u16::from_be_bytes([b[0], b[1]]);
        let len = usize::from(u16::from_be_bytes([b[2], b[3]]));
        if b.len() < 4 + len {
            return Err(Dhcpv6Error::OptionOverrun { code });
        }
        b = &b[4 + len..];
    }
    Ok(())
}

impl<'a> Message<'a> {
    /// A message a client may send to a server (not relayed; relays are not served).
    pub fn parse(b: &'a [u8]) -> Result<Self, Dhcpv6Error> {
        let [kind, x0, x1, x2, options @ ..] = b else {
            return Err(Dhcpv6Error::Short);
        };
        if !matches!(
            *kind,
            SOLICIT | REQUEST | CONFIRM | RENEW | REBIND | RELEASE | DECLINE | INFORMATION_REQUEST
        ) {
            return Err(Dhcpv6Error::NotFromClient(*kind));
        }
        check_options(options)?;
        let m = Self {
            kind: *kind,
            xid: [*x0, *x1, *x2],
            options,
        };
        for code in [OPT_CLIENTID, OPT_SERVERID] {
            if let Some(d) = m.option(code)
                && !(3..=MAX_DUID).contains(&d.len())
            {
                return Err(Dhcpv6Error::BadOption { code });
            }
        }
        Ok(m)
    }

    /// The first option `code`'s value.
    pub fn option(&self, code: u16) -> Option<&'a [u8]> {
        options(self.options)
            .find(|(c, _)| *c == code)
            .map(|(_, v)| v)
    }

    pub fn client_id(&self) -> Option<&'a [u8]> {
        self.option(OPT_CLIENTID)
    }

    pub fn server_id(&self) -> Option<&'a [u8]> {
        self.option(OPT_SERVERID)
    }

    pub fn rapid_commit(&self) -> bool {
        self.option(OPT_RAPID_COMMIT).is_some()
    }

    /// Whether the Option Request option lists `code`.
    pub fn requests(&self, code: u16) -> bool {
        self.option(OPT_ORO)
            .is_some_and(|o| o.chunks_exact(2).any(|c| c == code.to_be_bytes()))
    }

    /// The IA_PDs asked for; a malformed one is an error (the message is then dropped).
    pub fn ia_pds(&self) -> Result<Vec<IaPd>, Dhcpv6Error> {
        let bad = Dhcpv6Error::BadOption { code: OPT_IA_PD };
        let mut out = Vec::new();
        for (_, v) in options(self.options).filter(|(c, _)| *c == OPT_IA_PD) {
            let inner = v.get(12..).ok_or(bad.clone())?;
            check_options(inner).map_err(|_| bad.clone())?;
            let mut prefixes = Vec::new();
            for (_, p) in options(inner).filter(|(c, _)| *c == OPT_IAPREFIX) {
                // preferred (4), valid (4), length (1), prefix (16), then its own options.
                let (len, prefix) = (
                    p.get(8).ok_or(bad.clone())?,
                    p.get(9..25).ok_or(bad.clone())?,
                );
                let prefix = <[u8; 16]>::try_from(prefix).expect("16 bytes");
                prefixes.push((Ipv6Addr::from(prefix), *len));
            }
            out.push(IaPd {
                iaid: u32::from_be_bytes([v[0], v[1], v[2], v[3]]),
                prefixes,
            });
        }
        Ok(out)
    }

    /// The IAIDs of the IA_NAs asked for (answered NoAddrsAvail: addresses come by SLAAC).
    pub fn ia_nas(&self) -> Vec<[u8; 4]> {
        options(self.options)
            .filter(|(c, v)| *c == OPT_IA_NA && v.len() >= 12)
            .map(|(_, v)| [v[0], v[1], v[2], v[3]])
            .collect()
    }
}

/// A delegated prefix as an IA_PD answer carries it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Delegation {
    pub prefix: Ipv6Addr,
    pub len: u8,
    pub preferred: u32,
    pub valid: u32,
}

/// A server message being built: options appended in order.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Reply {
    bytes: Vec<u8>,
}

impl Reply {
    pub fn new(kind: u8, xid: [u8; 3]) -> Self {
        let mut bytes = vec![kind];
        bytes.extend_from_slice(&xid);
        Self { bytes }
    }

    pub fn option(mut self, code: u16, value: &[u8]) -> Self {
        push_option(&mut self.bytes, code, value);
        self
    }

    /// A top-level or IA status (§21.13) with its message.
    pub fn status(self, code: u16, text: &str) -> Self {
        let v = status_value(code, text);
        self.option(OPT_STATUS_CODE, &v)
    }

    /// An IA_PD answer: the delegation (T1/T2 at 0.5 and 0.8 of its preferred lifetime,
    /// §21.21's recommendation), or, without one, the status saying why.
    pub fn ia_pd(self, iaid: u32, d: Option<&Delegation>, status: (u16, &str)) -> Self {
        let mut v = iaid.to_be_bytes().to_vec();
        let (t1, t2) = d.map_or((0, 0), |d| (d.preferred / 2, d.preferred / 5 * 4));
        v.extend_from_slice(&t1.to_be_bytes());
        v.extend_from_slice(&t2.to_be_bytes());
        match d {
            Some(d) => {
                let mut p = d.preferred.to_be_bytes().to_vec();
                p.extend_from_slice(&d.valid.to_be_bytes());
                p.push(d.len);
                p.extend_from_slice(&d.prefix.octets());
                push_option(&mut v, OPT_IAPREFIX, &p);
            }
            None => push_option(&mut v, OPT_STATUS_CODE, &status_value(status.0, status.1)),
        }
        self.option(OPT_IA_PD, &v)
    }

    /// An IA_NA answered with a status only.
    pub fn ia_na_status(self, iaid: [u8; 4], code: u16, text: &str) -> Self {
        let mut v = iaid.to_vec();
        v.extend_from_slice(&[0; 8]);
        push_option(&mut v, OPT_STATUS_CODE, &status_value(code, text));
        self.option(OPT_IA_NA, &v)
    }

    pub fn into_bytes(self) -> Vec<u8> {
        self.bytes
    }
}

fn push_option(b: &mut Vec<u8>, code: u16, value: &[u8]) {
    b.extend_from_slice(&code.to_be_bytes());
    b.extend_from_slice(&(value.len() as u16).to_be_bytes());
    b.extend_from_slice(value);
}

fn status_value(code: u16, text: &str) -> Vec<u8> {
    let mut v = code.to_be_bytes().to_vec();
    v.extend_from_slice(text.as_bytes());
    v
}

/// A UDP datagram from a client's DHCPv6 port to ours, checksum verified: (source address,
/// destination address, DHCPv6 message).
pub fn from_client(packet: &[u8]) -> Result<(Ipv6Addr, Ipv6Addr, &[u8]), Dhcpv6Error> {
    let e = Dhcpv6Error::NotDhcpv6;
    if packet.len() < IPV6_HLEN + 8 || packet[0] >> 4 != 6 || packet[6] != IPPROTO_UDP {
        return Err(e);
    }
    let payload_len = usize::from(u16::from_be_bytes([packet[4], packet[5]]));
    let udp = packet
        .get(IPV6_HLEN..IPV6_HLEN + payload_len)
        .ok_or(e.clone())?;
    let src = Ipv6Addr::from(<[u8; 16]>::try_from(&packet[8..24]).expect("16 bytes"));
    let dst = Ipv6Addr::from(<[u8; 16]>::try_from(&packet[24..40]).expect("16 bytes"));
    let udp_len = usize::from(u16::from_be_bytes([udp[4], udp[5]]));
    if udp.len() < 8
        || udp_len != udp.len()
        || udp[0..2] != DHCPV6_CLIENT_PORT.to_be_bytes()
        || udp[2..4] != DHCPV6_SERVER_PORT.to_be_bytes()
        // IPv6 UDP checksums are mandatory (RFC 8200 §8.1); a right one sums to zero.
        || udp[6..8] == [0, 0]
        || upper_layer_checksum(&src, &dst, IPPROTO_UDP, udp) != 0
    {
        return Err(e);
    }
    Ok((src, dst, &udp[8..]))
}

/// A server message from our port 547 to the client's 546, as a whole IPv6 packet.
pub fn to_client(src: Ipv6Addr, dst: Ipv6Addr, message: &[u8]) -> Vec<u8> {
    let mut udp = DHCPV6_SERVER_PORT.to_be_bytes().to_vec();
    udp.extend_from_slice(&DHCPV6_CLIENT_PORT.to_be_bytes());
    udp.extend_from_slice(&((8 + message.len()) as u16).to_be_bytes());
    udp.extend_from_slice(&[0, 0]);
    udp.extend_from_slice(message);
    let c = match upper_layer_checksum(&src, &dst, IPPROTO_UDP, &udp) {
        0 => 0xffff,
        c => c,
    };
    udp[6..8].copy_from_slice(&c.to_be_bytes());
    let mut p = Vec::with_capacity(IPV6_HLEN + udp.len());
    p.extend_from_slice(&[0x60, 0, 0, 0]);
    p.extend_from_slice(&(udp.len() as u16).to_be_bytes());
    // Link-scoped: a hop limit of 255 like Neighbour Discovery's (any value works on-link).
    p.extend_from_slice(&[IPPROTO_UDP, 255]);
    p.extend_from_slice(&src.octets());
    p.extend_from_slice(&dst.octets());
    p.extend_from_slice(&udp);
    p
}

#[cfg(test)]
mod tests {
    use super::*;

    /// ISC dhclient 4.4.3 (`dhclient -6 -P`) soliciting a prefix, as captured on a veth: the
    /// IPv6 header onward (checksum offload left the UDP checksum unfilled, so it is set here
    /// as the wire would carry it).
    fn dhclient_solicit() -> Vec<u8> {
        let hex = "6001d00b00401101fe80000000000000e8bfe6fffeecc967ff020000000000000000000000010002\
                   02220223004000000127a22b0001000e0001000132a813b2eabfe6ecc96700060008001700180027\
                   001f000800020000 0019000ce6ecc96700000e1000001518";
        let hex: String = hex.chars().filter(|c| c.is_ascii_hexdigit()).collect();
        let mut p: Vec<u8> = (0..hex.len())
            .step_by(2)
            .map(|i| u8::from_str_radix(&hex[i..i + 2], 16).unwrap())
            .collect();
        let src = Ipv6Addr::from(<[u8; 16]>::try_from(&p[8..24]).unwrap());
        let c = upper_layer_checksum(&src, &ALL_SERVERS, IPPROTO_UDP, &p[40..]);
        p[46..48].copy_from_slice(&c.to_be_bytes());
        p
    }

    #[test]
    fn dhclients_solicit_parses() {
        let p = dhclient_solicit();
        let (src, dst, msg) = from_client(&p).unwrap();
        assert_eq!(
            src,
            "fe80::e8bf:e6ff:feec:c967".parse::<Ipv6Addr>().unwrap()
        );
        assert_eq!(dst, ALL_SERVERS);
        let m = Message::parse(msg).unwrap();
        assert_eq!((m.kind, m.xid), (SOLICIT, [0x27, 0xa2, 0x2b]));
        assert_eq!(m.client_id().unwrap()[..2], [0, 1]); // DUID-LLT
        assert!(m.server_id().is_none() && !m.rapid_commit());
        assert!(m.requests(OPT_DNS_SERVERS) && !m.requests(OPT_IA_PD));
        assert_eq!(
            m.ia_pds().unwrap(),
            vec![IaPd {
                iaid: 0xe6ecc967,
                prefixes: vec![]
            }]
        );
        assert!(m.ia_nas().is_empty());
    }

    #[test]
    fn a_bad_checksum_port_or_option_is_refused() {
        let mut p = dhclient_solicit();
        p[60] ^= 1;
        assert_eq!(from_client(&p), Err(Dhcpv6Error::NotDhcpv6));
        let mut p = dhclient_solicit();
        p[43] = 0x22; // to port 546
        assert_eq!(from_client(&p), Err(Dhcpv6Error::NotDhcpv6));
        let p = dhclient_solicit();
        let msg = &p[48..];
        // Truncate inside the IA_PD option: it now overruns.
        assert_eq!(
            Message::parse(&msg[..msg.len() - 3]),
            Err(Dhcpv6Error::OptionOverrun { code: OPT_IA_PD })
        );
        assert_eq!(
            Message::parse(&[ADVERTISE, 0, 0, 1]),
            Err(Dhcpv6Error::NotFromClient(2))
        );
        assert_eq!(Message::parse(&[SOLICIT, 0]), Err(Dhcpv6Error::Short));
        // A two-byte client DUID is no DUID.
        assert_eq!(
            Message::parse(&[SOLICIT, 0, 0, 1, 0, 1, 0, 2, 0, 1]),
            Err(Dhcpv6Error::BadOption { code: OPT_CLIENTID })
        );
        // An IA_PD shorter than its 12 fixed bytes.
        let m = Message::parse(&[SOLICIT, 0, 0, 1, 0, 25, 0, 4, 1, 2, 3, 4]).unwrap();
        assert!(m.ia_pds().is_err());
    }

    #[test]
    fn a_reply_carries_the_delegation_and_round_trips() {
        let d = Delegation {
            prefix: "2001:db8:300:5::".parse().unwrap(),
            len: 64,
            preferred: 14_400,
            valid: 86_400,
        };
        let msg = Reply::new(REPLY, [1, 2, 3])
            .option(OPT_SERVERID, &[0, 4, 9, 9, 9])
            .ia_pd(7, Some(&d), (STATUS_SUCCESS, ""))
            .into_bytes();
        assert_eq!(
            msg,
            [
                7, 1, 2, 3, // Reply, xid
                0, 2, 0, 5, 0, 4, 9, 9, 9, // Server ID
                0, 25, 0, 41, 0, 0, 0, 7, 0, 0, 0x1c, 0x20, 0, 0, 0x2d, 0, // IA_PD 7, T1, T2
                0, 26, 0, 25, 0, 0, 0x38, 0x40, 0, 1, 0x51, 0x80, 64, // IAPREFIX
                0x20, 0x01, 0x0d, 0xb8, 3, 0, 0, 5, 0, 0, 0, 0, 0, 0, 0, 0,
            ]
        );
        let src: Ipv6Addr = "fe80::1".parse().unwrap();
        let dst: Ipv6Addr = "fe80::2".parse().unwrap();
        let p = to_client(src, dst, &msg);
        assert_eq!(upper_layer_checksum(&src, &dst, IPPROTO_UDP, &p[40..]), 0);
        assert_eq!(p[40..44], [2, 0x23, 2, 0x22]);
        // Read back as a client would its own renewal of it.
        let mut renew = msg.clone();
        renew[0] = RENEW;
        let m = Message::parse(&renew).unwrap();
        assert_eq!(
            m.ia_pds().unwrap(),
            vec![IaPd {
                iaid: 7,
                prefixes: vec![(d.prefix, 64)]
            }]
        );
    }
}
