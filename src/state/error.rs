//! The keyed state layer's errors.

use crate::storage::StorageError;

use crate::job::key_groups::KeyGroupRange;

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum StateError {
    /// A state name registered again with another kind or value type (user code changed its
    /// state, or two descriptors share a name).
    #[error("state '{name}': registered as {registered}, requested as {requested}")]
    Incompatible {
        name: String,
        registered: String,
        requested: String,
    },
    /// The runtime routed a key to a subtask that does not own its key group.
    #[error("key group {key_group} is not in this backend's {range}")]
    KeyGroupOutOfRange {
        key_group: u32,
        range: KeyGroupRange,
    },
    /// A snapshot file that is not what its handle says, or not a keyed state snapshot at all.
    #[error("{path}: corrupt keyed state snapshot: {what}")]
    Corrupt { path: String, what: String },
    /// A state value the serializer refused (a user type's `Serialize` failed).
    #[error("state '{name}': a value does not serialize: {message}")]
    Serialize { name: String, message: String },
    #[error(transparent)]
    Storage(#[from] StorageError),
}

impl StateError {
    pub(super) fn corrupt(path: &str, what: impl Into<String>) -> StateError {
        StateError::Corrupt {
            path: path.to_string(),
            what: what.into(),
        }
    }

    /// The snapshot file is damaged or foreign: reading it again will not help.
    pub fn is_corrupt(&self) -> bool {
        matches!(self, StateError::Corrupt { .. })
    }

    /// A storage failure that another attempt may not meet (not a missing file).
    pub fn is_retriable(&self) -> bool {
        matches!(self, StateError::Storage(StorageError::Io { .. }))
    }
}
