//! A WebHDFS client (HTTP): the client side stages files in HDFS without a JVM.

use std::time::Duration;

use bytes::Bytes;
use serde_json::Value;

#[derive(Debug, Clone, thiserror::Error)]
pub enum WebHdfsError {
    #[error("WebHDFS {path}: {message}")]
    Failed { path: String, message: String },
    #[error("WebHDFS {path}: not found")]
    NotFound { path: String },
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FileStatus {
    pub length: i64,
    /// Milliseconds since the epoch: YARN's LocalResource timestamp.
    pub modification_time: i64,
    pub is_dir: bool,
    /// The file's replication factor (0 for a directory).
    pub replication: u16,
}

impl FileStatus {
    /// A `FileStatus` JSON object of the WebHDFS API.
    fn from_json(s: &serde_json::Value) -> FileStatus {
        FileStatus {
            length: s["length"].as_i64().unwrap_or_default(),
            modification_time: s["modificationTime"].as_i64().unwrap_or_default(),
            is_dir: s["type"] == "DIRECTORY",
            replication: s["replication"].as_u64().unwrap_or_default() as u16,
        }
    }
}

#[derive(Clone)]
pub struct WebHdfs {
    base: String,
    user: String,
    http: reqwest::Client,
}

impl WebHdfs {
    /// `base`: `http://namenode:port/webhdfs/v1`.
    pub fn new(base: &str, user: &str) -> WebHdfs {
        WebHdfs {
            base: base.trim_end_matches('/').to_string(),
            user: user.to_string(),
            http: reqwest::Client::builder()
                .timeout(Duration::from_secs(120))
                .build()
                .expect("a plain HTTP client builds"),
        }
    }

    fn url(&self, path: &str, op: &str) -> String {
        format!("{}{path}?op={op}&user.name={}", self.base, self.user)
    }

    async fn check(path: &str, resp: reqwest::Response) -> Result<reqwest::Response, WebHdfsError> {
        let status = resp.status();
        if status.is_success() {
            return Ok(resp);
        }
        if status == reqwest::StatusCode::NOT_FOUND {
            return Err(WebHdfsError::NotFound { path: path.into() });
        }
        let text = resp.text().await.unwrap_or_default();
        let message = serde_json::from_str::<Value>(&text)
            .ok()
            .and_then(|v| v["RemoteException"]["message"].as_str().map(str::to_string))
            .unwrap_or_else(|| format!("HTTP {status}"));
        Err(WebHdfsError::Failed {
            path: path.into(),
            message,
        })
    }

    /// Sends a request about `path` and turns HTTP failures into errors naming it.
    async fn send(
        &self,
        path: &str,
        req: reqwest::RequestBuilder,
    ) -> Result<reqwest::Response, WebHdfsError> {
        let resp = req.send().await.map_err(|e| Self::failed(path, e))?;
        Self::check(path, resp).await
    }

    fn failed(path: &str, e: impl std::fmt::Display) -> WebHdfsError {
        WebHdfsError::Failed {
            path: path.into(),
            message: e.to_string(),
        }
    }

    pub async fn mkdirs(&self, path: &str) -> Result<(), WebHdfsError> {
        self.send(path, self.http.put(self.url(path, "MKDIRS")))
            .await?;
        Ok(())
    }

    /// Creates (or overwrites) a file: the NameNode names a DataNode, which takes the bytes.
    pub async fn create(&self, path: &str, data: Bytes) -> Result<(), WebHdfsError> {
        let r = self
            .http
            .put(format!(
                "{}&overwrite=true&noredirect=true",
                self.url(path, "CREATE")
            ))
            .send()
            .await
            .map_err(|e| Self::failed(path, e))?;
        let v: Value = Self::check(path, r)
            .await?
            .json()
            .await
            .map_err(|e| Self::failed(path, e))?;
        let location = v["Location"]
            .as_str()
            .ok_or_else(|| Self::failed(path, "no DataNode location in the CREATE answer"))?;
        self.send(path, self.http.put(location).body(data)).await?;
        Ok(())
    }

    pub async fn open(&self, path: &str) -> Result<Bytes, WebHdfsError> {
        self.send(path, self.http.get(self.url(path, "OPEN")))
            .await?
            .bytes()
            .await
            .map_err(|e| Self::failed(path, e))
    }

    pub async fn status(&self, path: &str) -> Result<FileStatus, WebHdfsError> {
        let v: Value = self
            .send(path, self.http.get(self.url(path, "GETFILESTATUS")))
            .await?
            .json()
            .await
            .map_err(|e| Self::failed(path, e))?;
        Ok(FileStatus::from_json(&v["FileStatus"]))
    }

    /// The names of a directory's children (`LISTSTATUS`); a missing directory is `NotFound`.
    pub async fn list(&self, path: &str) -> Result<Vec<(String, FileStatus)>, WebHdfsError> {
        let v: Value = self
            .send(path, self.http.get(self.url(path, "LISTSTATUS")))
            .await?
            .json()
            .await
            .map_err(|e| Self::failed(path, e))?;
        Ok(v["FileStatuses"]["FileStatus"]
            .as_array()
            .into_iter()
            .flatten()
            .map(|s| {
                (
                    s["pathSuffix"].as_str().unwrap_or_default().to_string(),
                    FileStatus::from_json(s),
                )
            })
            .collect())
    }

    /// `SETPERMISSION`: `permission` is octal, as `hdfs dfs -chmod` takes it (e.g. `755`).
    pub async fn set_permission(&self, path: &str, permission: &str) -> Result<(), WebHdfsError> {
        let url = format!(
            "{}&permission={permission}",
            self.url(path, "SETPERMISSION")
        );
        self.send(path, self.http.put(url)).await?;
        Ok(())
    }

    /// `SETOWNER` (the NameNode allows it to a superuser only).
    pub async fn set_owner(&self, path: &str, owner: &str) -> Result<(), WebHdfsError> {
        let url = format!("{}&owner={owner}", self.url(path, "SETOWNER"));
        self.send(path, self.http.put(url)).await?;
        Ok(())
    }

    /// Deletes a file or directory (recursively); a missing path is fine.
    pub async fn delete(&self, path: &str) -> Result<(), WebHdfsError> {
        let delete = format!("{}&recursive=true", self.url(path, "DELETE"));
        match self.send(path, self.http.delete(delete)).await {
            Ok(_) | Err(WebHdfsError::NotFound { .. }) => Ok(()),
            Err(e) => Err(e),
        }
    }
}
