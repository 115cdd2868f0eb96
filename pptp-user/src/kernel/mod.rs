//! Everything that talks to the kernel: the eBPF object and its maps (`datapath`), the sequence
//! space shared with the programs through a mapped page (`seqspace`), the raw GRE socket of the
//! slow path (`slowpath`), `pptp0` (`netdev`), the client routes (`route`), the controller's IPv6 packets into `pptp0` (`inject`) and the watch on
//! routing changes that keeps the next-hop caches honest (`routewatch`). The pure core never
//! calls these; the tokio shell (`server`) does.
pub mod datapath;
pub mod inject;
pub mod netdev;
pub mod pins;
pub mod route;
pub mod routewatch;
pub mod seqspace;
pub mod slowpath;
