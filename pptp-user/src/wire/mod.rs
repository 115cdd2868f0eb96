//! Wire formats as pure codecs over byte slices: no I/O, every length checked, `parse` and `emit`
//! exact inverses.
pub mod ccp;
pub mod cp;
pub mod cursor;
pub mod dhcpv6;
pub mod gre;
pub mod icmpv6;
pub mod ipcp;
pub mod lcp;
pub mod ppp;
pub mod pptp;
