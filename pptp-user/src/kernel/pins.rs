//! What the data path leaves in bpffs so that it outlives the controller (hitless restart):
//!
//! ```text
//! <pin_dir>/maps-<layout>/SESSIONS ...     the state maps (sessions, sequence state, counters,
//!                                          MPPE keys, rate buckets, config, program arrays)
//! <pin_dir>/link-<program>@<interface>     each attached program's bpf link
//! <pin_dir>/object-<hash>-<mode>           marker: the object (and forwarding mode) attached
//! ```
//!
//! `<layout>` fingerprints every type and capacity the maps are made of: a controller whose
//! layout differs cannot read what is pinned, so it detaches the old programs and starts
//! afresh (its sessions end: the journal carries the same layout and is refused too). Same
//! layout, another object (an upgrade): the maps are adopted and each link is pointed at the new
//! program atomically (`bpf_link_update`), so no packet misses a program. Same object: nothing
//! is loaded or replaced at all.

use std::path::{Path, PathBuf};

use pptp_common::{maps, session, stats};

/// The maps that carry sessions across processes (the benchmark's and the per-CPU scratch
/// are each process's own).
pub const PINNED_MAPS: [&str; 14] = [
    maps::SESSIONS,
    maps::CLIENTS,
    maps::CLIENTS6,
    maps::DELEGATED6,
    maps::GRE_STATE,
    maps::SESSION_STATS,
    maps::MPPE_STATE,
    maps::RATE_LIMITS,
    maps::CONFIG,
    maps::ROUTE_GENERATION,
    maps::FORWARD,
    maps::HOME_CPUS,
    maps::STATS,
    maps::DROPS,
];

/// Bumped by hand when a map's meaning changes without its size changing.
const LAYOUT_REVISION: u64 = 2;

/// FNV-1a, 64 bits: a fingerprint, not a defence (nothing here is secret or adversarial).
pub fn fnv1a(bytes: &[u8]) -> u64 {
    bytes.iter().fold(0xcbf2_9ce4_8422_2325, |h, &b| {
        (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3)
    })
}

/// The fingerprint of the maps' layout (types, capacities, counter tables).
pub fn layout() -> u64 {
    use core::mem::size_of;
    let parts: [u64; 12] = [
        LAYOUT_REVISION,
        size_of::<session::Session>() as u64,
        size_of::<session::SessionKey>() as u64,
        size_of::<session::GreState>() as u64,
        size_of::<session::SessionStats>() as u64,
        size_of::<session::DatapathConfig>() as u64,
        size_of::<pptp_common::mppe::MppeState>() as u64,
        size_of::<pptp_common::rate::RateLimit>() as u64,
        u64::from(maps::DEFAULT_MAX_SESSIONS),
        stats::Stat::COUNT as u64,
        stats::DropReason::COUNT as u64,
        u64::from(maps::MAX_HOME_CPUS),
    ];
    let bytes: Vec<u8> = parts.iter().flat_map(|p| p.to_le_bytes()).collect();
    fnv1a(&bytes)
}

/// The pin directory of one gateway.
#[derive(Clone, Debug)]
pub struct Pins {
    root: PathBuf,
}

const BPF_FS_MAGIC: i64 = 0xcafe_4a11;

fn on_bpffs(path: &Path) -> bool {
    use std::os::unix::ffi::OsStrExt as _;
    let Ok(c) = std::ffi::CString::new(path.as_os_str().as_bytes()) else {
        return false;
    };
    // SAFETY: statfs fills a local struct from a NUL-terminated path.
    let mut s: libc::statfs = unsafe { std::mem::zeroed() };
    // SAFETY: as above.
    let rc = unsafe { libc::statfs(c.as_ptr(), &mut s) };
    rc == 0 && s.f_type as i64 == BPF_FS_MAGIC
}

impl Pins {
    /// Makes sure `root` exists on a bpf filesystem (mounting one at `/sys/fs/bpf` if nothing
    /// is mounted there yet, as systemd would).
    pub fn open(root: &Path) -> anyhow::Result<Self> {
        let mount_point = Path::new("/sys/fs/bpf");
        if root.starts_with(mount_point) && !on_bpffs(mount_point) {
            // SAFETY: mount(2) with NUL-terminated literals.
            let rc = unsafe {
                libc::mount(
                    c"bpf".as_ptr(),
                    c"/sys/fs/bpf".as_ptr(),
                    c"bpf".as_ptr(),
                    0,
                    std::ptr::null(),
                )
            };
            if rc != 0 {
                tracing::warn!(error = %std::io::Error::last_os_error(), "mount bpffs on /sys/fs/bpf");
            } else {
                // Ours alone when this process has a mount namespace of its own (`ip netns
                // exec` gives one): the pins then last only as long as it does.
                tracing::warn!(
                    "bpffs was not mounted on /sys/fs/bpf: mounted it; mount it on the host (and into the container) for the data path to outlive the process tree"
                );
            }
        }
        std::fs::create_dir_all(root).map_err(|e| {
            anyhow::anyhow!("restart.pin_dir {}: cannot create it: {e}", root.display())
        })?;
        anyhow::ensure!(
            on_bpffs(root),
            "restart.pin_dir {}: not on a bpf filesystem (mount -t bpf bpf /sys/fs/bpf; in a container, mount the host's /sys/fs/bpf)",
            root.display()
        );
        Ok(Self { root: root.into() })
    }

    /// A pin directory as it is, without making sure of anything (to inspect a sibling's).
    pub fn at(root: &Path) -> Self {
        Self { root: root.into() }
    }

    pub fn root(&self) -> &Path {
        &self.root
    }

    pub fn maps_dir(&self) -> PathBuf {
        self.root.join(format!("maps-{:016x}", layout()))
    }

    pub fn map_path(&self, name: &str) -> PathBuf {
        self.maps_dir().join(name)
    }

    pub fn link_path(&self, program: &str, iface: &str) -> PathBuf {
        self.root.join(format!("link-{program}@{iface}"))
    }

    pub fn object_marker(&self, object: u64, xdp_forwarding: bool) -> PathBuf {
        let mode = if xdp_forwarding { "xdp" } else { "stack" };
        self.root.join(format!("object-{object:016x}-{mode}"))
    }

    fn entries(&self, prefix: &str) -> Vec<PathBuf> {
        std::fs::read_dir(&self.root)
            .into_iter()
            .flatten()
            .flatten()
            .filter(|e| e.file_name().to_string_lossy().starts_with(prefix))
            .map(|e| e.path())
            .collect()
    }

    /// Pinned links, by path.
    pub fn links(&self) -> Vec<PathBuf> {
        self.entries("link-")
    }

    /// Whether maps of our layout are pinned (a previous run's sessions may live in them).
    pub fn has_maps(&self) -> bool {
        self.map_path(maps::SESSIONS).exists()
    }

    /// Removes what a controller of another layout left: its links (detaching its programs) and
    /// its maps. True when there was any.
    pub fn remove_other_layouts(&self) -> bool {
        let ours = self.maps_dir();
        let stale: Vec<PathBuf> = self
            .entries("maps-")
            .into_iter()
            .filter(|p| *p != ours)
            .collect();
        if stale.is_empty() {
            return false;
        }
        for p in self.links().into_iter().chain(self.entries("object-")) {
            let _ = remove(&p);
        }
        for p in &stale {
            let _ = std::fs::remove_dir_all(p);
        }
        true
    }

    /// Marks `marker` as what is attached now (the others go).
    pub fn mark(&self, marker: &Path) -> anyhow::Result<()> {
        for p in self.entries("object-") {
            if p != marker {
                let _ = remove(&p);
            }
        }
        if !marker.exists() {
            std::fs::create_dir(marker)
                .map_err(|e| anyhow::anyhow!("create {}: {e}", marker.display()))?;
        }
        Ok(())
    }

    /// A clean stop: links (the programs detach), maps, markers, the directory.
    pub fn remove_all(&self) {
        for p in self.links() {
            let _ = remove(&p);
        }
        let _ = std::fs::remove_dir_all(&self.root);
    }
}

fn remove(p: &Path) -> std::io::Result<()> {
    if p.is_dir() {
        std::fs::remove_dir_all(p)
    } else {
        std::fs::remove_file(p)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_layout_fingerprint_is_stable_and_names_the_maps_dir() {
        assert_eq!(layout(), layout());
        assert_ne!(fnv1a(b"a"), fnv1a(b"b"));
        // FNV-1a's published test vector.
        assert_eq!(fnv1a(b"a"), 0xaf63_dc4c_8601_ec8c);
        let p = Pins {
            root: "/sys/fs/bpf/x".into(),
        };
        assert!(
            p.map_path("SESSIONS")
                .to_string_lossy()
                .starts_with("/sys/fs/bpf/x/maps-")
        );
        assert_eq!(
            p.link_path("pptp_decap", "eth0"),
            Path::new("/sys/fs/bpf/x/link-pptp_decap@eth0")
        );
    }
}
