//! Leader election with an ephemeral-sequential latch (Curator's `LeaderLatch` recipe).
//!
//! Each contender creates `leader/latch/latch-<seq>` holding its owner name; the lowest sequence
//! leads. On a grant the leader CAS-increments `leader/epoch` (fenced by its latch node), draws a
//! fresh leader session id, and arms [`Fence`](super::Fence) so every later write checks the latch.
//!
//! Leadership ends (the grant's `revoked` token is cancelled) when
//! * the session expires or closes;
//! * the connection is lost and `tolerate-suspended-connections` is false (Flink's default): the
//!   latch node is then deleted once the connection returns, so a successor can lead;
//! * the connection is lost, tolerated, but not back within
//!   [`ZkCluster::tolerated_disconnection`] (half of what remains of the session after the
//!   client noticed the loss): the leader steps down *before* the server could expire its session
//!   and grant a successor, so even a tolerant leader never overlaps with the next one;
//! * the latch node disappears, e.g. because a successor [evicted](ZkLeaderElection::evict) it.
//!
//! A grant is watched by two tasks (session state, latch node) in the election's
//! [`TaskTracker`]; they end with the grant, and [`resign`](LeaderElection::resign) waits for
//! them.
//!
//! # Eviction
//! A successor that *knows* the owner of a latch node is dead — on YARN, attempt N+1 knows attempt
//! N's AM container has ended, because YARN only starts a new attempt after that — may delete that
//! node at once instead of waiting out the ZooKeeper session timeout. Should the owner in fact be
//! alive (a partitioned zombie), fencing keeps this safe: its latch node is gone, so every write
//! it attempts fails, and its watch on the node revokes its leadership.

use std::sync::Mutex;

use prost::Message;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use uuid::Uuid;
use zookeeper_client as zk;

use super::proto::{LatchOwner, LeaderRecord};
use super::{EPHEMERAL, EPHEMERAL_SEQUENTIAL, ZkCluster, is_terminal};
use crate::ha::{HaError, LeaderElection, Leadership};

const LATCH_DIR: &str = "leader/latch";
const EPOCH: &str = "leader/epoch";
pub(crate) const CONNECTION_INFO: &str = "leader/connection_info";

/// One contender (one JobManager process).
pub struct ZkLeaderElection {
    zk: ZkCluster,
    owner: String,
    tolerate_suspended: bool,
    /// Our current grant, if any.
    current: Mutex<Option<Grant>>,
}

/// One grant of leadership and what watches it.
struct Grant {
    latch: String,
    leadership: Leadership,
    /// The grant's guard tasks (see [`ZkLeaderElection::spawn_guard`]); closed, they end
    /// with the grant.
    guards: TaskTracker,
}

impl ZkLeaderElection {
    /// `owner` names this contender in its latch node (on YARN: the application attempt id).
    pub fn new(zk: ZkCluster, owner: &str, tolerate_suspended: bool) -> ZkLeaderElection {
        ZkLeaderElection {
            zk,
            owner: owner.to_string(),
            tolerate_suspended,
            current: Mutex::new(None),
        }
    }

    pub fn cluster(&self) -> &ZkCluster {
        &self.zk
    }

    /// Latch nodes in sequence order, with their owners.
    pub async fn contenders(&self) -> Result<Vec<(String, String)>, HaError> {
        let dir = self.zk.path(LATCH_DIR);
        let mut children = match self.zk.client.list_children(&dir).await {
            Ok(c) => c,
            Err(zk::Error::NoNode) => return Ok(Vec::new()),
            Err(e) => return Err(self.zk.err("list the leader latch", e)),
        };
        children.sort_by_key(|c| sequence(c));
        let mut out = Vec::new();
        for c in children {
            let path = format!("{dir}/{c}");
            match self.zk.client.get_data(&path).await {
                Ok((data, _)) => {
                    let owner = LatchOwner::decode(data.as_slice())
                        .map(|o| o.owner)
                        .unwrap_or_else(|_| "<unreadable>".into());
                    out.push((path, owner));
                }
                Err(zk::Error::NoNode) => {}
                Err(e) => return Err(self.zk.err("read a latch node", e)),
            }
        }
        Ok(out)
    }

    async fn create_latch(&self) -> Result<String, HaError> {
        let dir = self.zk.path(LATCH_DIR);
        self.zk.ensure_path(&dir).await?;
        let data = LatchOwner {
            owner: self.owner.clone(),
        }
        .encode_to_vec();
        let prefix = format!("{dir}/latch-");
        let (_, seq) = self
            .zk
            .client
            .create(&prefix, &data, &EPHEMERAL_SEQUENTIAL)
            .await
            .map_err(|e| self.zk.err("create a latch node", e))?;
        Ok(format!("{prefix}{seq}"))
    }

    /// Waits until `ours` is the lowest latch node.
    async fn wait_for_turn(&self, ours: &str) -> Result<(), HaError> {
        let dir = self.zk.path(LATCH_DIR);
        let name = ours.rsplit('/').next().unwrap_or(ours).to_string();
        loop {
            let mut children = self
                .zk
                .client
                .list_children(&dir)
                .await
                .map_err(|e| self.zk.err("list the leader latch", e))?;
            children.sort_by_key(|c| sequence(c));
            let Some(pos) = children.iter().position(|c| *c == name) else {
                return Err(HaError::NotLeader(format!(
                    "our latch node {ours} vanished while waiting (session expired or evicted)"
                )));
            };
            if pos == 0 {
                return Ok(());
            }
            // Watch only the predecessor: no herd effect when the leader goes.
            let pred = format!("{dir}/{}", children[pos - 1]);
            match self.zk.client.check_and_watch_stat(&pred).await {
                Ok((None, _)) => continue,
                Ok((Some(_), watcher)) => {
                    let mut state = self.zk.client.state_watcher();
                    tokio::select! {
                        _ = watcher.changed() => {}
                        s = state.changed() => {
                            if s.is_terminated() {
                                return Err(self.zk.err("wait for leadership", zk::Error::SessionExpired));
                            }
                        }
                    }
                }
                Err(e) => return Err(self.zk.err("watch the latch predecessor", e)),
            }
        }
    }

    /// CAS-increments `leader/epoch` in a multi-op that also checks our latch node.
    async fn next_epoch(&self) -> Result<u64, HaError> {
        let previous = self
            .zk
            .increment_counter(&self.zk.path(EPOCH), 0, "leader epoch")
            .await?;
        Ok(previous + 1)
    }

    /// Deletes the latch nodes owned by `owner` (not our own). Only call this when `owner` is
    /// known to be dead; see the module docs. Returns how many nodes were removed.
    pub async fn evict_owner(&self, owner: &str) -> Result<usize, HaError> {
        let ours = self
            .current
            .lock()
            .expect("lock")
            .as_ref()
            .map(|g| g.latch.clone());
        let mut n = 0;
        for (path, o) in self.contenders().await? {
            if o == owner && Some(&path) != ours.as_ref() {
                match self.zk.client.delete(&path, None).await {
                    Ok(()) | Err(zk::Error::NoNode) => {
                        tracing::info!(latch = %path, owner, "evicted the latch of a dead leader");
                        n += 1;
                    }
                    Err(e) => return Err(self.zk.err("evict a latch node", e)),
                }
            }
        }
        // Its published address too, so discovery says "no leader" now rather than when its
        // session expires (the next leader replaces the record anyway).
        let info = self.zk.path(CONNECTION_INFO);
        if let Ok((data, stat)) = self.zk.client.get_data(&info).await
            && stat.ephemeral_owner != self.zk.client.session_id().0
            && LeaderRecord::decode(data.as_slice()).is_ok_and(|r| r.owner == owner)
        {
            match self.zk.client.delete(&info, Some(stat.version)).await {
                Ok(()) | Err(zk::Error::NoNode) | Err(zk::Error::BadVersion) => {}
                Err(e) => return Err(self.zk.err("evict a leader record", e)),
            }
        }
        Ok(n)
    }

    /// Watches the session and our latch node; revokes the grant when either is lost, or when
    /// a tolerated disconnection outlasts [`ZkCluster::tolerated_disconnection`]. Returns the
    /// (closed) tracker of the two tasks.
    fn spawn_guard(&self, latch: String, leadership: Leadership) -> TaskTracker {
        let guards = TaskTracker::new();
        let zk = self.zk.clone();
        let tolerate = self.tolerate_suspended;
        let budget = zk.tolerated_disconnection();
        // Requests wait while the client reconnects, so the latch is watched by its own task
        // and the session state below is never stuck behind a pending call.
        let latch_gone = CancellationToken::new();
        guards.spawn(watch_latch(
            zk.client.clone(),
            latch.clone(),
            latch_gone.clone(),
            leadership.revoked.clone(),
        ));
        guards.spawn(async move {
            let mut state = zk.client.state_watcher();
            let mut deadline: Option<tokio::time::Instant> = None;
            let reason = loop {
                let timer = async {
                    match deadline {
                        Some(d) => tokio::time::sleep_until(d).await,
                        None => std::future::pending().await,
                    }
                };
                tokio::select! {
                    _ = leadership.revoked.cancelled() => return,
                    _ = latch_gone.cancelled() => break "our latch node was deleted (evicted or expired)".to_string(),
                    _ = timer => break format!(
                        "ZooKeeper connection suspended for {budget:?}, longer than a leader may \
                         tolerate before its session could expire"
                    ),
                    s = state.changed() => match s {
                        zk::SessionState::Expired | zk::SessionState::Closed | zk::SessionState::AuthFailed => {
                            break "ZooKeeper session ended".to_string();
                        }
                        zk::SessionState::Disconnected if !tolerate => {
                            break "ZooKeeper connection suspended (tolerate-suspended-connections: false)".to_string();
                        }
                        zk::SessionState::Disconnected => {
                            tracing::warn!(epoch = leadership.epoch, tolerated = ?budget,
                                "ZooKeeper connection suspended; keeping leadership meanwhile");
                            deadline.get_or_insert(tokio::time::Instant::now() + budget);
                        }
                        _ => {
                            if deadline.take().is_some() {
                                tracing::info!(epoch = leadership.epoch, "ZooKeeper connection back; leadership kept");
                            }
                        }
                    },
                }
            };
            zk.fence.clear_if(&latch);
            leadership.fence.clear_if(&latch);
            tracing::warn!(epoch = leadership.epoch, reason, "leadership revoked");
            leadership.revoked.cancel();
            // Give the latch up so a successor can lead (it may already be gone).
            for _ in 0..100 {
                match zk.client.delete(&latch, None).await {
                    Ok(()) | Err(zk::Error::NoNode) => break,
                    Err(e) if is_terminal(&e) => break,
                    Err(_) => tokio::time::sleep(std::time::Duration::from_millis(200)).await,
                }
            }
        });
        guards.close();
        guards
    }
}

/// Cancels `gone` when the latch node disappears; stops when `stop` is cancelled or the session
/// ends (the state watcher reports that).
async fn watch_latch(
    client: zk::Client,
    latch: String,
    gone: CancellationToken,
    stop: CancellationToken,
) {
    loop {
        let fetched = tokio::select! {
            _ = stop.cancelled() => return,
            r = client.check_and_watch_stat(&latch) => r,
        };
        match fetched {
            Ok((Some(_), watcher)) => {
                tokio::select! {
                    _ = stop.cancelled() => return,
                    _ = watcher.changed() => {}
                }
            }
            Ok((None, _)) => {
                gone.cancel();
                return;
            }
            Err(e) if is_terminal(&e) => return,
            Err(_) => tokio::time::sleep(std::time::Duration::from_millis(200)).await,
        }
    }
}

#[async_trait::async_trait]
impl LeaderElection for ZkLeaderElection {
    async fn acquire(&self) -> Result<Leadership, HaError> {
        let latch = self.create_latch().await?;
        if let Err(e) = self.wait_for_turn(&latch).await {
            let _ = self.zk.client.delete(&latch, None).await;
            return Err(e);
        }
        self.zk.fence.set(latch.clone(), 0);
        let epoch = match self.next_epoch().await {
            Ok(e) => e,
            Err(e) => {
                self.zk.fence.clear_if(&latch);
                let _ = self.zk.client.delete(&latch, None).await;
                return Err(e);
            }
        };
        self.zk.fence.set(latch.clone(), epoch);
        let leadership = Leadership {
            session_id: Uuid::new_v4(),
            epoch,
            revoked: CancellationToken::new(),
            fence: self.zk.fence.snapshot(),
        };
        tracing::info!(epoch, session_id = %leadership.session_id, owner = %self.owner, "leadership granted");
        let guards = self.spawn_guard(latch.clone(), leadership.clone());
        *self.current.lock().expect("lock") = Some(Grant {
            latch,
            leadership: leadership.clone(),
            guards,
        });
        Ok(leadership)
    }

    async fn publish(&self, leadership: &Leadership, address: &str) -> Result<(), HaError> {
        if leadership.revoked.is_cancelled() || leadership.fence.epoch() != Some(leadership.epoch) {
            return Err(HaError::NotLeader(format!(
                "cannot publish {address}: leadership of epoch {} is over",
                leadership.epoch
            )));
        }
        let zk = self.zk.with_fence(leadership.fence.clone());
        let path = zk.path(CONNECTION_INFO);
        let record = LeaderRecord {
            address: address.to_string(),
            session_id: leadership.session_id.to_string(),
            epoch: leadership.epoch,
            owner: self.owner.clone(),
        }
        .encode_to_vec();
        loop {
            let existing = match zk.client.check_stat(&path).await {
                Ok(s) => s,
                Err(e) => return Err(zk.err("read connection_info", e)),
            };
            let mut w = zk.fenced_writer()?;
            if let Some(stat) = existing {
                // A predecessor's record (its session may linger): replace it.
                w.add_delete(&path, Some(stat.version))
                    .map_err(|e| zk.err("publish", e))?;
            }
            w.add_create(&path, &record, &EPHEMERAL)
                .map_err(|e| zk.err("publish", e))?;
            match zk.try_commit("publish the leader address", w).await {
                Ok(_) => return Ok(()),
                Err(f) if f.is_race() && !leadership.revoked.is_cancelled() => {
                    // Raced with a deletion or re-creation: look again.
                    tokio::time::sleep(std::time::Duration::from_millis(20)).await;
                }
                Err(f) => return Err(f.into_error()),
            }
        }
    }

    async fn resign(&self) -> Result<(), HaError> {
        let current = self.current.lock().expect("lock").take();
        if let Some(Grant {
            latch,
            leadership,
            guards,
        }) = current
        {
            leadership.revoked.cancel();
            let zk = self.zk.with_fence(leadership.fence.clone());
            if let Ok(mut w) = zk.fenced_writer() {
                let path = zk.path(CONNECTION_INFO);
                if let Ok(Some(stat)) = zk.client.check_stat(&path).await
                    && stat.ephemeral_owner == zk.client.session_id().0
                {
                    let _ = w.add_delete(&path, None);
                    let _ = zk.commit("withdraw connection_info", w).await;
                }
            }
            self.zk.fence.clear_if(&latch);
            leadership.fence.clear_if(&latch);
            let deleted = match self.zk.client.delete(&latch, None).await {
                Ok(()) | Err(zk::Error::NoNode) => Ok(()),
                Err(e) => Err(self.zk.err("delete our latch node", e)),
            };
            // The guards end on the revocation above; wait until they have.
            guards.wait().await;
            deleted?;
            tracing::info!(epoch = leadership.epoch, "leadership resigned");
        }
        Ok(())
    }

    async fn evict(&self, owner: &str) -> Result<usize, HaError> {
        self.evict_owner(owner).await
    }
}

fn sequence(name: &str) -> i64 {
    name.rsplit('-')
        .next()
        .and_then(|s| s.parse().ok())
        .unwrap_or(i64::MAX)
}
