//! `cargo xtask image`: the pptpgw OCI image, built without a registry or a container engine.
//! The root filesystem comes from Debian packages through `deploy/image/rootfs.sh` (the recipe the
//! Dockerfile's build stage runs too), umoci makes it an OCI image, and the layout is written as
//! one archive that `podman load`, `skopeo copy oci-archive:...` and a registry push take as it is.

use std::{path::PathBuf, process::Command, time::Instant};

use anyhow::{Context as _, bail};

use crate::{cargo, workspace_root};

/// The image's name and tag; `deploy/kubernetes/daemonset.yaml` names the same (checked by
/// `cargo xtask check-deploy`).
pub const NAME: &str = "localhost/pptpgw";
pub const TAG: &str = env!("CARGO_PKG_VERSION");

pub fn reference() -> String {
    format!("{NAME}:{TAG}")
}

/// Where the archive is written.
pub fn archive() -> PathBuf {
    workspace_root().join("target/image/pptpgw.oci.tar")
}

fn run(cmd: &mut Command) -> anyhow::Result<()> {
    let status = cmd
        .status()
        .with_context(|| format!("run {:?}", cmd.get_program()))?;
    if !status.success() {
        bail!("{cmd:?} failed: {status}");
    }
    Ok(())
}

fn umoci(layout: &std::path::Path, args: &[&str]) -> anyhow::Result<()> {
    let image = format!("{}:{TAG}", layout.display());
    run(Command::new("umoci")
        .args([args[0], "--image", &image])
        .args(&args[1..]))
}

pub fn image() -> anyhow::Result<()> {
    let started = Instant::now();
    let root = workspace_root();
    run(cargo().args(["build", "--release", "--locked", "-p", "pptp-user"]))?;
    let dir = root.join("target/image");
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir)?;
    // The shipped binary without its symbol table (the eBPF object inside keeps its BTF).
    let binary = dir.join("pptpgw");
    run(Command::new("objcopy")
        .arg("--strip-unneeded")
        .arg(root.join("target/release/pptpgw"))
        .arg(&binary))?;
    let rootfs = dir.join("rootfs");
    run(Command::new("bash")
        .arg(root.join("deploy/image/rootfs.sh"))
        .arg(&rootfs)
        .arg(&binary))?;

    let layout = dir.join("oci");
    let bundle = dir.join("bundle");
    run(Command::new("umoci")
        .args(["init", "--layout"])
        .arg(&layout))?;
    umoci(&layout, &["new"])?;
    umoci(&layout, &["unpack", bundle.to_str().context("path")?])?;
    run(Command::new("cp")
        .arg("-a")
        .arg(format!("{}/.", rootfs.display()))
        .arg(bundle.join("rootfs")))?;
    umoci(&layout, &["repack", bundle.to_str().context("path")?])?;
    umoci(
        &layout,
        &[
            "config",
            "--config.entrypoint",
            "/usr/local/bin/pptpgw",
            "--config.cmd",
            "run",
            "--config.cmd",
            "--config",
            "--config.cmd",
            "/etc/pptpgw/pptpgw.toml",
            "--config.exposedports",
            "1723/tcp",
            "--config.exposedports",
            "9723/tcp",
            "--config.workingdir",
            "/",
        ],
    )?;
    run(Command::new("umoci").args(["gc", "--layout"]).arg(&layout))?;
    // umoci names the manifest by its tag alone; loaders take the annotation as the image's
    // name, so it carries the whole reference.
    let index_path = layout.join("index.json");
    let index = std::fs::read_to_string(&index_path)?;
    let named = index.replace(
        &format!("\"org.opencontainers.image.ref.name\":\"{TAG}\""),
        &format!("\"org.opencontainers.image.ref.name\":\"{}\"", reference()),
    );
    if named == index {
        bail!(
            "no ref.name annotation for {TAG} in {}",
            index_path.display()
        );
    }
    std::fs::write(&index_path, named)?;
    let archive = archive();
    run(Command::new("tar")
        .args([
            "--sort=name",
            "--owner=0",
            "--group=0",
            "--numeric-owner",
            "--mtime=@0",
            "-C",
        ])
        .arg(&layout)
        .arg("-cf")
        .arg(&archive)
        .arg("."))?;
    let _ = std::fs::remove_dir_all(&bundle);
    let size = |p: &std::path::Path| -> u64 {
        let out = Command::new("du").args(["-sb"]).arg(p).output().ok();
        out.and_then(|o| {
            String::from_utf8_lossy(&o.stdout)
                .split_whitespace()
                .next()?
                .parse()
                .ok()
        })
        .unwrap_or(0)
    };
    let mib = |b: u64| b as f64 / (1024.0 * 1024.0);
    println!(
        "image {}: {} ({:.1} MiB archive; root filesystem {:.1} MiB, of which pptpgw {:.1} MiB), built in {:.0} s",
        reference(),
        archive.display(),
        mib(size(&archive)),
        mib(size(&rootfs)),
        mib(size(&binary)),
        started.elapsed().as_secs_f64()
    );
    Ok(())
}
