//! The client side of SASL DIGEST-MD5 (RFC 2831) as Hadoop uses it for token authentication:
//! qop `auth` only (Hadoop's default `hadoop.rpc.protection=authentication`), `md5-sess`.
//! Username and password are the base64 of the token's identifier and password.

use std::collections::HashMap;

use base64::Engine;
use md5::{Digest, Md5};

use super::credentials::Token;

/// A DIGEST-MD5 failure. Never carries the password or the computed digest.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DigestError {
    #[error("malformed DIGEST-MD5 challenge: {0}")]
    Malformed(String),
    #[error(
        "the server requires SASL qop {0}; yarnflow supports only 'auth' (hadoop.rpc.protection=authentication)"
    )]
    UnsupportedQop(String),
    #[error("the server's rspauth does not match: it does not know our token's password")]
    BadServerProof,
}

/// Parses `key=value,key="quoted, value"` pairs.
pub fn parse_directives(s: &str) -> Result<HashMap<String, String>, DigestError> {
    let mut out = HashMap::new();
    let mut chars = s.chars().peekable();
    loop {
        while matches!(chars.peek(), Some(c) if *c == ',' || c.is_whitespace()) {
            chars.next();
        }
        if chars.peek().is_none() {
            return Ok(out);
        }
        let mut key = String::new();
        while let Some(&c) = chars.peek() {
            if c == '=' {
                break;
            }
            key.push(c);
            chars.next();
        }
        if chars.next() != Some('=') {
            return Err(DigestError::Malformed(format!(
                "'{}' has no value",
                key.trim()
            )));
        }
        let mut value = String::new();
        if chars.peek() == Some(&'"') {
            chars.next();
            loop {
                match chars.next() {
                    Some('\\') => match chars.next() {
                        Some(c) => value.push(c),
                        None => return Err(DigestError::Malformed("dangling escape".into())),
                    },
                    Some('"') => break,
                    Some(c) => value.push(c),
                    None => {
                        return Err(DigestError::Malformed(format!(
                            "unterminated quote in '{}'",
                            key.trim()
                        )));
                    }
                }
            }
        } else {
            while let Some(&c) = chars.peek() {
                if c == ',' {
                    break;
                }
                value.push(c);
                chars.next();
            }
        }
        out.insert(key.trim().to_ascii_lowercase(), value.trim().to_string());
    }
}

fn md5(data: &[u8]) -> [u8; 16] {
    Md5::digest(data).into()
}

fn hex(d: &[u8]) -> String {
    d.iter().map(|b| format!("{b:02x}")).collect()
}

/// The state of one client authentication.
pub struct DigestMd5Client {
    username: String,
    password: String,
    digest_uri: String,
    cnonce: String,
    /// hex(H(A1)), kept to check the server's rspauth.
    ha1: Option<String>,
    nonce: String,
    qop: String,
}

impl DigestMd5Client {
    /// For Hadoop token auth: protocol "" and server id "default" give digest-uri `/default`.
    pub fn for_token(token: &Token, protocol: &str, server_id: &str) -> DigestMd5Client {
        let b64 = base64::engine::general_purpose::STANDARD;
        DigestMd5Client {
            username: b64.encode(&token.identifier),
            password: b64.encode(&token.password),
            digest_uri: format!("{protocol}/{server_id}"),
            cnonce: b64.encode(rand::random::<[u8; 24]>()),
            ha1: None,
            nonce: String::new(),
            qop: String::new(),
        }
    }

    #[cfg(test)]
    fn with(username: &str, password: &str, digest_uri: &str, cnonce: &str) -> DigestMd5Client {
        DigestMd5Client {
            username: username.into(),
            password: password.into(),
            digest_uri: digest_uri.into(),
            cnonce: cnonce.into(),
            ha1: None,
            nonce: String::new(),
            qop: String::new(),
        }
    }

    /// Answers the server's challenge.
    pub fn respond(&mut self, challenge: &[u8]) -> Result<Vec<u8>, DigestError> {
        let text = std::str::from_utf8(challenge)
            .map_err(|_| DigestError::Malformed("challenge is not UTF-8".into()))?;
        let d = parse_directives(text)?;
        let nonce = d
            .get("nonce")
            .ok_or_else(|| DigestError::Malformed("no nonce".into()))?
            .clone();
        let realm = d.get("realm").cloned().unwrap_or_default();
        let offered = d.get("qop").cloned().unwrap_or_else(|| "auth".into());
        if !offered.split(',').any(|q| q.trim() == "auth") {
            return Err(DigestError::UnsupportedQop(offered));
        }
        if let Some(alg) = d.get("algorithm")
            && alg != "md5-sess"
        {
            return Err(DigestError::Malformed(format!("algorithm {alg}")));
        }
        let utf8 = d.get("charset").is_some_and(|c| c == "utf-8");
        let nc = "00000001";
        let qop = "auth";
        let mut a1 =
            md5(format!("{}:{realm}:{}", self.username, self.password).as_bytes()).to_vec();
        a1.extend_from_slice(format!(":{nonce}:{}", self.cnonce).as_bytes());
        let ha1 = hex(&md5(&a1));
        let ha2 = hex(&md5(format!("AUTHENTICATE:{}", self.digest_uri).as_bytes()));
        let response = hex(&md5(format!(
            "{ha1}:{nonce}:{nc}:{}:{qop}:{ha2}",
            self.cnonce
        )
        .as_bytes()));
        let mut out = String::new();
        if utf8 {
            out.push_str("charset=utf-8,");
        }
        out.push_str(&format!(
            "username=\"{}\",realm=\"{realm}\",nonce=\"{nonce}\",nc={nc},cnonce=\"{}\",digest-uri=\"{}\",maxbuf=65536,response={response},qop={qop}",
            self.username, self.cnonce, self.digest_uri
        ));
        self.ha1 = Some(ha1);
        self.nonce = nonce;
        self.qop = qop.into();
        Ok(out.into_bytes())
    }

    /// Checks the server's final `rspauth=...`, proving it knows the password too.
    pub fn verify_server(&self, token: &[u8]) -> Result<(), DigestError> {
        let text = std::str::from_utf8(token).map_err(|_| DigestError::BadServerProof)?;
        let d = parse_directives(text)?;
        let got = d.get("rspauth").ok_or(DigestError::BadServerProof)?;
        let ha1 = self.ha1.as_ref().ok_or(DigestError::BadServerProof)?;
        let ha2 = hex(&md5(format!(":{}", self.digest_uri).as_bytes()));
        let want = hex(&md5(format!(
            "{ha1}:{}:00000001:{}:{}:{ha2}",
            self.nonce, self.cnonce, self.qop
        )
        .as_bytes()));
        if *got == want {
            Ok(())
        } else {
            Err(DigestError::BadServerProof)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// RFC 2831 section 4, example 1.
    #[test]
    fn rfc2831_test_vector() {
        let mut c = DigestMd5Client::with(
            "chris",
            "secret",
            "imap/elwood.innosoft.com",
            "OA6MHXh6VqTrRk",
        );
        let challenge = br#"realm="elwood.innosoft.com",nonce="OA6MG9tEQGm2hh",qop="auth",algorithm=md5-sess,charset=utf-8"#;
        let resp = String::from_utf8(c.respond(challenge).unwrap()).unwrap();
        assert!(
            resp.contains("response=d388dad90d4bbd760a152321f2143af7"),
            "{resp}"
        );
        c.verify_server(b"rspauth=ea40f60335c427b5527b84dbabcdfffd")
            .unwrap();
        assert_eq!(
            c.verify_server(b"rspauth=00000000000000000000000000000000"),
            Err(DigestError::BadServerProof)
        );
    }

    #[test]
    fn refuses_integrity_and_privacy_only_servers() {
        let mut c = DigestMd5Client::with("u", "p", "/default", "x");
        let e = c
            .respond(br#"realm="default",nonce="n",qop="auth-conf",algorithm=md5-sess"#)
            .unwrap_err();
        assert!(e.to_string().contains("auth-conf"));
    }

    #[test]
    fn garbage_challenges_are_errors() {
        let mut c = DigestMd5Client::with("u", "p", "/default", "x");
        for g in [
            &b"\xff\xfe"[..],
            b"realm",
            b"nonce=\"open",
            b"qop=auth",
            b"",
        ] {
            assert!(c.respond(g).is_err(), "{g:?}");
        }
    }
}
