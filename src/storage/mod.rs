//! Blob storage: where job graphs, checkpoint metadata, snapshots and sink files live.
//!
//! Backends, chosen by the URI scheme ([`open`]):
//! * `hdfs://host:port/path`: HDFS through libhdfs (hdrs), behind the `hdfs` cargo feature;
//! * `file:///path`: the local filesystem.
//!
//! Paths handed to a [`BlobStore`] are absolute paths inside its filesystem (`/yarnflow/ha/...`);
//! [`Location`] pairs a store with a path for code that starts from a URI.
//!
//! # Invariants
//! * [`BlobStore::write`] is atomic for readers: it writes a hidden temporary file in the same
//!   directory ([`temp_name`]) and renames it into place, so a reader sees the whole blob or
//!   none. A writer that crashes in between leaves the temporary file behind; whoever owns the
//!   target name recognises it ([`temp_target`]) and removes it.
//! * [`BlobStore::delete`] of a missing path succeeds (deletes are retried after crashes).

pub mod deferred;
#[cfg(feature = "hdfs")]
pub mod hdfs;
pub mod local;

use std::fmt::Debug;
use std::sync::Arc;

use bytes::Bytes;

/// A storage failure; always names the path (or URI) it concerns.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum StorageError {
    #[error("{path}: not found")]
    NotFound { path: String },
    #[error("{path}: already exists")]
    AlreadyExists { path: String },
    #[error("{path}: permission denied: {message}")]
    PermissionDenied { path: String, message: String },
    #[error("{path}: {message}")]
    Io { path: String, message: String },
    #[error("{uri}: unsupported storage URI: {message}")]
    BadUri { uri: String, message: String },
}

impl StorageError {
    pub fn is_not_found(&self) -> bool {
        matches!(self, StorageError::NotFound { .. })
    }
}

/// The hidden temporary name under which [`BlobStore::write`] writes the file `name` (a file
/// name, not a path) before renaming it into place: `.<name>.<uuid>.tmp`, unique per write.
pub fn temp_name(name: &str) -> String {
    format!(".{name}.{}.tmp", uuid::Uuid::new_v4().simple())
}

/// The file name that `file_name`, a temporary name of [`temp_name`], was written for; `None`
/// if it is not one.
pub fn temp_target(file_name: &str) -> Option<&str> {
    let rest = file_name.strip_prefix('.')?.strip_suffix(".tmp")?;
    let (target, unique) = rest.rsplit_once('.')?;
    let is_uuid = unique.len() == 32 && unique.bytes().all(|b| b.is_ascii_hexdigit());
    (is_uuid && !target.is_empty()).then_some(target)
}

/// Size and name of one entry of a directory listing.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BlobMeta {
    /// Absolute path inside the store's filesystem.
    pub path: String,
    pub len: u64,
    pub is_dir: bool,
}

/// One filesystem. Implementations are cheap to share (`Arc<dyn BlobStore>`); blocking backends
/// (libhdfs) run their calls on tokio's blocking pool.
#[async_trait::async_trait]
pub trait BlobStore: Send + Sync + Debug {
    /// The URI prefix of this filesystem, e.g. `hdfs://127.0.0.1:9000` or `file://`.
    fn base_uri(&self) -> &str;
    /// Writes `data` atomically (temporary file + rename), replacing any existing blob.
    /// Creates missing parent directories.
    async fn write(&self, path: &str, data: Bytes) -> Result<(), StorageError>;
    /// Reads a whole blob.
    async fn read(&self, path: &str) -> Result<Bytes, StorageError>;
    /// Deletes a file; a missing file is not an error.
    async fn delete(&self, path: &str) -> Result<(), StorageError>;
    /// Deletes a directory and everything under it; a missing directory is not an error.
    async fn delete_dir(&self, path: &str) -> Result<(), StorageError>;
    /// Renames a file; fails with `AlreadyExists` if `to` exists.
    async fn rename(&self, from: &str, to: &str) -> Result<(), StorageError>;
    /// The direct children of a directory; a missing directory lists as empty.
    async fn list(&self, dir: &str) -> Result<Vec<BlobMeta>, StorageError>;
    /// Whether a file or directory exists.
    async fn exists(&self, path: &str) -> Result<bool, StorageError>;
    /// Creates a directory and its parents.
    async fn mkdirs(&self, path: &str) -> Result<(), StorageError>;
}

/// A store plus a path in it: what a storage URI resolves to.
#[derive(Debug, Clone)]
pub struct Location {
    pub store: Arc<dyn BlobStore>,
    pub path: String,
}

impl Location {
    /// The URI this location was opened from (store base + path).
    pub fn uri(&self) -> String {
        format!("{}{}", self.store.base_uri(), self.path)
    }

    /// A child location (`self.path + "/" + name`).
    pub fn join(&self, name: &str) -> Location {
        Location {
            store: self.store.clone(),
            path: format!("{}/{}", self.path.trim_end_matches('/'), name),
        }
    }
}

/// Like [`open`], but an HDFS connection (libhdfs starts a JVM: seconds) is made in the
/// background; the first call on the store waits for it, and a failure to connect is that
/// call's error.
pub async fn open_deferred(uri: &str) -> Result<Location, StorageError> {
    #[cfg(feature = "hdfs")]
    if let Some(rest) = uri.strip_prefix("hdfs://")
        && let Some(i) = rest.find('/')
        && i > 0
    {
        let base = format!("hdfs://{}", &rest[..i]);
        let b = base.clone();
        let store = deferred::DeferredStore::start(&base, async move {
            let store: Arc<dyn BlobStore> = Arc::new(hdfs::HdfsStore::connect(&b).await?);
            Ok(store)
        });
        return Ok(Location {
            store: Arc::new(store),
            path: rest[i..].to_string(),
        });
    }
    open(uri).await
}

/// Opens the filesystem of a storage URI: `hdfs://host:port/...` (with the `hdfs` feature) or
/// `file:///...`, and returns it with the URI's path.
pub async fn open(uri: &str) -> Result<Location, StorageError> {
    let bad = |message: String| StorageError::BadUri {
        uri: uri.to_string(),
        message,
    };
    let (scheme, rest) = uri
        .split_once("://")
        .ok_or_else(|| bad("expected hdfs://host:port/path or file:///path".into()))?;
    let (authority, path) = match rest.find('/') {
        Some(i) => (&rest[..i], rest[i..].to_string()),
        None => (rest, "/".to_string()),
    };
    match scheme {
        "hdfs" => {
            if authority.is_empty() {
                return Err(bad("missing the namenode host:port".into()));
            }
            #[cfg(feature = "hdfs")]
            {
                let store = hdfs::HdfsStore::connect(&format!("hdfs://{authority}")).await?;
                Ok(Location {
                    store: Arc::new(store),
                    path,
                })
            }
            #[cfg(not(feature = "hdfs"))]
            {
                let _ = path;
                Err(bad(
                    "this yarnflow binary was built without HDFS support (cargo feature `hdfs`)"
                        .into(),
                ))
            }
        }
        "file" => open_local(uri, authority, path),
        other => Err(bad(format!(
            "unsupported scheme '{other}' (use hdfs:// or file://)"
        ))),
    }
}

fn open_local(uri: &str, authority: &str, path: String) -> Result<Location, StorageError> {
    if !authority.is_empty() {
        return Err(StorageError::BadUri {
            uri: uri.to_string(),
            message: "file URIs take no host: write file:///path".into(),
        });
    }
    Ok(Location {
        store: Arc::new(local::LocalStore),
        path,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_temp_name_names_its_target() {
        let t = temp_name("_part-a-0-1.pending");
        assert_eq!(temp_target(&t), Some("_part-a-0-1.pending"));
        for not_temp in [
            "part-a-0-1",
            "._part-a-0-1.pending.tmp",
            ".x.nothex.tmp",
            "..0123456789abcdef0123456789abcdef.tmp",
        ] {
            assert_eq!(temp_target(not_temp), None, "{not_temp}");
        }
    }

    #[tokio::test]
    async fn open_dispatches_by_scheme_and_names_bad_uris() {
        let l = open("file:///tmp/yarnflow/x").await.unwrap();
        assert_eq!(l.path, "/tmp/yarnflow/x");
        assert_eq!(l.uri(), "file:///tmp/yarnflow/x");
        assert_eq!(l.join("y").path, "/tmp/yarnflow/x/y");
        for (uri, says) in [
            ("/tmp/x", "expected hdfs://"),
            ("s3://bucket/x", "unsupported scheme 's3'"),
            ("file://host/x", "no host"),
            ("hdfs:///x", "host:port"),
        ] {
            let e = open(uri).await.unwrap_err();
            assert!(matches!(e, StorageError::BadUri { .. }), "{uri}: {e:?}");
            let text = e.to_string();
            assert!(text.contains(uri) && text.contains(says), "{text}");
        }
        #[cfg(not(feature = "hdfs"))]
        {
            let e = open("hdfs://nn:8020/x").await.unwrap_err().to_string();
            assert!(e.contains("without HDFS support"), "{e}");
        }
    }
}
