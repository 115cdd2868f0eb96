//! pptpgw controller library: everything `pptpgw` does, usable from tests and tools.
pub mod api;
pub mod auth;
pub mod config;
pub mod control;
pub mod datapath;
pub mod gateway;
pub mod metrics;
pub mod netdev;
pub mod pool;
pub mod ppp;
pub mod ratelimit;
pub mod route;
pub mod secrets;
pub mod seqspace;
pub mod server;
pub mod slowpath;
pub mod wire;
