//! Operating a running gateway: the CLI verbs over the control API, reload, limits, `/metrics`
//! parsed by the Prometheus project's own parser, JSON logs, and SIGTERM leaving nothing behind.

use std::{
    io::{Read as _, Write as _},
    net::{Ipv4Addr, TcpStream},
    process::Command,
    time::{Duration, Instant},
};

use pptp_client::{DialError, Ended, dial, gre::GreMux};
use pptp_tests::{
    gateway::{Rig, SECRETS, SERVER, config, dial_config, num, rt},
    pptpgw_bin, require_root,
};
use serde_json::Value;

/// `pptpgw <verb> --socket <rig's socket> <args>`, which must succeed; its stdout.
fn cli(rig: &Rig, verb: &str, args: &[&str]) -> String {
    let out = Command::new(pptpgw_bin())
        .arg(verb)
        .arg("--socket")
        .arg(&rig.api_socket)
        .args(args)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "pptpgw {verb} {args:?}: {}\n{}",
        String::from_utf8_lossy(&out.stderr),
        rig.log()
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

#[test]
fn sessions_list_moving_counters_and_kill_ends_the_session() {
    require_root();
    let rig = Rig::start("cli", &config(""), SECRETS);
    rig.client.enter(|| {
        rt().block_on(async {
            let mux = GreMux::open().unwrap();
            let mut s = dial(dial_config(&rig, "bob", "hunter2", 0x6001), &mux)
                .await
                .unwrap();
            assert_eq!(s.ping(SERVER, 3, Duration::from_secs(2)).await.received, 3);
            let json: Value = serde_json::from_str(&cli(&rig, "sessions", &["--json"])).unwrap();
            let list = json.as_array().unwrap();
            assert_eq!(list.len(), 1, "{json}");
            let row = &list[0];
            assert_eq!(row["user"], "bob");
            assert_eq!(row["assigned"], s.info.network.address.to_string());
            assert_eq!(row["peer"], s.info.local.to_string());
            assert_eq!(row["local"], s.info.server.to_string());
            assert_eq!(row["call_id"], s.info.peer_call_id);
            assert_eq!(row["peer_call_id"], s.info.call_id);
            assert_eq!(row["state"], "up");
            let (rx0, tx0) = (num(row, &["rx_packets"]), num(row, &["tx_packets"]));
            assert!(rx0 >= 3 && tx0 >= 3, "{row}");
            // Counters move with traffic.
            assert_eq!(s.ping(SERVER, 4, Duration::from_secs(2)).await.received, 4);
            let json: Value = serde_json::from_str(&cli(&rig, "sessions", &["--json"])).unwrap();
            let row = &json[0];
            assert_eq!(num(row, &["rx_packets"]), rx0 + 4, "{row}");
            assert_eq!(num(row, &["tx_packets"]), tx0 + 4, "{row}");
            assert!(num(row, &["rx_bytes"]) >= (rx0 + 4) * 84, "{row}");
            // The table form names the user and the addresses.
            let table = cli(&rig, "sessions", &[]);
            assert!(
                table.lines().count() == 2 && table.contains("bob"),
                "{table}"
            );
            assert!(
                table.contains(&s.info.network.address.to_string()),
                "{table}"
            );
            // Kill by user: the client is told (LCP Terminate-Request, then CDN).
            let killed = cli(&rig, "kill", &["--user", "bob"]);
            assert!(killed.contains(&num(row, &["id"]).to_string()), "{killed}");
            let ended = tokio::time::timeout(Duration::from_secs(15), s.wait())
                .await
                .expect("client told within 15 s");
            assert!(
                matches!(ended, Ended::Link(_) | Ended::Cleared { .. }),
                "{ended:?}"
            );
        })
    });
    rig.assert_clean();
    let s = rig.stats();
    assert_eq!(num(&s, &["controller", "ended", "closed"]), 1, "{s}");
    // `kill` with nothing to select is an error, not "kill everything".
    let out = Command::new(pptpgw_bin())
        .args(["kill", "--socket"])
        .arg(&rig.api_socket)
        .output()
        .unwrap();
    assert!(!out.status.success());
}

#[test]
fn reload_changes_pool_and_password_while_a_session_stays_up() {
    require_root();
    let pool_a = "[[pool]]\nname = \"default\"\nranges = [\"10.99.0.10-10.99.0.13\"]\n";
    let pool_b = "[[pool]]\nname = \"default\"\nranges = [\"10.99.7.10-10.99.7.13\"]\n";
    let mut rig = Rig::start("reload", &config(pool_a), SECRETS);
    rig.client.enter(|| {
        rt().block_on(async {
            let mux = GreMux::open().unwrap();
            let mut old = dial(dial_config(&rig, "alice", "s3cret", 0x7001), &mux)
                .await
                .unwrap();
            assert_eq!(old.info.network.address, Ipv4Addr::new(10, 99, 0, 10));
            // New pool, new password for alice; rewrite the files and reload via the CLI.
            rig.rewrite(&config(pool_b), "alice * n3w-pass *\nbob * hunter2 *\n");
            let out = cli(&rig, "reload", &[]);
            assert!(out.contains("\"reloaded\": true"), "{out}");
            // The old session lives on, with its old address (kept: outside every pool now).
            assert!(out.contains("10.99.0.10"), "{out}");
            assert_eq!(
                old.ping(SERVER, 3, Duration::from_secs(2)).await.received,
                3
            );
            // The old password no longer works; the new one does, from the new pool.
            match dial(dial_config(&rig, "alice", "s3cret", 0x7002), &mux).await {
                Err(DialError::AuthFailed { .. }) => {}
                other => panic!("old password: {:?}", other.map(|s| s.info.clone())),
            }
            let mut new = dial(dial_config(&rig, "alice", "n3w-pass", 0x7003), &mux)
                .await
                .unwrap();
            assert_eq!(new.info.network.address, Ipv4Addr::new(10, 99, 7, 10));
            assert_eq!(
                new.ping(SERVER, 2, Duration::from_secs(2)).await.received,
                2
            );
            // A change only a restart can make is refused as a whole (SIGHUP this time), and the
            // running configuration stays: the new password still works afterwards.
            rig.rewrite(
                &config(&format!("[listen]\nport = 1724\n{pool_b}")),
                "alice * other *\n",
            );
            rig.signal(libc::SIGHUP);
            let deadline = Instant::now() + Duration::from_secs(5);
            while !rig.log().contains("reload refused") && Instant::now() < deadline {
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
            let log = rig.log();
            assert!(
                log.contains("reload refused")
                    && log.contains("listen can only change with a restart"),
                "{log}"
            );
            let mut third = dial(dial_config(&rig, "alice", "n3w-pass", 0x7004), &mux)
                .await
                .unwrap();
            assert_eq!(
                third.ping(SERVER, 1, Duration::from_secs(2)).await.received,
                1
            );
            assert_eq!(
                old.ping(SERVER, 1, Duration::from_secs(2)).await.received,
                1
            );
            for s in [old, new, third] {
                s.hangup().await;
            }
        })
    });
    rig.assert_clean();
    let s = rig.stats();
    assert_eq!(num(&s, &["shell", "reloads"]), 1, "{s}");
    assert_eq!(num(&s, &["shell", "reloads_refused"]), 1, "{s}");
    rig.stop();
}

#[test]
fn limits_refuse_as_configured() {
    require_root();
    // One session per user (deny), two in all, one new connection per second per source.
    let rig = Rig::start(
        "limits",
        &config(
            "[limits]\nmax_sessions = 2\nmax_sessions_per_user = 1\nper_user_policy = \"deny\"\n\
             connection_rate_per_source = 1\n",
        ),
        SECRETS,
    );
    rig.client.enter(|| {
        rt().block_on(async {
            let mux = GreMux::open().unwrap();
            let mut a = dial(dial_config(&rig, "alice", "s3cret", 0x8001), &mux)
                .await
                .unwrap();
            tokio::time::sleep(Duration::from_millis(1100)).await;
            // alice's second session: refused after authentication, with the reason.
            match dial(dial_config(&rig, "alice", "s3cret", 0x8002), &mux).await {
                Err(DialError::Link(pptp_client::peer::PeerDown::ServerTerminated(m))) => {
                    assert!(m.contains("too many sessions"), "{m}")
                }
                other => panic!(
                    "per-user: {:?}\n{}",
                    other.map(|s| s.info.clone()),
                    rig.log()
                ),
            }
            tokio::time::sleep(Duration::from_millis(1100)).await;
            let mut b = dial(dial_config(&rig, "bob", "hunter2", 0x8003), &mux)
                .await
                .unwrap();
            tokio::time::sleep(Duration::from_millis(1100)).await;
            // A third session: over max_sessions, refused in OCRP (general error, no resource).
            match dial(dial_config(&rig, "bob", "hunter2", 0x8004), &mux).await {
                Err(DialError::CallRefused {
                    result: 2,
                    error: 4,
                }) => {}
                other => panic!("max_sessions: {:?}", other.map(|s| s.info.clone())),
            }
            // A burst of connections from one source: two are admitted, the rest closed at once.
            let mut refused = 0;
            for _ in 0..6 {
                let mut c = tokio::net::TcpStream::connect((rig.dial, 1723))
                    .await
                    .unwrap();
                let mut b = [0u8; 1];
                use tokio::io::AsyncReadExt as _;
                match tokio::time::timeout(Duration::from_millis(300), c.read(&mut b)).await {
                    Ok(Ok(0)) | Ok(Err(_)) => refused += 1,
                    _ => {}
                }
            }
            assert!(refused >= 3, "refused {refused} of 6");
            assert_eq!(a.ping(SERVER, 1, Duration::from_secs(2)).await.received, 1);
            assert_eq!(b.ping(SERVER, 1, Duration::from_secs(2)).await.received, 1);
            a.hangup().await;
            b.hangup().await;
        })
    });
    rig.assert_clean();
    let s = rig.stats();
    assert_eq!(num(&s, &["controller", "user_limit_refused"]), 1, "{s}");
    assert!(num(&s, &["controller", "calls_refused"]) >= 1, "{s}");
    assert!(num(&s, &["shell", "connections_rate_limited"]) >= 3, "{s}");
    let log = rig.log();
    assert!(log.contains("per-user limit"), "{log}");
    assert!(log.contains("reason=connection_rate"), "{log}");
}

#[test]
fn per_user_replace_ends_the_older_session() {
    require_root();
    let rig = Rig::start(
        "replace",
        &config("[limits]\nmax_sessions_per_user = 1\nper_user_policy = \"replace\"\n"),
        SECRETS,
    );
    rig.client.enter(|| {
        rt().block_on(async {
            let mux = GreMux::open().unwrap();
            let old = dial(dial_config(&rig, "alice", "s3cret", 0x8101), &mux)
                .await
                .unwrap();
            let mut new = dial(dial_config(&rig, "alice", "s3cret", 0x8102), &mux)
                .await
                .unwrap();
            let ended = tokio::time::timeout(Duration::from_secs(15), old.wait())
                .await
                .expect("old session told");
            assert!(
                matches!(ended, Ended::Link(_) | Ended::Cleared { .. }),
                "{ended:?}"
            );
            assert_eq!(
                new.ping(SERVER, 2, Duration::from_secs(2)).await.received,
                2
            );
            new.hangup().await;
        })
    });
    rig.assert_clean();
    assert_eq!(num(&rig.stats(), &["controller", "ended", "replaced"]), 1);
}

/// `/metrics` through the Prometheus project's own parser (prometheus_client, run by Python).
#[test]
fn metrics_parse_and_probes_answer() {
    require_root();
    let rig = Rig::start(
        "metrics",
        &config("[metrics]\nlisten = \"127.0.0.1:9723\"\nper_session = true\n"),
        SECRETS,
    );
    let (status, body) = rig.gw.enter(|| http_get("127.0.0.1:9723", "/readyz"));
    assert_eq!((status, body.trim()), (200, "ready"));
    let (status, _) = rig.gw.enter(|| http_get("127.0.0.1:9723", "/healthz"));
    assert_eq!(status, 200);
    rig.client.enter(|| {
        rt().block_on(async {
            let mux = GreMux::open().unwrap();
            let mut s = dial(dial_config(&rig, "bob", "hunter2", 0x9001), &mux)
                .await
                .unwrap();
            assert_eq!(s.ping(SERVER, 5, Duration::from_secs(2)).await.received, 5);
            let mut bad = dial_config(&rig, "bob", "nope", 0x9002);
            bad.peer.methods = vec![pptp_user::wire::lcp::AuthProtocol::Pap];
            assert!(dial(bad, &mux).await.is_err());
            let (status, text) = rig.gw.enter(|| http_get("127.0.0.1:9723", "/metrics"));
            assert_eq!(status, 200, "{text}");
            let parsed = parse_with_prometheus_client(&text);
            let get = |name: &str, labels: &str| -> f64 {
                parsed
                    .lines()
                    .find_map(|l| {
                        let (k, v) = l.rsplit_once(' ')?;
                        (k == format!("{name}{labels}")).then(|| v.parse().ok())?
                    })
                    .unwrap_or_else(|| panic!("{name}{labels} not in:\n{parsed}"))
            };
            assert_eq!(get("pptpgw_sessions", "{state=up}"), 1.0);
            assert!(get("pptpgw_datapath_events_total", "{event=xdp_decap}") >= 5.0);
            assert!(get("pptpgw_datapath_packets_total", "{direction=rx}") >= 5.0);
            assert_eq!(get("pptpgw_auth_failures_total", "{method=pap}"), 1.0);
            assert_eq!(get("pptpgw_pool_leased", "{pool=default}"), 1.0);
            assert_eq!(get("pptpgw_routes", ""), 1.0);
            assert!(
                get(
                    "pptpgw_session_rx_bytes",
                    "{assigned=10.99.0.10,peer=198.51.100.7,prefix6=,session=1,user=bob}"
                ) >= 420.0
            );
            s.hangup().await;
        })
    });
    rig.assert_clean();
}

/// A plain HTTP/1.1 GET (the probes' and Prometheus' view), in the calling thread's namespace.
fn http_get(addr: &str, path: &str) -> (u16, String) {
    let mut c = TcpStream::connect(addr).unwrap();
    c.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    write!(
        c,
        "GET {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"
    )
    .unwrap();
    let mut text = String::new();
    c.read_to_string(&mut text).unwrap();
    let status = text
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(0);
    let body = text.split_once("\r\n\r\n").map_or("", |b| b.1).to_string();
    (status, body)
}

/// Parses OpenMetrics text with `prometheus_client.openmetrics.parser` and prints every sample
/// as `name{k=v,...} value` (labels sorted). Fails on anything the parser rejects.
fn parse_with_prometheus_client(text: &str) -> String {
    let python = pptp_tests::python();
    let script = r#"
import sys
from prometheus_client.openmetrics.parser import text_string_to_metric_families
for fam in text_string_to_metric_families(sys.stdin.read()):
    for s in fam.samples:
        labels = ",".join(f"{k}={v}" for k, v in sorted(s.labels.items()))
        print(f"{s.name}{{{labels}}} {s.value}" if labels else f"{s.name} {s.value}")
"#;
    let mut child = Command::new(&python)
        .args(["-c", script])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("{}: {e}", python.display()));
    child
        .stdin
        .take()
        .unwrap()
        .write_all(text.as_bytes())
        .unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "prometheus_client rejected the exposition: {}\n{text}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

#[test]
fn json_logs_and_sigterm_leaves_nothing() {
    require_root();
    let mut rig = Rig::start(
        "json",
        &config("[log]\nformat = \"json\"\nlevel = \"info\"\n"),
        SECRETS,
    );
    rig.client.enter(|| {
        rt().block_on(async {
            let mux = GreMux::open().unwrap();
            let mut s = dial(dial_config(&rig, "alice", "s3cret", 0xa001), &mux)
                .await
                .unwrap();
            assert_eq!(s.ping(SERVER, 1, Duration::from_secs(2)).await.received, 1);
            // Stop the gateway under a live session: the client is told.
            let ended = {
                let stop = tokio::task::spawn_blocking({
                    let pid = rig.pid();
                    move || {
                        // SAFETY: kill(2) on the gateway we started.
                        unsafe { libc::kill(pid as i32, libc::SIGTERM) };
                    }
                });
                let _ = stop.await;
                tokio::time::timeout(Duration::from_secs(15), s.wait())
                    .await
                    .expect("client told within 15 s")
            };
            assert!(!matches!(ended, Ended::HungUp), "{ended:?}");
        })
    });
    let log = rig.stop();
    let lines: Vec<Value> = log
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("not JSON ({e}): {l}")))
        .collect();
    let up = lines
        .iter()
        .find(|l| l["message"] == "session up")
        .expect("session up line");
    assert_eq!(up["user"], "alice");
    assert_eq!(up["session"], 1);
    let down = lines
        .iter()
        .find(|l| l["message"] == "session down")
        .expect("session down line");
    // Shutdown clears the calls with the control connection (StopCCRQ, RFC 2637 §2.3).
    assert_eq!(down["reason"], "control_localstop");
    assert!(down["rx_packets"].as_u64() >= Some(1), "{down}");
    // Nothing of ours is left in the gateway namespace: no pptp0, no programs, no routes.
    let links = String::from_utf8_lossy(&rig.gw.ip(&["-d", "link", "show"]).stdout).into_owned();
    assert!(!links.contains("pptp0"), "{links}");
    assert!(!links.contains("xdp"), "{links}");
    assert!(rig.routes().is_empty());
    let tc = Command::new("ip")
        .args([
            "netns",
            "exec",
            rig.gw.name(),
            "tc",
            "filter",
            "show",
            "dev",
            "wan0",
            "ingress",
        ])
        .output()
        .unwrap();
    assert!(String::from_utf8_lossy(&tc.stdout).trim().is_empty());
}
