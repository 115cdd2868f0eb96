//! The kernel's TCP through a session, both ways: a TUN device in the client's namespace is
//! bridged to the project's client (library), TRANSFER bytes go up to a listener in the server's
//! namespace and TRANSFER bytes come down from it.

use std::time::Duration;

use pptp_client::{DialConfig, dial, gre::GreMux};

use crate::gateway::{Rig, SERVER, rt};

/// Bytes moved each way.
pub const TRANSFER: usize = 4 << 20;

/// The byte at `i` of a transfer (a pattern with no short period, so that a lost, repeated or
/// misplaced segment shows).
fn pattern(i: usize) -> u8 {
    (i.wrapping_mul(2_654_435_761) >> 13) as u8
}

fn intact(got: &[u8]) -> usize {
    got.iter()
        .enumerate()
        .take_while(|(i, b)| **b == pattern(*i))
        .count()
}

/// What one session moved: pings answered (of 3, before the transfers), bytes intact up and down,
/// whether the session was encrypted, and statefully.
#[derive(Debug, PartialEq, Eq)]
pub struct Moved {
    pub pings: u32,
    pub up: usize,
    pub down: usize,
    pub encrypted: bool,
    pub stateful: bool,
}

/// The client's end of a session as a TUN device (`ptun0`) in the client's namespace, with a
/// route to the server through it: what `run` does there (processes, sockets) goes through the
/// session, bridged by the project's client until `run` returns.
pub fn through_tun<R: Send + 'static>(
    rig: &Rig,
    cfg: DialConfig,
    run: impl FnOnce() -> R + Send + 'static,
) -> R {
    rig.client.enter(|| {
        rt().block_on(async {
            let mux = GreMux::open().unwrap();
            let mut s = dial(cfg, &mux)
                .await
                .unwrap_or_else(|e| panic!("dial: {e}\n{}", rig.log()));
            let addr = s.info.network.address.to_string();
            let tun = crate::tun::open_tun("ptun0").expect("TUN");
            for args in [
                vec!["addr", "add", &format!("{addr}/32"), "dev", "ptun0"],
                vec!["link", "set", "ptun0", "mtu", "1400", "up"],
                vec![
                    "route",
                    "add",
                    &format!("{SERVER}/32"),
                    "dev",
                    "ptun0",
                    "src",
                    &addr,
                ],
            ] {
                assert!(rig.client.ip(&args).status.success(), "ip {args:?}");
            }
            let (stop_tx, stop_rx) = tokio::sync::oneshot::channel();
            let work = std::thread::spawn(move || {
                let r = run();
                let _ = stop_tx.send(());
                r
            });
            crate::tun::bridge(&mut s, tun, stop_rx).await.unwrap();
            let r = work.join().unwrap();
            s.hangup().await;
            r
        })
    })
}

/// Dials with `cfg`, pings the server 3 times, then runs the two transfers; `port` must be free
/// in the server's namespace.
pub fn tcp_both_ways(rig: &Rig, cfg: DialConfig, port: u16) -> Moved {
    use std::io::{Read as _, Write as _};
    let listener = rig
        .server
        .enter(|| std::net::TcpListener::bind((SERVER, port)).expect("listen"));
    // Server: the first connection uploads (counted and checked), the second downloads.
    let server = std::thread::spawn(move || {
        let (mut up, _) = listener.accept().expect("accept upload");
        let mut got = Vec::new();
        let _ = up.read_to_end(&mut got);
        let (mut down, _) = listener.accept().expect("accept download");
        let data: Vec<u8> = (0..TRANSFER).map(pattern).collect();
        let _ = down.write_all(&data);
        intact(&got)
    });
    rig.client.enter(|| {
        rt().block_on(async {
            let mux = GreMux::open().unwrap();
            let mut s = dial(cfg, &mux)
                .await
                .unwrap_or_else(|e| panic!("dial: {e}\n{}", rig.log()));
            let pings = s.ping(SERVER, 3, Duration::from_secs(2)).await.received;
            let encrypted = s.info.network.mppe.is_some();
            let stateful = s.info.network.mppe_stateful;
            let addr = s.info.network.address.to_string();
            let tun = crate::tun::open_tun("ptun0").expect("TUN");
            for args in [
                vec!["addr", "add", &format!("{addr}/32"), "dev", "ptun0"],
                vec!["link", "set", "ptun0", "mtu", "1400", "up"],
                vec![
                    "route",
                    "add",
                    &format!("{SERVER}/32"),
                    "dev",
                    "ptun0",
                    "src",
                    &addr,
                ],
            ] {
                assert!(rig.client.ip(&args).status.success(), "ip {args:?}");
            }
            let (stop_tx, stop_rx) = tokio::sync::oneshot::channel();
            // The transfers on a thread of this namespace (threads inherit it).
            let client = std::thread::spawn(move || {
                let timeout = Some(Duration::from_secs(60));
                let mut up = std::net::TcpStream::connect((SERVER, port)).expect("connect up");
                up.set_write_timeout(timeout).unwrap();
                let data: Vec<u8> = (0..TRANSFER).map(pattern).collect();
                up.write_all(&data).expect("upload");
                drop(up);
                let mut down = std::net::TcpStream::connect((SERVER, port)).expect("connect down");
                down.set_read_timeout(timeout).unwrap();
                let mut got = Vec::new();
                let _ = down.read_to_end(&mut got);
                let _ = stop_tx.send(());
                intact(&got)
            });
            let moved = crate::tun::bridge(&mut s, tun, stop_rx).await.unwrap();
            let down = client.join().unwrap();
            s.hangup().await;
            let up = server.join().unwrap();
            assert!(moved.0 > 1000 && moved.1 > 1000, "{moved:?}");
            Moved {
                pings,
                up,
                down,
                encrypted,
                stateful,
            }
        })
    })
}
