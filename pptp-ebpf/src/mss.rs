//! TCP MSS clamping (both directions): a client's SYN must not promise segments that, once in
//! GRE/PPP, exceed the path; a SYN towards a client must not invite segments beyond the tunnel.

use aya_ebpf::programs::XdpContext;
use pptp_common::checksum;

use crate::packet::ptr_at_mut;

/// Lowers the MSS option of a TCP SYN to `mss`. Only the first option is looked at: every
/// common stack puts MSS first in a SYN, and a bounded look keeps the verifier happy.
#[inline(always)]
pub fn clamp_mss(ctx: &XdpContext, tcp_off: usize, mss: u16) {
    // One pointer for reading and writing: the verifier tracks the checked range per pointer,
    // and LLVM would drop a second, redundant-looking bounds check.
    let Ok(p) = ptr_at_mut::<[u8; 24]>(ctx, tcp_off) else {
        return; // a short segment has no option to clamp
    };
    // SAFETY: `ptr_at_mut` checked that 24 bytes at `p` lie inside the packet.
    let tcp = unsafe { *p };
    let syn = tcp[13] & 0x02 != 0;
    let data_off = (tcp[12] >> 4) as usize * 4;
    if !syn || data_off < 24 || tcp[20] != 2 || tcp[21] != 4 {
        return;
    }
    let old = u16::from_be_bytes([tcp[22], tcp[23]]);
    if old <= mss || mss == 0 {
        return;
    }
    let check = u16::from_be_bytes([tcp[16], tcp[17]]);
    let [c0, c1] = checksum::replace16(check, old, mss).to_be_bytes();
    let [m0, m1] = mss.to_be_bytes();
    // SAFETY: as above; indexes are within the 24 checked bytes.
    unsafe {
        (*p)[16] = c0;
        (*p)[17] = c1;
        (*p)[22] = m0;
        (*p)[23] = m1;
    }
}
