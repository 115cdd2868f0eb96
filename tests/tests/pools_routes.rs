//! Pools and route projection under recycling, pre-existing routes, restarts and exhaustion;
//! answering from the dialled address on a multihomed gateway; bad configs refused at start.
//! The two field failures of older PPTP servers this product must be free of (see the brief).

use std::{
    collections::BTreeSet,
    io::{BufRead as _, BufReader},
    net::Ipv4Addr,
    process::{Child, Stdio},
    time::{Duration, Instant},
};

use pptp_client::{DialConfig, DialError, Ended, Session, dial, gre::GreMux, peer::PeerConfig};
use pptp_tests::{
    gateway::{CLIENT, Rig, SECRETS, SERVER, XDP_FORWARDING, client_line, config, rt},
    netns::{Netns, run_ok, veth_pair},
    pptpgw_bin, require_root, terminate,
};

const POOL4: &str = "[[pool]]\nname = \"default\"\nranges = [\"10.99.0.10-10.99.0.13\"]\n";

fn dial_config(rig: &Rig, call_id: u16, local: Option<Ipv4Addr>) -> DialConfig {
    DialConfig {
        server: rig.dial,
        port: 1723,
        local,
        peer: PeerConfig {
            user: "alice".into(),
            password: "s3cret".into(),
            ..PeerConfig::default()
        },
        call_id,
        timeout: Duration::from_secs(30),
    }
}

/// Our routes' destinations in the gateway namespace.
fn route_destinations(rig: &Rig) -> BTreeSet<Ipv4Addr> {
    rig.routes()
        .iter()
        .filter_map(|l| l.split_whitespace().next())
        .map(|d| {
            d.trim_end_matches("/32")
                .parse()
                .expect("route destination")
        })
        .collect()
}

/// Exactly one route of ours per live session, to exactly the live sessions' addresses.
fn assert_routes_match(rig: &Rig, live: &BTreeSet<Ipv4Addr>, step: &str) {
    let routes = rig.routes();
    assert_eq!(
        routes.len(),
        live.len(),
        "{step}: routes {routes:?} for live {live:?}"
    );
    assert_eq!(&route_destinations(rig), live, "{step}: {routes:?}");
    for r in &routes {
        assert!(r.contains("dev pptp0"), "{step}: {r}");
    }
}

/// A client process holding its session; returns once it is up (and has pinged).
fn spawn_held(rig: &Rig, call_id: u16, local: Ipv4Addr) -> (Child, Ipv4Addr) {
    let mut child = rig
        .client_command(&[
            "--user",
            "alice",
            "--password",
            "s3cret",
            "--call-id",
            &call_id.to_string(),
            "--local",
            &local.to_string(),
            "--ping",
            &SERVER.to_string(),
            "--count",
            "2",
            "--hold",
            "120",
        ])
        .stdout(Stdio::piped())
        .spawn()
        .expect("spawn pptp-client");
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    let up = lines.next().and_then(Result::ok).unwrap_or_default();
    let ping = lines.next().and_then(Result::ok).unwrap_or_default();
    let fields = client_line(up.as_bytes(), "up")
        .unwrap_or_else(|| panic!("client {call_id}: {up}\n{}", rig.log()));
    assert!(
        ping.ends_with("received=2"),
        "client {call_id}: {ping}\n{}",
        rig.log()
    );
    (child, fields["address"].parse().unwrap())
}

fn client_addresses(rig: &Rig, n: u8) -> Vec<Ipv4Addr> {
    let addrs: Vec<Ipv4Addr> = (0..n)
        .map(|i| Ipv4Addr::new(198, 51, 100, 20 + i))
        .collect();
    for a in &addrs {
        rig.client
            .ip(&["addr", "add", &format!("{a}/24"), "dev", "c0"]);
    }
    addrs
}

/// Lesson 1: 40 sequential sessions on a 4-address pool, then rounds of 4 concurrent clients
/// dropped (cleanly, and killed outright) and redialled, then a gateway crash that leaves its
/// routes behind and a restart. Every dial succeeds, every address works, and the route table
/// always holds exactly one route of ours per live session.
#[test]
fn recycled_addresses_are_always_projected() {
    require_root();
    // Least-recently-released: sequential sessions walk the whole pool, so every address is
    // recycled ten times (the field failure began once every address had been used once).
    // Dials follow each other faster than one address's default connection rate allows.
    let cfg = config(&format!(
        "[pools]\npolicy = \"least-recently-released\"\n\
         [limits]\nconnection_rate_per_source = 0\n{POOL4}"
    ));
    let mut rig = Rig::start("recycle", &cfg, SECRETS);
    let mut seen = BTreeSet::new();
    let mut dials = 0;
    // 1. Sequential: 10 × 4 sessions, each pinging, each leaving no route.
    rig.client.enter(|| {
        rt().block_on(async {
            let mux = GreMux::open().unwrap();
            for i in 0..40u16 {
                let mut s = dial(dial_config(&rig, 1000 + i, None), &mux)
                    .await
                    .unwrap_or_else(|e| panic!("sequential dial {i}: {e}\n{}", rig.log()));
                dials += 1;
                let a = s.info.network.address;
                seen.insert(a);
                assert_routes_match(&rig, &BTreeSet::from([a]), "sequential, up");
                assert_eq!(s.ping(SERVER, 1, Duration::from_secs(2)).await.received, 1);
                assert_eq!(s.hangup().await, Ended::HungUp);
            }
        })
    });
    assert_eq!(seen.len(), 4, "all four addresses recycled: {seen:?}");
    rig.assert_clean();

    // 2. Rounds of 4 concurrent client processes from 4 outer addresses: two hang up, two are
    //    killed (no teardown from their side), then all four redial.
    let outers = client_addresses(&rig, 4);
    let mut call_id = 2000u16;
    for round in 0..3 {
        let mut held = Vec::new();
        for &o in &outers {
            call_id += 1;
            held.push(spawn_held(&rig, call_id, o));
            dials += 1;
        }
        let live: BTreeSet<Ipv4Addr> = held.iter().map(|h| h.1).collect();
        assert_eq!(live.len(), 4, "round {round}: {live:?}");
        assert_routes_match(&rig, &live, &format!("round {round}, all up"));
        for (i, (mut child, _)) in held.into_iter().enumerate() {
            if i % 2 == 0 {
                terminate(&mut child, Duration::from_secs(15)).expect("client hangs up");
            } else {
                child.kill().unwrap();
                child.wait().unwrap();
            }
        }
        rig.assert_clean();
        assert_routes_match(&rig, &BTreeSet::new(), &format!("round {round}, all gone"));
    }

    // 3. Four up, then the gateway crashes (SIGKILL: routes and pptp0 stay behind), a stray
    //    route of ours is added as an older crash would have left it, and the gateway restarts.
    let mut held = Vec::new();
    for &o in &outers {
        call_id += 1;
        held.push(spawn_held(&rig, call_id, o));
        dials += 1;
    }
    rig.crash();
    for (mut child, _) in held {
        // The clients see their control connections die and exit on their own.
        let deadline = Instant::now() + Duration::from_secs(10);
        while child.try_wait().unwrap().is_none() && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(50));
        }
        let _ = child.kill();
        let _ = child.wait();
    }
    let stale = rig.routes();
    assert_eq!(stale.len(), 4, "a crash leaves its routes: {stale:?}");
    rig.gw.ip(&[
        "route",
        "add",
        "10.99.0.12/32",
        "dev",
        "lan0",
        "proto",
        "241",
        "metric",
        "7",
    ]);
    rig.launch(&cfg, SECRETS);
    assert!(rig.log().contains("removed stale routes"), "{}", rig.log());
    assert_routes_match(&rig, &BTreeSet::new(), "after restart");
    let mut held = Vec::new();
    for &o in &outers {
        call_id += 1;
        held.push(spawn_held(&rig, call_id, o));
        dials += 1;
    }
    let live: BTreeSet<Ipv4Addr> = held.iter().map(|h| h.1).collect();
    assert_routes_match(&rig, &live, "after restart, all up");
    for (mut child, _) in held {
        terminate(&mut child, Duration::from_secs(15)).expect("client hangs up");
    }
    rig.assert_clean();
    let s = rig.stats();
    assert_eq!(s["controller"]["ended"].get("route_failed"), None, "{s}");
    eprintln!("recycle: {dials} dials, all succeeded; addresses used: {seen:?}");
    rig.stop();
}

/// A route for a pool address that is already there (someone else's, or ours from a crash) is
/// taken over by the session, and gone with it.
#[test]
fn a_preexisting_route_for_a_pool_address_is_taken_over() {
    require_root();
    let rig = Rig::start("preexist", &config(POOL4), SECRETS);
    // As a previous crash (or a confused operator) would leave them: one per pool address.
    rig.gw.ip(&[
        "route",
        "add",
        "10.99.0.10/32",
        "via",
        "203.0.113.5",
        "dev",
        "lan0",
    ]);
    rig.gw.ip(&[
        "route",
        "add",
        "10.99.0.11/32",
        "dev",
        "lan0",
        "proto",
        "241",
    ]);
    rig.client.enter(|| {
        rt().block_on(async {
            let mux = GreMux::open().unwrap();
            let mut a = dial(dial_config(&rig, 3001, None), &mux).await.unwrap();
            let mut b = dial(dial_config(&rig, 3002, None), &mux).await.unwrap();
            let live = BTreeSet::from([a.info.network.address, b.info.network.address]);
            assert_eq!(
                live,
                BTreeSet::from([Ipv4Addr::new(10, 99, 0, 10), Ipv4Addr::new(10, 99, 0, 11)])
            );
            assert_routes_match(&rig, &live, "taken over");
            let all =
                String::from_utf8_lossy(&rig.gw.ip(&["route", "show", "10.99.0.10/32"]).stdout)
                    .into_owned();
            assert_eq!(all.lines().count(), 1, "only ours is left: {all}");
            assert_eq!(a.ping(SERVER, 2, Duration::from_secs(2)).await.received, 2);
            assert_eq!(b.ping(SERVER, 2, Duration::from_secs(2)).await.received, 2);
            a.hangup().await;
            b.hangup().await;
        })
    });
    rig.assert_clean();
}

/// The fifth concurrent client on a 4-address pool is refused with a reason; the four work on.
#[test]
fn pool_exhaustion_refuses_the_fifth_and_spares_the_four() {
    require_root();
    let rig = Rig::start("exhaust", &config(POOL4), SECRETS);
    rig.client.enter(|| {
        rt().block_on(async {
            let mux = GreMux::open().unwrap();
            let mut four: Vec<Session> = Vec::new();
            for i in 0..4 {
                four.push(dial(dial_config(&rig, 4001 + i, None), &mux).await.unwrap());
            }
            let fifth = dial(dial_config(&rig, 4005, None), &mux).await;
            match fifth {
                // OCRP: general error (2), no resource (4).
                Err(DialError::CallRefused {
                    result: 2,
                    error: 4,
                }) => {}
                other => panic!("fifth: {:?}\n{}", other.map(|s| s.info.clone()), rig.log()),
            }
            for s in &mut four {
                assert_eq!(s.ping(SERVER, 2, Duration::from_secs(2)).await.received, 2);
            }
            for s in four {
                assert_eq!(s.hangup().await, Ended::HungUp);
            }
        })
    });
    let log = rig.log();
    assert!(log.contains("reason=pool_exhausted"), "{log}");
    assert!(rig.stats()["controller"]["pool_exhausted"].as_u64() >= Some(1));
    rig.assert_clean();
}

/// Lesson 2. The gateway has two uplinks with an address each; its default route (the best
/// route back to the client) is through uplink B. The client dials A, then B: both sessions come
/// up and ping, and every GRE and TCP packet the client receives is from the address it dialled,
/// and left through the dialled address's uplink.
#[test]
fn a_multihomed_gateway_answers_from_the_dialled_address() {
    multihomed("mh", "");
}

/// The same with XDP forwarding: the server's TCP replies are encapsulated by the LAN program.
#[test]
fn a_multihomed_gateway_answers_from_the_dialled_address_in_xdp_mode() {
    multihomed("mx", XDP_FORWARDING);
}

fn multihomed(tag: &str, extra: &str) {
    require_root();
    let client = Netns::new(&format!("{tag}c"));
    let router = Netns::new(&format!("{tag}r"));
    let gw = Netns::new(&format!("{tag}g"));
    let server = Netns::new(&format!("{tag}s"));
    let a = Ipv4Addr::new(198, 51, 100, 1);
    let b = Ipv4Addr::new(100, 64, 0, 1);
    let client_addr = Ipv4Addr::new(192, 0, 2, 2);
    veth_pair(&client, "c0", &router, "r0", 0x51);
    veth_pair(&router, "ra", &gw, "wana", 0x52);
    veth_pair(&router, "rb", &gw, "wanb", 0x53);
    veth_pair(&gw, "lan0", &server, "s0", 0x54);
    client.ip(&["addr", "add", "192.0.2.2/24", "dev", "c0"]);
    client.ip(&["route", "add", "default", "via", "192.0.2.1"]);
    router.ip(&["addr", "add", "192.0.2.1/24", "dev", "r0"]);
    router.ip(&["addr", "add", "198.51.100.2/24", "dev", "ra"]);
    router.ip(&["addr", "add", "100.64.0.2/24", "dev", "rb"]);
    gw.ip(&["addr", "add", "198.51.100.1/24", "dev", "wana"]);
    gw.ip(&["addr", "add", "100.64.0.1/24", "dev", "wanb"]);
    gw.ip(&["addr", "add", "203.0.113.1/24", "dev", "lan0"]);
    server.ip(&["addr", "add", "203.0.113.5/24", "dev", "s0"]);
    server.ip(&["route", "add", "default", "via", "203.0.113.1"]);
    // The best route back to the client is via B; traffic from A uses A's uplink (policy
    // routing, as an operator of a multihomed host sets it up).
    gw.ip(&[
        "route",
        "add",
        "default",
        "via",
        "100.64.0.2",
        "dev",
        "wanb",
    ]);
    gw.ip(&[
        "route",
        "add",
        "default",
        "via",
        "198.51.100.2",
        "dev",
        "wana",
        "table",
        "100",
    ]);
    gw.ip(&["rule", "add", "from", "198.51.100.1", "lookup", "100"]);
    for (ns, knob) in [
        (&router, "net.ipv4.ip_forward=1"),
        (&gw, "net.ipv4.ip_forward=1"),
    ] {
        run_ok(ns.command("sysctl").args(["-qw", knob]));
    }
    // Redirected frames arriving at the router's and the server's veths need NAPI there.
    for dev in ["ra", "rb"] {
        run_ok(router.command("ethtool").args(["-K", dev, "gro", "on"]));
    }
    run_ok(
        server
            .command("ethtool")
            .args(["-K", "s0", "gro", "on", "tx", "off"]),
    );
    // Captures on the router's two gateway-facing links: what the gateway sends, per uplink.
    let dir = std::env::temp_dir().join(format!("pptpgw-{tag}-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let mut captures = Vec::new();
    for dev in ["ra", "rb"] {
        let file = dir.join(format!("{dev}.pcap"));
        let child = router
            .command("tcpdump")
            .args(["-i", dev, "-n", "-U", "--immediate-mode", "-w"])
            .arg(&file)
            .arg(format!("dst host {client_addr} and (ip proto 47 or tcp)"))
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("tcpdump");
        captures.push((dev, file, child));
    }
    std::thread::sleep(Duration::from_millis(700));
    let mut rig = Rig::from_parts(tag, client, gw, server, &["wana", "wanb"], a);
    rig.launch(&config(&format!("{POOL4}\n{extra}")), SECRETS);
    for (i, dialled) in [a, b].into_iter().enumerate() {
        rig.dial = dialled;
        let out = rig.client(&[
            "--user",
            "alice",
            "--password",
            "s3cret",
            "--call-id",
            &(5001 + i).to_string(),
            "--ping",
            &SERVER.to_string(),
            "--count",
            "3",
        ]);
        let stdout = String::from_utf8_lossy(&out.stdout);
        assert!(
            out.status.success(),
            "dial {dialled}: {stdout}\n{}",
            rig.log()
        );
        let up = client_line(&out.stdout, "up").unwrap();
        assert_eq!(up["server"], dialled.to_string());
        assert_eq!(
            client_line(&out.stdout, "ping").unwrap()["received"],
            "3",
            "{stdout}"
        );
    }
    std::thread::sleep(Duration::from_millis(500));
    for (_, _, child) in &mut captures {
        // SAFETY: kill(2) on our own child's pid.
        unsafe { libc::kill(child.id() as i32, libc::SIGINT) };
        let out = std::io::read_to_string(child.stderr.take().unwrap()).unwrap_or_default();
        child.wait().unwrap();
        eprintln!("tcpdump: {out}");
    }
    // Per uplink: every packet to the client, with its source and protocol.
    for (dev, file, _) in &captures {
        let out = run_ok(
            std::process::Command::new("tcpdump")
                .args(["-n", "-r"])
                .arg(file)
                .args(["-q"]),
        );
        let text = String::from_utf8_lossy(&out.stdout);
        let want = if *dev == "ra" { a } else { b };
        let lines: Vec<&str> = text.lines().collect();
        let gre = lines.iter().filter(|l| l.contains("GRE")).count();
        let tcp = lines.iter().filter(|l| l.contains("tcp")).count();
        assert!(
            gre >= 6 && tcp >= 4,
            "{dev}: too little captured ({gre} GRE, {tcp} TCP):\n{text}"
        );
        for l in &lines {
            let src = l.split_whitespace().nth(2).unwrap_or("");
            assert!(
                src.starts_with(&format!("{want}")),
                "{dev}: a packet to the client not from {want}: {l}\n{text}"
            );
        }
        eprintln!("uplink {dev}: {gre} GRE and {tcp} TCP packets to the client, all from {want}");
    }
    let _ = std::fs::remove_dir_all(&dir);
    rig.assert_clean();
    drop(router);
    let _ = CLIENT;
}

/// Bad configs stop `pptpgw run` before it touches anything, naming the field.
#[test]
fn bad_configs_fail_at_start_naming_the_field() {
    require_root();
    let ns = Netns::new("badcfg");
    let dir = std::env::temp_dir().join(format!("pptpgw-badcfg-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let secrets = dir.join("chap-secrets");
    std::fs::write(&secrets, SECRETS).unwrap();
    let cases = [
        (
            "overlap",
            "[[pool]]\nname = \"default\"\nranges = [\"10.99.0.0/29\"]\n\
             [[pool]]\nname = \"b\"\nranges = [\"10.99.0.4-10.99.0.20\"]\n",
            "pool[b].ranges",
        ),
        (
            "client range",
            "[pools]\nclient_ranges = [\"10.99.0.0/24\"]\n\
             [[pool]]\nname = \"default\"\nranges = [\"10.99.0.10-10.99.0.20\"]\n",
            "pool[default].ranges",
        ),
        (
            "malformed CIDR",
            "[[pool]]\nname = \"default\"\nranges = [\"10.99.0.0/33\"]\n",
            "pool[default].ranges",
        ),
    ];
    for (what, text, field) in cases {
        let file = dir.join("bad.toml");
        std::fs::write(&file, text).unwrap();
        for verb in [
            &["run", "--wan", "lo", "--config"][..],
            &["check-config"][..],
        ] {
            let out = ns
                .command(pptpgw_bin())
                .args(verb)
                .arg(&file)
                .arg("--secrets")
                .arg(&secrets)
                .output()
                .unwrap();
            let err = String::from_utf8_lossy(&out.stderr);
            let verb_name = verb[0];
            assert_eq!(out.status.code(), Some(1), "{what} {verb_name}: {err}");
            assert!(err.contains(field), "{what} {verb_name}: {err}");
        }
        // Nothing was created.
        let links = String::from_utf8_lossy(&ns.ip(&["-o", "link"]).stdout).into_owned();
        assert!(!links.contains("pptp0"), "{links}");
    }
    let _ = std::fs::remove_dir_all(&dir);
}
