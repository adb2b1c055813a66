//! Local mode (`yarnflow local`): a JobManager [`LeaderSession`] in this process on embedded HA
//! and local storage under a work directory, and TaskManager child processes that are replaced
//! when they exit (the local stand-in for YARN's container replacement). No Hadoop, no JVM.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::config::Config;
use crate::ha::HaServices;
use crate::job::spec::{JobSpec, SinkSpec, Step};
use crate::jobmanager::dispatcher::DispatchError;
use crate::jobmanager::job_master::JobOutcome;
use crate::jobmanager::leader::{LeaderError, LeaderOptions, LeaderSession};
use crate::storage::local::LocalStore;

/// Why local mode stopped.
#[derive(Debug, thiserror::Error)]
pub enum LocalError {
    #[error(transparent)]
    Leader(#[from] LeaderError),
    #[error(transparent)]
    Dispatch(#[from] DispatchError),
    #[error(transparent)]
    Config(#[from] crate::config::ConfigError),
    #[error("cannot find this executable to start TaskManagers: {0}")]
    Executable(#[source] std::io::Error),
    #[error("the job master of job {0} stopped without reporting an outcome")]
    NoOutcome(String),
}

/// What the TaskManager child processes do, for the command line to print.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LocalEvent {
    TaskManagerStarted {
        index: u32,
        pid: u32,
    },
    /// It exited while the cluster ran; a replacement starts.
    TaskManagerExited {
        index: u32,
        status: String,
    },
    /// It could not be started; no replacement is tried.
    TaskManagerFailed {
        index: u32,
        error: String,
    },
}

/// A JobManager and its TaskManager processes on this machine.
pub struct LocalCluster {
    pub session: LeaderSession,
    /// Kills the TaskManager children (they also die with this process).
    shutdown: CancellationToken,
    /// One supervisor per TaskManager child.
    tasks: TaskTracker,
    events: mpsc::UnboundedSender<LocalEvent>,
}

impl LocalCluster {
    /// Leads on embedded HA under `workdir/ha` and serves on 127.0.0.1 (`rest.port`);
    /// `in_process`: subtasks run in this process instead of on TaskManagers.
    pub async fn start(
        config: &Config,
        workdir: &Path,
        in_process: bool,
    ) -> Result<(LocalCluster, mpsc::UnboundedReceiver<LocalEvent>), LocalError> {
        let num_retained = config
            .value(Config::u64, "execution.checkpointing.num-retained")?
            .max(1) as usize;
        let ha = HaServices::embedded(
            Arc::new(LocalStore),
            &workdir.join("ha").display().to_string(),
            num_retained,
        );
        let session = LeaderSession::start(
            &ha,
            config,
            LeaderOptions {
                in_process,
                ..LeaderOptions::new("127.0.0.1", "127.0.0.1")
            },
        )
        .await?;
        session.recover().await?;
        let (tx, rx) = mpsc::unbounded_channel();
        Ok((
            LocalCluster {
                session,
                shutdown: CancellationToken::new(),
                tasks: TaskTracker::new(),
                events: tx,
            },
            rx,
        ))
    }

    /// `spec` with its `files` sink writing to `workdir/output` unless it names a path.
    pub fn with_default_output(mut spec: JobSpec, workdir: &Path) -> JobSpec {
        if let Some(Step::Sink(SinkSpec::Files { path: path @ None })) = spec.pipeline.last_mut() {
            *path = Some(format!("file://{}", workdir.join("output").display()));
        }
        spec
    }

    /// Starts `n` TaskManager processes of `slots` slots each, each replaced when it exits.
    pub fn start_taskmanagers(&self, n: u32, slots: u32) -> Result<(), LocalError> {
        let exe = std::env::current_exe().map_err(LocalError::Executable)?;
        for index in 0..n {
            self.tasks.spawn(supervise(
                index,
                exe.clone(),
                self.session.address.clone(),
                slots,
                self.shutdown.clone(),
                self.events.clone(),
            ));
        }
        Ok(())
    }

    /// Runs `spec` (or waits for it, if it was recovered from the work directory) to its end.
    pub async fn run_job(&mut self, spec: JobSpec) -> Result<JobOutcome, LocalError> {
        let job_id = spec.job_id();
        if !self.session.dispatcher.is_running(&job_id) {
            self.session.dispatcher.submit(spec).await?;
        }
        while let Some(outcome) = self.session.outcomes.recv().await {
            if outcome.job_id == job_id {
                return Ok(outcome);
            }
        }
        Err(LocalError::NoOutcome(job_id))
    }

    /// Stops the TaskManagers and the JobManager.
    pub async fn close(self) {
        self.shutdown.cancel();
        self.tasks.close();
        self.tasks.wait().await;
        self.session.close().await;
    }
}

/// Keeps TaskManager `index` running until `shutdown`.
async fn supervise(
    index: u32,
    exe: PathBuf,
    address: String,
    slots: u32,
    shutdown: CancellationToken,
    events: mpsc::UnboundedSender<LocalEvent>,
) {
    let mut generation = 0;
    while !shutdown.is_cancelled() {
        generation += 1;
        let child = tokio::process::Command::new(&exe)
            .args(["taskmanager", "--jobmanager", &address, "--slots"])
            .arg(slots.to_string())
            .arg("--id")
            .arg(format!("taskmanager-{index}-{generation}"))
            .kill_on_drop(true)
            .stdin(std::process::Stdio::null())
            .spawn();
        let mut child = match child {
            Ok(c) => c,
            Err(e) => {
                let _ = events.send(LocalEvent::TaskManagerFailed {
                    index,
                    error: e.to_string(),
                });
                return;
            }
        };
        let _ = events.send(LocalEvent::TaskManagerStarted {
            index,
            pid: child.id().unwrap_or_default(),
        });
        tokio::select! {
            _ = shutdown.cancelled() => {
                let _ = child.kill().await;
                return;
            }
            status = child.wait() => {
                if !shutdown.is_cancelled() {
                    let status = status.map(|s| s.to_string()).unwrap_or_default();
                    let _ = events.send(LocalEvent::TaskManagerExited { index, status });
                }
            }
        }
    }
}
