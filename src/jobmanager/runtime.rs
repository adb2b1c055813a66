//! Where a job master's subtasks run (Flink's slot pool + deployment, behind one seam):
//! [`InProcess`] runs them as tasks of this process (local mode, tests, benchmarks); the
//! [`TaskManagerPool`](super::taskmanagers::TaskManagerPool) deploys them to TaskManagers.

use tokio::sync::mpsc;
use tokio::task::JoinHandle;

use super::error::RuntimeError;
use crate::taskmanager::task::{self, SubtaskState, TaskCommand, TaskConfig, TaskEvent};

/// A deployed subtask as the job master sees it.
pub struct Deployed {
    pub commands: mpsc::Sender<TaskCommand>,
    /// Ends when the subtask (or, remotely, its forwarder) ends; aborting it kills the subtask.
    /// The job master owns it and awaits it before it ends.
    pub handle: JoinHandle<()>,
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

/// Subtasks as tasks of this process.
pub struct InProcess;

#[async_trait::async_trait]
impl TaskRuntime for InProcess {
    async fn deploy(
        &self,
        config: TaskConfig,
        restore: Option<SubtaskState>,
        events: mpsc::Sender<TaskEvent>,
    ) -> Result<Deployed, RuntimeError> {
        let (tx, rx) = mpsc::channel(64);
        // The handle goes to the job master, which awaits (or aborts) it.
        let handle = tokio::spawn(task::run_task(config, restore, rx, events));
        Ok(Deployed {
            commands: tx,
            handle,
        })
    }
}
