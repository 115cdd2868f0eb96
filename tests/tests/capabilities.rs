//! pptpgw runs with exactly the capabilities its deployment files grant (the systemd unit's
//! `CapabilityBoundingSet=`, mirrored in the Kubernetes DaemonSet), and each one is needed.

use std::time::{Duration, Instant};

use pptp_tests::{
    netns::{Netns, veth_pair},
    pptpgw_bin, require_root,
};

/// The unit's capability set, lower-case without `CAP_` (setpriv's spelling).
fn documented() -> Vec<String> {
    let unit = include_str!("../../deploy/systemd/pptpgw.service");
    let line = unit
        .lines()
        .find_map(|l| l.strip_prefix("CapabilityBoundingSet="))
        .expect("CapabilityBoundingSet= in the unit");
    line.split_whitespace()
        .map(|c| c.trim_start_matches("CAP_").to_lowercase())
        .collect()
}

/// Starts pptpgw with only `caps`; true when it came up (API answering), false when it exited.
fn starts_with(caps: &[String]) -> (bool, String) {
    let ns = Netns::new("caps");
    let peer = Netns::new("capp");
    veth_pair(&ns, "wan0", &peer, "p0", 0x61);
    ns.ip(&["addr", "add", "192.0.2.1/24", "dev", "wan0"]);
    let dir =
        std::env::temp_dir().join(format!("pptpgw-caps-{}-{}", std::process::id(), caps.len()));
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(dir.join("chap-secrets"), "alice * x *\n").unwrap();
    let set = format!(
        "-all{}",
        caps.iter().map(|c| format!(",+{c}")).collect::<String>()
    );
    let api = dir.join("api.sock");
    let mut child = ns
        .command("setpriv")
        .arg(format!("--inh-caps={set}"))
        .arg(format!("--ambient-caps={set}"))
        .arg(format!("--bounding-set={set}"))
        .arg(pptpgw_bin())
        .args(["run", "--wan", "wan0", "--xdp-mode", "native", "--secrets"])
        .arg(dir.join("chap-secrets"))
        .arg("--api-socket")
        .arg(&api)
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(20);
    let up = loop {
        if child.try_wait().unwrap().is_some() {
            break false;
        }
        if api.exists() && answers(&api) {
            break true;
        }
        if Instant::now() > deadline {
            break false;
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    // SAFETY: kill(2) on our own child's pid.
    unsafe { libc::kill(child.id() as i32, libc::SIGTERM) };
    let out = child.wait_with_output().unwrap();
    let links = String::from_utf8_lossy(&ns.ip(&["-o", "link"]).stdout).into_owned();
    assert!(
        !links.contains("pptp0"),
        "with {caps:?}, left pptp0 behind: {links}"
    );
    assert!(!api.exists(), "with {caps:?}, left the API socket behind");
    let _ = std::fs::remove_dir_all(&dir);
    (up, String::from_utf8_lossy(&out.stderr).into_owned())
}

fn answers(api: &std::path::Path) -> bool {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap()
        .block_on(pptp_user::api::call(api, &pptp_user::api::Request::Stats))
        .is_ok()
}

#[test]
fn runs_with_the_documented_capabilities_and_needs_each() {
    require_root();
    let caps = documented();
    assert_eq!(
        caps,
        ["net_admin", "net_raw", "bpf", "perfmon"],
        "keep the DaemonSet's list in step with the unit's"
    );
    let daemonset = include_str!("../../deploy/kubernetes/daemonset.yaml");
    for c in &caps {
        assert!(
            daemonset.contains(&format!("- {}", c.to_uppercase())),
            "DaemonSet lacks {c}"
        );
    }
    let (up, log) = starts_with(&caps);
    assert!(up, "with {caps:?}: {log}");
    for missing in &caps {
        let fewer: Vec<String> = caps.iter().filter(|c| *c != missing).cloned().collect();
        let (up, log) = starts_with(&fewer);
        assert!(!up, "started without {missing}: {log}");
        assert!(
            log.contains("pptpgw: ") && log.contains(&format!("CAP_{}", missing.to_uppercase())),
            "without {missing}, a clear error naming it: {log}"
        );
    }
}
