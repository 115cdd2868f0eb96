//! Egress order: one session's packets leave the gateway with increasing GRE sequence numbers
//! even when several CPUs forward traffic to it at once. Linux clients (pptp.ko) drop every
//! packet that arrives behind a later one, so on the wire a reordering is a loss. The order comes
//! from where the work runs (`docs/architecture.md`, "One session, one CPU at a time"): routed
//! traffic for clients reaches the encapsulation through `pptp0`'s single queue, one NAPI context,
//! and MPPE's sequence numbers are taken under the session's send lock.

use std::{net::UdpSocket, time::Duration};

use pptp_client::{dial, gre::GreMux};
use pptp_tests::{
    gateway::{Rig, SECRETS, XDP_FORWARDING, config_mppe, dial_config, num, rt},
    require_root,
    sockets::GreReceiver,
};
use pptp_user::wire::lcp::AuthProtocol;

/// Datagrams each of the two senders sends.
const PER_SENDER: usize = 3000;

fn pin_to_cpu(cpu: usize) {
    // SAFETY: a zeroed cpu_set_t is empty; CPU_SET and sched_setaffinity get valid pointers.
    unsafe {
        let mut set: libc::cpu_set_t = std::mem::zeroed();
        libc::CPU_SET(cpu, &mut set);
        libc::sched_setaffinity(0, size_of::<libc::cpu_set_t>(), &set);
    }
}

/// Two senders in the server's namespace, pinned to CPUs 0 and 1, send to one session's address
/// at once; returns the GRE sequence numbers of that session's data packets in the order the
/// client's namespace received them.
fn sequence_numbers_on_the_wire(rig: &Rig, call_id: u16, mppe: bool) -> Vec<u32> {
    rig.client.enter(|| {
        let rx = GreReceiver::new(Duration::from_millis(800)).expect("raw GRE socket");
        rt().block_on(async {
            let mux = GreMux::open().unwrap();
            let mut cfg = dial_config(rig, "alice", "s3cret", call_id);
            cfg.peer.mppe = mppe;
            cfg.peer.methods = vec![AuthProtocol::MsChapV2];
            let s = dial(cfg, &mux).await.expect("dial");
            // The session needs one packet from the client before it sends (its ack).
            s.send_ip(pptp_client::packet::echo_request(
                s.info.network.address,
                pptp_tests::gateway::SERVER,
                1,
                1,
                8,
            ));
            tokio::time::sleep(Duration::from_millis(300)).await;
            let addr = s.info.network.address;
            let drain = std::thread::spawn(move || rx.drain(4 * PER_SENDER).expect("drain"));
            std::thread::scope(|sc| {
                for cpu in [0, 1] {
                    sc.spawn(move || {
                        rig.server.enter(|| {
                            pin_to_cpu(cpu);
                            let sock = UdpSocket::bind("0.0.0.0:0").expect("bind");
                            for i in 0..PER_SENDER {
                                let _ = sock.send_to(&(i as u32).to_be_bytes(), (addr, 9));
                            }
                        })
                    });
                }
            });
            let packets = drain.join().unwrap();
            s.hangup().await;
            // IPv4 (20) + GRE: flags, protocol, payload length, call ID, sequence number.
            packets
                .iter()
                .filter(|p| p.len() > 32 && p[20] & 0x10 != 0)
                .filter(|p| u16::from_be_bytes([p[26], p[27]]) == call_id)
                // Data only: PPP FF 03 then 00 21 (IPv4) or 00 FD (MPPE) after the GRE header.
                .filter(|p| {
                    let at = 32 + if p[21] & 0x80 != 0 { 4 } else { 0 };
                    p.len() > at + 4 && p[at + 2..at + 4] != [0xc0, 0x21]
                })
                .map(|p| u32::from_be_bytes([p[28], p[29], p[30], p[31]]))
                .collect()
        })
    })
}

#[test]
fn one_sessions_packets_leave_in_sequence_order_from_two_cpus() {
    in_order("egress", "");
}

/// `xdp` mode: the LAN program runs on both CPUs at once (the rig's LAN has two queues, one per
/// CPU); each session's packets are handed to its home CPU, so they still leave in order.
#[test]
fn one_sessions_packets_leave_in_sequence_order_from_two_cpus_in_xdp_mode() {
    in_order("egrxdp", XDP_FORWARDING);
}

fn in_order(tag: &str, extra: &str) {
    require_root();
    for (policy, mppe) in [("deny", false), ("require", true)] {
        let rig = Rig::start(tag, &config_mppe(policy, extra), SECRETS);
        let before = rig.stats();
        let seqs = sequence_numbers_on_the_wire(&rig, 0x700, mppe);
        let out_of_order = seqs
            .windows(2)
            .filter(|w| !pptp_common::seq::seq_after(w[1], w[0]))
            .count();
        // Most of the 6,000 got through (the senders outrun the path; the queues drop the rest).
        assert!(
            seqs.len() >= 500,
            "mppe {mppe}: only {} data packets",
            seqs.len()
        );
        assert_eq!(
            out_of_order,
            0,
            "mppe {mppe}: {} packets, {out_of_order} out of order",
            seqs.len()
        );
        let after = rig.stats();
        let d = |k: &str| num(&after, &["datapath", k]) - num(&before, &["datapath", k]);
        if !extra.is_empty() {
            // Both CPUs ran the LAN program, and some packets were handed to the other one.
            assert!(d("lan_steered") > 0, "{after}");
            assert!(d("encapsulated") >= seqs.len() as u64, "{after}");
        }
        eprintln!(
            "mppe {mppe}: {} packets from two CPUs, all in order ({} handed to their home CPU)",
            seqs.len(),
            d("lan_steered")
        );
        rig.assert_clean();
    }
}
