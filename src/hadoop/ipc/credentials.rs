//! Hadoop credentials files (`HADOOP_TOKEN_FILE_LOCATION`, `Credentials.writeTokenStorageToStream`):
//! magic `HDTS`, a format byte, then either the Writable layout (0) or one varint-delimited
//! `CredentialsProto` (1). Both are read; Writable (Hadoop's default) is written.

use std::fmt;

use prost::Message;

use super::vint::{read_vlong, write_vlong};
use crate::hadoop::proto::common as pb;

const MAGIC: &[u8; 4] = b"HDTS";
const FORMAT_WRITABLE: u8 = 0;
const FORMAT_PROTOBUF: u8 = 1;
/// Larger fields than this are corrupt, not tokens.
const MAX_FIELD: i64 = 16 << 20;

/// Token kind of the ApplicationMaster↔ResourceManager token.
pub const AMRM_TOKEN_KIND: &str = "YARN_AM_RM_TOKEN";
/// Token kind of NodeManager tokens.
pub const NM_TOKEN_KIND: &str = "NMToken";

/// A Hadoop token. `Debug` never shows the password.
#[derive(Clone, PartialEq, Eq, Default)]
pub struct Token {
    pub identifier: Vec<u8>,
    pub password: Vec<u8>,
    pub kind: String,
    pub service: String,
}

impl fmt::Debug for Token {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Token")
            .field("kind", &self.kind)
            .field("service", &self.service)
            .field("identifier_len", &self.identifier.len())
            .field("password", &"<redacted>")
            .finish()
    }
}

impl Token {
    pub(crate) fn from_proto(p: &pb::TokenProto) -> Token {
        Token {
            identifier: p.identifier.clone(),
            password: p.password.clone(),
            kind: p.kind.clone(),
            service: p.service.clone(),
        }
    }

    pub(crate) fn to_proto(&self) -> pb::TokenProto {
        pb::TokenProto {
            identifier: self.identifier.clone(),
            password: self.password.clone(),
            kind: self.kind.clone(),
            service: self.service.clone(),
        }
    }
}

/// Tokens and secret keys by alias.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Credentials {
    pub tokens: Vec<(String, Token)>,
    /// Secret values are redacted from `Debug` by their type.
    pub secrets: Vec<(String, Secret)>,
}

#[derive(Clone, PartialEq, Eq, Default)]
pub struct Secret(pub Vec<u8>);

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "<redacted {} bytes>", self.0.len())
    }
}

/// A malformed credentials file; says where, never what the secret bytes were.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("corrupt credentials file: {0}")]
pub struct CredentialsError(pub String);

impl Credentials {
    /// The first token of `kind`.
    pub fn token_of_kind(&self, kind: &str) -> Option<&Token> {
        self.tokens.iter().map(|(_, t)| t).find(|t| t.kind == kind)
    }

    /// Parses either layout.
    pub fn parse(data: &[u8]) -> Result<Credentials, CredentialsError> {
        let err = |m: &str| CredentialsError(m.to_string());
        if data.len() < 5 || &data[..4] != MAGIC {
            return Err(err("missing the HDTS magic at byte 0"));
        }
        let body = &data[5..];
        match data[4] {
            FORMAT_WRITABLE => parse_writable(body),
            FORMAT_PROTOBUF => {
                let p = pb::CredentialsProto::decode_length_delimited(body)
                    .map_err(|e| err(&format!("protobuf layout: {e}")))?;
                Ok(Credentials {
                    tokens: p
                        .tokens
                        .iter()
                        .filter_map(|kv| {
                            kv.token
                                .as_ref()
                                .map(|t| (kv.alias.clone(), Token::from_proto(t)))
                        })
                        .collect(),
                    secrets: p
                        .secrets
                        .iter()
                        .map(|kv| {
                            (
                                kv.alias.clone(),
                                Secret(kv.secret.clone().unwrap_or_default()),
                            )
                        })
                        .collect(),
                })
            }
            other => Err(err(&format!("unknown format byte {other} at byte 4"))),
        }
    }

    /// Reads the file named by `HADOOP_TOKEN_FILE_LOCATION`.
    pub fn from_env() -> Result<Credentials, CredentialsError> {
        let path = std::env::var("HADOOP_TOKEN_FILE_LOCATION")
            .map_err(|_| CredentialsError("HADOOP_TOKEN_FILE_LOCATION is not set".into()))?;
        let data = std::fs::read(&path)
            .map_err(|e| CredentialsError(format!("{path}: cannot read: {e}")))?;
        Credentials::parse(&data).map_err(|e| CredentialsError(format!("{path}: {}", e.0)))
    }

    /// The Writable layout (what Hadoop writes by default).
    pub fn to_writable(&self) -> Vec<u8> {
        let mut out = MAGIC.to_vec();
        out.push(FORMAT_WRITABLE);
        write_vlong(&mut out, self.tokens.len() as i64);
        for (alias, t) in &self.tokens {
            write_bytes(&mut out, alias.as_bytes());
            write_bytes(&mut out, &t.identifier);
            write_bytes(&mut out, &t.password);
            write_bytes(&mut out, t.kind.as_bytes());
            write_bytes(&mut out, t.service.as_bytes());
        }
        write_vlong(&mut out, self.secrets.len() as i64);
        for (alias, s) in &self.secrets {
            write_bytes(&mut out, alias.as_bytes());
            write_bytes(&mut out, &s.0);
        }
        out
    }

    /// The protobuf layout.
    pub fn to_protobuf(&self) -> Vec<u8> {
        let p = pb::CredentialsProto {
            tokens: self
                .tokens
                .iter()
                .map(|(a, t)| pb::CredentialsKvProto {
                    alias: a.clone(),
                    token: Some(t.to_proto()),
                    secret: None,
                })
                .collect(),
            secrets: self
                .secrets
                .iter()
                .map(|(a, s)| pb::CredentialsKvProto {
                    alias: a.clone(),
                    token: None,
                    secret: Some(s.0.clone()),
                })
                .collect(),
        };
        let mut out = MAGIC.to_vec();
        out.push(FORMAT_PROTOBUF);
        out.extend(p.encode_length_delimited_to_vec());
        out
    }
}

fn write_bytes(out: &mut Vec<u8>, b: &[u8]) {
    write_vlong(out, b.len() as i64);
    out.extend_from_slice(b);
}

fn parse_writable(body: &[u8]) -> Result<Credentials, CredentialsError> {
    let total = body.len();
    let mut s = body;
    let at = |s: &[u8]| 5 + total - s.len();
    let count = |s: &mut &[u8], what: &str| -> Result<usize, CredentialsError> {
        let pos = at(s);
        match read_vlong(s) {
            Some(n) if (0..=MAX_FIELD).contains(&n) => Ok(n as usize),
            Some(n) => Err(CredentialsError(format!(
                "{what} {n} at byte {pos} is out of range"
            ))),
            None => Err(CredentialsError(format!(
                "truncated at byte {pos} ({what})"
            ))),
        }
    };
    let bytes = |s: &mut &[u8], what: &str| -> Result<Vec<u8>, CredentialsError> {
        let n = count(s, &format!("{what} length"))?;
        if s.len() < n {
            return Err(CredentialsError(format!(
                "truncated at byte {} ({what}: {n} bytes announced, {} left)",
                at(s),
                s.len()
            )));
        }
        let (v, rest) = s.split_at(n);
        *s = rest;
        Ok(v.to_vec())
    };
    let text = |s: &mut &[u8], what: &str| -> Result<String, CredentialsError> {
        let pos = at(s);
        String::from_utf8(bytes(s, what)?)
            .map_err(|_| CredentialsError(format!("{what} at byte {pos} is not UTF-8")))
    };
    let mut creds = Credentials::default();
    for _ in 0..count(&mut s, "token count")? {
        let alias = text(&mut s, "token alias")?;
        let identifier = bytes(&mut s, "token identifier")?;
        let password = bytes(&mut s, "token password")?;
        let kind = text(&mut s, "token kind")?;
        let service = text(&mut s, "token service")?;
        creds.tokens.push((
            alias,
            Token {
                identifier,
                password,
                kind,
                service,
            },
        ));
    }
    if s.is_empty() {
        // Some writers stop after the tokens.
        return Ok(creds);
    }
    for _ in 0..count(&mut s, "secret count")? {
        let alias = text(&mut s, "secret alias")?;
        let value = bytes(&mut s, "secret")?;
        creds.secrets.push((alias, Secret(value)));
    }
    Ok(creds)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> Credentials {
        Credentials {
            tokens: vec![
                (
                    String::new(),
                    Token {
                        identifier: vec![1, 2, 3, 0, 255],
                        password: b"pw-bytes".to_vec(),
                        kind: AMRM_TOKEN_KIND.into(),
                        service: String::new(),
                    },
                ),
                (
                    "nm".into(),
                    Token {
                        identifier: vec![9; 300],
                        password: vec![7; 20],
                        kind: NM_TOKEN_KIND.into(),
                        service: "host:1234".into(),
                    },
                ),
            ],
            secrets: vec![("s".into(), Secret(b"hush".to_vec()))],
        }
    }

    #[test]
    fn both_layouts_round_trip() {
        let c = sample();
        assert_eq!(Credentials::parse(&c.to_writable()).unwrap(), c);
        assert_eq!(Credentials::parse(&c.to_protobuf()).unwrap(), c);
        assert_eq!(
            c.token_of_kind(AMRM_TOKEN_KIND).unwrap().identifier,
            vec![1, 2, 3, 0, 255]
        );
    }

    #[test]
    fn writable_layout_matches_hadoop_bytes() {
        let c = Credentials {
            tokens: vec![(
                "a".into(),
                Token {
                    identifier: vec![0xaa],
                    password: vec![0xbb],
                    kind: "K".into(),
                    service: "S".into(),
                },
            )],
            secrets: vec![],
        };
        assert_eq!(
            c.to_writable(),
            b"HDTS\x00\x01\x01a\x01\xaa\x01\xbb\x01K\x01S\x00".to_vec()
        );
    }

    #[test]
    fn corrupt_files_are_clear_errors_and_never_panic() {
        let good = sample().to_writable();
        for cut in 0..good.len() {
            let _ = Credentials::parse(&good[..cut]);
        }
        let e = Credentials::parse(&good[..good.len() / 2])
            .unwrap_err()
            .to_string();
        assert!(e.contains("truncated at byte"), "{e}");
        assert!(
            Credentials::parse(b"NOPE\x00")
                .unwrap_err()
                .to_string()
                .contains("magic")
        );
        assert!(
            Credentials::parse(b"HDTS\x07")
                .unwrap_err()
                .to_string()
                .contains("format byte 7")
        );
        // A huge announced length is refused, not allocated.
        let e = Credentials::parse(b"HDTS\x00\x01\x01a\x88\x7f\xff\xff\xff\xff\xff\xff\xff")
            .unwrap_err()
            .to_string();
        assert!(e.contains("out of range"), "{e}");
        // Pseudo-random garbage.
        let mut x: u64 = 0x9e3779b97f4a7c15;
        for _ in 0..2000 {
            let len = (x % 64) as usize;
            let mut buf = b"HDTS".to_vec();
            for _ in 0..len {
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                buf.push(x as u8);
            }
            let _ = Credentials::parse(&buf);
        }
    }

    #[test]
    fn debug_never_shows_secrets() {
        let d = format!("{:?}", sample());
        assert!(!d.contains("pw-bytes") && !d.contains("hush") && !d.contains("112, 119"));
    }
}
