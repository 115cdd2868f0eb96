//! `cargo xtask interop`: Debian's pptp-linux + pppd in a qemu VM dial `pptpgw run`, once per
//! forwarding mode. In `stack` mode the client pings and moves iperf3 traffic to the gateway's
//! own tunnel address; in `xdp` mode to a server in a namespace behind the gateway's LAN
//! interface, so the traffic is forwarded by XDP both ways; a third pass authenticates the client
//! through a FreeRADIUS in the gateway's namespace (MS-CHAPv2 with RADIUS's MPPE keys, CHAP-MD5,
//! PAP) with an empty secrets file; a fourth kills the gateway's worker (SIGKILL) under the
//! client's pings every 0.2 s (hitless restart): the link must never end and ≥ 99 % of the
//! pings be answered; a fifth gives the client IPv6 (IPV6CP, SLAAC from the gateway's Router
//! Advertisement) and pings and moves iperf3 over IPv6 to the LAN server, MPPE-encrypted and
//! forwarded by XDP both ways.

use std::{
    path::Path,
    process::{Command, Stdio},
    sync::{
        Arc,
        atomic::{AtomicBool, Ordering},
    },
    time::{Duration, Instant},
};

use anyhow::{Context as _, bail};

use crate::{cargo, sh, vm, vm_cache, workspace_root};

/// The tests' FreeRADIUS fixture (self-contained: std only), for the RADIUS pass.
#[allow(dead_code)]
#[path = "../../tests/src/freeradius.rs"]
mod freeradius;

/// One run of the VM against one gateway.
#[derive(Clone, Copy)]
struct Pass {
    name: &'static str,
    /// The gateway's config besides `[ppp]` (`[forwarding]`, `[radius]`).
    extra: &'static str,
    /// A FreeRADIUS in the gateway's namespace checks the users (the secrets file is empty).
    radius: bool,
    /// What the real client does against each `[ppp] mppe` policy ("POLICY CASE" per line; the
    /// cases are the job's: mppe = require-mppe-128, plain = nomppe, any = pppd's default,
    /// chapmd5 / pap = that method without MPPE, tt1-3 = require-mppe-128 with pptp-linux's
    /// reordering, mppe-stateful = require-mppe-128 mppe-stateful). The policy "stateful" is
    /// `require` with `mppe_stateful = "force"`.
    cases: &'static str,
    /// The cases the gateway must refuse (the client gives up by itself, never reaching IPCP).
    refused: &'static [&'static str],
    /// iperf3 transfers (case, bytes each way).
    iperf: &'static [(&'static str, &'static str)],
    /// Sessions that come up encrypted (of them stateful), and in plain.
    encrypted: usize,
    stateful: usize,
    plain: usize,
    /// Counters that must have moved.
    moved: &'static [&'static str],
    /// The hitless-restart job instead of the cases: the worker is killed under pings.
    restart: bool,
    /// The IPv6 job instead of the cases.
    ipv6: bool,
    /// Lines under the gateway's `[ppp]` beside `mppe`, and counters that must not move.
    ppp: &'static str,
    zero: &'static [&'static str],
}

const STACK: Pass = Pass {
    name: "stack",
    extra: "",
    radius: false,
    cases: "require mppe
stateful mppe-stateful
require plain
require pap
require tt1
require tt2
require tt3
prefer plain
prefer mppe
allow any
allow plain
deny mppe
deny chapmd5
deny pap
",
    refused: &["require-plain", "require-pap", "deny-mppe"],
    iperf: &[("require-mppe", "50M"), ("stateful-mppe-stateful", "20M")],
    // require mppe, stateful, tt1-3, prefer mppe; prefer plain, allow any and plain (pppd asks
    // for no MPPE unless told to), deny chapmd5 and pap.
    encrypted: 6,
    stateful: 1,
    plain: 5,
    moved: &["xdp_decap", "encapsulated"],
    restart: false,
    ipv6: false,
    ppp: "",
    zero: &[],
};

/// The server behind the LAN in `xdp` mode (the tunnel address in `stack` mode).
const LAN_SERVER: &str = "203.0.113.5";

const XDP: Pass = Pass {
    name: "xdp",
    extra: "[forwarding]\nmode = \"xdp\"\nlan = [\"lan0\"]\n",
    radius: false,
    cases: "require mppe
stateful mppe-stateful
require tt2
allow plain
deny chapmd5
deny pap
",
    refused: &[],
    iperf: &[
        ("require-mppe", "50M"),
        ("stateful-mppe-stateful", "20M"),
        ("allow-plain", "50M"),
    ],
    encrypted: 3,
    stateful: 1,
    plain: 3,
    moved: &["forward_xdp", "lan_seen", "encapsulated"],
    restart: false,
    ipv6: false,
    ppp: "",
    zero: &[],
};

/// The real client authenticated by RADIUS: MS-CHAPv2 with MPPE keys from FreeRADIUS, CHAP-MD5
/// and PAP.
const RADIUS: Pass = Pass {
    name: "radius",
    extra: "[radius]\n[[radius.servers]]\naddress = \"127.0.0.1:1812\"\nsecret = \"radsecret1\"\n",
    radius: true,
    cases: "require mppe
deny chapmd5
deny pap
",
    refused: &[],
    iperf: &[("require-mppe", "20M")],
    encrypted: 1,
    stateful: 0,
    plain: 2,
    moved: &["xdp_decap", "encapsulated"],
    restart: false,
    ipv6: false,
    ppp: "",
    zero: &[],
};

/// The real client across a kill -9 of the worker (MPPE stateless, `stack` mode).
const RESTART: Pass = Pass {
    name: "restart",
    extra: "",
    radius: false,
    cases: "",
    refused: &[],
    iperf: &[],
    encrypted: 1,
    stateful: 0,
    plain: 0,
    moved: &["xdp_decap", "encapsulated"],
    restart: true,
    ipv6: false,
    ppp: "",
    zero: &[],
};

/// The real client with IPv6 (MPPE-128, `xdp` mode): all its data in XDP both ways. FreeRADIUS
/// authenticates it and assigns its /64 (Framed-IPv6-Prefix, outside the configured pool6).
const IPV6: Pass = Pass {
    name: "ipv6",
    extra: "[forwarding]\nmode = \"xdp\"\nlan = [\"lan0\"]\n\n[[pool6]]\nname = \"default\"\nprefixes = [\"2001:db8:100::/56\"]\n\n[[pool6]]\nname = \"pd\"\nprefixes = [\"2001:db8:300::/60\"]\n\n[ipv6]\ndelegated_pool = \"pd\"\n\n[radius]\n[[radius.servers]]\naddress = \"127.0.0.1:1812\"\nsecret = \"radsecret1\"\n[[radius.accounting_servers]]\naddress = \"127.0.0.1:1813\"\nsecret = \"radsecret1\"\n",
    radius: true,
    cases: "",
    refused: &[],
    iperf: &[("ipv6", "20M")],
    // The dual-stack client, then the IPv6-only one.
    encrypted: 2,
    stateful: 0,
    plain: 0,
    moved: &[
        "xdp_decap6",
        "encapsulated6",
        "xdp_link6",
        "forward_xdp",
        "lan_seen",
    ],
    restart: false,
    ipv6: true,
    ppp: "ipv6 = \"require\"\n",
    zero: &["xdp_slow_path"],
};

/// The /64 FreeRADIUS assigns in the IPv6 pass.
const RADIUS_PREFIX6: &str = "2001:db8:200:7";
/// The /56 it delegates (Delegated-IPv6-Prefix, as ISPs give CPEs), which dhcp6c gets by
/// DHCPv6 ...
const RADIUS_DELEGATED6: &str = "2001:db8:200:800::/56";
/// ... and numbers its LAN from: subnet 1 of the 256 (`sla-id 1; sla-len 8`).
const DELEGATED_LAN64: &str = "2001:db8:200:801";

/// The LAN server's IPv6 address (`xdp` mode's LAN has both families).
const LAN_SERVER6: &str = "2001:db8:ffff::5";

pub fn interop() -> anyhow::Result<()> {
    let image = vm::build_image(&vm_cache())?;
    let status = cargo().args(["build", "-p", "pptp-user"]).status()?;
    if !status.success() {
        bail!("cargo build -p pptp-user failed");
    }
    println!(
        "interop: /dev/kvm cannot boot a stock kernel on this machine kind; qemu runs under TCG"
    );
    // `PPTPGW_INTEROP_PASSES=radius,xdp` runs only those (development); all by default.
    let only = std::env::var("PPTPGW_INTEROP_PASSES").unwrap_or_default();
    for pass in [STACK, XDP, RADIUS, RESTART, IPV6] {
        if !only.is_empty() && !only.split(',').any(|p| p == pass.name) {
            continue;
        }
        println!("interop: forwarding mode {}", pass.name);
        run_pass(&image, &pass).with_context(|| format!("forwarding mode {}", pass.name))?;
    }
    Ok(())
}

fn config(pass: &Pass, policy: &str) -> String {
    let ppp = match policy {
        "stateful" => "[ppp]\nmppe = \"require\"\nmppe_stateful = \"force\"\n".into(),
        _ => format!("[ppp]\nmppe = \"{policy}\"\n"),
    };
    format!("{ppp}{}\n{}", pass.ppp, pass.extra)
}

/// Namespaces of one pass; removed on drop.
struct Namespaces(Vec<String>);

impl Drop for Namespaces {
    fn drop(&mut self) {
        for ns in &self.0 {
            let _ = Command::new("ip").args(["netns", "del", ns]).status();
        }
    }
}

fn run_pass(image: &vm::Image, pass: &Pass) -> anyhow::Result<()> {
    let share = vm_cache().join(format!("share-interop-{}", pass.name));
    let _ = std::fs::remove_dir_all(&share);
    std::fs::create_dir_all(&share)?;
    let job = if pass.restart {
        include_str!("jobs/restart.sh")
    } else if pass.ipv6 {
        include_str!("jobs/ipv6.sh")
    } else {
        include_str!("jobs/interop.sh")
    };
    std::fs::write(share.join("job.sh"), job)?;
    std::fs::write(share.join("methods"), pass.cases)?;
    // The job reads "refused-<case>" as: the gateway must refuse this one.
    for case in pass.refused {
        std::fs::write(share.join(format!("refused-{case}")), "")?;
    }
    for (case, n) in pass.iperf {
        std::fs::write(share.join(format!("iperf-{case}")), n)?;
    }
    // With RADIUS the secrets file knows nobody: every session that comes up, RADIUS let in.
    let secrets = if pass.radius {
        ""
    } else {
        "alice * s3cret *\n"
    };
    std::fs::write(share.join("chap-secrets"), secrets)?;
    let config_path = share.join("pptpgw.toml");
    std::fs::write(&config_path, config(pass, "require"))?;
    let gw_ns = format!("pptpgw-interop-{}-{}", pass.name, std::process::id());
    let mut namespaces = Namespaces(vec![gw_ns.clone()]);
    sh(&["ip", "netns", "add", &gw_ns])?;
    sh(&["ip", "-n", &gw_ns, "link", "set", "lo", "up"])?;
    sh(&[
        "ip", "-n", &gw_ns, "tuntap", "add", "dev", "tap0", "mode", "tap",
    ])?;
    sh(&[
        "ip",
        "-n",
        &gw_ns,
        "addr",
        "add",
        "192.0.2.1/24",
        "dev",
        "tap0",
    ])?;
    sh(&["ip", "-n", &gw_ns, "link", "set", "tap0", "up"])?;
    // Where the client's traffic goes, and who answers it there.
    let _radius = pass.radius.then(|| {
        freeradius::FreeRadius::start(
            gw_ns.as_str(),
            &format!("interop-{}", std::process::id()),
            &format!(
                "alice Cleartext-Password := \"s3cret\"\n\tMessage-Authenticator := 0x00{}\n",
                if pass.ipv6 {
                    format!(
                        ",\n\tFramed-IPv6-Prefix = {RADIUS_PREFIX6}::/64,\n\tDelegated-IPv6-Prefix = {RADIUS_DELEGATED6}"
                    )
                } else {
                    String::new()
                }
            ),
        )
    });
    let (target, iperf_ns) = if !pass.extra.contains("[forwarding]") {
        ("10.99.0.1", gw_ns.clone())
    } else {
        let srv = format!("{gw_ns}-s");
        namespaces.0.push(srv.clone());
        lan_server(&gw_ns, &srv, pass.ipv6)?;
        (if pass.ipv6 { LAN_SERVER6 } else { LAN_SERVER }, srv)
    };
    std::fs::write(share.join("target"), target)?;
    std::fs::write(share.join("target6"), LAN_SERVER6)?;

    let bin = workspace_root().join("target/debug/pptpgw");
    let log = std::fs::File::create(share.join("pptpgw.log"))?;
    let mut gw = Command::new("ip")
        .args(["netns", "exec", &gw_ns])
        .arg(&bin)
        .args(["run", "--wan", "tap0", "--xdp-mode", "generic", "--secrets"])
        .arg(share.join("chap-secrets"))
        .arg("--config")
        .arg(&config_path)
        .stderr(log)
        .spawn()
        .context("spawn pptpgw")?;
    // The target is the gateway's tunnel address in `stack` mode, which exists once pptpgw has
    // set up `pptp0` (the verifier takes a few seconds under load): wait for it (bounded).
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let addrs = Command::new("ip")
            .args(["-n", &iperf_ns, "addr", "show"])
            .output()
            .map(|o| String::from_utf8_lossy(&o.stdout).into_owned())
            .unwrap_or_default();
        if addrs.contains(&format!("inet {target}/"))
            || addrs.contains(&format!("inet6 {target}/"))
            || Instant::now() > deadline
        {
            break;
        }
        std::thread::sleep(Duration::from_millis(200));
    }
    // iperf3 server on the target (twice per case: upload, then download).
    let mut iperf = Command::new("ip")
        .args(["netns", "exec", &iperf_ns, "iperf3", "-s", "-B", target])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .context("spawn iperf3 -s")?;
    let started = Instant::now();
    let done = Arc::new(AtomicBool::new(false));
    let switcher = if pass.restart {
        restart_killer(&share, gw.id(), done.clone())
    } else {
        policy_switcher(pass, &share, &config_path, gw.id() as i32, done.clone())
    };
    let rc = vm::run_job(
        image,
        &share,
        Some(&gw_ns),
        Some("tap0"),
        Duration::from_secs(900),
    );
    done.store(true, Ordering::Relaxed);
    let _ = switcher.join();
    println!(
        "VM job finished after {:.0} s",
        started.elapsed().as_secs_f64()
    );
    let _ = iperf.kill();
    let _ = iperf.wait();
    // SAFETY: kill(2) on our own child.
    unsafe { libc::kill(gw.id() as i32, libc::SIGTERM) };
    let status = gw.wait()?;
    let log = std::fs::read_to_string(share.join("pptpgw.log"))?;
    report(pass, &share);
    let rc = rc?;
    if rc != 0 {
        bail!("the VM job failed (rc {rc}); see {}", share.display());
    }
    if !status.success() || !log.contains("pptpgw stopped") {
        bail!(
            "pptpgw did not stop cleanly ({status}); see {}",
            share.join("pptpgw.log").display()
        );
    }
    check(pass, &log)?;
    if pass.restart {
        check_restart(&share, &log)?;
    }
    if pass.ipv6 {
        let accounting = _radius
            .as_ref()
            .map(|r| r.accounting_records())
            .unwrap_or_default();
        check_ipv6(&share, &log)?;
        check_ipv6_accounting(&accounting)?;
    }
    let routes = Command::new("ip")
        .args(["-n", &gw_ns, "route", "show", "proto", "241"])
        .output()?;
    if !routes.stdout.is_empty() {
        bail!(
            "routes left behind: {}",
            String::from_utf8_lossy(&routes.stdout)
        );
    }
    drop(namespaces);
    Ok(())
}

/// `xdp` mode's LAN: `lan0` (203.0.113.1/24) in the gateway, `s0` (the server) in `srv`; with
/// `ipv6` also 2001:db8:ffff::1/64 and ::5.
fn lan_server(gw_ns: &str, srv: &str, ipv6: bool) -> anyhow::Result<()> {
    sh(&["ip", "netns", "add", srv])?;
    sh(&[
        "ip", "-n", gw_ns, "link", "add", "lan0", "type", "veth", "peer", "name", "s0", "netns",
        srv,
    ])?;
    sh(&[
        "ip",
        "-n",
        gw_ns,
        "addr",
        "add",
        "203.0.113.1/24",
        "dev",
        "lan0",
    ])?;
    if ipv6 {
        sh(&[
            "ip",
            "-n",
            gw_ns,
            "-6",
            "addr",
            "add",
            "2001:db8:ffff::1/64",
            "dev",
            "lan0",
            "nodad",
        ])?;
        sh(&[
            "ip",
            "-n",
            srv,
            "-6",
            "addr",
            "add",
            &format!("{LAN_SERVER6}/64"),
            "dev",
            "s0",
            "nodad",
        ])?;
    }
    sh(&["ip", "-n", gw_ns, "link", "set", "lan0", "up"])?;
    sh(&[
        "ip",
        "-n",
        srv,
        "addr",
        "add",
        &format!("{LAN_SERVER}/24"),
        "dev",
        "s0",
    ])?;
    sh(&["ip", "-n", srv, "link", "set", "s0", "up"])?;
    sh(&["ip", "-n", srv, "link", "set", "lo", "up"])?;
    sh(&[
        "ip",
        "-n",
        srv,
        "route",
        "add",
        "default",
        "via",
        "203.0.113.1",
    ])?;
    if ipv6 {
        sh(&[
            "ip",
            "-n",
            srv,
            "-6",
            "route",
            "add",
            "default",
            "via",
            "2001:db8:ffff::1",
        ])?;
    }
    sh(&[
        "ip",
        "netns",
        "exec",
        gw_ns,
        "sysctl",
        "-qw",
        "net.ipv4.ip_forward=1",
    ])?;
    // Redirected frames need NAPI on s0; and what the server sends carries whole checksums, as
    // on a wire (a veth hands its peer's XDP partial ones otherwise).
    sh(&[
        "ip", "netns", "exec", srv, "ethtool", "-K", "s0", "gro", "on", "tx", "off",
    ])
}

/// The job asks for `[ppp] mppe` policies by writing policy-request: rewrite the config, SIGHUP,
/// and say so in policy-done.
fn policy_switcher(
    pass: &Pass,
    share: &Path,
    config_path: &Path,
    pid: i32,
    done: Arc<AtomicBool>,
) -> std::thread::JoinHandle<()> {
    let (share, config_path) = (share.to_path_buf(), config_path.to_path_buf());
    let pass = *pass;
    std::thread::spawn(move || {
        let mut current = String::from("require");
        while !done.load(Ordering::Relaxed) {
            std::thread::sleep(Duration::from_millis(200));
            let Ok(want) = std::fs::read_to_string(share.join("policy-request")) else {
                continue;
            };
            let want = want.trim().to_string();
            if want == current {
                continue;
            }
            if std::fs::write(&config_path, config(&pass, &want)).is_ok() {
                // SAFETY: kill(2) on our own child.
                unsafe { libc::kill(pid, libc::SIGHUP) };
                std::thread::sleep(Duration::from_millis(500));
                let _ = std::fs::write(share.join("policy-done"), &want);
                current = want;
            }
        }
    })
}

/// Once the job says the link is up (and its pings run), SIGKILL to the worker under the
/// supervisor `supervisor`; the supervisor starts another.
fn restart_killer(
    share: &Path,
    supervisor: u32,
    done: Arc<AtomicBool>,
) -> std::thread::JoinHandle<()> {
    let share = share.to_path_buf();
    std::thread::spawn(move || {
        while !done.load(Ordering::Relaxed) && !share.join("up").exists() {
            std::thread::sleep(Duration::from_millis(200));
        }
        if done.load(Ordering::Relaxed) {
            return;
        }
        std::thread::sleep(Duration::from_secs(5));
        let children =
            std::fs::read_to_string(format!("/proc/{supervisor}/task/{supervisor}/children"))
                .unwrap_or_default();
        if let Some(worker) = children
            .split_whitespace()
            .next()
            .and_then(|p| p.parse::<i32>().ok())
        {
            println!("restart: SIGKILL to worker {worker}");
            // SAFETY: kill(2) on the worker of the gateway we started.
            unsafe { libc::kill(worker, libc::SIGKILL) };
            let _ = std::fs::write(share.join("killed"), worker.to_string());
        }
    })
}

/// The restart pass: the worker was killed and replaced, the session carried over, pppd never
/// saw its link end, and ≥ 99 % of the pings were answered.
fn check_restart(share: &Path, log: &str) -> anyhow::Result<()> {
    let ping = std::fs::read_to_string(share.join("restart.ping")).unwrap_or_default();
    let summary = ping
        .lines()
        .find(|l| l.contains("packets transmitted"))
        .unwrap_or("no ping summary");
    println!("restart: {summary}");
    let received: u32 = summary
        .split(',')
        .find_map(|p| p.trim().strip_suffix(" received")?.trim().parse().ok())
        .unwrap_or(0);
    if !share.join("killed").exists() || !log.contains("worker died") {
        bail!("the worker was not killed");
    }
    if !log.contains("session carried over") {
        bail!("the session was not carried over");
    }
    if !share.join("pppd-alive").exists() {
        bail!("pppd saw the link end");
    }
    if received < 149 {
        bail!("{received}/150 pings answered across the restart (< 99 %)");
    }
    Ok(())
}

/// What each case did, from the job's files.
fn report(pass: &Pass, share: &Path) {
    for (case, _) in pass.iperf {
        for dir in ["up", "down"] {
            let f = format!("iperf-{case}-{dir}.txt");
            let text = std::fs::read_to_string(share.join(&f)).unwrap_or_default();
            for l in text
                .lines()
                .filter(|l| l.contains("sender") || l.contains("receiver"))
            {
                println!("{}: {f}: {}", pass.name, l.trim());
            }
        }
    }
    for (p, m) in pass.cases.lines().filter_map(|l| l.split_once(' ')) {
        let name = format!("{p}-{m}");
        let ping = std::fs::read_to_string(share.join(format!("{name}.ping"))).unwrap_or_default();
        println!(
            "{}: {name}: {}",
            pass.name,
            ping.lines()
                .find(|l| l.contains("packets transmitted") || l.contains("refused"))
                .unwrap_or("no result")
        );
    }
}

/// The gateway's log: refusals with their reason, the sessions that came up and how, and the
/// data path's counters.
fn check(pass: &Pass, log: &str) -> anyhow::Result<()> {
    let counters = log
        .lines()
        .find(|l| l.contains("data path counters"))
        .unwrap_or("");
    println!("{}: gateway: {counters}", pass.name);
    let count = |name: &str| -> u64 {
        counters
            .split_whitespace()
            .find_map(|kv| kv.strip_prefix(&format!("{name}=")))
            .and_then(|v| v.trim_matches('"').parse().ok())
            .unwrap_or(0)
    };
    if !pass.refused.is_empty() && (!log.contains("MppeRequired") || !log.contains("MppeRefused")) {
        bail!("no clear log line for a refused client (MppeRequired, MppeRefused)");
    }
    let ups = |enc: &str| {
        log.lines()
            .filter(|l| l.contains("session up") && l.contains(&format!("encryption={enc}")))
            .count()
    };
    let (encrypted, stateful, plain) = (ups("mppe-128"), ups("mppe-128-stateful"), ups("none"));
    println!(
        "{}: sessions up: {encrypted} encrypted ({stateful} stateful), {plain} plain",
        pass.name
    );
    if (encrypted, stateful, plain) != (pass.encrypted, pass.stateful, pass.plain) {
        bail!(
            "expected {} encrypted ({} stateful) and {} plain sessions",
            pass.encrypted,
            pass.stateful,
            pass.plain
        );
    }
    for name in pass.moved {
        if count(name) == 0 {
            bail!("{name} did not move: {counters}");
        }
    }
    for name in pass.zero {
        if count(name) != 0 {
            bail!("{name} moved: {counters}");
        }
    }
    if pass.radius {
        let answered = log.matches("RADIUS answered").count();
        println!("{}: RADIUS answered {answered} times", pass.name);
        if answered < pass.encrypted + pass.plain {
            bail!("fewer RADIUS answers ({answered}) than sessions");
        }
    }
    Ok(())
}

/// The IPv6 pass's accounting, as FreeRADIUS's `detail` module wrote it: the dual-stack
/// session's Start names both its IPv4 address and its /64 (the Start waited for IPV6CP); the
/// IPv6-only session's Start its /64 and no IPv4 address; both Stops the /64.
fn check_ipv6_accounting(
    records: &[std::collections::HashMap<String, String>],
) -> anyhow::Result<()> {
    let starts: Vec<_> = records
        .iter()
        .filter(|r| r.get("Acct-Status-Type").map(String::as_str) == Some("Start"))
        .collect();
    let stops: Vec<_> = records
        .iter()
        .filter(|r| r.get("Acct-Status-Type").map(String::as_str) == Some("Stop"))
        .collect();
    let show = |r: &std::collections::HashMap<String, String>| {
        format!(
            "Framed-IP-Address={} Framed-IPv6-Prefix={} Delegated-IPv6-Prefix={}",
            r.get("Framed-IP-Address").map_or("-", String::as_str),
            r.get("Framed-IPv6-Prefix").map_or("-", String::as_str),
            r.get("Delegated-IPv6-Prefix").map_or("-", String::as_str)
        )
    };
    for (i, r) in starts.iter().enumerate() {
        println!("ipv6: accounting Start {}: {}", i + 1, show(r));
    }
    for (i, r) in stops.iter().enumerate() {
        println!("ipv6: accounting Stop {}: {}", i + 1, show(r));
    }
    let prefix = format!("{RADIUS_PREFIX6}::/64");
    let [dual, v6only] = starts.as_slice() else {
        bail!(
            "expected 2 accounting Starts, FreeRADIUS has {}",
            starts.len()
        );
    };
    if dual.get("Framed-IPv6-Prefix") != Some(&prefix) || !dual.contains_key("Framed-IP-Address") {
        bail!("the dual-stack Start lacks an address: {}", show(dual));
    }
    if v6only.get("Framed-IPv6-Prefix") != Some(&prefix) || v6only.contains_key("Framed-IP-Address")
    {
        bail!("the IPv6-only Start is wrong: {}", show(v6only));
    }
    // Both Stops name the /64 (dhcp6c released its delegation before pppd hung up, so the
    // first Stop rightly names none).
    if stops.len() != 2
        || stops
            .iter()
            .any(|r| r.get("Framed-IPv6-Prefix") != Some(&prefix))
    {
        bail!("the Stops do not name the /64");
    }
    Ok(())
}

/// The IPv6 pass: IPv6 came up on the session, the client configured a global address in the
/// prefix the gateway advertised, and pings and both iperf3 transfers went through.
fn check_ipv6(share: &Path, log: &str) -> anyhow::Result<()> {
    let read = |f: &str| std::fs::read_to_string(share.join(f)).unwrap_or_default();
    let addr = read("ipv6.addr");
    let global = line_with(&addr, &format!("inet6 {RADIUS_PREFIX6}:"));
    println!("ipv6: client address by SLAAC: {global}");
    let ping = read("ipv6.ping");
    let summary = ping_summary(&ping);
    println!("ipv6: ping {LAN_SERVER6}: {summary}");
    if !log.contains("IPv6 up") {
        bail!("the gateway never brought IPv6 up");
    }
    if global == "none" {
        bail!("no SLAAC address in the prefix RADIUS assigned: {addr}");
    }
    if !summary.contains(" 5 received") {
        bail!("IPv6 pings lost: {summary}");
    }
    for dir in ["up", "down"] {
        if !read(&format!("iperf-ipv6-{dir}.txt")).contains("receiver") {
            bail!("iperf3 over IPv6 ({dir}) did not complete");
        }
    }
    // dhcp6c's prefix delegation: an address in a /64 of the /56 RADIUS delegated on the
    // client's LAN side, and pings from it (answered through the gateway's /56 lookup).
    let pd = read("pd.addr");
    let got = line_with(&pd, &format!("inet6 {DELEGATED_LAN64}:"));
    println!("ipv6: address from the prefix delegated to dhcp6c: {got}");
    let ping = read("pd.ping");
    let summary = ping_summary(&ping);
    println!("ipv6: ping {LAN_SERVER6} from the delegated prefix: {summary}");
    if got == "none" {
        bail!(
            "dhcp6c was not delegated {RADIUS_DELEGATED6} (no {DELEGATED_LAN64}::/64 on its LAN): {pd}\n{}",
            read("pd.log")
        );
    }
    if !summary.contains(" 5 received") {
        bail!("pings from the delegated prefix lost: {summary}");
    }
    // The IPv6-only client (pppd `noip`): up without IPv4, its SLAAC address, its pings.
    let addr = read("v6only.addr");
    let global = line_with(&addr, &format!("inet6 {RADIUS_PREFIX6}:"));
    let ping = read("v6only.ping");
    let summary = ping_summary(&ping);
    println!("ipv6: IPv6-only client (noip): {global}; ping {LAN_SERVER6}: {summary}");
    let up_v6_only = log
        .lines()
        .any(|l| l.contains("session up") && l.contains("addr=-"));
    if !up_v6_only {
        bail!("the gateway brought no session up without an IPv4 address");
    }
    if addr.lines().any(|l| l.trim_start().starts_with("inet ")) {
        bail!("the IPv6-only client has an IPv4 address: {addr}");
    }
    if global == "none" {
        bail!(
            "the IPv6-only client has no SLAAC address: {addr}\n{}",
            read("v6only.log")
        );
    }
    if !summary.contains(" 5 received") {
        bail!("the IPv6-only client's pings lost: {summary}");
    }
    Ok(())
}

/// The first line of `text` holding `needle`, trimmed; "none" if there is none.
fn line_with<'a>(text: &'a str, needle: &str) -> &'a str {
    text.lines()
        .find(|l| l.contains(needle))
        .map_or("none", str::trim)
}

/// ping's summary line ("5 packets transmitted, 5 received, ...").
fn ping_summary(text: &str) -> &str {
    let line = line_with(text, "packets transmitted");
    if line == "none" {
        "no ping summary"
    } else {
        line
    }
}
