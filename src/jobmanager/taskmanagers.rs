//! The TaskManagers registered with this JobManager (Flink's slot pool) and the gRPC endpoint
//! they connect to. Each TaskManager holds one bidirectional session: deployments, barriers and
//! completion notices go down, acknowledgements and failures come up (converted in
//! [`crate::taskmanager::wire`]), and the session's end fails every subtask deployed on it.
//!
//! Events reach their job master with backpressure, never dropped; an acknowledgement whose
//! state does not parse fails its subtask. Registrations are announced on
//! [`TaskManagerPool::registrations`]. The session readers and command forwarders are tasks of
//! the pool's tracker; [`TaskManagerPool::close`] ends and awaits them.
//!
//! # Heartbeats
//! Flink's `HeartbeatManager`: every `heartbeat.interval` the session reader sends its
//! TaskManager a heartbeat request, which the TaskManager answers at once. A TaskManager from
//! which nothing at all arrived (no answer, no other message) for `heartbeat.timeout` is
//! declared lost exactly like one that hung up: removed from the pool, its session ended both
//! ways, every subtask it ran failed with [`RuntimeError::TaskManagerLost`] (so they restart
//! elsewhere through the restart strategy), and its resource id announced on
//! [`TaskManagerPool::losses`] so its container can be stopped and replaced. One that hangs up
//! while it runs subtasks is announced too, so its container is replaced without waiting for
//! the resource manager's own report. A frozen
//! (SIGSTOP, GC-paused) process or a half-open connection keeps its TCP connection and HTTP/2
//! stream looking alive; only an answer from the process itself proves it is.
//!
//! # Subtasks of earlier leaders
//! A TaskManager that registers after a failover reports the subtasks it still runs
//! ([`control::RunningSubtask`]). They occupy their slots from the start. A recovering job
//! master watches its job's reports ([`TaskRuntime::previous_deployment`]) for up to
//! `jobmanager.reconcile.timeout`, or until every container the ApplicationMaster adopted
//! from the previous attempt ([`TaskManagerPool::expect_previous`]) has registered, and then
//! adopts or discards each ([`TaskRuntime::adopt`], [`TaskRuntime::discard`]) and settles the
//! job ([`TaskRuntime::settle`]): a report of a settled job, or one nobody watches within
//! twice the timeout, is stopped. A reconcile timeout of zero stops every report at once.

use std::collections::{HashMap, HashSet};
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures::{Stream, StreamExt};
use tokio::sync::{Notify, broadcast, mpsc, watch};
use tokio::time::Instant;
use tokio_stream::wrappers::ReceiverStream;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tonic::{Request, Response, Status, Streaming};

use super::error::{LossCause, RuntimeError};
use super::runtime::{
    Adopted, Deployed, PreviousDeployment, ReportedSubtask, Reports, TaskRuntime,
};
use crate::control::job_manager_gateway_server::{JobManagerGateway, JobManagerGatewayServer};
use crate::control::{
    self, JobManagerMessage, TaskManagerMessage, job_manager_message, task_manager_message,
};
use crate::taskmanager::task::{SubtaskState, TaskCommand, TaskConfig, TaskEvent};
use crate::taskmanager::wire::{self, JobEvent, SubtaskCommand};

type Outbox = mpsc::Sender<Result<JobManagerMessage, Status>>;

struct TaskManager {
    id: String,
    /// The YARN container it runs in (empty outside YARN).
    resource_id: String,
    slots: u32,
    used: u32,
    /// Its data server for the keyed exchange (empty: none).
    data_address: String,
    outbox: Outbox,
    /// Cancelled when the session ends (see [`SessionEnd::ended`]).
    ended: CancellationToken,
    /// (job, subtask) deployed here, with the slot-sharing group each occupies.
    deployed: Vec<Deployment>,
}

/// A subtask deployed on a TaskManager.
struct Deployment {
    job: String,
    subtask: u32,
    /// Its slot-sharing group (its index in its stage).
    group: u32,
    /// Reported at registration (an earlier leader deployed it) and not adopted yet.
    reported: Option<control::RunningSubtask>,
}

/// Flink's `HeartbeatMonitor` for one TaskManager (pure): when it was last heard from, and
/// whether that is longer ago than the heartbeat timeout.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct HeartbeatMonitor {
    last_heard: Instant,
    timeout: Duration,
}

impl HeartbeatMonitor {
    /// A TaskManager heard from (registered) at `now`.
    pub fn new(now: Instant, timeout: Duration) -> HeartbeatMonitor {
        HeartbeatMonitor {
            last_heard: now,
            timeout,
        }
    }

    /// Something arrived from the TaskManager at `now`: a heartbeat response or any other
    /// message. A report older than the last one changes nothing.
    pub fn report(&mut self, now: Instant) {
        self.last_heard = self.last_heard.max(now);
    }

    /// When the TaskManager is lost unless something arrives first.
    pub fn deadline(&self) -> Instant {
        self.last_heard + self.timeout
    }

    /// Whether nothing arrived for the timeout.
    pub fn is_timed_out(&self, now: Instant) -> bool {
        now >= self.deadline()
    }

    pub fn last_heard(&self) -> Instant {
        self.last_heard
    }

    pub fn timeout(&self) -> Duration {
        self.timeout
    }
}

#[derive(Default)]
struct PoolState {
    tms: HashMap<u64, TaskManager>,
    /// Where each job's task events go.
    jobs: HashMap<String, mpsc::Sender<TaskEvent>>,
    next_session: u64,
    /// The reports of jobs whose job masters watch them.
    previous: HashMap<String, watch::Sender<Reports>>,
    /// Jobs whose reconciliation is over: a report of one is stopped.
    settled: HashSet<String>,
    /// The containers of the earlier attempt (`None`: not known, outside YARN).
    expected: Option<HashSet<String>>,
    /// Every container that registered with this leader.
    ever_registered: HashSet<String>,
}

impl PoolState {
    /// Every unadopted report of `job`.
    fn reports_of(&self, job: &str) -> Reports {
        let mut subtasks: Vec<ReportedSubtask> = self
            .tms
            .iter()
            .flat_map(|(session, tm)| {
                tm.deployed.iter().filter_map(move |d| {
                    let r = d.reported.as_ref().filter(|_| d.job == job)?;
                    Some(ReportedSubtask {
                        session: *session,
                        taskmanager: tm.id.clone(),
                        subtask: r.subtask,
                        run_id: r.run_id.clone(),
                        attempt: r.attempt,
                        round: r.round,
                        stage: r.stage,
                        index: r.index,
                        last_acknowledged: (r.last_acknowledged > 0).then_some(r.last_acknowledged),
                        last_committed: (r.last_committed > 0).then_some(r.last_committed),
                        finished: r.finished,
                    })
                })
            })
            .collect();
        subtasks.sort_by_key(|r| (r.subtask, r.session));
        let complete = self
            .expected
            .as_ref()
            .is_some_and(|e| e.is_subset(&self.ever_registered));
        Reports { subtasks, complete }
    }

    /// Tells every watching job master what is reported now.
    fn publish_reports(&self) {
        for (job, tx) in &self.previous {
            let now = self.reports_of(job);
            tx.send_if_modified(|r| {
                let changed = *r != now;
                *r = now;
                changed
            });
        }
    }

    /// Takes a report out of its TaskManager's deployments, freeing its slot unless another
    /// subtask of its sharing group holds it; its TaskManager's outbox, to stop it.
    fn take_report(&mut self, session: u64, job: &str, subtask: u32) -> Option<Outbox> {
        let tm = self.tms.get_mut(&session)?;
        let i = tm
            .deployed
            .iter()
            .position(|d| d.job == job && d.subtask == subtask && d.reported.is_some())?;
        let gone = tm.deployed.remove(i);
        if !tm
            .deployed
            .iter()
            .any(|d| d.job == gone.job && d.group == gone.group)
        {
            tm.used = tm.used.saturating_sub(1);
        }
        Some(tm.outbox.clone())
    }
}

/// Registered TaskManagers, shared by the gRPC service and the job masters.
/// A TaskManager the pool lost, announced on [`TaskManagerPool::losses`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TaskManagerLoss {
    /// Its resource id: the YARN container id, or local mode's process id.
    pub resource_id: String,
    pub cause: LossCause,
}

#[derive(Clone)]
pub struct TaskManagerPool {
    state: Arc<Mutex<PoolState>>,
    slots_changed: Arc<Notify>,
    /// Resource ids of TaskManagers as they register (see [`TaskManagerPool::registrations`]).
    registrations: broadcast::Sender<String>,
    /// TaskManagers lost while they mattered (see [`TaskManagerPool::losses`]).
    losses: broadcast::Sender<TaskManagerLoss>,
    /// `heartbeat.interval`: how often each TaskManager is sent a heartbeat request.
    heartbeat_interval: Duration,
    /// `heartbeat.timeout`: silence after which a TaskManager is lost.
    heartbeat_timeout: Duration,
    /// The session readers and command forwarders this pool spawned.
    tasks: TaskTracker,
    /// Ends them (see [`TaskManagerPool::close`]).
    shutdown: CancellationToken,
    epoch: u64,
    session_id: String,
    slot_timeout: Duration,
    /// `jobmanager.reconcile.timeout` (zero: reported subtasks are stopped at once).
    reconcile_timeout: Duration,
}

impl TaskManagerPool {
    /// `epoch` and `session_id`: this leader's fencing identity. Heartbeats follow Flink's
    /// defaults (`heartbeat.interval` 10 s, `heartbeat.timeout` 50 s) unless
    /// [`TaskManagerPool::with_heartbeat`] says otherwise.
    pub fn new(epoch: u64, session_id: &str, slot_timeout: Duration) -> TaskManagerPool {
        TaskManagerPool {
            state: Arc::new(Mutex::new(PoolState::default())),
            slots_changed: Arc::new(Notify::new()),
            registrations: broadcast::channel(1024).0,
            losses: broadcast::channel(1024).0,
            heartbeat_interval: Duration::from_secs(10),
            heartbeat_timeout: Duration::from_secs(50),
            tasks: TaskTracker::new(),
            shutdown: CancellationToken::new(),
            epoch,
            session_id: session_id.to_string(),
            slot_timeout,
            reconcile_timeout: Duration::ZERO,
        }
    }

    /// Job masters wait up to `timeout` (`jobmanager.reconcile.timeout`) for the subtasks
    /// that TaskManagers still run from earlier leaders, to adopt them (zero: they are
    /// stopped as their TaskManagers register, and every job restarts from its checkpoint).
    pub fn with_reconcile_timeout(mut self, timeout: Duration) -> TaskManagerPool {
        self.reconcile_timeout = timeout;
        self
    }

    /// The containers that ran TaskManagers under the previous attempt (YARN's containers
    /// from previous attempts): once all have registered, nothing more is reported, and job
    /// masters stop waiting for reports.
    pub fn expect_previous(&self, resources: impl IntoIterator<Item = String>) {
        let mut s = self.state.lock().expect("pool lock");
        s.expected = Some(resources.into_iter().collect());
        s.publish_reports();
    }

    /// Stops a reported subtask on its TaskManager (the session's order keeps it ahead of
    /// whatever this leader sends there next).
    fn stop_reported(&self, outbox: Option<Outbox>, job: &str, subtask: u32) {
        let Some(outbox) = outbox else { return };
        let c = SubtaskCommand {
            job_id: job.to_string(),
            subtask,
            command: TaskCommand::Stop,
        };
        // A full outbox: a TaskManager that reads nothing, lost soon (its subtasks with it).
        let _ = outbox.try_send(Ok(self.message(c.into())));
        self.slots_changed.notify_waiters();
    }

    /// Stops `session`'s reports that no job master took up: of settled jobs, of every job
    /// when reconciliation is off, or (`unwatched`) of jobs that no job master watches.
    fn stop_unclaimed(&self, session: u64, unwatched: bool) {
        let mut stopped = Vec::new();
        {
            let mut s = self.state.lock().expect("pool lock");
            let Some(tm) = s.tms.get(&session) else {
                return;
            };
            let doomed: Vec<(String, u32)> = tm
                .deployed
                .iter()
                .filter(|d| d.reported.is_some())
                .filter(|d| {
                    // Deployed by this very leader before the session broke: failed and
                    // redeployed already.
                    d.reported
                        .as_ref()
                        .is_some_and(|r| r.deployed_epoch >= self.epoch)
                        || self.reconcile_timeout.is_zero()
                        || s.settled.contains(&d.job)
                        || (unwatched && !s.previous.contains_key(&d.job))
                })
                .map(|d| (d.job.clone(), d.subtask))
                .collect();
            for (job, subtask) in doomed {
                let outbox = s.take_report(session, &job, subtask);
                stopped.push((outbox, job, subtask));
            }
            s.publish_reports();
        }
        for (outbox, job, subtask) in stopped {
            tracing::info!(job_id = %job, subtask, "stopping a subtask of an earlier leader that no job master adopts");
            self.stop_reported(outbox, &job, subtask);
        }
    }

    /// The pool's tasks end when `parent` is cancelled (e.g. the leadership token), not only on
    /// [`TaskManagerPool::close`].
    pub fn with_shutdown(mut self, parent: &CancellationToken) -> TaskManagerPool {
        self.shutdown = parent.child_token();
        self
    }

    /// Sends every TaskManager a heartbeat request each `interval` (`heartbeat.interval`) and
    /// declares lost one from which nothing arrived for `timeout` (`heartbeat.timeout`).
    /// A timeout shorter than the interval (Flink refuses it) is raised to the interval.
    pub fn with_heartbeat(mut self, interval: Duration, timeout: Duration) -> TaskManagerPool {
        self.heartbeat_interval = interval.max(Duration::from_millis(1));
        if timeout < self.heartbeat_interval {
            tracing::warn!(
                ?interval,
                ?timeout,
                "heartbeat.timeout is shorter than heartbeat.interval; using the interval"
            );
        }
        self.heartbeat_timeout = timeout.max(self.heartbeat_interval);
        self
    }

    /// Ends every TaskManager session this pool serves and every command forwarder, and waits
    /// for them (the sessions' subtasks fail as their TaskManagers are lost).
    pub async fn close(&self) {
        self.shutdown.cancel();
        self.tasks.close();
        self.tasks.wait().await;
    }

    /// The tonic service to mount.
    pub fn service(&self) -> JobManagerGatewayServer<TaskManagerPool> {
        JobManagerGatewayServer::new(self.clone())
    }

    /// Registered TaskManagers and their free slots.
    pub fn registered(&self) -> Vec<(String, u32, u32)> {
        let s = self.state.lock().expect("pool lock");
        s.tms
            .values()
            .map(|t| (t.id.clone(), t.slots, t.slots - t.used))
            .collect()
    }

    /// The containers (resource ids) of the registered TaskManagers: how the ApplicationMaster
    /// learns that a container it launched or adopted is serving.
    pub fn registered_resources(&self) -> Vec<String> {
        let s = self.state.lock().expect("pool lock");
        s.tms
            .values()
            .filter(|t| !t.resource_id.is_empty())
            .map(|t| t.resource_id.clone())
            .collect()
    }

    /// The resource id (YARN container id) of every TaskManager that registers from now on,
    /// sent once it is in the pool (TaskManagers outside containers, with no resource id, are
    /// not announced). A receiver that lags behind gets `RecvError::Lagged`: it should then
    /// catch up with [`TaskManagerPool::registered_resources`].
    pub fn registrations(&self) -> broadcast::Receiver<String> {
        self.registrations.subscribe()
    }

    /// Every TaskManager lost from now on, sent once it is out of the pool and its subtasks
    /// are failed: declared lost by heartbeat timeout (its owner stops that container, or
    /// kills that process, which may still run, frozen, and replaces it), or hung up while it
    /// ran subtasks (almost always a dead process: its owner replaces it now rather than
    /// when the resource manager reports it). TaskManagers without a resource id, and idle
    /// ones that hang up (stopped after their job ended), are not announced. A receiver that
    /// lags behind gets `RecvError::Lagged`.
    pub fn losses(&self) -> broadcast::Receiver<TaskManagerLoss> {
        self.losses.subscribe()
    }

    fn message(&self, kind: job_manager_message::Kind) -> JobManagerMessage {
        JobManagerMessage {
            leader_epoch: self.epoch,
            kind: Some(kind),
        }
    }

    /// Takes a free slot, waiting for one up to the slot timeout.
    /// Takes a free slot, waiting for one up to the slot timeout. Subtasks of one job with the
    /// same `group` (their index in their stage) share a slot, as in Flink's default slot
    /// sharing: a job needs as many slots as its parallelism, whatever its number of stages.
    async fn take_slot(&self, job: &str, subtask: u32, group: u32) -> Result<Slot, RuntimeError> {
        let deadline = tokio::time::Instant::now() + self.slot_timeout;
        loop {
            let notified = self.slots_changed.notified();
            {
                let mut s = self.state.lock().expect("pool lock");
                let shares =
                    |t: &TaskManager| t.deployed.iter().any(|d| d.job == job && d.group == group);
                let found = match s.tms.iter_mut().find(|(_, t)| shares(t)) {
                    Some(found) => Some(found),
                    None => s
                        .tms
                        .iter_mut()
                        .find(|(_, t)| t.used < t.slots)
                        .map(|(sid, tm)| {
                            tm.used += 1;
                            (sid, tm)
                        }),
                };
                if let Some((sid, tm)) = found {
                    tm.deployed.push(Deployment {
                        job: job.to_string(),
                        subtask,
                        group,
                        reported: None,
                    });
                    return Ok(Slot {
                        session: *sid,
                        data_address: tm.data_address.clone(),
                        outbox: tm.outbox.clone(),
                        ended: tm.ended.clone(),
                    });
                }
            }
            if tokio::time::timeout_at(deadline, notified).await.is_err() {
                return Err(RuntimeError::SlotRequestTimeout {
                    timeout: self.slot_timeout,
                });
            }
        }
    }

    fn release_slot(&self, session: u64, job: &str, subtask: u32) {
        let mut s = self.state.lock().expect("pool lock");
        if let Some(tm) = s.tms.get_mut(&session)
            && let Some(i) = tm
                .deployed
                .iter()
                .position(|d| d.job == job && d.subtask == subtask && d.reported.is_none())
        {
            let gone = tm.deployed.remove(i);
            // The slot frees up with the last subtask of its sharing group.
            if !tm
                .deployed
                .iter()
                .any(|d| d.job == gone.job && d.group == gone.group)
            {
                tm.used = tm.used.saturating_sub(1);
            }
        }
        drop(s);
        self.slots_changed.notify_waiters();
    }

    /// Hands an event to its job master, waiting while its inbox is full (never dropped). A job
    /// without a job master here (ended, or another leader's) has nobody to tell.
    async fn route(&self, e: JobEvent) {
        let tx = self
            .state
            .lock()
            .expect("pool lock")
            .jobs
            .get(&e.job_id)
            .cloned();
        if let Some(tx) = tx
            && tx.send(e.event).await.is_err()
        {
            tracing::debug!(job_id = %e.job_id, "event for an ended job master dropped");
        }
    }

    /// Reads one TaskManager's session and heartbeats it until the session ends (it hung up,
    /// the pool closed) or nothing arrived for the heartbeat timeout; then ends the session
    /// both ways and fails every subtask it ran.
    async fn serve_session(
        self,
        session: u64,
        tm: SessionEnd,
        mut inbound: Streaming<TaskManagerMessage>,
    ) {
        let mut monitor = HeartbeatMonitor::new(Instant::now(), self.heartbeat_timeout);
        let mut heartbeats = tokio::time::interval_at(
            Instant::now() + self.heartbeat_interval,
            self.heartbeat_interval,
        );
        heartbeats.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut sequence = 0u64;
        let cause = loop {
            let m = tokio::select! {
                // Whatever arrived counts before the deadline does (the reader may have been
                // held up routing an event).
                biased;
                _ = self.shutdown.cancelled() => break LossCause::SessionEnded,
                m = inbound.message() => m,
                _ = tokio::time::sleep_until(monitor.deadline()) => {
                    break LossCause::HeartbeatTimeout(monitor.timeout());
                }
                _ = heartbeats.tick() => {
                    sequence += 1;
                    let request = control::HeartbeatRequest { sequence, sent_at_ms: crate::now_ms() };
                    let request = self.message(job_manager_message::Kind::Heartbeat(request));
                    // Never wait on a TaskManager that does not read: a full outbox is what
                    // a frozen one looks like, and the deadline decides.
                    if let Err(mpsc::error::TrySendError::Closed(_)) = tm.outbox.try_send(Ok(request)) {
                        break LossCause::SessionEnded;
                    }
                    continue;
                }
            };
            monitor.report(Instant::now());
            let kind = match m {
                Ok(Some(TaskManagerMessage { kind: Some(kind) })) => kind,
                Ok(Some(_)) => continue,
                Ok(None) | Err(_) => break LossCause::SessionEnded,
            };
            if let task_manager_message::Kind::Heartbeat(_) = kind {
                continue;
            }
            self.on_message(session, &tm.id, kind).await;
        };
        self.end_session(session, &tm, cause).await;
    }

    /// Routes one message of a TaskManager's session to its job master.
    async fn on_message(&self, session: u64, tm_id: &str, kind: task_manager_message::Kind) {
        match JobEvent::try_from(kind) {
            Ok(e) if self.update_report(session, &e) => {}
            Ok(e) => self.route(e).await,
            Err(error) => match &error {
                // The subtask cannot take part in checkpoints any more: it fails.
                RuntimeError::BadAck {
                    job_id, subtask, ..
                } => {
                    let (job_id, subtask) = (job_id.clone(), *subtask);
                    let event = TaskEvent::Failed { subtask, error };
                    self.route(JobEvent { job_id, event }).await;
                }
                _ => tracing::warn!(taskmanager = %tm_id, error = %error, "message ignored"),
            },
        }
    }

    /// The TaskManager is gone: out of the pool, its response stream ended (so whatever waits
    /// to send it gives up), every subtask it ran failed; a heartbeat loss is announced.
    async fn end_session(&self, session: u64, tm: &SessionEnd, cause: LossCause) {
        let lost = {
            let mut s = self.state.lock().expect("pool lock");
            let lost = s.tms.remove(&session);
            // Its reports are gone with it.
            s.publish_reports();
            lost
        };
        tm.ended.cancel();
        let running = lost.as_ref().map_or(0, |l| l.deployed.len());
        match cause {
            LossCause::HeartbeatTimeout(_) => {
                tracing::warn!(taskmanager = %tm.id, resource_id = %tm.resource_id, cause = %cause, running, "TaskManager lost")
            }
            // An idle TaskManager that hangs up (e.g. stopped after its job ended) costs nothing.
            LossCause::SessionEnded if running == 0 => {
                tracing::info!(taskmanager = %tm.id, cause = %cause, "idle TaskManager disconnected")
            }
            LossCause::SessionEnded => {
                tracing::warn!(taskmanager = %tm.id, cause = %cause, running, "TaskManager lost")
            }
        }
        if let Some(lost) = lost {
            for Deployment {
                job: job_id,
                subtask,
                ..
            } in lost.deployed.into_iter().filter(|d| d.reported.is_none())
            {
                let error = RuntimeError::TaskManagerLost {
                    taskmanager: tm.id.clone(),
                    cause,
                };
                let event = TaskEvent::Failed { subtask, error };
                self.route(JobEvent { job_id, event }).await;
            }
        }
        self.slots_changed.notify_waiters();
        let announce = match cause {
            LossCause::HeartbeatTimeout(_) => true,
            // The pool closing ends every session: no loss.
            LossCause::SessionEnded => running > 0 && !self.shutdown.is_cancelled(),
        };
        if announce && !tm.resource_id.is_empty() {
            // No receiver (nobody listens) is fine.
            let _ = self.losses.send(TaskManagerLoss {
                resource_id: tm.resource_id.clone(),
                cause,
            });
        }
    }

    /// An event of a subtask that is reported but not adopted yet updates its report (a job
    /// master adopting it later learns, say, that it finished meanwhile) instead of reaching a
    /// job master; `false` for any other event. A failure withdraws the report.
    fn update_report(&self, session: u64, e: &JobEvent) -> bool {
        let subtask = match &e.event {
            TaskEvent::Ack { subtask, .. }
            | TaskEvent::Declined { subtask, .. }
            | TaskEvent::Finished { subtask }
            | TaskEvent::Failed { subtask, .. }
            | TaskEvent::Progress { subtask, .. }
            | TaskEvent::Committed { subtask, .. } => *subtask,
        };
        let mut s = self.state.lock().expect("pool lock");
        let Some(r) = s.tms.get_mut(&session).and_then(|tm| {
            tm.deployed
                .iter_mut()
                .find(|d| d.job == e.job_id && d.subtask == subtask)
                .and_then(|d| d.reported.as_mut())
        }) else {
            return false;
        };
        match &e.event {
            TaskEvent::Ack { checkpoint_id, .. } => {
                r.last_acknowledged = r.last_acknowledged.max(*checkpoint_id)
            }
            TaskEvent::Committed { checkpoint_id, .. } => {
                r.last_committed = r.last_committed.max(*checkpoint_id)
            }
            TaskEvent::Finished { .. } => r.finished = true,
            TaskEvent::Failed { .. } => {
                s.take_report(session, &e.job_id, subtask);
            }
            // Nothing a report holds: no update for the job master to read.
            TaskEvent::Progress { .. } => return true,
            TaskEvent::Declined { .. } => {}
        }
        s.publish_reports();
        true
    }

    /// Forwards a job master's commands for one subtask to its TaskManager's session, until
    /// `Stop`, the session's end or the pool's.
    async fn forward(
        self,
        guard: SlotGuard,
        slot: Slot,
        mut commands: mpsc::Receiver<TaskCommand>,
    ) {
        loop {
            let command = tokio::select! {
                _ = self.shutdown.cancelled() => break,
                _ = slot.ended.cancelled() => break,
                c = commands.recv() => c,
            };
            let Some(command) = command else { break };
            let stop = command == TaskCommand::Stop;
            let c = SubtaskCommand {
                job_id: guard.job.clone(),
                subtask: guard.subtask,
                command,
            };
            let message = self.message(c.into());
            if !slot.send(Ok(message)).await || stop {
                break;
            }
        }
    }
}

#[async_trait::async_trait]
impl TaskRuntime for TaskManagerPool {
    fn previous_deployment(&self, job: &str) -> Option<PreviousDeployment> {
        if self.reconcile_timeout.is_zero() {
            return None;
        }
        let mut s = self.state.lock().expect("pool lock");
        let now = s.reports_of(job);
        let reports = s
            .previous
            .entry(job.to_string())
            .or_insert_with(|| watch::channel(now).0)
            .subscribe();
        Some(PreviousDeployment {
            reports,
            timeout: self.reconcile_timeout,
        })
    }

    async fn adopt(
        &self,
        job: &str,
        report: &ReportedSubtask,
        events: mpsc::Sender<TaskEvent>,
    ) -> Result<Adopted, RuntimeError> {
        let subtask = report.subtask;
        let (slot, finished) = {
            let mut s = self.state.lock().expect("pool lock");
            s.jobs.insert(job.to_string(), events);
            let tm = s
                .tms
                .get_mut(&report.session)
                .ok_or(RuntimeError::DeploymentInterrupted)?;
            let d = tm
                .deployed
                .iter_mut()
                .find(|d| d.job == job && d.subtask == subtask && d.reported.is_some())
                .ok_or(RuntimeError::DeploymentInterrupted)?;
            let finished = d.reported.take().is_some_and(|r| r.finished);
            let slot = Slot {
                session: report.session,
                data_address: tm.data_address.clone(),
                outbox: tm.outbox.clone(),
                ended: tm.ended.clone(),
            };
            s.publish_reports();
            (slot, finished)
        };
        let data_address = (!slot.data_address.is_empty()).then(|| slot.data_address.clone());
        let (tx, rx) = mpsc::channel::<TaskCommand>(64);
        let guard = SlotGuard {
            pool: self.clone(),
            session: slot.session,
            job: job.to_string(),
            subtask,
        };
        let handle = self.tasks.spawn(self.clone().forward(guard, slot, rx));
        let deployed = Deployed {
            commands: tx,
            handle,
            data_address,
        };
        Ok(Adopted { deployed, finished })
    }

    async fn discard(&self, job: &str, report: &ReportedSubtask) {
        let outbox = {
            let mut s = self.state.lock().expect("pool lock");
            let outbox = s.take_report(report.session, job, report.subtask);
            s.publish_reports();
            outbox
        };
        self.stop_reported(outbox, job, report.subtask);
    }

    fn settle(&self, job: &str) {
        let sessions: Vec<u64> = {
            let mut s = self.state.lock().expect("pool lock");
            s.previous.remove(job);
            s.settled.insert(job.to_string());
            s.tms
                .iter()
                .filter(|(_, t)| {
                    t.deployed
                        .iter()
                        .any(|d| d.job == job && d.reported.is_some())
                })
                .map(|(id, _)| *id)
                .collect()
        };
        for session in sessions {
            self.stop_unclaimed(session, false);
        }
    }

    async fn deploy(
        &self,
        config: TaskConfig,
        restore: Option<SubtaskState>,
        events: mpsc::Sender<TaskEvent>,
    ) -> Result<Deployed, RuntimeError> {
        let job = config.job_id.clone();
        let subtask = config.subtask;
        let deploy = wire::deploy_message(&config, restore.as_ref())?;
        self.state
            .lock()
            .expect("pool lock")
            .jobs
            .insert(job.clone(), events);
        let slot = self.take_slot(&job, subtask, config.exchange.index).await?;
        let session = slot.session;
        let data_address = (!slot.data_address.is_empty()).then(|| slot.data_address.clone());
        let deploy = self.message(job_manager_message::Kind::Deploy(deploy));
        if !slot.send(Ok(deploy)).await {
            self.release_slot(session, &job, subtask);
            return Err(RuntimeError::DeploymentInterrupted);
        }
        let (tx, rx) = mpsc::channel::<TaskCommand>(64);
        // Frees the slot however the forwarder ends, aborts included.
        let guard = SlotGuard {
            pool: self.clone(),
            session,
            job,
            subtask,
        };
        let handle = self.tasks.spawn(self.clone().forward(guard, slot, rx));
        Ok(Deployed {
            commands: tx,
            handle,
            data_address,
        })
    }
}

/// A slot taken on one TaskManager's session.
struct Slot {
    session: u64,
    data_address: String,
    outbox: Outbox,
    ended: CancellationToken,
}

impl Slot {
    /// Sends down the session, waiting while its queue is full, but not past the session's
    /// end (a frozen TaskManager reads nothing until it is declared lost); `false` if the
    /// session ended.
    async fn send(&self, message: Result<JobManagerMessage, Status>) -> bool {
        tokio::select! {
            _ = self.ended.cancelled() => false,
            sent = self.outbox.send(message) => sent.is_ok(),
        }
    }
}

/// What the session reader knows of its TaskManager, to heartbeat it and end its session.
struct SessionEnd {
    id: String,
    resource_id: String,
    outbox: Outbox,
    /// Ends the response stream.
    ended: CancellationToken,
}

struct SlotGuard {
    pool: TaskManagerPool,
    session: u64,
    job: String,
    subtask: u32,
}

impl Drop for SlotGuard {
    fn drop(&mut self) {
        self.pool
            .release_slot(self.session, &self.job, self.subtask);
    }
}

type SessionStream = Pin<Box<dyn Stream<Item = Result<JobManagerMessage, Status>> + Send>>;

#[tonic::async_trait]
impl JobManagerGateway for TaskManagerPool {
    type SessionStream = SessionStream;

    async fn session(
        &self,
        request: Request<Streaming<TaskManagerMessage>>,
    ) -> Result<Response<Self::SessionStream>, Status> {
        let mut inbound = request.into_inner();
        let first = inbound
            .message()
            .await?
            .ok_or_else(|| Status::invalid_argument("empty session"))?;
        let Some(task_manager_message::Kind::Register(reg)) = first.kind else {
            return Err(Status::invalid_argument("a session starts with Register"));
        };
        if reg.known_epoch > self.epoch {
            return Err(Status::failed_precondition(format!(
                "this JobManager's leader epoch {} is older than the {} the TaskManager knows",
                self.epoch, reg.known_epoch
            )));
        }
        let (tx, rx) = mpsc::channel(256);
        let ended = CancellationToken::new();
        let reported = reg.running.len();
        let session = {
            let mut s = self.state.lock().expect("pool lock");
            s.next_session += 1;
            let id = s.next_session;
            // What an earlier leader deployed holds its slots (one per sharing group).
            let deployed: Vec<Deployment> = reg
                .running
                .into_iter()
                .map(|r| Deployment {
                    job: r.job_id.clone(),
                    subtask: r.subtask,
                    group: r.index,
                    reported: Some(r),
                })
                .collect();
            let groups: HashSet<(&str, u32)> =
                deployed.iter().map(|d| (d.job.as_str(), d.group)).collect();
            let used = groups.len() as u32;
            s.tms.insert(
                id,
                TaskManager {
                    id: reg.taskmanager_id.clone(),
                    resource_id: reg.resource_id.clone(),
                    slots: reg.slots.max(1).max(used),
                    used,
                    data_address: reg.data_address.clone(),
                    outbox: tx.clone(),
                    ended: ended.clone(),
                    deployed,
                },
            );
            if !reg.resource_id.is_empty() {
                s.ever_registered.insert(reg.resource_id.clone());
            }
            s.publish_reports();
            id
        };
        tracing::info!(taskmanager = %reg.taskmanager_id, resource_id = %reg.resource_id, slots = reg.slots, reported, "TaskManager registered");
        let registered = self.message(job_manager_message::Kind::Registered(control::Registered {
            leader_session_id: self.session_id.clone(),
            heartbeat_interval_ms: self.heartbeat_interval.as_millis() as u64,
            heartbeat_timeout_ms: self.heartbeat_timeout.as_millis() as u64,
        }));
        // Only fails if the TaskManager hung up already; the session reader then ends at once.
        let _ = tx.send(Ok(registered)).await;
        if reported > 0 {
            // Settled jobs' and (reconciliation off) all reports stop now; the others once
            // nobody watched them for twice the reconcile timeout.
            self.stop_unclaimed(session, false);
            let pool = self.clone();
            let wait = 2 * self.reconcile_timeout + Duration::from_secs(5);
            let shutdown = self.shutdown.clone();
            self.tasks.spawn(async move {
                tokio::select! {
                    _ = shutdown.cancelled() => {}
                    _ = tokio::time::sleep(wait) => pool.stop_unclaimed(session, true),
                }
            });
        }
        if !reg.resource_id.is_empty() {
            // No receiver (nobody listens) is fine.
            let _ = self.registrations.send(reg.resource_id.clone());
        }
        self.slots_changed.notify_waiters();
        let end = SessionEnd {
            id: reg.taskmanager_id,
            resource_id: reg.resource_id,
            outbox: tx,
            ended: ended.clone(),
        };
        self.tasks
            .spawn(self.clone().serve_session(session, end, inbound));
        // Ends when the session reader ends the session, dropping the queue: a forwarder
        // blocked on a TaskManager that stopped reading gives up then.
        let stream = ReceiverStream::new(rx).take_until(ended.cancelled_owned());
        Ok(Response::new(Box::pin(stream)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::control::job_manager_gateway_client::JobManagerGatewayClient;
    use crate::storage::Location;
    use crate::storage::local::LocalStore;

    /// Subtask `subtask` of `parallelism` of a test job "j" with an empty pipeline.
    fn task_config(subtask: u32, parallelism: u32) -> TaskConfig {
        TaskConfig {
            job_id: "j".into(),
            run_id: crate::job::graph::RunId::for_legacy_job("j"),
            subtask,
            attempt: 0,
            parallelism,
            pipeline: Vec::new(),
            sink_dir: Location {
                store: Arc::new(LocalStore),
                path: "/tmp/yarnflow-pool-test".into(),
            },
            checkpoint_dir: None,
            batch: 1,
            exchange: crate::taskmanager::exchange::Exchange::single(subtask),
        }
    }

    /// Serves `pool` on a loopback port until `stop`; a client connected to it.
    async fn serve(
        pool: &TaskManagerPool,
        stop: CancellationToken,
    ) -> JobManagerGatewayClient<tonic::transport::Channel> {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let address = format!("http://{}", listener.local_addr().unwrap());
        let server = tonic::transport::Server::builder()
            .add_service(pool.service())
            .serve_with_incoming_shutdown(
                tokio_stream::wrappers::TcpListenerStream::new(listener),
                stop.cancelled_owned(),
            );
        tokio::spawn(server);
        JobManagerGatewayClient::connect(address).await.unwrap()
    }

    fn tm_message(kind: task_manager_message::Kind) -> TaskManagerMessage {
        TaskManagerMessage { kind: Some(kind) }
    }

    #[tokio::test]
    async fn registrations_are_announced_and_a_bad_ack_fails_its_subtask() {
        let pool = TaskManagerPool::new(3, "session", Duration::from_secs(5));
        let mut registrations = pool.registrations();
        let stop = CancellationToken::new();
        let mut client = serve(&pool, stop.clone()).await;
        let (out, out_rx) = mpsc::channel(16);
        let register = control::Register {
            taskmanager_id: "tm-1".into(),
            slots: 1,
            resource_id: "container_1".into(),
            known_epoch: 0,
            data_address: String::new(),
            running: Vec::new(),
        };
        out.send(tm_message(task_manager_message::Kind::Register(register)))
            .await
            .unwrap();
        let mut inbound = client
            .session(ReceiverStream::new(out_rx))
            .await
            .unwrap()
            .into_inner();
        let kind = |m: Option<JobManagerMessage>| m.and_then(|m| m.kind);
        assert!(matches!(
            kind(inbound.message().await.unwrap()),
            Some(job_manager_message::Kind::Registered(_))
        ));
        assert_eq!(registrations.recv().await.unwrap(), "container_1");
        assert_eq!(pool.registered_resources(), vec!["container_1".to_string()]);

        let (events_tx, mut events) = mpsc::channel(16);
        let config = task_config(0, 1);
        let deployed = pool.deploy(config, None, events_tx).await.unwrap();
        assert!(matches!(
            kind(inbound.message().await.unwrap()),
            Some(job_manager_message::Kind::Deploy(_))
        ));
        deployed
            .commands
            .send(TaskCommand::Barrier(1))
            .await
            .unwrap();
        assert!(matches!(
            kind(inbound.message().await.unwrap()),
            Some(job_manager_message::Kind::Barrier(control::Barrier {
                checkpoint_id: 1,
                ..
            }))
        ));
        let ack = control::Ack {
            job_id: "j".into(),
            subtask: 0,
            checkpoint_id: 1,
            state_json: "{not json".into(),
        };
        out.send(tm_message(task_manager_message::Kind::Ack(ack)))
            .await
            .unwrap();
        let Some(TaskEvent::Failed { subtask: 0, error }) = events.recv().await else {
            panic!("the subtask fails")
        };
        assert!(matches!(error, RuntimeError::BadAck { .. }), "{error}");

        // The TaskManager hangs up: its subtask fails with it.
        drop(out);
        let Some(TaskEvent::Failed { subtask: 0, error }) = events.recv().await else {
            panic!("the subtask fails")
        };
        assert!(error.is_taskmanager_lost(), "{error}");
        assert_eq!(
            error.to_string(),
            "TaskManager tm-1 was lost: its session ended"
        );
        assert!(pool.registered_resources().is_empty());
        // Every task of the pool ends and is waited for.
        pool.close().await;
        assert!(deployed.handle.is_finished());
        stop.cancel();
    }

    #[test]
    fn a_heartbeat_monitor_times_out_after_silence_only() {
        let t0 = Instant::now();
        let second = Duration::from_secs(1);
        let mut m = HeartbeatMonitor::new(t0, 5 * second);
        assert_eq!(m.deadline(), t0 + 5 * second);
        assert!(!m.is_timed_out(t0 + 4 * second));
        // Anything heard moves the deadline.
        m.report(t0 + 4 * second);
        assert!(!m.is_timed_out(t0 + 8 * second));
        assert!(m.is_timed_out(t0 + 9 * second));
        // A report from the past does not move it back.
        m.report(t0 + second);
        assert_eq!(m.last_heard(), t0 + 4 * second);
        assert_eq!(m.timeout(), 5 * second);
    }

    /// Registers `id` on `pool`'s endpoint; the TaskManager's outbox and the session's inbound.
    async fn register(
        client: &mut JobManagerGatewayClient<tonic::transport::Channel>,
        id: &str,
        resource_id: &str,
    ) -> (
        mpsc::Sender<TaskManagerMessage>,
        Streaming<JobManagerMessage>,
    ) {
        let (out, out_rx) = mpsc::channel(16);
        let register = control::Register {
            taskmanager_id: id.into(),
            slots: 1,
            resource_id: resource_id.into(),
            known_epoch: 0,
            data_address: String::new(),
            running: Vec::new(),
        };
        out.send(tm_message(task_manager_message::Kind::Register(register)))
            .await
            .unwrap();
        let inbound = client
            .session(ReceiverStream::new(out_rx))
            .await
            .unwrap()
            .into_inner();
        (out, inbound)
    }

    #[tokio::test]
    async fn a_silent_taskmanager_is_lost_by_heartbeat_timeout_and_announced() {
        let interval = Duration::from_millis(50);
        let timeout = Duration::from_millis(400);
        let pool = TaskManagerPool::new(1, "session", Duration::from_secs(5))
            .with_heartbeat(interval, timeout);
        let mut losses = pool.losses();
        let stop = CancellationToken::new();
        let mut client = serve(&pool, stop.clone()).await;
        // One answers every heartbeat request, the other stays silent (frozen) but connected.
        let (alive_out, mut alive_in) = register(&mut client, "tm-alive", "container_a").await;
        let answering = tokio::spawn(async move {
            let mut requests = 0u64;
            while let Ok(Some(m)) = alive_in.message().await {
                if let Some(job_manager_message::Kind::Heartbeat(h)) = m.kind {
                    assert!(h.sequence > requests, "sequences increase");
                    requests = h.sequence;
                    let kind = crate::taskmanager::wire::heartbeat_response(&h);
                    if alive_out.send(tm_message(kind)).await.is_err() {
                        break;
                    }
                }
            }
            requests
        });
        let (_silent_out, mut silent_in) = register(&mut client, "tm-silent", "container_s").await;
        while pool.registered().len() < 2 {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        // A subtask on the silent one (the alive one's slot is taken first, whichever it is).
        let (events_tx, mut events) = mpsc::channel(16);
        let config = |subtask| task_config(subtask, 2);
        let _d0 = pool
            .deploy(config(0), None, events_tx.clone())
            .await
            .unwrap();
        let _d1 = pool.deploy(config(1), None, events_tx).await.unwrap();
        let lost = tokio::time::timeout(3 * (timeout + interval), losses.recv())
            .await
            .expect("declared lost in time")
            .unwrap();
        assert_eq!(lost.resource_id, "container_s");
        assert_eq!(lost.cause, LossCause::HeartbeatTimeout(timeout));
        let Some(TaskEvent::Failed { error, .. }) = events.recv().await else {
            panic!("its subtask fails")
        };
        assert!(error.is_taskmanager_lost(), "{error}");
        assert_eq!(
            error.to_string(),
            "TaskManager tm-silent was lost: heartbeat timeout: nothing heard for 400ms (heartbeat.timeout)"
        );
        assert_eq!(pool.registered_resources(), vec!["container_a".to_string()]);
        // Its session was ended from our side: the stream ends (after the requests it got).
        while let Ok(Some(_)) = silent_in.message().await {}
        // The answering one survives several timeouts.
        tokio::time::sleep(2 * timeout).await;
        assert_eq!(pool.registered_resources(), vec!["container_a".to_string()]);
        assert!(losses.try_recv().is_err(), "one loss only");
        pool.close().await;
        assert!(answering.await.unwrap() >= 10);
        stop.cancel();
    }

    #[tokio::test]
    async fn a_taskmanager_that_hangs_up_is_announced_only_while_it_runs_subtasks() {
        let pool = TaskManagerPool::new(1, "session", Duration::from_secs(5));
        let mut losses = pool.losses();
        let stop = CancellationToken::new();
        let mut client = serve(&pool, stop.clone()).await;
        let (idle_out, _idle_in) = register(&mut client, "tm-idle", "container_i").await;
        while pool.registered().is_empty() {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        // Idle: hanging up is no loss worth a replacement.
        drop(idle_out);
        while !pool.registered().is_empty() {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        let (busy_out, _busy_in) = register(&mut client, "tm-busy", "container_b").await;
        while pool.registered().is_empty() {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        let (events_tx, mut events) = mpsc::channel(16);
        let config = task_config(0, 1);
        let _d = pool.deploy(config, None, events_tx).await.unwrap();
        drop(busy_out);
        let lost = tokio::time::timeout(Duration::from_secs(5), losses.recv())
            .await
            .expect("announced at once")
            .unwrap();
        assert_eq!(
            lost,
            TaskManagerLoss {
                resource_id: "container_b".into(),
                cause: LossCause::SessionEnded
            }
        );
        let Some(TaskEvent::Failed { error, .. }) = events.recv().await else {
            panic!("its subtask fails")
        };
        assert!(error.is_taskmanager_lost(), "{error}");
        assert!(losses.try_recv().is_err(), "the idle one was not announced");
        pool.close().await;
        stop.cancel();
    }

    #[tokio::test]
    async fn reported_subtasks_hold_their_slots_until_adopted_or_discarded() {
        let pool = TaskManagerPool::new(2, "session", Duration::from_millis(200))
            .with_reconcile_timeout(Duration::from_secs(10));
        pool.expect_previous(["container_1".to_string()]);
        let watch = pool.previous_deployment("j").expect("reconciliation is on");
        assert_eq!(*watch.reports.borrow(), Reports::default());
        let stop = CancellationToken::new();
        let mut client = serve(&pool, stop.clone()).await;
        let running = |subtask| control::RunningSubtask {
            job_id: "j".into(),
            subtask,
            run_id: "r".into(),
            attempt: 1,
            index: subtask,
            last_acknowledged: 4,
            deployed_epoch: 1,
            ..Default::default()
        };
        let (out, out_rx) = mpsc::channel(16);
        let register = control::Register {
            taskmanager_id: "tm-1".into(),
            slots: 2,
            resource_id: "container_1".into(),
            known_epoch: 1,
            data_address: String::new(),
            running: vec![running(0), running(1)],
        };
        out.send(tm_message(task_manager_message::Kind::Register(register)))
            .await
            .unwrap();
        let mut inbound = client
            .session(ReceiverStream::new(out_rx))
            .await
            .unwrap()
            .into_inner();
        let mut reports = watch.reports;
        let now = reports
            .wait_for(|r| r.subtasks.len() == 2)
            .await
            .unwrap()
            .clone();
        assert!(now.complete, "the one earlier container registered");
        assert_eq!(now.subtasks[1].last_acknowledged, Some(4));
        // Both slots are held by what runs there.
        assert_eq!(pool.registered(), vec![("tm-1".to_string(), 2, 0)]);
        let (events, _events_rx) = mpsc::channel(16);
        let adopted = pool.adopt("j", &now.subtasks[0], events).await.unwrap();
        assert!(!adopted.finished);
        let adopted = adopted.deployed;
        pool.discard("j", &now.subtasks[1]).await;
        // The discarded one is told to stop; the adopted one gets this leader's commands.
        adopted
            .commands
            .send(TaskCommand::Barrier(5))
            .await
            .unwrap();
        let mut seen = Vec::new();
        while seen.len() < 2 {
            match inbound.message().await.unwrap().and_then(|m| m.kind) {
                Some(job_manager_message::Kind::Stop(s)) => {
                    seen.push(format!("stop {}", s.subtask))
                }
                Some(job_manager_message::Kind::Barrier(b)) => {
                    seen.push(format!("barrier {} {}", b.subtask, b.checkpoint_id))
                }
                _ => {}
            }
        }
        assert_eq!(seen, vec!["stop 1", "barrier 0 5"]);
        assert_eq!(pool.registered(), vec![("tm-1".to_string(), 2, 1)]);
        assert!(
            pool.adopt("j", &now.subtasks[1], mpsc::channel(1).0)
                .await
                .is_err()
        );
        pool.settle("j");
        pool.close().await;
        stop.cancel();
    }
}
