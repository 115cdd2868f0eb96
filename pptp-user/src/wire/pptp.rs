//! PPTP control messages (RFC 2637 §2) and the framing of the TCP byte stream that carries them.
//!
//! Every message has a fixed size. Each struct lists its fields in wire order after the 12-byte
//! header, reserved fields included (as [`Zero`], which parses only as zeros and emits zeros), so
//! `parse` and `emit` are exact inverses: `emit(parse(b)) == b` for every accepted `b`.

use thiserror::Error;

use super::cursor::{Reader, Truncated, Writer};

/// Magic cookie of every control message header.
pub const MAGIC_COOKIE: u32 = 0x1a2b_3c4d;
/// "Control Message" in the header's PPTP Message Type field (2, management, is not used).
pub const MESSAGE_TYPE_CONTROL: u16 = 1;
/// Protocol version 1.0.
pub const PROTOCOL_VERSION: u16 = 0x0100;
pub const HEADER_LEN: usize = 12;
/// The smallest and largest messages (StopCCRQ, ICRQ): a header claiming anything else is not PPTP.
pub const MIN_MESSAGE_LEN: usize = 16;
pub const MAX_MESSAGE_LEN: usize = 220;
/// TCP port of the control connection.
pub const PORT: u16 = 1723;

/// Framing and bearer capability and type bits (RFC 2637 §2.1, §2.7).
pub mod caps {
    pub const FRAMING_ASYNC: u32 = 1;
    pub const FRAMING_SYNC: u32 = 2;
    pub const BEARER_ANALOG: u32 = 1;
    pub const BEARER_DIGITAL: u32 = 2;
}

/// Result codes, per message (RFC 2637 §2.2, §2.4, §2.6, §2.8, §2.10, §2.13).
pub mod result {
    pub const SCCRP_SUCCESSFUL: u8 = 1;
    pub const SCCRP_GENERAL_ERROR: u8 = 2;
    pub const SCCRP_CHANNEL_EXISTS: u8 = 3;
    pub const SCCRP_NOT_AUTHORIZED: u8 = 4;
    pub const SCCRP_BAD_VERSION: u8 = 5;
    pub const STOPCCRP_OK: u8 = 1;
    pub const STOPCCRP_GENERAL_ERROR: u8 = 2;
    pub const ECHO_OK: u8 = 1;
    pub const ECHO_GENERAL_ERROR: u8 = 2;
    pub const OCRP_CONNECTED: u8 = 1;
    pub const OCRP_GENERAL_ERROR: u8 = 2;
    pub const OCRP_NO_CARRIER: u8 = 3;
    pub const OCRP_BUSY: u8 = 4;
    pub const OCRP_NO_DIAL_TONE: u8 = 5;
    pub const OCRP_TIME_OUT: u8 = 6;
    pub const OCRP_DO_NOT_ACCEPT: u8 = 7;
    pub const ICRP_CONNECT: u8 = 1;
    pub const ICRP_GENERAL_ERROR: u8 = 2;
    pub const ICRP_DO_NOT_ACCEPT: u8 = 3;
    pub const CDN_LOST_CARRIER: u8 = 1;
    pub const CDN_GENERAL_ERROR: u8 = 2;
    pub const CDN_ADMIN_SHUTDOWN: u8 = 3;
    pub const CDN_REQUEST: u8 = 4;
}

/// General error codes (RFC 2637 §2.16), carried with a "general error" result.
pub mod error_code {
    pub const NONE: u8 = 0;
    pub const NOT_CONNECTED: u8 = 1;
    pub const BAD_FORMAT: u8 = 2;
    pub const BAD_VALUE: u8 = 3;
    pub const NO_RESOURCE: u8 = 4;
    pub const BAD_CALL_ID: u8 = 5;
    pub const PAC_ERROR: u8 = 6;
}

/// Stop-Control-Connection-Request reasons (RFC 2637 §2.3).
pub mod stop_reason {
    pub const NONE: u8 = 1;
    pub const STOP_PROTOCOL: u8 = 2;
    pub const STOP_LOCAL_SHUTDOWN: u8 = 3;
}

#[derive(Clone, Copy, Debug, Error, PartialEq, Eq)]
pub enum Error {
    #[error("length {0} is outside {MIN_MESSAGE_LEN}..={MAX_MESSAGE_LEN}")]
    BadLength(u16),
    #[error("PPTP message type {0} (only 1, control, is used)")]
    BadMessageType(u16),
    #[error("bad magic cookie {0:#010x}")]
    BadMagic(u32),
    #[error("unknown control message type {0}")]
    UnknownControlType(u16),
    #[error("{kind:?} must be {expected} bytes, header says {got}")]
    WrongSize {
        kind: ControlType,
        expected: usize,
        got: usize,
    },
    #[error("reserved field at offset {0} is not zero")]
    ReservedNotZero(usize),
    #[error(transparent)]
    Truncated(#[from] Truncated),
}

impl Error {
    /// Whether the byte stream can no longer be trusted to be framed right: the connection must
    /// be closed (RFC 2637 gives no way to resynchronise).
    pub fn is_fatal(&self) -> bool {
        matches!(
            self,
            Error::BadLength(_) | Error::BadMessageType(_) | Error::BadMagic(_)
        )
    }
}

/// A reserved field of `N` bytes: zero on the wire, or the message is refused.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Zero<const N: usize>;

/// A fixed-size text field (host name, vendor, phone number, statistics), kept byte for byte so
/// emit reproduces what was parsed; readers see the part before the first NUL.
#[derive(Clone, Copy, PartialEq, Eq)]
pub struct Text<const N: usize>(pub [u8; N]);

impl<const N: usize> Text<N> {
    /// `s` NUL-padded, cut to fit.
    pub fn new(s: &str) -> Self {
        let mut a = [0u8; N];
        let n = s.len().min(N);
        a[..n].copy_from_slice(&s.as_bytes()[..n]);
        Self(a)
    }
    pub fn trimmed(&self) -> &[u8] {
        let end = self.0.iter().position(|&b| b == 0).unwrap_or(N);
        &self.0[..end]
    }
}

impl<const N: usize> Default for Text<N> {
    fn default() -> Self {
        Self([0; N])
    }
}

impl<const N: usize> std::fmt::Debug for Text<N> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{:?}", String::from_utf8_lossy(self.trimmed()))
    }
}

/// One field's wire codec.
trait Field: Sized {
    fn read(r: &mut Reader<'_>) -> Result<Self, Error>;
    fn write(&self, w: &mut Writer<'_>);
}

impl Field for u8 {
    fn read(r: &mut Reader<'_>) -> Result<Self, Error> {
        Ok(r.u8()?)
    }
    fn write(&self, w: &mut Writer<'_>) {
        w.u8(*self);
    }
}
impl Field for u16 {
    fn read(r: &mut Reader<'_>) -> Result<Self, Error> {
        Ok(r.u16()?)
    }
    fn write(&self, w: &mut Writer<'_>) {
        w.u16(*self);
    }
}
impl Field for u32 {
    fn read(r: &mut Reader<'_>) -> Result<Self, Error> {
        Ok(r.u32()?)
    }
    fn write(&self, w: &mut Writer<'_>) {
        w.u32(*self);
    }
}
impl<const N: usize> Field for Text<N> {
    fn read(r: &mut Reader<'_>) -> Result<Self, Error> {
        Ok(Text(r.array()?))
    }
    fn write(&self, w: &mut Writer<'_>) {
        w.bytes(&self.0);
    }
}
impl<const N: usize> Field for Zero<N> {
    fn read(r: &mut Reader<'_>) -> Result<Self, Error> {
        let at = r.position();
        if r.take(N)?.iter().any(|&b| b != 0) {
            return Err(Error::ReservedNotZero(at));
        }
        Ok(Zero)
    }
    fn write(&self, w: &mut Writer<'_>) {
        w.zeros(N);
    }
}

/// Declares the messages: struct, size, control type, and field-order parse/emit.
macro_rules! messages {
    ($(
        $(#[$doc:meta])*
        $name:ident = $code:literal, $size:literal { $( $field:ident : $ty:ty ),* $(,)? }
    )*) => {
        /// Control Message Type codes (RFC 2637 §2).
        #[derive(Clone, Copy, Debug, PartialEq, Eq)]
        #[repr(u16)]
        pub enum ControlType { $( $name = $code ),* }

        impl ControlType {
            pub fn from_code(code: u16) -> Option<Self> {
                match code { $( $code => Some(Self::$name), )* _ => None }
            }
            /// The message's fixed size, header included.
            pub const fn size(self) -> usize {
                match self { $( Self::$name => $size ),* }
            }
        }

        $(
            $(#[$doc])*
            #[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
            pub struct $name { $( pub $field: $ty ),* }

            impl $name {
                fn read_body(r: &mut Reader<'_>) -> Result<Self, Error> {
                    Ok(Self { $( $field: <$ty as Field>::read(r)? ),* })
                }
                fn write_body(&self, w: &mut Writer<'_>) {
                    $( Field::write(&self.$field, w); )*
                }
            }

            impl From<$name> for ControlMessage {
                fn from(m: $name) -> Self { ControlMessage::$name(m) }
            }
        )*

        /// Any control message.
        #[derive(Clone, Copy, Debug, PartialEq, Eq)]
        pub enum ControlMessage { $( $name($name) ),* }

        impl ControlMessage {
            pub fn control_type(&self) -> ControlType {
                match self { $( Self::$name(_) => ControlType::$name ),* }
            }

            fn read_body(kind: ControlType, r: &mut Reader<'_>) -> Result<Self, Error> {
                Ok(match kind { $( ControlType::$name => Self::$name($name::read_body(r)?) ),* })
            }

            fn write_body(&self, w: &mut Writer<'_>) {
                match self { $( Self::$name(m) => m.write_body(w) ),* }
            }
        }
    };
}

messages! {
    /// Start-Control-Connection-Request (§2.1).
    StartControlConnectionRequest = 1, 156 {
        protocol_version: u16, reserved1: Zero<2>, framing_capabilities: u32,
        bearer_capabilities: u32, maximum_channels: u16, firmware_revision: u16,
        host_name: Text<64>, vendor_name: Text<64>,
    }
    /// Start-Control-Connection-Reply (§2.2).
    StartControlConnectionReply = 2, 156 {
        protocol_version: u16, result_code: u8, error_code: u8, framing_capabilities: u32,
        bearer_capabilities: u32, maximum_channels: u16, firmware_revision: u16,
        host_name: Text<64>, vendor_name: Text<64>,
    }
    /// Stop-Control-Connection-Request (§2.3).
    StopControlConnectionRequest = 3, 16 { reason: u8, reserved1: Zero<1>, reserved2: Zero<2> }
    /// Stop-Control-Connection-Reply (§2.4).
    StopControlConnectionReply = 4, 16 { result_code: u8, error_code: u8, reserved1: Zero<2> }
    /// Echo-Request (§2.5).
    EchoRequest = 5, 16 { identifier: u32 }
    /// Echo-Reply (§2.6).
    EchoReply = 6, 20 { identifier: u32, result_code: u8, error_code: u8, reserved1: Zero<2> }
    /// Outgoing-Call-Request (§2.7).
    OutgoingCallRequest = 7, 168 {
        call_id: u16, call_serial_number: u16, minimum_bps: u32, maximum_bps: u32,
        bearer_type: u32, framing_type: u32, packet_recv_window_size: u16,
        packet_processing_delay: u16, phone_number_length: u16, reserved1: Zero<2>,
        phone_number: Text<64>, subaddress: Text<64>,
    }
    /// Outgoing-Call-Reply (§2.8).
    OutgoingCallReply = 8, 32 {
        call_id: u16, peer_call_id: u16, result_code: u8, error_code: u8, cause_code: u16,
        connect_speed: u32, packet_recv_window_size: u16, packet_processing_delay: u16,
        physical_channel_id: u32,
    }
    /// Incoming-Call-Request (§2.9).
    IncomingCallRequest = 9, 220 {
        call_id: u16, call_serial_number: u16, call_bearer_type: u32, physical_channel_id: u32,
        dialed_number_length: u16, dialing_number_length: u16, dialed_number: Text<64>,
        dialing_number: Text<64>, subaddress: Text<64>,
    }
    /// Incoming-Call-Reply (§2.10).
    IncomingCallReply = 10, 24 {
        call_id: u16, peer_call_id: u16, result_code: u8, error_code: u8,
        packet_recv_window_size: u16, packet_transmit_delay: u16, reserved1: Zero<2>,
    }
    /// Incoming-Call-Connected (§2.11).
    IncomingCallConnected = 11, 28 {
        peer_call_id: u16, reserved1: Zero<2>, connect_speed: u32,
        packet_recv_window_size: u16, packet_transmit_delay: u16, framing_type: u32,
    }
    /// Call-Clear-Request (§2.12).
    CallClearRequest = 12, 16 { call_id: u16, reserved1: Zero<2> }
    /// Call-Disconnect-Notify (§2.13).
    CallDisconnectNotify = 13, 148 {
        call_id: u16, result_code: u8, error_code: u8, cause_code: u16, reserved1: Zero<2>,
        call_statistics: Text<128>,
    }
    /// WAN-Error-Notify (§2.14).
    WanErrorNotify = 14, 40 {
        reserved1: Zero<2>, peer_call_id: u16, crc_errors: u32, framing_errors: u32,
        hardware_overruns: u32, buffer_overruns: u32, timeout_errors: u32, alignment_errors: u32,
    }
    /// Set-Link-Info (§2.15).
    SetLinkInfo = 15, 24 { reserved1: Zero<2>, peer_call_id: u16, send_accm: u32, receive_accm: u32 }
}

/// Header fields after the checks that decide framing: (length, control type code, reserved0).
fn parse_header(r: &mut Reader<'_>) -> Result<(usize, u16, u16), Error> {
    let length = r.u16()?;
    if !(MIN_MESSAGE_LEN..=MAX_MESSAGE_LEN).contains(&(length as usize)) {
        return Err(Error::BadLength(length));
    }
    let message_type = r.u16()?;
    if message_type != MESSAGE_TYPE_CONTROL {
        return Err(Error::BadMessageType(message_type));
    }
    let magic = r.u32()?;
    if magic != MAGIC_COOKIE {
        return Err(Error::BadMagic(magic));
    }
    let code = r.u16()?;
    let reserved0 = r.u16()?;
    Ok((length as usize, code, reserved0))
}

impl ControlMessage {
    /// Parses exactly one message; `bytes` must be the whole message and nothing more.
    pub fn parse(bytes: &[u8]) -> Result<Self, Error> {
        let mut r = Reader::new(bytes);
        let (length, code, reserved0) = parse_header(&mut r)?;
        if reserved0 != 0 {
            return Err(Error::ReservedNotZero(10));
        }
        let kind = ControlType::from_code(code).ok_or(Error::UnknownControlType(code))?;
        if length != kind.size() || bytes.len() != length {
            return Err(Error::WrongSize {
                kind,
                expected: kind.size(),
                got: length,
            });
        }
        Self::read_body(kind, &mut r)
    }

    /// Appends the message, header included.
    pub fn emit(&self, buf: &mut Vec<u8>) {
        let kind = self.control_type();
        let start = buf.len();
        let mut w = Writer::new(buf);
        w.u16(kind.size() as u16)
            .u16(MESSAGE_TYPE_CONTROL)
            .u32(MAGIC_COOKIE)
            .u16(kind as u16)
            .zeros(2);
        self.write_body(&mut w);
        debug_assert_eq!(buf.len() - start, kind.size());
    }

    pub fn to_bytes(&self) -> Vec<u8> {
        let mut v = Vec::with_capacity(self.control_type().size());
        self.emit(&mut v);
        v
    }
}

/// Splits a control connection's TCP byte stream into messages.
///
/// Framing trusts only the header: once a header is bad (length out of range, wrong message type
/// or magic) the stream is poisoned and every later call returns that error, since there is no
/// way to find the next message boundary. A well-framed message that fails to parse (unknown
/// type, wrong size for its type, non-zero reserved bytes) is consumed and reported; the caller
/// decides whether to carry on.
#[derive(Debug, Default)]
pub struct Framer {
    buf: Vec<u8>,
    poisoned: Option<Error>,
}

impl Framer {
    pub fn new() -> Self {
        Self::default()
    }

    pub fn push(&mut self, bytes: &[u8]) {
        if self.poisoned.is_none() {
            self.buf.extend_from_slice(bytes);
        }
    }

    /// Bytes received but not yet returned as a message.
    pub fn buffered(&self) -> usize {
        self.buf.len()
    }

    /// The next complete message, `None` when more bytes are needed.
    pub fn next_message(&mut self) -> Option<Result<ControlMessage, Error>> {
        self.next_frame().map(|r| r.map_err(|r| r.error))
    }

    /// Like [`Framer::next_message`], but a well-framed message that fails to parse comes back
    /// with its control type and first body bytes, so the receiver can answer it (RFC 2637
    /// replies carry a General Error Code) instead of only logging it.
    pub fn next_frame(&mut self) -> Option<Result<ControlMessage, Rejected>> {
        if let Some(error) = self.poisoned {
            return Some(Err(Rejected::fatal(error)));
        }
        if self.buf.len() < HEADER_LEN {
            return None;
        }
        let (length, code) = match parse_header(&mut Reader::new(&self.buf[..HEADER_LEN])) {
            Ok((length, code, _)) => (length, code),
            Err(e) => {
                self.poisoned = Some(e);
                self.buf = Vec::new();
                return Some(Err(Rejected::fatal(e)));
            }
        };
        if self.buf.len() < length {
            return None;
        }
        let result = ControlMessage::parse(&self.buf[..length]).map_err(|error| {
            let mut head = [0u8; 4];
            let body = &self.buf[HEADER_LEN..length];
            let n = body.len().min(head.len());
            head[..n].copy_from_slice(&body[..n]);
            Rejected { error, code, head }
        });
        self.buf.drain(..length);
        Some(result)
    }
}

/// A message the framer could not return: why, and what little of it can still be read.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Rejected {
    pub error: Error,
    /// The Control Message Type from the header (0 when the stream itself is broken).
    pub code: u16,
    /// The first four body bytes (zero-padded): the identifier or call ID that leads most
    /// requests, so an error reply can name what it answers.
    pub head: [u8; 4],
}

impl Rejected {
    fn fatal(error: Error) -> Self {
        Self {
            error,
            code: 0,
            head: [0; 4],
        }
    }

    /// The General Error Code (RFC 2637 §2.16) that describes the fault: a wrong length is
    /// Bad-Format, a non-zero reserved field or an unknown type Bad-Value.
    pub fn error_code(&self) -> u8 {
        match self.error {
            Error::ReservedNotZero(_) | Error::UnknownControlType(_) => error_code::BAD_VALUE,
            _ => error_code::BAD_FORMAT,
        }
    }

    /// The leading 16-bit field of the body (call IDs, the protocol version).
    pub fn head_u16(&self) -> u16 {
        u16::from_be_bytes([self.head[0], self.head[1]])
    }

    pub fn head_u32(&self) -> u32 {
        u32::from_be_bytes(self.head)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sccrq() -> ControlMessage {
        StartControlConnectionRequest {
            protocol_version: PROTOCOL_VERSION,
            framing_capabilities: caps::FRAMING_ASYNC | caps::FRAMING_SYNC,
            bearer_capabilities: caps::BEARER_ANALOG | caps::BEARER_DIGITAL,
            maximum_channels: 65535,
            firmware_revision: 1,
            host_name: Text::new("local"),
            vendor_name: Text::new("cananian"),
            ..Default::default()
        }
        .into()
    }

    /// One value of every message type, with distinct non-zero fields.
    fn all_messages() -> Vec<ControlMessage> {
        vec![
            sccrq(),
            StartControlConnectionReply {
                protocol_version: PROTOCOL_VERSION,
                result_code: result::SCCRP_SUCCESSFUL,
                framing_capabilities: 3,
                bearer_capabilities: 3,
                maximum_channels: 1,
                firmware_revision: 0x0102,
                host_name: Text::new("pptpgw"),
                vendor_name: Text::new("pptpgw"),
                ..Default::default()
            }
            .into(),
            StopControlConnectionRequest {
                reason: stop_reason::NONE,
                ..Default::default()
            }
            .into(),
            StopControlConnectionReply {
                result_code: 1,
                ..Default::default()
            }
            .into(),
            EchoRequest {
                identifier: 0xdead_beef,
            }
            .into(),
            EchoReply {
                identifier: 7,
                result_code: 1,
                ..Default::default()
            }
            .into(),
            OutgoingCallRequest {
                call_id: 0x1234,
                call_serial_number: 1,
                minimum_bps: 2400,
                maximum_bps: 10_000_000,
                bearer_type: 3,
                framing_type: 3,
                packet_recv_window_size: 3,
                ..Default::default()
            }
            .into(),
            OutgoingCallReply {
                call_id: 0x8001,
                peer_call_id: 0x1234,
                result_code: result::OCRP_CONNECTED,
                connect_speed: 10_000_000,
                packet_recv_window_size: 64,
                ..Default::default()
            }
            .into(),
            IncomingCallRequest {
                call_id: 9,
                call_serial_number: 2,
                call_bearer_type: 1,
                physical_channel_id: 3,
                dialed_number_length: 3,
                dialed_number: Text::new("123"),
                dialing_number: Text::new("456"),
                dialing_number_length: 3,
                subaddress: Text::new("x"),
            }
            .into(),
            IncomingCallReply {
                call_id: 1,
                peer_call_id: 9,
                result_code: 1,
                packet_recv_window_size: 16,
                ..Default::default()
            }
            .into(),
            IncomingCallConnected {
                peer_call_id: 1,
                connect_speed: 64000,
                framing_type: 1,
                ..Default::default()
            }
            .into(),
            CallClearRequest {
                call_id: 0x1234,
                ..Default::default()
            }
            .into(),
            CallDisconnectNotify {
                call_id: 0x8001,
                result_code: result::CDN_REQUEST,
                call_statistics: Text::new("rx 1 tx 2"),
                ..Default::default()
            }
            .into(),
            WanErrorNotify {
                peer_call_id: 5,
                crc_errors: 1,
                alignment_errors: 6,
                ..Default::default()
            }
            .into(),
            SetLinkInfo {
                peer_call_id: 5,
                send_accm: u32::MAX,
                ..Default::default()
            }
            .into(),
        ]
    }

    #[test]
    fn every_type_round_trips_both_ways_at_its_rfc_size() {
        let sizes = [
            156, 156, 16, 16, 16, 20, 168, 32, 220, 24, 28, 16, 148, 40, 24,
        ];
        let msgs = all_messages();
        assert_eq!(msgs.len(), 15);
        for (i, m) in msgs.iter().enumerate() {
            let bytes = m.to_bytes();
            assert_eq!(m.control_type() as usize, i + 1);
            assert_eq!(bytes.len(), sizes[i], "{:?}", m.control_type());
            assert_eq!(u16::from_be_bytes([bytes[0], bytes[1]]) as usize, sizes[i]);
            assert_eq!(&bytes[2..8], &[0, 1, 0x1a, 0x2b, 0x3c, 0x4d]);
            assert_eq!(ControlMessage::parse(&bytes).as_ref(), Ok(m));
            assert_eq!(ControlMessage::parse(&bytes).unwrap().to_bytes(), bytes);
        }
    }

    #[test]
    fn echo_request_bytes() {
        let bytes = [
            0x00, 0x10, 0x00, 0x01, 0x1a, 0x2b, 0x3c, 0x4d, 0x00, 0x05, 0x00, 0x00, 0x01, 0x02,
            0x03, 0x04,
        ];
        let m = ControlMessage::parse(&bytes).unwrap();
        assert_eq!(
            m,
            EchoRequest {
                identifier: 0x0102_0304
            }
            .into()
        );
        assert_eq!(m.to_bytes(), bytes);
    }

    #[test]
    fn text_fields_keep_bytes_after_nul() {
        let mut bytes = sccrq().to_bytes();
        bytes[28 + 10] = b'Z'; // after "local\0" in the host name
        let m = ControlMessage::parse(&bytes).unwrap();
        let ControlMessage::StartControlConnectionRequest(r) = m else {
            panic!()
        };
        assert_eq!(r.host_name.trimmed(), b"local");
        assert_eq!(m.to_bytes(), bytes);
    }

    #[test]
    fn hostile_headers() {
        let good = sccrq().to_bytes();
        let mut b = good.clone();
        b[4] = 0;
        assert!(matches!(ControlMessage::parse(&b), Err(Error::BadMagic(_))));
        let mut b = good.clone();
        b[3] = 2;
        assert_eq!(ControlMessage::parse(&b), Err(Error::BadMessageType(2)));
        let mut b = good.clone();
        b[11] = 1;
        assert_eq!(ControlMessage::parse(&b), Err(Error::ReservedNotZero(10)));
        let mut b = good.clone();
        b[9] = 16;
        assert_eq!(
            ControlMessage::parse(&b),
            Err(Error::UnknownControlType(16))
        );
        let mut b = good.clone();
        b[9] = 0;
        assert_eq!(ControlMessage::parse(&b), Err(Error::UnknownControlType(0)));
        let mut b = good.clone();
        b[14] = 1; // SCCRQ Reserved1
        assert_eq!(ControlMessage::parse(&b), Err(Error::ReservedNotZero(14)));
        for len in [0u16, 1, 15, 221, 0xffff] {
            let mut b = good.clone();
            b[..2].copy_from_slice(&len.to_be_bytes());
            assert_eq!(ControlMessage::parse(&b), Err(Error::BadLength(len)));
        }
        // A valid length for another type, or bytes that disagree with the header.
        let mut b = good.clone();
        b[..2].copy_from_slice(&16u16.to_be_bytes());
        assert!(matches!(
            ControlMessage::parse(&b),
            Err(Error::WrongSize { .. })
        ));
        assert!(matches!(
            ControlMessage::parse(&good[..100]),
            Err(Error::WrongSize { .. })
        ));
        let mut long = good.clone();
        long.push(0);
        assert!(matches!(
            ControlMessage::parse(&long),
            Err(Error::WrongSize { .. })
        ));
        for n in 0..12 {
            assert!(
                matches!(ControlMessage::parse(&good[..n]), Err(Error::Truncated(_))),
                "{n}"
            );
        }
    }

    #[test]
    fn framer_reassembles_split_and_coalesced_messages() {
        let mut stream = Vec::new();
        for m in all_messages() {
            m.emit(&mut stream);
        }
        // Byte by byte.
        let mut f = Framer::new();
        let mut got = Vec::new();
        for b in &stream {
            f.push(std::slice::from_ref(b));
            while let Some(m) = f.next_message() {
                got.push(m.unwrap());
            }
        }
        assert_eq!(got, all_messages());
        assert_eq!(f.buffered(), 0);
        // All at once.
        let mut f = Framer::new();
        f.push(&stream);
        let got: Vec<_> = std::iter::from_fn(|| f.next_message())
            .map(Result::unwrap)
            .collect();
        assert_eq!(got, all_messages());
    }

    #[test]
    fn framer_skips_a_well_framed_bad_message_and_poisons_on_bad_framing() {
        let mut bad_type = ControlMessage::from(EchoRequest { identifier: 1 }).to_bytes();
        bad_type[9] = 99;
        let echo = ControlMessage::from(EchoRequest { identifier: 2 }).to_bytes();
        let mut f = Framer::new();
        f.push(&bad_type);
        f.push(&echo);
        assert_eq!(f.next_message(), Some(Err(Error::UnknownControlType(99))));
        assert_eq!(
            f.next_message(),
            Some(Ok(EchoRequest { identifier: 2 }.into()))
        );
        assert_eq!(f.next_message(), None);

        let mut bad_magic = echo.clone();
        bad_magic[7] ^= 0xff;
        f.push(&bad_magic);
        f.push(&echo);
        let e = f.next_message().unwrap().unwrap_err();
        assert!(e.is_fatal());
        assert_eq!(f.next_message(), Some(Err(e)), "stays poisoned");
        f.push(&echo);
        assert_eq!(f.buffered(), 0, "a poisoned framer buffers nothing");
    }
}
