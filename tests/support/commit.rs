//! The HA checkpoint commit's cost on the mini cluster's HDFS, for one HDFS client: what a job
//! master does when a checkpoint completes (`CompletedCheckpointStore::add` of a leader's fenced
//! stores: the metadata blob written atomically, then the fenced ZooKeeper multi that points at
//! it, then subsuming the checkpoint beyond the retained one). `tests/plain/hdfs_storage.rs`
//! prints it for both clients; `benches/failover.rs` may call [`ha_commit_latency`] too.
//!
//! It also counts the commits whose first `complete()` the NameNode answered false (the
//! DataNode's block report not in yet, so the client retried: libhdfs after 10 ms, hdfs-native
//! after 500 ms). The NameNode logs each such answer as `BLOCK* ... is COMMITTED but not
//! COMPLETE(...) in file <path>` (FSNamesystem, INFO, in the cluster's `minicluster.log`); the
//! commits write under a directory of their own, so the count is exact.

use std::collections::HashSet;
use std::fmt;
use std::time::{Duration, Instant};

use bytes::Bytes;
use yarnflow::ha::{HaServices, StoredCheckpoint};
use yarnflow::storage::HdfsClient;

use super::{MiniCluster, unique};

/// The size of the metadata blob of a small job's checkpoint.
const METADATA_BYTES: usize = 1024;

/// What [`ha_commit_latency`] measured.
#[derive(Debug, Clone)]
pub struct CommitStats {
    pub client: HdfsClient,
    /// Commits measured.
    pub n: usize,
    pub p50: Duration,
    pub p99: Duration,
    pub max: Duration,
    /// Commits whose first `complete()` the NameNode answered false.
    pub first_complete_false: usize,
}

impl fmt::Display for CommitStats {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let ms = |d: Duration| d.as_secs_f64() * 1000.0;
        write!(
            f,
            "HA checkpoint commit on HDFS ({:?}), {METADATA_BYTES} B x {}: p50 {:.1} ms, p99 {:.1} ms, max {:.1} ms; first complete() false: {} of {}",
            self.client,
            self.n,
            ms(self.p50),
            ms(self.p99),
            ms(self.max),
            self.first_complete_false,
            self.n
        )
    }
}

/// Commits `n` checkpoints of one job through a leader's fenced ZooKeeper HA stores on
/// `cluster`'s HDFS with `client`, each timed alone, and returns the figures.
pub async fn ha_commit_latency(cluster: &MiniCluster, client: HdfsClient, n: usize) -> CommitStats {
    assert!(n > 0, "measure at least one commit");
    // libhdfs: its jars and libjvm, as for the other tests.
    let _ = super::hdfs_store(cluster).await;
    let root = format!("/yarnflow-commit/{}", unique("commit"));
    let config = cluster.zk_ha_config("/yarnflow-commit", &unique("application"), &root);
    let cfg = yarnflow::ha::config::HaConfig::from_config(&config).unwrap();
    let blobs = yarnflow::storage::open_with(cluster.hdfs_uri(), client)
        .await
        .unwrap()
        .store;
    let ha = HaServices::zookeeper(&cfg, "commit-bench", blobs)
        .await
        .unwrap();
    let leadership = ha.election.acquire().await.unwrap();
    let leader = ha.for_leader(&leadership);
    let job = "job-commit";
    let store = leader.checkpoint_store_factory.checkpoint_store(job);
    let metadata = Bytes::from(vec![7u8; METADATA_BYTES]);
    // One commit first: directories and ZooKeeper parents exist from then on, as in a running
    // job (its first checkpoint is not the steady state).
    store
        .add(StoredCheckpoint {
            checkpoint_id: 0,
            metadata: metadata.clone(),
        })
        .await
        .unwrap();
    let log_from = log_len(cluster);
    let mut times = Vec::with_capacity(n);
    for id in 1..=n as u64 {
        let t = Instant::now();
        store
            .add(StoredCheckpoint {
                checkpoint_id: id,
                metadata: metadata.clone(),
            })
            .await
            .unwrap();
        times.push(t.elapsed());
    }
    times.sort();
    let first_complete_false = files_not_completed_at_once(cluster, log_from, &root);
    // Nothing left: the cluster is shared.
    let _ = leader.blob_store.delete_dir(&root).await;
    ha.close_and_cleanup_all_data().await.unwrap();
    CommitStats {
        client,
        n,
        p50: times[n / 2],
        p99: times[(n * 99 / 100).min(n - 1)],
        max: times[n - 1],
        first_complete_false,
    }
}

fn log_path(cluster: &MiniCluster) -> std::path::PathBuf {
    cluster.dir.join("minicluster.log")
}

fn log_len(cluster: &MiniCluster) -> usize {
    std::fs::metadata(log_path(cluster)).map_or(0, |m| m.len() as usize)
}

/// Files under `dir` whose `complete()` the NameNode answered false at least once, from the
/// NameNode's log lines after byte `from`.
fn files_not_completed_at_once(cluster: &MiniCluster, from: usize, dir: &str) -> usize {
    let log = std::fs::read(log_path(cluster)).unwrap_or_default();
    let log = String::from_utf8_lossy(log.get(from..).unwrap_or_default());
    let prefix = format!("{dir}/");
    let files: HashSet<&str> = log
        .lines()
        .filter(|l| l.contains("but not COMPLETE"))
        .filter_map(|l| l.split(" in file ").nth(1))
        .map(str::trim)
        .filter(|f| f.starts_with(&prefix))
        .collect();
    files.len()
}
