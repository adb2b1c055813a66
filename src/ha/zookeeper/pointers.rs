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
use super::{PERSISTENT, ZkCluster};
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
    /// at `key` (relative to the namespace). On a failed pointer write the new blob is removed.
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
        let result = self.write_pointer(&path, &pointer).await;
        match result {
            Ok(old) => {
                if let Some(old) = old
                    && old != blob_path
                {
                    self.blobs.delete(&old).await?;
                }
                Ok(())
            }
            Err(e) => {
                // The pointer write failed as a whole (multi-ops are atomic): the blob is ours
                // alone and safe to drop.
                let _ = self.blobs.delete(&blob_path).await;
                Err(e)
            }
        }
    }

    /// Creates or replaces the pointer; returns the blob path it replaced.
    async fn write_pointer(
        &self,
        path: &str,
        pointer: &Pointer,
    ) -> Result<Option<String>, HaError> {
        let data = pointer.encode_to_vec();
        if let Some(parent) = path.rsplit_once('/').map(|(p, _)| p) {
            self.zk.ensure_path(parent).await?;
        }
        loop {
            let existing = match self.zk.client.get_data(path).await {
                Ok((bytes, stat)) => Some((Pointer::decode(bytes.as_slice()).ok(), stat.version)),
                Err(zk::Error::NoNode) => None,
                Err(e) => return Err(self.zk.err(&format!("read {path}"), e)),
            };
            let mut w = self.zk.fenced_writer()?;
            let old = match &existing {
                Some((old, version)) => {
                    w.add_set_data(path, &data, Some(*version))
                        .map_err(|e| self.zk.err("write a pointer", e))?;
                    old.as_ref().map(|p| p.blob_path.clone())
                }
                None => {
                    w.add_create(path, &data, &PERSISTENT)
                        .map_err(|e| self.zk.err("write a pointer", e))?;
                    None
                }
            };
            match self.zk.commit(&format!("write pointer {path}"), w).await {
                Ok(_) => return Ok(old),
                Err(HaError::ZooKeeper { message, .. })
                    if message.contains("version") || message.contains("exist") =>
                {
                    continue;
                }
                Err(e) => return Err(e),
            }
        }
    }

    /// Reads the pointer at `key` (`None` if absent or marked for deletion).
    pub async fn pointer(&self, key: &str) -> Result<Option<Pointer>, HaError> {
        let path = self.zk.path(key);
        match self.zk.client.get_data(&path).await {
            Ok((bytes, _)) => {
                let p = Pointer::decode(bytes.as_slice()).map_err(|e| HaError::Corrupt {
                    path: path.clone(),
                    message: format!("the znode does not hold a pointer: {e}"),
                })?;
                Ok((!p.marked_for_deletion).then_some(p))
            }
            Err(zk::Error::NoNode) => Ok(None),
            Err(e) => Err(self.zk.err(&format!("read {path}"), e)),
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
        if let Ok(mut p) = Pointer::decode(bytes.as_slice()) {
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
                match self.zk.commit(&format!("delete {node}"), w).await {
                    Ok(_) => {}
                    Err(HaError::ZooKeeper { message, .. })
                        if message.contains("not exist") || message.contains("no node") => {}
                    Err(e) => return Err(e),
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
                match self.zk.commit(&format!("delete {path}"), w).await {
                    Ok(_) | Err(HaError::ZooKeeper { .. }) => Ok(()),
                    Err(e) => Err(e),
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
