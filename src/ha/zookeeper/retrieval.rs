//! Service discovery: watch `leader/connection_info`; every change, and "no leader", reaches the
//! watchers.
//!
//! ```text
//!   reader task ── get_and_watch_data(connection_info) ──▶ latest record ─┐
//!                                                                         ├─▶ watch::Sender
//!   state task  ── session state (connected / suspended / ended) ─────────┘   Option<LeaderInfo>
//! ```
//!
//! While the connection is suspended nobody can vouch for the leader: with Flink's default
//! (`tolerate-suspended-connections: false`, its `ON_SUSPENDED_CONNECTION` clearance policy) the
//! watchers see "no leader" until the connection is back; when tolerant, only the end of the
//! session clears the leader (`ON_LOST_CONNECTION`).
//!
//! When the session ends for good (expired after a ZooKeeper outage longer than the session
//! timeout) the retrieval opens a new session and goes on following, so TaskManagers survive
//! the outage. Its task belongs to the retrieval's [`TaskTracker`]: dropping the retrieval stops
//! it, and [`ZkLeaderRetrieval::stop`] also waits until it is gone.

use prost::Message;
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use zookeeper_client as zk;

use super::election::CONNECTION_INFO;
use super::proto::LeaderRecord;
use super::{ZkCluster, is_terminal};
use crate::ha::{LeaderInfo, LeaderRetrieval};

/// Follows the published leader of one cluster id until dropped or stopped.
pub struct ZkLeaderRetrieval {
    rx: watch::Receiver<Option<LeaderInfo>>,
    /// Cancels both tasks when the retrieval is dropped.
    stop: tokio_util::sync::DropGuard,
    /// The reader and state tasks (closed: nothing is added after the start).
    tasks: TaskTracker,
}

impl ZkLeaderRetrieval {
    /// Follows the leader, clearing it while the connection is suspended (Flink's default).
    pub fn start(zk: ZkCluster) -> ZkLeaderRetrieval {
        ZkLeaderRetrieval::start_with(zk, false)
    }

    /// Follows the leader; `tolerate_suspended` (the value of
    /// `high-availability.zookeeper.client.tolerate-suspended-connections`) keeps the last known
    /// leader through a suspended connection, clearing it only when the session ends.
    pub fn start_with(zk: ZkCluster, tolerate_suspended: bool) -> ZkLeaderRetrieval {
        let (tx, rx) = watch::channel(None);
        let token = CancellationToken::new();
        let stop = token.clone().drop_guard();
        let tasks = TaskTracker::new();
        tasks.spawn(follow(zk, tolerate_suspended, tx, token));
        tasks.close();
        ZkLeaderRetrieval { rx, stop, tasks }
    }

    /// Stops following the leader and waits until both tasks have ended. Watchers then see
    /// no more changes.
    pub async fn stop(&self) {
        self.stop.token().cancel();
        self.tasks.wait().await;
    }
}

/// Follows the leader on `zk`'s session and, when that session ends (ZooKeeper unreachable
/// for longer than the session timeout), on a new one: a TaskManager outlives a ZooKeeper
/// outage and finds the leader once it is back. Watchers see "no leader" in between.
async fn follow(
    mut zk: ZkCluster,
    tolerate_suspended: bool,
    tx: watch::Sender<Option<LeaderInfo>>,
    stop: CancellationToken,
) {
    loop {
        follow_session(zk.clone(), tolerate_suspended, &tx, &stop).await;
        tx.send_replace(None);
        if stop.is_cancelled() {
            return;
        }
        tracing::warn!(quorum = %zk.quorum, "ZooKeeper session ended; following the leader on a new session");
        let mut backoff = RECONNECT_BACKOFF;
        zk = loop {
            let connected = tokio::select! {
                _ = stop.cancelled() => return,
                r = zk.reconnect() => r,
            };
            match connected {
                Ok(z) => break z,
                Err(e) => {
                    tracing::warn!(error = %e, retry_in_ms = backoff.as_millis() as u64, "cannot reach ZooKeeper yet");
                    tokio::select! {
                        _ = stop.cancelled() => return,
                        _ = tokio::time::sleep(backoff) => {}
                    }
                    backoff = (backoff * 2).min(MAX_RECONNECT_BACKOFF);
                }
            }
        };
        tracing::info!(quorum = %zk.quorum, "ZooKeeper session re-established");
    }
}

/// First and longest pause between attempts to open a new session.
const RECONNECT_BACKOFF: std::time::Duration = std::time::Duration::from_millis(500);
const MAX_RECONNECT_BACKOFF: std::time::Duration = std::time::Duration::from_secs(10);

/// Publishes the leader record as seen on one session until that session ends or `stop`.
async fn follow_session(
    zk: ZkCluster,
    tolerate_suspended: bool,
    tx: &watch::Sender<Option<LeaderInfo>>,
    stop: &CancellationToken,
) {
    let session_stop = stop.child_token();
    let (record_tx, mut record_rx) = watch::channel(None);
    let reader = read_records(zk.clone(), record_tx, session_stop.clone());
    let states = async {
        let mut state = zk.client.state_watcher();
        let mut suspended = false;
        loop {
            tokio::select! {
                _ = session_stop.cancelled() => return,
                r = record_rx.changed() => if r.is_err() { return },
                s = state.changed() => match s {
                    s if s.is_terminated() => return,
                    zk::SessionState::Disconnected => suspended = true,
                    _ => suspended = false,
                },
            }
            let visible = if suspended && !tolerate_suspended {
                None
            } else {
                record_rx.borrow().clone()
            };
            tx.send_if_modified(|current| {
                let changed = *current != visible;
                *current = visible;
                changed
            });
        }
    };
    tokio::join!(reader, async {
        states.await;
        // The reader ends with the session anyway; make sure it does not outlive us.
        session_stop.cancel();
    });
}

/// Keeps `out` equal to the content of `connection_info` (`None`: absent or unreadable).
async fn read_records(
    zk: ZkCluster,
    out: watch::Sender<Option<LeaderInfo>>,
    stop: CancellationToken,
) {
    let path = zk.path(CONNECTION_INFO);
    loop {
        let fetched = tokio::select! {
            _ = stop.cancelled() => return,
            r = zk.client.get_and_watch_data(&path) => r,
        };
        let watcher = match fetched {
            Ok((data, _, w)) => {
                let info = decode(&data);
                if info.is_none() {
                    tracing::warn!(znode = %path, "unreadable leader record; treating it as no leader");
                }
                out.send_replace(info);
                w
            }
            Err(zk::Error::NoNode) => {
                out.send_replace(None);
                let checked = tokio::select! {
                    _ = stop.cancelled() => return,
                    r = zk.client.check_and_watch_stat(&path) => r,
                };
                match checked {
                    Ok((None, w)) => w,
                    Ok((Some(_), _)) => continue,
                    Err(e) if is_terminal(&e) => return,
                    Err(_) => {
                        tokio::time::sleep(std::time::Duration::from_millis(200)).await;
                        continue;
                    }
                }
            }
            Err(e) if is_terminal(&e) => return,
            Err(_) => {
                tokio::time::sleep(std::time::Duration::from_millis(200)).await;
                continue;
            }
        };
        tokio::select! {
            _ = stop.cancelled() => return,
            _ = watcher.changed() => {}
        }
    }
}

fn decode(data: &[u8]) -> Option<LeaderInfo> {
    let r = LeaderRecord::decode(data).ok()?;
    Some(LeaderInfo {
        address: r.address,
        session_id: r.session_id.parse().ok()?,
        epoch: r.epoch,
    })
}

impl LeaderRetrieval for ZkLeaderRetrieval {
    fn watch(&self) -> watch::Receiver<Option<LeaderInfo>> {
        let _ = &self.stop;
        self.rx.clone()
    }
}
