//! A TUN device in front of a `pptp-client` session, so that the kernel's own TCP runs through
//! the tunnel: what the stack sends to the TUN goes into the session, what the session receives
//! is written to the TUN.

use std::{
    io,
    os::fd::{AsRawFd as _, FromRawFd as _, OwnedFd},
};

use pptp_client::Session;
use tokio::{io::unix::AsyncFd, sync::oneshot};

/// Creates TUN device `name` (IPv4 packets, no packet information) in the calling thread's
/// namespace; the device goes when the descriptor is closed.
pub fn open_tun(name: &str) -> io::Result<OwnedFd> {
    // SAFETY: open(2) of the TUN clone device; the fd is owned at once.
    let fd = unsafe {
        libc::open(
            c"/dev/net/tun".as_ptr(),
            libc::O_RDWR | libc::O_CLOEXEC | libc::O_NONBLOCK,
        )
    };
    if fd < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: a fresh descriptor.
    let fd = unsafe { OwnedFd::from_raw_fd(fd) };
    // SAFETY: all-zero is a valid ifreq.
    let mut ifr: libc::ifreq = unsafe { std::mem::zeroed() };
    for (d, s) in ifr.ifr_name.iter_mut().zip(name.as_bytes()) {
        *d = *s as libc::c_char;
    }
    ifr.ifr_ifru.ifru_flags = (libc::IFF_TUN | libc::IFF_NO_PI) as i16;
    // SAFETY: TUNSETIFF with a valid ifreq.
    if unsafe { libc::ioctl(fd.as_raw_fd(), libc::TUNSETIFF, &raw mut ifr) } != 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(fd)
}

/// Moves packets between `tun` and `session` until `stop` fires (or the session ends).
/// Returns the packets moved (to the session, from it).
pub async fn bridge(
    session: &mut Session,
    tun: OwnedFd,
    mut stop: oneshot::Receiver<()>,
) -> io::Result<(u64, u64)> {
    // SAFETY: an OwnedFd owns its descriptor for its whole life and always reports the same one,
    // which is what registration requires.
    let tun = unsafe { AsyncFd::register_with_interest(tun, tokio::io::Interest::READABLE) }
        .map_err(|e| e.into_parts().1)?;
    let mut buf = vec![0u8; 2048];
    let (mut up, mut down) = (0u64, 0u64);
    loop {
        tokio::select! {
            _ = &mut stop => return Ok((up, down)),
            r = tun.readable() => {
                let mut guard = r?;
                loop {
                    // SAFETY: reading into our own buffer from our own descriptor.
                    let n = unsafe {
                        libc::read(tun.get_ref().as_raw_fd(), buf.as_mut_ptr().cast(), buf.len())
                    };
                    if n <= 0 {
                        guard.clear_ready();
                        break;
                    }
                    session.send_ip(buf[..n as usize].to_vec());
                    up += 1;
                }
            }
            p = session.recv_ip(std::time::Duration::from_secs(3600)) => {
                let Some(p) = p else { return Ok((up, down)) };
                // SAFETY: writing a valid buffer to our own descriptor (a TUN write is one
                // packet, whole or not at all).
                unsafe { libc::write(tun.get_ref().as_raw_fd(), p.as_ptr().cast(), p.len()) };
                down += 1;
            }
        }
    }
}
