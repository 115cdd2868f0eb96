//! When a session's accounting Start goes out. `SessionUp` is the moment the session carries
//! data (IPv4 up, or IPv6 alone); the Start waits a little longer, until IPv6 has settled: its
//! /64 live, IPV6CP refused or not run. A dual-stack session's Start then names both families'
//! addresses, as accel-ppp's does (it starts accounting once every NCP has come up or been
//! rejected). A client that lets IPV6CP hang is not waited for beyond [`WAIT`]: the Start goes
//! without the prefix and the first Interim names it.

use std::time::Duration;

use super::{Command, Gateway, SessionId, TimerKey};

/// The longest a Start waits for IPV6CP once the session is up. pppd and Windows answer our
/// IPV6CP request at once (Ack or Protocol-Reject); a retransmission or two fit in this.
pub(super) const WAIT: Duration = Duration::from_secs(10);

impl Gateway {
    /// The session came up: the Start is due within [`WAIT`] at the latest.
    pub(super) fn arm_accounting(&mut self, sid: SessionId, out: &mut Vec<Command>) {
        out.push(Command::SetTimer(TimerKey::AccountingStart(sid), WAIT));
    }

    /// Emits the Start if the session is up, not yet accounted, and IPv6 has settled (or
    /// `force`: the wait is over).
    pub(super) fn maybe_account(&mut self, sid: SessionId, force: bool, out: &mut Vec<Command>) {
        let Some(s) = self.sessions.get_mut(&sid) else {
            return;
        };
        if s.accounted || !s.routed {
            return;
        }
        if !force && s.link.ipv6_negotiating() && !s.ipv6.routed {
            return;
        }
        s.accounted = true;
        out.push(Command::CancelTimer(TimerKey::AccountingStart(sid)));
        out.push(Command::AccountingStart {
            session: sid,
            prefix6: s.ipv6.routed.then_some(s.map.prefix6),
        });
    }
}
