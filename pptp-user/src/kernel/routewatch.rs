//! Keeps the encapsulation's per-session next-hop caches honest: every change that can move an
//! outer next hop (a route other than our own client routes, a policy rule, an address, a link,
//! a neighbour) bumps the routing generation the programs compare their caches with, so the next
//! packet of every session does a FIB lookup again. A changed next hop is followed as soon as
//! rtnetlink tells us, well within a second.

use std::os::fd::AsFd as _;

use anyhow::Context as _;
use aya::maps::{Array, MapData};
use futures_util::StreamExt as _;
use netlink_packet_core::NetlinkPayload;
use netlink_packet_route::{RouteNetlinkMessage, route::RouteProtocol};

use crate::kernel::route::RTPROT_PPTPGW;

/// The `ROUTE_GENERATION` map, through its own descriptor (the watcher runs beside the shell,
/// which owns the `Datapath`).
pub struct RouteGeneration {
    map: Array<MapData, u32>,
    value: u32,
}

impl RouteGeneration {
    pub fn new(map: &MapData) -> anyhow::Result<Self> {
        let fd = map.fd().as_fd().try_clone_to_owned()?;
        let map = Array::try_from(aya::maps::Map::Array(MapData::from_fd(fd)?))?;
        Ok(Self { map, value: 0 })
    }

    /// A new generation: every cached next hop is stale. Never 0 (0 turns caching off).
    pub fn bump(&mut self) -> anyhow::Result<()> {
        self.value = self.value.wrapping_add(1).max(1);
        self.map
            .set(0, self.value, 0)
            .context("update ROUTE_GENERATION")
    }

    /// Caching off (the programs look every packet's next hop up), e.g. when the watcher stops.
    pub fn disable(&mut self) -> anyhow::Result<()> {
        self.map.set(0, 0, 0).context("update ROUTE_GENERATION")
    }
}

/// rtnetlink multicast groups (the legacy bitmask form `bind` takes).
const RTMGRP_LINK: u32 = 0x1;
const RTMGRP_NEIGH: u32 = 0x4;
const RTMGRP_IPV4_IFADDR: u32 = 0x10;
const RTMGRP_IPV4_ROUTE: u32 = 0x40;
const RTMGRP_IPV4_RULE: u32 = 0x80;

/// Whether a notification can move an outer next hop. Our own client routes (protocol 241,
/// through `pptp0`) cannot, and come and go with every session: they do not count.
fn moves_next_hops(message: &RouteNetlinkMessage) -> bool {
    match message {
        RouteNetlinkMessage::NewRoute(r) | RouteNetlinkMessage::DelRoute(r) => {
            r.header.protocol != RouteProtocol::Other(RTPROT_PPTPGW)
        }
        RouteNetlinkMessage::NewNeighbour(_)
        | RouteNetlinkMessage::DelNeighbour(_)
        | RouteNetlinkMessage::NewLink(_)
        | RouteNetlinkMessage::DelLink(_)
        | RouteNetlinkMessage::NewAddress(_)
        | RouteNetlinkMessage::DelAddress(_)
        | RouteNetlinkMessage::NewRule(_)
        | RouteNetlinkMessage::DelRule(_) => true,
        _ => false,
    }
}

/// Subscribes to rtnetlink, turns caching on, and bumps the generation for every change that can
/// move a next hop, until the subscription ends. On return caching is off again.
pub async fn watch(mut generation: RouteGeneration) -> anyhow::Result<()> {
    let (mut conn, _handle, mut messages) =
        rtnetlink::new_connection().context("rtnetlink (route monitor)")?;
    let groups =
        RTMGRP_LINK | RTMGRP_NEIGH | RTMGRP_IPV4_IFADDR | RTMGRP_IPV4_ROUTE | RTMGRP_IPV4_RULE;
    {
        use netlink_sys::AsyncSocket as _;
        conn.socket_mut()
            .socket_mut()
            .bind(&netlink_sys::SocketAddr::new(0, groups))
            .context("subscribe to route, rule, address, link and neighbour changes")?;
    }
    let task = tokio::spawn(conn);
    generation.bump()?;
    while let Some((message, _)) = messages.next().await {
        if let NetlinkPayload::InnerMessage(m) = &message.payload
            && moves_next_hops(m)
        {
            generation.bump()?;
        }
    }
    task.abort();
    generation.disable()
}

#[cfg(test)]
mod tests {
    use netlink_packet_route::route::RouteMessage;

    use super::*;

    #[test]
    fn our_client_routes_do_not_move_next_hops_other_routes_do() {
        let mut ours = RouteMessage::default();
        ours.header.protocol = RouteProtocol::Other(RTPROT_PPTPGW);
        assert!(!moves_next_hops(&RouteNetlinkMessage::NewRoute(
            ours.clone()
        )));
        assert!(!moves_next_hops(&RouteNetlinkMessage::DelRoute(ours)));
        let mut static_route = RouteMessage::default();
        static_route.header.protocol = RouteProtocol::Static;
        assert!(moves_next_hops(&RouteNetlinkMessage::NewRoute(
            static_route
        )));
        assert!(moves_next_hops(&RouteNetlinkMessage::NewNeighbour(
            Default::default()
        )));
    }
}
