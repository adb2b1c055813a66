//! HDFS through libhdfs (JNI) with hdrs. Compiled only with the `libhdfs` feature. The binary
//! does not link libjvm: `jvm.rs` loads it from `JAVA_HOME` when the first store connects.
//!
//! libhdfs starts a JVM on first use and reads the Hadoop jars from `CLASSPATH`. When `CLASSPATH`
//! is unset we take `YARNFLOW_HADOOP_CLASSPATH` (what the mini cluster's `cluster.env` and
//! `yarnflow submit` provide), so callers need not know about JNI; `HADOOP_CONF_DIR` goes first
//! on it, so the cluster's `*-site.xml` apply.
//!
//! hdrs maps most Java exceptions to one errno (255), so errors are classified by operation: a
//! read is preceded by a stat, which tells "not found" apart from I/O failures.

use std::io::{Read, Write};
use std::sync::{Arc, OnceLock};

use bytes::Bytes;

use super::{BlobMeta, BlobStore, StorageError};

/// The environment variable holding the Hadoop client classpath for libhdfs.
pub const HADOOP_CLASSPATH_ENV: &str = "YARNFLOW_HADOOP_CLASSPATH";

/// The first `complete()` retry of a closing file, and how many retries follow (doubling).
const COMPLETE_INITIAL_DELAY_MS: &str = "10";
const COMPLETE_RETRIES: &str = "10";

/// One HDFS namenode (`hdfs://host:port`).
pub struct HdfsStore {
    base: String,
    client: Arc<hdrs::Client>,
}

impl std::fmt::Debug for HdfsStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("HdfsStore")
            .field("base", &self.base)
            .finish()
    }
}

/// Java logging of the embedded JVM: warnings and errors only, on stderr (Hadoop jars may
/// carry a log4j.properties that logs to stdout, which is for yarnflow's own output).
const LOG4J_PROPERTIES: &str = "\
log4j.rootLogger=WARN,stderr
log4j.appender.stderr=org.apache.log4j.ConsoleAppender
log4j.appender.stderr.target=System.err
log4j.appender.stderr.layout=org.apache.log4j.PatternLayout
log4j.appender.stderr.layout.ConversionPattern=%d{ISO8601} %-5p %c{2}: %m%n
log4j.logger.org.apache.hadoop.util.NativeCodeLoader=ERROR
";

fn ensure_classpath() {
    static ONCE: OnceLock<()> = OnceLock::new();
    ONCE.get_or_init(|| {
        // SAFETY (both set_var calls): done once, before libhdfs starts its JVM and reads them.
        if std::env::var_os("CLASSPATH").is_none()
            && let Some(cp) = std::env::var_os(HADOOP_CLASSPATH_ENV)
        {
            unsafe { std::env::set_var("CLASSPATH", cp) };
        }
        // The cluster's core-site.xml and hdfs-site.xml (replication, nameservices, ...) reach
        // libhdfs's Configuration only from the classpath: put HADOOP_CONF_DIR first, as
        // `hadoop classpath` and YARN's `yarn.application.classpath` do.
        if let (Some(conf), Some(cp)) = (
            std::env::var_os("HADOOP_CONF_DIR"),
            std::env::var_os("CLASSPATH"),
        ) && !std::env::split_paths(&cp).any(|p| p == conf)
        {
            let mut entries = vec![std::path::PathBuf::from(conf)];
            entries.extend(std::env::split_paths(&cp));
            if let Ok(joined) = std::env::join_paths(entries) {
                unsafe { std::env::set_var("CLASSPATH", joined) };
            }
        }
        // Our log4j settings, added to the user's LIBHDFS_OPTS unless they name their own.
        let opts = std::env::var("LIBHDFS_OPTS").unwrap_or_default();
        if !opts.contains("log4j.configuration") {
            // One shared file (same content for every process), replaced atomically, so the
            // temp dir does not fill up with one copy per process.
            let dir = std::env::temp_dir();
            let file = dir.join("yarnflow-libhdfs-log4j.properties");
            let part = dir.join(format!(
                "yarnflow-libhdfs-log4j.properties.{}",
                std::process::id()
            ));
            if std::fs::write(&part, LOG4J_PROPERTIES).is_ok()
                && std::fs::rename(&part, &file).is_ok()
            {
                let opts = format!("{opts} -Dlog4j.configuration=file:{}", file.display());
                unsafe { std::env::set_var("LIBHDFS_OPTS", opts.trim()) };
            }
        }
    });
}

impl HdfsStore {
    /// Connects to the namenode of `base` (`hdfs://host:port`). libhdfs connects lazily, so
    /// this succeeds even when the namenode is down; the first operation reports it.
    pub async fn connect(base: &str) -> Result<HdfsStore, StorageError> {
        let base = base.trim_end_matches('/').to_string();
        if std::env::var_os("CLASSPATH").is_none()
            && std::env::var_os(HADOOP_CLASSPATH_ENV).is_none()
        {
            return Err(StorageError::BadUri {
                uri: base,
                message: format!(
                    "libhdfs needs the Hadoop client jars: set CLASSPATH or {HADOOP_CLASSPATH_ENV}"
                ),
            });
        }
        super::jvm::load().map_err(|message| io_error(&base, message))?;
        ensure_classpath();
        let nn = base.clone();
        let client = tokio::task::spawn_blocking(move || {
            hdrs::ClientBuilder::new(&nn)
                // The client polls the namenode to complete a file, first after 400 ms by
                // default: most of a small write's latency. Poll early instead, and as many
                // more times (the delay doubles) so that close still waits about 10 s for a
                // slow `complete()` (10 ms · (2^10 - 1)) before it fails, as by default.
                .with_config(
                    "dfs.client.block.write.locateFollowingBlock.initial.delay.ms",
                    COMPLETE_INITIAL_DELAY_MS,
                )
                .with_config(
                    "dfs.client.block.write.locateFollowingBlock.retries",
                    COMPLETE_RETRIES,
                )
                .connect()
        })
        .await
        .map_err(|e| io_error(&base, e.to_string()))?
        .map_err(|e| io_error(&base, format!("cannot connect to HDFS: {e}")))?;
        Ok(HdfsStore {
            base,
            client: Arc::new(client),
        })
    }

    /// Runs a blocking libhdfs call on tokio's blocking pool.
    async fn blocking<T: Send + 'static>(
        &self,
        path: &str,
        f: impl FnOnce(&hdrs::Client) -> Result<T, StorageError> + Send + 'static,
    ) -> Result<T, StorageError> {
        let client = self.client.clone();
        tokio::task::spawn_blocking(move || f(&client))
            .await
            .map_err(|e| io_error(path, format!("HDFS call panicked or was cancelled: {e}")))?
    }
}

fn io_error(path: &str, message: String) -> StorageError {
    StorageError::Io {
        path: path.to_string(),
        message,
    }
}

fn classify(path: &str, e: std::io::Error) -> StorageError {
    match e.kind() {
        std::io::ErrorKind::NotFound => StorageError::NotFound {
            path: path.to_string(),
        },
        std::io::ErrorKind::PermissionDenied => StorageError::PermissionDenied {
            path: path.to_string(),
            message: e.to_string(),
        },
        std::io::ErrorKind::AlreadyExists => StorageError::AlreadyExists {
            path: path.to_string(),
        },
        _ => io_error(path, e.to_string()),
    }
}

/// Whether `path` exists (stat succeeds); errors other than "absent" are reported.
fn stat(client: &hdrs::Client, path: &str) -> Result<Option<hdrs::Metadata>, StorageError> {
    match client.metadata(path) {
        Ok(m) => Ok(Some(m)),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        // hdrs reports most failures with errno 255; a stat of a missing path is ENOENT, so an
        // uncategorized error here is a real failure (namenode down, permission).
        Err(e) => Err(classify(path, e)),
    }
}

fn parent(path: &str) -> &str {
    match path.rfind('/') {
        Some(0) | None => "/",
        Some(i) => &path[..i],
    }
}

/// Strips `hdfs://host:port` from a path libhdfs returns.
fn strip_authority(p: &str) -> String {
    match p.strip_prefix("hdfs://") {
        Some(rest) => match rest.find('/') {
            Some(i) => rest[i..].to_string(),
            None => "/".to_string(),
        },
        None => p.to_string(),
    }
}

#[async_trait::async_trait]
impl BlobStore for HdfsStore {
    fn base_uri(&self) -> &str {
        &self.base
    }

    async fn write(&self, path: &str, data: Bytes) -> Result<(), StorageError> {
        let path = path.to_string();
        let p = path.clone();
        self.blocking(&path, move |c| {
            let dir = parent(&p);
            c.create_dir(dir).map_err(|e| classify(dir, e))?;
            let name = &p[dir.len()..].trim_start_matches('/');
            let tmp = format!("{}/{}", dir.trim_end_matches('/'), super::temp_name(name));
            let result = (|| {
                let mut f = c
                    .open_file()
                    .write(true)
                    .create(true)
                    .truncate(true)
                    .open(&tmp)
                    .map_err(|e| classify(&tmp, e))?;
                f.write_all(&data).map_err(|e| classify(&tmp, e))?;
                f.flush().map_err(|e| classify(&tmp, e))?;
                // The durable step: close completes the file at the NameNode once the
                // DataNodes hold every block. A failed close is an error, never a rename of a
                // truncated file (dropping the handle would only log it).
                f.try_close()
                    .map_err(|e| io_error(&tmp, format!("closing the written file failed: {e}")))?;
                // HDFS rename does not replace: remove the old blob first. A reader racing this
                // sees the old blob or none, never a partial one.
                if stat(c, &p)?.is_some() {
                    c.remove_file(&p).map_err(|e| classify(&p, e))?;
                }
                c.rename_file(&tmp, &p).map_err(|e| classify(&p, e))
            })();
            if result.is_err() {
                let _ = c.remove_file(&tmp);
            }
            result
        })
        .await
    }

    async fn read(&self, path: &str) -> Result<Bytes, StorageError> {
        let p = path.to_string();
        self.blocking(path, move |c| {
            let meta = stat(c, &p)?.ok_or_else(|| StorageError::NotFound { path: p.clone() })?;
            if meta.is_dir() {
                return Err(io_error(&p, "is a directory".into()));
            }
            let mut f = c
                .open_file()
                .read(true)
                .open(&p)
                .map_err(|e| classify(&p, e))?;
            let mut buf = Vec::with_capacity(meta.len() as usize);
            f.read_to_end(&mut buf).map_err(|e| classify(&p, e))?;
            Ok(Bytes::from(buf))
        })
        .await
    }

    async fn delete(&self, path: &str) -> Result<(), StorageError> {
        let p = path.to_string();
        self.blocking(path, move |c| {
            if stat(c, &p)?.is_some() {
                c.remove_file(&p).map_err(|e| classify(&p, e))?;
            }
            Ok(())
        })
        .await
    }

    async fn delete_dir(&self, path: &str) -> Result<(), StorageError> {
        let p = path.to_string();
        self.blocking(path, move |c| {
            if stat(c, &p)?.is_some() {
                c.remove_dir_all(&p).map_err(|e| classify(&p, e))?;
            }
            Ok(())
        })
        .await
    }

    async fn rename(&self, from: &str, to: &str) -> Result<(), StorageError> {
        let (f, t) = (from.to_string(), to.to_string());
        self.blocking(from, move |c| {
            if stat(c, &t)?.is_some() {
                return Err(StorageError::AlreadyExists { path: t });
            }
            if stat(c, &f)?.is_none() {
                return Err(StorageError::NotFound { path: f });
            }
            c.rename_file(&f, &t).map_err(|e| classify(&t, e))
        })
        .await
    }

    async fn list(&self, dir: &str) -> Result<Vec<BlobMeta>, StorageError> {
        let d = dir.to_string();
        self.blocking(dir, move |c| {
            if stat(c, &d)?.is_none() {
                return Ok(Vec::new());
            }
            let entries = c.read_dir(&d).map_err(|e| classify(&d, e))?;
            let mut out: Vec<BlobMeta> = entries
                .into_inner()
                .map(|m| BlobMeta {
                    path: strip_authority(m.path()),
                    len: m.len(),
                    is_dir: m.is_dir(),
                })
                .collect();
            out.sort_by(|a, b| a.path.cmp(&b.path));
            Ok(out)
        })
        .await
    }

    async fn exists(&self, path: &str) -> Result<bool, StorageError> {
        let p = path.to_string();
        self.blocking(path, move |c| Ok(stat(c, &p)?.is_some()))
            .await
    }

    async fn mkdirs(&self, path: &str) -> Result<(), StorageError> {
        let p = path.to_string();
        self.blocking(path, move |c| c.create_dir(&p).map_err(|e| classify(&p, e)))
            .await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths_split_and_strip() {
        assert_eq!(parent("/a/b/c"), "/a/b");
        assert_eq!(parent("/a"), "/");
        assert_eq!(strip_authority("hdfs://127.0.0.1:9000/x/y"), "/x/y");
        assert_eq!(strip_authority("/x"), "/x");
    }
}
