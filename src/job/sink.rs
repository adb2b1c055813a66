//! The exactly-once `files` sink: a two-phase commit driven by checkpoints.
//!
//! * Between checkpoints a subtask buffers its output.
//! * On a barrier (`snapshot(cp)`) it writes the buffer to a hidden pending file
//!   `_part-<subtask>-<cp>.pending` (atomically) and records it in its state.
//! * When the JobManager declares checkpoint `cp` complete (`notify_complete(cp)`) every
//!   pending file up to `cp` is renamed to `part-<subtask>-<cp>`: only then can readers see it.
//! * On restore from checkpoint `cp`, pending files recorded in that checkpoint's state are
//!   committed (the completion notice may have been lost in the failure) and every other hidden
//!   file of the subtask is deleted: it belonged to a checkpoint that never completed, and its
//!   records will be produced again from the restored source offset.
//!
//! Commits are idempotent: a pending file already renamed is not an error.

use bytes::Bytes;
use serde::{Deserialize, Serialize};

use crate::storage::{Location, StorageError};

/// The sink's part of a checkpoint.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct SinkState {
    /// Checkpoint ids whose pending file is written but not yet known to be committed.
    pub pending: Vec<u64>,
    /// Set by the job master on a restore state only (never in a checkpoint): the job resumes
    /// from this checkpoint although newer ones completed (their metadata was corrupt and
    /// `execution.checkpointing.recover-from-older-on-corruption` is on), so the committed
    /// parts of checkpoints newer than it hold records that will be produced again: restore
    /// removes them first.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub remove_committed_after: Option<u64>,
}

pub struct FileSink {
    dir: Location,
    subtask: u32,
    buffer: Vec<u8>,
    pending: Vec<u64>,
    /// Records written to the buffer since the last snapshot.
    pub buffered_records: u64,
}

impl FileSink {
    pub fn new(dir: Location, subtask: u32) -> FileSink {
        FileSink {
            dir,
            subtask,
            buffer: Vec::new(),
            pending: Vec::new(),
            buffered_records: 0,
        }
    }

    fn pending_path(&self, cp: u64) -> String {
        self.dir
            .join(&format!("_part-{}-{cp}.pending", self.subtask))
            .path
    }

    fn final_path(&self, cp: u64) -> String {
        self.dir.join(&format!("part-{}-{cp}", self.subtask)).path
    }

    pub fn write_line(&mut self, line: &str) {
        self.buffer.extend_from_slice(line.as_bytes());
        self.buffer.push(b'\n');
        self.buffered_records += 1;
    }

    /// Phase one: persist the buffer as a hidden pending file for checkpoint `cp`.
    pub async fn snapshot(&mut self, cp: u64) -> Result<SinkState, StorageError> {
        let data = Bytes::from(std::mem::take(&mut self.buffer));
        self.buffered_records = 0;
        // An empty checkpoint commits nothing: no empty part files.
        if !data.is_empty() {
            self.dir.store.write(&self.pending_path(cp), data).await?;
            self.pending.push(cp);
        }
        Ok(SinkState {
            pending: self.pending.clone(),
            ..SinkState::default()
        })
    }

    /// Phase two: make every pending file up to `cp` visible.
    pub async fn notify_complete(&mut self, cp: u64) -> Result<(), StorageError> {
        let ready: Vec<u64> = self.pending.iter().copied().filter(|p| *p <= cp).collect();
        for p in ready {
            self.commit(p).await?;
            self.pending.retain(|x| *x != p);
        }
        Ok(())
    }

    async fn commit(&self, cp: u64) -> Result<(), StorageError> {
        match self
            .dir
            .store
            .rename(&self.pending_path(cp), &self.final_path(cp))
            .await
        {
            Ok(()) => Ok(()),
            // Committed before (a repeated notice, or a restore after the rename).
            Err(StorageError::NotFound { .. }) | Err(StorageError::AlreadyExists { .. })
                if self.dir.store.exists(&self.final_path(cp)).await? =>
            {
                Ok(())
            }
            Err(e) => Err(e),
        }
    }

    /// Restores from a completed checkpoint's state: commits what it recorded, discards every
    /// other hidden file of this subtask, starts with an empty buffer.
    pub async fn restore(&mut self, state: &SinkState) -> Result<(), StorageError> {
        self.buffer.clear();
        self.buffered_records = 0;
        self.pending.clear();
        for cp in &state.pending {
            self.commit(*cp).await?;
        }
        let prefix = format!("_part-{}-", self.subtask);
        for entry in self.dir.store.list(&self.dir.path).await? {
            let name = entry.path.rsplit('/').next().unwrap_or_default();
            if name.starts_with(&prefix) {
                self.dir.store.delete(&entry.path).await?;
            } else if let Some(restored) = state.remove_committed_after
                && committed_checkpoint(name, self.subtask).is_some_and(|cp| cp > restored)
            {
                // Committed by a checkpoint newer than the one restored: its records come again.
                tracing::warn!(subtask = self.subtask, restored_checkpoint = restored, file = %format!("{}{}", self.dir.store.base_uri(), entry.path),
                    "removing a committed part of a checkpoint newer than the restored one");
                self.dir.store.delete(&entry.path).await?;
            }
        }
        Ok(())
    }
}

/// The checkpoint id of a committed part file of `subtask` (`part-<subtask>-<checkpoint id>`),
/// `None` for any other name.
fn committed_checkpoint(name: &str, subtask: u32) -> Option<u64> {
    let rest = name.strip_prefix("part-")?;
    let (s, cp) = rest.rsplit_once('-')?;
    (s.parse::<u32>().ok()? == subtask).then_some(())?;
    cp.parse().ok()
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use super::*;
    use crate::storage::local::LocalStore;

    fn dir(name: &str) -> Location {
        let path = std::env::temp_dir()
            .join(format!("yarnflow-sink-{name}-{}", std::process::id()))
            .display()
            .to_string();
        let _ = std::fs::remove_dir_all(&path);
        Location {
            store: Arc::new(LocalStore),
            path,
        }
    }

    async fn visible(d: &Location) -> Vec<String> {
        let mut names: Vec<String> = d
            .store
            .list(&d.path)
            .await
            .unwrap()
            .into_iter()
            .map(|m| m.path.rsplit('/').next().unwrap().to_string())
            .filter(|n| !n.starts_with('_') && !n.starts_with('.'))
            .collect();
        names.sort();
        names
    }

    #[tokio::test]
    async fn files_appear_only_when_their_checkpoint_completes() {
        let d = dir("two-phase");
        let mut s = FileSink::new(d.clone(), 0);
        s.write_line("1");
        s.write_line("2");
        s.snapshot(1).await.unwrap();
        assert!(
            visible(&d).await.is_empty(),
            "nothing visible before completion"
        );
        s.notify_complete(1).await.unwrap();
        s.notify_complete(1).await.unwrap(); // repeated notice: harmless
        assert_eq!(visible(&d).await, vec!["part-0-1"]);
        let text = d.store.read(&format!("{}/part-0-1", d.path)).await.unwrap();
        assert_eq!(text, Bytes::from_static(b"1\n2\n"));
        let _ = d.store.delete_dir(&d.path).await;
    }

    #[tokio::test]
    async fn restore_commits_recorded_files_and_discards_the_rest() {
        let d = dir("restore");
        let mut s = FileSink::new(d.clone(), 3);
        s.write_line("a");
        let state = s.snapshot(5).await.unwrap();
        // Checkpoint 5 completed, but the notice was lost in the crash; checkpoint 6 was
        // snapshotted and never completed.
        s.write_line("b");
        s.snapshot(6).await.unwrap();
        let mut fresh = FileSink::new(d.clone(), 3);
        fresh.restore(&state).await.unwrap();
        assert_eq!(visible(&d).await, vec!["part-3-5"]);
        let hidden = d.store.list(&d.path).await.unwrap().len();
        assert_eq!(hidden, 1, "the uncompleted pending file is gone");
        // Restoring the same state again (a second failure) changes nothing.
        fresh.restore(&state).await.unwrap();
        assert_eq!(visible(&d).await, vec!["part-3-5"]);
        let _ = d.store.delete_dir(&d.path).await;
    }

    #[tokio::test]
    async fn restore_from_an_older_checkpoint_removes_newer_committed_parts() {
        let d = dir("older");
        let mut s = FileSink::new(d.clone(), 1);
        let mut other = FileSink::new(d.clone(), 10);
        for cp in [4, 5, 6] {
            s.write_line(&cp.to_string());
            other.write_line(&cp.to_string());
            s.snapshot(cp).await.unwrap();
            other.snapshot(cp).await.unwrap();
            s.notify_complete(cp).await.unwrap();
            other.notify_complete(cp).await.unwrap();
        }
        // Checkpoint 6's metadata is corrupt: subtask 1 resumes from 4.
        let mut fresh = FileSink::new(d.clone(), 1);
        let state = SinkState {
            pending: vec![],
            remove_committed_after: Some(4),
        };
        fresh.restore(&state).await.unwrap();
        assert_eq!(
            visible(&d).await,
            vec!["part-1-4", "part-10-4", "part-10-5", "part-10-6"],
            "only this subtask's newer parts go"
        );
        assert_eq!(committed_checkpoint("part-12-7", 12), Some(7));
        assert_eq!(committed_checkpoint("part-1-7", 12), None);
        assert_eq!(committed_checkpoint("_part-12-7.pending", 12), None);
        let _ = d.store.delete_dir(&d.path).await;
    }
}
