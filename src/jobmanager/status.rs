//! Job status, Flink's lifecycle, with every legal edge in one table.
//!
//! ```text
//! CREATED ──▶ RUNNING ──▶ FINISHED
//!    │          │ ╲
//!    │          │  ╲──▶ CANCELED
//!    │          ▼
//!    │       FAILING ──▶ RESTARTING ──▶ RUNNING
//!    │          │
//!    │          ▼
//!    │        FAILED
//!    └──▶ CANCELED, FAILED     any non-terminal ──▶ SUSPENDED (leadership lost; HA data kept)
//! ```

use serde::{Deserialize, Serialize};

/// Serialized as Flink spells it (`RUNNING`, ...): the REST API and the job result store use
/// these strings.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum JobStatus {
    /// Intermediate: accepted, not yet scheduled.
    #[default]
    Created,
    /// Intermediate: scheduled; subtasks deploy, run, checkpoint.
    Running,
    /// Intermediate: a subtask failed; the restart strategy decides (never observed between
    /// two events: it becomes RESTARTING or FAILED at once).
    Failing,
    /// Intermediate: failed subtasks wait out their restart delay; further failures only add
    /// pending restarts.
    Restarting,
    /// Terminal (globally): the final checkpoint is committed.
    Finished,
    /// Terminal (globally).
    Canceled,
    /// Terminal (globally): no more restarts, or a fatal error.
    Failed,
    /// Terminal for this JobManager only: leadership lost, HA data kept for the next leader.
    Suspended,
}

impl JobStatus {
    /// FINISHED, CANCELED, FAILED: the job is over for good and its HA data may go.
    pub fn is_globally_terminal(self) -> bool {
        matches!(
            self,
            JobStatus::Finished | JobStatus::Canceled | JobStatus::Failed
        )
    }

    /// Terminal for this JobManager (SUSPENDED: another leader takes over).
    pub fn is_terminal(self) -> bool {
        self.is_globally_terminal() || self == JobStatus::Suspended
    }

    pub fn as_str(self) -> &'static str {
        match self {
            JobStatus::Created => "CREATED",
            JobStatus::Running => "RUNNING",
            JobStatus::Failing => "FAILING",
            JobStatus::Restarting => "RESTARTING",
            JobStatus::Finished => "FINISHED",
            JobStatus::Canceled => "CANCELED",
            JobStatus::Failed => "FAILED",
            JobStatus::Suspended => "SUSPENDED",
        }
    }

    /// Whether `self → to` is a legal transition.
    pub fn can_become(self, to: JobStatus) -> bool {
        use JobStatus::*;
        if self.is_terminal() {
            return false;
        }
        matches!(
            (self, to),
            (Created, Running)
                | (Created, Canceled)
                | (Created, Failed)
                | (Running, Finished)
                | (Running, Failing)
                | (Running, Canceled)
                | (Failing, Restarting)
                | (Failing, Failed)
                | (Failing, Canceled)
                | (Restarting, Running)
                | (Restarting, Canceled)
                | (Restarting, Failed)
                | (_, Suspended)
        )
    }
}

impl std::fmt::Display for JobStatus {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A job's status with its one transition function, which logs every change.
#[derive(Debug, Clone)]
pub struct JobLifecycle {
    pub job_id: String,
    status: JobStatus,
    since: std::time::Instant,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("job {job_id}: illegal transition {from} -> {to}")]
pub struct IllegalTransition {
    pub job_id: String,
    pub from: JobStatus,
    pub to: JobStatus,
}

impl JobLifecycle {
    pub fn new(job_id: &str) -> JobLifecycle {
        JobLifecycle {
            job_id: job_id.to_string(),
            status: JobStatus::Created,
            since: std::time::Instant::now(),
        }
    }

    pub fn status(&self) -> JobStatus {
        self.status
    }

    /// The only way to change status.
    pub fn transition(&mut self, to: JobStatus) -> Result<(), IllegalTransition> {
        if !self.status.can_become(to) {
            return Err(IllegalTransition {
                job_id: self.job_id.clone(),
                from: self.status,
                to,
            });
        }
        tracing::info!(
            job_id = %self.job_id,
            from = %self.status,
            to = %to,
            after_ms = self.since.elapsed().as_millis() as u64,
            "job status changed"
        );
        self.status = to;
        self.since = std::time::Instant::now();
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::JobStatus::*;
    use super::*;

    #[test]
    fn transition_table() {
        let all = [
            Created, Running, Failing, Restarting, Finished, Canceled, Failed, Suspended,
        ];
        let legal = [
            (Created, Running),
            (Created, Canceled),
            (Created, Failed),
            (Created, Suspended),
            (Running, Finished),
            (Running, Failing),
            (Running, Canceled),
            (Running, Suspended),
            (Failing, Restarting),
            (Failing, Failed),
            (Failing, Canceled),
            (Failing, Suspended),
            (Restarting, Running),
            (Restarting, Canceled),
            (Restarting, Failed),
            (Restarting, Suspended),
        ];
        for from in all {
            for to in all {
                assert_eq!(
                    from.can_become(to),
                    legal.contains(&(from, to)),
                    "{from} -> {to}"
                );
            }
        }
    }

    #[test]
    fn lifecycle_refuses_illegal_edges() {
        let mut l = JobLifecycle::new("j");
        l.transition(Running).unwrap();
        l.transition(Failing).unwrap();
        l.transition(Restarting).unwrap();
        l.transition(Running).unwrap();
        l.transition(Finished).unwrap();
        let e = l.transition(Running).unwrap_err();
        assert_eq!(
            e.to_string(),
            "job j: illegal transition FINISHED -> RUNNING"
        );
        assert!(Finished.is_globally_terminal() && !Suspended.is_globally_terminal());
    }
}
