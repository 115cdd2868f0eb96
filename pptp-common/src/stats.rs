//! Global data-path counters and drop reasons. Both index per-CPU arrays; userspace sums the CPUs.

/// Why a data-path program dropped a packet. Indexes the `DROPS` per-CPU array.
#[repr(u32)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum DropReason {
    /// A header ended before its declared or minimum length.
    Truncated = 0,
    /// IPv4 header with a bad version, IHL or total length.
    Ipv4Malformed = 1,
    /// GRE version 1 with a protocol other than PPP (0x880b).
    GreBadProtocol = 2,
    /// GRE version 1 without the key flag, or with C/R/s/Recur/reserved bits set.
    GreBadFlags = 3,
    /// The GRE payload length field disagrees with the bytes present.
    GreBadLength = 4,
    /// A session's data packet whose inner source is not the client's assigned address.
    SpoofedInnerSource = 5,
    /// A data packet whose sequence number is further behind the highest received than the
    /// reorder window reaches.
    SequenceLate = 6,
    /// A PPP header that cannot be valid (bad address/control, even protocol).
    PppMalformed = 7,
    /// The inner IPv4 packet is malformed.
    InnerMalformed = 8,
    /// The kernel refused to resize the packet.
    AdjustFailed = 9,
    /// A packet for a tunnel address no session has.
    NoSession = 10,
    /// A packet for a session that is not up yet.
    SessionNotUp = 11,
    /// Larger than the session's MTU (the kernel should have fragmented at `pptp0`'s MTU).
    TooBig = 12,
    /// No route to the client's outer address.
    NoRoute = 13,
    /// The next hop towards the client has no resolved neighbour entry.
    NoNeighbour = 14,
    /// Neither IPv4 nor IPv6 (or IPv6 to a multicast or link-local destination, which is the
    /// link's, not a client's).
    NotIpv4 = 15,
    /// Well-formed enhanced GRE that matches no session (unknown call ID, or a call ID from
    /// another address): nobody asked for it, so it never reaches the controller.
    UnknownCall = 16,
    /// MPPE: a coherency count at or behind the last one accepted (late or duplicate).
    MppeLate = 17,
    /// MPPE: a coherency count further ahead than one packet may re-key; the state caught up by
    /// the bound and the packet was dropped.
    MppeCatchUp = 18,
    /// MPPE: another CPU held the session's key state.
    MppeBusy = 19,
    /// MPPE: the session has no key state in the data path.
    MppeNoState = 20,
    /// MPPE: a packet without the encrypted bit, or plain IPv4 on an encrypted session.
    MppePlaintext = 21,
    /// MPPE: the decrypted packet is not IPv4 (wrong key: not accepted, state unchanged).
    MppeBadDecrypt = 22,
    /// MPPE, stateful: a gap in the coherency counts. The packet goes up to the controller
    /// (XDP_PASS), which sends the client a CCP Reset-Request; the session discards until a
    /// flushed packet.
    MppeLoss = 23,
    /// MPPE, stateful: discarding after a loss, and this packet is not flushed.
    MppeDiscard = 24,
    /// A GRE sequence number received already (inside the reorder window).
    SequenceDuplicate = 25,
    /// Over the session's rate limit (its token bucket for that direction was empty).
    RateLimited = 26,
    /// An IPv6 packet from a client that is neither from its /64 nor link traffic for the
    /// gateway (link-local or multicast ICMPv6), or IPv6 on a session without a prefix.
    SpoofedInnerSource6 = 27,
    /// IPv6 towards a /64 no session has.
    NoSession6 = 28,
}

impl DropReason {
    pub const COUNT: usize = 29;
    pub const ALL: [DropReason; Self::COUNT] = [
        Self::Truncated,
        Self::Ipv4Malformed,
        Self::GreBadProtocol,
        Self::GreBadFlags,
        Self::GreBadLength,
        Self::SpoofedInnerSource,
        Self::SequenceLate,
        Self::PppMalformed,
        Self::InnerMalformed,
        Self::AdjustFailed,
        Self::NoSession,
        Self::SessionNotUp,
        Self::TooBig,
        Self::NoRoute,
        Self::NoNeighbour,
        Self::NotIpv4,
        Self::UnknownCall,
        Self::MppeLate,
        Self::MppeCatchUp,
        Self::MppeBusy,
        Self::MppeNoState,
        Self::MppePlaintext,
        Self::MppeBadDecrypt,
        Self::MppeLoss,
        Self::MppeDiscard,
        Self::SequenceDuplicate,
        Self::RateLimited,
        Self::SpoofedInnerSource6,
        Self::NoSession6,
    ];

    pub const fn name(self) -> &'static str {
        match self {
            Self::Truncated => "truncated",
            Self::Ipv4Malformed => "ipv4_malformed",
            Self::GreBadProtocol => "gre_bad_protocol",
            Self::GreBadFlags => "gre_bad_flags",
            Self::GreBadLength => "gre_bad_length",
            Self::SpoofedInnerSource => "spoofed_inner_source",
            Self::SequenceLate => "sequence_late",
            Self::PppMalformed => "ppp_malformed",
            Self::InnerMalformed => "inner_malformed",
            Self::AdjustFailed => "adjust_failed",
            Self::NoSession => "no_session",
            Self::SessionNotUp => "session_not_up",
            Self::TooBig => "too_big",
            Self::NoRoute => "no_route",
            Self::NoNeighbour => "no_neighbour",
            Self::NotIpv4 => "not_ipv4",
            Self::UnknownCall => "unknown_call",
            Self::MppeLate => "mppe_late",
            Self::MppeCatchUp => "mppe_catch_up",
            Self::MppeBusy => "mppe_busy",
            Self::MppeNoState => "mppe_no_state",
            Self::MppePlaintext => "mppe_plaintext",
            Self::MppeBadDecrypt => "mppe_bad_decrypt",
            Self::MppeLoss => "mppe_loss",
            Self::MppeDiscard => "mppe_discard",
            Self::SequenceDuplicate => "sequence_duplicate",
            Self::RateLimited => "rate_limited",
            Self::SpoofedInnerSource6 => "spoofed_inner_source6",
            Self::NoSession6 => "no_session6",
        }
    }
}

/// What a data-path program saw. Indexes the `STATS` per-CPU array.
#[repr(u32)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Stat {
    /// Frames the XDP program was run on.
    XdpSeen = 0,
    /// Not IPv4, or an IPv4 packet that is not GRE: passed to the kernel untouched.
    XdpNotGre = 1,
    /// GRE of another version than 1 (not PPTP): passed to the kernel untouched.
    XdpGreOther = 2,
    /// Outer IPv4 fragments: passed so the kernel reassembles them for the slow path.
    XdpFragment = 3,
    /// Well-formed PPTP GRE handed to the slow path as it is (outer IPv4 options, or the
    /// controller has not configured the data path yet).
    XdpSlowPath = 4,
    /// Dropped by XDP; the reason is counted in `DROPS`.
    XdpDropped = 5,
    /// Session data decapsulated and delivered into `pptp0`.
    XdpDecap = 6,
    /// A session's PPP control frame (or data before the session is up): recorded, passed to the
    /// slow path.
    XdpSessionControl = 7,
    /// Packets the encapsulation program (XDP on `pptp0`'s peer) was run on.
    EncapSeen = 8,
    /// Encapsulated and redirected to the WAN.
    Encapsulated = 9,
    /// Dropped by encapsulation; the reason is counted in `DROPS`.
    EncapDropped = 10,
    /// Encapsulated with the session's cached next hop (no FIB lookup).
    EncapHopCached = 11,
    /// `xdp` mode: decapsulated and forwarded by XDP (FIB lookup, TTL, MACs) to the egress.
    ForwardXdp = 12,
    /// `xdp` mode: decapsulated and left to the stack through `pptp0` (local destination, no
    /// neighbour yet, too big for the egress, TTL expiring, client to client, no route).
    ForwardStack = 13,
    /// Packets the LAN program was run on (`xdp` mode; LAN interfaces and non-GRE on the WAN).
    LanSeen = 14,
    /// The LAN program passed to the stack: not for a client, or the stack's to decide (TTL
    /// expiring, too big for the tunnel, session not up, no neighbour, not unicast).
    LanPassed = 15,
    /// The LAN program handed a packet to its session's home CPU (`xdp` mode, several CPUs).
    LanSteered = 16,
    /// Of `XdpDecap`: IPv6 packets.
    XdpDecap6 = 17,
    /// Of `Encapsulated`: IPv6 packets (the controller's Router Advertisements included).
    Encapsulated6 = 18,
    /// A client's IPv6 link traffic (Router Solicitations, neighbour discovery) handed to the
    /// controller.
    XdpLink6 = 19,
}

impl Stat {
    pub const COUNT: usize = 20;
    pub const ALL: [Stat; Self::COUNT] = [
        Self::XdpSeen,
        Self::XdpNotGre,
        Self::XdpGreOther,
        Self::XdpFragment,
        Self::XdpSlowPath,
        Self::XdpDropped,
        Self::XdpDecap,
        Self::XdpSessionControl,
        Self::EncapSeen,
        Self::Encapsulated,
        Self::EncapDropped,
        Self::EncapHopCached,
        Self::ForwardXdp,
        Self::ForwardStack,
        Self::LanSeen,
        Self::LanPassed,
        Self::LanSteered,
        Self::XdpDecap6,
        Self::Encapsulated6,
        Self::XdpLink6,
    ];

    pub const fn name(self) -> &'static str {
        match self {
            Self::XdpSeen => "xdp_seen",
            Self::XdpNotGre => "xdp_not_gre",
            Self::XdpGreOther => "xdp_gre_other",
            Self::XdpFragment => "xdp_fragment",
            Self::XdpSlowPath => "xdp_slow_path",
            Self::XdpDropped => "xdp_dropped",
            Self::XdpDecap => "xdp_decap",
            Self::XdpSessionControl => "xdp_session_control",
            Self::EncapSeen => "encap_seen",
            Self::Encapsulated => "encapsulated",
            Self::EncapDropped => "encap_dropped",
            Self::EncapHopCached => "encap_hop_cached",
            Self::ForwardXdp => "forward_xdp",
            Self::ForwardStack => "forward_stack",
            Self::LanSeen => "lan_seen",
            Self::LanPassed => "lan_passed",
            Self::LanSteered => "lan_steered",
            Self::XdpDecap6 => "xdp_decap6",
            Self::Encapsulated6 => "encapsulated6",
            Self::XdpLink6 => "xdp_link6",
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn all_lists_are_dense_and_in_index_order() {
        for (i, s) in Stat::ALL.iter().enumerate() {
            assert_eq!(*s as usize, i, "{}", s.name());
        }
        for (i, r) in DropReason::ALL.iter().enumerate() {
            assert_eq!(*r as usize, i, "{}", r.name());
        }
    }
}
