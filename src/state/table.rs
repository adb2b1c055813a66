//! Where a state's values live: one hash map per key group, keyed by the serialized key,
//! holding typed Rust values (never serialized bytes; they are only encoded at a snapshot).
//!
//! A registered state is a [`StateTable`] (the typed tables are in `value.rs` and `map.rs`); a
//! state restored from a snapshot but not yet registered by user code is a [`RawTable`] of the
//! snapshot's encoded sections, decoded when it is registered (only then is its type known) and
//! written back unchanged by snapshots until then, so a state is never lost for being unused.

use std::any::Any;
use std::sync::Arc;

use bytes::Bytes;
use hashbrown::HashMap;

use super::codec::{Reader, put_varint};
use super::error::StateError;

/// A serialized key, looked up by `&[u8]` without allocating. Keys of up to
/// [`Key::INLINE`] bytes (most words, every integer) are held inline: no allocation per key
/// and no pointer to follow on a lookup; longer ones on the heap.
#[derive(Clone)]
pub enum Key {
    Inline { len: u8, bytes: [u8; Key::INLINE] },
    Heap(Box<[u8]>),
}

impl Key {
    pub const INLINE: usize = 22;

    #[inline]
    pub fn as_slice(&self) -> &[u8] {
        match self {
            Key::Inline { len, bytes } => &bytes[..*len as usize],
            Key::Heap(b) => b,
        }
    }
}

impl From<&[u8]> for Key {
    #[inline]
    fn from(key: &[u8]) -> Key {
        if key.len() <= Key::INLINE {
            let mut bytes = [0; Key::INLINE];
            bytes[..key.len()].copy_from_slice(key);
            Key::Inline {
                len: key.len() as u8,
                bytes,
            }
        } else {
            Key::Heap(key.into())
        }
    }
}

impl std::borrow::Borrow<[u8]> for Key {
    #[inline]
    fn borrow(&self) -> &[u8] {
        self.as_slice()
    }
}

// Hash and equality are the slice's, as `Borrow` requires.
impl std::hash::Hash for Key {
    #[inline]
    fn hash<H: std::hash::Hasher>(&self, state: &mut H) {
        self.as_slice().hash(state)
    }
}

impl PartialEq for Key {
    #[inline]
    fn eq(&self, other: &Key) -> bool {
        self.as_slice() == other.as_slice()
    }
}

impl Eq for Key {}

impl std::fmt::Debug for Key {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{:?}", self.as_slice())
    }
}

/// The kinds of keyed state, as the snapshot file records them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StateKind {
    Value,
    Map,
}

impl StateKind {
    pub fn code(self) -> u8 {
        match self {
            StateKind::Value => 1,
            StateKind::Map => 2,
        }
    }

    pub fn from_code(code: u8) -> Option<StateKind> {
        match code {
            1 => Some(StateKind::Value),
            2 => Some(StateKind::Map),
            _ => None,
        }
    }
}

/// One registered state's values across the backend's key groups (`group` is the position in
/// the backend's key group range).
pub trait StateTable: Any + Send {
    fn kind(&self) -> StateKind;
    /// The state's type as user code named it, e.g. `ValueState<u64>`, for error messages.
    fn describe(&self) -> String;
    /// How many keys have a value in `group`.
    fn entries_in(&self, group: usize) -> usize;
    /// Appends the entries of `group` in the snapshot encoding (see `snapshot.rs`); `scratch` is
    /// a reusable buffer.
    fn write_entries(
        &self,
        group: usize,
        out: &mut Vec<u8>,
        scratch: &mut Vec<u8>,
    ) -> Result<(), String>;
    /// Decodes `count` entries of the snapshot encoding into `group`.
    fn read_entries(&mut self, group: usize, entries: &[u8], count: u64) -> Result<(), String>;
}

/// Appends one entry per key of `map`: the key's bytes, then `encode`'s bytes for its value,
/// each behind a varint length.
pub fn write_entries<V>(
    map: &HashMap<Key, V>,
    out: &mut Vec<u8>,
    scratch: &mut Vec<u8>,
    mut encode: impl FnMut(&V, &mut Vec<u8>) -> Result<(), postcard::Error>,
) -> Result<(), String> {
    for (key, value) in map {
        scratch.clear();
        encode(value, scratch).map_err(|e| e.to_string())?;
        let key = key.as_slice();
        put_varint(out, key.len() as u64);
        out.extend_from_slice(key);
        put_varint(out, scratch.len() as u64);
        out.extend_from_slice(scratch);
    }
    Ok(())
}

/// Reads `count` entries written by [`write_entries`] into `map`, each value by `decode`, which
/// must consume its bytes exactly.
pub fn read_entries<V>(
    map: &mut HashMap<Key, V>,
    entries: &[u8],
    count: u64,
    mut decode: impl FnMut(&[u8]) -> Result<V, String>,
) -> Result<(), String> {
    let mut r = Reader::new(entries);
    map.reserve(count.min(entries.len() as u64) as usize);
    for i in 0..count {
        let key = r.bytes("key")?;
        let value = r.bytes("value")?;
        let value = decode(value).map_err(|e| format!("entry {i}: undecodable value: {e}"))?;
        map.insert(key.into(), value);
    }
    if r.remaining() != 0 {
        return Err(format!("{} bytes after {count} entries", r.remaining()));
    }
    Ok(())
}

/// `postcard::to_extend` into a reused buffer.
pub fn encode_into<T: serde::Serialize + ?Sized>(
    value: &T,
    buf: &mut Vec<u8>,
) -> Result<(), postcard::Error> {
    *buf = postcard::to_extend(value, std::mem::take(buf))?;
    Ok(())
}

/// Decodes exactly one value from `bytes`.
pub fn decode_exact<T: serde::de::DeserializeOwned>(bytes: &[u8]) -> Result<T, String> {
    let (v, rest) = postcard::take_from_bytes(bytes).map_err(|e| e.to_string())?;
    if !rest.is_empty() {
        return Err(format!("{} trailing bytes", rest.len()));
    }
    Ok(v)
}

/// One key group's entries of one state, as a snapshot file holds them.
#[derive(Debug, Clone)]
pub struct RawSection {
    pub count: u64,
    /// The encoded entries (a slice of the file read at restore: no copy).
    pub entries: Bytes,
    /// The file it came from, for errors found when it is decoded.
    pub path: Arc<str>,
}

/// A restored state nobody registered yet: its encoded sections per key group.
#[derive(Debug, Clone)]
pub struct RawTable {
    pub kind: StateKind,
    pub groups: Vec<Vec<RawSection>>,
}

impl RawTable {
    pub fn new(kind: StateKind, groups: usize) -> RawTable {
        RawTable {
            kind,
            groups: vec![Vec::new(); groups],
        }
    }

    pub fn entries_in(&self, group: usize) -> u64 {
        self.groups[group].iter().map(|s| s.count).sum()
    }

    /// Decodes every section into `table`; an error names the file and key group.
    pub fn decode_into(
        &self,
        name: &str,
        table: &mut dyn StateTable,
        first_key_group: u32,
    ) -> Result<(), StateError> {
        for (group, sections) in self.groups.iter().enumerate() {
            for s in sections {
                table
                    .read_entries(group, &s.entries, s.count)
                    .map_err(|e| {
                        StateError::corrupt(
                            &s.path,
                            format!(
                                "state '{name}', key group {}: {e}",
                                first_key_group + group as u32
                            ),
                        )
                    })?;
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn short_keys_are_inline_and_every_key_finds_itself() {
        assert_eq!(std::mem::size_of::<Key>(), 24);
        let mut m: HashMap<Key, u32> = HashMap::new();
        let long = [7u8; Key::INLINE + 1];
        for (i, k) in [&b""[..], b"a", &[9; Key::INLINE], &long]
            .into_iter()
            .enumerate()
        {
            let key = Key::from(k);
            assert_eq!(matches!(key, Key::Inline { .. }), k.len() <= Key::INLINE);
            assert_eq!(key.as_slice(), k);
            m.insert(key, i as u32);
        }
        assert_eq!(m.get(&long[..]), Some(&3));
        assert_eq!(m.get(&b""[..]), Some(&0));
        assert_eq!(m.get(&[9u8; Key::INLINE - 1][..]), None);
    }
}
