//! A running `pptpgw` between three namespaces, for end-to-end tests:
//!
//! ```text
//!  client ns                 gateway ns                          server ns
//!  c0 198.51.100.7/24 ── wan0 198.51.100.1/24 (XDP)   lan0 203.0.113.1/24 ── s0 203.0.113.5/24
//!  (+ .8 .9 .10 ...)         pptp0 (routes to clients)
//! ```
//!
//! The gateway is the real binary with a real config file; tests talk to it through its control
//! API and read its log. Dropping the rig kills the gateway and removes the namespaces and files.

use std::{
    net::Ipv4Addr,
    path::PathBuf,
    process::{Child, Command, Output, Stdio},
    time::{Duration, Instant},
};

use pptp_user::api::{self, Request};
use serde_json::Value;

use crate::{
    netns::{Netns, run_ok, veth_pair, veth_pair_queues},
    pptp_client_bin, pptpgw_bin,
};

pub const GW_WAN: Ipv4Addr = Ipv4Addr::new(198, 51, 100, 1);
pub const CLIENT: Ipv4Addr = Ipv4Addr::new(198, 51, 100, 7);
pub const SERVER: Ipv4Addr = Ipv4Addr::new(203, 0, 113, 5);
pub const TUNNEL_LOCAL: Ipv4Addr = Ipv4Addr::new(10, 99, 0, 1);

/// Users every rig knows (chap-secrets format).
pub const SECRETS: &str = "alice * s3cret *\nbob * hunter2 *\n";

pub struct Rig {
    pub client: Netns,
    pub gw: Netns,
    pub server: Netns,
    dir: PathBuf,
    pub api_socket: PathBuf,
    log: PathBuf,
    child: Option<Child>,
    /// WAN interfaces in the gateway namespace (`--wan`).
    pub wan: Vec<String>,
    /// Address clients dial by default.
    pub dial: Ipv4Addr,
}

/// A config for the rig: the given TOML after the rig's own `[ppp]` settings, with MPPE off
/// (`deny`): these tests are about everything but encryption, and the project's client dials in
/// plain unless told to encrypt. Encrypted sessions use [`config_mppe`].
pub fn config(extra: &str) -> String {
    config_mppe("deny", extra)
}

/// `[forwarding] mode = "xdp"` with the rig's LAN interface: a config's `extra` for tests that run
/// in both forwarding modes.
pub const XDP_FORWARDING: &str = "[forwarding]\nmode = \"xdp\"\nlan = [\"lan0\"]\n";

/// A config for the rig with this `[ppp] mppe` policy.
pub fn config_mppe(policy: &str, extra: &str) -> String {
    format!("[ppp]\ntunnel_local = \"{TUNNEL_LOCAL}\"\nmppe = \"{policy}\"\n\n{extra}\n",)
}

impl Rig {
    /// Namespaces and links only (for tests that add their own addresses first).
    pub fn topology(tag: &str) -> Self {
        let client = Netns::new(&format!("{tag}c"));
        let gw = Netns::new(&format!("{tag}g"));
        let server = Netns::new(&format!("{tag}s"));
        veth_pair(&client, "c0", &gw, "wan0", 0x41);
        // The LAN has two queues, each sent into from its own CPU (XPS), like a multi-queue NIC:
        // in `xdp` mode one session's packets may arrive on both CPUs at once.
        veth_pair_queues(&gw, "lan0", &server, "s0", 0x42, 2);
        for (queue, cpus) in [(0, "1"), (1, "2")] {
            run_ok(server.command("sh").arg("-c").arg(format!(
                "echo {cpus} > /sys/class/net/s0/queues/tx-{queue}/xps_cpus"
            )));
        }
        client.ip(&["addr", "add", &format!("{CLIENT}/24"), "dev", "c0"]);
        gw.ip(&["addr", "add", &format!("{GW_WAN}/24"), "dev", "wan0"]);
        gw.ip(&["addr", "add", "203.0.113.1/24", "dev", "lan0"]);
        server.ip(&["addr", "add", &format!("{SERVER}/24"), "dev", "s0"]);
        server.ip(&["route", "add", "default", "via", "203.0.113.1"]);
        run_ok(gw.command("sysctl").args(["-qw", "net.ipv4.ip_forward=1"]));
        // Frames the gateway's XDP redirects into c0's and s0's peers need NAPI there: GRO on.
        run_ok(client.command("ethtool").args(["-K", "c0", "gro", "on"]));
        run_ok(server.command("ethtool").args(["-K", "s0", "gro", "on"]));
        // The server stands for the network: what it sends carries whole checksums, as on a
        // wire (a veth otherwise hands its peer's XDP partial ones; see README, xdp mode).
        run_ok(server.command("ethtool").args(["-K", "s0", "tx", "off"]));
        Self::from_parts(tag, client, gw, server, &["wan0"], GW_WAN)
    }

    /// A rig over namespaces the caller built: `wan` are the gateway's WAN interfaces, `dial` the
    /// address clients dial unless told otherwise.
    pub fn from_parts(
        tag: &str,
        client: Netns,
        gw: Netns,
        server: Netns,
        wan: &[&str],
        dial: Ipv4Addr,
    ) -> Self {
        let dir = std::env::temp_dir().join(format!("pptpgw-rig-{}-{tag}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).expect("rig dir");
        Self {
            client,
            gw,
            server,
            api_socket: dir.join("api.sock"),
            log: dir.join("pptpgw.log"),
            dir,
            child: None,
            wan: wan.iter().map(|w| w.to_string()).collect(),
            dial,
        }
    }

    /// The topology plus a running gateway with this config and secrets.
    pub fn start(tag: &str, config: &str, secrets: &str) -> Self {
        let mut rig = Self::topology(tag);
        rig.launch(config, secrets);
        rig
    }

    /// Writes the files and starts `pptpgw run`; returns once its API answers.
    pub fn launch(&mut self, config: &str, secrets: &str) {
        assert!(self.child.is_none(), "gateway already running");
        let secrets_path = self.dir.join("chap-secrets");
        std::fs::write(&secrets_path, secrets).expect("write secrets");
        let config_path = self.dir.join("pptpgw.toml");
        std::fs::write(&config_path, config).expect("write config");
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.log)
            .expect("log file");
        let child = self
            .gw
            .command(pptpgw_bin())
            .arg("run")
            .arg("--config")
            .arg(&config_path)
            .arg("--secrets")
            .arg(&secrets_path)
            .arg("--api-socket")
            .arg(&self.api_socket)
            .args(self.wan.iter().flat_map(|w| ["--wan", w.as_str()]))
            .args(["--xdp-mode", "native"])
            .arg("--pin-dir")
            .arg(test_bpffs())
            .env("RUST_LOG", "info,pptp_user=debug")
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .expect("spawn pptpgw");
        self.child = Some(child);
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            if let Some(status) = self.child.as_mut().and_then(|c| c.try_wait().unwrap()) {
                self.child = None;
                panic!("pptpgw exited at start: {status}\n{}", self.log());
            }
            if self.try_api(&Request::Stats).is_ok() {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "pptpgw API not up in 30 s\n{}",
                self.log()
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// Rewrites the config and secrets files in place (for reload tests).
    pub fn rewrite(&self, config: &str, secrets: &str) {
        std::fs::write(self.dir.join("pptpgw.toml"), config).expect("write config");
        std::fs::write(self.dir.join("chap-secrets"), secrets).expect("write secrets");
    }

    /// The pid of `pptpgw run`: the supervisor (signals to it reach the worker).
    pub fn supervisor_pid(&self) -> u32 {
        self.child.as_ref().expect("gateway running").id()
    }

    /// The worker's pid (the process that runs the sessions), waiting up to 10 s for one.
    pub fn pid(&self) -> u32 {
        let sup = self.supervisor_pid();
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            let children = std::fs::read_to_string(format!("/proc/{sup}/task/{sup}/children"))
                .unwrap_or_default();
            if let Some(p) = children
                .split_whitespace()
                .next()
                .and_then(|p| p.parse().ok())
            {
                return p;
            }
            assert!(
                Instant::now() < deadline,
                "no worker under supervisor {sup}\n{}",
                self.log()
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// SIGKILL to the worker only (a crash): the supervisor starts another, which takes the
    /// sessions over. Returns once the new worker's API answers, with its pid.
    pub fn kill_worker(&self) -> u32 {
        let old = self.pid();
        // SAFETY: kill(2) on the worker under our supervisor.
        unsafe { libc::kill(old as i32, libc::SIGKILL) };
        self.wait_new_worker(old)
    }

    /// Waits (30 s) for a worker other than `old` whose API answers; its pid.
    pub fn wait_new_worker(&self, old: u32) -> u32 {
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            let sup = self.supervisor_pid();
            let children = std::fs::read_to_string(format!("/proc/{sup}/task/{sup}/children"))
                .unwrap_or_default();
            let new = children
                .split_whitespace()
                .filter_map(|p| p.parse::<u32>().ok())
                .find(|&p| p != old);
            if let Some(p) = new
                && self.try_api(&Request::Stats).is_ok()
            {
                return p;
            }
            assert!(
                Instant::now() < deadline,
                "no new worker in 30 s\n{}",
                self.log()
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// The session journal (next to the API socket).
    pub fn journal(&self) -> PathBuf {
        self.dir.join("sessions.journal")
    }

    /// Where the gateway of this rig pins its data path.
    pub fn pin_dir(&self) -> PathBuf {
        test_bpffs().join(format!("net-{}", self.gw.inode()))
    }

    pub fn signal(&self, signal: i32) {
        // SAFETY: kill(2) on our own child's pid.
        unsafe { libc::kill(self.supervisor_pid() as i32, signal) };
    }

    pub fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    fn try_api(&self, request: &Request) -> anyhow::Result<Value> {
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()?
            .block_on(api::call(&self.api_socket, request))
    }

    pub fn api(&self, request: &Request) -> Value {
        self.try_api(request)
            .unwrap_or_else(|e| panic!("API {request:?}: {e:#}\n{}", self.log()))
    }

    pub fn stats(&self) -> Value {
        self.api(&Request::Stats)
    }

    pub fn sessions(&self) -> Vec<Value> {
        self.api(&Request::Sessions)["sessions"]
            .as_array()
            .cloned()
            .unwrap_or_default()
    }

    /// Our routes (protocol 241) in the gateway namespace, one line each.
    pub fn routes(&self) -> Vec<String> {
        String::from_utf8_lossy(&self.gw.ip(&["route", "show", "proto", "241"]).stdout)
            .lines()
            .map(str::to_string)
            .collect()
    }

    /// `pptp-client` in the client namespace, dialling the gateway, run to completion.
    pub fn client(&self, args: &[&str]) -> Output {
        self.client_command(args).output().expect("run pptp-client")
    }

    pub fn client_command(&self, args: &[&str]) -> Command {
        let mut c = self.client.command(pptp_client_bin());
        c.args(["--server", &self.dial.to_string()]).args(args);
        c
    }

    /// Waits (bounded) until the gateway holds no session, lease, map entry or route, and fails
    /// with what is left otherwise.
    pub fn assert_clean(&self) {
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            let s = self.stats();
            let left = (
                s["sessions"]["total"].as_u64(),
                s["leases"].as_u64(),
                s["maps"]["sessions"].as_u64(),
                s["maps"]["clients"].as_u64(),
                s["routes"].as_u64(),
            );
            let routes = self.routes();
            if left == (Some(0), Some(0), Some(0), Some(0), Some(0)) && routes.is_empty() {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "left behind (sessions, leases, map sessions, map clients, routes) = {left:?}, \
                 routes {routes:?}\n{}",
                self.log()
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// SIGTERM; the gateway must exit cleanly within 15 s. Returns its log.
    pub fn stop(&mut self) -> String {
        let Some(mut child) = self.child.take() else {
            return self.log();
        };
        let Some(status) = crate::terminate(&mut child, Duration::from_secs(15)) else {
            panic!("pptpgw did not exit within 15 s of SIGTERM\n{}", self.log());
        };
        let log = self.log();
        assert!(status.success(), "pptpgw exit {status}\n{log}");
        log
    }

    /// SIGKILL to the whole tree (supervisor and worker): a crash, leaving routes and whatever
    /// else behind. Returns once the worker is gone too.
    pub fn crash(&mut self) {
        let Some(mut child) = self.child.take() else {
            return;
        };
        let sup = child.id();
        let worker = std::fs::read_to_string(format!("/proc/{sup}/task/{sup}/children"))
            .ok()
            .and_then(|c| {
                c.split_whitespace()
                    .next()
                    .and_then(|p| p.parse::<u32>().ok())
            });
        let _ = child.kill();
        let _ = child.wait();
        if let Some(w) = worker {
            // It dies with its supervisor (PR_SET_PDEATHSIG); make sure before going on.
            // SAFETY: kill(2) on the worker we started.
            unsafe { libc::kill(w as i32, libc::SIGKILL) };
            let deadline = Instant::now() + Duration::from_secs(5);
            while Instant::now() < deadline
                && std::fs::read_to_string(format!("/proc/{w}/status"))
                    .is_ok_and(|s| !s.contains("State:\tZ"))
            {
                std::thread::sleep(Duration::from_millis(20));
            }
        }
    }
}

impl Drop for Rig {
    fn drop(&mut self) {
        self.crash();
        // What a crashed gateway left pinned (its links die with the namespace, its maps here).
        let _ = std::fs::remove_dir_all(self.pin_dir());
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// A bpf filesystem every test's gateway sees: `ip netns exec` gives each command a /sys of its
/// own (no bpffs there), so pins under /sys/fs/bpf would die with the process tree. Mounted
/// once, under /run (which the namespaces share).
pub fn test_bpffs() -> PathBuf {
    static ONCE: std::sync::Once = std::sync::Once::new();
    let dir = PathBuf::from("/run/pptpgw-tests/bpf");
    ONCE.call_once(|| {
        std::fs::create_dir_all(&dir).expect("create /run/pptpgw-tests/bpf");
        let fstype = Command::new("stat")
            .args(["-f", "-c", "%T"])
            .arg(&dir)
            .output()
            .expect("stat");
        if !String::from_utf8_lossy(&fstype.stdout).contains("bpf") {
            run_ok(Command::new("mount").args(["-t", "bpf", "bpf"]).arg(&dir));
        }
    });
    dir
}

/// `key=value` pairs of the client's line that starts with `event`.
pub fn client_line(
    stdout: &[u8],
    event: &str,
) -> Option<std::collections::HashMap<String, String>> {
    let text = String::from_utf8_lossy(stdout);
    let line = text
        .lines()
        .find(|l| l.split_whitespace().next() == Some(event))?;
    Some(
        line.split_whitespace()
            .skip(1)
            .filter_map(|kv| kv.split_once('='))
            .map(|(k, v)| (k.to_string(), v.trim_matches('"').to_string()))
            .collect(),
    )
}

/// A current-thread tokio runtime (for code run inside `Netns::enter`).
pub fn rt() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("tokio runtime")
}

/// A dial of the rig's gateway as `user`, our call ID `call_id`, any source address.
pub fn dial_config(rig: &Rig, user: &str, password: &str, call_id: u16) -> pptp_client::DialConfig {
    pptp_client::DialConfig {
        server: rig.dial,
        port: 1723,
        local: None,
        peer: pptp_client::peer::PeerConfig {
            user: user.into(),
            password: password.into(),
            ..pptp_client::peer::PeerConfig::default()
        },
        call_id,
        timeout: Duration::from_secs(30),
    }
}

/// A number in a JSON answer of the API (`stats`, `sessions`), 0 when absent.
pub fn num(v: &Value, path: &[&str]) -> u64 {
    let mut v = v;
    for p in path {
        v = &v[*p];
    }
    v.as_u64().unwrap_or(0)
}
