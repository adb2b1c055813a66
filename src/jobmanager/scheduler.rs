//! A job master's bookkeeping as one pure state machine (Flink's `DefaultScheduler` with region
//! failover, plus the checkpoint coordinator's decisions): events go in ([`Scheduler::on_failed`],
//! [`Scheduler::on_ack`], ...), [`Action`]s come out, and the job master's loop performs them
//! (deploy, broadcast, store, stop) and reports what happened. No I/O, no clock of its own
//! (every call that cares takes `now`), so every rule is unit-tested.
//!
//! Rules:
//! * in a single-stage job every subtask is its own failover region (forward edges only): a
//!   failed subtask alone is restarted, after the restart strategy's delay, from the latest
//!   completed checkpoint; in a job with a keyed (all-to-all) edge the connected region is the
//!   whole job ([`Scheduler::with_topology`]): any failure restarts every subtask;
//! * in a job of several stages a checkpoint's barriers go to the source subtasks (and to
//!   finished ones, whose inputs ended) only ([`Action::Trigger`]); the others align them in
//!   band, and every subtask acknowledges;
//! * the first failure takes the job RUNNING → FAILING → RESTARTING (or FAILED when the strategy
//!   allows no more restarts); a failure while RESTARTING only extends the pending restarts; the
//!   job is RUNNING again once every pending restart is deployed;
//! * a failover aborts every pending checkpoint, the final one included;
//! * a periodic checkpoint is triggered only while every subtask runs (or has finished) and no
//!   other is pending; a pending one expires once the checkpoint timeout is over
//!   ([`Scheduler::next_expiry`], whatever else is going on), and the next one is triggered at
//!   the next interval;
//! * a checkpoint failure is not a job failure (Flink's `CheckpointFailureManager`): expiries,
//!   declines and failed stores count toward `tolerable-failed-checkpoints`; exceeding it fails
//!   the whole job over through the restart strategy (every subtask restarts from the latest
//!   completed checkpoint); only a restart strategy that gives up makes the job FAILED;
//! * a store whose outcome is unknown (FLINK-24543: the write may have landed) is neither
//!   completed nor failed until the store is read back ([`Action::ReadBack`]); until then no
//!   other checkpoint is triggered;
//! * once every subtask has finished, the final checkpoint commits the tails: the job is
//!   FINISHED when that checkpoint is stored and every sink has committed it. A final checkpoint
//!   that fails is triggered again.
//!
//! * a job recovered from a checkpoint while an earlier leader's subtasks may still run
//!   ([`Scheduler::start_reconciling`]) stays CREATED, its subtasks `Reconciling`, until the
//!   TaskManagers' reports are in ([`Scheduler::on_reports`]: every subtask reported, every
//!   earlier TaskManager registered, or a report that cannot be adopted) or the reconcile
//!   deadline is over ([`Scheduler::on_reconcile_due`]). A subtask reported running with this
//!   job run, its own stage and index, and an acknowledgement no older than the recovered
//!   checkpoint is adopted (RUNNING or FINISHED, same attempt number, no restart); the others
//!   (missing: their TaskManager died too; reported twice; not matching) are redeployed from
//!   the latest completed checkpoint as one restart, and their stale reports stopped. A job
//!   with a keyed edge (one region) is adopted only as a whole: every subtask adoptable, all
//!   of one deployment round (their partitions feed each other); anything less restarts it as
//!   a whole from its checkpoint, in a new round, and a report that cannot be adopted settles
//!   that at once. Then RUNNING; adopted sinks are told the recovered checkpoint
//!   completed (its notice may have died with the leader) and the next checkpoint id comes
//!   from the HA counter, past any checkpoint the dead leader left pending.
//!
//! * a job that restored from a checkpoint (a recovery or a restart) checkpoints as soon as
//!   every subtask runs again, not an interval later: its sinks' output since that checkpoint
//!   stays uncommitted until the next one completes.
//!
//! * the counts of the job's whole life ([`LifetimeCounts`]: checkpoints, restarts,
//!   failovers) go into every checkpoint's metadata as of that checkpoint, itself included
//!   ([`Action::Store`]); a recovery goes on from the recovered checkpoint's, plus one
//!   failover ([`Scheduler::recover`], [`Scheduler::recover_without_checkpoint`]). The
//!   outcome's other counters count under this JobManager only.
//!
//! One subtask's life:
//! ```text
//! Reconciling ──adopted──▶ Running / Finished
//!     └── missing, not matching ──▶ Deploying
//! Deploying ──deployed──▶ Running ──source exhausted──▶ Finished
//!     │ failed               │ failed                      │ failed
//!     ▼                      ▼                             ▼
//! Restarting(at) ◀───────────┴─────────────────────────────┘
//!     └──────── restart delay over ────────▶ Deploying
//! ```

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use tokio::time::Instant;

use super::checkpoint::{Ack, CheckpointMetadata, CheckpointTracker, LifetimeCounts};
use super::error::RuntimeError;
use super::restart::RestartStrategy;
use super::runtime::{ReportedSubtask, Reports};
use super::status::{JobLifecycle, JobStatus};
use crate::taskmanager::task::{self, SubtaskState, TaskCommand};

/// How the job ended (for this JobManager).
#[derive(Debug, Clone)]
pub struct JobOutcome {
    pub job_id: String,
    pub status: JobStatus,
    pub restarts: u32,
    pub failure: Option<String>,
    pub completed_checkpoints: u64,
    /// Checkpoints that expired, were declined or could not be stored.
    pub failed_checkpoints: u64,
    pub checkpoint_durations: Vec<Duration>,
    pub restored_from: Option<u64>,
    /// Every subtask failure, in order (what the REST API shows as exceptions).
    pub failures: Vec<String>,
    /// SUSPENDED because the job's checkpoints could not be recovered (`failure` says why),
    /// not because leadership was lost: the deployment must end visibly (the ApplicationMaster
    /// exits non-zero so that YARN starts the next attempt).
    pub recovery_failed: bool,
    /// The counts over the job's whole life (the fields above count this leader's only).
    pub lifetime: LifetimeCounts,
}

impl JobOutcome {
    /// Why the job's checkpoints could not be recovered, if that is how it ended: one line
    /// for the deployment to end with.
    pub fn recovery_failure(&self) -> Option<String> {
        self.recovery_failed.then(|| {
            self.failure
                .clone()
                .unwrap_or_else(|| format!("job {} could not be recovered", self.job_id))
        })
    }
}

/// What the job master's loop must do, in order.
#[derive(Debug, Clone, PartialEq)]
pub enum Action {
    /// Deploy this subtask, restored from `restore` if given; then report
    /// [`Scheduler::on_deployed`].
    Deploy {
        subtask: u32,
        restore: Option<SubtaskState>,
    },
    /// Kill and forget this subtask's deployment (it failed).
    Release { subtask: u32 },
    /// Draw the next checkpoint id from the HA counter; then report
    /// [`Scheduler::on_checkpoint_id`] with the same `final_checkpoint`.
    DrawCheckpointId { final_checkpoint: bool },
    /// Send this command to every deployed subtask.
    Broadcast(TaskCommand),
    /// Send this checkpoint's barrier to these subtasks only (the sources and the finished
    /// ones, of a job with several stages).
    Trigger {
        checkpoint_id: u64,
        subtasks: Vec<u32>,
    },
    /// Store this all-acknowledged checkpoint in the HA checkpoint store; then report
    /// [`Scheduler::on_stored`].
    Store(CheckpointMetadata),
    /// A store of this checkpoint failed without a clear verdict: read the store's checkpoint
    /// ids to learn whether it landed; then report [`Scheduler::on_read_back`].
    ReadBack { checkpoint_id: u64 },
    /// Take over this running subtask of an earlier leader; then report
    /// [`Scheduler::on_adopted`].
    Adopt(ReportedSubtask),
    /// Stop this reported subtask of an earlier leader (it is redeployed instead).
    Discard(ReportedSubtask),
    /// The reconciliation is over: stop whatever else is reported of the job from now on.
    Settle,
    /// The job reached this terminal status: stop every subtask, then clean up.
    Stop(JobStatus),
}

/// Where one subtask is in its life.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SubtaskStatus {
    /// An earlier leader's deployment may still run it: waiting for its TaskManager's report.
    Reconciling,
    /// A deployment is on its way.
    Deploying,
    Running,
    /// Its source is exhausted; it still serves barriers until the final checkpoint.
    Finished,
    /// Failed; redeployed at this instant (the restart strategy's delay).
    Restarting {
        at: Instant,
    },
}

/// What the reports say about one subtask.
#[derive(Debug, Clone)]
enum Verdict {
    Adopt(ReportedSubtask),
    /// Reported, but not adoptable (another run, another place, too old, or twice).
    Refuse(Vec<ReportedSubtask>),
    Missing,
}

/// The job's final checkpoint, once every subtask has finished.
#[derive(Debug, Clone, PartialEq, Eq)]
enum FinalCheckpoint {
    NotYet,
    /// Its id is being drawn.
    Drawing,
    /// Triggered; these sinks have committed it since it was stored.
    Triggered {
        id: u64,
        committed: BTreeSet<u32>,
    },
}

/// One job's bookkeeping.
#[derive(Debug)]
pub struct Scheduler {
    job_id: String,
    /// The number of subtasks (execution vertices over all stages).
    parallelism: u32,
    /// Subtasks `0..sources` read the source: they get the JobManager's barriers.
    sources: u32,
    /// One failover region for the whole job (it has an all-to-all edge).
    whole_job_region: bool,
    lifecycle: JobLifecycle,
    restart: RestartStrategy,
    tracker: CheckpointTracker,
    subtasks: BTreeMap<u32, SubtaskStatus>,
    /// The latest completed (stored) checkpoint: what restarts restore from.
    latest: Option<CheckpointMetadata>,
    /// The checkpoint recovered although newer ones completed (they were corrupt, and falling
    /// back was enabled): restores from it remove the sinks' committed parts of the newer ones.
    fell_back_to: Option<u64>,
    /// All acknowledged, being stored.
    storing: BTreeMap<u64, CheckpointMetadata>,
    /// Stores whose outcome is unknown until read back, with the error the store gave.
    unknown: BTreeMap<u64, (CheckpointMetadata, String)>,
    final_checkpoint: FinalCheckpoint,
    outcome: JobOutcome,
    /// Each subtask's attempt number (0 at first, one more per redeployment; kept by adoption).
    attempts: BTreeMap<u32, u32>,
    /// The deployment round restarts count from (an adopted deployment's round).
    round_base: u32,
    /// While the reports of an earlier leader's deployment are awaited.
    reconcile: Option<Reconcile>,
    /// Subtasks adopted from an earlier leader.
    adopted: u32,
    /// The job restored from a checkpoint (a recovery or a restart): the next checkpoint is
    /// triggered as soon as every subtask runs, not an interval later. What the sinks wrote
    /// since that checkpoint is uncommitted until the next one completes, so this shortens
    /// the output gap of a failover.
    checkpoint_when_up: bool,
    /// The job's counts before this leader: the recovered checkpoint's, plus this failover
    /// ([`Scheduler::recover`]); this leader's own counts add to them ([`Scheduler::lifetime`]).
    lifetime_base: LifetimeCounts,
}

/// What a reconciliation waits for.
#[derive(Debug, Clone)]
struct Reconcile {
    /// The job run the reports must name.
    run_id: String,
    deadline: Instant,
    /// The reports so far.
    reports: Reports,
}

impl Scheduler {
    /// A job of `parallelism` subtasks, starting afresh unless [`Scheduler::recover`] says
    /// otherwise.
    pub fn new(
        job_id: &str,
        parallelism: u32,
        restart: RestartStrategy,
        tracker: CheckpointTracker,
    ) -> Scheduler {
        Scheduler {
            job_id: job_id.to_string(),
            parallelism,
            sources: parallelism,
            whole_job_region: false,
            lifecycle: JobLifecycle::new(job_id),
            restart,
            tracker,
            subtasks: BTreeMap::new(),
            outcome: JobOutcome {
                job_id: job_id.to_string(),
                status: JobStatus::Created,
                restarts: 0,
                failure: None,
                completed_checkpoints: 0,
                failed_checkpoints: 0,
                checkpoint_durations: Vec::new(),
                restored_from: None,
                failures: Vec::new(),
                recovery_failed: false,
                lifetime: LifetimeCounts::default(),
            },
            latest: None,
            fell_back_to: None,
            storing: BTreeMap::new(),
            unknown: BTreeMap::new(),
            final_checkpoint: FinalCheckpoint::NotYet,
            attempts: BTreeMap::new(),
            round_base: 0,
            reconcile: None,
            adopted: 0,
            checkpoint_when_up: false,
            lifetime_base: LifetimeCounts::default(),
        }
    }

    /// A job of several stages: subtasks `0..sources` read the source (they alone get the
    /// JobManager's barriers), and a failure restarts every subtask (`whole_job_region`).
    pub fn with_topology(mut self, sources: u32, whole_job_region: bool) -> Scheduler {
        self.sources = sources.min(self.parallelism);
        self.whole_job_region = whole_job_region;
        self
    }

    /// The deployment round: it changes with every restart, so that partitions of subtasks
    /// deployed before a failover never feed those deployed after it.
    pub fn attempt(&self) -> u32 {
        self.round_base + self.outcome.restarts
    }

    /// Subtask `subtask`'s attempt number.
    pub fn subtask_attempt(&self, subtask: u32) -> u32 {
        self.attempts.get(&subtask).copied().unwrap_or(0)
    }

    /// Every subtask's attempt number, by execution vertex.
    pub fn subtask_attempts(&self) -> Vec<u32> {
        (0..self.parallelism)
            .map(|i| self.subtask_attempt(i))
            .collect()
    }

    /// Subtasks adopted from an earlier leader's deployment.
    pub fn adopted(&self) -> u32 {
        self.adopted
    }

    /// When the reconciliation gives up waiting for reports ([`Scheduler::on_reconcile_due`]).
    pub fn reconcile_deadline(&self) -> Option<Instant> {
        self.reconcile.as_ref().map(|r| r.deadline)
    }

    /// Instead of [`Scheduler::start`], for a job recovered from a checkpoint whose earlier
    /// leader's subtasks may still run (run `run_id`): waits for their reports until
    /// `deadline`; `reports` are those in already.
    pub fn start_reconciling(
        &mut self,
        run_id: &str,
        reports: Reports,
        deadline: Instant,
        now: Instant,
    ) -> Vec<Action> {
        for subtask in 0..self.parallelism {
            self.subtasks.insert(subtask, SubtaskStatus::Reconciling);
        }
        self.reconcile = Some(Reconcile {
            run_id: run_id.to_string(),
            deadline,
            reports: Reports::default(),
        });
        self.on_reports(reports, now)
    }

    /// What the TaskManagers report changed: adopts once the picture is complete (every
    /// subtask reported and adoptable, every earlier TaskManager registered, or a keyed
    /// job's report that cannot be adopted); waits otherwise.
    pub fn on_reports(&mut self, reports: Reports, now: Instant) -> Vec<Action> {
        let Some(r) = self.reconcile.as_mut() else {
            return Vec::new();
        };
        if self.lifecycle.status().is_terminal() {
            return Vec::new();
        }
        r.reports = reports;
        let verdicts = self.verdicts();
        let all_adoptable = verdicts.iter().all(|v| matches!(v, Verdict::Adopt(_)));
        let complete = self.reconcile.as_ref().is_some_and(|r| r.reports.complete);
        // One refused subtask of a keyed job restarts it as a whole: no need to wait for more.
        let keyed_refused =
            self.whole_job_region && verdicts.iter().any(|v| matches!(v, Verdict::Refuse(_)));
        if all_adoptable || complete || keyed_refused {
            self.settle(verdicts, now)
        } else {
            Vec::new()
        }
    }

    /// The reconcile deadline is over: adopts what can be, redeploys the rest.
    pub fn on_reconcile_due(&mut self, now: Instant) -> Vec<Action> {
        if self.reconcile.is_none() || self.lifecycle.status().is_terminal() {
            return Vec::new();
        }
        let verdicts = self.verdicts();
        self.settle(verdicts, now)
    }

    /// Each subtask's verdict on the reports so far.
    fn verdicts(&self) -> Vec<Verdict> {
        let Some(r) = &self.reconcile else {
            return Vec::new();
        };
        let per_stage = if self.sources < self.parallelism {
            self.sources.max(1)
        } else {
            self.parallelism.max(1)
        };
        let latest = self.latest.as_ref().map(|m| m.checkpoint_id);
        let mut verdicts: Vec<Verdict> = (0..self.parallelism)
            .map(|subtask| {
                let mut of = r.reports.subtasks.iter().filter(|s| s.subtask == subtask);
                let (Some(report), None) = (of.next(), of.next()) else {
                    let all: Vec<ReportedSubtask> = r
                        .reports
                        .subtasks
                        .iter()
                        .filter(|s| s.subtask == subtask)
                        .cloned()
                        .collect();
                    return if all.is_empty() {
                        Verdict::Missing
                    } else {
                        // Two deployments of one subtask: neither can be trusted.
                        Verdict::Refuse(all)
                    };
                };
                let matches = report.run_id == r.run_id
                    && report.stage == subtask / per_stage
                    && report.index == subtask % per_stage
                    && latest.is_none_or(|l| report.last_acknowledged.is_some_and(|a| a >= l));
                if matches {
                    Verdict::Adopt(report.clone())
                } else {
                    Verdict::Refuse(vec![report.clone()])
                }
            })
            .collect();
        // Connected subtasks must come from one deployment round.
        if self.whole_job_region {
            let rounds: BTreeSet<u32> = verdicts
                .iter()
                .filter_map(|v| match v {
                    Verdict::Adopt(r) => Some(r.round),
                    _ => None,
                })
                .collect();
            if rounds.len() > 1 {
                for v in &mut verdicts {
                    if let Verdict::Adopt(r) = v {
                        *v = Verdict::Refuse(vec![r.clone()]);
                    }
                }
            }
        }
        verdicts
    }

    /// Ends the reconciliation: adopts the adoptable subtasks, stops every other report and
    /// redeploys the rest from the latest completed checkpoint (one restart); in a job of one
    /// region, anything short of adopting every subtask redeploys them all.
    fn settle(&mut self, verdicts: Vec<Verdict>, now: Instant) -> Vec<Action> {
        let Some(reconcile) = self.reconcile.take() else {
            return Vec::new();
        };
        let mut actions = Vec::new();
        let all_adoptable = verdicts.iter().all(|v| matches!(v, Verdict::Adopt(_)));
        let adopt_any = all_adoptable || !self.whole_job_region;
        let mut adopt = Vec::new();
        let mut redeploy = Vec::new();
        for (subtask, verdict) in (0..self.parallelism).zip(verdicts) {
            match verdict {
                Verdict::Adopt(r) if adopt_any => adopt.push(r),
                Verdict::Adopt(r) => {
                    self.attempts.insert(subtask, r.attempt + 1);
                    redeploy.push(subtask);
                    actions.push(Action::Discard(r));
                }
                Verdict::Refuse(reports) => {
                    let attempt = reports.iter().map(|r| r.attempt).max().unwrap_or(0);
                    self.attempts.insert(subtask, attempt + 1);
                    redeploy.push(subtask);
                    actions.extend(reports.into_iter().map(Action::Discard));
                }
                // Its TaskManager died with the leader: it ran at least once before.
                Verdict::Missing => {
                    self.attempts.insert(subtask, 1);
                    redeploy.push(subtask);
                }
            }
        }
        // Reports of subtasks this job does not have.
        actions.extend(
            reconcile
                .reports
                .subtasks
                .iter()
                .filter(|r| r.subtask >= self.parallelism)
                .cloned()
                .map(Action::Discard),
        );
        let mut restores = Vec::new();
        for &subtask in &redeploy {
            match self.restore_of(subtask) {
                Ok(restore) => restores.push(Action::Deploy { subtask, restore }),
                Err(e) => {
                    self.fail_job(e.to_string(), &mut actions);
                    return actions;
                }
            }
        }
        let max_round = reconcile
            .reports
            .subtasks
            .iter()
            .map(|r| r.round)
            .max()
            .unwrap_or(0);
        if let Some(r) = adopt.first() {
            self.round_base = r.round;
        } else {
            self.round_base = max_round;
        }
        if !redeploy.is_empty() {
            // The job restarted (for the most part, or in part) from its checkpoint.
            self.outcome.restarts += 1;
            tracing::warn!(job_id = %self.job_id, adopted = adopt.len(), redeployed = redeploy.len(), "reconciliation incomplete: redeploying from the latest completed checkpoint");
        } else {
            tracing::info!(job_id = %self.job_id, adopted = adopt.len(), "every subtask of the earlier leader adopted; no restart");
        }
        for r in &adopt {
            tracing::info!(job_id = %self.job_id, subtask = r.subtask, taskmanager = %r.taskmanager, attempt = r.attempt, finished = r.finished, last_acknowledged = ?r.last_acknowledged, "adopting a running subtask");
            let status = if r.finished {
                SubtaskStatus::Finished
            } else {
                SubtaskStatus::Running
            };
            self.subtasks.insert(r.subtask, status);
            self.attempts.insert(r.subtask, r.attempt);
        }
        for &subtask in &redeploy {
            self.subtasks.insert(subtask, SubtaskStatus::Deploying);
        }
        self.adopted = adopt.len() as u32;
        self.transition(JobStatus::Running, &mut actions);
        actions.extend(adopt.into_iter().map(Action::Adopt));
        // After the adoptions: settling stops whatever is still reported.
        actions.push(Action::Settle);
        actions.extend(restores);
        if let Some(latest) = &self.latest
            && self.adopted > 0
        {
            // Its completion notice may have died with the earlier leader.
            actions.push(Action::Broadcast(TaskCommand::Complete(
                latest.checkpoint_id,
            )));
        }
        if self
            .subtasks
            .values()
            .all(|s| *s == SubtaskStatus::Finished)
        {
            self.final_checkpoint = FinalCheckpoint::Drawing;
            actions.push(Action::DrawCheckpointId {
                final_checkpoint: true,
            });
        }
        self.checkpoint_if_up(&mut actions);
        let _ = now;
        actions
    }

    /// An adoption ended: a subtask that could not be taken over fails (and restarts).
    pub fn on_adopted(
        &mut self,
        subtask: u32,
        result: Result<(), RuntimeError>,
        now: Instant,
    ) -> Vec<Action> {
        match result {
            Ok(()) => Vec::new(),
            Err(e) => self.on_failed(subtask, e, now),
        }
    }

    /// The latest completed checkpoint (recovered or stored), if any.
    pub fn latest_checkpoint(&self) -> Option<&CheckpointMetadata> {
        self.latest.as_ref()
    }

    /// Before [`Scheduler::start`]: the job resumes from `latest`, the latest completed
    /// checkpoint in HA, or (`newer_skipped`) an older one because the newer ones are corrupt;
    /// then every restore from it tells the sinks to remove the newer checkpoints' committed
    /// parts first, so the output stays exactly-once.
    ///
    /// The job's lifetime counts go on from that checkpoint's, plus one failover (this one).
    pub fn recover(&mut self, latest: CheckpointMetadata, newer_skipped: bool) {
        self.lifetime_base = LifetimeCounts {
            failovers: latest.lifetime.failovers + 1,
            ..latest.lifetime
        };
        self.outcome.restored_from = Some(latest.checkpoint_id);
        self.checkpoint_when_up = true;
        self.fell_back_to = newer_skipped.then_some(latest.checkpoint_id);
        self.latest = Some(latest);
    }

    /// Before [`Scheduler::start`], instead of [`Scheduler::recover`]: a later leader recovered
    /// the job, which has no completed checkpoint. It starts afresh; its lifetime counts
    /// count this failover (whatever the dead leader counted is gone with it).
    pub fn recover_without_checkpoint(&mut self) {
        self.lifetime_base = LifetimeCounts {
            failovers: 1,
            ..LifetimeCounts::default()
        };
    }

    /// Before [`Scheduler::start`]: the checkpoints could not be recovered (`error` says
    /// which and why). SUSPENDED, not FAILED: nothing is deployed, no result is recorded and
    /// the HA data stays, for an operator to inspect and for the next attempt to retry.
    pub fn on_recovery_failed(&mut self, error: String) -> Vec<Action> {
        let mut actions = Vec::new();
        if !self.status().is_terminal() {
            tracing::error!(job_id = %self.job_id, error = %error, "job recovery failed");
            self.outcome.failure = Some(error);
            self.outcome.recovery_failed = true;
            self.transition(JobStatus::Suspended, &mut actions);
        }
        actions
    }

    pub fn status(&self) -> JobStatus {
        self.lifecycle.status()
    }

    /// Counters and failures so far.
    pub fn outcome(&self) -> &JobOutcome {
        &self.outcome
    }

    /// The job's counts over its whole life so far: those it was recovered with plus this
    /// leader's (see [`LifetimeCounts`] for what a failover can lose).
    pub fn lifetime(&self) -> LifetimeCounts {
        let base = self.lifetime_base;
        LifetimeCounts {
            completed_checkpoints: base.completed_checkpoints + self.outcome.completed_checkpoints,
            failed_checkpoints: base.failed_checkpoints + self.tracker.failed,
            restarts: base.restarts + u64::from(self.outcome.restarts),
            failovers: base.failovers,
        }
    }

    pub fn tracker(&self) -> &CheckpointTracker {
        &self.tracker
    }

    pub fn subtask(&self, subtask: u32) -> Option<SubtaskStatus> {
        self.subtasks.get(&subtask).copied()
    }

    /// When the next failed subtask is due to be redeployed.
    pub fn next_restart(&self) -> Option<Instant> {
        self.subtasks
            .values()
            .filter_map(|s| match s {
                SubtaskStatus::Restarting { at } => Some(*at),
                _ => None,
            })
            .min()
    }

    /// When the oldest pending checkpoint expires: the job master calls
    /// [`Scheduler::on_expiry_due`] then.
    pub fn next_expiry(&self) -> Option<Instant> {
        if self.status().is_terminal() {
            return None;
        }
        self.tracker.next_expiry()
    }

    /// The final outcome, with the checkpoint durations.
    pub fn into_outcome(self) -> JobOutcome {
        let lifetime = self.lifetime();
        let mut outcome = self.outcome;
        outcome.lifetime = lifetime;
        outcome.status = self.lifecycle.status();
        outcome.failed_checkpoints = self.tracker.failed;
        outcome.checkpoint_durations = self.tracker.durations;
        outcome
    }

    /// Schedules every subtask (Flink's bulk slot request: all at once). A restore state that
    /// does not parse fails the job before anything is deployed.
    pub fn start(&mut self) -> Vec<Action> {
        let mut actions = Vec::new();
        let mut deploys = Vec::new();
        for subtask in 0..self.parallelism {
            match self.restore_of(subtask) {
                Ok(restore) => deploys.push(Action::Deploy { subtask, restore }),
                Err(e) => {
                    self.fail_job(e.to_string(), &mut actions);
                    return actions;
                }
            }
        }
        for subtask in 0..self.parallelism {
            self.subtasks.insert(subtask, SubtaskStatus::Deploying);
        }
        // RUNNING while deploying, as in Flink: a deployment that fails is a subtask failure.
        self.transition(JobStatus::Running, &mut actions);
        actions.extend(deploys);
        actions
    }

    /// A deployment ended: the subtask runs, or its failure goes through the restart strategy.
    pub fn on_deployed(
        &mut self,
        subtask: u32,
        result: Result<(), RuntimeError>,
        now: Instant,
    ) -> Vec<Action> {
        if self.status().is_terminal() || self.subtask(subtask) != Some(SubtaskStatus::Deploying) {
            return Vec::new();
        }
        match result {
            Ok(()) => {
                self.subtasks.insert(subtask, SubtaskStatus::Running);
                let mut actions = Vec::new();
                let restarts_pending = self.subtasks.values().any(|s| {
                    matches!(
                        s,
                        SubtaskStatus::Restarting { .. } | SubtaskStatus::Deploying
                    )
                });
                if self.status() == JobStatus::Restarting && !restarts_pending {
                    self.transition(JobStatus::Running, &mut actions);
                }
                self.checkpoint_if_up(&mut actions);
                actions
            }
            Err(e) => self.on_failed(subtask, RuntimeError::deploy(e), now),
        }
    }

    /// A subtask failed (it reported so, it was killed, its TaskManager was lost, or its
    /// deployment failed). A subtask already waiting for its restart cannot fail again.
    pub fn on_failed(&mut self, subtask: u32, error: RuntimeError, now: Instant) -> Vec<Action> {
        let deployed = matches!(
            self.subtask(subtask),
            Some(SubtaskStatus::Deploying | SubtaskStatus::Running | SubtaskStatus::Finished)
        );
        if self.status().is_terminal() || !deployed {
            tracing::debug!(job_id = %self.job_id, subtask, error = %error, "failure of a subtask that is not deployed; ignored");
            return Vec::new();
        }
        tracing::warn!(job_id = %self.job_id, subtask, error = %error, "subtask failed");
        self.outcome
            .failures
            .push(format!("subtask {subtask}: {error}"));
        if self.whole_job_region {
            let mut actions = Vec::new();
            self.restart_region(Some(subtask), error, now, &mut actions);
            return actions;
        }
        let mut actions = vec![Action::Release { subtask }];
        // Nothing pending can complete without this subtask.
        self.abort_checkpoints();
        if self.status() == JobStatus::Running {
            self.transition(JobStatus::Failing, &mut actions);
        }
        match self.restart.on_failure(now) {
            Some(delay) => {
                self.outcome.restarts += 1;
                self.subtasks
                    .insert(subtask, SubtaskStatus::Restarting { at: now + delay });
                // While RESTARTING already, this failure only adds a pending restart.
                if self.status() == JobStatus::Failing {
                    self.transition(JobStatus::Restarting, &mut actions);
                }
            }
            None => {
                let e = RuntimeError::NoMoreRestarts {
                    subtask,
                    strategy: self.restart.name(),
                    cause: Box::new(error),
                };
                self.fail_job(e.to_string(), &mut actions);
            }
        }
        actions
    }

    /// Time passed: redeploys every failed subtask whose restart delay is over.
    pub fn on_restart_due(&mut self, now: Instant) -> Vec<Action> {
        let due: Vec<u32> = self
            .subtasks
            .iter()
            .filter(|(_, s)| matches!(s, SubtaskStatus::Restarting { at } if *at <= now))
            .map(|(i, _)| *i)
            .collect();
        let mut actions = Vec::new();
        if self.status().is_terminal() {
            return actions;
        }
        for subtask in due {
            match self.restore_of(subtask) {
                Ok(restore) => {
                    *self.attempts.entry(subtask).or_insert(0) += 1;
                    self.checkpoint_when_up |= self.latest.is_some();
                    tracing::info!(job_id = %self.job_id, subtask, checkpoint_id = ?self.latest.as_ref().map(|m| m.checkpoint_id), "restarting the failed subtask's region");
                    self.subtasks.insert(subtask, SubtaskStatus::Deploying);
                    actions.push(Action::Deploy { subtask, restore });
                }
                Err(e) => {
                    self.fail_job(e.to_string(), &mut actions);
                    return actions;
                }
            }
        }
        actions
    }

    /// A pending checkpoint's timeout is over ([`Scheduler::next_expiry`]): it expires, which
    /// counts as a checkpoint failure.
    pub fn on_expiry_due(&mut self, now: Instant) -> Vec<Action> {
        let mut actions = Vec::new();
        if !self.status().is_terminal() {
            self.expire(now, &mut actions);
        }
        actions
    }

    /// Expires overdue checkpoints; too many failures fail the job over. `false` if it did.
    fn expire(&mut self, now: Instant, actions: &mut Vec<Action>) -> bool {
        match self.tracker.expire(now) {
            Ok(expired) => {
                if !expired.is_empty() {
                    tracing::warn!(job_id = %self.job_id, checkpoints = ?expired, timeout = ?self.tracker.timeout(), "checkpoint expired before every subtask acknowledged it");
                }
                true
            }
            Err(e) => {
                self.fail_over_job(RuntimeError::from(e), now, actions);
                false
            }
        }
    }

    /// The checkpoint interval passed: expires overdue checkpoints, reads back stores of
    /// unknown outcome, and triggers the next checkpoint (or the final one again if it failed).
    pub fn on_tick(&mut self, now: Instant) -> Vec<Action> {
        let mut actions = Vec::new();
        if self.status().is_terminal() || !self.expire(now, &mut actions) {
            return actions;
        }
        if !self.unknown.is_empty() {
            actions.extend(
                self.unknown
                    .keys()
                    .map(|&checkpoint_id| Action::ReadBack { checkpoint_id }),
            );
            return actions;
        }
        if !self.all_up() || !self.tracker.pending_ids().is_empty() {
            return actions;
        }
        self.checkpoint_when_up = false;
        match &self.final_checkpoint {
            FinalCheckpoint::NotYet => actions.push(Action::DrawCheckpointId {
                final_checkpoint: false,
            }),
            FinalCheckpoint::Drawing => {}
            FinalCheckpoint::Triggered { id, .. } => {
                if self.tracker.latest_completed != Some(*id) {
                    // Expired or not stored: the tails are still uncommitted.
                    tracing::warn!(job_id = %self.job_id, checkpoint_id = id, "the final checkpoint failed; triggering it again");
                    self.final_checkpoint = FinalCheckpoint::Drawing;
                    actions.push(Action::DrawCheckpointId {
                        final_checkpoint: true,
                    });
                }
            }
        }
        actions
    }

    /// Whether every subtask runs (or has finished).
    fn all_up(&self) -> bool {
        self.subtasks
            .values()
            .all(|s| matches!(s, SubtaskStatus::Running | SubtaskStatus::Finished))
    }

    /// The first checkpoint after a restore, once every subtask runs ([`Scheduler`]'s
    /// `checkpoint_when_up`); later ones follow the interval.
    fn checkpoint_if_up(&mut self, actions: &mut Vec<Action>) {
        if !self.checkpoint_when_up
            || self.status() != JobStatus::Running
            || !self.all_up()
            || !self.unknown.is_empty()
            || !self.tracker.pending_ids().is_empty()
            || self.final_checkpoint != FinalCheckpoint::NotYet
        {
            return;
        }
        self.checkpoint_when_up = false;
        tracing::debug!(job_id = %self.job_id, "every subtask runs again after a restore: checkpointing at once");
        actions.push(Action::DrawCheckpointId {
            final_checkpoint: false,
        });
    }

    /// A checkpoint id was drawn (or could not be).
    pub fn on_checkpoint_id(
        &mut self,
        final_checkpoint: bool,
        result: Result<u64, RuntimeError>,
        now: Instant,
    ) -> Vec<Action> {
        let mut actions = Vec::new();
        if self.status().is_terminal() {
            return actions;
        }
        if final_checkpoint && self.final_checkpoint != FinalCheckpoint::Drawing {
            // A failover intervened: the final checkpoint is not due any more.
            return actions;
        }
        match result {
            Ok(id) => {
                if final_checkpoint {
                    self.final_checkpoint = FinalCheckpoint::Triggered {
                        id,
                        committed: BTreeSet::new(),
                    };
                }
                self.tracker.start(id, self.parallelism, now);
                actions.push(self.trigger(id));
            }
            Err(e) if e.is_lost_leadership() => self.transition(JobStatus::Suspended, &mut actions),
            Err(e) if final_checkpoint => {
                self.fail_job(
                    format!("cannot draw the final checkpoint id: {e}"),
                    &mut actions,
                );
            }
            Err(e) => {
                tracing::warn!(job_id = %self.job_id, error = %e, "cannot draw a checkpoint id")
            }
        }
        actions
    }

    /// How checkpoint `id`'s barriers go out: to every subtask in a single-stage job; else to
    /// the sources and the finished subtasks (whose inputs ended, so no barrier reaches them in
    /// band), as Flink triggers the tasks whose predecessors are all finished.
    fn trigger(&self, id: u64) -> Action {
        if self.sources >= self.parallelism {
            return Action::Broadcast(TaskCommand::Barrier(id));
        }
        let subtasks = self
            .subtasks
            .iter()
            .filter(|(i, s)| **i < self.sources || **s == SubtaskStatus::Finished)
            .map(|(i, _)| *i)
            .collect();
        Action::Trigger {
            checkpoint_id: id,
            subtasks,
        }
    }

    /// A subtask acknowledged a checkpoint with its state.
    pub fn on_ack(
        &mut self,
        subtask: u32,
        checkpoint_id: u64,
        state: serde_json::Value,
    ) -> Vec<Action> {
        if self.status().is_terminal() {
            return Vec::new();
        }
        match self.tracker.ack(checkpoint_id, subtask, state) {
            Ack::AllAcked(mut metadata) => {
                // The counts as of this checkpoint, itself included: stored with it.
                let so_far = self.lifetime();
                metadata.lifetime = LifetimeCounts {
                    completed_checkpoints: so_far.completed_checkpoints + 1,
                    ..so_far
                };
                self.storing.insert(checkpoint_id, metadata.clone());
                vec![Action::Store(metadata)]
            }
            Ack::Pending | Ack::Stale => Vec::new(),
        }
    }

    /// A subtask declined a checkpoint (it keeps running): the checkpoint fails, counted once
    /// toward the tolerable failures; too many fail the job over.
    pub fn on_declined(
        &mut self,
        subtask: u32,
        checkpoint_id: u64,
        reason: &str,
        now: Instant,
    ) -> Vec<Action> {
        let mut actions = Vec::new();
        if self.status().is_terminal() {
            return actions;
        }
        let reason = format!("checkpoint {checkpoint_id} declined by subtask {subtask}: {reason}");
        if let Err(too_many) = self.tracker.fail(checkpoint_id, &reason) {
            self.fail_over_job(RuntimeError::from(too_many), now, &mut actions);
        }
        actions
    }

    /// The HA store took an all-acknowledged checkpoint (it is completed), or failed. A failure
    /// other than lost leadership may have left it stored (an unanswered write): its outcome is
    /// unknown until [`Action::ReadBack`] tells.
    pub fn on_stored(
        &mut self,
        checkpoint_id: u64,
        result: Result<(), RuntimeError>,
        now: Instant,
    ) -> Vec<Action> {
        let mut actions = Vec::new();
        let Some(metadata) = self.storing.remove(&checkpoint_id) else {
            return actions;
        };
        if self.status().is_terminal() {
            return actions;
        }
        match result {
            Ok(()) => self.complete(metadata, now, &mut actions),
            Err(e) if e.is_lost_leadership() => self.transition(JobStatus::Suspended, &mut actions),
            Err(e) => {
                tracing::warn!(job_id = %self.job_id, checkpoint_id, error = %e, "storing the checkpoint failed; reading the store back to learn whether it landed");
                self.unknown
                    .insert(checkpoint_id, (metadata, e.to_string()));
                actions.push(Action::ReadBack { checkpoint_id });
            }
        }
        actions
    }

    /// The store was read back after a store of unknown outcome: `Ok(true)` it holds the
    /// checkpoint (completed), `Ok(false)` it does not (failed, counted); an error leaves the
    /// outcome unknown, and the next tick reads again.
    pub fn on_read_back(
        &mut self,
        checkpoint_id: u64,
        result: Result<bool, RuntimeError>,
        now: Instant,
    ) -> Vec<Action> {
        let mut actions = Vec::new();
        if self.status().is_terminal() || !self.unknown.contains_key(&checkpoint_id) {
            return actions;
        }
        match result {
            Ok(true) => {
                let (metadata, _) = self.unknown.remove(&checkpoint_id).expect("present");
                tracing::info!(job_id = %self.job_id, checkpoint_id, "read back: the checkpoint was stored after all");
                self.complete(metadata, now, &mut actions);
            }
            Ok(false) => {
                let (_, error) = self.unknown.remove(&checkpoint_id).expect("present");
                let reason = format!("checkpoint {checkpoint_id} could not be stored: {error}");
                if let Err(too_many) = self.tracker.fail(checkpoint_id, &reason) {
                    self.fail_over_job(RuntimeError::from(too_many), now, &mut actions);
                }
            }
            Err(e) if e.is_lost_leadership() => self.transition(JobStatus::Suspended, &mut actions),
            Err(e) => {
                tracing::warn!(job_id = %self.job_id, checkpoint_id, error = %e, "cannot read the checkpoint store back; the checkpoint's outcome stays unknown");
            }
        }
        actions
    }

    /// An all-acknowledged checkpoint is in the store: the latest completed one; sinks commit.
    fn complete(&mut self, metadata: CheckpointMetadata, now: Instant, actions: &mut Vec<Action>) {
        let checkpoint_id = metadata.checkpoint_id;
        if self.tracker.completed(checkpoint_id, now).is_none() {
            return;
        }
        tracing::info!(job_id = %self.job_id, checkpoint_id, "checkpoint completed");
        self.outcome.completed_checkpoints += 1;
        self.latest = Some(metadata);
        if let FinalCheckpoint::Triggered { id, committed } = &mut self.final_checkpoint
            && *id == checkpoint_id
        {
            committed.clear();
        }
        actions.push(Action::Broadcast(TaskCommand::Complete(checkpoint_id)));
    }

    /// A subtask's source is exhausted; when all are, the final checkpoint is triggered.
    pub fn on_finished(&mut self, subtask: u32) -> Vec<Action> {
        if self.status().is_terminal() || self.subtask(subtask) != Some(SubtaskStatus::Running) {
            return Vec::new();
        }
        self.subtasks.insert(subtask, SubtaskStatus::Finished);
        let all_finished = self
            .subtasks
            .values()
            .all(|s| *s == SubtaskStatus::Finished);
        if !all_finished {
            return Vec::new();
        }
        // The final checkpoint commits every subtask's tail; anything pending is moot.
        self.abort_checkpoints();
        self.final_checkpoint = FinalCheckpoint::Drawing;
        vec![Action::DrawCheckpointId {
            final_checkpoint: true,
        }]
    }

    /// A sink committed a checkpoint; after the final one the job ends once every sink has.
    pub fn on_committed(&mut self, subtask: u32, checkpoint_id: u64) -> Vec<Action> {
        let mut actions = Vec::new();
        if self.status().is_terminal() || self.tracker.latest_completed != Some(checkpoint_id) {
            return actions;
        }
        if let FinalCheckpoint::Triggered { id, committed } = &mut self.final_checkpoint
            && *id == checkpoint_id
        {
            committed.insert(subtask);
            if committed.len() == self.parallelism as usize {
                self.transition(JobStatus::Finished, &mut actions);
            }
        }
        actions
    }

    /// The job was cancelled.
    pub fn cancel(&mut self) -> Vec<Action> {
        let mut actions = Vec::new();
        if !self.status().is_terminal() {
            self.transition(JobStatus::Canceled, &mut actions);
        }
        actions
    }

    /// This JobManager lost leadership: SUSPENDED, the next leader recovers the job.
    pub fn suspend(&mut self) -> Vec<Action> {
        let mut actions = Vec::new();
        if !self.status().is_terminal() {
            self.transition(JobStatus::Suspended, &mut actions);
        }
        actions
    }

    /// The job master's own I/O failed fatally (`what` says doing what): SUSPENDED if the cause
    /// is lost leadership, else FAILED.
    pub fn on_fatal(&mut self, what: &str, error: RuntimeError) -> Vec<Action> {
        let mut actions = Vec::new();
        if self.status().is_terminal() {
            return actions;
        }
        let failure = format!("{what}: {error}");
        if error.is_lost_leadership() {
            self.outcome.failure = Some(failure);
            self.transition(JobStatus::Suspended, &mut actions);
        } else {
            self.fail_job(failure, &mut actions);
        }
        actions
    }

    fn restore_of(&self, subtask: u32) -> Result<Option<SubtaskState>, RuntimeError> {
        let Some(latest) = &self.latest else {
            return Ok(None);
        };
        let Some(v) = latest.subtasks.get(&subtask) else {
            return Ok(None);
        };
        let mut state = task::subtask_state(v)?;
        if self.fell_back_to == Some(latest.checkpoint_id)
            && let Some(sink) = state.sink.as_mut()
        {
            sink.remove_committed_after = Some(latest.checkpoint_id);
        }
        Ok(Some(state))
    }

    /// Discards every pending checkpoint, stored-or-not ones included (a failover: they cannot
    /// complete any more); not checkpoint failures.
    fn abort_checkpoints(&mut self) {
        self.tracker.abort_all();
        self.storing.clear();
        self.unknown.clear();
        self.final_checkpoint = FinalCheckpoint::NotYet;
    }

    /// Fails the whole job over (Flink's global failover, here on too many checkpoint
    /// failures): every deployed subtask is released and, after the restart strategy's delay,
    /// redeployed from the latest completed checkpoint; one restart. FAILED only when the
    /// restart strategy gives up.
    fn fail_over_job(&mut self, cause: RuntimeError, now: Instant, actions: &mut Vec<Action>) {
        if self.status().is_terminal() {
            return;
        }
        tracing::warn!(job_id = %self.job_id, error = %cause, "failing the job over");
        self.outcome.failures.push(format!("job: {cause}"));
        self.restart_region(None, cause, now, actions);
    }

    /// Restarts every subtask (the job's one region): the deployed ones are released, and all
    /// are redeployed after the restart strategy's delay from the latest completed checkpoint;
    /// one restart. `subtask` is the failed one (`None`: the job failed over as a whole).
    fn restart_region(
        &mut self,
        subtask: Option<u32>,
        cause: RuntimeError,
        now: Instant,
        actions: &mut Vec<Action>,
    ) {
        for (subtask, status) in &self.subtasks {
            if !matches!(status, SubtaskStatus::Restarting { .. }) {
                actions.push(Action::Release { subtask: *subtask });
            }
        }
        self.abort_checkpoints();
        if self.status() == JobStatus::Running {
            self.transition(JobStatus::Failing, actions);
        }
        match self.restart.on_failure(now) {
            Some(delay) => {
                self.outcome.restarts += 1;
                for status in self.subtasks.values_mut() {
                    *status = SubtaskStatus::Restarting { at: now + delay };
                }
                if self.status() == JobStatus::Failing {
                    self.transition(JobStatus::Restarting, actions);
                }
            }
            None => {
                let e = match subtask {
                    Some(subtask) => RuntimeError::NoMoreRestarts {
                        subtask,
                        strategy: self.restart.name(),
                        cause: Box::new(cause),
                    },
                    None => RuntimeError::JobFailoverRefused {
                        strategy: self.restart.name(),
                        cause: Box::new(cause),
                    },
                };
                self.fail_job(e.to_string(), actions);
            }
        }
    }

    /// FAILED with `failure` as the cause, through FAILING when RUNNING (the legal path).
    fn fail_job(&mut self, failure: String, actions: &mut Vec<Action>) {
        if self.status().is_terminal() {
            return;
        }
        self.outcome.failure = Some(failure);
        if self.status() == JobStatus::Running {
            self.transition(JobStatus::Failing, actions);
        }
        self.transition(JobStatus::Failed, actions);
    }

    /// The only way the status changes. Every edge used above is legal; one that is not is a
    /// bug, so the job fails rather than run on in a state nobody can trust.
    fn transition(&mut self, to: JobStatus, actions: &mut Vec<Action>) {
        match self.lifecycle.transition(to) {
            Ok(()) => {
                self.outcome.status = to;
                if to.is_terminal() {
                    actions.push(Action::Stop(to));
                }
            }
            Err(e) => {
                tracing::error!(job_id = %self.job_id, error = %e, "bug: illegal job status transition; failing the job");
                if self.status().is_terminal() || to == JobStatus::Failed {
                    return;
                }
                self.fail_job(RuntimeError::Internal(e.to_string()).to_string(), actions);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::jobmanager::error::LossCause;
    use serde_json::json;

    const SECOND: Duration = Duration::from_secs(1);

    fn scheduler(parallelism: u32, restart: RestartStrategy) -> Scheduler {
        let tracker = CheckpointTracker::new("j", Duration::from_secs(10), 0);
        Scheduler::new("j", parallelism, restart, tracker)
    }

    fn fixed(attempts: u64) -> RestartStrategy {
        RestartStrategy::FixedDelay {
            attempts,
            delay: SECOND,
            failures: 0,
        }
    }

    /// Starts and deploys every subtask.
    fn running(parallelism: u32, restart: RestartStrategy, now: Instant) -> Scheduler {
        let mut s = scheduler(parallelism, restart);
        let actions = s.start();
        assert_eq!(actions.len(), parallelism as usize);
        for i in 0..parallelism {
            assert!(s.on_deployed(i, Ok(()), now).is_empty());
        }
        assert_eq!(s.status(), JobStatus::Running);
        s
    }

    /// A subtask's state as a sequence source at offset `id * 10 + subtask` acknowledges it.
    fn state(subtask: u32, id: u64) -> serde_json::Value {
        let next = id * 10 + subtask as u64;
        json!({ "source": { "next": next, "to": 1000, "step": 2 }, "operators": [], "sink": { "pending": [id] } })
    }

    /// Runs one checkpoint through ack, store and completion.
    fn checkpoint(s: &mut Scheduler, id: u64, final_checkpoint: bool, now: Instant) {
        assert_eq!(
            s.on_checkpoint_id(final_checkpoint, Ok(id), now),
            vec![Action::Broadcast(TaskCommand::Barrier(id))]
        );
        let n = s.parallelism;
        for i in 0..n {
            let a = s.on_ack(i, id, state(i, id));
            if i + 1 < n {
                assert!(a.is_empty());
            } else {
                assert!(matches!(&a[..], [Action::Store(m)] if m.checkpoint_id == id));
            }
        }
        assert_eq!(
            s.on_stored(id, Ok(()), now),
            vec![Action::Broadcast(TaskCommand::Complete(id))]
        );
    }

    #[test]
    fn a_bounded_job_finishes_after_the_final_checkpoint_is_committed() {
        let now = Instant::now();
        let mut s = running(2, RestartStrategy::None, now);
        assert_eq!(
            s.on_tick(now),
            vec![Action::DrawCheckpointId {
                final_checkpoint: false
            }]
        );
        checkpoint(&mut s, 1, false, now);
        assert!(s.on_finished(0).is_empty());
        assert_eq!(
            s.on_finished(1),
            vec![Action::DrawCheckpointId {
                final_checkpoint: true
            }]
        );
        // No periodic checkpoint while the final one is under way.
        assert!(s.on_tick(now).is_empty());
        checkpoint(&mut s, 2, true, now);
        assert!(s.on_tick(now).is_empty());
        // A commit of an older checkpoint does not count.
        assert!(s.on_committed(0, 1).is_empty());
        assert!(s.on_committed(0, 2).is_empty());
        assert_eq!(
            s.on_committed(1, 2),
            vec![Action::Stop(JobStatus::Finished)]
        );
        let o = s.into_outcome();
        assert_eq!(
            (o.status, o.completed_checkpoints),
            (JobStatus::Finished, 2)
        );
        assert_eq!(o.checkpoint_durations.len(), 2);
    }

    fn connection_loss() -> RuntimeError {
        RuntimeError::Ha(crate::ha::HaError::ZooKeeper {
            quorum: "zk".into(),
            message: "write pointer (outcome unknown): connection loss".into(),
        })
    }

    #[test]
    fn a_store_of_unknown_outcome_is_read_back_before_it_counts() {
        let now = Instant::now();
        let mut s = running(1, fixed(3), now);
        s.on_checkpoint_id(false, Ok(1), now);
        assert!(matches!(&s.on_ack(0, 1, json!({}))[..], [Action::Store(_)]));
        // Not failed, not completed: read back.
        assert_eq!(
            s.on_stored(1, Err(connection_loss()), now),
            vec![Action::ReadBack { checkpoint_id: 1 }]
        );
        // The store cannot be read either: still unknown, read again on the next tick, and no
        // other checkpoint meanwhile; it never expires.
        assert!(s.on_read_back(1, Err(connection_loss()), now).is_empty());
        assert_eq!(s.next_expiry(), None);
        assert_eq!(
            s.on_tick(now + Duration::from_secs(60)),
            vec![Action::ReadBack { checkpoint_id: 1 }]
        );
        assert_eq!(s.outcome().completed_checkpoints, 0);
        // It landed: completed, and the sinks commit it.
        assert_eq!(
            s.on_read_back(1, Ok(true), now),
            vec![Action::Broadcast(TaskCommand::Complete(1))]
        );
        assert_eq!(s.outcome().completed_checkpoints, 1);
        assert_eq!(s.tracker().latest_completed, Some(1));
        // A duplicate answer changes nothing.
        assert!(s.on_read_back(1, Ok(false), now).is_empty());
        assert_eq!(s.status(), JobStatus::Running);
        assert_eq!(s.outcome().restarts, 0);
    }

    #[test]
    fn a_store_that_did_not_land_is_a_checkpoint_failure() {
        let now = Instant::now();
        let mut s = running(2, fixed(3), now);
        s.tracker = CheckpointTracker::new("j", Duration::from_secs(10), 1);
        checkpoint(&mut s, 1, false, now);
        s.on_checkpoint_id(false, Ok(2), now);
        s.on_ack(0, 2, json!({}));
        s.on_ack(1, 2, json!({}));
        assert_eq!(
            s.on_stored(2, Err(connection_loss()), now),
            vec![Action::ReadBack { checkpoint_id: 2 }]
        );
        // Tolerated (1): the job runs on, and the next tick triggers the next checkpoint.
        assert!(s.on_read_back(2, Ok(false), now).is_empty());
        assert_eq!(s.status(), JobStatus::Running);
        assert_eq!(
            s.on_tick(now),
            vec![Action::DrawCheckpointId {
                final_checkpoint: false
            }]
        );
        // A lost leadership on reading back suspends.
        s.on_checkpoint_id(false, Ok(3), now);
        s.on_ack(0, 3, json!({}));
        s.on_ack(1, 3, json!({}));
        s.on_stored(3, Err(connection_loss()), now);
        let fenced = RuntimeError::Ha(crate::ha::HaError::NotLeader("fenced".into()));
        assert_eq!(
            s.on_read_back(3, Err(fenced), now),
            vec![Action::Stop(JobStatus::Suspended)]
        );
    }

    #[test]
    fn too_many_checkpoint_failures_fail_the_job_over_not_the_job() {
        let now = Instant::now();
        let mut s = running(2, fixed(3), now);
        checkpoint(&mut s, 1, false, now);
        s.on_finished(1);
        s.on_checkpoint_id(false, Ok(2), now);
        s.on_ack(0, 2, json!({}));
        // Subtask 1's ack never comes; tolerable = 0.
        let due = s.next_expiry().expect("pending");
        assert_eq!(due, now + Duration::from_secs(10));
        assert_eq!(
            s.on_expiry_due(due),
            vec![
                Action::Release { subtask: 0 },
                Action::Release { subtask: 1 }
            ]
        );
        assert_eq!(s.status(), JobStatus::Restarting);
        let o = s.outcome();
        assert_eq!(o.restarts, 1, "one failover, one restart");
        assert!(
            o.failures[0].starts_with("job: 1 consecutive checkpoint failures"),
            "{:?}",
            o.failures
        );
        assert!(
            o.failures[0].contains("checkpoint 2 expired"),
            "{:?}",
            o.failures
        );
        // Every subtask restarts from checkpoint 1, after the delay.
        assert!(s.on_tick(due).is_empty(), "no checkpoint while restarting");
        let actions = s.on_restart_due(due + SECOND);
        assert_eq!(actions.len(), 2);
        for a in &actions {
            let Action::Deploy { restore, .. } = a else {
                panic!("{actions:?}")
            };
            assert_eq!(
                restore.as_ref().unwrap().sink.as_ref().unwrap().pending,
                vec![1]
            );
        }
        s.on_deployed(0, Ok(()), due + SECOND);
        s.on_deployed(1, Ok(()), due + SECOND);
        assert_eq!(s.status(), JobStatus::Running);
        // The count started again: the next checkpoint goes on normally.
        assert_eq!(
            s.on_tick(due + SECOND),
            vec![Action::DrawCheckpointId {
                final_checkpoint: false
            }]
        );
        checkpoint(&mut s, 3, false, due + SECOND);
        assert_eq!(s.outcome().completed_checkpoints, 2);
    }

    #[test]
    fn a_failed_subtask_restarts_alone_from_the_latest_completed_checkpoint() {
        let now = Instant::now();
        let mut s = running(2, fixed(3), now);
        checkpoint(&mut s, 1, false, now);
        assert_eq!(
            s.on_failed(1, RuntimeError::Killed, now),
            vec![Action::Release { subtask: 1 }]
        );
        assert_eq!(s.status(), JobStatus::Restarting);
        assert_eq!(s.next_restart(), Some(now + SECOND));
        assert!(s.on_restart_due(now).is_empty(), "not due yet");
        assert!(s.on_tick(now).is_empty(), "no checkpoint while restarting");
        let actions = s.on_restart_due(now + SECOND);
        let [
            Action::Deploy {
                subtask: 1,
                restore,
            },
        ] = &actions[..]
        else {
            panic!("{actions:?}")
        };
        let restore = restore.as_ref().expect("restored from checkpoint 1");
        assert_eq!(restore.sink.as_ref().unwrap().pending, vec![1]);
        // Restored and every subtask up: the next checkpoint goes out at once.
        assert_eq!(
            s.on_deployed(1, Ok(()), now + SECOND),
            vec![Action::DrawCheckpointId {
                final_checkpoint: false
            }]
        );
        assert_eq!(s.status(), JobStatus::Running);
        let o = s.outcome();
        assert_eq!(o.restarts, 1);
        assert_eq!(
            o.failures,
            vec!["subtask 1: the subtask was killed".to_string()]
        );
    }

    /// A job of two stages of two subtasks (a keyed edge between them): vertices 0 and 1 read
    /// the source; one region.
    #[test]
    fn a_keyed_job_triggers_its_sources_and_restarts_as_one_region() {
        let now = Instant::now();
        let tracker = CheckpointTracker::new("j", Duration::from_secs(10), 0);
        let mut s = Scheduler::new("j", 4, fixed(3), tracker).with_topology(2, true);
        assert_eq!(s.start().len(), 4);
        for i in 0..4 {
            assert!(s.on_deployed(i, Ok(()), now).is_empty());
        }
        assert_eq!(s.on_tick(now).len(), 1);
        // Barriers go to the sources; every vertex acknowledges.
        assert_eq!(
            s.on_checkpoint_id(false, Ok(1), now),
            vec![Action::Trigger {
                checkpoint_id: 1,
                subtasks: vec![0, 1]
            }]
        );
        for i in 0..3 {
            assert!(s.on_ack(i, 1, state(i, 1)).is_empty());
        }
        assert!(matches!(
            &s.on_ack(3, 1, state(3, 1))[..],
            [Action::Store(_)]
        ));
        s.on_stored(1, Ok(()), now);
        // A source finished (its end of partition sent): finished ones get barriers too.
        assert!(s.on_finished(0).is_empty());
        s.on_tick(now);
        assert_eq!(
            s.on_checkpoint_id(false, Ok(2), now),
            vec![Action::Trigger {
                checkpoint_id: 2,
                subtasks: vec![0, 1]
            }]
        );
        assert!(s.on_finished(2).is_empty());
        // A consumer fails: every subtask restarts, from checkpoint 1, in a new attempt.
        assert_eq!(s.attempt(), 0);
        let actions = s.on_failed(3, RuntimeError::Killed, now);
        assert_eq!(
            actions,
            (0..4)
                .map(|subtask| Action::Release { subtask })
                .collect::<Vec<_>>()
        );
        assert_eq!(s.status(), JobStatus::Restarting);
        assert_eq!(s.attempt(), 1);
        // The others' failures (their channels broke) are moot now.
        assert!(s.on_failed(2, RuntimeError::Killed, now).is_empty());
        let deploys = s.on_restart_due(now + SECOND);
        assert_eq!(deploys.len(), 4);
        assert!(deploys.iter().all(
            |a| matches!(a, Action::Deploy { restore: Some(r), .. } if r.sink.as_ref().unwrap().pending == vec![1])
        ));
        assert_eq!(s.outcome().restarts, 1);
    }

    #[test]
    fn failures_while_restarting_extend_the_pending_restarts() {
        let now = Instant::now();
        let mut s = running(3, fixed(5), now);
        s.on_failed(
            0,
            RuntimeError::TaskManagerLost {
                taskmanager: "tm".into(),
                cause: LossCause::SessionEnded,
            },
            now,
        );
        assert_eq!(s.status(), JobStatus::Restarting);
        // A second subtask of the same TaskManager, a moment later: no RESTARTING -> FAILING.
        let later = now + Duration::from_millis(10);
        assert_eq!(
            s.on_failed(
                1,
                RuntimeError::TaskManagerLost {
                    taskmanager: "tm".into(),
                    cause: LossCause::SessionEnded,
                },
                later
            ),
            vec![Action::Release { subtask: 1 }]
        );
        assert_eq!(s.status(), JobStatus::Restarting);
        // A duplicate report of a subtask already waiting is no new failure.
        assert!(s.on_failed(1, RuntimeError::Killed, later).is_empty());
        assert_eq!(s.outcome().restarts, 2);
        let due = s.on_restart_due(now + SECOND);
        assert_eq!(due.len(), 1, "only subtask 0 is due");
        s.on_deployed(0, Ok(()), now + SECOND);
        assert_eq!(s.status(), JobStatus::Restarting, "subtask 1 still pending");
        assert_eq!(s.on_restart_due(later + SECOND).len(), 1);
        // Its deployment fails: one more pending restart, still RESTARTING.
        let slot = RuntimeError::SlotRequestTimeout { timeout: SECOND };
        assert_eq!(
            s.on_deployed(1, Err(slot), later + SECOND),
            vec![Action::Release { subtask: 1 }]
        );
        assert_eq!(s.status(), JobStatus::Restarting);
        assert!(s.outcome().failures[2].contains("cannot deploy: no free TaskManager slot"));
        s.on_restart_due(later + 2 * SECOND);
        s.on_deployed(1, Ok(()), later + 2 * SECOND);
        assert_eq!(s.status(), JobStatus::Running);
        assert_eq!(s.outcome().restarts, 3);
    }

    #[test]
    fn an_exhausted_strategy_fails_the_job_with_the_cause() {
        let now = Instant::now();
        let mut s = running(2, fixed(1), now);
        s.on_failed(0, RuntimeError::Killed, now);
        // While RESTARTING: RESTARTING -> FAILED directly.
        assert_eq!(
            s.on_failed(1, RuntimeError::Source("x: no such file".into()), now),
            vec![
                Action::Release { subtask: 1 },
                Action::Stop(JobStatus::Failed)
            ]
        );
        let failure = s.into_outcome().failure.unwrap();
        assert_eq!(
            failure,
            "subtask 1 failed and the fixed-delay restart strategy allows no more restarts: x: no such file"
        );
        let mut s = running(1, RestartStrategy::None, now);
        assert_eq!(
            s.on_failed(0, RuntimeError::Killed, now),
            vec![
                Action::Release { subtask: 0 },
                Action::Stop(JobStatus::Failed)
            ]
        );
    }

    #[test]
    fn a_failover_aborts_the_final_checkpoint() {
        let now = Instant::now();
        let mut s = running(2, fixed(3), now);
        s.on_finished(0);
        s.on_finished(1);
        s.on_checkpoint_id(true, Ok(1), now);
        s.on_ack(0, 1, json!({}));
        s.on_failed(0, RuntimeError::Killed, now);
        // The late ack is stale; nothing is stored.
        assert!(s.on_ack(1, 1, json!({})).is_empty());
        s.on_restart_due(now + SECOND);
        s.on_deployed(0, Ok(()), now + SECOND);
        // Subtask 1 stays finished; the redeployed 0 finishes again: a new final checkpoint.
        assert_eq!(s.subtask(1), Some(SubtaskStatus::Finished));
        assert_eq!(
            s.on_finished(0),
            vec![Action::DrawCheckpointId {
                final_checkpoint: true
            }]
        );
    }

    #[test]
    fn a_final_checkpoint_that_expired_is_triggered_again() {
        let now = Instant::now();
        let mut s = scheduler(1, RestartStrategy::None);
        s.tracker = CheckpointTracker::new("j", SECOND, 5);
        s.start();
        s.on_deployed(0, Ok(()), now);
        s.on_finished(0);
        s.on_checkpoint_id(true, Ok(1), now);
        assert_eq!(
            s.on_tick(now + 2 * SECOND),
            vec![Action::DrawCheckpointId {
                final_checkpoint: true
            }]
        );
        checkpoint(&mut s, 2, true, now + 2 * SECOND);
        assert_eq!(
            s.on_committed(0, 2),
            vec![Action::Stop(JobStatus::Finished)]
        );
    }

    #[test]
    fn overdue_checkpoints_expire_on_time_and_the_next_one_follows() {
        let now = Instant::now();
        let mut s = running(2, fixed(3), now);
        s.tracker = CheckpointTracker::new("j", Duration::from_secs(10), 1);
        s.on_checkpoint_id(false, Ok(1), now);
        assert!(s.on_tick(now + SECOND).is_empty(), "one at a time");
        // Other work meanwhile (a subtask finishes, one acknowledges) does not hold expiry up.
        assert!(s.on_finished(0).is_empty());
        assert!(s.on_ack(0, 1, json!({})).is_empty());
        assert!(s.on_expiry_due(now + 9 * SECOND).is_empty());
        assert_eq!(s.next_expiry(), Some(now + 10 * SECOND));
        // Expired, tolerated (1 allowed): the job runs on.
        assert!(s.on_expiry_due(now + 10 * SECOND).is_empty());
        assert_eq!(s.next_expiry(), None);
        assert_eq!(s.status(), JobStatus::Running);
        assert!(s.on_ack(1, 1, json!({})).is_empty(), "a late ack is stale");
        // The next interval triggers the next checkpoint.
        assert_eq!(
            s.on_tick(now + 11 * SECOND),
            vec![Action::DrawCheckpointId {
                final_checkpoint: false
            }]
        );
        checkpoint(&mut s, 2, false, now + 11 * SECOND);
        assert_eq!(s.outcome().completed_checkpoints, 1);
        assert_eq!(s.outcome().restarts, 0);
    }

    #[test]
    fn declines_fail_their_checkpoint_once_and_count() {
        let now = Instant::now();
        let mut s = running(2, fixed(3), now);
        s.tracker = CheckpointTracker::new("j", Duration::from_secs(10), 1);
        s.on_checkpoint_id(false, Ok(1), now);
        assert!(s.on_declined(0, 1, "not ready", now).is_empty());
        // Declined by the other subtask too, and its late ack: the same one failure.
        assert!(s.on_declined(1, 1, "not ready", now).is_empty());
        assert!(s.on_ack(1, 1, json!({})).is_empty());
        assert_eq!(s.tracker().failed, 1);
        assert_eq!(s.next_expiry(), None, "failed, not pending");
        s.on_tick(now);
        s.on_checkpoint_id(false, Ok(2), now);
        // The second in a row exceeds 1 tolerated: the job fails over.
        let actions = s.on_declined(1, 2, "snapshot failed", now);
        assert_eq!(
            actions,
            vec![
                Action::Release { subtask: 0 },
                Action::Release { subtask: 1 }
            ]
        );
        assert_eq!(s.status(), JobStatus::Restarting);
        assert!(
            s.outcome().failures[0].contains("checkpoint 2 declined by subtask 1: snapshot failed")
        );
    }

    #[test]
    fn a_refused_job_failover_fails_the_job_with_the_checkpoint_cause() {
        let now = Instant::now();
        let mut s = running(1, RestartStrategy::None, now);
        s.on_checkpoint_id(false, Ok(1), now);
        // The ticker finds it overdue as well as the expiry timer would.
        assert_eq!(
            s.on_tick(now + 10 * SECOND),
            vec![
                Action::Release { subtask: 0 },
                Action::Stop(JobStatus::Failed)
            ]
        );
        let failure = s.into_outcome().failure.unwrap();
        assert!(
            failure.starts_with("the job failed over and the none restart strategy allows no more restarts: 1 consecutive checkpoint failures exceed execution.checkpointing.tolerable-failed-checkpoints = 0"),
            "{failure}"
        );
    }

    #[test]
    fn cancel_suspend_and_lost_leadership_are_terminal_once() {
        let now = Instant::now();
        let mut s = running(1, RestartStrategy::None, now);
        assert_eq!(s.cancel(), vec![Action::Stop(JobStatus::Canceled)]);
        assert!(s.suspend().is_empty());
        assert!(s.on_failed(0, RuntimeError::Killed, now).is_empty());

        let mut s = running(1, RestartStrategy::None, now);
        s.on_checkpoint_id(false, Ok(1), now);
        s.on_ack(0, 1, json!({}));
        let fenced = RuntimeError::Ha(crate::ha::HaError::NotLeader("fenced".into()));
        assert_eq!(
            s.on_stored(1, Err(fenced.clone()), now),
            vec![Action::Stop(JobStatus::Suspended)]
        );

        let mut s = scheduler(1, RestartStrategy::None);
        assert_eq!(
            s.on_fatal("cannot persist the job graph", fenced),
            vec![Action::Stop(JobStatus::Suspended)]
        );
    }

    #[test]
    fn a_failed_recovery_suspends_before_deploying_and_a_fallback_reaches_the_sinks() {
        let mut s = scheduler(2, fixed(3));
        assert_eq!(
            s.on_recovery_failed("cannot recover job j: checkpoint 7 is corrupt".into()),
            vec![Action::Stop(JobStatus::Suspended)]
        );
        let o = s.into_outcome();
        assert!(o.recovery_failed && !o.status.is_globally_terminal());
        assert_eq!(
            o.failure.as_deref(),
            Some("cannot recover job j: checkpoint 7 is corrupt")
        );

        let now = Instant::now();
        let metadata = |id: u64| CheckpointMetadata {
            version: 1,
            job_id: "j".into(),
            checkpoint_id: id,
            subtasks: [(0, state(0, id)), (1, state(1, id))].into(),
            lifetime: LifetimeCounts::default(),
        };
        let mut s = scheduler(2, fixed(3));
        s.recover(metadata(4), true);
        let deploys = s.start();
        let removals: Vec<_> = deploys
            .iter()
            .filter_map(|a| match a {
                Action::Deploy { restore, .. } => {
                    restore.as_ref()?.sink.as_ref()?.remove_committed_after
                }
                _ => None,
            })
            .collect();
        assert_eq!(
            removals,
            vec![4, 4],
            "every subtask removes parts newer than 4"
        );
        s.on_deployed(0, Ok(()), now);
        s.on_deployed(1, Ok(()), now);
        // Once a newer checkpoint completed, restores carry no removal any more.
        checkpoint(&mut s, 9, false, now);
        s.on_failed(1, RuntimeError::Killed, now);
        let [Action::Deploy { restore, .. }] = &s.on_restart_due(now + SECOND)[..] else {
            panic!("one redeployment")
        };
        assert_eq!(
            restore
                .as_ref()
                .unwrap()
                .sink
                .as_ref()
                .unwrap()
                .remove_committed_after,
            None
        );
        // Without a fallback, never.
        let mut s = scheduler(1, fixed(3));
        s.recover(metadata(4), false);
        assert!(
            matches!(&s.start()[..], [Action::Deploy { restore: Some(r), .. }] if r.sink.as_ref().unwrap().remove_committed_after.is_none())
        );
    }

    #[test]
    fn unreadable_restore_state_fails_the_job_before_deploying() {
        let latest = CheckpointMetadata {
            version: 1,
            job_id: "j".into(),
            checkpoint_id: 4,
            subtasks: [(0, json!("not a state"))].into(),
            lifetime: LifetimeCounts::default(),
        };
        let tracker = CheckpointTracker::new("j", SECOND, 0);
        let mut s = Scheduler::new("j", 1, RestartStrategy::None, tracker);
        s.recover(latest, false);
        assert_eq!(s.start(), vec![Action::Stop(JobStatus::Failed)]);
        let o = s.into_outcome();
        assert_eq!(o.restored_from, Some(4));
        assert!(o.failure.unwrap().contains("subtask state"));
    }

    /// Subtask `i`'s state in checkpoint `id` of a job of `n` subtasks, recovered.
    fn recovered(n: u32, id: u64) -> Scheduler {
        let mut s = scheduler(n, fixed(3));
        s.recover(
            CheckpointMetadata {
                version: 1,
                job_id: "j".into(),
                checkpoint_id: id,
                subtasks: (0..n).map(|i| (i, state(i, id))).collect(),
                lifetime: LifetimeCounts::default(),
            },
            false,
        );
        s
    }

    /// What a TaskManager reports of subtask `subtask` of run "r" (stage 0, attempt 2).
    fn report(subtask: u32, acked: u64) -> ReportedSubtask {
        ReportedSubtask {
            session: u64::from(subtask) + 1,
            taskmanager: format!("tm-{subtask}"),
            subtask,
            run_id: "r".into(),
            attempt: 2,
            round: 0,
            stage: 0,
            index: subtask,
            last_acknowledged: Some(acked),
            last_committed: Some(acked),
            finished: false,
        }
    }

    fn reports(subtasks: Vec<ReportedSubtask>, complete: bool) -> Reports {
        Reports { subtasks, complete }
    }

    fn adopted(actions: &[Action]) -> Vec<u32> {
        actions
            .iter()
            .filter_map(|a| match a {
                Action::Adopt(r) => Some(r.subtask),
                _ => None,
            })
            .collect()
    }

    fn deployed(actions: &[Action]) -> Vec<u32> {
        actions
            .iter()
            .filter_map(|a| match a {
                Action::Deploy { subtask, .. } => Some(*subtask),
                _ => None,
            })
            .collect()
    }

    #[test]
    fn every_reported_subtask_is_adopted_without_a_restart() {
        let now = Instant::now();
        let mut s = recovered(2, 7);
        let deadline = now + 10 * SECOND;
        // One report in: waiting, CREATED, nothing deployed.
        let actions = s.start_reconciling("r", reports(vec![report(0, 7)], false), deadline, now);
        assert!(actions.is_empty(), "{actions:?}");
        assert_eq!(s.status(), JobStatus::Created);
        assert_eq!(s.subtask(1), Some(SubtaskStatus::Reconciling));
        assert_eq!(s.reconcile_deadline(), Some(deadline));
        // Both in (one acknowledged a checkpoint the dead leader left pending): adopted.
        let actions = s.on_reports(reports(vec![report(0, 7), report(1, 8)], false), now);
        assert_eq!(adopted(&actions), vec![0, 1]);
        assert!(deployed(&actions).is_empty(), "{actions:?}");
        assert!(actions.contains(&Action::Settle));
        // The recovered checkpoint's notice may have died with the leader; then, every
        // subtask running, the next checkpoint goes out at once (checkpoint_when_up).
        assert_eq!(
            actions[actions.len() - 2..],
            [
                Action::Broadcast(TaskCommand::Complete(7)),
                Action::DrawCheckpointId {
                    final_checkpoint: false
                }
            ]
        );
        for i in 0..2 {
            assert!(s.on_adopted(i, Ok(()), now).is_empty());
        }
        assert_eq!(s.status(), JobStatus::Running);
        assert_eq!(s.outcome().restarts, 0);
        assert_eq!(s.subtask_attempts(), vec![2, 2]);
        assert_eq!(s.adopted(), 2);
        assert_eq!(s.reconcile_deadline(), None);
        // Checkpoints go on with the next id the counter gives.
        checkpoint(&mut s, 9, false, now);
        assert_eq!(s.tracker().latest_completed, Some(9));
        // Later reports change nothing.
        assert!(s.on_reports(reports(vec![], true), now).is_empty());
    }

    #[test]
    fn a_missing_subtask_is_redeployed_from_the_checkpoint_at_the_deadline() {
        let now = Instant::now();
        let mut s = recovered(3, 7);
        let deadline = now + 10 * SECOND;
        let some = reports(vec![report(0, 7), report(2, 7)], false);
        assert!(s.start_reconciling("r", some, deadline, now).is_empty());
        assert!(s.on_reconcile_due(deadline).len() > 1);
        assert_eq!(s.status(), JobStatus::Running);
        // (on_reconcile_due's actions, again, from a fresh scheduler, to look at them.)
        let mut s = recovered(3, 7);
        let some = reports(vec![report(0, 7), report(2, 7)], false);
        s.start_reconciling("r", some, deadline, now);
        let actions = s.on_reconcile_due(deadline);
        assert_eq!(adopted(&actions), vec![0, 2]);
        assert_eq!(deployed(&actions), vec![1]);
        let Some(Action::Deploy { restore, .. }) =
            actions.iter().find(|a| matches!(a, Action::Deploy { .. }))
        else {
            panic!("a deployment")
        };
        assert_eq!(
            restore
                .as_ref()
                .and_then(|r| r.sink.clone())
                .unwrap()
                .pending,
            vec![7],
            "restored from checkpoint 7"
        );
        assert_eq!(s.outcome().restarts, 1, "one restart");
        assert_eq!(s.subtask_attempts(), vec![2, 1, 2]);
        assert_eq!(s.subtask(1), Some(SubtaskStatus::Deploying));
        assert_eq!(
            s.on_deployed(1, Ok(()), now),
            vec![Action::DrawCheckpointId {
                final_checkpoint: false
            }],
            "checkpoints resume at once"
        );
    }

    #[test]
    fn every_earlier_taskmanager_registered_ends_the_wait() {
        let now = Instant::now();
        let mut s = recovered(2, 7);
        s.start_reconciling("r", reports(vec![], false), now + 10 * SECOND, now);
        let actions = s.on_reports(reports(vec![report(1, 7)], true), now);
        assert_eq!((adopted(&actions), deployed(&actions)), (vec![1], vec![0]));
    }

    #[test]
    fn a_report_that_does_not_match_is_stopped_and_its_subtask_redeployed() {
        let now = Instant::now();
        let stale = ReportedSubtask {
            run_id: "another run".into(),
            ..report(0, 7)
        };
        let old = report(1, 6);
        let twice = [
            report(2, 7),
            ReportedSubtask {
                session: 9,
                ..report(2, 7)
            },
        ];
        let mut s = recovered(4, 7);
        let mut all = vec![stale.clone(), old.clone(), report(3, 7)];
        all.extend(twice.iter().cloned());
        let actions = s.start_reconciling("r", reports(all, true), now + SECOND, now);
        assert_eq!(adopted(&actions), vec![3]);
        assert_eq!(deployed(&actions), vec![0, 1, 2]);
        for r in [&stale, &old, &twice[0], &twice[1]] {
            assert!(actions.contains(&Action::Discard(r.clone())), "{r:?}");
        }
        // Stopped before anything is redeployed.
        let last_discard = actions
            .iter()
            .rposition(|a| matches!(a, Action::Discard(_)));
        let first_deploy = actions
            .iter()
            .position(|a| matches!(a, Action::Deploy { .. }));
        assert!(last_discard < first_deploy);
        assert_eq!(s.subtask_attempts(), vec![3, 3, 3, 2]);
        assert_eq!(s.outcome().restarts, 1);
    }

    /// A keyed job's report of subtask `i` of four (two stages of two), deployed in `round`.
    fn keyed_report(i: u32, acked: u64, round: u32) -> ReportedSubtask {
        ReportedSubtask {
            stage: i / 2,
            index: i % 2,
            round,
            ..report(i, acked)
        }
    }

    #[test]
    fn a_keyed_job_is_adopted_as_a_whole_and_checkpoints_on() {
        let now = Instant::now();
        let mut s = recovered(4, 7).with_topology(2, true);
        // Three of four in: a keyed job waits for the rest, as any other.
        let some = (0..3).map(|i| keyed_report(i, 7, 3)).collect();
        let actions = s.start_reconciling("r", reports(some, false), now + SECOND, now);
        assert!(actions.is_empty(), "{actions:?}");
        let all = (0..4).map(|i| keyed_report(i, 7, 3)).collect();
        let actions = s.on_reports(reports(all, false), now);
        assert_eq!(adopted(&actions), vec![0, 1, 2, 3]);
        assert!(deployed(&actions).is_empty(), "{actions:?}");
        assert!(
            !actions.iter().any(|a| matches!(a, Action::Discard(_))),
            "{actions:?}"
        );
        // The adopted round goes on: the subtasks' partitions still feed each other.
        assert_eq!(s.attempt(), 3);
        assert_eq!(s.outcome().restarts, 0);
        assert_eq!(s.subtask_attempts(), vec![2, 2, 2, 2]);
        // Every subtask running, the next checkpoint goes out at once, its barriers to the
        // sources only, with the counter's next id (past one the dead leader left pending).
        assert_eq!(
            actions.last(),
            Some(&Action::DrawCheckpointId {
                final_checkpoint: false
            })
        );
        assert_eq!(
            s.on_checkpoint_id(false, Ok(9), now),
            vec![Action::Trigger {
                checkpoint_id: 9,
                subtasks: vec![0, 1]
            }]
        );
        for i in 0..3 {
            assert!(s.on_ack(i, 9, state(i, 9)).is_empty());
        }
        assert!(matches!(
            &s.on_ack(3, 9, state(3, 9))[..],
            [Action::Store(_)]
        ));
        s.on_stored(9, Ok(()), now);
        assert_eq!(s.tracker().latest_completed, Some(9));
        assert_eq!(s.status(), JobStatus::Running);
    }

    #[test]
    fn a_keyed_job_restarts_as_one_region_unless_every_subtask_is_adoptable() {
        let now = Instant::now();
        // One subtask acknowledged only an older checkpoint: refused, so the job restarts as a
        // whole at once, without waiting for the deadline or the rest.
        let mut s = recovered(4, 7).with_topology(2, true);
        let some = vec![keyed_report(0, 7, 3), keyed_report(1, 6, 3)];
        let actions = s.start_reconciling("r", reports(some, false), now + SECOND, now);
        assert!(adopted(&actions).is_empty(), "{actions:?}");
        assert_eq!(deployed(&actions), vec![0, 1, 2, 3]);
        assert_eq!(
            actions
                .iter()
                .filter(|a| matches!(a, Action::Discard(_)))
                .count(),
            2
        );
        // A new round, past the stale subtasks' partitions.
        assert_eq!(s.attempt(), 4);
        assert_eq!(s.outcome().restarts, 1);
        assert_eq!(s.subtask_attempts(), vec![3, 3, 1, 1]);
        // Every subtask adoptable, but from two deployment rounds: restarted as a whole.
        let mut s = recovered(4, 7).with_topology(2, true);
        let mixed = (0..4).map(|i| keyed_report(i, 7, 3 + i % 2)).collect();
        let actions = s.start_reconciling("r", reports(mixed, false), now + SECOND, now);
        assert!(adopted(&actions).is_empty(), "{actions:?}");
        assert_eq!(deployed(&actions), vec![0, 1, 2, 3]);
        assert_eq!(s.attempt(), 5);
        // One subtask missing at the deadline: restarted as a whole, nothing adopted.
        let mut s = recovered(4, 7).with_topology(2, true);
        let three = (0..3).map(|i| keyed_report(i, 7, 3)).collect();
        assert!(
            s.start_reconciling("r", reports(three, false), now + SECOND, now)
                .is_empty()
        );
        let actions = s.on_reconcile_due(now + SECOND);
        assert!(adopted(&actions).is_empty(), "{actions:?}");
        assert_eq!(deployed(&actions), vec![0, 1, 2, 3]);
        assert_eq!(s.adopted(), 0);
        assert_eq!(s.outcome().restarts, 1);
    }

    #[test]
    fn finished_subtasks_are_adopted_finished_and_the_final_checkpoint_follows() {
        let now = Instant::now();
        let mut s = recovered(2, 7);
        let done = |i| ReportedSubtask {
            finished: true,
            ..report(i, 7)
        };
        let actions = s.start_reconciling("r", reports(vec![done(0), done(1)], false), now, now);
        assert_eq!(adopted(&actions), vec![0, 1]);
        assert_eq!(
            actions.last(),
            Some(&Action::DrawCheckpointId {
                final_checkpoint: true
            })
        );
        assert_eq!(s.subtask(0), Some(SubtaskStatus::Finished));
        checkpoint(&mut s, 8, true, now);
        s.on_committed(0, 8);
        s.on_committed(1, 8);
        assert_eq!(s.status(), JobStatus::Finished);
    }

    /// Runs checkpoint `id` through ack and store; the metadata it stored.
    fn stored(s: &mut Scheduler, id: u64, now: Instant) -> CheckpointMetadata {
        s.on_checkpoint_id(false, Ok(id), now);
        let mut metadata = None;
        for i in 0..s.parallelism {
            if let [Action::Store(m)] = &s.on_ack(i, id, state(i, id))[..] {
                metadata = Some(m.clone());
            }
        }
        assert_eq!(
            s.on_stored(id, Ok(()), now),
            vec![Action::Broadcast(TaskCommand::Complete(id))]
        );
        metadata.expect("all acknowledged")
    }

    #[test]
    fn lifetime_counts_travel_in_the_checkpoints_across_failovers() {
        let now = Instant::now();
        let counts =
            |completed_checkpoints, failed_checkpoints, restarts, failovers| LifetimeCounts {
                completed_checkpoints,
                failed_checkpoints,
                restarts,
                failovers,
            };
        // First leader: a checkpoint, a restart, a declined checkpoint (tolerated), another
        // checkpoint; each stored checkpoint counts itself.
        let mut s = running(2, fixed(5), now);
        s.tracker = CheckpointTracker::new("j", Duration::from_secs(10), 1);
        assert_eq!(stored(&mut s, 1, now).lifetime, counts(1, 0, 0, 0));
        s.on_failed(0, RuntimeError::Killed, now);
        s.on_restart_due(now + SECOND);
        s.on_deployed(0, Ok(()), now + SECOND);
        s.on_checkpoint_id(false, Ok(2), now);
        assert!(s.on_declined(1, 2, "busy", now).is_empty());
        let second = stored(&mut s, 3, now);
        assert_eq!(second.lifetime, counts(2, 1, 1, 0));
        assert_eq!(s.lifetime(), counts(2, 1, 1, 0));
        // A restart after the latest checkpoint, then the leader dies: lost with it (the known
        // imprecision), as no later checkpoint of this leader completes.
        s.on_failed(1, RuntimeError::Killed, now);
        assert_eq!(s.lifetime().restarts, 2);

        // Second leader: recovers checkpoint 3 and goes on from its counts, one failover more;
        // its own (per-attempt) counts start at zero.
        let mut s = scheduler(2, fixed(5));
        s.recover(second, false);
        assert_eq!(s.lifetime(), counts(2, 1, 1, 1));
        s.start();
        s.on_deployed(0, Ok(()), now);
        s.on_deployed(1, Ok(()), now);
        s.on_failed(1, RuntimeError::Killed, now);
        s.on_restart_due(now + SECOND);
        s.on_deployed(1, Ok(()), now + SECOND);
        let third = stored(&mut s, 4, now);
        assert_eq!(third.lifetime, counts(3, 1, 2, 1));
        assert_eq!(
            (s.outcome().completed_checkpoints, s.outcome().restarts),
            (1, 1)
        );

        // Third leader: adopts every subtask (no restart) and finishes.
        let mut s = scheduler(2, fixed(5));
        s.recover(third, false);
        let all = reports(vec![report(0, 4), report(1, 4)], true);
        s.start_reconciling("r", all, now + 10 * SECOND, now);
        assert_eq!(s.adopted(), 2);
        s.on_finished(0);
        s.on_finished(1);
        checkpoint(&mut s, 5, true, now);
        s.on_committed(0, 5);
        s.on_committed(1, 5);
        let o = s.into_outcome();
        assert_eq!(o.status, JobStatus::Finished);
        assert_eq!((o.completed_checkpoints, o.restarts), (1, 0));
        assert_eq!(o.lifetime, counts(4, 1, 2, 2));
    }

    #[test]
    fn a_failover_before_the_first_checkpoint_is_carried_by_the_next_one() {
        let now = Instant::now();
        let mut s = scheduler(1, fixed(3));
        s.recover_without_checkpoint();
        s.start();
        s.on_deployed(0, Ok(()), now);
        let first = stored(&mut s, 1, now);
        assert_eq!(
            (
                first.lifetime.completed_checkpoints,
                first.lifetime.failovers
            ),
            (1, 1)
        );
        // The next leader recovers that checkpoint: both failovers counted.
        let mut s = scheduler(1, fixed(3));
        s.recover(first, false);
        assert_eq!(s.lifetime().failovers, 2);
    }

    #[test]
    fn a_job_recovered_from_metadata_without_counts_counts_from_zero_plus_the_failover() {
        let mut s = recovered(1, 7);
        assert_eq!(
            s.lifetime(),
            LifetimeCounts {
                failovers: 1,
                ..LifetimeCounts::default()
            }
        );
        let now = Instant::now();
        s.start();
        s.on_deployed(0, Ok(()), now);
        assert_eq!(stored(&mut s, 8, now).lifetime.completed_checkpoints, 1);
    }
}
