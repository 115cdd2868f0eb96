//! The supervisor: `pptpgw run` itself. It holds what clients depend on and nothing else — a
//! copy of every socket the worker hands it — and runs the worker (the same binary, with
//! [`ENV_WORKER`] set) as its child:
//!
//! - the worker crashes (any signal, or an error exit after it was ready): a new one is started
//!   at once with every held socket; the data path never stopped (pinned), and the new worker
//!   takes the sessions back from the journal. More than `MAX_RESTARTS` in `RESTART_WINDOW`:
//!   give up (exit 1), leaving the data path pinned for the next start.
//! - the worker fails before it was ready (a bad config, a missing capability): its exit code
//!   is ours; nothing is retried.
//! - SIGTERM / SIGINT / SIGHUP: passed to the worker (a clean stop, a reload); we exit with it.
//! - SIGUSR2 or `pptpgw upgrade`: the worker is told to hand over (it exits with
//!   [`EXIT_HANDED_OVER`] without tearing anything down), then we `exec` the binary at our path
//!   — the new version — with every held socket, and it starts a new worker.
//!
//! Deliberately small and synchronous (poll on a signalfd and the channel): it must not crash.

use std::{
    collections::{BTreeMap, VecDeque},
    ffi::OsString,
    os::{
        fd::{AsFd as _, AsRawFd as _, OwnedFd, RawFd},
        unix::process::{CommandExt as _, ExitStatusExt as _},
    },
    path::PathBuf,
    process::{Child, Command, ExitCode},
    time::{Duration, Instant},
};

use super::fds::{self, ENV_SUPERVISOR, ENV_WORKER, EXIT_HANDED_OVER, msg};

const MAX_RESTARTS: usize = 5;
const RESTART_WINDOW: Duration = Duration::from_secs(60);
/// How long a worker may take to hand over before it is killed (the crash path is just as safe,
/// only slower to start).
const HANDOVER_TIMEOUT: Duration = Duration::from_secs(10);

const SIGNALS: [i32; 5] = [
    libc::SIGTERM,
    libc::SIGINT,
    libc::SIGHUP,
    libc::SIGUSR2,
    libc::SIGCHLD,
];

struct Supervisor {
    exe: PathBuf,
    args: Vec<OsString>,
    held: BTreeMap<String, OwnedFd>,
    child: Option<Child>,
    channel: Option<OwnedFd>,
    ready: bool,
    stopping: bool,
    upgrading: Option<Instant>,
    restarts: VecDeque<Instant>,
}

/// `log.format = "json"`: the supervisor's lines are JSON objects too (one stream, one format).
static JSON: std::sync::atomic::AtomicBool = std::sync::atomic::AtomicBool::new(false);

fn log(what: &str) {
    let pid = std::process::id();
    if JSON.load(std::sync::atomic::Ordering::Relaxed) {
        let ts = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0.0, |d| d.as_secs_f64());
        let line = serde_json::json!({
            "timestamp": ts,
            "level": "INFO",
            "message": what,
            "target": "pptpgw::supervisor",
            "pid": pid,
        });
        eprintln!("{line}");
    } else {
        eprintln!("pptpgw supervisor[{pid}]: {what}");
    }
}

/// Runs the supervisor with the arguments the worker is to get (`run ...`); `json`: log lines
/// as JSON objects (`log.format`).
pub fn run(args: Vec<OsString>, json: bool) -> ExitCode {
    JSON.store(json, std::sync::atomic::Ordering::Relaxed);
    let exe = match std::env::current_exe() {
        Ok(p) => p,
        Err(e) => {
            log(&format!("cannot find our own binary: {e}"));
            return ExitCode::FAILURE;
        }
    };
    // Inherited from the supervisor that exec'd us (upgrade).
    let mut held = BTreeMap::new();
    if let Ok(v) = std::env::var(ENV_SUPERVISOR) {
        // SAFETY: single-threaded; the worker must not see it.
        unsafe { std::env::remove_var(ENV_SUPERVISOR) };
        if let Some(m) = fds::inherited_fd(&v) {
            match fds::read_manifest(m) {
                Ok(list) => held.extend(list),
                Err(e) => log(&format!("upgrade manifest unreadable: {e}")),
            }
        }
        log(&format!("upgraded: {} sockets carried over", held.len()));
    }
    let mut s = Supervisor {
        exe,
        args,
        held,
        child: None,
        channel: None,
        ready: false,
        stopping: false,
        upgrading: None,
        restarts: VecDeque::new(),
    };
    match s.serve() {
        Ok(code) => code,
        Err(e) => {
            log(&format!("failed: {e}"));
            if let Some(c) = &mut s.child {
                let _ = c.kill();
            }
            ExitCode::FAILURE
        }
    }
}

fn sigset() -> libc::sigset_t {
    // SAFETY: sigemptyset/sigaddset initialise a local set.
    unsafe {
        let mut set: libc::sigset_t = std::mem::zeroed();
        libc::sigemptyset(&mut set);
        for s in SIGNALS {
            libc::sigaddset(&mut set, s);
        }
        set
    }
}

impl Supervisor {
    fn serve(&mut self) -> std::io::Result<ExitCode> {
        let set = sigset();
        // SAFETY: blocking our signals so that only the signalfd sees them.
        if unsafe { libc::sigprocmask(libc::SIG_BLOCK, &set, std::ptr::null_mut()) } != 0 {
            return Err(std::io::Error::last_os_error());
        }
        // SAFETY: a signalfd for the blocked set; the descriptor is ours.
        let sfd = unsafe { libc::signalfd(-1, &set, libc::SFD_CLOEXEC) };
        if sfd < 0 {
            return Err(std::io::Error::last_os_error());
        }
        // SAFETY: just created.
        let sfd = unsafe { <OwnedFd as std::os::fd::FromRawFd>::from_raw_fd(sfd) };
        self.spawn()?;
        loop {
            let mut fds = [
                libc::pollfd {
                    fd: sfd.as_raw_fd(),
                    events: libc::POLLIN,
                    revents: 0,
                },
                libc::pollfd {
                    fd: self.channel.as_ref().map_or(-1, |c| c.as_raw_fd()),
                    events: libc::POLLIN,
                    revents: 0,
                },
            ];
            // SAFETY: two valid pollfd entries (a negative fd is ignored by poll).
            let n = unsafe { libc::poll(fds.as_mut_ptr(), 2, 1000) };
            if n < 0 {
                let e = std::io::Error::last_os_error();
                if e.kind() == std::io::ErrorKind::Interrupted {
                    continue;
                }
                return Err(e);
            }
            if fds[1].revents != 0 {
                self.channel_message();
            }
            if fds[0].revents & libc::POLLIN != 0 {
                // SAFETY: an all-zero siginfo is valid; read fills it.
                let mut info: libc::signalfd_siginfo = unsafe { std::mem::zeroed() };
                // SAFETY: reading one siginfo into a buffer of its size.
                let r = unsafe {
                    libc::read(
                        sfd.as_raw_fd(),
                        (&raw mut info).cast(),
                        std::mem::size_of::<libc::signalfd_siginfo>(),
                    )
                };
                if r > 0
                    && let Some(code) = self.signal(info.ssi_signo as i32)?
                {
                    return Ok(code);
                }
            }
            if let Some(at) = self.upgrading
                && at.elapsed() > HANDOVER_TIMEOUT
                && let Some(c) = &mut self.child
            {
                log("the worker did not hand over in time: killed");
                let _ = c.kill();
                self.upgrading = Some(Instant::now());
            }
        }
    }

    /// Starts a worker with every held descriptor.
    fn spawn(&mut self) -> std::io::Result<()> {
        let (ours, theirs) = fds::channel_pair()?;
        let manifest =
            fds::write_manifest(self.held.iter().map(|(t, f)| (t.as_str(), f.as_raw_fd())))?;
        let mut passed: Vec<RawFd> = self.held.values().map(|f| f.as_raw_fd()).collect();
        passed.push(theirs.as_raw_fd());
        passed.push(manifest.as_raw_fd());
        let parent = std::process::id() as i32;
        let mut cmd = Command::new(&self.exe);
        cmd.args(&self.args)
            .env(
                ENV_WORKER,
                format!("{},{}", theirs.as_raw_fd(), manifest.as_raw_fd()),
            )
            .env_remove(ENV_SUPERVISOR);
        // SAFETY: only async-signal-safe calls between fork and exec (sigprocmask, prctl,
        // getppid, fcntl, _exit) over memory prepared before the fork.
        unsafe {
            cmd.pre_exec(move || {
                let mut empty: libc::sigset_t = std::mem::zeroed();
                libc::sigemptyset(&mut empty);
                libc::sigprocmask(libc::SIG_SETMASK, &empty, std::ptr::null_mut());
                // The worker never outlives us: a supervisor killed with its tree (container
                // restart) takes the worker along, and the next start adopts what is pinned.
                libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL);
                if libc::getppid() != parent {
                    libc::_exit(1);
                }
                for &fd in &passed {
                    libc::fcntl(fd, libc::F_SETFD, 0);
                }
                Ok(())
            });
        }
        let child = cmd.spawn()?;
        log(&format!(
            "worker {} started with {} sockets",
            child.id(),
            self.held.len()
        ));
        self.child = Some(child);
        self.channel = Some(ours);
        self.ready = false;
        Ok(())
    }

    fn channel_message(&mut self) {
        let Some(c) = &self.channel else { return };
        match fds::recv(c.as_fd()) {
            Ok(Some((text, fd))) => {
                let (verb, token) = text.split_once(' ').unwrap_or((text.as_str(), ""));
                match (verb, fd) {
                    (msg::HOLD, Some(fd)) => {
                        self.held.insert(token.to_string(), fd);
                    }
                    (msg::RELEASE, _) => {
                        self.held.remove(token);
                    }
                    (msg::READY, _) => {
                        self.ready = true;
                        log("worker ready");
                    }
                    (msg::UPGRADE, _) => self.begin_upgrade(),
                    _ => log(&format!("unknown message {text:?}")),
                }
            }
            // The worker is gone (its exit arrives as SIGCHLD).
            Ok(None) | Err(_) => self.channel = None,
        }
    }

    fn begin_upgrade(&mut self) {
        if self.upgrading.is_some() || self.stopping {
            return;
        }
        log("upgrade: the worker hands over");
        self.upgrading = Some(Instant::now());
        self.forward(libc::SIGUSR2);
    }

    fn forward(&self, signal: i32) {
        if let Some(c) = &self.child {
            // SAFETY: signalling our own child.
            unsafe { libc::kill(c.id() as i32, signal) };
        }
    }

    /// Handles one signal; `Some` when the supervisor is done.
    fn signal(&mut self, signal: i32) -> std::io::Result<Option<ExitCode>> {
        match signal {
            libc::SIGTERM | libc::SIGINT => {
                self.stopping = true;
                self.forward(signal);
            }
            libc::SIGHUP => self.forward(signal),
            libc::SIGUSR2 => self.begin_upgrade(),
            libc::SIGCHLD => {
                let Some(child) = &mut self.child else {
                    return Ok(None);
                };
                let Some(status) = child.try_wait()? else {
                    return Ok(None);
                };
                self.child = None;
                self.channel = None;
                return self.worker_exited(status);
            }
            _ => {}
        }
        Ok(None)
    }

    fn worker_exited(
        &mut self,
        status: std::process::ExitStatus,
    ) -> std::io::Result<Option<ExitCode>> {
        let code = status.code();
        if self.stopping {
            log(&format!("worker stopped ({status})"));
            return Ok(Some(ExitCode::from(code.unwrap_or(1).clamp(0, 255) as u8)));
        }
        if self.upgrading.is_some() || code == Some(EXIT_HANDED_OVER) {
            let e = self.exec_upgrade();
            log(&format!(
                "upgrade failed ({e}): starting a worker of this binary again"
            ));
            self.upgrading = None;
            self.spawn()?;
            return Ok(None);
        }
        if code == Some(0) {
            log("worker exited");
            return Ok(Some(ExitCode::SUCCESS));
        }
        if !self.ready && code.is_some() {
            // A start that failed (config, capabilities): not something a restart mends.
            return Ok(Some(ExitCode::from(code.unwrap_or(1).clamp(1, 255) as u8)));
        }
        let now = Instant::now();
        self.restarts
            .retain(|t| now.duration_since(*t) < RESTART_WINDOW);
        if self.restarts.len() >= MAX_RESTARTS {
            log(&format!(
                "worker died ({status}) {MAX_RESTARTS} times within {RESTART_WINDOW:?}: giving up; the data path stays pinned for the next start"
            ));
            return Ok(Some(ExitCode::FAILURE));
        }
        self.restarts.push_back(now);
        let signal = status
            .signal()
            .map_or(String::new(), |s| format!(" by signal {s}"));
        log(&format!(
            "worker died ({status}{signal}): restarting with the sessions"
        ));
        self.spawn()?;
        Ok(None)
    }

    /// Replaces this process with the binary at our path (the new version), passing every held
    /// descriptor. Returns only on failure.
    fn exec_upgrade(&mut self) -> std::io::Error {
        let manifest =
            match fds::write_manifest(self.held.iter().map(|(t, f)| (t.as_str(), f.as_raw_fd()))) {
                Ok(m) => m,
                Err(e) => return e,
            };
        for f in self.held.values() {
            // SAFETY: clearing close-on-exec on descriptors we own, for the exec below.
            unsafe { libc::fcntl(f.as_raw_fd(), libc::F_SETFD, 0) };
        }
        // SAFETY: as above.
        unsafe { libc::fcntl(manifest.as_raw_fd(), libc::F_SETFD, 0) };
        log(&format!(
            "upgrade: exec {} with {} sockets",
            self.exe.display(),
            self.held.len()
        ));
        let mut cmd = Command::new(&self.exe);
        cmd.args(&self.args)
            .env(ENV_SUPERVISOR, manifest.as_raw_fd().to_string())
            .env_remove(ENV_WORKER);
        // Only returns on failure.
        cmd.exec()
    }
}
