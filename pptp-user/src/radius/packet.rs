//! RADIUS packets (RFC 2865 §3, §5): a typed view for parsing and a builder for emitting, and the
//! cryptography of the protocol — Request/Response Authenticators, Message-Authenticator
//! (RFC 3579 §3.2, HMAC-MD5), User-Password hiding (RFC 2865 §5.2) and the Microsoft salt
//! encryption of MS-MPPE-Send/Recv-Key (RFC 2548 §2.4.2–2.4.3).

use hmac::{Hmac, Mac as _};
use md5::{Digest as _, Md5};
use thiserror::Error;

use super::dict::{self, Attr, VENDOR_MICROSOFT};

pub const ACCESS_REQUEST: u8 = 1;
pub const ACCESS_ACCEPT: u8 = 2;
pub const ACCESS_REJECT: u8 = 3;
pub const ACCOUNTING_REQUEST: u8 = 4;
pub const ACCOUNTING_RESPONSE: u8 = 5;
pub const ACCESS_CHALLENGE: u8 = 11;

/// RFC 2865 §3: 20 to 4096 bytes.
pub const HEADER_LEN: usize = 20;
pub const MAX_LEN: usize = 4096;

#[derive(Clone, Debug, Error, PartialEq, Eq)]
pub enum ParseError {
    #[error("{0} bytes: shorter than a RADIUS header")]
    Short(usize),
    #[error("length field {field} disagrees with {got} bytes received (or is outside 20..=4096)")]
    BadLength { field: usize, got: usize },
    #[error("attribute {typ} at offset {offset}: length {len} runs past the packet or is below 2")]
    BadAttribute { typ: u8, offset: usize, len: usize },
}

/// A received packet, borrowed: header fields and the attributes in order.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Packet<'a> {
    pub code: u8,
    pub identifier: u8,
    pub authenticator: [u8; 16],
    /// (type, value) in wire order.
    pub attributes: Vec<(u8, &'a [u8])>,
    /// The whole packet (for authenticator checks).
    pub bytes: &'a [u8],
}

impl<'a> Packet<'a> {
    /// Parses a datagram. Bytes past the length field are padding (RFC 2865 §3) and ignored.
    pub fn parse(bytes: &'a [u8]) -> Result<Self, ParseError> {
        if bytes.len() < HEADER_LEN {
            return Err(ParseError::Short(bytes.len()));
        }
        let len = usize::from(u16::from_be_bytes([bytes[2], bytes[3]]));
        if !(HEADER_LEN..=MAX_LEN).contains(&len) || len > bytes.len() {
            return Err(ParseError::BadLength {
                field: len,
                got: bytes.len(),
            });
        }
        let bytes = &bytes[..len];
        let mut attributes = Vec::new();
        let mut at = HEADER_LEN;
        while at < len {
            let typ = bytes[at];
            let alen = bytes.get(at + 1).map_or(0, |&l| usize::from(l));
            if alen < 2 || at + alen > len {
                return Err(ParseError::BadAttribute {
                    typ,
                    offset: at,
                    len: alen,
                });
            }
            attributes.push((typ, &bytes[at + 2..at + alen]));
            at += alen;
        }
        Ok(Self {
            code: bytes[0],
            identifier: bytes[1],
            authenticator: bytes[4..20].try_into().expect("16 bytes"),
            attributes,
            bytes,
        })
    }

    /// The first attribute of this type.
    pub fn attr(&self, typ: Attr) -> Option<&'a [u8]> {
        self.attributes
            .iter()
            .find(|(t, _)| *t == typ as u8)
            .map(|(_, v)| *v)
    }

    /// Every attribute of this type, in order (Class, Reply-Message...).
    pub fn attrs(&self, typ: Attr) -> impl Iterator<Item = &'a [u8]> + '_ {
        self.attributes
            .iter()
            .filter(move |(t, _)| *t == typ as u8)
            .map(|(_, v)| *v)
    }

    pub fn u32_attr(&self, typ: Attr) -> Option<u32> {
        self.attr(typ)
            .and_then(|v| <[u8; 4]>::try_from(v).ok())
            .map(u32::from_be_bytes)
    }

    /// The first Microsoft vendor attribute of this vendor type (RFC 2548: one sub-attribute per
    /// Vendor-Specific, as every server sends them).
    pub fn microsoft(&self, vendor_type: u8) -> Option<&'a [u8]> {
        self.attrs(Attr::VendorSpecific).find_map(|v| {
            let (vendor, rest) = v.split_at_checked(4)?;
            if u32::from_be_bytes(vendor.try_into().ok()?) != VENDOR_MICROSOFT {
                return None;
            }
            let (&t, rest) = rest.split_first()?;
            let (&l, value) = rest.split_first()?;
            (t == vendor_type && usize::from(l) == value.len() + 2).then_some(value)
        })
    }

    /// A reply's Response Authenticator (RFC 2865 §3) is right for the request it answers.
    pub fn response_authentic(&self, request_authenticator: &[u8; 16], secret: &[u8]) -> bool {
        let mut h = Md5::new();
        h.update(&self.bytes[..4]);
        h.update(request_authenticator);
        h.update(&self.bytes[HEADER_LEN..]);
        h.update(secret);
        h.finalize().as_slice() == self.authenticator
    }

    /// An Accounting-Request's or CoA/Disconnect-Request's authenticator (RFC 2866 §3, RFC 5176
    /// §2.3): MD5 over the packet with sixteen zero bytes in its place, then the secret.
    pub fn request_authentic(&self, secret: &[u8]) -> bool {
        let mut h = Md5::new();
        h.update(&self.bytes[..4]);
        h.update([0u8; 16]);
        h.update(&self.bytes[HEADER_LEN..]);
        h.update(secret);
        h.finalize().as_slice() == self.authenticator
    }

    /// Message-Authenticator (RFC 3579 §3.2): present, and the HMAC-MD5 of the packet with the
    /// attribute zeroed and, in a reply, the request's authenticator in the header.
    pub fn message_authentic(
        &self,
        request_authenticator: Option<&[u8; 16]>,
        secret: &[u8],
    ) -> bool {
        let Some(offset) = self.message_authenticator_offset() else {
            return false;
        };
        let mut copy = self.bytes.to_vec();
        copy[offset..offset + 16].fill(0);
        if let Some(ra) = request_authenticator {
            copy[4..20].copy_from_slice(ra);
        }
        hmac_md5(secret, &copy)[..] == self.bytes[offset..offset + 16]
    }

    fn message_authenticator_offset(&self) -> Option<usize> {
        let mut at = HEADER_LEN;
        for (t, v) in &self.attributes {
            if *t == Attr::MessageAuthenticator as u8 && v.len() == 16 {
                return Some(at + 2);
            }
            at += 2 + v.len();
        }
        None
    }
}

pub fn hmac_md5(key: &[u8], data: &[u8]) -> [u8; 16] {
    let mut m = <Hmac<Md5>>::new_from_slice(key).expect("HMAC takes any key length");
    m.update(data);
    m.finalize().into_bytes().into()
}

/// A packet being built: attributes appended in order, authenticators filled in by [`Builder::finish_request`]
/// or [`Builder::finish_reply`].
#[derive(Clone, Debug)]
pub struct Builder {
    bytes: Vec<u8>,
    message_authenticator: Option<usize>,
}

impl Builder {
    pub fn new(code: u8, identifier: u8, authenticator: [u8; 16]) -> Self {
        let mut bytes = Vec::with_capacity(256);
        bytes.extend_from_slice(&[code, identifier, 0, 0]);
        bytes.extend_from_slice(&authenticator);
        Self {
            bytes,
            message_authenticator: None,
        }
    }

    /// Appends an attribute; values over 253 bytes are cut (none of ours comes near).
    pub fn attr(&mut self, typ: Attr, value: &[u8]) -> &mut Self {
        self.raw(typ as u8, value)
    }

    fn raw(&mut self, typ: u8, value: &[u8]) -> &mut Self {
        let value = &value[..value.len().min(253)];
        self.bytes.push(typ);
        self.bytes.push((value.len() + 2) as u8);
        self.bytes.extend_from_slice(value);
        self
    }

    pub fn u32(&mut self, typ: Attr, v: u32) -> &mut Self {
        self.attr(typ, &v.to_be_bytes())
    }

    /// A Microsoft vendor attribute (RFC 2548) in its own Vendor-Specific.
    pub fn microsoft(&mut self, vendor_type: u8, value: &[u8]) -> &mut Self {
        let value = &value[..value.len().min(247)];
        let mut v = VENDOR_MICROSOFT.to_be_bytes().to_vec();
        v.push(vendor_type);
        v.push((value.len() + 2) as u8);
        v.extend_from_slice(value);
        self.attr(Attr::VendorSpecific, &v)
    }

    /// User-Password hidden with the secret and this request's authenticator (RFC 2865 §5.2).
    pub fn user_password(&mut self, password: &[u8], secret: &[u8]) -> &mut Self {
        let ra: [u8; 16] = self.bytes[4..20].try_into().expect("16 bytes");
        let hidden = hide_password(password, secret, &ra);
        self.attr(Attr::UserPassword, &hidden)
    }

    /// Reserves a Message-Authenticator, computed when the packet is finished.
    pub fn message_authenticator(&mut self) -> &mut Self {
        self.message_authenticator = Some(self.bytes.len() + 2);
        self.attr(Attr::MessageAuthenticator, &[0; 16])
    }

    fn set_length(&mut self) {
        let len = self.bytes.len() as u16;
        self.bytes[2..4].copy_from_slice(&len.to_be_bytes());
    }

    fn sign(&mut self, secret: &[u8]) {
        if let Some(at) = self.message_authenticator {
            let mac = hmac_md5(secret, &self.bytes);
            self.bytes[at..at + 16].copy_from_slice(&mac);
        }
    }

    /// An Access-Request: its (random) authenticator is already in the header.
    pub fn finish_access_request(mut self, secret: &[u8]) -> Vec<u8> {
        self.set_length();
        self.sign(secret);
        self.bytes
    }

    /// An Accounting-Request or CoA/Disconnect-Request: the authenticator is MD5 over the packet
    /// (zeros in its place) and the secret; Message-Authenticator, if any, is computed first.
    pub fn finish_request(mut self, secret: &[u8]) -> Vec<u8> {
        self.set_length();
        self.bytes[4..20].fill(0);
        self.sign(secret);
        let mut h = Md5::new();
        h.update(&self.bytes);
        h.update(secret);
        let a = h.finalize();
        self.bytes[4..20].copy_from_slice(&a);
        self.bytes
    }

    /// A reply to a request with this authenticator: Message-Authenticator over the packet with
    /// the request's authenticator, then the Response Authenticator.
    pub fn finish_reply(mut self, request_authenticator: &[u8; 16], secret: &[u8]) -> Vec<u8> {
        self.set_length();
        self.bytes[4..20].copy_from_slice(request_authenticator);
        self.sign(secret);
        let mut h = Md5::new();
        h.update(&self.bytes);
        h.update(secret);
        let a = h.finalize();
        self.bytes[4..20].copy_from_slice(&a);
        self.bytes
    }
}

/// RFC 2865 §5.2: the password padded to a multiple of 16 (at most 128 bytes), each block XORed
/// with MD5(secret + previous ciphertext block, the Request Authenticator first).
pub fn hide_password(password: &[u8], secret: &[u8], request_authenticator: &[u8; 16]) -> Vec<u8> {
    let password = &password[..password.len().min(128)];
    let blocks = password.len().div_ceil(16).max(1);
    let mut out = vec![0u8; blocks * 16];
    out[..password.len()].copy_from_slice(password);
    let mut prev: [u8; 16] = *request_authenticator;
    for block in out.chunks_mut(16) {
        let mut h = Md5::new();
        h.update(secret);
        h.update(prev);
        let b = h.finalize();
        for (c, k) in block.iter_mut().zip(b.iter()) {
            *c ^= k;
        }
        prev = block.try_into().expect("16 bytes");
    }
    out
}

/// RFC 2548 §2.4.2: MS-MPPE-Send-Key / Recv-Key, salt-encrypted with the secret and the
/// Access-Request's authenticator. Returns the key (its length byte says how long).
pub fn decrypt_mppe_key(
    value: &[u8],
    secret: &[u8],
    request_authenticator: &[u8; 16],
) -> Option<Vec<u8>> {
    let (salt, cipher) = value.split_at_checked(2)?;
    if salt[0] & 0x80 == 0 || cipher.is_empty() || cipher.len() % 16 != 0 {
        return None;
    }
    let mut plain = Vec::with_capacity(cipher.len());
    let mut h = Md5::new();
    h.update(secret);
    h.update(request_authenticator);
    h.update(salt);
    let mut b = h.finalize();
    for block in cipher.chunks(16) {
        plain.extend(block.iter().zip(b.iter()).map(|(c, k)| c ^ k));
        let mut h = Md5::new();
        h.update(secret);
        h.update(block);
        b = h.finalize();
    }
    let len = usize::from(*plain.first()?);
    plain.get(1..1 + len).map(<[u8]>::to_vec)
}

/// The inverse of [`decrypt_mppe_key`] (tests, and a server's side).
pub fn encrypt_mppe_key(
    key: &[u8],
    salt: [u8; 2],
    secret: &[u8],
    request_authenticator: &[u8; 16],
) -> Vec<u8> {
    let mut plain = vec![key.len() as u8];
    plain.extend_from_slice(key);
    plain.resize(plain.len().div_ceil(16) * 16, 0);
    let mut out = salt.to_vec();
    let mut h = Md5::new();
    h.update(secret);
    h.update(request_authenticator);
    h.update(salt);
    let mut b = h.finalize();
    for block in plain.chunks(16) {
        let c: Vec<u8> = block.iter().zip(b.iter()).map(|(p, k)| p ^ k).collect();
        let mut h = Md5::new();
        h.update(secret);
        h.update(&c);
        b = h.finalize();
        out.extend_from_slice(&c);
    }
    out
}

/// Whether a reply has the shape `dict` expects of its code (used to count garbage).
pub fn is_reply_code(code: u8) -> bool {
    matches!(
        code,
        ACCESS_ACCEPT | ACCESS_REJECT | ACCESS_CHALLENGE | ACCOUNTING_RESPONSE
    ) || dict::is_dynamic_reply(code)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn hex(s: &str) -> Vec<u8> {
        let s: String = s.split_whitespace().collect();
        (0..s.len())
            .step_by(2)
            .map(|i| u8::from_str_radix(&s[i..i + 2], 16).unwrap())
            .collect()
    }

    /// RFC 2865 §7.1: nemo / arctangent, secret xyzzy5461, NAS 192.168.1.16 port 3.
    const REQUEST: &str = "01 00 00 38 0f 40 3f 94 73 97 80 57 bd 83 d5 cb
        98 f4 22 7a 01 06 6e 65 6d 6f 02 12 0d be 70 8d 93 d4 13 ce 31 96 e4 3f 78 2a 0a ee
        04 06 c0 a8 01 10 05 06 00 00 00 03";
    const ACCEPT: &str = "02 00 00 26 86 fe 22 0e 76 24 ba 2a 10 05 f6 bf 9b 55 e0 b2
        06 06 00 00 00 01 0f 06 00 00 00 00 0e 06 c0 a8 01 03";
    const SECRET: &[u8] = b"xyzzy5461";

    #[test]
    fn rfc2865_example_builds_byte_for_byte_and_the_reply_verifies() {
        let want = hex(REQUEST);
        let ra: [u8; 16] = want[4..20].try_into().unwrap();
        let mut b = Builder::new(ACCESS_REQUEST, 0, ra);
        b.attr(Attr::UserName, b"nemo")
            .user_password(b"arctangent", SECRET)
            .attr(Attr::NasIpAddress, &[192, 168, 1, 16])
            .u32(Attr::NasPort, 3);
        assert_eq!(b.finish_access_request(SECRET), want);

        let p = Packet::parse(&want).unwrap();
        assert_eq!(p.attr(Attr::UserName), Some(&b"nemo"[..]));
        assert_eq!(p.u32_attr(Attr::NasPort), Some(3));

        let reply = hex(ACCEPT);
        let r = Packet::parse(&reply).unwrap();
        assert_eq!(r.code, ACCESS_ACCEPT);
        assert!(r.response_authentic(&ra, SECRET));
        assert!(!r.response_authentic(&ra, b"wrong"));
        assert_eq!(r.u32_attr(Attr::ServiceType), Some(1));
        // The same reply, built.
        let mut b = Builder::new(ACCESS_ACCEPT, 0, [0; 16]);
        b.u32(Attr::ServiceType, 1)
            .u32(Attr::LoginService, 0)
            .attr(Attr::LoginIpHost, &[192, 168, 1, 3]);
        assert_eq!(b.finish_reply(&ra, SECRET), reply);
    }

    #[test]
    fn message_authenticator_signs_requests_and_replies() {
        let ra = [7u8; 16];
        let mut b = Builder::new(ACCESS_REQUEST, 9, ra);
        b.attr(Attr::UserName, b"alice").message_authenticator();
        let req = b.finish_access_request(b"s3");
        let p = Packet::parse(&req).unwrap();
        assert!(p.message_authentic(None, b"s3"));
        assert!(!p.message_authentic(None, b"s4"));
        let mut tampered = req.clone();
        tampered[24] ^= 1;
        assert!(
            !Packet::parse(&tampered)
                .unwrap()
                .message_authentic(None, b"s3")
        );

        let mut b = Builder::new(ACCESS_ACCEPT, 9, [0; 16]);
        b.message_authenticator().u32(Attr::SessionTimeout, 60);
        let rep = b.finish_reply(&ra, b"s3");
        let r = Packet::parse(&rep).unwrap();
        assert!(r.response_authentic(&ra, b"s3"));
        assert!(r.message_authentic(Some(&ra), b"s3"));
        // A reply without one is not authentic in this sense (BlastRADIUS: we require it).
        let mut b = Builder::new(ACCESS_ACCEPT, 9, [0; 16]);
        b.u32(Attr::SessionTimeout, 60);
        let rep = b.finish_reply(&ra, b"s3");
        assert!(
            !Packet::parse(&rep)
                .unwrap()
                .message_authentic(Some(&ra), b"s3")
        );
    }

    #[test]
    fn accounting_request_authenticator() {
        let mut b = Builder::new(ACCOUNTING_REQUEST, 1, [0; 16]);
        b.u32(Attr::AcctStatusType, 1)
            .attr(Attr::AcctSessionId, b"abc");
        let req = b.finish_request(b"k");
        let p = Packet::parse(&req).unwrap();
        assert!(p.request_authentic(b"k"));
        assert!(!p.request_authentic(b"j"));
    }

    #[test]
    fn mppe_keys_round_trip_and_wrong_secrets_do_not() {
        let ra = [3u8; 16];
        let key = [0x5au8; 16];
        let v = encrypt_mppe_key(&key, [0x80, 0x01], b"sec", &ra);
        assert_eq!(v.len(), 2 + 32);
        assert_eq!(decrypt_mppe_key(&v, b"sec", &ra), Some(key.to_vec()));
        assert_ne!(decrypt_mppe_key(&v, b"sed", &ra), Some(key.to_vec()));
        // Salt without its high bit, or a length not a multiple of 16: refused.
        let mut bad = v.clone();
        bad[0] = 0;
        assert_eq!(decrypt_mppe_key(&bad, b"sec", &ra), None);
        assert_eq!(decrypt_mppe_key(&v[..20], b"sec", &ra), None);
    }

    #[test]
    fn hostile_packets_are_refused_not_panicked_on() {
        assert_eq!(Packet::parse(&[1, 2, 3]), Err(ParseError::Short(3)));
        let mut p = hex(ACCEPT);
        p[3] = 0xff; // length past the datagram
        assert!(matches!(
            Packet::parse(&p),
            Err(ParseError::BadLength { .. })
        ));
        let mut p = hex(ACCEPT);
        p[21] = 1; // attribute length below 2
        assert!(matches!(
            Packet::parse(&p),
            Err(ParseError::BadAttribute { .. })
        ));
        let mut p = hex(ACCEPT);
        p[21] = 40; // attribute past the end
        assert!(matches!(
            Packet::parse(&p),
            Err(ParseError::BadAttribute { .. })
        ));
        // Every truncation and every single-byte corruption parses or fails cleanly.
        let base = hex(ACCEPT);
        for n in 0..base.len() {
            let _ = Packet::parse(&base[..n]);
            for v in [0u8, 1, 2, 0x7f, 0xff] {
                let mut c = base.clone();
                c[n] = v;
                if let Ok(p) = Packet::parse(&c) {
                    let _ = p.microsoft(26);
                    let _ = p.message_authentic(Some(&[0; 16]), b"x");
                }
            }
        }
    }
}
