//! Flink's file-system job result store: `<jobId>_DIRTY.json` written when a job reaches a
//! globally terminal state (before cleanup), then deleted (`job-result-store.delete-on-commit`,
//! default) or renamed to `<jobId>.json` once cleanup is done.

use std::sync::Arc;

use bytes::Bytes;

use super::{HaError, JobResultEntry, JobResultStore};
use crate::storage::BlobStore;

const DIRTY_SUFFIX: &str = "_DIRTY.json";

#[derive(Debug)]
pub struct FileJobResultStore {
    store: Arc<dyn BlobStore>,
    dir: String,
    delete_on_commit: bool,
}

#[derive(serde::Serialize, serde::Deserialize)]
struct Envelope {
    result: JobResultEntry,
    version: u32,
}

impl FileJobResultStore {
    pub fn new(store: Arc<dyn BlobStore>, dir: &str, delete_on_commit: bool) -> FileJobResultStore {
        FileJobResultStore {
            store,
            dir: dir.trim_end_matches('/').to_string(),
            delete_on_commit,
        }
    }

    fn dirty(&self, job_id: &str) -> String {
        format!("{}/{job_id}{DIRTY_SUFFIX}", self.dir)
    }

    fn clean(&self, job_id: &str) -> String {
        format!("{}/{job_id}.json", self.dir)
    }
}

#[async_trait::async_trait]
impl JobResultStore for FileJobResultStore {
    async fn create_dirty(&self, entry: &JobResultEntry) -> Result<(), HaError> {
        let body = serde_json::to_vec(&Envelope {
            result: entry.clone(),
            version: 1,
        })
        .map_err(|e| HaError::Config(format!("serialize a job result: {e}")))?;
        self.store
            .write(&self.dirty(&entry.job_id), Bytes::from(body))
            .await?;
        Ok(())
    }

    async fn mark_clean(&self, job_id: &str) -> Result<(), HaError> {
        let dirty = self.dirty(job_id);
        if !self.store.exists(&dirty).await? {
            return Ok(());
        }
        if self.delete_on_commit {
            self.store.delete(&dirty).await?;
        } else {
            self.store.rename(&dirty, &self.clean(job_id)).await?;
        }
        Ok(())
    }

    async fn has_result(&self, job_id: &str) -> Result<bool, HaError> {
        Ok(self.store.exists(&self.dirty(job_id)).await?
            || self.store.exists(&self.clean(job_id)).await?)
    }

    async fn get(&self, job_id: &str) -> Result<Option<JobResultEntry>, HaError> {
        for path in [self.dirty(job_id), self.clean(job_id)] {
            match self.store.read(&path).await {
                Ok(data) => {
                    let env: Envelope =
                        serde_json::from_slice(&data).map_err(|e| HaError::Corrupt {
                            path: format!("{}{path}", self.store.base_uri()),
                            message: format!("not a job result: {e}"),
                        })?;
                    return Ok(Some(env.result));
                }
                Err(e) if e.is_not_found() => continue,
                Err(e) => return Err(e.into()),
            }
        }
        Ok(None)
    }

    async fn dirty_results(&self) -> Result<Vec<JobResultEntry>, HaError> {
        let mut out = Vec::new();
        for meta in self.store.list(&self.dir).await? {
            if meta.is_dir || !meta.path.ends_with(DIRTY_SUFFIX) {
                continue;
            }
            let data = self.store.read(&meta.path).await?;
            let env: Envelope = serde_json::from_slice(&data).map_err(|e| HaError::Corrupt {
                path: format!("{}{}", self.store.base_uri(), meta.path),
                message: format!("not a job result: {e}"),
            })?;
            out.push(env.result);
        }
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::jobmanager::status::JobStatus;

    #[test]
    fn entries_keep_their_on_disk_form() {
        // As written before the status was typed.
        let stored = br#"{"result":{"job_id":"j1","status":"CANCELED","failure":"by the user","finished_at_ms":17},"version":1}"#;
        let env: Envelope = serde_json::from_slice(stored).unwrap();
        assert_eq!(env.result.status, JobStatus::Canceled);
        assert_eq!(env.result.failure.as_deref(), Some("by the user"));
        let again = serde_json::to_vec(&env).unwrap();
        assert_eq!(again, stored.to_vec());
        let bad = br#"{"result":{"job_id":"j1","status":"SLEEPING","failure":null,"finished_at_ms":17},"version":1}"#;
        assert!(serde_json::from_slice::<Envelope>(bad).is_err());
    }
}
