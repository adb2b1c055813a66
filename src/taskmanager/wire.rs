//! The one place where subtask commands and events meet the gRPC messages of
//! `proto/yarnflow/control.proto`: both ends of the session (the JobManager's
//! [`TaskManagerPool`](crate::jobmanager::taskmanagers::TaskManagerPool) and the TaskManager's
//! [`executor`](super::executor)) convert through these impls and nowhere else.
//!
//! On the wire every message names its job and subtask; in the runtime a subtask's channel
//! already does, so [`SubtaskCommand`] and [`JobEvent`] add the address back.

use super::exchange::Exchange;
use super::task::{SubtaskState, TaskCommand, TaskConfig, TaskEvent};
use crate::control::{self, job_manager_message, task_manager_message};
use crate::job::graph::RunId;
use crate::job::spec::Step;
use crate::jobmanager::error::RuntimeError;
use crate::storage::Location;

/// A command for one subtask, as the JobManager sends it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SubtaskCommand {
    pub job_id: String,
    pub subtask: u32,
    pub command: TaskCommand,
}

/// A subtask's event with the job it belongs to, as the TaskManager reports it.
#[derive(Debug, Clone)]
pub struct JobEvent {
    pub job_id: String,
    pub event: TaskEvent,
}

impl From<SubtaskCommand> for job_manager_message::Kind {
    fn from(c: SubtaskCommand) -> Self {
        let (job_id, subtask) = (c.job_id, c.subtask);
        match c.command {
            TaskCommand::Barrier(checkpoint_id) => {
                job_manager_message::Kind::Barrier(control::Barrier {
                    job_id,
                    subtask,
                    checkpoint_id,
                })
            }
            TaskCommand::Complete(checkpoint_id) => {
                job_manager_message::Kind::Complete(control::Complete {
                    job_id,
                    subtask,
                    checkpoint_id,
                })
            }
            TaskCommand::Stop => job_manager_message::Kind::Stop(control::Stop { job_id, subtask }),
        }
    }
}

impl TryFrom<job_manager_message::Kind> for SubtaskCommand {
    /// Not a subtask command (`Registered`, `Deploy`): handed back to the caller.
    type Error = job_manager_message::Kind;

    fn try_from(kind: job_manager_message::Kind) -> Result<Self, Self::Error> {
        let (job_id, subtask, command) = match kind {
            job_manager_message::Kind::Barrier(b) => {
                (b.job_id, b.subtask, TaskCommand::Barrier(b.checkpoint_id))
            }
            job_manager_message::Kind::Complete(c) => {
                (c.job_id, c.subtask, TaskCommand::Complete(c.checkpoint_id))
            }
            job_manager_message::Kind::Stop(s) => (s.job_id, s.subtask, TaskCommand::Stop),
            other => return Err(other),
        };
        Ok(SubtaskCommand {
            job_id,
            subtask,
            command,
        })
    }
}

impl TryFrom<JobEvent> for task_manager_message::Kind {
    /// Every event goes on the wire (the error type stays for events that may not).
    type Error = JobEvent;

    fn try_from(e: JobEvent) -> Result<Self, Self::Error> {
        let job_id = e.job_id;
        Ok(match e.event {
            TaskEvent::Ack {
                subtask,
                checkpoint_id,
                state,
            } => task_manager_message::Kind::Ack(control::Ack {
                job_id,
                subtask,
                checkpoint_id,
                state_json: state.to_string(),
            }),
            TaskEvent::Finished { subtask } => {
                task_manager_message::Kind::Finished(control::SubtaskFinished { job_id, subtask })
            }
            TaskEvent::Declined {
                subtask,
                checkpoint_id,
                reason,
            } => task_manager_message::Kind::Declined(control::SubtaskDeclined {
                job_id,
                subtask,
                checkpoint_id,
                reason,
            }),
            TaskEvent::Failed { subtask, error } => {
                task_manager_message::Kind::Failed(control::SubtaskFailed {
                    job_id,
                    subtask,
                    error: error.to_string(),
                })
            }
            TaskEvent::Committed {
                subtask,
                checkpoint_id,
            } => task_manager_message::Kind::Committed(control::SubtaskCommitted {
                job_id,
                subtask,
                checkpoint_id,
            }),
            TaskEvent::Progress { subtask, records } => {
                task_manager_message::Kind::Progress(control::SubtaskProgress {
                    job_id,
                    subtask,
                    records,
                })
            }
        })
    }
}

impl TryFrom<task_manager_message::Kind> for JobEvent {
    /// [`RuntimeError::BadAck`] for an acknowledgement whose state does not parse (it names the
    /// job and subtask, which then fails); [`RuntimeError::Session`] for a second `Register`
    /// or a heartbeat response (the session's own business, not a job's).
    type Error = RuntimeError;

    fn try_from(kind: task_manager_message::Kind) -> Result<Self, Self::Error> {
        let (job_id, event) = match kind {
            task_manager_message::Kind::Ack(a) => {
                let state =
                    serde_json::from_str(&a.state_json).map_err(|e| RuntimeError::BadAck {
                        job_id: a.job_id.clone(),
                        subtask: a.subtask,
                        checkpoint_id: a.checkpoint_id,
                        message: e.to_string(),
                    })?;
                let event = TaskEvent::Ack {
                    subtask: a.subtask,
                    checkpoint_id: a.checkpoint_id,
                    state,
                };
                (a.job_id, event)
            }
            task_manager_message::Kind::Committed(c) => (
                c.job_id,
                TaskEvent::Committed {
                    subtask: c.subtask,
                    checkpoint_id: c.checkpoint_id,
                },
            ),
            task_manager_message::Kind::Finished(f) => {
                (f.job_id, TaskEvent::Finished { subtask: f.subtask })
            }
            task_manager_message::Kind::Progress(p) => (
                p.job_id,
                TaskEvent::Progress {
                    subtask: p.subtask,
                    records: p.records,
                },
            ),
            task_manager_message::Kind::Declined(d) => (
                d.job_id,
                TaskEvent::Declined {
                    subtask: d.subtask,
                    checkpoint_id: d.checkpoint_id,
                    reason: d.reason,
                },
            ),
            task_manager_message::Kind::Failed(f) => (
                f.job_id,
                TaskEvent::Failed {
                    subtask: f.subtask,
                    error: RuntimeError::Remote(f.error),
                },
            ),
            task_manager_message::Kind::Heartbeat(h) => {
                return Err(RuntimeError::Session(format!(
                    "heartbeat response {} is no job event",
                    h.sequence
                )));
            }
            task_manager_message::Kind::Register(r) => {
                return Err(RuntimeError::Session(format!(
                    "TaskManager {} registered again within its session",
                    r.taskmanager_id
                )));
            }
        };
        Ok(JobEvent { job_id, event })
    }
}

/// The TaskManager's answer to a heartbeat request: its sequence and send time echoed.
pub fn heartbeat_response(request: &control::HeartbeatRequest) -> task_manager_message::Kind {
    task_manager_message::Kind::Heartbeat(control::HeartbeatResponse {
        sequence: request.sequence,
        request_sent_at_ms: request.sent_at_ms,
    })
}

/// A deployment as it goes down the session: the pipeline and the restore state as JSON.
pub fn deploy_message(
    config: &TaskConfig,
    restore: Option<&SubtaskState>,
) -> Result<control::Deploy, RuntimeError> {
    let spec_json = serde_json::to_string(&config.pipeline)
        .map_err(|e| RuntimeError::InvalidJob(format!("bad job spec: {e}")))?;
    let restore_json = match restore {
        Some(r) => serde_json::to_string(r)
            .map_err(|e| RuntimeError::bad_state("restore state", format!("bad: {e}")))?,
        None => String::new(),
    };
    let exchange_json = if config.exchange == Exchange::single(config.subtask) {
        String::new()
    } else {
        serde_json::to_string(&config.exchange)
            .map_err(|e| RuntimeError::InvalidJob(format!("bad exchange: {e}")))?
    };
    Ok(control::Deploy {
        job_id: config.job_id.clone(),
        subtask: config.subtask,
        parallelism: config.parallelism,
        spec_json,
        sink_uri: config.sink_dir.uri(),
        restore_json,
        run_id: config.run_id.to_string(),
        exchange_json,
        checkpoint_dir_uri: config
            .checkpoint_dir
            .as_ref()
            .map(Location::uri)
            .unwrap_or_default(),
        attempt: config.attempt,
    })
}

/// A received deployment's stage and edges.
pub fn exchange(d: &control::Deploy) -> Result<Exchange, RuntimeError> {
    if d.exchange_json.is_empty() {
        return Ok(Exchange::single(d.subtask));
    }
    serde_json::from_str(&d.exchange_json)
        .map_err(|e| RuntimeError::InvalidJob(format!("bad exchange in the deployment: {e}")))
}

/// The pipeline and restore state of a received deployment (opening the sink is the caller's
/// I/O).
pub fn deployment(d: &control::Deploy) -> Result<(Vec<Step>, Option<SubtaskState>), RuntimeError> {
    let pipeline: Vec<Step> = serde_json::from_str(&d.spec_json)
        .map_err(|e| RuntimeError::InvalidJob(format!("bad job spec: {e}")))?;
    let restore = if d.restore_json.is_empty() {
        None
    } else {
        Some(
            serde_json::from_str(&d.restore_json)
                .map_err(|e| RuntimeError::bad_state("restore state", format!("bad: {e}")))?,
        )
    };
    Ok((pipeline, restore))
}

/// The checkpoint directory of a received deployment (`None`: the JobManager has none; a keyed
/// subtask then fails at start, naming the key).
pub async fn checkpoint_dir(d: &control::Deploy) -> Result<Option<Location>, RuntimeError> {
    if d.checkpoint_dir_uri.is_empty() {
        return Ok(None);
    }
    Ok(Some(crate::storage::open(&d.checkpoint_dir_uri).await?))
}

/// The run id of a received deployment; one from a JobManager that sends none is derived from
/// the job id, as for a job graph stored without one.
pub fn run_id(d: &control::Deploy) -> Result<RunId, RuntimeError> {
    if d.run_id.is_empty() {
        return Ok(RunId::for_legacy_job(&d.job_id));
    }
    RunId::parse(&d.run_id).map_err(RuntimeError::InvalidJob)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn commands_round_trip() {
        for command in [
            TaskCommand::Barrier(3),
            TaskCommand::Complete(3),
            TaskCommand::Stop,
        ] {
            let c = SubtaskCommand {
                job_id: "j".into(),
                subtask: 2,
                command,
            };
            let kind = job_manager_message::Kind::from(c.clone());
            assert_eq!(SubtaskCommand::try_from(kind).unwrap(), c);
        }
        let registered = job_manager_message::Kind::Registered(control::Registered::default());
        assert!(SubtaskCommand::try_from(registered).is_err());
    }

    #[test]
    fn events_round_trip_and_progress_stays_local() {
        let ack = JobEvent {
            job_id: "j".into(),
            event: TaskEvent::Ack {
                subtask: 1,
                checkpoint_id: 4,
                state: json!({"offset": 9}),
            },
        };
        let kind = task_manager_message::Kind::try_from(ack).unwrap();
        let back = JobEvent::try_from(kind).unwrap();
        assert_eq!(back.job_id, "j");
        assert!(matches!(
            back.event,
            TaskEvent::Ack { subtask: 1, checkpoint_id: 4, ref state } if state == &json!({"offset": 9})
        ));
        let failed = JobEvent {
            job_id: "j".into(),
            event: TaskEvent::Failed {
                subtask: 0,
                error: RuntimeError::Source("file:///x: no such file".into()),
            },
        };
        let kind = task_manager_message::Kind::try_from(failed).unwrap();
        let TaskEvent::Failed { error, .. } = JobEvent::try_from(kind).unwrap().event else {
            panic!("failed")
        };
        assert_eq!(error.to_string(), "file:///x: no such file");
        let declined = JobEvent {
            job_id: "j".into(),
            event: TaskEvent::Declined {
                subtask: 1,
                checkpoint_id: 5,
                reason: "no".into(),
            },
        };
        let kind = task_manager_message::Kind::try_from(declined).unwrap();
        assert!(matches!(
            JobEvent::try_from(kind).unwrap().event,
            TaskEvent::Declined { subtask: 1, checkpoint_id: 5, ref reason } if reason == "no"
        ));
        let heartbeat = wire_heartbeat();
        assert!(
            JobEvent::try_from(heartbeat).is_err(),
            "a heartbeat is no job event"
        );
        let progress = JobEvent {
            job_id: "j".into(),
            event: TaskEvent::Progress {
                subtask: 0,
                records: 5,
            },
        };
        let kind = task_manager_message::Kind::try_from(progress).unwrap();
        assert!(matches!(
            JobEvent::try_from(kind).unwrap().event,
            TaskEvent::Progress {
                subtask: 0,
                records: 5
            }
        ));
    }

    fn wire_heartbeat() -> task_manager_message::Kind {
        let request = control::HeartbeatRequest {
            sequence: 7,
            sent_at_ms: 1234,
        };
        let kind = heartbeat_response(&request);
        let task_manager_message::Kind::Heartbeat(r) = &kind else {
            panic!("a heartbeat response")
        };
        assert_eq!((r.sequence, r.request_sent_at_ms), (7, 1234));
        kind
    }

    #[test]
    fn an_unreadable_ack_state_is_an_error_naming_the_subtask() {
        let kind = task_manager_message::Kind::Ack(control::Ack {
            job_id: "j".into(),
            subtask: 3,
            checkpoint_id: 8,
            state_json: "{not json".into(),
        });
        let e = JobEvent::try_from(kind).unwrap_err();
        assert!(matches!(e, RuntimeError::BadAck { subtask: 3, .. }));
        assert!(
            e.to_string()
                .starts_with("checkpoint 8: subtask 3 acknowledged unreadable state"),
            "{e}"
        );
    }
}
