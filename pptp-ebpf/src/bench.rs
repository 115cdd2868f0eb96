//! The benchmark generator (never attached by the controller): run by BPF_PROG_TEST_RUN with
//! live frames, it turns every frame into the next data packet of one of the template's sessions
//! (its call ID, its inner source address, its next sequence number) and tail-calls the real
//! decapsulation, whose redirect then happens for real; or (`BENCH_TO_CLIENTS`) into a server's
//! packet to one of the sessions' addresses, for the LAN program (`xdp` mode). Offered load: millions of packets a
//! second from one core, where an AF_PACKET sender offers a few hundred thousand.
//!
//! The whole header is rewritten every time: live frames are recycled with whatever the last
//! run left in them, and the decapsulation writes its Ethernet header over the GRE one.

use aya_ebpf::{bindings::xdp_action, programs::XdpContext};
use pptp_common::session::{BENCH_HEADER_LEN, BENCH_TO_CLIENTS};

use crate::{
    maps::{BENCH_COUNTER, BENCH_GEN, BENCH_TAIL},
    packet::ptr_at_mut,
};

/// Offsets in the template's frame.
const CALL_ID_OFF: usize = 14 + 20 + 6;
const SEQ_OFF: usize = 14 + 20 + 8;
const INNER_OFF: usize = BENCH_HEADER_LEN;
/// A server's packet: its IPv4 header right after Ethernet.
const SERVER_IP_OFF: usize = 14;

#[inline(always)]
pub fn generate(ctx: &XdpContext) -> u32 {
    fill(ctx).unwrap_or(xdp_action::XDP_ABORTED)
}

#[inline(always)]
fn fill(ctx: &XdpContext) -> Option<u32> {
    let t = BENCH_GEN.get(0)?;
    let counter = BENCH_COUNTER.get_ptr_mut(0)?;
    let sessions = u64::from(t.sessions.max(1));
    // SAFETY: a slot from a successful lookup; only one test run uses it at a time.
    let n = unsafe {
        let n = *counter;
        *counter = n + 1;
        n
    };
    let i = (n % sessions) as u32;
    let seq = (n / sessions) as u32 + 1;
    let h = ptr_at_mut::<[u8; BENCH_HEADER_LEN]>(ctx, 0).ok()?;
    let to_clients = t.kind == BENCH_TO_CLIENTS;
    let ip_off = if to_clients { SERVER_IP_OFF } else { INNER_OFF };
    let mut hdr = t.header;
    if !to_clients {
        hdr[CALL_ID_OFF..CALL_ID_OFF + 2]
            .copy_from_slice(&(t.call_base.wrapping_add(i as u16)).to_be_bytes());
        hdr[SEQ_OFF..SEQ_OFF + 4].copy_from_slice(&seq.to_be_bytes());
    }
    // SAFETY: checked to lie inside the packet; a byte array, alignment 1.
    unsafe { *h = hdr };
    let inner = ptr_at_mut::<[u8; 20]>(ctx, ip_off).ok()?;
    // SAFETY: as above.
    let mut ih = unsafe { *inner };
    let addr = (u32::from_be_bytes(t.addr_base).wrapping_add(i)).to_be_bytes();
    if to_clients {
        ih[16..20].copy_from_slice(&addr);
    } else {
        ih[12..16].copy_from_slice(&addr);
    }
    // Forwarding decremented it in this (recycled) frame the last time round.
    ih[8] = 64;
    ih[10] = 0;
    ih[11] = 0;
    let mut sum: u32 = 0;
    let mut k = 0;
    while k < 20 {
        sum += u32::from(u16::from_be_bytes([ih[k], ih[k + 1]]));
        k += 2;
    }
    sum = (sum & 0xffff) + (sum >> 16);
    sum = (sum & 0xffff) + (sum >> 16);
    ih[10..12].copy_from_slice(&(!(sum as u16)).to_be_bytes());
    // SAFETY: checked to lie inside the packet; a byte array, alignment 1.
    unsafe {
        *inner = ih;
        // Returns only when the call failed (nothing in the slot).
        BENCH_TAIL.tail_call(ctx, 0);
    }
    Some(xdp_action::XDP_ABORTED)
}
