//! One job master: runs a job's subtasks, triggers checkpoints, completes them through the HA
//! checkpoint store, restarts a failed subtask's region under the restart strategy (the
//! subtask alone in a single-stage job; every subtask once a keyed edge connects them all),
//! and cleans up when the job is globally terminal.
//!
//! A job's subtasks are its [`ExecutionPlan`]'s stages' subtasks, numbered over all stages
//! (stage `s`'s subtask `i` is execution vertex `s × parallelism + i`). Deployments go out
//! stage by stage, so that each consumer's deployment names where its producers run.
//!
//! The decisions are the [`Scheduler`]'s (pure, unit-tested); this module is the I/O around it:
//! a `JobMaster` task owning the job's deployments, whose `select!` loop feeds the scheduler
//! events (subtask events, timers, kill, cancel, leadership loss) and performs the actions it
//! answers (deploy, broadcast, store a checkpoint, stop). Subtasks run wherever the
//! [`TaskRuntime`] puts them: in this process ([`InProcess`]) or on TaskManagers.
//!
//! Recovery ([`recover_checkpoint`]) never silently starts from scratch: a transient ZooKeeper
//! or storage error while reading checkpoint ids, pointers or blobs is retried, and one that
//! persists, or a proven-corrupt newest checkpoint (unless falling back is enabled), ends the
//! job master SUSPENDED with the cause and `recovery_failed`, before anything is deployed and
//! without touching HA data. Leadership comes first: the loop's `select!` is biased to the
//! revocation token, and once it is cancelled no further action is performed.

use std::collections::{BTreeMap, VecDeque};
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use tokio::sync::{mpsc, watch};
use tokio::task::JoinHandle;
use tokio::time::{Instant, Interval};
use tokio_util::task::TaskTracker;

use super::checkpoint::{CheckpointMetadata, CheckpointTracker, LifetimeCounts};
use super::checkpoint_storage::{CheckpointStorage, CheckpointsCleaner};
use super::cleanup::RetryStrategy;
use super::error::{RecoveryError, RuntimeError};
use super::restart::RestartStrategy;
use super::scheduler::{Action, Scheduler};
use super::status::JobStatus;
use crate::ha::{
    CheckpointIdCounter, CompletedCheckpointStore, HaError, HaServices, JobResultEntry,
    StoredCheckpoint,
};
use crate::job::graph::{JobGraph, RunId};
use crate::job::plan::{ExecutionPlan, StageInput};
use crate::job::sink;
use crate::job::spec::JobSpec;
use crate::storage::Location;
use crate::taskmanager::exchange::{Exchange, KeyedInput, KeyedOutput};
use crate::taskmanager::task::{SubtaskState, TaskCommand, TaskConfig, TaskEvent};

// Where they used to live; callers name them through here.
use super::runtime::Reports;
pub use super::runtime::{Deployed, InProcess, TaskRuntime};
pub use super::scheduler::JobOutcome;

#[derive(Clone)]
pub struct JobMasterConfig {
    pub spec: JobSpec,
    /// This run of the job (its part files' prefix): drawn at submission, stored with the job
    /// graph, the same after every recovery.
    pub run_id: RunId,
    pub sink_dir: Location,
    /// `execution.checkpointing.dir` (where keyed subtasks write their snapshot files) and how
    /// many completed checkpoints stay.
    pub checkpoint_storage: CheckpointStorage,
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
    /// The job graph was recovered from HA by a later leader (a failover), not submitted: a
    /// job without a completed checkpoint then still counts the failover in its lifetime
    /// counts.
    pub recovered: bool,
    /// How the latest checkpoint is read at recovery.
    pub recovery: RecoveryPolicy,
    /// Retries of the HA cleanup once the job is globally terminal (`cleanup-strategy`).
    pub cleanup: RetryStrategy,
    /// `pipeline.max-parallelism` (-1: derived from the parallelism).
    pub max_parallelism: i64,
}

/// How a job master reads the checkpoint store when it starts: a ZooKeeper or storage error is
/// retried, and never read as "no checkpoint"; a proven-corrupt checkpoint fails recovery
/// unless falling back to an older one is enabled.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RecoveryPolicy {
    /// Retries of a transient error ([`HaError::is_retriable`]) while reading checkpoint ids,
    /// pointers or blobs; other errors end recovery at once.
    pub retry: RetryStrategy,
    /// `execution.checkpointing.recover-from-older-on-corruption`.
    pub fall_back_on_corruption: bool,
}

impl Default for RecoveryPolicy {
    /// Flink's behaviour: fail on a corrupt checkpoint; retry transient errors for about 30 s.
    fn default() -> RecoveryPolicy {
        RecoveryPolicy {
            retry: RetryStrategy::ExponentialDelay {
                attempts: 6,
                initial_backoff: Duration::from_millis(500),
                max_backoff: Duration::from_secs(10),
            },
            fall_back_on_corruption: false,
        }
    }
}

impl JobMasterConfig {
    /// The job master settings the configuration gives (restart strategy, checkpoint timeout
    /// and tolerable failures) for `spec`, writing to `sink_dir` and its keyed state to
    /// `checkpoint_dir` through `runtime`, as a new run (a fresh run id).
    pub fn from_config(
        config: &crate::config::Config,
        spec: JobSpec,
        sink_dir: Location,
        checkpoint_dir: Option<Location>,
        runtime: std::sync::Arc<dyn TaskRuntime>,
        leadership: tokio_util::sync::CancellationToken,
    ) -> Result<JobMasterConfig, crate::config::ConfigError> {
        Ok(JobMasterConfig {
            restart: RestartStrategy::from_config(config, spec.checkpoint_interval().is_some())?,
            checkpoint_timeout: config.value(
                crate::config::Config::duration,
                "execution.checkpointing.timeout",
            )?,
            tolerable_failed_checkpoints: config
                .value(
                    crate::config::Config::u64,
                    "execution.checkpointing.tolerable-failed-checkpoints",
                )?
                .min(u64::from(u32::MAX)) as u32,
            recovery: RecoveryPolicy {
                fall_back_on_corruption: config.value(
                    crate::config::Config::bool,
                    "execution.checkpointing.recover-from-older-on-corruption",
                )?,
                ..RecoveryPolicy::default()
            },
            cleanup: RetryStrategy::cleanup(config)?,
            max_parallelism: config.value(
                crate::config::Config::i64,
                crate::job::key_groups::MAX_PARALLELISM_KEY,
            )?,
            checkpoint_storage: CheckpointStorage {
                dir: checkpoint_dir,
                // ≤ 0 becomes 1, as in Flink (and the HA checkpoint store).
                num_retained: config
                    .value(
                        crate::config::Config::i64,
                        "execution.checkpointing.num-retained",
                    )?
                    .max(1) as usize,
            },
            spec,
            run_id: RunId::random(),
            sink_dir,
            runtime,
            leadership,
            graph_persisted: false,
            recovered: false,
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
    /// Each subtask's attempt number, by execution vertex (Flink's `attemptNumber`: 0 at
    /// first, one more per redeployment; an adopted subtask keeps its own).
    #[serde(default)]
    pub subtask_attempts: Vec<u32>,
    /// Subtasks this leader adopted, running, from the earlier leader's deployment.
    #[serde(default)]
    pub adopted_subtasks: u32,
    /// Records the job's sources have read under this JobManager, every deployment's counted
    /// (records replayed after a restart count again); updated about once a second. Its rate
    /// is the job's records/s.
    #[serde(default)]
    pub records_in: u64,
    /// Checkpoints, restarts and failovers over the job's whole life (the fields above count
    /// under this JobManager only); carried from leader to leader in the stored checkpoints.
    #[serde(default)]
    pub lifetime: LifetimeCounts,
}

/// The job's [`JobSnapshot::records_in`] from its source subtasks' progress reports (each a
/// count since that subtask's deployment): a monotonic sum of what every report added.
#[derive(Debug, Default, Clone)]
struct RecordsCounter {
    total: u64,
    /// The latest report of each source subtask.
    last: BTreeMap<u32, u64>,
}

impl RecordsCounter {
    /// Subtask `subtask` reported `records` since its deployment. A count below its previous
    /// one is a new deployment's (counting from 0 again).
    fn on_progress(&mut self, subtask: u32, records: u64) {
        let last = self.last.insert(subtask, records).unwrap_or(0);
        self.total += if records >= last {
            records - last
        } else {
            records
        };
    }
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

/// The checkpoint a job resumes from.
#[derive(Debug, Clone, PartialEq)]
pub struct Recovered {
    pub metadata: CheckpointMetadata,
    /// Newer checkpoints skipped because they are corrupt (opted in), newest first.
    pub skipped: Vec<u64>,
    /// Every checkpoint the store holds, oldest first (their snapshot files stay).
    pub retained: Vec<u64>,
}

/// Reads the job's latest completed checkpoint: `Ok(None)` only when the store holds none.
/// Transient errors are retried under `policy`; a proven-corrupt newest checkpoint is an error
/// unless `policy` falls back to older ones. Reads only: the HA data stays as it is.
pub async fn recover_checkpoint(
    store: &dyn CompletedCheckpointStore,
    job_id: &str,
    policy: &RecoveryPolicy,
    leadership: &tokio_util::sync::CancellationToken,
) -> Result<Option<Recovered>, RecoveryError> {
    let unreadable = |(error, tries)| RecoveryError::Unreadable {
        job_id: job_id.to_string(),
        tries,
        error,
    };
    let ids = retried(&policy.retry, leadership, "list the checkpoints", || {
        store.checkpoint_ids()
    })
    .await
    .map_err(unreadable)?;
    let mut skipped = Vec::new();
    for &id in ids.iter().rev() {
        let read = retried(&policy.retry, leadership, "read a checkpoint", || {
            store.get(id)
        })
        .await;
        let message = match read {
            Ok(c) => match decode(&c, job_id) {
                Ok(metadata) => {
                    let retained = ids.clone();
                    return Ok(Some(Recovered {
                        metadata,
                        skipped,
                        retained,
                    }));
                }
                Err(message) => message,
            },
            Err((HaError::Corrupt { path, message }, _)) => format!("{path}: {message}"),
            Err(e) => return Err(unreadable(e)),
        };
        if !policy.fall_back_on_corruption {
            return Err(RecoveryError::Corrupt {
                job_id: job_id.to_string(),
                checkpoint_id: id,
                location: store.location(id),
                message,
            });
        }
        tracing::warn!(job_id, checkpoint_id = id, location = %store.location(id), error = %message,
            "checkpoint corrupt; falling back to an older one (execution.checkpointing.recover-from-older-on-corruption)");
        skipped.push(id);
    }
    if skipped.is_empty() {
        return Ok(None);
    }
    Err(RecoveryError::AllCorrupt {
        job_id: job_id.to_string(),
        skipped: skipped
            .iter()
            .map(|id| format!("checkpoint {id} at {}", store.location(*id)))
            .collect::<Vec<_>>()
            .join(", "),
    })
}

/// A stored checkpoint's metadata, or why it is corrupt (undecodable, or not this checkpoint).
fn decode(c: &StoredCheckpoint, job_id: &str) -> Result<CheckpointMetadata, String> {
    let m = CheckpointMetadata::from_bytes(&c.metadata, &c.checkpoint_id.to_string())
        .map_err(|e| e.to_string())?;
    if m.checkpoint_id != c.checkpoint_id || m.job_id != job_id {
        return Err(format!(
            "the metadata is of checkpoint {} of job {}",
            m.checkpoint_id, m.job_id
        ));
    }
    Ok(m)
}

/// Runs a read until it succeeds, fails for good (an error that is not transient), the
/// strategy gives up, or leadership ends; the last error and the number of tries otherwise.
async fn retried<T, F, Fut>(
    retry: &RetryStrategy,
    leadership: &tokio_util::sync::CancellationToken,
    what: &str,
    mut op: F,
) -> Result<T, (HaError, u64)>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Result<T, HaError>>,
{
    let mut tries = 0;
    loop {
        tries += 1;
        let e = match op().await {
            Ok(v) => return Ok(v),
            Err(e) => e,
        };
        let delay = match retry.delay(tries) {
            Some(d) if e.is_retriable() && !leadership.is_cancelled() => d,
            _ => return Err((e, tries)),
        };
        tracing::warn!(what, error = %e, tries, delay_ms = delay.as_millis() as u64, "recovery read failed; retrying");
        tokio::select! {
            biased;
            _ = leadership.cancelled() => return Err((e, tries)),
            _ = tokio::time::sleep(delay) => {}
        }
    }
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
    /// The earlier leader's TaskManagers reported more (or gone).
    Reports,
    /// The wait for those reports is over.
    ReconcileDue,
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
    /// The job's stages (or why it has none: a bad `pipeline.max-parallelism`).
    plan: Result<ExecutionPlan, String>,
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
    /// Deletes the snapshot files of checkpoints that are subsumed or failed.
    cleaner: CheckpointsCleaner,
    /// While reconciling: what the TaskManagers of an earlier leader report of this job.
    previous: Option<watch::Receiver<Reports>>,
    /// Records read by the sources (subtasks `0..parallelism`).
    records: RecordsCounter,
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
        let plan = ExecutionPlan::new(&cfg.spec, cfg.max_parallelism).map_err(|e| e.to_string());
        let stages = plan.as_ref().map_or(1, |p| p.stages.len() as u32);
        let parallelism = cfg.spec.parallelism;
        let core = Scheduler::new(&job_id, parallelism * stages, cfg.restart.clone(), tracker)
            .with_topology(parallelism, stages > 1);
        let interval = cfg
            .spec
            .checkpoint_interval()
            .unwrap_or(Duration::from_secs(3600));
        let (events_tx, events) = mpsc::channel(1024);
        let mut ticker = tokio::time::interval_at(Instant::now() + interval, interval);
        // A loop held up (a slow store) triggers once afterwards, not a burst.
        ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let cleaner = CheckpointsCleaner::new(
            &cfg.checkpoint_storage,
            &job_id,
            &cfg.run_id.to_string(),
            cfg.cleanup,
        );
        JobMaster {
            cleaner,
            store: ha.checkpoint_store_factory.checkpoint_store(&job_id),
            counter: ha.checkpoint_store_factory.checkpoint_id_counter(&job_id),
            ticker,
            job_id,
            cfg,
            ha,
            core,
            plan,
            tasks: BTreeMap::new(),
            events_tx,
            events,
            kill,
            cancel,
            snapshot,
            previous: None,
            records: RecordsCounter::default(),
        }
    }

    async fn run(mut self) -> JobOutcome {
        let start = if let Err(e) = &self.plan {
            let e = RuntimeError::InvalidJob(e.clone());
            self.core.on_fatal("cannot plan the job", e)
        } else if self.prepare().await {
            self.start()
        } else {
            Vec::new()
        };
        if self.core.status().is_terminal() {
            // The job graph could not be persisted, the checkpoints could not be recovered
            // (SUSPENDED with the cause), or the restore state is unreadable: nothing was
            // deployed and nothing is cleaned up (the checkpoints stay for a look).
            tracing::warn!(job_id = %self.job_id, status = %self.core.status(), "the job did not start");
            self.publish();
            return self.core.into_outcome();
        }
        self.cleaner.sweep().await;
        let mut status = self.perform(start).await;
        while status.is_none() {
            let tracker = self.core.tracker();
            self.cleaner
                .observe(&tracker.pending_ids(), tracker.latest_completed);
            self.publish();
            let actions = match self.wake().await {
                Wake::Reports => {
                    let reports = self
                        .previous
                        .as_mut()
                        .map(|r| r.borrow_and_update().clone());
                    reports.map_or_else(Vec::new, |r| self.core.on_reports(r, Instant::now()))
                }
                Wake::ReconcileDue => self.core.on_reconcile_due(Instant::now()),
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

    /// Schedules the job: a job recovered from a checkpoint first reconciles what an earlier
    /// leader's TaskManagers still run (the runtime says whether there can be any), anything
    /// else deploys every subtask (and stops whatever an earlier leader left of the job).
    fn start(&mut self) -> Vec<Action> {
        let previous = match self.core.latest_checkpoint() {
            Some(_) => self.cfg.runtime.previous_deployment(&self.job_id),
            None => None,
        };
        let Some(previous) = previous else {
            self.cfg.runtime.settle(&self.job_id);
            return self.core.start();
        };
        let now = Instant::now();
        let mut reports = previous.reports;
        let now_reported = reports.borrow_and_update().clone();
        tracing::info!(job_id = %self.job_id, reported = now_reported.subtasks.len(), timeout = ?previous.timeout, "reconciling the subtasks that the earlier leader's TaskManagers still run");
        self.previous = Some(reports);
        let run_id = self.cfg.run_id.to_string();
        self.core
            .start_reconciling(&run_id, now_reported, now + previous.timeout, now)
    }

    /// Persists the job graph (unless it already is) and recovers the latest checkpoint;
    /// `false` if the job cannot start.
    async fn prepare(&mut self) -> bool {
        if !self.cfg.graph_persisted {
            let graph = JobGraph {
                spec: self.cfg.spec.clone(),
                run_id: self.cfg.run_id.clone(),
            };
            let stored = match graph.to_bytes() {
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
        let recovered = recover_checkpoint(
            self.store.as_ref(),
            &self.job_id,
            &self.cfg.recovery,
            &self.cfg.leadership,
        )
        .await;
        match recovered {
            Ok(Some(r)) => {
                tracing::info!(job_id = %self.job_id, checkpoint_id = r.metadata.checkpoint_id, skipped = ?r.skipped, "job recovered from checkpoint");
                self.cleaner.retain(&r.retained);
                self.core.recover(r.metadata, !r.skipped.is_empty());
                true
            }
            Ok(None) => {
                if self.cfg.recovered {
                    self.core.recover_without_checkpoint();
                }
                true
            }
            Err(e) if e.is_lost_leadership() || self.cfg.leadership.is_cancelled() => {
                self.core.suspend();
                false
            }
            Err(e) => {
                self.core.on_recovery_failed(e.to_string());
                false
            }
        }
    }

    /// Waits for the next thing to react to.
    async fn wake(&mut self) -> Wake {
        let restart_at = self.core.next_restart();
        // Its own timer, not the ticker's: a checkpoint expires on time whatever the interval
        // and whatever else is pending.
        let expiry_at = self.core.next_expiry();
        let reconcile_at = self.core.reconcile_deadline();
        if reconcile_at.is_none() {
            // Settled: nothing more to hear.
            self.previous = None;
        }
        let reports = self.previous.as_mut();
        tokio::select! {
            // Checked first, every time: once leadership is revoked this job master acts on
            // nothing else (no deployment, no checkpoint, no commit notice).
            biased;
            _ = self.cfg.leadership.cancelled() => Wake::LeadershipLost,
            // Also when every handle is gone.
            _ = self.cancel.recv() => Wake::Cancel,
            Some(subtask) = self.kill.recv() => Wake::Kill(subtask),
            _ = sleep_until(restart_at), if restart_at.is_some() => Wake::RestartDue,
            _ = sleep_until(expiry_at), if expiry_at.is_some() => Wake::ExpiryDue,
            _ = self.ticker.tick() => Wake::Tick,
            Some(event) = self.events.recv() => Wake::Event(event),
            _ = reports_changed(reports) => Wake::Reports,
            _ = sleep_until(reconcile_at), if reconcile_at.is_some() => Wake::ReconcileDue,
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
            TaskEvent::Progress { subtask, records } => {
                if subtask < self.cfg.spec.parallelism {
                    self.records.on_progress(subtask, records);
                }
                Vec::new()
            }
        }
    }

    /// Performs `actions` in order, and those their results bring; `Some(status)` once the
    /// scheduler stops the job.
    async fn perform(&mut self, actions: Vec<Action>) -> Option<JobStatus> {
        let mut queue = VecDeque::from(actions);
        while let Some(action) = queue.pop_front() {
            if self.cfg.leadership.is_cancelled() && !matches!(action, Action::Stop(_)) {
                // Revoked meanwhile: nothing more is done as leader.
                queue.retain(|a| matches!(a, Action::Stop(_)));
                queue.extend(self.core.suspend());
                continue;
            }
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
                Action::Trigger {
                    checkpoint_id,
                    subtasks,
                } => {
                    let barrier = TaskCommand::Barrier(checkpoint_id);
                    for t in subtasks.iter().filter_map(|s| self.tasks.get(s)) {
                        self.send(t, &barrier);
                    }
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
                Action::Adopt(report) => {
                    let subtask = report.subtask;
                    let adopted = self
                        .cfg
                        .runtime
                        .adopt(&self.job_id, &report, self.events_tx.clone())
                        .await;
                    let finished = adopted
                        .as_ref()
                        .is_ok_and(|a| a.finished && !report.finished);
                    let adopted = adopted.map(|a| {
                        self.tasks.insert(subtask, a.deployed);
                    });
                    let mut more = self.core.on_adopted(subtask, adopted, Instant::now());
                    if finished {
                        // Its `Finished` came after the report was read.
                        more.extend(self.core.on_finished(subtask));
                    }
                    more
                }
                Action::Discard(report) => {
                    self.cfg.runtime.discard(&self.job_id, &report).await;
                    Vec::new()
                }
                Action::Settle => {
                    self.cfg.runtime.settle(&self.job_id);
                    Vec::new()
                }
                Action::Stop(status) => return Some(status),
            };
            queue.extend(more);
        }
        None
    }

    /// Deploys subtasks, each stage's at once, stage after stage (a consumer's deployment
    /// names where its producers run), and reports each result to the scheduler.
    async fn deploy(&mut self, mut batch: Vec<(u32, Option<SubtaskState>)>) -> Vec<Action> {
        let parallelism = self.cfg.spec.parallelism.max(1);
        batch.sort_by_key(|(subtask, _)| *subtask);
        let mut actions = Vec::new();
        let attempt = self.core.attempt();
        while !batch.is_empty() {
            let stage = batch[0].0 / parallelism;
            let split = batch
                .iter()
                .position(|(s, _)| s / parallelism != stage)
                .unwrap_or(batch.len());
            let rest = batch.split_off(split);
            let deployments =
                std::mem::replace(&mut batch, rest)
                    .into_iter()
                    .map(|(subtask, restore)| {
                        let runtime = self.cfg.runtime.clone();
                        let config = self.task_config(subtask, attempt);
                        let restore = self.with_keyed_handles(&config, restore);
                        let events = self.events_tx.clone();
                        async move {
                            let deployed = match restore {
                                Ok(restore) => runtime.deploy(config, restore, events).await,
                                Err(e) => Err(e),
                            };
                            (subtask, deployed)
                        }
                    });
            let results = futures::future::join_all(deployments).await;
            for (subtask, result) in results {
                let result = result.map(|d| {
                    self.tasks.insert(subtask, d);
                });
                actions.extend(self.core.on_deployed(subtask, result, Instant::now()));
            }
        }
        actions
    }

    /// `restore` with the keyed state handles a keyed subtask of `config` restores from: every
    /// file of its stage in the latest checkpoint whose key groups overlap its own.
    fn with_keyed_handles(
        &self,
        config: &TaskConfig,
        restore: Option<SubtaskState>,
    ) -> Result<Option<SubtaskState>, RuntimeError> {
        let (Some(latest), Some(range)) = (
            self.core.latest_checkpoint(),
            config.exchange.key_groups(config.parallelism),
        ) else {
            return Ok(restore);
        };
        let keyed = crate::taskmanager::task::keyed_handles(
            &latest.subtasks,
            config.exchange.stage,
            range,
        )?;
        let mut restore = restore.unwrap_or_else(SubtaskState::empty);
        restore.keyed = keyed;
        Ok(Some(restore))
    }

    /// The deployment of execution vertex `subtask` in deployment round `attempt`.
    fn task_config(&self, subtask: u32, attempt: u32) -> TaskConfig {
        let parallelism = self.cfg.spec.parallelism.max(1);
        let (stage, index) = (subtask / parallelism, subtask % parallelism);
        let mut config = TaskConfig {
            job_id: self.job_id.clone(),
            run_id: self.cfg.run_id.clone(),
            subtask,
            attempt: self.core.subtask_attempt(subtask),
            parallelism: self.cfg.spec.parallelism,
            pipeline: self.cfg.spec.pipeline.clone(),
            sink_dir: self.cfg.sink_dir.clone(),
            checkpoint_dir: self.cfg.checkpoint_storage.dir.clone(),
            batch: 10_000,
            exchange: Exchange::single(subtask),
        };
        let Ok(plan) = &self.plan else {
            return config;
        };
        if plan.stages.len() <= 1 {
            return config;
        }
        let keyed = |input: Option<&StageInput>| match input {
            Some(StageInput::Keyed {
                key,
                max_parallelism,
            }) => Some((key.clone(), *max_parallelism)),
            _ => None,
        };
        let this = &plan.stages[stage as usize];
        config.pipeline = this.steps.clone();
        config.exchange = Exchange {
            stage,
            index,
            attempt,
            input: keyed(Some(&this.input)).map(|(key, max_parallelism)| {
                // Producers of a failed deployment have no address: the consumer fails, and
                // the region restarts.
                let producers = (0..parallelism)
                    .map(|i| {
                        self.tasks
                            .get(&((stage - 1) * parallelism + i))
                            .and_then(|t| t.data_address.clone())
                            .unwrap_or_default()
                    })
                    .collect();
                KeyedInput {
                    key,
                    max_parallelism,
                    producers,
                }
            }),
            output: keyed(plan.output_of(stage as usize)).map(|(key, max_parallelism)| {
                KeyedOutput {
                    key,
                    max_parallelism,
                    consumers: parallelism,
                }
            }),
        };
        config
    }

    async fn broadcast(&self, command: TaskCommand) {
        for t in self.tasks.values() {
            if command == TaskCommand::Stop {
                // A closed inbox: the subtask ended, and its failure is on its way as an event.
                let _ = t.commands.send(command.clone()).await;
            } else {
                self.send(t, &command);
            }
        }
    }

    /// Sends a command without waiting.
    fn send(&self, t: &Deployed, command: &TaskCommand) {
        if let Err(mpsc::error::TrySendError::Full(_)) = t.commands.try_send(command.clone()) {
            // Its TaskManager reads nothing (frozen, partitioned) until the heartbeat
            // timeout says it is lost; the job master does not wait for it. A barrier
            // missed expires its checkpoint; a completion missed is caught up by the next.
            tracing::warn!(job_id = %self.job_id, command = ?command, "a subtask's command queue is full; command not sent");
        }
    }

    /// Stops every subtask and waits for them, then, for a globally terminal job, records its
    /// result and removes its HA data.
    async fn stop(mut self) -> JobOutcome {
        // A reconciliation cut short: what an earlier leader left of the job stops too.
        self.cfg.runtime.settle(&self.job_id);
        self.broadcast(TaskCommand::Stop).await;
        for (_, t) in std::mem::take(&mut self.tasks) {
            let _ = t.handle.await;
        }
        self.publish();
        let latest = self.core.latest_checkpoint().map(|m| m.subtasks.clone());
        let outcome = self.core.into_outcome();
        if outcome.status.is_globally_terminal() {
            finish_sink(&self.cfg, latest).await;
            // Once the result is recorded nothing restores from the snapshots any more; before
            // that a next leader may recover the job from them.
            if cleanup(&self.ha, &outcome, &self.cfg).await {
                self.cleaner.discard_job().await;
            }
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
                s.latest_checkpoint_completed_ms = Some(crate::now_ms());
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
            s.subtask_attempts = self.core.subtask_attempts();
            s.adopted_subtasks = self.core.adopted();
            s.records_in = self.records.total;
            s.lifetime = self.core.lifetime();
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

/// A globally terminal job's sink files: what its latest completed checkpoint recorded is
/// committed, every other hidden file of its run removed (pending files of checkpoints that
/// never completed, temporary files of crashed writes).
async fn finish_sink(cfg: &JobMasterConfig, latest: Option<BTreeMap<u32, serde_json::Value>>) {
    let job_id = cfg.spec.job_id();
    let states = match latest.as_ref().map(crate::taskmanager::task::sink_states) {
        None => BTreeMap::new(),
        Some(Ok(states)) => states,
        Some(Err(e)) => {
            tracing::error!(job_id, run_id = %cfg.run_id, error = %e, "the latest checkpoint's sink states are unreadable; the sink's hidden files stay");
            return;
        }
    };
    match sink::finish_run(&cfg.sink_dir, &cfg.run_id, &states).await {
        Ok(removed) if removed.is_empty() => {}
        Ok(removed) => {
            tracing::info!(job_id, run_id = %cfg.run_id, removed = %removed.join(", "), "removed the uncommitted sink files of the ended job")
        }
        Err(e) => {
            tracing::error!(job_id, run_id = %cfg.run_id, error = %e, "the ended job's sink files are not settled: committing its latest checkpoint's files or removing its hidden files failed")
        }
    }
}

/// Flink's order: result dirty, HA data removed, result clean; each step retried under
/// `cleanup-strategy` (a lost leadership stops it: the next leader finishes a dirty result).
/// Whether the job's result is recorded (dirty at least).
async fn cleanup(ha: &HaServices, outcome: &JobOutcome, cfg: &JobMasterConfig) -> bool {
    let entry = JobResultEntry {
        job_id: outcome.job_id.clone(),
        status: outcome.status,
        failure: outcome.failure.clone(),
        finished_at_ms: crate::now_ms(),
        lifetime: Some(outcome.lifetime),
    };
    let job_id = outcome.job_id.as_str();
    let retry = &cfg.cleanup;
    let leadership = &cfg.leadership;
    let recorded = retry
        .run("write the job result (dirty)", leadership, || {
            ha.job_results.create_dirty(&entry)
        })
        .await;
    if let Err(e) = recorded {
        tracing::warn!(job_id = %outcome.job_id, error = %e, "the job result is not recorded; its HA data and checkpoints stay");
        return false;
    }
    let cleanup = async {
        retry
            .run("remove the job's HA data", leadership, || {
                ha.remove_job_data(job_id)
            })
            .await?;
        retry
            .run("mark the job result clean", leadership, || {
                ha.job_results.mark_clean(job_id)
            })
            .await
    };
    if let Err(e) = cleanup.await {
        tracing::warn!(job_id = %outcome.job_id, error = %e, "HA cleanup incomplete; the result stays dirty for a retry");
    }
    true
}

/// Resolves when the reports change (never without a receiver, or once its sender is gone).
async fn reports_changed(reports: Option<&mut watch::Receiver<Reports>>) {
    if let Some(r) = reports
        && r.changed().await.is_ok()
    {
        return;
    }
    std::future::pending().await
}

/// Sleeps until `at` (forever if `None`; the arm is disabled then anyway).
async fn sleep_until(at: Option<Instant>) {
    match at {
        Some(at) => tokio::time::sleep_until(at).await,
        None => std::future::pending().await,
    }
}

#[cfg(test)]
mod tests {
    use std::collections::{BTreeMap, VecDeque};
    use std::sync::Mutex;

    use super::*;
    use crate::storage::StorageError;

    #[test]
    fn records_in_sums_every_deployment_and_never_goes_back() {
        let mut r = RecordsCounter::default();
        r.on_progress(0, 100);
        r.on_progress(1, 50);
        r.on_progress(0, 250);
        assert_eq!(r.total, 300);
        // Subtask 0 redeployed (a restart): its count starts again, the total goes on.
        r.on_progress(0, 20);
        assert_eq!(r.total, 320);
        r.on_progress(0, 20);
        assert_eq!(r.total, 320);
    }

    /// A checkpoint store whose answers the test scripts: per checkpoint its metadata bytes,
    /// and a queue of errors each call returns first.
    #[derive(Default)]
    struct Scripted {
        checkpoints: BTreeMap<u64, Bytes>,
        list_errors: Mutex<VecDeque<HaError>>,
        get_errors: Mutex<BTreeMap<u64, VecDeque<HaError>>>,
        calls: Mutex<u64>,
    }

    impl Scripted {
        fn with(ids: &[u64]) -> Scripted {
            let mut s = Scripted::default();
            for &id in ids {
                let m = CheckpointMetadata {
                    version: 1,
                    job_id: "j".into(),
                    checkpoint_id: id,
                    subtasks: BTreeMap::new(),
                    lifetime: Default::default(),
                };
                s.checkpoints.insert(id, Bytes::from(m.to_bytes()));
            }
            s
        }
    }

    #[async_trait::async_trait]
    impl CompletedCheckpointStore for Scripted {
        async fn add(&self, _: StoredCheckpoint) -> Result<(), HaError> {
            unreachable!("recovery only reads")
        }
        async fn checkpoint_ids(&self) -> Result<Vec<u64>, HaError> {
            *self.calls.lock().unwrap() += 1;
            match self.list_errors.lock().unwrap().pop_front() {
                Some(e) => Err(e),
                None => Ok(self.checkpoints.keys().copied().collect()),
            }
        }
        async fn get(&self, id: u64) -> Result<StoredCheckpoint, HaError> {
            *self.calls.lock().unwrap() += 1;
            if let Some(e) = self
                .get_errors
                .lock()
                .unwrap()
                .get_mut(&id)
                .and_then(|q| q.pop_front())
            {
                return Err(e);
            }
            Ok(StoredCheckpoint {
                checkpoint_id: id,
                metadata: self.checkpoints[&id].clone(),
            })
        }
        fn location(&self, id: u64) -> String {
            format!("znode /jobs/j/checkpoints/{id:019}")
        }
        async fn shutdown(&self, _: bool) -> Result<(), HaError> {
            unreachable!("recovery only reads")
        }
    }

    fn zk_down() -> HaError {
        HaError::ZooKeeper {
            quorum: "zk:2181".into(),
            message: "list /jobs/j/checkpoints: connection loss".into(),
        }
    }

    fn crc_mismatch(id: u64) -> HaError {
        HaError::Corrupt {
            path: format!("hdfs://nn/ha/completedCheckpoint-{id}"),
            message: "CRC-32C 0badf00d but the pointer says 12345678".into(),
        }
    }

    fn policy(fall_back: bool) -> RecoveryPolicy {
        RecoveryPolicy {
            fall_back_on_corruption: fall_back,
            ..RecoveryPolicy::default()
        }
    }

    async fn recover(
        store: &Scripted,
        fall_back: bool,
    ) -> Result<Option<Recovered>, RecoveryError> {
        let leadership = tokio_util::sync::CancellationToken::new();
        recover_checkpoint(store, "j", &policy(fall_back), &leadership).await
    }

    #[tokio::test(start_paused = true)]
    async fn transient_errors_are_retried_and_never_read_as_no_checkpoint() {
        // Two connection losses, then the list; one storage I/O error on the blob, then it.
        let store = Scripted::with(&[3, 4]);
        store
            .list_errors
            .lock()
            .unwrap()
            .extend([zk_down(), zk_down()]);
        store.get_errors.lock().unwrap().insert(
            4,
            VecDeque::from([HaError::Storage(StorageError::Io {
                path: "/ha/completedCheckpoint-4".into(),
                message: "DataNode unreachable".into(),
            })]),
        );
        let r = recover(&store, false).await.unwrap().unwrap();
        assert_eq!((r.metadata.checkpoint_id, r.skipped), (4, vec![]));
        assert_eq!(*store.calls.lock().unwrap(), 5);

        // Failing for good: an error naming the store and the cause, after the bounded tries.
        let store = Scripted::with(&[3]);
        let tries = RecoveryPolicy::default();
        let n = (1..).find(|r| tries.retry.delay(*r).is_none()).unwrap();
        store
            .list_errors
            .lock()
            .unwrap()
            .extend((0..n + 5).map(|_| zk_down()));
        let e = recover(&store, true).await.unwrap_err();
        assert!(!e.is_lost_leadership());
        assert_eq!(
            e.to_string(),
            format!(
                "cannot recover job j: the checkpoint store could not be read ({n} tries): ZooKeeper zk:2181: list /jobs/j/checkpoints: connection loss"
            )
        );
        // A permission error is not transient: one try.
        let store = Scripted::with(&[3]);
        store.get_errors.lock().unwrap().insert(
            3,
            VecDeque::from([HaError::Storage(StorageError::PermissionDenied {
                path: "/ha/completedCheckpoint-3".into(),
                message: "user yarn".into(),
            })]),
        );
        let e = recover(&store, true).await.unwrap_err();
        assert!(
            matches!(&e, RecoveryError::Unreadable { tries: 1, .. }),
            "{e}"
        );
        // An empty store is the one case of "no checkpoint".
        assert_eq!(recover(&Scripted::default(), false).await.unwrap(), None);
        // Fenced off: a suspension, not a recovery failure.
        let store = Scripted::with(&[3]);
        store
            .list_errors
            .lock()
            .unwrap()
            .push_back(HaError::NotLeader("fenced".into()));
        assert!(
            recover(&store, false)
                .await
                .unwrap_err()
                .is_lost_leadership()
        );
    }

    #[tokio::test]
    async fn a_corrupt_checkpoint_fails_recovery_unless_falling_back_is_enabled() {
        let mut store = Scripted::with(&[5, 6, 7]);
        store
            .get_errors
            .lock()
            .unwrap()
            .insert(7, VecDeque::from([crc_mismatch(7), crc_mismatch(7)]));
        // Checkpoint 6's metadata does not decode.
        store.checkpoints.insert(6, Bytes::from_static(b"{\"vers"));
        let e = recover(&store, false).await.unwrap_err();
        assert_eq!(
            e.to_string(),
            "cannot recover job j: checkpoint 7 (znode /jobs/j/checkpoints/0000000000000000007) is corrupt: hdfs://nn/ha/completedCheckpoint-7: CRC-32C 0badf00d but the pointer says 12345678; not falling back to an older checkpoint (execution.checkpointing.recover-from-older-on-corruption: false); the HA data is kept, see `yarnflow ha inspect`"
        );
        // Opted in: 7 and 6 are skipped, 5 is recovered.
        let r = recover(&store, true).await.unwrap().unwrap();
        assert_eq!((r.metadata.checkpoint_id, r.skipped), (5, vec![7, 6]));
        // Metadata of another checkpoint under this id is corrupt too.
        let mut store = Scripted::with(&[8]);
        let other = store.checkpoints[&8].clone();
        store.checkpoints.insert(9, other);
        let e = recover(&store, false).await.unwrap_err().to_string();
        assert!(
            e.contains("checkpoint 9") && e.contains("metadata is of checkpoint 8"),
            "{e}"
        );
        // Opted in, but nothing readable is left: never a start from scratch.
        let mut store = Scripted::with(&[]);
        store.checkpoints.insert(2, Bytes::from_static(b"x"));
        let e = recover(&store, true).await.unwrap_err().to_string();
        assert!(
            e.contains("every retained checkpoint is corrupt (checkpoint 2 at znode"),
            "{e}"
        );
    }

    /// Counts deployments, then runs them in process.
    struct Counting(std::sync::atomic::AtomicU32);

    #[async_trait::async_trait]
    impl TaskRuntime for Counting {
        async fn deploy(
            &self,
            config: TaskConfig,
            restore: Option<SubtaskState>,
            events: mpsc::Sender<TaskEvent>,
        ) -> Result<Deployed, RuntimeError> {
            self.0.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
            InProcess::default().deploy(config, restore, events).await
        }
    }

    #[tokio::test]
    async fn a_revoked_job_master_deploys_nothing_and_suspends() {
        let dir = std::env::temp_dir().join(format!("yarnflow-jm-revoked-{}", std::process::id()));
        let d = dir.display().to_string();
        let store: Arc<dyn crate::storage::BlobStore> = Arc::new(crate::storage::local::LocalStore);
        let ha = HaServices::embedded(store.clone(), &format!("{d}/ha"), 1);
        let spec = JobSpec::parse(
            "name: revoked\nparallelism: 2\npipeline:\n  - source: { kind: sequence, from: 0, to: 10 }\n  - sink: { kind: files }\n",
            "test",
        )
        .unwrap();
        let runtime = Arc::new(Counting(Default::default()));
        let leadership = tokio_util::sync::CancellationToken::new();
        let cfg = JobMasterConfig::from_config(
            &crate::config::Config::defaults(),
            spec,
            Location {
                store: store.clone(),
                path: format!("{d}/out"),
            },
            Some(Location {
                store,
                path: format!("{d}/checkpoints"),
            }),
            runtime.clone(),
            leadership.clone(),
        )
        .unwrap();
        // Revoked between the grant and the job master's first action.
        leadership.cancel();
        let (_handle, done) = start(cfg, ha);
        let outcome = done.await.unwrap();
        assert_eq!(outcome.status, JobStatus::Suspended);
        assert!(!outcome.recovery_failed);
        assert_eq!(runtime.0.load(std::sync::atomic::Ordering::SeqCst), 0);
        let _ = std::fs::remove_dir_all(&dir);
    }
}
