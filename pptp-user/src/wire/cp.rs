//! Packets of the PPP control protocols that share the RFC 1661 §5 format (LCP, IPCP, CCP), and
//! their Type-Length-Value configuration options.

use thiserror::Error;

use super::cursor::{Reader, Truncated, Writer};

/// Packet codes (RFC 1661 §5, RFC 1962 §1.1 for Reset-Request/Ack).
pub mod code {
    pub const CONFIGURE_REQUEST: u8 = 1;
    pub const CONFIGURE_ACK: u8 = 2;
    pub const CONFIGURE_NAK: u8 = 3;
    pub const CONFIGURE_REJECT: u8 = 4;
    pub const TERMINATE_REQUEST: u8 = 5;
    pub const TERMINATE_ACK: u8 = 6;
    pub const CODE_REJECT: u8 = 7;
    pub const PROTOCOL_REJECT: u8 = 8;
    pub const ECHO_REQUEST: u8 = 9;
    pub const ECHO_REPLY: u8 = 10;
    pub const DISCARD_REQUEST: u8 = 11;
    pub const RESET_REQUEST: u8 = 14;
    pub const RESET_ACK: u8 = 15;
}

pub const HEADER_LEN: usize = 4;

#[derive(Clone, Copy, Debug, Error, PartialEq, Eq)]
pub enum Error {
    #[error("length field {length} is below 4 or beyond the {present} bytes present")]
    BadLength { length: u16, present: usize },
    #[error("option at offset {offset} has length {length}")]
    BadOptionLength { offset: usize, length: u8 },
    #[error(transparent)]
    Truncated(#[from] Truncated),
}

/// A control protocol packet: code, identifier, and the data the length field covers. Bytes past
/// the length are padding and ignored (RFC 1661 §5).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct CpPacket<'a> {
    pub code: u8,
    pub identifier: u8,
    pub data: &'a [u8],
}

impl<'a> CpPacket<'a> {
    pub fn parse(bytes: &'a [u8]) -> Result<Self, Error> {
        let mut r = Reader::new(bytes);
        let code = r.u8()?;
        let identifier = r.u8()?;
        let length = r.u16()?;
        if (length as usize) < HEADER_LEN || length as usize > bytes.len() {
            return Err(Error::BadLength {
                length,
                present: bytes.len(),
            });
        }
        let data = r.take(length as usize - HEADER_LEN)?;
        Ok(Self {
            code,
            identifier,
            data,
        })
    }

    pub fn emit(&self, buf: &mut Vec<u8>) {
        Writer::new(buf)
            .u8(self.code)
            .u8(self.identifier)
            .u16((HEADER_LEN + self.data.len()) as u16)
            .bytes(self.data);
    }

    pub fn to_bytes(&self) -> Vec<u8> {
        let mut v = Vec::with_capacity(HEADER_LEN + self.data.len());
        self.emit(&mut v);
        v
    }
}

/// One configuration option, undecoded: type and value (the bytes after type and length).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RawOption<'a> {
    pub kind: u8,
    pub value: &'a [u8],
}

impl RawOption<'_> {
    pub fn emit(&self, buf: &mut Vec<u8>) {
        buf.push(self.kind);
        buf.push((self.value.len() + 2) as u8);
        buf.extend_from_slice(self.value);
    }
}

/// Splits the data of a Configure-Request/Ack/Nak/Reject into options. Any option with a length
/// below 2 or running past the end makes the whole list malformed: there is no way to find the
/// option after it.
pub fn parse_options(data: &[u8]) -> Result<Vec<RawOption<'_>>, Error> {
    let mut r = Reader::new(data);
    let mut out = Vec::new();
    while !r.is_empty() {
        let offset = r.position();
        let kind = r.u8()?;
        let length = r.u8()?;
        if length < 2 || length as usize - 2 > r.remaining() {
            return Err(Error::BadOptionLength { offset, length });
        }
        out.push(RawOption {
            kind,
            value: r.take(length as usize - 2)?,
        });
    }
    Ok(out)
}

pub fn emit_options<'a>(options: impl IntoIterator<Item = &'a RawOption<'a>>) -> Vec<u8> {
    let mut buf = Vec::new();
    for o in options {
        o.emit(&mut buf);
    }
    buf
}

#[cfg(test)]
mod tests {
    use super::*;

    /// LCP Configure-Request as pppd sends it through pptp-linux: asyncmap 0, magic, pcomp, accomp.
    const PPPD_LCP_CONFREQ: [u8; 24] = [
        0x01, 0x01, 0x00, 0x14, 0x02, 0x06, 0x00, 0x00, 0x00, 0x00, 0x05, 0x06, 0x3c, 0x5a, 0x1e,
        0x47, 0x07, 0x02, 0x08, 0x02, 0x00, 0x00, 0x00, 0x00,
    ];

    #[test]
    fn packet_and_options_round_trip() {
        let bytes = &PPPD_LCP_CONFREQ[..20];
        let p = CpPacket::parse(bytes).unwrap();
        assert_eq!(
            (p.code, p.identifier, p.data.len()),
            (code::CONFIGURE_REQUEST, 1, 16)
        );
        let opts = parse_options(p.data).unwrap();
        let kinds: Vec<u8> = opts.iter().map(|o| o.kind).collect();
        assert_eq!(kinds, [2, 5, 7, 8]);
        assert_eq!(opts[1].value, &[0x3c, 0x5a, 0x1e, 0x47]);
        assert_eq!(emit_options(&opts), p.data);
        assert_eq!(p.to_bytes(), bytes);
    }

    #[test]
    fn padding_past_length_is_ignored() {
        let mut padded = PPPD_LCP_CONFREQ;
        padded[3] = 20;
        let p = CpPacket::parse(&padded).unwrap();
        assert_eq!(p.data.len(), 16);
    }

    #[test]
    fn hostile() {
        assert!(matches!(
            CpPacket::parse(&[1, 1, 0]),
            Err(Error::Truncated(_))
        ));
        assert_eq!(
            CpPacket::parse(&[1, 1, 0, 3]),
            Err(Error::BadLength {
                length: 3,
                present: 4
            })
        );
        assert_eq!(
            CpPacket::parse(&[1, 1, 0, 9, 0]),
            Err(Error::BadLength {
                length: 9,
                present: 5
            })
        );
        assert_eq!(
            parse_options(&[1, 0]),
            Err(Error::BadOptionLength {
                offset: 0,
                length: 0
            })
        );
        assert_eq!(
            parse_options(&[1, 1]),
            Err(Error::BadOptionLength {
                offset: 0,
                length: 1
            })
        );
        assert_eq!(
            parse_options(&[7, 2, 1, 5, 0]),
            Err(Error::BadOptionLength {
                offset: 2,
                length: 5
            })
        );
        assert!(matches!(
            parse_options(&[7, 2, 1]),
            Err(Error::Truncated(_))
        ));
        assert_eq!(parse_options(&[]), Ok(vec![]));
    }
}
