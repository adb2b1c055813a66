//! `ValueState<T>`: one value per key (Flink's `ValueState`).

use std::marker::PhantomData;

use hashbrown::HashMap;

use super::backend::{HeapKeyedStateBackend, StateDescriptor};
use super::table::{self, Key, StateKind, StateTable};

/// What a state value must be: serde for snapshots, `Clone` for copies, owned and `Send`.
pub trait StateValue:
    serde::Serialize + serde::de::DeserializeOwned + Clone + Send + 'static
{
}

impl<T: serde::Serialize + serde::de::DeserializeOwned + Clone + Send + 'static> StateValue for T {}

/// Names a `ValueState<T>`; register it with [`HeapKeyedStateBackend::state`].
#[derive(Debug, Clone)]
pub struct ValueStateDescriptor<T> {
    name: String,
    _value: PhantomData<fn() -> T>,
}

impl<T: StateValue> ValueStateDescriptor<T> {
    pub fn new(name: impl Into<String>) -> ValueStateDescriptor<T> {
        ValueStateDescriptor {
            name: name.into(),
            _value: PhantomData,
        }
    }
}

/// A handle on one value per key: a copyable index, used with the backend it came from.
#[derive(Debug)]
pub struct ValueState<T> {
    id: usize,
    _value: PhantomData<fn() -> T>,
}

impl<T> Clone for ValueState<T> {
    fn clone(&self) -> Self {
        *self
    }
}

impl<T> Copy for ValueState<T> {}

/// Two handles are equal when they name the same state (of one backend).
impl<T> PartialEq for ValueState<T> {
    fn eq(&self, other: &Self) -> bool {
        self.id == other.id
    }
}

impl<T: StateValue> ValueState<T> {
    /// The current key's value.
    #[inline]
    pub fn get<'b>(&self, backend: &'b HeapKeyedStateBackend) -> Option<&'b T> {
        let (t, group, key) = backend.current::<ValueTable<T>>(self.id);
        t.groups[group].get(key)
    }

    /// The current key's value, for changing in place.
    #[inline]
    pub fn get_mut<'b>(&self, backend: &'b mut HeapKeyedStateBackend) -> Option<&'b mut T> {
        let (t, group, key) = backend.current_mut::<ValueTable<T>>(self.id);
        t.groups[group].get_mut(key)
    }

    /// The current key's value, `init()` first if it has none: one lookup, and an allocation
    /// only for a new key.
    #[inline]
    pub fn get_or_insert_with<'b>(
        &self,
        backend: &'b mut HeapKeyedStateBackend,
        init: impl FnOnce() -> T,
    ) -> &'b mut T {
        let (t, group, key) = backend.current_mut::<ValueTable<T>>(self.id);
        t.groups[group].entry_ref(key).or_insert_with(init)
    }

    /// Sets the current key's value.
    #[inline]
    pub fn set(&self, backend: &mut HeapKeyedStateBackend, value: T) {
        let (t, group, key) = backend.current_mut::<ValueTable<T>>(self.id);
        t.groups[group].entry_ref(key).insert(value);
    }

    /// Removes the current key's value.
    pub fn clear(&self, backend: &mut HeapKeyedStateBackend) {
        let (t, group, key) = backend.current_mut::<ValueTable<T>>(self.id);
        t.groups[group].remove(key);
    }
}

impl<T: StateValue> StateDescriptor for ValueStateDescriptor<T> {
    type Table = ValueTable<T>;
    type Handle = ValueState<T>;

    fn name(&self) -> &str {
        &self.name
    }

    fn kind(&self) -> StateKind {
        StateKind::Value
    }

    fn describe(&self) -> String {
        format!("ValueState<{}>", std::any::type_name::<T>())
    }

    fn new_table(&self, groups: usize) -> ValueTable<T> {
        ValueTable {
            groups: (0..groups).map(|_| HashMap::new()).collect(),
        }
    }

    fn handle(&self, id: usize) -> ValueState<T> {
        ValueState {
            id,
            _value: PhantomData,
        }
    }
}

/// The values of one `ValueState<T>`, per key group. A value is encoded as postcard of `T`.
pub struct ValueTable<T> {
    groups: Vec<HashMap<Key, T>>,
}

impl<T: StateValue> StateTable for ValueTable<T> {
    fn kind(&self) -> StateKind {
        StateKind::Value
    }

    fn describe(&self) -> String {
        format!("ValueState<{}>", std::any::type_name::<T>())
    }

    fn entries_in(&self, group: usize) -> usize {
        self.groups[group].len()
    }

    fn write_entries(
        &self,
        group: usize,
        out: &mut Vec<u8>,
        scratch: &mut Vec<u8>,
    ) -> Result<(), String> {
        table::write_entries(&self.groups[group], out, scratch, |v, buf| {
            table::encode_into(v, buf)
        })
    }

    fn read_entries(&mut self, group: usize, entries: &[u8], count: u64) -> Result<(), String> {
        table::read_entries(&mut self.groups[group], entries, count, table::decode_exact)
    }
}
