//! Local mode (`yarnflow local`): a JobManager [`LeaderSession`] in this process on embedded HA
//! and local storage under a work directory, and TaskManager child processes that are replaced
//! when they exit (the local stand-in for YARN's container replacement). No Hadoop, no JVM.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use tokio::sync::{broadcast, mpsc};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::config::Config;
use crate::ha::HaServices;
use crate::job::spec::{JobSpec, SinkSpec, Step};
use crate::jobmanager::dispatcher::DispatchError;
use crate::jobmanager::error::LossCause;
use crate::jobmanager::job_master::JobOutcome;
use crate::jobmanager::leader::{LeaderError, LeaderOptions, LeaderSession};
use crate::jobmanager::taskmanagers::TaskManagerLoss;
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
    /// The JobManager lost it (heartbeat timeout: frozen or stuck); killed and replaced.
    TaskManagerLost {
        index: u32,
        pid: u32,
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
    /// Leads on embedded HA under `workdir/ha`, with checkpoint files under
    /// `workdir/checkpoints` (unless `execution.checkpointing.dir` says otherwise), and serves
    /// on 127.0.0.1 (`rest.port`);
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
        // Keyed state snapshots go to the work directory too, unless configured elsewhere.
        let mut config = config.clone();
        if config.get(CHECKPOINT_DIR_KEY).is_none() {
            let dir = workdir.join("checkpoints");
            config.set(CHECKPOINT_DIR_KEY, format!("file://{}", dir.display()));
        }
        let session = LeaderSession::start(
            &ha,
            &config,
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
        self.start_taskmanagers_of(&exe, n, slots);
        Ok(())
    }

    /// [`LocalCluster::start_taskmanagers`] from the yarnflow executable `exe` (a benchmark or
    /// test is not one itself).
    pub fn start_taskmanagers_of(&self, exe: &Path, n: u32, slots: u32) {
        for index in 0..n {
            self.tasks.spawn(supervise(
                index,
                exe.to_path_buf(),
                self.session.address.clone(),
                slots,
                Supervision {
                    losses: self.session.pool.losses(),
                    shutdown: self.shutdown.clone(),
                    events: self.events.clone(),
                },
            ));
        }
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

/// Where keyed subtasks write their snapshot files.
const CHECKPOINT_DIR_KEY: &str = "execution.checkpointing.dir";

/// What a TaskManager's supervisor listens to and reports on.
struct Supervision {
    /// Resource ids of TaskManagers the JobManager declared lost.
    losses: broadcast::Receiver<TaskManagerLoss>,
    shutdown: CancellationToken,
    events: mpsc::UnboundedSender<LocalEvent>,
}

/// How one TaskManager child ended.
enum ChildEnd {
    Shutdown,
    Exited(String),
    Lost,
}

/// Keeps TaskManager `index` running until shutdown; kills one the JobManager lost (the local
/// stand-in for the ApplicationMaster's `stopContainers`) so that a replacement starts.
async fn supervise(index: u32, exe: PathBuf, address: String, slots: u32, mut s: Supervision) {
    let mut generation = 0;
    while !s.shutdown.is_cancelled() {
        generation += 1;
        // Its resource id too: what the JobManager names when it loses it.
        let id = format!("taskmanager-{index}-{generation}");
        let mut command = tokio::process::Command::new(&exe);
        command
            .args(["taskmanager", "--jobmanager", &address, "--slots"])
            .arg(slots.to_string())
            .args(["--id", &id, "--resource-id", &id])
            .kill_on_drop(true)
            .stdin(std::process::Stdio::null());
        // As quiet on the shared terminal as this process.
        if let Some(directive) = crate::logging::stderr_directive() {
            command.env(crate::logging::STDERR_FILTER_ENV, directive);
        }
        let child = command.spawn();
        let mut child = match child {
            Ok(c) => c,
            Err(e) => {
                let _ = s.events.send(LocalEvent::TaskManagerFailed {
                    index,
                    error: e.to_string(),
                });
                return;
            }
        };
        let pid = child.id().unwrap_or_default();
        let _ = s.events.send(LocalEvent::TaskManagerStarted { index, pid });
        let end = watch_child(&mut child, &id, &mut s).await;
        // SIGKILL ends a stopped (frozen) process too.
        let _ = child.kill().await;
        let event = match end {
            ChildEnd::Shutdown => return,
            ChildEnd::Exited(status) => LocalEvent::TaskManagerExited { index, status },
            ChildEnd::Lost => LocalEvent::TaskManagerLost { index, pid },
        };
        if !s.shutdown.is_cancelled() {
            let _ = s.events.send(event);
        }
    }
}

async fn watch_child(child: &mut tokio::process::Child, id: &str, s: &mut Supervision) -> ChildEnd {
    loop {
        tokio::select! {
            _ = s.shutdown.cancelled() => return ChildEnd::Shutdown,
            status = child.wait() => {
                return ChildEnd::Exited(status.map(|s| s.to_string()).unwrap_or_default());
            }
            lost = s.losses.recv() => match lost {
                // A child that hung up is seen exiting; only a silent one must be killed.
                Ok(lost) if lost.resource_id == id
                    && matches!(lost.cause, LossCause::HeartbeatTimeout(_)) => return ChildEnd::Lost,
                // The pool outlives its supervisors; nothing more will come.
                Err(broadcast::error::RecvError::Closed) => {
                    return ChildEnd::Exited(child.wait().await.map(|s| s.to_string()).unwrap_or_default());
                }
                _ => {}
            },
        }
    }
}
