//! The checkpoint coordinator's bookkeeping (pure): pending checkpoints, acknowledgements,
//! timeouts, tolerable failures, and the metadata a completed checkpoint stores.
//!
//! A checkpoint completes when every subtask acknowledged it with its state; then, and only
//! then, its metadata goes to the `CompletedCheckpointStore` (blob + pointer) and sinks are told
//! to commit. Completing checkpoint N aborts every older pending one (subsumed).

use std::collections::BTreeMap;
use std::time::Duration;

use serde::{Deserialize, Serialize};
use tokio::time::Instant;

/// What a completed checkpoint stores: every subtask's state, opaque to the coordinator.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CheckpointMetadata {
    pub version: u32,
    pub job_id: String,
    pub checkpoint_id: u64,
    /// Subtask index → its state (JSON of source offset, operator states, sink state).
    pub subtasks: BTreeMap<u32, serde_json::Value>,
}

impl CheckpointMetadata {
    pub fn to_bytes(&self) -> Vec<u8> {
        serde_json::to_vec(self).expect("metadata serializes")
    }

    /// Parses stored metadata; `what` names it (checkpoint id, path) in the error.
    pub fn from_bytes(data: &[u8], what: &str) -> Result<CheckpointMetadata, String> {
        let m: CheckpointMetadata = serde_json::from_slice(data)
            .map_err(|e| format!("checkpoint {what}: unreadable metadata: {e}"))?;
        if m.version != 1 {
            return Err(format!(
                "checkpoint {what}: unknown metadata version {}",
                m.version
            ));
        }
        Ok(m)
    }
}

#[derive(Debug)]
struct Pending {
    started: Instant,
    expected: u32,
    acks: BTreeMap<u32, serde_json::Value>,
}

/// The outcome of an acknowledgement.
#[derive(Debug, Clone, PartialEq)]
pub enum Ack {
    /// Still waiting for other subtasks.
    Pending,
    /// All acknowledged: store this, then notify.
    Complete(CheckpointMetadata),
    /// Unknown, expired or subsumed checkpoint: ignore.
    Stale,
}

/// Too many consecutive checkpoint failures: the job must fail over.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(
    "{failures} consecutive checkpoint failures exceed execution.checkpointing.tolerable-failed-checkpoints = {tolerable} (last: {last})"
)]
pub struct TooManyFailures {
    pub failures: u32,
    pub tolerable: u32,
    pub last: String,
}

#[derive(Debug)]
pub struct CheckpointTracker {
    job_id: String,
    timeout: Duration,
    tolerable: u32,
    consecutive_failures: u32,
    pending: BTreeMap<u64, Pending>,
    pub latest_completed: Option<u64>,
    /// Completion durations, for figures and metrics.
    pub durations: Vec<Duration>,
}

impl CheckpointTracker {
    pub fn new(job_id: &str, timeout: Duration, tolerable_failures: u32) -> CheckpointTracker {
        CheckpointTracker {
            job_id: job_id.to_string(),
            timeout,
            tolerable: tolerable_failures,
            consecutive_failures: 0,
            pending: BTreeMap::new(),
            latest_completed: None,
            durations: Vec::new(),
        }
    }

    /// Checkpoint `id` was triggered on `expected` subtasks.
    pub fn start(&mut self, id: u64, expected: u32, now: Instant) {
        self.pending.insert(
            id,
            Pending {
                started: now,
                expected,
                acks: BTreeMap::new(),
            },
        );
    }

    pub fn pending_ids(&self) -> Vec<u64> {
        self.pending.keys().copied().collect()
    }

    pub fn ack(&mut self, id: u64, subtask: u32, state: serde_json::Value, now: Instant) -> Ack {
        let Some(p) = self.pending.get_mut(&id) else {
            return Ack::Stale;
        };
        p.acks.insert(subtask, state);
        if (p.acks.len() as u32) < p.expected {
            return Ack::Pending;
        }
        let p = self.pending.remove(&id).expect("present");
        // Older pending checkpoints are subsumed by this one.
        self.pending.retain(|older, _| *older > id);
        self.consecutive_failures = 0;
        self.latest_completed = Some(id);
        self.durations.push(now.duration_since(p.started));
        Ack::Complete(CheckpointMetadata {
            version: 1,
            job_id: self.job_id.clone(),
            checkpoint_id: id,
            subtasks: p.acks,
        })
    }

    /// A checkpoint failed (declined, storing failed): counts toward the tolerable failures.
    pub fn fail(&mut self, id: u64, reason: &str) -> Result<(), TooManyFailures> {
        self.pending.remove(&id);
        self.count_failure(reason)
    }

    fn count_failure(&mut self, reason: &str) -> Result<(), TooManyFailures> {
        self.consecutive_failures += 1;
        tracing::warn!(job_id = %self.job_id, reason, "checkpoint failed");
        if self.consecutive_failures > self.tolerable {
            return Err(TooManyFailures {
                failures: self.consecutive_failures,
                tolerable: self.tolerable,
                last: reason.to_string(),
            });
        }
        Ok(())
    }

    /// Expires checkpoints older than the timeout.
    pub fn expire(&mut self, now: Instant) -> Result<Vec<u64>, TooManyFailures> {
        let expired: Vec<u64> = self
            .pending
            .iter()
            .filter(|(_, p)| now.duration_since(p.started) >= self.timeout)
            .map(|(id, _)| *id)
            .collect();
        for id in &expired {
            self.pending.remove(id);
            self.count_failure(&format!("checkpoint {id} expired after {:?}", self.timeout))?;
        }
        Ok(expired)
    }

    /// A failover discards every pending checkpoint (they cannot complete any more); not a
    /// checkpoint failure.
    pub fn abort_all(&mut self) {
        self.pending.clear();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[tokio::test(start_paused = true)]
    async fn completes_when_all_subtasks_ack_and_subsumes_older() {
        let mut t = CheckpointTracker::new("j", Duration::from_secs(10), 0);
        t.start(1, 2, Instant::now());
        t.start(2, 2, Instant::now());
        assert_eq!(
            t.ack(2, 0, json!({"offset": 4}), Instant::now()),
            Ack::Pending
        );
        tokio::time::advance(Duration::from_millis(30)).await;
        let Ack::Complete(m) = t.ack(2, 1, json!({"offset": 5}), Instant::now()) else {
            panic!("complete")
        };
        assert_eq!(m.checkpoint_id, 2);
        assert_eq!(m.subtasks.len(), 2);
        assert_eq!(t.durations, vec![Duration::from_millis(30)]);
        // 1 was subsumed.
        assert_eq!(t.ack(1, 0, json!(null), Instant::now()), Ack::Stale);
        let back = CheckpointMetadata::from_bytes(&m.to_bytes(), "2").unwrap();
        assert_eq!(back, m);
        assert!(
            CheckpointMetadata::from_bytes(b"{", "7")
                .unwrap_err()
                .contains("checkpoint 7")
        );
    }

    #[tokio::test(start_paused = true)]
    async fn timeouts_count_against_tolerable_failures() {
        let mut t = CheckpointTracker::new("j", Duration::from_secs(1), 1);
        t.start(1, 1, Instant::now());
        tokio::time::advance(Duration::from_secs(2)).await;
        assert_eq!(t.expire(Instant::now()).unwrap(), vec![1]);
        t.start(2, 1, Instant::now());
        tokio::time::advance(Duration::from_secs(2)).await;
        let e = t.expire(Instant::now()).unwrap_err();
        assert_eq!(e.failures, 2);
        assert!(e.to_string().contains("tolerable-failed-checkpoints"));
    }

    #[tokio::test(start_paused = true)]
    async fn a_completion_resets_the_failure_count() {
        let mut t = CheckpointTracker::new("j", Duration::from_secs(1), 1);
        t.fail(1, "declined").unwrap();
        t.start(2, 1, Instant::now());
        assert!(matches!(
            t.ack(2, 0, json!(1), Instant::now()),
            Ack::Complete(_)
        ));
        t.fail(3, "declined").unwrap();
        assert!(t.fail(4, "declined").is_err());
    }
}
