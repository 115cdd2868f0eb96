//! Authentication, server side: PAP (RFC 1334), CHAP-MD5 (RFC 1994), MS-CHAPv2 (RFC 2759).
pub mod authenticator;
pub mod mschap;
