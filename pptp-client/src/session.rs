//! A dialled call: the control connection (PNS side of RFC 2637), the PPP link over GRE, and the
//! data the caller sends and receives, run by one task per call.

use std::{
    collections::HashMap,
    net::{Ipv4Addr, SocketAddr, SocketAddrV4},
    time::Duration,
};

use pptp_user::wire::{
    gre::GreHeader,
    ppp::{Compression, PppFrame, proto},
    pptp::{
        self, CallClearRequest, ControlMessage, EchoReply, Framer, OutgoingCallRequest,
        StartControlConnectionRequest, StopControlConnectionReply, StopControlConnectionRequest,
        Text, caps, result,
    },
};
use tokio::{
    io::{AsyncReadExt as _, AsyncWriteExt as _},
    net::{TcpSocket, TcpStream},
    sync::{mpsc, oneshot},
    task::JoinHandle,
    time::Instant,
};

use crate::{
    gre::{GreMux, Packet},
    packet,
    peer::{Network, Peer, PeerConfig, PeerDown, PeerOutput, PeerTimer},
};

#[derive(Clone, Debug)]
pub struct DialConfig {
    pub server: Ipv4Addr,
    pub port: u16,
    /// Our source address (default: what the route to the server picks).
    pub local: Option<Ipv4Addr>,
    pub peer: PeerConfig,
    /// Our call ID (the key of GRE towards us); unique per process and client address.
    pub call_id: u16,
    /// The whole dial (TCP, control, LCP, authentication, IPCP) must finish within this.
    pub timeout: Duration,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SessionInfo {
    pub network: Network,
    /// Our outer address and the server's (the address we dialled).
    pub local: Ipv4Addr,
    pub server: Ipv4Addr,
    pub call_id: u16,
    /// The server's call ID (the key of GRE towards it).
    pub peer_call_id: u16,
}

#[derive(Debug, thiserror::Error)]
pub enum DialError {
    #[error("connect to {0}: {1}")]
    Connect(SocketAddr, std::io::Error),
    #[error("control connection refused: result {result}, error {error}")]
    ControlRefused { result: u8, error: u8 },
    #[error("call refused: result {result}, error {error}")]
    CallRefused { result: u8, error: u8 },
    #[error("authentication failed after {attempts} attempt(s): {message}")]
    AuthFailed { message: String, attempts: u32 },
    #[error("link ended during setup: {0:?}")]
    Link(PeerDown),
    #[error("control connection ended during setup: {0}")]
    Control(String),
    #[error("no session within {0:?}")]
    Timeout(Duration),
    #[error("call ID {0} is already used in this process")]
    CallIdInUse(u16),
    #[error("{0}")]
    Io(#[from] std::io::Error),
}

/// How a session ended.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Ended {
    /// We hung up (LCP Terminate, Call-Clear-Request, Stop-Control-Connection-Request).
    HungUp,
    /// The server ended the link (its LCP Terminate-Request or a failure).
    Link(PeerDown),
    /// The server sent Call-Disconnect-Notify (result code) or Stop-Control-Connection-Request.
    Cleared {
        result: u8,
    },
    StopControl,
    /// TCP closed or broke.
    ControlLost,
    /// The caller dropped the session without hanging up.
    Abandoned,
}

enum Cmd {
    Send(Vec<u8>),
    Hangup(oneshot::Sender<()>),
    /// Stop answering anything (a client that vanished without closing TCP).
    Silence,
}

/// A session that is up.
pub struct Session {
    pub info: SessionInfo,
    cmd: mpsc::UnboundedSender<Cmd>,
    ip: mpsc::Receiver<Vec<u8>>,
    task: Option<JoinHandle<Ended>>,
}

/// Result of [`Session::ping`].
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct PingReport {
    pub sent: u32,
    pub received: u32,
}

impl Session {
    /// Sends an IPv4 packet through the tunnel.
    pub fn send_ip(&self, packet: Vec<u8>) {
        let _ = self.cmd.send(Cmd::Send(packet));
    }

    /// The next IPv4 packet from the tunnel, or `None` after `timeout` or when the session ended.
    pub async fn recv_ip(&mut self, timeout: Duration) -> Option<Vec<u8>> {
        tokio::time::timeout(timeout, self.ip.recv())
            .await
            .ok()
            .flatten()
    }

    /// `count` echo requests to `dst`, one at a time, each waiting up to `wait` for its reply.
    pub async fn ping(&mut self, dst: Ipv4Addr, count: u16, wait: Duration) -> PingReport {
        let mut report = PingReport::default();
        let id = self.info.call_id;
        for seq in 1..=count {
            self.send_ip(packet::echo_request(
                self.info.network.address,
                dst,
                id,
                seq,
                56,
            ));
            report.sent += 1;
            let deadline = Instant::now() + wait;
            while let Some(left) = deadline.checked_duration_since(Instant::now()) {
                let Some(p) = self.recv_ip(left).await else {
                    break;
                };
                if packet::echo_reply(&p) == Some((dst, id, seq)) {
                    report.received += 1;
                    break;
                }
            }
        }
        report
    }

    /// Hangs up cleanly and waits (bounded) for the server to confirm.
    pub async fn hangup(self) -> Ended {
        let (tx, rx) = oneshot::channel();
        if self.cmd.send(Cmd::Hangup(tx)).is_ok() {
            let _ = tokio::time::timeout(Duration::from_secs(10), rx).await;
        }
        self.wait().await
    }

    /// Stops answering the server (LCP echo, control echo) while keeping TCP open: the server
    /// must notice by itself. Returns when the session task ends (the server gave up on us and
    /// closed TCP), at most after `limit`.
    pub async fn go_silent(mut self, limit: Duration) -> Option<Ended> {
        let _ = self.cmd.send(Cmd::Silence);
        let task = self.task.take()?;
        tokio::time::timeout(limit, task).await.ok()?.ok()
    }

    /// Waits, without giving the session up, until the server ends it; then says how.
    pub async fn server_ended(&mut self) -> Ended {
        let Some(t) = self.task.as_mut() else {
            return Ended::Abandoned;
        };
        let ended = t.await.unwrap_or(Ended::Abandoned);
        self.task = None;
        ended
    }

    /// Waits for the session to end by itself (the server's doing).
    pub async fn wait(mut self) -> Ended {
        match self.task.take() {
            Some(t) => t.await.unwrap_or(Ended::Abandoned),
            None => Ended::Abandoned,
        }
    }
}

impl Drop for Session {
    fn drop(&mut self) {
        if let Some(t) = self.task.take() {
            t.abort();
        }
    }
}

async fn connect(cfg: &DialConfig) -> Result<TcpStream, DialError> {
    let addr = SocketAddr::V4(SocketAddrV4::new(cfg.server, cfg.port));
    let socket = TcpSocket::new_v4()?;
    if let Some(l) = cfg.local {
        socket.bind(SocketAddr::V4(SocketAddrV4::new(l, 0)))?;
    }
    let stream = socket
        .connect(addr)
        .await
        .map_err(|e| DialError::Connect(addr, e))?;
    stream.set_nodelay(true)?;
    Ok(stream)
}

async fn send(stream: &mut TcpStream, m: impl Into<ControlMessage>) -> std::io::Result<()> {
    stream.write_all(&m.into().to_bytes()).await
}

/// The next control message, answering the server's Echo-Requests on the way.
async fn next_message(
    stream: &mut TcpStream,
    framer: &mut Framer,
) -> Result<ControlMessage, DialError> {
    let mut buf = [0u8; 1024];
    loop {
        match framer.next_message() {
            Some(Ok(ControlMessage::EchoRequest(e))) => {
                send(stream, echo_reply(e.identifier)).await?;
                continue;
            }
            Some(Ok(m)) => return Ok(m),
            Some(Err(e)) if e.is_fatal() => return Err(DialError::Control(e.to_string())),
            Some(Err(e)) => {
                tracing::debug!(error = %e, "control message dropped");
                continue;
            }
            None => {}
        }
        let n = stream.read(&mut buf).await?;
        if n == 0 {
            return Err(DialError::Control("TCP closed by the server".into()));
        }
        framer.push(&buf[..n]);
    }
}

fn echo_reply(identifier: u32) -> EchoReply {
    EchoReply {
        identifier,
        result_code: result::ECHO_OK,
        ..Default::default()
    }
}

/// Dials a call and returns once the network is up (or why it is not).
pub async fn dial(cfg: DialConfig, mux: &GreMux) -> Result<Session, DialError> {
    let limit = cfg.timeout;
    let reg = cfg.local.unwrap_or(Ipv4Addr::UNSPECIFIED);
    let gre = mux
        .register(reg, cfg.call_id)
        .ok_or(DialError::CallIdInUse(cfg.call_id))?;
    let result = tokio::time::timeout(limit, dial_inner(cfg.clone(), mux.clone(), gre)).await;
    match result {
        Ok(Ok(s)) => Ok(s),
        Ok(Err(e)) => {
            mux.unregister(reg, cfg.call_id);
            Err(e)
        }
        Err(_) => {
            mux.unregister(reg, cfg.call_id);
            Err(DialError::Timeout(limit))
        }
    }
}

async fn dial_inner(
    cfg: DialConfig,
    mux: GreMux,
    gre: mpsc::Receiver<Packet>,
) -> Result<Session, DialError> {
    let mut stream = connect(&cfg).await?;
    let local = match stream.local_addr()? {
        SocketAddr::V4(a) => *a.ip(),
        SocketAddr::V6(_) => unreachable!("an IPv4 socket"),
    };
    let mut framer = Framer::new();
    send(
        &mut stream,
        StartControlConnectionRequest {
            protocol_version: pptp::PROTOCOL_VERSION,
            framing_capabilities: caps::FRAMING_ASYNC | caps::FRAMING_SYNC,
            bearer_capabilities: caps::BEARER_ANALOG | caps::BEARER_DIGITAL,
            maximum_channels: 0,
            firmware_revision: 1,
            host_name: Text::new("pptp-client"),
            vendor_name: Text::new("pptpgw"),
            ..Default::default()
        },
    )
    .await?;
    match next_message(&mut stream, &mut framer).await? {
        ControlMessage::StartControlConnectionReply(r)
            if r.result_code == result::SCCRP_SUCCESSFUL => {}
        ControlMessage::StartControlConnectionReply(r) => {
            return Err(DialError::ControlRefused {
                result: r.result_code,
                error: r.error_code,
            });
        }
        other => {
            return Err(DialError::Control(format!(
                "expected SCCRP, got {:?}",
                other.control_type()
            )));
        }
    }
    send(
        &mut stream,
        OutgoingCallRequest {
            call_id: cfg.call_id,
            call_serial_number: cfg.call_id,
            minimum_bps: 2400,
            maximum_bps: 100_000_000,
            bearer_type: caps::BEARER_ANALOG | caps::BEARER_DIGITAL,
            framing_type: caps::FRAMING_ASYNC | caps::FRAMING_SYNC,
            packet_recv_window_size: 64,
            ..Default::default()
        },
    )
    .await?;
    let peer_call_id = loop {
        match next_message(&mut stream, &mut framer).await? {
            ControlMessage::OutgoingCallReply(r) if r.peer_call_id == cfg.call_id => {
                if r.result_code != result::OCRP_CONNECTED {
                    return Err(DialError::CallRefused {
                        result: r.result_code,
                        error: r.error_code,
                    });
                }
                break r.call_id;
            }
            ControlMessage::StopControlConnectionRequest(_) => {
                return Err(DialError::Control("server stopped the connection".into()));
            }
            _ => {}
        }
    };
    let (up_tx, up_rx) = oneshot::channel();
    let (cmd_tx, cmd_rx) = mpsc::unbounded_channel();
    let (ip_tx, ip_rx) = mpsc::channel(4096);
    let call = Call {
        server: cfg.server,
        local,
        reg: cfg.local.unwrap_or(Ipv4Addr::UNSPECIFIED),
        call_id: cfg.call_id,
        peer_call_id,
        mux,
        tx_seq: 0,
        rx_highest: None,
        ack_sent: None,
        last_tx: Instant::now(),
        timers: HashMap::new(),
        mppe: None,
        reset_sent: None,
        reset_id: 0,
    };
    let seed = u64::from(cfg.call_id) << 32 ^ u64::from(u32::from(local)) ^ 0x9e37_79b9_7f4a_7c15;
    let task = tokio::spawn(run(
        call,
        stream,
        framer,
        gre,
        cfg.peer.clone(),
        seed,
        up_tx,
        cmd_rx,
        ip_tx,
    ));
    match up_rx.await {
        Ok(Ok(network)) => Ok(Session {
            info: SessionInfo {
                network,
                local,
                server: cfg.server,
                call_id: cfg.call_id,
                peer_call_id,
            },
            cmd: cmd_tx,
            ip: ip_rx,
            task: Some(task),
        }),
        Ok(Err(e)) => {
            let _ = task.await;
            Err(e)
        }
        Err(_) => Err(match task.await {
            Ok(e) => DialError::Control(format!("{e:?} before the network came up")),
            Err(e) => DialError::Control(e.to_string()),
        }),
    }
}

/// Per-call GRE state and timers.
struct Call {
    server: Ipv4Addr,
    local: Ipv4Addr,
    /// The address the call is registered under in the mux.
    reg: Ipv4Addr,
    call_id: u16,
    peer_call_id: u16,
    mux: GreMux,
    tx_seq: u32,
    rx_highest: Option<u32>,
    ack_sent: Option<u32>,
    last_tx: Instant,
    timers: HashMap<PeerTimer, Instant>,
    /// MPPE-128, both directions (send, receive), once agreed.
    mppe: Option<(crate::mppe::Direction, crate::mppe::Direction)>,
    /// Stateful MPPE: when our last Reset-Request went, and its identifier.
    reset_sent: Option<Instant>,
    reset_id: u8,
}

/// Ack-only packets go out when we owe an ack and sent nothing for this long.
const IDLE_ACK: Duration = Duration::from_millis(300);

impl Call {
    /// An IPv4 packet to the server: encrypted (PPP protocol inside) when MPPE runs.
    fn send_ip(&mut self, ip: &[u8]) {
        match &mut self.mppe {
            Some((tx, _)) => {
                let mut plain = vec![0x00, 0x21];
                plain.extend_from_slice(ip);
                let packet = tx.encrypt(&plain);
                self.send_frame(crate::peer::MPPE, &packet);
            }
            None => self.send_frame(proto::IPV4, ip),
        }
    }

    /// An MPPE packet from the server: the IPv4 packet inside, if it decrypts to one. A stateful
    /// receiver that lost a packet asks for a reset (CCP Reset-Request), again each second
    /// while it waits, as pppd does.
    fn decrypt(&mut self, info: &[u8]) -> Option<Vec<u8>> {
        let (_, rx) = self.mppe.as_mut()?;
        let plain = rx.decrypt(info);
        if rx.wants_reset()
            && self
                .reset_sent
                .is_none_or(|t| t.elapsed() >= Duration::from_secs(1))
        {
            self.reset_sent = Some(Instant::now());
            self.reset_id = self.reset_id.wrapping_add(1);
            self.send_frame(proto::CCP, &[14, self.reset_id, 0, 4]);
        }
        let plain = plain?;
        match plain.as_slice() {
            [0x00, 0x21, ip @ ..] | [0x21, ip @ ..] => Some(ip.to_vec()),
            _ => None,
        }
    }

    fn send_frame(&mut self, protocol: u16, info: &[u8]) {
        let mut frame = Vec::with_capacity(info.len() + 4);
        PppFrame { protocol, info }.emit(Compression::default(), &mut frame);
        let header = GreHeader {
            call_id: self.peer_call_id,
            seq: Some(self.tx_seq),
            ack: self.owed_ack(),
        };
        self.tx_seq = self.tx_seq.wrapping_add(1);
        self.transmit(&header, &frame);
    }

    fn owed_ack(&self) -> Option<u32> {
        match (self.rx_highest, self.ack_sent) {
            (Some(h), Some(a)) if h == a => None,
            (h, _) => h,
        }
    }

    fn transmit(&mut self, header: &GreHeader, payload: &[u8]) {
        if header.ack.is_some() {
            self.ack_sent = header.ack;
        }
        self.last_tx = Instant::now();
        if let Err(e) = self.mux.send(self.local, self.server, header, payload) {
            tracing::debug!(error = %e, "GRE send failed");
        }
    }

    fn idle_ack(&mut self) {
        if let Some(ack) = self.owed_ack()
            && self.last_tx.elapsed() >= IDLE_ACK
        {
            let header = GreHeader {
                call_id: self.peer_call_id,
                seq: None,
                ack: Some(ack),
            };
            self.transmit(&header, &[]);
        }
    }

    fn next_timer(&self) -> Option<(PeerTimer, Instant)> {
        self.timers
            .iter()
            .min_by_key(|(_, at)| **at)
            .map(|(t, at)| (*t, *at))
    }
}

#[allow(clippy::too_many_arguments)]
async fn run(
    mut call: Call,
    mut stream: TcpStream,
    mut framer: Framer,
    mut gre: mpsc::Receiver<Packet>,
    config: PeerConfig,
    seed: u64,
    up_tx: oneshot::Sender<Result<Network, DialError>>,
    mut cmd: mpsc::UnboundedReceiver<Cmd>,
    ip_tx: mpsc::Sender<Vec<u8>>,
) -> Ended {
    let mut up_tx = Some(up_tx);
    let (mut peer, out) = Peer::new(config, seed);
    let mut hangup: Option<oneshot::Sender<()>> = None;
    let mut ended: Option<Ended> = None;
    let mut buf = vec![0u8; 4096];
    let mut tick = tokio::time::interval(Duration::from_millis(100));
    let mut pending = out;
    loop {
        // Carry out what the link asked for.
        for o in pending.drain(..) {
            match o {
                PeerOutput::Send { protocol, info } => call.send_frame(protocol, &info),
                PeerOutput::SetTimer(t, d) => {
                    call.timers.insert(t, Instant::now() + d);
                }
                PeerOutput::CancelTimer(t) => {
                    call.timers.remove(&t);
                }
                PeerOutput::MppeReset => {
                    if let Some((tx, _)) = call.mppe.as_mut() {
                        tx.flush();
                    }
                }
                PeerOutput::Up(n) => {
                    if let Some((send, recv)) = n.mppe {
                        call.mppe = Some((
                            crate::mppe::Direction::new(send, n.mppe_stateful),
                            crate::mppe::Direction::new(recv, n.mppe_stateful),
                        ));
                    }
                    if let Some(tx) = up_tx.take() {
                        let _ = tx.send(Ok(n));
                    }
                }
                PeerOutput::Down(reason) => {
                    if let Some(tx) = up_tx.take() {
                        let e = match reason.clone() {
                            PeerDown::AuthFailed { message, attempts } => {
                                DialError::AuthFailed { message, attempts }
                            }
                            r => DialError::Link(r),
                        };
                        let _ = tx.send(Err(e));
                    }
                    if ended.is_none() {
                        ended = Some(if hangup.is_some() {
                            Ended::HungUp
                        } else {
                            Ended::Link(reason)
                        });
                    }
                }
            }
        }
        if let Some(e) = ended.take() {
            // The link is down: clear the call and the control connection, then close.
            finish_control(&mut stream, &mut framer, call.call_id, hangup.is_some()).await;
            call.mux.unregister(call.reg, call.call_id);
            if let Some(h) = hangup.take() {
                let _ = h.send(());
            }
            return e;
        }
        let wake = call.next_timer();
        tokio::select! {
            _ = tokio::time::sleep_until(wake.map_or_else(|| Instant::now() + Duration::from_secs(3600), |w| w.1)), if wake.is_some() => {
                if let Some((t, _)) = wake {
                    call.timers.remove(&t);
                    pending = peer.timeout(t);
                }
            }
            _ = tick.tick() => call.idle_ack(),
            p = gre.recv() => {
                let Some(p) = p else { return Ended::Abandoned };
                if p.from != call.server {
                    continue;
                }
                if let Some(s) = p.header.seq {
                    match call.rx_highest {
                        Some(h) if !pptp_common::seq::seq_after(s, h) => {
                            // Late or duplicate: dropped, as the Linux pptp module does.
                            continue;
                        }
                        _ => call.rx_highest = Some(s),
                    }
                }
                if p.payload.is_empty() {
                    continue;
                }
                let Ok((frame, _)) = PppFrame::parse(&p.payload) else { continue };
                if frame.protocol == proto::IPV4 && call.mppe.is_none() {
                    let _ = ip_tx.try_send(frame.info.to_vec());
                } else if frame.protocol == crate::peer::MPPE {
                    if let Some(ip) = call.decrypt(frame.info) {
                        let _ = ip_tx.try_send(ip);
                    }
                } else if frame.protocol != proto::IPV4 {
                    pending = peer.receive(frame.protocol, frame.info);
                }
            }
            c = cmd.recv() => match c {
                Some(Cmd::Send(ip)) => call.send_ip(&ip),
                Some(Cmd::Hangup(done)) => {
                    hangup = Some(done);
                    pending = peer.close();
                }
                Some(Cmd::Silence) => {
                    // Hold TCP open but read nothing, answer nothing, until the server closes it.
                    call.mux.unregister(call.reg, call.call_id);
                    let _ = stream.readable().await;
                    loop {
                        match stream.read(&mut buf).await {
                            Ok(0) | Err(_) => return Ended::ControlLost,
                            Ok(_) => {}
                        }
                    }
                }
                None => return Ended::Abandoned,
            },
            r = stream.read(&mut buf) => {
                let n = match r {
                    Ok(0) | Err(_) => {
                        if let Some(tx) = up_tx.take() {
                            let _ = tx.send(Err(DialError::Control("TCP closed by the server".into())));
                        }
                        call.mux.unregister(call.reg, call.call_id);
                        return Ended::ControlLost;
                    }
                    Ok(n) => n,
                };
                framer.push(&buf[..n]);
                while let Some(m) = framer.next_message() {
                    match m {
                        Ok(ControlMessage::EchoRequest(e)) => {
                            let _ = send(&mut stream, echo_reply(e.identifier)).await;
                        }
                        Ok(ControlMessage::CallDisconnectNotify(c)) if c.call_id == call.peer_call_id => {
                            if let Some(tx) = up_tx.take() {
                                // The server may clear the call right after a PPP frame that says
                                // why (an authentication failure): look at what is in flight.
                                let why = in_flight_failure(&mut peer, &mut gre).await;
                                let _ = tx.send(Err(why.unwrap_or_else(|| DialError::Control(format!("Call-Disconnect-Notify result {}", c.result_code)))));
                            }
                            let _ = send(&mut stream, StopControlConnectionRequest { reason: pptp::stop_reason::NONE, ..Default::default() }).await;
                            let _ = tokio::time::timeout(Duration::from_secs(2), next_message(&mut stream, &mut framer)).await;
                            call.mux.unregister(call.reg, call.call_id);
                            return Ended::Cleared { result: c.result_code };
                        }
                        Ok(ControlMessage::StopControlConnectionRequest(_)) => {
                            let _ = send(&mut stream, StopControlConnectionReply { result_code: result::STOPCCRP_OK, ..Default::default() }).await;
                            if let Some(tx) = up_tx.take() {
                                let _ = tx.send(Err(DialError::Control("Stop-Control-Connection-Request".into())));
                            }
                            call.mux.unregister(call.reg, call.call_id);
                            return Ended::StopControl;
                        }
                        Ok(_) => {}
                        Err(e) if e.is_fatal() => {
                            call.mux.unregister(call.reg, call.call_id);
                            return Ended::ControlLost;
                        }
                        Err(_) => {}
                    }
                }
            }
        }
    }
}

/// PPP frames that arrived with (or just before) a Call-Disconnect-Notify during setup: an
/// authentication failure or the server's Terminate-Request reason among them is the real reason
/// the call ended.
async fn in_flight_failure(peer: &mut Peer, gre: &mut mpsc::Receiver<Packet>) -> Option<DialError> {
    fn known(peer: &Peer) -> Option<DialError> {
        match peer.ending_because()? {
            PeerDown::AuthFailed { message, attempts } => Some(DialError::AuthFailed {
                message: message.clone(),
                attempts: *attempts,
            }),
            d @ PeerDown::ServerTerminated(_) => Some(DialError::Link(d.clone())),
            _ => None,
        }
    }
    if let Some(e) = known(peer) {
        return Some(e);
    }
    let deadline = Instant::now() + Duration::from_millis(300);
    while let Ok(Some(p)) = tokio::time::timeout_at(deadline, gre.recv()).await {
        let Ok((frame, _)) = PppFrame::parse(&p.payload) else {
            continue;
        };
        for o in peer.receive(frame.protocol, frame.info) {
            if let PeerOutput::Down(PeerDown::AuthFailed { message, attempts }) = o {
                return Some(DialError::AuthFailed { message, attempts });
            }
        }
        if let Some(e) = known(peer) {
            return Some(e);
        }
    }
    None
}

/// After the link went down: Call-Clear-Request (if we hung up) and Stop-Control-Connection,
/// each answer awaited for a bounded time.
async fn finish_control(stream: &mut TcpStream, framer: &mut Framer, call_id: u16, ours: bool) {
    let wait = Duration::from_secs(3);
    if ours {
        let _ = send(
            stream,
            CallClearRequest {
                call_id,
                ..Default::default()
            },
        )
        .await;
    }
    // The server answers (or, when it ended the link, sends on its own) Call-Disconnect-Notify.
    let _ = tokio::time::timeout(wait, async {
        loop {
            match next_message(stream, framer).await {
                Ok(ControlMessage::CallDisconnectNotify(_)) | Err(_) => break,
                Ok(ControlMessage::StopControlConnectionRequest(_)) => {
                    let _ = send(
                        stream,
                        StopControlConnectionReply {
                            result_code: result::STOPCCRP_OK,
                            ..Default::default()
                        },
                    )
                    .await;
                    return;
                }
                Ok(_) => {}
            }
        }
    })
    .await;
    let _ = send(
        stream,
        StopControlConnectionRequest {
            reason: pptp::stop_reason::NONE,
            ..Default::default()
        },
    )
    .await;
    let _ = tokio::time::timeout(wait, async {
        loop {
            match next_message(stream, framer).await {
                Ok(ControlMessage::StopControlConnectionReply(_)) | Err(_) => break,
                Ok(_) => {}
            }
        }
    })
    .await;
}
