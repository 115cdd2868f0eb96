//! IPV6CP, server side (RFC 5072): agree on the interface identifiers both ends use for their
//! link-local addresses (and the client for its SLAAC address in the prefix our Router
//! Advertisements announce).
//!
//! We request our own identifier. The client's is acked as it asks unless it is zero or ours,
//! which RFC 5072 §4.1 says to Nak with a suggestion (a random non-zero one, never ours); a
//! request without one is Nak'd with the suggestion too (RFC 1661 §5.3). IPv6-Compression-
//! Protocol and anything unknown are rejected. A Nak of our identifier (the client's collision
//! check) is followed when the suggestion is usable.

use super::fsm::{Negotiator, Verdict};
use crate::wire::cp::{RawOption, parse_options};

/// RFC 5072 §4.1.
pub const INTERFACE_IDENTIFIER: u8 = 1;

/// An interface identifier as IPV6CP carries it (the low 64 bits of an address).
pub type InterfaceId = [u8; 8];

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Ipv6cpPolicy {
    /// Our identifier (fe80::<local> is the gateway's end of the link).
    local: InterfaceId,
    /// What we suggest to a client that asks for zero, for ours, or for nothing.
    suggest: InterfaceId,
    /// The client's identifier, once we acked it.
    peer: Option<InterfaceId>,
}

impl Ipv6cpPolicy {
    /// `local` and `suggest` must be non-zero and different (the link draws them at random).
    pub fn new(local: InterfaceId, suggest: InterfaceId) -> Self {
        Self {
            local,
            suggest,
            peer: None,
        }
    }

    /// A policy carried over from another process with both identifiers agreed.
    pub fn restored(local: InterfaceId, peer: InterfaceId) -> Self {
        Self {
            local,
            suggest: peer,
            peer: Some(peer),
        }
    }

    /// Both identifiers agreed (ours as it is now, the client's as acked).
    pub fn agreed(&self) -> Option<(InterfaceId, InterfaceId)> {
        Some((self.local, self.peer?))
    }

    fn usable(&self, id: InterfaceId, other: InterfaceId) -> bool {
        id != [0; 8] && id != other
    }
}

fn option(id: &InterfaceId) -> Vec<u8> {
    let mut buf = Vec::with_capacity(10);
    RawOption {
        kind: INTERFACE_IDENTIFIER,
        value: id,
    }
    .emit(&mut buf);
    buf
}

impl Negotiator for Ipv6cpPolicy {
    fn request(&mut self) -> Vec<u8> {
        option(&self.local)
    }

    fn check(&mut self, options: &[u8], reject_only: bool) -> Verdict {
        let Ok(raws) = parse_options(options) else {
            return Verdict::Discard;
        };
        let mut rejects = Vec::new();
        let mut naks = Vec::new();
        let mut asked = None;
        for raw in &raws {
            match (raw.kind, <InterfaceId>::try_from(raw.value)) {
                (INTERFACE_IDENTIFIER, Ok(id)) if asked.is_none() => asked = Some(id),
                _ => raw.emit(&mut rejects),
            }
        }
        if !rejects.is_empty() {
            return Verdict::Reject(rejects);
        }
        match asked {
            Some(id) if self.usable(id, self.local) => {
                self.peer = Some(id);
                return Verdict::Ack;
            }
            Some(_) => naks.extend(option(&self.suggest)),
            // Without the option the client takes whatever identifier it likes (RFC 5072 §4.1
            // leaves it to the peer): suggest ours once, accept the request as it is after.
            None if !reject_only => naks.extend(option(&self.suggest)),
            None => {
                self.peer = Some(self.suggest);
                return Verdict::Ack;
            }
        }
        if reject_only {
            // Max-Failure Naks went unheeded: a zero or colliding identifier cannot be used.
            Verdict::Reject(option(&asked.unwrap_or(self.suggest)))
        } else {
            Verdict::Nak(naks)
        }
    }

    fn acked(&mut self, options: &[u8]) -> bool {
        options == self.request().as_slice()
    }

    fn nakked(&mut self, options: &[u8]) -> bool {
        let Ok(raws) = parse_options(options) else {
            return false;
        };
        for raw in raws {
            if raw.kind == INTERFACE_IDENTIFIER
                && let Ok(id) = <InterfaceId>::try_from(raw.value)
            {
                let other = self.peer.unwrap_or(self.suggest);
                if self.usable(id, other) {
                    self.local = id;
                }
            }
        }
        true
    }

    fn rejected(&mut self, options: &[u8]) -> bool {
        // The identifier is the only option we send, and RFC 5072 has no IPV6CP without it:
        // the request goes out again and the restart counter ends it if the client insists.
        parse_options(options).is_ok()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{
        ppp::fsm::{Config, Fsm, Output},
        wire::cp::CpPacket,
    };

    const OURS: InterfaceId = [0x02, 0, 0, 0, 0, 0, 0, 1];
    const SUGGEST: InterfaceId = [0x5c, 0x11, 0x22, 0x33, 0x44, 0x55, 0x66, 0x77];

    fn reply(f: &mut Fsm<Ipv6cpPolicy>, bytes: &[u8]) -> (u8, Vec<u8>) {
        let out = f.receive(&CpPacket::parse(bytes).unwrap());
        out.into_iter()
            .find_map(|o| match o {
                Output::Send { code, data, .. } if code != 1 => Some((code, data)),
                _ => None,
            })
            .expect("a reply")
    }

    fn started() -> Fsm<Ipv6cpPolicy> {
        let mut f = Fsm::new(Ipv6cpPolicy::new(OURS, SUGGEST), Config::default());
        f.open();
        let out = f.up();
        assert!(out.contains(&Output::Send {
            code: 1,
            identifier: 1,
            data: vec![1, 10, 0x02, 0, 0, 0, 0, 0, 0, 1]
        }));
        f
    }

    #[test]
    fn pppd_conversation() {
        // A request shaped as pppd `+ipv6` sends it: one Interface-Identifier, its own random
        // one (this value is made up).
        let mut f = started();
        let req = [
            1, 1, 0, 14, 1, 10, 0x3d, 0x8c, 0x5e, 0x10, 0xa8, 0xf2, 0x4b, 0x19,
        ];
        assert_eq!(reply(&mut f, &req), (2, req[4..].to_vec()));
        let out =
            f.receive(&CpPacket::parse(&[2, 1, 0, 14, 1, 10, 2, 0, 0, 0, 0, 0, 0, 1]).unwrap());
        assert!(out.contains(&Output::Up));
        assert_eq!(
            f.negotiator.agreed(),
            Some((OURS, [0x3d, 0x8c, 0x5e, 0x10, 0xa8, 0xf2, 0x4b, 0x19]))
        );
    }

    #[test]
    fn zero_colliding_or_missing_identifiers_are_nakked_with_a_suggestion() {
        let nak = (3, [vec![1, 10], SUGGEST.to_vec()].concat());
        let mut f = started();
        assert_eq!(
            reply(&mut f, &[1, 1, 0, 14, 1, 10, 0, 0, 0, 0, 0, 0, 0, 0]),
            nak
        );
        assert_eq!(
            reply(&mut f, &[1, 2, 0, 14, 1, 10, 0x02, 0, 0, 0, 0, 0, 0, 1]),
            nak
        );
        assert_eq!(reply(&mut f, &[1, 3, 0, 4]), nak);
        assert_eq!(f.negotiator.agreed(), None);
        // The client takes the suggestion.
        let take = [[1, 4, 0, 14, 1, 10].as_slice(), &SUGGEST].concat();
        assert_eq!(reply(&mut f, &take), (2, take[4..].to_vec()));
    }

    #[test]
    fn compression_is_rejected_and_a_nak_of_ours_followed() {
        let mut f = started();
        // IPv6-Compression-Protocol (type 2, IPHC 0x0061) beside the identifier.
        let req = [1, 1, 0, 18, 1, 10, 9, 9, 9, 9, 9, 9, 9, 9, 2, 4, 0x00, 0x61];
        assert_eq!(reply(&mut f, &req), (4, vec![2, 4, 0x00, 0x61]));
        // The client Naks ours with another: the next request carries it.
        let out =
            f.receive(&CpPacket::parse(&[3, 1, 0, 14, 1, 10, 7, 7, 7, 7, 7, 7, 7, 7]).unwrap());
        assert!(
            out.iter()
                .any(|o| matches!(o, Output::Send { code: 1, data, .. }
                if data == &[1, 10, 7, 7, 7, 7, 7, 7, 7, 7])),
            "{out:?}"
        );
        // A Nak suggesting zero is not followed.
        let out =
            f.receive(&CpPacket::parse(&[3, 2, 0, 14, 1, 10, 0, 0, 0, 0, 0, 0, 0, 0]).unwrap());
        assert!(
            out.iter()
                .any(|o| matches!(o, Output::Send { code: 1, data, .. }
                if data == &[1, 10, 7, 7, 7, 7, 7, 7, 7, 7])),
            "{out:?}"
        );
    }

    #[test]
    fn malformed_requests_are_discarded() {
        let mut f = started();
        // An option whose length runs past the packet.
        let out = f.receive(&CpPacket::parse(&[1, 1, 0, 8, 1, 10, 1, 2]).unwrap());
        assert!(
            !out.iter()
                .any(|o| matches!(o, Output::Send { code: 2..=4, .. })),
            "{out:?}"
        );
    }
}
