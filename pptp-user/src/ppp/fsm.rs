//! The RFC 1661 option negotiation automaton, generic over a protocol's option policy.
//!
//! Pure and I/O-free: inputs are method calls (events and received packets), outputs are
//! [`Output`] values (packets to send, timer commands, layer up/down). LCP, IPCP and CCP each wrap
//! one `Fsm` with their own [`Negotiator`], as pppd's `fsm.c` does with callbacks.

use std::time::Duration;

use super::fsm_table::transition;
pub use super::fsm_table::{Action, Event, State};
use crate::wire::cp::{CpPacket, code};

/// Counters and timer of RFC 1661 §4.6, defaults as suggested there.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Config {
    pub restart_timer: Duration,
    pub max_terminate: u32,
    pub max_configure: u32,
    pub max_failure: u32,
}

impl Default for Config {
    fn default() -> Self {
        Self {
            restart_timer: Duration::from_secs(3),
            max_terminate: 2,
            max_configure: 10,
            max_failure: 5,
        }
    }
}

/// What to answer a peer's Configure-Request with.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Verdict {
    /// Every option acceptable: Configure-Ack echoing them.
    Ack,
    /// Configure-Nak with these options (suggested values).
    Nak(Vec<u8>),
    /// Configure-Reject with these options (unacceptable or unknown).
    Reject(Vec<u8>),
    /// The request is malformed (its option list cannot be split): drop it silently.
    Discard,
}

/// A protocol's option policy.
pub trait Negotiator {
    /// Options for our next Configure-Request.
    fn request(&mut self) -> Vec<u8>;
    /// Judges the peer's Configure-Request options. With `reject_only`, Max-Failure Naks were sent
    /// already: what would be Nak'd is Rejected instead (RFC 1661 §4.6).
    fn check(&mut self, options: &[u8], reject_only: bool) -> Verdict;
    /// The peer acked our request; false if the Ack does not match it (then it is discarded).
    fn acked(&mut self, options: &[u8]) -> bool;
    /// The peer Nak'd options of our request: adopt its suggestions for the next one. False if the
    /// Nak is malformed (discarded).
    fn nakked(&mut self, options: &[u8]) -> bool;
    /// The peer rejected options: stop asking for them. False if malformed (discarded).
    fn rejected(&mut self, options: &[u8]) -> bool;
}

/// Why the automaton reported a layer finished or went down.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Reason {
    /// Our side closed (administrative close).
    LocalClose,
    /// The lower layer went down.
    LowerDown,
    /// The peer sent Terminate-Request.
    PeerTerminated,
    /// No answer after Max-Configure / Max-Terminate requests.
    Timeout,
    /// The peer rejected something essential (RXJ-).
    Rejected,
    /// Options never converged after Max-Failure Naks and as many Rejects.
    NotConverging,
    /// The peer refused to authenticate (rejected every authentication protocol we offer).
    AuthRefused,
}

/// A command for the shell.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Output {
    /// Send a packet of this protocol: code, identifier, data.
    Send {
        code: u8,
        identifier: u8,
        data: Vec<u8>,
    },
    /// (Re)start the restart timer; [`Fsm::timeout`] when it fires.
    StartTimer(Duration),
    StopTimer,
    /// This-Layer-Up: the protocol is open.
    Up,
    /// This-Layer-Down.
    Down(Reason),
    /// This-Layer-Started: the lower layer is needed.
    Started,
    /// This-Layer-Finished: the lower layer is no longer needed.
    Finished(Reason),
    /// LCP only: the peer Protocol-Rejected this PPP protocol.
    ProtocolRejected(u16),
    /// LCP only: an Echo-Reply with this identifier arrived (keepalive).
    EchoReply(u8),
}

pub struct Fsm<N> {
    pub negotiator: N,
    config: Config,
    state: State,
    restart_count: u32,
    /// Naks and Rejects sent since the last Ack we sent.
    failures: u32,
    next_identifier: u8,
    /// Identifier of our outstanding Configure-Request; answers with another are discarded.
    request_identifier: Option<u8>,
    /// What the current event answers: set before an event, used by sca/scn/sta/scj.
    reply: Option<Reply>,
    reason: Reason,
    /// Data of our Terminate-Requests (empty unless closed with a message).
    terminate_message: Vec<u8>,
    out: Vec<Output>,
}

#[derive(Clone, Debug)]
enum Reply {
    Configure {
        identifier: u8,
        verdict: Verdict,
        options: Vec<u8>,
    },
    Terminate {
        identifier: u8,
    },
    CodeReject {
        packet: Vec<u8>,
    },
}

impl<N: Negotiator> Fsm<N> {
    pub fn new(negotiator: N, config: Config) -> Self {
        Self {
            negotiator,
            config,
            state: State::Initial,
            restart_count: 0,
            failures: 0,
            next_identifier: 1,
            request_identifier: None,
            reply: None,
            reason: Reason::LocalClose,
            terminate_message: Vec::new(),
            out: Vec::new(),
        }
    }

    /// An automaton already in the Opened state, as it was when its process handed it over
    /// (hitless restart): the negotiator holds what was agreed; nothing is sent.
    pub fn opened(negotiator: N, config: Config) -> Self {
        Self {
            state: State::Opened,
            ..Self::new(negotiator, config)
        }
    }

    pub fn state(&self) -> State {
        self.state
    }

    pub fn is_opened(&self) -> bool {
        self.state == State::Opened
    }

    pub fn up(&mut self) -> Vec<Output> {
        self.run(Event::Up)
    }

    pub fn down(&mut self) -> Vec<Output> {
        self.reason = Reason::LowerDown;
        self.run(Event::Down)
    }

    pub fn open(&mut self) -> Vec<Output> {
        self.run(Event::Open)
    }

    pub fn close(&mut self, reason: Reason) -> Vec<Output> {
        self.reason = reason;
        self.run(Event::Close)
    }

    /// Close, telling the peer why in the Terminate-Request's data (pppd logs it: "LCP
    /// terminated by peer (<message>)").
    pub fn close_with_message(&mut self, reason: Reason, message: &str) -> Vec<Output> {
        self.terminate_message = message.as_bytes().to_vec();
        self.close(reason)
    }

    /// The restart timer fired.
    pub fn timeout(&mut self) -> Vec<Output> {
        if !self.state.timer_running() {
            return Vec::new(); // a stale timer: ignore
        }
        if self.restart_count > 0 {
            self.run(Event::ToPlus)
        } else {
            self.reason = Reason::Timeout;
            self.run(Event::ToMinus)
        }
    }

    /// A received packet of codes 1–7; any other code is unknown to the generic automaton and
    /// answered with Code-Reject (protocols intercept the codes they define beyond 7 first).
    pub fn receive(&mut self, packet: &CpPacket<'_>) -> Vec<Output> {
        match packet.code {
            code::CONFIGURE_REQUEST => {
                let limit = self.config.max_failure;
                if self.failures >= 2 * limit
                    && !matches!(self.state, State::Closed | State::Stopped)
                {
                    // RFC 1661 §4.6 leaves this open; we end a negotiation that cannot converge.
                    return self.close(Reason::NotConverging);
                }
                let verdict = self.negotiator.check(packet.data, self.failures >= limit);
                if verdict == Verdict::Discard {
                    return Vec::new();
                }
                let event = if verdict == Verdict::Ack {
                    Event::RcrPlus
                } else {
                    Event::RcrMinus
                };
                self.reply = Some(Reply::Configure {
                    identifier: packet.identifier,
                    verdict,
                    options: packet.data.to_vec(),
                });
                self.run(event)
            }
            code::CONFIGURE_ACK | code::CONFIGURE_NAK | code::CONFIGURE_REJECT => {
                if self.request_identifier != Some(packet.identifier) {
                    return Vec::new(); // RFC 1661 §5.2: not an answer to our request: discard
                }
                let valid = match packet.code {
                    code::CONFIGURE_ACK => self.negotiator.acked(packet.data),
                    code::CONFIGURE_NAK => self.negotiator.nakked(packet.data),
                    _ => self.negotiator.rejected(packet.data),
                };
                if !valid {
                    return Vec::new();
                }
                self.request_identifier = None;
                let event = if packet.code == code::CONFIGURE_ACK {
                    Event::Rca
                } else {
                    Event::Rcn
                };
                self.run(event)
            }
            code::TERMINATE_REQUEST => {
                self.reply = Some(Reply::Terminate {
                    identifier: packet.identifier,
                });
                self.reason = Reason::PeerTerminated;
                self.run(Event::Rtr)
            }
            code::TERMINATE_ACK => self.run(Event::Rta),
            code::CODE_REJECT => {
                // Rejecting a code the automaton cannot do without is catastrophic (§5.6).
                let rejected = packet.data.first().copied().unwrap_or(0);
                if (code::CONFIGURE_REQUEST..=code::CODE_REJECT).contains(&rejected) {
                    self.reason = Reason::Rejected;
                    self.run(Event::RxjMinus)
                } else {
                    self.run(Event::RxjPlus)
                }
            }
            _ => {
                self.reply = Some(Reply::CodeReject {
                    packet: packet.to_bytes(),
                });
                self.run(Event::Ruc)
            }
        }
    }

    /// Feeds an event through the table and performs the cell's actions.
    pub fn run(&mut self, event: Event) -> Vec<Output> {
        let before = self.state;
        if let Some((actions, next)) = transition(self.state, event) {
            let sends_terminate = actions.contains(&Action::Str);
            for &a in actions {
                self.act(a, sends_terminate);
            }
            self.state = next;
            if before.timer_running() && !next.timer_running() {
                self.out.push(Output::StopTimer);
            }
            if next == State::Opened {
                self.failures = 0;
            }
        } else {
            tracing::debug!(?event, state = ?self.state, "event cannot occur in this state; ignored");
        }
        self.reply = None;
        std::mem::take(&mut self.out)
    }

    fn fresh_identifier(&mut self) -> u8 {
        let id = self.next_identifier;
        self.next_identifier = self.next_identifier.wrapping_add(1);
        id
    }

    fn act(&mut self, action: Action, sends_terminate: bool) {
        match action {
            Action::Tlu => self.out.push(Output::Up),
            Action::Tld => self.out.push(Output::Down(self.reason)),
            Action::Tls => self.out.push(Output::Started),
            Action::Tlf => self.out.push(Output::Finished(self.reason)),
            Action::Irc => {
                self.restart_count = if sends_terminate {
                    self.config.max_terminate
                } else {
                    self.config.max_configure
                };
            }
            Action::Zrc => {
                self.restart_count = 0;
                self.out.push(Output::StartTimer(self.config.restart_timer));
            }
            Action::Scr => {
                let identifier = self.fresh_identifier();
                self.request_identifier = Some(identifier);
                let data = self.negotiator.request();
                self.restart_count = self.restart_count.saturating_sub(1);
                self.out.push(Output::Send {
                    code: code::CONFIGURE_REQUEST,
                    identifier,
                    data,
                });
                self.out.push(Output::StartTimer(self.config.restart_timer));
            }
            Action::Str => {
                let identifier = self.fresh_identifier();
                self.restart_count = self.restart_count.saturating_sub(1);
                self.out.push(Output::Send {
                    code: code::TERMINATE_REQUEST,
                    identifier,
                    data: self.terminate_message.clone(),
                });
                self.out.push(Output::StartTimer(self.config.restart_timer));
            }
            Action::Sca | Action::Scn => {
                if let Some(Reply::Configure {
                    identifier,
                    verdict,
                    options,
                }) = self.reply.clone()
                {
                    let (code, data) = match verdict {
                        Verdict::Ack => (code::CONFIGURE_ACK, options),
                        Verdict::Nak(o) => (code::CONFIGURE_NAK, o),
                        Verdict::Reject(o) => (code::CONFIGURE_REJECT, o),
                        Verdict::Discard => return,
                    };
                    if code == code::CONFIGURE_ACK {
                        self.failures = 0;
                    } else {
                        self.failures += 1;
                    }
                    self.out.push(Output::Send {
                        code,
                        identifier,
                        data,
                    });
                }
            }
            Action::Sta => {
                // Answers a Terminate-Request with its identifier, anything else with a fresh one.
                let identifier = match self.reply {
                    Some(Reply::Terminate { identifier }) => identifier,
                    Some(Reply::Configure { identifier, .. }) => identifier,
                    _ => self.fresh_identifier(),
                };
                self.out.push(Output::Send {
                    code: code::TERMINATE_ACK,
                    identifier,
                    data: Vec::new(),
                });
            }
            Action::Scj => {
                if let Some(Reply::CodeReject { packet }) = self.reply.clone() {
                    let identifier = self.fresh_identifier();
                    self.out.push(Output::Send {
                        code: code::CODE_REJECT,
                        identifier,
                        data: packet,
                    });
                }
            }
            // Echo replies need the protocol's magic number: LCP answers them itself, in Opened.
            Action::Ser => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Requests one option (type 1, value [1]); acks requests equal to [1,3,7], naks others
    /// suggesting [1,3,7], or rejects them when told to.
    struct Simple;
    impl Negotiator for Simple {
        fn request(&mut self) -> Vec<u8> {
            vec![1, 3, 1]
        }
        fn check(&mut self, options: &[u8], reject_only: bool) -> Verdict {
            match (options == [1, 3, 7], reject_only) {
                (true, _) => Verdict::Ack,
                (false, false) => Verdict::Nak(vec![1, 3, 7]),
                (false, true) => Verdict::Reject(options.to_vec()),
            }
        }
        fn acked(&mut self, options: &[u8]) -> bool {
            options == [1, 3, 1]
        }
        fn nakked(&mut self, _: &[u8]) -> bool {
            true
        }
        fn rejected(&mut self, _: &[u8]) -> bool {
            true
        }
    }

    fn sends(out: &[Output]) -> Vec<(u8, u8)> {
        out.iter()
            .filter_map(|o| match o {
                Output::Send {
                    code, identifier, ..
                } => Some((*code, *identifier)),
                _ => None,
            })
            .collect()
    }

    fn pkt(code: u8, identifier: u8, data: &[u8]) -> CpPacket<'_> {
        CpPacket {
            code,
            identifier,
            data,
        }
    }

    #[test]
    fn opens_both_ways_and_terminates() {
        let mut f = Fsm::new(Simple, Config::default());
        assert_eq!(f.open(), vec![Output::Started]);
        let out = f.up();
        assert_eq!(sends(&out), vec![(code::CONFIGURE_REQUEST, 1)]);
        assert_eq!(f.state(), State::ReqSent);
        // Peer's request acked, ours acked: Opened.
        let out = f.receive(&pkt(code::CONFIGURE_REQUEST, 9, &[1, 3, 7]));
        assert_eq!(sends(&out), vec![(code::CONFIGURE_ACK, 9)]);
        assert_eq!(f.state(), State::AckSent);
        // An Ack with a stale identifier is discarded.
        assert!(
            f.receive(&pkt(code::CONFIGURE_ACK, 77, &[1, 3, 1]))
                .is_empty()
        );
        let out = f.receive(&pkt(code::CONFIGURE_ACK, 1, &[1, 3, 1]));
        assert_eq!(out, vec![Output::Up, Output::StopTimer]);
        assert!(f.is_opened());
        // Peer terminates.
        let out = f.receive(&pkt(code::TERMINATE_REQUEST, 4, &[]));
        assert_eq!(out[0], Output::Down(Reason::PeerTerminated));
        assert_eq!(sends(&out), vec![(code::TERMINATE_ACK, 4)]);
        assert_eq!(f.state(), State::Stopping);
        // Zero restart count: the next timeout finishes the layer.
        let out = f.timeout();
        assert!(out.contains(&Output::Finished(Reason::Timeout)), "{out:?}");
        assert_eq!(f.state(), State::Stopped);
    }

    #[test]
    fn unanswered_requests_give_up_after_max_configure() {
        let config = Config {
            max_configure: 4,
            ..Config::default()
        };
        let mut f = Fsm::new(Simple, config);
        f.open();
        let mut requests = sends(&f.up()).len();
        for _ in 0..100 {
            let out = f.timeout();
            requests += sends(&out).len();
            if out.contains(&Output::Finished(Reason::Timeout)) {
                break;
            }
        }
        assert_eq!(requests, 4);
        assert_eq!(f.state(), State::Stopped);
        assert!(f.timeout().is_empty(), "no timer in Stopped");
    }

    #[test]
    fn peer_that_never_converges_is_cut_off() {
        let config = Config {
            max_failure: 3,
            ..Config::default()
        };
        let mut f = Fsm::new(Simple, config);
        f.open();
        f.up();
        let mut naks = 0;
        let mut rejects = 0;
        let mut finished = false;
        for id in 0..50u8 {
            let out = f.receive(&pkt(code::CONFIGURE_REQUEST, id, &[1, 3, 9]));
            for (c, _) in sends(&out) {
                naks += usize::from(c == code::CONFIGURE_NAK);
                rejects += usize::from(c == code::CONFIGURE_REJECT);
            }
            if out.iter().any(|o| {
                matches!(
                    o,
                    Output::Send {
                        code: code::TERMINATE_REQUEST,
                        ..
                    }
                )
            }) {
                finished = true;
                break;
            }
        }
        assert!(finished);
        assert_eq!((naks, rejects), (3, 3));
        assert_eq!(f.state(), State::Closing);
    }

    #[test]
    fn unknown_code_is_code_rejected_with_the_packet() {
        let mut f = Fsm::new(Simple, Config::default());
        f.open();
        f.up();
        let out = f.receive(&pkt(42, 5, &[1, 2]));
        assert_eq!(
            out,
            vec![Output::Send {
                code: code::CODE_REJECT,
                identifier: 2,
                data: vec![42, 5, 0, 6, 1, 2]
            }]
        );
        // Code-Reject of Configure-Request is catastrophic.
        let out = f.receive(&pkt(code::CODE_REJECT, 1, &[1, 1, 0, 4]));
        assert!(out.contains(&Output::Finished(Reason::Rejected)));
        assert_eq!(f.state(), State::Stopped);
    }
}
