//! Service discovery: watch `leader/connection_info`; every change, and "no leader", reaches the
//! watchers.

use prost::Message;
use tokio::sync::watch;
use zookeeper_client as zk;

use super::ZkCluster;
use super::election::CONNECTION_INFO;
use super::proto::LeaderRecord;
use crate::ha::{LeaderInfo, LeaderRetrieval};

/// Follows the published leader of one cluster id until dropped.
pub struct ZkLeaderRetrieval {
    rx: watch::Receiver<Option<LeaderInfo>>,
    stop: tokio_util::sync::DropGuard,
}

impl ZkLeaderRetrieval {
    pub fn start(zk: ZkCluster) -> ZkLeaderRetrieval {
        let (tx, rx) = watch::channel(None);
        let token = tokio_util::sync::CancellationToken::new();
        let stop = token.clone().drop_guard();
        tokio::spawn(async move {
            let path = zk.path(CONNECTION_INFO);
            let mut state = zk.client.state_watcher();
            loop {
                let watcher = match zk.client.get_and_watch_data(&path).await {
                    Ok((data, _, w)) => {
                        let info = LeaderRecord::decode(data.as_slice()).ok().and_then(|r| {
                            Some(LeaderInfo {
                                address: r.address,
                                session_id: r.session_id.parse().ok()?,
                                epoch: r.epoch,
                            })
                        });
                        tx.send_replace(info);
                        Some(w)
                    }
                    Err(zk::Error::NoNode) => {
                        tx.send_replace(None);
                        match zk.client.check_and_watch_stat(&path).await {
                            Ok((None, w)) => Some(w),
                            Ok((Some(_), _)) => continue,
                            Err(_) => None,
                        }
                    }
                    Err(_) => {
                        // Connection trouble: nobody can vouch for a leader now.
                        tx.send_replace(None);
                        None
                    }
                };
                tokio::select! {
                    _ = token.cancelled() => return,
                    _ = async {
                        match watcher {
                            Some(w) => { w.changed().await; }
                            None => tokio::time::sleep(std::time::Duration::from_millis(500)).await,
                        }
                    } => {}
                    s = state.changed() => {
                        if s.is_terminated() {
                            tx.send_replace(None);
                            return;
                        }
                    }
                }
            }
        });
        ZkLeaderRetrieval { rx, stop }
    }
}

impl LeaderRetrieval for ZkLeaderRetrieval {
    fn watch(&self) -> watch::Receiver<Option<LeaderInfo>> {
        let _ = &self.stop;
        self.rx.clone()
    }
}
