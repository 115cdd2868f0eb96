//! PPP frames (RFC 1661 §2) as carried in GRE: optional address/control `FF 03` (omitted under
//! ACFC, RFC 1661 §6.6), and a protocol field of two bytes or, under PFC, one (§6.5).

use thiserror::Error;

use super::cursor::Truncated;

/// PPP protocol numbers used here.
pub mod proto {
    pub const IPV4: u16 = 0x0021;
    pub const IPV6: u16 = 0x0057;
    /// Compressed datagram: MPPE/MPPC (RFC 1962, 3078).
    pub const COMPRESSED: u16 = 0x00fd;
    pub const IPCP: u16 = 0x8021;
    pub const IPV6CP: u16 = 0x8057;
    pub const CCP: u16 = 0x80fd;
    pub const LCP: u16 = 0xc021;
    pub const PAP: u16 = 0xc023;
    pub const CHAP: u16 = 0xc223;
}

#[derive(Clone, Copy, Debug, Error, PartialEq, Eq)]
pub enum Error {
    #[error("invalid PPP protocol field {0:#06x}")]
    BadProtocol(u16),
    #[error("address/control field {0:#04x} {1:#04x} is not FF 03")]
    BadAddressControl(u8, u8),
    #[error(transparent)]
    Truncated(#[from] Truncated),
}

/// How a frame was (or is to be) compressed.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Compression {
    /// Address and control omitted.
    pub acfc: bool,
    /// Protocol in one byte (only possible for protocols below 0x100).
    pub pfc: bool,
}

/// A PPP frame: protocol and information field.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PppFrame<'a> {
    pub protocol: u16,
    pub info: &'a [u8],
}

impl<'a> PppFrame<'a> {
    /// Parses a frame in whichever form the peer sent; the form is returned too. A receiver must
    /// accept uncompressed frames even after negotiating compression (RFC 1661 §6.5, §6.6).
    pub fn parse(bytes: &'a [u8]) -> Result<(Self, Compression), Error> {
        let mut rest = bytes;
        let mut form = Compression {
            acfc: true,
            pfc: false,
        };
        if let [0xff, b, tail @ ..] = rest {
            if *b != 0x03 {
                return Err(Error::BadAddressControl(0xff, *b));
            }
            form.acfc = false;
            rest = tail;
        }
        let (protocol, info) = match rest {
            // An odd first byte is a compressed (one-byte) protocol field.
            [p, tail @ ..] if p & 1 == 1 => {
                form.pfc = true;
                (u16::from(*p), tail)
            }
            [hi, lo, tail @ ..] => (u16::from_be_bytes([*hi, *lo]), tail),
            _ => {
                return Err(Error::Truncated(Truncated {
                    offset: bytes.len(),
                    needed: 2 - rest.len(),
                }));
            }
        };
        // RFC 1661 §2: the low byte is odd and the high byte even (an odd first byte was taken
        // as a one-byte field above, so only the low byte is left to check).
        if protocol & 0x0001 == 0 {
            return Err(Error::BadProtocol(protocol));
        }
        Ok((Self { protocol, info }, form))
    }

    /// Appends the frame in the given form (PFC applies only to protocols below 0x100).
    pub fn emit(&self, form: Compression, buf: &mut Vec<u8>) {
        if !form.acfc {
            buf.extend_from_slice(&[0xff, 0x03]);
        }
        if form.pfc && self.protocol < 0x100 {
            buf.push(self.protocol as u8);
        } else {
            buf.extend_from_slice(&self.protocol.to_be_bytes());
        }
        buf.extend_from_slice(self.info);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn all_four_forms_round_trip() {
        let cases: [(&[u8], u16, Compression); 4] = [
            (
                &[0xff, 0x03, 0x00, 0x21, 0x45],
                proto::IPV4,
                Compression {
                    acfc: false,
                    pfc: false,
                },
            ),
            (
                &[0xff, 0x03, 0x21, 0x45],
                proto::IPV4,
                Compression {
                    acfc: false,
                    pfc: true,
                },
            ),
            (
                &[0x00, 0x21, 0x45],
                proto::IPV4,
                Compression {
                    acfc: true,
                    pfc: false,
                },
            ),
            (
                &[0x21, 0x45],
                proto::IPV4,
                Compression {
                    acfc: true,
                    pfc: true,
                },
            ),
        ];
        for (bytes, protocol, form) in cases {
            let (f, got_form) = PppFrame::parse(bytes).unwrap();
            assert_eq!(
                (f.protocol, f.info, got_form),
                (protocol, &[0x45u8][..], form)
            );
            let mut out = Vec::new();
            f.emit(form, &mut out);
            assert_eq!(out, bytes);
        }
    }

    #[test]
    fn lcp_never_compressed_by_pfc() {
        let f = PppFrame {
            protocol: proto::LCP,
            info: &[1],
        };
        let mut out = Vec::new();
        f.emit(
            Compression {
                acfc: false,
                pfc: true,
            },
            &mut out,
        );
        assert_eq!(out, [0xff, 0x03, 0xc0, 0x21, 1]);
    }

    #[test]
    fn hostile() {
        assert!(matches!(PppFrame::parse(&[]), Err(Error::Truncated(_))));
        assert!(matches!(
            PppFrame::parse(&[0xff, 0x03]),
            Err(Error::Truncated(_))
        ));
        assert!(matches!(
            PppFrame::parse(&[0xff, 0x03, 0xc0]),
            Err(Error::Truncated(_))
        ));
        assert_eq!(
            PppFrame::parse(&[0xff, 0x05, 0, 0x21]),
            Err(Error::BadAddressControl(0xff, 5))
        );
        assert_eq!(
            PppFrame::parse(&[0xc0, 0x20]),
            Err(Error::BadProtocol(0xc020))
        );
        assert_eq!(
            PppFrame::parse(&[0x02, 0x20]),
            Err(Error::BadProtocol(0x0220))
        );
    }
}
