//! Per-session map types. Addresses and call IDs are kept as the bytes on the wire (network
//! order), so the programs compare and copy them without conversions; lengths are host order.

/// `SESSIONS` key: a call as the XDP program sees it arrive. Call IDs are unique per client
/// address, not per gateway, so the client's outer address is part of the key (and a packet from
/// any other address cannot match a session: the outer-source check is the lookup itself).
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub struct SessionKey {
    /// The gateway address the client dialled (outer destination).
    pub local: [u8; 4],
    /// The client's outer address (outer source).
    pub peer: [u8; 4],
    /// Our call ID, as carried in the GRE key.
    pub call_id: [u8; 2],
    pub _pad: [u8; 2],
}
const _: () = assert!(core::mem::size_of::<SessionKey>() == 12);

/// Session states as the data path needs them.
pub const STATE_NEGOTIATING: u8 = 0;
pub const STATE_UP: u8 = 1;

/// Data-path modes: plain PPP/IPv4, or (later) MPPE-encrypted frames the programs must not touch.
pub const MODE_PLAIN: u8 = 0;
pub const MODE_MPPE: u8 = 1;

/// `flags` bits: how to frame PPP towards the client (what it accepted in LCP).
pub const FLAG_ACFC: u8 = 1;
pub const FLAG_PFC: u8 = 2;

/// `SESSIONS` value.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Session {
    /// Index into the per-session arrays (`GRE_STATE`, `SESSION_STATS`).
    pub slot: u32,
    /// The client's tunnel (pool) address: inner source of everything it sends.
    pub assigned: [u8; 4],
    pub key: SessionKey,
    /// The client's call ID: the GRE key of everything we send.
    pub peer_call_id: [u8; 2],
    /// Largest inner IPv4 packet towards the client, and the TCP MSS clamp (both host order).
    pub mtu: u16,
    pub mss: u16,
    pub state: u8,
    pub mode: u8,
    pub flags: u8,
    /// The length of `delegated6` (1..=64; meaningful only when `delegated6` is not zero).
    pub delegated6_len: u8,
    pub _pad2: [u8; 2],
    /// The client's /64 (the first 8 bytes of the prefix; zero: no IPv6): inner source of its
    /// IPv6 packets, and the `CLIENTS6` key of the encapsulation's copy.
    pub prefix6: [u8; 8],
    /// A prefix delegated to the client by DHCPv6 (RFC 8415 IA_PD; zero: none), of
    /// `delegated6_len` bits (a /48 to a /64), routed to it behind its own /64: its addresses
    /// are accepted inner sources, and the `DELEGATED6` entry of the encapsulation's copy.
    pub delegated6: [u8; 8],
}

/// The mask of an IPv6 prefix of `len` bits (0..=64) over an address's first 8 bytes read
/// big-endian.
#[inline(always)]
pub const fn mask64(len: u8) -> u64 {
    if len == 0 {
        0
    } else {
        u64::MAX << (64 - len as u32)
    }
}

impl Session {
    /// Whether an IPv6 address's first 8 bytes lie in the delegated prefix.
    #[inline(always)]
    pub fn in_delegated6(&self, first8: [u8; 8]) -> bool {
        let len = self.delegated6_len;
        if self.delegated6 == [0; 8] || len == 0 || len > 64 {
            return false;
        }
        u64::from_be_bytes(first8) & mask64(len) == u64::from_be_bytes(self.delegated6)
    }
}
const _: () = assert!(core::mem::size_of::<Session>() == 48);

/// `GRE_STATE` value, one per slot: the session's single sequence-number source. The
/// encapsulation program and the controller (for its own PPP frames, on the mmapped page) both
/// take `tx_next`; the decapsulation records every received sequence number (data or control) in
/// `rx_highest`.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct GreState {
    /// Next sequence number to send, in the low 32 bits (a 64-bit fetch-and-add: the BPF target
    /// has 64-bit atomics only).
    pub tx_next: u64,
    /// Highest sequence number received; valid when `rx_seen` is 1.
    pub rx_highest: u32,
    pub rx_seen: u32,
    /// The last acknowledgement we sent (the controller sends an ack-only packet when it lags).
    pub ack_sent: u32,
    /// Highest acknowledgement received from the client.
    pub peer_ack: u32,
    /// `bpf_ktime_get_ns` of the last data packet each way.
    pub last_rx_ns: u64,
    pub last_tx_ns: u64,
    /// Stateful MPPE: bumped by the controller for every CCP Reset-Request from the client; the
    /// encapsulation re-keys and sends flushed when it differs from what it last saw.
    pub mppe_reset: u32,
    pub _pad: u32,
    /// Which of the 64 sequence numbers up to `rx_highest` arrived (bit d: `rx_highest - d`).
    pub rx_window: u64,
    /// The encapsulation's cached outer next hop (egress interface and MACs, from a FIB lookup
    /// from the dialled address), valid while `hop_generation` equals `ROUTE_GENERATION[0]`
    /// (which the controller bumps on every route, rule, address, link or neighbour change; 0:
    /// never valid).
    pub hop_generation: u32,
    pub hop_ifindex: u32,
    pub hop_smac: [u8; 6],
    pub hop_dmac: [u8; 6],
    pub _pad2: u32,
}
const _: () = assert!(core::mem::size_of::<GreState>() == 80);

/// `SESSION_STATS` value (per CPU), one per slot.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct SessionStats {
    pub rx_packets: u64,
    pub rx_bytes: u64,
    pub tx_packets: u64,
    pub tx_bytes: u64,
    pub rx_dropped: u64,
    pub tx_dropped: u64,
}

/// `CONFIG[0]`: what the programs need to know about the gateway.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct DatapathConfig {
    /// `pptp0`: decapsulated packets are sent out of its veth peer so they arrive on it.
    pub pptp0_peer_ifindex: u32,
    pub pptp0_mac: [u8; 6],
    pub pptp0_peer_mac: [u8; 6],
    /// Non-zero once the controller filled this in; until then the programs only pass.
    pub enabled: u32,
    /// How far behind the highest received sequence number a data packet may arrive and still
    /// be delivered (1..=64; 0 means 64). See `seq::RxWindow`.
    pub reorder_window: u32,
    /// `pptp0` itself: forwarding lookups in `xdp` mode are made as if the packet arrived there
    /// (so `ip rule iif pptp0` applies), and a route out of it is client-to-client traffic,
    /// which is left to the stack.
    pub pptp0_ifindex: u32,
    /// `xdp` mode: the LAN program hands each session's packets to its home CPU (`slot %
    /// steer_cpus`) through `HOME_CPUS`, so one session is encapsulated on one CPU at a time and
    /// its packets leave in sequence order whatever queue they arrived on. 0 or 1: no steering.
    pub steer_cpus: u32,
}
const _: () = assert!(core::mem::size_of::<DatapathConfig>() == 32);

/// The benchmark generator's template. `kind` [`BENCH_FROM_CLIENTS`]: the headers of a client's
/// data frame up to the inner packet (Ethernet, IPv4, GRE with a sequence number and no ack, PPP
/// `FF 03 00 21`), sessions cycled through as call IDs `call_base + i` with inner sources
/// `addr_base + i`. [`BENCH_TO_CLIENTS`]: the start of a server's packet to a client (Ethernet,
/// IPv4, 16 bytes of UDP), destinations `addr_base + i`.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct BenchGen {
    pub sessions: u32,
    pub call_base: u16,
    pub kind: u16,
    pub addr_base: [u8; 4],
    pub header: [u8; BENCH_HEADER_LEN],
    pub _pad2: [u8; 2],
}
/// Ethernet 14 + IPv4 20 + GRE 12 + PPP 4.
pub const BENCH_HEADER_LEN: usize = 50;
pub const BENCH_FROM_CLIENTS: u16 = 0;
pub const BENCH_TO_CLIENTS: u16 = 1;
const _: () = assert!(core::mem::size_of::<BenchGen>() == 64);

#[cfg(feature = "user")]
mod pod {
    // SAFETY: all these are #[repr(C)] plain integers and byte arrays with explicit padding
    // fields, so every bit pattern is valid and there are no implicit padding bytes.
    unsafe impl aya::Pod for super::SessionKey {}
    // SAFETY: as above.
    unsafe impl aya::Pod for super::Session {}
    // SAFETY: as above.
    unsafe impl aya::Pod for super::GreState {}
    // SAFETY: as above.
    unsafe impl aya::Pod for super::SessionStats {}
    // SAFETY: as above.
    unsafe impl aya::Pod for super::DatapathConfig {}
    // SAFETY: as above.
    unsafe impl aya::Pod for super::BenchGen {}
}

#[cfg(test)]
mod tests {
    use super::Session;

    #[test]
    fn a_delegated_prefix_holds_its_subnets_and_nothing_else() {
        let s = Session {
            delegated6: [0x20, 0x01, 0x0d, 0xb8, 0x02, 0x00, 0x01, 0x00],
            delegated6_len: 56,
            ..Session::default()
        };
        assert!(s.in_delegated6([0x20, 0x01, 0x0d, 0xb8, 0x02, 0x00, 0x01, 0x00]));
        assert!(s.in_delegated6([0x20, 0x01, 0x0d, 0xb8, 0x02, 0x00, 0x01, 0xff]));
        assert!(!s.in_delegated6([0x20, 0x01, 0x0d, 0xb8, 0x02, 0x00, 0x02, 0x00]));
        assert!(!s.in_delegated6([0x20, 0x01, 0x0d, 0xb8, 0x02, 0x00, 0x00, 0xff]));
        let s64 = Session {
            delegated6_len: 64,
            ..s
        };
        assert!(s64.in_delegated6(s.delegated6));
        assert!(!s64.in_delegated6([0x20, 0x01, 0x0d, 0xb8, 0x02, 0x00, 0x01, 0x01]));
        // No delegation, or a length the controller never writes: nothing is inside.
        assert!(!Session::default().in_delegated6([0; 8]));
        assert!(
            !Session {
                delegated6_len: 0,
                ..s
            }
            .in_delegated6(s.delegated6)
        );
    }
}
