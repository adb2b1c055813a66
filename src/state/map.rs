//! `MapState<UK, UV>`: a map per key (Flink's `MapState`). A key whose map becomes empty has
//! no entry, as in Flink's heap backend.

use std::hash::Hash;
use std::marker::PhantomData;

use hashbrown::{Equivalent, HashMap};

use super::backend::{HeapKeyedStateBackend, StateDescriptor};
use super::codec::{Reader, put_varint};
use super::table::{self, Key, StateKind, StateTable};
use super::value::StateValue;

/// Names a `MapState<UK, UV>`; register it with [`HeapKeyedStateBackend::state`].
#[derive(Debug, Clone)]
pub struct MapStateDescriptor<UK, UV> {
    name: String,
    _types: PhantomData<fn() -> (UK, UV)>,
}

impl<UK: StateValue + Hash + Eq, UV: StateValue> MapStateDescriptor<UK, UV> {
    pub fn new(name: impl Into<String>) -> MapStateDescriptor<UK, UV> {
        MapStateDescriptor {
            name: name.into(),
            _types: PhantomData,
        }
    }
}

/// A handle on one map per key: a copyable index, used with the backend it came from.
#[derive(Debug)]
pub struct MapState<UK, UV> {
    id: usize,
    _types: PhantomData<fn() -> (UK, UV)>,
}

impl<UK, UV> Clone for MapState<UK, UV> {
    fn clone(&self) -> Self {
        *self
    }
}

impl<UK, UV> Copy for MapState<UK, UV> {}

type Entries<UK, UV> = HashMap<UK, UV>;

impl<UK: StateValue + Hash + Eq, UV: StateValue> MapState<UK, UV> {
    #[inline]
    fn map<'b>(&self, backend: &'b HeapKeyedStateBackend) -> Option<&'b Entries<UK, UV>> {
        let (t, group, key) = backend.current::<MapTable<UK, UV>>(self.id);
        t.groups[group].get(key)
    }

    /// The current key's value for `user_key`.
    #[inline]
    pub fn get<'b, Q>(&self, backend: &'b HeapKeyedStateBackend, user_key: &Q) -> Option<&'b UV>
    where
        Q: Hash + Equivalent<UK> + ?Sized,
    {
        self.map(backend)?.get(user_key)
    }

    #[inline]
    pub fn contains<Q>(&self, backend: &HeapKeyedStateBackend, user_key: &Q) -> bool
    where
        Q: Hash + Equivalent<UK> + ?Sized,
    {
        self.map(backend).is_some_and(|m| m.contains_key(user_key))
    }

    /// The current key's value for `user_key`, for changing in place.
    #[inline]
    pub fn get_mut<'b, Q>(
        &self,
        backend: &'b mut HeapKeyedStateBackend,
        user_key: &Q,
    ) -> Option<&'b mut UV>
    where
        Q: Hash + Equivalent<UK> + ?Sized,
    {
        let (t, group, key) = backend.current_mut::<MapTable<UK, UV>>(self.id);
        t.groups[group].get_mut(key)?.get_mut(user_key)
    }

    /// Sets the current key's value for `user_key`; returns the one it replaces.
    #[inline]
    pub fn put(&self, backend: &mut HeapKeyedStateBackend, user_key: UK, value: UV) -> Option<UV> {
        let (t, group, key) = backend.current_mut::<MapTable<UK, UV>>(self.id);
        t.groups[group]
            .entry_ref(key)
            .or_default()
            .insert(user_key, value)
    }

    /// Removes the current key's value for `user_key`; a map left empty goes with it.
    pub fn remove<Q>(&self, backend: &mut HeapKeyedStateBackend, user_key: &Q) -> Option<UV>
    where
        Q: Hash + Equivalent<UK> + ?Sized,
    {
        let (t, group, key) = backend.current_mut::<MapTable<UK, UV>>(self.id);
        let maps = &mut t.groups[group];
        let map = maps.get_mut(key)?;
        let removed = map.remove(user_key);
        if map.is_empty() {
            maps.remove(key);
        }
        removed
    }

    /// The current key's entries, in no particular order.
    pub fn iter<'b>(
        &self,
        backend: &'b HeapKeyedStateBackend,
    ) -> impl Iterator<Item = (&'b UK, &'b UV)> + use<'b, UK, UV> {
        self.map(backend).into_iter().flatten()
    }

    /// Whether the current key has no entries.
    pub fn is_empty(&self, backend: &HeapKeyedStateBackend) -> bool {
        self.map(backend).is_none_or(|m| m.is_empty())
    }

    /// Removes all of the current key's entries.
    pub fn clear(&self, backend: &mut HeapKeyedStateBackend) {
        let (t, group, key) = backend.current_mut::<MapTable<UK, UV>>(self.id);
        t.groups[group].remove(key);
    }
}

impl<UK: StateValue + Hash + Eq, UV: StateValue> StateDescriptor for MapStateDescriptor<UK, UV> {
    type Table = MapTable<UK, UV>;
    type Handle = MapState<UK, UV>;

    fn name(&self) -> &str {
        &self.name
    }

    fn kind(&self) -> StateKind {
        StateKind::Map
    }

    fn describe(&self) -> String {
        describe::<UK, UV>()
    }

    fn new_table(&self, groups: usize) -> MapTable<UK, UV> {
        MapTable {
            groups: (0..groups).map(|_| HashMap::new()).collect(),
        }
    }

    fn handle(&self, id: usize) -> MapState<UK, UV> {
        MapState {
            id,
            _types: PhantomData,
        }
    }
}

fn describe<UK, UV>() -> String {
    format!(
        "MapState<{}, {}>",
        std::any::type_name::<UK>(),
        std::any::type_name::<UV>()
    )
}

/// The maps of one `MapState<UK, UV>`, per key group. A key's map is encoded as a varint count,
/// then postcard of each user key followed by postcard of its value.
pub struct MapTable<UK, UV> {
    groups: Vec<HashMap<Key, Entries<UK, UV>>>,
}

impl<UK: StateValue + Hash + Eq, UV: StateValue> StateTable for MapTable<UK, UV> {
    fn kind(&self) -> StateKind {
        StateKind::Map
    }

    fn describe(&self) -> String {
        describe::<UK, UV>()
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
        table::write_entries(&self.groups[group], out, scratch, |map, buf| {
            put_varint(buf, map.len() as u64);
            for (k, v) in map {
                table::encode_into(k, buf)?;
                table::encode_into(v, buf)?;
            }
            Ok(())
        })
    }

    fn read_entries(&mut self, group: usize, entries: &[u8], count: u64) -> Result<(), String> {
        table::read_entries(&mut self.groups[group], entries, count, decode_map)
    }
}

fn decode_map<UK: StateValue + Hash + Eq, UV: StateValue>(
    bytes: &[u8],
) -> Result<Entries<UK, UV>, String> {
    let mut r = Reader::new(bytes);
    let n = r.varint("map size")?;
    let mut rest = r.take(r.remaining(), "map entries")?;
    let mut map = HashMap::with_capacity(n.min(rest.len() as u64) as usize);
    for _ in 0..n {
        let (k, after_key) = postcard::take_from_bytes::<UK>(rest).map_err(|e| e.to_string())?;
        let (v, after_value) =
            postcard::take_from_bytes::<UV>(after_key).map_err(|e| e.to_string())?;
        map.insert(k, v);
        rest = after_value;
    }
    if !rest.is_empty() {
        return Err(format!(
            "{} trailing bytes after {n} map entries",
            rest.len()
        ));
    }
    Ok(map)
}
