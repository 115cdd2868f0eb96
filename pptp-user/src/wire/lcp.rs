//! LCP configuration options (RFC 1661 §6, RFC 1994 §3 for the CHAP algorithm byte, RFC 2433/2759
//! for the Microsoft algorithms).

use super::cp::RawOption;
use super::ppp::proto;

pub mod kind {
    pub const MRU: u8 = 1;
    pub const ACCM: u8 = 2;
    pub const AUTH_PROTOCOL: u8 = 3;
    pub const QUALITY_PROTOCOL: u8 = 4;
    pub const MAGIC_NUMBER: u8 = 5;
    pub const PFC: u8 = 7;
    pub const ACFC: u8 = 8;
}

/// CHAP algorithm bytes.
pub const CHAP_MD5: u8 = 5;
pub const CHAP_MS_V1: u8 = 0x80;
pub const CHAP_MS_V2: u8 = 0x81;

/// An authentication protocol as LCP names it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
pub enum AuthProtocol {
    Pap,
    ChapMd5,
    MsChapV1,
    MsChapV2,
}

impl AuthProtocol {
    /// The option's value bytes: protocol and, for CHAP, the algorithm.
    pub fn value(self) -> &'static [u8] {
        match self {
            AuthProtocol::Pap => &[0xc0, 0x23],
            AuthProtocol::ChapMd5 => &[0xc2, 0x23, CHAP_MD5],
            AuthProtocol::MsChapV1 => &[0xc2, 0x23, CHAP_MS_V1],
            AuthProtocol::MsChapV2 => &[0xc2, 0x23, CHAP_MS_V2],
        }
    }

    pub fn from_value(v: &[u8]) -> Option<Self> {
        match v {
            [0xc0, 0x23, ..] => Some(AuthProtocol::Pap),
            [0xc2, 0x23, CHAP_MD5] => Some(AuthProtocol::ChapMd5),
            [0xc2, 0x23, CHAP_MS_V1] => Some(AuthProtocol::MsChapV1),
            [0xc2, 0x23, CHAP_MS_V2] => Some(AuthProtocol::MsChapV2),
            _ => None,
        }
    }

    pub fn ppp_protocol(self) -> u16 {
        match self {
            AuthProtocol::Pap => proto::PAP,
            _ => proto::CHAP,
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            AuthProtocol::Pap => "pap",
            AuthProtocol::ChapMd5 => "chap-md5",
            AuthProtocol::MsChapV1 => "mschap-v1",
            AuthProtocol::MsChapV2 => "mschap-v2",
        }
    }
}

/// A decoded LCP option. Options of unknown type, and known types with a value of the wrong
/// length, stay raw: the policy rejects them as they came.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum LcpOption {
    Mru(u16),
    Accm(u32),
    /// Protocol (and algorithm) bytes as received; [`AuthProtocol::from_value`] names known ones.
    AuthProtocol(Vec<u8>),
    MagicNumber(u32),
    Pfc,
    Acfc,
    Other {
        kind: u8,
        value: Vec<u8>,
    },
}

impl LcpOption {
    pub fn decode(raw: &RawOption<'_>) -> Self {
        let v = raw.value;
        match (raw.kind, v.len()) {
            (kind::MRU, 2) => LcpOption::Mru(u16::from_be_bytes([v[0], v[1]])),
            (kind::ACCM, 4) => LcpOption::Accm(u32::from_be_bytes([v[0], v[1], v[2], v[3]])),
            (kind::AUTH_PROTOCOL, n) if n >= 2 => LcpOption::AuthProtocol(v.to_vec()),
            (kind::MAGIC_NUMBER, 4) => {
                LcpOption::MagicNumber(u32::from_be_bytes([v[0], v[1], v[2], v[3]]))
            }
            (kind::PFC, 0) => LcpOption::Pfc,
            (kind::ACFC, 0) => LcpOption::Acfc,
            (kind, _) => LcpOption::Other {
                kind,
                value: v.to_vec(),
            },
        }
    }

    pub fn emit(&self, buf: &mut Vec<u8>) {
        let (kind, value): (u8, Vec<u8>) = match self {
            LcpOption::Mru(m) => (kind::MRU, m.to_be_bytes().to_vec()),
            LcpOption::Accm(a) => (kind::ACCM, a.to_be_bytes().to_vec()),
            LcpOption::AuthProtocol(v) => (kind::AUTH_PROTOCOL, v.clone()),
            LcpOption::MagicNumber(m) => (kind::MAGIC_NUMBER, m.to_be_bytes().to_vec()),
            LcpOption::Pfc => (kind::PFC, vec![]),
            LcpOption::Acfc => (kind::ACFC, vec![]),
            LcpOption::Other { kind, value } => (*kind, value.clone()),
        };
        RawOption {
            kind,
            value: &value,
        }
        .emit(buf);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::wire::cp::parse_options;

    #[test]
    fn decode_and_emit_are_inverse() {
        // MRU 1400, ACCM 0, auth MS-CHAPv2, magic, PFC, ACFC, an unknown type, a short MRU.
        let bytes = [
            1, 4, 0x05, 0x78, 2, 6, 0, 0, 0, 0, 3, 5, 0xc2, 0x23, 0x81, 5, 6, 1, 2, 3, 4, 7, 2, 8,
            2, 0x11, 4, 0x05, 0xdc, 1, 3, 9,
        ];
        let raws = parse_options(&bytes).unwrap();
        let opts: Vec<LcpOption> = raws.iter().map(LcpOption::decode).collect();
        assert_eq!(opts[0], LcpOption::Mru(1400));
        assert_eq!(opts[1], LcpOption::Accm(0));
        assert_eq!(opts[2], LcpOption::AuthProtocol(vec![0xc2, 0x23, 0x81]));
        assert_eq!(
            AuthProtocol::from_value(&[0xc2, 0x23, 0x81]),
            Some(AuthProtocol::MsChapV2)
        );
        assert_eq!(opts[3], LcpOption::MagicNumber(0x01020304));
        assert_eq!(opts[4], LcpOption::Pfc);
        assert_eq!(opts[5], LcpOption::Acfc);
        assert_eq!(
            opts[6],
            LcpOption::Other {
                kind: 0x11,
                value: vec![0x05, 0xdc]
            }
        );
        assert_eq!(
            opts[7],
            LcpOption::Other {
                kind: 1,
                value: vec![9]
            },
            "MRU of the wrong length"
        );
        let mut out = Vec::new();
        for o in &opts {
            o.emit(&mut out);
        }
        assert_eq!(out, bytes);
    }
}
