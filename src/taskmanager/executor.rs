//! The TaskManager process (Flink's TaskExecutor): connects to the JobManager, registers its
//! slots, runs the subtasks deployed to it and reports their acknowledgements. When the session
//! ends (the JobManager died or was deposed) it stops its subtasks and registers again —
//! with a new leader — without restarting the process. Messages carrying a leader epoch older
//! than the newest seen are dropped (fencing).

use std::collections::HashMap;
use std::time::Duration;

use tokio::sync::{mpsc, watch};
use tokio_stream::wrappers::ReceiverStream;
use tokio_util::sync::CancellationToken;

use super::task::{self, SubtaskState, TaskCommand, TaskConfig, TaskEvent};
use crate::control::job_manager_gateway_client::JobManagerGatewayClient;
use crate::control::{self, TaskManagerMessage, job_manager_message, task_manager_message};
use crate::ha::LeaderInfo;
use crate::job::spec::Step;

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
    /// that vanished without closing the connection (host lost, partition) is noticed.
    pub heartbeat_interval: Duration,
    pub heartbeat_timeout: Duration,
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
            _ = &mut leader_changed => Err("a new leader was published".to_string()),
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

async fn session(
    cfg: &TaskManagerConfig,
    address: &str,
    known_epoch: &mut u64,
    shutdown: &CancellationToken,
) -> Result<(), String> {
    let channel = tonic::transport::Endpoint::from_shared(address.to_string())
        .map_err(|e| format!("bad JobManager address {address}: {e}"))?
        .connect_timeout(Duration::from_secs(10))
        .http2_keep_alive_interval(cfg.heartbeat_interval)
        .keep_alive_timeout(cfg.heartbeat_timeout)
        .keep_alive_while_idle(true)
        .connect()
        .await
        .map_err(|e| format!("cannot connect: {e}"))?;
    let mut client = JobManagerGatewayClient::new(channel);
    let (out, out_rx) = mpsc::channel::<TaskManagerMessage>(1024);
    out.send(TaskManagerMessage {
        kind: Some(task_manager_message::Kind::Register(control::Register {
            taskmanager_id: cfg.id.clone(),
            slots: cfg.slots,
            resource_id: cfg.resource_id.clone(),
            known_epoch: *known_epoch,
        })),
    })
    .await
    .map_err(|e| e.to_string())?;
    let mut inbound = client
        .session(ReceiverStream::new(out_rx))
        .await
        .map_err(|e| format!("registration refused: {}", e.message()))?
        .into_inner();
    let mut tasks: HashMap<(String, u32), mpsc::Sender<TaskCommand>> = HashMap::new();
    let result = loop {
        let msg = tokio::select! {
            _ = shutdown.cancelled() => break Ok(()),
            m = inbound.message() => m,
        };
        let msg = match msg {
            Ok(Some(m)) => m,
            Ok(None) => break Err("the JobManager closed the session".to_string()),
            Err(e) => break Err(format!("the session failed: {}", e.message())),
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
                tracing::info!(leader_session_id = %r.leader_session_id, epoch = msg.leader_epoch, "registered with the JobManager");
            }
            Some(job_manager_message::Kind::Deploy(d)) => {
                let key = (d.job_id.clone(), d.subtask);
                match deploy(d, out.clone()).await {
                    Ok(commands) => {
                        tasks.insert(key, commands);
                    }
                    Err((job_id, subtask, error)) => {
                        let _ = out
                            .send(TaskManagerMessage {
                                kind: Some(task_manager_message::Kind::Failed(
                                    control::SubtaskFailed {
                                        job_id,
                                        subtask,
                                        error,
                                    },
                                )),
                            })
                            .await;
                    }
                }
            }
            Some(job_manager_message::Kind::Barrier(b)) => {
                if let Some(t) = tasks.get(&(b.job_id, b.subtask)) {
                    let _ = t.send(TaskCommand::Barrier(b.checkpoint_id)).await;
                }
            }
            Some(job_manager_message::Kind::Complete(c)) => {
                if let Some(t) = tasks.get(&(c.job_id, c.subtask)) {
                    let _ = t.send(TaskCommand::Complete(c.checkpoint_id)).await;
                }
            }
            Some(job_manager_message::Kind::Stop(s)) => {
                if let Some(t) = tasks.remove(&(s.job_id, s.subtask)) {
                    let _ = t.send(TaskCommand::Stop).await;
                }
            }
            None => {}
        }
    };
    // Without a JobManager the subtasks cannot checkpoint: stop them; the next leader redeploys.
    for (_, t) in tasks {
        let _ = t.send(TaskCommand::Stop).await;
    }
    result
}

async fn deploy(
    d: control::Deploy,
    out: mpsc::Sender<TaskManagerMessage>,
) -> Result<mpsc::Sender<TaskCommand>, (String, u32, String)> {
    let fail = |e: String| (d.job_id.clone(), d.subtask, e);
    let pipeline: Vec<Step> =
        serde_json::from_str(&d.spec_json).map_err(|e| fail(format!("bad job spec: {e}")))?;
    let restore: Option<SubtaskState> = if d.restore_json.is_empty() {
        None
    } else {
        Some(
            serde_json::from_str(&d.restore_json)
                .map_err(|e| fail(format!("bad restore state: {e}")))?,
        )
    };
    let sink_dir = crate::storage::open(&d.sink_uri)
        .await
        .map_err(|e| fail(e.to_string()))?;
    let config = TaskConfig {
        job_id: d.job_id.clone(),
        subtask: d.subtask,
        parallelism: d.parallelism,
        pipeline,
        sink_dir,
        batch: 10_000,
    };
    let (cmd_tx, cmd_rx) = mpsc::channel(64);
    let (ev_tx, mut ev_rx) = mpsc::channel::<TaskEvent>(64);
    tokio::spawn(task::run_task(config, restore, cmd_rx, ev_tx));
    let job_id = d.job_id.clone();
    tokio::spawn(async move {
        while let Some(ev) = ev_rx.recv().await {
            let kind = match ev {
                TaskEvent::Ack {
                    subtask,
                    checkpoint_id,
                    state,
                } => task_manager_message::Kind::Ack(control::Ack {
                    job_id: job_id.clone(),
                    subtask,
                    checkpoint_id,
                    state_json: state.to_string(),
                }),
                TaskEvent::Finished { subtask } => {
                    task_manager_message::Kind::Finished(control::SubtaskFinished {
                        job_id: job_id.clone(),
                        subtask,
                    })
                }
                TaskEvent::Failed { subtask, error } => {
                    task_manager_message::Kind::Failed(control::SubtaskFailed {
                        job_id: job_id.clone(),
                        subtask,
                        error,
                    })
                }
                TaskEvent::Committed {
                    subtask,
                    checkpoint_id,
                } => task_manager_message::Kind::Committed(control::SubtaskCommitted {
                    job_id: job_id.clone(),
                    subtask,
                    checkpoint_id,
                }),
                TaskEvent::Progress { .. } => continue,
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
