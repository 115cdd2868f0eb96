//! The PPTP control connection (RFC 2637): state machine here, the TCP shell with the controller.
pub mod connection;
