//! Builds the eBPF object with the pinned nightly and bpf-linker, into OUT_DIR, where `datapath.rs`
//! embeds it. This is the one place the object is built: `cargo xtask build-ebpf` runs this too,
//! so the binary can never embed an object built some other way or left over from an older tree.
//!
//! It does what aya-build does, plus `-C target-cpu=v3`: the BPF ISA v3 atomic fetch-and-add is
//! what makes the per-session GRE sequence counter safe across CPUs, and aya-build 0.2 sets the
//! rustflags itself with no way to add one.
use std::{path::PathBuf, process::Command};

use anyhow::{Context as _, bail};

fn main() -> anyhow::Result<()> {
    let manifest_dir = PathBuf::from(env!("CARGO_MANIFEST_DIR"));
    let workspace = manifest_dir.parent().context("workspace root")?;
    let ebpf_dir = workspace.join("pptp-ebpf");
    let toolchain_file = ebpf_dir.join("nightly-toolchain");
    for p in [&toolchain_file, &ebpf_dir, &workspace.join("pptp-common")] {
        println!("cargo:rerun-if-changed={}", p.display());
    }
    let toolchain = std::fs::read_to_string(&toolchain_file)
        .with_context(|| format!("read {}", toolchain_file.display()))?;
    let toolchain = toolchain.trim();

    let out_dir = PathBuf::from(std::env::var("OUT_DIR").context("OUT_DIR")?);
    let arch = std::env::var("CARGO_CFG_TARGET_ARCH").context("CARGO_CFG_TARGET_ARCH")?;
    let target_dir = out_dir.join("ebpf-target");
    let rustflags = [
        format!("--cfg=bpf_target_arch=\"{arch}\""),
        "-Cdebuginfo=2".into(),
        "-Clink-arg=--btf".into(),
        "-Ctarget-cpu=v3".into(),
    ]
    .join("\x1f");
    let output = Command::new("rustup")
        .args([
            "run",
            toolchain,
            "cargo",
            "build",
            "--package",
            "pptp-ebpf",
            "--bins",
            "--release",
        ])
        .args(["-Z", "build-std=core", "--target", "bpfel-unknown-none"])
        .arg("--target-dir")
        .arg(&target_dir)
        .current_dir(workspace)
        .env("CARGO_ENCODED_RUSTFLAGS", rustflags)
        // The outer cargo's compiler and wrappers are for the host toolchain, not the nightly.
        .env_remove("RUSTC")
        .env_remove("RUSTC_WORKSPACE_WRAPPER")
        .env_remove("RUSTFLAGS")
        .output()
        .with_context(|| format!("run cargo +{toolchain} (see .ci/run for the setup)"))?;
    if !output.status.success() {
        for line in String::from_utf8_lossy(&output.stderr).lines() {
            println!("cargo:warning={line}");
        }
        bail!(
            "building pptp-ebpf with {toolchain} failed: {}",
            output.status
        );
    }
    let object = target_dir.join("bpfel-unknown-none/release/pptp-ebpf");
    std::fs::copy(&object, out_dir.join("pptp-ebpf"))
        .with_context(|| format!("copy {}", object.display()))?;
    Ok(())
}
