//! Control-plane benchmarks against the real `pptpgw` binary: session setup rate (TCP control,
//! LCP, MS-CHAPv2, IPCP, route, maps, until the first packet passes) with the project's client as
//! the load generator from many source addresses; teardown rate; sessions held and the
//! controller's memory per idle session; and a bounded churn soak.

use std::{
    net::Ipv4Addr,
    sync::Arc,
    time::{Duration, Instant},
};

use pptp_client::{DialConfig, Session, dial, gre::GreMux, peer::PeerConfig};
use pptp_tests::gateway::{GW_WAN, Rig, SERVER};
use pptp_user::wire::lcp::AuthProtocol;
use tokio::sync::Semaphore;

use crate::table::Row;

/// Source addresses the client namespace dials from.
const SOURCES: u32 = 64;

fn source(i: u32) -> Ipv4Addr {
    Ipv4Addr::from(u32::from(Ipv4Addr::new(198, 51, 100, 100)) + (i % SOURCES))
}

fn dial_config(i: u32) -> DialConfig {
    DialConfig {
        server: GW_WAN,
        port: 1723,
        local: Some(source(i)),
        peer: PeerConfig {
            user: "load".into(),
            password: "l0ad-pass".into(),
            methods: vec![AuthProtocol::MsChapV2],
            request_dns: false,
            ..PeerConfig::default()
        },
        call_id: (i / SOURCES + 1) as u16,
        timeout: Duration::from_secs(60),
    }
}

async fn api_stats(rig: &Rig) -> serde_json::Value {
    pptp_user::api::call(&rig.api_socket, &pptp_user::api::Request::Stats)
        .await
        .unwrap_or_default()
}

fn rss_kib(pid: u32) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("VmRSS:"))
                .and_then(|l| l.split_whitespace().nth(1)?.parse().ok())
        })
        .unwrap_or(0)
}

fn rig(tag: &str, sessions: u32) -> Rig {
    let rig = Rig::start(tag, &rig_config(sessions, ""), "load * l0ad-pass *\n");
    add_sources(&rig);
    rig
}

fn add_sources(rig: &Rig) {
    for i in 0..SOURCES {
        rig.client
            .ip(&["addr", "add", &format!("{}/24", source(i)), "dev", "c0"]);
    }
}

fn rig_config(sessions: u32, extra: &str) -> String {
    // The load comes from 64 addresses standing in for tens of thousands of clients: the
    // per-source limits (which would hold any one address to 10 connections a second and 64 at
    // once) are opened; the totals stay as shipped.
    format!(
        "[ppp]\ntunnel_local = \"10.99.0.1\"\nmppe = \"deny\"\n[auth]\nmethods = [\"mschapv2\"]\n\
         [limits]\nmax_sessions = {}\nconnection_rate_per_source = 0\n\
         max_connections_per_source = 0\nmax_unauthenticated_per_source = 4096\n\
         [metrics]\nlisten = \"\"\n\
         [pools]\npolicy = \"least-recently-released\"\n\
         [[pool]]\nname = \"default\"\nranges = [\"10.64.0.0/14\"]\n{extra}",
        sessions + 1000
    )
}

/// 8. Setup rate with MS-CHAPv2 checked by RADIUS (FreeRADIUS in the gateway's namespace)
///    against the secrets file, `n` sessions, interleaved run by run.
pub fn radius_setup_rate(n: u32, runs: usize, parallel: usize) -> Vec<Row> {
    use pptp_tests::freeradius::{FreeRadius, SECRET};
    let local = rig("aaal", n);
    let mut remote = Rig::topology("aaar");
    add_sources(&remote);
    let radius = FreeRadius::start(
        &remote.gw,
        "aaa",
        "load Cleartext-Password := \"l0ad-pass\"\n\tMessage-Authenticator := 0x00\n",
    );
    remote.launch(
        &rig_config(
            n,
            &format!(
                "[radius]\n[[radius.servers]]\naddress = \"127.0.0.1:1812\"\nsecret = \"{SECRET}\"\n"
            ),
        ),
        "",
    );
    let measure = |rig: &Rig| {
        rig.client.enter(|| {
            let (rt, set) = local_rt();
            set.block_on(&rt, async {
                let mux = GreMux::open().expect("GRE socket");
                let (s, took, failed) = dial_all(&mux, 0..n, parallel).await;
                let rate = s.len() as f64 / took.as_secs_f64();
                hang_up_all(s, parallel).await;
                tokio::time::sleep(Duration::from_millis(300)).await;
                (rate, failed)
            })
        })
    };
    let (mut l, mut r, mut failed) = (Vec::new(), Vec::new(), 0);
    for _ in 0..runs {
        let (x, f) = measure(&local);
        l.push(x);
        failed += f;
        let (x, f) = measure(&remote);
        r.push(x);
        failed += f;
    }
    let (l, r) = (crate::topo::median(l), crate::topo::median(r));
    let version = std::process::Command::new("freeradius")
        .arg("-v")
        .output()
        .map(|o| {
            String::from_utf8_lossy(&o.stdout)
                .lines()
                .next()
                .unwrap_or("")
                .to_string()
        })
        .unwrap_or_default();
    drop(radius);
    vec![
        Row::info(
            "8 AAA",
            &format!("session setups/s, MS-CHAPv2 by RADIUS ({n} sessions, {parallel} in flight)"),
            format!("{r:.0} /s; secrets file {l:.0} /s ({:.2}×)", r / l),
        ),
        Row::info(
            "8 AAA",
            "RADIUS server / failed dials",
            format!("{version} / {failed}"),
        ),
    ]
}

/// Dials sessions `range` with at most `parallel` in flight; each counts once its first ping
/// through the tunnel is answered. Returns the sessions and the time taken.
async fn dial_all(
    mux: &GreMux,
    range: std::ops::Range<u32>,
    parallel: usize,
) -> (Vec<Session>, Duration, u32) {
    let sem = Arc::new(Semaphore::new(parallel));
    let started = Instant::now();
    let mut tasks = Vec::new();
    for i in range {
        let permit = sem.clone().acquire_owned().await.expect("semaphore");
        let mux = mux.clone();
        tasks.push(tokio::task::spawn_local(async move {
            let _permit = permit;
            let mut s = dial(dial_config(i), &mux).await.ok()?;
            // Set up = the first packet through the tunnel answered (asked every 100 ms).
            for _ in 0..50 {
                if s.ping(SERVER, 1, Duration::from_millis(100)).await.received == 1 {
                    return Some(s);
                }
            }
            None
        }));
    }
    let mut sessions = Vec::new();
    let mut failed = 0;
    for t in tasks {
        match t.await {
            Ok(Some(s)) => sessions.push(s),
            _ => failed += 1,
        }
    }
    (sessions, started.elapsed(), failed)
}

async fn hang_up_all(sessions: Vec<Session>, parallel: usize) -> Duration {
    let sem = Arc::new(Semaphore::new(parallel));
    let started = Instant::now();
    let mut tasks = Vec::new();
    for s in sessions {
        let permit = sem.clone().acquire_owned().await.expect("semaphore");
        tasks.push(tokio::task::spawn_local(async move {
            let _permit = permit;
            s.hangup().await
        }));
    }
    for t in tasks {
        let _ = t.await;
    }
    started.elapsed()
}

fn local_rt() -> (tokio::runtime::Runtime, tokio::task::LocalSet) {
    (
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("runtime"),
        tokio::task::LocalSet::new(),
    )
}

/// Raises the soft descriptor limit to the hard one and returns it: every session is one TCP
/// socket in the generator and one in the controller, so the hard limit bounds the sessions a
/// single machine can hold (the container this runs in may cap it).
fn raise_nofile() -> u64 {
    let mut l = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit/setrlimit with a valid struct.
    unsafe {
        if libc::getrlimit(libc::RLIMIT_NOFILE, &mut l) == 0 {
            l.rlim_cur = l.rlim_max;
            libc::setrlimit(libc::RLIMIT_NOFILE, &l);
        }
    }
    l.rlim_max
}

/// 4. Setup and teardown rates (median of `runs` rounds of `n`), then `held` sessions held idle
///    and the controller's resident memory per session.
pub fn control_plane(n: u32, held: u32, runs: usize, parallel: usize) -> Vec<Row> {
    let fds = raise_nofile();
    let wanted = held;
    let held = held.min(u32::try_from(fds.saturating_sub(1000)).unwrap_or(u32::MAX));
    let mut rig = rig("ctl", held.max(n));
    let pid = rig.pid();
    let mut rows = Vec::new();
    let mut setups = Vec::new();
    let mut teardowns = Vec::new();
    let mut failures = 0;
    let (rss0, rss_held, held_ok, gw_stats) = rig.client.enter(|| {
        let (rt, local) = local_rt();
        local.block_on(&rt, async {
            let mux = GreMux::open().expect("GRE socket");
            // Warm-up (first-use allocations in the gateway), not measured.
            let (s, _, _) = dial_all(&mux, 0..64, parallel).await;
            hang_up_all(s, parallel).await;
            tokio::time::sleep(Duration::from_millis(500)).await;
            for _ in 0..runs {
                let (s, took, failed) = dial_all(&mux, 0..n, parallel).await;
                failures += failed;
                setups.push(s.len() as f64 / took.as_secs_f64());
                let count = s.len();
                let took = hang_up_all(s, parallel).await;
                teardowns.push(count as f64 / took.as_secs_f64());
            }
            tokio::time::sleep(Duration::from_millis(500)).await;
            let rss0 = rss_kib(pid);
            let (s, _, failed) = dial_all(&mux, 0..held, parallel).await;
            failures += failed;
            tokio::time::sleep(Duration::from_secs(1)).await;
            let rss = rss_kib(pid);
            let stats = api_stats(&rig).await;
            let ok = s.len() as u32;
            hang_up_all(s, parallel).await;
            (rss0, rss, ok, stats)
        })
    });
    let setup = crate::topo::median(setups);
    let teardown = crate::topo::median(teardowns);
    rows.push(Row::target(
        "4 control plane",
        &format!("session setups/s ({n} sessions, {parallel} in flight, {SOURCES} sources)"),
        format!("{setup:.0} /s"),
        "≥ 2000 /s",
        setup >= 2000.0,
    ));
    rows.push(Row::info(
        "4 control plane",
        "session teardowns/s",
        format!("{teardown:.0} /s"),
    ));
    rows.push(Row::target(
        "4 control plane",
        "concurrent sessions held (idle)",
        format!(
            "{held_ok} of {held} (maps {}, routes {}){}",
            gw_stats["maps"]["sessions"],
            gw_stats["routes"],
            if held < wanted {
                format!("; {wanted} asked, descriptor hard limit {fds}")
            } else {
                String::new()
            }
        ),
        "100000 (on demand: --held)",
        held_ok == held && held >= 100_000,
    ));
    let per = (rss_held.saturating_sub(rss0)) as f64 / f64::from(held_ok.max(1));
    rows.push(Row::target(
        "4 control plane",
        "controller RSS per idle session",
        format!("{per:.2} KiB ({rss0} → {rss_held} KiB)"),
        "≤ 4 KiB",
        per <= 4.0,
    ));
    rows.push(Row::info(
        "4 control plane",
        "failed dials",
        failures.to_string(),
    ));
    rig.stop();
    rows
}

/// 5. Churn: `k` sessions kept, the oldest hung up and a new one dialled, for `time`; RSS, map
///    entries and routes sampled at the start and the end.
pub fn churn(k: u32, time: Duration, parallel: usize) -> Vec<Row> {
    let _ = raise_nofile();
    let mut rig = rig("churn", k + 100);
    let pid = rig.pid();
    let (start, end, cycles) = rig.client.enter(|| {
        let (rt, local) = local_rt();
        local.block_on(&rt, async {
            let mux = GreMux::open().expect("GRE socket");
            let (mut live, _, _) = dial_all(&mux, 0..k, parallel).await;
            let sample = async |rig: &Rig| {
                let s = api_stats(rig).await;
                (
                    rss_kib(pid),
                    s["maps"]["sessions"].as_u64().unwrap_or(0),
                    s["routes"].as_u64().unwrap_or(0),
                    s["sessions"]["total"].as_u64().unwrap_or(0),
                )
            };
            let start = sample(&rig).await;
            let started = Instant::now();
            let mut next = k;
            let mut cycles = 0u64;
            while started.elapsed() < time {
                // Replace a batch: hang up the oldest, dial as many new ones (new call IDs, so
                // new keys; addresses recycle through the pool).
                let batch = (parallel as u32).min(k);
                let old: Vec<Session> = live.drain(..batch as usize).collect();
                hang_up_all(old, parallel).await;
                let (new, _, _) = dial_all(&mux, next..next + batch, parallel).await;
                next += batch;
                if next / SOURCES >= 60_000 {
                    next = 0;
                }
                cycles += new.len() as u64;
                live.extend(new);
            }
            tokio::time::sleep(Duration::from_millis(500)).await;
            let end = sample(&rig).await;
            hang_up_all(live, parallel).await;
            (start, end, cycles)
        })
    });
    rig.stop();
    let flat = end.1 == start.1 && end.2 == start.2 && end.3 == start.3;
    vec![
        Row::target(
            "5 churn",
            &format!("{k} sessions kept, {cycles} replaced in {:?}", time),
            format!(
                "maps {}→{}, routes {}→{}, sessions {}→{}",
                start.1, end.1, start.2, end.2, start.3, end.3
            ),
            "flat",
            flat,
        ),
        Row::info(
            "5 churn",
            "controller RSS",
            format!("{} → {} KiB", start.0, end.0),
        ),
    ]
}
