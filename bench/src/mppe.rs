//! Part 6: MPPE's per-packet cost in the data path. The real programs run by BPF_PROG_TEST_RUN on
//! 1400-byte frames (one run each, as a stateless session needs: every frame a new coherency
//! count, encrypted in order by the client's independent MPPE), timed by the kernel, next to the
//! same session in plain, and next to the same work (one key change, one key schedule, RC4 over
//! the payload) done natively on one core by the same code (`pptp_common::mppe`, release build)
//! and by RustCrypto's RC4 + SHA-1 (the client's).

use std::{
    net::Ipv4Addr,
    time::{Duration, Instant},
};

use aya::programs::{TestRun as _, TestRunOptions};
use pptp_client::mppe::Direction;
use pptp_common::{
    maps::{PROG_XDP_DECAP, PROG_XDP_ENCAP},
    mppe::{MppeScratch, rekey},
    session::{DatapathConfig, MODE_MPPE, STATE_UP, Session},
};
use pptp_tests::{frames::*, kernel, netns::gateway_with_uplink};
use pptp_user::kernel::datapath::Datapath;

use crate::{
    dataplane::{Gateway, LIVE, Relay, Side, assigned, rate},
    table::Row,
    topo::{self, SERVER, inner_udp, median},
};

const GW: Ipv4Addr = Ipv4Addr::new(192, 0, 2, 1);
const CLIENT: Ipv4Addr = Ipv4Addr::new(198, 51, 100, 7);
const FAR: Ipv4Addr = Ipv4Addr::new(203, 0, 113, 5);
const PLAIN: (u32, u16, Ipv4Addr) = (1, 0x4001, Ipv4Addr::new(10, 99, 0, 10));
const MPPE: (u32, u16, Ipv4Addr) = (2, 0x4002, Ipv4Addr::new(10, 99, 0, 11));
const STATEFUL: (u32, u16, Ipv4Addr) = (3, 0x4003, Ipv4Addr::new(10, 99, 0, 12));
const SEND_KEY: [u8; 16] = [0x5a; 16];
const RECV_KEY: [u8; 16] = [0xa5; 16];
/// Inner packet size (the tunnel MTU).
const SIZE: usize = 1400;

fn session((slot, call_id, assigned): (u32, u16, Ipv4Addr), mode: u8) -> Session {
    Session {
        mode,
        ..kernel::session(slot, GW, CLIENT, call_id, assigned, STATE_UP)
    }
}

fn inner(src: Ipv4Addr, dst: Ipv4Addr) -> Vec<u8> {
    ipv4(src, dst, IPPROTO_UDP, &udp(5000, 53, &[0x42; SIZE - 28]))
}

fn gre(call_id: u16, seq: u32, ppp: &[u8]) -> Vec<u8> {
    ethernet(
        [2, 0, 0, 0, 0, 1],
        [2, 0, 0, 0, 0, 2],
        ETH_P_IP,
        &ipv4(
            CLIENT,
            GW,
            IPPROTO_GRE,
            &gre_v1(call_id, Some(seq), None, ppp),
        ),
    )
}

/// The kernel-timed cost of one run of `prog` on each frame, in order: the median, ns. Every
/// run must forward its frame (XDP_REDIRECT): a cost of dropping would flatter us.
fn cost(dp: &Datapath, prog: &str, frames: &[Vec<u8>]) -> f64 {
    const XDP_REDIRECT: u32 = 4;
    let p = dp.xdp_program(prog).expect("program");
    let mut out = vec![0u8; SIZE + 512];
    let before = dp.counters().expect("counters");
    let mut ns: Vec<f64> = frames
        .iter()
        .map(|f| {
            let opts = TestRunOptions {
                data_in: Some(f),
                data_out: Some(&mut out),
                ..TestRunOptions::new()
            };
            let r = p.test_run(opts).expect("test run");
            assert_eq!(
                r.return_value,
                XDP_REDIRECT,
                "{prog}: {:?}",
                dp.counters()
                    .expect("counters")
                    .since(&before)
                    .named_drops()
            );
            r.duration.as_nanos() as f64
        })
        .collect();
    ns.sort_by(f64::total_cmp);
    ns[ns.len() / 2]
}

/// Native cost of one stateless packet's work (key change, key schedule, RC4 over `SIZE` bytes)
/// with the data path's own code, and with RustCrypto's; and of a stateful packet between key
/// changes (RC4 over `SIZE` bytes) with the data path's code: ns per packet, medians of `runs`.
fn native(packets: usize, runs: usize) -> (f64, f64, f64) {
    let mut ours = Vec::new();
    let mut rustcrypto = Vec::new();
    let mut stateful = Vec::new();
    for _ in 0..runs {
        let mut rc4 = pptp_common::mppe::Rc4::default();
        rc4.init(&SEND_KEY);
        let mut data = vec![0x42u8; SIZE + 2];
        let t = Instant::now();
        for _ in 0..packets {
            rc4.apply(&mut data);
        }
        std::hint::black_box(&data);
        stateful.push(t.elapsed().as_nanos() as f64 / packets as f64);
        let mut scratch = MppeScratch::default();
        let mut key = SEND_KEY;
        let mut data = vec![0x42u8; SIZE + 2];
        let t = Instant::now();
        for _ in 0..packets {
            rekey(&SEND_KEY, &mut key, &mut scratch.sha, &mut scratch.rc4);
            scratch.rc4.init(&key);
            scratch.rc4.apply(&mut data);
        }
        std::hint::black_box(&data);
        ours.push(t.elapsed().as_nanos() as f64 / packets as f64);
        let mut d = Direction::new(SEND_KEY, false);
        let plain = vec![0x42u8; SIZE + 2];
        let t = Instant::now();
        for _ in 0..packets {
            std::hint::black_box(d.encrypt(&plain));
        }
        rustcrypto.push(t.elapsed().as_nanos() as f64 / packets as f64);
    }
    let median = |mut v: Vec<f64>| {
        v.sort_by(f64::total_cmp);
        v[v.len() / 2]
    };
    (median(ours), median(rustcrypto), median(stateful))
}

pub fn per_packet_cost(packets: usize, runs: usize) -> Vec<Row> {
    let (gw, up) = gateway_with_uplink("bmppe", 0xd);
    // Each run re-keys the sessions and replays the same frames; the native work runs between
    // the XDP measurements of the same run, so that both see the machine in the same state.
    let (c, verified) = gw.enter(|| {
        let mut dp = Datapath::load().expect("load");
        dp.set_config(&DatapathConfig {
            pptp0_peer_ifindex: 1,
            pptp0_mac: [2, 0, 0, 0, 9, 1],
            pptp0_peer_mac: [2, 0, 0, 0, 9, 2],
            enabled: 1,
            reorder_window: 0,
            pptp0_ifindex: 0,
            steer_cpus: 0,
        })
        .unwrap();
        let mut tx = Direction::new(RECV_KEY, false);
        let mut tx_sf = Direction::new(RECV_KEY, true);
        let (mut plain, mut mppe, mut sf) = (Vec::new(), Vec::new(), Vec::new());
        for seq in 1..=packets as u32 {
            let mut p = vec![0xff, 0x03, 0x00, 0x21];
            p.extend_from_slice(&inner(PLAIN.2, FAR));
            plain.push(gre(PLAIN.1, seq, &p));
            let mut m = vec![0xff, 0x03, 0x00, 0xfd];
            let mut body = vec![0x00, 0x21];
            body.extend_from_slice(&inner(MPPE.2, FAR));
            m.extend_from_slice(&tx.encrypt(&body));
            mppe.push(gre(MPPE.1, seq, &m));
            let mut m = vec![0xff, 0x03, 0x00, 0xfd];
            let mut body = vec![0x00, 0x21];
            body.extend_from_slice(&inner(STATEFUL.2, FAR));
            m.extend_from_slice(&tx_sf.encrypt(&body));
            sf.push(gre(STATEFUL.1, seq, &m));
        }
        let to = |a| {
            ethernet(
                [2, 0, 0, 0, 9, 2],
                [2, 0, 0, 0, 9, 1],
                ETH_P_IP,
                &inner(FAR, a),
            )
        };
        let (enc_plain, enc_mppe, enc_sf) = (
            vec![to(PLAIN.2); packets],
            vec![to(MPPE.2); packets],
            vec![to(STATEFUL.2); packets],
        );
        // [decap plain, MPPE, stateful; encap plain, MPPE, stateful; native ours, RustCrypto,
        // stateful RC4] per run.
        let mut c: [Vec<f64>; 9] = Default::default();
        for _ in 0..runs {
            dp.install_session(&session(PLAIN, 0)).unwrap();
            dp.install_session(&session(MPPE, MODE_MPPE)).unwrap();
            dp.program_mppe(MPPE.0, SEND_KEY, RECV_KEY, false).unwrap();
            dp.install_session(&session(STATEFUL, MODE_MPPE)).unwrap();
            dp.program_mppe(STATEFUL.0, SEND_KEY, RECV_KEY, true)
                .unwrap();
            // Decapsulation first: the encapsulation needs a received sequence number to ack.
            c[0].push(cost(&dp, PROG_XDP_DECAP, &plain));
            c[1].push(cost(&dp, PROG_XDP_DECAP, &mppe));
            c[2].push(cost(&dp, PROG_XDP_DECAP, &sf));
            let (ours, rustcrypto, rc4) = native(packets, 1);
            c[6].push(ours);
            c[7].push(rustcrypto);
            c[8].push(rc4);
            c[3].push(cost(&dp, PROG_XDP_ENCAP, &enc_plain));
            c[4].push(cost(&dp, PROG_XDP_ENCAP, &enc_mppe));
            c[5].push(cost(&dp, PROG_XDP_ENCAP, &enc_sf));
        }
        let verified = [PROG_XDP_DECAP, PROG_XDP_ENCAP].map(|p| {
            dp.xdp_program(p)
                .ok()
                .and_then(|x| x.info().ok()?.verified_instruction_count())
                .unwrap_or(0)
        });
        (c.map(median), verified)
    });
    drop(up);
    let [
        dec_plain,
        dec_mppe,
        dec_sf,
        enc_plain,
        enc_mppe,
        enc_sf,
        native_ours,
        native_rc,
        native_sf,
    ] = c;
    let g = "6 MPPE (1400 B, stateless: a key change per packet)";
    let ns = |v: f64| format!("{v:.0} ns");
    vec![
        Row::info(
            g,
            "XDP decap, plain session",
            format!("{} (kernel-timed, median of {packets})", ns(dec_plain)),
        ),
        Row::compare(
            g,
            "XDP decap, MPPE session (decrypt)",
            ns(dec_mppe),
            format!("{} (plain)", ns(dec_plain)),
            dec_mppe / dec_plain,
        ),
        Row::compare(
            g,
            "XDP encap, MPPE session (encrypt)",
            ns(enc_mppe),
            format!("{} (plain)", ns(enc_plain)),
            enc_mppe / enc_plain,
        ),
        Row::ratio(
            g,
            "MPPE work in XDP (decap MPPE − plain) vs native, same code",
            ns(dec_mppe - dec_plain),
            format!("{} (native)", ns(native_ours)),
            (dec_mppe - dec_plain) / native_ours,
            "≤ 1.2×",
            (dec_mppe - dec_plain) / native_ours <= 1.2,
        ),
        Row::ratio(
            g,
            "MPPE work in XDP (encap MPPE − plain) vs native, same code",
            ns(enc_mppe - enc_plain),
            format!("{} (native)", ns(native_ours)),
            (enc_mppe - enc_plain) / native_ours,
            "≤ 1.2×",
            (enc_mppe - enc_plain) / native_ours <= 1.2,
        ),
        Row::info(
            g,
            "the same work with RustCrypto RC4 + SHA-1 (the client's)",
            ns(native_rc),
        ),
        Row::compare(
            g,
            "stateful: XDP decap (RC4 runs on; a key change every 256, median excludes)",
            ns(dec_sf),
            format!("{} (plain)", ns(dec_plain)),
            dec_sf / dec_plain,
        ),
        Row::compare(
            g,
            "stateful: XDP encap",
            ns(enc_sf),
            format!("{} (plain)", ns(enc_plain)),
            enc_sf / enc_plain,
        ),
        Row::ratio(
            g,
            "stateful MPPE work in XDP (decap − plain) vs native RC4, same code",
            ns(dec_sf - dec_plain),
            format!("{} (native)", ns(native_sf)),
            (dec_sf - dec_plain) / native_sf,
            "≤ 1.2×",
            (dec_sf - dec_plain) / native_sf <= 1.2,
        ),
        Row::ratio(
            g,
            "stateful MPPE work in XDP (encap − plain) vs native RC4, same code",
            ns(enc_sf - enc_plain),
            format!("{} (native)", ns(native_sf)),
            (enc_sf - enc_plain) / native_sf,
            "≤ 1.2×",
            (enc_sf - enc_plain) / native_sf <= 1.2,
        ),
        Row::info(
            g,
            "verified instructions: decap / encap (re-keys through bpf_loop)",
            format!("{} / {}", verified[0], verified[1]),
        ),
    ]
}

/// Client MPPE frames for the bench rig's live sessions, in sending order: round robin over the
/// sessions, each session's frames in coherency-count and GRE-sequence order (stateless, so
/// every frame needs its own key: they are made up front, by the client's RustCrypto MPPE).
fn mppe_client_frames(gw: &Gateway, total: usize) -> Vec<Vec<u8>> {
    let live = usize::from(LIVE);
    let mut dirs: Vec<Direction> = (0..live).map(|_| Direction::new(RECV_KEY, false)).collect();
    (0..total)
        .map(|k| {
            let i = k % live;
            let seq = (k / live) as u32 + 1;
            let mut body = vec![0x00, 0x21];
            body.extend_from_slice(&inner_udp(assigned(i as u16), SERVER, SIZE));
            let mut ppp = vec![0xff, 0x03, 0x00, 0xfd];
            ppp.extend_from_slice(&dirs[i].encrypt(&body));
            let gre = gre_v1(0x4000 + i as u16, Some(seq), None, &ppp);
            let ip = ipv4(topo::CLIENT, topo::GW_WAN, IPPROTO_GRE, &gre);
            ethernet(gw.topo.wan0.mac, gw.topo.c0.mac, ETH_P_IP, &ip)
        })
        .collect()
}

/// Sends every frame once (no sequence patching) and counts what reaches the server: (forwarded
/// per second, offered per second).
fn rate_once(gw: &Gateway, frames: &mut [Vec<u8>]) -> (f64, f64) {
    let before = topo::rx_packets(&gw.topo.srv, "s0");
    let n = frames.len() as u64;
    let (sent, took) = topo::blast(&gw.topo.cl, "c0", frames, None, n, Duration::from_secs(60));
    std::thread::sleep(Duration::from_millis(200));
    let got = topo::rx_packets(&gw.topo.srv, "s0").saturating_sub(before);
    let secs = took.as_secs_f64();
    (got as f64 / secs, sent as f64 / secs)
}

/// Forwarding rates of MPPE sessions (1400-byte inner packets, the bench rig's 64 sessions)
/// against the same sessions in plain and, client → server, against a userspace relay doing
/// the same MPPE work (pptpd's design: raw GRE socket, RC4 and SHA-1 in the process, TUN).
pub fn forwarding(runs: usize, time: Duration) -> Vec<Row> {
    let mut gw = Gateway::new("mfwd");
    // Enough frames for a second of the data path at its MPPE rate, at least.
    let total = 150_000;
    eprintln!("bench 6: encrypting {total} client frames");
    let mut mppe_frames = mppe_client_frames(&gw, total);
    let (mut plain_up, mut mppe_up, mut relay_up) = (Vec::new(), Vec::new(), Vec::new());
    let (mut plain_down, mut mppe_down) = (Vec::new(), Vec::new());
    let (mut offered_up, mut offered_down) = (Vec::new(), Vec::new());
    // What the generator can offer at all: its rate in the plain runs (it retries on a full
    // ring, so in a slower run what it "offered" is what the data path took).
    let (mut gen_up, mut gen_down) = (Vec::new(), Vec::new());
    for _ in 0..runs {
        gw.reset_live_sessions(None);
        let mut f = gw.client_frames(SIZE);
        let (got, sent) = rate(&gw, Side::Client, &mut f, Some(topo::SEQ_OFFSET), time);
        plain_up.push(got);
        gen_up.push(sent);
        let mut f = gw.server_frames(SIZE);
        let (got, sent) = rate(&gw, Side::Server, &mut f, None, time);
        plain_down.push(got);
        gen_down.push(sent);

        gw.reset_live_sessions(Some((SEND_KEY, RECV_KEY)));
        let (got, sent) = rate_once(&gw, &mut mppe_frames);
        mppe_up.push(got);
        offered_up.push(sent);
        // (The sessions have received now, so they have an ack to send.)
        let mut f = gw.server_frames(SIZE);
        let (got, sent) = rate(&gw, Side::Server, &mut f, None, time);
        mppe_down.push(got);
        offered_down.push(sent);

        gw.set_decap(false);
        let relay = Relay::start(&gw.topo, Some(RECV_KEY));
        relay_up.push(rate_once(&gw, &mut mppe_frames).0);
        relay.stop();
        gw.set_decap(true);
    }
    let drops = gw.dp.counters().map(|c| {
        c.named_drops()
            .into_iter()
            .filter(|(k, v)| *v > 0 && k.starts_with("mppe"))
            .map(|(k, v)| format!("{k}={v}"))
            .collect::<Vec<_>>()
            .join(" ")
    });
    let g = "6 MPPE forwarding (1400 B inner, 64 sessions, stateless)";
    let kpps = |v: f64| {
        format!(
            "{:.0} kpps ({:.0} Mbit/s)",
            v / 1e3,
            v * SIZE as f64 * 8.0 / 1e6
        )
    };
    let (pu, mu, ru) = (median(plain_up), median(mppe_up), median(relay_up));
    let (pd, md) = (median(plain_down), median(mppe_down));
    let (ou, od) = (median(offered_up), median(offered_down));
    let (gu, gd) = (median(gen_up), median(gen_down));
    let capped = |got: f64, generator: f64| {
        if got >= 0.8 * generator {
            " — generator-capped"
        } else {
            ""
        }
    };
    vec![
        Row::compare(
            g,
            "client→server: MPPE session (XDP decrypt) vs plain session",
            format!("{}{}", kpps(mu), capped(mu, gu)),
            format!("{} (plain)", kpps(pu)),
            mu / pu,
        ),
        Row::ratio(
            g,
            "client→server: MPPE in XDP vs userspace relay doing the same MPPE work",
            kpps(mu),
            format!("{} (relay)", kpps(ru)),
            mu / ru,
            "≥ 2×",
            mu / ru >= 2.0,
        ),
        Row::info(
            g,
            "  offered load client→server",
            format!(
                "MPPE run {:.0} kpps taken (one AF_PACKET sender, retrying on a full ring); \
                 it offers {:.0} kpps to a plain session",
                ou / 1e3,
                gu / 1e3
            ),
        ),
        Row::compare(
            g,
            "server→client: MPPE session (XDP encrypt) vs plain session",
            format!("{}{}", kpps(md), capped(md, gd)),
            format!("{} (plain)", kpps(pd)),
            md / pd,
        ),
        Row::info(
            g,
            "  offered load server→client",
            format!(
                "MPPE run {:.0} kpps, plain run {:.0} kpps (one AF_PACKET sender)",
                od / 1e3,
                gd / 1e3
            ),
        ),
        Row::info(
            g,
            "MPPE drops over the runs (overload: gaps re-keyed, far jumps caught up)",
            match drops {
                Ok(d) if d.is_empty() => "none".into(),
                Ok(d) => d,
                Err(e) => format!("{e:#}"),
            },
        ),
    ]
}
