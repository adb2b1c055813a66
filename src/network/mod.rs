//! The TaskManager ↔ TaskManager data plane of the keyed exchange, modelled on Flink's netty
//! shuffle with credit-based flow control.
//!
//! # Layout
//!
//! * [`ResultPartition`] (`partition.rs`): a producer subtask's output; records are appended,
//!   length-prefixed, into one buffer of `taskmanager.memory.segment-size` per consumer
//!   subtask's subpartition, and events ([`CheckpointBarrier`], end of partition) follow the
//!   data in order. The records are opaque bytes: this layer never knows their types.
//! * [`InputGate`] (`gate.rs`): a consumer subtask's input, one channel per producer subtask,
//!   yielding [`BufferOrEvent`]s; [`Buffer::records`] iterates a buffer's records as `Bytes`
//!   slices without copying (`buffer.rs`).
//! * `server.rs` / `client.rs`: each TaskManager's data server, and one client connection per
//!   peer TaskManager carrying every channel between the two; `protocol.rs` the frames.
//!   A producer and consumer in the same TaskManager use a local channel instead (no TCP).
//! * [`NetworkEnvironment`] (`environment.rs`): all of the above for one TaskManager.
//!
//! # Credit-based flow control
//!
//! As Flink's: a remote channel owns `buffers-per-channel` (2) exclusive credits and its gate
//! lends `floating-buffers-per-gate` (8) floating ones. The consumer announces its credits (the
//! initial ones in the partition request, then `AddCredit` as buffers are freed); the producer
//! sends a data buffer only against a credit and reports its backlog with it, from which the
//! consumer decides how many floating buffers the channel gets. A consumer therefore never
//! holds more than `remote channels × 2 + 8` buffers, and a producer never more than
//! `max-buffers-per-channel` (10) per subpartition; a slow or blocked consumer stalls its
//! producers, and nothing is dropped. Details in `gate.rs`.
//!
//! # Barriers
//!
//! Flink's behaviour for aligned checkpoints: a barrier is an in-band event, after every buffer
//! emitted before it on that channel. Events need no credit (Flink sends them whenever they are
//! next, `getAvailabilityAndBacklog`), which is safe because a subpartition that has handed out
//! a barrier sends nothing more — it is blocked upstream — until the consumer calls
//! [`InputGate::resume_consumption`] for that channel (Flink's `ResumeConsumption` message),
//! which the caller does once it has aligned the barrier on every channel. The gate likewise
//! yields nothing more from that channel until then. Unaligned checkpoints (barriers as
//! priority events overtaking data) are not implemented.

mod buffer;
mod client;
pub mod config;
mod environment;
mod error;
mod event;
mod gate;
mod ids;
mod partition;
mod partition_manager;
mod protocol;
mod server;

pub use self::buffer::{Buffer, LENGTH_PREFIX, RecordDeserializer, RecordSlices};
pub use self::config::NetworkConfig;
pub use self::environment::{InputChannelSpec, NetworkEnvironment, PartitionLocation};
pub use self::error::NetworkError;
pub use self::event::{BufferOrEvent, CheckpointBarrier, Content, Event};
pub use self::gate::InputGate;
pub use self::ids::{ChannelId, ResultPartitionId};
pub use self::partition::ResultPartition;

#[cfg(test)]
mod tests;
