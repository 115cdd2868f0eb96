//! A whole PPP link (LCP, authentication, IPCP, CCP, keepalive) fed arbitrary frames of arbitrary
//! protocols, timer expiries and shell decisions: never panics, only ever emits frames that parse.
#![no_main]
use libfuzzer_sys::fuzz_target;
use pptp_user::{
    auth::authenticator::Secret,
    ppp::{
        ipcp::IpcpConfig,
        link::{DownReason, Link, LinkConfig, LinkOutput, LinkTimer},
    },
    wire::{cp::CpPacket, ppp::proto},
};

const PROTOCOLS: [u16; 8] = [proto::LCP, proto::PAP, proto::CHAP, proto::IPCP, proto::CCP, proto::IPV6CP, proto::IPV4, 0x8281];
const TIMERS: [LinkTimer; 5] = [LinkTimer::Lcp, LinkTimer::Auth, LinkTimer::Ipcp, LinkTimer::Ccp, LinkTimer::Echo];

fn check(out: &[LinkOutput]) {
    for o in out {
        if let LinkOutput::Send { protocol, info } = o
            && matches!(*protocol, proto::LCP | proto::IPCP | proto::CCP)
        {
            assert!(CpPacket::parse(info).is_ok());
        }
    }
}

fuzz_target!(|data: &[u8]| {
    let (mut link, out) = Link::new(LinkConfig::default(), 7);
    check(&out);
    let ipcp = IpcpConfig {
        local: [10, 0, 0, 1].into(),
        assigned: [10, 0, 0, 2].into(),
        dns: [None, None],
        nbns: [None, None],
    };
    let mut rest = data;
    while let [sel, len, tail @ ..] = rest {
        let n = usize::from(*len).min(tail.len());
        let (pkt, next) = tail.split_at(n);
        rest = next;
        let out = match sel % 11 {
            0..=7 => link.receive(PROTOCOLS[usize::from(sel % 8)], pkt, |_| Some(Secret::Plain("pw".into()))),
            8 => link.timeout(TIMERS[usize::from(*len) % TIMERS.len()]),
            9 => link.start_network(ipcp.clone()),
            _ => link.refuse_network(DownReason::Closed, "no address"),
        };
        check(&out);
    }
});
