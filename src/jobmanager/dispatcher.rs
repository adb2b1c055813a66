//! The dispatcher (Flink's `Dispatcher`): the leader's front desk for jobs. It recovers the job
//! graphs the previous leader left in the HA services, accepts new submissions, starts one job
//! master per job under the leadership token, and reports each job's end.
//!
//! Recovery follows Flink's rules: a job with a job-result-store entry is never run again; a
//! *dirty* entry (the previous leader died during cleanup) has its cleanup finished here, in the
//! safe order, then is marked clean.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};

use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use super::job_master::{
    self, JobMasterConfig, JobMasterHandle, JobOutcome, JobSnapshot, TaskRuntime,
};
use crate::config::{Config, ConfigError};
use crate::ha::{HaError, HaServices};
use crate::job::spec::{JobSpec, SinkSpec, Step};
use crate::storage::Location;

/// Why a job was not started.
#[derive(Debug, thiserror::Error)]
pub enum DispatchError {
    #[error("job {0} already has a result (it ran to a globally terminal state); not run again")]
    DuplicateJob(String),
    #[error("job {0} is already running")]
    AlreadyRunning(String),
    #[error("job {job}: {message}")]
    BadJob { job: String, message: String },
    #[error(transparent)]
    Ha(#[from] HaError),
    #[error(transparent)]
    Config(#[from] ConfigError),
}

impl DispatchError {
    /// Whether the submitter's input is at fault (as opposed to the cluster).
    pub fn is_user_error(&self) -> bool {
        matches!(
            self,
            DispatchError::DuplicateJob(_)
                | DispatchError::AlreadyRunning(_)
                | DispatchError::BadJob { .. }
        )
    }
}

/// One leader's dispatcher. Cheap to clone; clones share the jobs.
#[derive(Clone)]
pub struct Dispatcher {
    ha: HaServices,
    config: Arc<Config>,
    runtime: Arc<dyn TaskRuntime>,
    /// The registry of this leader's job masters, running or ended (the REST API reads it).
    jobs: Arc<Mutex<BTreeMap<String, JobMasterHandle>>>,
    /// Where a `files` sink without a path writes: `<default_output>/<job id>` (a storage URI,
    /// opened when a job starts).
    default_output: Option<String>,
    leadership: CancellationToken,
    outcomes: mpsc::UnboundedSender<JobOutcome>,
    /// The job masters and the tasks that wait for their ends.
    tasks: TaskTracker,
}

impl Dispatcher {
    /// A dispatcher whose job masters end (SUSPENDED) when `leadership` is cancelled; every
    /// job's outcome is sent to the returned receiver.
    pub fn new(
        ha: HaServices,
        config: Arc<Config>,
        runtime: Arc<dyn TaskRuntime>,
        default_output: Option<String>,
        leadership: CancellationToken,
    ) -> (Dispatcher, mpsc::UnboundedReceiver<JobOutcome>) {
        let (tx, rx) = mpsc::unbounded_channel();
        (
            Dispatcher {
                ha,
                config,
                runtime,
                jobs: Arc::default(),
                default_output,
                leadership,
                outcomes: tx,
                tasks: TaskTracker::new(),
            },
            rx,
        )
    }

    /// The job master of `job_id`, running or ended under this leader.
    pub fn job(&self, job_id: &str) -> Option<JobMasterHandle> {
        self.jobs.lock().expect("jobs lock").get(job_id).cloned()
    }

    /// Every job of this leader as the REST API shows it, by job id.
    pub fn snapshots(&self) -> Vec<JobSnapshot> {
        self.jobs
            .lock()
            .expect("jobs lock")
            .values()
            .map(|h| h.snapshot.borrow().clone())
            .collect()
    }

    /// Waits until every job master's end was reported (they end with the leadership token).
    pub async fn closed(&self) {
        self.tasks.close();
        self.tasks.wait().await;
    }

    /// Finishes the cleanup of dirty job results, then starts every job graph found in the HA
    /// services that has no result. Returns the recovered job ids.
    pub async fn recover(&self) -> Result<Vec<String>, DispatchError> {
        for dirty in self.ha.job_results.dirty_results().await? {
            tracing::info!(job_id = %dirty.job_id, status = %dirty.status, "finishing the cleanup of a terminated job");
            self.ha.remove_job_data(&dirty.job_id).await?;
            self.ha.job_results.mark_clean(&dirty.job_id).await?;
        }
        let mut recovered = Vec::new();
        for job_id in self.ha.job_graphs.job_ids().await? {
            if self.ha.job_results.has_result(&job_id).await? {
                tracing::info!(job_id = %job_id, "job graph of a terminated job left behind; removing it");
                self.ha.remove_job_data(&job_id).await?;
                continue;
            }
            let Some(graph) = self.ha.job_graphs.get(&job_id).await? else {
                continue;
            };
            let spec: JobSpec = serde_json::from_slice(&graph).map_err(|e| {
                DispatchError::Ha(HaError::Corrupt {
                    path: format!("job graph {job_id}"),
                    message: e.to_string(),
                })
            })?;
            tracing::info!(job_id = %job_id, "job graph recovered");
            self.start(spec, true).await?;
            recovered.push(job_id);
        }
        Ok(recovered)
    }

    /// Submits a job: refused if it already has a result or is running.
    pub async fn submit(&self, spec: JobSpec) -> Result<String, DispatchError> {
        let job_id = spec.job_id();
        if self.is_running(&job_id) {
            return Err(DispatchError::AlreadyRunning(job_id));
        }
        if self.ha.job_results.has_result(&job_id).await? {
            return Err(DispatchError::DuplicateJob(job_id));
        }
        self.start(spec, false).await?;
        Ok(job_id)
    }

    pub fn is_running(&self, job_id: &str) -> bool {
        self.jobs
            .lock()
            .expect("jobs lock")
            .get(job_id)
            .is_some_and(|h| !h.snapshot.borrow().status_is_terminal())
    }

    /// The TaskManager slots the running jobs need.
    pub fn slots_needed(&self) -> u32 {
        self.jobs
            .lock()
            .expect("jobs lock")
            .values()
            .filter(|h| !h.snapshot.borrow().status_is_terminal())
            .map(|h| h.snapshot.borrow().parallelism)
            .sum()
    }

    async fn sink_dir(&self, spec: &JobSpec) -> Result<Location, DispatchError> {
        match spec.pipeline.last() {
            Some(Step::Sink(SinkSpec::Files { path: Some(p) })) => crate::storage::open(p)
                .await
                .map_err(|e| DispatchError::BadJob {
                    job: spec.job_id(),
                    message: format!("sink path: {e}"),
                }),
            _ => match &self.default_output {
                Some(d) => {
                    crate::storage::open(&format!("{}/{}", d.trim_end_matches('/'), spec.job_id()))
                        .await
                        .map_err(|e| DispatchError::BadJob {
                            job: spec.job_id(),
                            message: format!("default output: {e}"),
                        })
                }
                None => Err(DispatchError::BadJob {
                    job: spec.job_id(),
                    message:
                        "the files sink needs a path (sink: { kind: files, path: hdfs://... })"
                            .into(),
                }),
            },
        }
    }

    /// Starts a job master; `recovered`: its graph came from the job graph store.
    async fn start(&self, spec: JobSpec, recovered: bool) -> Result<(), DispatchError> {
        let cfg = JobMasterConfig {
            graph_persisted: recovered,
            ..JobMasterConfig::from_config(
                &self.config,
                spec.clone(),
                self.sink_dir(&spec).await?,
                self.runtime.clone(),
                self.leadership.clone(),
            )?
        };
        let job_id = spec.job_id();
        let (handle, done) = job_master::start_on(&self.tasks, cfg, self.ha.clone());
        self.jobs
            .lock()
            .expect("jobs lock")
            .insert(job_id.clone(), handle);
        let outcomes = self.outcomes.clone();
        self.tasks.spawn(async move {
            match done.await {
                Ok(outcome) => {
                    tracing::info!(job_id = %outcome.job_id, status = %outcome.status, restarts = outcome.restarts, "job reached a final state for this leader");
                    let _ = outcomes.send(outcome);
                }
                Err(e) => tracing::error!(job_id = %job_id, error = %e, "the job master panicked"),
            }
        });
        Ok(())
    }
}
