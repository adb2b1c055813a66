//! The checkpoint coordinator's bookkeeping (pure): pending checkpoints, acknowledgements,
//! timeouts, tolerable failures, and the metadata a completed checkpoint stores.
//!
//! A checkpoint goes through two steps, named apart:
//! * [`Ack::AllAcked`]: every subtask acknowledged it with its state. It is not complete yet:
//!   the caller stores the metadata in the `CompletedCheckpointStore` (blob + pointer);
//! * [`CheckpointTracker::completed`]: the store took it. Only now is it the latest completed
//!   checkpoint, its duration recorded, older pending ones subsumed, and sinks told to commit.
//!   A store whose outcome is unknown stays acknowledged until it is read back; one that
//!   failed is [`CheckpointTracker::fail`] instead, like a declined checkpoint.
//!
//! Failures (Flink's `CheckpointFailureManager`): an expiry, a decline or a failed store counts
//! once per checkpoint toward `execution.checkpointing.tolerable-failed-checkpoints`; a
//! completion resets the count; exceeding it is [`TooManyFailures`], on which the job fails
//! over (and the count starts again). Aborts by a failover are not failures.

pub use crate::ha::LifetimeCounts;
use std::collections::BTreeMap;
use std::time::Duration;

use serde::{Deserialize, Serialize};
use tokio::time::Instant;

use super::error::RuntimeError;
pub use super::error::TooManyFailures;

/// What a completed checkpoint stores: every subtask's state, opaque to the coordinator.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CheckpointMetadata {
    pub version: u32,
    pub job_id: String,
    pub checkpoint_id: u64,
    /// Subtask index → its state (JSON of source offset, operator states, sink state).
    pub subtasks: BTreeMap<u32, serde_json::Value>,
    /// The job's counts over its whole life as of this checkpoint, this one included: stored
    /// with it (no HA write of their own), so the next leader carries them on. Zero in
    /// metadata written before they existed.
    #[serde(default)]
    pub lifetime: LifetimeCounts,
}

impl CheckpointMetadata {
    pub fn to_bytes(&self) -> Vec<u8> {
        serde_json::to_vec(self).expect("metadata serializes")
    }

    /// Parses stored metadata; `what` names it (checkpoint id, path) in the error.
    pub fn from_bytes(data: &[u8], what: &str) -> Result<CheckpointMetadata, RuntimeError> {
        let what = format!("checkpoint {what}");
        let m: CheckpointMetadata = serde_json::from_slice(data)
            .map_err(|e| RuntimeError::bad_state(&what, format!("unreadable metadata: {e}")))?;
        if m.version != 1 {
            return Err(RuntimeError::bad_state(
                what,
                format!("unknown metadata version {}", m.version),
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
    /// Every subtask acknowledged: store this, then call [`CheckpointTracker::completed`].
    AllAcked(CheckpointMetadata),
    /// Unknown, expired or subsumed checkpoint: ignore.
    Stale,
}

/// A checkpoint the store took: the latest completed one.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Completed {
    pub checkpoint_id: u64,
    /// Trigger to completion.
    pub duration: Duration,
    /// Older pending checkpoints this one subsumed (aborted).
    pub subsumed: Vec<u64>,
}

#[derive(Debug)]
pub struct CheckpointTracker {
    job_id: String,
    timeout: Duration,
    tolerable: u32,
    consecutive_failures: u32,
    pending: BTreeMap<u64, Pending>,
    /// All acknowledged, being stored: id → trigger time.
    acknowledged: BTreeMap<u64, Instant>,
    /// The latest checkpoint the store took.
    pub latest_completed: Option<u64>,
    /// Durations of completed (stored) checkpoints, for figures and metrics.
    pub durations: Vec<Duration>,
    /// Checkpoints failed (expired, declined, not stored) so far, counted or not in a row.
    pub failed: u64,
}

impl CheckpointTracker {
    pub fn new(job_id: &str, timeout: Duration, tolerable_failures: u32) -> CheckpointTracker {
        CheckpointTracker {
            job_id: job_id.to_string(),
            timeout,
            tolerable: tolerable_failures,
            consecutive_failures: 0,
            pending: BTreeMap::new(),
            acknowledged: BTreeMap::new(),
            latest_completed: None,
            durations: Vec::new(),
            failed: 0,
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

    /// `execution.checkpointing.timeout`.
    pub fn timeout(&self) -> Duration {
        self.timeout
    }

    /// Checkpoints triggered and not yet completed or failed (acknowledged ones included).
    pub fn pending_ids(&self) -> Vec<u64> {
        let mut ids: Vec<u64> = self.pending.keys().copied().collect();
        ids.extend(self.acknowledged.keys().copied());
        ids.sort_unstable();
        ids
    }

    pub fn ack(&mut self, id: u64, subtask: u32, state: serde_json::Value) -> Ack {
        let Some(p) = self.pending.get_mut(&id) else {
            return Ack::Stale;
        };
        p.acks.insert(subtask, state);
        if (p.acks.len() as u32) < p.expected {
            return Ack::Pending;
        }
        let p = self.pending.remove(&id).expect("present");
        self.acknowledged.insert(id, p.started);
        Ack::AllAcked(CheckpointMetadata {
            version: 1,
            job_id: self.job_id.clone(),
            checkpoint_id: id,
            subtasks: p.acks,
            lifetime: LifetimeCounts::default(),
        })
    }

    /// The store took acknowledged checkpoint `id`: it is the latest completed one and subsumes
    /// every older pending one. `None` if `id` was not acknowledged (aborted meanwhile).
    pub fn completed(&mut self, id: u64, now: Instant) -> Option<Completed> {
        let started = self.acknowledged.remove(&id)?;
        let subsumed: Vec<u64> = self.pending.range(..id).map(|(older, _)| *older).collect();
        for older in &subsumed {
            self.pending.remove(older);
        }
        self.acknowledged.retain(|older, _| *older > id);
        self.consecutive_failures = 0;
        self.latest_completed = Some(id);
        let duration = now.duration_since(started);
        self.durations.push(duration);
        Some(Completed {
            checkpoint_id: id,
            duration,
            subsumed,
        })
    }

    /// Checkpoint `id` failed (declined, storing failed): counts toward the tolerable
    /// failures, once; a checkpoint no longer pending (completed, expired, aborted) is not
    /// counted again.
    pub fn fail(&mut self, id: u64, reason: &str) -> Result<(), TooManyFailures> {
        let known = self.pending.remove(&id).is_some() | self.acknowledged.remove(&id).is_some();
        if !known {
            return Ok(());
        }
        self.count_failure(id, reason)
    }

    fn count_failure(&mut self, id: u64, reason: &str) -> Result<(), TooManyFailures> {
        self.consecutive_failures += 1;
        self.failed += 1;
        tracing::warn!(job_id = %self.job_id, checkpoint_id = id, reason, failures = self.consecutive_failures, tolerable = self.tolerable, "checkpoint failed");
        if self.consecutive_failures > self.tolerable {
            let e = TooManyFailures {
                failures: self.consecutive_failures,
                tolerable: self.tolerable,
                last: reason.to_string(),
            };
            // The job fails over; the count starts again after it (Flink's `clearCount`).
            self.consecutive_failures = 0;
            return Err(e);
        }
        Ok(())
    }

    /// Expires every pending (not yet all acknowledged) checkpoint triggered at least the
    /// timeout before `now`; an acknowledged one waits for its store, which has no timeout.
    pub fn expire(&mut self, now: Instant) -> Result<Vec<u64>, TooManyFailures> {
        let expired: Vec<u64> = self
            .pending
            .iter()
            .filter(|(_, p)| now.duration_since(p.started) >= self.timeout)
            .map(|(id, _)| *id)
            .collect();
        let mut result = Ok(());
        for id in &expired {
            self.pending.remove(id);
            let reason = format!("checkpoint {id} expired after {:?}", self.timeout);
            let counted = self.count_failure(*id, &reason);
            if result.is_ok() {
                result = counted;
            }
        }
        result.map(|()| expired)
    }

    /// When the oldest pending checkpoint expires (`None`: nothing pending).
    pub fn next_expiry(&self) -> Option<Instant> {
        self.pending
            .values()
            .map(|p| p.started + self.timeout)
            .min()
    }

    /// A failover discards every pending checkpoint (they cannot complete any more); not a
    /// checkpoint failure.
    pub fn abort_all(&mut self) {
        self.pending.clear();
        self.acknowledged.clear();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn metadata_without_lifetime_counts_still_parses() {
        let old =
            br#"{"version":1,"job_id":"j","checkpoint_id":3,"subtasks":{"0":{"source":null}}}"#;
        let m = CheckpointMetadata::from_bytes(old, "3").unwrap();
        assert_eq!(
            (m.checkpoint_id, m.lifetime),
            (3, LifetimeCounts::default())
        );
        let partial = br#"{"version":1,"job_id":"j","checkpoint_id":3,"subtasks":{},"lifetime":{"restarts":2}}"#;
        let m = CheckpointMetadata::from_bytes(partial, "3").unwrap();
        assert_eq!(m.lifetime.restarts, 2);
        let again = CheckpointMetadata::from_bytes(&m.to_bytes(), "3").unwrap();
        assert_eq!(again, m);
    }

    #[tokio::test(start_paused = true)]
    async fn all_acked_then_completed_once_stored_and_subsumes_older() {
        let mut t = CheckpointTracker::new("j", Duration::from_secs(10), 0);
        t.start(1, 2, Instant::now());
        t.start(2, 2, Instant::now());
        assert_eq!(t.ack(2, 0, json!({"offset": 4})), Ack::Pending);
        tokio::time::advance(Duration::from_millis(30)).await;
        let Ack::AllAcked(m) = t.ack(2, 1, json!({"offset": 5})) else {
            panic!("all acked")
        };
        assert_eq!(m.checkpoint_id, 2);
        assert_eq!(m.subtasks.len(), 2);
        // Acknowledged is not completed: nothing is stored yet.
        assert_eq!(t.latest_completed, None);
        assert!(t.durations.is_empty());
        assert_eq!(t.pending_ids(), vec![1, 2]);
        tokio::time::advance(Duration::from_millis(20)).await;
        let c = t.completed(2, Instant::now()).expect("acknowledged");
        assert_eq!(
            c,
            Completed {
                checkpoint_id: 2,
                duration: Duration::from_millis(50),
                subsumed: vec![1],
            }
        );
        assert_eq!(t.latest_completed, Some(2));
        assert_eq!(t.durations, vec![Duration::from_millis(50)]);
        // 1 was subsumed; 2 completes only once.
        assert_eq!(t.ack(1, 0, json!(null)), Ack::Stale);
        assert_eq!(t.completed(2, Instant::now()), None);
        assert!(t.pending_ids().is_empty());
        let back = CheckpointMetadata::from_bytes(&m.to_bytes(), "2").unwrap();
        assert_eq!(back, m);
        assert!(
            CheckpointMetadata::from_bytes(b"{", "7")
                .unwrap_err()
                .to_string()
                .contains("checkpoint 7")
        );
    }

    #[tokio::test(start_paused = true)]
    async fn a_failed_store_is_a_checkpoint_failure_not_a_completion() {
        let mut t = CheckpointTracker::new("j", Duration::from_secs(10), 0);
        t.start(1, 1, Instant::now());
        assert!(matches!(t.ack(1, 0, json!(1)), Ack::AllAcked(_)));
        let e = t.fail(1, "store unavailable").unwrap_err();
        assert!(e.to_string().contains("store unavailable"), "{e}");
        assert_eq!(t.completed(1, Instant::now()), None);
        assert_eq!(t.latest_completed, None);
    }

    #[tokio::test(start_paused = true)]
    async fn a_failover_aborts_acknowledged_checkpoints_too() {
        let mut t = CheckpointTracker::new("j", Duration::from_secs(10), 0);
        t.start(1, 1, Instant::now());
        assert!(matches!(t.ack(1, 0, json!(1)), Ack::AllAcked(_)));
        t.abort_all();
        assert_eq!(t.completed(1, Instant::now()), None);
        assert!(t.pending_ids().is_empty());
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
        for id in 1..=4 {
            t.start(id, 1, Instant::now());
        }
        t.fail(1, "declined").unwrap();
        assert!(matches!(t.ack(2, 0, json!(1)), Ack::AllAcked(_)));
        assert!(t.completed(2, Instant::now()).is_some());
        t.fail(3, "declined").unwrap();
        assert!(t.fail(4, "declined").is_err());
    }

    #[tokio::test(start_paused = true)]
    async fn a_checkpoint_fails_once_and_the_count_restarts_after_too_many() {
        let mut t = CheckpointTracker::new("j", Duration::from_secs(1), 1);
        t.start(1, 2, Instant::now());
        t.start(2, 2, Instant::now());
        t.start(3, 2, Instant::now());
        t.fail(1, "declined by subtask 0").unwrap();
        // Declined again by another subtask, or unknown: not counted twice.
        t.fail(1, "declined by subtask 1").unwrap();
        t.fail(9, "never triggered").unwrap();
        let e = t.fail(2, "declined").unwrap_err();
        assert_eq!((e.failures, e.tolerable), (2, 1));
        // After the failover the count starts from zero.
        t.fail(3, "declined").unwrap();
    }

    #[tokio::test(start_paused = true)]
    async fn expiry_is_due_per_pending_checkpoint_and_spares_acknowledged_ones() {
        let mut t = CheckpointTracker::new("j", Duration::from_secs(10), 5);
        assert_eq!(t.next_expiry(), None);
        let t0 = Instant::now();
        t.start(1, 1, t0);
        t.start(2, 1, t0 + Duration::from_secs(3));
        assert_eq!(t.next_expiry(), Some(t0 + Duration::from_secs(10)));
        // All acknowledged (being stored): no expiry; its store has no timeout.
        assert!(matches!(t.ack(1, 0, json!(1)), Ack::AllAcked(_)));
        assert_eq!(t.next_expiry(), Some(t0 + Duration::from_secs(13)));
        assert!(t.expire(t0 + Duration::from_secs(12)).unwrap().is_empty());
        assert_eq!(t.expire(t0 + Duration::from_secs(13)).unwrap(), vec![2]);
        assert_eq!(t.pending_ids(), vec![1]);
        assert_eq!(t.next_expiry(), None);
    }
}
