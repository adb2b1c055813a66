//! A store whose connection is made in the background: the first call waits for it. Lets a
//! process start libhdfs's JVM (the slowest part of an ApplicationMaster's start) while it does
//! other work, e.g. winning leadership and registering with the ResourceManager.

use std::sync::Arc;

use bytes::Bytes;
use futures::FutureExt;
use futures::future::{BoxFuture, Shared};

use super::{BlobMeta, BlobStore, StorageError};

type Connecting = Shared<BoxFuture<'static, Result<Arc<dyn BlobStore>, StorageError>>>;

pub struct DeferredStore {
    base: String,
    inner: Connecting,
}

impl std::fmt::Debug for DeferredStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DeferredStore")
            .field("base", &self.base)
            .finish()
    }
}

impl DeferredStore {
    /// Starts `connect` now (on the runtime) and returns at once; `base` is the store's URI
    /// prefix (what [`BlobStore::base_uri`] of the connected store will say).
    pub fn start<F>(base: &str, connect: F) -> DeferredStore
    where
        F: std::future::Future<Output = Result<Arc<dyn BlobStore>, StorageError>> + Send + 'static,
    {
        let task = tokio::spawn(connect);
        let what = base.to_string();
        let inner = async move {
            task.await.map_err(|e| StorageError::Io {
                path: what,
                message: format!("connecting failed: {e}"),
            })?
        }
        .boxed()
        .shared();
        DeferredStore {
            base: base.to_string(),
            inner,
        }
    }

    async fn store(&self) -> Result<Arc<dyn BlobStore>, StorageError> {
        self.inner.clone().await
    }
}

#[async_trait::async_trait]
impl BlobStore for DeferredStore {
    fn base_uri(&self) -> &str {
        &self.base
    }
    async fn write(&self, path: &str, data: Bytes) -> Result<(), StorageError> {
        self.store().await?.write(path, data).await
    }
    async fn read(&self, path: &str) -> Result<Bytes, StorageError> {
        self.store().await?.read(path).await
    }
    async fn delete(&self, path: &str) -> Result<(), StorageError> {
        self.store().await?.delete(path).await
    }
    async fn delete_dir(&self, path: &str) -> Result<(), StorageError> {
        self.store().await?.delete_dir(path).await
    }
    async fn rename(&self, from: &str, to: &str) -> Result<(), StorageError> {
        self.store().await?.rename(from, to).await
    }
    async fn list(&self, dir: &str) -> Result<Vec<BlobMeta>, StorageError> {
        self.store().await?.list(dir).await
    }
    async fn exists(&self, path: &str) -> Result<bool, StorageError> {
        self.store().await?.exists(path).await
    }
    async fn mkdirs(&self, path: &str) -> Result<(), StorageError> {
        self.store().await?.mkdirs(path).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::storage::local::LocalStore;

    #[tokio::test]
    async fn calls_wait_for_the_connection_and_errors_reach_every_caller() {
        let dir = std::env::temp_dir().join(format!("yarnflow-deferred-{}", std::process::id()));
        let path = dir.join("a").display().to_string();
        let store = DeferredStore::start("file://", async {
            tokio::time::sleep(std::time::Duration::from_millis(50)).await;
            Ok(Arc::new(LocalStore) as Arc<dyn BlobStore>)
        });
        store.write(&path, Bytes::from_static(b"x")).await.unwrap();
        assert_eq!(store.read(&path).await.unwrap(), Bytes::from_static(b"x"));
        let _ = std::fs::remove_dir_all(&dir);

        let broken = DeferredStore::start("hdfs://nn:1", async {
            Err(StorageError::Io {
                path: "hdfs://nn:1".into(),
                message: "cannot connect to HDFS".into(),
            })
        });
        for _ in 0..2 {
            let e = broken.exists("/x").await.unwrap_err().to_string();
            assert!(
                e.contains("hdfs://nn:1") && e.contains("cannot connect"),
                "{e}"
            );
        }
    }
}
