//! Where a job master's subtasks run (Flink's slot pool + deployment, behind one seam):
//! [`InProcess`] runs them as tasks of this process (local mode, tests, benchmarks); the
//! [`TaskManagerPool`](super::taskmanagers::TaskManagerPool) deploys them to TaskManagers.

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

/// Where subtasks run: in this process, or on TaskManagers.
#[async_trait::async_trait]
pub trait TaskRuntime: Send + Sync {
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
