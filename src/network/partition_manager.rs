//! The TaskManager's registry of the result partitions its producers write (Flink's
//! `ResultPartitionManager`): where a partition request, remote or local, finds its
//! subpartition. A request may come before its producer registers; it waits up to the request
//! timeout.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::sync::Notify;

use super::error::NetworkError;
use super::ids::{ChannelId, ResultPartitionId};
use super::partition::ResultSubpartition;

#[derive(Default)]
struct Inner {
    partitions: Mutex<HashMap<ResultPartitionId, Vec<Arc<ResultSubpartition>>>>,
    registered: Notify,
}

/// Cheap to clone; every clone is the same registry.
#[derive(Clone, Default)]
pub(crate) struct ResultPartitionManager {
    inner: Arc<Inner>,
}

impl ResultPartitionManager {
    fn lock(
        &self,
    ) -> std::sync::MutexGuard<'_, HashMap<ResultPartitionId, Vec<Arc<ResultSubpartition>>>> {
        self.inner
            .partitions
            .lock()
            .unwrap_or_else(|p| p.into_inner())
    }

    /// Registers a new partition; partitions fully consumed or released are forgotten first.
    pub(crate) fn register(
        &self,
        id: ResultPartitionId,
        subpartitions: Vec<Arc<ResultSubpartition>>,
    ) -> Result<(), NetworkError> {
        let mut map = self.lock();
        map.retain(|_, subs| !subs.iter().all(|s| s.is_disposable()));
        if map.contains_key(&id) {
            return Err(NetworkError::DuplicatePartition(id));
        }
        map.insert(id, subpartitions);
        drop(map);
        self.inner.registered.notify_waiters();
        Ok(())
    }

    fn lookup(&self, channel: &ChannelId) -> Option<Result<Arc<ResultSubpartition>, NetworkError>> {
        let map = self.lock();
        let subs = map.get(&channel.partition)?;
        Some(
            subs.get(channel.consumer_subtask as usize)
                .cloned()
                .ok_or_else(|| NetworkError::Released(channel.clone())),
        )
    }

    /// The subpartition for `channel`, waiting up to `timeout` for its producer to register.
    pub(crate) async fn subpartition(
        &self,
        channel: &ChannelId,
        timeout: Duration,
    ) -> Result<Arc<ResultSubpartition>, NetworkError> {
        let deadline = tokio::time::Instant::now() + timeout;
        loop {
            let notified = self.inner.registered.notified();
            tokio::pin!(notified);
            notified.as_mut().enable();
            if let Some(found) = self.lookup(channel) {
                return found;
            }
            if tokio::time::timeout_at(deadline, notified).await.is_err() {
                return Err(NetworkError::PartitionNotFound {
                    partition: channel.partition.clone(),
                    waited_ms: timeout.as_millis() as u64,
                });
            }
        }
    }
}
