//! pptpgw controller library: everything `pptpgw` does, usable from tests and tools.
pub mod auth;
pub mod datapath;
pub mod ppp;
pub mod wire;
