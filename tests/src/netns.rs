//! Network namespaces and veth pairs made with iproute2 (test set-up only: the product itself
//! talks rtnetlink), removed on drop.

use std::{
    fs::File,
    os::fd::AsRawFd as _,
    process::{Command, Output},
    sync::atomic::{AtomicU32, Ordering},
};

static NEXT: AtomicU32 = AtomicU32::new(0);

/// A network namespace that exists until this value is dropped. Deleting a namespace deletes the
/// links, addresses and routes inside it, and detaches the programs attached to them.
pub struct Netns {
    name: String,
}

impl Netns {
    /// The namespace's inode (what `/proc/<pid>/ns/net` of a process inside names).
    pub fn inode(&self) -> u64 {
        use std::os::unix::fs::MetadataExt as _;
        std::fs::metadata(format!("/run/netns/{}", self.name))
            .map(|m| m.ino())
            .unwrap_or(0)
    }

    /// A new namespace named `pt-<tag>-<pid>-<n>`, loopback up.
    pub fn new(tag: &str) -> Self {
        let n = NEXT.fetch_add(1, Ordering::Relaxed);
        let name = format!("pt-{tag}-{}-{n}", std::process::id());
        run_ok(Command::new("ip").args(["netns", "add", &name]));
        let ns = Self { name };
        ns.ip(&["link", "set", "lo", "up"]);
        // No IPv6: its router/neighbour solicitations would add traffic the tests did not send.
        run_ok(
            ns.command("sysctl")
                .args(["-qw", "net.ipv6.conf.all.disable_ipv6=1"]),
        );
        run_ok(
            ns.command("sysctl")
                .args(["-qw", "net.ipv6.conf.default.disable_ipv6=1"]),
        );
        ns
    }

    pub fn name(&self) -> &str {
        &self.name
    }
}

impl crate::freeradius::InNamespace for Netns {
    fn namespace(&self) -> &str {
        &self.name
    }
}

impl Netns {
    /// `ip -n <ns> <args>`, which must succeed.
    pub fn ip(&self, args: &[&str]) -> Output {
        run_ok(Command::new("ip").args(["-n", &self.name]).args(args))
    }

    /// A command to run inside the namespace (`ip netns exec`).
    pub fn command(&self, program: impl AsRef<std::ffi::OsStr>) -> Command {
        let mut c = Command::new("ip");
        c.args(["netns", "exec", &self.name]).arg(program);
        c
    }

    /// Runs `f` on a thread that has entered this namespace, and returns its result. Sockets made
    /// and interfaces named inside `f` belong to the namespace.
    pub fn enter<R: Send>(&self, f: impl FnOnce() -> R + Send) -> R {
        let path = format!("/run/netns/{}", self.name);
        std::thread::scope(|s| {
            s.spawn(|| {
                let file = File::open(&path).unwrap_or_else(|e| panic!("open {path}: {e}"));
                // SAFETY: setns on a valid namespace fd changes only this thread's namespace.
                let rc = unsafe { libc::setns(file.as_raw_fd(), libc::CLONE_NEWNET) };
                assert_eq!(rc, 0, "setns {path}: {}", std::io::Error::last_os_error());
                f()
            })
            .join()
            .unwrap_or_else(|e| std::panic::resume_unwind(e))
        })
    }
}

impl Drop for Netns {
    fn drop(&mut self) {
        let _ = Command::new("ip")
            .args(["netns", "del", &self.name])
            .status();
    }
}

/// One end of a veth pair: its namespace's name, interface name and MAC address.
#[derive(Clone, Debug)]
pub struct VethEnd {
    pub ifname: String,
    pub mac: [u8; 6],
}

/// Joins two namespaces with a veth pair, both ends up, with fixed MACs `02:00:00:00:<id>:01/02`.
/// The pair disappears with either namespace.
pub fn veth_pair(a: &Netns, a_if: &str, b: &Netns, b_if: &str, id: u8) -> (VethEnd, VethEnd) {
    veth_pair_queues(a, a_if, b, b_if, id, 1)
}

/// [`veth_pair`] with `queues` receive and transmit queues at each end (a veth's XDP then runs
/// in one NAPI context per queue, on the CPU that sent into it, like a multi-queue NIC's).
pub fn veth_pair_queues(
    a: &Netns,
    a_if: &str,
    b: &Netns,
    b_if: &str,
    id: u8,
    queues: u32,
) -> (VethEnd, VethEnd) {
    let mac_a = [0x02, 0, 0, 0, id, 1];
    let mac_b = [0x02, 0, 0, 0, id, 2];
    let q = queues.to_string();
    a.ip(&[
        "link",
        "add",
        "name",
        a_if,
        "address",
        &fmt_mac(&mac_a),
        "numtxqueues",
        &q,
        "numrxqueues",
        &q,
        "type",
        "veth",
        "peer",
        "name",
        b_if,
        "address",
        &fmt_mac(&mac_b),
        "numtxqueues",
        &q,
        "numrxqueues",
        &q,
        "netns",
        b.name(),
    ]);
    a.ip(&["link", "set", a_if, "up"]);
    b.ip(&["link", "set", b_if, "up"]);
    (
        VethEnd {
            ifname: a_if.into(),
            mac: mac_a,
        },
        VethEnd {
            ifname: b_if.into(),
            mac: mac_b,
        },
    )
}

/// A gateway namespace with one uplink (`upa`, 192.0.2.1/24) to a router namespace, the
/// router's neighbour entry fixed (02:00:00:00:<id>:fe at 192.0.2.254), clients
/// (198.51.100.0/24) routed through it, and forwarding on: where the encapsulation's FIB lookup
/// succeeds for BPF_PROG_TEST_RUN. Returns (gateway, router).
pub fn gateway_with_uplink(tag: &str, id: u8) -> (Netns, Netns) {
    let gw = Netns::new(tag);
    let up = Netns::new(&format!("{tag}u"));
    veth_pair(&gw, "upa", &up, "ra", id);
    gw.ip(&["addr", "add", "192.0.2.1/24", "dev", "upa"]);
    let router = fmt_mac(&[2, 0, 0, 0, id, 0xfe]);
    gw.ip(&[
        "neigh",
        "replace",
        "192.0.2.254",
        "lladdr",
        &router,
        "dev",
        "upa",
        "nud",
        "permanent",
    ]);
    gw.ip(&["route", "add", "198.51.100.0/24", "via", "192.0.2.254"]);
    // The encapsulation's FIB lookup is a forwarding lookup.
    run_ok(gw.command("sysctl").args(["-qw", "net.ipv4.ip_forward=1"]));
    (gw, up)
}

pub fn fmt_mac(m: &[u8; 6]) -> String {
    format!(
        "{:02x}:{:02x}:{:02x}:{:02x}:{:02x}:{:02x}",
        m[0], m[1], m[2], m[3], m[4], m[5]
    )
}

/// Runs a command and panics with its output unless it succeeds.
pub fn run_ok(cmd: &mut Command) -> Output {
    let out = cmd
        .output()
        .unwrap_or_else(|e| panic!("spawn {cmd:?}: {e}"));
    assert!(
        out.status.success(),
        "{cmd:?} failed: {}\n{}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    out
}
