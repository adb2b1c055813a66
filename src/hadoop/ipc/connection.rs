//! One Hadoop IPC connection: preamble, SASL, connection context, then concurrent calls routed
//! to their callers by call id. A reader task owns the read half; when it ends (server closed,
//! FATAL, garbage) every pending call fails and the connection is dead.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicI32, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use prost::Message;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::net::tcp::{OwnedReadHalf, OwnedWriteHalf};
use tokio::sync::oneshot;

use super::credentials::Token;
use super::digest_md5::DigestMd5Client;
use super::frame::{
    self, AUTH_NONE, AUTH_SASL, CONNECTION_CONTEXT_CALL_ID, PREAMBLE_PREFIX, Raw, SASL_CALL_ID,
};
use super::{IpcConfig, IpcError};
use crate::hadoop::proto::common as pb;

/// How the client authenticates.
#[derive(Clone)]
pub enum Auth {
    /// No SASL; the server trusts the user named in the connection context (non-secure
    /// clusters, ApplicationClientProtocol).
    Simple { user: String },
    /// SASL TOKEN with DIGEST-MD5 (AMRMToken for the scheduler, NMToken for NodeManagers).
    Token(Token),
}

impl std::fmt::Debug for Auth {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Auth::Simple { user } => write!(f, "Simple({user})"),
            Auth::Token(t) => write!(f, "Token({})", t.kind),
        }
    }
}

type Pending = Arc<Mutex<HashMap<i32, oneshot::Sender<Result<Bytes, IpcError>>>>>;

pub struct Connection {
    address: String,
    writer: tokio::sync::Mutex<OwnedWriteHalf>,
    pending: Pending,
    alive: Arc<AtomicBool>,
    next_call_id: AtomicI32,
    client_id: [u8; 16],
    reader: tokio::task::JoinHandle<()>,
}

impl Drop for Connection {
    fn drop(&mut self) {
        self.reader.abort();
    }
}

async fn read_packet(r: &mut OwnedReadHalf, address: &str) -> Result<Bytes, IpcError> {
    let closed = |e: std::io::Error| IpcError::ConnectionClosed {
        address: address.to_string(),
        message: e.to_string(),
    };
    let len = r.read_u32().await.map_err(closed)?;
    let len = frame::check_len(len)?;
    let mut buf = BytesMut::zeroed(len);
    r.read_exact(&mut buf)
        .await
        .map_err(|e| IpcError::ConnectionClosed {
            address: address.to_string(),
            message: format!("truncated frame ({len} bytes announced): {e}"),
        })?;
    Ok(buf.freeze())
}

fn status_error(address: &str, h: &pb::RpcResponseHeaderProto) -> IpcError {
    let class = h.exception_class_name.clone().unwrap_or_default();
    let message = h
        .error_msg
        .clone()
        .unwrap_or_default()
        .lines()
        .next()
        .unwrap_or_default()
        .to_string();
    if h.status == pb::rpc_response_header_proto::RpcStatusProto::Fatal as i32 {
        IpcError::Fatal {
            address: address.to_string(),
            class,
            message,
        }
    } else {
        IpcError::Remote {
            address: address.to_string(),
            class,
            message,
        }
    }
}

impl Connection {
    /// Connects, authenticates and sends the connection context.
    pub async fn open(config: &IpcConfig, client_id: [u8; 16]) -> Result<Connection, IpcError> {
        let address = config.address.clone();
        let stream = TcpStream::connect(&address)
            .await
            .map_err(|e| IpcError::Connect {
                address: address.clone(),
                message: e.to_string(),
            })?;
        let _ = stream.set_nodelay(true);
        let (mut r, mut w) = stream.into_split();
        let io = |e: std::io::Error| IpcError::ConnectionClosed {
            address: address.clone(),
            message: e.to_string(),
        };
        let mut preamble = PREAMBLE_PREFIX.to_vec();
        let user = match &config.auth {
            Auth::Simple { user } => {
                preamble.push(AUTH_NONE);
                w.write_all(&preamble).await.map_err(io)?;
                Some(user.clone())
            }
            Auth::Token(token) => {
                preamble.push(AUTH_SASL);
                w.write_all(&preamble).await.map_err(io)?;
                sasl_token(&address, &mut r, &mut w, token).await?;
                // With a token the server takes the user from it; naming another is refused.
                None
            }
        };
        let context = pb::IpcConnectionContextProto {
            user_info: user.map(|u| pb::UserInformationProto {
                effective_user: Some(u),
                real_user: None,
            }),
            protocol: Some(config.protocol.clone()),
        };
        let header = frame::request_header(CONNECTION_CONTEXT_CALL_ID, &client_id, -1);
        w.write_all(&frame::encode_packet(&[&header, &context]))
            .await
            .map_err(io)?;

        let pending: Pending = Arc::new(Mutex::new(HashMap::new()));
        let alive = Arc::new(AtomicBool::new(true));
        let reader = tokio::spawn(read_loop(
            address.clone(),
            r,
            pending.clone(),
            alive.clone(),
        ));
        Ok(Connection {
            address,
            writer: tokio::sync::Mutex::new(w),
            pending,
            alive,
            next_call_id: AtomicI32::new(0),
            client_id,
            reader,
        })
    }

    pub fn is_alive(&self) -> bool {
        self.alive.load(Ordering::SeqCst)
    }

    pub fn close(&self) {
        self.alive.store(false, Ordering::SeqCst);
        self.reader.abort();
        fail_all(&self.pending, &self.address, "closed by the client");
    }

    /// Runs one call; the flag says whether the request reached the socket.
    pub async fn call(
        &self,
        method: &str,
        protocol: &str,
        request: &[u8],
        timeout: Duration,
    ) -> (Result<Bytes, IpcError>, bool) {
        if !self.is_alive() {
            return (
                Err(IpcError::ConnectionClosed {
                    address: self.address.clone(),
                    message: "the connection was already closed".into(),
                }),
                false,
            );
        }
        // Call ids cycle through the non-negative i32s (negative ones are reserved).
        let id = self.next_call_id.fetch_add(1, Ordering::Relaxed) & i32::MAX;
        let (tx, rx) = oneshot::channel();
        self.pending.lock().expect("pending lock").insert(id, tx);
        let header = frame::request_header(id, &self.client_id, 0);
        let rpc = pb::RequestHeaderProto {
            method_name: method.to_string(),
            declaring_class_protocol_name: protocol.to_string(),
            client_protocol_version: 1,
        };
        let packet = frame::encode_packet(&[&header, &rpc, &Raw(request)]);
        let write = async {
            let mut w = self.writer.lock().await;
            w.write_all(&packet).await
        };
        match tokio::time::timeout(timeout, write).await {
            Ok(Ok(())) => {}
            Ok(Err(e)) => {
                self.pending.lock().expect("pending lock").remove(&id);
                self.alive.store(false, Ordering::SeqCst);
                return (
                    Err(IpcError::ConnectionClosed {
                        address: self.address.clone(),
                        message: e.to_string(),
                    }),
                    false,
                );
            }
            Err(_) => {
                self.pending.lock().expect("pending lock").remove(&id);
                self.alive.store(false, Ordering::SeqCst);
                return (Err(self.timeout(method, timeout)), false);
            }
        }
        let result = match tokio::time::timeout(timeout, rx).await {
            Ok(Ok(r)) => r,
            Ok(Err(_)) => Err(IpcError::ConnectionClosed {
                address: self.address.clone(),
                message: "the connection ended before the response".into(),
            }),
            Err(_) => {
                self.pending.lock().expect("pending lock").remove(&id);
                Err(self.timeout(method, timeout))
            }
        };
        (result, true)
    }

    fn timeout(&self, method: &str, after: Duration) -> IpcError {
        IpcError::Timeout {
            address: self.address.clone(),
            what: format!("call {method}"),
            after,
        }
    }
}

fn fail_all(pending: &Pending, address: &str, why: &str) {
    let waiters: Vec<_> = pending.lock().expect("pending lock").drain().collect();
    for (_, tx) in waiters {
        let _ = tx.send(Err(IpcError::ConnectionClosed {
            address: address.to_string(),
            message: why.to_string(),
        }));
    }
}

async fn read_loop(
    address: String,
    mut r: OwnedReadHalf,
    pending: Pending,
    alive: Arc<AtomicBool>,
) {
    let why = loop {
        let body = match read_packet(&mut r, &address).await {
            Ok(b) => b,
            Err(e) => break e.to_string(),
        };
        let mut packet = match frame::decode_response(body) {
            Ok(p) => p,
            Err(e) => break e.to_string(),
        };
        let id = packet.header.call_id as i32;
        let waiter = pending.lock().expect("pending lock").remove(&id);
        let status = packet.header.status;
        let result = if status == pb::rpc_response_header_proto::RpcStatusProto::Success as i32 {
            frame::next_delimited(&mut packet.rest)
        } else {
            Err(status_error(&address, &packet.header))
        };
        let fatal = status == pb::rpc_response_header_proto::RpcStatusProto::Fatal as i32;
        if let Some(tx) = waiter {
            let _ = tx.send(result);
        }
        if fatal {
            // FATAL closes the connection for everyone.
            break format!(
                "fatal error from the server: {}",
                packet.header.exception_class_name.unwrap_or_default()
            );
        }
    };
    alive.store(false, Ordering::SeqCst);
    fail_all(&pending, &address, &why);
}

/// The client side of Hadoop's SASL exchange with a token (`SaslRpcClient.saslConnect`).
async fn sasl_token(
    address: &str,
    r: &mut OwnedReadHalf,
    w: &mut OwnedWriteHalf,
    token: &Token,
) -> Result<(), IpcError> {
    let sasl_err = |m: String| IpcError::Sasl {
        address: address.to_string(),
        message: m,
    };
    let io = |e: std::io::Error| IpcError::ConnectionClosed {
        address: address.to_string(),
        message: e.to_string(),
    };
    let header = frame::request_header(SASL_CALL_ID, &[], -1);
    let send = |msg: pb::RpcSaslProto| frame::encode_packet(&[&header, &msg]);
    w.write_all(&send(pb::RpcSaslProto {
        state: pb::rpc_sasl_proto::SaslState::Negotiate as i32,
        ..Default::default()
    }))
    .await
    .map_err(io)?;
    let mut digest: Option<DigestMd5Client> = None;
    for _ in 0..10 {
        let body = read_packet(r, address).await.map_err(|e| match e {
            // Hadoop drops the connection when it cannot even decode the token.
            IpcError::ConnectionClosed { .. } => sasl_err(
                "the server closed the connection during authentication (wrong or expired token?)"
                    .into(),
            ),
            other => other,
        })?;
        let mut packet = frame::decode_response(body)?;
        if packet.header.status != pb::rpc_response_header_proto::RpcStatusProto::Success as i32 {
            let e = status_error(address, &packet.header);
            return Err(sasl_err(match e.exception_class() {
                Some(c) if c.contains("InvalidToken") || c.contains("AccessControl") => {
                    format!("the server rejected our token ({c})")
                }
                _ => e.to_string(),
            }));
        }
        if packet.header.call_id as i32 != SASL_CALL_ID {
            return Err(IpcError::Protocol(format!(
                "expected a SASL reply (call id -33), got call id {}",
                packet.header.call_id as i32
            )));
        }
        let msg = pb::RpcSaslProto::decode(frame::next_delimited(&mut packet.rest)?)
            .map_err(|e| IpcError::Protocol(format!("undecodable SASL message: {e}")))?;
        use pb::rpc_sasl_proto::SaslState;
        match SaslState::try_from(msg.state) {
            Ok(SaslState::Negotiate) => {
                let auth = msg
                    .auths
                    .iter()
                    .find(|a| a.method == "TOKEN" && a.mechanism == "DIGEST-MD5")
                    .ok_or_else(|| {
                        let offered: Vec<String> = msg
                            .auths
                            .iter()
                            .map(|a| format!("{}/{}", a.method, a.mechanism))
                            .collect();
                        sasl_err(format!(
                            "the server does not offer TOKEN/DIGEST-MD5 (offers: {})",
                            offered.join(", ")
                        ))
                    })?;
                let mut client = DigestMd5Client::for_token(
                    token,
                    auth.protocol.as_deref().unwrap_or(""),
                    auth.server_id.as_deref().unwrap_or("default"),
                );
                let mut chosen = auth.clone();
                chosen.challenge = None;
                let response = match auth.challenge.as_deref() {
                    Some(ch) => Some(client.respond(ch).map_err(|e| sasl_err(e.to_string()))?),
                    None => None,
                };
                digest = Some(client);
                w.write_all(&send(pb::RpcSaslProto {
                    state: SaslState::Initiate as i32,
                    token: response,
                    auths: vec![chosen],
                    ..Default::default()
                }))
                .await
                .map_err(io)?;
            }
            Ok(SaslState::Challenge) => {
                let client = digest.as_mut().ok_or_else(|| {
                    IpcError::Protocol("SASL challenge before negotiation".into())
                })?;
                let response = client
                    .respond(msg.token.as_deref().unwrap_or_default())
                    .map_err(|e| sasl_err(e.to_string()))?;
                w.write_all(&send(pb::RpcSaslProto {
                    state: SaslState::Response as i32,
                    token: Some(response),
                    ..Default::default()
                }))
                .await
                .map_err(io)?;
            }
            Ok(SaslState::Success) => {
                if let (Some(client), Some(t)) = (&digest, msg.token.as_deref()) {
                    client
                        .verify_server(t)
                        .map_err(|e| sasl_err(e.to_string()))?;
                }
                return Ok(());
            }
            other => {
                return Err(IpcError::Protocol(format!(
                    "unexpected SASL state {other:?} from the server"
                )));
            }
        }
    }
    Err(sasl_err(
        "the SASL exchange did not finish in 10 rounds".into(),
    ))
}
