//! One call's PPP link, client side, as a pure state machine: LCP (our policy: accept the
//! server's authentication protocol when we allow it), authentication as the peer, IPCP asking
//! for an address and name servers. CCP runs only to agree on MPPE-128 (stateless) when asked
//! to encrypt; otherwise the server's CCP gets a Protocol-Reject, as pppd without compression
//! support answers.
//!
//! The automaton and codecs are the gateway's own (`pptp_user::ppp`, `pptp_user::wire`).

use std::{net::Ipv4Addr, time::Duration};

use pptp_user::{
    ppp::{
        fsm::{self, Fsm, Negotiator, Output, Reason, Verdict},
        lcp::{Lcp, LcpNegotiator},
    },
    wire::{
        cp::{CpPacket, parse_options},
        ipcp::{self, IpcpOption},
        lcp::{AuthProtocol, LcpOption, kind},
        ppp::proto,
    },
};

use crate::responder::{Responder, ResponderOutput};

/// PPP protocol of MPPE packets.
pub const MPPE: u16 = pptp_common::mppe::PPP_MPPE;

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PeerConfig {
    pub user: String,
    pub password: String,
    /// Authentication protocols we accept, in preference order (what we Nak towards).
    pub methods: Vec<AuthProtocol>,
    pub mru: u16,
    pub fsm: fsm::Config,
    pub request_dns: bool,
    /// Require MPPE-128 (stateless), as pppd's `require-mppe-128`: MS-CHAPv2 only, and the link
    /// comes up only once CCP agreed on it.
    pub mppe: bool,
    /// Agree to stateful MPPE when the server asks for it (pppd's `mppe-stateful`); stateless
    /// is asked for first either way.
    pub mppe_stateful: bool,
}

impl Default for PeerConfig {
    fn default() -> Self {
        Self {
            user: String::new(),
            password: String::new(),
            methods: vec![
                AuthProtocol::MsChapV2,
                AuthProtocol::ChapMd5,
                AuthProtocol::Pap,
            ],
            mru: 1400,
            fsm: fsm::Config::default(),
            request_dns: true,
            mppe: false,
            mppe_stateful: false,
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum PeerTimer {
    Lcp,
    Auth,
    Ipcp,
    Ccp,
}

/// The link's results.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Network {
    pub address: Ipv4Addr,
    /// The server's end of the point-to-point link.
    pub peer: Ipv4Addr,
    pub dns: Option<Ipv4Addr>,
    pub auth: Option<AuthProtocol>,
    /// The server's MRU: the largest packet we may send.
    pub peer_mru: u16,
    /// MPPE-128 with our (send, receive) start keys, when agreed.
    pub mppe: Option<([u8; 16], [u8; 16])>,
    /// The MPPE agreed is stateful (RFC 3078 §8.2).
    pub mppe_stateful: bool,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum PeerDown {
    Lcp(Reason),
    /// The server refused our credentials (its message, e.g. `E=691 R=0 ...`).
    AuthFailed {
        message: String,
        attempts: u32,
    },
    Ipcp(Reason),
    /// The server sent LCP Terminate-Request with a reason in its data.
    ServerTerminated(String),
    /// We require MPPE and the server would not agree to it.
    MppeRefused,
    Closed,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum PeerOutput {
    Send {
        protocol: u16,
        info: Vec<u8>,
    },
    SetTimer(PeerTimer, Duration),
    CancelTimer(PeerTimer),
    Up(Network),
    Down(PeerDown),
    /// Stateful MPPE: the server sent a CCP Reset-Request; our next packet re-keys and goes
    /// out flushed (the Reset-Ack is sent already).
    MppeReset,
}

/// LCP option policy, client side.
struct ClientLcp {
    methods: Vec<AuthProtocol>,
    magic: u32,
    mru: Option<u16>,
    peer_mru: u16,
    auth: Option<AuthProtocol>,
}

impl ClientLcp {
    fn request_options(&self) -> Vec<LcpOption> {
        let mut v = Vec::new();
        if let Some(m) = self.mru {
            v.push(LcpOption::Mru(m));
        }
        v.push(LcpOption::MagicNumber(self.magic));
        v
    }
}

fn emit(opts: &[LcpOption]) -> Vec<u8> {
    let mut b = Vec::new();
    for o in opts {
        o.emit(&mut b);
    }
    b
}

impl Negotiator for ClientLcp {
    fn request(&mut self) -> Vec<u8> {
        emit(&self.request_options())
    }

    fn check(&mut self, options: &[u8], reject_only: bool) -> Verdict {
        let Ok(raws) = parse_options(options) else {
            return Verdict::Discard;
        };
        let (mut naks, mut rejects) = (Vec::new(), Vec::new());
        let mut peer_mru = 1500;
        let mut auth = None;
        for raw in &raws {
            match LcpOption::decode(raw) {
                LcpOption::Mru(m) if m >= 128 => peer_mru = m,
                LcpOption::MagicNumber(m) if m != 0 && m != self.magic => {}
                LcpOption::Accm(_) | LcpOption::Pfc | LcpOption::Acfc => {}
                LcpOption::AuthProtocol(v) => {
                    match AuthProtocol::from_value(&v).filter(|a| self.methods.contains(a)) {
                        Some(a) => auth = Some(a),
                        None => match self.methods.first() {
                            Some(ours) => {
                                LcpOption::AuthProtocol(ours.value().to_vec()).emit(&mut naks)
                            }
                            None => raw.emit(&mut rejects),
                        },
                    }
                }
                LcpOption::Mru(_) => LcpOption::Mru(1500).emit(&mut naks),
                LcpOption::MagicNumber(m) => {
                    LcpOption::MagicNumber(m ^ 0x2545_f491).emit(&mut naks)
                }
                LcpOption::Other { .. } => raw.emit(&mut rejects),
            }
        }
        if !rejects.is_empty() {
            return Verdict::Reject(rejects);
        }
        if !naks.is_empty() {
            return if reject_only {
                Verdict::Reject(naks)
            } else {
                Verdict::Nak(naks)
            };
        }
        // What we ack is what the server will use (our own request's Ack may come before or after).
        self.peer_mru = peer_mru;
        self.auth = auth;
        Verdict::Ack
    }

    fn acked(&mut self, options: &[u8]) -> bool {
        options == self.request().as_slice()
    }

    fn nakked(&mut self, options: &[u8]) -> bool {
        let Ok(raws) = parse_options(options) else {
            return false;
        };
        for raw in &raws {
            match LcpOption::decode(raw) {
                LcpOption::Mru(m) if m >= 128 => self.mru = Some(m),
                LcpOption::MagicNumber(_) => {
                    self.magic = self.magic.rotate_left(7) ^ 0x9e37_79b9;
                }
                _ => {}
            }
        }
        true
    }

    fn rejected(&mut self, options: &[u8]) -> bool {
        let Ok(raws) = parse_options(options) else {
            return false;
        };
        for raw in &raws {
            if raw.kind == kind::MRU {
                self.mru = None;
            }
        }
        true
    }
}

impl LcpNegotiator for ClientLcp {
    fn magic(&self) -> u32 {
        self.magic
    }
    fn peer_mru(&self) -> u16 {
        self.peer_mru
    }
}

/// IPCP option policy, client side: ask for 0.0.0.0 (and DNS) and take what the server Naks.
struct ClientIpcp {
    address: Ipv4Addr,
    dns: Option<Ipv4Addr>,
    peer: Ipv4Addr,
}

impl Negotiator for ClientIpcp {
    fn request(&mut self) -> Vec<u8> {
        let mut b = Vec::new();
        IpcpOption::Address {
            kind: ipcp::kind::IP_ADDRESS,
            addr: self.address,
        }
        .emit(&mut b);
        if let Some(d) = self.dns {
            IpcpOption::Address {
                kind: ipcp::kind::PRIMARY_DNS,
                addr: d,
            }
            .emit(&mut b);
        }
        b
    }

    fn check(&mut self, options: &[u8], _reject_only: bool) -> Verdict {
        let Ok(raws) = parse_options(options) else {
            return Verdict::Discard;
        };
        let mut rejects = Vec::new();
        let mut peer = None;
        for raw in &raws {
            match IpcpOption::decode(raw) {
                IpcpOption::Address {
                    kind: ipcp::kind::IP_ADDRESS,
                    addr,
                } => peer = Some(addr),
                _ => raw.emit(&mut rejects),
            }
        }
        if !rejects.is_empty() {
            return Verdict::Reject(rejects);
        }
        if let Some(p) = peer {
            self.peer = p;
        }
        Verdict::Ack
    }

    fn acked(&mut self, options: &[u8]) -> bool {
        options == self.request().as_slice()
    }

    fn nakked(&mut self, options: &[u8]) -> bool {
        let Ok(raws) = parse_options(options) else {
            return false;
        };
        for raw in &raws {
            if let IpcpOption::Address { kind, addr } = IpcpOption::decode(raw) {
                match kind {
                    ipcp::kind::IP_ADDRESS => self.address = addr,
                    ipcp::kind::PRIMARY_DNS if self.dns.is_some() => self.dns = Some(addr),
                    _ => {}
                }
            }
        }
        true
    }

    fn rejected(&mut self, options: &[u8]) -> bool {
        let Ok(raws) = parse_options(options) else {
            return false;
        };
        for raw in &raws {
            if raw.kind == ipcp::kind::PRIMARY_DNS {
                self.dns = None;
            }
        }
        true
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Phase {
    Establish,
    Authenticate,
    Network,
    Opened,
    Terminate,
    Dead,
}

/// CCP, client side: MPPE-128, stateless first, stateful when allowed and the server asks; or
/// nothing.
struct ClientCcp {
    /// We ask for MPPE and agree to it; false once the server rejected it.
    want: bool,
    /// Stateful is acceptable (`mppe-stateful`), and whether it is what we now ask for.
    allow_stateful: bool,
    stateful: bool,
    acked_ours: bool,
    acked_theirs: bool,
}

const MPPE_STATELESS_128: [u8; 6] = [18, 6, 0x01, 0, 0, 0x40];
const MPPE_STATEFUL_128: [u8; 6] = [18, 6, 0, 0, 0, 0x40];

impl ClientCcp {
    fn option(&self) -> [u8; 6] {
        if self.stateful {
            MPPE_STATEFUL_128
        } else {
            MPPE_STATELESS_128
        }
    }
}

impl Negotiator for ClientCcp {
    fn request(&mut self) -> Vec<u8> {
        if self.want {
            self.option().to_vec()
        } else {
            Vec::new()
        }
    }

    fn check(&mut self, options: &[u8], _reject_only: bool) -> Verdict {
        let Ok(raws) = parse_options(options) else {
            return Verdict::Discard;
        };
        let mut reject = Vec::new();
        let mut mppe_ok = false;
        for raw in &raws {
            if raw.kind == 18 && self.want {
                if raw.value == &MPPE_STATEFUL_128[2..] && self.allow_stateful {
                    // Both directions run one mode: ours follows.
                    self.stateful = true;
                }
                if raw.value == &self.option()[2..] {
                    mppe_ok = true;
                } else {
                    return Verdict::Nak(self.option().to_vec());
                }
            } else {
                raw.emit(&mut reject);
            }
        }
        if !reject.is_empty() {
            return Verdict::Reject(reject);
        }
        self.acked_theirs = mppe_ok;
        Verdict::Ack
    }

    fn acked(&mut self, _options: &[u8]) -> bool {
        self.acked_ours = self.want;
        true
    }

    fn nakked(&mut self, options: &[u8]) -> bool {
        if let Ok(raws) = parse_options(options) {
            for raw in raws.iter().filter(|r| r.kind == 18) {
                if raw.value == &MPPE_STATEFUL_128[2..] && self.allow_stateful {
                    self.stateful = true;
                } else if raw.value != &MPPE_STATELESS_128[2..] {
                    // Anything else (stateful not allowed, other strengths): no MPPE.
                    self.want = false;
                }
            }
        }
        true
    }

    fn rejected(&mut self, _options: &[u8]) -> bool {
        self.want = false;
        true
    }
}

pub struct Peer {
    config: PeerConfig,
    phase: Phase,
    lcp: Lcp<ClientLcp>,
    responder: Option<Responder>,
    ipcp: Option<Fsm<ClientIpcp>>,
    ccp: Option<Fsm<ClientCcp>>,
    /// Our MPPE start keys, from MS-CHAPv2.
    keys: Option<([u8; 16], [u8; 16])>,
    /// IPCP is up; the network is reported once CCP agreed too (when encrypting).
    ipcp_up: bool,
    ccp_up: bool,
    identifier: u8,
    seed: u64,
    down: Option<PeerDown>,
}

impl Peer {
    /// The call is connected: LCP starts.
    pub fn new(config: PeerConfig, seed: u64) -> (Self, Vec<PeerOutput>) {
        let policy = ClientLcp {
            methods: config.methods.clone(),
            magic: (seed as u32) | 1,
            mru: (config.mru != 1500).then_some(config.mru),
            peer_mru: 1500,
            auth: None,
        };
        let lcp = Lcp::with_policy(policy, config.fsm);
        let mut peer = Self {
            config,
            phase: Phase::Establish,
            lcp,
            responder: None,
            ipcp: None,
            ccp: None,
            keys: None,
            ipcp_up: false,
            ccp_up: false,
            identifier: 0,
            seed,
            down: None,
        };
        let mut out = Vec::new();
        let o = peer.lcp.fsm.open();
        peer.lcp_outputs(o, &mut out);
        let o = peer.lcp.fsm.up();
        peer.lcp_outputs(o, &mut out);
        (peer, out)
    }

    pub fn phase(&self) -> Phase {
        self.phase
    }

    /// Why the link is ending, once known (before `Down` is reported).
    pub fn ending_because(&self) -> Option<&PeerDown> {
        self.down.as_ref()
    }

    /// The protocol authentication used (once LCP is open).
    pub fn auth(&self) -> Option<AuthProtocol> {
        self.lcp.fsm.negotiator.auth
    }

    pub fn receive(&mut self, protocol: u16, info: &[u8]) -> Vec<PeerOutput> {
        let mut out = Vec::new();
        if self.phase == Phase::Dead {
            return out;
        }
        match protocol {
            proto::LCP => {
                if let Ok(p) = CpPacket::parse(info)
                    && p.code == pptp_user::wire::cp::code::TERMINATE_REQUEST
                    && !p.data.is_empty()
                    && self.down.is_none()
                {
                    self.down = Some(PeerDown::ServerTerminated(
                        String::from_utf8_lossy(p.data).into_owned(),
                    ));
                }
                let o = self.lcp.receive(info);
                self.lcp_outputs(o, &mut out);
            }
            proto::PAP | proto::CHAP if self.phase == Phase::Authenticate => {
                if let Some(r) = self.responder.as_mut() {
                    let o = r.receive(info);
                    self.responder_outputs(o, &mut out);
                }
            }
            proto::IPCP if matches!(self.phase, Phase::Network | Phase::Opened) => {
                if let (Some(f), Ok(p)) = (self.ipcp.as_mut(), CpPacket::parse(info)) {
                    let o = f.receive(&p);
                    self.ipcp_outputs(o, &mut out);
                }
            }
            proto::CCP if self.ccp.is_some() => {
                if let (Some(f), Ok(p)) = (self.ccp.as_mut(), CpPacket::parse(info)) {
                    match p.code {
                        // Reset-Request (RFC 1962 §2.1): re-key, and ack with its identifier.
                        14 if self.ccp_up => {
                            out.push(PeerOutput::MppeReset);
                            out.push(send(proto::CCP, 15, p.identifier, p.data));
                        }
                        14 | 15 => {}
                        _ => {
                            let o = f.receive(&p);
                            self.ccp_outputs(o, &mut out);
                        }
                    }
                }
            }
            proto::IPV4 | MPPE => {}
            other if self.lcp.fsm.is_opened() && !matches!(other, proto::PAP | proto::CHAP) => {
                // CCP, IPV6CP and anything else we do not run (RFC 1661 §5.7).
                self.identifier = self.identifier.wrapping_add(1);
                if let Some(Output::Send {
                    code,
                    identifier,
                    data,
                }) = self.lcp.protocol_reject(self.identifier, other, info)
                {
                    out.push(send(proto::LCP, code, identifier, &data));
                }
            }
            _ => {}
        }
        out
    }

    pub fn timeout(&mut self, timer: PeerTimer) -> Vec<PeerOutput> {
        let mut out = Vec::new();
        match timer {
            PeerTimer::Lcp => {
                let o = self.lcp.fsm.timeout();
                self.lcp_outputs(o, &mut out);
            }
            PeerTimer::Auth => {
                if let Some(r) = self.responder.as_mut() {
                    let o = r.timeout();
                    self.responder_outputs(o, &mut out);
                }
            }
            PeerTimer::Ipcp => {
                if let Some(f) = self.ipcp.as_mut() {
                    let o = f.timeout();
                    self.ipcp_outputs(o, &mut out);
                }
            }
            PeerTimer::Ccp => {
                if let Some(f) = self.ccp.as_mut() {
                    let o = f.timeout();
                    self.ccp_outputs(o, &mut out);
                }
            }
        }
        out
    }

    /// Hang up: LCP Terminate-Request, then `Down(Closed)`.
    pub fn close(&mut self) -> Vec<PeerOutput> {
        self.terminate(PeerDown::Closed)
    }

    fn terminate(&mut self, reason: PeerDown) -> Vec<PeerOutput> {
        let mut out = Vec::new();
        if matches!(self.phase, Phase::Terminate | Phase::Dead) {
            return out;
        }
        self.down = Some(reason);
        self.phase = Phase::Terminate;
        let o = self.lcp.fsm.close(Reason::LocalClose);
        self.lcp_outputs(o, &mut out);
        if self.phase == Phase::Terminate && !self.lcp.fsm.state().timer_running() {
            self.finish(&mut out);
        }
        out
    }

    fn finish(&mut self, out: &mut Vec<PeerOutput>) {
        if self.phase == Phase::Dead {
            return;
        }
        self.phase = Phase::Dead;
        for t in [PeerTimer::Lcp, PeerTimer::Auth, PeerTimer::Ipcp] {
            out.push(PeerOutput::CancelTimer(t));
        }
        let reason = self.down.take().unwrap_or(PeerDown::Closed);
        out.push(PeerOutput::Down(reason));
    }

    fn lcp_outputs(&mut self, o: Vec<Output>, out: &mut Vec<PeerOutput>) {
        for x in o {
            match x {
                Output::Send {
                    code,
                    identifier,
                    data,
                } => out.push(send(proto::LCP, code, identifier, &data)),
                Output::StartTimer(d) => out.push(PeerOutput::SetTimer(PeerTimer::Lcp, d)),
                Output::StopTimer => out.push(PeerOutput::CancelTimer(PeerTimer::Lcp)),
                Output::Up if self.phase == Phase::Establish => self.start_auth(out),
                Output::Up => {}
                Output::Down(reason) => {
                    // The server terminated or renegotiates: this client does not follow a
                    // renegotiation, it ends the call.
                    if self.down.is_none() {
                        self.down = Some(PeerDown::Lcp(reason));
                    }
                    if self.phase != Phase::Terminate {
                        self.phase = Phase::Terminate;
                    }
                }
                Output::Finished(reason) => {
                    if self.down.is_none() {
                        self.down = Some(PeerDown::Lcp(reason));
                    }
                    self.finish(out);
                }
                Output::Started | Output::EchoReply(_) | Output::ProtocolRejected(_) => {}
            }
        }
    }

    fn start_auth(&mut self, out: &mut Vec<PeerOutput>) {
        match self.lcp.fsm.negotiator.auth {
            None => self.start_network(out),
            Some(protocol) => {
                self.phase = Phase::Authenticate;
                let mut challenge = [0u8; 16];
                challenge[..8].copy_from_slice(&self.seed.to_le_bytes());
                challenge[8..].copy_from_slice(&self.seed.rotate_left(29).to_be_bytes());
                let mut r = Responder::new(
                    protocol,
                    &self.config.user,
                    &self.config.password,
                    challenge,
                );
                let o = r.start();
                self.responder = Some(r);
                self.responder_outputs(o, out);
            }
        }
    }

    fn responder_outputs(&mut self, o: Vec<ResponderOutput>, out: &mut Vec<PeerOutput>) {
        for x in o {
            match x {
                ResponderOutput::Send { protocol, info } => {
                    out.push(PeerOutput::Send { protocol, info })
                }
                ResponderOutput::StartTimer(d) => {
                    out.push(PeerOutput::SetTimer(PeerTimer::Auth, d))
                }
                ResponderOutput::StopTimer => out.push(PeerOutput::CancelTimer(PeerTimer::Auth)),
                ResponderOutput::Success => {
                    self.keys = self.responder.as_ref().and_then(|r| r.mppe_keys());
                    if self.config.mppe && self.keys.is_none() {
                        // No MS-CHAPv2, no keys: pppd's require-mppe-128 hangs up here too.
                        out.extend(self.terminate(PeerDown::MppeRefused));
                        continue;
                    }
                    self.start_network(out)
                }
                ResponderOutput::Failed { message } => {
                    let attempts = self.responder.as_ref().map_or(0, |r| r.attempts);
                    // The server closes the link after a failure; we hang up too.
                    out.extend(self.terminate(PeerDown::AuthFailed { message, attempts }));
                }
            }
        }
    }

    fn start_network(&mut self, out: &mut Vec<PeerOutput>) {
        if !matches!(self.phase, Phase::Establish | Phase::Authenticate) {
            return;
        }
        self.phase = Phase::Network;
        let mut f = Fsm::new(
            ClientIpcp {
                address: Ipv4Addr::UNSPECIFIED,
                dns: self.config.request_dns.then_some(Ipv4Addr::UNSPECIFIED),
                peer: Ipv4Addr::UNSPECIFIED,
            },
            self.config.fsm,
        );
        let mut o = f.open();
        o.extend(f.up());
        self.ipcp = Some(f);
        self.ipcp_outputs(o, out);
        if self.config.mppe {
            let mut c = Fsm::new(
                ClientCcp {
                    want: true,
                    allow_stateful: self.config.mppe_stateful,
                    stateful: false,
                    acked_ours: false,
                    acked_theirs: false,
                },
                self.config.fsm,
            );
            let mut o = c.open();
            o.extend(c.up());
            self.ccp = Some(c);
            self.ccp_outputs(o, out);
        }
    }

    fn ccp_outputs(&mut self, o: Vec<Output>, out: &mut Vec<PeerOutput>) {
        for x in o {
            match x {
                Output::Send {
                    code,
                    identifier,
                    data,
                } => out.push(send(proto::CCP, code, identifier, &data)),
                Output::StartTimer(d) => out.push(PeerOutput::SetTimer(PeerTimer::Ccp, d)),
                Output::StopTimer => out.push(PeerOutput::CancelTimer(PeerTimer::Ccp)),
                Output::Up => {
                    let agreed = self
                        .ccp
                        .as_ref()
                        .is_some_and(|c| c.negotiator.acked_ours && c.negotiator.acked_theirs);
                    if !agreed {
                        out.extend(self.terminate(PeerDown::MppeRefused));
                        return;
                    }
                    self.ccp_up = true;
                    self.report_up(out);
                }
                Output::Finished(_) if !self.ccp_up && self.phase != Phase::Terminate => {
                    out.extend(self.terminate(PeerDown::MppeRefused));
                    return;
                }
                _ => {}
            }
        }
    }

    /// The network is up once IPCP is, and CCP too when we encrypt.
    fn report_up(&mut self, out: &mut Vec<PeerOutput>) {
        if !self.ipcp_up || (self.config.mppe && !self.ccp_up) || self.phase == Phase::Opened {
            return;
        }
        let Some(n) = self.ipcp.as_ref().map(|f| &f.negotiator) else {
            return;
        };
        let network = Network {
            address: n.address,
            peer: n.peer,
            dns: n.dns.filter(|d| !d.is_unspecified()),
            auth: self.lcp.fsm.negotiator.auth,
            peer_mru: self.lcp.fsm.negotiator.peer_mru,
            mppe: if self.config.mppe { self.keys } else { None },
            mppe_stateful: self.ccp.as_ref().is_some_and(|c| c.negotiator.stateful),
        };
        self.phase = Phase::Opened;
        out.push(PeerOutput::Up(network));
    }

    fn ipcp_outputs(&mut self, o: Vec<Output>, out: &mut Vec<PeerOutput>) {
        for x in o {
            match x {
                Output::Send {
                    code,
                    identifier,
                    data,
                } => out.push(send(proto::IPCP, code, identifier, &data)),
                Output::StartTimer(d) => out.push(PeerOutput::SetTimer(PeerTimer::Ipcp, d)),
                Output::StopTimer => out.push(PeerOutput::CancelTimer(PeerTimer::Ipcp)),
                Output::Up => {
                    self.ipcp_up = true;
                    self.report_up(out);
                }
                Output::Down(_) => {}
                Output::Finished(reason) => {
                    if self.phase != Phase::Terminate {
                        out.extend(self.terminate(PeerDown::Ipcp(reason)));
                    }
                }
                Output::Started | Output::EchoReply(_) | Output::ProtocolRejected(_) => {}
            }
        }
    }
}

fn send(protocol: u16, code: u8, identifier: u8, data: &[u8]) -> PeerOutput {
    PeerOutput::Send {
        protocol,
        info: CpPacket {
            code,
            identifier,
            data,
        }
        .to_bytes(),
    }
}

#[cfg(test)]
mod tests {
    //! The client's link against the gateway's server link, frame for frame, with no I/O.
    use pptp_user::{
        auth::authenticator::Secret,
        ppp::{
            ipcp::IpcpConfig,
            link::{Link, LinkConfig, LinkOutput},
        },
    };

    use super::*;

    fn converse(methods_server: Vec<AuthProtocol>, client: PeerConfig) -> Vec<PeerOutput> {
        let mut lc = LinkConfig::default();
        lc.lcp.auth = methods_server;
        converse_with(lc, client)
    }

    fn converse_with(lc: LinkConfig, client: PeerConfig) -> Vec<PeerOutput> {
        let (mut server, so) = Link::new(lc, 42);
        let (mut peer, po) = Peer::new(client, 7);
        let mut to_peer: Vec<(u16, Vec<u8>)> = so
            .into_iter()
            .filter_map(|o| match o {
                LinkOutput::Send { protocol, info } => Some((protocol, info)),
                _ => None,
            })
            .collect();
        let mut results = Vec::new();
        let mut to_server: Vec<(u16, Vec<u8>)> = Vec::new();
        let split = |o: Vec<PeerOutput>, to: &mut Vec<(u16, Vec<u8>)>, r: &mut Vec<PeerOutput>| {
            for x in o {
                match x {
                    PeerOutput::Send { protocol, info } => to.push((protocol, info)),
                    PeerOutput::Up(_) | PeerOutput::Down(_) => r.push(x),
                    _ => {}
                }
            }
        };
        split(po, &mut to_server, &mut results);
        for _ in 0..20 {
            for (p, i) in to_peer.drain(..) {
                let o = peer.receive(p, &i);
                split(o, &mut to_server, &mut results);
            }
            for (p, i) in to_server.drain(..) {
                for o in server.receive(p, &i, |u| (u == "bob").then(|| Secret::Plain("pw".into())))
                {
                    match o {
                        LinkOutput::Send { protocol, info } => to_peer.push((protocol, info)),
                        LinkOutput::Authenticated { .. } => {
                            for o in server.start_network(IpcpConfig {
                                local: Ipv4Addr::new(10, 99, 0, 1),
                                assigned: Ipv4Addr::new(10, 99, 0, 10),
                                dns: [Some(Ipv4Addr::new(192, 0, 2, 53)), None],
                                nbns: [None, None],
                            }) {
                                if let LinkOutput::Send { protocol, info } = o {
                                    to_peer.push((protocol, info));
                                }
                            }
                        }
                        _ => {}
                    }
                }
            }
        }
        results
    }

    /// The client's MPPE modes against the gateway's `mppe_stateful` settings, with no I/O:
    /// stateless unless the gateway forces stateful and the client allows it (pppd's
    /// `mppe-stateful`); forced against a client that does not allow it: no session.
    #[test]
    fn mppe_modes_against_the_gateways_stateful_settings() {
        use pptp_user::ppp::ccp::{MppePolicy, StatefulMppe};
        for (server, client_allows, expect) in [
            (StatefulMppe::No, true, Some(false)),
            (StatefulMppe::Allow, true, Some(false)),
            (StatefulMppe::Force, true, Some(true)),
            (StatefulMppe::Force, false, None),
        ] {
            let lc = LinkConfig {
                mppe: MppePolicy::Require,
                mppe_stateful: server,
                ..LinkConfig::default()
            };
            let client = PeerConfig {
                user: "bob".into(),
                password: "pw".into(),
                mppe: true,
                mppe_stateful: client_allows,
                ..PeerConfig::default()
            };
            let r = converse_with(lc, client);
            let got = r.iter().find_map(|o| match o {
                PeerOutput::Up(n) => Some((n.mppe.is_some(), n.mppe_stateful)),
                _ => None,
            });
            match expect {
                Some(stateful) => assert_eq!(got, Some((true, stateful)), "{server:?}: {r:?}"),
                None => assert!(
                    got.is_none() && r.contains(&PeerOutput::Down(PeerDown::MppeRefused)),
                    "{server:?}: {r:?}"
                ),
            }
        }
    }

    #[test]
    fn each_method_brings_the_network_up() {
        for m in [
            AuthProtocol::MsChapV2,
            AuthProtocol::ChapMd5,
            AuthProtocol::Pap,
        ] {
            let client = PeerConfig {
                user: "bob".into(),
                password: "pw".into(),
                methods: vec![m],
                ..PeerConfig::default()
            };
            // The server prefers MS-CHAPv2; our Nak moves it to the method we allow.
            let r = converse(
                vec![
                    AuthProtocol::MsChapV2,
                    AuthProtocol::ChapMd5,
                    AuthProtocol::Pap,
                ],
                client,
            );
            assert_eq!(
                r,
                vec![PeerOutput::Up(Network {
                    address: Ipv4Addr::new(10, 99, 0, 10),
                    peer: Ipv4Addr::new(10, 99, 0, 1),
                    dns: Some(Ipv4Addr::new(192, 0, 2, 53)),
                    auth: Some(m),
                    peer_mru: 1400,
                    mppe: None,
                    mppe_stateful: false,
                })],
                "{m:?}"
            );
        }
    }

    #[test]
    fn wrong_password_ends_the_link() {
        let client = PeerConfig {
            user: "bob".into(),
            password: "nope".into(),
            ..PeerConfig::default()
        };
        let r = converse(vec![AuthProtocol::MsChapV2], client);
        assert!(
            matches!(&r[..], [PeerOutput::Down(PeerDown::AuthFailed { message, attempts: 3 })] if message.contains("E=691")),
            "{r:?}"
        );
    }
}
