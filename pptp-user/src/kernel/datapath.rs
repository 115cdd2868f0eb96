//! The kernel side, seen from the controller: load the embedded eBPF object, attach its programs,
//! read its counters. Dropping a [`Datapath`] from [`Datapath::load`] detaches everything it
//! attached; one from [`Datapath::load_pinned`] leaves its maps and links in bpffs, forwarding
//! on without us (see `pins.rs`), until [`Datapath::unpin`].

use crate::kernel::pins::{PINNED_MAPS, Pins, fnv1a};
use anyhow::{Context as _, anyhow};
use aya::{
    Ebpf,
    maps::{
        Array, HashMap, MapData, PerCpuArray, PerCpuValues,
        lpm_trie::{Key, LpmTrie},
    },
    programs::{
        Xdp, XdpMode,
        links::{FdLink, PinnedLink},
        xdp::XdpLink,
    },
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
    pinned: Option<Pinned>,
}

/// What [`Datapath::load_pinned`] found in bpffs.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Adopted {
    /// Nothing of ours: fresh maps, programs attached anew.
    Fresh,
    /// This very object was attached: its maps and links are taken over as they are.
    Same,
    /// Another object of the same map layout (an upgrade): the maps are taken over and every
    /// link is pointed at the new program atomically.
    Replaced,
}

struct Pinned {
    pins: Pins,
    adopted: Adopted,
    marker: std::path::PathBuf,
    /// The links this run wants; any other pinned link is detached by `settle`.
    wanted: Vec<std::path::PathBuf>,
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
        let ebpf = Ebpf::load(EBPF_OBJECT).context("load the pptpgw eBPF object")?;
        let mut dp = Self { ebpf, pinned: None };
        dp.load_programs()?;
        Ok(dp)
    }

    /// Loads the object over the maps pinned under `pins` (creating and pinning them when there
    /// are none), so sessions programmed by a previous run keep their state. Attachments go
    /// through links pinned there too: see [`Adopted`] for what is kept and what replaced.
    pub fn load_pinned(pins: &Pins, xdp_forwarding: bool) -> anyhow::Result<(Self, Adopted)> {
        remove_dead_siblings(pins);
        if pins.remove_other_layouts() {
            tracing::warn!(
                pin_dir = %pins.root().display(),
                "the pinned data path has another map layout: detached, its sessions are lost"
            );
        }
        let marker = pins.object_marker(fnv1a(EBPF_OBJECT), xdp_forwarding);
        let adopted = match (pins.has_maps(), marker.exists()) {
            (false, _) => Adopted::Fresh,
            (true, true) => Adopted::Same,
            (true, false) => Adopted::Replaced,
        };
        let dir = pins.maps_dir();
        std::fs::create_dir_all(&dir).with_context(|| format!("create {}", dir.display()))?;
        let btf = aya::Btf::from_sys_fs().ok();
        let mut loader = aya::EbpfLoader::new();
        loader.btf(btf.as_ref());
        for name in PINNED_MAPS {
            loader.map_pin_path(name, pins.map_path(name));
        }
        let ebpf = loader
            .load(EBPF_OBJECT)
            .context("load the pptpgw eBPF object over the pinned maps")?;
        let mut dp = Self { ebpf, pinned: None };
        dp.load_programs()?;
        dp.pinned = Some(Pinned {
            pins: pins.clone(),
            adopted,
            marker,
            wanted: Vec::new(),
        });
        Ok((dp, adopted))
    }

    fn load_programs(&mut self) -> anyhow::Result<()> {
        for name in PROGRAMS {
            prog_mut(&mut self.ebpf, name)?
                .load()
                .with_context(|| format!("verify {name}"))?;
        }
        Ok(())
    }

    /// Whether the program arrays and CPU map already hold this object's programs (they were
    /// filled by the run that attached this very object).
    pub fn adopted_as_is(&self) -> bool {
        self.pinned
            .as_ref()
            .is_some_and(|p| p.adopted == Adopted::Same)
    }

    /// After every attachment: links this run did not ask for are detached (an interface
    /// dropped from the config), and the object is recorded as the one attached.
    pub fn settle(&mut self) -> anyhow::Result<()> {
        let Some(p) = &self.pinned else {
            return Ok(());
        };
        for link in p.pins.links() {
            if !p.wanted.contains(&link) {
                tracing::info!(link = %link.display(), "detaching a pinned program no longer configured");
                let _ = std::fs::remove_file(&link);
            }
        }
        p.pins.mark(&p.marker)
    }

    /// A clean stop: the pins go, so the programs detach and the maps are freed when this
    /// process lets go of them.
    pub fn unpin(&mut self) {
        if let Some(p) = self.pinned.take() {
            p.pins.remove_all();
        }
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
        let prog = prog_mut(&mut self.ebpf, name)?;
        let Some(p) = &mut self.pinned else {
            prog.attach(iface, mode)
                .with_context(|| format!("attach {name} to {iface}"))?;
            return Ok(());
        };
        let path = p.pins.link_path(name, iface);
        p.wanted.push(path.clone());
        if path.exists() {
            let ifindex = ifindex_of(iface)?;
            match PinnedLink::from_pin(&path) {
                // The interface it was attached to is this one: the link is live.
                Ok(link) if link_ifindex(&path).is_ok_and(|i| i == ifindex) => {
                    if p.adopted == Adopted::Same {
                        return Ok(());
                    }
                    let link = XdpLink::try_from(FdLink::from(link))
                        .with_context(|| format!("pinned link {}", path.display()))?;
                    prog.attach_to_link(link)
                        .with_context(|| format!("replace {name} on {iface}"))?;
                    tracing::info!(program = name, iface, "pinned program replaced in place");
                    return Ok(());
                }
                // Its interface went (pptp0 recreated) or the pin is not a link: start over.
                _ => {
                    let _ = std::fs::remove_file(&path);
                }
            }
        }
        let id = prog
            .attach(iface, mode)
            .with_context(|| format!("attach {name} to {iface}"))?;
        let link = FdLink::try_from(prog.take_link(id)?)
            .with_context(|| format!("{name} on {iface} is not a bpf link"))?;
        link.pin(&path)
            .with_context(|| format!("pin {}", path.display()))?;
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
        if session.prefix6 != [0; 8] {
            let mut clients: HashMap<&mut MapData, [u8; 8], Session> =
                HashMap::try_from(self.map_mut(maps::CLIENTS6)?)?;
            clients
                .insert(session.prefix6, session, 0)
                .context("insert CLIENTS6")?;
        }
        // The prefix delegated to it by DHCPv6 leads to it too.
        if session.delegated6 != [0; 8] {
            let mut delegated: LpmTrie<&mut MapData, [u8; 8], Session> =
                LpmTrie::try_from(self.map_mut(maps::DELEGATED6)?)?;
            delegated
                .insert(&delegated_key(session), session, 0)
                .context("insert DELEGATED6")?;
        }
        Ok(())
    }

    /// The encapsulation stops taking packets for an IPv6 /64 (a session's own).
    pub fn unprogram6(&mut self, prefix: [u8; 8]) -> anyhow::Result<()> {
        let mut clients: HashMap<&mut MapData, [u8; 8], Session> =
            HashMap::try_from(self.map_mut(maps::CLIENTS6)?)?;
        ignore_missing(clients.remove(&prefix)).context("remove CLIENTS6")
    }

    /// The encapsulation stops taking packets for a delegated prefix.
    pub fn unprogram_delegated(&mut self, prefix: [u8; 8], len: u8) -> anyhow::Result<()> {
        let mut delegated: LpmTrie<&mut MapData, [u8; 8], Session> =
            LpmTrie::try_from(self.map_mut(maps::DELEGATED6)?)?;
        ignore_missing(delegated.remove(&Key::new(u32::from(len), prefix)))
            .context("remove DELEGATED6")
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
        let mut clients6: HashMap<&mut MapData, [u8; 8], Session> =
            HashMap::try_from(self.map_mut(maps::CLIENTS6)?)?;
        let p = session.prefix6;
        if p != [0; 8] && clients6.get(&p, 0).is_ok_and(|s| s.key == session.key) {
            ignore_missing(clients6.remove(&p)).context("remove CLIENTS6")?;
        }
        let mut delegated: LpmTrie<&mut MapData, [u8; 8], Session> =
            LpmTrie::try_from(self.map_mut(maps::DELEGATED6)?)?;
        let k = delegated_key(session);
        // The longest match for a key of the entry's own length is the entry, when there is
        // one: what answers must be this session's, for this very prefix.
        if session.delegated6 != [0; 8]
            && delegated.get(&k, 0).is_ok_and(|s| {
                s.key == session.key
                    && (s.delegated6, s.delegated6_len)
                        == (session.delegated6, session.delegated6_len)
            })
        {
            ignore_missing(delegated.remove(&k)).context("remove DELEGATED6")?;
        }
        let mut sessions: HashMap<&mut MapData, SessionKey, Session> =
            HashMap::try_from(self.map_mut(maps::SESSIONS)?)?;
        ignore_missing(sessions.remove(&session.key)).context("remove SESSIONS")?;
        Ok(())
    }

    /// Removes every session entry, client lookup and MPPE state not belonging to a session in
    /// `keep` (what a previous run left of the sessions that did not survive it). Returns how
    /// many entries went.
    pub fn sweep(&mut self, keep: &std::collections::HashSet<SessionKey>) -> anyhow::Result<usize> {
        let mut removed = 0;
        let mut slots = std::collections::HashSet::new();
        let sessions: HashMap<&mut MapData, SessionKey, Session> =
            HashMap::try_from(self.map_mut(maps::SESSIONS)?)?;
        let mut gone = Vec::new();
        for entry in sessions.iter() {
            let (key, s) = entry?;
            if keep.contains(&key) {
                slots.insert(s.slot);
            } else {
                gone.push(s);
            }
        }
        for s in &gone {
            self.remove_session(s)?;
            removed += 1;
        }
        let mut clients: HashMap<&mut MapData, [u8; 4], Session> =
            HashMap::try_from(self.map_mut(maps::CLIENTS)?)?;
        let stale: Vec<[u8; 4]> = clients
            .iter()
            .filter_map(Result::ok)
            .filter(|(_, s)| !keep.contains(&s.key))
            .map(|(a, _)| a)
            .collect();
        for a in stale {
            ignore_missing(clients.remove(&a))?;
            removed += 1;
        }
        let mut clients6: HashMap<&mut MapData, [u8; 8], Session> =
            HashMap::try_from(self.map_mut(maps::CLIENTS6)?)?;
        let stale: Vec<[u8; 8]> = clients6
            .iter()
            .filter_map(Result::ok)
            .filter(|(_, s)| !keep.contains(&s.key))
            .map(|(a, _)| a)
            .collect();
        for a in stale {
            ignore_missing(clients6.remove(&a))?;
            removed += 1;
        }
        let mut delegated: LpmTrie<&mut MapData, [u8; 8], Session> =
            LpmTrie::try_from(self.map_mut(maps::DELEGATED6)?)?;
        let stale: Vec<Key<[u8; 8]>> = delegated
            .iter()
            .filter_map(Result::ok)
            .filter(|(_, s)| !keep.contains(&s.key))
            .map(|(k, _)| k)
            .collect();
        for k in stale {
            ignore_missing(delegated.remove(&k))?;
            removed += 1;
        }
        let mut mppe: HashMap<&mut MapData, u32, pptp_common::mppe::MppeState> =
            HashMap::try_from(self.map_mut(maps::MPPE_STATE)?)?;
        let stale: Vec<u32> = mppe
            .keys()
            .filter_map(Result::ok)
            .filter(|slot| !slots.contains(slot))
            .collect();
        for slot in stale {
            ignore_missing(mppe.remove(&slot))?;
            removed += 1;
        }
        Ok(removed)
    }

    /// The configuration the programs run with (a previous run's, when adopted).
    pub fn config(&self) -> anyhow::Result<DatapathConfig> {
        let a: Array<&MapData, DatapathConfig> = Array::try_from(self.map(maps::CONFIG)?)?;
        Ok(a.get(&0, 0)?)
    }

    /// Number of programmed sessions (both lookups), for leak checks.
    pub fn session_entries(&self) -> anyhow::Result<(usize, usize)> {
        let sessions: HashMap<&MapData, SessionKey, Session> =
            HashMap::try_from(self.map(maps::SESSIONS)?)?;
        let clients: HashMap<&MapData, [u8; 4], Session> =
            HashMap::try_from(self.map(maps::CLIENTS)?)?;
        Ok((sessions.keys().count(), clients.keys().count()))
    }

    /// Number of IPv6 client lookups (sessions' /64s and delegated prefixes), for leak checks.
    pub fn clients6_entries(&self) -> anyhow::Result<usize> {
        let clients: HashMap<&MapData, [u8; 8], Session> =
            HashMap::try_from(self.map(maps::CLIENTS6)?)?;
        let delegated: LpmTrie<&MapData, [u8; 8], Session> =
            LpmTrie::try_from(self.map(maps::DELEGATED6)?)?;
        Ok(clients.keys().count() + delegated.keys().count())
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

/// Every program of the object, loaded (and verified) together.
const PROGRAMS: [&str; 9] = [
    maps::PROG_XDP_DECAP,
    maps::PROG_XDP_ENCAP,
    maps::PROG_XDP_PASS,
    maps::PROG_XDP_FORWARD,
    maps::PROG_XDP_LAN,
    maps::PROG_XDP_LAN_HOME,
    maps::PROG_XDP_BENCH_REDIRECT,
    maps::PROG_XDP_BENCH_GEN,
    maps::PROG_XDP_BENCH_SINK,
];

/// Pin directories of network namespaces that are gone: every link in them is defunct (its
/// interface went with the namespace), so nothing can ever adopt their maps. A directory with
/// no link yet may be a gateway starting: left alone.
fn remove_dead_siblings(pins: &Pins) {
    let Some(parent) = pins.root().parent() else {
        return;
    };
    let Ok(dir) = std::fs::read_dir(parent) else {
        return;
    };
    for e in dir.flatten() {
        let path = e.path();
        if path == pins.root() || !e.file_name().to_string_lossy().starts_with("net-") {
            continue;
        }
        let links: Vec<_> = Pins::at(&path).links();
        if !links.is_empty() && links.iter().all(|l| link_ifindex(l).is_ok_and(|i| i == 0)) {
            tracing::info!(dir = %path.display(), "removing the pinned data path of a network namespace that is gone");
            let _ = std::fs::remove_dir_all(&path);
        }
    }
}

fn ifindex_of(iface: &str) -> anyhow::Result<u32> {
    let c = std::ffi::CString::new(iface).map_err(|_| anyhow!("interface name {iface:?}"))?;
    // SAFETY: a NUL-terminated name.
    match unsafe { libc::if_nametoindex(c.as_ptr()) } {
        0 => Err(anyhow!("no interface {iface}")),
        i => Ok(i),
    }
}

/// The interface the XDP link pinned at `path` is attached to, 0 once that interface is gone
/// (the link is then defunct). aya exposes neither the pinned link's fd nor
/// `bpf_link_info.xdp.ifindex`, so this asks the kernel itself.
fn link_ifindex(path: &std::path::Path) -> std::io::Result<u32> {
    use std::os::{fd::FromRawFd as _, unix::ffi::OsStrExt as _};
    const BPF_OBJ_GET: libc::c_long = 7;
    const BPF_OBJ_GET_INFO_BY_FD: libc::c_long = 15;
    let name = std::ffi::CString::new(path.as_os_str().as_bytes())?;
    #[repr(C)]
    struct GetAttr {
        pathname: u64,
        bpf_fd: u32,
        file_flags: u32,
        path_fd: i32,
    }
    let get = GetAttr {
        pathname: name.as_ptr() as u64,
        bpf_fd: 0,
        file_flags: 0,
        path_fd: 0,
    };
    // SAFETY: the attr points at a NUL-terminated path that outlives the call.
    let fd = unsafe {
        libc::syscall(
            libc::SYS_bpf,
            BPF_OBJ_GET,
            &get as *const GetAttr,
            size_of::<GetAttr>(),
        )
    };
    if fd < 0 {
        return Err(std::io::Error::last_os_error());
    }
    // SAFETY: BPF_OBJ_GET returned a fresh descriptor we own.
    let fd = unsafe { std::os::fd::OwnedFd::from_raw_fd(fd as i32) };
    use std::os::fd::AsRawFd as _;
    // bpf_link_info: type, id, prog_id (u32 each), then the 8-aligned union; xdp's first field
    // is the ifindex, at byte 16.
    let mut info = [0u64; 16];
    #[repr(C)]
    struct InfoAttr {
        bpf_fd: u32,
        info_len: u32,
        info: u64,
    }
    let attr = InfoAttr {
        bpf_fd: fd.as_raw_fd() as u32,
        info_len: size_of_val(&info) as u32,
        info: info.as_mut_ptr() as u64,
    };
    // SAFETY: the attr points at a live buffer of the stated length.
    let rc = unsafe {
        libc::syscall(
            libc::SYS_bpf,
            BPF_OBJ_GET_INFO_BY_FD,
            &attr as *const InfoAttr,
            size_of::<InfoAttr>(),
        )
    };
    if rc != 0 {
        return Err(std::io::Error::last_os_error());
    }
    Ok(info[2] as u32)
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

/// A session's `DELEGATED6` key.
fn delegated_key(s: &Session) -> Key<[u8; 8]> {
    Key::new(u32::from(s.delegated6_len), s.delegated6)
}
