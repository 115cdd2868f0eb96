//! Users from a pppd-style `chap-secrets` file, the format operators already keep:
//!
//! ```text
//! # client   server   secret                                  IP addresses
//! alice      *        "correct horse"                         *
//! bob        pptpd    nthash:8846F7EAEE8FB117AD06BDD830B7586C  10.99.0.50
//! ```
//!
//! `server` must be `*` or our name. The secret is plain text, or `nthash:` and the 32 hex digits
//! of NtPasswordHash (usable with PAP and MS-CHAP, not CHAP-MD5). The fourth field, when it is
//! one IPv4 address, is the user's static address; `*`, `-` or nothing leaves it to the pools.
//! Words may be quoted with `"` (pppd's quoting, backslash escapes included).

use std::{collections::HashMap, net::Ipv4Addr};

use thiserror::Error;

use crate::auth::authenticator::Secret;

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct User {
    pub secret: Secret,
    pub static_address: Option<Ipv4Addr>,
}

#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Secrets {
    users: HashMap<String, User>,
}

#[derive(Debug, Error, PartialEq, Eq)]
#[error("line {line}: {reason}")]
pub struct ParseError {
    pub line: usize,
    pub reason: String,
}

/// Splits a line into words the way pppd does: whitespace separates, `"` quotes, `\` escapes,
/// `#` outside quotes starts a comment.
fn words(line: &str) -> Result<Vec<String>, String> {
    let mut out = Vec::new();
    let mut chars = line.chars().peekable();
    loop {
        while chars.peek().is_some_and(|c| c.is_whitespace()) {
            chars.next();
        }
        match chars.peek() {
            None | Some('#') => return Ok(out),
            _ => {}
        }
        let mut w = String::new();
        let mut quoted = false;
        while let Some(&c) = chars.peek() {
            match c {
                '"' => {
                    quoted = !quoted;
                    chars.next();
                }
                '\\' => {
                    chars.next();
                    w.push(chars.next().ok_or("a backslash at the end of the line")?);
                }
                c if c.is_whitespace() && !quoted => break,
                c => {
                    w.push(c);
                    chars.next();
                }
            }
        }
        if quoted {
            return Err("an unterminated quote".into());
        }
        out.push(w);
    }
}

fn parse_secret(s: &str) -> Result<Secret, String> {
    if let Some(hex) = s.strip_prefix("nthash:") {
        if hex.len() != 32 || !hex.bytes().all(|b| b.is_ascii_hexdigit()) {
            return Err("nthash: needs 32 hex digits".into());
        }
        let mut h = [0u8; 16];
        for (i, b) in h.iter_mut().enumerate() {
            *b = u8::from_str_radix(&hex[2 * i..2 * i + 2], 16).map_err(|e| e.to_string())?;
        }
        return Ok(Secret::NtHash(h));
    }
    Ok(Secret::Plain(s.to_string()))
}

impl Secrets {
    /// Parses a file's text. `server_name` is our name as the second column may give it.
    pub fn parse(text: &str, server_name: &str) -> Result<Self, ParseError> {
        let mut users = HashMap::new();
        for (i, line) in text.lines().enumerate() {
            let line_no = i + 1;
            let err = |reason: String| ParseError {
                line: line_no,
                reason,
            };
            let w = words(line).map_err(err)?;
            if w.is_empty() {
                continue;
            }
            let [client, server, secret, rest @ ..] = w.as_slice() else {
                return Err(err(format!(
                    "expected `client server secret [address]`, found {} words",
                    w.len()
                )));
            };
            if server != "*" && server != server_name {
                continue; // an entry for another server of the same file
            }
            let static_address = match rest {
                [] => None,
                [a] if a == "*" || a == "-" => None,
                [a] => Some(
                    a.parse::<Ipv4Addr>()
                        .map_err(|_| err(format!("`{a}` is not an IPv4 address")))?,
                ),
                more => return Err(err(format!("one address at most (found {})", more.len()))),
            };
            let secret = parse_secret(secret).map_err(err)?;
            if users
                .insert(
                    client.clone(),
                    User {
                        secret,
                        static_address,
                    },
                )
                .is_some()
            {
                return Err(err(format!("user `{client}` appears twice")));
            }
        }
        Ok(Self { users })
    }

    pub fn get(&self, user: &str) -> Option<&User> {
        self.users.get(user)
    }

    pub fn len(&self) -> usize {
        self.users.len()
    }

    pub fn is_empty(&self) -> bool {
        self.users.is_empty()
    }

    /// Every static address with its user (pool validation checks them).
    pub fn static_addresses(&self) -> impl Iterator<Item = (&str, Ipv4Addr)> {
        self.users
            .iter()
            .filter_map(|(u, e)| e.static_address.map(|a| (u.as_str(), a)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::auth::mschap::nt_password_hash;

    #[test]
    fn pppd_format_with_quotes_hashes_and_static_addresses() {
        let text = r#"
# Secrets for authentication using CHAP
# client	server	secret			IP addresses
alice	*	"correct horse"		*
"bob smith"	pptpd	nthash:8846f7eaee8fb117ad06bdd830b7586c	10.99.0.50
carol	otherserver	x	*
dave	*	pa\"ss	-   # trailing comment
"#;
        let s = Secrets::parse(text, "pptpd").unwrap();
        assert_eq!(s.len(), 3);
        assert_eq!(
            s.get("alice").unwrap().secret,
            Secret::Plain("correct horse".into())
        );
        let bob = s.get("bob smith").unwrap();
        assert_eq!(bob.secret, Secret::NtHash(nt_password_hash("password")));
        assert_eq!(bob.static_address, Some(Ipv4Addr::new(10, 99, 0, 50)));
        assert!(s.get("carol").is_none(), "another server's entry");
        assert_eq!(
            s.get("dave").unwrap().secret,
            Secret::Plain("pa\"ss".into())
        );
        assert_eq!(
            s.static_addresses().collect::<Vec<_>>(),
            vec![("bob smith", Ipv4Addr::new(10, 99, 0, 50))]
        );
    }

    #[test]
    fn errors_name_the_line() {
        let cases = [
            ("alice *\n", 1, "expected"),
            ("\n\nalice * \"open\n", 3, "unterminated"),
            ("a * s 10.0.0.300\n", 1, "not an IPv4"),
            ("a * nthash:1234 *\n", 1, "32 hex"),
            ("a * s *\na * t *\n", 2, "twice"),
            ("a * s 10.0.0.1 10.0.0.2\n", 1, "one address"),
        ];
        for (text, line, needle) in cases {
            let e = Secrets::parse(text, "pptpd").unwrap_err();
            assert_eq!(e.line, line, "{text:?}: {e}");
            assert!(e.reason.contains(needle), "{text:?}: {e}");
        }
    }
}
