//! Enhanced GRE packets (RFC 2637 §4.1) for the slow path. Which headers are valid is decided by
//! `pptp_common::gre`, the same rules the XDP program applies.

use pptp_common::gre::{GreShape, PROTO_PPP, classify};
use thiserror::Error;

use super::cursor::{Reader, Truncated, Writer};

#[derive(Clone, Copy, Debug, Error, PartialEq, Eq)]
pub enum Error {
    #[error("GRE version {0} is not enhanced GRE")]
    NotPptp(u16),
    #[error("malformed enhanced GRE header: {0:?}")]
    Malformed(pptp_common::stats::DropReason),
    #[error("payload length {declared} disagrees with {present} bytes present")]
    BadPayloadLength { declared: u16, present: usize },
    #[error("payload without a sequence number")]
    PayloadWithoutSequence,
    #[error(transparent)]
    Truncated(#[from] Truncated),
}

/// An enhanced GRE header. `seq` is present iff the packet carries payload (data packets) or not
/// (ack-only packets); `ack` acknowledges the highest sequence number received from the peer.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct GreHeader {
    /// The receiver's call ID (the key's low 16 bits).
    pub call_id: u16,
    pub seq: Option<u32>,
    pub ack: Option<u32>,
}

impl GreHeader {
    fn shape(&self) -> GreShape {
        GreShape {
            has_seq: self.seq.is_some(),
            has_ack: self.ack.is_some(),
        }
    }

    pub fn header_len(&self) -> usize {
        self.shape().header_len()
    }

    /// Parses a GRE packet (starting at the GRE header), returning the header and the payload.
    pub fn parse(bytes: &[u8]) -> Result<(GreHeader, &[u8]), Error> {
        let mut r = Reader::new(bytes);
        let flags_version = r.u16()?;
        let protocol = r.u16()?;
        let shape = match classify(flags_version, protocol) {
            Ok(Some(shape)) => shape,
            Ok(None) => {
                return Err(Error::NotPptp(
                    flags_version & pptp_common::gre::VERSION_MASK,
                ));
            }
            Err(reason) => return Err(Error::Malformed(reason)),
        };
        let payload_len = r.u16()?;
        let call_id = r.u16()?;
        let seq = if shape.has_seq { Some(r.u32()?) } else { None };
        let ack = if shape.has_ack { Some(r.u32()?) } else { None };
        let payload = r.rest();
        if payload.len() != payload_len as usize {
            return Err(Error::BadPayloadLength {
                declared: payload_len,
                present: payload.len(),
            });
        }
        if seq.is_none() && !payload.is_empty() {
            return Err(Error::PayloadWithoutSequence);
        }
        Ok((GreHeader { call_id, seq, ack }, payload))
    }

    /// Appends header and payload.
    pub fn emit(&self, payload: &[u8], buf: &mut Vec<u8>) {
        debug_assert!(self.seq.is_some() || payload.is_empty());
        let mut w = Writer::new(buf);
        w.u16(self.shape().flags_version())
            .u16(PROTO_PPP)
            .u16(payload.len() as u16)
            .u16(self.call_id);
        if let Some(s) = self.seq {
            w.u32(s);
        }
        if let Some(a) = self.ack {
            w.u32(a);
        }
        w.bytes(payload);
    }
}

#[cfg(test)]
mod tests {
    use pptp_common::stats::DropReason;

    use super::*;

    #[test]
    fn data_packet_from_pptp_linux() {
        // K+S, version 1, 0x880b, 4 bytes payload, call ID 0x0080, seq 0, LCP start "ff 03 c0 21".
        let bytes = [
            0x30, 0x01, 0x88, 0x0b, 0, 4, 0, 0x80, 0, 0, 0, 0, 0xff, 0x03, 0xc0, 0x21,
        ];
        let (h, payload) = GreHeader::parse(&bytes).unwrap();
        assert_eq!(
            h,
            GreHeader {
                call_id: 0x80,
                seq: Some(0),
                ack: None
            }
        );
        assert_eq!(payload, &[0xff, 0x03, 0xc0, 0x21]);
        let mut out = Vec::new();
        h.emit(payload, &mut out);
        assert_eq!(out, bytes);
    }

    #[test]
    fn ack_only_and_seq_ack() {
        let ack_only = [0x20, 0x81, 0x88, 0x0b, 0, 0, 0x12, 0x34, 0, 0, 1, 0];
        let (h, p) = GreHeader::parse(&ack_only).unwrap();
        assert_eq!(
            h,
            GreHeader {
                call_id: 0x1234,
                seq: None,
                ack: Some(256)
            }
        );
        assert!(p.is_empty());
        let mut out = Vec::new();
        h.emit(p, &mut out);
        assert_eq!(out, ack_only);

        let h = GreHeader {
            call_id: 1,
            seq: Some(u32::MAX),
            ack: Some(3),
        };
        let mut out = Vec::new();
        h.emit(&[1, 2, 3], &mut out);
        assert_eq!(out.len(), 16 + 3);
        assert_eq!(GreHeader::parse(&out).unwrap(), (h, &[1u8, 2, 3][..]));
    }

    #[test]
    fn hostile() {
        let good = [
            0x30, 0x01, 0x88, 0x0b, 0, 2, 0, 0x80, 0, 0, 0, 9, 0xff, 0x03,
        ];
        for n in 0..12 {
            assert!(
                matches!(GreHeader::parse(&good[..n]), Err(Error::Truncated(_))),
                "{n}"
            );
        }
        assert_eq!(
            GreHeader::parse(&good[..13]),
            Err(Error::BadPayloadLength {
                declared: 2,
                present: 1
            })
        );
        let mut b = good;
        b[1] = 0;
        assert_eq!(GreHeader::parse(&b), Err(Error::NotPptp(0)));
        let mut b = good;
        b[0] = 0x10;
        assert_eq!(
            GreHeader::parse(&b),
            Err(Error::Malformed(DropReason::GreBadFlags))
        );
        let mut b = good;
        b[2] = 0x08;
        b[3] = 0x00;
        assert_eq!(
            GreHeader::parse(&b),
            Err(Error::Malformed(DropReason::GreBadProtocol))
        );
        // Payload but no S flag: 8-byte header, then 2 payload bytes.
        let no_seq = [0x20, 0x01, 0x88, 0x0b, 0, 2, 0, 0x80, 0xff, 0x03];
        assert_eq!(
            GreHeader::parse(&no_seq),
            Err(Error::PayloadWithoutSequence)
        );
    }
}
