//! pptpgw controller library: everything `pptpgw` does, usable from tests and tools.
pub mod admission;
pub mod api;
pub mod auth;
pub mod config;
pub mod control;
pub mod gateway;
pub mod handover;
pub mod kernel;
pub mod metrics;
pub mod pool;
pub mod pool6;
pub mod ppp;
pub mod radius;
pub mod ratelimit;
pub mod secrets;
pub mod server;
pub mod wire;
