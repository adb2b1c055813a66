//! The TaskManager ↔ TaskManager data plane of the keyed exchange (in progress): buffers of
//! length-prefixed records, in-band events and the wire protocol.

mod buffer;
pub mod config;
mod error;
mod event;
mod ids;
mod protocol;

pub use self::buffer::{Buffer, LENGTH_PREFIX, RecordDeserializer, RecordSlices};
pub use self::config::NetworkConfig;
pub use self::error::NetworkError;
pub use self::event::{BufferOrEvent, CheckpointBarrier, Content, Event};
pub use self::ids::{ChannelId, ResultPartitionId};
