//! Authentication through RADIUS, pure: the Access-Request for a PPP peer's credentials
//! (RFC 2865; CHAP per RFC 2865 §5.3/§5.40; MS-CHAP and MS-CHAPv2 per RFC 2548), and what an
//! Access-Accept or -Reject means for the session.

use std::net::Ipv4Addr;

use super::{
    client::{Attempt, Reply},
    dict::{self, Attr, ms},
    packet::{self, Builder, Packet},
};
use crate::auth::authenticator::{Credentials, MppeKeys, Verdict};
use crate::pool6::{LEASE_LENGTHS, Prefix6, network};
use pptp_common::session::mask64;

/// Who is asking, for the server's policies and logs.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NasContext {
    pub nas_ip: Option<Ipv4Addr>,
    pub nas_identifier: String,
    /// The client's outer address (Calling-Station-Id).
    pub calling: Ipv4Addr,
    /// The address it dialled (Called-Station-Id).
    pub called: Ipv4Addr,
    /// Our call ID for the session (NAS-Port).
    pub nas_port: u32,
}

/// The Access-Request for these credentials, signed for this attempt's server.
pub fn access_request(creds: &Credentials, ctx: &NasContext, attempt: &Attempt) -> Vec<u8> {
    let mut b = Builder::new(
        packet::ACCESS_REQUEST,
        attempt.identifier,
        attempt.authenticator,
    );
    // Message-Authenticator first: servers that check it early (BlastRADIUS hardening) find it.
    b.message_authenticator();
    b.attr(Attr::UserName, creds.user().as_bytes());
    match creds {
        Credentials::Pap { password, .. } => {
            b.user_password(password, attempt.secret);
        }
        Credentials::ChapMd5 {
            identifier,
            challenge,
            response,
            ..
        } => {
            let mut v = vec![*identifier];
            v.extend_from_slice(response);
            b.attr(Attr::ChapPassword, &v);
            b.attr(Attr::ChapChallenge, challenge);
        }
        Credentials::MsChapV1 {
            challenge,
            response,
            ..
        } => {
            b.microsoft(ms::CHAP_CHALLENGE, challenge);
            // Ident, Flags, LM-Response (24), NT-Response (24) (RFC 2548 §2.1.3).
            let mut v = vec![0, response[48]];
            v.extend_from_slice(&response[..48]);
            b.microsoft(ms::CHAP_RESPONSE, &v);
        }
        Credentials::MsChapV2 {
            identifier,
            challenge,
            response,
            ..
        } => {
            b.microsoft(ms::CHAP_CHALLENGE, challenge);
            // Ident, Flags, Peer-Challenge (16), Reserved (8), Response (24) (RFC 2548 §2.3.2).
            let mut v = vec![*identifier, response[48]];
            v.extend_from_slice(&response[..48]);
            b.microsoft(ms::CHAP2_RESPONSE, &v);
        }
    }
    b.u32(Attr::ServiceType, dict::SERVICE_FRAMED)
        .u32(Attr::FramedProtocol, dict::PROTOCOL_PPP)
        .u32(Attr::NasPortType, dict::PORT_TYPE_VIRTUAL)
        .u32(Attr::NasPort, ctx.nas_port)
        // RFC 2868: a tag byte, then the 3-byte value.
        .attr(Attr::TunnelType, &dict::TUNNEL_PPTP.to_be_bytes())
        .attr(Attr::CallingStationId, ctx.calling.to_string().as_bytes())
        .attr(Attr::CalledStationId, ctx.called.to_string().as_bytes());
    if let Some(ip) = ctx.nas_ip {
        b.attr(Attr::NasIpAddress, &ip.octets());
    }
    if !ctx.nas_identifier.is_empty() {
        b.attr(Attr::NasIdentifier, ctx.nas_identifier.as_bytes());
    }
    b.finish_access_request(attempt.secret)
}

/// What an Access-Accept grants besides access.
#[derive(Clone, Debug, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Authorization {
    /// Framed-IP-Address, unless it is 255.255.255.254 ("from the NAS's pool") or absent.
    pub framed_ip: Option<Ipv4Addr>,
    pub framed_pool: Option<String>,
    pub session_timeout: Option<u32>,
    pub idle_timeout: Option<u32>,
    pub interim_interval: Option<u32>,
    /// Echoed in accounting.
    pub class: Vec<Vec<u8>>,
    pub dns: [Option<Ipv4Addr>; 2],
    /// MikroTik-Rate-Limit: (upload, download) bits per second.
    pub rate_limit: Option<(u64, u64)>,
    /// Framed-IPv6-Prefix (RFC 3162 §2.3): the session's /64 (only a /64 is honoured: the
    /// client configures its address in it by SLAAC).
    #[serde(default)]
    pub framed_ipv6_prefix: Option<[u8; 8]>,
    /// Framed-IPv6-Pool: the [[pool6]] to take the /64 from.
    #[serde(default)]
    pub framed_ipv6_pool: Option<String>,
    /// Delegated-IPv6-Prefix (RFC 4818): the prefix DHCPv6 delegates, a /32 to a /64 (others
    /// ignored: shorter is no CPE's, longer leaves no /64 for its LAN).
    #[serde(default)]
    pub delegated_ipv6_prefix: Option<Prefix6>,
}

/// A Framed-IPv6-Prefix or Delegated-IPv6-Prefix value (reserved, prefix length, then the
/// prefix's significant bytes, RFC 3162 §2.3) of one of [`LEASE_LENGTHS`]; bits past the
/// length are cleared. `None` for another length, a malformed value, or a prefix that cannot
/// be handed out (link-local, multicast).
pub fn ipv6_prefix(v: &[u8]) -> Option<Prefix6> {
    let &[0, len, ref p @ ..] = v else {
        return None;
    };
    if !LEASE_LENGTHS.contains(&len) || p.len() > 16 || p.len() < usize::from(len.div_ceil(8)) {
        return None;
    }
    let mut first8 = [0u8; 8];
    let n = p.len().min(8);
    first8[..n].copy_from_slice(&p[..n]);
    let masked = u64::from_be_bytes(first8) & mask64(len);
    Prefix6::new(network(masked.to_be_bytes()), len).ok()
}

/// A Framed-IPv6-Prefix value (reserved, prefix length, then the prefix's significant bytes)
/// as a /64; `None` for another length or a malformed value.
pub fn ipv6_prefix64(v: &[u8]) -> Option<[u8; 8]> {
    ipv6_prefix(v).filter(|p| p.len == 64).map(|p| p.first8())
}

/// MikroTik's vendor code and its Rate-Limit attribute, the format operators' databases hold.
pub const VENDOR_MIKROTIK: u32 = 14988;
pub const MIKROTIK_RATE_LIMIT: u8 = 8;

/// A MikroTik-Rate-Limit string's first pair, "RX[/TX]" as the router sees it (rx: what the
/// client sends, tx: what it receives), each a number with an optional k/M/G suffix; the burst
/// fields after it are not used. Returns (upload, download) bits per second.
pub fn parse_rate_limit(s: &str) -> Option<(u64, u64)> {
    let first = s.split_whitespace().next()?;
    let rate = |v: &str| -> Option<u64> {
        let v = v.trim();
        let (num, mult) = match v.chars().last()? {
            'k' | 'K' => (&v[..v.len() - 1], 1_000),
            'm' | 'M' => (&v[..v.len() - 1], 1_000_000),
            'g' | 'G' => (&v[..v.len() - 1], 1_000_000_000),
            _ => (v, 1),
        };
        num.parse::<u64>().ok()?.checked_mul(mult)
    };
    match first.split_once('/') {
        Some((rx, tx)) => Some((rate(rx)?, rate(tx)?)),
        None => {
            let r = rate(first)?;
            Some((r, r))
        }
    }
}

/// The MikroTik-Rate-Limit of a packet, if any and well-formed.
pub fn rate_limit_of(p: &Packet) -> Option<(u64, u64)> {
    p.attrs(Attr::VendorSpecific).find_map(|v| {
        let (vendor, rest) = v.split_at_checked(4)?;
        if u32::from_be_bytes(vendor.try_into().ok()?) != VENDOR_MIKROTIK {
            return None;
        }
        let (&t, rest) = rest.split_first()?;
        let (&l, value) = rest.split_first()?;
        if t != MIKROTIK_RATE_LIMIT || usize::from(l) != value.len() + 2 {
            return None;
        }
        parse_rate_limit(std::str::from_utf8(value).ok()?)
    })
}

/// The verdict of a verified reply on these credentials, and what it authorises.
pub fn verdict(reply: &Reply, creds: &Credentials) -> (Verdict, Authorization) {
    let p = reply.packet();
    if p.code != packet::ACCESS_ACCEPT {
        // Access-Reject, or an Access-Challenge we do not take up.
        return (Verdict::Reject, Authorization::default());
    }
    let authenticator_response = match creds {
        Credentials::MsChapV2 { .. } => {
            // Ident, then "S=<40 hex>" (RFC 2548 §2.3.3). Without it the client cannot
            // authenticate us, and would hang up: a reject.
            let Some(s) = p
                .microsoft(ms::CHAP2_SUCCESS)
                .and_then(|v| v.get(1..))
                .map(|s| String::from_utf8_lossy(s).into_owned())
                .filter(|s| s.starts_with("S=") && s.len() >= 42)
            else {
                tracing::warn!(
                    user = creds.user(),
                    "Access-Accept without MS-CHAP2-Success: refused"
                );
                return (Verdict::Reject, Authorization::default());
            };
            Some(s[..42].to_string())
        }
        _ => None,
    };
    let mppe = mppe_keys(&p, reply);
    (
        Verdict::Accept {
            mppe,
            authenticator_response,
        },
        authorization(&p),
    )
}

fn mppe_keys(p: &Packet, reply: &Reply) -> Option<MppeKeys> {
    let key = |t| {
        let k =
            packet::decrypt_mppe_key(p.microsoft(t)?, &reply.secret, &reply.request_authenticator)?;
        <[u8; 16]>::try_from(k.get(..16)?).ok()
    };
    Some(MppeKeys {
        send: key(ms::MPPE_SEND_KEY)?,
        recv: key(ms::MPPE_RECV_KEY)?,
    })
}

fn authorization(p: &Packet) -> Authorization {
    let ip = |v: &[u8]| <[u8; 4]>::try_from(v).ok().map(Ipv4Addr::from);
    Authorization {
        framed_ip: p
            .attr(Attr::FramedIpAddress)
            .and_then(ip)
            .filter(|a| a.octets() != dict::FRAMED_IP_FROM_POOL && !a.is_unspecified()),
        framed_pool: p
            .attr(Attr::FramedPool)
            .map(|v| String::from_utf8_lossy(v).into_owned()),
        session_timeout: p.u32_attr(Attr::SessionTimeout).filter(|&t| t > 0),
        idle_timeout: p.u32_attr(Attr::IdleTimeout).filter(|&t| t > 0),
        interim_interval: p.u32_attr(Attr::AcctInterimInterval).filter(|&t| t > 0),
        class: p.attrs(Attr::Class).map(<[u8]>::to_vec).collect(),
        dns: [
            p.microsoft(ms::PRIMARY_DNS_SERVER).and_then(ip),
            p.microsoft(ms::SECONDARY_DNS_SERVER).and_then(ip),
        ],
        rate_limit: rate_limit_of(p),
        framed_ipv6_prefix: p.attr(Attr::FramedIpv6Prefix).and_then(|v| {
            let got = ipv6_prefix64(v);
            if got.is_none() {
                tracing::warn!(value = ?v, "Framed-IPv6-Prefix ignored: only a /64 is honoured");
            }
            got
        }),
        delegated_ipv6_prefix: p.attr(Attr::DelegatedIpv6Prefix).and_then(|v| {
            let got = ipv6_prefix(v);
            if got.is_none() {
                tracing::warn!(value = ?v, "Delegated-IPv6-Prefix ignored: only a /32 to a /64 is honoured");
            }
            got
        }),
        framed_ipv6_pool: p
            .attr(Attr::FramedIpv6Pool)
            .map(|v| String::from_utf8_lossy(v).into_owned()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::auth::mschap::{self, rfc2759};

    const SECRET: &[u8] = b"testing123";

    fn ctx() -> NasContext {
        NasContext {
            nas_ip: Some(Ipv4Addr::new(192, 0, 2, 1)),
            nas_identifier: "gw1".into(),
            calling: Ipv4Addr::new(198, 51, 100, 7),
            called: Ipv4Addr::new(192, 0, 2, 1),
            nas_port: 0x4000,
        }
    }

    fn mschapv2() -> Credentials {
        let mut response = [0u8; 49];
        response[..16].copy_from_slice(&rfc2759::PEER_CHALLENGE);
        response[24..48].copy_from_slice(&rfc2759::NT_RESPONSE);
        Credentials::MsChapV2 {
            user: "User".into(),
            name: b"User".to_vec(),
            identifier: 7,
            challenge: rfc2759::AUTH_CHALLENGE,
            response,
        }
    }

    #[test]
    fn mikrotik_rate_limit_strings() {
        assert_eq!(parse_rate_limit("10M/20M"), Some((10_000_000, 20_000_000)));
        assert_eq!(parse_rate_limit("512k"), Some((512_000, 512_000)));
        assert_eq!(
            parse_rate_limit("2M/4M 4M/8M 1M/2M 10/10"),
            Some((2_000_000, 4_000_000))
        );
        assert_eq!(parse_rate_limit("fast"), None);
        assert_eq!(parse_rate_limit(""), None);
        assert_eq!(parse_rate_limit("99999999999999G"), None);
    }

    #[test]
    fn mschapv2_request_carries_rfc2548_attributes_and_a_valid_signature() {
        let attempt = Attempt {
            secret: SECRET,
            identifier: 3,
            authenticator: [9; 16],
        };
        let bytes = access_request(&mschapv2(), &ctx(), &attempt);
        let p = Packet::parse(&bytes).unwrap();
        assert!(p.message_authentic(None, SECRET));
        assert_eq!(
            p.microsoft(ms::CHAP_CHALLENGE),
            Some(&rfc2759::AUTH_CHALLENGE[..])
        );
        let r = p.microsoft(ms::CHAP2_RESPONSE).unwrap();
        assert_eq!(r.len(), 50);
        assert_eq!(r[0], 7, "the PPP identifier");
        assert_eq!(&r[2..18], &rfc2759::PEER_CHALLENGE);
        assert_eq!(&r[26..50], &rfc2759::NT_RESPONSE);
        assert_eq!(p.attr(Attr::CallingStationId), Some(&b"198.51.100.7"[..]));
        assert_eq!(p.attr(Attr::CalledStationId), Some(&b"192.0.2.1"[..]));
        assert_eq!(p.u32_attr(Attr::NasPortType), Some(dict::PORT_TYPE_VIRTUAL));
        assert_eq!(p.u32_attr(Attr::ServiceType), Some(dict::SERVICE_FRAMED));
        assert_eq!(p.attr(Attr::NasIdentifier), Some(&b"gw1"[..]));
    }

    /// An Access-Accept as a server builds it for the RFC 2759 vector: MS-CHAP2-Success and the
    /// MPPE keys the local check derives; the verdict must equal the local one.
    #[test]
    fn an_accept_gives_the_same_verdict_as_the_local_check() {
        let creds = mschapv2();
        let local = crate::auth::authenticator::verify_local(
            &creds,
            Some(crate::auth::authenticator::Secret::Plain(
                "clientPass".into(),
            )),
        );
        let Verdict::Accept {
            mppe: Some(keys),
            authenticator_response: Some(s),
        } = local.clone()
        else {
            panic!("local check failed: {local:?}");
        };
        let ra = [5u8; 16];
        let mut b = Builder::new(packet::ACCESS_ACCEPT, 3, [0; 16]);
        let mut success = vec![7u8];
        success.extend_from_slice(s.as_bytes());
        b.message_authenticator()
            .microsoft(ms::CHAP2_SUCCESS, &success)
            .microsoft(
                ms::MPPE_SEND_KEY,
                &packet::encrypt_mppe_key(&keys.send, [0x81, 0x23], SECRET, &ra),
            )
            .microsoft(
                ms::MPPE_RECV_KEY,
                &packet::encrypt_mppe_key(&keys.recv, [0x85, 0x67], SECRET, &ra),
            )
            .attr(Attr::FramedIpAddress, &[10, 99, 0, 77])
            .u32(Attr::SessionTimeout, 3600)
            .attr(Attr::Class, b"plan-a");
        let reply = Reply {
            bytes: b.finish_reply(&ra, SECRET),
            request_authenticator: ra,
            secret: SECRET.to_vec(),
            server: "127.0.0.1:1812".parse().unwrap(),
        };
        let (v, auth) = verdict(&reply, &creds);
        assert_eq!(v, local);
        assert_eq!(auth.framed_ip, Some(Ipv4Addr::new(10, 99, 0, 77)));
        assert_eq!(auth.session_timeout, Some(3600));
        assert_eq!(auth.class, vec![b"plan-a".to_vec()]);
        assert_eq!(
            s,
            format!("S={}", "407A5589115FD0D6209F510FE9C04566932CDA56"),
            "RFC 2759 §9.2's authenticator response"
        );
        let _ = mschap::nt_password_hash;
    }

    #[test]
    fn an_accept_without_ms_chap2_success_is_a_reject_and_reject_is_reject() {
        let ra = [5u8; 16];
        for code in [
            packet::ACCESS_ACCEPT,
            packet::ACCESS_REJECT,
            packet::ACCESS_CHALLENGE,
        ] {
            let mut b = Builder::new(code, 3, [0; 16]);
            b.message_authenticator()
                .attr(Attr::FramedIpAddress, &dict::FRAMED_IP_FROM_POOL);
            let reply = Reply {
                bytes: b.finish_reply(&ra, SECRET),
                request_authenticator: ra,
                secret: SECRET.to_vec(),
                server: "127.0.0.1:1812".parse().unwrap(),
            };
            assert_eq!(
                verdict(&reply, &mschapv2()).0,
                Verdict::Reject,
                "code {code}"
            );
            let pap = Credentials::Pap {
                user: "u".into(),
                password: b"p".to_vec(),
            };
            let (v, auth) = verdict(&reply, &pap);
            if code == packet::ACCESS_ACCEPT {
                assert!(matches!(v, Verdict::Accept { mppe: None, .. }));
                assert_eq!(auth.framed_ip, None, "255.255.255.254: from our pool");
            } else {
                assert_eq!(v, Verdict::Reject);
            }
        }
    }

    #[test]
    fn framed_ipv6_prefix_and_pool_are_read() {
        let mut b = Builder::new(packet::ACCESS_ACCEPT, 1, [0; 16]);
        // 2001:db8:200:7::/64 as RFC 3162 §2.3 lays it out (and as FreeRADIUS sends it: the
        // prefix trimmed to its significant bytes), and a pool name.
        b.attr(
            Attr::FramedIpv6Prefix,
            &[0, 64, 0x20, 0x01, 0x0d, 0xb8, 0x02, 0x00, 0x00, 0x07],
        )
        .attr(Attr::FramedIpv6Pool, b"gold");
        let bytes = b.finish_reply(&[0; 16], SECRET);
        let a = authorization(&Packet::parse(&bytes).unwrap());
        assert_eq!(
            a.framed_ipv6_prefix,
            Some([0x20, 0x01, 0x0d, 0xb8, 0x02, 0x00, 0x00, 0x07])
        );
        assert_eq!(a.framed_ipv6_pool.as_deref(), Some("gold"));
        // The full 16-byte form is the same /64; other lengths are not honoured.
        let full = [
            [0, 64, 0x20, 0x01, 0x0d, 0xb8, 2, 0, 0, 7].as_slice(),
            &[0; 8],
        ]
        .concat();
        assert_eq!(ipv6_prefix64(&full), a.framed_ipv6_prefix);
        assert_eq!(ipv6_prefix64(&[0, 48, 0x20, 0x01, 0x0d, 0xb8, 2, 0]), None);
        assert_eq!(ipv6_prefix64(&[0, 64, 0x20, 0x01]), None);
        assert_eq!(ipv6_prefix64(&[]), None);
        // Delegations: a /56 trimmed to its 7 significant bytes, a /60 with stray host bits;
        // a /16 or a /72 are no CPE's.
        assert_eq!(
            ipv6_prefix(&[0, 56, 0x20, 0x01, 0x0d, 0xb8, 2, 0, 1]).map(|p| p.to_string()),
            Some("2001:db8:200:100::/56".into())
        );
        assert_eq!(
            ipv6_prefix(&[0, 60, 0x20, 0x01, 0x0d, 0xb8, 2, 0, 1, 0x1f]).map(|p| p.to_string()),
            Some("2001:db8:200:110::/60".into())
        );
        assert_eq!(ipv6_prefix(&[0, 56, 0x20, 0x01, 0x0d, 0xb8, 2, 0]), None);
        assert_eq!(ipv6_prefix(&[0, 16, 0x20, 0x01]), None);
        assert_eq!(
            ipv6_prefix(&[0, 72, 0x20, 0x01, 0x0d, 0xb8, 2, 0, 1, 0, 1]),
            None
        );
    }
}
