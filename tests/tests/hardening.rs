//! Hostile sources against the real `pptpgw` with its shipped defaults: what one unauthenticated
//! address can make the gateway hold is bounded, and it never stops others being served.

use std::{
    net::{Ipv4Addr, SocketAddr},
    time::{Duration, Instant},
};

use pptp_client::{dial, gre::GreMux};
use pptp_tests::{
    gateway::{CLIENT, GW_WAN, Rig, SECRETS, SERVER, config, dial_config, num, rt},
    require_root,
};
use pptp_user::wire::{
    gre::GreHeader,
    pptp::{
        ControlMessage, ControlType, EchoRequest, Framer, MAGIC_COOKIE, OutgoingCallRequest,
        PROTOCOL_VERSION, StartControlConnectionRequest, error_code, result,
    },
};
use tokio::{
    io::{AsyncReadExt as _, AsyncWriteExt as _},
    net::{TcpSocket, TcpStream},
};

/// These tests load the gateway on purpose: one at a time, so that each measures itself (the
/// other test binaries still run beside them).
static SERIAL: std::sync::Mutex<()> = std::sync::Mutex::new(());

fn serial() -> std::sync::MutexGuard<'static, ()> {
    SERIAL.lock().unwrap_or_else(|e| e.into_inner())
}

/// A second client address: the well-behaved one, while `CLIENT` floods.
const GOOD: Ipv4Addr = Ipv4Addr::new(198, 51, 100, 9);

/// A raw PPTP control connection, for sending what no real client would.
struct Raw {
    stream: TcpStream,
    framer: Framer,
}

impl Raw {
    async fn connect(from: Ipv4Addr, to: Ipv4Addr) -> std::io::Result<Self> {
        let s = TcpSocket::new_v4()?;
        s.bind(SocketAddr::from((from, 0)))?;
        let stream = s.connect(SocketAddr::from((to, 1723))).await?;
        Ok(Self {
            stream,
            framer: Framer::new(),
        })
    }

    async fn send(&mut self, m: impl Into<ControlMessage>) -> std::io::Result<()> {
        self.stream.write_all(&m.into().to_bytes()).await
    }

    /// The next message, `None` on EOF, error or `wait` passing.
    async fn recv(&mut self, wait: Duration) -> Option<ControlMessage> {
        let deadline = tokio::time::Instant::now() + wait;
        loop {
            if let Some(m) = self.framer.next_message() {
                return m.ok();
            }
            let mut buf = [0u8; 512];
            match tokio::time::timeout_at(deadline, self.stream.read(&mut buf)).await {
                Ok(Ok(n)) if n > 0 => self.framer.push(&buf[..n]),
                _ => return None,
            }
        }
    }

    /// Whether the gateway closes the connection within `wait`.
    async fn closed_within(&mut self, wait: Duration) -> bool {
        let mut buf = [0u8; 512];
        let deadline = tokio::time::Instant::now() + wait;
        loop {
            match tokio::time::timeout_at(deadline, self.stream.read(&mut buf)).await {
                Ok(Ok(0)) | Ok(Err(_)) => return true,
                Ok(Ok(_)) => continue,
                Err(_) => return false,
            }
        }
    }

    /// Connects and starts the control connection; `None` when refused or closed.
    async fn start(from: Ipv4Addr, to: Ipv4Addr) -> Option<Self> {
        let mut c = Self::connect(from, to).await.ok()?;
        c.send(sccrq()).await.ok()?;
        match c.recv(Duration::from_secs(2)).await? {
            ControlMessage::StartControlConnectionReply(r)
                if r.result_code == result::SCCRP_SUCCESSFUL =>
            {
                Some(c)
            }
            _ => None,
        }
    }
}

fn sccrq() -> StartControlConnectionRequest {
    StartControlConnectionRequest {
        protocol_version: PROTOCOL_VERSION,
        ..Default::default()
    }
}

fn ocrq(call_id: u16) -> OutgoingCallRequest {
    OutgoingCallRequest {
        call_id,
        packet_recv_window_size: 64,
        ..Default::default()
    }
}

/// How long a control connection from `from` takes to be answered (SCCRQ → SCCRP).
async fn answer_time(from: Ipv4Addr) -> Duration {
    let t = Instant::now();
    match Raw::start(from, GW_WAN).await {
        Some(_) => t.elapsed(),
        None => Duration::from_secs(3600),
    }
}

/// The gateway's resident memory, KiB.
fn rss_kib(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.split_whitespace().next()?.parse().ok())
        .unwrap_or(0)
}

/// CPU time the process has used (user + system), in clock ticks.
fn cpu_ticks(pid: u32) -> u64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    // Fields after the command's closing parenthesis; utime and stime are the 12th and 13th.
    let rest = stat.rsplit_once(')').map_or("", |(_, r)| r);
    let f: Vec<u64> = rest
        .split_whitespace()
        .map(|x| x.parse().unwrap_or(0))
        .collect();
    f.get(11).copied().unwrap_or(0) + f.get(12).copied().unwrap_or(0)
}

#[test]
fn a_flood_from_one_source_is_held_at_its_limits_while_others_are_served() {
    require_root();
    let _one_at_a_time = serial();
    // The shipped defaults: nothing in [limits] is set here.
    let rig = Rig::start("flood", &config(""), SECRETS);
    rig.client
        .ip(&["addr", "add", &format!("{GOOD}/24"), "dev", "c0"]);
    let rss_before = rss_kib(rig.pid());
    let before = rig.stats();
    let mut worst = Duration::ZERO;
    rig.client.enter(|| {
        rt().block_on(async {
            // 1. Calls: 20 connections (the rate limit's burst) of 3 calls each from one
            // address. One call per connection, and 16 negotiating sessions per source.
            let mut conns = Vec::new();
            for _ in 0..20 {
                conns.push(Raw::start(CLIENT, GW_WAN).await.expect("admitted"));
            }
            let (mut connected, mut refused) = (0, 0);
            for (i, c) in conns.iter_mut().enumerate() {
                for k in 0..3u16 {
                    c.send(ocrq(i as u16 * 8 + k)).await.unwrap();
                }
                for _ in 0..3 {
                    match c.recv(Duration::from_secs(2)).await {
                        Some(ControlMessage::OutgoingCallReply(r))
                            if r.result_code == result::OCRP_CONNECTED =>
                        {
                            connected += 1
                        }
                        Some(ControlMessage::OutgoingCallReply(r)) => {
                            assert_eq!(
                                (r.result_code, r.error_code),
                                (result::OCRP_GENERAL_ERROR, error_code::NO_RESOURCE)
                            );
                            refused += 1;
                        }
                        other => panic!("{other:?}"),
                    }
                }
            }
            assert_eq!((connected, refused), (16, 44));
            worst = worst.max(answer_time(GOOD).await);

            // 2. A flood for 5 s: connections as fast as they open, each sending Echo-Requests
            // it never reads the replies of, and GRE to call IDs nobody has.
            let flood = tokio::spawn(async move {
                let mux = GreMux::open().unwrap();
                let until = Instant::now() + Duration::from_secs(5);
                let (mut opened, mut gre) = (0u32, 0u32);
                let mut held = Vec::new();
                while Instant::now() < until && opened < 200_000 {
                    if let Ok(mut c) = Raw::connect(CLIENT, GW_WAN).await {
                        opened += 1;
                        let mut burst = Vec::new();
                        ControlMessage::from(sccrq()).emit(&mut burst);
                        for id in 0..200 {
                            ControlMessage::from(EchoRequest { identifier: id }).emit(&mut burst);
                        }
                        let _ = tokio::time::timeout(
                            Duration::from_millis(50),
                            c.stream.write_all(&burst),
                        )
                        .await;
                        held.push(c);
                        held.truncate(500);
                    }
                    for _ in 0..10 {
                        let h = GreHeader {
                            call_id: 0x7000 | (gre as u16 & 0x0fff),
                            seq: Some(gre),
                            ack: None,
                        };
                        let _ = mux.send(CLIENT, GW_WAN, &h, &[0xff, 0x03, 0xc0, 0x21]);
                        gre += 1;
                    }
                    tokio::task::yield_now().await;
                }
                (opened, gre, held)
            });
            // Meanwhile another address is answered within 1 s, every time.
            let mut probes = 0;
            while !flood.is_finished() && probes < 100 {
                worst = worst.max(answer_time(GOOD).await);
                probes += 1;
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
            let (opened, gre, held) = flood.await.unwrap();
            eprintln!(
                "flood: {opened} connections opened, {gre} GRE packets, {probes} probes, worst answer {worst:?}"
            );
            assert!(probes >= 10, "{probes}");
            drop(held);

            // 3. A real session from the other address, while the 16 hostile calls still hold
            // their places: up, pings, hangs up.
            let mux = GreMux::open().unwrap();
            let mut cfg = dial_config(&rig, "alice", "s3cret", 0x5001);
            cfg.local = Some(GOOD);
            let mut s = dial(cfg, &mux)
                .await
                .unwrap_or_else(|e| panic!("dial during flood: {e}\n{}", rig.log()));
            assert_eq!(s.ping(SERVER, 3, Duration::from_secs(2)).await.received, 3);
            s.hangup().await;
            drop(conns);
        })
    });
    assert!(worst < Duration::from_secs(1), "worst answer {worst:?}");
    rig.assert_clean();
    let after = rig.stats();
    let d = |path: &[&str]| num(&after, path) - num(&before, path);
    // 16 connections had a call and asked for 2 more; 4 asked for 3 over the per-source cap.
    assert_eq!(
        d(&["controller", "refused", "calls_per_connection"]),
        32,
        "{after}"
    );
    assert_eq!(
        d(&["controller", "refused", "unauthenticated_per_source"]),
        12,
        "{after}"
    );
    assert!(d(&["shell", "connections_rate_limited"]) > 0, "{after}");
    // GRE for nobody never reached the controller.
    assert!(d(&["drops", "unknown_call"]) >= 10_000, "{after}");
    assert_eq!(d(&["controller", "slowpath_unknown_call"]), 0, "{after}");
    assert_eq!(d(&["controller", "slowpath_data_frames"]), 0, "{after}");
    let rss_after = rss_kib(rig.pid());
    eprintln!("RSS {rss_before} KiB -> {rss_after} KiB");
    assert!(
        rss_after < rss_before + 32 * 1024,
        "RSS {rss_before} -> {rss_after} KiB"
    );
    // Refusals are logged once per source and reason per interval, not once per connection.
    let log = rig.log();
    let lines = log
        .lines()
        .filter(|l| l.contains(" refused ") && l.contains("peer=198.51.100.7"))
        .count();
    assert!((1..=12).contains(&lines), "{lines} refusal lines\n{log}");
}

#[test]
fn seventy_thousand_calls_for_one_address_pair_cannot_hang_anything() {
    require_root();
    let _one_at_a_time = serial();
    // Limits opened wide, so the only thing left to stop the flood is the call-ID space; slow
    // LCP retries, so that no call gives up (and frees its ID) while the test runs.
    let rig = Rig::start(
        "callids",
        &config(
            "[limits]\nmax_calls_per_connection = 100000\nmax_unauthenticated = 100000\n\
             max_unauthenticated_per_source = 100000\nconnection_rate_per_source = 0\n\
             negotiation_timeout = \"600s\"\n\
             [timers]\nrestart_timer = \"30s\"\n",
        ),
        SECRETS,
    );
    rig.client
        .ip(&["addr", "add", &format!("{GOOD}/24"), "dev", "c0"]);
    let started = Instant::now();
    rig.client.enter(|| {
        rt().block_on(async {
            let (mut connected, mut refused) = (0u32, 0u32);
            let mut open = Vec::new();
            // 65,535 on one connection, 4,465 more on a second one from the same address.
            for (n, first) in [(65_535u32, 0u16), (4_465, 0)] {
                let c = Raw::start(CLIENT, GW_WAN).await.expect("admitted");
                let (mut rd, mut wr) = c.stream.into_split();
                let writer = tokio::spawn(async move {
                    let mut buf = Vec::new();
                    for i in 0..n {
                        ControlMessage::from(ocrq(first.wrapping_add(i as u16))).emit(&mut buf);
                        if buf.len() > 16 * 1024 {
                            wr.write_all(&buf).await.unwrap();
                            buf.clear();
                        }
                    }
                    wr.write_all(&buf).await.unwrap();
                    wr
                });
                let mut framer = c.framer;
                let mut got = 0;
                let mut buf = vec![0u8; 64 * 1024];
                while got < n {
                    let r = tokio::time::timeout(Duration::from_secs(30), rd.read(&mut buf))
                        .await
                        .expect("OCRPs keep coming")
                        .unwrap();
                    assert!(r > 0, "closed after {got} replies\n{}", rig.log());
                    framer.push(&buf[..r]);
                    while let Some(m) = framer.next_message() {
                        let Ok(ControlMessage::OutgoingCallReply(r)) = m else {
                            continue;
                        };
                        got += 1;
                        if r.result_code == result::OCRP_CONNECTED {
                            connected += 1;
                        } else {
                            assert_eq!(
                                (r.result_code, r.error_code),
                                (result::OCRP_GENERAL_ERROR, error_code::NO_RESOURCE)
                            );
                            refused += 1;
                        }
                    }
                }
                open.push((rd, writer.await.unwrap()));
                // Answered within 1 s while all those calls exist.
                let t = answer_time(GOOD).await;
                assert!(t < Duration::from_secs(1), "{t:?}");
            }
            assert_eq!((connected, refused), (65_535, 4_465));
            // Another address still gets a whole session.
            let mux = GreMux::open().unwrap();
            let mut cfg = dial_config(&rig, "bob", "hunter2", 0x6001);
            cfg.local = Some(GOOD);
            let mut s = dial(cfg, &mux)
                .await
                .unwrap_or_else(|e| panic!("dial: {e}\n{}", rig.log()));
            assert_eq!(s.ping(SERVER, 2, Duration::from_secs(2)).await.received, 2);
            s.hangup().await;
            drop(open);
        })
    });
    eprintln!("70,000 calls answered in {:?}", started.elapsed());
    let s = rig.stats();
    assert_eq!(
        num(&s, &["controller", "refused", "call_ids_exhausted"]),
        4_465,
        "{s}"
    );
    // And SIGTERM still ends it all cleanly (CDNs to 65,535 calls), within the rig's 15 s.
    let log = rig_stop(rig);
    assert!(log.contains("pptpgw stopped"), "{log}");
}

fn rig_stop(mut rig: Rig) -> String {
    rig.stop()
}

/// Each of the 15 control types (and three unknown ones), made malformed on the wire, against
/// the running gateway: the answer RFC 2637 allows, as `Connection::malformed` tabulates it.
#[test]
fn malformed_control_messages_are_answered_as_the_table_says() {
    require_root();
    let _one_at_a_time = serial();
    let rig = Rig::start(
        "malformed",
        &config("[limits]\nconnection_rate_per_source = 0\n"),
        SECRETS,
    );
    #[derive(Debug, PartialEq)]
    enum Answer {
        /// The reply of the request's type: result "general error" and this error code.
        Reply(ControlType, u8),
        /// StopCCRP general error, then the connection closes.
        StopReplyAndClose,
        /// Stop-Control-Connection-Request: the gateway stops the connection.
        Stop,
    }
    let message = |code: u16, bad_value: bool| -> Vec<u8> {
        let size = ControlType::from_code(code).map_or(16, |k| k.size());
        // A wrong size: 4 bytes more (4 fewer for the 220-byte ICRQ).
        let len = if bad_value {
            size
        } else if size == 220 {
            216
        } else {
            size + 4
        };
        let mut b = vec![0u8; len];
        b[..2].copy_from_slice(&(len as u16).to_be_bytes());
        b[2..4].copy_from_slice(&1u16.to_be_bytes());
        b[4..8].copy_from_slice(&MAGIC_COOKIE.to_be_bytes());
        b[8..10].copy_from_slice(&code.to_be_bytes());
        if bad_value {
            b[11] = 1; // Reserved0
        }
        b[12..14].copy_from_slice(&0x4242u16.to_be_bytes());
        b
    };
    let mut cases = 0;
    rig.client.enter(|| {
        rt().block_on(async {
            for code in [
                0u16, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15, 16, 255,
            ] {
                for bad_value in [false, true] {
                    let known = ControlType::from_code(code).is_some();
                    if !known && !bad_value {
                        continue;
                    }
                    let e = if bad_value || !known {
                        error_code::BAD_VALUE
                    } else {
                        error_code::BAD_FORMAT
                    };
                    let expected = match code {
                        1 => Answer::Reply(ControlType::StartControlConnectionReply, e),
                        3 => Answer::StopReplyAndClose,
                        5 => Answer::Reply(ControlType::EchoReply, e),
                        7 => Answer::Reply(ControlType::OutgoingCallReply, e),
                        9 => Answer::Reply(ControlType::IncomingCallReply, e),
                        12 => Answer::Reply(ControlType::CallDisconnectNotify, e),
                        _ => Answer::Stop,
                    };
                    let mut c = Raw::start(CLIENT, GW_WAN).await.expect("started");
                    c.stream.write_all(&message(code, bad_value)).await.unwrap();
                    let m = c
                        .recv(Duration::from_secs(2))
                        .await
                        .unwrap_or_else(|| panic!("type {code}: no answer\n{}", rig.log()));
                    let got = match m {
                        ControlMessage::StopControlConnectionRequest(_) => Answer::Stop,
                        ControlMessage::StopControlConnectionReply(r) => {
                            assert_eq!(
                                (r.result_code, r.error_code),
                                (result::STOPCCRP_GENERAL_ERROR, e)
                            );
                            assert!(c.closed_within(Duration::from_secs(2)).await, "{code}");
                            Answer::StopReplyAndClose
                        }
                        ControlMessage::StartControlConnectionReply(r) => {
                            assert_eq!(r.result_code, result::SCCRP_GENERAL_ERROR);
                            Answer::Reply(m.control_type(), r.error_code)
                        }
                        ControlMessage::EchoReply(r) => {
                            assert_eq!(r.result_code, result::ECHO_GENERAL_ERROR);
                            assert_eq!(r.identifier >> 16, 0x4242, "the request's identifier");
                            Answer::Reply(m.control_type(), r.error_code)
                        }
                        ControlMessage::OutgoingCallReply(r) => {
                            assert_eq!(r.result_code, result::OCRP_GENERAL_ERROR);
                            assert_eq!(r.peer_call_id, 0x4242, "to the request's call ID");
                            Answer::Reply(m.control_type(), r.error_code)
                        }
                        ControlMessage::IncomingCallReply(r) => {
                            assert_eq!(r.result_code, result::ICRP_GENERAL_ERROR);
                            assert_eq!(r.peer_call_id, 0x4242);
                            Answer::Reply(m.control_type(), r.error_code)
                        }
                        ControlMessage::CallDisconnectNotify(r) => {
                            assert_eq!(r.result_code, result::CDN_GENERAL_ERROR);
                            Answer::Reply(m.control_type(), r.error_code)
                        }
                        other => panic!("type {code}: {other:?}"),
                    };
                    assert_eq!(got, expected, "type {code}, bad value {bad_value}");
                    cases += 1;
                }
            }
        })
    });
    assert_eq!(cases, 33);
    let s = rig.stats();
    assert_eq!(num(&s, &["controller", "control_malformed"]), 33, "{s}");
    rig.assert_clean();
}

#[test]
fn at_the_descriptor_limit_sessions_live_on_and_new_clients_get_in_once_it_passes() {
    require_root();
    let _one_at_a_time = serial();
    let mut rig = Rig::start(
        "nofile",
        &config("[limits]\nconnection_rate_per_source = 0\nmax_connections_per_source = 0\n"),
        SECRETS,
    );
    rig.client
        .ip(&["addr", "add", &format!("{GOOD}/24"), "dev", "c0"]);
    let pid = rig.pid();
    let fds = || {
        std::fs::read_dir(format!("/proc/{pid}/fd"))
            .map(|d| d.count())
            .unwrap_or(0)
    };
    eprintln!("pptpgw holds {} descriptors at rest", fds());
    rig.client.enter(|| {
        rt().block_on(async {
            let mux = GreMux::open().unwrap();
            let mut cfg = dial_config(&rig, "alice", "s3cret", 0x7001);
            cfg.local = Some(GOOD);
            let mut s = dial(cfg, &mux).await.expect("dial");
            assert_eq!(s.ping(SERVER, 2, Duration::from_secs(2)).await.received, 2);

            let status = std::process::Command::new("prlimit")
                .args(["--pid", &pid.to_string(), "--nofile=64:64"])
                .status()
                .expect("prlimit");
            assert!(status.success());
            // Fill every descriptor: connections the gateway accepts until accept() fails, and
            // more waiting in the listen backlog.
            let mut held = Vec::new();
            for _ in 0..100 {
                if let Ok(c) = Raw::connect(CLIENT, GW_WAN).await {
                    held.push(c);
                }
            }
            tokio::time::sleep(Duration::from_millis(500)).await;
            assert!(fds() >= 60, "{} descriptors", fds());
            // At the limit: the controller idles (no accept spin), the session keeps working.
            let (t0, c0) = (Instant::now(), cpu_ticks(pid));
            let r = s.ping(SERVER, 10, Duration::from_secs(2)).await;
            tokio::time::sleep(Duration::from_secs(1)).await;
            let ticks = cpu_ticks(pid) - c0;
            // SAFETY: sysconf has no preconditions.
            let hz = unsafe { libc::sysconf(libc::_SC_CLK_TCK) } as f64;
            let busy = ticks as f64 / hz / t0.elapsed().as_secs_f64();
            eprintln!(
                "at the limit: CPU {:.1} %, {} of 10 pings",
                busy * 100.0,
                r.received
            );
            assert_eq!(r.received, 10);
            assert!(
                busy < 0.2,
                "CPU {:.0} % while at the descriptor limit",
                busy * 100.0
            );
            // Connections close: the gateway answers again.
            drop(held);
            let deadline = Instant::now() + Duration::from_secs(10);
            loop {
                if Raw::start(GOOD, GW_WAN).await.is_some() {
                    break;
                }
                assert!(
                    Instant::now() < deadline,
                    "not answering again\n{}",
                    rig.log()
                );
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
            assert_eq!(s.ping(SERVER, 2, Duration::from_secs(2)).await.received, 2);
            s.hangup().await;
        })
    });
    let s = rig.stats();
    assert!(num(&s, &["shell", "accept_errors"]) > 0, "{s}");
    rig.assert_clean();
    let log = rig.stop();
    assert!(log.contains("accept failed; backing off"), "{log}");
}

/// A gateway killed outright (the whole process tree) leaves `pptp0` and the pinned data path
/// behind; the next start takes `pptp0` over (the same device, not a second one) and says so.
#[test]
fn a_start_after_sigkill_reuses_the_pptp0_left_behind() {
    require_root();
    let _one_at_a_time = serial();
    let mut rig = Rig::start("leftover", &config(""), SECRETS);
    let index = |rig: &Rig| {
        let out = rig.gw.ip(&["-o", "link", "show", "pptp0"]);
        String::from_utf8_lossy(&out.stdout)
            .split(':')
            .next()
            .unwrap_or_default()
            .to_string()
    };
    let before = index(&rig);
    rig.crash();
    let links = String::from_utf8_lossy(&rig.gw.ip(&["-o", "link", "show"]).stdout).to_string();
    assert!(links.contains("pptp0"), "{links}");
    let cfg = config("");
    rig.launch(&cfg, SECRETS);
    let log = rig.log();
    assert!(log.contains("pptp0_reused=true"), "{log}");
    assert_eq!(index(&rig), before, "the same pptp0");
    let now = String::from_utf8_lossy(&rig.gw.ip(&["-o", "link", "show"]).stdout).to_string();
    assert_eq!(now.matches(": pptp0p@").count(), 1, "{now}");
    let out = rig.client(&[
        "--user",
        "bob",
        "--password",
        "hunter2",
        "--ping",
        &SERVER.to_string(),
        "--count",
        "2",
    ]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stdout)
    );
    rig.assert_clean();
    rig.stop();
    let links = String::from_utf8_lossy(&rig.gw.ip(&["-o", "link", "show"]).stdout).to_string();
    assert!(!links.contains("pptp0"), "{links}");
}
