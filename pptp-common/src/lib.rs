//! The contract between the pptpgw eBPF programs and the controller.
//!
//! Everything here is `#![no_std]`, `#[repr(C)]` and free of `bool`/enum fields in map values, so
//! that the kernel side (built for `bpfel-unknown-none`) and userspace read the same bytes. Pure
//! arithmetic both sides need (header shapes, sequence comparison) lives here too, unit-tested on
//! the host.
#![no_std]

pub mod checksum;
pub mod gre;
pub mod headers;
pub mod maps;
pub mod mppe;
pub mod rate;
pub mod seq;
pub mod session;
pub mod stats;
