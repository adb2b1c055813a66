//! The runtime's one error type: why a subtask, a deployment, a checkpoint or a job failed,
//! classified so the job master never matches on strings.
//!
//! The `Display` texts are what users read (job failures, the REST API's exceptions, the AM's
//! diagnostics); keep them stable.

use std::time::Duration;

use crate::ha::HaError;
use crate::storage::StorageError;

#[derive(Debug, Clone, thiserror::Error)]
#[non_exhaustive]
pub enum RuntimeError {
    /// No TaskManager offered a free slot within `slot.request.timeout`.
    #[error("no free TaskManager slot within {timeout:?} (slot request timeout)")]
    SlotRequestTimeout { timeout: Duration },
    /// The TaskManager running the subtask was lost: its session ended (it died or hung up),
    /// or nothing was heard from it for `heartbeat.timeout` (frozen, paused, partitioned).
    #[error("TaskManager {taskmanager} was lost: {cause}")]
    TaskManagerLost {
        taskmanager: String,
        cause: LossCause,
    },
    /// A subtask could not be deployed; the cause says why.
    #[error("cannot deploy: {0}")]
    Deploy(Box<RuntimeError>),
    /// The TaskManager's session ended while a deployment was on its way.
    #[error("the TaskManager went away during deployment")]
    DeploymentInterrupted,
    /// State that cannot be used: unreadable checkpoint metadata, subtask or acknowledged
    /// state. `what` names it ("checkpoint 7", "restore state").
    #[error("{what}: {message}")]
    BadState { what: String, message: String },
    /// A subtask's acknowledgement carried unreadable state: the subtask fails.
    #[error(
        "checkpoint {checkpoint_id}: subtask {subtask} acknowledged unreadable state: {message}"
    )]
    BadAck {
        job_id: String,
        subtask: u32,
        checkpoint_id: u64,
        message: String,
    },
    /// The job's definition cannot run (no source, unparseable pipeline).
    #[error("{0}")]
    InvalidJob(String),
    /// The source failed (a missing input file, ...); its message names what and where.
    #[error("{0}")]
    Source(String),
    /// The keyed exchange failed (a lost data connection, a producer gone, a record that does
    /// not decode): the subtask fails, and with it its connected region.
    #[error("keyed exchange: {0}")]
    Network(#[from] crate::network::NetworkError),
    /// An operator failed on a record (its keyed state refused it, a value does not decode).
    #[error("operator {operator}: {message}")]
    Operator { operator: String, message: String },
    /// A subtask's keyed state failed: a key routed to a subtask that does not own its key
    /// group, a snapshot that cannot be written, or one to restore that is missing or corrupt
    /// (the message names the file and what is wrong).
    #[error("keyed state: {0}")]
    State(#[from] crate::state::StateError),
    /// The sink's storage failed.
    #[error(transparent)]
    Storage(#[from] StorageError),
    /// The HA services failed (storing a checkpoint, drawing a checkpoint id, ...).
    #[error(transparent)]
    Ha(#[from] HaError),
    /// Checkpoints failed more often in a row than tolerated.
    #[error(transparent)]
    CheckpointFailures(#[from] TooManyFailures),
    /// The restart strategy gave up after this subtask failure.
    #[error(
        "subtask {subtask} failed and the {strategy} restart strategy allows no more restarts: {cause}"
    )]
    NoMoreRestarts {
        subtask: u32,
        strategy: &'static str,
        cause: Box<RuntimeError>,
    },
    /// The restart strategy gave up after a failover of the whole job (e.g. more checkpoint
    /// failures in a row than tolerated).
    #[error(
        "the job failed over and the {strategy} restart strategy allows no more restarts: {cause}"
    )]
    JobFailoverRefused {
        strategy: &'static str,
        cause: Box<RuntimeError>,
    },
    /// The subtask was killed on purpose (tests, a lost process simulated).
    #[error("the subtask was killed")]
    Killed,
    /// The subtask's job master (or, remotely, its session) is gone: nobody takes its events.
    #[error("the job master is gone")]
    JobMasterGone,
    /// A failure as a TaskManager reported it (its text crossed the wire).
    #[error("{0}")]
    Remote(String),
    /// The JobManager <-> TaskManager session could not be set up or ended.
    #[error("{0}")]
    Session(String),
    /// A bug: the job state machine refused a transition.
    #[error("internal error: {0}")]
    Internal(String),
}

/// Why a job's latest checkpoint could not be recovered. Never read as "no checkpoint": the
/// job master ends SUSPENDED with this as its failure (not globally terminal: no job result,
/// the HA data stays for `yarnflow ha inspect` and for the next attempt or leader).
#[derive(Debug, Clone, thiserror::Error)]
pub enum RecoveryError {
    /// Reading checkpoint ids, a pointer or a blob failed, and kept failing for the bounded
    /// retries (transient errors), or at once (permission denied, ...).
    #[error(
        "cannot recover job {job_id}: the checkpoint store could not be read ({tries} tries): {error}"
    )]
    Unreadable {
        job_id: String,
        tries: u64,
        error: HaError,
    },
    /// The newest checkpoint is proven corrupt (undecodable pointer or metadata, length or
    /// CRC mismatch, missing blob), and falling back to an older one is not enabled.
    #[error(
        "cannot recover job {job_id}: checkpoint {checkpoint_id} ({location}) is corrupt: {message}; not falling back to an older checkpoint (execution.checkpointing.recover-from-older-on-corruption: false); the HA data is kept, see `yarnflow ha inspect`"
    )]
    Corrupt {
        job_id: String,
        checkpoint_id: u64,
        location: String,
        message: String,
    },
    /// Falling back is enabled, but every retained checkpoint is corrupt: starting from
    /// scratch would duplicate every committed record.
    #[error(
        "cannot recover job {job_id}: every retained checkpoint is corrupt ({skipped}); the HA data is kept, see `yarnflow ha inspect`"
    )]
    AllCorrupt { job_id: String, skipped: String },
}

impl RecoveryError {
    /// The store refused us because we no longer lead: a plain suspension, not a failure.
    pub fn is_lost_leadership(&self) -> bool {
        matches!(self, RecoveryError::Unreadable { error, .. } if error.lost_leadership())
    }
}

/// Why a TaskManager was declared lost.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum LossCause {
    /// Its session ended: the process died, closed the stream, or the connection broke.
    #[error("its session ended")]
    SessionEnded,
    /// Nothing (no heartbeat response, no other message) arrived for this long.
    #[error("heartbeat timeout: nothing heard for {0:?} (heartbeat.timeout)")]
    HeartbeatTimeout(Duration),
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

impl RuntimeError {
    /// Wraps a deployment's cause.
    pub fn deploy(cause: RuntimeError) -> RuntimeError {
        RuntimeError::Deploy(Box::new(cause))
    }

    /// Unusable state, named by `what`.
    pub fn bad_state(what: impl Into<String>, message: impl std::fmt::Display) -> RuntimeError {
        RuntimeError::BadState {
            what: what.into(),
            message: message.to_string(),
        }
    }

    /// This JobManager is no longer the leader: the job is SUSPENDED, not failed, and its
    /// successor recovers it.
    pub fn is_lost_leadership(&self) -> bool {
        match self {
            RuntimeError::Ha(e) => e.lost_leadership(),
            RuntimeError::Deploy(cause) => cause.is_lost_leadership(),
            _ => false,
        }
    }

    /// The subtask's TaskManager (or its session) went away, rather than the subtask failing.
    pub fn is_taskmanager_lost(&self) -> bool {
        match self {
            RuntimeError::TaskManagerLost { .. } | RuntimeError::DeploymentInterrupted => true,
            RuntimeError::Deploy(cause) => cause.is_taskmanager_lost(),
            _ => false,
        }
    }

    /// Lack of resources (no slot in time), which more TaskManagers would cure.
    pub fn is_resource_shortage(&self) -> bool {
        match self {
            RuntimeError::SlotRequestTimeout { .. } => true,
            RuntimeError::Deploy(cause) => cause.is_resource_shortage(),
            _ => false,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn messages_users_see_stay_put() {
        let slot = RuntimeError::deploy(RuntimeError::SlotRequestTimeout {
            timeout: Duration::from_secs(60),
        });
        assert_eq!(
            slot.to_string(),
            "cannot deploy: no free TaskManager slot within 60s (slot request timeout)"
        );
        assert!(slot.is_resource_shortage() && !slot.is_lost_leadership());
        let lost = RuntimeError::TaskManagerLost {
            taskmanager: "tm-1".into(),
            cause: LossCause::HeartbeatTimeout(Duration::from_secs(5)),
        };
        assert_eq!(
            lost.to_string(),
            "TaskManager tm-1 was lost: heartbeat timeout: nothing heard for 5s (heartbeat.timeout)"
        );
        assert!(lost.is_taskmanager_lost());
        let fenced = RuntimeError::from(HaError::NotLeader("fenced".into()));
        assert!(fenced.is_lost_leadership());
        let exhausted = RuntimeError::NoMoreRestarts {
            subtask: 1,
            strategy: "none",
            cause: Box::new(RuntimeError::Killed),
        };
        assert_eq!(
            exhausted.to_string(),
            "subtask 1 failed and the none restart strategy allows no more restarts: the subtask was killed"
        );
    }
}
