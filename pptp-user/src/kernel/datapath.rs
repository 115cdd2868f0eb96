//! The kernel side, seen from the controller: load the embedded eBPF object, attach its programs,
//! read its counters. Dropping a [`Datapath`] detaches everything it attached.

use anyhow::{Context as _, anyhow};
use aya::{
    Ebpf,
    maps::{Array, HashMap, MapData, PerCpuArray, PerCpuValues},
    programs::{Xdp, XdpMode},
};
use pptp_common::{
    maps,
    session::{DatapathConfig, GreState, Session, SessionKey, SessionStats},
    stats::{DropReason, Stat},
};

/// The eBPF object built by `build.rs` from `pptp-ebpf`; embedded so `pptpgw` is one binary.
pub static EBPF_OBJECT: &[u8] = aya::include_bytes_aligned!(concat!(env!("OUT_DIR"), "/pptp-ebpf"));

pub struct Datapath {
    ebpf: Ebpf,
}

/// Global counters summed over all CPUs.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Counters {
    pub stats: [u64; Stat::COUNT],
    pub drops: [u64; DropReason::COUNT],
}

impl Counters {
    pub fn get(&self, stat: Stat) -> u64 {
        self.stats[stat as usize]
    }
    pub fn dropped(&self, reason: DropReason) -> u64 {
        self.drops[reason as usize]
    }
    /// Every event counter with its name, in `Stat` order (logs, API, metrics).
    pub fn named_stats(&self) -> Vec<(&'static str, u64)> {
        Stat::ALL.iter().map(|s| (s.name(), self.get(*s))).collect()
    }

    /// Every drop reason with its name and count, in `DropReason` order.
    pub fn named_drops(&self) -> Vec<(&'static str, u64)> {
        DropReason::ALL
            .iter()
            .map(|r| (r.name(), self.dropped(*r)))
            .collect()
    }

    /// What moved since `before` (counters only grow).
    pub fn since(&self, before: &Counters) -> Counters {
        let mut d = Counters::default();
        for (i, v) in d.stats.iter_mut().enumerate() {
            *v = self.stats[i].wrapping_sub(before.stats[i]);
        }
        for (i, v) in d.drops.iter_mut().enumerate() {
            *v = self.drops[i].wrapping_sub(before.drops[i]);
        }
        d
    }
}

impl Datapath {
    /// Loads the object and every program into the kernel (this is where the verifier runs).
    pub fn load() -> anyhow::Result<Self> {
        let mut ebpf = Ebpf::load(EBPF_OBJECT).context("load the pptpgw eBPF object")?;
        for name in [
            maps::PROG_XDP_DECAP,
            maps::PROG_XDP_ENCAP,
            maps::PROG_XDP_PASS,
            maps::PROG_XDP_FORWARD,
            maps::PROG_XDP_LAN,
            maps::PROG_XDP_LAN_HOME,
            maps::PROG_XDP_BENCH_REDIRECT,
            maps::PROG_XDP_BENCH_GEN,
            maps::PROG_XDP_BENCH_SINK,
        ] {
            prog_mut(&mut ebpf, name)?
                .load()
                .with_context(|| format!("verify {name}"))?;
        }
        Ok(Self { ebpf })
    }

    /// Attaches the decapsulation program to a WAN interface.
    pub fn attach_xdp(&mut self, iface: &str, mode: XdpMode) -> anyhow::Result<()> {
        self.attach(maps::PROG_XDP_DECAP, iface, mode)
    }

    /// Attaches the encapsulation program to `pptp0`'s veth peer.
    pub fn attach_encap(&mut self, iface: &str) -> anyhow::Result<()> {
        self.attach(maps::PROG_XDP_ENCAP, iface, XdpMode::Driver)
    }

    /// Attaches XDP_PASS to `pptp0` itself, so frames redirected into it are taken natively.
    pub fn attach_pass(&mut self, iface: &str) -> anyhow::Result<()> {
        self.attach(maps::PROG_XDP_PASS, iface, XdpMode::Driver)
    }

    /// `[forwarding] mode = "xdp"`: the decapsulation forwards on its own and takes traffic for
    /// clients arriving on the WAN (tail calls into `FORWARD`).
    pub fn enable_xdp_forwarding(&mut self) -> anyhow::Result<()> {
        let forward = self
            .xdp_program(maps::PROG_XDP_FORWARD)?
            .fd()?
            .try_clone()?;
        let lan = self.xdp_program(maps::PROG_XDP_LAN)?.fd()?.try_clone()?;
        let mut slots: aya::maps::ProgramArray<&mut MapData> =
            aya::maps::ProgramArray::try_from(self.map_mut(maps::FORWARD)?)?;
        slots.set(maps::FORWARD_DECAPPED, &forward, 0)?;
        slots.set(maps::FORWARD_LAN, &lan, 0)?;
        Ok(())
    }

    /// `xdp` mode on several CPUs: every online CPU (up to `MAX_HOME_CPUS`) runs the LAN
    /// program for the sessions whose home it is. Returns how many; the caller puts it in
    /// `DatapathConfig::steer_cpus`.
    pub fn enable_steering(&mut self) -> anyhow::Result<u32> {
        let online = aya::util::online_cpus().map_err(|(what, e)| anyhow!("{what}: {e}"))?;
        let online: Vec<u32> = online
            .into_iter()
            .filter(|&c| c < maps::MAX_HOME_CPUS)
            .collect();
        // Homes are `slot % (highest + 1)`; one that is offline has no entry, and its sessions
        // are encapsulated where their packets arrive.
        let cpus = online.iter().max().map_or(0, |m| m + 1);
        let home = self
            .xdp_program(maps::PROG_XDP_LAN_HOME)?
            .fd()?
            .try_clone()?;
        let mut map: aya::maps::CpuMap<&mut MapData> =
            aya::maps::CpuMap::try_from(self.map_mut(maps::HOME_CPUS)?)?;
        for &cpu in &online {
            // 2,048 frames queued per CPU: a burst of a 10 Gbit/s NIC's ring and then some.
            map.set(cpu, 2048, Some(&home), 0)
                .with_context(|| format!("HOME_CPUS[{cpu}]"))?;
        }
        Ok(cpus)
    }

    /// Back to `stack` mode (benchmarks compare both on one data path).
    pub fn disable_xdp_forwarding(&mut self) -> anyhow::Result<()> {
        let mut slots: aya::maps::ProgramArray<&mut MapData> =
            aya::maps::ProgramArray::try_from(self.map_mut(maps::FORWARD)?)?;
        for slot in [maps::FORWARD_DECAPPED, maps::FORWARD_LAN] {
            ignore_missing(slots.clear_index(&slot))?;
        }
        Ok(())
    }

    /// `xdp` mode: the LAN program on an interface traffic for clients arrives on.
    pub fn attach_lan(&mut self, iface: &str, mode: XdpMode) -> anyhow::Result<()> {
        self.attach(maps::PROG_XDP_LAN, iface, mode)
    }

    fn attach(&mut self, name: &str, iface: &str, mode: XdpMode) -> anyhow::Result<()> {
        prog_mut(&mut self.ebpf, name)?
            .attach(iface, mode)
            .with_context(|| format!("attach {name} to {iface}"))?;
        Ok(())
    }

    /// Attaches any of the object's XDP programs (benchmarks swap programs on one interface).
    pub fn attach_named(
        &mut self,
        name: &str,
        iface: &str,
        mode: XdpMode,
    ) -> anyhow::Result<aya::programs::xdp::XdpLinkId> {
        prog_mut(&mut self.ebpf, name)?
            .attach(iface, mode)
            .with_context(|| format!("attach {name} to {iface}"))
    }

    pub fn detach_named(
        &mut self,
        name: &str,
        link: aya::programs::xdp::XdpLinkId,
    ) -> anyhow::Result<()> {
        prog_mut(&mut self.ebpf, name)?
            .detach(link)
            .with_context(|| format!("detach {name}"))
    }

    /// The benchmark baseline's redirect target.
    pub fn set_bench_redirect(&mut self, ifindex: u32) -> anyhow::Result<()> {
        let mut a: Array<&mut MapData, u32> = Array::try_from(self.map_mut(maps::BENCH_REDIRECT)?)?;
        a.set(0, ifindex, 0)?;
        Ok(())
    }

    /// Benchmarks only: the generator's template, and the program it tail-calls (the
    /// decapsulation, or the bench redirect as the baseline).
    pub fn set_bench_gen(
        &mut self,
        template: &pptp_common::session::BenchGen,
        then: &str,
    ) -> anyhow::Result<()> {
        let mut a: Array<&mut MapData, pptp_common::session::BenchGen> =
            Array::try_from(self.map_mut(maps::BENCH_GEN)?)?;
        a.set(0, template, 0)?;
        let fd = self.xdp_program(then)?.fd()?.try_clone()?;
        let mut tail: aya::maps::ProgramArray<&mut MapData> =
            aya::maps::ProgramArray::try_from(self.map_mut(maps::BENCH_TAIL)?)?;
        tail.set(0, &fd, 0)?;
        Ok(())
    }

    /// Benchmarks only: frames the sink program counted, all CPUs.
    pub fn bench_sink_count(&self) -> anyhow::Result<u64> {
        let a: PerCpuArray<&MapData, u64> = PerCpuArray::try_from(self.map(maps::BENCH_SINK)?)?;
        Ok(a.get(&0, 0)?.iter().sum())
    }

    /// A program's kernel-measured run time and run count (while BPF stats are enabled).
    pub fn program_stats(&self, name: &str) -> anyhow::Result<(std::time::Duration, u64)> {
        let info = self.xdp_program(name)?.info()?;
        Ok((info.run_time(), info.run_count()))
    }

    /// An XDP program by name (for BPF_PROG_TEST_RUN).
    pub fn xdp_program(&self, name: &str) -> anyhow::Result<&Xdp> {
        let prog = self
            .ebpf
            .program(name)
            .ok_or_else(|| anyhow!("no program {name}"))?;
        Ok(prog.try_into()?)
    }

    pub fn xdp(&self) -> anyhow::Result<&Xdp> {
        self.xdp_program(maps::PROG_XDP_DECAP)
    }

    /// Tells the programs about `pptp0` and turns the session fast path on.
    pub fn set_config(&mut self, config: &DatapathConfig) -> anyhow::Result<()> {
        let mut a: Array<&mut MapData, DatapathConfig> =
            Array::try_from(self.map_mut(maps::CONFIG)?)?;
        a.set(0, config, 0).context("write CONFIG")?;
        Ok(())
    }

    /// Programs a session: fresh sequence state and counters in its slot, then the lookups. The
    /// session is reachable by the programs only once everything it points to is in place.
    pub fn install_session(&mut self, session: &Session) -> anyhow::Result<()> {
        let slot = session.slot;
        let mut gre: Array<&mut MapData, GreState> =
            Array::try_from(self.map_mut(maps::GRE_STATE)?)?;
        gre.set(slot, GreState::default(), 0)
            .with_context(|| format!("reset GRE_STATE[{slot}]"))?;
        let cpus = aya::util::nr_cpus().map_err(|(what, e)| anyhow!("{what}: {e}"))?;
        let mut stats: PerCpuArray<&mut MapData, SessionStats> =
            PerCpuArray::try_from(self.map_mut(maps::SESSION_STATS)?)?;
        stats
            .set(
                slot,
                PerCpuValues::try_from(vec![SessionStats::default(); cpus])?,
                0,
            )
            .with_context(|| format!("reset SESSION_STATS[{slot}]"))?;
        self.set_rate_limit(slot, 0, 0)?;
        self.update_session(session)
    }

    /// Updates a programmed session (state, address, MTU...) without touching its sequence state
    /// or counters.
    pub fn update_session(&mut self, session: &Session) -> anyhow::Result<()> {
        let mut sessions: HashMap<&mut MapData, SessionKey, Session> =
            HashMap::try_from(self.map_mut(maps::SESSIONS)?)?;
        sessions
            .insert(session.key, session, 0)
            .context("update SESSIONS")?;
        if session.assigned != [0; 4] {
            // The encapsulation's copy: one lookup a packet instead of two.
            let mut clients: HashMap<&mut MapData, [u8; 4], Session> =
                HashMap::try_from(self.map_mut(maps::CLIENTS)?)?;
            clients
                .insert(session.assigned, session, 0)
                .context("insert CLIENTS")?;
        }
        Ok(())
    }

    /// A session's rate limits, bits per second each way (0: unlimited); the buckets start full.
    pub fn set_rate_limit(&mut self, slot: u32, up: u64, down: u64) -> anyhow::Result<()> {
        use pptp_common::rate::{Bucket, RateLimit};
        let mut a: Array<&mut MapData, RateLimit> =
            Array::try_from(self.map_mut(maps::RATE_LIMITS)?)?;
        a.set(
            slot,
            RateLimit {
                up: Bucket::new(up),
                down: Bucket::new(down),
            },
            0,
        )
        .with_context(|| format!("RATE_LIMITS[{slot}]"))
    }

    /// Keys an MPPE session's state (both directions, before its first packet).
    pub fn program_mppe(
        &mut self,
        slot: u32,
        send: [u8; 16],
        recv: [u8; 16],
        stateful: bool,
    ) -> anyhow::Result<()> {
        let mut m: HashMap<&mut MapData, u32, pptp_common::mppe::MppeState> =
            HashMap::try_from(self.map_mut(maps::MPPE_STATE)?)?;
        m.insert(
            slot,
            pptp_common::mppe::MppeState::new(send, recv, stateful),
            0,
        )
        .with_context(|| format!("program MPPE_STATE[{slot}]"))
    }

    /// An MPPE session's state as the data path left it (tests, diagnostics).
    pub fn mppe_state(&self, slot: u32) -> anyhow::Result<pptp_common::mppe::MppeState> {
        let m: HashMap<&MapData, u32, pptp_common::mppe::MppeState> =
            HashMap::try_from(self.map(maps::MPPE_STATE)?)?;
        m.get(&slot, 0)
            .with_context(|| format!("MPPE_STATE[{slot}]"))
    }

    /// Removes a session's lookups (idempotent: what is not there is not an error).
    pub fn remove_session(&mut self, session: &Session) -> anyhow::Result<()> {
        let mut mppe: HashMap<&mut MapData, u32, pptp_common::mppe::MppeState> =
            HashMap::try_from(self.map_mut(maps::MPPE_STATE)?)?;
        ignore_missing(mppe.remove(&session.slot)).context("remove MPPE_STATE")?;
        let mut clients: HashMap<&mut MapData, [u8; 4], Session> =
            HashMap::try_from(self.map_mut(maps::CLIENTS)?)?;
        if clients
            .get(&session.assigned, 0)
            .is_ok_and(|s| s.key == session.key)
        {
            ignore_missing(clients.remove(&session.assigned)).context("remove CLIENTS")?;
        }
        let mut sessions: HashMap<&mut MapData, SessionKey, Session> =
            HashMap::try_from(self.map_mut(maps::SESSIONS)?)?;
        ignore_missing(sessions.remove(&session.key)).context("remove SESSIONS")?;
        Ok(())
    }

    /// Number of programmed sessions (both lookups), for leak checks.
    pub fn session_entries(&self) -> anyhow::Result<(usize, usize)> {
        let sessions: HashMap<&MapData, SessionKey, Session> =
            HashMap::try_from(self.map(maps::SESSIONS)?)?;
        let clients: HashMap<&MapData, [u8; 4], Session> =
            HashMap::try_from(self.map(maps::CLIENTS)?)?;
        Ok((sessions.keys().count(), clients.keys().count()))
    }

    /// A handle on the routing generation (see `routewatch.rs`).
    pub fn route_generation(&self) -> anyhow::Result<crate::kernel::routewatch::RouteGeneration> {
        let aya::maps::Map::Array(data) = self.map(maps::ROUTE_GENERATION)? else {
            return Err(anyhow!("{} is not an array", maps::ROUTE_GENERATION));
        };
        crate::kernel::routewatch::RouteGeneration::new(data)
    }

    /// The sequence state mapped into our memory (see `seqspace.rs`).
    pub fn seq_space(&self) -> anyhow::Result<crate::kernel::seqspace::SeqSpace> {
        let aya::maps::Map::Array(data) = self.map(maps::GRE_STATE)? else {
            return Err(anyhow!("{} is not an array", maps::GRE_STATE));
        };
        let entries = data.info()?.max_entries();
        use std::os::fd::AsFd as _;
        crate::kernel::seqspace::SeqSpace::map(data.fd().as_fd(), entries).context("mmap GRE_STATE")
    }

    pub fn gre_state(&self, slot: u32) -> anyhow::Result<GreState> {
        let a: Array<&MapData, GreState> = Array::try_from(self.map(maps::GRE_STATE)?)?;
        Ok(a.get(&slot, 0)?)
    }

    /// A session's counters summed over the CPUs.
    pub fn session_stats(&self, slot: u32) -> anyhow::Result<SessionStats> {
        let a: PerCpuArray<&MapData, SessionStats> =
            PerCpuArray::try_from(self.map(maps::SESSION_STATS)?)?;
        let mut sum = SessionStats::default();
        for s in a.get(&slot, 0)?.iter() {
            sum.rx_packets += s.rx_packets;
            sum.rx_bytes += s.rx_bytes;
            sum.tx_packets += s.tx_packets;
            sum.tx_bytes += s.tx_bytes;
            sum.rx_dropped += s.rx_dropped;
            sum.tx_dropped += s.tx_dropped;
        }
        Ok(sum)
    }

    fn map(&self, name: &str) -> anyhow::Result<&aya::maps::Map> {
        self.ebpf.map(name).ok_or_else(|| anyhow!("no map {name}"))
    }

    fn map_mut(&mut self, name: &str) -> anyhow::Result<&mut aya::maps::Map> {
        self.ebpf
            .map_mut(name)
            .ok_or_else(|| anyhow!("no map {name}"))
    }

    /// Sums the per-CPU counters.
    pub fn counters(&self) -> anyhow::Result<Counters> {
        let mut c = Counters::default();
        sum_into(&self.ebpf, maps::STATS, &mut c.stats)?;
        sum_into(&self.ebpf, maps::DROPS, &mut c.drops)?;
        Ok(c)
    }
}

fn ignore_missing(r: Result<(), aya::maps::MapError>) -> Result<(), aya::maps::MapError> {
    match r {
        Err(aya::maps::MapError::KeyNotFound) => Ok(()),
        Err(aya::maps::MapError::SyscallError(e))
            if e.io_error.raw_os_error() == Some(libc::ENOENT) =>
        {
            Ok(())
        }
        other => other,
    }
}

fn prog_mut<'a>(ebpf: &'a mut Ebpf, name: &str) -> anyhow::Result<&'a mut Xdp> {
    let prog = ebpf
        .program_mut(name)
        .ok_or_else(|| anyhow!("no program {name}"))?;
    Ok(prog.try_into()?)
}

fn sum_into(ebpf: &Ebpf, name: &str, out: &mut [u64]) -> anyhow::Result<()> {
    let map = ebpf.map(name).ok_or_else(|| anyhow!("no map {name}"))?;
    let array: PerCpuArray<&MapData, u64> = PerCpuArray::try_from(map)?;
    for (i, slot) in out.iter_mut().enumerate() {
        let per_cpu = array
            .get(&(i as u32), 0)
            .with_context(|| format!("read {name}[{i}]"))?;
        *slot = per_cpu.iter().sum();
    }
    Ok(())
}
