//! High-availability services (Flink's vocabulary): leader election, leader retrieval
//! (service discovery), and the fenced stores a JobManager recovers from.
//!
//! Two implementations of every seam, bundled in [`HaServices`]:
//! * ZooKeeper + blob storage (`high-availability.type: zookeeper`), for YARN and standalone HA;
//! * embedded (`none`): always leader, local storage, for `yarnflow local` and unit tests.
//!
//! The stores take opaque bytes: what a job graph or a checkpoint's metadata contains is the
//! runtime's business; the HA layer guarantees where it lives, that a reader gets exactly what was
//! written (length + checksum), and that only the current leader can change it.

pub mod config;
pub mod embedded;
pub mod inspect;
pub mod job_result_store;
pub mod zookeeper;

use std::sync::Arc;

use bytes::Bytes;
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;
use uuid::Uuid;

use crate::jobmanager::status::JobStatus;
use crate::storage::{BlobStore, StorageError};

/// An HA failure, classified so callers never match on strings.
#[derive(Debug, Clone, thiserror::Error)]
pub enum HaError {
    /// This contender is not (or no longer) the leader: the write was fenced off.
    #[error("not the leader: {0}")]
    NotLeader(String),
    /// ZooKeeper is unreachable or the session is gone.
    #[error("ZooKeeper {quorum}: {message}")]
    ZooKeeper { quorum: String, message: String },
    /// A blob behind a pointer is missing, truncated or corrupt.
    #[error("{path}: corrupt state: {message}")]
    Corrupt { path: String, message: String },
    #[error(transparent)]
    Storage(#[from] StorageError),
    #[error("{0}")]
    Config(String),
}

impl HaError {
    /// Leadership was lost: stop leader-only work, do not retry as leader.
    pub fn lost_leadership(&self) -> bool {
        matches!(self, HaError::NotLeader(_))
    }
    /// Worth retrying after a pause (connection trouble, transient I/O).
    pub fn is_retriable(&self) -> bool {
        matches!(
            self,
            HaError::ZooKeeper { .. } | HaError::Storage(StorageError::Io { .. })
        )
    }
}

/// One grant of leadership.
///
/// `session_id` is fresh per grant (Flink's leader session id); `epoch` strictly increases across
/// grants of the same cluster id, and is the fencing token every JobManager->TaskManager RPC
/// carries. `revoked` is cancelled when leadership ends: spawn leader-only work under it (the
/// leadership child of the process's cancellation tree).
#[derive(Debug, Clone)]
pub struct Leadership {
    pub session_id: Uuid,
    pub epoch: u64,
    pub revoked: CancellationToken,
    /// This grant's fence: stores bound to it ([`HaServices::for_leader`]) check this grant's
    /// latch, never a later grant's, however late their writes arrive.
    pub fence: Fence,
}

/// What discovery publishes: where the leader listens, and its fencing identity.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LeaderInfo {
    pub address: String,
    pub session_id: Uuid,
    pub epoch: u64,
}

/// Leader election for one contender (one JobManager process).
#[async_trait::async_trait]
pub trait LeaderElection: Send + Sync {
    /// Waits until this contender leads, then returns the grant. Call again after revocation
    /// to contend anew.
    async fn acquire(&self) -> Result<Leadership, HaError>;
    /// Publishes the leader's address for discovery; fails with `NotLeader` if `leadership` is
    /// no longer current.
    async fn publish(&self, leadership: &Leadership, address: &str) -> Result<(), HaError>;
    /// Gives up leadership (or stops contending) cleanly, so a successor takes over at once.
    async fn resign(&self) -> Result<(), HaError>;
    /// Removes the latch of a contender known to be dead (on YARN: the previous application
    /// attempt), so this one need not wait out its session. Returns how many were removed.
    async fn evict(&self, owner: &str) -> Result<usize, HaError> {
        let _ = owner;
        Ok(0)
    }
}

/// Service discovery: watch who leads.
pub trait LeaderRetrieval: Send + Sync {
    /// The current leader (`None` = no leader); changes on every grant, publish and loss.
    fn watch(&self) -> watch::Receiver<Option<LeaderInfo>>;
}

/// Job graphs of submitted, not yet globally terminal jobs (Flink's `JobGraphStore`).
#[async_trait::async_trait]
pub trait JobGraphStore: Send + Sync {
    async fn put(&self, job_id: &str, graph: Bytes) -> Result<(), HaError>;
    async fn get(&self, job_id: &str) -> Result<Option<Bytes>, HaError>;
    async fn job_ids(&self) -> Result<Vec<String>, HaError>;
    /// Removes a job's graph in the safe order (pointer marked, blob, pointer).
    async fn remove(&self, job_id: &str) -> Result<(), HaError>;
}

/// One completed checkpoint as stored: id and the runtime's metadata bytes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredCheckpoint {
    pub checkpoint_id: u64,
    pub metadata: Bytes,
}

/// Completed checkpoints of one job (Flink's `CompletedCheckpointStore`).
#[async_trait::async_trait]
pub trait CompletedCheckpointStore: Send + Sync {
    /// Adds a completed checkpoint, then subsumes (deletes) the oldest beyond
    /// `execution.checkpointing.num-retained`.
    async fn add(&self, checkpoint: StoredCheckpoint) -> Result<(), HaError>;
    /// Checkpoint ids present, oldest first (pointers only; nothing is read).
    async fn checkpoint_ids(&self) -> Result<Vec<u64>, HaError>;
    /// Reads and verifies one checkpoint: [`HaError::Corrupt`] only when the damage is proven
    /// (undecodable pointer, missing blob, length or CRC mismatch); any other error (ZooKeeper,
    /// storage I/O, permissions) says nothing about the checkpoint and must not be taken for
    /// corruption, nor for "no checkpoint".
    async fn get(&self, checkpoint_id: u64) -> Result<StoredCheckpoint, HaError>;
    /// Where checkpoint `checkpoint_id` lives (its pointer znode or file), for messages.
    fn location(&self, checkpoint_id: u64) -> String;
    /// Terminal shutdown removes every checkpoint; a non-terminal one removes nothing.
    async fn shutdown(&self, globally_terminal: bool) -> Result<(), HaError>;
}

/// Monotonic checkpoint ids for one job, across leaders (Flink's `CheckpointIDCounter`).
#[async_trait::async_trait]
pub trait CheckpointIdCounter: Send + Sync {
    /// Returns the current value and advances it (the first id is 1).
    async fn get_and_increment(&self) -> Result<u64, HaError>;
    async fn get(&self) -> Result<u64, HaError>;
    /// Terminal shutdown deletes the counter.
    async fn shutdown(&self, globally_terminal: bool) -> Result<(), HaError>;
}

/// A globally terminal job's outcome.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct JobResultEntry {
    pub job_id: String,
    /// FINISHED, CANCELED or FAILED (stored as those strings).
    pub status: JobStatus,
    pub failure: Option<String>,
    pub finished_at_ms: u64,
    /// The job's counts over its whole life, as its last leader saw them (absent in results
    /// written before they were recorded).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub lifetime: Option<LifetimeCounts>,
}

/// A job's counts over its whole life, across JobManager failovers (per-attempt counts start
/// at zero under every leader). They travel in every stored [`CheckpointMetadata`](crate::jobmanager::checkpoint::CheckpointMetadata): a leader
/// that recovers the job from its latest checkpoint starts from that checkpoint's counts, plus
/// one failover; the job result record carries the final ones.
///
/// Known imprecision: what happened after the latest completed checkpoint under a leader that
/// then died (a restart, a failed checkpoint) is counted only if a later checkpoint of that
/// leader completed. A restored job checkpoints as soon as every subtask runs again, so the
/// window after a restart is short. A leader that recovers a job without a completed
/// checkpoint counts one failover (several failovers before the first checkpoint count one).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(default)]
pub struct LifetimeCounts {
    pub completed_checkpoints: u64,
    /// Checkpoints that expired, were declined or could not be stored.
    pub failed_checkpoints: u64,
    /// Restarts of the job or of a failover region (a reconciliation that redeploys counts one).
    pub restarts: u64,
    /// JobManager failovers: recoveries of the job by a later leader (from its latest
    /// checkpoint, or afresh when it has none).
    pub failovers: u64,
}

/// Outcomes of globally terminal jobs, on storage (Flink's `JobResultStore`): written *dirty*
/// before cleanup, marked *clean* after it.
#[async_trait::async_trait]
pub trait JobResultStore: Send + Sync {
    async fn create_dirty(&self, entry: &JobResultEntry) -> Result<(), HaError>;
    async fn mark_clean(&self, job_id: &str) -> Result<(), HaError>;
    /// Whether the job has a result, dirty or clean (resubmission is then refused).
    async fn has_result(&self, job_id: &str) -> Result<bool, HaError>;
    /// The job's result, dirty or clean (`None`: none, or deleted on commit).
    async fn get(&self, job_id: &str) -> Result<Option<JobResultEntry>, HaError>;
    async fn dirty_results(&self) -> Result<Vec<JobResultEntry>, HaError>;
}

/// Everything a JobManager needs for HA, for one cluster id.
#[derive(Clone)]
pub struct HaServices {
    pub election: Arc<dyn LeaderElection>,
    pub retrieval: Arc<dyn LeaderRetrieval>,
    pub job_graphs: Arc<dyn JobGraphStore>,
    pub job_results: Arc<dyn JobResultStore>,
    /// Where checkpoint data and snapshots go (the HA storage dir's filesystem).
    pub blob_store: Arc<dyn BlobStore>,
    pub checkpoint_store_factory: Arc<dyn CheckpointStoreFactory>,
    /// ZooKeeper HA only: the cluster's session, blob directory and retention, to rebuild the
    /// stores for one grant ([`HaServices::for_leader`]) and for
    /// [`HaServices::close_and_cleanup_all_data`].
    zookeeper: Option<zookeeper::ZkParts>,
}

/// Per-job checkpoint stores and counters.
pub trait CheckpointStoreFactory: Send + Sync {
    fn checkpoint_store(&self, job_id: &str) -> Arc<dyn CompletedCheckpointStore>;
    fn checkpoint_id_counter(&self, job_id: &str) -> Arc<dyn CheckpointIdCounter>;
}

impl HaServices {
    /// ZooKeeper HA for `cfg` (`high-availability.type: zookeeper`): a session on the quorum,
    /// pointers under `<root>/<cluster-id>`, blobs under `<storageDir>/<cluster-id>` in
    /// `blob_store` (the filesystem of `storageDir`). `owner` names this contender in its latch.
    pub async fn zookeeper(
        cfg: &config::HaConfig,
        owner: &str,
        blob_store: Arc<dyn BlobStore>,
    ) -> Result<HaServices, HaError> {
        let zk = zookeeper::ZkCluster::for_cluster(cfg).await?;
        let parts = zookeeper::ZkParts {
            zk: zk.clone(),
            blob_dir: uri_path(&cfg.blob_dir_uri()),
            num_retained: cfg.num_retained,
        };
        let pointers = parts.pointers(blob_store.clone());
        // The job result store may live on another filesystem than storageDir.
        let jrs_store = if cfg.job_result_store_path.starts_with(blob_store.base_uri()) {
            blob_store.clone()
        } else {
            crate::storage::open(&cfg.job_result_store_path)
                .await?
                .store
        };
        let jrs_dir = uri_path(&cfg.job_result_store_path);
        Ok(HaServices {
            election: Arc::new(zookeeper::ZkLeaderElection::new(
                zk.clone(),
                owner,
                cfg.tolerate_suspended,
            )),
            retrieval: Arc::new(zookeeper::ZkLeaderRetrieval::start_with(
                zk.clone(),
                cfg.tolerate_suspended,
            )),
            job_graphs: Arc::new(zookeeper::ZkJobGraphStore::new(pointers.clone())),
            job_results: Arc::new(job_result_store::FileJobResultStore::new(
                jrs_store,
                &jrs_dir,
                cfg.delete_on_commit,
            )),
            blob_store,
            checkpoint_store_factory: Arc::new(zookeeper::ZkCheckpointStoreFactory {
                pointers,
                num_retained: cfg.num_retained,
            }),
            zookeeper: Some(parts),
        })
    }
}

/// Which latch node fences a writer's ZooKeeper writes, and the epoch of that grant; empty
/// when it does not lead. The process's own stores follow its current grant; stores bound to
/// one grant ([`HaServices::for_leader`]) keep that grant's fence, so a stale job master of an
/// earlier term can neither write under a later latch nor clear a later term's fence.
#[derive(Debug, Clone, Default)]
pub struct Fence {
    inner: Arc<std::sync::Mutex<Option<(String, u64)>>>,
}

impl Fence {
    /// Fences writes on `latch_path` existing. The election sets it on every grant; tools that
    /// must write as a known owner (and tests) may set it to any node they hold.
    pub fn set(&self, latch_path: String, epoch: u64) {
        *self.inner.lock().expect("fence lock") = Some((latch_path, epoch));
    }

    /// A fence of its own holding what this one holds now.
    pub fn snapshot(&self) -> Fence {
        Fence {
            inner: Arc::new(std::sync::Mutex::new(
                self.inner.lock().expect("fence lock").clone(),
            )),
        }
    }

    /// Empties the fence if it still names `latch_path` (a later grant's latch stays).
    pub(crate) fn clear_if(&self, latch_path: &str) {
        let mut inner = self.inner.lock().expect("fence lock");
        if inner.as_ref().is_some_and(|(p, _)| p == latch_path) {
            *inner = None;
        }
    }

    pub(crate) fn latch_path(&self) -> Result<String, HaError> {
        self.inner
            .lock()
            .expect("fence lock")
            .as_ref()
            .map(|(p, _)| p.clone())
            .ok_or_else(|| HaError::NotLeader("this process does not hold leadership".into()))
    }

    /// The epoch of the fenced grant, if any.
    pub fn epoch(&self) -> Option<u64> {
        self.inner
            .lock()
            .expect("fence lock")
            .as_ref()
            .map(|(_, e)| *e)
    }
}

impl HaServices {
    /// These services with every write fenced by `leadership`'s grant alone (what a leader's
    /// dispatcher and job masters use). Embedded services have nothing to fence.
    pub fn for_leader(&self, leadership: &Leadership) -> HaServices {
        let Some(zk) = &self.zookeeper else {
            return self.clone();
        };
        let fenced = zookeeper::ZkParts {
            zk: zk.zk.with_fence(leadership.fence.clone()),
            ..zk.clone()
        };
        let pointers = fenced.pointers(self.blob_store.clone());
        HaServices {
            job_graphs: Arc::new(zookeeper::ZkJobGraphStore::new(pointers.clone())),
            checkpoint_store_factory: Arc::new(zookeeper::ZkCheckpointStoreFactory {
                pointers,
                num_retained: fenced.num_retained,
            }),
            zookeeper: Some(fenced),
            ..self.clone()
        }
    }

    /// Removes a globally terminal job's HA data in the safe order: its graph, then its
    /// checkpoints, then its checkpoint id counter. (The job result store entry is the
    /// caller's: written dirty before, marked clean after.)
    pub async fn remove_job_data(&self, job_id: &str) -> Result<(), HaError> {
        self.job_graphs.remove(job_id).await?;
        let f = &self.checkpoint_store_factory;
        f.checkpoint_store(job_id).shutdown(true).await?;
        f.checkpoint_id_counter(job_id).shutdown(true).await
    }

    /// Flink's `closeAndCleanupAllData`, for a cluster whose jobs are all globally terminal:
    /// removes every pointer (safe order), the HA blob directory, then resigns and removes the
    /// leader nodes and the cluster's namespace node. The job result store stays: it is what
    /// tells a late restart that the jobs already ran. Embedded services keep everything (local
    /// mode prints where it lives).
    pub async fn close_and_cleanup_all_data(&self) -> Result<(), HaError> {
        let Some(zk) = &self.zookeeper else {
            return Ok(());
        };
        let pointers = zk.pointers(self.blob_store.clone());
        for top in ["jobgraphs", "jobs"] {
            pointers.remove_tree(top).await?;
        }
        self.blob_store.delete_dir(&zk.blob_dir).await?;
        self.election.resign().await?;
        zk.zk.remove_namespace().await
    }

    /// The HA services `config` asks for (`high-availability.type`), with storage opened from
    /// `high-availability.storageDir`:
    /// * `zookeeper`: [`HaServices::zookeeper`]; `owner` names this contender in its latch node
    ///   (on YARN: the application attempt id, so a successor attempt can
    ///   [evict](LeaderElection::evict) it);
    /// * `none`: [`HaServices::embedded`] under `<storageDir>/<cluster-id>`; needs storageDir
    ///   (local mode builds its embedded services itself).
    ///
    /// A malformed or missing key is one [`HaError::Config`] naming the key and the file.
    pub async fn from_config(
        config: &crate::config::Config,
        owner: &str,
    ) -> Result<HaServices, HaError> {
        let cfg =
            config::HaConfig::from_config(config).map_err(|e| HaError::Config(e.to_string()))?;
        match cfg.kind {
            config::HaType::ZooKeeper => {
                // HDFS connects in the background: ZooKeeper work need not wait for its JVM.
                let storage = crate::storage::open_deferred(&cfg.storage_dir).await?;
                HaServices::zookeeper(&cfg, owner, storage.store).await
            }
            config::HaType::None => {
                if cfg.storage_dir.is_empty() {
                    config
                        .required("high-availability.storageDir")
                        .map_err(|e| {
                            HaError::Config(format!(
                                "{e}: embedded HA services keep their data there"
                            ))
                        })?;
                }
                let storage = crate::storage::open(&cfg.blob_dir_uri()).await?;
                Ok(HaServices::embedded(
                    storage.store,
                    &storage.path,
                    cfg.num_retained,
                ))
            }
        }
    }
}

/// The path part of a storage URI (`hdfs://h:p/a/b` → `/a/b`, `file:///a` → `/a`).
pub fn uri_path(uri: &str) -> String {
    match uri.split_once("://") {
        Some((_, rest)) => match rest.find('/') {
            Some(i) => rest[i..].to_string(),
            None => "/".into(),
        },
        None => uri.to_string(),
    }
}
