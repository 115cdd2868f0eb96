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

/// However quiet rtnetlink is, the generation moves this often: a notification lost to a full
/// socket buffer (a burst of neighbour changes) can leave a cache stale for at most this long.
const REFRESH: std::time::Duration = std::time::Duration::from_secs(1);

/// Subscribes to rtnetlink, turns caching on, and bumps the generation for every change that can
/// move a next hop (and every `REFRESH`), until the subscription ends. On return, error or not,
/// caching is off again: a cache nobody keeps honest must not be trusted.
pub async fn watch(mut generation: RouteGeneration) -> anyhow::Result<()> {
    let result = follow(&mut generation).await;
    generation.disable()?;
    result
}

async fn follow(generation: &mut RouteGeneration) -> anyhow::Result<()> {
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
    let mut refresh = tokio::time::interval(REFRESH);
    let result = loop {
        tokio::select! {
            m = messages.next() => match m {
                Some((message, _)) => {
                    if let NetlinkPayload::InnerMessage(m) = &message.payload
                        && moves_next_hops(m)
                        && let Err(e) = generation.bump()
                    {
                        break Err(e);
                    }
                }
                None => break Ok(()),
            },
            _ = refresh.tick() => {
                if let Err(e) = generation.bump() {
                    break Err(e);
                }
            }
        }
    };
    task.abort();
    result
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
