//! Running the real programs with BPF_PROG_TEST_RUN.

use std::net::Ipv4Addr;

use aya::programs::{TestRun as _, TestRunOptions};
use pptp_common::session::{MODE_PLAIN, Session, SessionKey};
use pptp_user::kernel::datapath::{Counters, Datapath};

/// A plain-mode session as the controller programs it: dialled `local`, client `peer`, our call
/// ID `call_id`, the client's call ID 0x0080, MTU 1400 / MSS 1360.
pub fn session(
    slot: u32,
    local: Ipv4Addr,
    peer: Ipv4Addr,
    call_id: u16,
    assigned: Ipv4Addr,
    state: u8,
) -> Session {
    Session {
        slot,
        assigned: assigned.octets(),
        key: SessionKey {
            local: local.octets(),
            peer: peer.octets(),
            call_id: call_id.to_be_bytes(),
            _pad: [0; 2],
        },
        peer_call_id: 0x0080u16.to_be_bytes(),
        mtu: 1400,
        mss: 1360,
        state,
        mode: MODE_PLAIN,
        ..Session::default()
    }
}

/// One run of XDP program `prog` on `frame`: the verdict, the packet as the program left it, and
/// the global counters that moved.
pub fn xdp_run(dp: &Datapath, prog: &str, frame: &[u8]) -> (u32, Vec<u8>, Counters) {
    let before = dp.counters().expect("read counters");
    let mut out = vec![0u8; frame.len() + 256];
    let opts = TestRunOptions {
        data_in: Some(frame),
        data_out: Some(&mut out),
        ..TestRunOptions::new()
    };
    let r = dp
        .xdp_program(prog)
        .expect("program")
        .test_run(opts)
        .expect("BPF_PROG_TEST_RUN");
    out.truncate(r.data_size_out as usize);
    let delta = dp.counters().expect("read counters").since(&before);
    (r.return_value, out, delta)
}
