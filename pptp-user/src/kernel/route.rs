//! Route projection: one `ASSIGNED/32 dev pptp0` route per session (and `PREFIX/64 dev pptp0`
//! while IPv6 is up on it, and `DELEGATED/LEN dev pptp0` while a DHCPv6 delegation is bound),
//! tagged with our own routing protocol number.
//!
//! Lesson 1 of the field failures: projection must never refuse a recycled address. So a route is
//! added with replace semantics (a stale or duplicate route for the address, ours or anyone's, is
//! taken over instead of failing with EEXIST), removal treats "already gone" as success, and at
//! start-up every route carrying our protocol number that no live session owns is withdrawn —
//! and only those: other daemons' routes are never touched.

use std::net::{Ipv4Addr, Ipv6Addr};

use crate::pool6::Prefix6;
use anyhow::Context as _;
use futures_util::TryStreamExt as _;
use rtnetlink::{
    Handle, RouteMessageBuilder,
    packet_route::route::{
        RouteAddress, RouteAttribute, RouteHeader, RouteMessage, RouteProtocol, RouteScope,
    },
};

/// Our routing protocol number (`ip route show proto 241`). Unassigned in iproute2's and FRR's
/// rt_protos lists.
pub const RTPROT_PPTPGW: u8 = 241;

fn message(addr: Ipv4Addr, ifindex: u32) -> RouteMessage {
    RouteMessageBuilder::<Ipv4Addr>::new()
        .destination_prefix(addr, 32)
        .output_interface(ifindex)
        .protocol(RouteProtocol::Other(RTPROT_PPTPGW))
        .scope(RouteScope::Link)
        .build()
}

/// Installs (or takes over) the route for a client address. Idempotent.
pub async fn project(handle: &Handle, addr: Ipv4Addr, ifindex: u32) -> anyhow::Result<()> {
    handle
        .route()
        .add(message(addr, ifindex))
        .replace()
        .execute()
        .await
        .with_context(|| format!("project route {addr}/32 dev #{ifindex}"))
}

/// Removes the route for a client address, if it is ours; a route already gone is fine.
pub async fn withdraw(handle: &Handle, addr: Ipv4Addr, ifindex: u32) -> anyhow::Result<()> {
    match handle.route().del(message(addr, ifindex)).execute().await {
        Ok(()) => Ok(()),
        Err(rtnetlink::Error::NetlinkError(e))
            if e.raw_code().abs() == libc::ESRCH || e.raw_code().abs() == libc::ENOENT =>
        {
            Ok(())
        }
        Err(e) => Err(e).with_context(|| format!("withdraw route {addr}/32")),
    }
}

/// A route of ours found in the main table.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct OurRoute {
    pub addr: Ipv4Addr,
    pub ifindex: Option<u32>,
    message: RouteMessage,
}

fn message6(prefix: Prefix6, ifindex: u32) -> RouteMessage {
    RouteMessageBuilder::<Ipv6Addr>::new()
        .destination_prefix(prefix.network, prefix.len)
        .output_interface(ifindex)
        .protocol(RouteProtocol::Other(RTPROT_PPTPGW))
        .build()
}

/// Installs (or takes over) the route for a client's /64 or delegated prefix. Idempotent, like
/// [`project`].
pub async fn project6(handle: &Handle, prefix: Prefix6, ifindex: u32) -> anyhow::Result<()> {
    handle
        .route()
        .add(message6(prefix, ifindex))
        .replace()
        .execute()
        .await
        .with_context(|| format!("project route {prefix} dev #{ifindex}"))
}

/// Removes the route for a client's prefix; a route already gone is fine.
pub async fn withdraw6(handle: &Handle, prefix: Prefix6, ifindex: u32) -> anyhow::Result<()> {
    match handle
        .route()
        .del(message6(prefix, ifindex))
        .execute()
        .await
    {
        Ok(()) => Ok(()),
        Err(rtnetlink::Error::NetlinkError(e))
            if e.raw_code().abs() == libc::ESRCH || e.raw_code().abs() == libc::ENOENT =>
        {
            Ok(())
        }
        Err(e) => Err(e).with_context(|| format!("withdraw route {prefix}")),
    }
}

/// Our IPv6 routes in the main table: (prefix, the message to delete it with).
pub async fn list6(handle: &Handle) -> anyhow::Result<Vec<(Prefix6, RouteMessage)>> {
    let mut routes = handle
        .route()
        .get(RouteMessageBuilder::<Ipv6Addr>::new().build())
        .execute();
    let mut ours = Vec::new();
    while let Some(m) = routes.try_next().await.context("dump IPv6 routes")? {
        if m.header.protocol != RouteProtocol::Other(RTPROT_PPTPGW)
            || m.header.table != RouteHeader::RT_TABLE_MAIN
        {
            continue;
        }
        let dst = m.attributes.iter().find_map(|a| match a {
            RouteAttribute::Destination(RouteAddress::Inet6(d)) => Some(*d),
            _ => None,
        });
        if let Some(network) = dst {
            let len = m.header.destination_prefix_length;
            ours.push((Prefix6 { network, len }, m));
        }
    }
    Ok(ours)
}

/// Withdraws our IPv6 routes for prefixes not in `keep`, as [`reconcile`] does for IPv4.
pub async fn reconcile6(handle: &Handle, keep: &[Prefix6]) -> anyhow::Result<usize> {
    let mut removed = 0;
    for (prefix, m) in list6(handle).await? {
        if keep.contains(&prefix) {
            continue;
        }
        match handle.route().del(m).execute().await {
            Ok(()) => removed += 1,
            Err(rtnetlink::Error::NetlinkError(e)) if e.raw_code().abs() == libc::ESRCH => {}
            Err(e) => return Err(e).with_context(|| format!("remove stale route {prefix}")),
        }
        tracing::info!(prefix = %prefix, "removed a stale IPv6 route of a previous run");
    }
    Ok(removed)
}

/// Every IPv4 route in the main table with our protocol number.
pub async fn list(handle: &Handle) -> anyhow::Result<Vec<OurRoute>> {
    let mut routes = handle
        .route()
        .get(RouteMessageBuilder::<Ipv4Addr>::new().build())
        .execute();
    let mut ours = Vec::new();
    while let Some(m) = routes.try_next().await.context("dump routes")? {
        if m.header.protocol != RouteProtocol::Other(RTPROT_PPTPGW)
            || m.header.table != RouteHeader::RT_TABLE_MAIN
        {
            continue;
        }
        let mut addr = None;
        let mut ifindex = None;
        for a in &m.attributes {
            match a {
                RouteAttribute::Destination(RouteAddress::Inet(d)) => addr = Some(*d),
                RouteAttribute::Oif(i) => ifindex = Some(*i),
                _ => {}
            }
        }
        if let Some(addr) = addr {
            ours.push(OurRoute {
                addr,
                ifindex,
                message: m,
            });
        }
    }
    Ok(ours)
}

/// Withdraws our routes for addresses not in `keep` (start-up reconciliation after a crash, or
/// a restart that found no sessions to adopt). Returns how many were removed.
pub async fn reconcile(handle: &Handle, keep: &[Ipv4Addr]) -> anyhow::Result<usize> {
    let mut removed = 0;
    for r in list(handle).await? {
        if keep.contains(&r.addr) {
            continue;
        }
        match handle.route().del(r.message.clone()).execute().await {
            Ok(()) => removed += 1,
            Err(rtnetlink::Error::NetlinkError(e)) if e.raw_code().abs() == libc::ESRCH => {}
            Err(e) => return Err(e).with_context(|| format!("remove stale route {}/32", r.addr)),
        }
        tracing::info!(addr = %r.addr, "removed a stale route of a previous run");
    }
    Ok(removed)
}
