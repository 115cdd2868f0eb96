//! Enhanced GRE (RFC 2637 §4.1) as PPTP uses it: which headers are ours and how long they are.
//!
//! One definition of the rules, used by the XDP program on every packet and by the controller's
//! codec, so the fast path and the slow path can never disagree about what a valid header is.

use crate::stats::DropReason;

pub const FLAG_CHECKSUM: u16 = 0x8000;
pub const FLAG_ROUTING: u16 = 0x4000;
pub const FLAG_KEY: u16 = 0x2000;
pub const FLAG_SEQ: u16 = 0x1000;
pub const FLAG_STRICT_ROUTE: u16 = 0x0800;
pub const RECURSION_MASK: u16 = 0x0700;
pub const FLAG_ACK: u16 = 0x0080;
pub const RESERVED_FLAGS_MASK: u16 = 0x0078;
pub const VERSION_MASK: u16 = 0x0007;

/// GRE version 1 is only ever enhanced GRE, i.e. PPTP.
pub const VERSION_PPTP: u16 = 1;
/// GRE protocol type for PPP.
pub const PROTO_PPP: u16 = 0x880b;

/// Bits that RFC 2637 requires to be zero: C, R, s, Recur and the reserved flags.
const MUST_BE_ZERO: u16 =
    FLAG_CHECKSUM | FLAG_ROUTING | FLAG_STRICT_ROUTE | RECURSION_MASK | RESERVED_FLAGS_MASK;

/// Which optional fields an enhanced GRE header carries.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct GreShape {
    pub has_seq: bool,
    pub has_ack: bool,
}

impl GreShape {
    /// Header length in bytes: 8 fixed, +4 for a sequence number, +4 for an acknowledgement.
    pub const fn header_len(self) -> usize {
        crate::headers::GRE_FIXED_LEN + 4 * (self.has_seq as usize) + 4 * (self.has_ack as usize)
    }

    /// Offset of the acknowledgement number within the header, when present. An ack-only packet
    /// (S=0) carries it right after the key, in the slot a sequence number would take.
    pub const fn ack_offset(self) -> usize {
        crate::headers::GRE_FIXED_LEN + 4 * (self.has_seq as usize)
    }

    /// The flags/version word of a header of this shape.
    pub const fn flags_version(self) -> u16 {
        let mut v = FLAG_KEY | VERSION_PPTP;
        if self.has_seq {
            v |= FLAG_SEQ;
        }
        if self.has_ack {
            v |= FLAG_ACK;
        }
        v
    }
}

/// Classifies a GRE header by its first four bytes.
///
/// `Ok(None)`: not enhanced GRE (another GRE version, e.g. a GRE v0 tunnel of the host): not ours,
/// leave it to the kernel. `Ok(Some(shape))`: a well-formed PPTP header. `Err`: version 1 but
/// malformed, which nobody else can want either.
pub const fn classify(flags_version: u16, protocol: u16) -> Result<Option<GreShape>, DropReason> {
    if flags_version & VERSION_MASK != VERSION_PPTP {
        return Ok(None);
    }
    if protocol != PROTO_PPP {
        return Err(DropReason::GreBadProtocol);
    }
    // RFC 2637 §4.1: the key is mandatory (it holds the call ID); C, R, s, Recur are zero.
    if flags_version & FLAG_KEY == 0 || flags_version & MUST_BE_ZERO != 0 {
        return Err(DropReason::GreBadFlags);
    }
    Ok(Some(GreShape {
        has_seq: flags_version & FLAG_SEQ != 0,
        has_ack: flags_version & FLAG_ACK != 0,
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pptp_linux_data_header() {
        // pptp-linux sends 0x3001 (K, S, version 1) with protocol 0x880b.
        let shape = classify(0x3001, 0x880b).unwrap().unwrap();
        assert_eq!(
            shape,
            GreShape {
                has_seq: true,
                has_ack: false
            }
        );
        assert_eq!(shape.header_len(), 12);
        assert_eq!(shape.flags_version(), 0x3001);
    }

    #[test]
    fn seq_and_ack_and_ack_only() {
        let both = classify(0x3081, 0x880b).unwrap().unwrap();
        assert_eq!(both.header_len(), 16);
        assert_eq!(both.ack_offset(), 12);
        let ack_only = classify(0x2081, 0x880b).unwrap().unwrap();
        assert_eq!(
            ack_only,
            GreShape {
                has_seq: false,
                has_ack: true
            }
        );
        assert_eq!(ack_only.header_len(), 12);
        assert_eq!(ack_only.ack_offset(), 8);
        assert_eq!(ack_only.flags_version(), 0x2081);
    }

    #[test]
    fn other_gre_versions_are_not_ours() {
        assert_eq!(classify(0x0000, 0x0800), Ok(None));
        assert_eq!(classify(0x2000, 0x6558), Ok(None));
    }

    #[test]
    fn malformed_version_1() {
        assert_eq!(classify(0x3001, 0x0800), Err(DropReason::GreBadProtocol));
        assert_eq!(classify(0x1001, 0x880b), Err(DropReason::GreBadFlags)); // no key
        assert_eq!(classify(0xb001, 0x880b), Err(DropReason::GreBadFlags)); // checksum
        assert_eq!(classify(0x7001, 0x880b), Err(DropReason::GreBadFlags)); // routing
        assert_eq!(classify(0x3101, 0x880b), Err(DropReason::GreBadFlags)); // recursion
        assert_eq!(classify(0x3009, 0x880b), Err(DropReason::GreBadFlags)); // reserved flag
    }
}
