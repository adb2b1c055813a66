//! Hadoop IPC ("hrpc" version 9) over tokio, with SASL SIMPLE / TOKEN (DIGEST-MD5).
//!
//! Layers: [`frame`] (bytes) → [`connection`] (one TCP connection: handshake, call ids routed
//! to callers, failure of every pending call when it dies) → [`IpcClient`] (lazy connect,
//! reconnect after the server closes, a timeout on every call, the ProtobufRpcEngine2 request
//! header). Typed protocols (`crate::hadoop::yarn`) sit on top with one method per RPC.

pub mod connection;
pub mod credentials;
pub mod digest_md5;
pub mod frame;
pub mod vint;

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use prost::Message;
use tokio::sync::Mutex;

pub use connection::Auth;
use connection::Connection;
pub use credentials::{Credentials, Token};

/// An IPC failure, classified. Carries the Java exception class as data for remote errors.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum IpcError {
    /// The server ran the call and threw (`status = ERROR`); the connection stays usable.
    #[error("{address}: {class}: {message}")]
    Remote {
        address: String,
        class: String,
        message: String,
    },
    /// The server refused the connection itself (`status = FATAL`) and closed it.
    #[error("{address}: fatal: {class}: {message}")]
    Fatal {
        address: String,
        class: String,
        message: String,
    },
    #[error("{address}: cannot connect: {message}")]
    Connect { address: String, message: String },
    #[error("{address}: connection closed: {message}")]
    ConnectionClosed { address: String, message: String },
    #[error("{address}: {what} timed out after {after:?}")]
    Timeout {
        address: String,
        what: String,
        after: Duration,
    },
    #[error("{address}: SASL authentication failed: {message}")]
    Sasl { address: String, message: String },
    /// The peer sent something that is not Hadoop IPC.
    #[error("protocol error: {0}")]
    Protocol(String),
}

impl IpcError {
    /// The Java exception class of a remote or fatal error.
    pub fn exception_class(&self) -> Option<&str> {
        match self {
            IpcError::Remote { class, .. } | IpcError::Fatal { class, .. } => Some(class),
            _ => None,
        }
    }

    /// Whether the same call may succeed on a new connection.
    pub fn is_retriable(&self) -> bool {
        matches!(
            self,
            IpcError::Connect { .. } | IpcError::ConnectionClosed { .. } | IpcError::Timeout { .. }
        )
    }

    fn with_address(self, address: &str) -> IpcError {
        match self {
            IpcError::Protocol(m) => IpcError::Protocol(format!("{address}: {m}")),
            other => other,
        }
    }
}

/// Where and how to connect.
#[derive(Clone, Debug)]
pub struct IpcConfig {
    /// `host:port`.
    pub address: String,
    /// The PB protocol name, e.g. `org.apache.hadoop.yarn.api.ApplicationMasterProtocolPB`.
    pub protocol: String,
    pub auth: Auth,
    pub connect_timeout: Duration,
    pub call_timeout: Duration,
}

impl IpcConfig {
    pub fn new(address: &str, protocol: &str, auth: Auth) -> IpcConfig {
        IpcConfig {
            address: address.to_string(),
            protocol: protocol.to_string(),
            auth,
            connect_timeout: Duration::from_secs(10),
            call_timeout: Duration::from_secs(60),
        }
    }
}

/// A client of one server and protocol; cheap to clone, calls may run concurrently.
#[derive(Clone)]
pub struct IpcClient {
    inner: Arc<Inner>,
}

struct Inner {
    config: Mutex<IpcConfig>,
    conn: Mutex<Option<Arc<Connection>>>,
    client_id: [u8; 16],
}

impl IpcClient {
    pub fn new(config: IpcConfig) -> IpcClient {
        IpcClient {
            inner: Arc::new(Inner {
                config: Mutex::new(config),
                conn: Mutex::new(None),
                client_id: *uuid::Uuid::new_v4().as_bytes(),
            }),
        }
    }

    pub async fn address(&self) -> String {
        self.inner.config.lock().await.address.clone()
    }

    /// Replaces the credentials used for *new* connections (e.g. a rolled AMRMToken); the
    /// current connection, already authenticated, stays.
    pub async fn set_auth(&self, auth: Auth) {
        self.inner.config.lock().await.auth = auth;
    }

    /// Drops the current connection; the next call reconnects.
    pub async fn disconnect(&self) {
        if let Some(c) = self.inner.conn.lock().await.take() {
            c.close();
        }
    }

    async fn connection(&self) -> Result<(Arc<Connection>, IpcConfig), IpcError> {
        let config = self.inner.config.lock().await.clone();
        let mut guard = self.inner.conn.lock().await;
        if let Some(c) = guard.as_ref()
            && c.is_alive()
        {
            return Ok((c.clone(), config));
        }
        let c = tokio::time::timeout(
            config.connect_timeout,
            Connection::open(&config, self.inner.client_id),
        )
        .await
        .map_err(|_| IpcError::Timeout {
            address: config.address.clone(),
            what: "connect and authenticate".into(),
            after: config.connect_timeout,
        })?
        .map_err(|e| e.with_address(&config.address))?;
        let c = Arc::new(c);
        *guard = Some(c.clone());
        Ok((c, config))
    }

    /// Calls `method` with an encoded request; returns the encoded response.
    pub async fn call_raw(&self, method: &str, request: &[u8]) -> Result<Bytes, IpcError> {
        // One retry when the connection turns out to be dead before the call went out (the
        // server closed an idle connection): that is safe for every call.
        for attempt in 0..2 {
            let (conn, config) = self.connection().await?;
            let (result, sent) = conn
                .call(method, &config.protocol, request, config.call_timeout)
                .await;
            match result {
                Err(IpcError::ConnectionClosed { .. }) if attempt == 0 && !sent => continue,
                other => return other.map_err(|e| e.with_address(&config.address)),
            }
        }
        unreachable!("the loop returns on its second pass")
    }

    /// Calls `method` with a protobuf request and decodes the response.
    pub async fn call<Req: Message, Resp: Message + Default>(
        &self,
        method: &str,
        request: &Req,
    ) -> Result<Resp, IpcError> {
        let bytes = self.call_raw(method, &request.encode_to_vec()).await?;
        Resp::decode(bytes)
            .map_err(|e| IpcError::Protocol(format!("undecodable response to {method}: {e}")))
    }
}
