//! The attributes pptpgw speaks (RFC 2865, 2866, 2868, 2869, 3162, 3579, 5176) and the Microsoft
//! vendor attributes of RFC 2548.

/// Standard attribute types.
#[repr(u8)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Attr {
    UserName = 1,
    UserPassword = 2,
    ChapPassword = 3,
    NasIpAddress = 4,
    NasPort = 5,
    ServiceType = 6,
    FramedProtocol = 7,
    FramedIpAddress = 8,
    FramedIpNetmask = 9,
    FilterId = 11,
    FramedMtu = 12,
    LoginIpHost = 14,
    LoginService = 15,
    ReplyMessage = 18,
    State = 24,
    Class = 25,
    VendorSpecific = 26,
    SessionTimeout = 27,
    IdleTimeout = 28,
    CalledStationId = 30,
    CallingStationId = 31,
    NasIdentifier = 32,
    ProxyState = 33,
    AcctStatusType = 40,
    AcctDelayTime = 41,
    AcctInputOctets = 42,
    AcctOutputOctets = 43,
    AcctSessionId = 44,
    AcctAuthentic = 45,
    AcctSessionTime = 46,
    AcctInputPackets = 47,
    AcctOutputPackets = 48,
    AcctTerminateCause = 49,
    AcctInputGigawords = 52,
    AcctOutputGigawords = 53,
    EventTimestamp = 55,
    ChapChallenge = 60,
    NasPortType = 61,
    TunnelType = 64,
    MessageAuthenticator = 80,
    AcctInterimInterval = 85,
    NasPortId = 87,
    FramedPool = 88,
    /// RFC 3162.
    FramedIpv6Prefix = 97,
    FramedIpv6Pool = 100,
    ErrorCause = 101,
    /// RFC 4818 (DHCPv6 prefix delegation: not served yet, see the README).
    DelegatedIpv6Prefix = 123,
}

/// Service-Type Framed, Framed-Protocol PPP, NAS-Port-Type Virtual, Tunnel-Type PPTP.
pub const SERVICE_FRAMED: u32 = 2;
pub const PROTOCOL_PPP: u32 = 1;
pub const PORT_TYPE_VIRTUAL: u32 = 5;
pub const TUNNEL_PPTP: u32 = 1;

/// Framed-IP-Address 255.255.255.254: "the NAS should select an address" (RFC 2865 §5.8).
pub const FRAMED_IP_FROM_POOL: [u8; 4] = [255, 255, 255, 254];

/// SMI network management private enterprise code of Microsoft.
pub const VENDOR_MICROSOFT: u32 = 311;

/// Microsoft vendor types (RFC 2548).
pub mod ms {
    pub const CHAP_RESPONSE: u8 = 1;
    pub const CHAP_ERROR: u8 = 2;
    pub const MPPE_ENCRYPTION_POLICY: u8 = 7;
    pub const MPPE_ENCRYPTION_TYPES: u8 = 8;
    pub const CHAP_CHALLENGE: u8 = 11;
    pub const MPPE_SEND_KEY: u8 = 16;
    pub const MPPE_RECV_KEY: u8 = 17;
    pub const CHAP2_RESPONSE: u8 = 25;
    pub const CHAP2_SUCCESS: u8 = 26;
    pub const PRIMARY_DNS_SERVER: u8 = 28;
    pub const SECONDARY_DNS_SERVER: u8 = 29;
}

/// Dynamic authorization codes (RFC 5176).
pub const DISCONNECT_REQUEST: u8 = 40;
pub const DISCONNECT_ACK: u8 = 41;
pub const DISCONNECT_NAK: u8 = 42;
pub const COA_REQUEST: u8 = 43;
pub const COA_ACK: u8 = 44;
pub const COA_NAK: u8 = 45;

pub fn is_dynamic_reply(code: u8) -> bool {
    matches!(code, DISCONNECT_ACK | DISCONNECT_NAK | COA_ACK | COA_NAK)
}
