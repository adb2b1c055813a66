//! HDFS through hdfs-native, a pure-Rust client of the NameNode and DataNode protocols: the
//! JVM-free backend (`storage.hdfs.client: native`; the default of a `--no-default-features`
//! build). No JVM, no Hadoop jars, no `CLASSPATH`.
//!
//! The client reads `core-site.xml` / `hdfs-site.xml` from `HADOOP_CONF_DIR` (else
//! `$HADOOP_HOME/etc/hadoop`) for nameservices, Kerberos and the like; the NameNode itself comes
//! from the URI we are given, so a container needs no configuration to reach it. The user is
//! `HADOOP_USER_NAME` (else the OS user), as for libhdfs.
//!
//! Semantics match `hdfs.rs` call for call (stat before read/delete/rename, temporary file +
//! rename for writes), so the two backends are interchangeable under [`BlobStore`]. hdfs-native
//! reports Java exceptions by class name, which we classify.
//!
//! Known cost: when the NameNode's first `complete()` of a closed file answers false (the
//! DataNode's block report has not arrived), hdfs-native retries after a fixed 500 ms (libhdfs:
//! `hdfs.rs` sets 10 ms); the crate has no option for it yet.

use std::time::Duration;

use bytes::Bytes;
use hdfs_native::{Client, ClientBuilder, HdfsError, WriteOptions};

use super::{BlobMeta, BlobStore, StorageError};

/// Directories are created `rwxr-xr-x`, files `rw-r--r--`: what libhdfs gives with Hadoop's
/// default umask 022 (hdfs-native applies no umask).
const DIR_PERMISSION: u32 = 0o755;

/// How long a call keeps retrying an unreachable NameNode: hdfs-native's defaults (15 attempts,
/// 500 ms doubling to 15 s) wait about 2.5 minutes in one call; these give up after about 10 s,
/// which rides out a NameNode restart yet hands a longer outage to the caller's own retry or
/// failure handling (the leader's, a checkpoint's) in time. libhdfs fails a refused connection
/// at once.
const FAILOVER: [(&str, &str); 3] = [
    ("dfs.client.failover.max.attempts", "8"),
    ("dfs.client.failover.sleep.base.millis", "100"),
    ("dfs.client.failover.sleep.max.millis", "2000"),
];

/// How long the DataNodes may take to acknowledge a write of `len` bytes: 5 s, plus 1 s per
/// 8 MiB (a slow network still writes a large snapshot file).
fn data_bound(len: usize) -> Duration {
    Duration::from_secs(5 + (len / (8 << 20)) as u64)
}

/// One HDFS namenode (`hdfs://host:port`).
pub struct NativeStore {
    base: String,
    client: Client,
}

impl std::fmt::Debug for NativeStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("NativeStore")
            .field("base", &self.base)
            .finish()
    }
}

impl NativeStore {
    /// A client of the namenode of `base` (`hdfs://host:port`). It connects lazily, so this
    /// succeeds even when the namenode is down; the first operation reports it.
    pub fn connect(base: &str) -> Result<NativeStore, StorageError> {
        let base = base.trim_end_matches('/').to_string();
        let client = ClientBuilder::new()
            .with_url(&base)
            .with_config(FAILOVER)
            .build()
            .map_err(|e| io_error(&base, format!("cannot connect to HDFS: {e}")))?;
        Ok(NativeStore { base, client })
    }
}

fn io_error(path: &str, message: String) -> StorageError {
    StorageError::Io {
        path: path.to_string(),
        message,
    }
}

/// The Java exception classes the NameNode answers with, as libhdfs maps them to errno.
fn classify(path: &str, e: HdfsError) -> StorageError {
    let path = path.to_string();
    match e {
        HdfsError::FileNotFound(_) => StorageError::NotFound { path },
        HdfsError::AlreadyExists(_) => StorageError::AlreadyExists { path },
        HdfsError::RPCError(class, _) if class == "java.io.FileNotFoundException" => {
            StorageError::NotFound { path }
        }
        HdfsError::RPCError(class, message)
            if class == "org.apache.hadoop.security.AccessControlException" =>
        {
            StorageError::PermissionDenied {
                path,
                message: first_line(&message),
            }
        }
        // Java messages carry a stack trace after the first line: keep errors one line.
        HdfsError::RPCError(class, message) | HdfsError::FatalRPCError(class, message) => {
            StorageError::Io {
                path,
                message: format!("{class}: {}", first_line(&message)),
            }
        }
        other => StorageError::Io {
            path,
            message: first_line(&other.to_string()),
        },
    }
}

fn first_line(s: &str) -> String {
    s.lines().next().unwrap_or_default().trim().to_string()
}

fn parent(path: &str) -> &str {
    match path.rfind('/') {
        Some(0) | None => "/",
        Some(i) => &path[..i],
    }
}

impl NativeStore {
    /// The entry at `path`, `None` if absent; other failures are reported.
    async fn stat(
        &self,
        path: &str,
    ) -> Result<Option<hdfs_native::client::FileStatus>, StorageError> {
        match self.client.get_file_info(path).await {
            Ok(s) => Ok(Some(s)),
            Err(e) => match classify(path, e) {
                StorageError::NotFound { .. } => Ok(None),
                other => Err(other),
            },
        }
    }

    /// Writes `tmp` completely and closes it (the NameNode completed the file).
    async fn write_file(&self, tmp: &str, data: Bytes) -> Result<(), StorageError> {
        let mut f = self
            .client
            .create(tmp, WriteOptions::default().overwrite(true))
            .await
            .map_err(|e| classify(tmp, e))?;
        // The DataNode part is bounded: hdfs-native waits up to 60 s for a pipeline ack, so
        // with no DataNode reachable a write would wait the outage out. libhdfs fails it; so do
        // we (a failed checkpoint, not a stalled one). hsync makes the DataNodes acknowledge
        // every byte under that bound; close then only sends the last, empty packet and waits
        // for `complete()` (hdfs-native's own retries, about 15 s).
        let bound = data_bound(data.len());
        let pushed = tokio::time::timeout(bound, async {
            f.write_bytes(data).await?;
            f.hsync().await
        })
        .await;
        // Either failure is the one libhdfs reports at close (its writes reach the DataNodes
        // there): the file could not be made durable.
        let written = match pushed {
            Ok(r) => r.map_err(|e| {
                io_error(
                    tmp,
                    format!(
                        "closing the written file failed: {}",
                        first_line(&e.to_string())
                    ),
                )
            }),
            Err(_) => Err(io_error(
                tmp,
                format!(
                    "closing the written file failed: no DataNode acknowledged it within {} s",
                    bound.as_secs()
                ),
            )),
        };
        // The durable step: close completes the file at the NameNode once the DataNodes hold
        // every block. A failed close is an error, never a rename of a truncated file.
        if let Err(e) = written {
            let _ = tokio::time::timeout(Duration::from_secs(1), f.close()).await;
            return Err(e);
        }
        let closed = f.close().await;
        closed.map_err(|e| {
            io_error(
                tmp,
                format!(
                    "closing the written file failed: {}",
                    first_line(&e.to_string())
                ),
            )
        })
    }
}

#[async_trait::async_trait]
impl BlobStore for NativeStore {
    fn base_uri(&self) -> &str {
        &self.base
    }

    async fn write(&self, path: &str, data: Bytes) -> Result<(), StorageError> {
        let dir = parent(path);
        self.client
            .mkdirs(dir, DIR_PERMISSION, true)
            .await
            .map_err(|e| classify(dir, e))?;
        let name = path[dir.len()..].trim_start_matches('/');
        let tmp = format!("{}/{}", dir.trim_end_matches('/'), super::temp_name(name));
        let result = async {
            self.write_file(&tmp, data).await?;
            // Rename with overwrite replaces the old blob in one NameNode operation: a reader
            // sees the old blob or the new one (libhdfs needs a delete first, so "or none").
            self.client
                .rename(&tmp, path, true)
                .await
                .map_err(|e| classify(path, e))
        }
        .await;
        if result.is_err() {
            let _ = self.client.delete(&tmp, false).await;
        }
        result
    }

    async fn read(&self, path: &str) -> Result<Bytes, StorageError> {
        let meta = self
            .stat(path)
            .await?
            .ok_or_else(|| StorageError::NotFound {
                path: path.to_string(),
            })?;
        if meta.isdir {
            return Err(io_error(path, "is a directory".into()));
        }
        let reader = self
            .client
            .read(path)
            .await
            .map_err(|e| classify(path, e))?;
        let len = reader.file_length();
        if len == 0 {
            return Ok(Bytes::new());
        }
        reader
            .read_range(0, len)
            .await
            .map_err(|e| classify(path, e))
    }

    async fn delete(&self, path: &str) -> Result<(), StorageError> {
        if self.stat(path).await?.is_some() {
            self.client
                .delete(path, false)
                .await
                .map_err(|e| classify(path, e))?;
        }
        Ok(())
    }

    async fn delete_dir(&self, path: &str) -> Result<(), StorageError> {
        if self.stat(path).await?.is_some() {
            self.client
                .delete(path, true)
                .await
                .map_err(|e| classify(path, e))?;
        }
        Ok(())
    }

    async fn rename(&self, from: &str, to: &str) -> Result<(), StorageError> {
        if self.stat(to).await?.is_some() {
            return Err(StorageError::AlreadyExists {
                path: to.to_string(),
            });
        }
        if self.stat(from).await?.is_none() {
            return Err(StorageError::NotFound {
                path: from.to_string(),
            });
        }
        self.client
            .rename(from, to, false)
            .await
            .map_err(|e| classify(to, e))
    }

    async fn list(&self, dir: &str) -> Result<Vec<BlobMeta>, StorageError> {
        if self.stat(dir).await?.is_none() {
            return Ok(Vec::new());
        }
        let entries = self
            .client
            .list_status(dir, false)
            .await
            .map_err(|e| classify(dir, e))?;
        let mut out: Vec<BlobMeta> = entries
            .into_iter()
            .map(|s| BlobMeta {
                path: s.path,
                len: s.length as u64,
                is_dir: s.isdir,
            })
            .collect();
        out.sort_by(|a, b| a.path.cmp(&b.path));
        Ok(out)
    }

    async fn exists(&self, path: &str) -> Result<bool, StorageError> {
        Ok(self.stat(path).await?.is_some())
    }

    async fn mkdirs(&self, path: &str) -> Result<(), StorageError> {
        self.client
            .mkdirs(path, DIR_PERMISSION, true)
            .await
            .map_err(|e| classify(path, e))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn java_exceptions_classify_as_libhdfs_errnos_do() {
        let rpc = |class: &str| HdfsError::RPCError(class.into(), "msg\n\tat Foo.bar".into());
        assert!(classify("/a", rpc("java.io.FileNotFoundException")).is_not_found());
        assert!(matches!(
            classify(
                "/a",
                rpc("org.apache.hadoop.security.AccessControlException")
            ),
            StorageError::PermissionDenied { .. }
        ));
        assert!(matches!(
            classify("/a", HdfsError::AlreadyExists("x".into())),
            StorageError::AlreadyExists { .. }
        ));
        let e = classify("/a", rpc("java.io.IOException")).to_string();
        assert_eq!(e, "/a: java.io.IOException: msg");
    }

    #[test]
    fn a_bad_namenode_uri_is_one_line_naming_it() {
        let e = NativeStore::connect("hdfs://[::1").unwrap_err().to_string();
        assert!(e.starts_with("hdfs://[::1: cannot connect to HDFS"), "{e}");
        assert_eq!(parent("/a/b"), "/a");
        assert_eq!(parent("/a"), "/");
    }
}
