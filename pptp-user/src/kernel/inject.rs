//! The controller's own IPv6 packets to clients (Router Advertisements), sent into `pptp0`
//! so the encapsulation behind it frames them like the session's data: GRE sequence numbers
//! from the one shared counter, and MPPE when the session is encrypted (the key state lives in
//! the data path; the controller could not encrypt without racing it).
//!
//! Frame: `[Ethernet to pptp0p, EtherType ETH_P_CONTROLLER6][the session's /64][IPv6 packet]`.
//! The program behind `pptp0` takes this EtherType only there (never on a LAN interface).

use std::{
    io,
    os::fd::{AsRawFd as _, FromRawFd as _, OwnedFd},
};

use pptp_common::maps::ETH_P_CONTROLLER6;

pub struct Injector {
    fd: OwnedFd,
    ifindex: u32,
    src: [u8; 6],
    dst: [u8; 6],
}

impl Injector {
    /// A send-only packet socket on `pptp0` (protocol 0: it receives nothing).
    pub fn open(ifindex: u32, src: [u8; 6], dst: [u8; 6]) -> io::Result<Self> {
        // SAFETY: plain syscall; the descriptor is owned at once.
        let fd = unsafe { libc::socket(libc::AF_PACKET, libc::SOCK_RAW | libc::SOCK_CLOEXEC, 0) };
        if fd < 0 {
            return Err(io::Error::last_os_error());
        }
        // SAFETY: a fresh descriptor nobody else owns.
        let fd = unsafe { OwnedFd::from_raw_fd(fd) };
        Ok(Self {
            fd,
            ifindex,
            src,
            dst,
        })
    }

    pub fn send(&self, prefix: [u8; 8], packet: &[u8]) -> io::Result<()> {
        let mut frame = Vec::with_capacity(22 + packet.len());
        frame.extend_from_slice(&self.dst);
        frame.extend_from_slice(&self.src);
        frame.extend_from_slice(&ETH_P_CONTROLLER6.to_be_bytes());
        frame.extend_from_slice(&prefix);
        frame.extend_from_slice(packet);
        // SAFETY: zeroed sockaddr_ll is valid; the fields are set below.
        let mut sa: libc::sockaddr_ll = unsafe { std::mem::zeroed() };
        sa.sll_family = libc::AF_PACKET as u16;
        sa.sll_protocol = ETH_P_CONTROLLER6.to_be();
        sa.sll_ifindex = self.ifindex as i32;
        sa.sll_halen = 6;
        sa.sll_addr[..6].copy_from_slice(&self.dst);
        // SAFETY: `frame` and `sa` are valid for the lengths given.
        let n = unsafe {
            libc::sendto(
                self.fd.as_raw_fd(),
                frame.as_ptr().cast(),
                frame.len(),
                0,
                (&raw const sa).cast(),
                std::mem::size_of::<libc::sockaddr_ll>() as u32,
            )
        };
        if n < 0 {
            return Err(io::Error::last_os_error());
        }
        Ok(())
    }
}
