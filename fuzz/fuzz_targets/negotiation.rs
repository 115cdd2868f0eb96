//! LCP, IPCP and CCP automata and the authenticators fed a sequence of arbitrary packets and
//! timeouts: never panic, never send a packet they could not parse themselves.
#![no_main]
use libfuzzer_sys::fuzz_target;
use pptp_user::{
    auth::authenticator::{AuthConfig, Authenticator, Secret},
    ppp::{
        ccp::{CcpPolicy, MppePolicy, StatefulMppe},
        fsm::{Config, Fsm, Output},
        ipcp::{IpcpConfig, IpcpPolicy},
        lcp::{Lcp, LcpConfig},
    },
    wire::{cp::CpPacket, lcp::AuthProtocol},
};

fn check(out: &[Output]) {
    for o in out {
        if let Output::Send { code, identifier, data } = o {
            let bytes = CpPacket { code: *code, identifier: *identifier, data }.to_bytes();
            assert!(CpPacket::parse(&bytes).is_ok());
        }
    }
}

fuzz_target!(|data: &[u8]| {
    let mut lcp = Lcp::new(LcpConfig::default(), 0x1234_5678, Config::default());
    let ipcp_cfg = IpcpConfig {
        local: [10, 0, 0, 1].into(),
        assigned: [10, 0, 0, 2].into(),
        dns: [Some([10, 0, 0, 53].into()), None],
        nbns: [None, None],
    };
    let mut ipcp = Fsm::new(IpcpPolicy::new(ipcp_cfg), Config::default());
    let mut ccp = Fsm::new(
        CcpPolicy::new(MppePolicy::Require, true, StatefulMppe::Allow),
        Config::default(),
    );
    let mut auth = Authenticator::new(AuthProtocol::MsChapV2, AuthConfig::default());
    check(&lcp.fsm.open());
    check(&lcp.fsm.up());
    ipcp.open();
    ipcp.up();
    ccp.open();
    ccp.up();
    auth.start(&[1; 16], 1);
    // Records: [selector, len, bytes...]
    let mut rest = data;
    while let [sel, len, tail @ ..] = rest {
        let n = usize::from(*len).min(tail.len());
        let (pkt, next) = tail.split_at(n);
        rest = next;
        match sel % 5 {
            0 => check(&lcp.receive(pkt)),
            1 => {
                if let Ok(p) = CpPacket::parse(pkt) {
                    check(&ipcp.receive(&p));
                }
            }
            2 => {
                if let Ok(p) = CpPacket::parse(pkt) {
                    check(&ccp.receive(&p));
                }
            }
            3 => {
                let _ = auth.receive(pkt, |_| Some(Secret::Plain("x".into())), [2; 16]);
            }
            _ => {
                check(&lcp.fsm.timeout());
                check(&ipcp.timeout());
                let _ = auth.timeout();
            }
        }
    }
});
