//! A typed client of the JobManager's REST API ([`super::rest`]): one method per route, each
//! answer deserialized into the types below, every failure one [`ClientError`] line naming the
//! JobManager's address and the request. `yarnflow status`, `submit`, `cancel` and `run` talk to
//! a JobManager only through it.

use std::time::Duration;

use serde::de::DeserializeOwned;

pub use super::api::{
    CheckpointCounts, CheckpointStats, CheckpointSummary, JobSummary, LatestCheckpoints, Overview,
    TaskManagerInfo,
};
use super::api::{Errors, JobList, Submitted, TaskManagerList};
use super::job_master::JobSnapshot;

/// Why a request to the JobManager failed.
#[derive(Debug, Clone, thiserror::Error)]
pub enum ClientError {
    /// No answer: connection refused, timed out, cut off.
    #[error("JobManager {address}: {request}: {message}")]
    Unreachable {
        address: String,
        request: String,
        message: String,
    },
    /// The JobManager answered with an error status; `message` is the first of its `errors`.
    #[error("JobManager {address}: {request}: HTTP {status}: {message}")]
    Status {
        address: String,
        request: String,
        status: u16,
        message: String,
    },
    /// The answer is not what the REST API serves (another server on that port?).
    #[error("JobManager {address}: {request}: unexpected response: {message}")]
    Shape {
        address: String,
        request: String,
        message: String,
    },
}

impl ClientError {
    /// 404: no such job (or no such route).
    pub fn is_not_found(&self) -> bool {
        matches!(self, ClientError::Status { status: 404, .. })
    }

    /// 503: the JobManager cannot take the request yet (a new leader still recovering its
    /// jobs); the same request may succeed later.
    pub fn is_retriable(&self) -> bool {
        matches!(self, ClientError::Status { status: 503, .. })
    }

    /// The JobManager did not answer at all.
    pub fn is_unreachable(&self) -> bool {
        matches!(self, ClientError::Unreachable { .. })
    }

    /// Why the JobManager refused the request (its first `errors` entry), if it answered with
    /// an error status.
    pub fn refusal(&self) -> Option<&str> {
        match self {
            ClientError::Status { message, .. } => Some(message),
            _ => None,
        }
    }
}

/// Client of one JobManager's REST API.
#[derive(Debug, Clone)]
pub struct JobManagerClient {
    /// Base URL, `http://host:port`.
    address: String,
    http: reqwest::Client,
    /// Bounds every request, connecting included.
    timeout: Duration,
}

impl JobManagerClient {
    /// A client of the JobManager at `address` (`http://host:port`, or `host:port`); every
    /// request gives up after `timeout`.
    pub fn new(address: &str, timeout: Duration) -> JobManagerClient {
        let address = address.trim_end_matches('/');
        let address = if address.starts_with("http://") || address.starts_with("https://") {
            address.to_string()
        } else {
            format!("http://{address}")
        };
        JobManagerClient {
            address,
            http: reqwest::Client::new(),
            timeout,
        }
    }

    /// The base URL requests go to.
    pub fn address(&self) -> &str {
        &self.address
    }

    pub async fn overview(&self) -> Result<Overview, ClientError> {
        self.get_json("/overview").await
    }

    pub async fn jobs(&self) -> Result<Vec<JobSummary>, ClientError> {
        Ok(self.get_json::<JobList>("/jobs").await?.jobs)
    }

    /// The job master's snapshot of one job.
    pub async fn job(&self, id: &str) -> Result<JobSnapshot, ClientError> {
        self.get_json(&format!("/jobs/{id}")).await
    }

    pub async fn checkpoints(&self, id: &str) -> Result<CheckpointStats, ClientError> {
        self.get_json(&format!("/jobs/{id}/checkpoints")).await
    }

    pub async fn taskmanagers(&self) -> Result<Vec<TaskManagerInfo>, ClientError> {
        Ok(self
            .get_json::<TaskManagerList>("/taskmanagers")
            .await?
            .taskmanagers)
    }

    /// Submits a job spec (YAML); returns the job id the JobManager accepted it under.
    pub async fn submit(&self, spec_yaml: &str) -> Result<String, ClientError> {
        let request = "POST /jobs".to_string();
        let req = self
            .http
            .post(self.url("/jobs"))
            .body(spec_yaml.to_string());
        let text = self.send(req, &request).await?;
        Ok(self.parse::<Submitted>(&text, &request)?.jobid)
    }

    /// Asks the job's master to cancel it (the job ends CANCELED later).
    pub async fn cancel(&self, id: &str) -> Result<(), ClientError> {
        let request = format!("POST /jobs/{id}/cancel");
        let req = self.http.post(self.url(&format!("/jobs/{id}/cancel")));
        self.send(req, &request).await.map(drop)
    }

    /// `GET /metrics`: the Prometheus text document.
    pub async fn metrics(&self) -> Result<String, ClientError> {
        let request = "GET /metrics".to_string();
        self.send(self.http.get(self.url("/metrics")), &request)
            .await
    }

    fn url(&self, path: &str) -> String {
        format!("{}{path}", self.address)
    }

    async fn get_json<T: DeserializeOwned>(&self, path: &str) -> Result<T, ClientError> {
        let request = format!("GET {path}");
        let text = self.send(self.http.get(self.url(path)), &request).await?;
        self.parse(&text, &request)
    }

    /// Sends `req`; the body of a success, else the error (the REST API's `errors` as the
    /// message).
    async fn send(
        &self,
        req: reqwest::RequestBuilder,
        request: &str,
    ) -> Result<String, ClientError> {
        let unreachable = |e: reqwest::Error| ClientError::Unreachable {
            address: self.address.clone(),
            request: request.to_string(),
            message: error_chain(&e.without_url()),
        };
        let resp = req
            .timeout(self.timeout)
            .send()
            .await
            .map_err(unreachable)?;
        let status = resp.status();
        let text = resp.text().await.map_err(unreachable)?;
        if status.is_success() {
            return Ok(text);
        }
        let message = serde_json::from_str::<Errors>(&text)
            .ok()
            .and_then(|e| e.errors.into_iter().next())
            .unwrap_or_else(|| "no reason given".into());
        Err(ClientError::Status {
            address: self.address.clone(),
            request: request.to_string(),
            status: status.as_u16(),
            message,
        })
    }

    fn parse<T: DeserializeOwned>(&self, text: &str, request: &str) -> Result<T, ClientError> {
        serde_json::from_str(text).map_err(|e| ClientError::Shape {
            address: self.address.clone(),
            request: request.to_string(),
            message: e.to_string(),
        })
    }
}

/// An error and its causes on one line.
fn error_chain(e: &dyn std::error::Error) -> String {
    let mut out = e.to_string();
    let mut source = e.source();
    while let Some(s) = source {
        out.push_str(": ");
        out.push_str(&s.to_string());
        source = s.source();
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::jobmanager::status::JobStatus;

    #[test]
    fn a_job_snapshot_reads_back_from_its_json() {
        let json = r#"{"job_id":"j","name":"n","status":"RESTARTING","parallelism":2,
            "restarts":1,"exceptions":["subtask 1 failed"],"failure":null,
            "completed_checkpoints":3,"latest_checkpoint_id":4,"restored_from_checkpoint":2,
            "checkpoint_duration_ms_p50":5,"checkpoint_duration_ms_max":9,
            "last_checkpoint_duration_ms":6,"latest_checkpoint_completed_ms":1700000000000}"#;
        let j: JobSnapshot = serde_json::from_str(json).unwrap();
        assert_eq!(j.status, JobStatus::Restarting);
        assert_eq!((j.restarts, j.latest_checkpoint_id), (1, Some(4)));
        assert_eq!(j.exceptions, vec!["subtask 1 failed"]);
    }

    #[test]
    fn overview_and_taskmanagers_use_the_rest_field_names() {
        let o: Overview = serde_json::from_str(
            r#"{"jobs":{"RUNNING":2},"taskmanagers":1,"slots-total":4,"slots-available":1}"#,
        )
        .unwrap();
        assert_eq!(o.jobs.get("RUNNING"), Some(&2));
        assert_eq!((o.slots_total, o.slots_available), (4, 1));
        let t: TaskManagerInfo =
            serde_json::from_str(r#"{"id":"tm-1","slotsNumber":2,"freeSlots":1}"#).unwrap();
        assert_eq!(
            serde_json::to_string(&t).unwrap(),
            r#"{"id":"tm-1","slotsNumber":2,"freeSlots":1}"#
        );
    }

    #[tokio::test]
    async fn an_unreachable_jobmanager_is_one_line_naming_it() {
        // A port nothing listens on: bind one, then free it.
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let client = JobManagerClient::new(&format!("127.0.0.1:{port}"), Duration::from_secs(2));
        let e = client.jobs().await.unwrap_err();
        assert!(e.is_unreachable(), "{e:?}");
        let line = e.to_string();
        assert!(
            line.starts_with(&format!("JobManager http://127.0.0.1:{port}: GET /jobs: ")),
            "{line}"
        );
        assert!(!line.contains('\n'), "{line}");
    }

    /// The REST state of a leader with no jobs and no TaskManagers (embedded HA).
    fn idle_jobmanager() -> super::super::rest::RestState {
        use std::sync::Arc;

        use super::super::dispatcher::Dispatcher;
        use super::super::taskmanagers::TaskManagerPool;
        let dir = std::env::temp_dir().join(format!("yarnflow-client-{}", std::process::id()));
        let ha = crate::ha::HaServices::embedded(
            Arc::new(crate::storage::local::LocalStore),
            &dir.display().to_string(),
            1,
        );
        let pool = TaskManagerPool::new(1, "client-test", Duration::from_secs(1));
        let (dispatcher, _) = Dispatcher::new(
            ha,
            Arc::new(crate::config::Config::defaults()),
            Arc::new(pool.clone()),
            None,
            tokio_util::sync::CancellationToken::new(),
        );
        super::super::rest::RestState {
            dispatcher,
            taskmanagers: pool,
            config: Default::default(),
            leader_epoch: 1,
            cluster: tokio::sync::watch::channel(Default::default()).1,
        }
    }

    #[tokio::test]
    async fn every_route_of_an_idle_jobmanager_reads() {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let address = format!("http://{}", listener.local_addr().unwrap());
        let router = super::super::rest::router(idle_jobmanager());
        let serve = tokio::spawn(async move { axum::serve(listener, router).await });
        let client = JobManagerClient::new(&address, Duration::from_secs(5));
        assert_eq!(client.jobs().await.unwrap(), vec![]);
        assert_eq!(client.taskmanagers().await.unwrap(), vec![]);
        let o = client.overview().await.unwrap();
        assert_eq!((o.taskmanagers, o.slots_total), (0, 0));
        assert!(client.job("nope").await.unwrap_err().is_not_found());
        assert!(client.checkpoints("nope").await.unwrap_err().is_not_found());
        assert!(client.cancel("nope").await.unwrap_err().is_not_found());
        // Not a job spec: refused with the parser's reason.
        let refused = client.submit("pipeline: 3\n").await.unwrap_err();
        assert!(
            matches!(refused, ClientError::Status { status: 400, .. }),
            "{refused:?}"
        );
        assert!(
            refused
                .refusal()
                .is_some_and(|r| r.contains("request body")),
            "{refused}"
        );
        assert!(client.metrics().await.unwrap().contains("yarnflow_jobs"));
        serve.abort();
    }
}
