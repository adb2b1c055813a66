//! The TaskManagers registered with this JobManager (Flink's slot pool) and the gRPC endpoint
//! they connect to. Each TaskManager holds one bidirectional session: deployments, barriers and
//! completion notices go down, acknowledgements and failures come up, and the session's end
//! fails every subtask deployed on it.

use std::collections::HashMap;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures::Stream;
use tokio::sync::{Notify, mpsc};
use tokio_stream::wrappers::ReceiverStream;
use tonic::{Request, Response, Status, Streaming};

use super::job_master::{Deployed, TaskRuntime};
use crate::control::job_manager_gateway_server::{JobManagerGateway, JobManagerGatewayServer};
use crate::control::{
    self, JobManagerMessage, TaskManagerMessage, job_manager_message, task_manager_message,
};
use crate::taskmanager::task::{SubtaskState, TaskCommand, TaskConfig, TaskEvent};

type Outbox = mpsc::Sender<Result<JobManagerMessage, Status>>;

struct TaskManager {
    id: String,
    /// The YARN container it runs in (empty outside YARN).
    resource_id: String,
    slots: u32,
    used: u32,
    outbox: Outbox,
    /// (job, subtask) deployed here.
    deployed: Vec<(String, u32)>,
}

#[derive(Default)]
struct PoolState {
    tms: HashMap<u64, TaskManager>,
    /// Where each job's task events go.
    jobs: HashMap<String, mpsc::Sender<TaskEvent>>,
    next_session: u64,
}

/// Registered TaskManagers, shared by the gRPC service and the job masters.
#[derive(Clone)]
pub struct TaskManagerPool {
    state: Arc<Mutex<PoolState>>,
    slots_changed: Arc<Notify>,
    /// The resource id (container) of every TaskManager that registers.
    registrations: tokio::sync::broadcast::Sender<String>,
    epoch: u64,
    session_id: String,
    slot_timeout: Duration,
}

impl TaskManagerPool {
    /// `epoch` and `session_id`: this leader's fencing identity.
    pub fn new(epoch: u64, session_id: &str, slot_timeout: Duration) -> TaskManagerPool {
        TaskManagerPool {
            state: Arc::new(Mutex::new(PoolState::default())),
            slots_changed: Arc::new(Notify::new()),
            registrations: tokio::sync::broadcast::channel(1024).0,
            epoch,
            session_id: session_id.to_string(),
            slot_timeout,
        }
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

    /// The resource id of every TaskManager that registers from now on, once it is in the pool:
    /// how the ApplicationMaster learns that a container it launched or adopted is serving.
    pub fn registrations(&self) -> tokio::sync::broadcast::Receiver<String> {
        self.registrations.subscribe()
    }

    fn message(&self, kind: job_manager_message::Kind) -> JobManagerMessage {
        JobManagerMessage {
            leader_epoch: self.epoch,
            kind: Some(kind),
        }
    }

    /// Takes a free slot, waiting for one up to the slot timeout.
    async fn take_slot(&self, job: &str, subtask: u32) -> Result<(u64, Outbox), String> {
        let deadline = tokio::time::Instant::now() + self.slot_timeout;
        loop {
            let notified = self.slots_changed.notified();
            {
                let mut s = self.state.lock().expect("pool lock");
                if let Some((sid, tm)) = s.tms.iter_mut().find(|(_, t)| t.used < t.slots) {
                    tm.used += 1;
                    tm.deployed.push((job.to_string(), subtask));
                    return Ok((*sid, tm.outbox.clone()));
                }
            }
            if tokio::time::timeout_at(deadline, notified).await.is_err() {
                return Err(format!(
                    "no free TaskManager slot within {:?} (slot request timeout)",
                    self.slot_timeout
                ));
            }
        }
    }

    fn release_slot(&self, session: u64, job: &str, subtask: u32) {
        let mut s = self.state.lock().expect("pool lock");
        if let Some(tm) = s.tms.get_mut(&session)
            && let Some(i) = tm
                .deployed
                .iter()
                .position(|(j, st)| j == job && *st == subtask)
        {
            tm.deployed.remove(i);
            tm.used = tm.used.saturating_sub(1);
        }
        drop(s);
        self.slots_changed.notify_waiters();
    }

    fn route(&self, job: &str, event: TaskEvent) {
        let tx = self.state.lock().expect("pool lock").jobs.get(job).cloned();
        if let Some(tx) = tx {
            let _ = tx.try_send(event);
        }
    }
}

#[async_trait::async_trait]
impl TaskRuntime for TaskManagerPool {
    async fn deploy(
        &self,
        config: TaskConfig,
        restore: Option<SubtaskState>,
        events: mpsc::Sender<TaskEvent>,
    ) -> Result<Deployed, String> {
        let job = config.job_id.clone();
        let subtask = config.subtask;
        self.state
            .lock()
            .expect("pool lock")
            .jobs
            .insert(job.clone(), events);
        let (session, outbox) = self.take_slot(&job, subtask).await?;
        let spec_json = serde_json::to_string(&config.pipeline).map_err(|e| e.to_string())?;
        let restore_json = match &restore {
            Some(r) => serde_json::to_string(r).map_err(|e| e.to_string())?,
            None => String::new(),
        };
        let deploy = self.message(job_manager_message::Kind::Deploy(control::Deploy {
            job_id: job.clone(),
            subtask,
            parallelism: config.parallelism,
            spec_json,
            sink_uri: config.sink_dir.uri(),
            restore_json,
        }));
        if outbox.send(Ok(deploy)).await.is_err() {
            self.release_slot(session, &job, subtask);
            return Err("the TaskManager went away during deployment".into());
        }
        // Forward the job master's commands to the TaskManager's session.
        let (tx, mut rx) = mpsc::channel::<TaskCommand>(64);
        let pool = self.clone();
        let guard = SlotGuard {
            pool: self.clone(),
            session,
            job: job.clone(),
            subtask,
        };
        let handle = tokio::spawn(async move {
            // Freed however the forwarder ends, aborts included.
            let _guard = guard;
            while let Some(cmd) = rx.recv().await {
                let (kind, stop) = match cmd {
                    TaskCommand::Barrier(id) => (
                        job_manager_message::Kind::Barrier(control::Barrier {
                            job_id: job.clone(),
                            subtask,
                            checkpoint_id: id,
                        }),
                        false,
                    ),
                    TaskCommand::Complete(id) => (
                        job_manager_message::Kind::Complete(control::Complete {
                            job_id: job.clone(),
                            subtask,
                            checkpoint_id: id,
                        }),
                        false,
                    ),
                    TaskCommand::Stop => (
                        job_manager_message::Kind::Stop(control::Stop {
                            job_id: job.clone(),
                            subtask,
                        }),
                        true,
                    ),
                };
                if outbox.send(Ok(pool.message(kind))).await.is_err() || stop {
                    break;
                }
            }
        });
        Ok(Deployed {
            commands: tx,
            handle,
        })
    }
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
        let session = {
            let mut s = self.state.lock().expect("pool lock");
            s.next_session += 1;
            let id = s.next_session;
            s.tms.insert(
                id,
                TaskManager {
                    id: reg.taskmanager_id.clone(),
                    resource_id: reg.resource_id.clone(),
                    slots: reg.slots.max(1),
                    used: 0,
                    outbox: tx.clone(),
                    deployed: Vec::new(),
                },
            );
            id
        };
        tracing::info!(taskmanager = %reg.taskmanager_id, resource_id = %reg.resource_id, slots = reg.slots, "TaskManager registered");
        let _ = tx
            .send(Ok(self.message(job_manager_message::Kind::Registered(
                control::Registered {
                    leader_session_id: self.session_id.clone(),
                },
            ))))
            .await;
        self.slots_changed.notify_waiters();
        if !reg.resource_id.is_empty() {
            // No receiver (outside YARN) is fine.
            let _ = self.registrations.send(reg.resource_id.clone());
        }
        let pool = self.clone();
        let tm_id = reg.taskmanager_id.clone();
        tokio::spawn(async move {
            while let Ok(Some(m)) = inbound.message().await {
                match m.kind {
                    Some(task_manager_message::Kind::Ack(a)) => {
                        let state = serde_json::from_str(&a.state_json).unwrap_or_default();
                        pool.route(
                            &a.job_id,
                            TaskEvent::Ack {
                                subtask: a.subtask,
                                checkpoint_id: a.checkpoint_id,
                                state,
                            },
                        );
                    }
                    Some(task_manager_message::Kind::Committed(c)) => pool.route(
                        &c.job_id,
                        TaskEvent::Committed {
                            subtask: c.subtask,
                            checkpoint_id: c.checkpoint_id,
                        },
                    ),
                    Some(task_manager_message::Kind::Finished(f)) => {
                        pool.route(&f.job_id, TaskEvent::Finished { subtask: f.subtask })
                    }
                    Some(task_manager_message::Kind::Failed(f)) => pool.route(
                        &f.job_id,
                        TaskEvent::Failed {
                            subtask: f.subtask,
                            error: f.error,
                        },
                    ),
                    _ => {}
                }
            }
            // The TaskManager is gone: every subtask it ran fails.
            let lost = pool.state.lock().expect("pool lock").tms.remove(&session);
            tracing::warn!(taskmanager = %tm_id, "TaskManager lost");
            if let Some(tm) = lost {
                for (job, subtask) in tm.deployed {
                    pool.route(
                        &job,
                        TaskEvent::Failed {
                            subtask,
                            error: format!("TaskManager {tm_id} was lost"),
                        },
                    );
                }
            }
            pool.slots_changed.notify_waiters();
        });
        Ok(Response::new(Box::pin(ReceiverStream::new(rx))))
    }
}
