//! A PPTP client (the PNS side of RFC 2637 with PPP over enhanced GRE) built on pptpgw's own
//! protocol core: the test suite's client, and the load generator of the benchmarks.
//!
//! Pure parts: [`peer`] (the PPP link, client side) and [`responder`] (authenticating as the
//! peer). The shell: [`gre::GreMux`] (one raw GRE socket per process, demultiplexed by call ID)
//! and [`session`] (one task per call). The client carries data in userspace: it is a test tool,
//! not a data path.
pub mod gre;
pub mod mppe;
pub mod packet;
pub mod peer;
pub mod responder;
pub mod session;

pub use session::{DialConfig, DialError, Ended, PingReport, Session, SessionInfo, dial};
