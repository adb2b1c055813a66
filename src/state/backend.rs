//! `HeapKeyedStateBackend`: the keyed state of one subtask, on the heap, for the key groups it
//! owns (Flink's `HeapKeyedStateBackend`).
//!
//! The runtime sets the current key (its serialized bytes and key group) before it calls user
//! code; state handles ([`super::ValueState`], [`super::MapState`]) then read and write the
//! current key's values. A handle is an index into the backend's states, checked against the
//! state's Rust type on every access (a `TypeId` comparison), so a lookup costs one hash of
//! the key bytes and no allocation.

use std::any::Any;

use hashbrown::HashMap;

use super::error::StateError;
use super::table::{RawTable, StateKind, StateTable};
use crate::job::key_groups::KeyGroupRange;

/// What names and types one state: [`super::ValueStateDescriptor`], [`super::MapStateDescriptor`].
pub trait StateDescriptor {
    type Table: StateTable;
    type Handle;
    fn name(&self) -> &str;
    fn kind(&self) -> StateKind;
    /// The state's type, in the words of [`StateTable::describe`].
    fn describe(&self) -> String;
    fn new_table(&self, groups: usize) -> Self::Table;
    fn handle(&self, id: usize) -> Self::Handle;
}

/// A state's values: typed once registered, encoded while only restored.
pub(super) enum Table {
    Typed(Box<dyn StateTable>),
    Restored(RawTable),
}

pub(super) struct RegisteredState {
    pub name: String,
    pub kind: StateKind,
    pub table: Table,
}

pub struct HeapKeyedStateBackend {
    range: KeyGroupRange,
    /// The current key's bytes (a reused buffer: setting a key allocates only to grow it).
    current_key: Vec<u8>,
    /// The current key's key group, as a position in `range`.
    current_group: usize,
    /// In registration (or restore) order; a handle is an index here.
    states: Vec<RegisteredState>,
    by_name: HashMap<String, usize>,
}

impl std::fmt::Debug for HeapKeyedStateBackend {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let names: Vec<&str> = self.states.iter().map(|s| s.name.as_str()).collect();
        f.debug_struct("HeapKeyedStateBackend")
            .field("range", &self.range)
            .field("states", &names)
            .finish()
    }
}

impl HeapKeyedStateBackend {
    /// An empty backend for the key groups `range`. Until the first
    /// [`set_current_key`](Self::set_current_key) the current key is the empty key in the
    /// range's first key group.
    pub fn new(range: KeyGroupRange) -> HeapKeyedStateBackend {
        HeapKeyedStateBackend {
            range,
            current_key: Vec::new(),
            current_group: 0,
            states: Vec::new(),
            by_name: HashMap::new(),
        }
    }

    pub fn key_group_range(&self) -> KeyGroupRange {
        self.range
    }

    /// Makes `key` (serialized bytes) in `key_group` the key that state handles act on.
    pub fn set_current_key(&mut self, key: &[u8], key_group: u32) -> Result<(), StateError> {
        let Some(group) = self.range.index_of(key_group) else {
            return Err(StateError::KeyGroupOutOfRange {
                key_group,
                range: self.range,
            });
        };
        self.current_group = group;
        self.current_key.clear();
        self.current_key.extend_from_slice(key);
        Ok(())
    }

    pub fn current_key(&self) -> &[u8] {
        &self.current_key
    }

    pub fn current_key_group(&self) -> u32 {
        self.range.start + self.current_group as u32
    }

    /// The handle of the state `descriptor` names, registering it on first use (Flink's
    /// `getPartitionedState`). A state restored under that name is decoded now; a name already
    /// registered with another kind or type is [`StateError::Incompatible`], as is a restored
    /// state of another kind, and an undecodable restored value is [`StateError::Corrupt`]
    /// naming its file.
    pub fn state<D: StateDescriptor>(&mut self, descriptor: &D) -> Result<D::Handle, StateError> {
        let name = descriptor.name();
        let Some(&id) = self.by_name.get(name) else {
            let table = descriptor.new_table(self.range.len() as usize);
            self.push(name, descriptor.kind(), Table::Typed(Box::new(table)));
            return Ok(descriptor.handle(self.states.len() - 1));
        };
        let incompatible = |registered: String| StateError::Incompatible {
            name: name.to_string(),
            registered,
            requested: descriptor.describe(),
        };
        let state = &mut self.states[id];
        match &state.table {
            Table::Typed(t) if (&**t as &dyn Any).is::<D::Table>() => Ok(descriptor.handle(id)),
            Table::Typed(t) => Err(incompatible(t.describe())),
            Table::Restored(raw) if raw.kind != descriptor.kind() => {
                Err(incompatible(format!("{:?} state (restored)", raw.kind)))
            }
            Table::Restored(raw) => {
                let mut table = descriptor.new_table(self.range.len() as usize);
                raw.decode_into(name, &mut table, self.range.start)?;
                state.table = Table::Typed(Box::new(table));
                Ok(descriptor.handle(id))
            }
        }
    }

    /// The names of the registered and restored states, in order.
    pub fn state_names(&self) -> impl Iterator<Item = &str> {
        self.states.iter().map(|s| s.name.as_str())
    }

    /// How many keys have a value in the state `name` (registered or only restored).
    pub fn entries(&self, name: &str) -> Option<u64> {
        let state = &self.states[*self.by_name.get(name)?];
        Some(
            (0..self.range.len() as usize)
                .map(|g| match &state.table {
                    Table::Typed(t) => t.entries_in(g) as u64,
                    Table::Restored(raw) => raw.entries_in(g),
                })
                .sum(),
        )
    }

    fn push(&mut self, name: &str, kind: StateKind, table: Table) {
        self.by_name.insert(name.to_string(), self.states.len());
        self.states.push(RegisteredState {
            name: name.to_string(),
            kind,
            table,
        });
    }

    /// The typed table of handle `id` with the current key's group position and bytes.
    ///
    /// # Panics
    /// If `id` is not a state of type `T` here: a handle used with a backend it was not
    /// registered on.
    #[inline]
    pub(super) fn current<T: StateTable>(&self, id: usize) -> (&T, usize, &[u8]) {
        (
            typed(&self.states, id),
            self.current_group,
            &self.current_key,
        )
    }

    /// [`current`](Self::current) for writing.
    #[inline]
    pub(super) fn current_mut<T: StateTable>(&mut self, id: usize) -> (&mut T, usize, &[u8]) {
        let table = match self.states.get_mut(id).map(|s| &mut s.table) {
            Some(Table::Typed(t)) => (&mut **t as &mut dyn Any).downcast_mut::<T>(),
            _ => None,
        };
        (
            table.expect("a state handle used with a backend it was not registered on"),
            self.current_group,
            &self.current_key,
        )
    }

    pub(super) fn states(&self) -> &[RegisteredState] {
        &self.states
    }

    /// The state `name` for restoring into: the registered one (checked to be of `kind`), or a
    /// new [`RawTable`] kept until user code registers it.
    pub(super) fn state_for_restore(
        &mut self,
        name: &str,
        kind: StateKind,
    ) -> Result<&mut Table, StateError> {
        let id = match self.by_name.get(name) {
            Some(&id) => id,
            None => {
                let groups = self.range.len() as usize;
                self.push(name, kind, Table::Restored(RawTable::new(kind, groups)));
                self.states.len() - 1
            }
        };
        let state = &mut self.states[id];
        if state.kind != kind {
            return Err(StateError::Incompatible {
                name: name.to_string(),
                registered: format!("{:?} state", state.kind),
                requested: format!("{kind:?} state (in the snapshot)"),
            });
        }
        Ok(&mut state.table)
    }
}

fn typed<T: StateTable>(states: &[RegisteredState], id: usize) -> &T {
    let table = match states.get(id).map(|s| &s.table) {
        Some(Table::Typed(t)) => (&**t as &dyn Any).downcast_ref::<T>(),
        _ => None,
    };
    table.expect("a state handle used with a backend it was not registered on")
}
