//! `cargo xtask <chore>`: the project's build and test entry points.
use std::{
    path::{Path, PathBuf},
    process::Command,
    time::Instant,
};

use anyhow::{Context as _, bail};
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
    /// Build pptpgw, then run every test of the workspace (unit, kernel fixtures, netns). Needs root.
    Test {
        /// Extra arguments for `cargo test`, after `--` (e.g. a test name filter).
        #[arg(last = true)]
        args: Vec<String>,
    },
}

fn main() -> anyhow::Result<()> {
    match Cli::parse().command {
        Chore::BuildEbpf => build_ebpf(),
        Chore::Test { args } => test(&args),
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
        bail!("the test suite needs root (network namespaces, XDP/TC attach, BPF_PROG_TEST_RUN)");
    }
    let status = cargo().args(["build", "-p", "pptp-user"]).status()?;
    if !status.success() {
        bail!("cargo build -p pptp-user failed");
    }
    let bin = workspace_root().join("target/debug/pptpgw");
    let status = cargo()
        .args(["test", "--workspace", "--no-fail-fast"])
        .arg("--")
        .args(extra)
        .env("PPTPGW_BIN", &bin)
        .status()?;
    if !status.success() {
        bail!("tests failed");
    }
    Ok(())
}
