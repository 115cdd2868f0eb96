//! Builds the eBPF object with the pinned nightly and bpf-linker, into OUT_DIR, where `datapath.rs`
//! embeds it. This is the one place the object is built: `cargo xtask build-ebpf` runs this too,
//! so the binary can never embed an object built some other way or left over from an older tree.
use anyhow::{Context as _, anyhow};

fn main() -> anyhow::Result<()> {
    let toolchain_file = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../pptp-ebpf/nightly-toolchain"
    );
    println!("cargo:rerun-if-changed={toolchain_file}");
    let toolchain = std::fs::read_to_string(toolchain_file)
        .with_context(|| format!("read {toolchain_file}"))?;
    let toolchain = toolchain.trim();

    let metadata = cargo_metadata::MetadataCommand::new()
        .no_deps()
        .exec()
        .context("cargo metadata")?;
    let ebpf = metadata
        .packages
        .iter()
        .find(|p| p.name.as_str() == "pptp-ebpf")
        .ok_or_else(|| anyhow!("pptp-ebpf package not found in the workspace"))?;
    let root_dir = ebpf
        .manifest_path
        .parent()
        .ok_or_else(|| anyhow!("no parent for {}", ebpf.manifest_path))?;
    aya_build::build_ebpf(
        [aya_build::Package {
            name: ebpf.name.as_str(),
            root_dir: root_dir.as_str(),
            ..Default::default()
        }],
        aya_build::Toolchain::Custom(toolchain),
    )
    .with_context(|| format!("building pptp-ebpf with {toolchain} (see .ci/run for the setup)"))
}
