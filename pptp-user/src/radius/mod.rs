//! RADIUS (RFC 2865/2866, RFC 2548's Microsoft attributes, RFC 3579's Message-Authenticator):
//! the codec (`packet`, `dict`, pure), the client with fail-over (`client`, tokio), and what an
//! authentication asks and what its reply means (`access`, pure).

pub mod access;
pub mod accounting;
pub mod client;
pub mod dict;
pub mod dynamic;
pub mod packet;

use std::{net::Ipv4Addr, sync::Arc};

use crate::auth::authenticator::{Credentials, Verdict};

/// What the shell holds: the client and who we are to the servers.
pub struct Radius {
    pub client: client::Client,
    pub nas_ip: Option<Ipv4Addr>,
    pub nas_identifier: String,
}

impl std::fmt::Debug for Radius {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let servers: Vec<_> = self.client.servers().iter().map(|s| s.addr).collect();
        f.debug_struct("Radius").field("servers", &servers).finish()
    }
}

impl Radius {
    /// Checks a session's credentials: Accept/Reject as the server says; `Unavailable` when no
    /// server answered (the core applies `when_unreachable`).
    pub async fn authenticate(
        self: Arc<Self>,
        creds: Credentials,
        peer: Ipv4Addr,
        local: Ipv4Addr,
        call_id: u16,
    ) -> (Verdict, access::Authorization) {
        let ctx = access::NasContext {
            nas_ip: self.nas_ip,
            nas_identifier: self.nas_identifier.clone(),
            calling: peer,
            called: local,
            nas_port: u32::from(call_id),
        };
        let reply = self
            .client
            .request(|a| access::access_request(&creds, &ctx, a), random16)
            .await;
        match reply {
            Ok(reply) => {
                let (v, authz) = access::verdict(&reply, &creds);
                tracing::info!(
                    user = creds.user(),
                    server = %reply.server,
                    accepted = matches!(v, Verdict::Accept { .. }),
                    "RADIUS answered"
                );
                (v, authz)
            }
            Err(e) => {
                tracing::warn!(user = creds.user(), error = %e, "RADIUS authentication unavailable");
                (Verdict::Unavailable, access::Authorization::default())
            }
        }
    }
}

/// 16 bytes from the kernel's CSPRNG: Request Authenticators must be unpredictable
/// (RFC 2865 §3), and identifiers may as well be.
pub fn random16() -> [u8; 16] {
    let mut b = [0u8; 16];
    // SAFETY: `b` is writable for its length; getrandom(2) fills at most that.
    let n = unsafe { libc::getrandom(b.as_mut_ptr().cast(), b.len(), 0) };
    assert_eq!(n, 16, "getrandom(2) failed");
    b
}
