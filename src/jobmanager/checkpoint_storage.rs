//! Where a job's keyed state snapshots live (Flink's `CheckpointStorage`) and when they go
//! (its `CheckpointsCleaner`).
//!
//! Every keyed subtask writes one file per checkpoint to
//! `<execution.checkpointing.dir>/<job>-<run id>/chk-<id>/<subtask>`; the checkpoint metadata in HA
//! storage holds only their handles. The [`CheckpointsCleaner`] deletes a checkpoint's directory
//! * once it is subsumed: a completed checkpoint stays while it is among the newest
//!   `execution.checkpointing.num-retained` (what the HA checkpoint store keeps);
//! * as soon as it leaves the pending set without completing (aborted by a failover,
//!   declined, expired, not stored);
//! * at start, for every directory of a checkpoint the HA store does not hold (what an earlier
//!   leader or attempt left behind);
//!
//! and a globally terminal job's whole `<dir>/<job>-<run id>` goes with the rest of its HA data.
//! Deletions run off the job master's loop; a failure is retried under `cleanup-strategy` and
//! logged, and never fails the job (what is left is deleted with the job's directory at the
//! latest).

use std::collections::{BTreeSet, VecDeque};

use tokio_util::task::TaskTracker;

use super::cleanup::RetryStrategy;
use crate::storage::Location;

/// A job's checkpoint storage settings.
#[derive(Debug, Clone)]
pub struct CheckpointStorage {
    /// `execution.checkpointing.dir` (`None`: not configured, and no HA storage dir to derive
    /// it from; a job with keyed state cannot run then).
    pub dir: Option<Location>,
    /// `execution.checkpointing.num-retained` (at least 1).
    pub num_retained: usize,
}

impl CheckpointStorage {
    /// `dir`, retaining one completed checkpoint (Flink's default).
    pub fn new(dir: Location) -> CheckpointStorage {
        CheckpointStorage {
            dir: Some(dir),
            num_retained: 1,
        }
    }

    /// The directory of all checkpoints of run `run_id` of `job_id`.
    pub fn job_dir(&self, job_id: &str, run_id: &str) -> Option<Location> {
        let name = crate::state::job_dir_name(job_id, run_id);
        self.dir.as_ref().map(|d| d.join(&name))
    }
}

/// The name of checkpoint `id`'s directory in a job's directory.
fn checkpoint_dir_name(id: u64) -> String {
    format!("chk-{id}")
}

/// Decides which checkpoints' files go (pure), and deletes them.
#[derive(Debug)]
pub struct CheckpointsCleaner {
    /// `None`: no checkpoint directory, nothing to delete.
    job_dir: Option<Location>,
    num_retained: usize,
    retry: RetryStrategy,
    /// Completed checkpoints kept, oldest first.
    retained: VecDeque<u64>,
    /// The pending checkpoints last seen.
    pending: BTreeSet<u64>,
    /// Background deletions; [`CheckpointsCleaner::discard_job`] waits for them.
    deletions: TaskTracker,
}

impl CheckpointsCleaner {
    pub fn new(
        storage: &CheckpointStorage,
        job_id: &str,
        run_id: &str,
        retry: RetryStrategy,
    ) -> Self {
        CheckpointsCleaner {
            job_dir: storage.job_dir(job_id, run_id),
            num_retained: storage.num_retained.max(1),
            retry,
            retained: VecDeque::new(),
            pending: BTreeSet::new(),
            deletions: TaskTracker::new(),
        }
    }

    /// What changed since the last look, given the checkpoints `pending` now and the latest
    /// completed one: the checkpoints whose files go (oldest first). A checkpoint that left
    /// the pending set completed if it is the latest completed one, else it failed.
    pub fn decide(&mut self, pending: &[u64], latest_completed: Option<u64>) -> Vec<u64> {
        let now: BTreeSet<u64> = pending.iter().copied().collect();
        let mut discard: Vec<u64> = self
            .pending
            .difference(&now)
            .copied()
            .filter(|id| Some(*id) != latest_completed)
            .collect();
        self.pending = now;
        if let Some(latest) = latest_completed
            && self.retained.back().is_none_or(|last| *last < latest)
        {
            self.retained.push_back(latest);
        }
        while self.retained.len() > self.num_retained {
            discard.extend(self.retained.pop_front());
        }
        discard.sort_unstable();
        discard
    }

    /// Completed checkpoints already in the HA store when the job master starts (oldest first).
    pub fn retain(&mut self, ids: &[u64]) {
        self.retained.extend(ids.iter().copied());
    }

    /// [`decide`](Self::decide), then deletes those checkpoints' directories in the background.
    pub fn observe(&mut self, pending: &[u64], latest_completed: Option<u64>) {
        let discard = self.decide(pending, latest_completed);
        let Some(job_dir) = &self.job_dir else {
            return;
        };
        for id in discard {
            let dir = job_dir.join(&checkpoint_dir_name(id));
            let retry = self.retry;
            self.deletions.spawn(async move {
                delete_dir(&dir, &retry, &format!("checkpoint {id}")).await;
            });
        }
    }

    /// Deletes the directory of every checkpoint neither retained nor pending (what an earlier
    /// leader or attempt left). A listing that fails leaves them to the job's end.
    pub async fn sweep(&self) {
        let Some(job_dir) = &self.job_dir else {
            return;
        };
        let entries = match job_dir.store.list(&job_dir.path).await {
            Ok(entries) => entries,
            Err(e) => {
                tracing::warn!(dir = %job_dir.uri(), error = %e, "cannot list the job's checkpoint directory; stale snapshots stay until the job ends");
                return;
            }
        };
        for entry in entries {
            let name = entry.path.rsplit('/').next().unwrap_or_default();
            let Some(id) = name
                .strip_prefix("chk-")
                .and_then(|i| i.parse::<u64>().ok())
            else {
                continue;
            };
            if !self.retained.contains(&id) && !self.pending.contains(&id) {
                let dir = job_dir.join(name);
                delete_dir(&dir, &self.retry, &format!("stale checkpoint {id}")).await;
            }
        }
    }

    /// The job is globally terminal: waits for the deletions under way, then deletes its whole
    /// checkpoint directory.
    pub async fn discard_job(self) {
        self.deletions.close();
        self.deletions.wait().await;
        if let Some(job_dir) = &self.job_dir {
            delete_dir(job_dir, &self.retry, "the ended job's checkpoints").await;
        }
    }
}

/// Deletes `dir` and everything under it, retried under `retry`; a failure is logged.
async fn delete_dir(dir: &Location, retry: &RetryStrategy, what: &str) {
    let mut tries = 0;
    loop {
        tries += 1;
        let Err(e) = dir.store.delete_dir(&dir.path).await else {
            tracing::debug!(dir = %dir.uri(), what, "checkpoint files deleted");
            return;
        };
        match retry.delay(tries) {
            Some(delay) => tokio::time::sleep(delay).await,
            None => {
                tracing::warn!(dir = %dir.uri(), what, error = %e, tries, "cannot delete checkpoint files; they stay");
                return;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use super::*;
    use crate::storage::local::LocalStore;

    #[test]
    fn subsumed_and_failed_checkpoints_go_the_retained_stay() {
        let dir = Location {
            store: Arc::new(LocalStore),
            path: "/nowhere".into(),
        };
        let storage = CheckpointStorage {
            num_retained: 2,
            ..CheckpointStorage::new(dir)
        };
        let mut c = CheckpointsCleaner::new(&storage, "j", "r", RetryStrategy::None);
        c.retain(&[3]);
        assert_eq!(c.decide(&[4, 5], Some(3)), Vec::<u64>::new());
        // 4 completed: 3 and 4 are retained.
        assert_eq!(c.decide(&[5], Some(4)), Vec::<u64>::new());
        // 5 failed (declined, expired, aborted): its files go at once.
        assert_eq!(c.decide(&[6], Some(4)), vec![5]);
        // 6 completed: 3 is subsumed.
        assert_eq!(c.decide(&[], Some(6)), vec![3]);
        // 7 and 8 pending, a failover aborts both and 9 completes later: 4 subsumed.
        assert_eq!(c.decide(&[7, 8], Some(6)), Vec::<u64>::new());
        assert_eq!(c.decide(&[], Some(6)), vec![7, 8]);
        assert_eq!(c.decide(&[9], Some(6)), Vec::<u64>::new());
        assert_eq!(c.decide(&[], Some(9)), vec![4]);
    }

    #[tokio::test]
    async fn files_of_dropped_checkpoints_and_of_the_ended_job_are_deleted() {
        let root = std::env::temp_dir().join(format!("yarnflow-cleaner-{}", std::process::id()));
        let dir = Location {
            store: Arc::new(LocalStore),
            path: root.display().to_string(),
        };
        let storage = CheckpointStorage::new(dir.clone());
        for id in [1, 2, 3] {
            let file = crate::state::snapshot_location(&dir, "j-r", id, "s-0");
            dir.store
                .write(&file.path, bytes::Bytes::from_static(b"x"))
                .await
                .unwrap();
        }
        let chk = |id: u64| root.join("j-r").join(format!("chk-{id}"));
        let mut c = CheckpointsCleaner::new(&storage, "j", "r", RetryStrategy::None);
        // At start the store holds 2: 1 and 3 are left over from an earlier leader.
        c.retain(&[2]);
        c.sweep().await;
        assert!(!chk(1).exists() && chk(2).exists() && !chk(3).exists());
        // 4 is written and completes: 2 is subsumed.
        let file = crate::state::snapshot_location(&dir, "j-r", 4, "s-0");
        dir.store
            .write(&file.path, bytes::Bytes::from_static(b"x"))
            .await
            .unwrap();
        c.observe(&[4], Some(2));
        c.observe(&[], Some(4));
        c.deletions.close();
        c.deletions.wait().await;
        c.deletions.reopen();
        assert!(!chk(2).exists() && chk(4).exists());
        c.discard_job().await;
        assert!(!root.join("j-r").exists());
        let _ = std::fs::remove_dir_all(&root);
    }
}
