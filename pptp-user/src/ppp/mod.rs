//! PPP negotiation as pure state machines: inputs are events and received packets, outputs are
//! packets to send and timer/layer commands.
pub mod ccp;
pub mod fsm;
mod fsm_table;
pub mod ipcp;
pub mod ipv6cp;
pub mod lcp;
pub mod link;
