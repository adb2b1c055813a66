//! One subtask: source → chain → files sink, driven by checkpoint barriers.
//!
//! The task owns its state and runs a `select!` loop over its command inbox (barriers,
//! completion notices, cancel) and the source: a rate-limited source pulls one batch per 10 ms
//! tick, an unlimited one pulls batch after batch, yielding to the runtime in between (the inbox
//! comes first in every round, so a barrier waits for at most one batch). On a barrier it snapshots source offset, operator state and sink (phase one of the
//! sink's commit) and acknowledges with that state; on a completion notice the sink commits.
//! When a bounded source is exhausted the task reports `Finished` and keeps serving barriers
//! and notices, so the final checkpoint commits the tail, until it is told to stop.

use std::time::Duration;

use serde::{Deserialize, Serialize};
use tokio::sync::mpsc;

use crate::job::graph::RunId;
use crate::job::operators::{Chain, OperatorState};
use crate::job::sink::{FileSink, SinkState};
use crate::job::source::{Source, SourceState};
use crate::job::spec::{SourceSpec, Step};
use crate::jobmanager::error::RuntimeError;
use crate::storage::Location;

/// Everything a subtask needs to run.
#[derive(Debug, Clone)]
pub struct TaskConfig {
    pub job_id: String,
    /// The job's run (what its part files are named by), the same in every attempt.
    pub run_id: RunId,
    pub subtask: u32,
    pub parallelism: u32,
    pub pipeline: Vec<Step>,
    pub sink_dir: Location,
    /// Upper bound of records per tick (keeps barriers prompt).
    pub batch: usize,
}

/// A subtask's checkpointed state.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SubtaskState {
    pub source: SourceState,
    pub operators: Vec<OperatorState>,
    pub sink: SinkState,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TaskCommand {
    /// Snapshot for this checkpoint and acknowledge.
    Barrier(u64),
    /// This checkpoint completed: commit.
    Complete(u64),
    /// Stop now (cancel, failover of the job, or done after the final checkpoint).
    Stop,
}

#[derive(Debug, Clone)]
pub enum TaskEvent {
    Ack {
        subtask: u32,
        checkpoint_id: u64,
        state: serde_json::Value,
    },
    /// The subtask cannot take part in this checkpoint but keeps running (Flink's
    /// `declineCheckpoint`): the checkpoint fails.
    Declined {
        subtask: u32,
        checkpoint_id: u64,
        reason: String,
    },
    /// The source is exhausted; everything emitted is in the sink's buffer.
    Finished {
        subtask: u32,
    },
    Failed {
        subtask: u32,
        error: RuntimeError,
    },
    /// Records emitted so far (progress).
    Progress {
        subtask: u32,
        records: u64,
    },
    /// The sink committed everything up to this checkpoint (the job may end after the final
    /// checkpoint only once every subtask has said so).
    Committed {
        subtask: u32,
        checkpoint_id: u64,
    },
}

/// Runs a subtask until `Stop` or a failure, starting from `restore` if given.
pub async fn run_task(
    cfg: TaskConfig,
    restore: Option<SubtaskState>,
    mut commands: mpsc::Receiver<TaskCommand>,
    events: mpsc::Sender<TaskEvent>,
) {
    let subtask = cfg.subtask;
    if let Err(error) = run(cfg, restore, &mut commands, &events).await {
        let _ = events.send(TaskEvent::Failed { subtask, error }).await;
    }
}

async fn run(
    cfg: TaskConfig,
    restore: Option<SubtaskState>,
    commands: &mut mpsc::Receiver<TaskCommand>,
    events: &mpsc::Sender<TaskEvent>,
) -> Result<(), RuntimeError> {
    let Some(Step::Source(source_spec)) = cfg.pipeline.first() else {
        return Err(RuntimeError::InvalidJob(
            "the pipeline has no source".into(),
        ));
    };
    let mut source = Source::new(source_spec, cfg.subtask, cfg.parallelism);
    let rate = match source_spec {
        SourceSpec::Sequence { rate, .. } => {
            rate.map(|r| (r / cfg.parallelism.max(1) as u64).max(1))
        }
        SourceSpec::TextFiles { .. } => None,
    };
    let mut chain = Chain::from_steps(&cfg.pipeline).map_err(RuntimeError::InvalidJob)?;
    let mut sink = FileSink::new(cfg.sink_dir.clone(), cfg.run_id.clone(), cfg.subtask);
    if let Some(state) = restore {
        source.restore(state.source).map_err(RuntimeError::Source)?;
        chain.restore(&state.operators);
        sink.restore(Some(&state.sink)).await?;
    } else {
        sink.restore(None).await?;
    }

    let tick = Duration::from_millis(10);
    let per_tick = match rate {
        Some(r) => ((r as f64 * tick.as_secs_f64()).ceil() as usize).clamp(1, cfg.batch),
        None => cfg.batch,
    };
    let mut interval = tokio::time::interval(tick);
    interval.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let limited = rate.is_some();
    let mut emitted: u64 = 0;
    let mut finished_reported = false;
    let mut batch = Vec::with_capacity(per_tick);
    let mut outputs = Vec::new();
    loop {
        tokio::select! {
            biased;
            cmd = commands.recv() => match cmd {
                Some(TaskCommand::Barrier(id)) => {
                    let sink_state = sink.snapshot(id).await?;
                    let state = SubtaskState {
                        source: source.snapshot(),
                        operators: chain.snapshot(),
                        sink: sink_state,
                    };
                    let state = serde_json::to_value(&state)
                        .map_err(|e| RuntimeError::bad_state(format!("checkpoint {id}: subtask state"), e))?;
                    send(events, TaskEvent::Ack { subtask: cfg.subtask, checkpoint_id: id, state }).await?;
                }
                Some(TaskCommand::Complete(id)) => {
                    sink.notify_complete(id).await?;
                    send(events, TaskEvent::Committed { subtask: cfg.subtask, checkpoint_id: id }).await?;
                }
                Some(TaskCommand::Stop) | None => return Ok(()),
            },
            _ = next_batch(&mut interval, limited), if !finished_reported => {
                batch.clear();
                source.poll(per_tick, &mut batch).await.map_err(RuntimeError::Source)?;
                for r in batch.drain(..) {
                    chain.process(r, None, &mut outputs)?;
                    for out in outputs.drain(..) {
                        sink.write_line(&out.to_line());
                    }
                    emitted += 1;
                }
                if source.finished() {
                    finished_reported = true;
                    send(events, TaskEvent::Progress { subtask: cfg.subtask, records: emitted }).await?;
                    send(events, TaskEvent::Finished { subtask: cfg.subtask }).await?;
                } else if emitted % 10_000 < per_tick as u64 {
                    // Awaited like every event: a full inbox slows the source, never loses one.
                    send(events, TaskEvent::Progress { subtask: cfg.subtask, records: emitted }).await?;
                }
            }
        }
    }
}

/// Reports `event`; a closed inbox means the job master (or the session) is gone, which ends
/// the subtask.
async fn send(events: &mpsc::Sender<TaskEvent>, event: TaskEvent) -> Result<(), RuntimeError> {
    events
        .send(event)
        .await
        .map_err(|_| RuntimeError::JobMasterGone)
}

/// When the source may emit its next batch: on the next tick when rate-limited, else as soon as
/// the runtime has run whatever else is ready.
async fn next_batch(interval: &mut tokio::time::Interval, limited: bool) {
    if limited {
        interval.tick().await;
    } else {
        tokio::task::yield_now().await;
    }
}

/// Parses a subtask's state from checkpoint metadata.
pub fn subtask_state(value: &serde_json::Value) -> Result<SubtaskState, RuntimeError> {
    serde_json::from_value(value.clone())
        .map_err(|e| RuntimeError::bad_state("subtask state", format!("unreadable: {e}")))
}

/// The sink states of a checkpoint's subtasks (`subtasks` as in its metadata), by subtask.
pub fn sink_states(
    subtasks: &std::collections::BTreeMap<u32, serde_json::Value>,
) -> Result<std::collections::BTreeMap<u32, SinkState>, RuntimeError> {
    subtasks
        .iter()
        .map(|(subtask, value)| Ok((*subtask, subtask_state(value)?.sink)))
        .collect()
}
