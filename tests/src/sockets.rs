//! Raw sockets for tests: an AF_PACKET sender for hand-made frames and an IPPROTO_GRE receiver that
//! shows what the kernel delivered past XDP. Create them inside `Netns::enter`.

use std::{
    io,
    os::fd::{AsRawFd as _, FromRawFd as _, OwnedFd},
    time::Duration,
};

fn check(rc: libc::c_int, what: &str) -> io::Result<libc::c_int> {
    if rc < 0 {
        let e = io::Error::last_os_error();
        return Err(io::Error::new(e.kind(), format!("{what}: {e}")));
    }
    Ok(rc)
}

fn ifindex(ifname: &str) -> io::Result<u32> {
    let c = std::ffi::CString::new(ifname).map_err(io::Error::other)?;
    // SAFETY: `c` is a valid NUL-terminated string.
    let idx = unsafe { libc::if_nametoindex(c.as_ptr()) };
    if idx == 0 {
        return Err(io::Error::other(format!("no interface {ifname}")));
    }
    Ok(idx)
}

/// Sends whole Ethernet frames out of one interface.
pub struct PacketSender {
    fd: OwnedFd,
    ifindex: u32,
}

impl PacketSender {
    pub fn new(ifname: &str) -> io::Result<Self> {
        let ifindex = ifindex(ifname)?;
        // SAFETY: plain socket(2) call; the fd is owned below.
        let fd = check(
            unsafe { libc::socket(libc::AF_PACKET, libc::SOCK_RAW, 0) },
            "socket(AF_PACKET)",
        )?;
        // SAFETY: `fd` was just returned by socket(2) and is owned by nothing else.
        let fd = unsafe { OwnedFd::from_raw_fd(fd) };
        Ok(Self { fd, ifindex })
    }

    pub fn send(&self, frame: &[u8]) -> io::Result<()> {
        // SAFETY: sockaddr_ll is plain old data; all-zero is a valid value.
        let mut sll: libc::sockaddr_ll = unsafe { std::mem::zeroed() };
        sll.sll_family = libc::AF_PACKET as u16;
        sll.sll_ifindex = self.ifindex as i32;
        sll.sll_halen = 6;
        sll.sll_addr[..6].copy_from_slice(&frame[..6]);
        // SAFETY: buffer and address pointers are valid for the lengths given.
        let rc = unsafe {
            libc::sendto(
                self.fd.as_raw_fd(),
                frame.as_ptr().cast(),
                frame.len(),
                0,
                (&raw const sll).cast(),
                size_of::<libc::sockaddr_ll>() as u32,
            )
        };
        check(rc as libc::c_int, "sendto(AF_PACKET)").map(|_| ())
    }
}

/// Receives GRE packets (IPv4 header included) that reached the kernel stack.
pub struct GreReceiver {
    fd: OwnedFd,
}

impl GreReceiver {
    pub fn new(timeout: Duration) -> io::Result<Self> {
        // SAFETY: plain socket(2) call; the fd is owned below.
        let fd = check(
            unsafe { libc::socket(libc::AF_INET, libc::SOCK_RAW, libc::IPPROTO_GRE) },
            "socket(IPPROTO_GRE)",
        )?;
        // SAFETY: `fd` was just returned by socket(2) and is owned by nothing else.
        let fd = unsafe { OwnedFd::from_raw_fd(fd) };
        let tv = libc::timeval {
            tv_sec: timeout.as_secs() as libc::time_t,
            tv_usec: timeout.subsec_micros() as libc::suseconds_t,
        };
        check(
            // SAFETY: `tv` is a valid timeval for SO_RCVTIMEO and outlives the call.
            unsafe {
                libc::setsockopt(
                    fd.as_raw_fd(),
                    libc::SOL_SOCKET,
                    libc::SO_RCVTIMEO,
                    (&raw const tv).cast(),
                    size_of::<libc::timeval>() as u32,
                )
            },
            "SO_RCVTIMEO",
        )?;
        Ok(Self { fd })
    }

    /// The next packet, or `None` once the timeout passes with nothing received.
    pub fn recv(&self) -> io::Result<Option<Vec<u8>>> {
        let mut buf = vec![0u8; 65536];
        // SAFETY: `buf` is valid for writes of its length.
        let n = unsafe { libc::recv(self.fd.as_raw_fd(), buf.as_mut_ptr().cast(), buf.len(), 0) };
        if n < 0 {
            let e = io::Error::last_os_error();
            return match e.kind() {
                io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut => Ok(None),
                _ => Err(e),
            };
        }
        buf.truncate(n as usize);
        Ok(Some(buf))
    }

    /// Every packet until the socket stays quiet for its timeout, at most `max`.
    pub fn drain(&self, max: usize) -> io::Result<Vec<Vec<u8>>> {
        let mut out = Vec::new();
        while out.len() < max {
            match self.recv()? {
                Some(p) => out.push(p),
                None => break,
            }
        }
        Ok(out)
    }
}
