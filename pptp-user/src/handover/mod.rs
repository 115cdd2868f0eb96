//! Hitless restart: a crash or an upgrade of the controller drops no session. The data path
//! outlives the process by itself (pinned maps and links, `kernel::pins`); what else a session
//! needs is here:
//!
//! - `supervisor`: `pptpgw run`, a small process that holds a copy of every socket clients
//!   depend on and runs the worker (the tokio shell and the core) as its child, starting a new
//!   one when it dies and `exec`ing the new binary on an upgrade;
//! - `fds`: how descriptors go to the supervisor (`SCM_RIGHTS`) and come back to a new worker
//!   (inherited, named by a manifest);
//! - `journal`: the up sessions, in a file that outlives the processes, from which a new
//!   worker rebuilds each one (`Gateway::restore`).
pub mod fds;
pub mod journal;
pub mod supervisor;
