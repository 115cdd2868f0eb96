//! CCP configuration options (RFC 1962): MPPE/MPPC (type 18, RFC 3078 §2.1) typed, any other
//! compressor raw.

use super::cp::RawOption;

pub const KIND_MPPE: u8 = 18;

/// MPPE/MPPC supported-bits (RFC 3078 §2.1, RFC 3079 for the 56/128-bit keys).
pub mod mppe_bits {
    /// Stateless mode ("H").
    pub const STATELESS: u32 = 0x0100_0000;
    pub const KEY_40: u32 = 0x0000_0020;
    pub const KEY_56: u32 = 0x0000_0080;
    pub const KEY_128: u32 = 0x0000_0040;
    /// MPPC compression ("C"), which pptpgw never offers.
    pub const MPPC: u32 = 0x0000_0001;
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum CcpOption {
    Mppe(u32),
    Other { kind: u8, value: Vec<u8> },
}

impl CcpOption {
    pub fn decode(raw: &RawOption<'_>) -> Self {
        match (raw.kind, raw.value) {
            (KIND_MPPE, &[a, b, c, d]) => CcpOption::Mppe(u32::from_be_bytes([a, b, c, d])),
            (kind, value) => CcpOption::Other {
                kind,
                value: value.to_vec(),
            },
        }
    }

    pub fn emit(&self, buf: &mut Vec<u8>) {
        match self {
            CcpOption::Mppe(bits) => RawOption {
                kind: KIND_MPPE,
                value: &bits.to_be_bytes(),
            }
            .emit(buf),
            CcpOption::Other { kind, value } => RawOption { kind: *kind, value }.emit(buf),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::wire::cp::parse_options;

    #[test]
    fn pppd_require_mppe_128_and_deflate() {
        // MPPE stateless 128-bit, then Deflate (26) window 15.
        let bytes = [18, 6, 0x01, 0, 0, 0x40, 26, 4, 0x78, 0x00];
        let opts: Vec<CcpOption> = parse_options(&bytes)
            .unwrap()
            .iter()
            .map(CcpOption::decode)
            .collect();
        assert_eq!(
            opts[0],
            CcpOption::Mppe(mppe_bits::STATELESS | mppe_bits::KEY_128)
        );
        assert_eq!(
            opts[1],
            CcpOption::Other {
                kind: 26,
                value: vec![0x78, 0]
            }
        );
        let mut out = Vec::new();
        for o in &opts {
            o.emit(&mut out);
        }
        assert_eq!(out, bytes);
    }
}
