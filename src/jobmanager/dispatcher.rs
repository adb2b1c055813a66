//! The dispatcher (Flink's `Dispatcher`): the leader's front desk for jobs. It recovers the job
//! graphs the previous leader left in the HA services, accepts new submissions, starts one job
//! master per job under the leadership token, and reports each job's end.
//!
//! Recovery follows Flink's rules: a job with a job-result-store entry is never run again; a
//! *dirty* entry (the previous leader died during cleanup) has its cleanup finished here, in the
//! safe order, then is marked clean.

use std::collections::{BTreeMap, HashSet};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};

use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use super::cleanup::RetryStrategy;
use super::job_master::{
    self, JobMasterConfig, JobMasterHandle, JobOutcome, JobSnapshot, TaskRuntime,
};
use crate::config::{Config, ConfigError};
use crate::ha::{HaError, HaServices};
use crate::job::graph::JobGraph;
use crate::job::spec::{JobSpec, SinkSpec, Step};
use crate::storage::Location;

/// Why a job was not started.
#[derive(Debug, thiserror::Error)]
pub enum DispatchError {
    #[error("job {0} already has a result (it ran to a globally terminal state); not run again")]
    DuplicateJob(String),
    #[error("job {0} is already running")]
    AlreadyRunning(String),
    #[error("this JobManager is still recovering its jobs; submit again shortly")]
    Recovering,
    #[error("job {job}: {message}")]
    BadJob { job: String, message: String },
    #[error(transparent)]
    Ha(#[from] HaError),
    #[error(transparent)]
    Config(#[from] ConfigError),
}

impl DispatchError {
    /// Whether the submission may succeed if retried shortly (recovery still running).
    pub fn is_retriable(&self) -> bool {
        matches!(self, DispatchError::Recovering)
    }

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
    /// Jobs whose job master has not ended yet (its cleanup included): a job id is in here
    /// from its start until its outcome is reported, whatever its snapshot says.
    active: Arc<Mutex<HashSet<String>>>,
    /// Serializes recovery and submissions, so the check (result? running?) and the start of
    /// a job master are one step: one job id never gets two job masters.
    admission: Arc<tokio::sync::Mutex<()>>,
    /// Set once [`Dispatcher::recover`] is done; submissions wait for it (REST answers 503).
    recovered: Arc<AtomicBool>,
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
                active: Arc::default(),
                admission: Arc::default(),
                recovered: Arc::default(),
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
        let _admission = self.admission.lock().await;
        let recovered = self.recover_job_graphs().await?;
        self.recovered.store(true, Ordering::Release);
        Ok(recovered)
    }

    async fn recover_job_graphs(&self) -> Result<Vec<String>, DispatchError> {
        let cleanup = RetryStrategy::cleanup(&self.config)?;
        for dirty in self.ha.job_results.dirty_results().await? {
            tracing::info!(job_id = %dirty.job_id, status = %dirty.status, "finishing the cleanup of a terminated job");
            let job_id = dirty.job_id.as_str();
            cleanup
                .run(
                    "remove a terminated job's HA data",
                    &self.leadership,
                    || self.ha.remove_job_data(job_id),
                )
                .await?;
            cleanup
                .run("mark a job result clean", &self.leadership, || {
                    self.ha.job_results.mark_clean(job_id)
                })
                .await?;
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
            let graph = JobGraph::from_bytes(&graph).map_err(|e| {
                DispatchError::Ha(HaError::Corrupt {
                    path: format!("job graph {job_id}"),
                    message: e.to_string(),
                })
            })?;
            tracing::info!(job_id = %job_id, run_id = %graph.run_id, "job graph recovered");
            self.start(graph).await?;
            recovered.push(job_id);
        }
        Ok(recovered)
    }

    /// Submits a job: refused if it already has a result or is running.
    pub async fn submit(&self, spec: JobSpec) -> Result<String, DispatchError> {
        if !self.recovered.load(Ordering::Acquire) {
            return Err(DispatchError::Recovering);
        }
        let _admission = self.admission.lock().await;
        let job_id = spec.job_id();
        if self.is_running(&job_id) {
            return Err(DispatchError::AlreadyRunning(job_id));
        }
        if self.ha.job_results.has_result(&job_id).await? {
            return Err(DispatchError::DuplicateJob(job_id));
        }
        // Refused before anything is persisted: a keyed job with nowhere to put its state.
        self.checkpoint_dir(&spec).await?;
        // Persisted before its job master starts (Flink's Dispatcher): a job that runs can
        // always be recovered, and a submission that cannot be persisted fails as a whole.
        // A new run: its own run id, kept with the graph for every recovery.
        let graph = JobGraph::submitted(spec);
        let stored = graph.to_bytes().map_err(|e| DispatchError::BadJob {
            job: job_id.clone(),
            message: format!("cannot serialize the job graph: {e}"),
        })?;
        RetryStrategy::JOB_GRAPH
            .run("persist a job graph", &self.leadership, || {
                self.ha
                    .job_graphs
                    .put(&job_id, bytes::Bytes::from(stored.clone()))
            })
            .await?;
        self.start(graph).await?;
        Ok(job_id)
    }

    /// Whether `job_id` has a job master that has not ended (cleanup included).
    pub fn is_running(&self, job_id: &str) -> bool {
        self.active.lock().expect("active lock").contains(job_id)
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

    /// `execution.checkpointing.dir` (default `<high-availability.storageDir>/<cluster-id>/checkpoints`),
    /// opened. A job with a keyed stage needs one; others run without.
    async fn checkpoint_dir(&self, spec: &JobSpec) -> Result<Option<Location>, DispatchError> {
        let bad = |message: String| DispatchError::BadJob {
            job: spec.job_id(),
            message,
        };
        let uri = crate::ha::config::HaConfig::from_config(&self.config)?.checkpoint_dir;
        let Some(uri) = uri else {
            if spec.pipeline.iter().any(|s| matches!(s, Step::KeyBy(_))) {
                return Err(bad("its keyed state needs execution.checkpointing.dir (default: <high-availability.storageDir>/<cluster-id>/checkpoints), and neither is set".into()));
            }
            return Ok(None);
        };
        // The HA storage's filesystem is open already; another one is opened here.
        if let Some(path) = uri.strip_prefix(self.ha.blob_store.base_uri())
            && path.starts_with('/')
        {
            return Ok(Some(Location {
                store: self.ha.blob_store.clone(),
                path: path.to_string(),
            }));
        }
        crate::storage::open(&uri)
            .await
            .map(Some)
            .map_err(|e| bad(format!("execution.checkpointing.dir: {e}")))
    }

    /// Starts a job master for a job whose graph is in the job graph store.
    async fn start(&self, graph: JobGraph) -> Result<(), DispatchError> {
        let spec = graph.spec;
        // A recovered graph may name operators this binary lacks (another binary submitted
        // it): one line, before anything is deployed.
        spec.check("its stored job graph")
            .map_err(|e| DispatchError::BadJob {
                job: spec.job_id(),
                message: e.to_string(),
            })?;
        let cfg = JobMasterConfig {
            graph_persisted: true,
            run_id: graph.run_id,
            ..JobMasterConfig::from_config(
                &self.config,
                spec.clone(),
                self.sink_dir(&spec).await?,
                self.checkpoint_dir(&spec).await?,
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
        self.active
            .lock()
            .expect("active lock")
            .insert(job_id.clone());
        let outcomes = self.outcomes.clone();
        let active = self.active.clone();
        self.tasks.spawn(async move {
            let ended = done.await;
            active.lock().expect("active lock").remove(&job_id);
            match ended {
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::jobmanager::job_master::InProcess;
    use crate::storage::local::LocalStore;

    fn dispatcher(dir: &std::path::Path) -> (Dispatcher, mpsc::UnboundedReceiver<JobOutcome>) {
        Dispatcher::new(
            ha(dir),
            Arc::new(Config::defaults()),
            Arc::new(InProcess::default()),
            None,
            CancellationToken::new(),
        )
    }

    fn ha(dir: &std::path::Path) -> HaServices {
        HaServices::embedded(
            Arc::new(LocalStore),
            &dir.join("ha").display().to_string(),
            1,
        )
    }

    /// A job graph another binary stored (with its own operators) is one line at recovery,
    /// before anything runs.
    #[tokio::test]
    async fn a_recovered_graph_naming_an_operator_this_binary_lacks_is_refused() {
        let dir =
            std::env::temp_dir().join(format!("yarnflow-dispatcher-op-{}", std::process::id()));
        let theirs = crate::api::Operators::new().register("tokenize", || Tokenize);
        let spec = JobSpec::parse_with(
            "name: theirs\npipeline:\n  - source: { kind: sequence, to: 10 }\n  - operator: tokenize\n  - sink: { kind: files, path: 'file:///tmp/theirs' }\n",
            "theirs.yaml",
            &theirs,
        )
        .unwrap();
        let graph = JobGraph::submitted(spec).to_bytes().unwrap();
        let ha = ha(&dir);
        ha.job_graphs
            .put("theirs", bytes::Bytes::from(graph))
            .await
            .unwrap();
        let (d, _outcomes) = Dispatcher::new(
            ha,
            Arc::new(Config::defaults()),
            Arc::new(InProcess::default()),
            None,
            CancellationToken::new(),
        );
        let e = d.recover().await.unwrap_err().to_string();
        assert!(
            e.starts_with("job theirs: its stored job graph: pipeline[1]: no operator 'tokenize' is registered in yarnflow"),
            "{e}"
        );
        assert!(!d.is_running("theirs"));
        let _ = std::fs::remove_dir_all(&dir);
    }

    struct Tokenize;

    impl crate::api::ProcessFunction for Tokenize {
        type In = String;
        type Out = String;
        fn process(
            &mut self,
            _: String,
            _: &mut crate::api::Context,
            _: &mut crate::api::Collector<String>,
        ) -> Result<(), crate::api::OperatorError> {
            Ok(())
        }
    }

    fn spec(dir: &std::path::Path) -> JobSpec {
        JobSpec::parse(
            &format!(
                "name: twice\nparallelism: 1\npipeline:\n  - source: {{ kind: sequence, from: 0, to: 1000 }}\n  - sink: {{ kind: files, path: 'file://{}/out' }}\n",
                dir.display()
            ),
            "test",
        )
        .unwrap()
    }

    #[tokio::test]
    async fn submissions_wait_for_recovery_and_one_job_id_gets_one_job_master() {
        let dir = std::env::temp_dir().join(format!("yarnflow-dispatcher-{}", std::process::id()));
        let (d, mut outcomes) = dispatcher(&dir);
        let e = d.submit(spec(&dir)).await.unwrap_err();
        assert!(e.is_retriable(), "{e}");
        assert!(d.recover().await.unwrap().is_empty());
        // Two submissions of one spec at once: exactly one starts a job master.
        let (a, b) = tokio::join!(d.submit(spec(&dir)), d.submit(spec(&dir)));
        let started = [&a, &b].iter().filter(|r| r.is_ok()).count();
        assert_eq!(started, 1, "{a:?} {b:?}");
        let refused = if a.is_err() { a } else { b };
        assert!(
            matches!(refused, Err(DispatchError::AlreadyRunning(_))),
            "{refused:?}"
        );
        let outcome = outcomes.recv().await.unwrap();
        assert_eq!(
            outcome.status,
            crate::jobmanager::status::JobStatus::Finished
        );
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[tokio::test]
    async fn a_keyed_job_without_a_checkpoint_dir_is_refused_at_submit() {
        let dir =
            std::env::temp_dir().join(format!("yarnflow-dispatcher-keyed-{}", std::process::id()));
        let (d, _outcomes) = dispatcher(&dir);
        d.recover().await.unwrap();
        let spec = JobSpec::parse(
            "name: keyed\npipeline:\n  - source: { kind: sequence, from: 0, to: 10 }\n  - key-by: { modulus: 2 }\n  - count\n  - sink: { kind: files, path: 'file:///tmp/x' }\n",
            "keyed.yaml",
        )
        .unwrap();
        let e = d.submit(spec).await.unwrap_err();
        assert!(e.is_user_error(), "{e}");
        assert_eq!(
            e.to_string(),
            "job keyed: its keyed state needs execution.checkpointing.dir (default: <high-availability.storageDir>/<cluster-id>/checkpoints), and neither is set"
        );
        assert!(d.ha.job_graphs.job_ids().await.unwrap().is_empty());
        let _ = std::fs::remove_dir_all(&dir);
    }
}
