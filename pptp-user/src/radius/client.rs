//! The RADIUS client: a request goes to the servers in order (the one that answered last first),
//! each tried `retries` times more after `timeout`; a reply counts only if its identifier, its
//! Response Authenticator and its Message-Authenticator (required: the BlastRADIUS fix) are right.
//!
//! One UDP socket per request, connected to the server: the identifier space is per source port,
//! so concurrent requests never collide, and nothing else can answer into the socket.

use std::{
    net::SocketAddr,
    sync::atomic::{AtomicU64, AtomicUsize, Ordering},
    time::Duration,
};

use thiserror::Error;
use tokio::net::UdpSocket;

use super::packet::{self, Packet};

/// A server (its secret is never printed).
#[derive(Clone, PartialEq, Eq)]
pub struct Server {
    pub addr: SocketAddr,
    pub secret: Vec<u8>,
}

impl std::fmt::Debug for Server {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Server({})", self.addr)
    }
}

#[derive(Clone, Debug)]
pub struct ClientConfig {
    pub servers: Vec<Server>,
    /// Wait for a reply this long before sending again.
    pub timeout: Duration,
    /// Sends after the first, per server.
    pub retries: u32,
}

#[derive(Debug, Error)]
pub enum RadiusError {
    #[error("no RADIUS server answered ({tried} tried)")]
    NoAnswer { tried: usize },
    #[error("RADIUS socket: {0}")]
    Io(#[from] std::io::Error),
}

/// A verified reply, with what decrypting its attributes needs.
#[derive(Clone, Debug)]
pub struct Reply {
    pub bytes: Vec<u8>,
    /// The request's authenticator (MS-MPPE keys are encrypted with it).
    pub request_authenticator: [u8; 16],
    pub secret: Vec<u8>,
    pub server: SocketAddr,
}

impl Reply {
    pub fn packet(&self) -> Packet<'_> {
        Packet::parse(&self.bytes).expect("verified when received")
    }
}

/// Counters for `/metrics` and `stats`.
#[derive(Debug, Default)]
pub struct ClientStats {
    pub requests: AtomicU64,
    pub retransmits: AtomicU64,
    pub failovers: AtomicU64,
    pub timeouts: AtomicU64,
    /// Replies dropped: wrong identifier, authenticator or Message-Authenticator, malformed.
    pub bad_replies: AtomicU64,
}

#[derive(Debug)]
pub struct Client {
    config: ClientConfig,
    /// The server that answered last: tried first.
    preferred: AtomicUsize,
    pub stats: ClientStats,
}

/// What a request needs to be built for one server: its secret, the identifier and (for
/// Access-Requests) the random authenticator to use.
pub struct Attempt<'a> {
    pub secret: &'a [u8],
    pub identifier: u8,
    pub authenticator: [u8; 16],
}

impl Client {
    pub fn new(config: ClientConfig) -> Self {
        Self {
            config,
            preferred: AtomicUsize::new(0),
            stats: ClientStats::default(),
        }
    }

    pub fn servers(&self) -> &[Server] {
        &self.config.servers
    }

    /// Sends what `build` makes for each server in turn until one gives a verified reply.
    /// `random` supplies identifiers and authenticators.
    pub async fn request(
        &self,
        build: impl Fn(&Attempt) -> Vec<u8>,
        mut random: impl FnMut() -> [u8; 16],
    ) -> Result<Reply, RadiusError> {
        self.stats.requests.fetch_add(1, Ordering::Relaxed);
        let n = self.config.servers.len();
        let first = self.preferred.load(Ordering::Relaxed) % n.max(1);
        for k in 0..n {
            let i = (first + k) % n;
            if k > 0 {
                self.stats.failovers.fetch_add(1, Ordering::Relaxed);
            }
            let server = &self.config.servers[i];
            let r = random();
            let attempt = Attempt {
                secret: &server.secret,
                identifier: r[0],
                authenticator: r,
            };
            let bytes = build(&attempt);
            // The authenticator actually sent (accounting computes its own).
            let sent_auth: [u8; 16] = bytes[4..20].try_into().expect("a RADIUS header");
            match self
                .exchange(server, &bytes, attempt.identifier, &sent_auth)
                .await
            {
                Ok(Some(reply)) => {
                    self.preferred.store(i, Ordering::Relaxed);
                    return Ok(reply);
                }
                Ok(None) => {
                    tracing::warn!(server = %server.addr, "RADIUS server did not answer");
                }
                Err(e) => {
                    tracing::warn!(server = %server.addr, error = %e, "RADIUS server unreachable");
                }
            }
        }
        Err(RadiusError::NoAnswer { tried: n })
    }

    async fn exchange(
        &self,
        server: &Server,
        bytes: &[u8],
        identifier: u8,
        request_authenticator: &[u8; 16],
    ) -> Result<Option<Reply>, RadiusError> {
        let local: SocketAddr = if server.addr.is_ipv4() {
            "0.0.0.0:0".parse().expect("literal")
        } else {
            "[::]:0".parse().expect("literal")
        };
        let sock = UdpSocket::bind(local).await?;
        sock.connect(server.addr).await?;
        let mut buf = vec![0u8; packet::MAX_LEN];
        for send in 0..=self.config.retries {
            if send > 0 {
                self.stats.retransmits.fetch_add(1, Ordering::Relaxed);
            }
            // A refused port (ICMP) shows as an error on a connected socket: try again/next.
            if sock.send(bytes).await.is_err() {
                continue;
            }
            let deadline = tokio::time::Instant::now() + self.config.timeout;
            loop {
                let n = match tokio::time::timeout_at(deadline, sock.recv(&mut buf)).await {
                    Err(_) => {
                        self.stats.timeouts.fetch_add(1, Ordering::Relaxed);
                        break;
                    }
                    Ok(Err(_)) => break,
                    Ok(Ok(n)) => n,
                };
                // Message-Authenticator is required on Access-* replies (BlastRADIUS);
                // Accounting-Response carries none.
                let ok = Packet::parse(&buf[..n]).is_ok_and(|p| {
                    p.identifier == identifier
                        && packet::is_reply_code(p.code)
                        && p.response_authentic(request_authenticator, &server.secret)
                        && (p.code == packet::ACCOUNTING_RESPONSE
                            || p.message_authentic(Some(request_authenticator), &server.secret))
                });
                if !ok {
                    self.stats.bad_replies.fetch_add(1, Ordering::Relaxed);
                    tracing::warn!(server = %server.addr, "RADIUS reply dropped: not authentic (identifier, authenticator or Message-Authenticator)");
                    continue;
                }
                let len = Packet::parse(&buf[..n]).map_or(n, |p| p.bytes.len());
                return Ok(Some(Reply {
                    bytes: buf[..len].to_vec(),
                    request_authenticator: *request_authenticator,
                    secret: server.secret.clone(),
                    server: server.addr,
                }));
            }
        }
        Ok(None)
    }
}
