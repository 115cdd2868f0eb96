//! `cargo xtask <chore>`: the project's build and test entry points.
use std::{
    path::{Path, PathBuf},
    process::Command,
    time::Instant,
};

use anyhow::{Context as _, bail};

mod image;
mod interop;
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

const FUZZ_TARGETS: [&str; 8] = [
    "control_framer",
    "gre",
    "ppp",
    "options",
    "negotiation",
    "link",
    "mppe",
    "radius",
];

fn main() -> anyhow::Result<()> {
    match Cli::parse().command {
        Chore::BuildEbpf => build_ebpf(),
        Chore::Test { args } => test(&args),
        Chore::Fuzz { targets, runs } => fuzz(&targets, runs),
        Chore::Capture => capture(),
        Chore::Interop => interop::interop(),
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
        interop::interop()?;
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
        // Only the unit's own syntax counts: the binary path does not exist on a build host, and
        // other units installed here (FreeRADIUS's, for the tests) may draw warnings of their own.
        let text = String::from_utf8_lossy(&out.stderr);
        let bad: Vec<&str> = text
            .lines()
            .filter(|l| l.contains("pptpgw.service") && !l.contains("/usr/local/bin/pptpgw"))
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
