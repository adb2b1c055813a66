//! Flink's stores on the pointer store: job graphs, completed checkpoints, checkpoint id counter.

use std::sync::Arc;

use bytes::Bytes;
use zookeeper_client as zk;

use super::{PointerStore, parse_counter};
use crate::ha::{
    CheckpointIdCounter, CheckpointStoreFactory, CompletedCheckpointStore, HaError, JobGraphStore,
    StoredCheckpoint,
};

/// `jobgraphs/<jobId>` → `submittedJobGraph-<uuid>`.
pub struct ZkJobGraphStore {
    pointers: PointerStore,
}

impl ZkJobGraphStore {
    pub fn new(pointers: PointerStore) -> ZkJobGraphStore {
        ZkJobGraphStore { pointers }
    }
}

#[async_trait::async_trait]
impl JobGraphStore for ZkJobGraphStore {
    async fn put(&self, job_id: &str, graph: Bytes) -> Result<(), HaError> {
        self.pointers
            .put(&format!("jobgraphs/{job_id}"), "submittedJobGraph", graph)
            .await
    }

    async fn get(&self, job_id: &str) -> Result<Option<Bytes>, HaError> {
        self.pointers.get(&format!("jobgraphs/{job_id}")).await
    }

    async fn job_ids(&self) -> Result<Vec<String>, HaError> {
        let mut ids = Vec::new();
        // A damaged pointer still names a job: `get` reports it for that job alone, so one bad
        // entry does not hide the others (Flink's dispatcher fails as a whole there).
        for id in self.pointers.children("jobgraphs").await? {
            if self.pointers.is_live(&format!("jobgraphs/{id}")).await? {
                ids.push(id);
            }
        }
        Ok(ids)
    }

    async fn remove(&self, job_id: &str) -> Result<(), HaError> {
        self.pointers.remove(&format!("jobgraphs/{job_id}")).await
    }
}

/// `jobs/<jobId>/checkpoints/<%019d id>` → `completedCheckpoint-<uuid>`.
pub struct ZkCheckpointStore {
    pointers: PointerStore,
    job_id: String,
    num_retained: usize,
}

impl ZkCheckpointStore {
    pub fn new(pointers: PointerStore, job_id: &str, num_retained: usize) -> ZkCheckpointStore {
        ZkCheckpointStore {
            pointers,
            job_id: job_id.to_string(),
            num_retained: num_retained.max(1),
        }
    }

    fn dir(&self) -> String {
        format!("jobs/{}/checkpoints", self.job_id)
    }

    fn key(&self, id: u64) -> String {
        format!("{}/{id:019}", self.dir())
    }
}

impl ZkCheckpointStore {
    /// Removes the oldest checkpoints beyond `num_retained`.
    async fn subsume(&self) -> Result<(), HaError> {
        let ids = self.checkpoint_ids().await?;
        if ids.len() > self.num_retained {
            for id in &ids[..ids.len() - self.num_retained] {
                self.pointers.remove(&self.key(*id)).await?;
            }
        }
        Ok(())
    }
}

#[async_trait::async_trait]
impl CompletedCheckpointStore for ZkCheckpointStore {
    async fn add(&self, checkpoint: StoredCheckpoint) -> Result<(), HaError> {
        self.pointers
            .put(
                &self.key(checkpoint.checkpoint_id),
                "completedCheckpoint",
                checkpoint.metadata,
            )
            .await?;
        // Subsume: keep the newest `num_retained`. The checkpoint is stored now, so a failure
        // here is no checkpoint failure: it is logged, and the next add retries (it subsumes
        // every checkpoint beyond the retained ones, not only the one before).
        if let Err(e) = self.subsume().await {
            tracing::warn!(job_id = %self.job_id, checkpoint_id = checkpoint.checkpoint_id, error = %e,
                "cannot subsume older checkpoints; retried after the next checkpoint");
        }
        Ok(())
    }

    async fn checkpoint_ids(&self) -> Result<Vec<u64>, HaError> {
        let mut ids: Vec<u64> = Vec::new();
        // Damaged pointers are listed: `get` names the damage and the caller falls back to an
        // older checkpoint instead of failing recovery as a whole.
        for name in self.pointers.children(&self.dir()).await? {
            if let Ok(id) = name.parse::<u64>()
                && self.pointers.is_live(&self.key(id)).await?
            {
                ids.push(id);
            }
        }
        ids.sort_unstable();
        Ok(ids)
    }

    async fn get(&self, checkpoint_id: u64) -> Result<StoredCheckpoint, HaError> {
        match self.pointers.get(&self.key(checkpoint_id)).await? {
            Some(metadata) => Ok(StoredCheckpoint {
                checkpoint_id,
                metadata,
            }),
            None => Err(HaError::Corrupt {
                path: self.pointers.zk.path(&self.key(checkpoint_id)),
                message: "no such checkpoint".into(),
            }),
        }
    }

    async fn shutdown(&self, globally_terminal: bool) -> Result<(), HaError> {
        if globally_terminal {
            self.pointers.remove_tree(&self.dir()).await?;
            self.pointers
                .remove_if_empty(&format!("jobs/{}", self.job_id))
                .await?;
        }
        Ok(())
    }
}

/// `jobs/<jobId>/checkpoint_id_counter`: CAS on the znode version, fenced.
pub struct ZkCheckpointIdCounter {
    pointers: PointerStore,
    job_id: String,
}

impl ZkCheckpointIdCounter {
    pub fn new(pointers: PointerStore, job_id: &str) -> ZkCheckpointIdCounter {
        ZkCheckpointIdCounter {
            pointers,
            job_id: job_id.to_string(),
        }
    }

    fn path(&self) -> String {
        self.pointers
            .zk
            .path(&format!("jobs/{}/checkpoint_id_counter", self.job_id))
    }
}

/// Flink's `INITIAL_CHECKPOINT_ID`.
const INITIAL_CHECKPOINT_ID: u64 = 1;

#[async_trait::async_trait]
impl CheckpointIdCounter for ZkCheckpointIdCounter {
    async fn get_and_increment(&self) -> Result<u64, HaError> {
        self.pointers
            .zk
            .increment_counter(&self.path(), INITIAL_CHECKPOINT_ID, "checkpoint id counter")
            .await
    }

    async fn get(&self) -> Result<u64, HaError> {
        let zk = &self.pointers.zk;
        let path = self.path();
        match zk.client.get_data(&path).await {
            Ok((data, _)) => Ok(parse_counter(&path, &data)?.max(INITIAL_CHECKPOINT_ID)),
            Err(zk::Error::NoNode) => Ok(INITIAL_CHECKPOINT_ID),
            Err(e) => Err(zk.err("read the checkpoint id counter", e)),
        }
    }

    async fn shutdown(&self, globally_terminal: bool) -> Result<(), HaError> {
        if globally_terminal {
            let rel = format!("jobs/{}/checkpoint_id_counter", self.job_id);
            self.pointers.remove_tree(&rel).await?;
            self.pointers
                .remove_if_empty(&format!("jobs/{}", self.job_id))
                .await?;
        }
        Ok(())
    }
}

/// Per-job stores on one pointer store.
pub struct ZkCheckpointStoreFactory {
    pub(crate) pointers: PointerStore,
    pub(crate) num_retained: usize,
}

impl CheckpointStoreFactory for ZkCheckpointStoreFactory {
    fn checkpoint_store(&self, job_id: &str) -> Arc<dyn CompletedCheckpointStore> {
        Arc::new(ZkCheckpointStore::new(
            self.pointers.clone(),
            job_id,
            self.num_retained,
        ))
    }

    fn checkpoint_id_counter(&self, job_id: &str) -> Arc<dyn CheckpointIdCounter> {
        Arc::new(ZkCheckpointIdCounter::new(self.pointers.clone(), job_id))
    }
}
