//! The kernel side, seen from the controller: load the embedded eBPF object, attach its programs,
//! read its counters. Dropping a [`Datapath`] detaches everything it attached.

use anyhow::{Context as _, anyhow};
use aya::{
    Ebpf,
    maps::{MapData, PerCpuArray},
    programs::{SchedClassifier, TcAttachType, Xdp, XdpMode, tc},
    util::KernelVersion,
};
use pptp_common::{
    maps,
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
}

impl Datapath {
    /// Loads the object and both programs into the kernel (this is where the verifier runs).
    pub fn load() -> anyhow::Result<Self> {
        let mut ebpf = Ebpf::load(EBPF_OBJECT).context("load the pptpgw eBPF object")?;
        xdp_mut(&mut ebpf)?
            .load()
            .context("verify the XDP program")?;
        tc_mut(&mut ebpf)?.load().context("verify the TC program")?;
        Ok(Self { ebpf })
    }

    /// Attaches the decapsulation program to a WAN interface.
    pub fn attach_xdp(&mut self, iface: &str, mode: XdpMode) -> anyhow::Result<()> {
        xdp_mut(&mut self.ebpf)?
            .attach(iface, mode)
            .with_context(|| format!("attach XDP to {iface}"))?;
        Ok(())
    }

    /// Attaches the encapsulation program to an interface's egress. From 6.6 on aya uses a TCX
    /// link, which needs no qdisc; older kernels get a clsact qdisc first.
    pub fn attach_tc_egress(&mut self, iface: &str) -> anyhow::Result<()> {
        let tcx = KernelVersion::current().is_ok_and(|v| v >= KernelVersion::new(6, 6, 0));
        if !tcx {
            // An interface that already has clsact answers EEXIST: that is fine.
            if let Err(e) = tc::qdisc_add_clsact(iface) {
                tracing::debug!(iface, error = %e, "clsact qdisc not added");
            }
        }
        tc_mut(&mut self.ebpf)?
            .attach(iface, TcAttachType::Egress)
            .with_context(|| format!("attach TC egress to {iface}"))?;
        Ok(())
    }

    pub fn xdp(&self) -> anyhow::Result<&Xdp> {
        let prog = self
            .ebpf
            .program(maps::PROG_XDP_DECAP)
            .ok_or_else(|| anyhow!("no program {}", maps::PROG_XDP_DECAP))?;
        Ok(prog.try_into()?)
    }

    pub fn tc(&self) -> anyhow::Result<&SchedClassifier> {
        let prog = self
            .ebpf
            .program(maps::PROG_TC_ENCAP)
            .ok_or_else(|| anyhow!("no program {}", maps::PROG_TC_ENCAP))?;
        Ok(prog.try_into()?)
    }

    /// Sums the per-CPU counters.
    pub fn counters(&self) -> anyhow::Result<Counters> {
        let mut c = Counters::default();
        sum_into(&self.ebpf, maps::STATS, &mut c.stats)?;
        sum_into(&self.ebpf, maps::DROPS, &mut c.drops)?;
        Ok(c)
    }
}

fn xdp_mut(ebpf: &mut Ebpf) -> anyhow::Result<&mut Xdp> {
    let prog = ebpf
        .program_mut(maps::PROG_XDP_DECAP)
        .ok_or_else(|| anyhow!("no program {}", maps::PROG_XDP_DECAP))?;
    Ok(prog.try_into()?)
}

fn tc_mut(ebpf: &mut Ebpf) -> anyhow::Result<&mut SchedClassifier> {
    let prog = ebpf
        .program_mut(maps::PROG_TC_ENCAP)
        .ok_or_else(|| anyhow!("no program {}", maps::PROG_TC_ENCAP))?;
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
