//! One job master: runs a job's subtasks, triggers checkpoints, completes them through the HA
//! checkpoint store, restarts a failed subtask alone (region failover: every subtask is its own
//! region with forward edges) under the restart strategy, and cleans up when the job is
//! globally terminal.
//!
//! This version runs subtasks as tasks of this process; the TaskManager processes deploy the
//! same [`crate::taskmanager::task`] remotely.

use std::collections::BTreeMap;
use std::time::Duration;

use bytes::Bytes;
use tokio::sync::mpsc;
use tokio::task::JoinHandle;
use tokio::time::Instant;

use super::checkpoint::{Ack, CheckpointMetadata, CheckpointTracker};
use super::restart::RestartStrategy;
use super::status::{JobLifecycle, JobStatus};
use crate::ha::{HaServices, JobResultEntry, StoredCheckpoint};
use crate::job::spec::JobSpec;
use crate::storage::Location;
use crate::taskmanager::task::{self, SubtaskState, TaskCommand, TaskConfig, TaskEvent};

#[derive(Clone)]
pub struct JobMasterConfig {
    pub spec: JobSpec,
    pub sink_dir: Location,
    pub restart: RestartStrategy,
    pub checkpoint_timeout: Duration,
    pub tolerable_failed_checkpoints: u32,
    pub runtime: std::sync::Arc<dyn TaskRuntime>,
    /// Cancelled when this JobManager loses leadership: the job is SUSPENDED (not globally
    /// terminal, so nothing is cleaned up) and the next leader recovers it.
    pub leadership: tokio_util::sync::CancellationToken,
    /// The job graph is already in the HA job graph store (submitted by the dispatcher, or
    /// recovered from it); otherwise the job master persists it first.
    pub graph_persisted: bool,
}

impl JobMasterConfig {
    /// The job master settings the configuration gives (restart strategy, checkpoint timeout
    /// and tolerable failures) for `spec`, writing to `sink_dir` through `runtime`.
    pub fn from_config(
        config: &crate::config::Config,
        spec: JobSpec,
        sink_dir: Location,
        runtime: std::sync::Arc<dyn TaskRuntime>,
        leadership: tokio_util::sync::CancellationToken,
    ) -> Result<JobMasterConfig, crate::config::ConfigError> {
        Ok(JobMasterConfig {
            restart: RestartStrategy::from_config(config, spec.checkpoint_interval().is_some())?,
            checkpoint_timeout: config
                .duration("execution.checkpointing.timeout")?
                .unwrap_or(Duration::from_secs(600)),
            tolerable_failed_checkpoints: config
                .u64("execution.checkpointing.tolerable-failed-checkpoints")?
                .unwrap_or(0) as u32,
            spec,
            sink_dir,
            runtime,
            leadership,
            graph_persisted: false,
        })
    }
}

/// How the job ended.
#[derive(Debug, Clone)]
pub struct JobOutcome {
    pub job_id: String,
    pub status: JobStatus,
    pub restarts: u32,
    pub failure: Option<String>,
    pub completed_checkpoints: u64,
    pub checkpoint_durations: Vec<Duration>,
    pub restored_from: Option<u64>,
    /// Every subtask failure, in order (what the REST API shows as exceptions).
    pub failures: Vec<String>,
}

/// A deployed subtask as the job master sees it.
pub struct Deployed {
    pub commands: mpsc::Sender<TaskCommand>,
    /// Ends when the subtask (or, remotely, its forwarder) ends; aborting it kills the subtask.
    pub handle: JoinHandle<()>,
}

/// Where subtasks run: in this process, or on TaskManagers (Flink's slot pool + deployment).
#[async_trait::async_trait]
pub trait TaskRuntime: Send + Sync {
    async fn deploy(
        &self,
        config: TaskConfig,
        restore: Option<SubtaskState>,
        events: mpsc::Sender<TaskEvent>,
    ) -> Result<Deployed, String>;
}

/// Subtasks as tasks of this process.
pub struct InProcess;

#[async_trait::async_trait]
impl TaskRuntime for InProcess {
    async fn deploy(
        &self,
        config: TaskConfig,
        restore: Option<SubtaskState>,
        events: mpsc::Sender<TaskEvent>,
    ) -> Result<Deployed, String> {
        let (tx, rx) = mpsc::channel(64);
        let handle = tokio::spawn(task::run_task(config, restore, rx, events));
        Ok(Deployed {
            commands: tx,
            handle,
        })
    }
}

type Running = Deployed;

/// Control of a running job master (tests, cancel).
#[derive(Clone)]
pub struct JobMasterHandle {
    kill: mpsc::Sender<u32>,
    cancel: mpsc::Sender<()>,
    /// The job as the REST API shows it, updated as it changes.
    pub snapshot: tokio::sync::watch::Receiver<JobSnapshot>,
}

/// What `/jobs/{id}` and `/jobs/{id}/checkpoints` show.
#[derive(Debug, Clone, Default, serde::Serialize)]
pub struct JobSnapshot {
    pub job_id: String,
    pub name: String,
    pub status: String,
    pub parallelism: u32,
    pub restarts: u32,
    /// Every subtask failure so far; the last one is the root cause of a FAILED job.
    pub exceptions: Vec<String>,
    pub failure: Option<String>,
    pub completed_checkpoints: u64,
    pub latest_checkpoint_id: Option<u64>,
    pub restored_from_checkpoint: Option<u64>,
    pub checkpoint_duration_ms_p50: Option<u64>,
    pub checkpoint_duration_ms_max: Option<u64>,
    /// Trigger-to-completion time of the latest completed checkpoint.
    pub last_checkpoint_duration_ms: Option<u64>,
    /// When this JobManager saw the latest checkpoint complete (ms since the Unix epoch).
    pub latest_checkpoint_completed_ms: Option<u64>,
}

impl JobSnapshot {
    /// Terminal for this JobManager: FINISHED, CANCELED, FAILED or SUSPENDED.
    pub fn status_is_terminal(&self) -> bool {
        matches!(
            self.status.as_str(),
            "FINISHED" | "CANCELED" | "FAILED" | "SUSPENDED"
        )
    }
}

impl JobMasterHandle {
    /// Kills one subtask abruptly, as a lost TaskManager would.
    pub async fn kill_subtask(&self, subtask: u32) {
        let _ = self.kill.send(subtask).await;
    }

    pub async fn cancel(&self) {
        let _ = self.cancel.send(()).await;
    }
}

fn now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or_default()
}

/// Removes a globally terminal job's HA data in the safe order: its graph, then its
/// checkpoints, then its checkpoint id counter. (The job result store entry is the caller's.)
pub async fn remove_job_ha_data(ha: &HaServices, job_id: &str) -> Result<(), crate::ha::HaError> {
    ha.job_graphs.remove(job_id).await?;
    let f = &ha.checkpoint_store_factory;
    f.checkpoint_store(job_id).shutdown(true).await?;
    f.checkpoint_id_counter(job_id).shutdown(true).await
}

/// Recovers the latest readable checkpoint, falling back to older ones (and saying so).
async fn latest_checkpoint(ha: &HaServices, job_id: &str) -> Option<CheckpointMetadata> {
    let store = ha.checkpoint_store_factory.checkpoint_store(job_id);
    let ids = store.checkpoint_ids().await.ok()?;
    for id in ids.iter().rev() {
        match store.get(*id).await {
            Ok(c) => match CheckpointMetadata::from_bytes(&c.metadata, &id.to_string()) {
                Ok(m) => return Some(m),
                Err(e) => {
                    tracing::warn!(job_id, checkpoint_id = id, error = %e, "checkpoint unreadable, falling back to an older one")
                }
            },
            Err(e) => {
                tracing::warn!(job_id, checkpoint_id = id, error = %e, "checkpoint unreadable, falling back to an older one")
            }
        }
    }
    None
}

/// Starts the job master; it runs until the job is terminal.
pub fn start(cfg: JobMasterConfig, ha: HaServices) -> (JobMasterHandle, JoinHandle<JobOutcome>) {
    let (kill_tx, kill_rx) = mpsc::channel(8);
    let (cancel_tx, cancel_rx) = mpsc::channel(1);
    let (snap_tx, snap_rx) = tokio::sync::watch::channel(JobSnapshot {
        job_id: cfg.spec.job_id(),
        name: cfg.spec.name.clone(),
        status: JobStatus::Created.to_string(),
        parallelism: cfg.spec.parallelism,
        ..Default::default()
    });
    let handle = tokio::spawn(run(cfg, ha, kill_rx, cancel_rx, snap_tx));
    (
        JobMasterHandle {
            kill: kill_tx,
            cancel: cancel_tx,
            snapshot: snap_rx,
        },
        handle,
    )
}

async fn run(
    cfg: JobMasterConfig,
    ha: HaServices,
    mut kill_rx: mpsc::Receiver<u32>,
    mut cancel_rx: mpsc::Receiver<()>,
    snapshot: tokio::sync::watch::Sender<JobSnapshot>,
) -> JobOutcome {
    let publish = |status: JobStatus, outcome: &JobOutcome, tracker: &CheckpointTracker| {
        let mut d: Vec<u64> = tracker
            .durations
            .iter()
            .map(|d| d.as_millis() as u64)
            .collect();
        let last = d.last().copied();
        d.sort_unstable();
        snapshot.send_modify(|s| {
            if tracker.latest_completed.is_some()
                && s.latest_checkpoint_id != tracker.latest_completed
            {
                s.latest_checkpoint_completed_ms = Some(now_ms());
                s.last_checkpoint_duration_ms = last;
            }
            s.status = status.to_string();
            s.restarts = outcome.restarts;
            s.exceptions = outcome.failures.clone();
            s.failure = outcome.failure.clone();
            s.completed_checkpoints = outcome.completed_checkpoints;
            s.latest_checkpoint_id = tracker.latest_completed;
            s.restored_from_checkpoint = outcome.restored_from;
            s.checkpoint_duration_ms_p50 = d.get(d.len() / 2).copied();
            s.checkpoint_duration_ms_max = d.last().copied();
        });
    };
    let spec = cfg.spec.clone();
    let job_id = spec.job_id();
    let parallelism = spec.parallelism;
    let mut lifecycle = JobLifecycle::new(&job_id);
    let store = ha.checkpoint_store_factory.checkpoint_store(&job_id);
    let counter = ha.checkpoint_store_factory.checkpoint_id_counter(&job_id);
    let mut tracker = CheckpointTracker::new(
        &job_id,
        cfg.checkpoint_timeout,
        cfg.tolerable_failed_checkpoints,
    );
    let mut restart = cfg.restart.clone();
    let mut outcome = JobOutcome {
        job_id: job_id.clone(),
        status: JobStatus::Created,
        restarts: 0,
        failure: None,
        completed_checkpoints: 0,
        checkpoint_durations: Vec::new(),
        restored_from: None,
        failures: Vec::new(),
    };
    let graph = serde_json::to_vec(&spec).unwrap_or_default();
    let persisted = if cfg.graph_persisted {
        Ok(())
    } else {
        ha.job_graphs.put(&job_id, Bytes::from(graph)).await
    };
    if let Err(e) = persisted {
        // A deposed leader leaves the job to its successor.
        outcome.status = if e.lost_leadership() {
            JobStatus::Suspended
        } else {
            JobStatus::Failed
        };
        outcome.failure = Some(format!("cannot persist the job graph: {e}"));
        publish(outcome.status, &outcome, &tracker);
        return outcome;
    }
    let mut latest = latest_checkpoint(&ha, &job_id).await;
    if let Some(m) = &latest {
        tracing::info!(job_id = %job_id, checkpoint_id = m.checkpoint_id, "job recovered from checkpoint");
        outcome.restored_from = Some(m.checkpoint_id);
    }

    let (events_tx, mut events) = mpsc::channel::<TaskEvent>(1024);
    let task_config = |subtask: u32| TaskConfig {
        job_id: job_id.clone(),
        subtask,
        parallelism,
        pipeline: spec.pipeline.clone(),
        sink_dir: cfg.sink_dir.clone(),
        batch: 10_000,
    };
    let restore_of = |latest: &Option<CheckpointMetadata>,
                      subtask: u32|
     -> Result<Option<SubtaskState>, String> {
        match latest.as_ref().and_then(|m| m.subtasks.get(&subtask)) {
            Some(v) => task::subtask_state(v).map(Some),
            None => Ok(None),
        }
    };
    let runtime = cfg.runtime.clone();
    let spawn = |subtask: u32, restore: Option<SubtaskState>, events: mpsc::Sender<TaskEvent>| {
        let runtime = runtime.clone();
        let config = task_config(subtask);
        async move { runtime.deploy(config, restore, events).await }
    };
    let mut tasks: BTreeMap<u32, Running> = BTreeMap::new();
    let mut restores = Vec::new();
    for s in 0..parallelism {
        match restore_of(&latest, s) {
            Ok(r) => restores.push((s, r)),
            Err(e) => {
                outcome.failure = Some(e);
                outcome.status = JobStatus::Failed;
                publish(outcome.status, &outcome, &tracker);
                return outcome;
            }
        }
    }
    // All subtasks ask for their slots at once (Flink's bulk slot request); one that gets
    // none fails like any subtask and goes through the restart strategy.
    let deployed = futures::future::join_all(restores.into_iter().map(|(s, restore)| {
        let deploy = spawn(s, restore, events_tx.clone());
        async move { (s, deploy.await) }
    }))
    .await;
    for (s, d) in deployed {
        match d {
            Ok(d) => {
                tasks.insert(s, d);
            }
            Err(e) => {
                let _ = events_tx
                    .send(TaskEvent::Failed {
                        subtask: s,
                        error: format!("cannot deploy: {e}"),
                    })
                    .await;
            }
        }
    }
    let _ = lifecycle.transition(JobStatus::Running);

    let interval = spec
        .checkpoint_interval()
        .unwrap_or(Duration::from_secs(3600));
    let mut ticker = tokio::time::interval_at(Instant::now() + interval, interval);
    let mut finished: BTreeMap<u32, bool> = BTreeMap::new();
    let mut final_checkpoint: Option<u64> = None;
    let mut final_committed = std::collections::BTreeSet::new();
    // Failed subtasks waiting out their restart delay (several can fail at once with their
    // TaskManager).
    let mut restarting: BTreeMap<u32, Instant> = BTreeMap::new();

    async fn broadcast(tasks: &BTreeMap<u32, Running>, cmd: TaskCommand) {
        for t in tasks.values() {
            let _ = t.commands.send(cmd.clone()).await;
        }
    }

    let status = loop {
        publish(lifecycle.status(), &outcome, &tracker);
        let restart_at = restarting.values().min().copied();
        tokio::select! {
            _ = cfg.leadership.cancelled() => break JobStatus::Suspended,
            _ = cancel_rx.recv() => break JobStatus::Canceled,
            Some(subtask) = kill_rx.recv() => {
                if let Some(t) = tasks.remove(&subtask) {
                    // Gone for good before anything restarts it, like a killed process.
                    t.handle.abort();
                    let _ = t.handle.await;
                    let _ = events_tx.send(TaskEvent::Failed { subtask, error: "the subtask was killed".into() }).await;
                }
            }
            _ = async { tokio::time::sleep_until(restart_at.unwrap_or_else(Instant::now)).await }, if restart_at.is_some() => {
                let now = Instant::now();
                let Some((&subtask, _)) = restarting.iter().find(|(_, at)| **at <= now) else {
                    continue;
                };
                restarting.remove(&subtask);
                match restore_of(&latest, subtask) {
                    Ok(restore) => {
                        tracing::info!(job_id = %job_id, subtask, checkpoint_id = ?latest.as_ref().map(|m| m.checkpoint_id), "restarting the failed subtask's region");
                        finished.remove(&subtask);
                        match spawn(subtask, restore, events_tx.clone()).await {
                            Ok(d) => {
                                tasks.insert(subtask, d);
                                let _ = lifecycle.transition(JobStatus::Running);
                            }
                            Err(e) => {
                                let _ = events_tx.send(TaskEvent::Failed { subtask, error: format!("cannot deploy: {e}") }).await;
                            }
                        }
                    }
                    Err(e) => {
                        outcome.failure = Some(e);
                        break JobStatus::Failed;
                    }
                }
            }
            _ = ticker.tick() => {
                if !restarting.is_empty() || tasks.len() < parallelism as usize || !tracker.pending_ids().is_empty() {
                    continue;
                }
                if let Err(e) = tracker.expire(Instant::now()) {
                    outcome.failure = Some(e.to_string());
                    break JobStatus::Failed;
                }
                match counter.get_and_increment().await {
                    Ok(id) => {
                        tracker.start(id, parallelism, Instant::now());
                        broadcast(&tasks, TaskCommand::Barrier(id)).await;
                    }
                    Err(e) => tracing::warn!(job_id = %job_id, error = %e, "cannot draw a checkpoint id"),
                }
            }
            Some(event) = events.recv() => match event {
                TaskEvent::Ack { subtask, checkpoint_id, state } => {
                    if let Ack::Complete(meta) = tracker.ack(checkpoint_id, subtask, state, Instant::now()) {
                        let stored = StoredCheckpoint { checkpoint_id, metadata: Bytes::from(meta.to_bytes()) };
                        if let Err(e) = store.add(stored).await {
                            if e.lost_leadership() {
                                break JobStatus::Suspended;
                            }
                            if let Err(e) = tracker.fail(checkpoint_id, &e.to_string()) {
                                outcome.failure = Some(e.to_string());
                                break JobStatus::Failed;
                            }
                            continue;
                        }
                        tracing::info!(job_id = %job_id, checkpoint_id, "checkpoint completed");
                        outcome.completed_checkpoints += 1;
                        latest = Some(meta);
                        broadcast(&tasks, TaskCommand::Complete(checkpoint_id)).await;
                        if final_checkpoint == Some(checkpoint_id) {
                            final_committed.clear();
                        }
                    }
                }
                TaskEvent::Finished { subtask } => {
                    finished.insert(subtask, true);
                    if finished.len() == parallelism as usize && restarting.is_empty() {
                        // The final checkpoint commits every subtask's tail.
                        tracker.abort_all();
                        match counter.get_and_increment().await {
                            Ok(id) => {
                                final_checkpoint = Some(id);
                                tracker.start(id, parallelism, Instant::now());
                                broadcast(&tasks, TaskCommand::Barrier(id)).await;
                            }
                            Err(e) => {
                                outcome.failure = Some(format!("cannot draw the final checkpoint id: {e}"));
                                break JobStatus::Failed;
                            }
                        }
                    }
                }
                TaskEvent::Failed { subtask, error } => {
                    tracing::warn!(job_id = %job_id, subtask, error = %error, "subtask failed");
                    outcome.failures.push(format!("subtask {subtask}: {error}"));
                    if let Some(t) = tasks.remove(&subtask) {
                        t.handle.abort();
                        let _ = t.handle.await;
                    }
                    finished.remove(&subtask);
                    final_checkpoint = None;
                    tracker.abort_all();
                    let _ = lifecycle.transition(JobStatus::Failing);
                    match restart.on_failure(Instant::now()) {
                        Some(delay) => {
                            outcome.restarts += 1;
                            let _ = lifecycle.transition(JobStatus::Restarting);
                            restarting.insert(subtask, Instant::now() + delay);
                        }
                        None => {
                            outcome.failure = Some(format!(
                                "subtask {subtask} failed and the {} restart strategy allows no more restarts: {error}",
                                restart.name()
                            ));
                            break JobStatus::Failed;
                        }
                    }
                }
                TaskEvent::Committed { subtask, checkpoint_id } => {
                    // After the final checkpoint the job ends once every sink has committed it.
                    if final_checkpoint == Some(checkpoint_id) && latest.as_ref().is_some_and(|m| m.checkpoint_id == checkpoint_id) {
                        final_committed.insert(subtask);
                        if final_committed.len() == parallelism as usize {
                            break JobStatus::Finished;
                        }
                    }
                }
                TaskEvent::Progress { .. } => {}
            },
        }
    };
    broadcast(&tasks, TaskCommand::Stop).await;
    for (_, t) in std::mem::take(&mut tasks) {
        let _ = t.handle.await;
    }
    let _ = lifecycle.transition(status);
    outcome.status = status;
    publish(status, &outcome, &tracker);
    outcome.checkpoint_durations = tracker.durations.clone();
    if status.is_globally_terminal() {
        // Flink's order: result dirty, HA data removed, result clean.
        let entry = JobResultEntry {
            job_id: job_id.clone(),
            status: status.as_str().to_string(),
            failure: outcome.failure.clone(),
            finished_at_ms: now_ms(),
        };
        let cleanup = async {
            ha.job_results.create_dirty(&entry).await?;
            remove_job_ha_data(&ha, &job_id).await?;
            ha.job_results.mark_clean(&job_id).await
        };
        if let Err(e) = cleanup.await {
            tracing::warn!(job_id = %job_id, error = %e, "HA cleanup incomplete; the result stays dirty for a retry");
        }
    }
    outcome
}
