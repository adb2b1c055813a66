//! The fenced pointer store: a znode holds a small [`Pointer`] to a blob on HA storage.
//!
//! # Invariants (after Flink's `ZooKeeperStateHandleStore`)
//! * Write order: blob first, then the pointer. A pointer present and not marked ⇒ its blob
//!   exists and matches the pointer's length and CRC-32C.
//! * Delete order: mark the pointer, delete the blob, delete the pointer. A crash in between
//!   leaves a marked pointer, which readers treat as absent and the next removal finishes.
//! * Every ZooKeeper write is a multi-op fenced by our latch node ([`super`] "Fencing").
//! * Reads verify length and checksum; a mismatch is [`HaError::Corrupt`] naming the blob.

use std::sync::Arc;

use bytes::Bytes;
use prost::Message;
use zookeeper_client as zk;

use super::proto::Pointer;
use super::{CommitFailure, PERSISTENT, ZkCluster};
use crate::ha::HaError;
use crate::storage::BlobStore;

/// Pointers under one cluster namespace, blobs under one storage directory.
#[derive(Clone, Debug)]
pub struct PointerStore {
    pub(crate) zk: ZkCluster,
    pub(crate) blobs: Arc<dyn BlobStore>,
    /// `<storageDir>/<cluster-id>` as a path inside `blobs`.
    pub(crate) blob_dir: String,
}

impl PointerStore {
    pub fn new(zk: ZkCluster, blobs: Arc<dyn BlobStore>, blob_dir: &str) -> PointerStore {
        PointerStore {
            zk,
            blobs,
            blob_dir: blob_dir.trim_end_matches('/').to_string(),
        }
    }

    /// Writes `data` to a new blob named `<prefix>-<uuid>`, then creates or replaces the pointer
    /// at `key` (relative to the namespace), then deletes the blob it replaced.
    ///
    /// If the pointer write definitely failed (fenced off, rejected) the new blob is removed. If
    /// its outcome is unknown (the connection dropped before ZooKeeper answered) the pointer is
    /// read back: naming our blob, the write went through; otherwise the error is returned and
    /// the blob is *kept*, because a late commit may still point at it (FLINK-24543). A kept
    /// blob is at worst an orphan, which `yarnflow ha inspect` lists.
    pub async fn put(&self, key: &str, prefix: &str, data: Bytes) -> Result<(), HaError> {
        let path = self.zk.path(key);
        let blob_path = format!(
            "{}/{prefix}-{}",
            self.blob_dir,
            uuid::Uuid::new_v4().simple()
        );
        let pointer = Pointer {
            blob_path: blob_path.clone(),
            length: data.len() as u64,
            crc32c: crc32c::crc32c(&data),
            writer_epoch: self.zk.fence.epoch().unwrap_or(0),
            marked_for_deletion: false,
        };
        // Fail fast before touching storage when we already know we do not lead.
        self.zk.fence.latch_path()?;
        self.blobs.write(&blob_path, data).await?;
        let old = match self.write_pointer(&path, &pointer).await {
            Ok(old) => old,
            Err(CommitFailure::Uncertain(e)) => {
                let landed = matches!(
                    self.zk.client.get_data(&path).await,
                    Ok((bytes, _)) if Pointer::decode(bytes.as_slice())
                        .is_ok_and(|p| p.blob_path == blob_path)
                );
                if !landed {
                    tracing::warn!(pointer = %path, blob = %self.uri(&blob_path), error = %e,
                        "pointer write outcome unknown; keeping its blob");
                    return Err(e);
                }
                // It went through; the blob it replaced (if any) is unknown now and left as
                // an orphan.
                None
            }
            Err(f) => {
                // Nothing was applied (multi-ops are atomic): the blob is ours alone.
                let _ = self.blobs.delete(&blob_path).await;
                return Err(f.into_error());
            }
        };
        if let Some(old) = old
            && old != blob_path
            && let Err(e) = self.blobs.delete(&old).await
        {
            // The new pointer is in place; the old blob is only an orphan now.
            tracing::warn!(blob = %self.uri(&old), error = %e, "could not delete a replaced blob");
        }
        Ok(())
    }

    /// Creates or replaces the pointer; returns the blob path it replaced.
    ///
    /// Optimistic: the first attempt is a create (checkpoints and job graphs are new keys), so
    /// the usual write is one round trip, the fenced multi-op itself. `NodeExists` turns it into
    /// a versioned replace, `NoNode` creates the missing parents.
    async fn write_pointer(
        &self,
        path: &str,
        pointer: &Pointer,
    ) -> Result<Option<String>, CommitFailure> {
        let data = pointer.encode_to_vec();
        // None: try to create. Some((old blob, version)): replace that version.
        let mut existing: Option<(Option<String>, i32)> = None;
        for _ in 0..100 {
            let mut w = self.zk.fenced_writer().map_err(CommitFailure::Fenced)?;
            match &existing {
                Some((_, version)) => w.add_set_data(path, &data, Some(*version)),
                None => w.add_create(path, &data, &PERSISTENT),
            }
            .map_err(|e| CommitFailure::NotSent(self.zk.err("write a pointer", e)))?;
            let failure = match self
                .zk
                .try_commit(&format!("write pointer {path}"), w)
                .await
            {
                Ok(_) => return Ok(existing.and_then(|(old, _)| old)),
                Err(f) => f,
            };
            match (&existing, &failure) {
                (None, CommitFailure::Rejected { source, .. }) if *source == zk::Error::NoNode => {
                    if let Some((parent, _)) = path.rsplit_once('/') {
                        self.zk
                            .ensure_path(parent)
                            .await
                            .map_err(CommitFailure::NotSent)?;
                    }
                }
                // Exists (create) or changed/deleted meanwhile (replace): read it again.
                _ if failure.is_race() => {
                    existing = match self.zk.client.get_data(path).await {
                        Ok((bytes, stat)) => Some((
                            Pointer::decode(bytes.as_slice())
                                .ok()
                                .map(|p| p.blob_path)
                                .filter(|b| !b.is_empty()),
                            stat.version,
                        )),
                        Err(zk::Error::NoNode) => None,
                        Err(e) => {
                            return Err(CommitFailure::NotSent(
                                self.zk.err(&format!("read {path}"), e),
                            ));
                        }
                    };
                }
                _ => return Err(failure),
            }
        }
        Err(CommitFailure::NotSent(HaError::ZooKeeper {
            quorum: self.zk.quorum.clone(),
            message: format!("write pointer {path}: still racing other writers after 100 tries"),
        }))
    }

    /// Reads the pointer at `key` (`None` if absent or marked for deletion). A znode that does
    /// not hold a valid pointer is [`HaError::Corrupt`] naming the znode.
    pub async fn pointer(&self, key: &str) -> Result<Option<Pointer>, HaError> {
        let path = self.zk.path(key);
        match self.zk.client.get_data(&path).await {
            Ok((bytes, _)) => {
                let p = decode_pointer(&path, &bytes)?;
                Ok((!p.marked_for_deletion).then_some(p))
            }
            Err(zk::Error::NoNode) => Ok(None),
            Err(e) => Err(self.zk.err(&format!("read {path}"), e)),
        }
    }

    /// Whether `key` holds an entry: a pointer not marked for deletion, or a damaged one (so
    /// listings show it and reading it names the damage).
    pub async fn is_live(&self, key: &str) -> Result<bool, HaError> {
        match self.pointer(key).await {
            Ok(p) => Ok(p.is_some()),
            Err(HaError::Corrupt { .. }) => Ok(true),
            Err(e) => Err(e),
        }
    }

    /// Reads and verifies the blob behind `key`.
    pub async fn get(&self, key: &str) -> Result<Option<Bytes>, HaError> {
        let Some(p) = self.pointer(key).await? else {
            return Ok(None);
        };
        let data = match self.blobs.read(&p.blob_path).await {
            Ok(d) => d,
            Err(e) if e.is_not_found() => {
                return Err(HaError::Corrupt {
                    path: self.uri(&p.blob_path),
                    message: format!("the blob named by {} is missing", self.zk.path(key)),
                });
            }
            Err(e) => return Err(e.into()),
        };
        if data.len() as u64 != p.length {
            return Err(HaError::Corrupt {
                path: self.uri(&p.blob_path),
                message: format!("length {} but the pointer says {}", data.len(), p.length),
            });
        }
        let crc = crc32c::crc32c(&data);
        if crc != p.crc32c {
            return Err(HaError::Corrupt {
                path: self.uri(&p.blob_path),
                message: format!("CRC-32C {crc:08x} but the pointer says {:08x}", p.crc32c),
            });
        }
        Ok(Some(data))
    }

    /// The children names of `dir` (relative); empty if it does not exist.
    pub async fn children(&self, dir: &str) -> Result<Vec<String>, HaError> {
        let path = self.zk.path(dir);
        match self.zk.client.list_children(&path).await {
            Ok(mut c) => {
                c.sort();
                Ok(c)
            }
            Err(zk::Error::NoNode) => Ok(Vec::new()),
            Err(e) => Err(self.zk.err(&format!("list {path}"), e)),
        }
    }

    /// Removes `key` in the safe order: mark, blob, node.
    pub async fn remove(&self, key: &str) -> Result<(), HaError> {
        let path = self.zk.path(key);
        let (bytes, stat) = match self.zk.client.get_data(&path).await {
            Ok(r) => r,
            Err(zk::Error::NoNode) => return Ok(()),
            Err(e) => return Err(self.zk.err(&format!("read {path}"), e)),
        };
        let mut version = stat.version;
        // A damaged pointer names no blob we could delete: only its node goes.
        if let Ok(mut p) = Pointer::decode(bytes.as_slice())
            && p.blob_path.starts_with('/')
        {
            if !p.marked_for_deletion {
                p.marked_for_deletion = true;
                let mut w = self.zk.fenced_writer()?;
                w.add_set_data(&path, &p.encode_to_vec(), Some(version))
                    .map_err(|e| self.zk.err("mark a pointer", e))?;
                let r = self.zk.commit(&format!("mark {path}"), w).await?;
                if let Some(zk::MultiWriteResult::SetData { stat }) = r.get(1) {
                    version = stat.version;
                } else {
                    version += 1;
                }
            }
            self.blobs.delete(&p.blob_path).await?;
        }
        let mut w = self.zk.fenced_writer()?;
        w.add_delete(&path, Some(version))
            .map_err(|e| self.zk.err("delete a pointer", e))?;
        self.zk.commit(&format!("delete {path}"), w).await?;
        Ok(())
    }

    /// Deletes the (pointer-free) node `key` and everything under it, children first, fenced.
    /// Pointers below are removed in the safe order.
    pub async fn remove_tree(&self, key: &str) -> Result<(), HaError> {
        let path = self.zk.path(key);
        let mut stack = vec![(path.clone(), false)];
        while let Some((node, expanded)) = stack.pop() {
            if !expanded {
                let children = match self.zk.client.list_children(&node).await {
                    Ok(c) => c,
                    Err(zk::Error::NoNode) => continue,
                    Err(e) => return Err(self.zk.err(&format!("list {node}"), e)),
                };
                stack.push((node.clone(), true));
                for c in children {
                    stack.push((format!("{node}/{c}"), false));
                }
                continue;
            }
            let rel = node
                .strip_prefix(&format!("{}/", self.zk.namespace))
                .unwrap_or(&node)
                .to_string();
            // Leaves holding pointers go through the safe removal; others are plain deletes.
            let is_pointer = matches!(self.zk.client.get_data(&node).await,
                Ok((b, _)) if !b.is_empty() && Pointer::decode(b.as_slice()).is_ok_and(|p| !p.blob_path.is_empty()));
            if is_pointer && node != path {
                self.remove(&rel).await?;
            } else {
                let mut w = self.zk.fenced_writer()?;
                w.add_delete(&node, None)
                    .map_err(|e| self.zk.err("delete a node", e))?;
                match self.zk.try_commit(&format!("delete {node}"), w).await {
                    Ok(_) => {}
                    Err(f) if f.is_no_node() => {}
                    Err(f) => return Err(f.into_error()),
                }
            }
        }
        Ok(())
    }

    /// Deletes the structural node `key` if it has no children (fenced); a node that is
    /// absent or still has children is left alone.
    pub async fn remove_if_empty(&self, key: &str) -> Result<(), HaError> {
        let path = self.zk.path(key);
        match self.zk.client.check_stat(&path).await {
            Ok(Some(stat)) if stat.num_children == 0 => {
                let mut w = self.zk.fenced_writer()?;
                w.add_delete(&path, None)
                    .map_err(|e| self.zk.err("delete a node", e))?;
                match self.zk.try_commit(&format!("delete {path}"), w).await {
                    // Gone already, or a child appeared meanwhile: leave it.
                    Ok(_) => Ok(()),
                    Err(f @ CommitFailure::Rejected { .. }) if f.is_no_node() => Ok(()),
                    Err(CommitFailure::Rejected {
                        source: zk::Error::NotEmpty,
                        ..
                    }) => Ok(()),
                    Err(f) => Err(f.into_error()),
                }
            }
            Ok(_) => Ok(()),
            Err(e) => Err(self.zk.err(&format!("stat {path}"), e)),
        }
    }

    fn uri(&self, path: &str) -> String {
        format!("{}{}", self.blobs.base_uri(), path)
    }
}

/// Decodes and checks the data of a pointer znode at `path`.
fn decode_pointer(path: &str, bytes: &[u8]) -> Result<Pointer, HaError> {
    let corrupt = |message: String| HaError::Corrupt {
        path: path.to_string(),
        message,
    };
    let p = Pointer::decode(bytes)
        .map_err(|e| corrupt(format!("the znode does not hold a pointer: {e}")))?;
    if !p.marked_for_deletion && !p.blob_path.starts_with('/') {
        return Err(corrupt(format!(
            "the pointer names no blob (blob path {:?}, {} bytes of znode data)",
            p.blob_path,
            bytes.len()
        )));
    }
    Ok(p)
}
