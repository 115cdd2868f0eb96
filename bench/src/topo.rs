//! The benchmark network: client ↔ gateway ↔ server namespaces joined by veth pairs (the same
//! addresses as the system tests), plus traffic helpers.

use std::{
    net::Ipv4Addr,
    time::{Duration, Instant},
};

use pptp_tests::{
    frames,
    netns::{Netns, VethEnd, fmt_mac, run_ok, veth_pair},
    sockets::PacketSender,
};

pub const GW_WAN: Ipv4Addr = Ipv4Addr::new(198, 51, 100, 1);
pub const CLIENT: Ipv4Addr = Ipv4Addr::new(198, 51, 100, 7);
pub const SERVER: Ipv4Addr = Ipv4Addr::new(203, 0, 113, 5);
pub const SERVER6: std::net::Ipv6Addr =
    std::net::Ipv6Addr::new(0x2001, 0xdb8, 0xffff, 0, 0, 0, 0, 5);

pub struct Topo {
    pub cl: Netns,
    pub gw: Netns,
    pub srv: Netns,
    pub c0: VethEnd,
    pub wan0: VethEnd,
    pub lan0: VethEnd,
    pub s0: VethEnd,
}

impl Topo {
    pub fn new(tag: &str) -> Self {
        let cl = Netns::new(&format!("{tag}c"));
        let gw = Netns::new(&format!("{tag}g"));
        let srv = Netns::new(&format!("{tag}s"));
        let (c0, wan0) = veth_pair(&cl, "c0", &gw, "wan0", 0x71);
        let (lan0, s0) = veth_pair(&gw, "lan0", &srv, "s0", 0x72);
        cl.ip(&["addr", "add", &format!("{CLIENT}/24"), "dev", "c0"]);
        gw.ip(&["addr", "add", &format!("{GW_WAN}/24"), "dev", "wan0"]);
        gw.ip(&["addr", "add", "203.0.113.1/24", "dev", "lan0"]);
        srv.ip(&["addr", "add", &format!("{SERVER}/24"), "dev", "s0"]);
        srv.ip(&["route", "add", "default", "via", "203.0.113.1"]);
        run_ok(gw.command("sysctl").args(["-qw", "net.ipv4.ip_forward=1"]));
        // IPv6 on the LAN (the rig's namespaces start without it), for the IPv6 rows.
        run_ok(
            gw.command("sysctl")
                .args(["-qw", "net.ipv6.conf.lan0.disable_ipv6=0"]),
        );
        run_ok(
            srv.command("sysctl")
                .args(["-qw", "net.ipv6.conf.s0.disable_ipv6=0"]),
        );
        gw.ip(&[
            "-6",
            "addr",
            "add",
            "2001:db8:ffff::1/64",
            "dev",
            "lan0",
            "nodad",
        ]);
        srv.ip(&[
            "-6",
            "addr",
            "add",
            &format!("{SERVER6}/64"),
            "dev",
            "s0",
            "nodad",
        ]);
        srv.ip(&["-6", "route", "add", "default", "via", "2001:db8:ffff::1"]);
        // Frames XDP redirects into a veth need NAPI on its peer: GRO on at both ends.
        run_ok(cl.command("ethtool").args(["-K", "c0", "gro", "on"]));
        run_ok(srv.command("ethtool").args(["-K", "s0", "gro", "on"]));
        // The gateway knows the client's MAC (the control connection would have resolved it).
        gw.ip(&[
            "neigh",
            "replace",
            &CLIENT.to_string(),
            "lladdr",
            &fmt_mac(&c0.mac),
            "dev",
            "wan0",
        ]);
        gw.ip(&[
            "-6",
            "neigh",
            "replace",
            &SERVER6.to_string(),
            "lladdr",
            &fmt_mac(&s0.mac),
            "dev",
            "lan0",
        ]);
        // ...and the server's (in `xdp` mode a missing neighbour sends packets to the stack).
        gw.ip(&[
            "neigh",
            "replace",
            &SERVER.to_string(),
            "lladdr",
            &fmt_mac(&s0.mac),
            "dev",
            "lan0",
        ]);
        run_ok(gw.command("ethtool").args(["-K", "lan0", "gro", "on"]));
        Self {
            cl,
            gw,
            srv,
            c0,
            wan0,
            lan0,
            s0,
        }
    }
}

/// Turns on threaded NAPI for a device (sysfs seen from inside the namespace): its receive work
/// then runs in a kernel thread the scheduler can put on the other core, not in the softirq of
/// the sender's own system call, where one core would pay for generator and gateway alike and
/// the figures would measure the generator. A veth has NAPI once XDP or GRO is on.
pub fn threaded_napi(ns: &Netns, dev: &str) -> bool {
    ns.command("sh")
        .args(["-c", &format!("echo 1 > /sys/class/net/{dev}/threaded")])
        .status()
        .is_ok_and(|s| s.success())
}

/// A device's received-packet counter (netlink's view, namespace-correct).
pub fn rx_packets(ns: &Netns, dev: &str) -> u64 {
    let out = ns.ip(&["-s", "-j", "link", "show", "dev", dev]);
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap_or_default();
    v[0]["stats64"]["rx"]["packets"].as_u64().unwrap_or(0)
}

/// An inner IPv4/UDP packet of exactly `size` bytes.
pub fn inner_udp(src: Ipv4Addr, dst: Ipv4Addr, size: usize) -> Vec<u8> {
    let payload = vec![0x5au8; size.saturating_sub(28)];
    frames::ipv4(
        src,
        dst,
        frames::IPPROTO_UDP,
        &frames::udp(40000, 9, &payload),
    )
}

/// An inner IPv6/UDP packet of exactly `size` bytes (UDP checksum left zero: the programs
/// never look at it, and nothing receives these packets).
pub fn inner_udp6(src: std::net::Ipv6Addr, dst: std::net::Ipv6Addr, size: usize) -> Vec<u8> {
    let payload = vec![0x5au8; size.saturating_sub(48)];
    frames::ipv6(
        src,
        dst,
        frames::IPPROTO_UDP,
        64,
        &frames::udp(40000, 9, &payload),
    )
}

/// A client's IPv6 data frame (PPP 0x0057) for call `call_id`.
pub fn client_frame6(topo: &Topo, call_id: u16, inner: &[u8]) -> Vec<u8> {
    let mut ppp = vec![0xff, 0x03, 0x00, 0x57];
    ppp.extend_from_slice(inner);
    let gre = frames::gre_v1(call_id, Some(0), None, &ppp);
    let ip = frames::ipv4(CLIENT, GW_WAN, frames::IPPROTO_GRE, &gre);
    frames::ethernet(topo.wan0.mac, topo.c0.mac, frames::ETH_P_IP, &ip)
}

/// Offset of the GRE sequence number in a client frame (Ethernet + IPv4 + 8 bytes of GRE).
pub const SEQ_OFFSET: usize = 14 + 20 + 8;

/// A client's data frame for call `call_id` carrying `inner` (GRE with a sequence number).
pub fn client_frame(topo: &Topo, call_id: u16, inner: &[u8]) -> Vec<u8> {
    let mut ppp = vec![0xff, 0x03, 0x00, 0x21];
    ppp.extend_from_slice(inner);
    let gre = frames::gre_v1(call_id, Some(0), None, &ppp);
    let ip = frames::ipv4(CLIENT, GW_WAN, frames::IPPROTO_GRE, &gre);
    frames::ethernet(topo.wan0.mac, topo.c0.mac, frames::ETH_P_IP, &ip)
}

/// Sends `frames` round robin from `dev` in namespace `ns` for `time` (or `count` frames, whichever
/// ends first), bumping each frame's sequence number at `seq_offset` when given. Returns the frames
/// sent and the time taken.
pub fn blast(
    ns: &Netns,
    dev: &str,
    frames: &mut [Vec<u8>],
    seq_offset: Option<usize>,
    count: u64,
    time: Duration,
) -> (u64, Duration) {
    let dev = dev.to_string();
    ns.enter(move || {
        pin_to_cpu(0);
        let sender = PacketSender::new(&dev).expect("AF_PACKET sender");
        let started = Instant::now();
        let mut sent = 0u64;
        let n = frames.len();
        // Sequence numbers keep growing across blasts: the sessions remember the highest seen,
        // and a number at or below it is a late packet (dropped, rightly).
        let base = SEQ_BASE.load(std::sync::atomic::Ordering::Relaxed);
        let mut seqs = vec![base; n];
        while sent < count {
            if sent.is_multiple_of(1024) && started.elapsed() >= time {
                break;
            }
            let i = (sent as usize) % n;
            if let Some(off) = seq_offset {
                frames[i][off..off + 4].copy_from_slice(&seqs[i].to_be_bytes());
                seqs[i] = seqs[i].wrapping_add(1);
            }
            // A full socket buffer is back-pressure, not an error: try again.
            if sender.send(&frames[i]).is_ok() {
                sent += 1;
            }
        }
        // Past every number used, including those of sends that failed and were retried with
        // the next number.
        let next = seqs.iter().copied().max().unwrap_or(base).wrapping_add(1);
        SEQ_BASE.fetch_max(next, std::sync::atomic::Ordering::Relaxed);
        (sent, started.elapsed())
    })
}

static SEQ_BASE: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(1);

/// Pins the calling thread to one CPU. A veth has one receive queue per CPU and queues by the
/// sending CPU: a generator that migrates would spread one flow over two queues (two NAPI
/// contexts) and reorder it, which a NIC's RSS hash never does to a GRE flow.
pub fn pin_to_cpu(cpu: usize) {
    // SAFETY: a zeroed cpu_set_t is empty; CPU_SET and sched_setaffinity get valid pointers.
    unsafe {
        let mut set: libc::cpu_set_t = std::mem::zeroed();
        libc::CPU_SET(cpu, &mut set);
        libc::sched_setaffinity(0, size_of::<libc::cpu_set_t>(), &set);
    }
}

pub fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(|a, b| a.total_cmp(b));
    if v.is_empty() {
        return f64::NAN;
    }
    v[v.len() / 2]
}
