//! The TaskManager process (Flink's TaskExecutor): connects to the JobManager, registers its
//! slots, runs the subtasks deployed to it and reports their acknowledgements. When the session
//! ends (the JobManager died or was deposed) it stops its subtasks, waits for them (they are
//! tasks of the session's tracker), and registers again — with a new leader — without
//! restarting the process. Messages carrying a leader epoch older
//! than the newest seen are dropped (fencing).

use std::collections::HashMap;
use std::time::Duration;

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
}

/// Runs until `shutdown`; reconnects after every lost session.
pub async fn run(cfg: TaskManagerConfig, shutdown: CancellationToken) {
    let mut known_epoch = 0u64;
    let mut backoff = Duration::from_millis(100);
    while !shutdown.is_cancelled() {
        let (address, mut discovery) = match &cfg.leader {
            LeaderSource::Address(a) => (a.clone(), None),
            LeaderSource::Discovery(rx) => {
                let mut rx = rx.clone();
                let found = tokio::select! {
                    _ = shutdown.cancelled() => return,
                    r = rx.wait_for(|l| l.as_ref().is_some_and(|l| l.epoch >= known_epoch)) => {
                        r.ok().and_then(|l| l.clone())
                    }
                };
                let Some(leader) = found else {
                    tracing::error!("leader discovery ended; stopping");
                    return;
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
        let result = tokio::select! {
            r = session(&cfg, &address, &mut known_epoch, &shutdown) => r,
            _ = &mut leader_changed => Err(RuntimeError::Session("a new leader was published".into())),
        };
        match result {
            Ok(()) => backoff = Duration::from_millis(100),
            Err(e) => {
                tracing::warn!(jobmanager = %address, error = %e, "JobManager session ended");
                backoff = (backoff * 2).min(Duration::from_secs(5));
            }
        }
        tokio::select! {
            _ = shutdown.cancelled() => return,
            _ = tokio::time::sleep(backoff) => {}
            // A new leader: connect at once.
            _ = &mut leader_changed => backoff = Duration::from_millis(100),
        }
    }
}

/// One session with the JobManager at `address`: register, then run what it deploys until the
/// session ends. Every subtask it started has stopped when this returns.
async fn session(
    cfg: &TaskManagerConfig,
    address: &str,
    known_epoch: &mut u64,
    shutdown: &CancellationToken,
) -> Result<(), RuntimeError> {
    let channel = tonic::transport::Endpoint::from_shared(address.to_string())
        .map_err(|e| RuntimeError::Session(format!("bad JobManager address {address}: {e}")))?
        .connect_timeout(Duration::from_secs(10))
        .http2_keep_alive_interval(cfg.heartbeat_interval)
        .keep_alive_timeout(cfg.heartbeat_timeout)
        .keep_alive_while_idle(true)
        .connect()
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
        })),
    })
    .await
    .map_err(|e| RuntimeError::Session(e.to_string()))?;
    let mut inbound = client
        .session(ReceiverStream::new(out_rx))
        .await
        .map_err(|e| RuntimeError::Session(format!("registration refused: {}", e.message())))?
        .into_inner();
    let mut subtasks = Subtasks {
        commands: HashMap::new(),
        tasks: TaskTracker::new(),
        ended: shutdown.child_token(),
        out,
        network: cfg.network.clone(),
    };
    // Set by `Registered`: the JobManager heartbeats us at least every interval, so silence for
    // its timeout means it is frozen, stuck or cut off even if the connection looks fine.
    let mut jobmanager_timeout: Option<Duration> = None;
    let mut last_heard = tokio::time::Instant::now();
    let result = loop {
        let silent_until = jobmanager_timeout.map(|t| last_heard + t);
        let msg = tokio::select! {
            // What arrived counts before the deadline does (the loop may have been busy).
            biased;
            _ = shutdown.cancelled() => break Ok(()),
            m = inbound.message() => m,
            _ = sleep_until(silent_until), if silent_until.is_some() => {
                break Err(RuntimeError::Session(format!(
                    "nothing heard from the JobManager for {:?} (its heartbeat.timeout)",
                    jobmanager_timeout.unwrap_or_default()
                )));
            }
        };
        last_heard = tokio::time::Instant::now();
        let msg = match msg {
            Ok(Some(m)) => m,
            Ok(None) => {
                break Err(RuntimeError::Session(
                    "the JobManager closed the session".into(),
                ));
            }
            Err(e) => {
                break Err(RuntimeError::Session(format!(
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
                tracing::info!(leader_session_id = %r.leader_session_id, epoch = msg.leader_epoch, heartbeat_timeout_ms = r.heartbeat_timeout_ms, "registered with the JobManager");
                jobmanager_timeout = (r.heartbeat_timeout_ms > 0)
                    .then(|| Duration::from_millis(r.heartbeat_timeout_ms));
            }
            Some(job_manager_message::Kind::Heartbeat(h)) => {
                // Answered at once; the JobManager declares us lost if it hears nothing.
                let kind = wire::heartbeat_response(&h);
                if subtasks
                    .out
                    .send(TaskManagerMessage { kind: Some(kind) })
                    .await
                    .is_err()
                {
                    break Err(RuntimeError::Session("the session's outbox closed".into()));
                }
            }
            Some(job_manager_message::Kind::Deploy(d)) => subtasks.deploy(d).await,
            Some(kind) => match SubtaskCommand::try_from(kind) {
                Ok(c) => subtasks.command(c).await,
                Err(other) => tracing::warn!(message = ?other, "unexpected message ignored"),
            },
            None => {}
        }
    };
    // Without a JobManager the subtasks cannot checkpoint: stop them; the next leader redeploys.
    subtasks.stop_all().await;
    result
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

/// The subtasks one session runs.
struct Subtasks {
    /// Each running subtask's command inbox, by (job, subtask).
    commands: HashMap<(String, u32), mpsc::Sender<TaskCommand>>,
    /// The subtasks and their event forwarders; waited for when the session ends.
    tasks: TaskTracker,
    /// Cancelled when the session ends: the forwarders stop.
    ended: CancellationToken,
    /// To the JobManager.
    out: mpsc::Sender<TaskManagerMessage>,
    /// The TaskManager's data plane, which every keyed subtask uses.
    network: Option<TaskNetwork>,
}

impl Subtasks {
    async fn deploy(&mut self, d: control::Deploy) {
        let key = (d.job_id.clone(), d.subtask);
        if let Some(old) = self.commands.remove(&key) {
            // Redeployed here while an earlier run still lives (its Stop never came): it stops
            // rather than run on beside the new one.
            tracing::warn!(job_id = %d.job_id, subtask = d.subtask, "redeployed while still running here; stopping the old run");
            let _ = old.send(TaskCommand::Stop).await;
        }
        match self.start(&d).await {
            Ok(commands) => {
                self.commands.insert(key, commands);
            }
            Err(error) => {
                let event = TaskEvent::Failed {
                    subtask: d.subtask,
                    error,
                };
                self.send(JobEvent {
                    job_id: d.job_id,
                    event,
                })
                .await;
            }
        }
    }

    /// Starts a deployed subtask and the forwarder of its events.
    async fn start(&self, d: &control::Deploy) -> Result<mpsc::Sender<TaskCommand>, RuntimeError> {
        let (pipeline, restore) = wire::deployment(d)?;
        let sink_dir = crate::storage::open(&d.sink_uri).await?;
        let checkpoint_dir = wire::checkpoint_dir(d).await?;
        let config = TaskConfig {
            job_id: d.job_id.clone(),
            run_id: wire::run_id(d)?,
            subtask: d.subtask,
            parallelism: d.parallelism,
            pipeline,
            sink_dir,
            checkpoint_dir,
            batch: 10_000,
            exchange: wire::exchange(d)?,
        };
        let (cmd_tx, cmd_rx) = mpsc::channel(64);
        let (ev_tx, mut ev_rx) = mpsc::channel::<TaskEvent>(64);
        self.tasks.spawn(task::run_task(
            config,
            restore,
            cmd_rx,
            ev_tx,
            self.network.clone(),
        ));
        let job_id = d.job_id.clone();
        let out = self.out.clone();
        let ended = self.ended.clone();
        self.tasks.spawn(async move {
            loop {
                let event = tokio::select! {
                    _ = ended.cancelled() => return,
                    e = ev_rx.recv() => e,
                };
                let Some(event) = event else { return };
                let e = JobEvent {
                    job_id: job_id.clone(),
                    event,
                };
                if let TaskEvent::Ack {
                    subtask,
                    checkpoint_id,
                    ..
                } = &e.event
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
                let e = decline_fault(e);
                // Progress stays here.
                let Ok(kind) = task_manager_message::Kind::try_from(e) else {
                    continue;
                };
                if out
                    .send(TaskManagerMessage { kind: Some(kind) })
                    .await
                    .is_err()
                {
                    return;
                }
            }
        });
        Ok(cmd_tx)
    }

    async fn command(&mut self, c: SubtaskCommand) {
        let key = (c.job_id, c.subtask);
        let inbox = if c.command == TaskCommand::Stop {
            self.commands.remove(&key)
        } else {
            self.commands.get(&key).cloned()
        };
        // A subtask that already ended has reported why; nothing to deliver.
        if let Some(inbox) = inbox {
            let _ = inbox.send(c.command).await;
        }
    }

    async fn send(&self, e: JobEvent) {
        if let Ok(kind) = task_manager_message::Kind::try_from(e) {
            // The session is over if this fails; its end is handled by the caller.
            let _ = self.out.send(TaskManagerMessage { kind: Some(kind) }).await;
        }
    }

    /// Stops every subtask and waits for them and their forwarders.
    async fn stop_all(self) {
        // Forwarders first: a subtask blocked on reporting to a dead session then ends too.
        self.ended.cancel();
        for (_, inbox) in self.commands {
            // Err: the subtask has ended already.
            let _ = inbox.send(TaskCommand::Stop).await;
        }
        self.tasks.close();
        self.tasks.wait().await;
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
