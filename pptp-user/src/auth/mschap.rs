//! MS-CHAP cryptography: RFC 2759 (MS-CHAPv2), RFC 2433 (MS-CHAPv1 NT response) and RFC 3079
//! (MPPE keys from MS-CHAPv2). Primitives come from RustCrypto; this file only composes them as
//! the RFCs' pseudo-code does, with the same function names.

use des::{
    Des,
    cipher::{BlockEncrypt as _, KeyInit as _, generic_array::GenericArray},
};
use md4::{Digest as _, Md4};
use sha1::Sha1;

pub type PasswordHash = [u8; 16];

/// NtPasswordHash (RFC 2759 §8.3): MD4 of the password in UTF-16LE.
pub fn nt_password_hash(password: &str) -> PasswordHash {
    let unicode: Vec<u8> = password.encode_utf16().flat_map(u16::to_le_bytes).collect();
    Md4::digest(&unicode).into()
}

/// HashNtPasswordHash (RFC 2759 §8.4).
pub fn hash_nt_password_hash(hash: &PasswordHash) -> PasswordHash {
    Md4::digest(hash).into()
}

/// The user name MS-CHAPv2 hashes: without any leading "DOMAIN\" (RFC 2759 §4).
pub fn strip_domain(user: &[u8]) -> &[u8] {
    match user.iter().rposition(|&b| b == b'\\') {
        Some(i) => &user[i + 1..],
        None => user,
    }
}

/// ChallengeHash (RFC 2759 §8.2).
pub fn challenge_hash(
    peer_challenge: &[u8; 16],
    authenticator_challenge: &[u8; 16],
    user: &[u8],
) -> [u8; 8] {
    let digest = Sha1::new()
        .chain_update(peer_challenge)
        .chain_update(authenticator_challenge)
        .chain_update(strip_domain(user))
        .finalize();
    let mut c = [0u8; 8];
    c.copy_from_slice(&digest[..8]);
    c
}

/// DesEncrypt (RFC 2759 §8.6) with a 7-byte key spread over the 8 DES key bytes (parity bits
/// left zero; DES ignores them).
fn des_encrypt(clear: &[u8; 8], key7: &[u8]) -> [u8; 8] {
    let k = key7;
    let key = [
        k[0] & 0xfe,
        (k[0] << 7) | (k[1] >> 1),
        (k[1] << 6) | (k[2] >> 2),
        (k[2] << 5) | (k[3] >> 3),
        (k[3] << 4) | (k[4] >> 4),
        (k[4] << 3) | (k[5] >> 5),
        (k[5] << 2) | (k[6] >> 6),
        k[6] << 1,
    ];
    let cipher = Des::new(GenericArray::from_slice(&key));
    let mut block = GenericArray::clone_from_slice(clear);
    cipher.encrypt_block(&mut block);
    block.into()
}

/// ChallengeResponse (RFC 2759 §8.5): the hash, zero-padded to 21 bytes, as three DES keys.
pub fn challenge_response(challenge: &[u8; 8], hash: &PasswordHash) -> [u8; 24] {
    let mut z = [0u8; 21];
    z[..16].copy_from_slice(hash);
    let mut r = [0u8; 24];
    for i in 0..3 {
        r[i * 8..i * 8 + 8].copy_from_slice(&des_encrypt(challenge, &z[i * 7..i * 7 + 7]));
    }
    r
}

/// GenerateNTResponse (RFC 2759 §8.1), from the password hash (so NT-hash secrets work too).
pub fn generate_nt_response(
    authenticator_challenge: &[u8; 16],
    peer_challenge: &[u8; 16],
    user: &[u8],
    hash: &PasswordHash,
) -> [u8; 24] {
    let challenge = challenge_hash(peer_challenge, authenticator_challenge, user);
    challenge_response(&challenge, hash)
}

/// GenerateAuthenticatorResponse (RFC 2759 §8.7): the 42-character "S=<40 hex digits>".
pub fn generate_authenticator_response(
    hash: &PasswordHash,
    nt_response: &[u8; 24],
    peer_challenge: &[u8; 16],
    authenticator_challenge: &[u8; 16],
    user: &[u8],
) -> String {
    const MAGIC1: &[u8; 39] = b"Magic server to client signing constant";
    const MAGIC2: &[u8; 41] = b"Pad to make it do more than one iteration";
    let digest = Sha1::new()
        .chain_update(hash_nt_password_hash(hash))
        .chain_update(nt_response)
        .chain_update(MAGIC1)
        .finalize();
    let challenge = challenge_hash(peer_challenge, authenticator_challenge, user);
    let digest = Sha1::new()
        .chain_update(digest)
        .chain_update(challenge)
        .chain_update(MAGIC2)
        .finalize();
    let mut s = String::from("S=");
    for b in digest {
        s.push_str(&format!("{b:02X}"));
    }
    s
}

/// NtChallengeResponse of MS-CHAPv1 (RFC 2433 §A.5): ChallengeResponse over the 8-byte challenge.
pub fn nt_challenge_response_v1(challenge: &[u8; 8], hash: &PasswordHash) -> [u8; 24] {
    challenge_response(challenge, hash)
}

/// GetMasterKey (RFC 3079 §3.4).
pub fn get_master_key(password_hash_hash: &PasswordHash, nt_response: &[u8; 24]) -> [u8; 16] {
    const MAGIC1: &[u8; 27] = b"This is the MPPE Master Key";
    let d = Sha1::new()
        .chain_update(password_hash_hash)
        .chain_update(nt_response)
        .chain_update(MAGIC1)
        .finalize();
    let mut k = [0u8; 16];
    k.copy_from_slice(&d[..16]);
    k
}

const SHS_PAD1: [u8; 40] = [0x00; 40];
const SHS_PAD2: [u8; 40] = [0xf2; 40];

/// GetAsymmetricStartKey (RFC 3079 §3.4) for `len` bytes (8 or 16). "Send" and "receive" are
/// from the point of view of the side that `is_server` says we are.
pub fn get_asymmetric_start_key(
    master_key: &[u8; 16],
    len: usize,
    is_send: bool,
    is_server: bool,
) -> Vec<u8> {
    const MAGIC2: &[u8] =
        b"On the client side, this is the send key; on the server side, it is the receive key.";
    const MAGIC3: &[u8] =
        b"On the client side, this is the receive key; on the server side, it is the send key.";
    let magic = if is_send == is_server { MAGIC3 } else { MAGIC2 };
    let d = Sha1::new()
        .chain_update(master_key)
        .chain_update(SHS_PAD1)
        .chain_update(magic)
        .chain_update(SHS_PAD2)
        .finalize();
    d[..len].to_vec()
}

/// GetNewKeyFromSHA (RFC 3078 §7.3): the first session key from a start key, and each rekey.
pub fn get_new_key_from_sha(start_key: &[u8], session_key: &[u8]) -> Vec<u8> {
    let d = Sha1::new()
        .chain_update(start_key)
        .chain_update(SHS_PAD1)
        .chain_update(session_key)
        .chain_update(SHS_PAD2)
        .finalize();
    d[..start_key.len()].to_vec()
}

/// The server's 128-bit MPPE send and receive start keys for an MS-CHAPv2 session.
pub fn mppe_start_keys_128(hash: &PasswordHash, nt_response: &[u8; 24]) -> ([u8; 16], [u8; 16]) {
    let master = get_master_key(&hash_nt_password_hash(hash), nt_response);
    let mut send = [0u8; 16];
    let mut recv = [0u8; 16];
    send.copy_from_slice(&get_asymmetric_start_key(&master, 16, true, true));
    recv.copy_from_slice(&get_asymmetric_start_key(&master, 16, false, true));
    (send, recv)
}

/// The RFC 2759 §9.2 test vector, shared by the crypto and authenticator tests and the client's.
pub mod rfc2759 {
    pub const USER: &[u8] = b"User";
    pub const PASSWORD: &str = "clientPass";
    pub const AUTH_CHALLENGE: [u8; 16] = [
        0x5B, 0x5D, 0x7C, 0x7D, 0x7B, 0x3F, 0x2F, 0x3E, 0x3C, 0x2C, 0x60, 0x21, 0x32, 0x26, 0x26,
        0x28,
    ];
    pub const PEER_CHALLENGE: [u8; 16] = [
        0x21, 0x40, 0x23, 0x24, 0x25, 0x5E, 0x26, 0x2A, 0x28, 0x29, 0x5F, 0x2B, 0x3A, 0x33, 0x7C,
        0x7E,
    ];
    pub const CHALLENGE: [u8; 8] = [0xD0, 0x2E, 0x43, 0x86, 0xBC, 0xE9, 0x12, 0x26];
    pub const NT_RESPONSE: [u8; 24] = [
        0x82, 0x30, 0x9E, 0xCD, 0x8D, 0x70, 0x8B, 0x5E, 0xA0, 0x8F, 0xAA, 0x39, 0x81, 0xCD, 0x83,
        0x54, 0x42, 0x33, 0x11, 0x4A, 0x3D, 0x85, 0xD6, 0xDF,
    ];
    pub const PASSWORD_HASH: [u8; 16] = [
        0x44, 0xEB, 0xBA, 0x8D, 0x53, 0x12, 0xB8, 0xD6, 0x11, 0x47, 0x44, 0x11, 0xF5, 0x69, 0x89,
        0xAE,
    ];
    pub const PASSWORD_HASH_HASH: [u8; 16] = [
        0x41, 0xC0, 0x0C, 0x58, 0x4B, 0xD2, 0xD9, 0x1C, 0x40, 0x17, 0xA2, 0xA1, 0x2F, 0xA5, 0x9F,
        0x3F,
    ];
}

#[cfg(test)]
mod tests {
    use super::*;

    use super::rfc2759::*;

    #[test]
    fn rfc2759_section_9_2() {
        assert_eq!(
            challenge_hash(&PEER_CHALLENGE, &AUTH_CHALLENGE, USER),
            CHALLENGE
        );
        assert_eq!(nt_password_hash(PASSWORD), PASSWORD_HASH);
        assert_eq!(hash_nt_password_hash(&PASSWORD_HASH), PASSWORD_HASH_HASH);
        assert_eq!(
            generate_nt_response(&AUTH_CHALLENGE, &PEER_CHALLENGE, USER, &PASSWORD_HASH),
            NT_RESPONSE
        );
        assert_eq!(
            generate_authenticator_response(
                &PASSWORD_HASH,
                &NT_RESPONSE,
                &PEER_CHALLENGE,
                &AUTH_CHALLENGE,
                USER
            ),
            "S=407A5589115FD0D6209F510FE9C04566932CDA56"
        );
        // A domain prefix is not hashed.
        assert_eq!(
            challenge_hash(&PEER_CHALLENGE, &AUTH_CHALLENGE, b"CORP\\User"),
            CHALLENGE
        );
    }

    #[test]
    fn rfc3079_section_3_5_3_keys_128_bit() {
        let master = get_master_key(&PASSWORD_HASH_HASH, &NT_RESPONSE);
        assert_eq!(
            master,
            [
                0xFD, 0xEC, 0xE3, 0x71, 0x7A, 0x8C, 0x83, 0x8C, 0xB3, 0x88, 0xE5, 0x27, 0xAE, 0x3C,
                0xDD, 0x31
            ]
        );
        // The RFC's sample is GetAsymmetricStartKey(IsSend = TRUE, IsServer = TRUE): our send key.
        let server_send = get_asymmetric_start_key(&master, 16, true, true);
        assert_eq!(
            server_send,
            [
                0x8B, 0x7C, 0xDC, 0x14, 0x9B, 0x99, 0x3A, 0x1B, 0xA1, 0x18, 0xCB, 0x15, 0x3F, 0x56,
                0xDC, 0xCB
            ]
        );
        assert_eq!(
            get_new_key_from_sha(&server_send, &server_send),
            [
                0x40, 0x5C, 0xB2, 0x24, 0x7A, 0x79, 0x56, 0xE6, 0xE2, 0x11, 0x00, 0x7A, 0xE2, 0x7B,
                0x22, 0xD4
            ]
        );
        // The client's receive key is the same; the other direction uses the other magic.
        assert_eq!(
            get_asymmetric_start_key(&master, 16, false, false),
            server_send
        );
        let (server_send, server_recv) = mppe_start_keys_128(&PASSWORD_HASH, &NT_RESPONSE);
        assert_eq!(
            server_send.to_vec(),
            get_asymmetric_start_key(&master, 16, true, true)
        );
        assert_eq!(
            server_recv.to_vec(),
            get_asymmetric_start_key(&master, 16, true, false)
        );
        assert_ne!(server_send, server_recv);
    }

    #[test]
    fn rfc2433_appendix_b_ms_chap_v1() {
        let hash = nt_password_hash("MyPw");
        assert_eq!(
            hash,
            [
                0xFC, 0x15, 0x6A, 0xF7, 0xED, 0xCD, 0x6C, 0x0E, 0xDD, 0xE3, 0x33, 0x7D, 0x42, 0x7F,
                0x4E, 0xAC
            ]
        );
        let challenge = [0x10, 0x2D, 0xB5, 0xDF, 0x08, 0x5D, 0x30, 0x41];
        assert_eq!(
            nt_challenge_response_v1(&challenge, &hash),
            [
                0x4E, 0x9D, 0x3C, 0x8F, 0x9C, 0xFD, 0x38, 0x5D, 0x5B, 0xF4, 0xD3, 0x24, 0x67, 0x91,
                0x95, 0x6C, 0xA4, 0xC3, 0x51, 0xAB, 0x40, 0x9A, 0x3D, 0x61
            ]
        );
    }
}
