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

use futures::{StreamExt, TryStreamExt, stream};
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use super::cleanup::RetryStrategy;
use super::job_master::{
    self, JobMasterConfig, JobMasterHandle, JobOutcome, JobSnapshot, TaskRuntime,
};
use crate::config::{Config, ConfigError};
use crate::ha::{HaError, HaServices, JobResultEntry};
use crate::job::graph::JobGraph;
use crate::job::spec::{JobSpec, SinkSpec, Step};
use crate::storage::{BlobStore, Location, StorageError};

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
    #[error("{first} (and {others} more jobs could not be recovered; each is logged)")]
    RecoveryFailed {
        first: Box<DispatchError>,
        others: usize,
    },
}

/// How many jobs recover at once: enough to overlap the ZooKeeper and HDFS round trips of
/// hundreds of jobs, few enough not to flood the NameNode and ZooKeeper with a burst.
pub const RECOVERY_CONCURRENCY: usize = 32;

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
    /// Filesystems opened for jobs' sinks and checkpoints, shared by every later job.
    stores: Arc<Mutex<Vec<Arc<dyn BlobStore>>>>,
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
                stores: Arc::default(),
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
    ///
    /// Jobs recover [`RECOVERY_CONCURRENCY`] at a time: each needs a few ZooKeeper and HDFS
    /// round trips, which a session with hundreds of jobs must not pay one after another. A
    /// job that cannot be recovered is one error line naming it and does not hold back the
    /// others; once every other job has started, the error is returned (the deployment ends
    /// visibly, as when a job's checkpoints cannot be recovered).
    pub async fn recover(&self) -> Result<Vec<String>, DispatchError> {
        let _admission = self.admission.lock().await;
        let recovered = self.recover_job_graphs().await?;
        self.recovered.store(true, Ordering::Release);
        Ok(recovered)
    }

    async fn recover_job_graphs(&self) -> Result<Vec<String>, DispatchError> {
        let cleanup = RetryStrategy::cleanup(&self.config)?;
        // Every dirty result first: its job's HA data must be gone before any graph is read.
        stream::iter(self.ha.job_results.dirty_results().await?)
            .map(|dirty| self.finish_cleanup(&cleanup, dirty))
            .buffer_unordered(RECOVERY_CONCURRENCY)
            .try_collect::<()>()
            .await?;
        let mut outcomes: Vec<(String, Result<bool, DispatchError>)> =
            stream::iter(self.ha.job_graphs.job_ids().await?)
                .map(|job_id| async move {
                    let outcome = self.recover_job(&job_id).await;
                    (job_id, outcome)
                })
                .buffer_unordered(RECOVERY_CONCURRENCY)
                .collect()
                .await;
        outcomes.sort_by(|a, b| a.0.cmp(&b.0));
        let mut recovered = Vec::new();
        let mut failed = Vec::new();
        for (job_id, outcome) in outcomes {
            match outcome {
                Ok(true) => recovered.push(job_id),
                Ok(false) => {}
                Err(e) => {
                    tracing::error!(job_id = %job_id, error = %e, "job recovery failed; the other jobs are not held back");
                    failed.push(e);
                }
            }
        }
        let others = failed.len().saturating_sub(1);
        match failed.into_iter().next() {
            None => Ok(recovered),
            Some(first) if others == 0 => Err(first),
            Some(first) => Err(DispatchError::RecoveryFailed {
                others,
                first: Box::new(first),
            }),
        }
    }

    /// Removes a terminated job's HA data (the previous leader died during its cleanup), then
    /// marks its result clean.
    async fn finish_cleanup(
        &self,
        cleanup: &RetryStrategy,
        dirty: JobResultEntry,
    ) -> Result<(), DispatchError> {
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
        Ok(())
    }

    /// Starts one stored job graph unless its job has a result; `false` if there was nothing
    /// to start.
    async fn recover_job(&self, job_id: &str) -> Result<bool, DispatchError> {
        if self.ha.job_results.has_result(job_id).await? {
            tracing::info!(job_id = %job_id, "job graph of a terminated job left behind; removing it");
            self.ha.remove_job_data(job_id).await?;
            return Ok(false);
        }
        let Some(graph) = self.ha.job_graphs.get(job_id).await? else {
            return Ok(false);
        };
        let graph = JobGraph::from_bytes(&graph).map_err(|e| {
            DispatchError::Ha(HaError::Corrupt {
                path: format!("job graph {job_id}"),
                message: e.to_string(),
            })
        })?;
        tracing::info!(job_id = %job_id, run_id = %graph.run_id, "job graph recovered");
        self.start(graph, true).await?;
        Ok(true)
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
        self.start(graph, false).await?;
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
            Some(Step::Sink(SinkSpec::Files { path: Some(p) })) => self
                .open_shared(p)
                .await
                .map_err(|e| DispatchError::BadJob {
                    job: spec.job_id(),
                    message: format!("sink path: {e}"),
                }),
            _ => match &self.default_output {
                Some(d) => self
                    .open_shared(&format!("{}/{}", d.trim_end_matches('/'), spec.job_id()))
                    .await
                    .map_err(|e| DispatchError::BadJob {
                        job: spec.job_id(),
                        message: format!("default output: {e}"),
                    }),
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
        self.open_shared(&uri)
            .await
            .map(Some)
            .map_err(|e| bad(format!("execution.checkpointing.dir: {e}")))
    }

    /// Opens `uri` on a filesystem this dispatcher has open already (the HA storage's, or one
    /// an earlier job opened), else opens it once for all later jobs: a session of hundreds
    /// of jobs keeps one HDFS client per NameNode, not one per job.
    async fn open_shared(&self, uri: &str) -> Result<Location, StorageError> {
        let on = |store: &Arc<dyn BlobStore>| {
            uri.strip_prefix(store.base_uri())
                .filter(|path| path.starts_with('/'))
                .map(|path| Location {
                    store: store.clone(),
                    path: path.to_string(),
                })
        };
        if let Some(l) = on(&self.ha.blob_store) {
            return Ok(l);
        }
        if let Some(l) = self.stores.lock().expect("stores lock").iter().find_map(on) {
            return Ok(l);
        }
        let opened = crate::storage::open(uri).await?;
        self.stores
            .lock()
            .expect("stores lock")
            .push(opened.store.clone());
        Ok(opened)
    }

    /// Starts a job master for a job whose graph is in the job graph store (`recovered` from
    /// it by this leader, or just submitted).
    async fn start(&self, graph: JobGraph, recovered: bool) -> Result<(), DispatchError> {
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
            recovered,
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
        dispatcher_on(ha(dir))
    }

    /// A dispatcher with in-process subtasks over `ha`.
    fn dispatcher_on(ha: HaServices) -> (Dispatcher, mpsc::UnboundedReceiver<JobOutcome>) {
        Dispatcher::new(
            ha,
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
        let (d, _outcomes) = dispatcher_on(ha);
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

    /// The local filesystem, counting the job graph reads in flight at once (each held a
    /// moment, as a ZooKeeper or HDFS round trip would be).
    #[derive(Debug, Default)]
    struct Overlap {
        in_flight: std::sync::atomic::AtomicUsize,
        most: std::sync::atomic::AtomicUsize,
    }

    #[derive(Debug)]
    struct Counted(Arc<Overlap>);

    #[async_trait::async_trait]
    impl BlobStore for Counted {
        fn base_uri(&self) -> &str {
            LocalStore.base_uri()
        }
        async fn write(&self, path: &str, data: bytes::Bytes) -> Result<(), StorageError> {
            LocalStore.write(path, data).await
        }
        async fn read(&self, path: &str) -> Result<bytes::Bytes, StorageError> {
            if !path.contains("/jobgraphs/") {
                return LocalStore.read(path).await;
            }
            let now = self.0.in_flight.fetch_add(1, Ordering::SeqCst) + 1;
            self.0.most.fetch_max(now, Ordering::SeqCst);
            tokio::time::sleep(std::time::Duration::from_millis(20)).await;
            let read = LocalStore.read(path).await;
            self.0.in_flight.fetch_sub(1, Ordering::SeqCst);
            read
        }
        async fn delete(&self, path: &str) -> Result<(), StorageError> {
            LocalStore.delete(path).await
        }
        async fn delete_dir(&self, path: &str) -> Result<(), StorageError> {
            LocalStore.delete_dir(path).await
        }
        async fn rename(&self, from: &str, to: &str) -> Result<(), StorageError> {
            LocalStore.rename(from, to).await
        }
        async fn list(&self, dir: &str) -> Result<Vec<crate::storage::BlobMeta>, StorageError> {
            LocalStore.list(dir).await
        }
        async fn exists(&self, path: &str) -> Result<bool, StorageError> {
            LocalStore.exists(path).await
        }
        async fn mkdirs(&self, path: &str) -> Result<(), StorageError> {
            LocalStore.mkdirs(path).await
        }
    }

    /// Many stored jobs recover side by side, at most `RECOVERY_CONCURRENCY` at once; a dirty
    /// result is cleaned up before any graph is read; a job that cannot be recovered is named
    /// and does not keep the others from starting.
    #[tokio::test]
    async fn many_jobs_recover_concurrently_and_one_failure_does_not_hold_back_the_others() {
        let dir =
            std::env::temp_dir().join(format!("yarnflow-dispatcher-many-{}", std::process::id()));
        let overlap = Arc::new(Overlap::default());
        let ha = HaServices::embedded(
            Arc::new(Counted(overlap.clone())),
            &dir.join("ha").display().to_string(),
            1,
        );
        let jobs = 2 * RECOVERY_CONCURRENCY;
        for i in 0..jobs {
            let spec = JobSpec::parse(
                &format!(
                    "name: job-{i:03}\nparallelism: 1\npipeline:\n  - source: {{ kind: sequence, from: 0, to: 10 }}\n  - sink: {{ kind: files, path: 'file://{}/out-{i}' }}\n",
                    dir.display()
                ),
                "test",
            )
            .unwrap();
            let graph = JobGraph::submitted(spec).to_bytes().unwrap();
            ha.job_graphs
                .put(&format!("job-{i:03}"), bytes::Bytes::from(graph))
                .await
                .unwrap();
        }
        // Sorted in the middle of the others: those after it start too.
        ha.job_graphs
            .put(
                "job-010-broken",
                bytes::Bytes::from_static(b"not a job graph"),
            )
            .await
            .unwrap();
        // A job whose previous leader died during its cleanup: its graph must go, not run.
        let finished = JobResultEntry {
            job_id: "job-005".into(),
            status: crate::jobmanager::status::JobStatus::Finished,
            failure: None,
            finished_at_ms: 1,
            lifetime: None,
        };
        ha.job_results.create_dirty(&finished).await.unwrap();
        let (d, _outcomes) = dispatcher_on(ha);
        let e = d.recover().await.unwrap_err().to_string();
        assert!(e.starts_with("job graph job-010-broken"), "{e}");
        assert!(d.job("job-010-broken").is_none());
        assert!(d.job("job-005").is_none(), "a job with a result ran again");
        assert!(d.ha.job_results.dirty_results().await.unwrap().is_empty());
        let started = (0..jobs)
            .filter(|i| d.job(&format!("job-{i:03}")).is_some())
            .count();
        assert_eq!(started, jobs - 1);
        let most = overlap.most.load(Ordering::SeqCst);
        assert!(
            most > 1 && most <= RECOVERY_CONCURRENCY,
            "{most} job graph reads at once"
        );
        d.leadership.cancel();
        d.closed().await;
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
