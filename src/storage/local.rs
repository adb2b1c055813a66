//! The local filesystem as a [`BlobStore`] (`file:///path`): local mode, tests, and HA storage
//! on a shared mount.

use std::io::ErrorKind;
use std::path::Path;

use bytes::Bytes;

use super::{BlobMeta, BlobStore, StorageError};

#[derive(Debug, Default, Clone)]
pub struct LocalStore;

fn classify(path: &str, e: std::io::Error) -> StorageError {
    match e.kind() {
        ErrorKind::NotFound => StorageError::NotFound {
            path: path.to_string(),
        },
        ErrorKind::PermissionDenied => StorageError::PermissionDenied {
            path: path.to_string(),
            message: e.to_string(),
        },
        ErrorKind::AlreadyExists => StorageError::AlreadyExists {
            path: path.to_string(),
        },
        _ => StorageError::Io {
            path: path.to_string(),
            message: e.to_string(),
        },
    }
}

#[async_trait::async_trait]
impl BlobStore for LocalStore {
    fn base_uri(&self) -> &str {
        "file://"
    }

    async fn write(&self, path: &str, data: Bytes) -> Result<(), StorageError> {
        let target = Path::new(path);
        let dir = target.parent().unwrap_or(Path::new("/"));
        tokio::fs::create_dir_all(dir)
            .await
            .map_err(|e| classify(&dir.display().to_string(), e))?;
        let name = target
            .file_name()
            .map(|n| n.to_string_lossy().to_string())
            .unwrap_or_default();
        let tmp = dir.join(super::temp_name(&name));
        let tmp_s = tmp.display().to_string();
        let result = async {
            // On the blocking pool with the shared buffer itself: `tokio::fs::write` would copy
            // it first (hundreds of MB for a keyed state snapshot).
            let (file, bytes) = (tmp.clone(), data.clone());
            tokio::task::spawn_blocking(move || std::fs::write(file, &bytes))
                .await
                .map_err(std::io::Error::other)
                .and_then(|written| written)
                .map_err(|e| classify(&tmp_s, e))?;
            // Durable before it becomes visible under its name.
            let f = tokio::fs::File::open(&tmp)
                .await
                .map_err(|e| classify(&tmp_s, e))?;
            f.sync_all().await.map_err(|e| classify(&tmp_s, e))?;
            tokio::fs::rename(&tmp, target)
                .await
                .map_err(|e| classify(path, e))
        }
        .await;
        if result.is_err() {
            let _ = tokio::fs::remove_file(&tmp).await;
        }
        result
    }

    async fn read(&self, path: &str) -> Result<Bytes, StorageError> {
        tokio::fs::read(path)
            .await
            .map(Bytes::from)
            .map_err(|e| classify(path, e))
    }

    async fn delete(&self, path: &str) -> Result<(), StorageError> {
        match tokio::fs::remove_file(path).await {
            Err(e) if e.kind() != ErrorKind::NotFound => Err(classify(path, e)),
            _ => Ok(()),
        }
    }

    async fn delete_dir(&self, path: &str) -> Result<(), StorageError> {
        match tokio::fs::remove_dir_all(path).await {
            Err(e) if e.kind() != ErrorKind::NotFound => Err(classify(path, e)),
            _ => Ok(()),
        }
    }

    async fn rename(&self, from: &str, to: &str) -> Result<(), StorageError> {
        if tokio::fs::try_exists(to).await.unwrap_or(false) {
            return Err(StorageError::AlreadyExists {
                path: to.to_string(),
            });
        }
        if let Some(dir) = Path::new(to).parent() {
            tokio::fs::create_dir_all(dir)
                .await
                .map_err(|e| classify(&dir.display().to_string(), e))?;
        }
        tokio::fs::rename(from, to)
            .await
            .map_err(|e| classify(from, e))
    }

    async fn list(&self, dir: &str) -> Result<Vec<BlobMeta>, StorageError> {
        let mut rd = match tokio::fs::read_dir(dir).await {
            Ok(rd) => rd,
            Err(e) if e.kind() == ErrorKind::NotFound => return Ok(Vec::new()),
            Err(e) => return Err(classify(dir, e)),
        };
        let mut out = Vec::new();
        while let Some(entry) = rd.next_entry().await.map_err(|e| classify(dir, e))? {
            let meta = match entry.metadata().await {
                Ok(m) => m,
                // Renamed or deleted since the directory was read: not part of the listing.
                Err(e) if e.kind() == ErrorKind::NotFound => continue,
                Err(e) => return Err(classify(&entry.path().display().to_string(), e)),
            };
            out.push(BlobMeta {
                path: entry.path().display().to_string(),
                len: meta.len(),
                is_dir: meta.is_dir(),
            });
        }
        out.sort_by(|a, b| a.path.cmp(&b.path));
        Ok(out)
    }

    async fn exists(&self, path: &str) -> Result<bool, StorageError> {
        tokio::fs::try_exists(path)
            .await
            .map_err(|e| classify(path, e))
    }

    async fn mkdirs(&self, path: &str) -> Result<(), StorageError> {
        tokio::fs::create_dir_all(path)
            .await
            .map_err(|e| classify(path, e))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn write_read_rename_list_delete() {
        let dir = std::env::temp_dir().join(format!("yarnflow-local-{}", std::process::id()));
        let d = dir.display().to_string();
        let s = LocalStore;
        let a = format!("{d}/x/a");
        s.write(&a, Bytes::from_static(b"one")).await.unwrap();
        s.write(&a, Bytes::from_static(b"two")).await.unwrap();
        assert_eq!(s.read(&a).await.unwrap(), Bytes::from_static(b"two"));
        // No temporary files left behind.
        assert_eq!(s.list(&format!("{d}/x")).await.unwrap().len(), 1);
        let b = format!("{d}/x/b");
        s.rename(&a, &b).await.unwrap();
        s.write(&a, Bytes::from_static(b"three")).await.unwrap();
        assert!(matches!(
            s.rename(&a, &b).await,
            Err(StorageError::AlreadyExists { .. })
        ));
        let err = s.read(&format!("{d}/nope")).await.unwrap_err();
        assert!(
            err.is_not_found() && err.to_string().contains("nope"),
            "{err}"
        );
        s.delete(&format!("{d}/nope")).await.unwrap();
        assert!(s.list(&format!("{d}/missing")).await.unwrap().is_empty());
        s.delete_dir(&d).await.unwrap();
        assert!(!s.exists(&d).await.unwrap());
    }
}
