//! Embedded HA (`high-availability.type: none`): one process, always the leader (epoch 1), job
//! graphs and checkpoints on a local directory, counters in memory. The same seams as ZooKeeper
//! HA, so local mode and unit tests run the code paths of a real deployment.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use bytes::Bytes;
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;
use uuid::Uuid;

use super::job_result_store::FileJobResultStore;
use super::{
    CheckpointIdCounter, CheckpointStoreFactory, CompletedCheckpointStore, HaError, HaServices,
    JobGraphStore, LeaderElection, LeaderInfo, LeaderRetrieval, Leadership, StoredCheckpoint,
};
use crate::storage::BlobStore;

/// Always grants leadership, once per process (epoch 1).
pub struct EmbeddedElection {
    grant: Leadership,
    published: watch::Sender<Option<LeaderInfo>>,
}

#[async_trait::async_trait]
impl LeaderElection for EmbeddedElection {
    async fn acquire(&self) -> Result<Leadership, HaError> {
        Ok(self.grant.clone())
    }

    async fn publish(&self, leadership: &Leadership, address: &str) -> Result<(), HaError> {
        if leadership.revoked.is_cancelled() {
            return Err(HaError::NotLeader("leadership was resigned".into()));
        }
        self.published.send_replace(Some(LeaderInfo {
            address: address.to_string(),
            session_id: leadership.session_id,
            epoch: leadership.epoch,
        }));
        Ok(())
    }

    async fn resign(&self) -> Result<(), HaError> {
        self.grant.revoked.cancel();
        self.published.send_replace(None);
        Ok(())
    }
}

struct EmbeddedRetrieval(watch::Receiver<Option<LeaderInfo>>);

impl LeaderRetrieval for EmbeddedRetrieval {
    fn watch(&self) -> watch::Receiver<Option<LeaderInfo>> {
        self.0.clone()
    }
}

/// Blobs at `<dir>/<key>`: no pointers needed when one process owns everything.
struct DirStore {
    blobs: Arc<dyn BlobStore>,
    dir: String,
}

impl DirStore {
    fn path(&self, key: &str) -> String {
        format!("{}/{key}", self.dir)
    }
}

struct EmbeddedJobGraphs(DirStore);

#[async_trait::async_trait]
impl JobGraphStore for EmbeddedJobGraphs {
    async fn put(&self, job_id: &str, graph: Bytes) -> Result<(), HaError> {
        Ok(self
            .0
            .blobs
            .write(&self.0.path(&format!("jobgraphs/{job_id}")), graph)
            .await?)
    }

    async fn get(&self, job_id: &str) -> Result<Option<Bytes>, HaError> {
        match self
            .0
            .blobs
            .read(&self.0.path(&format!("jobgraphs/{job_id}")))
            .await
        {
            Ok(b) => Ok(Some(b)),
            Err(e) if e.is_not_found() => Ok(None),
            Err(e) => Err(e.into()),
        }
    }

    async fn job_ids(&self) -> Result<Vec<String>, HaError> {
        Ok(self
            .0
            .blobs
            .list(&self.0.path("jobgraphs"))
            .await?
            .into_iter()
            .filter(|m| !m.is_dir)
            .filter_map(|m| m.path.rsplit('/').next().map(str::to_string))
            .filter(|n| !n.starts_with('.'))
            .collect())
    }

    async fn remove(&self, job_id: &str) -> Result<(), HaError> {
        Ok(self
            .0
            .blobs
            .delete(&self.0.path(&format!("jobgraphs/{job_id}")))
            .await?)
    }
}

struct EmbeddedCheckpoints {
    store: DirStore,
    job_id: String,
    num_retained: usize,
}

impl EmbeddedCheckpoints {
    fn dir(&self) -> String {
        self.store
            .path(&format!("jobs/{}/checkpoints", self.job_id))
    }
}

impl EmbeddedCheckpoints {
    /// Deletes the oldest checkpoints beyond `num_retained`.
    async fn subsume(&self) -> Result<(), HaError> {
        let ids = self.checkpoint_ids().await?;
        if ids.len() > self.num_retained {
            for id in &ids[..ids.len() - self.num_retained] {
                self.store
                    .blobs
                    .delete(&format!("{}/{id:019}", self.dir()))
                    .await?;
            }
        }
        Ok(())
    }
}

#[async_trait::async_trait]
impl CompletedCheckpointStore for EmbeddedCheckpoints {
    async fn add(&self, checkpoint: StoredCheckpoint) -> Result<(), HaError> {
        let path = format!("{}/{:019}", self.dir(), checkpoint.checkpoint_id);
        self.store.blobs.write(&path, checkpoint.metadata).await?;
        // Stored; a failed subsumption is no checkpoint failure (the next add retries it).
        if let Err(e) = self.subsume().await {
            tracing::warn!(job_id = %self.job_id, error = %e, "cannot subsume older checkpoints; retried after the next checkpoint");
        }
        Ok(())
    }

    async fn checkpoint_ids(&self) -> Result<Vec<u64>, HaError> {
        let mut ids: Vec<u64> = self
            .store
            .blobs
            .list(&self.dir())
            .await?
            .into_iter()
            .filter_map(|m| m.path.rsplit('/').next().and_then(|n| n.parse().ok()))
            .collect();
        ids.sort_unstable();
        Ok(ids)
    }

    async fn get(&self, checkpoint_id: u64) -> Result<StoredCheckpoint, HaError> {
        let path = format!("{}/{checkpoint_id:019}", self.dir());
        match self.store.blobs.read(&path).await {
            Ok(metadata) => Ok(StoredCheckpoint {
                checkpoint_id,
                metadata,
            }),
            Err(e) => Err(HaError::Corrupt {
                path,
                message: e.to_string(),
            }),
        }
    }

    async fn shutdown(&self, globally_terminal: bool) -> Result<(), HaError> {
        if globally_terminal {
            self.store
                .blobs
                .delete_dir(&self.store.path(&format!("jobs/{}", self.job_id)))
                .await?;
        }
        Ok(())
    }
}

#[derive(Default)]
struct EmbeddedCounter(Mutex<u64>);

#[async_trait::async_trait]
impl CheckpointIdCounter for EmbeddedCounter {
    async fn get_and_increment(&self) -> Result<u64, HaError> {
        let mut v = self.0.lock().expect("counter lock");
        *v = (*v).max(1);
        let id = *v;
        *v += 1;
        Ok(id)
    }

    async fn get(&self) -> Result<u64, HaError> {
        Ok((*self.0.lock().expect("counter lock")).max(1))
    }

    async fn shutdown(&self, _globally_terminal: bool) -> Result<(), HaError> {
        Ok(())
    }
}

struct EmbeddedFactory {
    blobs: Arc<dyn BlobStore>,
    dir: String,
    num_retained: usize,
    counters: Mutex<HashMap<String, Arc<EmbeddedCounter>>>,
}

impl CheckpointStoreFactory for EmbeddedFactory {
    fn checkpoint_store(&self, job_id: &str) -> Arc<dyn CompletedCheckpointStore> {
        Arc::new(EmbeddedCheckpoints {
            store: DirStore {
                blobs: self.blobs.clone(),
                dir: self.dir.clone(),
            },
            job_id: job_id.to_string(),
            num_retained: self.num_retained.max(1),
        })
    }

    fn checkpoint_id_counter(&self, job_id: &str) -> Arc<dyn CheckpointIdCounter> {
        self.counters
            .lock()
            .expect("counters lock")
            .entry(job_id.to_string())
            .or_default()
            .clone()
    }
}

impl HaServices {
    /// Embedded HA on `blobs`, everything under the directory `dir` (a path in `blobs`).
    pub fn embedded(blobs: Arc<dyn BlobStore>, dir: &str, num_retained: usize) -> HaServices {
        let dir = dir.trim_end_matches('/').to_string();
        let (tx, rx) = watch::channel(None);
        HaServices {
            election: Arc::new(EmbeddedElection {
                grant: Leadership {
                    session_id: Uuid::new_v4(),
                    epoch: 1,
                    revoked: CancellationToken::new(),
                    fence: Default::default(),
                },
                published: tx,
            }),
            retrieval: Arc::new(EmbeddedRetrieval(rx)),
            job_graphs: Arc::new(EmbeddedJobGraphs(DirStore {
                blobs: blobs.clone(),
                dir: dir.clone(),
            })),
            job_results: Arc::new(FileJobResultStore::new(
                blobs.clone(),
                &format!("{dir}/job-result-store"),
                true,
            )),
            checkpoint_store_factory: Arc::new(EmbeddedFactory {
                blobs: blobs.clone(),
                dir,
                num_retained,
                counters: Mutex::new(HashMap::new()),
            }),
            blob_store: blobs,
            zookeeper: None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::storage::local::LocalStore;

    #[tokio::test]
    async fn always_leader_and_stores_round_trip() {
        let dir = std::env::temp_dir().join(format!("yarnflow-embedded-{}", std::process::id()));
        let d = dir.display().to_string();
        let ha = HaServices::embedded(Arc::new(LocalStore), &d, 1);
        let l = ha.election.acquire().await.unwrap();
        assert_eq!(l.epoch, 1);
        let mut w = ha.retrieval.watch();
        ha.election.publish(&l, "127.0.0.1:1").await.unwrap();
        w.changed().await.unwrap();
        assert_eq!(w.borrow().as_ref().unwrap().address, "127.0.0.1:1");

        ha.job_graphs
            .put("j", Bytes::from_static(b"g"))
            .await
            .unwrap();
        assert_eq!(
            ha.job_graphs.job_ids().await.unwrap(),
            vec!["j".to_string()]
        );
        let cps = ha.checkpoint_store_factory.checkpoint_store("j");
        let counter = ha.checkpoint_store_factory.checkpoint_id_counter("j");
        for _ in 0..3 {
            let id = counter.get_and_increment().await.unwrap();
            cps.add(StoredCheckpoint {
                checkpoint_id: id,
                metadata: Bytes::from(id.to_string()),
            })
            .await
            .unwrap();
        }
        assert_eq!(cps.checkpoint_ids().await.unwrap(), vec![3]);
        assert_eq!(cps.get(3).await.unwrap().metadata, Bytes::from("3"));
        cps.shutdown(true).await.unwrap();
        ha.job_graphs.remove("j").await.unwrap();
        assert!(ha.job_graphs.job_ids().await.unwrap().is_empty());
        let _ = std::fs::remove_dir_all(&dir);
    }
}
