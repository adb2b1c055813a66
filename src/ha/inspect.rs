//! `yarnflow ha inspect` and `ha clean`: what a cluster id left in ZooKeeper and HA storage,
//! whether every pointer's blob is there and intact, the orphans both ways, and a safe removal
//! of a dead cluster's HA data.

use std::collections::BTreeSet;
use std::fmt::Write as _;
use std::sync::Arc;

use prost::Message;
use zookeeper_client as zk;

use super::HaError;
use super::config::HaConfig;
use super::zookeeper::proto::{LatchOwner, LeaderRecord, Pointer};
use super::zookeeper::{PointerStore, ZkCluster, ZkLeaderElection};
use crate::ha::{LeaderElection, uri_path};
use crate::storage::BlobStore;

/// One znode of the tree.
#[derive(Debug, Clone, serde::Serialize)]
pub struct NodeReport {
    /// Path relative to the cluster namespace.
    pub path: String,
    /// What the node holds, in words (owner, epoch, counter value, pointer state).
    pub detail: String,
    /// For pointers: the blob, its recorded size, and whether it is there and intact.
    pub blob: Option<BlobCheck>,
}

#[derive(Debug, Clone, serde::Serialize)]
pub struct BlobCheck {
    pub path: String,
    pub length: u64,
    pub exists: bool,
    pub checksum_ok: bool,
}

/// Everything `ha inspect` prints.
#[derive(Debug, Clone, serde::Serialize)]
pub struct InspectReport {
    pub quorum: String,
    pub namespace: String,
    pub blob_dir: String,
    pub nodes: Vec<NodeReport>,
    /// Pointers whose blob is missing.
    pub pointers_without_blobs: Vec<String>,
    /// Blobs in the cluster's storage directory no pointer names.
    pub blobs_without_pointers: Vec<String>,
    /// Latch owners currently contending (a live cluster has at least one).
    pub live_contenders: Vec<String>,
}

impl InspectReport {
    pub fn render(&self) -> String {
        let mut s = String::new();
        let _ = writeln!(s, "ZooKeeper {} {}", self.quorum, self.namespace);
        if self.nodes.is_empty() {
            let _ = writeln!(s, "  (no znodes)");
        }
        for n in &self.nodes {
            let _ = write!(s, "  {}", n.path);
            if !n.detail.is_empty() {
                let _ = write!(s, "  {}", n.detail);
            }
            if let Some(b) = &n.blob {
                let state = match (b.exists, b.checksum_ok) {
                    (false, _) => "MISSING",
                    (true, false) => "CORRUPT",
                    (true, true) => "ok",
                };
                let _ = write!(s, " -> {} ({} bytes) {state}", b.path, b.length);
            }
            let _ = writeln!(s);
        }
        let _ = writeln!(s, "HA storage {}", self.blob_dir);
        let _ = writeln!(
            s,
            "orphans: {} pointer(s) without blob, {} blob(s) without pointer",
            self.pointers_without_blobs.len(),
            self.blobs_without_pointers.len()
        );
        for p in &self.pointers_without_blobs {
            let _ = writeln!(s, "  pointer without blob: {p}");
        }
        for b in &self.blobs_without_pointers {
            let _ = writeln!(s, "  blob without pointer: {b}");
        }
        s
    }
}

/// Reads the tree under the cluster namespace and checks every pointer against storage.
pub async fn inspect(cfg: &HaConfig, blobs: Arc<dyn BlobStore>) -> Result<InspectReport, HaError> {
    let zk = ZkCluster::for_cluster(cfg).await?;
    let blob_dir = uri_path(&cfg.blob_dir_uri());
    let mut nodes = Vec::new();
    let mut pointed = BTreeSet::new();
    let mut pointers_without_blobs = Vec::new();
    let mut live_contenders = Vec::new();

    let mut stack = vec![zk.path("")];
    while let Some(path) = stack.pop() {
        let (data, _) = match zk.client.get_data(&path).await {
            Ok(r) => r,
            Err(zk::Error::NoNode) => continue,
            Err(e) => return Err(zk.err(&format!("read {path}"), e)),
        };
        let mut children = match zk.client.list_children(&path).await {
            Ok(c) => c,
            Err(zk::Error::NoNode) => Vec::new(),
            Err(e) => return Err(zk.err(&format!("list {path}"), e)),
        };
        children.sort();
        for c in children.iter().rev() {
            stack.push(format!("{path}/{c}"));
        }
        let rel = path
            .strip_prefix(&zk.namespace)
            .unwrap_or(&path)
            .trim_start_matches('/')
            .to_string();
        if rel.is_empty() {
            continue;
        }
        let (detail, blob) = describe(&rel, &data, &blobs, &mut live_contenders).await;
        if let Some(b) = &blob {
            pointed.insert(b.path.clone());
            if !b.exists {
                pointers_without_blobs.push(rel.clone());
            }
        }
        nodes.push(NodeReport {
            path: rel,
            detail,
            blob,
        });
    }

    let mut blobs_without_pointers = Vec::new();
    for meta in blobs.list(&blob_dir).await? {
        if !meta.is_dir && !pointed.contains(&meta.path) {
            blobs_without_pointers.push(meta.path);
        }
    }
    Ok(InspectReport {
        quorum: cfg.quorum.clone(),
        namespace: cfg.namespace(),
        blob_dir: cfg.blob_dir_uri(),
        nodes,
        pointers_without_blobs,
        blobs_without_pointers,
        live_contenders,
    })
}

async fn describe(
    rel: &str,
    data: &[u8],
    blobs: &Arc<dyn BlobStore>,
    live: &mut Vec<String>,
) -> (String, Option<BlobCheck>) {
    if rel.starts_with("leader/latch/") {
        let owner = LatchOwner::decode(data)
            .map(|o| o.owner)
            .unwrap_or_else(|_| "<unreadable>".into());
        live.push(owner.clone());
        return (format!("owner={owner}"), None);
    }
    if rel == "leader/connection_info" {
        return match LeaderRecord::decode(data) {
            Ok(r) => (
                format!("address={} epoch={} owner={}", r.address, r.epoch, r.owner),
                None,
            ),
            Err(_) => ("<unreadable leader record>".into(), None),
        };
    }
    if rel == "leader/epoch" || rel.ends_with("/checkpoint_id_counter") {
        return (format!("value={}", String::from_utf8_lossy(data)), None);
    }
    let is_pointer_path = rel.starts_with("jobgraphs/") || rel.contains("/checkpoints/");
    if !is_pointer_path || data.is_empty() {
        return (String::new(), None);
    }
    let Ok(p) = Pointer::decode(data) else {
        return ("<not a pointer>".into(), None);
    };
    let (exists, checksum_ok) = match blobs.read(&p.blob_path).await {
        Ok(bytes) => (
            true,
            bytes.len() as u64 == p.length && crc32c::crc32c(&bytes) == p.crc32c,
        ),
        Err(_) => (false, false),
    };
    let detail = if p.marked_for_deletion {
        format!("epoch={} MARKED FOR DELETION", p.writer_epoch)
    } else {
        format!("epoch={}", p.writer_epoch)
    };
    (
        detail,
        Some(BlobCheck {
            path: p.blob_path,
            length: p.length,
            exists,
            checksum_ok,
        }),
    )
}

/// Removes the HA data of a cluster that is no longer running: znodes (pointers in the safe
/// order), the HA blob directory and the cluster's job result store directory. Refuses while
/// any contender holds a latch node (an attempt is alive). Fenced like any leader: it takes the
/// latch first, so a cluster starting meanwhile cannot be cleaned from under it.
pub async fn clean(cfg: &HaConfig, blobs: Arc<dyn BlobStore>) -> Result<(), HaError> {
    let zk = ZkCluster::for_cluster(cfg).await?;
    let election = ZkLeaderElection::new(zk.clone(), "yarnflow-ha-clean", false);
    let live = election.contenders().await?;
    if !live.is_empty() {
        let owners: Vec<&str> = live.iter().map(|(_, o)| o.as_str()).collect();
        return Err(HaError::Config(format!(
            "refusing to clean {}: the cluster is alive (leader latch held by {})",
            cfg.namespace(),
            owners.join(", ")
        )));
    }
    let lease = tokio::time::timeout(std::time::Duration::from_secs(10), election.acquire())
        .await
        .map_err(|_| {
            HaError::Config(format!(
                "refusing to clean {}: another contender appeared",
                cfg.namespace()
            ))
        })??;
    let pointers = PointerStore::new(zk.clone(), blobs.clone(), &uri_path(&cfg.blob_dir_uri()));
    for top in ["jobgraphs", "jobs"] {
        pointers.remove_tree(top).await?;
    }
    blobs.delete_dir(&uri_path(&cfg.blob_dir_uri())).await?;
    blobs
        .delete_dir(&uri_path(&cfg.job_result_store_path))
        .await?;
    // Last: our own latch, then the leader subtree and the namespace node itself.
    lease.revoked.cancel();
    election.resign().await?;
    zk.remove_namespace().await?;
    Ok(())
}
