//! The slow path: a raw IPPROTO_GRE socket for the enhanced GRE packets the XDP program passes up
//! (PPP control frames, and anything of calls not yet on the fast path), and for the controller's
//! own PPP frames towards clients.
//!
//! Sending sets the source explicitly with `IP_PKTINFO` (`ipi_spec_dst`): the kernel then both
//! writes that source and routes *from* it, so policy routing picks the uplink of the address the
//! client dialled (lesson 2), never the interface with the best route back.

use std::{
    io,
    mem::size_of,
    net::Ipv4Addr,
    os::fd::{AsRawFd as _, FromRawFd as _, OwnedFd},
};

use crate::wire::gre::{self, GreHeader};

/// A received enhanced GRE packet, addressed as it arrived.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Received {
    /// Our address the client sent to (the outer destination).
    pub local: Ipv4Addr,
    /// The client's outer address.
    pub peer: Ipv4Addr,
    pub header: GreHeader,
    pub payload: Vec<u8>,
}

#[derive(Debug, thiserror::Error)]
pub enum RecvError {
    #[error(transparent)]
    Io(#[from] io::Error),
    #[error("short or malformed IPv4 header ({0} bytes)")]
    BadIp(usize),
    #[error("from {peer}: {error}")]
    BadGre { peer: Ipv4Addr, error: gre::Error },
}

pub struct GreSocket {
    fd: OwnedFd,
}

impl std::os::fd::AsRawFd for GreSocket {
    fn as_raw_fd(&self) -> std::os::fd::RawFd {
        self.fd.as_raw_fd()
    }
}

fn check(rc: libc::c_int, what: &str) -> io::Result<libc::c_int> {
    if rc < 0 {
        let e = io::Error::last_os_error();
        return Err(io::Error::new(e.kind(), format!("{what}: {e}")));
    }
    Ok(rc)
}

impl GreSocket {
    /// A non-blocking raw GRE socket in the calling thread's network namespace.
    pub fn open() -> io::Result<Self> {
        let fd = check(
            // SAFETY: plain socket(2); the fd is owned at once.
            unsafe {
                libc::socket(
                    libc::AF_INET,
                    libc::SOCK_RAW | libc::SOCK_NONBLOCK | libc::SOCK_CLOEXEC,
                    libc::IPPROTO_GRE,
                )
            },
            "socket(AF_INET, SOCK_RAW, IPPROTO_GRE)",
        )?;
        // SAFETY: `fd` is a fresh descriptor nobody else owns.
        let fd = unsafe { OwnedFd::from_raw_fd(fd) };
        // A reconnect storm (every client redialling after an outage) arrives as a burst of
        // PPP negotiation frames on this one socket; the default buffer (~200 KiB, a few hundred
        // packets) overflows and each loss costs a 3 s restart timer. As root, force 16 MiB.
        let size: libc::c_int = 16 << 20;
        for opt in [libc::SO_RCVBUFFORCE, libc::SO_RCVBUF] {
            // SAFETY: setsockopt with a valid int option value.
            let rc = unsafe {
                libc::setsockopt(
                    fd.as_raw_fd(),
                    libc::SOL_SOCKET,
                    opt,
                    (&raw const size).cast(),
                    size_of::<libc::c_int>() as u32,
                )
            };
            if rc == 0 {
                break;
            }
        }
        Ok(Self { fd })
    }

    /// The socket a previous worker opened (hitless restart: what it queued while no worker
    /// ran is read now). Non-blocking is a property of the shared file, so it is kept.
    pub fn from_fd(fd: OwnedFd) -> Self {
        Self { fd }
    }

    pub fn fd(&self) -> std::os::fd::BorrowedFd<'_> {
        use std::os::fd::AsFd as _;
        self.fd.as_fd()
    }

    /// Sends `header` + `payload` to `peer`, sourced from (and routed from) `local`.
    pub fn send(
        &self,
        local: Ipv4Addr,
        peer: Ipv4Addr,
        header: &GreHeader,
        payload: &[u8],
    ) -> io::Result<()> {
        let mut packet = Vec::with_capacity(header.header_len() + payload.len());
        header.emit(payload, &mut packet);
        // SAFETY: all-zero is valid for these plain C structs.
        let mut dst: libc::sockaddr_in = unsafe { std::mem::zeroed() };
        dst.sin_family = libc::AF_INET as u16;
        dst.sin_addr.s_addr = u32::from_ne_bytes(peer.octets());
        // SAFETY: as above.
        let mut info: libc::in_pktinfo = unsafe { std::mem::zeroed() };
        info.ipi_spec_dst.s_addr = u32::from_ne_bytes(local.octets());
        const CMSG_SPACE: usize = 32;
        let mut control = [0u8; CMSG_SPACE];
        let mut iov = libc::iovec {
            iov_base: packet.as_mut_ptr().cast(),
            iov_len: packet.len(),
        };
        // SAFETY: as above.
        let mut msg: libc::msghdr = unsafe { std::mem::zeroed() };
        msg.msg_name = (&raw mut dst).cast();
        msg.msg_namelen = size_of::<libc::sockaddr_in>() as u32;
        msg.msg_iov = &raw mut iov;
        msg.msg_iovlen = 1;
        msg.msg_control = control.as_mut_ptr().cast();
        // SAFETY: CMSG_SPACE is a pure computation.
        msg.msg_controllen =
            unsafe { libc::CMSG_SPACE(size_of::<libc::in_pktinfo>() as u32) } as usize;
        assert!(msg.msg_controllen <= CMSG_SPACE);
        // SAFETY: `msg` describes `control`, which is large enough for one in_pktinfo cmsg.
        unsafe {
            let c = libc::CMSG_FIRSTHDR(&raw const msg);
            (*c).cmsg_level = libc::IPPROTO_IP;
            (*c).cmsg_type = libc::IP_PKTINFO;
            (*c).cmsg_len = libc::CMSG_LEN(size_of::<libc::in_pktinfo>() as u32) as usize;
            std::ptr::write_unaligned(libc::CMSG_DATA(c).cast::<libc::in_pktinfo>(), info);
        }
        // SAFETY: every pointer in `msg` is valid for the call.
        let n = unsafe { libc::sendmsg(self.fd.as_raw_fd(), &raw const msg, 0) };
        check(n as libc::c_int, "sendmsg(GRE)")?;
        Ok(())
    }

    /// Registers the socket with tokio (the controller's slow path and the project's client).
    pub fn into_async(self) -> io::Result<tokio::io::unix::AsyncFd<Self>> {
        // SAFETY: the socket owns its descriptor for its whole life and always reports the same
        // one, which is what registration requires.
        unsafe {
            tokio::io::unix::AsyncFd::register_with_interest(self, tokio::io::Interest::READABLE)
        }
        .map_err(|e| e.into_parts().1)
    }

    /// One packet, or `WouldBlock` when none is waiting.
    pub fn recv(&self) -> Result<Received, RecvError> {
        let mut buf = vec![0u8; 65536];
        // SAFETY: `buf` is valid for writes of its length.
        let n = unsafe { libc::recv(self.fd.as_raw_fd(), buf.as_mut_ptr().cast(), buf.len(), 0) };
        if n < 0 {
            return Err(io::Error::last_os_error().into());
        }
        let pkt = &buf[..n as usize];
        let Some(&vihl) = pkt.first() else {
            return Err(RecvError::BadIp(0));
        };
        let ihl = usize::from(vihl & 0x0f) * 4;
        if vihl >> 4 != 4 || ihl < 20 || pkt.len() < ihl {
            return Err(RecvError::BadIp(pkt.len()));
        }
        let peer = Ipv4Addr::new(pkt[12], pkt[13], pkt[14], pkt[15]);
        let local = Ipv4Addr::new(pkt[16], pkt[17], pkt[18], pkt[19]);
        let (header, payload) =
            GreHeader::parse(&pkt[ihl..]).map_err(|error| RecvError::BadGre { peer, error })?;
        Ok(Received {
            local,
            peer,
            header,
            payload: payload.to_vec(),
        })
    }
}

/// The next packet of a registered socket, waiting until one arrives. A malformed packet comes
/// back as `Ok(Err(..))` (the caller logs it and goes on); `Err` means the socket itself failed.
pub async fn next_packet(
    socket: &tokio::io::unix::AsyncFd<GreSocket>,
) -> io::Result<Result<Received, RecvError>> {
    loop {
        let mut guard = socket.readable().await?;
        match guard.get_inner().recv() {
            Err(RecvError::Io(e)) if e.kind() == io::ErrorKind::WouldBlock => guard.clear_ready(),
            Err(RecvError::Io(e)) => return Err(e),
            other => return Ok(other),
        }
    }
}
