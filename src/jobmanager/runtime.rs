//! Where a job master's subtasks run (Flink's slot pool + deployment, behind one seam):
//! [`InProcess`] runs them as tasks of this process (local mode, tests, benchmarks); the
//! [`TaskManagerPool`](super::taskmanagers::TaskManagerPool) deploys them to TaskManagers.
//!
//! A new leader's runtime may also hold subtasks that an earlier leader deployed and that still
//! run ([`TaskRuntime::previous_deployment`]): a recovering job master adopts them
//! ([`TaskRuntime::adopt`]) instead of redeploying, or stops them ([`TaskRuntime::discard`]).

use tokio::sync::mpsc;
use tokio::task::JoinHandle;

use super::error::RuntimeError;
use crate::network::{NetworkConfig, NetworkEnvironment};
use crate::taskmanager::exchange::{Exchange, TaskNetwork};
use crate::taskmanager::task::{self, SubtaskState, TaskCommand, TaskConfig, TaskEvent};

/// A deployed subtask as the job master sees it.
pub struct Deployed {
    pub commands: mpsc::Sender<TaskCommand>,
    /// Ends when the subtask (or, remotely, its forwarder) ends; aborting it kills the subtask.
    /// The job master owns it and awaits it before it ends.
    pub handle: JoinHandle<()>,
    /// The data address of the TaskManager it runs in (what its consumers connect to).
    pub data_address: Option<String>,
}

/// A subtask that an earlier leader deployed and that still runs, as its TaskManager reported
/// it when it registered with this leader.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReportedSubtask {
    /// The TaskManager session it runs in (what [`TaskRuntime::adopt`] takes it over by).
    pub session: u64,
    pub taskmanager: String,
    pub subtask: u32,
    pub run_id: String,
    pub attempt: u32,
    /// Its deployment round (the partitions it produces are named by it), stage and index.
    pub round: u32,
    pub stage: u32,
    pub index: u32,
    /// The newest checkpoint it acknowledged and the newest it committed.
    pub last_acknowledged: Option<u64>,
    pub last_committed: Option<u64>,
    pub finished: bool,
}

/// A subtask taken over from an earlier leader.
pub struct Adopted {
    pub deployed: Deployed,
    /// It finished after its report was read (its `Finished` event went into the report).
    pub finished: bool,
}

/// What the TaskManagers of earlier leaders report for one job, as it grows.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Reports {
    pub subtasks: Vec<ReportedSubtask>,
    /// Every TaskManager known to have run under the earlier leader (the containers the AM
    /// adopted) has registered: nothing more will be reported.
    pub complete: bool,
}

/// An earlier leader's deployment of one job, as far as it is reported.
pub struct PreviousDeployment {
    pub reports: tokio::sync::watch::Receiver<Reports>,
    /// How long to wait for the reports (`jobmanager.reconcile.timeout`).
    pub timeout: std::time::Duration,
}

/// Where subtasks run: in this process, or on TaskManagers.
#[async_trait::async_trait]
pub trait TaskRuntime: Send + Sync {
    /// The subtasks of `job` that earlier leaders deployed and that still run (`None`: this
    /// runtime has none: it started with this leader).
    fn previous_deployment(&self, _job: &str) -> Option<PreviousDeployment> {
        None
    }

    /// Takes over a reported subtask: its events go to `events` from now on.
    ///
    /// # Errors
    /// [`RuntimeError::DeploymentInterrupted`] when its TaskManager left, or the report is
    /// not (any more) there to adopt.
    async fn adopt(
        &self,
        _job: &str,
        _report: &ReportedSubtask,
        _events: mpsc::Sender<TaskEvent>,
    ) -> Result<Adopted, RuntimeError> {
        Err(RuntimeError::DeploymentInterrupted)
    }

    /// Stops a reported subtask that is not adopted (it restarts from a checkpoint instead).
    async fn discard(&self, _job: &str, _report: &ReportedSubtask) {}

    /// `job`'s reconciliation is over: whatever is reported of it from now on is stopped.
    fn settle(&self, _job: &str) {}

    /// Deploys one subtask, restored from `restore` if given; its events go to `events`.
    ///
    /// # Errors
    /// [`RuntimeError::SlotRequestTimeout`] when no slot frees up in time,
    /// [`RuntimeError::DeploymentInterrupted`] when the TaskManager left meanwhile, or the
    /// cause why the deployment cannot be described.
    async fn deploy(
        &self,
        config: TaskConfig,
        restore: Option<SubtaskState>,
        events: mpsc::Sender<TaskEvent>,
    ) -> Result<Deployed, RuntimeError>;
}

/// Subtasks as tasks of this process, with one network environment (started by the first
/// deployment, in its runtime) whose channels are all local.
#[derive(Default)]
pub struct InProcess {
    network: tokio::sync::OnceCell<TaskNetwork>,
}

impl InProcess {
    async fn network(&self) -> Result<TaskNetwork, RuntimeError> {
        self.network
            .get_or_try_init(|| async {
                let env = NetworkEnvironment::start(
                    NetworkConfig::default(),
                    ([127, 0, 0, 1], 0).into(),
                    &tokio_util::sync::CancellationToken::new(),
                )
                .await?;
                let address = env.data_address().to_string();
                Ok::<_, RuntimeError>(TaskNetwork {
                    env: std::sync::Arc::new(env),
                    address,
                })
            })
            .await
            .cloned()
    }
}

#[async_trait::async_trait]
impl TaskRuntime for InProcess {
    async fn deploy(
        &self,
        config: TaskConfig,
        restore: Option<SubtaskState>,
        events: mpsc::Sender<TaskEvent>,
    ) -> Result<Deployed, RuntimeError> {
        let single = config.exchange == Exchange::single(config.subtask);
        let network = if single {
            None
        } else {
            Some(self.network().await?)
        };
        let data_address = network.as_ref().map(|n| n.address.clone());
        let (tx, rx) = mpsc::channel(64);
        // The handle goes to the job master, which awaits (or aborts) it.
        let handle = tokio::spawn(task::run_task(config, restore, rx, events, network));
        Ok(Deployed {
            commands: tx,
            handle,
            data_address,
        })
    }
}
