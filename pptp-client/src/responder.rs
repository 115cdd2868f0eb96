//! Authenticating ourselves to the server, peer side of PAP (RFC 1334), CHAP-MD5 (RFC 1994) and
//! MS-CHAPv2 (RFC 2759). Pure: packets in, packets and an outcome out. The cryptography is the
//! gateway's own (`pptp_user::auth::mschap`), so a client and server disagreeing would show.

use std::time::Duration;

use md5::{Digest as _, Md5};
use pptp_user::{
    auth::{
        authenticator::{
            CHAP_CHALLENGE, CHAP_FAILURE, CHAP_RESPONSE, CHAP_SUCCESS, PAP_ACK, PAP_NAK,
            PAP_REQUEST, packet,
        },
        mschap,
    },
    wire::{lcp::AuthProtocol, ppp::proto},
};

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ResponderOutput {
    Send {
        protocol: u16,
        info: Vec<u8>,
    },
    /// (Re)start the retransmission timer (PAP only: with CHAP the server retransmits).
    StartTimer(Duration),
    StopTimer,
    Success,
    /// The server refused us: its message, and whether we may not try again.
    Failed {
        message: String,
    },
}

/// What an MS-CHAPv2 Failure packet says (RFC 2759 §6): `E=eeeeeeeeee R=r C=cccc V=vvvv M=msg`.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct MsChapFailure {
    pub error: Option<u32>,
    pub retry: bool,
    pub challenge: Option<[u8; 16]>,
    pub message: String,
}

impl MsChapFailure {
    pub fn parse(text: &str) -> Self {
        let mut f = MsChapFailure::default();
        let (fields, message) = match text.find("M=") {
            Some(i) => (&text[..i], text[i + 2..].to_string()),
            None => (text, String::new()),
        };
        f.message = message;
        for field in fields.split_whitespace() {
            match field.split_once('=') {
                Some(("E", v)) => f.error = v.parse().ok(),
                Some(("R", v)) => f.retry = v == "1",
                Some(("C", v)) if v.len() == 32 => {
                    let mut c = [0u8; 16];
                    let ok = (0..16).all(|i| {
                        u8::from_str_radix(&v[2 * i..2 * i + 2], 16)
                            .map(|b| c[i] = b)
                            .is_ok()
                    });
                    if ok {
                        f.challenge = Some(c);
                    }
                }
                _ => {}
            }
        }
        f
    }
}

pub struct Responder {
    protocol: AuthProtocol,
    user: String,
    password: String,
    /// PAP: our request's identifier; CHAP: the identifier we last answered.
    identifier: u8,
    /// CHAP: our last response (repeated if the server repeats its challenge).
    last_response: Option<(u8, Vec<u8>)>,
    /// MS-CHAPv2: what the Success message's S= is checked against.
    mschap: Option<([u8; 16], [u8; 16], [u8; 24])>,
    peer_challenge: [u8; 16],
    pap_sent: u32,
    done: bool,
    /// Responses sent (1 + the retries the server allowed).
    pub attempts: u32,
}

const PAP_RETRANSMIT: Duration = Duration::from_secs(3);
const PAP_MAX_REQUESTS: u32 = 10;

impl Responder {
    /// `peer_challenge`: 16 random bytes for MS-CHAPv2's Peer-Challenge.
    pub fn new(
        protocol: AuthProtocol,
        user: &str,
        password: &str,
        peer_challenge: [u8; 16],
    ) -> Self {
        Self {
            protocol,
            user: user.into(),
            password: password.into(),
            identifier: 0,
            last_response: None,
            mschap: None,
            peer_challenge,
            pap_sent: 0,
            done: false,
            attempts: 0,
        }
    }

    /// After MS-CHAPv2 succeeded: our MPPE start keys (send, receive), RFC 3079 §3.4 from the
    /// client's side.
    pub fn mppe_keys(&self) -> Option<([u8; 16], [u8; 16])> {
        let (_, _, nt) = self.mschap?;
        if !self.done {
            return None;
        }
        let hash = mschap::nt_password_hash(&self.password);
        let master = mschap::get_master_key(&mschap::hash_nt_password_hash(&hash), &nt);
        let key = |is_send| {
            let mut k = [0u8; 16];
            k.copy_from_slice(&mschap::get_asymmetric_start_key(
                &master, 16, is_send, false,
            ));
            k
        };
        Some((key(true), key(false)))
    }

    /// Authentication starts (LCP is open): PAP speaks first, CHAP waits for the challenge.
    pub fn start(&mut self) -> Vec<ResponderOutput> {
        match self.protocol {
            AuthProtocol::Pap => self.pap_request(),
            _ => Vec::new(),
        }
    }

    fn pap_request(&mut self) -> Vec<ResponderOutput> {
        if self.pap_sent >= PAP_MAX_REQUESTS {
            self.done = true;
            return vec![ResponderOutput::Failed {
                message: "no answer to PAP Authenticate-Request".into(),
            }];
        }
        self.pap_sent += 1;
        self.attempts = 1;
        self.identifier = self.identifier.wrapping_add(1);
        let mut body = vec![self.user.len() as u8];
        body.extend_from_slice(self.user.as_bytes());
        body.push(self.password.len() as u8);
        body.extend_from_slice(self.password.as_bytes());
        vec![
            ResponderOutput::Send {
                protocol: proto::PAP,
                info: packet(PAP_REQUEST, self.identifier, &body),
            },
            ResponderOutput::StartTimer(PAP_RETRANSMIT),
        ]
    }

    pub fn timeout(&mut self) -> Vec<ResponderOutput> {
        if self.done || self.protocol != AuthProtocol::Pap {
            return Vec::new();
        }
        self.pap_request()
    }

    /// A PAP or CHAP packet from the server.
    pub fn receive(&mut self, info: &[u8]) -> Vec<ResponderOutput> {
        let Some(&[code, identifier, hi, lo]) = info.first_chunk::<4>() else {
            return Vec::new();
        };
        let length = usize::from(u16::from_be_bytes([hi, lo]));
        let Some(body) = info.get(4..length).filter(|_| length >= 4) else {
            tracing::debug!("authentication packet with a bad length dropped");
            return Vec::new();
        };
        if self.done {
            return Vec::new();
        }
        if self.protocol == AuthProtocol::Pap {
            if identifier != self.identifier {
                return Vec::new();
            }
            let message = body
                .split_first()
                .map(|(&n, rest)| String::from_utf8_lossy(&rest[..rest.len().min(n.into())]))
                .unwrap_or_default()
                .into_owned();
            return match code {
                PAP_ACK => self.finish(ResponderOutput::Success),
                PAP_NAK => self.finish(ResponderOutput::Failed { message }),
                _ => Vec::new(),
            };
        }
        match code {
            CHAP_CHALLENGE => self.challenge(identifier, body),
            CHAP_SUCCESS if Some(identifier) == self.last_response.as_ref().map(|r| r.0) => {
                self.chap_success(body)
            }
            CHAP_FAILURE if Some(identifier) == self.last_response.as_ref().map(|r| r.0) => {
                self.chap_failure(identifier, body)
            }
            _ => Vec::new(),
        }
    }

    fn finish(&mut self, outcome: ResponderOutput) -> Vec<ResponderOutput> {
        self.done = true;
        vec![ResponderOutput::StopTimer, outcome]
    }

    fn challenge(&mut self, identifier: u8, body: &[u8]) -> Vec<ResponderOutput> {
        if let Some((id, response)) = &self.last_response
            && *id == identifier
        {
            // The server repeated its challenge: our response was lost.
            return vec![ResponderOutput::Send {
                protocol: proto::CHAP,
                info: response.clone(),
            }];
        }
        let Some((&n, rest)) = body.split_first() else {
            return Vec::new();
        };
        let Some(value) = rest.get(..usize::from(n)) else {
            return Vec::new();
        };
        self.respond(identifier, value)
    }

    fn respond(&mut self, identifier: u8, challenge: &[u8]) -> Vec<ResponderOutput> {
        let value: Vec<u8> = match self.protocol {
            AuthProtocol::ChapMd5 => Md5::new()
                .chain_update([identifier])
                .chain_update(self.password.as_bytes())
                .chain_update(challenge)
                .finalize()
                .to_vec(),
            AuthProtocol::MsChapV2 => {
                let Ok(challenge) = <[u8; 16]>::try_from(challenge) else {
                    tracing::debug!("MS-CHAPv2 challenge not 16 bytes; dropped");
                    return Vec::new();
                };
                let hash = mschap::nt_password_hash(&self.password);
                let nt = mschap::generate_nt_response(
                    &challenge,
                    &self.peer_challenge,
                    self.user.as_bytes(),
                    &hash,
                );
                self.mschap = Some((challenge, self.peer_challenge, nt));
                let mut v = self.peer_challenge.to_vec();
                v.extend_from_slice(&[0; 8]);
                v.extend_from_slice(&nt);
                v.push(0);
                v
            }
            AuthProtocol::Pap | AuthProtocol::MsChapV1 => return Vec::new(),
        };
        let mut body = vec![value.len() as u8];
        body.extend_from_slice(&value);
        body.extend_from_slice(self.user.as_bytes());
        let info = packet(CHAP_RESPONSE, identifier, &body);
        self.identifier = identifier;
        self.attempts += 1;
        self.last_response = Some((identifier, info.clone()));
        vec![ResponderOutput::Send {
            protocol: proto::CHAP,
            info,
        }]
    }

    fn chap_success(&mut self, body: &[u8]) -> Vec<ResponderOutput> {
        if let Some((challenge, peer_challenge, nt)) = self.mschap {
            // RFC 2759 §5: the server proves it knows the password too.
            let hash = mschap::nt_password_hash(&self.password);
            let expect = mschap::generate_authenticator_response(
                &hash,
                &nt,
                &peer_challenge,
                &challenge,
                self.user.as_bytes(),
            );
            let text = String::from_utf8_lossy(body);
            if !text.starts_with(&expect) {
                return self.finish(ResponderOutput::Failed {
                    message: format!("server's authenticator response is wrong: {text}"),
                });
            }
        }
        self.finish(ResponderOutput::Success)
    }

    fn chap_failure(&mut self, identifier: u8, body: &[u8]) -> Vec<ResponderOutput> {
        let text = String::from_utf8_lossy(body).into_owned();
        if self.protocol == AuthProtocol::MsChapV2 {
            let f = MsChapFailure::parse(&text);
            if f.retry
                && let Some(c) = f.challenge
            {
                // RFC 2759 §6: answer the new challenge with identifier + 1.
                self.peer_challenge = rotate(self.peer_challenge);
                return self.respond(identifier.wrapping_add(1), &c);
            }
        }
        self.finish(ResponderOutput::Failed { message: text })
    }
}

/// A different Peer-Challenge for a retry, derived without a random source (it need only differ).
fn rotate(mut c: [u8; 16]) -> [u8; 16] {
    c.rotate_left(1);
    c[15] ^= 0x5a;
    c
}

#[cfg(test)]
mod tests {
    use pptp_user::auth::{
        authenticator::{AuthConfig, AuthOutput, Authenticator, Failure, Secret},
        mschap::rfc2759 as vectors,
    };

    use super::*;

    fn sends(out: &[ResponderOutput]) -> Vec<Vec<u8>> {
        out.iter()
            .filter_map(|o| match o {
                ResponderOutput::Send { info, .. } => Some(info.clone()),
                _ => None,
            })
            .collect()
    }

    /// RFC 2759 §9.2: with the RFC's challenges, our response is the RFC's NT-Response.
    #[test]
    fn mschapv2_response_is_the_rfc_vector() {
        let user = std::str::from_utf8(vectors::USER).unwrap();
        let mut r = Responder::new(
            AuthProtocol::MsChapV2,
            user,
            vectors::PASSWORD,
            vectors::PEER_CHALLENGE,
        );
        let mut challenge = vec![16];
        challenge.extend_from_slice(&vectors::AUTH_CHALLENGE);
        challenge.extend_from_slice(b"pptpgw");
        let out = r.receive(&packet(CHAP_CHALLENGE, 7, &challenge));
        let resp = &sends(&out)[0];
        assert_eq!(&resp[..2], &[CHAP_RESPONSE, 7]);
        assert_eq!(resp[4], 49);
        assert_eq!(&resp[5..21], &vectors::PEER_CHALLENGE);
        assert_eq!(&resp[29..53], &vectors::NT_RESPONSE);
        assert_eq!(&resp[54..], vectors::USER);
        // The RFC's authenticator response is accepted; a wrong one is not.
        let ok = r.clone_for_test().receive(&packet(
            CHAP_SUCCESS,
            7,
            b"S=407A5589115FD0D6209F510FE9C04566932CDA56 M=ok",
        ));
        assert_eq!(ok.last(), Some(&ResponderOutput::Success));
        let bad = r.receive(&packet(
            CHAP_SUCCESS,
            7,
            b"S=0000000000000000000000000000000000000000 M=ok",
        ));
        assert!(matches!(bad.last(), Some(ResponderOutput::Failed { .. })));
    }

    impl Responder {
        fn clone_for_test(&self) -> Self {
            Self {
                protocol: self.protocol,
                user: self.user.clone(),
                password: self.password.clone(),
                identifier: self.identifier,
                last_response: self.last_response.clone(),
                mschap: self.mschap,
                peer_challenge: self.peer_challenge,
                pap_sent: self.pap_sent,
                done: self.done,
                attempts: self.attempts,
            }
        }
    }

    /// Our responder against the gateway's authenticator, each method, right and wrong password.
    #[test]
    fn against_the_gateway_authenticator() {
        for protocol in [
            AuthProtocol::Pap,
            AuthProtocol::ChapMd5,
            AuthProtocol::MsChapV2,
        ] {
            for (password, want_ok) in [("s3cret", true), ("wrong", false)] {
                let mut server = Authenticator::new(protocol, AuthConfig::default());
                let mut client = Responder::new(protocol, "alice", password, [9; 16]);
                let secret = |u: &str| (u == "alice").then(|| Secret::Plain("s3cret".into()));
                let mut to_client: Vec<Vec<u8>> = server
                    .start(&[3; 16], 1)
                    .into_iter()
                    .filter_map(|o| match o {
                        AuthOutput::Send { info, .. } => Some(info),
                        _ => None,
                    })
                    .collect();
                let mut to_server = sends(&client.start());
                let mut outcome = None;
                let mut client_outcome = None;
                for _ in 0..10 {
                    for p in to_client.drain(..) {
                        let o = client.receive(&p);
                        to_server.extend(sends(&o));
                        for x in o {
                            if matches!(
                                x,
                                ResponderOutput::Success | ResponderOutput::Failed { .. }
                            ) {
                                client_outcome = Some(x);
                            }
                        }
                    }
                    for p in to_server.drain(..) {
                        for o in server.receive(&p, secret, [4; 16]) {
                            match o {
                                AuthOutput::Send { info, .. } => to_client.push(info),
                                AuthOutput::Success { .. } => outcome = Some(true),
                                AuthOutput::Failed { reason, .. } => {
                                    assert_eq!(reason, Failure::BadCredentials);
                                    outcome = Some(false)
                                }
                                _ => {}
                            }
                        }
                    }
                }
                assert_eq!(outcome, Some(want_ok), "{protocol:?} {password}");
                assert_eq!(
                    matches!(client_outcome, Some(ResponderOutput::Success)),
                    want_ok,
                    "{protocol:?} {password}: {client_outcome:?}"
                );
                if !want_ok && protocol == AuthProtocol::MsChapV2 {
                    // E=691 R=1 twice, then R=0: three responses (AuthConfig::max_attempts).
                    assert_eq!(client.attempts, 3);
                    let Some(ResponderOutput::Failed { message }) = client_outcome else {
                        unreachable!()
                    };
                    assert!(message.contains("E=691"), "{message}");
                    assert!(message.contains("R=0"), "{message}");
                }
            }
        }
    }

    #[test]
    fn failure_messages_parse_and_garbage_is_dropped() {
        let f = MsChapFailure::parse("E=691 R=1 C=000102030405060708090A0B0C0D0E0F V=3 M=bad");
        assert_eq!(f.error, Some(691));
        assert!(f.retry);
        assert_eq!(f.challenge.unwrap()[15], 15);
        assert_eq!(f.message, "bad");
        let f = MsChapFailure::parse("E=691 R=1 C=zz");
        assert_eq!(f.challenge, None);
        let mut r = Responder::new(AuthProtocol::MsChapV2, "u", "p", [0; 16]);
        for bad in [
            &[][..],
            &[1, 1, 0, 99],
            &[1, 1, 0, 5, 16],
            &[1, 1, 0, 6, 3, 1],
            &[3, 9, 0, 4],
        ] {
            assert!(sends(&r.receive(bad)).is_empty(), "{bad:?}");
        }
    }
}
