//! Blob storage: where job graphs, checkpoint metadata, snapshots and sink files live.
//!
//! Backends, chosen by the URI scheme ([`open`]):
//! * `hdfs://host:port/path`: HDFS, through the client `storage.hdfs.client` names
//!   ([`HdfsClient`]): `native` (hdfs-native, pure Rust) or `libhdfs` (hdrs over
//!   JNI, behind the `libhdfs` cargo feature);
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
#[cfg(feature = "libhdfs")]
pub mod hdfs;
#[cfg(feature = "libhdfs")]
pub mod jvm;
pub mod local;
pub mod native;

use std::fmt::Debug;
use std::sync::Arc;
use std::sync::atomic::{AtomicU8, Ordering};

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

/// The HDFS client behind `hdfs://` URIs (`storage.hdfs.client`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HdfsClient {
    /// hdfs-native: pure Rust, no JVM.
    Native,
    /// libhdfs over JNI (hdrs): starts a JVM in the process; needs the `libhdfs` feature.
    Libhdfs,
}

/// The default: native (no JVM in any process); libhdfs is the compatibility client.
impl Default for HdfsClient {
    fn default() -> HdfsClient {
        HdfsClient::Native
    }
}

/// The client this process chose ([`HdfsClient::install`]): 0 none yet (the default), 1 native,
/// 2 libhdfs.
static INSTALLED: AtomicU8 = AtomicU8::new(0);

impl HdfsClient {
    pub const KEY: &'static str = "storage.hdfs.client";

    /// The client `storage.hdfs.client` names; `libhdfs` in a build without the feature is an
    /// error naming the key.
    pub fn from_config(
        c: &crate::config::Config,
    ) -> Result<HdfsClient, crate::config::ConfigError> {
        let client = match c.one_of(Self::KEY, &["native", "libhdfs"])?.as_deref() {
            Some("libhdfs") => HdfsClient::Libhdfs,
            Some(_) => HdfsClient::Native,
            None => HdfsClient::default(),
        };
        if client == HdfsClient::Libhdfs && cfg!(not(feature = "libhdfs")) {
            return Err(crate::config::ConfigError::Invalid {
                origin: c
                    .origin(Self::KEY)
                    .cloned()
                    .unwrap_or(crate::config::Origin::Defaults),
                key: Self::KEY.to_string(),
                message: LIBHDFS_MISSING.to_string(),
            });
        }
        Ok(client)
    }

    /// Makes this the client [`open`] uses in this process (set once the configuration is
    /// loaded, before any store is opened).
    pub fn install(self) {
        let code = match self {
            HdfsClient::Native => 1,
            HdfsClient::Libhdfs => 2,
        };
        INSTALLED.store(code, Ordering::Relaxed);
    }

    /// The client [`open`] uses in this process.
    pub fn installed() -> HdfsClient {
        match INSTALLED.load(Ordering::Relaxed) {
            1 => HdfsClient::Native,
            2 => HdfsClient::Libhdfs,
            _ => HdfsClient::default(),
        }
    }
}

const LIBHDFS_MISSING: &str = "this yarnflow binary was built without libhdfs: rebuild with `cargo build --features libhdfs`, or use `native`";

/// Like [`open`], but a libhdfs connection (it starts a JVM: seconds) is made in the
/// background; the first call on the store waits for it, and a failure to connect is that
/// call's error. The native client connects lazily anyway.
pub async fn open_deferred(uri: &str) -> Result<Location, StorageError> {
    #[cfg(feature = "libhdfs")]
    if HdfsClient::installed() == HdfsClient::Libhdfs
        && let Some(rest) = uri.strip_prefix("hdfs://")
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

/// Opens the filesystem of a storage URI, `hdfs://host:port/...` (through this process's
/// [`HdfsClient`]) or `file:///...`, and returns it with the URI's path. The one place stores
/// are built.
pub async fn open(uri: &str) -> Result<Location, StorageError> {
    open_with(uri, HdfsClient::installed()).await
}

/// [`open`] with an explicit HDFS client (tests of one backend in a shared process).
pub async fn open_with(uri: &str, client: HdfsClient) -> Result<Location, StorageError> {
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
            let base = format!("hdfs://{authority}");
            let store: Arc<dyn BlobStore> = match client {
                HdfsClient::Native => Arc::new(native::NativeStore::connect(&base)?),
                #[cfg(feature = "libhdfs")]
                HdfsClient::Libhdfs => Arc::new(hdfs::HdfsStore::connect(&base).await?),
                #[cfg(not(feature = "libhdfs"))]
                HdfsClient::Libhdfs => return Err(bad(LIBHDFS_MISSING.into())),
            };
            Ok(Location { store, path })
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
        // The native client connects lazily: a URI of no NameNode opens.
        let nn = open_with("hdfs://nn:8020/x", HdfsClient::Native)
            .await
            .unwrap();
        assert_eq!(nn.uri(), "hdfs://nn:8020/x");
        #[cfg(not(feature = "libhdfs"))]
        {
            let e = open_with("hdfs://nn:8020/x", HdfsClient::Libhdfs)
                .await
                .unwrap_err()
                .to_string();
            assert!(
                e.contains("hdfs://nn:8020/x") && e.contains("--features libhdfs"),
                "{e}"
            );
        }
    }

    #[test]
    fn the_hdfs_client_comes_from_its_key() {
        let mut c = crate::config::Config::defaults();
        assert_eq!(HdfsClient::from_config(&c).unwrap(), HdfsClient::default());
        c.set(HdfsClient::KEY, "native");
        assert_eq!(HdfsClient::from_config(&c).unwrap(), HdfsClient::Native);
        c.set(HdfsClient::KEY, "jni");
        let e = HdfsClient::from_config(&c).unwrap_err().to_string();
        assert!(
            e.contains("storage.hdfs.client") && e.contains("jni"),
            "{e}"
        );
        c.set(HdfsClient::KEY, "libhdfs");
        let r = HdfsClient::from_config(&c);
        if cfg!(feature = "libhdfs") {
            assert_eq!(r.unwrap(), HdfsClient::Libhdfs);
        } else {
            let e = r.unwrap_err().to_string();
            assert!(
                e.contains("storage.hdfs.client") && e.contains("rebuild"),
                "{e}"
            );
        }
    }
}
