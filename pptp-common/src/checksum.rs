//! Incremental Internet checksum update (RFC 1624, eqn. 3), for rewriting a 16-bit field of a
//! header without summing the whole header again (TCP MSS clamping).

/// The checksum after a 16-bit word of the covered data changed from `old` to `new`.
/// All values host order, as read with `u16::from_be_bytes`.
pub const fn replace16(check: u16, old: u16, new: u16) -> u16 {
    // HC' = ~(~HC + ~m + m')
    let mut sum = (!check as u32) + (!old as u32) + (new as u32);
    sum = (sum & 0xffff) + (sum >> 16);
    sum = (sum & 0xffff) + (sum >> 16);
    !(sum as u16)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn full(words: &[u16]) -> u16 {
        let mut sum: u32 = words.iter().map(|&w| w as u32).sum();
        while sum > 0xffff {
            sum = (sum & 0xffff) + (sum >> 16);
        }
        !(sum as u16)
    }

    #[test]
    fn matches_a_full_recomputation() {
        let mut words = [
            0x4500, 0x0073, 0x0000, 0x4000, 0x4011, 0xc0a8, 0x0001, 0xc0a8, 0x00c7, 0x05b4,
        ];
        let check = full(&words);
        for new in [0x0000, 0x0001, 0x0578, 0x05b4, 0xffff, 0x8000] {
            let old = words[9];
            let updated = replace16(check, old, new);
            words[9] = new;
            assert_eq!(updated, full(&words), "new {new:#06x}");
            words[9] = old;
        }
    }

    #[test]
    fn a_ttl_decrement_matches_a_full_recomputation() {
        // A real header (ping from 10.99.0.2 to 203.0.113.5), TTL 64 down to 2, then the corner
        // where the sum is 0xffff.
        let mut words = [
            0x4500, 0x0054, 0x1c46, 0x4000, 0x4001, 0x0000, 0x0a63, 0x0002, 0xcb00, 0x7105,
        ];
        words[5] = full(&words);
        for _ in 0..62 {
            let old = words[4];
            let new = old - 0x0100;
            let check = replace16(words[5], old, new);
            words[4] = new;
            words[5] = 0;
            assert_eq!(check, full(&words), "ttl {}", new >> 8);
            words[5] = check;
        }
    }
}
