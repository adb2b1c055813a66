//! The keyed state snapshot file: one per subtask per checkpoint, and the
//! [`KeyedStateHandle`] that checkpoint metadata holds instead of the state (as Flink's
//! `KeyGroupsStateHandle`).
//!
//! # Format (version 1; integers little-endian, varints LEB128)
//! ```text
//! header   magic "YFKS" | version u16 | reserved u16 = 0 | key groups start u32 | end u32
//!          | state count varint | per state: name (varint length + UTF-8), kind u8 (1 value, 2 map)
//! body     per key group start..=end in order, a block:
//!          section count varint | per section (a state with entries in this key group):
//!          state index varint | entry count varint | byte length u64 | entries
//!          an entry: key (varint length + bytes) | value (varint length + postcard bytes)
//! index    per key group, the u64 file offset of its block
//! footer   index offset u64 | magic "YFKS" | crc32c u32 of every byte before it
//! ```
//! The index lets a rescaled subtask read only the key groups it takes over; the footer comes
//! last so a writer can stream the body. A restore checks the handle's length and checksum
//! before it decodes anything.
//!
//! Writing takes two steps: [`HeapKeyedStateBackend::snapshot`] encodes the state
//! synchronously into one buffer (the only copy: [`BlobStore::write`] takes a whole blob), and
//! [`KeyedStateSnapshot::write`] stores it, during which the subtask may go on changing state.

use std::sync::Arc;

use bytes::Bytes;
use serde::{Deserialize, Serialize};

use super::backend::{HeapKeyedStateBackend, Table};
use super::codec::{Reader, put_varint};
use super::error::StateError;
use super::table::{RawSection, StateKind};
use crate::job::key_groups::KeyGroupRange;
use crate::storage::{BlobStore, Location};

pub const MAGIC: [u8; 4] = *b"YFKS";
pub const FORMAT_VERSION: u16 = 1;
const FOOTER_LEN: usize = 16;

/// The name of a job run's directory in `execution.checkpointing.dir`: `<job id>-<run id>`.
/// The run id (drawn at submission, kept across recoveries) keeps two runs of one job name
/// apart, as Flink's random job id does.
pub fn job_dir_name(job_id: &str, run_id: &str) -> String {
    format!("{job_id}-{run_id}")
}

/// Where a subtask's snapshot of checkpoint `checkpoint_id` goes:
/// `<execution.checkpointing.dir>/<job>/chk-<id>/<subtask>`, `job` a [`job_dir_name`]
/// (Flink's exclusive-state layout, with the subtask's name, e.g. `stage-1-subtask-2`,
/// instead of a random file name).
pub fn snapshot_location(
    checkpoint_dir: &Location,
    job_id: &str,
    checkpoint_id: u64,
    subtask: &str,
) -> Location {
    checkpoint_dir
        .join(job_id)
        .join(&format!("chk-{checkpoint_id}"))
        .join(subtask)
}

/// A stored snapshot file: what checkpoint metadata records for one subtask's keyed state.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct KeyedStateHandle {
    /// The file's path in the checkpoint directory's store.
    pub path: String,
    pub length: u64,
    /// crc32c of the file up to its last 4 bytes (which hold this checksum).
    pub checksum: u32,
    pub key_group_range: KeyGroupRange,
}

/// An encoded snapshot, not yet stored.
#[derive(Debug, Clone)]
pub struct KeyedStateSnapshot {
    bytes: Bytes,
    checksum: u32,
    key_group_range: KeyGroupRange,
}

impl KeyedStateSnapshot {
    pub fn len(&self) -> usize {
        self.bytes.len()
    }

    pub fn is_empty(&self) -> bool {
        self.bytes.is_empty()
    }

    /// The encoded file.
    pub fn bytes(&self) -> &Bytes {
        &self.bytes
    }

    /// Stores the file at `path` of `store` (atomically, as every [`BlobStore::write`]).
    pub async fn write(
        self,
        store: &dyn BlobStore,
        path: &str,
    ) -> Result<KeyedStateHandle, StateError> {
        let length = self.bytes.len() as u64;
        store.write(path, self.bytes).await?;
        Ok(KeyedStateHandle {
            path: path.to_string(),
            length,
            checksum: self.checksum,
            key_group_range: self.key_group_range,
        })
    }
}

// The snapshot side of the backend lives with the format it writes and reads.
impl HeapKeyedStateBackend {
    /// Encodes every state (registered, and restored but unregistered) of every key group.
    pub fn snapshot(&self) -> Result<KeyedStateSnapshot, StateError> {
        let range = self.key_group_range();
        let mut out = Vec::with_capacity(4096);
        out.extend_from_slice(&MAGIC);
        out.extend_from_slice(&FORMAT_VERSION.to_le_bytes());
        out.extend_from_slice(&0u16.to_le_bytes());
        out.extend_from_slice(&range.start.to_le_bytes());
        out.extend_from_slice(&range.end.to_le_bytes());
        put_varint(&mut out, self.states().len() as u64);
        for s in self.states() {
            put_varint(&mut out, s.name.len() as u64);
            out.extend_from_slice(s.name.as_bytes());
            out.push(s.kind.code());
        }
        let mut offsets = Vec::with_capacity(range.len() as usize);
        let mut scratch = Vec::new();
        for group in 0..range.len() as usize {
            offsets.push(out.len() as u64);
            self.write_block(group, &mut out, &mut scratch)?;
        }
        let index_offset = out.len() as u64;
        for o in offsets {
            out.extend_from_slice(&o.to_le_bytes());
        }
        out.extend_from_slice(&index_offset.to_le_bytes());
        out.extend_from_slice(&MAGIC);
        let checksum = crc32c::crc32c(&out);
        out.extend_from_slice(&checksum.to_le_bytes());
        Ok(KeyedStateSnapshot {
            bytes: Bytes::from(out),
            checksum,
            key_group_range: range,
        })
    }

    fn write_block(
        &self,
        group: usize,
        out: &mut Vec<u8>,
        scratch: &mut Vec<u8>,
    ) -> Result<(), StateError> {
        let count = |t: &Table| match t {
            Table::Typed(t) => t.entries_in(group) as u64,
            Table::Restored(raw) => raw.entries_in(group),
        };
        let sections = self.states().iter().filter(|s| count(&s.table) > 0).count();
        put_varint(out, sections as u64);
        for (index, s) in self.states().iter().enumerate() {
            let n = count(&s.table);
            if n == 0 {
                continue;
            }
            put_varint(out, index as u64);
            put_varint(out, n);
            let length_at = out.len();
            out.extend_from_slice(&[0; 8]);
            match &s.table {
                Table::Typed(t) => t.write_entries(group, out, scratch).map_err(|message| {
                    StateError::Serialize {
                        name: s.name.clone(),
                        message,
                    }
                })?,
                Table::Restored(raw) => {
                    for section in &raw.groups[group] {
                        out.extend_from_slice(&section.entries);
                    }
                }
            }
            let length = (out.len() - length_at - 8) as u64;
            out[length_at..length_at + 8].copy_from_slice(&length.to_le_bytes());
        }
        Ok(())
    }

    /// Restores the key groups this backend owns from `handles` (a rescaled subtask passes
    /// every handle that overlaps its range; the others are not read). States not registered
    /// yet are decoded when user code registers them. On an error the backend is partly
    /// filled: the caller fails the attempt.
    pub async fn restore(
        &mut self,
        store: &dyn BlobStore,
        handles: &[KeyedStateHandle],
    ) -> Result<(), StateError> {
        let range = self.key_group_range();
        for handle in handles {
            if handle.key_group_range.intersection(&range).is_none() {
                continue;
            }
            let bytes = store.read(&handle.path).await?;
            let file = SnapshotFile::parse(handle, bytes)?;
            self.restore_file(&file)?;
        }
        Ok(())
    }

    /// Restores the key groups this backend owns from one checked file.
    pub fn restore_file(&mut self, file: &SnapshotFile) -> Result<(), StateError> {
        let range = self.key_group_range();
        for (name, kind) in &file.states {
            self.state_for_restore(name, *kind)?;
        }
        let Some(common) = file.range.intersection(&range) else {
            return Ok(());
        };
        for key_group in common.iter() {
            let group = range.index_of(key_group).expect("in the intersection");
            let corrupt = |what: String| {
                StateError::corrupt(&file.path, format!("key group {key_group}: {what}"))
            };
            let block = file.block(key_group);
            let mut r = Reader::new(&block);
            let sections = r.varint("section count").map_err(corrupt)?;
            for _ in 0..sections {
                let (index, count, entries) = read_section(&mut r).map_err(corrupt)?;
                let Some((name, kind)) = file.states.get(index) else {
                    return Err(corrupt(format!("state index {index} is not in the header")));
                };
                match self.state_for_restore(name, *kind)? {
                    Table::Typed(t) => t
                        .read_entries(group, entries, count)
                        .map_err(|e| corrupt(format!("state '{name}': {e}")))?,
                    Table::Restored(raw) => raw.groups[group].push(RawSection {
                        count,
                        entries: block.slice_ref(entries),
                        path: file.path.clone(),
                    }),
                }
            }
            if r.remaining() != 0 {
                return Err(corrupt(format!(
                    "{} bytes after its sections",
                    r.remaining()
                )));
            }
        }
        Ok(())
    }
}

fn read_section<'a>(r: &mut Reader<'a>) -> Result<(usize, u64, &'a [u8]), String> {
    let index = r.varint("state index")?;
    let count = r.varint("entry count")?;
    let length = r.u64("section length")?;
    let length = usize::try_from(length).map_err(|_| format!("section length {length}"))?;
    Ok((index as usize, count, r.take(length, "section")?))
}

/// A snapshot file read back and checked against its handle: length, checksum, magic,
/// version, header and index.
#[derive(Debug, Clone)]
pub struct SnapshotFile {
    path: Arc<str>,
    bytes: Bytes,
    range: KeyGroupRange,
    states: Vec<(String, StateKind)>,
    /// Per key group of `range`, its block's offset; then the index's offset (the end of the
    /// last block).
    offsets: Vec<usize>,
}

impl SnapshotFile {
    /// Checks `bytes`, the file `handle` names; every failure is [`StateError::Corrupt`] naming
    /// the file and what is wrong.
    pub fn parse(handle: &KeyedStateHandle, bytes: Bytes) -> Result<SnapshotFile, StateError> {
        let path = handle.path.as_str();
        let corrupt = |what: String| StateError::corrupt(path, what);
        let len = bytes.len();
        if len as u64 != handle.length {
            return Err(corrupt(format!(
                "the file has {len} bytes, its handle says {} (truncated or replaced)",
                handle.length
            )));
        }
        if len < 20 + FOOTER_LEN || bytes[..4] != MAGIC || bytes[len - 8..len - 4] != MAGIC {
            return Err(corrupt("not a keyed state snapshot (no YFKS magic)".into()));
        }
        let stored = u32::from_le_bytes(bytes[len - 4..].try_into().unwrap());
        let computed = crc32c::crc32c(&bytes[..len - 4]);
        if stored != computed {
            return Err(corrupt(format!(
                "checksum mismatch: the file says {stored:#010x}, its bytes give {computed:#010x}"
            )));
        }
        if stored != handle.checksum {
            return Err(corrupt(format!(
                "checksum {stored:#010x} is not the handle's {:#010x} (another file under this name)",
                handle.checksum
            )));
        }
        let (range, states, body_start) = parse_header(&bytes).map_err(corrupt)?;
        if range != handle.key_group_range {
            return Err(corrupt(format!(
                "holds {range}, its handle says {}",
                handle.key_group_range
            )));
        }
        let offsets = parse_index(&bytes, range, body_start).map_err(corrupt)?;
        Ok(SnapshotFile {
            path: Arc::from(path),
            bytes,
            range,
            states,
            offsets,
        })
    }

    pub fn key_group_range(&self) -> KeyGroupRange {
        self.range
    }

    /// The names and kinds of the states in the file.
    pub fn states(&self) -> impl Iterator<Item = (&str, StateKind)> {
        self.states.iter().map(|(n, k)| (n.as_str(), *k))
    }

    fn block(&self, key_group: u32) -> Bytes {
        let i = self
            .range
            .index_of(key_group)
            .expect("a key group of the file");
        self.bytes.slice(self.offsets[i]..self.offsets[i + 1])
    }
}

type Header = (KeyGroupRange, Vec<(String, StateKind)>, usize);

fn parse_header(bytes: &[u8]) -> Result<Header, String> {
    let mut r = Reader::new(&bytes[4..bytes.len() - FOOTER_LEN]);
    let version = r.u16("format version")?;
    if version != FORMAT_VERSION {
        return Err(format!(
            "unsupported format version {version} (this yarnflow reads {FORMAT_VERSION})"
        ));
    }
    r.u16("reserved")?;
    let (start, end) = (r.u32("key group start")?, r.u32("key group end")?);
    let range = Some(KeyGroupRange::new(start, end))
        .filter(|r| !r.is_empty())
        .ok_or_else(|| format!("empty key group range {start}..={end}"))?;
    let n = r.varint("state count")?;
    let mut states = Vec::new();
    for i in 0..n {
        let name = r.bytes("state name")?;
        let name = std::str::from_utf8(name)
            .map_err(|_| format!("state {i}: name is not UTF-8"))?
            .to_string();
        let code = r.u8("state kind")?;
        let kind =
            StateKind::from_code(code).ok_or_else(|| format!("state '{name}': kind {code}"))?;
        states.push((name, kind));
    }
    let body_start = bytes.len() - FOOTER_LEN - r.remaining();
    Ok((range, states, body_start))
}

fn parse_index(
    bytes: &[u8],
    range: KeyGroupRange,
    body_start: usize,
) -> Result<Vec<usize>, String> {
    let footer = bytes.len() - FOOTER_LEN;
    let index_offset = u64::from_le_bytes(bytes[footer..footer + 8].try_into().unwrap());
    let index_start = footer.checked_sub(range.len() as usize * 8);
    if index_start.map(|s| s as u64) != Some(index_offset) || (index_offset as usize) < body_start {
        return Err(format!(
            "index offset {index_offset} does not fit {} key groups before the footer",
            range.len() as usize
        ));
    }
    let index_offset = index_offset as usize;
    let mut offsets = Vec::with_capacity(range.len() as usize + 1);
    let mut last = body_start;
    for (i, chunk) in bytes[index_offset..footer].chunks_exact(8).enumerate() {
        let o = u64::from_le_bytes(chunk.try_into().unwrap()) as usize;
        if o < last || o > index_offset {
            return Err(format!(
                "key group {}: block offset {o} out of order",
                range.start + i as u32
            ));
        }
        offsets.push(o);
        last = o;
    }
    offsets.push(index_offset);
    Ok(offsets)
}
