//! One job master: runs a job's subtasks, triggers checkpoints, completes them through the HA
//! checkpoint store, restarts a failed subtask alone (region failover: every subtask is its own
//! region with forward edges) under the restart strategy, and cleans up when the job is
//! globally terminal.
//!
//! The decisions are the [`Scheduler`]'s (pure, unit-tested); this module is the I/O around it:
//! a `JobMaster` task owning the job's deployments, whose `select!` loop feeds the scheduler
//! events (subtask events, timers, kill, cancel, leadership loss) and performs the actions it
//! answers (deploy, broadcast, store a checkpoint, stop). Subtasks run wherever the
//! [`TaskRuntime`] puts them: in this process ([`InProcess`]) or on TaskManagers.

use std::collections::{BTreeMap, VecDeque};
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use tokio::sync::{mpsc, watch};
use tokio::task::JoinHandle;
use tokio::time::{Instant, Interval};
use tokio_util::task::TaskTracker;

use super::checkpoint::{CheckpointMetadata, CheckpointTracker};
use super::error::RuntimeError;
use super::restart::RestartStrategy;
use super::scheduler::{Action, Scheduler};
use super::status::JobStatus;
use crate::ha::{
    CheckpointIdCounter, CompletedCheckpointStore, HaServices, JobResultEntry, StoredCheckpoint,
};
use crate::job::spec::JobSpec;
use crate::storage::Location;
use crate::taskmanager::task::{SubtaskState, TaskCommand, TaskConfig, TaskEvent};

// Where they used to live; callers name them through here.
pub use super::runtime::{Deployed, InProcess, TaskRuntime};
pub use super::scheduler::JobOutcome;

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

/// Control of a running job master (tests, cancel).
#[derive(Clone)]
pub struct JobMasterHandle {
    kill: mpsc::Sender<u32>,
    cancel: mpsc::Sender<()>,
    /// The job as the REST API shows it, updated as it changes.
    pub snapshot: tokio::sync::watch::Receiver<JobSnapshot>,
}

/// What `/jobs/{id}` and `/jobs/{id}/checkpoints` show (and what
/// [`JobManagerClient::job`](super::client::JobManagerClient::job) reads back).
#[derive(Debug, Clone, Default, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct JobSnapshot {
    pub job_id: String,
    pub name: String,
    pub status: JobStatus,
    pub parallelism: u32,
    pub restarts: u32,
    /// Every subtask failure so far; the last one is the root cause of a FAILED job.
    pub exceptions: Vec<String>,
    pub failure: Option<String>,
    pub completed_checkpoints: u64,
    /// Checkpoints that expired, were declined or could not be stored.
    #[serde(default)]
    pub failed_checkpoints: u64,
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
        self.status.is_terminal()
    }
}

impl JobMasterHandle {
    /// Kills one subtask abruptly, as a lost TaskManager would.
    pub async fn kill_subtask(&self, subtask: u32) {
        let _ = self.kill.send(subtask).await;
    }

    /// Cancels the job. (Dropping every handle cancels it too: nobody could any more.)
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

/// Recovers the latest readable checkpoint, falling back to older ones (and saying so).
async fn latest_checkpoint(ha: &HaServices, job_id: &str) -> Option<CheckpointMetadata> {
    let store = ha.checkpoint_store_factory.checkpoint_store(job_id);
    let ids = store.checkpoint_ids().await.ok()?;
    for id in ids.iter().rev() {
        let read = match store.get(*id).await {
            Ok(c) => CheckpointMetadata::from_bytes(&c.metadata, &id.to_string()),
            Err(e) => Err(RuntimeError::from(e)),
        };
        match read {
            Ok(m) => return Some(m),
            Err(e) => {
                tracing::warn!(job_id, checkpoint_id = id, error = %e, "checkpoint unreadable, falling back to an older one")
            }
        }
    }
    None
}

/// Starts the job master; it runs until the job is terminal (for this JobManager). The caller
/// owns the returned task: the job's outcome, once its subtasks have stopped and a globally
/// terminal job's HA data is cleaned up. [`start_on`] also tracks it.
pub fn start(cfg: JobMasterConfig, ha: HaServices) -> (JobMasterHandle, JoinHandle<JobOutcome>) {
    let (handle, master) = build(cfg, ha);
    (handle, tokio::spawn(master.run()))
}

/// [`start`] as a task of `tracker`, so that whoever waits for the tracker (a leader's
/// shutdown) waits for the job master, and so for its subtasks and cleanup.
pub fn start_on(
    tracker: &TaskTracker,
    cfg: JobMasterConfig,
    ha: HaServices,
) -> (JobMasterHandle, JoinHandle<JobOutcome>) {
    let (handle, master) = build(cfg, ha);
    (handle, tracker.spawn(master.run()))
}

/// The job master and its handle, not yet running.
fn build(cfg: JobMasterConfig, ha: HaServices) -> (JobMasterHandle, JobMaster) {
    let (kill_tx, kill_rx) = mpsc::channel(8);
    let (cancel_tx, cancel_rx) = mpsc::channel(1);
    let (snap_tx, snap_rx) = watch::channel(JobSnapshot {
        job_id: cfg.spec.job_id(),
        name: cfg.spec.name.clone(),
        status: JobStatus::Created,
        parallelism: cfg.spec.parallelism,
        ..Default::default()
    });
    let master = JobMaster::new(cfg, ha, kill_rx, cancel_rx, snap_tx);
    let handle = JobMasterHandle {
        kill: kill_tx,
        cancel: cancel_tx,
        snapshot: snap_rx,
    };
    (handle, master)
}

/// What woke the job master's loop (one variant per `select!` arm).
enum Wake {
    LeadershipLost,
    Cancel,
    Kill(u32),
    RestartDue,
    /// A pending checkpoint's timeout is over.
    ExpiryDue,
    Tick,
    Event(TaskEvent),
}

/// One job's event loop: owns the job's deployments and does the I/O the [`Scheduler`] asks for.
struct JobMaster {
    /// The job, its sink, where subtasks run, the leadership token.
    cfg: JobMasterConfig,
    job_id: String,
    /// The job graph store, checkpoints and the job result store.
    ha: HaServices,
    /// The job's completed checkpoints in HA.
    store: Arc<dyn CompletedCheckpointStore>,
    /// The job's checkpoint ids, monotonic across leaders.
    counter: Arc<dyn CheckpointIdCounter>,
    /// The decisions: which subtasks run, restarts, checkpoints, the job's status.
    core: Scheduler,
    /// Deployed subtasks; each is stopped and awaited before the job master ends.
    tasks: BTreeMap<u32, Deployed>,
    /// Every deployment reports its subtask's events here.
    events_tx: mpsc::Sender<TaskEvent>,
    events: mpsc::Receiver<TaskEvent>,
    /// [`JobMasterHandle::kill_subtask`].
    kill: mpsc::Receiver<u32>,
    /// [`JobMasterHandle::cancel`].
    cancel: mpsc::Receiver<()>,
    /// The job's `checkpoint-interval` (a job without one is still checkpointed hourly).
    ticker: Interval,
    /// What the REST API shows.
    snapshot: watch::Sender<JobSnapshot>,
}

impl JobMaster {
    fn new(
        cfg: JobMasterConfig,
        ha: HaServices,
        kill: mpsc::Receiver<u32>,
        cancel: mpsc::Receiver<()>,
        snapshot: watch::Sender<JobSnapshot>,
    ) -> JobMaster {
        let job_id = cfg.spec.job_id();
        let tracker = CheckpointTracker::new(
            &job_id,
            cfg.checkpoint_timeout,
            cfg.tolerable_failed_checkpoints,
        );
        let core = Scheduler::new(&job_id, cfg.spec.parallelism, cfg.restart.clone(), tracker);
        let interval = cfg
            .spec
            .checkpoint_interval()
            .unwrap_or(Duration::from_secs(3600));
        let (events_tx, events) = mpsc::channel(1024);
        let mut ticker = tokio::time::interval_at(Instant::now() + interval, interval);
        // A loop held up (a slow store) triggers once afterwards, not a burst.
        ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        JobMaster {
            store: ha.checkpoint_store_factory.checkpoint_store(&job_id),
            counter: ha.checkpoint_store_factory.checkpoint_id_counter(&job_id),
            ticker,
            job_id,
            cfg,
            ha,
            core,
            tasks: BTreeMap::new(),
            events_tx,
            events,
            kill,
            cancel,
            snapshot,
        }
    }

    async fn run(mut self) -> JobOutcome {
        let start = if self.prepare().await {
            self.core.start()
        } else {
            Vec::new()
        };
        if self.core.status().is_terminal() {
            // The job graph could not be persisted, or the restore state is unreadable: nothing
            // was deployed and nothing is cleaned up (the checkpoints stay for a look).
            tracing::warn!(job_id = %self.job_id, status = %self.core.status(), "the job did not start");
            self.publish();
            return self.core.into_outcome();
        }
        let mut status = self.perform(start).await;
        while status.is_none() {
            self.publish();
            let actions = match self.wake().await {
                Wake::LeadershipLost => self.core.suspend(),
                Wake::Cancel => self.core.cancel(),
                Wake::Kill(subtask) => self.on_kill(subtask).await,
                Wake::RestartDue => self.core.on_restart_due(Instant::now()),
                Wake::ExpiryDue => self.core.on_expiry_due(Instant::now()),
                Wake::Tick => self.core.on_tick(Instant::now()),
                Wake::Event(event) => self.on_event(event),
            };
            status = self.perform(actions).await;
        }
        self.stop().await
    }

    /// Persists the job graph (unless it already is) and recovers the latest checkpoint;
    /// `false` if the job cannot start.
    async fn prepare(&mut self) -> bool {
        if !self.cfg.graph_persisted {
            let stored = match serde_json::to_vec(&self.cfg.spec) {
                Ok(graph) => self
                    .ha
                    .job_graphs
                    .put(&self.job_id, Bytes::from(graph))
                    .await
                    .map_err(RuntimeError::from),
                Err(e) => Err(RuntimeError::InvalidJob(e.to_string())),
            };
            if let Err(e) = stored {
                // A deposed leader leaves the job to its successor.
                self.core.on_fatal("cannot persist the job graph", e);
                return false;
            }
        }
        if let Some(m) = latest_checkpoint(&self.ha, &self.job_id).await {
            tracing::info!(job_id = %self.job_id, checkpoint_id = m.checkpoint_id, "job recovered from checkpoint");
            self.core.recover(m);
        }
        true
    }

    /// Waits for the next thing to react to.
    async fn wake(&mut self) -> Wake {
        let restart_at = self.core.next_restart();
        // Its own timer, not the ticker's: a checkpoint expires on time whatever the interval
        // and whatever else is pending.
        let expiry_at = self.core.next_expiry();
        tokio::select! {
            _ = self.cfg.leadership.cancelled() => Wake::LeadershipLost,
            // Also when every handle is gone.
            _ = self.cancel.recv() => Wake::Cancel,
            Some(subtask) = self.kill.recv() => Wake::Kill(subtask),
            _ = sleep_until(restart_at), if restart_at.is_some() => Wake::RestartDue,
            _ = sleep_until(expiry_at), if expiry_at.is_some() => Wake::ExpiryDue,
            _ = self.ticker.tick() => Wake::Tick,
            Some(event) = self.events.recv() => Wake::Event(event),
        }
    }

    /// Kills a subtask like a lost process: gone for good before anything restarts it.
    async fn on_kill(&mut self, subtask: u32) -> Vec<Action> {
        let Some(t) = self.tasks.remove(&subtask) else {
            return Vec::new();
        };
        t.handle.abort();
        let _ = t.handle.await;
        self.core
            .on_failed(subtask, RuntimeError::Killed, Instant::now())
    }

    fn on_event(&mut self, event: TaskEvent) -> Vec<Action> {
        match event {
            TaskEvent::Ack {
                subtask,
                checkpoint_id,
                state,
            } => self.core.on_ack(subtask, checkpoint_id, state),
            TaskEvent::Declined {
                subtask,
                checkpoint_id,
                reason,
            } => self
                .core
                .on_declined(subtask, checkpoint_id, &reason, Instant::now()),
            TaskEvent::Finished { subtask } => self.core.on_finished(subtask),
            TaskEvent::Failed { subtask, error } => {
                self.core.on_failed(subtask, error, Instant::now())
            }
            TaskEvent::Committed {
                subtask,
                checkpoint_id,
            } => self.core.on_committed(subtask, checkpoint_id),
            TaskEvent::Progress { .. } => Vec::new(),
        }
    }

    /// Performs `actions` in order, and those their results bring; `Some(status)` once the
    /// scheduler stops the job.
    async fn perform(&mut self, actions: Vec<Action>) -> Option<JobStatus> {
        let mut queue = VecDeque::from(actions);
        while let Some(action) = queue.pop_front() {
            let more = match action {
                Action::Deploy { subtask, restore } => {
                    // Consecutive deployments go out together (the bulk slot request).
                    let mut batch = vec![(subtask, restore)];
                    while let Some(Action::Deploy { .. }) = queue.front() {
                        let Some(Action::Deploy { subtask, restore }) = queue.pop_front() else {
                            unreachable!("just matched")
                        };
                        batch.push((subtask, restore));
                    }
                    self.deploy(batch).await
                }
                Action::Release { subtask } => {
                    // Consecutive releases (a job failover) stop together, not one by one.
                    let mut batch: Vec<Deployed> =
                        self.tasks.remove(&subtask).into_iter().collect();
                    while let Some(Action::Release { subtask }) = queue.front() {
                        batch.extend(self.tasks.remove(subtask));
                        queue.pop_front();
                    }
                    futures::future::join_all(batch.into_iter().map(release)).await;
                    Vec::new()
                }
                Action::DrawCheckpointId { final_checkpoint } => {
                    let id = self.counter.get_and_increment().await;
                    let id = id.map_err(RuntimeError::from);
                    self.core
                        .on_checkpoint_id(final_checkpoint, id, Instant::now())
                }
                Action::Broadcast(command) => {
                    self.broadcast(command).await;
                    Vec::new()
                }
                Action::Store(metadata) => {
                    let checkpoint_id = metadata.checkpoint_id;
                    let stored = StoredCheckpoint {
                        checkpoint_id,
                        metadata: Bytes::from(metadata.to_bytes()),
                    };
                    let result = self.store.add(stored).await.map_err(RuntimeError::from);
                    self.core.on_stored(checkpoint_id, result, Instant::now())
                }
                Action::ReadBack { checkpoint_id } => {
                    let ids = self.store.checkpoint_ids().await;
                    let landed = ids
                        .map(|ids| ids.contains(&checkpoint_id))
                        .map_err(RuntimeError::from);
                    self.core
                        .on_read_back(checkpoint_id, landed, Instant::now())
                }
                Action::Stop(status) => return Some(status),
            };
            queue.extend(more);
        }
        None
    }

    /// Deploys subtasks at once and reports each result to the scheduler.
    async fn deploy(&mut self, batch: Vec<(u32, Option<SubtaskState>)>) -> Vec<Action> {
        let deployments = batch.into_iter().map(|(subtask, restore)| {
            let runtime = self.cfg.runtime.clone();
            let config = self.task_config(subtask);
            let events = self.events_tx.clone();
            async move { (subtask, runtime.deploy(config, restore, events).await) }
        });
        let results = futures::future::join_all(deployments).await;
        let mut actions = Vec::new();
        for (subtask, result) in results {
            let result = result.map(|d| {
                self.tasks.insert(subtask, d);
            });
            actions.extend(self.core.on_deployed(subtask, result, Instant::now()));
        }
        actions
    }

    fn task_config(&self, subtask: u32) -> TaskConfig {
        TaskConfig {
            job_id: self.job_id.clone(),
            subtask,
            parallelism: self.cfg.spec.parallelism,
            pipeline: self.cfg.spec.pipeline.clone(),
            sink_dir: self.cfg.sink_dir.clone(),
            batch: 10_000,
        }
    }

    async fn broadcast(&self, command: TaskCommand) {
        for t in self.tasks.values() {
            if command == TaskCommand::Stop {
                // A closed inbox: the subtask ended, and its failure is on its way as an event.
                let _ = t.commands.send(command.clone()).await;
            } else if let Err(mpsc::error::TrySendError::Full(_)) =
                t.commands.try_send(command.clone())
            {
                // Its TaskManager reads nothing (frozen, partitioned) until the heartbeat
                // timeout says it is lost; the job master does not wait for it. A barrier
                // missed expires its checkpoint; a completion missed is caught up by the next.
                tracing::warn!(job_id = %self.job_id, command = ?command, "a subtask's command queue is full; command not sent");
            }
        }
    }

    /// Stops every subtask and waits for them, then, for a globally terminal job, records its
    /// result and removes its HA data.
    async fn stop(mut self) -> JobOutcome {
        self.broadcast(TaskCommand::Stop).await;
        for (_, t) in std::mem::take(&mut self.tasks) {
            let _ = t.handle.await;
        }
        self.publish();
        let outcome = self.core.into_outcome();
        if outcome.status.is_globally_terminal() {
            cleanup(&self.ha, &outcome).await;
        }
        outcome
    }

    /// Updates the REST snapshot.
    fn publish(&self) {
        let tracker = self.core.tracker();
        let outcome = self.core.outcome();
        let mut d: Vec<u64> = tracker
            .durations
            .iter()
            .map(|d| d.as_millis() as u64)
            .collect();
        let last = d.last().copied();
        d.sort_unstable();
        self.snapshot.send_modify(|s| {
            if tracker.latest_completed.is_some()
                && s.latest_checkpoint_id != tracker.latest_completed
            {
                s.latest_checkpoint_completed_ms = Some(now_ms());
                s.last_checkpoint_duration_ms = last;
            }
            s.status = self.core.status();
            s.restarts = outcome.restarts;
            s.exceptions = outcome.failures.clone();
            s.failure = outcome.failure.clone();
            s.completed_checkpoints = outcome.completed_checkpoints;
            s.failed_checkpoints = tracker.failed;
            s.latest_checkpoint_id = tracker.latest_completed;
            s.restored_from_checkpoint = outcome.restored_from;
            s.checkpoint_duration_ms_p50 = d.get(d.len() / 2).copied();
            s.checkpoint_duration_ms_max = d.last().copied();
        });
    }
}

/// Stops a subtask that is released (a failover): a live one is told to stop and given a
/// moment, then its deployment is aborted; a failed one's is aborted at once.
async fn release(t: Deployed) {
    let mut handle = t.handle;
    if t.commands.try_send(TaskCommand::Stop).is_ok()
        && tokio::time::timeout(Duration::from_secs(1), &mut handle)
            .await
            .is_ok()
    {
        return;
    }
    handle.abort();
    let _ = handle.await;
}

/// Flink's order: result dirty, HA data removed, result clean.
async fn cleanup(ha: &HaServices, outcome: &JobOutcome) {
    let entry = JobResultEntry {
        job_id: outcome.job_id.clone(),
        status: outcome.status,
        failure: outcome.failure.clone(),
        finished_at_ms: now_ms(),
    };
    let cleanup = async {
        ha.job_results.create_dirty(&entry).await?;
        ha.remove_job_data(&outcome.job_id).await?;
        ha.job_results.mark_clean(&outcome.job_id).await
    };
    if let Err(e) = cleanup.await {
        tracing::warn!(job_id = %outcome.job_id, error = %e, "HA cleanup incomplete; the result stays dirty for a retry");
    }
}

/// Sleeps until `at` (forever if `None`; the arm is disabled then anyway).
async fn sleep_until(at: Option<Instant>) {
    match at {
        Some(at) => tokio::time::sleep_until(at).await,
        None => std::future::pending().await,
    }
}
