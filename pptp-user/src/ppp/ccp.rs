//! CCP (RFC 1962) while MPPE is not enabled: we ask for nothing and reject every option, so a
//! client that allows no compression/encryption opens CCP empty and carries on, and a client that
//! requires MPPE learns it cannot have it (pppd then terminates LCP itself). The session logs
//! which of the two happened from [`CcpPolicy::client_offered_mppe`].

use super::fsm::{Negotiator, Verdict};
use crate::wire::{
    ccp::{CcpOption, mppe_bits},
    cp::parse_options,
};

#[derive(Default)]
pub struct CcpPolicy {
    pub client_offered_mppe: bool,
    /// The MPPE bits the client asked for, for the log line when it leaves over them.
    pub client_mppe_bits: u32,
}

impl CcpPolicy {
    /// A description of the client's MPPE request, e.g. "stateless 128-bit".
    pub fn describe_client_mppe(&self) -> String {
        let b = self.client_mppe_bits;
        let mut parts = Vec::new();
        if b & mppe_bits::STATELESS != 0 {
            parts.push("stateless");
        }
        for (bit, name) in [
            (mppe_bits::KEY_40, "40-bit"),
            (mppe_bits::KEY_56, "56-bit"),
            (mppe_bits::KEY_128, "128-bit"),
        ] {
            if b & bit != 0 {
                parts.push(name);
            }
        }
        parts.join(" ")
    }
}

impl Negotiator for CcpPolicy {
    fn request(&mut self) -> Vec<u8> {
        Vec::new()
    }

    fn check(&mut self, options: &[u8], _reject_only: bool) -> Verdict {
        let Ok(raws) = parse_options(options) else {
            return Verdict::Discard;
        };
        if raws.is_empty() {
            return Verdict::Ack;
        }
        for raw in &raws {
            if let CcpOption::Mppe(bits) = CcpOption::decode(raw) {
                self.client_offered_mppe = true;
                self.client_mppe_bits = bits;
            }
        }
        Verdict::Reject(options.to_vec())
    }

    fn acked(&mut self, options: &[u8]) -> bool {
        options.is_empty()
    }

    fn nakked(&mut self, _options: &[u8]) -> bool {
        true
    }

    fn rejected(&mut self, _options: &[u8]) -> bool {
        true
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{
        ppp::fsm::{Config, Fsm, Output},
        wire::cp::CpPacket,
    };

    #[test]
    fn mppe_offer_is_rejected_and_empty_ccp_opens() {
        let mut f = Fsm::new(CcpPolicy::default(), Config::default());
        f.open();
        let out = f.up();
        assert!(out.contains(&Output::Send {
            code: 1,
            identifier: 1,
            data: vec![]
        }));
        // pppd require-mppe-128: MPPE option 18, len 6, bits 0x01000040 (stateless, 128-bit).
        let req = [1, 1, 0, 10, 18, 6, 1, 0, 0, 0x40];
        let out = f.receive(&CpPacket::parse(&req).unwrap());
        assert_eq!(
            out,
            vec![Output::Send {
                code: 4,
                identifier: 1,
                data: req[4..].to_vec()
            }]
        );
        assert!(f.negotiator.client_offered_mppe);
        assert_eq!(f.negotiator.describe_client_mppe(), "stateless 128-bit");
        f.receive(&CpPacket::parse(&[1, 2, 0, 4]).unwrap());
        let out = f.receive(&CpPacket::parse(&[2, 1, 0, 4]).unwrap());
        assert!(out.contains(&Output::Up));
    }
}
