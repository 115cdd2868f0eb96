//! LCP, server side: the option policy and the codes beyond the generic automaton (Protocol-Reject,
//! Echo, Discard).
//!
//! Policy: we ask for our MRU (default 1400, so full-size client packets fit in one GRE packet),
//! the first authentication protocol of our preference list, and a magic number. From the client
//! we accept MRU ≥ 128, ACCM, magic, PFC and ACFC; we reject an authentication protocol (a server
//! does not authenticate itself to the client) and anything unknown.

use super::fsm::{Config, Fsm, Negotiator, Output, Reason, Verdict};
use crate::wire::{
    cp::{CpPacket, code, parse_options},
    lcp::{AuthProtocol, LcpOption, kind},
    ppp::proto,
};

/// What our side wants from LCP.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LcpConfig {
    /// The MRU we ask for (the largest frame we want to receive).
    pub mru: u16,
    /// Authentication protocols in preference order; empty means no authentication.
    pub auth: Vec<AuthProtocol>,
}

impl Default for LcpConfig {
    fn default() -> Self {
        Self {
            mru: 1400,
            auth: vec![
                AuthProtocol::MsChapV2,
                AuthProtocol::ChapMd5,
                AuthProtocol::Pap,
            ],
        }
    }
}

/// The outcome of negotiation, valid once LCP is opened.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Negotiated {
    /// The largest frame the client accepts (its MRU; 1500 if it did not say).
    pub peer_mru: u16,
    /// The MRU the client acked for us (what it will send at most).
    pub our_mru: u16,
    /// The client accepts frames without FF 03 / with one-byte protocols.
    pub peer_acfc: bool,
    pub peer_pfc: bool,
    pub peer_magic: u32,
    pub auth: Option<AuthProtocol>,
}

pub struct LcpPolicy {
    config: LcpConfig,
    magic: u32,
    /// xorshift state for new magic numbers after a Nak (loop detection only; no secrecy).
    rng: u32,
    /// Index into `config.auth` of the protocol we ask for; `None` once all were refused.
    auth: Option<usize>,
    send_mru: bool,
    send_magic: bool,
    mru: u16,
    peer_pending: Negotiated,
    pub negotiated: Negotiated,
    pub auth_refused: bool,
}

impl LcpPolicy {
    pub fn new(config: LcpConfig, magic: u32) -> Self {
        let auth = if config.auth.is_empty() {
            None
        } else {
            Some(0)
        };
        let mru = config.mru;
        Self {
            config,
            magic,
            rng: magic | 1,
            auth,
            send_mru: mru != 1500,
            send_magic: true,
            mru,
            peer_pending: Negotiated::default(),
            negotiated: Negotiated::default(),
            auth_refused: false,
        }
    }

    fn new_magic(&mut self) {
        let mut x = self.rng;
        x ^= x << 13;
        x ^= x >> 17;
        x ^= x << 5;
        self.rng = x;
        self.magic = x;
    }

    fn requested_auth(&self) -> Option<AuthProtocol> {
        self.auth.map(|i| self.config.auth[i])
    }

    fn request_options(&self) -> Vec<LcpOption> {
        let mut v = Vec::new();
        if self.send_mru {
            v.push(LcpOption::Mru(self.mru));
        }
        if let Some(a) = self.requested_auth() {
            v.push(LcpOption::AuthProtocol(a.value().to_vec()));
        }
        if self.send_magic {
            v.push(LcpOption::MagicNumber(self.magic));
        }
        v
    }
}

fn emit_all(opts: &[LcpOption]) -> Vec<u8> {
    let mut buf = Vec::new();
    for o in opts {
        o.emit(&mut buf);
    }
    buf
}

impl Negotiator for LcpPolicy {
    fn request(&mut self) -> Vec<u8> {
        emit_all(&self.request_options())
    }

    fn check(&mut self, options: &[u8], reject_only: bool) -> Verdict {
        let Ok(raws) = parse_options(options) else {
            tracing::debug!("LCP Configure-Request with a malformed option list; discarded");
            return Verdict::Discard;
        };
        let mut naks = Vec::new();
        let mut rejects = Vec::new();
        let mut peer = Negotiated {
            peer_mru: 1500,
            ..Negotiated::default()
        };
        for raw in &raws {
            match LcpOption::decode(raw) {
                LcpOption::Mru(m) if m >= 128 => peer.peer_mru = m,
                LcpOption::Mru(_) => naks.push(LcpOption::Mru(1500)),
                LcpOption::Accm(_) => {}
                LcpOption::MagicNumber(m) if m != 0 && m != self.magic => peer.peer_magic = m,
                // Zero, or our own number looped back (RFC 1661 §6.4): suggest another.
                LcpOption::MagicNumber(m) => {
                    naks.push(LcpOption::MagicNumber(m ^ self.magic ^ 0x5a5a_0001))
                }
                LcpOption::Pfc => peer.peer_pfc = true,
                LcpOption::Acfc => peer.peer_acfc = true,
                LcpOption::AuthProtocol(_) | LcpOption::Other { .. } => raw.emit(&mut rejects),
            }
        }
        if !rejects.is_empty() {
            return Verdict::Reject(rejects);
        }
        if !naks.is_empty() {
            let bytes = emit_all(&naks);
            return if reject_only {
                Verdict::Reject(bytes)
            } else {
                Verdict::Nak(bytes)
            };
        }
        self.peer_pending = peer;
        Verdict::Ack
    }

    fn acked(&mut self, options: &[u8]) -> bool {
        if options != self.request().as_slice() {
            return false;
        }
        let peer = self.peer_pending;
        self.negotiated = Negotiated {
            our_mru: if self.send_mru { self.mru } else { 1500 },
            auth: self.requested_auth(),
            ..peer
        };
        true
    }

    fn nakked(&mut self, options: &[u8]) -> bool {
        let Ok(raws) = parse_options(options) else {
            return false;
        };
        for raw in &raws {
            match LcpOption::decode(raw) {
                // Accept a smaller MRU; a larger one than we want is declined by asking again.
                LcpOption::Mru(m) if (128..=self.config.mru).contains(&m) => self.mru = m,
                LcpOption::MagicNumber(_) => self.new_magic(),
                LcpOption::AuthProtocol(v) => {
                    // Take the client's suggestion if we allow it, else the next of our list.
                    let suggested = AuthProtocol::from_value(&v)
                        .and_then(|a| self.config.auth.iter().position(|&x| x == a));
                    self.auth = match (suggested, self.auth) {
                        (Some(i), _) => Some(i),
                        (None, Some(i)) if i + 1 < self.config.auth.len() => Some(i + 1),
                        (None, _) => {
                            self.auth_refused = true;
                            None
                        }
                    };
                }
                _ => {}
            }
        }
        true
    }

    fn rejected(&mut self, options: &[u8]) -> bool {
        let Ok(raws) = parse_options(options) else {
            return false;
        };
        for raw in &raws {
            match raw.kind {
                kind::MRU => self.send_mru = false,
                kind::MAGIC_NUMBER => self.send_magic = false,
                kind::AUTH_PROTOCOL if self.auth.is_some() => {
                    // Authentication is not optional for a concentrator.
                    self.auth_refused = true;
                }
                _ => {}
            }
        }
        true
    }
}

/// What the LCP-only codes need from an option policy: the server's [`LcpPolicy`] here, a
/// client's in the project's PPTP client.
pub trait LcpNegotiator: Negotiator {
    /// Our magic number (Echo-Reply carries it).
    fn magic(&self) -> u32;
    /// The largest frame the peer accepts (Protocol-Reject is cut to fit).
    fn peer_mru(&self) -> u16;
    /// The peer refused every authentication protocol we offer: the link must close.
    fn auth_refused(&self) -> bool {
        false
    }
}

impl LcpNegotiator for LcpPolicy {
    fn magic(&self) -> u32 {
        self.magic
    }
    fn peer_mru(&self) -> u16 {
        self.negotiated.peer_mru
    }
    fn auth_refused(&self) -> bool {
        self.auth_refused
    }
}

/// LCP: the automaton plus the LCP-only codes (Protocol-Reject, Echo, Discard), for any option
/// policy.
pub struct Lcp<N = LcpPolicy> {
    pub fsm: Fsm<N>,
}

impl Lcp<LcpPolicy> {
    pub fn new(config: LcpConfig, magic: u32, fsm_config: Config) -> Self {
        Self::with_policy(LcpPolicy::new(config, magic), fsm_config)
    }

    pub fn negotiated(&self) -> Negotiated {
        self.fsm.negotiator.negotiated
    }

    /// Our magic number (echoes carry it).
    pub fn magic(&self) -> u32 {
        self.fsm.negotiator.magic
    }

    /// LCP opened with what was agreed before a hand-over (hitless restart).
    pub fn restored(config: LcpConfig, magic: u32, negotiated: Negotiated, fsm: Config) -> Self {
        let mut policy = LcpPolicy::new(config, magic);
        policy.negotiated = negotiated;
        Self {
            fsm: Fsm::opened(policy, fsm),
        }
    }
}

impl<N: LcpNegotiator> Lcp<N> {
    pub fn with_policy(policy: N, fsm_config: Config) -> Self {
        Self {
            fsm: Fsm::new(policy, fsm_config),
        }
    }

    /// A received LCP packet (the PPP information field).
    pub fn receive(&mut self, info: &[u8]) -> Vec<Output> {
        let packet = match CpPacket::parse(info) {
            Ok(p) => p,
            Err(e) => {
                tracing::debug!(error = %e, "malformed LCP packet dropped");
                return Vec::new();
            }
        };
        match packet.code {
            code::PROTOCOL_REJECT => {
                let &[hi, lo, ..] = packet.data else {
                    return Vec::new();
                };
                let rejected = u16::from_be_bytes([hi, lo]);
                if rejected == proto::LCP {
                    self.fsm.run(super::fsm::Event::RxjMinus)
                } else if self.fsm.is_opened() {
                    vec![Output::ProtocolRejected(rejected)]
                } else {
                    Vec::new()
                }
            }
            code::ECHO_REQUEST => {
                if !self.fsm.is_opened() {
                    return Vec::new(); // RFC 1661 §5.8: silently discarded unless Opened
                }
                let mut data = self.fsm.negotiator.magic().to_be_bytes().to_vec();
                data.extend_from_slice(packet.data.get(4..).unwrap_or(&[]));
                vec![Output::Send {
                    code: code::ECHO_REPLY,
                    identifier: packet.identifier,
                    data,
                }]
            }
            code::ECHO_REPLY if self.fsm.is_opened() => vec![Output::EchoReply(packet.identifier)],
            code::ECHO_REPLY | code::DISCARD_REQUEST => Vec::new(),
            _ => {
                let mut out = self.fsm.receive(&packet);
                if self.fsm.negotiator.auth_refused()
                    && !matches!(self.fsm.state(), super::fsm::State::Closing)
                {
                    out.extend(self.fsm.close(Reason::AuthRefused));
                }
                out
            }
        }
    }

    /// An Echo-Request for keepalive.
    pub fn echo_request(&self, identifier: u8) -> Output {
        Output::Send {
            code: code::ECHO_REQUEST,
            identifier,
            data: self.fsm.negotiator.magic().to_be_bytes().to_vec(),
        }
    }

    /// A Protocol-Reject for a frame of a protocol we do not run (only sent while Opened).
    pub fn protocol_reject(&self, identifier: u8, protocol: u16, info: &[u8]) -> Option<Output> {
        if !self.fsm.is_opened() {
            return None;
        }
        let mut data = protocol.to_be_bytes().to_vec();
        // Keep the reply within the client's MRU.
        let room = usize::from(self.fsm.negotiator.peer_mru()).saturating_sub(6);
        data.extend_from_slice(&info[..info.len().min(room)]);
        Some(Output::Send {
            code: code::PROTOCOL_REJECT,
            identifier,
            data,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MAGIC: u32 = 0x1122_3344;

    fn lcp() -> Lcp {
        Lcp::new(LcpConfig::default(), MAGIC, Config::default())
    }

    fn sent(out: &[Output]) -> Vec<(u8, u8, Vec<u8>)> {
        out.iter()
            .filter_map(|o| match o {
                Output::Send {
                    code,
                    identifier,
                    data,
                } => Some((*code, *identifier, data.clone())),
                _ => None,
            })
            .collect()
    }

    /// The client's LCP Configure-Request as pppd 2.4.9 sends it through pptp-linux.
    const PPPD_CONFREQ: [u8; 20] = [
        1, 1, 0, 20, 2, 6, 0, 0, 0, 0, 5, 6, 0x3c, 0x5a, 0x1e, 0x47, 7, 2, 8, 2,
    ];

    #[test]
    fn negotiates_with_pppd() {
        let mut l = lcp();
        l.fsm.open();
        let out = l.fsm.up();
        let ours = sent(&out);
        // MRU 1400, auth MS-CHAPv2, magic.
        assert_eq!(
            ours,
            vec![(
                1,
                1,
                vec![
                    1, 4, 0x05, 0x78, 3, 5, 0xc2, 0x23, 0x81, 5, 6, 0x11, 0x22, 0x33, 0x44
                ]
            )]
        );
        let out = l.receive(&PPPD_CONFREQ);
        assert_eq!(sent(&out), vec![(2, 1, PPPD_CONFREQ[4..].to_vec())]);
        let mut ack = vec![2, 1, 0, 19];
        ack.extend_from_slice(&ours[0].2);
        let out = l.receive(&ack);
        assert!(out.contains(&Output::Up), "{out:?}");
        let n = l.negotiated();
        assert_eq!(n.peer_mru, 1500);
        assert_eq!(n.our_mru, 1400);
        assert!(n.peer_acfc && n.peer_pfc);
        assert_eq!(n.peer_magic, 0x3c5a1e47);
        assert_eq!(n.auth, Some(AuthProtocol::MsChapV2));
        // Echo answered with our magic; IPv6CP gets a Protocol-Reject.
        let out = l.receive(&[9, 7, 0, 8, 0x3c, 0x5a, 0x1e, 0x47]);
        assert_eq!(sent(&out), vec![(10, 7, vec![0x11, 0x22, 0x33, 0x44])]);
        let rej = l.protocol_reject(3, proto::IPV6CP, &[1, 1, 0, 4]).unwrap();
        assert_eq!(
            rej,
            Output::Send {
                code: 8,
                identifier: 3,
                data: vec![0x80, 0x57, 1, 1, 0, 4]
            }
        );
    }

    #[test]
    fn client_auth_nak_moves_down_the_preference_list_and_rejection_ends_it() {
        let mut l = lcp();
        l.fsm.open();
        l.fsm.up();
        // Client naks MS-CHAPv2 suggesting CHAP-MD5.
        let out = l.receive(&[3, 1, 0, 9, 3, 5, 0xc2, 0x23, 5]);
        let req = sent(&out);
        assert_eq!(req[0].0, 1);
        assert!(
            req[0].2.windows(5).any(|w| w == [3, 5, 0xc2, 0x23, 5]),
            "{req:?}"
        );
        // Client rejects authentication outright: we terminate.
        let out = l.receive(&[4, 2, 0, 9, 3, 5, 0xc2, 0x23, 5]);
        assert!(
            sent(&out)
                .iter()
                .any(|(c, _, _)| *c == code::TERMINATE_REQUEST),
            "{out:?}"
        );
        let out = l.receive(&[6, 3, 0, 4]);
        assert!(
            out.contains(&Output::Finished(Reason::AuthRefused)),
            "{out:?}"
        );
    }

    #[test]
    fn rejects_what_a_server_does_not_do_and_survives_garbage() {
        let mut l = lcp();
        l.fsm.open();
        l.fsm.up();
        // Auth option from the client, callback (13), multilink MRRU (17): rejected as sent.
        let req = [1, 9, 0, 15, 3, 4, 0xc0, 0x23, 13, 3, 6, 17, 4, 0x05, 0xdc];
        let out = l.receive(&req);
        assert_eq!(sent(&out), vec![(4, 9, req[4..].to_vec())]);
        // MRU below 128 is nak'd; looped-back magic is nak'd with another number.
        let out = l.receive(&[1, 10, 0, 14, 1, 4, 0, 64, 5, 6, 0x11, 0x22, 0x33, 0x44]);
        let s = sent(&out);
        assert_eq!(s[0].0, 3);
        assert_eq!(&s[0].2[..4], &[1, 4, 0x05, 0xdc]);
        assert_ne!(&s[0].2[6..10], &[0x11, 0x22, 0x33, 0x44]);
        // Malformed packets and option lists are dropped without output.
        for bad in [
            &[1u8][..],
            &[1, 1, 0, 99],
            &[1, 1, 0, 6, 1, 0],
            &[1, 1, 0, 6, 1, 9],
            &[8, 1, 0, 5, 0xc0],
        ] {
            assert!(l.receive(bad).is_empty(), "{bad:?}");
        }
    }
}
