//! Control-protocol packets and LCP/IPCP option lists: never panic; decode/emit are inverse.
#![no_main]
use libfuzzer_sys::fuzz_target;
use pptp_user::wire::{
    cp::{CpPacket, emit_options, parse_options},
    ipcp::IpcpOption,
    lcp::LcpOption,
};

fuzz_target!(|data: &[u8]| {
    if let Ok(p) = CpPacket::parse(data) {
        assert_eq!(p.to_bytes(), &data[..4 + p.data.len()]);
    }
    if let Ok(raws) = parse_options(data) {
        assert_eq!(emit_options(&raws), data);
        let mut lcp = Vec::new();
        let mut ipcp = Vec::new();
        for r in &raws {
            LcpOption::decode(r).emit(&mut lcp);
            IpcpOption::decode(r).emit(&mut ipcp);
        }
        assert_eq!(lcp, data);
        assert_eq!(ipcp, data);
    }
});
