//! The TaskManager process (Flink's TaskExecutor): connects to the JobManager, registers its
//! slots, runs the subtasks deployed to it and reports their acknowledgements. When the session
//! ends (the JobManager died or was deposed) its subtasks keep running (Flink cancels them;
//! yarnflow keeps the job through an AM failover): it registers again with the new leader
//! without restarting the process and reports them ([`control::RunningSubtask`]), and the new
//! leader's job masters adopt them or stop them. Without a leader for
//! `taskmanager.leaderless.timeout` it stops them and waits for them. Meanwhile their events
//! only update what is reported (a checkpoint acknowledged to nobody is abandoned; the sink
//! carries its data into the next one). Messages carrying a leader epoch older than the newest
//! seen are dropped (fencing): subtasks obey the newest leader only.

use std::collections::HashMap;
use std::time::Duration;

use tokio::time::Instant;

use tokio::sync::{mpsc, watch};
use tokio_stream::wrappers::ReceiverStream;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use super::exchange::TaskNetwork;
use super::task::{self, TaskCommand, TaskConfig, TaskEvent};
use super::wire::{self, JobEvent, SubtaskCommand};
use crate::control::job_manager_gateway_client::JobManagerGatewayClient;
use crate::control::{self, TaskManagerMessage, job_manager_message, task_manager_message};
use crate::ha::LeaderInfo;
use crate::jobmanager::error::RuntimeError;

/// Where the TaskManager finds its JobManager.
#[derive(Debug, Clone)]
pub enum LeaderSource {
    /// A fixed address (local mode, or started by hand).
    Address(String),
    /// HA service discovery: whoever leads now; a newly published leader ends the current
    /// session at once, so a failover does not wait for a timeout.
    Discovery(watch::Receiver<Option<LeaderInfo>>),
}

#[derive(Debug, Clone)]
pub struct TaskManagerConfig {
    /// The JobManager's gRPC endpoint (`http://host:port`), fixed or discovered.
    pub leader: LeaderSource,
    pub slots: u32,
    pub id: String,
    /// The YARN container id, if in one.
    pub resource_id: String,
    /// `heartbeat.interval` / `heartbeat.timeout`: HTTP/2 pings on the session, so a JobManager
    /// that vanished without closing the connection (host lost, partition) is noticed. (The
    /// JobManager's own heartbeat requests, answered in the session loop, are what tells it
    /// that this TaskManager is alive; it does not rely on these pings.)
    pub heartbeat_interval: Duration,
    pub heartbeat_timeout: Duration,
    /// The data plane of the keyed exchange, started with the process (`None`: this
    /// TaskManager runs single-stage subtasks only).
    pub network: Option<TaskNetwork>,
    /// `taskmanager.leaderless.timeout`: how long subtasks keep running while no leader is
    /// known (a new one adopts them); then they stop.
    pub leaderless_timeout: Duration,
}

/// Runs until `shutdown`; reconnects after every lost session. The subtasks outlive sessions.
pub async fn run(cfg: TaskManagerConfig, shutdown: CancellationToken) {
    let mut subtasks = Subtasks::new(cfg.network.clone(), cfg.leaderless_timeout);
    let mut known_epoch = 0u64;
    let mut backoff = Duration::from_millis(100);
    while !shutdown.is_cancelled() {
        let (address, mut discovery) = match &cfg.leader {
            LeaderSource::Address(a) => (a.clone(), None),
            LeaderSource::Discovery(rx) => {
                let mut rx = rx.clone();
                let wait = async {
                    tokio::select! {
                        _ = shutdown.cancelled() => None,
                        r = rx.wait_for(|l| l.as_ref().is_some_and(|l| l.epoch >= known_epoch)) => {
                            Some(r.ok().and_then(|l| l.clone()))
                        }
                    }
                };
                let Some(found) = subtasks.while_leaderless(wait).await else {
                    break;
                };
                let Some(leader) = found else {
                    tracing::error!("leader discovery ended; stopping");
                    break;
                };
                (leader.address.clone(), Some((rx, leader)))
            }
        };
        // Resolves when discovery publishes a leader other than the one we connect to.
        let leader_changed = async {
            match discovery.as_mut() {
                Some((rx, current)) => {
                    let current = current.clone();
                    let _ = rx
                        .wait_for(|l| l.as_ref().is_some_and(|l| *l != current))
                        .await;
                }
                None => std::future::pending::<()>().await,
            }
        };
        tokio::pin!(leader_changed);
        // Once `leader_changed` resolved it must not be polled again (a finished async block
        // panics when resumed).
        let mut changed = false;
        let result = tokio::select! {
            r = session(&cfg, &address, &mut known_epoch, &mut subtasks, &shutdown) => r,
            _ = &mut leader_changed => {
                changed = true;
                Err(RuntimeError::Session("a new leader was published".into()))
            }
        };
        subtasks.leaderless();
        match result {
            Ok(()) => backoff = Duration::from_millis(100),
            Err(e) => {
                tracing::warn!(jobmanager = %address, error = %e, running = subtasks.running.len(), "JobManager session ended; its subtasks keep running until a leader adopts them or taskmanager.leaderless.timeout");
                backoff = if changed {
                    // The new leader is known: connect to it at once.
                    Duration::from_millis(100)
                } else {
                    (backoff * 2).min(Duration::from_secs(5))
                };
            }
        }
        let wait = async {
            tokio::select! {
                _ = shutdown.cancelled() => None,
                _ = tokio::time::sleep(backoff) => Some(backoff),
                // A new leader: connect at once.
                _ = &mut leader_changed, if !changed => Some(Duration::from_millis(100)),
            }
        };
        match subtasks.while_leaderless(wait).await {
            Some(next) => backoff = next,
            None => break,
        }
    }
    subtasks.stop_all().await;
}

/// What woke a session's loop (one variant per `select!` arm).
enum SessionWake {
    Shutdown,
    Message(Result<Option<control::JobManagerMessage>, tonic::Status>),
    Silent,
    Event(Forwarded),
    LeaderlessTimeout,
}

/// One session with the JobManager at `address`: register (reporting the subtasks still
/// running), then run what it deploys until the session ends. The subtasks run on.
async fn session(
    cfg: &TaskManagerConfig,
    address: &str,
    known_epoch: &mut u64,
    subtasks: &mut Subtasks,
    shutdown: &CancellationToken,
) -> Result<(), RuntimeError> {
    let endpoint = tonic::transport::Endpoint::from_shared(address.to_string())
        .map_err(|e| RuntimeError::Session(format!("bad JobManager address {address}: {e}")))?
        .connect_timeout(Duration::from_secs(10))
        .http2_keep_alive_interval(cfg.heartbeat_interval)
        .keep_alive_timeout(cfg.heartbeat_timeout)
        .keep_alive_while_idle(true);
    let channel = subtasks
        .while_leaderless(endpoint.connect())
        .await
        .map_err(|e| RuntimeError::Session(format!("cannot connect: {e}")))?;
    let mut client = JobManagerGatewayClient::new(channel);
    let (out, out_rx) = mpsc::channel::<TaskManagerMessage>(1024);
    out.send(TaskManagerMessage {
        kind: Some(task_manager_message::Kind::Register(control::Register {
            taskmanager_id: cfg.id.clone(),
            slots: cfg.slots,
            resource_id: cfg.resource_id.clone(),
            known_epoch: *known_epoch,
            data_address: cfg
                .network
                .as_ref()
                .map(|n| n.address.clone())
                .unwrap_or_default(),
            running: subtasks.reports(),
        })),
    })
    .await
    .map_err(|e| RuntimeError::Session(e.to_string()))?;
    let mut inbound = subtasks
        .while_leaderless(client.session(ReceiverStream::new(out_rx)))
        .await
        .map_err(|e| RuntimeError::Session(format!("registration refused: {}", e.message())))?
        .into_inner();
    // Set by `Registered`: the JobManager heartbeats us at least every interval, so silence for
    // its timeout means it is frozen, stuck or cut off even if the connection looks fine.
    let mut jobmanager_timeout: Option<Duration> = None;
    let mut last_heard = tokio::time::Instant::now();
    loop {
        let silent_until = jobmanager_timeout.map(|t| last_heard + t);
        let leaderless_until = subtasks.leaderless_deadline();
        let wake = tokio::select! {
            // What arrived counts before the deadline does (the loop may have been busy).
            biased;
            _ = shutdown.cancelled() => SessionWake::Shutdown,
            m = inbound.message() => SessionWake::Message(m),
            Some(e) = subtasks.events.recv() => SessionWake::Event(e),
            _ = sleep_until(silent_until), if silent_until.is_some() => SessionWake::Silent,
            _ = sleep_until(leaderless_until), if leaderless_until.is_some() => SessionWake::LeaderlessTimeout,
        };
        let msg = match wake {
            SessionWake::Shutdown => return Ok(()),
            SessionWake::Silent => {
                return Err(RuntimeError::Session(format!(
                    "nothing heard from the JobManager for {:?} (its heartbeat.timeout)",
                    jobmanager_timeout.unwrap_or_default()
                )));
            }
            SessionWake::Event(e) => {
                if let Some(kind) = subtasks.on_event(e)
                    && out
                        .send(TaskManagerMessage { kind: Some(kind) })
                        .await
                        .is_err()
                {
                    return Err(RuntimeError::Session("the session's outbox closed".into()));
                }
                continue;
            }
            SessionWake::LeaderlessTimeout => {
                subtasks.on_leaderless_timeout().await;
                continue;
            }
            SessionWake::Message(m) => m,
        };
        last_heard = tokio::time::Instant::now();
        let msg = match msg {
            Ok(Some(m)) => m,
            Ok(None) => {
                return Err(RuntimeError::Session(
                    "the JobManager closed the session".into(),
                ));
            }
            Err(e) => {
                return Err(RuntimeError::Session(format!(
                    "the session failed: {}",
                    e.message()
                )));
            }
        };
        if msg.leader_epoch < *known_epoch {
            tracing::warn!(
                epoch = msg.leader_epoch,
                known = *known_epoch,
                "dropped a message from a deposed leader"
            );
            continue;
        }
        *known_epoch = msg.leader_epoch;
        match msg.kind {
            Some(job_manager_message::Kind::Registered(r)) => {
                tracing::info!(leader_session_id = %r.leader_session_id, epoch = msg.leader_epoch, heartbeat_timeout_ms = r.heartbeat_timeout_ms, reported = subtasks.running.len(), "registered with the JobManager");
                jobmanager_timeout = (r.heartbeat_timeout_ms > 0)
                    .then(|| Duration::from_millis(r.heartbeat_timeout_ms));
                // A leader again: it adopts or stops what we reported.
                subtasks.leaderless_since = None;
            }
            Some(job_manager_message::Kind::Heartbeat(h)) => {
                // Answered at once; the JobManager declares us lost if it hears nothing.
                let kind = wire::heartbeat_response(&h);
                if out
                    .send(TaskManagerMessage { kind: Some(kind) })
                    .await
                    .is_err()
                {
                    return Err(RuntimeError::Session("the session's outbox closed".into()));
                }
            }
            Some(job_manager_message::Kind::Deploy(d)) => {
                if let Some(kind) = subtasks.deploy(d, msg.leader_epoch).await
                    && out
                        .send(TaskManagerMessage { kind: Some(kind) })
                        .await
                        .is_err()
                {
                    return Err(RuntimeError::Session("the session's outbox closed".into()));
                }
            }
            Some(kind) => match SubtaskCommand::try_from(kind) {
                Ok(c) => subtasks.command(c),
                Err(other) => tracing::warn!(message = ?other, "unexpected message ignored"),
            },
            None => {}
        }
    }
}

/// Sleeps until `at` (forever if `None`; the arm is disabled then anyway).
async fn sleep_until(at: Option<tokio::time::Instant>) {
    match at {
        Some(at) => tokio::time::sleep_until(at).await,
        None => std::future::pending().await,
    }
}

/// Fault point `decline-ack` (context `subtask`, `checkpoint`): the subtask's acknowledgement
/// becomes a decline.
fn decline_fault(e: JobEvent) -> JobEvent {
    match e.event {
        TaskEvent::Ack {
            subtask,
            checkpoint_id,
            ..
        } if crate::faults::fire(
            "decline-ack",
            &[("subtask", &subtask), ("checkpoint", &checkpoint_id)],
        ) =>
        {
            JobEvent {
                job_id: e.job_id,
                event: TaskEvent::Declined {
                    subtask,
                    checkpoint_id,
                    reason: "fault point decline-ack".into(),
                },
            }
        }
        event => JobEvent {
            job_id: e.job_id,
            event,
        },
    }
}

/// An event of one deployment (`deployment`: its sequence number here), or its end (`None`).
struct Forwarded {
    deployment: u64,
    key: (String, u32),
    event: Option<JobEvent>,
}

/// A subtask running here.
struct Running {
    /// Its deployment's sequence number (a redeployment of the same subtask has a newer one).
    deployment: u64,
    commands: mpsc::Sender<TaskCommand>,
    /// What a new leader is told about it, kept up to date from its events.
    report: control::RunningSubtask,
}

/// The subtasks this TaskManager runs, across sessions.
struct Subtasks {
    running: HashMap<(String, u32), Running>,
    /// The subtasks and their event forwarders; waited for when they stop.
    tasks: TaskTracker,
    /// Cancelled when every subtask stops: the forwarders end (a subtask blocked reporting to
    /// nobody ends too).
    forwarders: CancellationToken,
    /// Every subtask's events, through its forwarder.
    events_tx: mpsc::Sender<Forwarded>,
    events: mpsc::Receiver<Forwarded>,
    next_deployment: u64,
    /// The TaskManager's data plane, which every keyed subtask uses.
    network: Option<TaskNetwork>,
    /// Since when no leader is known (`None`: registered with one).
    leaderless_since: Option<Instant>,
    leaderless_timeout: Duration,
}

impl Subtasks {
    fn new(network: Option<TaskNetwork>, leaderless_timeout: Duration) -> Subtasks {
        let (events_tx, events) = mpsc::channel(1024);
        Subtasks {
            running: HashMap::new(),
            tasks: TaskTracker::new(),
            forwarders: CancellationToken::new(),
            events_tx,
            events,
            next_deployment: 0,
            network,
            leaderless_since: Some(Instant::now()),
            leaderless_timeout,
        }
    }

    /// The session ended: the leaderless clock runs (if it does not already).
    fn leaderless(&mut self) {
        if self.leaderless_since.is_none() {
            self.leaderless_since = Some(Instant::now());
        }
    }

    /// When the subtasks stop unless a leader registers us first (`None`: none run, or a
    /// leader is known).
    fn leaderless_deadline(&self) -> Option<Instant> {
        if self.running.is_empty() {
            return None;
        }
        self.leaderless_since.map(|t| t + self.leaderless_timeout)
    }

    async fn on_leaderless_timeout(&mut self) {
        tracing::warn!(running = self.running.len(), timeout = ?self.leaderless_timeout, "no leader adopted the running subtasks within taskmanager.leaderless.timeout; stopping them");
        self.stop_all().await;
    }

    /// Runs `f` while no leader is known: events only update the reports, and the subtasks
    /// stop once the leaderless timeout is over.
    async fn while_leaderless<T>(&mut self, f: impl std::future::Future<Output = T>) -> T {
        tokio::pin!(f);
        loop {
            let deadline = self.leaderless_deadline();
            tokio::select! {
                biased;
                r = &mut f => return r,
                Some(e) = self.events.recv() => {
                    // Nobody to tell: an acknowledgement to nobody abandons its checkpoint.
                    let _ = self.on_event(e);
                }
                _ = sleep_until(deadline), if deadline.is_some() => self.on_leaderless_timeout().await,
            }
        }
    }

    /// What a new leader is told: every subtask still running here.
    fn reports(&self) -> Vec<control::RunningSubtask> {
        let mut reports: Vec<_> = self.running.values().map(|r| r.report.clone()).collect();
        reports.sort_by(|a, b| (&a.job_id, a.subtask).cmp(&(&b.job_id, b.subtask)));
        reports
    }

    /// Takes one forwarded event into the reports; what goes to the JobManager, if anything.
    fn on_event(&mut self, f: Forwarded) -> Option<task_manager_message::Kind> {
        let current = self
            .running
            .get(&f.key)
            .is_some_and(|r| r.deployment == f.deployment);
        let Some(e) = f.event else {
            // The subtask and its forwarder ended.
            if current {
                self.running.remove(&f.key);
            }
            return None;
        };
        if current && let Some(r) = self.running.get_mut(&f.key) {
            match &e.event {
                TaskEvent::Ack { checkpoint_id, .. } => {
                    r.report.last_acknowledged = r.report.last_acknowledged.max(*checkpoint_id)
                }
                TaskEvent::Committed { checkpoint_id, .. } => {
                    r.report.last_committed = r.report.last_committed.max(*checkpoint_id)
                }
                TaskEvent::Finished { .. } => r.report.finished = true,
                // It ended: nothing to adopt any more.
                TaskEvent::Failed { .. } => {
                    self.running.remove(&f.key);
                }
                TaskEvent::Declined { .. } | TaskEvent::Progress { .. } => {}
            }
        }
        task_manager_message::Kind::try_from(e).ok()
    }

    /// Starts a deployment of leader `epoch`; the failure to report if it cannot start.
    async fn deploy(
        &mut self,
        d: control::Deploy,
        epoch: u64,
    ) -> Option<task_manager_message::Kind> {
        let key = (d.job_id.clone(), d.subtask);
        if let Some(old) = self.running.remove(&key) {
            // Redeployed here while an earlier run still lives (its Stop never came, or the
            // new leader did not adopt it): it stops rather than run on beside the new one.
            tracing::warn!(job_id = %d.job_id, subtask = d.subtask, "redeployed while still running here; stopping the old run");
            deliver(&self.tasks, old.commands, TaskCommand::Stop);
        }
        match self.start(&d).await {
            Ok((deployment, commands, exchange)) => {
                let report = control::RunningSubtask {
                    job_id: d.job_id.clone(),
                    subtask: d.subtask,
                    run_id: d.run_id.clone(),
                    attempt: d.attempt,
                    round: exchange.attempt,
                    stage: exchange.stage,
                    index: exchange.index,
                    last_acknowledged: 0,
                    last_committed: 0,
                    finished: false,
                    deployed_epoch: epoch,
                };
                self.running.insert(
                    key,
                    Running {
                        deployment,
                        commands,
                        report,
                    },
                );
                None
            }
            Err(error) => {
                let event = TaskEvent::Failed {
                    subtask: d.subtask,
                    error,
                };
                task_manager_message::Kind::try_from(JobEvent {
                    job_id: d.job_id,
                    event,
                })
                .ok()
            }
        }
    }

    /// Starts a deployed subtask and the forwarder of its events.
    async fn start(
        &mut self,
        d: &control::Deploy,
    ) -> Result<(u64, mpsc::Sender<TaskCommand>, super::exchange::Exchange), RuntimeError> {
        let (pipeline, restore) = wire::deployment(d)?;
        let sink_dir = crate::storage::open(&d.sink_uri).await?;
        let checkpoint_dir = wire::checkpoint_dir(d).await?;
        let exchange = wire::exchange(d)?;
        let config = TaskConfig {
            job_id: d.job_id.clone(),
            run_id: wire::run_id(d)?,
            subtask: d.subtask,
            attempt: d.attempt,
            parallelism: d.parallelism,
            pipeline,
            sink_dir,
            checkpoint_dir,
            batch: 10_000,
            exchange: exchange.clone(),
        };
        self.next_deployment += 1;
        let deployment = self.next_deployment;
        let (cmd_tx, cmd_rx) = mpsc::channel(64);
        let (ev_tx, mut ev_rx) = mpsc::channel::<TaskEvent>(64);
        self.tasks.spawn(task::run_task(
            config,
            restore,
            cmd_rx,
            ev_tx,
            self.network.clone(),
        ));
        let key = (d.job_id.clone(), d.subtask);
        let out = self.events_tx.clone();
        let ended = self.forwarders.clone();
        self.tasks.spawn(async move {
            loop {
                let event = tokio::select! {
                    _ = ended.cancelled() => return,
                    e = ev_rx.recv() => e,
                };
                let Some(event) = event else {
                    let _ = out
                        .send(Forwarded {
                            deployment,
                            key,
                            event: None,
                        })
                        .await;
                    return;
                };
                if let TaskEvent::Ack {
                    subtask,
                    checkpoint_id,
                    ..
                } = &event
                    && crate::faults::fire(
                        "drop-ack",
                        &[("subtask", subtask), ("checkpoint", checkpoint_id)],
                    )
                {
                    tracing::warn!(
                        subtask,
                        checkpoint_id,
                        "fault point drop-ack: acknowledgement not sent"
                    );
                    continue;
                }
                let event = decline_fault(JobEvent {
                    job_id: key.0.clone(),
                    event,
                });
                let forwarded = Forwarded {
                    deployment,
                    key: key.clone(),
                    event: Some(event),
                };
                if out.send(forwarded).await.is_err() {
                    return;
                }
            }
        });
        Ok((deployment, cmd_tx, exchange))
    }

    fn command(&mut self, c: SubtaskCommand) {
        let key = (c.job_id, c.subtask);
        let inbox = if c.command == TaskCommand::Stop {
            self.running.remove(&key).map(|r| r.commands)
        } else {
            self.running.get(&key).map(|r| r.commands.clone())
        };
        // A subtask that already ended has reported why; nothing to deliver.
        if let Some(inbox) = inbox {
            deliver(&self.tasks, inbox, c.command);
        }
    }

    /// Stops every subtask and waits for them and their forwarders.
    async fn stop_all(&mut self) {
        // Forwarders first: a subtask blocked on reporting then ends too.
        self.forwarders.cancel();
        for (_, r) in self.running.drain() {
            deliver(&self.tasks, r.commands, TaskCommand::Stop);
        }
        self.tasks.close();
        self.tasks.wait().await;
        self.tasks.reopen();
        self.forwarders = CancellationToken::new();
        while self.events.try_recv().is_ok() {}
    }
}

/// Hands a subtask a command without waiting on it (the loop must keep draining events, or a
/// subtask blocked reporting one could never read its inbox): a full inbox gets it from a
/// task of its own.
fn deliver(tasks: &TaskTracker, inbox: mpsc::Sender<TaskCommand>, command: TaskCommand) {
    match inbox.try_send(command) {
        Ok(()) | Err(mpsc::error::TrySendError::Closed(_)) => {}
        Err(mpsc::error::TrySendError::Full(command)) => {
            tasks.spawn(async move {
                let _ = inbox.send(command).await;
            });
        }
    }
}

#[cfg(test)]
mod tests {
    use std::pin::Pin;
    use std::sync::Arc;

    use futures::Stream;
    use tonic::{Request, Response, Status, Streaming};

    use super::*;
    use crate::control::JobManagerMessage;
    use crate::control::job_manager_gateway_server::{JobManagerGateway, JobManagerGatewayServer};

    /// A JobManager that registers every session with a short heartbeat timeout and then
    /// stays silent, its stream open: frozen, as far as the TaskManager can tell.
    struct SilentJobManager {
        sessions: mpsc::UnboundedSender<()>,
        /// Keeps every session's stream open.
        open: std::sync::Mutex<Vec<mpsc::Sender<Result<JobManagerMessage, Status>>>>,
    }

    #[tonic::async_trait]
    impl JobManagerGateway for Arc<SilentJobManager> {
        type SessionStream = Pin<Box<dyn Stream<Item = Result<JobManagerMessage, Status>> + Send>>;

        async fn session(
            &self,
            _request: Request<Streaming<TaskManagerMessage>>,
        ) -> Result<Response<Self::SessionStream>, Status> {
            let (tx, rx) = mpsc::channel(4);
            let registered = control::Registered {
                leader_session_id: "s".into(),
                heartbeat_interval_ms: 100,
                heartbeat_timeout_ms: 300,
            };
            let message = JobManagerMessage {
                leader_epoch: 1,
                kind: Some(job_manager_message::Kind::Registered(registered)),
            };
            tx.send(Ok(message)).await.unwrap();
            self.open.lock().unwrap().push(tx);
            let _ = self.sessions.send(());
            Ok(Response::new(Box::pin(ReceiverStream::new(rx))))
        }
    }

    #[tokio::test]
    async fn a_silent_jobmanager_ends_the_session_after_its_heartbeat_timeout() {
        let (sessions_tx, mut sessions) = mpsc::unbounded_channel();
        let jm = Arc::new(SilentJobManager {
            sessions: sessions_tx,
            open: std::sync::Mutex::new(Vec::new()),
        });
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let address = format!("http://{}", listener.local_addr().unwrap());
        let stop = CancellationToken::new();
        tokio::spawn(
            tonic::transport::Server::builder()
                .add_service(JobManagerGatewayServer::new(jm.clone()))
                .serve_with_incoming_shutdown(
                    tokio_stream::wrappers::TcpListenerStream::new(listener),
                    stop.clone().cancelled_owned(),
                ),
        );
        let cfg = TaskManagerConfig {
            leader: LeaderSource::Address(address),
            slots: 1,
            id: "tm".into(),
            resource_id: String::new(),
            // The connection's own keepalive would not notice for a minute.
            heartbeat_interval: Duration::from_secs(60),
            heartbeat_timeout: Duration::from_secs(60),
            network: None,
            leaderless_timeout: Duration::from_secs(30),
        };
        let shutdown = CancellationToken::new();
        let taskmanager = tokio::spawn(run(cfg, shutdown.clone()));
        let within = Duration::from_secs(10);
        tokio::time::timeout(within, sessions.recv()).await.unwrap();
        // The TaskManager gives the silent session up and registers again.
        tokio::time::timeout(within, sessions.recv())
            .await
            .expect("a new session after the JobManager's heartbeat timeout");
        shutdown.cancel();
        taskmanager.await.unwrap();
        stop.cancel();
    }
}
