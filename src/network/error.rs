//! The data plane's one error type.

use std::net::SocketAddr;
use std::sync::Arc;

use super::ids::{ChannelId, ResultPartitionId};

/// What went wrong in the data plane. `Clone`: one lost connection fails every channel on it.
#[derive(Debug, Clone, thiserror::Error)]
#[non_exhaustive]
pub enum NetworkError {
    /// The peer sent something that is not our protocol (garbage, an oversized or truncated
    /// frame, an unknown message). The connection is closed.
    #[error("data connection with {peer}: protocol violation: {detail}")]
    Protocol { peer: SocketAddr, detail: String },
    /// Connecting, reading or writing failed, or the peer closed the connection.
    #[error("data connection with {peer}: {detail}")]
    ConnectionLost { peer: SocketAddr, detail: String },
    #[error("cannot connect to TaskManager data server {peer}: {source}")]
    Connect {
        peer: SocketAddr,
        #[source]
        source: Arc<std::io::Error>,
    },
    #[error("cannot bind the data server on {address}: {source}")]
    Bind {
        address: SocketAddr,
        #[source]
        source: Arc<std::io::Error>,
    },
    /// The producer's TaskManager answered a request with an error (no such partition within
    /// the request timeout, already consumed, released).
    #[error("producer TaskManager {peer} for {channel}: {message}")]
    Remote {
        peer: SocketAddr,
        channel: ChannelId,
        message: String,
    },
    #[error("no partition {partition} registered within {waited_ms} ms")]
    PartitionNotFound {
        partition: ResultPartitionId,
        waited_ms: u64,
    },
    #[error("partition {0} is already registered")]
    DuplicatePartition(ResultPartitionId),
    #[error("subpartition {0} is already being consumed (a pipelined subpartition is read once)")]
    AlreadyConsumed(ChannelId),
    /// The other side went away: the consumer released the subpartition (or the producer its
    /// partition) before the end.
    #[error("{0} was released")]
    Released(ChannelId),
    #[error(
        "record of {len} bytes exceeds the largest record {max} (taskmanager.network.max-frame-size)"
    )]
    RecordTooLarge { len: usize, max: usize },
    /// A buffer whose length prefixes do not add up (its channel sent corrupt data).
    #[error(
        "corrupt buffer: record length {len} at offset {offset} overruns the buffer of {size} bytes"
    )]
    CorruptBuffer {
        offset: usize,
        len: usize,
        size: usize,
    },
    #[error("the network environment is shut down")]
    Shutdown,
}

impl NetworkError {
    /// The peer is not speaking our protocol: a bug or a stray client, not a lost TaskManager.
    pub fn is_protocol_violation(&self) -> bool {
        matches!(
            self,
            NetworkError::Protocol { .. } | NetworkError::CorruptBuffer { .. }
        )
    }

    /// Another TaskManager is unreachable or gone: the job fails over its connected region.
    pub fn is_connection_failure(&self) -> bool {
        matches!(
            self,
            NetworkError::ConnectionLost { .. } | NetworkError::Connect { .. }
        )
    }
}
