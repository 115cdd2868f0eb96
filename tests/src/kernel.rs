//! Running the real programs with BPF_PROG_TEST_RUN.

use aya::programs::{TestRun as _, TestRunOptions};
use pptp_user::datapath::{Counters, Datapath};

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
