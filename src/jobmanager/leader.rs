//! One JobManager leader session, the same wherever a JobManager runs (YARN ApplicationMaster,
//! standalone HA cluster, `yarnflow local`): Flink's `JobMasterServiceLeadershipRunner` +
//! `DispatcherLeaderProcess` start-up, written once and in one order.
//!
//! ```text
//! acquire leadership ─▶ bind the endpoint ─▶ slot pool + dispatcher + REST state ─▶ serve
//!   ─▶ publish the address ─▶ (caller: e.g. register with the RM) ─▶ recover job graphs
//! ```
//!
//! Everything the session starts hangs off the leadership token: when leadership is revoked
//! the job masters suspend and the endpoint closes, and [`LeaderSession::close`] waits for both.

use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::sync::{mpsc, watch};
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;

use super::dispatcher::{DispatchError, Dispatcher};
use super::job_master::{self, JobOutcome, TaskRuntime};
use super::metrics::ClusterCounters;
use super::rest::RestState;
use super::taskmanagers::TaskManagerPool;
use crate::config::{Config, ConfigError};
use crate::ha::{HaError, HaServices, Leadership};

/// Why a leader session could not start.
#[derive(Debug, thiserror::Error)]
pub enum LeaderError {
    #[error("contend for leadership: {0}")]
    Contend(#[source] HaError),
    #[error("bind the JobManager port {address} (rest.port): {source}")]
    Bind {
        address: String,
        #[source]
        source: std::io::Error,
    },
    #[error("publish the leader address: {0}")]
    Publish(#[source] HaError),
    #[error(transparent)]
    Config(#[from] ConfigError),
}

impl LeaderError {
    /// Whether the session lost (or never had) leadership, as opposed to a local fault.
    pub fn lost_leadership(&self) -> bool {
        match self {
            LeaderError::Contend(e) | LeaderError::Publish(e) => e.lost_leadership(),
            _ => false,
        }
    }
}

/// Where and how a leader session serves.
#[derive(Debug, Clone)]
pub struct LeaderOptions {
    /// The interface the endpoint binds; the port is `rest.port`.
    pub bind_host: String,
    /// The host name published for TaskManagers and clients.
    pub advertised_host: String,
    /// Run subtasks as tasks of this process instead of on registered TaskManagers.
    pub in_process: bool,
    /// Where a `files` sink without a path writes (`<uri>/<job id>`).
    pub default_output: Option<String>,
    /// The ApplicationMaster's container figures for `/metrics` (zeros elsewhere).
    pub cluster: watch::Receiver<ClusterCounters>,
    /// When this process started, for the elapsed time logged with the grant.
    pub started: Instant,
}

impl LeaderOptions {
    /// Serving on `bind_host`, published as `advertised_host`, on registered TaskManagers.
    pub fn new(bind_host: &str, advertised_host: &str) -> LeaderOptions {
        LeaderOptions {
            bind_host: bind_host.to_string(),
            advertised_host: advertised_host.to_string(),
            in_process: false,
            default_output: None,
            cluster: watch::channel(ClusterCounters::default()).1,
            started: Instant::now(),
        }
    }
}

/// A granted leadership with everything a leader runs: endpoint, slot pool, dispatcher.
pub struct LeaderSession {
    pub leadership: Leadership,
    /// The published address of the endpoint (REST and the TaskManagers' gRPC).
    pub address: String,
    /// The endpoint's port.
    pub port: u16,
    /// TaskManagers registered with this leader, fenced with its epoch and session id.
    pub pool: TaskManagerPool,
    pub dispatcher: Dispatcher,
    /// Every job's end under this leader.
    pub outcomes: mpsc::UnboundedReceiver<JobOutcome>,
    /// Stops the endpoint; a child of the leadership token.
    serving: CancellationToken,
    /// The endpoint task.
    endpoint: JoinSet<()>,
}

/// How long closing waits for the endpoint's connections (TaskManager streams stay open until
/// their TaskManager goes) before it drops them.
const CLOSE_GRACE: Duration = Duration::from_secs(2);

impl LeaderSession {
    /// Waits until this contender leads, then serves and publishes its address.
    pub async fn start(
        ha: &HaServices,
        config: &Config,
        options: LeaderOptions,
    ) -> Result<LeaderSession, LeaderError> {
        let leadership = ha.election.acquire().await.map_err(LeaderError::Contend)?;
        tracing::info!(epoch = leadership.epoch, leader_session_id = %leadership.session_id, elapsed_ms = options.started.elapsed().as_millis() as u64, "leadership granted");
        let port = config.value(Config::u64, "rest.port")?;
        let bind = format!("{}:{port}", options.bind_host);
        let listener = tokio::net::TcpListener::bind(&bind)
            .await
            .map_err(|source| LeaderError::Bind {
                address: bind.clone(),
                source,
            })?;
        let port = listener
            .local_addr()
            .map_err(|source| LeaderError::Bind {
                address: bind,
                source,
            })?
            .port();
        let address = format!("http://{}:{port}", options.advertised_host);

        let pool = TaskManagerPool::new(
            leadership.epoch,
            &leadership.session_id.to_string(),
            config.value(Config::duration, "slot.request.timeout")?,
        )
        .with_shutdown(&leadership.revoked)
        .with_heartbeat(
            config.value(Config::duration, "heartbeat.interval")?,
            config.value(Config::duration, "heartbeat.timeout")?,
        )
        .with_reconcile_timeout(config.value(Config::duration, "jobmanager.reconcile.timeout")?);
        let runtime: Arc<dyn TaskRuntime> = if options.in_process {
            Arc::new(job_master::InProcess::default())
        } else {
            Arc::new(pool.clone())
        };
        // The dispatcher and its job masters write fenced by this grant alone: should this
        // process lead again later, a stale job master of this term stays fenced off.
        let (dispatcher, outcomes) = Dispatcher::new(
            ha.for_leader(&leadership),
            Arc::new(config.clone()),
            runtime,
            options.default_output,
            leadership.revoked.child_token(),
        );
        let rest = RestState {
            dispatcher: dispatcher.clone(),
            taskmanagers: pool.clone(),
            config: Arc::new(
                config
                    .iter()
                    .map(|(k, v)| (k.to_string(), v.to_string()))
                    .collect(),
            ),
            leader_epoch: leadership.epoch,
            cluster: options.cluster,
        };
        let serving = leadership.revoked.child_token();
        let mut endpoint = JoinSet::new();
        endpoint.spawn(super::endpoint::serve(
            listener,
            super::endpoint::router(&pool, rest),
            serving.clone(),
        ));
        let session = LeaderSession {
            leadership,
            address,
            port,
            pool,
            dispatcher,
            outcomes,
            serving,
            endpoint,
        };
        if let Err(e) = ha
            .election
            .publish(&session.leadership, &session.address)
            .await
        {
            session.close().await;
            return Err(LeaderError::Publish(e));
        }
        tracing::info!(address = %session.address, "JobManager serving");
        Ok(session)
    }

    /// Finishes the cleanup of terminated jobs and starts every job graph left in the HA
    /// services; returns the recovered job ids.
    pub async fn recover(&self) -> Result<Vec<String>, DispatchError> {
        let started = Instant::now();
        let recovered = self.dispatcher.recover().await?;
        let elapsed_ms = started.elapsed().as_millis() as u64;
        for job_id in &recovered {
            tracing::info!(job_id = %job_id, elapsed_ms, "job recovered");
        }
        // One line for the whole recovery (the failover benchmark's phase boundary).
        tracing::info!(jobs = recovered.len(), elapsed_ms, "job graphs recovered");
        Ok(recovered)
    }

    /// Stops serving and waits for the endpoint and every job master's end (the job masters
    /// end when the leadership token is cancelled, or have ended already).
    pub async fn close(mut self) {
        self.serving.cancel();
        let drained = async { while self.endpoint.join_next().await.is_some() {} };
        if tokio::time::timeout(CLOSE_GRACE, drained).await.is_err() {
            self.endpoint.abort_all();
            while self.endpoint.join_next().await.is_some() {}
        }
        if self.leadership.revoked.is_cancelled() {
            self.dispatcher.closed().await;
            self.pool.close().await;
        }
    }
}
