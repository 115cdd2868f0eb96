//! The server side of PPP authentication as a pure state machine: PAP (RFC 1334), CHAP with MD5
//! (RFC 1994), MS-CHAPv1 (RFC 2433) and MS-CHAPv2 (RFC 2759), including MS-CHAPv2's failure
//! message with E=691 and a retry on a fresh challenge.
//!
//! Randomness (challenges) and secrets come in as arguments, so every conversation is
//! reproducible in tests.

use std::time::Duration;

use md5::{Digest as _, Md5};

use super::mschap::{self, PasswordHash};
use crate::wire::{cursor::Reader, lcp::AuthProtocol};

/// A user's secret as the secrets file holds it.
#[derive(Clone, PartialEq, Eq)]
pub enum Secret {
    Plain(String),
    /// NtPasswordHash of the password: enough for PAP and MS-CHAP, not for CHAP-MD5.
    NtHash(PasswordHash),
}

impl std::fmt::Debug for Secret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Secret::Plain(_) => "Secret::Plain(..)",
            Secret::NtHash(_) => "Secret::NtHash(..)",
        })
    }
}

impl Secret {
    fn nt_hash(&self) -> PasswordHash {
        match self {
            Secret::Plain(p) => mschap::nt_password_hash(p),
            Secret::NtHash(h) => *h,
        }
    }
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AuthConfig {
    /// Our name in CHAP challenges.
    pub name: String,
    /// Response attempts allowed (MS-CHAPv2 retries with a new challenge in between).
    pub max_attempts: u32,
    /// Challenge retransmission interval, and how many times to send it.
    pub retransmit: Duration,
    pub max_challenges: u32,
    /// How long to wait for a PAP Authenticate-Request.
    pub pap_timeout: Duration,
    /// Credentials are checked elsewhere (RADIUS): see [`AuthOutput::Verify`].
    pub remote: bool,
}

impl Default for AuthConfig {
    fn default() -> Self {
        Self {
            name: "pptpgw".into(),
            max_attempts: 3,
            retransmit: Duration::from_secs(3),
            max_challenges: 10,
            pap_timeout: Duration::from_secs(30),
            remote: false,
        }
    }
}

/// Why authentication failed.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Failure {
    /// Wrong password, or unknown user (not told apart on the wire or in counters by method).
    BadCredentials,
    /// The secret cannot verify this method (an NT hash for CHAP-MD5).
    SecretUnusable,
    /// No response in time.
    Timeout,
    /// A response that could not be parsed.
    Malformed,
    /// Nobody could check the credentials (every RADIUS server down, no fallback).
    Unavailable,
}

/// Keys for MPPE, derived when MS-CHAPv2 succeeds (RFC 3079), for the later data-path mode.
#[derive(Clone, Copy, PartialEq, Eq)]
pub struct MppeKeys {
    pub send: [u8; 16],
    pub recv: [u8; 16],
}

impl std::fmt::Debug for MppeKeys {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("MppeKeys(..)")
    }
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum AuthOutput {
    /// Send a PPP frame of this protocol (PAP or CHAP) with this information field.
    Send {
        protocol: u16,
        info: Vec<u8>,
    },
    StartTimer(Duration),
    StopTimer,
    Success {
        user: String,
        mppe: Option<MppeKeys>,
    },
    Failed {
        user: Option<String>,
        reason: Failure,
    },
    /// Check these credentials elsewhere (RADIUS) and call [`Authenticator::resolve`].
    Verify(Credentials),
}

/// What the peer sent, for checking against a secret here or by a RADIUS server.
#[derive(Clone, PartialEq, Eq)]
pub enum Credentials {
    Pap {
        user: String,
        password: Vec<u8>,
    },
    ChapMd5 {
        user: String,
        identifier: u8,
        challenge: Vec<u8>,
        response: [u8; 16],
    },
    MsChapV1 {
        user: String,
        challenge: [u8; 8],
        response: [u8; 49],
    },
    MsChapV2 {
        user: String,
        /// The name as sent (the hash covers it, domain and all).
        name: Vec<u8>,
        identifier: u8,
        challenge: [u8; 16],
        /// Peer-Challenge (16), reserved (8), NT-Response (24), flags (1).
        response: [u8; 49],
    },
}

impl std::fmt::Debug for Credentials {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let kind = match self {
            Credentials::Pap { .. } => "Pap",
            Credentials::ChapMd5 { .. } => "ChapMd5",
            Credentials::MsChapV1 { .. } => "MsChapV1",
            Credentials::MsChapV2 { .. } => "MsChapV2",
        };
        write!(f, "Credentials::{kind}({:?}, ..)", self.user())
    }
}

impl Credentials {
    pub fn user(&self) -> &str {
        match self {
            Credentials::Pap { user, .. }
            | Credentials::ChapMd5 { user, .. }
            | Credentials::MsChapV1 { user, .. }
            | Credentials::MsChapV2 { user, .. } => user,
        }
    }
}

/// The outcome of checking credentials.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Verdict {
    Accept {
        mppe: Option<MppeKeys>,
        /// MS-CHAPv2: "S=<40 hex digits>" (RFC 2759 §5).
        authenticator_response: Option<String>,
    },
    Reject,
    /// The secret cannot check this method (an NT hash for CHAP-MD5).
    Unusable,
    /// Nobody could check (every RADIUS server down, no fallback).
    Unavailable,
}

/// Checks credentials against a user's secret from the secrets file.
pub fn verify_local(creds: &Credentials, secret: Option<Secret>) -> Verdict {
    let Some(secret) = secret else {
        return Verdict::Reject;
    };
    let accept = |mppe, authenticator_response| Verdict::Accept {
        mppe,
        authenticator_response,
    };
    match creds {
        Credentials::Pap { password, .. } => {
            let ok = match &secret {
                Secret::Plain(p) => p.as_bytes() == password.as_slice(),
                Secret::NtHash(h) => {
                    mschap::nt_password_hash(&String::from_utf8_lossy(password)) == *h
                }
            };
            if ok {
                accept(None, None)
            } else {
                Verdict::Reject
            }
        }
        Credentials::ChapMd5 {
            identifier,
            challenge,
            response,
            ..
        } => {
            let Secret::Plain(p) = &secret else {
                return Verdict::Unusable;
            };
            let expect = Md5::new()
                .chain_update([*identifier])
                .chain_update(p.as_bytes())
                .chain_update(challenge)
                .finalize();
            if response[..] == expect[..] {
                accept(None, None)
            } else {
                Verdict::Reject
            }
        }
        Credentials::MsChapV1 {
            challenge,
            response,
            ..
        } => {
            let ok = response[48] == 1
                && mschap::nt_challenge_response_v1(challenge, &secret.nt_hash())[..]
                    == response[24..48];
            if ok {
                accept(None, None)
            } else {
                Verdict::Reject
            }
        }
        Credentials::MsChapV2 {
            name,
            challenge,
            response,
            ..
        } => {
            let mut peer_challenge = [0u8; 16];
            peer_challenge.copy_from_slice(&response[..16]);
            let mut nt_response = [0u8; 24];
            nt_response.copy_from_slice(&response[24..48]);
            let hash = secret.nt_hash();
            if mschap::generate_nt_response(challenge, &peer_challenge, name, &hash) != nt_response
            {
                return Verdict::Reject;
            }
            let s = mschap::generate_authenticator_response(
                &hash,
                &nt_response,
                &peer_challenge,
                challenge,
                name,
            );
            let (send, recv) = mschap::mppe_start_keys_128(&hash, &nt_response);
            accept(Some(MppeKeys { send, recv }), Some(s))
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Phase {
    Waiting,
    /// The credentials of the request with this identifier are being checked elsewhere.
    Verifying {
        identifier: u8,
    },
    Done,
}

pub struct Authenticator {
    protocol: AuthProtocol,
    config: AuthConfig,
    phase: Phase,
    identifier: u8,
    /// Our current challenge value (16 bytes for CHAP-MD5 and MS-CHAPv2, 8 for MS-CHAPv1).
    challenge: Vec<u8>,
    challenges_sent: u32,
    attempts: u32,
    /// What we answered last, resent if the peer repeats its last request (lost reply).
    last_reply: Option<(u8, Vec<u8>)>,
}

pub const CHAP_CHALLENGE: u8 = 1;
pub const CHAP_RESPONSE: u8 = 2;
pub const CHAP_SUCCESS: u8 = 3;
pub const CHAP_FAILURE: u8 = 4;
pub const PAP_REQUEST: u8 = 1;
pub const PAP_ACK: u8 = 2;
pub const PAP_NAK: u8 = 3;

/// A PAP or CHAP packet: code, identifier, length, body.
pub fn packet(code: u8, identifier: u8, body: &[u8]) -> Vec<u8> {
    let mut v = vec![code, identifier];
    v.extend_from_slice(&((body.len() + 4) as u16).to_be_bytes());
    v.extend_from_slice(body);
    v
}

fn hex_upper(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02X}")).collect()
}

impl Authenticator {
    pub fn new(protocol: AuthProtocol, config: AuthConfig) -> Self {
        Self {
            protocol,
            config,
            phase: Phase::Waiting,
            identifier: 0,
            challenge: Vec::new(),
            challenges_sent: 0,
            attempts: 0,
            last_reply: None,
        }
    }

    pub fn protocol(&self) -> AuthProtocol {
        self.protocol
    }

    fn challenge_len(&self) -> usize {
        match self.protocol {
            AuthProtocol::MsChapV1 => 8,
            AuthProtocol::MsChapV2 => 16,
            _ => self.challenge.len(),
        }
    }

    fn challenge16(&self) -> [u8; 16] {
        let mut c = [0u8; 16];
        let n = self.challenge.len().min(16);
        c[..n].copy_from_slice(&self.challenge[..n]);
        c
    }

    fn send(&self, info: Vec<u8>) -> AuthOutput {
        AuthOutput::Send {
            protocol: self.protocol.ppp_protocol(),
            info,
        }
    }

    fn challenge_packet(&self) -> Vec<u8> {
        let n = self.challenge_len();
        let mut body = vec![n as u8];
        body.extend_from_slice(&self.challenge[..n]);
        body.extend_from_slice(self.config.name.as_bytes());
        packet(CHAP_CHALLENGE, self.identifier, &body)
    }

    /// Authentication phase begins (LCP opened). `challenge` is fresh random bytes (at least 16;
    /// MS-CHAP uses the first 16 or 8), `identifier` the CHAP identifier to use (random too, so
    /// a stale response cannot match by accident).
    pub fn start(&mut self, challenge: &[u8], identifier: u8) -> Vec<AuthOutput> {
        self.phase = Phase::Waiting;
        if self.protocol == AuthProtocol::Pap {
            return vec![AuthOutput::StartTimer(self.config.pap_timeout)];
        }
        self.challenge = challenge.to_vec();
        self.challenge.truncate(self.challenge_len());
        self.identifier = identifier;
        self.challenges_sent = 1;
        vec![
            self.send(self.challenge_packet()),
            AuthOutput::StartTimer(self.config.retransmit),
        ]
    }

    pub fn timeout(&mut self) -> Vec<AuthOutput> {
        if self.phase != Phase::Waiting {
            return Vec::new();
        }
        if self.protocol != AuthProtocol::Pap && self.challenges_sent < self.config.max_challenges {
            self.challenges_sent += 1;
            return vec![
                self.send(self.challenge_packet()),
                AuthOutput::StartTimer(self.config.retransmit),
            ];
        }
        self.phase = Phase::Done;
        vec![AuthOutput::Failed {
            user: None,
            reason: Failure::Timeout,
        }]
    }

    /// A PAP or CHAP packet from the peer. `secret` looks a user up; `next_challenge` is fresh
    /// random bytes in case a retry needs a new challenge. With `AuthConfig::remote` the secret is
    /// not asked for: the credentials go out as [`AuthOutput::Verify`], and [`Self::resolve`]
    /// answers the peer when the verdict is in.
    pub fn receive(
        &mut self,
        info: &[u8],
        secret: impl FnOnce(&str) -> Option<Secret>,
        next_challenge: [u8; 16],
    ) -> Vec<AuthOutput> {
        let mut r = Reader::new(info);
        let (Ok(code), Ok(identifier), Ok(length)) = (r.u8(), r.u8(), r.u16()) else {
            return Vec::new();
        };
        let Some(body) = info.get(4..usize::from(length)).filter(|_| length >= 4) else {
            tracing::debug!("authentication packet with a bad length dropped");
            return Vec::new();
        };
        match self.phase {
            Phase::Done => {
                // A repeated request after we answered: repeat the answer (its reply was lost).
                if let Some((id, reply)) = &self.last_reply
                    && *id == identifier
                {
                    return vec![self.send(reply.clone())];
                }
                return Vec::new();
            }
            // The verdict on this request is on its way; a repeat of it waits for it too.
            Phase::Verifying { .. } => return Vec::new(),
            Phase::Waiting => {}
        }
        let parsed = match (self.protocol, code) {
            (AuthProtocol::Pap, PAP_REQUEST) => self.parse_pap(body),
            (AuthProtocol::Pap, _) => return Vec::new(),
            (_, CHAP_RESPONSE) if identifier == self.identifier => {
                self.parse_chap(identifier, body)
            }
            _ => return Vec::new(), // stale identifier or a code a server does not receive
        };
        let creds = match parsed {
            Ok(c) => c,
            Err(user) => return self.failed(identifier, user, Failure::Malformed),
        };
        if self.config.remote {
            self.phase = Phase::Verifying { identifier };
            return vec![AuthOutput::StopTimer, AuthOutput::Verify(creds)];
        }
        let verdict = verify_local(&creds, secret(creds.user()));
        self.conclude(identifier, creds, verdict, next_challenge)
    }

    /// The verdict on the credentials of the last [`AuthOutput::Verify`] (remote checks).
    pub fn resolve(
        &mut self,
        creds: Credentials,
        verdict: Verdict,
        next_challenge: [u8; 16],
    ) -> Vec<AuthOutput> {
        let Phase::Verifying { identifier } = self.phase else {
            return Vec::new();
        };
        self.phase = Phase::Waiting;
        self.conclude(identifier, creds, verdict, next_challenge)
    }

    fn finish(&mut self, identifier: u8, reply: Vec<u8>, result: AuthOutput) -> Vec<AuthOutput> {
        self.phase = Phase::Done;
        self.last_reply = Some((identifier, reply.clone()));
        vec![AuthOutput::StopTimer, self.send(reply), result]
    }

    /// Malformed (or unusable) credentials: the method's failure, no retry.
    fn failed(&mut self, identifier: u8, user: Option<String>, reason: Failure) -> Vec<AuthOutput> {
        if self.protocol == AuthProtocol::Pap {
            let reply = packet(PAP_NAK, identifier, &[0]);
            return self.finish(identifier, reply, AuthOutput::Failed { user, reason });
        }
        self.chap_failed(identifier, user, reason)
    }

    fn parse_pap(&self, body: &[u8]) -> Result<Credentials, Option<String>> {
        let mut r = Reader::new(body);
        let parsed = (|| {
            let n = r.u8().ok()?;
            let user = r.take(n.into()).ok()?;
            let n = r.u8().ok()?;
            let password = r.take(n.into()).ok()?;
            Some((
                String::from_utf8_lossy(user).into_owned(),
                password.to_vec(),
            ))
        })();
        let (user, password) = parsed.ok_or(None)?;
        Ok(Credentials::Pap { user, password })
    }

    fn parse_chap(&self, identifier: u8, body: &[u8]) -> Result<Credentials, Option<String>> {
        let mut r = Reader::new(body);
        let (value, name) = r
            .u8()
            .ok()
            .and_then(|n| r.take(n.into()).ok())
            .map(|v| (v, r.rest()))
            .ok_or(None)?;
        let user = String::from_utf8_lossy(name).into_owned();
        let bad = || Some(user.clone());
        Ok(match self.protocol {
            AuthProtocol::ChapMd5 => Credentials::ChapMd5 {
                identifier,
                challenge: self.challenge.clone(),
                response: value.try_into().map_err(|_| bad())?,
                user,
            },
            AuthProtocol::MsChapV1 => {
                let mut challenge = [0u8; 8];
                challenge.copy_from_slice(&self.challenge16()[..8]);
                Credentials::MsChapV1 {
                    challenge,
                    response: value.try_into().map_err(|_| bad())?,
                    user,
                }
            }
            AuthProtocol::MsChapV2 => Credentials::MsChapV2 {
                identifier,
                challenge: self.challenge16(),
                response: value.try_into().map_err(|_| bad())?,
                name: name.to_vec(),
                user,
            },
            AuthProtocol::Pap => return Err(None),
        })
    }

    /// Answers the peer with the verdict: success (with MS-CHAPv2's authenticator response and
    /// MPPE keys), or failure — MS-CHAPv2 with E=691 and a retry on a fresh challenge while
    /// attempts remain.
    fn conclude(
        &mut self,
        identifier: u8,
        creds: Credentials,
        verdict: Verdict,
        next_challenge: [u8; 16],
    ) -> Vec<AuthOutput> {
        let user = creds.user().to_string();
        match verdict {
            Verdict::Accept {
                mppe,
                authenticator_response,
            } => {
                let (reply, mppe) = match self.protocol {
                    AuthProtocol::Pap => (packet(PAP_ACK, identifier, &[0]), None),
                    AuthProtocol::ChapMd5 => {
                        (packet(CHAP_SUCCESS, identifier, b"Access granted"), None)
                    }
                    AuthProtocol::MsChapV1 => (packet(CHAP_SUCCESS, identifier, &[]), None),
                    AuthProtocol::MsChapV2 => {
                        let s = authenticator_response.unwrap_or_default();
                        let message = format!("{s} M=Access granted");
                        (packet(CHAP_SUCCESS, identifier, message.as_bytes()), mppe)
                    }
                };
                self.finish(identifier, reply, AuthOutput::Success { user, mppe })
            }
            Verdict::Unusable => self.failed(identifier, Some(user), Failure::SecretUnusable),
            Verdict::Unavailable => self.failed(identifier, Some(user), Failure::Unavailable),
            Verdict::Reject => {
                if self.protocol == AuthProtocol::MsChapV2 {
                    self.attempts += 1;
                    if self.attempts < self.config.max_attempts {
                        // RFC 2759 §6: E=691 with R=1 and a new challenge; the client answers
                        // it with identifier + 1.
                        self.challenge = next_challenge.to_vec();
                        self.identifier = identifier.wrapping_add(1);
                        let message = format!(
                            "E=691 R=1 C={} V=3 M=Authentication failure",
                            hex_upper(&self.challenge)
                        );
                        let reply = packet(CHAP_FAILURE, identifier, message.as_bytes());
                        return vec![
                            self.send(reply),
                            AuthOutput::StartTimer(self.config.pap_timeout),
                        ];
                    }
                }
                self.failed(identifier, Some(user), Failure::BadCredentials)
            }
        }
    }

    fn chap_failed(
        &mut self,
        identifier: u8,
        user: Option<String>,
        reason: Failure,
    ) -> Vec<AuthOutput> {
        let message: &[u8] = match self.protocol {
            AuthProtocol::MsChapV1 | AuthProtocol::MsChapV2 => {
                b"E=691 R=0 V=3 M=Authentication failure"
            }
            _ => b"Authentication failure",
        };
        let reply = packet(CHAP_FAILURE, identifier, message);
        self.finish(identifier, reply, AuthOutput::Failed { user, reason })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::wire::ppp::proto;

    use crate::auth::mschap::rfc2759::{AUTH_CHALLENGE, NT_RESPONSE, PEER_CHALLENGE};

    fn users(name: &str) -> Option<Secret> {
        match name {
            "User" => Some(Secret::Plain("clientPass".into())),
            "hashed" => Some(Secret::NtHash(mschap::nt_password_hash("clientPass"))),
            _ => None,
        }
    }

    fn ms_v2_response(id: u8, peer: [u8; 16], nt: [u8; 24], name: &[u8]) -> Vec<u8> {
        let mut body = vec![49];
        body.extend_from_slice(&peer);
        body.extend_from_slice(&[0; 8]);
        body.extend_from_slice(&nt);
        body.push(0);
        body.extend_from_slice(name);
        packet(CHAP_RESPONSE, id, &body)
    }

    fn sent(out: &[AuthOutput]) -> Vec<Vec<u8>> {
        out.iter()
            .filter_map(|o| match o {
                AuthOutput::Send { info, .. } => Some(info.clone()),
                _ => None,
            })
            .collect()
    }

    #[test]
    fn ms_chap_v2_rfc_2759_vector_succeeds_with_authenticator_response() {
        let mut a = Authenticator::new(AuthProtocol::MsChapV2, AuthConfig::default());
        let out = a.start(&AUTH_CHALLENGE, 0x42);
        let challenge = &sent(&out)[0];
        assert_eq!(challenge[0], CHAP_CHALLENGE);
        assert_eq!(challenge[4], 16);
        assert_eq!(&challenge[5..21], &AUTH_CHALLENGE);
        assert_eq!(&challenge[21..], b"pptpgw");
        let id = challenge[1];
        let out = a.receive(
            &ms_v2_response(id, PEER_CHALLENGE, NT_RESPONSE, b"User"),
            users,
            [9; 16],
        );
        let reply = &sent(&out)[0];
        assert_eq!(reply[0], CHAP_SUCCESS);
        assert_eq!(
            &reply[4..],
            b"S=407A5589115FD0D6209F510FE9C04566932CDA56 M=Access granted"
        );
        assert!(matches!(&out[2], AuthOutput::Success { user, mppe: Some(_) } if user == "User"));
        // A retransmitted response gets the same answer again.
        let again = a.receive(
            &ms_v2_response(id, PEER_CHALLENGE, NT_RESPONSE, b"User"),
            users,
            [9; 16],
        );
        assert_eq!(sent(&again), vec![reply.clone()]);
    }

    #[test]
    fn ms_chap_v2_wrong_password_gets_691_retry_then_disconnect() {
        let config = AuthConfig {
            max_attempts: 2,
            ..AuthConfig::default()
        };
        let mut a = Authenticator::new(AuthProtocol::MsChapV2, config);
        let out = a.start(&AUTH_CHALLENGE, 0x42);
        let id = sent(&out)[0][1];
        let mut wrong = NT_RESPONSE;
        wrong[0] ^= 1;
        let out = a.receive(
            &ms_v2_response(id, PEER_CHALLENGE, wrong, b"User"),
            users,
            [0xab; 16],
        );
        let failure = String::from_utf8(sent(&out)[0][4..].to_vec()).unwrap();
        assert_eq!(
            failure,
            format!(
                "E=691 R=1 C={} V=3 M=Authentication failure",
                "AB".repeat(16)
            )
        );
        assert!(!out.iter().any(|o| matches!(o, AuthOutput::Failed { .. })));
        // The retry answers the new challenge with identifier + 1; wrong again: R=0 and failed.
        let out = a.receive(
            &ms_v2_response(id.wrapping_add(1), PEER_CHALLENGE, wrong, b"User"),
            users,
            [0; 16],
        );
        assert_eq!(
            &sent(&out)[0][4..],
            b"E=691 R=0 V=3 M=Authentication failure"
        );
        assert!(out.contains(&AuthOutput::Failed {
            user: Some("User".into()),
            reason: Failure::BadCredentials
        }));
    }

    #[test]
    fn ms_chap_v2_retry_with_the_right_password_succeeds_and_nt_hash_secrets_work() {
        let mut a = Authenticator::new(AuthProtocol::MsChapV2, AuthConfig::default());
        let id = sent(&a.start(&AUTH_CHALLENGE, 0x42))[0][1];
        let out = a.receive(
            &ms_v2_response(id, PEER_CHALLENGE, [0; 24], b"hashed"),
            users,
            [7; 16],
        );
        assert_eq!(sent(&out)[0][0], CHAP_FAILURE);
        let hash = mschap::nt_password_hash("clientPass");
        let nt = mschap::generate_nt_response(&[7; 16], &PEER_CHALLENGE, b"hashed", &hash);
        let out = a.receive(
            &ms_v2_response(id.wrapping_add(1), PEER_CHALLENGE, nt, b"hashed"),
            users,
            [0; 16],
        );
        assert!(matches!(&out[2], AuthOutput::Success { user, .. } if user == "hashed"));
    }

    #[test]
    fn chap_md5() {
        let mut a = Authenticator::new(AuthProtocol::ChapMd5, AuthConfig::default());
        let challenge: [u8; 16] = core::array::from_fn(|i| i as u8 + 1);
        let id = sent(&a.start(&challenge, 1))[0][1];
        // RFC 1994 §4.1: MD5(identifier ‖ secret ‖ challenge).
        let good = Md5::new()
            .chain_update([id])
            .chain_update(b"clientPass")
            .chain_update(challenge)
            .finalize();
        let mut body = vec![16];
        body.extend_from_slice(&good);
        body.extend_from_slice(b"User");
        let out = a.receive(&packet(CHAP_RESPONSE, id, &body), users, [0; 16]);
        assert_eq!(sent(&out)[0][0], CHAP_SUCCESS);
        assert!(matches!(&out[2], AuthOutput::Success { mppe: None, .. }));

        // An NT-hash secret cannot verify CHAP-MD5; an unknown user fails like a wrong password.
        for (name, reason) in [
            ("hashed", Failure::SecretUnusable),
            ("nobody", Failure::BadCredentials),
        ] {
            let mut a = Authenticator::new(AuthProtocol::ChapMd5, AuthConfig::default());
            let id = sent(&a.start(&challenge, 1))[0][1];
            let mut body = vec![16];
            body.extend_from_slice(&good);
            body.extend_from_slice(name.as_bytes());
            let out = a.receive(&packet(CHAP_RESPONSE, id, &body), users, [0; 16]);
            assert_eq!(sent(&out)[0][0], CHAP_FAILURE);
            assert!(out.contains(&AuthOutput::Failed {
                user: Some(name.into()),
                reason
            }));
        }
    }

    #[test]
    /// Remote checks (RADIUS): the credentials go out, nothing is answered until the verdict, a
    /// repeated request meanwhile is not answered twice, and the verdict is answered exactly as a
    /// local check would be — MS-CHAPv2's E=691 retry included.
    fn remote_verdicts_answer_like_local_checks() {
        let remote = AuthConfig {
            remote: true,
            ..AuthConfig::default()
        };
        let mut a = Authenticator::new(AuthProtocol::MsChapV2, remote.clone());
        a.start(&AUTH_CHALLENGE, 7);
        let mut value = vec![49u8];
        value.extend_from_slice(&PEER_CHALLENGE);
        value.extend_from_slice(&[0; 8]);
        value.extend_from_slice(&NT_RESPONSE);
        value.push(0);
        value.extend_from_slice(b"User");
        let response = packet(CHAP_RESPONSE, 7, &value);
        let out = a.receive(&response, |_| panic!("no local lookup"), [1; 16]);
        let [AuthOutput::StopTimer, AuthOutput::Verify(creds)] = &out[..] else {
            panic!("{out:?}");
        };
        assert_eq!(creds.user(), "User");
        // The client repeats its response while we wait: silence, not a second Verify.
        assert!(a.receive(&response, |_| None, [1; 16]).is_empty());
        // A reject first: E=691 R=1 with a fresh challenge, as locally.
        let out = a.resolve(creds.clone(), Verdict::Reject, [2; 16]);
        let AuthOutput::Send { info, .. } = &out[0] else {
            panic!("{out:?}")
        };
        assert!(
            String::from_utf8_lossy(info).contains("E=691 R=1 C=0202"),
            "{out:?}"
        );
        // The verdict of the local check on the RFC 2759 vector, given as the remote one.
        let local = verify_local(creds, users("User"));
        let mut b = Authenticator::new(AuthProtocol::MsChapV2, remote);
        b.start(&AUTH_CHALLENGE, 7);
        let out = b.receive(&response, |_| None, [1; 16]);
        let AuthOutput::Verify(creds) = out[1].clone() else {
            panic!()
        };
        let out = b.resolve(creds, local, [1; 16]);
        let AuthOutput::Send { info, .. } = &out[1] else {
            panic!("{out:?}")
        };
        assert!(
            String::from_utf8_lossy(info).contains("S=407A5589115FD0D6209F510FE9C04566932CDA56"),
            "{out:?}"
        );
        assert!(matches!(out[2], AuthOutput::Success { mppe: Some(_), .. }));
        // Nobody could check: a failure that says so.
        let mut c = Authenticator::new(
            AuthProtocol::Pap,
            AuthConfig {
                remote: true,
                ..AuthConfig::default()
            },
        );
        c.start(&[0; 16], 0);
        let out = c.receive(
            &packet(PAP_REQUEST, 5, &[1, b'u', 1, b'p']),
            |_| None,
            [0; 16],
        );
        let AuthOutput::Verify(creds) = out[1].clone() else {
            panic!()
        };
        let out = c.resolve(creds, Verdict::Unavailable, [0; 16]);
        assert_eq!(
            out[2],
            AuthOutput::Failed {
                user: Some("u".into()),
                reason: Failure::Unavailable
            }
        );
    }

    #[test]
    fn pap_plain_and_nt_hash() {
        for (user, pass, ok) in [
            ("User", "clientPass", true),
            ("hashed", "clientPass", true),
            ("User", "nope", false),
        ] {
            let mut a = Authenticator::new(AuthProtocol::Pap, AuthConfig::default());
            assert_eq!(
                a.start(&[0; 16], 0),
                vec![AuthOutput::StartTimer(Duration::from_secs(30))]
            );
            let mut body = vec![user.len() as u8];
            body.extend_from_slice(user.as_bytes());
            body.push(pass.len() as u8);
            body.extend_from_slice(pass.as_bytes());
            let out = a.receive(&packet(PAP_REQUEST, 5, &body), users, [0; 16]);
            assert_eq!(
                out[1],
                AuthOutput::Send {
                    protocol: proto::PAP,
                    info: packet(if ok { PAP_ACK } else { PAP_NAK }, 5, &[0])
                }
            );
            assert_eq!(
                matches!(out[2], AuthOutput::Success { .. }),
                ok,
                "{user}/{pass}"
            );
        }
    }

    #[test]
    fn challenge_retransmits_then_times_out_and_garbage_is_dropped() {
        let config = AuthConfig {
            max_challenges: 3,
            ..AuthConfig::default()
        };
        let mut a = Authenticator::new(AuthProtocol::MsChapV2, config);
        let first = sent(&a.start(&AUTH_CHALLENGE, 0x42));
        for bad in [
            &[][..],
            &[2u8, 1, 0],
            &[2, 1, 0, 200, 1],
            &[2, 1, 0, 2],
            &[9, 1, 0, 4],
        ] {
            assert!(a.receive(bad, users, [0; 16]).is_empty(), "{bad:?}");
        }
        // A response with the wrong identifier is ignored.
        let id = first[0][1].wrapping_add(5);
        assert!(
            a.receive(
                &ms_v2_response(id, PEER_CHALLENGE, NT_RESPONSE, b"User"),
                users,
                [0; 16]
            )
            .is_empty()
        );
        assert_eq!(sent(&a.timeout()), first);
        assert_eq!(sent(&a.timeout()), first);
        assert_eq!(
            a.timeout(),
            vec![AuthOutput::Failed {
                user: None,
                reason: Failure::Timeout
            }]
        );
        assert!(a.timeout().is_empty());
    }
}
