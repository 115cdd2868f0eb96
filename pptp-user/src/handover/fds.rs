//! Descriptors that outlive the worker: the worker hands each socket a client depends on (the
//! listeners, the raw GRE socket, every control connection) to the supervisor over a
//! `SOCK_SEQPACKET` pair with `SCM_RIGHTS`, and names it with a token. A new worker inherits
//! them across `exec` with a manifest (`token fd` lines in a memfd) and takes each back by its
//! token. The supervisor's duplicate keeps a TCP connection open while no worker runs: the
//! client's bytes wait in the kernel, and nothing it sees changes.

use std::{
    collections::HashMap,
    io::{Read as _, Seek as _, Write as _},
    os::fd::{AsFd as _, AsRawFd as _, BorrowedFd, FromRawFd as _, OwnedFd, RawFd},
    sync::Mutex,
};

/// Set by the supervisor for its worker: `<channel fd>,<manifest fd>`.
pub const ENV_WORKER: &str = "PPTPGW_WORKER";
/// Set by a supervisor for the binary it `exec`s on an upgrade: `<manifest fd>`.
pub const ENV_SUPERVISOR: &str = "PPTPGW_HANDOVER";

pub fn listener_token(addr: std::net::SocketAddr) -> String {
    format!("listen:{addr}")
}
pub const GRE_TOKEN: &str = "gre";
pub fn conn_token(id: u64) -> String {
    format!("conn:{id}")
}

/// Messages on the channel (one datagram each).
pub mod msg {
    /// `hold <token>` with the descriptor attached.
    pub const HOLD: &str = "hold";
    /// `release <token>`: closed by the worker (the supervisor closes its copy).
    pub const RELEASE: &str = "release";
    /// The worker is up and serving: a later exit is a crash, not a failed start.
    pub const READY: &str = "ready";
    /// `pptpgw upgrade`: the supervisor starts the new binary.
    pub const UPGRADE: &str = "upgrade";
}

/// The exit code of a worker that handed over (upgrade): nothing was torn down.
pub const EXIT_HANDED_OVER: i32 = 75;

/// Sends one datagram, with a descriptor attached when given.
pub fn send(
    channel: BorrowedFd<'_>,
    text: &str,
    fd: Option<BorrowedFd<'_>>,
) -> std::io::Result<()> {
    let mut iov = libc::iovec {
        iov_base: text.as_ptr() as *mut libc::c_void,
        iov_len: text.len(),
    };
    // Room for one descriptor's control message (CMSG_SPACE of an int is 24 on 64-bit Linux).
    let mut control = [0u64; 4];
    // SAFETY: an all-zero msghdr is valid; the pointers set below outlive the call.
    let mut hdr: libc::msghdr = unsafe { std::mem::zeroed() };
    hdr.msg_iov = &raw mut iov;
    hdr.msg_iovlen = 1;
    if let Some(fd) = fd {
        // SAFETY: CMSG_SPACE only computes a size.
        let space = unsafe { libc::CMSG_SPACE(std::mem::size_of::<RawFd>() as u32) } as usize;
        hdr.msg_control = control.as_mut_ptr().cast();
        hdr.msg_controllen = space;
        // SAFETY: msg_control points at `space` bytes we own; the first header fits in them.
        unsafe {
            let c = libc::CMSG_FIRSTHDR(&hdr);
            (*c).cmsg_level = libc::SOL_SOCKET;
            (*c).cmsg_type = libc::SCM_RIGHTS;
            (*c).cmsg_len = libc::CMSG_LEN(std::mem::size_of::<RawFd>() as u32) as usize;
            std::ptr::write_unaligned(libc::CMSG_DATA(c).cast::<RawFd>(), fd.as_raw_fd());
        }
    }
    loop {
        // SAFETY: `hdr` describes valid buffers for the duration of the call.
        let n = unsafe { libc::sendmsg(channel.as_raw_fd(), &hdr, libc::MSG_NOSIGNAL) };
        if n >= 0 {
            return Ok(());
        }
        let e = std::io::Error::last_os_error();
        if e.kind() != std::io::ErrorKind::Interrupted {
            return Err(e);
        }
    }
}

/// Receives one datagram and the descriptor attached to it, if any. `Ok(None)`: the other end
/// closed.
pub fn recv(channel: BorrowedFd<'_>) -> std::io::Result<Option<(String, Option<OwnedFd>)>> {
    let mut buf = [0u8; 512];
    let mut iov = libc::iovec {
        iov_base: buf.as_mut_ptr().cast(),
        iov_len: buf.len(),
    };
    let mut control = [0u64; 8];
    // SAFETY: an all-zero msghdr is valid; the pointers set below outlive the call.
    let mut hdr: libc::msghdr = unsafe { std::mem::zeroed() };
    hdr.msg_iov = &raw mut iov;
    hdr.msg_iovlen = 1;
    hdr.msg_control = control.as_mut_ptr().cast();
    hdr.msg_controllen = std::mem::size_of_val(&control);
    let n = loop {
        // SAFETY: `hdr` describes valid buffers; received descriptors are close-on-exec.
        let n = unsafe { libc::recvmsg(channel.as_raw_fd(), &mut hdr, libc::MSG_CMSG_CLOEXEC) };
        if n >= 0 {
            break n as usize;
        }
        let e = std::io::Error::last_os_error();
        if e.kind() != std::io::ErrorKind::Interrupted {
            return Err(e);
        }
    };
    let mut fds = Vec::new();
    // SAFETY: walking the control messages the kernel wrote into `control`.
    unsafe {
        let mut c = libc::CMSG_FIRSTHDR(&hdr);
        while !c.is_null() {
            if (*c).cmsg_level == libc::SOL_SOCKET && (*c).cmsg_type == libc::SCM_RIGHTS {
                let data = libc::CMSG_DATA(c).cast::<RawFd>();
                let count =
                    ((*c).cmsg_len - libc::CMSG_LEN(0) as usize) / std::mem::size_of::<RawFd>();
                for i in 0..count {
                    fds.push(OwnedFd::from_raw_fd(std::ptr::read_unaligned(data.add(i))));
                }
            }
            c = libc::CMSG_NXTHDR(&hdr, c);
        }
    }
    if n == 0 && fds.is_empty() {
        return Ok(None);
    }
    let text = String::from_utf8_lossy(&buf[..n]).into_owned();
    // One descriptor a message; any extra (never sent by us) is closed here.
    Ok(Some((text, fds.into_iter().next())))
}

/// A `SOCK_SEQPACKET` pair, both ends close-on-exec.
pub fn channel_pair() -> std::io::Result<(OwnedFd, OwnedFd)> {
    let mut fds = [0; 2];
    // SAFETY: socketpair fills two descriptors we then own.
    let rc = unsafe {
        libc::socketpair(
            libc::AF_UNIX,
            libc::SOCK_SEQPACKET | libc::SOCK_CLOEXEC,
            0,
            fds.as_mut_ptr(),
        )
    };
    if rc != 0 {
        return Err(std::io::Error::last_os_error());
    }
    // SAFETY: both were just created and are owned by nobody else.
    Ok(unsafe { (OwnedFd::from_raw_fd(fds[0]), OwnedFd::from_raw_fd(fds[1])) })
}

/// A memfd holding `token fd` lines for the descriptors being passed on.
pub fn write_manifest<'a>(
    entries: impl Iterator<Item = (&'a str, RawFd)>,
) -> std::io::Result<OwnedFd> {
    // SAFETY: a NUL-terminated name; the descriptor returned is ours.
    let fd = unsafe { libc::memfd_create(c"pptpgw-manifest".as_ptr(), libc::MFD_CLOEXEC) };
    if fd < 0 {
        return Err(std::io::Error::last_os_error());
    }
    // SAFETY: just created.
    let owned = unsafe { OwnedFd::from_raw_fd(fd) };
    let mut file = std::fs::File::from(owned.try_clone()?);
    let mut text = String::new();
    for (token, fd) in entries {
        text.push_str(&format!("{token} {fd}\n"));
    }
    file.write_all(text.as_bytes())?;
    Ok(owned)
}

/// Reads a manifest and takes ownership of the descriptors it names (each made
/// close-on-exec again); names of descriptors that are not open are skipped.
pub fn read_manifest(manifest: OwnedFd) -> std::io::Result<Vec<(String, OwnedFd)>> {
    let mut file = std::fs::File::from(manifest);
    file.rewind()?;
    let mut text = String::new();
    file.read_to_string(&mut text)?;
    let mut out = Vec::new();
    for line in text.lines() {
        let Some((token, fd)) = line.rsplit_once(' ') else {
            continue;
        };
        let Ok(fd) = fd.parse::<RawFd>() else {
            continue;
        };
        // SAFETY: F_SETFD on a number we were told is ours; a closed one fails with EBADF.
        if fd < 3 || unsafe { libc::fcntl(fd, libc::F_SETFD, libc::FD_CLOEXEC) } != 0 {
            continue;
        }
        // SAFETY: the supervisor passed this descriptor to us alone, named once.
        out.push((token.to_string(), unsafe { OwnedFd::from_raw_fd(fd) }));
    }
    Ok(out)
}

/// Takes an inherited descriptor number from the environment (made close-on-exec).
pub fn inherited_fd(text: &str) -> Option<OwnedFd> {
    let fd: RawFd = text.trim().parse().ok()?;
    // SAFETY: as for the manifest's entries.
    if fd < 3 || unsafe { libc::fcntl(fd, libc::F_SETFD, libc::FD_CLOEXEC) } != 0 {
        return None;
    }
    // SAFETY: named to us once, by our parent.
    Some(unsafe { OwnedFd::from_raw_fd(fd) })
}

/// The worker's side: what it inherited, and the channel it hands new descriptors over.
#[derive(Default)]
pub struct Worker {
    channel: Option<OwnedFd>,
    inherited: Mutex<HashMap<String, OwnedFd>>,
}

impl Worker {
    /// From [`ENV_WORKER`]; unsupervised (nothing inherited, nothing held) without it.
    pub fn from_env() -> anyhow::Result<Self> {
        let Ok(value) = std::env::var(ENV_WORKER) else {
            return Ok(Self::default());
        };
        // SAFETY: single-threaded start-up; our children must not inherit it.
        unsafe { std::env::remove_var(ENV_WORKER) };
        let (channel, manifest) = value
            .split_once(',')
            .ok_or_else(|| anyhow::anyhow!("{ENV_WORKER}={value:?}: not <fd>,<fd>"))?;
        let channel = inherited_fd(channel)
            .ok_or_else(|| anyhow::anyhow!("{ENV_WORKER}: the channel {channel} is not open"))?;
        let manifest = inherited_fd(manifest)
            .ok_or_else(|| anyhow::anyhow!("{ENV_WORKER}: the manifest {manifest} is not open"))?;
        let inherited = read_manifest(manifest)?.into_iter().collect();
        Ok(Self {
            channel: Some(channel),
            inherited: Mutex::new(inherited),
        })
    }

    pub fn supervised(&self) -> bool {
        self.channel.is_some()
    }

    fn inherited(&self) -> std::sync::MutexGuard<'_, HashMap<String, OwnedFd>> {
        self.inherited.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Takes back an inherited descriptor by its token.
    pub fn take(&self, token: &str) -> Option<OwnedFd> {
        self.inherited().remove(token)
    }

    /// Every inherited control connection not yet taken: (connection ID, descriptor).
    pub fn take_connections(&self) -> Vec<(u64, OwnedFd)> {
        let mut map = self.inherited();
        let ids: Vec<(String, u64)> = map
            .keys()
            .filter_map(|t| Some((t.clone(), t.strip_prefix("conn:")?.parse().ok()?)))
            .collect();
        ids.into_iter()
            .filter_map(|(t, id)| Some((id, map.remove(&t)?)))
            .collect()
    }

    /// Asks the supervisor to keep a copy of `fd` under `token`.
    pub fn hold(&self, token: &str, fd: BorrowedFd<'_>) {
        self.tell(&format!("{} {token}", msg::HOLD), Some(fd));
    }

    /// The worker closed what `token` names: the supervisor closes its copy.
    pub fn release(&self, token: &str) {
        self.tell(&format!("{} {token}", msg::RELEASE), None);
    }

    pub fn ready(&self) {
        self.tell(msg::READY, None);
    }

    /// Asks for an upgrade; false when there is no supervisor to do it.
    pub fn upgrade(&self) -> bool {
        self.supervised() && self.tell(msg::UPGRADE, None)
    }

    fn tell(&self, text: &str, fd: Option<BorrowedFd<'_>>) -> bool {
        let Some(c) = &self.channel else {
            return false;
        };
        match send(c.as_fd(), text, fd) {
            Ok(()) => true,
            Err(e) => {
                tracing::warn!(error = %e, message = text, "supervisor channel");
                false
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn descriptors_cross_the_channel_and_the_manifest() {
        let (a, b) = channel_pair().unwrap();
        let (r, w) = std::io::pipe().unwrap();
        send(a.as_fd(), "hold conn:7", Some(w.as_fd())).unwrap();
        send(a.as_fd(), "release conn:7", None).unwrap();
        let (text, fd) = recv(b.as_fd()).unwrap().unwrap();
        assert_eq!(text, "hold conn:7");
        let got = fd.expect("a descriptor came along");
        drop(w);
        // The received copy is the same pipe: writing to it reaches the reader.
        let mut f = std::fs::File::from(got);
        f.write_all(b"x").unwrap();
        drop(f);
        let mut s = String::new();
        std::io::Read::read_to_string(&mut std::fs::File::from(OwnedFd::from(r)), &mut s).unwrap();
        assert_eq!(s, "x");
        let (text, fd) = recv(b.as_fd()).unwrap().unwrap();
        assert_eq!((text.as_str(), fd.is_none()), ("release conn:7", true));
        drop(a);
        assert!(
            recv(b.as_fd()).unwrap().is_none(),
            "closed end reads as None"
        );

        let (keep, _other) = channel_pair().unwrap();
        let m = write_manifest([("conn:9", keep.as_raw_fd()), ("gre", 9999)].into_iter()).unwrap();
        let raw = keep.as_raw_fd();
        std::mem::forget(keep); // ownership moves to the manifest's reader
        let back = read_manifest(m).unwrap();
        assert_eq!(back.len(), 1, "a descriptor that is not open is skipped");
        assert_eq!((back[0].0.as_str(), back[0].1.as_raw_fd()), ("conn:9", raw));
    }
}
