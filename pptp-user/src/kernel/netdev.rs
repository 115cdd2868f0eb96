//! `pptp0`: the veth pair the controller owns. Decapsulated client traffic is redirected out of
//! the peer (`pptp0p`) so it arrives *on* `pptp0`, where nftables, conntrack and rp_filter see it
//! as operators expect; routes to clients point at `pptp0`, and what the kernel sends there is
//! encapsulated by the XDP program on `pptp0p`.

use anyhow::{Context as _, anyhow};
use futures_util::TryStreamExt as _;
use rtnetlink::{
    Handle, LinkUnspec, LinkVeth,
    packet_route::link::{LinkAttribute, LinkMessage},
};

/// The pair as the data path needs it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Pptp0 {
    pub name: String,
    pub ifindex: u32,
    pub mac: [u8; 6],
    pub peer_name: String,
    pub peer_ifindex: u32,
    pub peer_mac: [u8; 6],
}

async fn find(handle: &Handle, name: &str) -> anyhow::Result<Option<LinkMessage>> {
    match handle
        .link()
        .get()
        .match_name(name.to_string())
        .execute()
        .try_next()
        .await
    {
        Ok(m) => Ok(m),
        Err(rtnetlink::Error::NetlinkError(e)) if e.raw_code().abs() == libc::ENODEV => Ok(None),
        Err(e) => Err(e).with_context(|| format!("look up {name}")),
    }
}

fn mac_of(m: &LinkMessage) -> [u8; 6] {
    m.attributes
        .iter()
        .find_map(|a| match a {
            LinkAttribute::Address(a) if a.len() == 6 => {
                let mut mac = [0u8; 6];
                mac.copy_from_slice(a);
                Some(mac)
            }
            _ => None,
        })
        .unwrap_or_default()
}

fn write_sysctl(path: &str, value: &str) -> anyhow::Result<()> {
    std::fs::write(path, value).with_context(|| format!("write {path}"))
}

/// Sets a sysctl, or accepts it as it is when it already has the value: in an unprivileged
/// container /proc/sys is read-only, and a host with `net.ipv4.ip_forward=1` gives new devices
/// forwarding already.
fn ensure_sysctl(path: &str, value: &str) -> anyhow::Result<()> {
    match write_sysctl(path, value) {
        Ok(()) => Ok(()),
        Err(e) if std::fs::read_to_string(path).is_ok_and(|v| v.trim() == value) => {
            tracing::debug!(path, error = %format!("{e:#}"), "sysctl already set");
            Ok(())
        }
        Err(e) => Err(e.context(format!(
            "{path} must be {value}: set net.ipv4.ip_forward=1 on the host, or run privileged"
        ))),
    }
}

/// Puts `addr/32` on the interface (replacing it if present): the clients' peer address
/// answers, and no prefix route competes with the per-client /32 routes.
pub async fn add_address(
    handle: &Handle,
    ifindex: u32,
    addr: std::net::Ipv4Addr,
) -> anyhow::Result<()> {
    handle
        .address()
        .add(ifindex, std::net::IpAddr::V4(addr), 32)
        .replace()
        .execute()
        .await
        .with_context(|| format!("add {addr}/32 to interface {ifindex}"))
}

/// Creates the pair afresh (a leftover of a previous run is deleted first), MTU `mtu`, no ARP and
/// no IPv6 on it, forwarding on, both ends up.
pub async fn create(handle: &Handle, name: &str, mtu: u32) -> anyhow::Result<Pptp0> {
    let peer_name = format!("{name}p");
    if delete(handle, name).await? {
        // A previous run that was killed (SIGKILL, OOM) could not remove it.
        tracing::info!(device = name, "removed {name} left by a previous run");
    }
    handle
        .link()
        .add(LinkVeth::new(name, &peer_name).mtu(mtu).arp(false).build())
        .execute()
        .await
        .with_context(|| format!("create veth {name}/{peer_name}"))?;
    prepare(handle, name, &peer_name, mtu).await
}

/// Takes over the pair a previous run left (hitless restart: the pinned programs on it are
/// still forwarding, and routes to clients still point at it). `None` when either end is
/// missing; the caller then creates it afresh.
pub async fn adopt(handle: &Handle, name: &str, mtu: u32) -> anyhow::Result<Option<Pptp0>> {
    let peer_name = format!("{name}p");
    let (Some(a), Some(b)) = (find(handle, name).await?, find(handle, &peer_name).await?) else {
        return Ok(None);
    };
    // As the previous run left it (up, this MTU): taken as it is, nothing is rewritten under
    // the programs forwarding on it.
    let as_left = |m: &LinkMessage| {
        m.header
            .flags
            .contains(rtnetlink::packet_route::link::LinkFlags::Up)
            && m.attributes.contains(&LinkAttribute::Mtu(mtu))
    };
    if !(as_left(&a) && as_left(&b)) {
        return prepare(handle, name, &peer_name, mtu).await.map(Some);
    }
    Ok(Some(Pptp0 {
        name: name.into(),
        ifindex: a.header.index,
        mac: mac_of(&a),
        peer_name,
        peer_ifindex: b.header.index,
        peer_mac: mac_of(&b),
    }))
}

/// Forwarding on, no IPv6, checksums finished in software, MTU set, both ends up.
async fn prepare(handle: &Handle, name: &str, peer_name: &str, mtu: u32) -> anyhow::Result<Pptp0> {
    for ifname in [name, peer_name] {
        // No link-local chatter on the pair; `enable_ipv6` opens pptp0 when IPv6 is carried.
        let _ = write_sysctl(
            &format!("/proc/sys/net/ipv6/conf/{ifname}/disable_ipv6"),
            "1",
        );
        // The encapsulation program's FIB lookup treats pptp0p as the input device.
        ensure_sysctl(&format!("/proc/sys/net/ipv4/conf/{ifname}/forwarding"), "1")?;
    }
    // The kernel must finish checksums before a packet leaves pptp0: the XDP program on the peer
    // sees bytes, not skb metadata, so an offloaded (partial) TCP checksum would reach the
    // client unfinished and the client would drop the segment (pings work, TCP does not).
    disable_tx_checksum(name)?;
    let mut out = Vec::new();
    for ifname in [name, peer_name] {
        let m = find(handle, ifname)
            .await?
            .ok_or_else(|| anyhow!("{ifname} vanished after creation"))?;
        handle
            .link()
            .set(
                LinkUnspec::new_with_index(m.header.index)
                    .mtu(mtu)
                    .up()
                    .build(),
            )
            .execute()
            .await
            .with_context(|| format!("set {ifname} up"))?;
        out.push((m.header.index, mac_of(&m)));
    }
    Ok(Pptp0 {
        name: name.into(),
        ifindex: out[0].0,
        mac: out[0].1,
        peer_name: peer_name.into(),
        peer_ifindex: out[1].0,
        peer_mac: out[1].1,
    })
}

/// IPv6 in the tunnel: `pptp0` carries it (routes to clients' /64s point at it) without an
/// address of its own (no link-local, so no DAD or router discovery chatter), and the host
/// forwards IPv6. The peer stays IPv6-less. Idempotent (also on an adopted pair).
pub fn enable_ipv6(name: &str) -> anyhow::Result<()> {
    let conf = |key: &str| format!("/proc/sys/net/ipv6/conf/{name}/{key}");
    // Before IPv6 is enabled: no address is generated then.
    ensure_sysctl(&conf("addr_gen_mode"), "1")?;
    ensure_sysctl(&conf("accept_ra"), "0")?;
    ensure_sysctl(&conf("disable_ipv6"), "0")?;
    // `xdp` mode's FIB lookups are made as if packets arrived on pptp0, which the kernel only
    // answers for a device that forwards.
    ensure_sysctl(&conf("forwarding"), "1")?;
    ensure_sysctl("/proc/sys/net/ipv6/conf/all/forwarding", "1")
        .context("IPv6 sessions need net.ipv6.conf.all.forwarding=1")
}

/// Deletes the pair (deleting one end deletes both); absent is fine. True when it was there.
pub async fn delete(handle: &Handle, name: &str) -> anyhow::Result<bool> {
    let Some(m) = find(handle, name).await? else {
        return Ok(false);
    };
    handle
        .link()
        .del(m.header.index)
        .execute()
        .await
        .with_context(|| format!("delete {name}"))?;
    Ok(true)
}

/// `ethtool -K IFNAME tx off` (ETHTOOL_STXCSUM through SIOCETHTOOL).
fn disable_tx_checksum(ifname: &str) -> anyhow::Result<()> {
    #[repr(C)]
    struct EthtoolValue {
        cmd: u32,
        data: u32,
    }
    const ETHTOOL_STXCSUM: u32 = 0x17;
    let mut value = EthtoolValue {
        cmd: ETHTOOL_STXCSUM,
        data: 0,
    };
    // SAFETY: all-zero is a valid ifreq.
    let mut ifr: libc::ifreq = unsafe { std::mem::zeroed() };
    let name = ifname.as_bytes();
    anyhow::ensure!(
        name.len() < ifr.ifr_name.len(),
        "interface name {ifname} too long"
    );
    for (d, s) in ifr.ifr_name.iter_mut().zip(name) {
        *d = *s as libc::c_char;
    }
    ifr.ifr_ifru.ifru_data = (&raw mut value).cast();
    // SAFETY: plain socket(2) for the ioctl; closed below.
    let fd = unsafe { libc::socket(libc::AF_INET, libc::SOCK_DGRAM | libc::SOCK_CLOEXEC, 0) };
    anyhow::ensure!(
        fd >= 0,
        "socket for ethtool: {}",
        std::io::Error::last_os_error()
    );
    // SAFETY: `ifr` names the interface and points at `value`, both alive for the call.
    let rc = unsafe { libc::ioctl(fd, libc::SIOCETHTOOL, &raw mut ifr) };
    let err = std::io::Error::last_os_error();
    // SAFETY: closing the descriptor opened above.
    unsafe { libc::close(fd) };
    anyhow::ensure!(rc == 0, "turn off TX checksum offload on {ifname}: {err}");
    Ok(())
}

/// This host's IPv4 addresses (every interface, in the calling thread's namespace).
pub fn local_ipv4_addresses() -> std::io::Result<Vec<std::net::Ipv4Addr>> {
    let mut head: *mut libc::ifaddrs = std::ptr::null_mut();
    // SAFETY: getifaddrs fills `head` with a list we free below.
    if unsafe { libc::getifaddrs(&mut head) } != 0 {
        return Err(std::io::Error::last_os_error());
    }
    let mut out = Vec::new();
    let mut cur = head;
    while !cur.is_null() {
        // SAFETY: `cur` is a node of the list getifaddrs returned, not yet freed.
        let ifa = unsafe { &*cur };
        if !ifa.ifa_addr.is_null() {
            // SAFETY: a non-null ifa_addr points to a sockaddr of its family.
            let family = unsafe { (*ifa.ifa_addr).sa_family };
            if i32::from(family) == libc::AF_INET {
                // SAFETY: AF_INET addresses are sockaddr_in.
                let sin = unsafe { &*ifa.ifa_addr.cast::<libc::sockaddr_in>() };
                out.push(std::net::Ipv4Addr::from(u32::from_be(sin.sin_addr.s_addr)));
            }
        }
        cur = ifa.ifa_next;
    }
    // SAFETY: `head` came from getifaddrs and is freed once.
    unsafe { libc::freeifaddrs(head) };
    Ok(out)
}
