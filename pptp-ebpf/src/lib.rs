//! Empty on purpose: the programs are in `main.rs`. A library target lets the controller declare a
//! build-dependency on this crate so cargo rebuilds it when the eBPF sources change.
#![no_std]
