//! Authentication through a real FreeRADIUS (Debian's 3.2) running in the gateway's namespace,
//! with the real `pptpgw` and the project's client. The gateway's secrets file is empty, so every
//! session that comes up was authenticated by RADIUS; the first configured server is down, so
//! the first request fails over (nothing listens on its port).

use pptp_tests::{
    freeradius::{FreeRadius, SECRET},
    gateway::{Rig, SERVER, client_line, config, config_mppe, num},
    require_root,
};

/// alice: a password; carol: an address and a session timeout from RADIUS. Their replies carry a
/// Message-Authenticator (FreeRADIUS computes the placeholder), as pptpgw requires; dave's
/// do not, and pptpgw must not believe them (BlastRADIUS).
const USERS: &str = r#"alice Cleartext-Password := "s3cret"
	Message-Authenticator := 0x00

carol Cleartext-Password := "c4rol"
	Message-Authenticator := 0x00,
	Framed-IP-Address = 10.99.0.77,
	Session-Timeout = 3

dave Cleartext-Password := "d4ve"

frank Cleartext-Password := "fr4nk"
	Message-Authenticator := 0x00,
	Framed-Pool = "second"

erin Cleartext-Password := "3rin"
	Message-Authenticator := 0x00,
	Idle-Timeout = 2
"#;

/// `radius_config("refuse")` plus accounting to FreeRADIUS, Interim-Updates every 2 s.
fn accounting_config() -> String {
    let c =
        radius_config("refuse").replacen("[radius]\n", "[radius]\ninterim_interval = \"2s\"\n", 1);
    format!(
        "{c}[[radius.accounting_servers]]\naddress = \"127.0.0.1:1813\"\nsecret = \"{SECRET}\"\n"
    )
}

fn radius_config(when_unreachable: &str) -> String {
    format!(
        "[radius]\nnas_identifier = \"gw-test\"\nwhen_unreachable = \"{when_unreachable}\"\n\
         timeout = \"1s\"\nretries = 1\n\
         [[radius.servers]]\naddress = \"127.0.0.1:1\"\nsecret = \"{SECRET}\"\n\
         [[radius.servers]]\naddress = \"127.0.0.1:1812\"\nsecret = \"{SECRET}\"\n"
    )
}

#[test]
fn each_method_authenticates_through_freeradius_and_mppe_keys_come_from_it() {
    require_root();
    let mut rig = Rig::topology("rad");
    let radius = FreeRadius::start(&rig.gw, "rad", USERS);
    rig.launch(&config_mppe("allow", &radius_config("refuse")), "");
    for (i, (method, mppe)) in [
        ("mschapv2", true),
        ("mschapv2", false),
        ("chap-md5", false),
        ("pap", false),
    ]
    .into_iter()
    .enumerate()
    {
        let call_id = (300 + i).to_string();
        let mut args = vec![
            "--user",
            "alice",
            "--password",
            "s3cret",
            "--auth",
            method,
            "--call-id",
            &call_id,
        ];
        if mppe {
            args.push("--mppe");
        }
        let server = SERVER.to_string();
        args.extend(["--ping", &server, "--count", "3"]);
        let out = rig.client(&args);
        let stdout = String::from_utf8_lossy(&out.stdout);
        assert!(
            out.status.success(),
            "{method} mppe {mppe}: {stdout}\n{}\n{}",
            rig.log(),
            radius.log()
        );
        let ping = client_line(&out.stdout, "ping").expect("ping line");
        assert_eq!(ping["received"], "3", "{method}: {stdout}");
        rig.assert_clean();
    }
    let log = rig.log();
    // MPPE through RADIUS's MS-MPPE keys: the encrypted session pinged, so both ends had the
    // same keys; and it is logged encrypted.
    assert!(log.contains("encryption=mppe-128"), "{log}");
    assert_eq!(
        log.matches("RADIUS answered").count(),
        4,
        "one Access-Request per session: {log}"
    );
    // The first server (nothing listens there) was tried once, then the second preferred.
    assert!(
        log.contains("RADIUS server did not answer") || log.contains("RADIUS server unreachable"),
        "{log}"
    );
}

#[test]
fn wrong_passwords_and_unknown_users_are_refused_by_radius() {
    require_root();
    let mut rig = Rig::topology("radbad");
    let radius = FreeRadius::start(&rig.gw, "radbad", USERS);
    // The secrets file knows "mallory", RADIUS does not: with `refuse`, RADIUS decides.
    rig.launch(&config(&radius_config("refuse")), "mallory * pw *\n");
    for (user, password, method, attempts) in [
        ("alice", "wrong", "mschapv2", "3"),
        ("alice", "wrong", "chap-md5", "1"),
        ("alice", "wrong", "pap", "1"),
        ("mallory", "pw", "pap", "1"),
        ("dave", "d4ve", "pap", "1"),
    ] {
        let out = rig.client(&["--user", user, "--password", password, "--auth", method]);
        let stdout = String::from_utf8_lossy(&out.stdout);
        assert_eq!(
            out.status.code(),
            Some(2),
            "{user}/{method}: {stdout}\n{}",
            radius.log()
        );
        assert!(
            stdout.contains(&format!("after {attempts} attempt")),
            "{user}/{method}: {stdout}"
        );
        if method == "mschapv2" {
            assert!(stdout.contains("E=691 R=0"), "{stdout}");
        }
        rig.assert_clean();
    }
    let s = rig.stats();
    assert_eq!(num(&s, &["controller", "ended", "auth_failed"]), 5, "{s}");
    // dave's Access-Accept had no Message-Authenticator: dropped, as if nobody answered.
    let log = rig.log();
    assert!(log.contains("RADIUS reply dropped: not authentic"), "{log}");
}

#[test]
fn framed_ip_and_session_timeout_from_radius_are_obeyed() {
    require_root();
    let mut rig = Rig::topology("radattr");
    let _radius = FreeRadius::start(&rig.gw, "radattr", USERS);
    rig.launch(&config(&radius_config("refuse")), "");
    let out = rig.client(&[
        "--user",
        "carol",
        "--password",
        "c4rol",
        "--auth",
        "pap",
        "--ping",
        &SERVER.to_string(),
        "--count",
        "2",
        "--hold",
        "8",
    ]);
    let stdout = String::from_utf8_lossy(&out.stdout);
    let up = client_line(&out.stdout, "up").expect("up line");
    assert_eq!(up["address"], "10.99.0.77", "{stdout}");
    assert_eq!(client_line(&out.stdout, "ping").unwrap()["received"], "2");
    let log = rig.log();
    let down = log
        .lines()
        .find(|l| l.contains("session down"))
        .unwrap_or_else(|| panic!("no session down: {log}"));
    assert!(down.contains("reason=session_timeout"), "{down}");
    rig.assert_clean();
}

#[test]
fn when_every_server_is_down_the_policy_decides() {
    require_root();
    for (policy, secrets, expect_up) in [
        ("refuse", "alice * s3cret *\n", false),
        ("local", "alice * s3cret *\n", true),
    ] {
        let mut rig = Rig::topology(&format!("rad{}", &policy[..3]));
        // No FreeRADIUS at all: both servers are down.
        rig.launch(&config(&radius_config(policy)), secrets);
        let out = rig.client(&["--user", "alice", "--password", "s3cret", "--auth", "pap"]);
        let stdout = String::from_utf8_lossy(&out.stdout);
        assert_eq!(
            out.status.success(),
            expect_up,
            "{policy}: {stdout}\n{}",
            rig.log()
        );
        assert!(
            rig.log().contains("RADIUS authentication unavailable"),
            "{}",
            rig.log()
        );
        rig.assert_clean();
    }
}

/// Accounting-On, Start, Interim-Updates, Stop and Accounting-Off reach FreeRADIUS's `detail`
/// file, and the Stop's counters are the data path's.
#[test]
fn accounting_records_carry_the_data_paths_counters() {
    require_root();
    let mut rig = Rig::topology("racct");
    let radius = FreeRadius::start(&rig.gw, "racct", USERS);
    rig.launch(&config(&accounting_config()), "");
    let out = rig.client(&[
        "--user",
        "alice",
        "--password",
        "s3cret",
        "--auth",
        "pap",
        "--ping",
        &SERVER.to_string(),
        "--count",
        "7",
        "--hold",
        "5",
    ]);
    assert!(out.status.success(), "{}", rig.log());
    let log = rig.stop();
    let down = log
        .lines()
        .find(|l| l.contains("session down"))
        .unwrap_or_else(|| panic!("{log}"));
    let field = |k: &str| {
        down.split_whitespace()
            .find_map(|kv| kv.strip_prefix(&format!("{k}=")))
            .unwrap_or_else(|| panic!("{k} in {down}"))
            .to_string()
    };
    let records = wait_for(&radius, "Accounting-Off");
    let status: Vec<&str> = records
        .iter()
        .map(|r| r["Acct-Status-Type"].as_str())
        .collect();
    assert_eq!(status.first(), Some(&"Accounting-On"), "{status:?}");
    assert_eq!(status.last(), Some(&"Accounting-Off"), "{status:?}");
    let interims = status.iter().filter(|s| **s == "Interim-Update").count();
    assert!(interims >= 2, "{status:?}");
    let stop = records
        .iter()
        .find(|r| r["Acct-Status-Type"] == "Stop")
        .unwrap_or_else(|| panic!("{status:?}"));
    let start = records
        .iter()
        .find(|r| r["Acct-Status-Type"] == "Start")
        .unwrap();
    assert_eq!(start["Acct-Session-Id"], stop["Acct-Session-Id"]);
    assert_eq!(stop["User-Name"], "alice");
    assert_eq!(stop["Acct-Input-Packets"], field("rx_packets"), "{stop:?}");
    assert_eq!(stop["Acct-Input-Octets"], field("rx_bytes"), "{stop:?}");
    assert_eq!(stop["Acct-Output-Packets"], field("tx_packets"), "{stop:?}");
    assert_eq!(stop["Acct-Output-Octets"], field("tx_bytes"), "{stop:?}");
    assert_eq!(stop["Acct-Terminate-Cause"], "User-Request", "{stop:?}");
    assert_eq!(stop["Calling-Station-Id"], "198.51.100.7");
    assert!(
        stop["Acct-Session-Time"].parse::<u32>().unwrap() >= 5,
        "{stop:?}"
    );
    assert!(field("rx_packets").parse::<u32>().unwrap() >= 7);
}

/// Hitless restart: a kill -9 of the worker leaves one accounting session — one Start, Interims
/// and the Stop under the same Acct-Session-Id, the Stop's time counted from the first start,
/// no second Accounting-On.
#[test]
fn accounting_runs_on_across_a_worker_crash() {
    require_root();
    let mut rig = Rig::topology("rakill");
    let radius = FreeRadius::start(&rig.gw, "rakill", USERS);
    rig.launch(&config(&accounting_config()), "");
    let mut client = rig
        .client_command(&[
            "--user",
            "alice",
            "--password",
            "s3cret",
            "--auth",
            "pap",
            "--hold",
            "8",
        ])
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let t = std::time::Instant::now();
    while !rig.sessions().iter().any(|s| s["state"] == "up") {
        assert!(
            t.elapsed() < std::time::Duration::from_secs(15),
            "{}",
            rig.log()
        );
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
    std::thread::sleep(std::time::Duration::from_secs(3));
    rig.kill_worker();
    let status = client.wait().unwrap();
    assert!(
        status.success(),
        "the client saw its session end early\n{}",
        rig.log()
    );
    let records = wait_for(&radius, "Stop");
    let status: Vec<&str> = records
        .iter()
        .map(|r| r["Acct-Status-Type"].as_str())
        .collect();
    assert_eq!(
        status.iter().filter(|s| **s == "Accounting-On").count(),
        1,
        "{status:?}"
    );
    assert_eq!(
        status.iter().filter(|s| **s == "Start").count(),
        1,
        "{status:?}"
    );
    let ids: std::collections::BTreeSet<&str> = records
        .iter()
        .filter_map(|r| r.get("Acct-Session-Id").map(String::as_str))
        .collect();
    assert_eq!(ids.len(), 1, "one accounting session: {records:?}");
    let stop = records
        .iter()
        .find(|r| r["Acct-Status-Type"] == "Stop")
        .unwrap();
    assert_eq!(stop["Acct-Terminate-Cause"], "User-Request", "{stop:?}");
    assert!(
        stop["Acct-Session-Time"].parse::<u32>().unwrap() >= 7,
        "{stop:?}"
    );
    rig.assert_clean();
}

/// The whole process tree killed (a container restart): the next start ends the session whose
/// control connection died with it, and RADIUS hears a Stop (Lost-Carrier) under its
/// Acct-Session-Id before the new Accounting-On.
#[test]
fn a_session_lost_with_the_whole_tree_is_stopped_in_accounting() {
    require_root();
    let mut rig = Rig::topology("ratree");
    let radius = FreeRadius::start(&rig.gw, "ratree", USERS);
    rig.launch(&config(&accounting_config()), "");
    let mut client = held_session(&rig, "4100");
    wait_for(&radius, "Start");
    rig.crash();
    let _ = client.kill();
    let _ = client.wait();
    rig.launch(&config(&accounting_config()), "");
    wait_for(&radius, "Stop");
    // The Stop is sent before the new run's Accounting-On; wait for both.
    let t = std::time::Instant::now();
    let records = loop {
        let r = radius.accounting_records();
        let ons = r
            .iter()
            .filter(|r| r["Acct-Status-Type"] == "Accounting-On")
            .count();
        if ons >= 2 || t.elapsed() > std::time::Duration::from_secs(15) {
            break r;
        }
        std::thread::sleep(std::time::Duration::from_millis(200));
    };
    let status: Vec<&str> = records
        .iter()
        .map(|r| r["Acct-Status-Type"].as_str())
        .collect();
    let start = records
        .iter()
        .find(|r| r["Acct-Status-Type"] == "Start")
        .unwrap();
    let stop = records
        .iter()
        .find(|r| r["Acct-Status-Type"] == "Stop")
        .unwrap();
    assert_eq!(start["Acct-Session-Id"], stop["Acct-Session-Id"]);
    assert_eq!(stop["Acct-Terminate-Cause"], "Lost-Carrier", "{stop:?}");
    let stop_at = status.iter().position(|s| *s == "Stop").unwrap();
    assert_eq!(
        status[stop_at + 1..].first(),
        Some(&"Accounting-On"),
        "{status:?}"
    );
    rig.assert_clean();
    assert!(rig.log().contains("lost-across-restart"), "{}", rig.log());
}

/// Accounting sent while no server listens is kept and delivered once one does.
#[test]
fn accounting_queued_while_the_server_is_down_is_delivered_after() {
    require_root();
    let mut rig = Rig::topology("racq");
    // Authentication from the secrets file; the accounting server is not running yet.
    let cfg = format!(
        "[radius]\n[[radius.accounting_servers]]\naddress = \"127.0.0.1:1813\"\nsecret = \"{SECRET}\"\n"
    );
    rig.launch(&config(&cfg), "alice * s3cret *\n");
    let out = rig.client(&["--user", "alice", "--password", "s3cret", "--auth", "pap"]);
    assert!(out.status.success(), "{}", rig.log());
    std::thread::sleep(std::time::Duration::from_millis(500));
    assert!(
        rig.log().contains("accounting not delivered; kept"),
        "{}",
        rig.log()
    );
    let radius = FreeRadius::start(&rig.gw, "racq", USERS);
    let records = wait_for(&radius, "Stop");
    let status: Vec<&str> = records
        .iter()
        .map(|r| r["Acct-Status-Type"].as_str())
        .collect();
    assert_eq!(status, ["Accounting-On", "Start", "Stop"], "{records:?}");
    // Resent records say how late they are.
    assert!(
        records
            .iter()
            .all(|r| r["Acct-Delay-Time"].parse::<u32>().unwrap() <= 30),
        "{records:?}"
    );
    rig.assert_clean();
}

/// The detail records once one with this Acct-Status-Type is there (15 s at most).
fn wait_for(radius: &FreeRadius, status: &str) -> Vec<std::collections::HashMap<String, String>> {
    let t = std::time::Instant::now();
    loop {
        let r = radius.accounting_records();
        if r.iter()
            .any(|r| r.get("Acct-Status-Type").map(String::as_str) == Some(status))
        {
            return r;
        }
        assert!(
            t.elapsed() < std::time::Duration::from_secs(15),
            "no {status} record: {r:?}\n{}",
            radius.log()
        );
        std::thread::sleep(std::time::Duration::from_millis(200));
    }
}

const DAS_SECRET: &str = "dassecret";

/// `radclient` in the gateway's namespace: the attributes to `127.0.0.1:3799` as `kind`
/// (disconnect or coa) with `secret`; its output.
fn radclient(rig: &Rig, kind: &str, attrs: &str, secret: &str) -> String {
    use std::io::Write as _;
    let mut child = rig
        .gw
        .command("radclient")
        .args(["-x", "-t", "1", "-r", "1", "127.0.0.1:3799", kind, secret])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("radclient");
    child
        .stdin
        .take()
        .unwrap()
        .write_all(attrs.as_bytes())
        .unwrap();
    let out = child.wait_with_output().unwrap();
    format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

fn now_unix() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs()
}

/// Holds a session for alice (PAP through RADIUS) until told otherwise; returns the client.
fn held_session(rig: &Rig, call_id: &str) -> std::process::Child {
    let child = rig
        .client_command(&[
            "--user",
            "alice",
            "--password",
            "s3cret",
            "--auth",
            "pap",
            "--call-id",
            call_id,
            "--hold",
            "30",
        ])
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let t = std::time::Instant::now();
    while !rig.sessions().iter().any(|s| s["state"] == "up") {
        assert!(
            t.elapsed() < std::time::Duration::from_secs(15),
            "{}",
            rig.log()
        );
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
    child
}

/// RFC 5176 against the running gateway, with FreeRADIUS's `radclient`: a Disconnect-Request
/// ends the session (the client is told), a CoA-Request's Session-Timeout ends the next one,
/// and a wrong secret, a missing Message-Authenticator, a stale Event-Timestamp and a replayed
/// request are dropped and counted.
#[test]
fn disconnect_and_coa_requests_from_radclient() {
    require_root();
    let mut rig = Rig::topology("rdas");
    let _radius = FreeRadius::start(&rig.gw, "rdas", USERS);
    let cfg = radius_config("refuse").replacen(
        "[radius]\n",
        "[radius]\ndas_listen = \"127.0.0.1:3799\"\n",
        1,
    ) + &format!(
        "[[radius.das_clients]]\naddress = \"127.0.0.1\"\nsecret = \"{DAS_SECRET}\"\n"
    );
    rig.launch(&config(&cfg), "");
    let client = held_session(&rig, "501");
    let ts = now_unix();
    let ma = "Message-Authenticator = 0x00";
    // Refused, unanswered: radclient gets no reply.
    for (attrs, secret) in [
        (
            format!("User-Name = alice, Event-Timestamp = {ts}, {ma}"),
            "wrong",
        ),
        (
            format!("User-Name = alice, Event-Timestamp = {ts}"),
            DAS_SECRET,
        ),
        (
            format!("User-Name = alice, Event-Timestamp = {}, {ma}", ts - 900),
            DAS_SECRET,
        ),
    ] {
        let out = radclient(&rig, "disconnect", &attrs, secret);
        assert!(!out.contains("Received Disconnect"), "{attrs}: {out}");
    }
    // A CoA we cannot apply (a filter): NAK, Unsupported-Attribute; no such user: NAK 503.
    let out = radclient(
        &rig,
        "coa",
        &format!("User-Name = alice, Filter-Id = \"x\", Event-Timestamp = {ts}, {ma}"),
        DAS_SECRET,
    );
    assert!(out.contains("Received CoA-NAK"), "{out}");
    assert!(out.contains("Unsupported-Attribute"), "{out}");
    let out = radclient(
        &rig,
        "disconnect",
        &format!("User-Name = bob, Event-Timestamp = {ts}, {ma}"),
        DAS_SECRET,
    );
    assert!(out.contains("Received Disconnect-NAK"), "{out}");
    assert!(out.contains("Session-Context-Not-Found"), "{out}");
    // The real thing: ACK, and the client is told.
    let out = radclient(
        &rig,
        "disconnect",
        &format!("User-Name = alice, Event-Timestamp = {ts}, {ma}"),
        DAS_SECRET,
    );
    assert!(out.contains("Received Disconnect-ACK"), "{out}");
    let done = client.wait_with_output().unwrap();
    assert!(
        String::from_utf8_lossy(&done.stdout).contains("down"),
        "{}",
        String::from_utf8_lossy(&done.stdout)
    );
    rig.assert_clean();

    // A replay: the same datagram twice; the second is dropped.
    let client = held_session(&rig, "502");
    let mut b =
        pptp_user::radius::packet::Builder::new(pptp_user::radius::dict::COA_REQUEST, 9, [0; 16]);
    b.message_authenticator()
        .attr(pptp_user::radius::dict::Attr::UserName, b"alice")
        .u32(pptp_user::radius::dict::Attr::SessionTimeout, 2)
        .u32(
            pptp_user::radius::dict::Attr::EventTimestamp,
            now_unix() as u32,
        );
    let bytes = b.finish_request(DAS_SECRET.as_bytes());
    let answers = rig.gw.enter(|| {
        let s = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
        s.set_read_timeout(Some(std::time::Duration::from_secs(1)))
            .unwrap();
        let mut got = 0;
        let mut buf = [0u8; 4096];
        for _ in 0..2 {
            s.send_to(&bytes, "127.0.0.1:3799").unwrap();
            if let Ok(n) = s.recv(&mut buf) {
                let p = pptp_user::radius::packet::Packet::parse(&buf[..n]).unwrap();
                assert_eq!(p.code, pptp_user::radius::dict::COA_ACK);
                got += 1;
            }
        }
        got
    });
    assert_eq!(answers, 1, "the replay must not be answered");
    // The CoA's Session-Timeout (2 s) ends the session.
    let done = client.wait_with_output().unwrap();
    let _ = done;
    let log = rig.log();
    assert!(
        log.lines()
            .any(|l| l.contains("session down") && l.contains("reason=session_timeout")),
        "{log}"
    );
    let s = rig.stats();
    assert_eq!(num(&s, &["shell", "das_refused"]), 4, "{s}");
    assert_eq!(num(&s, &["shell", "das_acks"]), 2, "{s}");
    assert_eq!(num(&s, &["shell", "das_naks"]), 2, "{s}");
    rig.assert_clean();
}

/// Idle-Timeout: a session that stops sending data is ended that long after its last packet
/// (the data path's timestamp), with Acct-Terminate-Cause Idle-Timeout in its Stop.
#[test]
fn idle_timeout_from_radius_ends_a_silent_session() {
    require_root();
    let mut rig = Rig::topology("ridle");
    let _radius = FreeRadius::start(&rig.gw, "ridle", USERS);
    rig.launch(&config(&radius_config("refuse")), "");
    let t = std::time::Instant::now();
    let out = rig.client(&[
        "--user",
        "erin",
        "--password",
        "3rin",
        "--auth",
        "pap",
        "--ping",
        &SERVER.to_string(),
        "--count",
        "2",
        "--hold",
        "20",
    ]);
    let took = t.elapsed();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert_eq!(
        client_line(&out.stdout, "ping").unwrap()["received"],
        "2",
        "{stdout}"
    );
    assert!(stdout.contains("down ended="), "{stdout}");
    assert!(
        took < std::time::Duration::from_secs(10),
        "ended after {took:?}, not by Idle-Timeout"
    );
    let log = rig.log();
    let down = log
        .lines()
        .find(|l| l.contains("session down"))
        .unwrap_or_default();
    assert!(down.contains("reason=idle_timeout"), "{log}");
    rig.assert_clean();
}

/// Framed-Pool: the address comes from the named pool of ours.
#[test]
fn framed_pool_from_radius_picks_our_pool() {
    require_root();
    let mut rig = Rig::topology("rpool");
    let _radius = FreeRadius::start(&rig.gw, "rpool", USERS);
    let pools = "[[pool]]\nname = \"default\"\nranges = [\"10.99.0.10-10.99.0.20\"]\n\
                 [[pool]]\nname = \"second\"\nranges = [\"10.99.1.10-10.99.1.20\"]\n";
    rig.launch(&config(&format!("{}{pools}", radius_config("refuse"))), "");
    for (user, password, range) in [
        ("frank", "fr4nk", "10.99.1."),
        ("alice", "s3cret", "10.99.0."),
    ] {
        let out = rig.client(&["--user", user, "--password", password, "--auth", "pap"]);
        let stdout = String::from_utf8_lossy(&out.stdout);
        let up =
            client_line(&out.stdout, "up").unwrap_or_else(|| panic!("{stdout}\n{}", rig.log()));
        assert!(up["address"].starts_with(range), "{user}: {stdout}");
        rig.assert_clean();
    }
}
