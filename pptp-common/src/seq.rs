//! GRE sequence number arithmetic (RFC 1982 serial numbers, 32 bits).

/// True when `a` comes after `b` in sequence space, across the 2^32 wrap.
pub const fn seq_after(a: u32, b: u32) -> bool {
    (a.wrapping_sub(b) as i32) > 0
}

/// The widest receive window: one bit per sequence number in a `u64`.
pub const MAX_WINDOW: u32 = 64;

/// The receive state of a session's sequence numbers: the highest received, and which of the
/// `MAX_WINDOW` numbers up to it have arrived (bit `d` of `seen` = `highest - d`), as IPsec's
/// anti-replay window does it (RFC 4303 §3.4.3). The GRE sequence number is not integrity
/// protected, so this does not stop a forger; it tells reordering from duplication.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RxWindow {
    pub highest: u32,
    pub seen: u64,
}

/// What the window says about a received sequence number.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Arrival {
    /// New: accept it, and the window becomes this.
    Accept(RxWindow),
    /// Received already.
    Duplicate,
    /// Older than the window reaches.
    TooOld,
}

impl RxWindow {
    /// The window after the first number received.
    pub const fn first(seq: u32) -> Self {
        Self {
            highest: seq,
            seen: 1,
        }
    }

    /// Judges `seq` against a window of `size` numbers (1..=64; 1 accepts only numbers after the
    /// highest, the strict late-drop pptp.ko does). Packets are delivered in arrival order: the
    /// window only decides which are new.
    pub const fn arrival(self, seq: u32, size: u32) -> Arrival {
        if seq_after(seq, self.highest) {
            let ahead = seq.wrapping_sub(self.highest);
            let seen = if ahead >= MAX_WINDOW {
                1
            } else {
                (self.seen << ahead) | 1
            };
            return Arrival::Accept(Self { highest: seq, seen });
        }
        let behind = self.highest.wrapping_sub(seq);
        let size = if size > MAX_WINDOW { MAX_WINDOW } else { size };
        if behind >= size {
            return Arrival::TooOld;
        }
        let bit = 1u64 << behind;
        if self.seen & bit != 0 {
            Arrival::Duplicate
        } else {
            Arrival::Accept(Self {
                highest: self.highest,
                seen: self.seen | bit,
            })
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_receive_window() {
        use Arrival::*;
        let w = RxWindow::first(100);
        let accept = |w: RxWindow, seq| match w.arrival(seq, 64) {
            Accept(n) => n,
            other => panic!("{seq}: {other:?}"),
        };
        // In order.
        let w = accept(w, 101);
        assert_eq!(
            w,
            RxWindow {
                highest: 101,
                seen: 0b11
            }
        );
        // Swapped: 103 before 102; then 102 is new, and a duplicate after.
        let w = accept(w, 103);
        assert_eq!(w.seen, 0b1101);
        let w = accept(w, 102);
        assert_eq!(
            w,
            RxWindow {
                highest: 103,
                seen: 0b1111
            }
        );
        assert_eq!(w.arrival(102, 64), Duplicate);
        assert_eq!(w.arrival(103, 64), Duplicate);
        // Far behind: 64 back is outside, 63 back inside (and new).
        assert_eq!(w.arrival(103 - 64, 64), TooOld);
        assert!(matches!(w.arrival(103 - 63, 64), Accept(_)));
        // A smaller window; size 1 is strict late-drop.
        assert_eq!(w.arrival(100, 3), TooOld);
        assert_eq!(w.arrival(101, 1), TooOld);
        // Far ahead: the window restarts there; what was in it is now too old.
        let w = accept(w, 103 + 1000);
        assert_eq!(
            w,
            RxWindow {
                highest: 1103,
                seen: 1
            }
        );
        assert_eq!(w.arrival(103, 64), TooOld);
        // Ahead by exactly 63 and 64: the old highest stays in reach or falls out.
        assert_eq!(accept(w, 1103 + 63).seen, (1 << 63) | 1);
        assert_eq!(accept(w, 1103 + 64).seen, 1);
        // Around 2^32.
        let w = RxWindow::first(u32::MAX - 1);
        let w = accept(w, 1);
        assert_eq!(
            w,
            RxWindow {
                highest: 1,
                seen: 0b1001
            }
        );
        let w = accept(w, u32::MAX);
        let w = accept(w, 0);
        assert_eq!(w.seen, 0b1111);
        assert_eq!(w.arrival(u32::MAX, 64), Duplicate);
        // More than half the space "ahead" is behind (serial arithmetic): too old.
        assert_eq!(w.arrival(1u32.wrapping_add(1 << 31), 64), TooOld);
    }

    #[test]
    fn ordering_and_wrap() {
        assert!(seq_after(1, 0));
        assert!(!seq_after(0, 0));
        assert!(!seq_after(0, 1));
        assert!(seq_after(0, u32::MAX));
        assert!(seq_after(5, u32::MAX - 5));
        assert!(!seq_after(u32::MAX - 5, 5));
    }
}
