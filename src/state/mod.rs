//! Keyed state: the heap state backend of one subtask and its snapshot file.
//!
//! * [`HeapKeyedStateBackend`] (`backend.rs`): the values of every registered state for the key
//!   groups the subtask owns, as typed Rust values in one hash map per key group, keyed by the
//!   serialized key. The runtime sets the current key before user code runs;
//! * [`ValueState`] (`value.rs`) and [`MapState`] (`map.rs`): cheap copyable handles user code
//!   gets from a descriptor, acting on the current key;
//! * `table.rs`: the per-state tables behind the handles, and the encoded tables of restored
//!   states nobody has registered yet;
//! * [`KeyedStateHandle`] (`snapshot.rs`): one binary file per subtask per checkpoint, written
//!   through the [`crate::storage::BlobStore`]; checkpoint metadata keeps only the handle;
//!
//! A keyed stage's subtask (`taskmanager/task.rs`) owns one backend for its key groups, sets
//! each record's key, snapshots the backend on every checkpoint barrier and restores it from
//! the handles the job master hands it.

mod backend;
mod codec;
mod error;
mod map;
mod snapshot;
mod table;
mod value;

pub use crate::job::key_groups::KeyGroupRange;
pub use backend::{HeapKeyedStateBackend, StateDescriptor};
pub use error::StateError;
pub use map::{MapState, MapStateDescriptor, MapTable};
pub use snapshot::{
    FORMAT_VERSION, KeyedStateHandle, KeyedStateSnapshot, MAGIC, SnapshotFile, job_dir_name,
    snapshot_location,
};
pub use table::{StateKind, StateTable};
pub use value::{StateValue, ValueState, ValueStateDescriptor, ValueTable};

#[cfg(test)]
mod tests;
