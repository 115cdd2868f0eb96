//! `cargo xtask <chore>`: the project's build and test entry points.
use std::{
    path::{Path, PathBuf},
    process::Command,
    time::Instant,
};

use anyhow::{Context as _, bail};

mod image;
mod vm;
use clap::{Parser, Subcommand};

#[derive(Parser)]
#[command(name = "xtask")]
struct Cli {
    #[command(subcommand)]
    command: Chore,
}

#[derive(Subcommand)]
enum Chore {
    /// Build the eBPF object (release, BTF) with the pinned nightly and bpf-linker, exactly as the
    /// controller's build script embeds it, and copy it to target/bpf/pptp-ebpf.o.
    BuildEbpf,
    /// Build pptpgw, then run every test of the workspace (unit, kernel fixtures, netns), then the
    /// interop test with the real client in a VM. Needs root.
    Test {
        /// Extra arguments for `cargo test`, after `--` (e.g. a test name filter).
        #[arg(last = true)]
        args: Vec<String>,
    },
    /// Interop: Debian's pptp-linux + pppd in a qemu VM dial `pptpgw run` (PAP, CHAP-MD5,
    /// MS-CHAPv2), ping through the tunnel, hang up; the gateway must report the data on its
    /// XDP path and leave nothing behind.
    Interop,
    /// Build the client VM and capture real pptp-linux/pppd sessions (against pptpd, inside the
    /// VM) into pptp-user/tests/captures/, the fixtures of the codec round-trip tests.
    Capture,
    /// Validate the deployment files: the Kubernetes manifests against the Kubernetes OpenAPI
    /// schemas (kubernetes-validate, strict), the ConfigMap's config and the Secret's users with
    /// `pptpgw check-config`, the systemd unit with `systemd-analyze verify` when present, and
    /// that the Dockerfile builds with CI's toolchain script.
    CheckDeploy,
    /// Build the OCI image without a registry: a root filesystem from Debian packages
    /// (deploy/image), the release pptpgw, the default config; written to
    /// target/image/pptpgw.oci.tar (`podman load -i`, `skopeo copy oci-archive:...`).
    Image,
    /// Benchmarks (release build, root): data-path cost, forwarding against baselines, control
    /// plane, churn; prints one table. Arguments after `--` go to `pptp-bench` (`--help`).
    Bench {
        #[arg(last = true)]
        args: Vec<String>,
    },
    /// Run the cargo-fuzz targets in fuzz/ (needs `cargo install cargo-fuzz`), each for --runs
    /// executions, with the pinned nightly. No targets named: all of them.
    Fuzz {
        targets: Vec<String>,
        #[arg(long, default_value_t = 1_000_000)]
        runs: u64,
    },
}

/// Where the VM image is cached between runs.
fn vm_cache() -> PathBuf {
    workspace_root().join("target/interop-vm")
}

const FUZZ_TARGETS: [&str; 7] = [
    "control_framer",
    "gre",
    "ppp",
    "options",
    "negotiation",
    "link",
    "mppe",
];

fn main() -> anyhow::Result<()> {
    match Cli::parse().command {
        Chore::BuildEbpf => build_ebpf(),
        Chore::Test { args } => test(&args),
        Chore::Fuzz { targets, runs } => fuzz(&targets, runs),
        Chore::Capture => capture(),
        Chore::Interop => interop(),
        Chore::CheckDeploy => check_deploy(),
        Chore::Bench { args } => bench(&args),
        Chore::Image => image::image(),
    }
}

fn workspace_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("xtask lives in the workspace")
        .into()
}

fn cargo() -> Command {
    let mut c = Command::new(std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into()));
    c.current_dir(workspace_root());
    c
}

fn build_ebpf() -> anyhow::Result<()> {
    let started = Instant::now();
    let out = cargo()
        .args([
            "build",
            "--release",
            "-p",
            "pptp-user",
            "--message-format=json-render-diagnostics",
        ])
        .stderr(std::process::Stdio::inherit())
        .output()
        .context("run cargo build")?;
    if !out.status.success() {
        bail!("cargo build -p pptp-user failed: {}", out.status);
    }
    let mut object = None;
    for msg in cargo_metadata::Message::parse_stream(&out.stdout[..]) {
        if let cargo_metadata::Message::BuildScriptExecuted(s) = msg.context("cargo JSON")?
            && s.package_id.repr.contains("pptp-user")
        {
            object = Some(s.out_dir.join("pptp-ebpf").into_std_path_buf());
        }
    }
    let object = object.context("cargo did not report pptp-user's build script output")?;
    let dest_dir = workspace_root().join("target/bpf");
    std::fs::create_dir_all(&dest_dir)?;
    let dest = dest_dir.join("pptp-ebpf.o");
    std::fs::copy(&object, &dest).with_context(|| format!("copy {}", object.display()))?;
    let size = std::fs::metadata(&dest)?.len();
    println!(
        "eBPF object: {} ({size} bytes, built in {:.1} s)",
        dest.display(),
        started.elapsed().as_secs_f64()
    );
    Ok(())
}

fn test(extra: &[String]) -> anyhow::Result<()> {
    // SAFETY: geteuid has no preconditions and cannot fail.
    if unsafe { libc::geteuid() } != 0 {
        bail!("the test suite needs root (network namespaces, XDP attach, BPF_PROG_TEST_RUN)");
    }
    let status = cargo()
        .args(["build", "-p", "pptp-user", "-p", "pptp-client"])
        .status()?;
    if !status.success() {
        bail!("cargo build -p pptp-user -p pptp-client failed");
    }
    // The container test runs the image a platform team would deploy: built first, in full runs.
    if extra.is_empty() {
        image::image()?;
    }
    let bin = workspace_root().join("target/debug/pptpgw");
    let client = workspace_root().join("target/debug/pptp-client");
    let python = python_env()?;
    let status = cargo()
        .args(["test", "--workspace", "--no-fail-fast"])
        .arg("--")
        .args(extra)
        .env("PPTPGW_BIN", &bin)
        .env("PPTP_CLIENT_BIN", &client)
        .env("PPTPGW_PYTHON", &python)
        .env("PPTPGW_IMAGE", image::archive())
        .env("PPTPGW_IMAGE_REF", image::reference())
        .status()?;
    if !status.success() {
        bail!("tests failed");
    }
    if extra.is_empty() {
        check_deploy()?;
        println!("check-deploy: passed");
        // The real client against the real gateway; a filter given means a focused run.
        interop()?;
        println!("interop: 1 passed, 0 failed");
    }
    Ok(())
}

fn bench(args: &[String]) -> anyhow::Result<()> {
    // SAFETY: geteuid has no preconditions and cannot fail.
    if unsafe { libc::geteuid() } != 0 {
        bail!("the benchmarks need root (namespaces, XDP, BPF statistics)");
    }
    let status = cargo()
        .args(["build", "--release", "-p", "pptp-user", "-p", "pptp-bench"])
        .status()?;
    if !status.success() {
        bail!("release build failed");
    }
    let root = workspace_root();
    let status = Command::new(root.join("target/release/pptp-bench"))
        .args(args)
        .env("PPTPGW_BIN", root.join("target/release/pptpgw"))
        .status()?;
    if !status.success() {
        bail!("pptp-bench failed");
    }
    Ok(())
}

fn check_deploy() -> anyhow::Result<()> {
    let root = workspace_root();
    let python = python_env()?;
    let manifests: Vec<PathBuf> = std::fs::read_dir(root.join("deploy/kubernetes"))?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|x| x == "yaml"))
        .collect();
    if manifests.is_empty() {
        bail!("no manifests in deploy/kubernetes");
    }
    // The DaemonSet runs the image `cargo xtask image` builds.
    let daemonset = std::fs::read_to_string(root.join("deploy/kubernetes/daemonset.yaml"))?;
    let wanted = format!("image: {}", image::reference());
    if !daemonset.lines().any(|l| l.trim() == wanted) {
        bail!(
            "deploy/kubernetes/daemonset.yaml must say `{wanted}` (what `cargo xtask image` builds)"
        );
    }
    let status = Command::new(python.with_file_name("kubernetes-validate"))
        .args(["--strict", "--quiet"])
        .args(&manifests)
        .status()?;
    if !status.success() {
        bail!("Kubernetes manifests failed schema validation");
    }
    // The config and users the manifests ship must pass pptpgw's own checks.
    let dir = root.join("target/check-deploy");
    std::fs::create_dir_all(&dir)?;
    let script = r#"
import sys, yaml
cm = yaml.safe_load(open(sys.argv[1]))
sec = yaml.safe_load(open(sys.argv[2]))
open(sys.argv[3], "w").write(cm["data"]["pptpgw.toml"])
open(sys.argv[4], "w").write(sec["stringData"]["chap-secrets"])
"#;
    let (toml, secrets) = (dir.join("pptpgw.toml"), dir.join("chap-secrets"));
    let status = Command::new(&python)
        .args(["-c", script])
        .arg(root.join("deploy/kubernetes/configmap.yaml"))
        .arg(root.join("deploy/kubernetes/secret.yaml"))
        .args([&toml, &secrets])
        .status()?;
    if !status.success() {
        bail!("could not extract the ConfigMap's config and the Secret's users");
    }
    let status = cargo()
        .args([
            "run",
            "-q",
            "-p",
            "pptp-user",
            "--bin",
            "pptpgw",
            "--",
            "check-config",
        ])
        .arg(&toml)
        .arg("--secrets")
        .arg(&secrets)
        .status()?;
    if !status.success() {
        bail!("the ConfigMap's config fails `pptpgw check-config`");
    }
    let unit = root.join("deploy/systemd/pptpgw.service");
    if Command::new("systemd-analyze")
        .arg("--version")
        .output()
        .is_ok()
    {
        let out = Command::new("systemd-analyze")
            .arg("verify")
            .arg(&unit)
            .output()?;
        // Only the unit's own syntax counts: the binary path does not exist on a build host.
        let text = String::from_utf8_lossy(&out.stderr);
        let bad: Vec<&str> = text
            .lines()
            .filter(|l| !l.contains("/usr/local/bin/pptpgw") && !l.trim().is_empty())
            .collect();
        if !bad.is_empty() {
            bail!(
                "systemd-analyze verify {}:
{}",
                unit.display(),
                bad.join(
                    "
"
                )
            );
        }
    }
    let dockerfile = std::fs::read_to_string(root.join("Dockerfile"))?;
    if !dockerfile.contains("RUN .ci/install-toolchains") {
        bail!("the Dockerfile must build with .ci/install-toolchains, as CI does");
    }
    Ok(())
}

/// Python packages the tests and checks use, from PyPI, in `target/ci-venv` (made once):
/// prometheus-client (the Prometheus project's OpenMetrics parser) and kubernetes-validate (the
/// Kubernetes OpenAPI schemas, for `deploy/kubernetes`).
const PYTHON_PACKAGES: &[&str] = &["prometheus-client==0.26.0", "kubernetes-validate==1.37.0"];

fn python_env() -> anyhow::Result<PathBuf> {
    let venv = workspace_root().join("target/ci-venv");
    let python = venv.join("bin/python");
    let stamp = venv.join("packages");
    let want = PYTHON_PACKAGES.join("\n");
    if std::fs::read_to_string(&stamp).ok().as_deref() == Some(want.as_str()) {
        return Ok(python);
    }
    let status = Command::new("python3")
        .args(["-m", "venv"])
        .arg(&venv)
        .status()?;
    if !status.success() {
        bail!(
            "python3 -m venv {} failed (apt package python3-venv)",
            venv.display()
        );
    }
    let status = Command::new(&python)
        .args([
            "-m",
            "pip",
            "install",
            "--quiet",
            "--disable-pip-version-check",
        ])
        .args(PYTHON_PACKAGES)
        .status()?;
    if !status.success() {
        bail!("pip install {PYTHON_PACKAGES:?} failed");
    }
    std::fs::write(&stamp, want)?;
    Ok(python)
}

fn nightly() -> anyhow::Result<String> {
    let path = workspace_root().join("pptp-ebpf/nightly-toolchain");
    Ok(std::fs::read_to_string(&path)
        .with_context(|| format!("read {}", path.display()))?
        .trim()
        .into())
}

fn fuzz(targets: &[String], runs: u64) -> anyhow::Result<()> {
    let toolchain = nightly()?;
    let targets: Vec<&str> = if targets.is_empty() {
        FUZZ_TARGETS.to_vec()
    } else {
        targets.iter().map(String::as_str).collect()
    };
    for t in targets {
        let started = Instant::now();
        let status = Command::new("rustup")
            .current_dir(workspace_root())
            .args(["run", &toolchain, "cargo", "fuzz", "run", t, "--"])
            .arg(format!("-runs={runs}"))
            .status()
            .context("run cargo fuzz (install it with `cargo install cargo-fuzz`)")?;
        if !status.success() {
            bail!("fuzz target {t} failed: {status}");
        }
        println!(
            "fuzz {t}: {runs} runs, no failure, {:.0} s",
            started.elapsed().as_secs_f64()
        );
    }
    Ok(())
}

fn capture() -> anyhow::Result<()> {
    let image = vm::build_image(&vm_cache())?;
    let share = vm_cache().join("share-capture");
    let _ = std::fs::remove_dir_all(&share);
    std::fs::create_dir_all(&share)?;
    std::fs::write(share.join("job.sh"), include_str!("jobs/capture.sh"))?;
    let started = Instant::now();
    let rc = vm::run_job(
        &image,
        &share,
        None,
        None,
        std::time::Duration::from_secs(600),
    )?;
    println!(
        "capture job exited {rc} after {:.0} s; log: {}",
        started.elapsed().as_secs_f64(),
        share.join("job.log").display()
    );
    let dest = workspace_root().join("pptp-user/tests/captures");
    std::fs::create_dir_all(&dest)?;
    for method in ["mschapv2", "chapmd5", "pap"] {
        let pcap = share.join(format!("{method}.pcap"));
        let size = std::fs::metadata(&pcap)
            .with_context(|| format!("no {}", pcap.display()))?
            .len();
        if size <= 24 {
            bail!(
                "{} is empty: see {}",
                pcap.display(),
                share.join(format!("{method}-client.log")).display()
            );
        }
        std::fs::copy(&pcap, dest.join(format!("pptp-linux-{method}.pcap")))?;
        println!("captured {method}: {size} bytes");
    }
    Ok(())
}

fn sh(args: &[&str]) -> anyhow::Result<()> {
    let status = Command::new(args[0])
        .args(&args[1..])
        .status()
        .with_context(|| format!("run {args:?}"))?;
    if !status.success() {
        bail!("{args:?} failed: {status}");
    }
    Ok(())
}

/// What the real client does against each `[ppp] mppe` policy ("POLICY CASE" per line; the
/// cases are the job's: mppe = require-mppe-128, plain = nomppe, any = pppd's default, chapmd5 /
/// pap = that method without MPPE, tt1-3 = require-mppe-128 with pptp-linux's reordering,
/// mppe-stateful = require-mppe-128 mppe-stateful). The policy "stateful" is `require` with
/// `mppe_stateful = "force"`.
const INTEROP_CASES: &str = "require mppe
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
";
/// The cases the gateway must refuse (the client gives up by itself, never reaching IPCP).
const REFUSED: [&str; 3] = ["require-plain", "require-pap", "deny-mppe"];
/// Sessions that come up encrypted (require mppe, stateful, tt1-3, prefer mppe; one of them
/// stateful) and in plain (prefer plain, allow any and plain: pppd asks for no MPPE unless told
/// to, deny chapmd5 and pap).
const ENCRYPTED_UPS: usize = 6;
const STATEFUL_UPS: usize = 1;
const PLAIN_UPS: usize = 5;

fn interop_config(policy: &str) -> String {
    match policy {
        "stateful" => "[ppp]\nmppe = \"require\"\nmppe_stateful = \"force\"\n".into(),
        _ => format!("[ppp]\nmppe = \"{policy}\"\n"),
    }
}

fn interop() -> anyhow::Result<()> {
    let image = vm::build_image(&vm_cache())?;
    let status = cargo().args(["build", "-p", "pptp-user"]).status()?;
    if !status.success() {
        bail!("cargo build -p pptp-user failed");
    }
    let bin = workspace_root().join("target/debug/pptpgw");
    let share = vm_cache().join("share-interop");
    println!(
        "interop: /dev/kvm cannot boot a stock kernel on this machine kind; qemu runs under TCG"
    );
    let _ = std::fs::remove_dir_all(&share);
    std::fs::create_dir_all(&share)?;
    std::fs::write(share.join("job.sh"), include_str!("jobs/interop.sh"))?;
    std::fs::write(share.join("methods"), INTEROP_CASES)?;
    // The job reads "refused-<case>" as: the gateway must refuse this one.
    for case in REFUSED {
        std::fs::write(share.join(format!("refused-{case}")), "")?;
    }
    std::fs::write(share.join("iperf-require-mppe"), "50M")?;
    std::fs::write(share.join("iperf-stateful-mppe-stateful"), "20M")?;
    std::fs::write(share.join("chap-secrets"), "alice * s3cret *\n")?;
    let config = share.join("pptpgw.toml");
    std::fs::write(&config, interop_config("require"))?;
    let ns = format!("pptpgw-interop-{}", std::process::id());
    sh(&["ip", "netns", "add", &ns])?;
    let result = (|| -> anyhow::Result<()> {
        sh(&["ip", "-n", &ns, "link", "set", "lo", "up"])?;
        sh(&[
            "ip", "-n", &ns, "tuntap", "add", "dev", "tap0", "mode", "tap",
        ])?;
        sh(&[
            "ip",
            "-n",
            &ns,
            "addr",
            "add",
            "192.0.2.1/24",
            "dev",
            "tap0",
        ])?;
        sh(&["ip", "-n", &ns, "link", "set", "tap0", "up"])?;
        let log = std::fs::File::create(share.join("pptpgw.log"))?;
        let mut gw = Command::new("ip")
            .args(["netns", "exec", &ns])
            .arg(&bin)
            .args(["run", "--wan", "tap0", "--xdp-mode", "generic", "--secrets"])
            .arg(share.join("chap-secrets"))
            .arg("--config")
            .arg(&config)
            .stderr(log)
            .spawn()
            .context("spawn pptpgw")?;
        std::thread::sleep(std::time::Duration::from_secs(2));
        // iperf3 server on the gateway's tunnel address (twice: upload, then download).
        let mut iperf = Command::new("ip")
            .args(["netns", "exec", &ns, "iperf3", "-s", "-B", "10.99.0.1"])
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .context("spawn iperf3 -s")?;
        let started = Instant::now();
        // The job asks for `[ppp] mppe` policies by writing policy-request: rewrite the config,
        // SIGHUP, and say so in policy-done.
        let done = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
        let switcher = {
            let (share, config, done) = (share.clone(), config.clone(), done.clone());
            let pid = gw.id() as i32;
            std::thread::spawn(move || {
                let mut current = String::from("require");
                while !done.load(std::sync::atomic::Ordering::Relaxed) {
                    std::thread::sleep(std::time::Duration::from_millis(200));
                    let Ok(want) = std::fs::read_to_string(share.join("policy-request")) else {
                        continue;
                    };
                    let want = want.trim().to_string();
                    if want == current {
                        continue;
                    }
                    if std::fs::write(&config, interop_config(&want)).is_ok() {
                        // SAFETY: kill(2) on our own child.
                        unsafe { libc::kill(pid, libc::SIGHUP) };
                        std::thread::sleep(std::time::Duration::from_millis(500));
                        let _ = std::fs::write(share.join("policy-done"), &want);
                        current = want;
                    }
                }
            })
        };
        let rc = vm::run_job(
            &image,
            &share,
            Some(&ns),
            Some("tap0"),
            std::time::Duration::from_secs(900),
        );
        done.store(true, std::sync::atomic::Ordering::Relaxed);
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
        for f in [
            "iperf-require-mppe-up.txt",
            "iperf-require-mppe-down.txt",
            "iperf-stateful-mppe-stateful-up.txt",
            "iperf-stateful-mppe-stateful-down.txt",
        ] {
            let text = std::fs::read_to_string(share.join(f)).unwrap_or_default();
            for l in text
                .lines()
                .filter(|l| l.contains("sender") || l.contains("receiver"))
            {
                println!("{f}: {}", l.trim());
            }
        }
        for (p, m) in INTEROP_CASES.lines().filter_map(|l| l.split_once(' ')) {
            let name = format!("{p}-{m}");
            let ping =
                std::fs::read_to_string(share.join(format!("{name}.ping"))).unwrap_or_default();
            println!(
                "{name}: {}",
                ping.lines()
                    .find(|l| l.contains("packets transmitted") || l.contains("refused"))
                    .unwrap_or("no result")
            );
        }
        let counters = log
            .lines()
            .find(|l| l.contains("data path counters"))
            .unwrap_or("");
        println!("gateway: {counters}");
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
        let count = |name: &str| -> u64 {
            counters
                .split_whitespace()
                .find_map(|kv| kv.strip_prefix(&format!("{name}=")))
                .and_then(|v| v.trim_matches('"').parse().ok())
                .unwrap_or(0)
        };
        // The refused clients are refused with the reason in the log; every session that came
        // up says whether it is encrypted, and the right ones are.
        if !log.contains("MppeRequired") || !log.contains("MppeRefused") {
            bail!("no clear log line for a refused client (MppeRequired, MppeRefused)");
        }
        let ups = |enc: &str| {
            log.lines()
                .filter(|l| l.contains("session up") && l.contains(&format!("encryption={enc}")))
                .count()
        };
        let (encrypted, stateful, plain) = (ups("mppe-128"), ups("mppe-128-stateful"), ups("none"));
        println!("sessions up: {encrypted} encrypted ({stateful} stateful), {plain} plain");
        if (encrypted, stateful, plain) != (ENCRYPTED_UPS, STATEFUL_UPS, PLAIN_UPS) {
            bail!(
                "expected {ENCRYPTED_UPS} encrypted ({STATEFUL_UPS} stateful) and {PLAIN_UPS} \
                 plain sessions"
            );
        }
        if count("xdp_decap") == 0 || count("encapsulated") == 0 {
            bail!("no data took the XDP path: {counters}");
        }
        let routes = Command::new("ip")
            .args(["-n", &ns, "route", "show", "proto", "241"])
            .output()?;
        if !routes.stdout.is_empty() {
            bail!(
                "routes left behind: {}",
                String::from_utf8_lossy(&routes.stdout)
            );
        }
        Ok(())
    })();
    let _ = Command::new("ip").args(["netns", "del", &ns]).status();
    result
}
