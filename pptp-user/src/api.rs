//! The local control API: a Unix socket (mode 0600, root only) speaking one JSON request per
//! line and one JSON answer per line. `pptpgw sessions|kill|stats` are its clients; scripts may
//! speak it directly (`echo '{"cmd":"stats"}' | socat - UNIX:/run/pptpgw/api.sock`).

use std::{net::Ipv4Addr, path::Path};

use serde::{Deserialize, Serialize};
use tokio::{
    io::{AsyncBufReadExt as _, AsyncWriteExt as _, BufReader},
    net::UnixStream,
};

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "cmd", rename_all = "kebab-case")]
pub enum Request {
    /// Global counters: controller, data path (summed over CPUs), drop reasons, maps, pools.
    Stats,
    /// Every session with its addresses, uptime and data-path counters.
    Sessions,
    /// Clean teardown (LCP Terminate-Request, then Call-Disconnect-Notify) of the selected ones.
    Kill(Selector),
    /// Re-read config and secrets (as SIGHUP).
    Reload,
    /// Hand everything over to the binary now installed at our path (as SIGUSR2 to the
    /// supervisor): sessions, sockets and the data path carry on.
    Upgrade,
}

/// Which sessions a kill applies to.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Selector {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub id: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub user: Option<String>,
    /// The assigned (inner) or the client's outer address.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ip: Option<Ipv4Addr>,
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub all: bool,
}

impl Selector {
    pub fn is_empty(&self) -> bool {
        self.id.is_none() && self.user.is_none() && self.ip.is_none() && !self.all
    }

    pub fn matches(&self, s: &crate::gateway::SessionView) -> bool {
        self.all
            || self.id == Some(s.id)
            || (self.user.is_some() && self.user == s.user)
            || self
                .ip
                .is_some_and(|ip| s.assigned == Some(ip) || s.peer == ip)
    }
}

/// Sends one request and returns the answer.
pub async fn call(socket: &Path, request: &Request) -> anyhow::Result<serde_json::Value> {
    use anyhow::Context as _;
    let stream = UnixStream::connect(socket)
        .await
        .with_context(|| format!("connect to {} (is pptpgw running?)", socket.display()))?;
    let (read, mut write) = stream.into_split();
    let mut line = serde_json::to_string(request)?;
    line.push('\n');
    write.write_all(line.as_bytes()).await?;
    let mut answer = String::new();
    BufReader::new(read).read_line(&mut answer).await?;
    let value: serde_json::Value = serde_json::from_str(&answer).context("answer is not JSON")?;
    if let Some(e) = value.get("error").and_then(|e| e.as_str()) {
        anyhow::bail!("{e}");
    }
    Ok(value)
}
