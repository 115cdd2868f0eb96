//! One PPTP control connection, PAC (server) side, as a pure state machine (RFC 2637 §3).
//!
//! Inputs: messages from the framer, timer expiries, and the shell's decisions (accept or refuse
//! an outgoing call, clear a call, stop). Outputs: messages to send, timers to arm, calls to set
//! up or tear down, and when to close the TCP connection. Call IDs are the shell's to allocate.

use std::{
    collections::{BTreeMap, HashMap},
    time::Duration,
};

use crate::wire::pptp::{
    CallClearRequest, CallDisconnectNotify, ControlMessage, ControlType, EchoReply, EchoRequest,
    IncomingCallReply, OutgoingCallReply, OutgoingCallRequest, PROTOCOL_VERSION, Rejected,
    StartControlConnectionReply, StartControlConnectionRequest, StopControlConnectionReply,
    StopControlConnectionRequest, Text, caps, error_code, result, stop_reason,
};

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ControlConfig {
    pub host_name: String,
    pub vendor_name: String,
    pub firmware_revision: u16,
    pub maximum_channels: u16,
    /// Time allowed from TCP accept to SCCRQ.
    pub start_timeout: Duration,
    /// Idle time before we send Echo-Request, and time to wait for the reply (RFC 2637 §4.1: 60 s).
    pub echo_interval: Duration,
    pub echo_timeout: Duration,
    /// Time to wait for Stop-Control-Connection-Reply before closing anyway.
    pub stop_timeout: Duration,
    /// Our packet receive window offered in OCRP (advisory; see DESIGN.md).
    pub receive_window: u16,
}

impl Default for ControlConfig {
    fn default() -> Self {
        Self {
            host_name: "pptpgw".into(),
            vendor_name: "pptpgw".into(),
            firmware_revision: 1,
            maximum_channels: 0,
            start_timeout: Duration::from_secs(60),
            echo_interval: Duration::from_secs(60),
            echo_timeout: Duration::from_secs(60),
            stop_timeout: Duration::from_secs(5),
            receive_window: 64,
        }
    }
}

/// Whether the shell lets this connection in (connection limits, shutdown).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Admission {
    Accept,
    /// SCCRP result 2 (general error), error 4 (no resource).
    Busy,
    /// SCCRP result 4 (not authorized).
    NotAuthorized,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Timer {
    /// SCCRQ must arrive before it fires.
    Start,
    /// No message for a while: send Echo-Request.
    Idle,
    /// Our Echo-Request is unanswered.
    Echo,
    /// Our StopCCRQ is unanswered.
    Stop,
}

/// Why a call ended, for logs and counters.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ClearReason {
    /// The client sent Call-Clear-Request.
    ClientClear,
    /// The client stopped the control connection.
    ClientStop,
    /// The control connection was lost (TCP closed, echo timeout, framing error).
    ConnectionLost,
    /// We stopped the control connection (shutdown).
    LocalStop,
}

/// Why the control connection closes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CloseReason {
    StartTimeout,
    Refused,
    BadVersion,
    ProtocolError,
    EchoTimeout,
    PeerStopped,
    LocalStop,
    PeerClosed,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Output {
    Send(ControlMessage),
    SetTimer(Timer, Duration),
    CancelTimer(Timer),
    /// The client asks for a call: answer with [`Connection::accept_call`] or
    /// [`Connection::refuse_call`].
    CallRequested {
        peer_call_id: u16,
        serial: u16,
        peer_window: u16,
    },
    /// A call is gone; the shell tears its session down. No CDN is owed for it any more.
    CallCleared {
        call_id: u16,
        reason: ClearReason,
    },
    /// Close the TCP connection (after sending what precedes this).
    Close(CloseReason),
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum State {
    /// Waiting for SCCRQ.
    Idle,
    Established,
    /// We sent StopCCRQ and wait for the reply.
    Stopping,
    Closed,
}

/// The calls a connection carries, found by either call ID (a CCRQ names the client's).
#[derive(Debug, Default)]
struct Calls {
    /// Our call ID → the client's.
    ours: BTreeMap<u16, u16>,
    by_peer: HashMap<u16, u16>,
}

impl Calls {
    fn remove(&mut self, ours: u16) -> Option<u16> {
        let peer = self.ours.remove(&ours)?;
        self.by_peer.remove(&peer);
        Some(peer)
    }

    fn remove_peer(&mut self, peer: u16) -> Option<u16> {
        let ours = self.by_peer.remove(&peer)?;
        self.ours.remove(&ours);
        Some(ours)
    }
}

pub struct Connection {
    config: ControlConfig,
    admission: Admission,
    state: State,
    /// Our call ID → the client's call ID.
    calls: Calls,
    /// Calls requested but not yet answered by the shell: the client's IDs.
    pending: Vec<u16>,
    echo_identifier: u32,
    echo_outstanding: Option<u32>,
}

impl Connection {
    /// A TCP connection was accepted.
    pub fn new(config: ControlConfig, admission: Admission) -> (Self, Vec<Output>) {
        let timer = Output::SetTimer(Timer::Start, config.start_timeout);
        let c = Self {
            config,
            admission,
            state: State::Idle,
            calls: Calls::default(),
            pending: Vec::new(),
            echo_identifier: 0,
            echo_outstanding: None,
        };
        (c, vec![timer])
    }

    /// An established connection carried over from another process (hitless restart) with the
    /// calls it carries (our call ID, the client's); its keepalive starts again.
    pub fn restored(config: ControlConfig, calls: &[(u16, u16)]) -> (Self, Vec<Output>) {
        let timer = Output::SetTimer(Timer::Idle, config.echo_interval);
        let mut c = Self {
            config,
            admission: Admission::Accept,
            state: State::Established,
            calls: Calls::default(),
            pending: Vec::new(),
            echo_identifier: 0,
            echo_outstanding: None,
        };
        for &(ours, peer) in calls {
            c.calls.ours.insert(ours, peer);
            c.calls.by_peer.insert(peer, ours);
        }
        (c, vec![timer])
    }

    pub fn state(&self) -> State {
        self.state
    }

    /// Our call IDs of the calls this connection carries.
    pub fn calls(&self) -> impl Iterator<Item = (u16, u16)> + '_ {
        self.calls.ours.iter().map(|(&ours, &peer)| (ours, peer))
    }

    fn close(&mut self, reason: CloseReason, clear: ClearReason, out: &mut Vec<Output>) {
        for (call_id, _) in std::mem::take(&mut self.calls).ours {
            out.push(Output::CallCleared {
                call_id,
                reason: clear,
            });
        }
        self.pending.clear();
        for t in [Timer::Start, Timer::Idle, Timer::Echo, Timer::Stop] {
            out.push(Output::CancelTimer(t));
        }
        out.push(Output::Close(reason));
        self.state = State::Closed;
    }

    /// A message arrived from the client.
    pub fn receive(&mut self, msg: ControlMessage) -> Vec<Output> {
        let mut out = Vec::new();
        if self.state == State::Closed {
            return out;
        }
        if self.state != State::Idle {
            // Any message proves the peer alive (RFC 2637 §2.5).
            out.push(Output::SetTimer(Timer::Idle, self.config.echo_interval));
        }
        match (self.state, msg) {
            (State::Idle, ControlMessage::StartControlConnectionRequest(rq)) => {
                self.start(rq, &mut out)
            }
            (State::Idle, other) => {
                tracing::info!(message = ?other.control_type(), "control message before SCCRQ; closing");
                self.close(
                    CloseReason::ProtocolError,
                    ClearReason::ConnectionLost,
                    &mut out,
                );
            }
            (_, ControlMessage::StartControlConnectionRequest(_)) => {
                out.push(Output::Send(
                    self.sccrp(result::SCCRP_CHANNEL_EXISTS, error_code::NONE),
                ));
            }
            (_, ControlMessage::EchoRequest(EchoRequest { identifier })) => {
                out.push(Output::Send(
                    EchoReply {
                        identifier,
                        result_code: result::ECHO_OK,
                        ..Default::default()
                    }
                    .into(),
                ));
            }
            (_, ControlMessage::EchoReply(EchoReply { identifier, .. })) => {
                if self.echo_outstanding == Some(identifier) {
                    self.echo_outstanding = None;
                    out.push(Output::CancelTimer(Timer::Echo));
                }
            }
            (State::Established, ControlMessage::OutgoingCallRequest(rq)) => {
                self.call_request(rq, &mut out)
            }
            (
                _,
                ControlMessage::CallClearRequest(CallClearRequest {
                    call_id: peer_id, ..
                }),
            ) => {
                // CCRQ names the client's call ID; answer with CDN naming ours (RFC 2637 §2.12–13).
                match self.calls.remove_peer(peer_id) {
                    Some(ours) => {
                        out.push(Output::CallCleared {
                            call_id: ours,
                            reason: ClearReason::ClientClear,
                        });
                        out.push(Output::Send(Self::cdn(ours, result::CDN_REQUEST)));
                    }
                    None => tracing::debug!(
                        peer_call_id = peer_id,
                        "Call-Clear-Request for no call; ignored"
                    ),
                }
            }
            (_, ControlMessage::StopControlConnectionRequest(rq)) => {
                tracing::info!(reason = rq.reason, "client stopped the control connection");
                out.push(Output::Send(
                    StopControlConnectionReply {
                        result_code: result::STOPCCRP_OK,
                        ..Default::default()
                    }
                    .into(),
                ));
                self.close(CloseReason::PeerStopped, ClearReason::ClientStop, &mut out);
            }
            (State::Stopping, ControlMessage::StopControlConnectionReply(_)) => {
                self.close(CloseReason::LocalStop, ClearReason::LocalStop, &mut out);
            }
            (_, ControlMessage::SetLinkInfo(_)) => {
                // ACCMs matter only for asynchronous framing, which a GRE tunnel does not have.
            }
            (_, other) => {
                // Messages a PAC never receives (replies to requests it did not send, ICRQ...).
                tracing::debug!(message = ?other.control_type(), state = ?self.state, "unexpected control message ignored");
            }
        }
        out
    }

    /// A well-framed message that did not parse. RFC 2637 gives every request a reply whose
    /// result can say "general error" with a General Error Code (§2.16: 2 Bad-Format for a wrong
    /// length, 3 Bad-Value for a non-zero reserved field); a message that has no reply can only
    /// be refused by stopping the control connection. The table, by Control Message Type:
    ///
    /// | received | answer |
    /// |---|---|
    /// | 1 SCCRQ | SCCRP result 2 + error; before the connection is established it then closes |
    /// | 3 StopCCRQ | StopCCRP result 2 + error, then close (the peer wanted to stop anyway) |
    /// | 5 Echo-Request | Echo-Reply result 2 + error, with the request's identifier |
    /// | 7 OCRQ | OCRP result 2 + error, to the peer's call ID; no call is made |
    /// | 9 ICRQ | ICRP result 2 + error, to the peer's call ID (a PAC takes no incoming calls) |
    /// | 12 CCRQ | the call it names is cleared as asked, CDN result 2 + error (call ID 0 when it names none) |
    /// | 2, 4, 6, 8, 10, 11, 13, 14, 15 | replies and notifications: no reply exists; StopCCRQ, stop |
    /// | any other type (0, 16…) | StopCCRQ, stop |
    ///
    /// Before SCCRQ no control connection exists to stop: anything but a SCCRQ closes at once.
    /// While we are stopping, a malformed StopCCRP ends the wait.
    pub fn malformed(&mut self, rejected: Rejected) -> Vec<Output> {
        let mut out = Vec::new();
        let kind = ControlType::from_code(rejected.code);
        let error = rejected.error_code();
        tracing::info!(
            control_type = rejected.code,
            error = %rejected.error,
            error_code = error,
            state = ?self.state,
            "malformed control message"
        );
        if self.state == State::Closed {
            return out;
        }
        if self.state != State::Idle {
            out.push(Output::SetTimer(Timer::Idle, self.config.echo_interval));
        }
        match (self.state, kind) {
            (_, Some(ControlType::StartControlConnectionRequest)) => {
                out.push(Output::Send(self.sccrp(result::SCCRP_GENERAL_ERROR, error)));
                if self.state == State::Idle {
                    out.push(Output::CancelTimer(Timer::Start));
                    self.close(
                        CloseReason::ProtocolError,
                        ClearReason::ConnectionLost,
                        &mut out,
                    );
                }
            }
            (State::Idle, _) => self.close(
                CloseReason::ProtocolError,
                ClearReason::ConnectionLost,
                &mut out,
            ),
            (_, Some(ControlType::StopControlConnectionRequest)) => {
                out.push(Output::Send(
                    StopControlConnectionReply {
                        result_code: result::STOPCCRP_GENERAL_ERROR,
                        error_code: error,
                        ..Default::default()
                    }
                    .into(),
                ));
                self.close(CloseReason::PeerStopped, ClearReason::ClientStop, &mut out);
            }
            (State::Stopping, Some(ControlType::StopControlConnectionReply)) => {
                self.close(CloseReason::LocalStop, ClearReason::LocalStop, &mut out)
            }
            (_, Some(ControlType::EchoRequest)) => out.push(Output::Send(
                EchoReply {
                    identifier: rejected.head_u32(),
                    result_code: result::ECHO_GENERAL_ERROR,
                    error_code: error,
                    ..Default::default()
                }
                .into(),
            )),
            (_, Some(ControlType::OutgoingCallRequest)) => out.push(Output::Send(
                OutgoingCallReply {
                    peer_call_id: rejected.head_u16(),
                    result_code: result::OCRP_GENERAL_ERROR,
                    error_code: error,
                    ..Default::default()
                }
                .into(),
            )),
            (_, Some(ControlType::IncomingCallRequest)) => out.push(Output::Send(
                IncomingCallReply {
                    peer_call_id: rejected.head_u16(),
                    result_code: result::ICRP_GENERAL_ERROR,
                    error_code: error,
                    ..Default::default()
                }
                .into(),
            )),
            (_, Some(ControlType::CallClearRequest)) => {
                let peer_id = rejected.head_u16();
                let ours = self.calls.remove_peer(peer_id);
                if let Some(ours) = ours {
                    out.push(Output::CallCleared {
                        call_id: ours,
                        reason: ClearReason::ClientClear,
                    });
                }
                out.push(Output::Send(
                    CallDisconnectNotify {
                        call_id: ours.unwrap_or(0),
                        result_code: result::CDN_GENERAL_ERROR,
                        error_code: error,
                        ..Default::default()
                    }
                    .into(),
                ));
            }
            (State::Stopping, _) => {}
            _ => {
                let o = self.stop_with(stop_reason::NONE);
                out.extend(o);
            }
        }
        out
    }

    fn sccrp(&self, result_code: u8, error: u8) -> ControlMessage {
        StartControlConnectionReply {
            protocol_version: PROTOCOL_VERSION,
            result_code,
            error_code: error,
            framing_capabilities: caps::FRAMING_ASYNC | caps::FRAMING_SYNC,
            bearer_capabilities: caps::BEARER_ANALOG | caps::BEARER_DIGITAL,
            maximum_channels: self.config.maximum_channels,
            firmware_revision: self.config.firmware_revision,
            host_name: Text::new(&self.config.host_name),
            vendor_name: Text::new(&self.config.vendor_name),
        }
        .into()
    }

    fn start(&mut self, rq: StartControlConnectionRequest, out: &mut Vec<Output>) {
        out.push(Output::CancelTimer(Timer::Start));
        if rq.protocol_version != PROTOCOL_VERSION {
            tracing::info!(version = rq.protocol_version, "unsupported PPTP version");
            out.push(Output::Send(
                self.sccrp(result::SCCRP_BAD_VERSION, error_code::NONE),
            ));
            return self.close(CloseReason::BadVersion, ClearReason::ConnectionLost, out);
        }
        let refusal = match self.admission {
            Admission::Accept => None,
            Admission::Busy => Some((result::SCCRP_GENERAL_ERROR, error_code::NO_RESOURCE)),
            Admission::NotAuthorized => Some((result::SCCRP_NOT_AUTHORIZED, error_code::NONE)),
        };
        if let Some((r, e)) = refusal {
            out.push(Output::Send(self.sccrp(r, e)));
            return self.close(CloseReason::Refused, ClearReason::ConnectionLost, out);
        }
        out.push(Output::Send(
            self.sccrp(result::SCCRP_SUCCESSFUL, error_code::NONE),
        ));
        out.push(Output::SetTimer(Timer::Idle, self.config.echo_interval));
        self.state = State::Established;
    }

    fn call_request(&mut self, rq: OutgoingCallRequest, out: &mut Vec<Output>) {
        if self.calls.by_peer.contains_key(&rq.call_id) || self.pending.contains(&rq.call_id) {
            tracing::info!(
                peer_call_id = rq.call_id,
                "duplicate Outgoing-Call-Request ignored"
            );
            return;
        }
        self.pending.push(rq.call_id);
        out.push(Output::CallRequested {
            peer_call_id: rq.call_id,
            serial: rq.call_serial_number,
            peer_window: rq.packet_recv_window_size,
        });
    }

    /// The shell accepted a requested call under `call_id` (ours, unique on this gateway for the
    /// client's address).
    pub fn accept_call(&mut self, peer_call_id: u16, call_id: u16) -> Vec<Output> {
        if !self.take_pending(peer_call_id) {
            return Vec::new();
        }
        self.calls.ours.insert(call_id, peer_call_id);
        self.calls.by_peer.insert(peer_call_id, call_id);
        vec![Output::Send(
            OutgoingCallReply {
                call_id,
                peer_call_id,
                result_code: result::OCRP_CONNECTED,
                error_code: error_code::NONE,
                connect_speed: 100_000_000,
                packet_recv_window_size: self.config.receive_window,
                ..Default::default()
            }
            .into(),
        )]
    }

    /// The shell refused a requested call (no address left, limits): OCRP with this result.
    pub fn refuse_call(&mut self, peer_call_id: u16, result_code: u8, error: u8) -> Vec<Output> {
        if !self.take_pending(peer_call_id) {
            return Vec::new();
        }
        vec![Output::Send(
            OutgoingCallReply {
                peer_call_id,
                result_code,
                error_code: error,
                ..Default::default()
            }
            .into(),
        )]
    }

    fn take_pending(&mut self, peer_call_id: u16) -> bool {
        let before = self.pending.len();
        self.pending.retain(|&p| p != peer_call_id);
        before != self.pending.len() && self.state == State::Established
    }

    fn cdn(call_id: u16, result_code: u8) -> ControlMessage {
        CallDisconnectNotify {
            call_id,
            result_code,
            ..Default::default()
        }
        .into()
    }

    /// Our side ended a call (PPP terminated, echo timeout, administrative kill): CDN.
    pub fn clear_call(&mut self, call_id: u16, result_code: u8) -> Vec<Output> {
        if self.calls.remove(call_id).is_none() || self.state == State::Closed {
            return Vec::new();
        }
        vec![Output::Send(Self::cdn(call_id, result_code))]
    }

    /// Stop the control connection (shutdown): CDN for every call, then StopCCRQ.
    pub fn stop(&mut self) -> Vec<Output> {
        self.stop_with(stop_reason::STOP_LOCAL_SHUTDOWN)
    }

    fn stop_with(&mut self, reason: u8) -> Vec<Output> {
        let mut out = Vec::new();
        match self.state {
            State::Established => {
                for (call_id, _) in std::mem::take(&mut self.calls).ours {
                    out.push(Output::Send(Self::cdn(call_id, result::CDN_ADMIN_SHUTDOWN)));
                    out.push(Output::CallCleared {
                        call_id,
                        reason: ClearReason::LocalStop,
                    });
                }
                out.push(Output::Send(
                    StopControlConnectionRequest {
                        reason,
                        ..Default::default()
                    }
                    .into(),
                ));
                out.push(Output::SetTimer(Timer::Stop, self.config.stop_timeout));
                self.state = State::Stopping;
            }
            State::Idle => self.close(CloseReason::LocalStop, ClearReason::LocalStop, &mut out),
            State::Stopping | State::Closed => {}
        }
        out
    }

    /// The client closed TCP (or it broke, or the framer found garbage).
    pub fn lost(&mut self, reason: CloseReason) -> Vec<Output> {
        let mut out = Vec::new();
        if self.state != State::Closed {
            self.close(reason, ClearReason::ConnectionLost, &mut out);
        }
        out
    }

    pub fn timeout(&mut self, timer: Timer) -> Vec<Output> {
        let mut out = Vec::new();
        match (timer, self.state) {
            (Timer::Start, State::Idle) => self.close(
                CloseReason::StartTimeout,
                ClearReason::ConnectionLost,
                &mut out,
            ),
            (Timer::Idle, State::Established) => {
                self.echo_identifier = self.echo_identifier.wrapping_add(1);
                self.echo_outstanding = Some(self.echo_identifier);
                out.push(Output::Send(
                    EchoRequest {
                        identifier: self.echo_identifier,
                    }
                    .into(),
                ));
                out.push(Output::SetTimer(Timer::Echo, self.config.echo_timeout));
            }
            (Timer::Echo, State::Established) if self.echo_outstanding.is_some() => self.close(
                CloseReason::EchoTimeout,
                ClearReason::ConnectionLost,
                &mut out,
            ),
            (Timer::Stop, State::Stopping) => {
                self.close(CloseReason::LocalStop, ClearReason::LocalStop, &mut out)
            }
            _ => {} // a timer that outlived its state
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::wire::pptp::ControlType;

    fn sccrq(version: u16) -> ControlMessage {
        StartControlConnectionRequest {
            protocol_version: version,
            framing_capabilities: 1,
            bearer_capabilities: 1,
            maximum_channels: 65535,
            host_name: Text::new("local"),
            vendor_name: Text::new("cananian"),
            ..Default::default()
        }
        .into()
    }

    fn ocrq(call_id: u16) -> ControlMessage {
        OutgoingCallRequest {
            call_id,
            call_serial_number: 7,
            minimum_bps: 2400,
            maximum_bps: 10_000_000,
            bearer_type: 3,
            framing_type: 3,
            packet_recv_window_size: 3,
            ..Default::default()
        }
        .into()
    }

    fn sent(out: &[Output]) -> Vec<ControlMessage> {
        out.iter()
            .filter_map(|o| match o {
                Output::Send(m) => Some(*m),
                _ => None,
            })
            .collect()
    }

    fn sccrp_result(out: &[Output]) -> u8 {
        match sent(out).as_slice() {
            [ControlMessage::StartControlConnectionReply(r)] => r.result_code,
            other => panic!("expected one SCCRP, got {other:?}"),
        }
    }

    fn established() -> Connection {
        let (mut c, out) = Connection::new(ControlConfig::default(), Admission::Accept);
        assert_eq!(
            out,
            vec![Output::SetTimer(Timer::Start, Duration::from_secs(60))]
        );
        let out = c.receive(sccrq(PROTOCOL_VERSION));
        assert_eq!(sccrp_result(&out), result::SCCRP_SUCCESSFUL);
        assert_eq!(c.state(), State::Established);
        c
    }

    #[test]
    fn pptp_linux_session_transcript() {
        let mut c = established();
        let out = c.receive(ocrq(0x0080));
        assert!(out.contains(&Output::CallRequested {
            peer_call_id: 0x80,
            serial: 7,
            peer_window: 3
        }));
        let out = c.accept_call(0x80, 0x4001);
        let [ControlMessage::OutgoingCallReply(r)] = sent(&out)[..] else {
            panic!("{out:?}")
        };
        assert_eq!(
            (r.call_id, r.peer_call_id, r.result_code),
            (0x4001, 0x80, result::OCRP_CONNECTED)
        );
        assert_eq!(c.calls().collect::<Vec<_>>(), vec![(0x4001, 0x80)]);
        // Echo from the client.
        let out = c.receive(EchoRequest { identifier: 9 }.into());
        assert_eq!(
            sent(&out),
            vec![
                EchoReply {
                    identifier: 9,
                    result_code: 1,
                    ..Default::default()
                }
                .into()
            ]
        );
        // Hang-up: CCRQ names the client's ID, CDN ours; then a bare TCP close.
        let out = c.receive(
            CallClearRequest {
                call_id: 0x80,
                ..Default::default()
            }
            .into(),
        );
        assert!(out.contains(&Output::CallCleared {
            call_id: 0x4001,
            reason: ClearReason::ClientClear
        }));
        let [ControlMessage::CallDisconnectNotify(cdn)] = sent(&out)[..] else {
            panic!()
        };
        assert_eq!(
            (cdn.call_id, cdn.result_code),
            (0x4001, result::CDN_REQUEST)
        );
        let out = c.lost(CloseReason::PeerClosed);
        assert_eq!(out.last(), Some(&Output::Close(CloseReason::PeerClosed)));
        assert!(!out.iter().any(|o| matches!(o, Output::CallCleared { .. })));
    }

    #[test]
    fn sccrp_results_1_2_3_4_5() {
        let mut c = established();
        assert_eq!(
            sccrp_result(&c.receive(sccrq(PROTOCOL_VERSION))),
            result::SCCRP_CHANNEL_EXISTS
        );

        let (mut c, _) = Connection::new(ControlConfig::default(), Admission::Accept);
        let out = c.receive(sccrq(0x0200));
        assert_eq!(sccrp_result(&out), result::SCCRP_BAD_VERSION);
        assert_eq!(out.last(), Some(&Output::Close(CloseReason::BadVersion)));

        let (mut c, _) = Connection::new(ControlConfig::default(), Admission::Busy);
        let out = c.receive(sccrq(PROTOCOL_VERSION));
        let [ControlMessage::StartControlConnectionReply(r)] = sent(&out)[..] else {
            panic!()
        };
        assert_eq!(
            (r.result_code, r.error_code),
            (result::SCCRP_GENERAL_ERROR, error_code::NO_RESOURCE)
        );
        assert_eq!(out.last(), Some(&Output::Close(CloseReason::Refused)));

        let (mut c, _) = Connection::new(ControlConfig::default(), Admission::NotAuthorized);
        assert_eq!(
            sccrp_result(&c.receive(sccrq(PROTOCOL_VERSION))),
            result::SCCRP_NOT_AUTHORIZED
        );
    }

    #[test]
    fn out_of_state_and_timeouts() {
        // Anything before SCCRQ closes the connection; so does silence.
        let (mut c, _) = Connection::new(ControlConfig::default(), Admission::Accept);
        let out = c.receive(ocrq(1));
        assert_eq!(out.last(), Some(&Output::Close(CloseReason::ProtocolError)));
        assert!(
            c.receive(sccrq(PROTOCOL_VERSION)).is_empty(),
            "closed stays closed"
        );
        let (mut c, _) = Connection::new(ControlConfig::default(), Admission::Accept);
        assert_eq!(
            c.timeout(Timer::Start).last(),
            Some(&Output::Close(CloseReason::StartTimeout))
        );

        // Replies a PAC never expects are ignored; CCRQ for no call too; duplicate OCRQ once.
        let mut c = established();
        let ignored = [
            ControlMessage::from(OutgoingCallReply::default()),
            StopControlConnectionReply::default().into(),
            CallClearRequest {
                call_id: 99,
                ..Default::default()
            }
            .into(),
        ];
        for m in ignored {
            assert!(sent(&c.receive(m)).is_empty(), "{m:?}");
        }
        assert_eq!(c.receive(ocrq(5)).len(), 2);
        assert!(
            !c.receive(ocrq(5))
                .iter()
                .any(|o| matches!(o, Output::CallRequested { .. }))
        );
        // Refusing a call answers OCRP with the result and keeps no call.
        let out = c.refuse_call(5, result::OCRP_GENERAL_ERROR, error_code::NO_RESOURCE);
        let [ControlMessage::OutgoingCallReply(r)] = sent(&out)[..] else {
            panic!()
        };
        assert_eq!((r.peer_call_id, r.result_code, r.error_code), (5, 2, 4));
        assert!(c.accept_call(5, 1).is_empty(), "no longer pending");
        assert_eq!(c.calls().count(), 0);
    }

    #[test]
    fn keepalive_and_echo_timeout_clear_calls() {
        let mut c = established();
        c.receive(ocrq(0x80));
        c.accept_call(0x80, 0x10);
        let out = c.timeout(Timer::Idle);
        let [ControlMessage::EchoRequest(EchoRequest { identifier })] = sent(&out)[..] else {
            panic!()
        };
        let out = c.receive(
            EchoReply {
                identifier,
                result_code: 1,
                ..Default::default()
            }
            .into(),
        );
        assert!(out.contains(&Output::CancelTimer(Timer::Echo)));
        assert!(
            c.timeout(Timer::Echo).is_empty(),
            "answered echo does not time out"
        );
        c.timeout(Timer::Idle);
        let out = c.timeout(Timer::Echo);
        assert!(out.contains(&Output::CallCleared {
            call_id: 0x10,
            reason: ClearReason::ConnectionLost
        }));
        assert_eq!(out.last(), Some(&Output::Close(CloseReason::EchoTimeout)));
    }

    #[test]
    fn stops_from_either_side() {
        let mut c = established();
        c.receive(ocrq(0x80));
        c.accept_call(0x80, 0x10);
        let out = c.receive(
            StopControlConnectionRequest {
                reason: 1,
                ..Default::default()
            }
            .into(),
        );
        assert_eq!(
            sent(&out)[0].control_type(),
            ControlType::StopControlConnectionReply
        );
        assert!(out.contains(&Output::CallCleared {
            call_id: 0x10,
            reason: ClearReason::ClientStop
        }));
        assert_eq!(out.last(), Some(&Output::Close(CloseReason::PeerStopped)));

        let mut c = established();
        c.receive(ocrq(0x80));
        c.accept_call(0x80, 0x10);
        let out = c.stop();
        let types: Vec<_> = sent(&out)
            .iter()
            .map(ControlMessage::control_type)
            .collect();
        assert_eq!(
            types,
            vec![
                ControlType::CallDisconnectNotify,
                ControlType::StopControlConnectionRequest
            ]
        );
        assert_eq!(c.state(), State::Stopping);
        let out = c.receive(
            StopControlConnectionReply {
                result_code: 1,
                ..Default::default()
            }
            .into(),
        );
        assert_eq!(out.last(), Some(&Output::Close(CloseReason::LocalStop)));

        // An unanswered StopCCRQ closes after its timer.
        let mut c = established();
        c.stop();
        assert_eq!(
            c.timeout(Timer::Stop).last(),
            Some(&Output::Close(CloseReason::LocalStop))
        );
    }
}
