//! One raw GRE socket for all of a process's calls, demultiplexed by our address and the call ID
//! in the key (the receiver's, i.e. ours): call IDs need only be unique per client address, so one
//! process can hold more than 65,535 calls from many addresses. Raw sockets see every GRE packet
//! of the namespace, so calls of other processes are simply not ours and are ignored.

use std::{
    collections::HashMap,
    net::Ipv4Addr,
    sync::{Arc, Mutex},
};

use pptp_user::{
    kernel::slowpath::{GreSocket, next_packet},
    wire::gre::GreHeader,
};
use tokio::{io::unix::AsyncFd, sync::mpsc};

/// A GRE packet for one call.
#[derive(Debug)]
pub struct Packet {
    pub header: GreHeader,
    pub payload: Vec<u8>,
    pub from: Ipv4Addr,
}

/// (our address or 0.0.0.0 for "any", call ID) → the call's queue.
type Routes = Arc<Mutex<HashMap<(Ipv4Addr, u16), mpsc::Sender<Packet>>>>;

#[derive(Clone)]
pub struct GreMux {
    socket: Arc<AsyncFd<GreSocket>>,
    routes: Routes,
}

/// Per-call queue depth; beyond it packets are dropped (as a lossy link would).
const QUEUE: usize = 1024;

impl GreMux {
    /// Opens the socket in the calling thread's namespace and starts the receive task.
    pub fn open() -> std::io::Result<Self> {
        let socket = Arc::new(GreSocket::open()?.into_async()?);
        let routes: Routes = Arc::default();
        tokio::spawn(receive(socket.clone(), routes.clone()));
        Ok(Self { socket, routes })
    }

    /// Registers a call ID for packets to `local` (0.0.0.0: to any of our addresses); `None` if
    /// it is taken in this process.
    pub fn register(&self, local: Ipv4Addr, call_id: u16) -> Option<mpsc::Receiver<Packet>> {
        let mut routes = self.routes.lock().unwrap_or_else(|e| e.into_inner());
        if routes.contains_key(&(local, call_id)) {
            return None;
        }
        let (tx, rx) = mpsc::channel(QUEUE);
        routes.insert((local, call_id), tx);
        Some(rx)
    }

    pub fn unregister(&self, local: Ipv4Addr, call_id: u16) {
        self.routes
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .remove(&(local, call_id));
    }

    pub fn send(
        &self,
        local: Ipv4Addr,
        peer: Ipv4Addr,
        header: &GreHeader,
        payload: &[u8],
    ) -> std::io::Result<()> {
        self.socket.get_ref().send(local, peer, header, payload)
    }
}

async fn receive(socket: Arc<AsyncFd<GreSocket>>, routes: Routes) {
    while let Ok(r) = next_packet(&socket).await {
        let r = match r {
            Ok(r) => r,
            Err(e) => {
                tracing::debug!(error = %e, "GRE packet dropped");
                continue;
            }
        };
        let tx = {
            let routes = routes.lock().unwrap_or_else(|e| e.into_inner());
            routes
                .get(&(r.local, r.header.call_id))
                .or_else(|| routes.get(&(Ipv4Addr::UNSPECIFIED, r.header.call_id)))
                .cloned()
        };
        if let Some(tx) = tx {
            let _ = tx.try_send(Packet {
                header: r.header,
                payload: r.payload,
                from: r.peer,
            });
        }
    }
}
