//! IPCP, server side (RFC 1332, RFC 1877): hand the client its address and name servers.
//!
//! We request only our own address. The client gets its assigned address by Nak (also when it
//! did not ask for one: RFC 1661 §5.3 lets a Nak suggest options the request lacked), DNS/NBNS
//! by Nak when configured, and Reject for VJ compression and anything else.

use std::net::Ipv4Addr;

use super::fsm::{Negotiator, Verdict};
use crate::wire::{
    cp::parse_options,
    ipcp::{IpcpOption, kind},
};

#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct IpcpConfig {
    /// Our end of the point-to-point link, as the client sees it.
    pub local: Ipv4Addr,
    /// The client's address (from the pool).
    pub assigned: Ipv4Addr,
    pub dns: [Option<Ipv4Addr>; 2],
    pub nbns: [Option<Ipv4Addr>; 2],
}

pub struct IpcpPolicy {
    config: IpcpConfig,
    send_address: bool,
}

impl IpcpPolicy {
    pub fn new(config: IpcpConfig) -> Self {
        Self {
            config,
            send_address: true,
        }
    }

    pub fn config(&self) -> &IpcpConfig {
        &self.config
    }

    /// What we hand out for an address-valued option, `None` if we do not do that option.
    fn ours(&self, kind: u8) -> Option<Ipv4Addr> {
        match kind {
            kind::IP_ADDRESS => Some(self.config.assigned),
            kind::PRIMARY_DNS => self.config.dns[0],
            kind::SECONDARY_DNS => self.config.dns[1],
            kind::PRIMARY_NBNS => self.config.nbns[0],
            kind::SECONDARY_NBNS => self.config.nbns[1],
            _ => None,
        }
    }
}

impl Negotiator for IpcpPolicy {
    fn request(&mut self) -> Vec<u8> {
        let mut buf = Vec::new();
        if self.send_address {
            IpcpOption::Address {
                kind: kind::IP_ADDRESS,
                addr: self.config.local,
            }
            .emit(&mut buf);
        }
        buf
    }

    fn check(&mut self, options: &[u8], reject_only: bool) -> Verdict {
        let Ok(raws) = parse_options(options) else {
            return Verdict::Discard;
        };
        let mut naks = Vec::new();
        let mut rejects = Vec::new();
        let mut saw_address = false;
        for raw in &raws {
            match IpcpOption::decode(raw) {
                IpcpOption::Address { kind, addr } => match self.ours(kind) {
                    Some(want) => {
                        saw_address |= kind == kind::IP_ADDRESS;
                        if addr != want {
                            IpcpOption::Address { kind, addr: want }.emit(&mut naks);
                        }
                    }
                    None => raw.emit(&mut rejects),
                },
                IpcpOption::Other { .. } => raw.emit(&mut rejects),
            }
        }
        if !rejects.is_empty() {
            return Verdict::Reject(rejects);
        }
        if !saw_address && !reject_only {
            IpcpOption::Address {
                kind: kind::IP_ADDRESS,
                addr: self.config.assigned,
            }
            .emit(&mut naks);
        }
        match (naks.is_empty(), reject_only) {
            (true, _) => Verdict::Ack,
            (false, false) => Verdict::Nak(naks),
            (false, true) => Verdict::Reject(naks),
        }
    }

    fn acked(&mut self, options: &[u8]) -> bool {
        options == self.request().as_slice()
    }

    fn nakked(&mut self, options: &[u8]) -> bool {
        // Our address is not negotiable: we ask for it again as it is.
        parse_options(options).is_ok()
    }

    fn rejected(&mut self, options: &[u8]) -> bool {
        let Ok(raws) = parse_options(options) else {
            return false;
        };
        if raws.iter().any(|r| r.kind == kind::IP_ADDRESS) {
            self.send_address = false;
        }
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

    fn config() -> IpcpConfig {
        IpcpConfig {
            local: Ipv4Addr::new(10, 99, 0, 1),
            assigned: Ipv4Addr::new(10, 99, 0, 10),
            dns: [Some(Ipv4Addr::new(10, 99, 0, 53)), None],
            nbns: [None, None],
        }
    }

    fn reply(f: &mut Fsm<IpcpPolicy>, bytes: &[u8]) -> (u8, Vec<u8>) {
        let out = f.receive(&CpPacket::parse(bytes).unwrap());
        out.into_iter()
            .find_map(|o| match o {
                Output::Send { code, data, .. } if code != 1 => Some((code, data)),
                _ => None,
            })
            .expect("a reply")
    }

    #[test]
    fn pppd_conversation() {
        let mut f = Fsm::new(IpcpPolicy::new(config()), Config::default());
        f.open();
        let out = f.up();
        assert!(out.contains(&Output::Send {
            code: 1,
            identifier: 1,
            data: vec![3, 6, 10, 99, 0, 1]
        }));
        // pppd: compress VJ, address 0, DNS 0 and 0 → VJ rejected first.
        let first = [
            1, 1, 0, 28, 2, 6, 0, 0x2d, 0x0f, 0x01, 3, 6, 0, 0, 0, 0, 129, 6, 0, 0, 0, 0, 131, 6,
            0, 0, 0, 0,
        ];
        let (code, data) = reply(&mut f, &first);
        assert_eq!(
            (code, data),
            (4, vec![2, 6, 0, 0x2d, 0x0f, 0x01, 131, 6, 0, 0, 0, 0])
        );
        // Without them: address and DNS nak'd with ours.
        let second = [1, 2, 0, 16, 3, 6, 0, 0, 0, 0, 129, 6, 0, 0, 0, 0];
        assert_eq!(
            reply(&mut f, &second),
            (3, vec![3, 6, 10, 99, 0, 10, 129, 6, 10, 99, 0, 53])
        );
        let third = [1, 3, 0, 16, 3, 6, 10, 99, 0, 10, 129, 6, 10, 99, 0, 53];
        assert_eq!(reply(&mut f, &third), (2, third[4..].to_vec()));
        let out = f.receive(&CpPacket::parse(&[2, 1, 0, 10, 3, 6, 10, 99, 0, 1]).unwrap());
        assert!(out.contains(&Output::Up));
    }

    #[test]
    fn client_without_address_option_is_told_its_address() {
        let mut f = Fsm::new(IpcpPolicy::new(config()), Config::default());
        f.open();
        f.up();
        assert_eq!(reply(&mut f, &[1, 1, 0, 4]), (3, vec![3, 6, 10, 99, 0, 10]));
    }
}
