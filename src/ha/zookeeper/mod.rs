//! HA services on ZooKeeper + blob storage.
//!
//! # Layout
//!
//! ```text
//! <high-availability.zookeeper.path.root>            default /yarnflow
//! └── <high-availability.cluster-id>                 on YARN: the application id
//!     ├── leader
//!     │   ├── latch
//!     │   │   ├── latch-0000000003   EPHEMERAL_SEQUENTIAL, data: LatchOwner{owner}; lowest leads
//!     │   │   └── latch-0000000004
//!     │   ├── epoch                  u64, CAS-incremented by every new leader (the fencing token)
//!     │   └── connection_info        EPHEMERAL, data: LeaderRecord{address, session id, epoch}
//!     ├── jobgraphs
//!     │   └── <jobId>                Pointer → <storageDir>/<cluster-id>/submittedJobGraph-<uuid>
//!     └── jobs
//!         └── <jobId>
//!             ├── checkpoints
//!             │   └── <%019d id>     Pointer → <storageDir>/<cluster-id>/completedCheckpoint-<uuid>
//!             └── checkpoint_id_counter   u64, CAS on the znode version
//! ```
//!
//! # Fencing
//!
//! Every write below `<cluster-id>` (pointers, counter, epoch, connection_info) is one ZooKeeper
//! multi-op whose first operation checks that *our latch node still exists*. A leader whose
//! session expired, or whose latch a successor evicted, has no latch node any more: its writes
//! fail as a whole with [`HaError::NotLeader`], however late they arrive. (Flink fences only its
//! leader information; FLINK-10333.)

mod election;
mod pointers;
mod retrieval;
mod stores;

use std::sync::Arc;

use zookeeper_client as zk;

pub use election::ZkLeaderElection;
pub use pointers::PointerStore;
pub use retrieval::ZkLeaderRetrieval;
pub use stores::{
    ZkCheckpointIdCounter, ZkCheckpointStore, ZkCheckpointStoreFactory, ZkJobGraphStore,
};

use super::{Fence, HaError};
use crate::storage::BlobStore;

/// What [`super::HaServices`] keeps of its ZooKeeper services to rebuild their stores.
#[derive(Debug, Clone)]
pub(crate) struct ZkParts {
    pub(crate) zk: ZkCluster,
    /// The HA blob directory (path on the blob store).
    pub(crate) blob_dir: String,
    /// `execution.checkpointing.num-retained`.
    pub(crate) num_retained: usize,
}

impl ZkParts {
    pub(crate) fn pointers(&self, blobs: Arc<dyn BlobStore>) -> PointerStore {
        PointerStore::new(self.zk.clone(), blobs, &self.blob_dir)
    }
}

/// Generated from `proto/yarnflow/ha.proto`.
#[allow(clippy::all)]
pub(crate) mod proto {
    include!(concat!(env!("OUT_DIR"), "/yarnflow.ha.rs"));
}

pub(crate) const PERSISTENT: zk::CreateOptions<'static> =
    zk::CreateMode::Persistent.with_acls(zk::Acls::anyone_all());
pub(crate) const EPHEMERAL: zk::CreateOptions<'static> =
    zk::CreateMode::Ephemeral.with_acls(zk::Acls::anyone_all());
pub(crate) const EPHEMERAL_SEQUENTIAL: zk::CreateOptions<'static> =
    zk::CreateMode::EphemeralSequential.with_acls(zk::Acls::anyone_all());

/// A connected ZooKeeper session scoped to one cluster id.
#[derive(Clone)]
pub struct ZkCluster {
    pub(crate) client: zk::Client,
    pub(crate) quorum: String,
    /// `<root>/<cluster-id>`.
    pub(crate) namespace: String,
    pub(crate) fence: Fence,
    /// The configured connection timeout (how long a silent connection takes to be noticed).
    pub(crate) connection_timeout: std::time::Duration,
}

impl std::fmt::Debug for ZkCluster {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ZkCluster")
            .field("quorum", &self.quorum)
            .field("namespace", &self.namespace)
            .finish()
    }
}

impl ZkCluster {
    /// Connects a new session.
    pub async fn connect(
        quorum: &str,
        namespace: &str,
        session_timeout: std::time::Duration,
        connection_timeout: std::time::Duration,
    ) -> Result<ZkCluster, HaError> {
        let client = zk::Client::connector()
            .with_session_timeout(session_timeout)
            .with_connection_timeout(connection_timeout)
            .connect(quorum)
            .await
            .map_err(|e| HaError::ZooKeeper {
                quorum: quorum.to_string(),
                message: format!("cannot connect: {e}"),
            })?;
        Ok(ZkCluster {
            client,
            quorum: quorum.to_string(),
            namespace: namespace.trim_end_matches('/').to_string(),
            fence: Fence::default(),
            connection_timeout,
        })
    }

    /// A new session with the same quorum, namespace and timeouts (after this one ended).
    pub async fn reconnect(&self) -> Result<ZkCluster, HaError> {
        ZkCluster::connect(
            &self.quorum,
            &self.namespace,
            self.client.session_timeout(),
            self.connection_timeout,
        )
        .await
    }

    /// Fences this session's writes on `latch_path` existing (see [`Fence::set`]).
    pub fn fence_on(&self, latch_path: String, epoch: u64) {
        self.fence.set(latch_path, epoch);
    }

    /// The same session, its writes fenced by `fence` instead.
    pub(crate) fn with_fence(&self, fence: Fence) -> ZkCluster {
        ZkCluster {
            fence,
            ..self.clone()
        }
    }

    /// A session on the quorum of `cfg`, scoped to its cluster namespace.
    pub async fn for_cluster(cfg: &crate::ha::config::HaConfig) -> Result<ZkCluster, HaError> {
        ZkCluster::connect(
            &cfg.quorum,
            &cfg.namespace(),
            cfg.session_timeout,
            cfg.connection_timeout,
        )
        .await
    }

    /// How long a leader with `tolerate-suspended-connections: true` may stay disconnected
    /// before it must revoke itself, so that it has stepped down before the server can expire
    /// its session and grant a successor (never two leaders).
    ///
    /// ```text
    /// server last heard from us ──── detection (≤ connection timeout) ───▶ Disconnected seen
    /// server expires the session at: last heard + session timeout
    ///   ⇒ at least (session − detection) after we see Disconnected; we take half of that.
    /// ```
    ///
    /// The client notices a silent connection after the connection timeout, or 2/5 of the
    /// session timeout when that is larger than 3/5 of it (zookeeper-client's tick rule). With
    /// Flink's defaults (60 s session, 15 s connection) a 22.5 s outage is tolerated.
    pub fn tolerated_disconnection(&self) -> std::time::Duration {
        let session = self.client.session_timeout();
        let conn = self.connection_timeout;
        let detection = if conn.is_zero() || conn > session * 3 / 5 {
            session * 2 / 5
        } else {
            conn
        };
        session.saturating_sub(detection) / 2
    }

    /// Deletes the leader nodes and the namespace node itself, after a final cleanup removed
    /// everything below them (missing nodes are fine).
    pub async fn remove_namespace(&self) -> Result<(), HaError> {
        for rel in [
            "leader/latch",
            "leader/epoch",
            "leader/connection_info",
            "leader",
            "",
        ] {
            match self.client.delete(&self.path(rel), None).await {
                Ok(()) | Err(zk::Error::NoNode) => {}
                Err(e) => return Err(self.err(&format!("delete {}", self.path(rel)), e)),
            }
        }
        Ok(())
    }

    /// The absolute znode path of `rel` (relative to the cluster namespace).
    pub fn path(&self, rel: &str) -> String {
        if rel.is_empty() {
            self.namespace.clone()
        } else {
            format!("{}/{}", self.namespace, rel.trim_start_matches('/'))
        }
    }

    pub(crate) fn err(&self, what: &str, e: zk::Error) -> HaError {
        HaError::ZooKeeper {
            quorum: self.quorum.clone(),
            message: format!("{what}: {e}"),
        }
    }

    /// Creates `path` and missing parents as persistent nodes. Structural nodes only (they carry
    /// no data), so they need no fencing.
    pub(crate) async fn ensure_path(&self, path: &str) -> Result<(), HaError> {
        match self.client.mkdir(path, &PERSISTENT).await {
            Ok(()) | Err(zk::Error::NodeExists) => Ok(()),
            Err(e) => Err(self.err(&format!("create {path}"), e)),
        }
    }

    /// Compare-and-set increment of the counter znode `path` (`leader/epoch`,
    /// `checkpoint_id_counter`): reads its value (`floor` when the node is absent or holds
    /// less), writes that value + 1 on the version read, fenced by our latch node, and reads
    /// again when another writer got in first. Returns the value it replaced.
    ///
    /// A write without an answer is an error, never retried here: it may have landed, and
    /// handing out the value it replaced twice would break the counter (a gap is harmless).
    pub(crate) async fn increment_counter(
        &self,
        path: &str,
        floor: u64,
        name: &str,
    ) -> Result<u64, HaError> {
        loop {
            let (current, version) = match self.client.get_data(path).await {
                Ok((data, stat)) => (parse_counter(path, &data)?.max(floor), Some(stat.version)),
                Err(zk::Error::NoNode) => (floor, None),
                Err(e) => return Err(self.err(&format!("read the {name}"), e)),
            };
            if version.is_none()
                && let Some((parent, _)) = path.rsplit_once('/')
            {
                self.ensure_path(parent).await?;
            }
            let next = (current + 1).to_string();
            let what = format!("advance the {name}");
            let mut w = self.fenced_writer()?;
            match version {
                Some(v) => w.add_set_data(path, next.as_bytes(), Some(v)),
                None => w.add_create(path, next.as_bytes(), &PERSISTENT),
            }
            .map_err(|e| self.err(&what, e))?;
            match self.try_commit(&what, w).await {
                Ok(_) => return Ok(current),
                // Another writer advanced it first (for the epoch: a deposed contender's stale
                // write, whose latch check then fails); read again.
                Err(f) if f.is_race() => continue,
                Err(f) => return Err(f.into_error()),
            }
        }
    }

    /// A multi-op writer whose first operation checks our latch node (see "Fencing").
    pub(crate) fn fenced_writer(&self) -> Result<FencedWriter<'_>, HaError> {
        let latch = self.fence.latch_path()?;
        let mut w = self.client.new_multi_writer();
        w.add_check_version(&latch, -1)
            .map_err(|e| self.err("fenced write", e))?;
        Ok(FencedWriter { latch, w })
    }

    /// Commits a fenced multi-op, mapping a failed latch check to `NotLeader`.
    pub(crate) async fn commit(
        &self,
        what: &str,
        w: FencedWriter<'_>,
    ) -> Result<Vec<zk::MultiWriteResult>, HaError> {
        self.try_commit(what, w)
            .await
            .map_err(CommitFailure::into_error)
    }

    /// Commits a fenced multi-op and says how it failed: fenced off, rejected by the server
    /// (nothing applied), or without an answer (maybe applied).
    pub(crate) async fn try_commit(
        &self,
        what: &str,
        mut w: FencedWriter<'_>,
    ) -> Result<Vec<zk::MultiWriteResult>, CommitFailure> {
        match w.w.commit().await {
            Ok(r) => Ok(r),
            Err(zk::MultiWriteError::OperationFailed { index: 0, source }) => {
                // Only the grant whose latch was checked is over; a later one's stays.
                self.fence.clear_if(&w.latch);
                Err(CommitFailure::Fenced(HaError::NotLeader(format!(
                    "{what}: our leader latch is gone ({source}); the write was fenced off"
                ))))
            }
            Err(zk::MultiWriteError::OperationFailed { index, source }) => {
                Err(CommitFailure::Rejected {
                    source: source.clone(),
                    error: HaError::ZooKeeper {
                        quorum: self.quorum.clone(),
                        message: format!("{what}: operation {index} failed: {source}"),
                    },
                })
            }
            Err(zk::MultiWriteError::RequestFailed { source }) => Err(CommitFailure::Uncertain(
                self.err(&format!("{what} (outcome unknown)"), source),
            )),
        }
    }
}

/// A multi-op whose first operation checks `latch` (see "Fencing"); add the writes to `w`.
pub(crate) struct FencedWriter<'a> {
    latch: String,
    pub(crate) w: zk::MultiWriter<'a>,
}

impl<'a> std::ops::Deref for FencedWriter<'a> {
    type Target = zk::MultiWriter<'a>;
    fn deref(&self) -> &Self::Target {
        &self.w
    }
}

impl std::ops::DerefMut for FencedWriter<'_> {
    fn deref_mut(&mut self) -> &mut Self::Target {
        &mut self.w
    }
}

/// How a fenced multi-op failed. Multi-ops are all-or-nothing, so only [`Uncertain`]
/// (no answer from the server) leaves the outcome open.
///
/// [`Uncertain`]: CommitFailure::Uncertain
#[derive(Debug)]
pub(crate) enum CommitFailure {
    /// The latch check failed: we do not lead; nothing was applied.
    Fenced(HaError),
    /// Failed before the multi-op was sent (a read, a bad argument); nothing was applied.
    NotSent(HaError),
    /// The server rejected one of our operations (`BadVersion`, `NodeExists`, `NoNode`, ...);
    /// nothing was applied.
    Rejected { source: zk::Error, error: HaError },
    /// The request failed without a verdict (connection lost, session gone): it may or may not
    /// have been applied.
    Uncertain(HaError),
}

impl CommitFailure {
    pub(crate) fn into_error(self) -> HaError {
        match self {
            CommitFailure::Fenced(e)
            | CommitFailure::NotSent(e)
            | CommitFailure::Rejected { error: e, .. }
            | CommitFailure::Uncertain(e) => e,
        }
    }

    /// Rejected for a race with another writer (a version or existence check): read again.
    pub(crate) fn is_race(&self) -> bool {
        matches!(
            self,
            CommitFailure::Rejected {
                source: zk::Error::BadVersion | zk::Error::NodeExists | zk::Error::NoNode,
                ..
            }
        )
    }

    pub(crate) fn is_no_node(&self) -> bool {
        matches!(
            self,
            CommitFailure::Rejected {
                source: zk::Error::NoNode,
                ..
            }
        )
    }
}

/// Whether `e` ends this client's session for good (expired, closed, authentication failed):
/// retrying a request on it is pointless, only a new session helps.
pub(crate) fn is_terminal(e: &zk::Error) -> bool {
    matches!(
        e,
        zk::Error::SessionExpired | zk::Error::ClientClosed | zk::Error::AuthFailed
    )
}

/// Parses a counter znode (`leader/epoch`, `checkpoint_id_counter`): a decimal `u64`. Anything
/// else is [`HaError::Corrupt`] naming the znode, never a silent restart from zero.
pub(crate) fn parse_counter(path: &str, data: &[u8]) -> Result<u64, HaError> {
    std::str::from_utf8(data)
        .ok()
        .and_then(|s| s.trim().parse().ok())
        .ok_or_else(|| HaError::Corrupt {
            path: path.to_string(),
            message: format!(
                "expected a decimal counter, found {:?}",
                String::from_utf8_lossy(&data[..data.len().min(40)])
            ),
        })
}
