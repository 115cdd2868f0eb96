//! IPCP configuration options (RFC 1332, RFC 1877 for DNS/NBNS).

use std::net::Ipv4Addr;

use super::cp::RawOption;

pub mod kind {
    pub const IP_ADDRESSES: u8 = 1;
    pub const IP_COMPRESSION: u8 = 2;
    pub const IP_ADDRESS: u8 = 3;
    pub const PRIMARY_DNS: u8 = 129;
    pub const PRIMARY_NBNS: u8 = 130;
    pub const SECONDARY_DNS: u8 = 131;
    pub const SECONDARY_NBNS: u8 = 132;
}

/// A decoded IPCP option: the address-valued ones typed, everything else raw.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum IpcpOption {
    /// IP-Address (3) or one of the DNS/NBNS types (129–132), with its address.
    Address {
        kind: u8,
        addr: Ipv4Addr,
    },
    Other {
        kind: u8,
        value: Vec<u8>,
    },
}

impl IpcpOption {
    pub fn decode(raw: &RawOption<'_>) -> Self {
        match (raw.kind, raw.value) {
            (
                k @ (kind::IP_ADDRESS
                | kind::PRIMARY_DNS
                | kind::PRIMARY_NBNS
                | kind::SECONDARY_DNS
                | kind::SECONDARY_NBNS),
                &[a, b, c, d],
            ) => IpcpOption::Address {
                kind: k,
                addr: Ipv4Addr::new(a, b, c, d),
            },
            (kind, value) => IpcpOption::Other {
                kind,
                value: value.to_vec(),
            },
        }
    }

    pub fn emit(&self, buf: &mut Vec<u8>) {
        match self {
            IpcpOption::Address { kind, addr } => RawOption {
                kind: *kind,
                value: &addr.octets(),
            }
            .emit(buf),
            IpcpOption::Other { kind, value } => RawOption { kind: *kind, value }.emit(buf),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::wire::cp::parse_options;

    #[test]
    fn pppd_request_round_trips() {
        // pppd's first IPCP request: compress VJ 0f 01, address 0.0.0.0, DNS 0.0.0.0 twice.
        let bytes = [
            2, 6, 0, 0x2d, 0x0f, 0x01, 3, 6, 0, 0, 0, 0, 129, 6, 0, 0, 0, 0, 131, 6, 0, 0, 0, 0,
        ];
        let opts: Vec<IpcpOption> = parse_options(&bytes)
            .unwrap()
            .iter()
            .map(IpcpOption::decode)
            .collect();
        assert_eq!(
            opts[0],
            IpcpOption::Other {
                kind: 2,
                value: vec![0, 0x2d, 0x0f, 0x01]
            }
        );
        assert_eq!(
            opts[1],
            IpcpOption::Address {
                kind: 3,
                addr: Ipv4Addr::UNSPECIFIED
            }
        );
        let mut out = Vec::new();
        for o in &opts {
            o.emit(&mut out);
        }
        assert_eq!(out, bytes);
    }
}
