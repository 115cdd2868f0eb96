//! The image a platform team deploys (`cargo xtask image`), run under podman on the host network
//! of a test namespace with exactly the DaemonSet's four capabilities: a real session through it,
//! a clean stop, and a clear refusal without any one of the four.

use std::{
    io::{Read as _, Write as _},
    path::PathBuf,
    process::{Command, Output},
    time::{Duration, Instant},
};

use pptp_tests::{
    gateway::{Rig, SECRETS, SERVER, config, num},
    require_root,
};

const CAPS: [&str; 4] = ["NET_ADMIN", "NET_RAW", "BPF", "PERFMON"];

/// One container test at a time (they share podman's image store).
static SERIAL: std::sync::Mutex<()> = std::sync::Mutex::new(());

/// The archive and the reference it loads as (set by `cargo xtask test`).
fn image() -> (PathBuf, String) {
    let archive = std::env::var_os("PPTPGW_IMAGE").map_or_else(
        || PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../target/image/pptpgw.oci.tar"),
        PathBuf::from,
    );
    let reference =
        std::env::var("PPTPGW_IMAGE_REF").unwrap_or_else(|_| "localhost/pptpgw:0.1.0".into());
    assert!(
        archive.exists(),
        "{} missing: run `cargo xtask image` (or `cargo xtask test`)",
        archive.display()
    );
    (archive, reference)
}

/// podman as it works on this machine kind (runc; cgroupfs). Run from the host's namespaces
/// (`ip netns exec` would hide the cgroup mounts runc needs); containers join the test
/// namespace's network with `--network ns:` instead, which is the host network of that "host".
fn podman(_ns: &str) -> Command {
    let mut c = Command::new("podman");
    c.args(["--runtime", "runc", "--cgroup-manager", "cgroupfs"]);
    c
}

fn output(mut c: Command) -> Output {
    c.output().expect("run podman")
}

fn text(o: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    )
}

/// Loads the archive; returns the reference it was loaded as.
fn load() -> String {
    let (archive, reference) = image();
    let o = output({
        let mut c = Command::new("podman");
        c.args([
            "--runtime",
            "runc",
            "--cgroup-manager",
            "cgroupfs",
            "load",
            "-i",
        ])
        .arg(&archive);
        c
    });
    assert!(o.status.success(), "podman load: {}", text(&o));
    assert!(text(&o).contains(&reference), "{}", text(&o));
    reference
}

/// Files the container mounts: the config, the users, and /run/pptpgw (the API socket).
struct Mounts {
    dir: PathBuf,
}

impl Mounts {
    fn new(tag: &str) -> Self {
        let dir = std::env::temp_dir().join(format!("pptpgw-ctr-{}-{tag}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(dir.join("run")).unwrap();
        let cfg = format!(
            "{}\n[interfaces]\nwan = [\"wan0\"]\nxdp_mode = \"native\"\n\
             [auth]\nsecrets = \"/etc/ppp/chap-secrets\"\n",
            config("")
        );
        std::fs::write(dir.join("pptpgw.toml"), cfg).unwrap();
        std::fs::write(dir.join("chap-secrets"), SECRETS).unwrap();
        Self { dir }
    }

    fn args(&self) -> Vec<String> {
        let d = self.dir.display();
        vec![
            "-v".into(),
            format!("{d}/pptpgw.toml:/etc/pptpgw/pptpgw.toml:ro"),
            "-v".into(),
            format!("{d}/chap-secrets:/etc/ppp/chap-secrets:ro"),
            "-v".into(),
            format!("{d}/run:/run/pptpgw"),
        ]
    }

    fn api(&self) -> PathBuf {
        self.dir.join("run/api.sock")
    }
}

impl Drop for Mounts {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// `podman run` with the DaemonSet's settings (the network of namespace `ns`, as a DaemonSet's
/// `hostNetwork` is the node's) and these capabilities.
fn run_args(ns: &str, caps: &[&str], mounts: &Mounts, name: &str) -> Vec<String> {
    let network = format!("ns:/run/netns/{ns}");
    let mut a: Vec<String> = [
        "run",
        "--name",
        name,
        "--network",
        &network,
        "--cap-drop",
        "all",
    ]
    .iter()
    .map(|s| s.to_string())
    .collect();
    if !caps.is_empty() {
        a.push("--cap-add".into());
        a.push(caps.join(","));
    }
    // As the DaemonSet says: the runtime's default seccomp profile refuses bpf(2) without
    // SYS_ADMIN (see deploy/kubernetes/daemonset.yaml).
    a.push("--security-opt".into());
    a.push("seccomp=unconfined".into());
    // This machine kind's hard limits are below podman's defaults (see shared/TOOLCHAIN.md).
    for u in ["nofile=1024:1024", "nproc=1024:1024"] {
        a.push("--ulimit".into());
        a.push(u.into());
    }
    a.extend(mounts.args());
    a
}

/// `GET path` on the gateway's metrics listener, from inside its namespace.
fn http_get(rig: &Rig, path: &str) -> Option<String> {
    rig.gw.enter(|| {
        let mut s = std::net::TcpStream::connect("127.0.0.1:9723").ok()?;
        s.set_read_timeout(Some(Duration::from_secs(2))).ok()?;
        write!(s, "GET {path} HTTP/1.0\r\nHost: localhost\r\n\r\n").ok()?;
        let mut body = String::new();
        s.read_to_string(&mut body).ok()?;
        Some(body)
    })
}

/// Nothing of the gateway's in the namespace: no pptp0, no XDP program on wan0, no route of ours.
fn assert_nothing_left(rig: &Rig, context: &str) {
    let links = String::from_utf8_lossy(&rig.gw.ip(&["-d", "link", "show"]).stdout).to_string();
    assert!(!links.contains("pptp0"), "{context}: pptp0 left: {links}");
    assert!(!links.contains("prog/xdp"), "{context}: XDP left: {links}");
    assert!(
        rig.routes().is_empty(),
        "{context}: routes left: {:?}",
        rig.routes()
    );
}

fn remove(ns: &str, name: &str) {
    let _ = output({
        let mut c = podman(ns);
        c.args(["rm", "-f", "-t", "0", name]);
        c
    });
}

#[test]
fn the_image_runs_a_real_session_with_four_capabilities_and_stops_clean() {
    require_root();
    let _one_at_a_time = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let reference = load();
    let rig = Rig::topology("ctr");
    let ns = rig.gw.name().to_string();
    let mounts = Mounts::new("run");
    let name = format!("pptpgw-test-{}", std::process::id());
    remove(&ns, &name);

    // check-config in the image, with the mounted files.
    let o = output({
        let mut c = podman(&ns);
        c.args(run_args(&ns, &CAPS, &mounts, &format!("{name}-check")))
            .args([
                "--rm",
                &reference,
                "check-config",
                "/etc/pptpgw/pptpgw.toml",
            ]);
        c
    });
    assert!(o.status.success(), "check-config: {}", text(&o));

    let o = output({
        let mut c = podman(&ns);
        c.args(run_args(&ns, &CAPS, &mounts, &name))
            .args(["-d", &reference]);
        c
    });
    assert!(o.status.success(), "podman run: {}", text(&o));
    let logs = || {
        text(&output({
            let mut c = podman(&ns);
            c.args(["logs", &name]);
            c
        }))
    };
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        if http_get(&rig, "/readyz")
            .is_some_and(|r| r.starts_with("HTTP/1.0 200") || r.starts_with("HTTP/1.1 200"))
        {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "/readyz never answered 200\n{}",
            logs()
        );
        std::thread::sleep(Duration::from_millis(200));
    }
    let stats = || {
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap()
            .block_on(pptp_user::api::call(
                &mounts.api(),
                &pptp_user::api::Request::Stats,
            ))
            .unwrap_or_else(|e| panic!("API: {e:#}\n{}", logs()))
    };
    // Exactly the four capabilities, as the DaemonSet grants them.
    let caps = text(&output({
        let mut c = podman(&ns);
        c.args(["inspect", "--format", "{{.EffectiveCaps}}", &name]);
        c
    }));
    for cap in CAPS {
        assert!(caps.contains(&format!("CAP_{cap}")), "{caps}");
    }
    assert_eq!(caps.matches("CAP_").count(), 4, "{caps}");
    let before = stats();
    let out = rig.client(&[
        "--user",
        "alice",
        "--password",
        "s3cret",
        "--ping",
        &SERVER.to_string(),
        "--count",
        "3",
    ]);
    let stdout = String::from_utf8_lossy(&out.stdout).to_string();
    assert!(out.status.success(), "{stdout}\n{}", logs());
    assert!(stdout.contains("received=3"), "{stdout}\n{}", logs());
    let after = stats();
    let moved = |k: &str| num(&after, &["datapath", k]) - num(&before, &["datapath", k]);
    assert!(moved("xdp_decap") >= 3, "{after}");
    assert!(moved("encapsulated") >= 3, "{after}");
    assert_eq!(num(&after, &["controller", "slowpath_data_frames"]), 0);

    // podman stop: SIGTERM, the gateway removes what it made and exits 0.
    let o = output({
        let mut c = podman(&ns);
        c.args(["stop", "-t", "20", &name]);
        c
    });
    assert!(o.status.success(), "podman stop: {}", text(&o));
    let code = text(&output({
        let mut c = podman(&ns);
        c.args(["inspect", "--format", "{{.State.ExitCode}}", &name]);
        c
    }));
    let log = logs();
    remove(&ns, &name);
    assert_eq!(code.trim(), "0", "{log}");
    assert!(log.contains("pptpgw stopped"), "{log}");
    assert_nothing_left(&rig, "after podman stop");
}

#[test]
fn the_image_without_any_one_capability_refuses_to_start_and_names_it() {
    require_root();
    let _one_at_a_time = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let reference = load();
    let rig = Rig::topology("ctrcap");
    let ns = rig.gw.name().to_string();
    let mounts = Mounts::new("caps");
    for missing in CAPS {
        let fewer: Vec<&str> = CAPS.iter().copied().filter(|c| *c != missing).collect();
        let name = format!("pptpgw-nocap-{}-{missing}", std::process::id());
        remove(&ns, &name);
        let o = output({
            let mut c = podman(&ns);
            c.args(run_args(&ns, &fewer, &mounts, &name))
                .args(["--rm", &reference]);
            c
        });
        let t = text(&o);
        assert!(!o.status.success(), "started without {missing}: {t}");
        assert!(
            t.contains(&format!("CAP_{missing}")),
            "without {missing}: {t}"
        );
        assert_nothing_left(&rig, &format!("without {missing}"));
    }
}
