//! The RFC 1661 §4.1 state transition table, literally: `transition(state, event)` is one cell.

/// Automaton states (RFC 1661 §4.2), numbered as in the table.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum State {
    Initial = 0,
    Starting = 1,
    Closed = 2,
    Stopped = 3,
    Closing = 4,
    Stopping = 5,
    ReqSent = 6,
    AckRcvd = 7,
    AckSent = 8,
    Opened = 9,
}

impl State {
    pub const ALL: [State; 10] = [
        State::Initial,
        State::Starting,
        State::Closed,
        State::Stopped,
        State::Closing,
        State::Stopping,
        State::ReqSent,
        State::AckRcvd,
        State::AckSent,
        State::Opened,
    ];

    /// States in which the restart timer runs (RFC 1661 §4.6).
    pub const fn timer_running(self) -> bool {
        matches!(
            self,
            State::Closing | State::Stopping | State::ReqSent | State::AckRcvd | State::AckSent
        )
    }
}

/// Events (RFC 1661 §4.3).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Event {
    Up,
    Down,
    Open,
    Close,
    /// Timeout with the restart counter > 0.
    ToPlus,
    /// Timeout with the restart counter expired.
    ToMinus,
    /// Receive-Configure-Request, acceptable.
    RcrPlus,
    /// Receive-Configure-Request, not acceptable (Nak or Reject to send).
    RcrMinus,
    Rca,
    Rcn,
    Rtr,
    Rta,
    Ruc,
    /// Receive-Code-Reject or Protocol-Reject, permitted.
    RxjPlus,
    /// Receive-Code-Reject or Protocol-Reject, catastrophic.
    RxjMinus,
    /// Receive-Echo-Request/Reply or Discard-Request.
    Rxr,
}

impl Event {
    pub const ALL: [Event; 16] = [
        Event::Up,
        Event::Down,
        Event::Open,
        Event::Close,
        Event::ToPlus,
        Event::ToMinus,
        Event::RcrPlus,
        Event::RcrMinus,
        Event::Rca,
        Event::Rcn,
        Event::Rtr,
        Event::Rta,
        Event::Ruc,
        Event::RxjPlus,
        Event::RxjMinus,
        Event::Rxr,
    ];
}

/// Actions (RFC 1661 §4.4).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Action {
    /// This-Layer-Up.
    Tlu,
    /// This-Layer-Down.
    Tld,
    /// This-Layer-Started.
    Tls,
    /// This-Layer-Finished.
    Tlf,
    /// Initialize-Restart-Count.
    Irc,
    /// Zero-Restart-Count.
    Zrc,
    /// Send-Configure-Request.
    Scr,
    /// Send-Configure-Ack.
    Sca,
    /// Send-Configure-Nak (or Reject).
    Scn,
    /// Send-Terminate-Request.
    Str,
    /// Send-Terminate-Ack.
    Sta,
    /// Send-Code-Reject.
    Scj,
    /// Send-Echo-Reply.
    Ser,
}

/// A table cell: actions in order and the next state. `None` is the table's "-": an event that
/// cannot occur in that state (the caller logs and ignores it).
pub type Cell = Option<(&'static [Action], State)>;

/// One cell of the RFC 1661 §4.1 table. Options: no restart ('r' cells stay put), not passive
/// ('p' ignored: Stopped), crossed connections ('x') as in the table.
pub const fn transition(state: State, event: Event) -> Cell {
    use Action::*;
    use Event::*;
    use State::*;
    let cell: (&'static [Action], State) = match (event, state) {
        (Up, Initial) => (&[], Closed),
        (Up, Starting) => (&[Irc, Scr], ReqSent),
        (Up, _) => return None,

        (Down, Closed) => (&[], Initial),
        (Down, Stopped) => (&[Tls], Starting),
        (Down, Closing) => (&[], Initial),
        (Down, Stopping | ReqSent | AckRcvd | AckSent) => (&[], Starting),
        (Down, Opened) => (&[Tld], Starting),
        (Down, _) => return None,

        (Open, Initial) => (&[Tls], Starting),
        (Open, Starting) => (&[], Starting),
        (Open, Closed) => (&[Irc, Scr], ReqSent),
        (Open, Stopped) => (&[], Stopped),
        (Open, Closing | Stopping) => (&[], Stopping),
        (Open, s) => (&[], s),

        (Close, Initial) => (&[], Initial),
        (Close, Starting) => (&[Tlf], Initial),
        (Close, Closed | Stopped) => (&[], Closed),
        (Close, Closing | Stopping) => (&[], Closing),
        (Close, ReqSent | AckRcvd | AckSent) => (&[Irc, Str], Closing),
        (Close, Opened) => (&[Tld, Irc, Str], Closing),

        (ToPlus, Closing) => (&[Str], Closing),
        (ToPlus, Stopping) => (&[Str], Stopping),
        (ToPlus, ReqSent | AckRcvd) => (&[Scr], ReqSent),
        (ToPlus, AckSent) => (&[Scr], AckSent),
        (ToPlus, _) => return None,

        (ToMinus, Closing) => (&[Tlf], Closed),
        (ToMinus, Stopping | ReqSent | AckRcvd | AckSent) => (&[Tlf], Stopped),
        (ToMinus, _) => return None,

        (RcrPlus, Closed) => (&[Sta], Closed),
        (RcrPlus, Stopped) => (&[Irc, Scr, Sca], AckSent),
        (RcrPlus, Closing | Stopping) => (&[], state),
        (RcrPlus, ReqSent | AckSent) => (&[Sca], AckSent),
        (RcrPlus, AckRcvd) => (&[Sca, Tlu], Opened),
        (RcrPlus, Opened) => (&[Tld, Scr, Sca], AckSent),
        (RcrPlus, _) => return None,

        (RcrMinus, Closed) => (&[Sta], Closed),
        (RcrMinus, Stopped) => (&[Irc, Scr, Scn], ReqSent),
        (RcrMinus, Closing | Stopping) => (&[], state),
        (RcrMinus, ReqSent | AckSent) => (&[Scn], ReqSent),
        (RcrMinus, AckRcvd) => (&[Scn], AckRcvd),
        (RcrMinus, Opened) => (&[Tld, Scr, Scn], ReqSent),
        (RcrMinus, _) => return None,

        (Rca, Closed | Stopped) => (&[Sta], state),
        (Rca, Closing | Stopping) => (&[], state),
        (Rca, ReqSent) => (&[Irc], AckRcvd),
        (Rca, AckRcvd) => (&[Scr], ReqSent),
        (Rca, AckSent) => (&[Irc, Tlu], Opened),
        (Rca, Opened) => (&[Tld, Scr], ReqSent),
        (Rca, _) => return None,

        (Rcn, Closed | Stopped) => (&[Sta], state),
        (Rcn, Closing | Stopping) => (&[], state),
        (Rcn, ReqSent) => (&[Irc, Scr], ReqSent),
        (Rcn, AckRcvd) => (&[Scr], ReqSent),
        (Rcn, AckSent) => (&[Irc, Scr], AckSent),
        (Rcn, Opened) => (&[Tld, Scr], ReqSent),
        (Rcn, _) => return None,

        (Rtr, Closed | Stopped | Closing | Stopping) => (&[Sta], state),
        (Rtr, ReqSent | AckRcvd | AckSent) => (&[Sta], ReqSent),
        (Rtr, Opened) => (&[Tld, Zrc, Sta], Stopping),
        (Rtr, _) => return None,

        (Rta, Closed | Stopped) => (&[], state),
        (Rta, Closing) => (&[Tlf], Closed),
        (Rta, Stopping) => (&[Tlf], Stopped),
        (Rta, ReqSent | AckRcvd) => (&[], ReqSent),
        (Rta, AckSent) => (&[], AckSent),
        (Rta, Opened) => (&[Tld, Scr], ReqSent),
        (Rta, _) => return None,

        (Ruc, Initial | Starting) => return None,
        (Ruc, s) => (&[Scj], s),

        (RxjPlus, Initial | Starting) => return None,
        (RxjPlus, AckRcvd) => (&[], ReqSent),
        (RxjPlus, s) => (&[], s),

        (RxjMinus, Closed | Closing) => (&[Tlf], Closed),
        (RxjMinus, Stopped | Stopping | ReqSent | AckRcvd | AckSent) => (&[Tlf], Stopped),
        (RxjMinus, Opened) => (&[Tld, Irc, Str], Stopping),
        (RxjMinus, _) => return None,

        (Rxr, Initial | Starting) => return None,
        (Rxr, Opened) => (&[Ser], Opened),
        (Rxr, s) => (&[], s),
    };
    Some(cell)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// RFC 1661 §4.1's table as printed (restart and passive options off: "3r" is 3, "3p" is 3,
    /// "6x" is 6). Parsed independently of `transition` and compared cell by cell.
    const RFC_TABLE: &str = "
     Up   |  2        irc,scr/6 -         -         -         -         -         -         -           -
     Down |  -        -         0         tls/1     0         1         1         1         1           tld/1
     Open |  tls/1    1         irc,scr/6 3         5         5         6         7         8           9
     Close|  0        tlf/0     2         2         4         4         irc,str/4 irc,str/4 irc,str/4   tld,irc,str/4
     TO+  |  -        -         -         -         str/4     str/5     scr/6     scr/6     scr/8       -
     TO-  |  -        -         -         -         tlf/2     tlf/3     tlf/3     tlf/3     tlf/3       -
     RCR+ |  -        -         sta/2     irc,scr,sca/8 4     5         sca/8     sca,tlu/9 sca/8       tld,scr,sca/8
     RCR- |  -        -         sta/2     irc,scr,scn/6 4     5         scn/6     scn/7     scn/6       tld,scr,scn/6
     RCA  |  -        -         sta/2     sta/3     4         5         irc/7     scr/6     irc,tlu/9   tld,scr/6
     RCN  |  -        -         sta/2     sta/3     4         5         irc,scr/6 scr/6     irc,scr/8   tld,scr/6
     RTR  |  -        -         sta/2     sta/3     sta/4     sta/5     sta/6     sta/6     sta/6       tld,zrc,sta/5
     RTA  |  -        -         2         3         tlf/2     tlf/3     6         6         8           tld,scr/6
     RUC  |  -        -         scj/2     scj/3     scj/4     scj/5     scj/6     scj/7     scj/8       scj/9
     RXJ+ |  -        -         2         3         4         5         6         6         8           9
     RXJ- |  -        -         tlf/2     tlf/3     tlf/2     tlf/3     tlf/3     tlf/3     tlf/3       tld,irc,str/5
     RXR  |  -        -         2         3         4         5         6         7         8           ser/9
    ";

    fn action(name: &str) -> Action {
        match name {
            "tlu" => Action::Tlu,
            "tld" => Action::Tld,
            "tls" => Action::Tls,
            "tlf" => Action::Tlf,
            "irc" => Action::Irc,
            "zrc" => Action::Zrc,
            "scr" => Action::Scr,
            "sca" => Action::Sca,
            "scn" => Action::Scn,
            "str" => Action::Str,
            "sta" => Action::Sta,
            "scj" => Action::Scj,
            "ser" => Action::Ser,
            other => panic!("unknown action {other}"),
        }
    }

    #[test]
    fn all_160_cells_match_rfc_1661() {
        let rows: Vec<&str> = RFC_TABLE
            .lines()
            .map(str::trim)
            .filter(|l| !l.is_empty())
            .collect();
        assert_eq!(rows.len(), 16);
        let mut checked = 0;
        for (row, event) in rows.iter().zip(Event::ALL) {
            let cells: Vec<&str> = row.split('|').nth(1).unwrap().split_whitespace().collect();
            assert_eq!(cells.len(), 10, "{row}");
            for (cell, state) in cells.iter().zip(State::ALL) {
                let expected: Option<(Vec<Action>, State)> = match *cell {
                    "-" => None,
                    c => {
                        let (acts, next) = c.rsplit_once('/').unwrap_or(("", c));
                        let acts = acts
                            .split(',')
                            .filter(|a| !a.is_empty())
                            .map(action)
                            .collect();
                        let next: usize = next.parse().unwrap();
                        Some((acts, State::ALL[next]))
                    }
                };
                let got = transition(state, event).map(|(a, s)| (a.to_vec(), s));
                assert_eq!(got, expected, "{event:?} in {state:?}");
                checked += 1;
            }
        }
        assert_eq!(checked, 160);
    }
}
