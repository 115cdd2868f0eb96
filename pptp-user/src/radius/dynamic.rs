//! Dynamic authorization (RFC 5176), pure: which requests are taken (a configured client, its
//! secret's Request Authenticator, a Message-Authenticator, an Event-Timestamp no older than the
//! replay window and not seen before), what they ask for, and the ACK/NAK that answers them.

use std::{
    collections::{HashMap, VecDeque},
    net::{IpAddr, Ipv4Addr},
};

use super::{
    dict::{self, Attr},
    packet::{Builder, Packet},
};

/// The clients allowed to send requests: (address, secret).
pub type Clients = Vec<(IpAddr, Vec<u8>)>;

/// RFC 5176 §3.5 Error-Cause values we answer with.
pub mod error_cause {
    pub const UNSUPPORTED_ATTRIBUTE: u32 = 401;
    pub const MISSING_ATTRIBUTE: u32 = 402;
    pub const SESSION_CONTEXT_NOT_FOUND: u32 = 503;
}

/// How far Event-Timestamp may be from our clock (RFC 5176 §3.4 suggests 300 s).
pub const REPLAY_WINDOW_SECS: u64 = 300;

/// Why a request was dropped without an answer (RFC 5176 §3.5: silently discarded), counted.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Refusal {
    UnknownClient,
    Malformed,
    NotARequest,
    BadAuthenticator,
    NoMessageAuthenticator,
    /// No Event-Timestamp, or one outside the replay window.
    Stale,
    /// The same request (identifier and authenticator) seen inside the window.
    Replayed,
}

impl Refusal {
    pub fn label(self) -> &'static str {
        match self {
            Refusal::UnknownClient => "unknown_client",
            Refusal::Malformed => "malformed",
            Refusal::NotARequest => "not_a_request",
            Refusal::BadAuthenticator => "bad_authenticator",
            Refusal::NoMessageAuthenticator => "no_message_authenticator",
            Refusal::Stale => "stale",
            Refusal::Replayed => "replayed",
        }
    }
}

/// Which sessions a request is about (every attribute given must match).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Selector {
    pub session_id: Option<String>,
    pub user: Option<String>,
    pub framed_ip: Option<Ipv4Addr>,
}

impl Selector {
    pub fn is_empty(&self) -> bool {
        self.session_id.is_none() && self.user.is_none() && self.framed_ip.is_none()
    }
}

/// A request taken.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Request {
    pub code: u8,
    pub identifier: u8,
    pub authenticator: [u8; 16],
    pub selector: Selector,
    /// CoA: a new Session-Timeout (seconds from now).
    pub session_timeout: Option<u32>,
    /// CoA: new rate limits (MikroTik-Rate-Limit), (upload, download) bits per second.
    pub rate_limit: Option<(u64, u64)>,
    /// CoA: attributes we cannot apply (their types), answered with a NAK 401.
    pub unsupported: Vec<u8>,
    /// The client's secret, for the answer.
    pub secret: Vec<u8>,
}

/// Requests seen in the replay window, by (identifier, authenticator).
#[derive(Debug, Default)]
pub struct ReplayCache {
    seen: HashMap<(u8, [u8; 16]), u64>,
    order: VecDeque<(u64, (u8, [u8; 16]))>,
}

impl ReplayCache {
    fn check_and_insert(&mut self, key: (u8, [u8; 16]), now: u64) -> bool {
        while let Some(&(t, k)) = self.order.front() {
            if now.saturating_sub(t) <= REPLAY_WINDOW_SECS {
                break;
            }
            self.order.pop_front();
            self.seen.remove(&k);
        }
        if self.seen.contains_key(&key) {
            return false;
        }
        self.seen.insert(key, now);
        self.order.push_back((now, key));
        true
    }
}

/// Checks a datagram from `from`; `clients` are the configured (address, secret) pairs, `now`
/// Unix seconds.
pub fn accept(
    bytes: &[u8],
    from: IpAddr,
    clients: &[(IpAddr, Vec<u8>)],
    now: u64,
    replay: &mut ReplayCache,
) -> Result<Request, Refusal> {
    let secret = clients
        .iter()
        .find(|(a, _)| *a == from)
        .map(|(_, s)| s.clone())
        .ok_or(Refusal::UnknownClient)?;
    let p = Packet::parse(bytes).map_err(|_| Refusal::Malformed)?;
    if p.code != dict::DISCONNECT_REQUEST && p.code != dict::COA_REQUEST {
        return Err(Refusal::NotARequest);
    }
    if !p.request_authentic(&secret) {
        return Err(Refusal::BadAuthenticator);
    }
    // The Message-Authenticator of a request is computed with the Request Authenticator in place
    // (RFC 5176 §3.1 / RFC 3579 §3.2 for these codes: zeros there, as for Accounting-Request).
    if !p.message_authentic(Some(&[0; 16]), &secret) {
        return Err(Refusal::NoMessageAuthenticator);
    }
    let ts = p.u32_attr(Attr::EventTimestamp).ok_or(Refusal::Stale)?;
    if u64::from(ts).abs_diff(now) > REPLAY_WINDOW_SECS {
        return Err(Refusal::Stale);
    }
    if !replay.check_and_insert((p.identifier, p.authenticator), now) {
        return Err(Refusal::Replayed);
    }
    let selector = Selector {
        session_id: p
            .attr(Attr::AcctSessionId)
            .map(|v| String::from_utf8_lossy(v).into_owned()),
        user: p
            .attr(Attr::UserName)
            .map(|v| String::from_utf8_lossy(v).into_owned()),
        framed_ip: p
            .attr(Attr::FramedIpAddress)
            .and_then(|v| <[u8; 4]>::try_from(v).ok())
            .map(Ipv4Addr::from),
    };
    // What identifies, authenticates or is informational; the rest a CoA would have to apply.
    let known = [
        Attr::AcctSessionId,
        Attr::UserName,
        Attr::FramedIpAddress,
        Attr::EventTimestamp,
        Attr::MessageAuthenticator,
        Attr::NasIpAddress,
        Attr::NasIdentifier,
        Attr::CallingStationId,
        Attr::CalledStationId,
        Attr::NasPort,
        Attr::ProxyState,
        Attr::SessionTimeout,
    ];
    let rate_limit = super::access::rate_limit_of(&p);
    let unsupported = p
        .attributes
        .iter()
        .map(|(t, _)| *t)
        .filter(|t| !known.iter().any(|k| *k as u8 == *t))
        .filter(|t| !(rate_limit.is_some() && *t == Attr::VendorSpecific as u8))
        .collect();
    Ok(Request {
        code: p.code,
        identifier: p.identifier,
        authenticator: p.authenticator,
        selector,
        session_timeout: p.u32_attr(Attr::SessionTimeout),
        rate_limit,
        unsupported,
        secret,
    })
}

/// The ACK, or the NAK with its Error-Cause, for a request taken.
pub fn answer(req: &Request, error_cause: Option<u32>) -> Vec<u8> {
    let code = match (req.code, error_cause) {
        (dict::DISCONNECT_REQUEST, None) => dict::DISCONNECT_ACK,
        (dict::DISCONNECT_REQUEST, Some(_)) => dict::DISCONNECT_NAK,
        (_, None) => dict::COA_ACK,
        (_, Some(_)) => dict::COA_NAK,
    };
    let mut b = Builder::new(code, req.identifier, [0; 16]);
    b.message_authenticator();
    if let Some(c) = error_cause {
        b.u32(Attr::ErrorCause, c);
    }
    b.finish_reply(&req.authenticator, &req.secret)
}

#[cfg(test)]
mod tests {
    use super::*;

    const NOW: u64 = 1_800_000_000;

    fn disconnect(secret: &[u8], ts: Option<u32>, with_ma: bool) -> Vec<u8> {
        let mut b = Builder::new(dict::DISCONNECT_REQUEST, 4, [0; 16]);
        if with_ma {
            b.message_authenticator();
        }
        b.attr(Attr::UserName, b"alice");
        if let Some(t) = ts {
            b.u32(Attr::EventTimestamp, t);
        }
        b.finish_request(secret)
    }

    fn clients() -> Vec<(IpAddr, Vec<u8>)> {
        vec![("192.0.2.9".parse().unwrap(), b"das".to_vec())]
    }

    #[test]
    fn a_good_request_is_taken_once_and_answered_with_a_verifiable_ack() {
        let mut cache = ReplayCache::default();
        let bytes = disconnect(b"das", Some(NOW as u32), true);
        let from = "192.0.2.9".parse().unwrap();
        let r = accept(&bytes, from, &clients(), NOW, &mut cache).unwrap();
        assert_eq!(r.selector.user.as_deref(), Some("alice"));
        assert!(r.unsupported.is_empty());
        let ack = answer(&r, None);
        let p = Packet::parse(&ack).unwrap();
        assert_eq!(p.code, dict::DISCONNECT_ACK);
        assert!(p.response_authentic(&r.authenticator, b"das"));
        assert!(p.message_authentic(Some(&r.authenticator), b"das"));
        let nak = answer(&r, Some(error_cause::SESSION_CONTEXT_NOT_FOUND));
        let p = Packet::parse(&nak).unwrap();
        assert_eq!(p.code, dict::DISCONNECT_NAK);
        assert_eq!(p.u32_attr(Attr::ErrorCause), Some(503));
        // The same bytes again: a replay.
        assert_eq!(
            accept(&bytes, from, &clients(), NOW + 1, &mut cache),
            Err(Refusal::Replayed)
        );
    }

    #[test]
    fn what_is_refused() {
        let mut cache = ReplayCache::default();
        let from: IpAddr = "192.0.2.9".parse().unwrap();
        let cases = [
            (
                disconnect(b"das", Some(NOW as u32), true),
                "192.0.2.10",
                Refusal::UnknownClient,
            ),
            (
                disconnect(b"wrong", Some(NOW as u32), true),
                "192.0.2.9",
                Refusal::BadAuthenticator,
            ),
            (
                disconnect(b"das", Some(NOW as u32), false),
                "192.0.2.9",
                Refusal::NoMessageAuthenticator,
            ),
            (disconnect(b"das", None, true), "192.0.2.9", Refusal::Stale),
            (
                disconnect(b"das", Some(NOW as u32 - 301), true),
                "192.0.2.9",
                Refusal::Stale,
            ),
            (vec![40, 1, 0], "192.0.2.9", Refusal::Malformed),
        ];
        for (bytes, src, want) in cases {
            let src: IpAddr = src.parse().unwrap();
            assert_eq!(
                accept(&bytes, src, &clients(), NOW, &mut cache).map(|_| ()),
                Err(want)
            );
        }
        let _ = from;
    }
}
