//! Fixtures for pptpgw's system tests: network namespaces joined by veth pairs, threads that run
//! inside a namespace, raw packet sockets, and test frames.
//!
//! Every fixture owns what it creates and removes it on drop, so a failing assertion still leaves
//! the machine clean. These tests need root (CAP_NET_ADMIN, CAP_BPF, CAP_SYS_ADMIN); they fail,
//! never skip, without it.
pub mod frames;
pub mod freeradius;
pub mod gateway;
pub mod kernel;
pub mod netns;
pub mod sockets;
pub mod transfer;
pub mod tun;

/// Fails the calling test loudly when not run as root: these tests are not optional.
pub fn require_root() {
    // SAFETY: geteuid has no preconditions and cannot fail.
    let euid = unsafe { libc::geteuid() };
    assert_eq!(
        euid, 0,
        "this test needs root (network namespaces, XDP/TC attach): run it as root, as CI does"
    );
}

/// Path of the `pptpgw` binary under test: `$PPTPGW_BIN` (set by `cargo xtask test`), else the
/// binary next to this test executable's profile directory.
pub fn pptpgw_bin() -> std::path::PathBuf {
    binary("PPTPGW_BIN", "pptpgw")
}

/// Path of the project's PPTP client binary: `$PPTP_CLIENT_BIN`, else next to this test.
pub fn pptp_client_bin() -> std::path::PathBuf {
    binary("PPTP_CLIENT_BIN", "pptp-client")
}

fn binary(var: &str, name: &str) -> std::path::PathBuf {
    if let Some(p) = std::env::var_os(var) {
        return p.into();
    }
    let exe = std::env::current_exe().expect("current_exe");
    // target/<profile>/deps/<test> -> target/<profile>/pptpgw
    let bin = exe
        .parent()
        .and_then(|deps| deps.parent())
        .map(|profile| profile.join(name))
        .expect("test executable path has a profile directory");
    assert!(
        bin.exists(),
        "{} not built: run `cargo xtask test`, or `cargo build` first",
        bin.display()
    );
    bin
}

/// A Python with the Prometheus project's `prometheus_client` (its OpenMetrics parser checks our
/// exposition): `$PPTPGW_PYTHON` (set by `cargo xtask test`, which makes the venv), else the
/// workspace's `target/ci-venv`.
pub fn python() -> std::path::PathBuf {
    if let Some(p) = std::env::var_os("PPTPGW_PYTHON") {
        return p.into();
    }
    let p = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../target/ci-venv/bin/python");
    assert!(
        p.exists(),
        "{} missing: run `cargo xtask test` (it creates the venv with prometheus-client)",
        p.display()
    );
    p
}

/// Sends SIGTERM to a child and waits for it at most `within`; on timeout it is killed and `None`
/// returned (so a hung process fails the test instead of hanging it).
pub fn terminate(
    child: &mut std::process::Child,
    within: std::time::Duration,
) -> Option<std::process::ExitStatus> {
    // SAFETY: kill(2) on our own child's pid.
    unsafe { libc::kill(child.id() as i32, libc::SIGTERM) };
    let deadline = std::time::Instant::now() + within;
    loop {
        if let Ok(Some(status)) = child.try_wait() {
            return Some(status);
        }
        if std::time::Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            return None;
        }
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
}
