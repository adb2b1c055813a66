//! The ResourceManager REST API (`/ws/v1/cluster/...`) over reqwest: new application, submit,
//! reports of applications, attempts and containers, kill. Lenient about Hadoop 3.5's Jersey 2
//! JSON (a one-element list may come as an object).

use std::time::Duration;

use serde_json::{Value, json};

use super::yarn::{ApplicationId, LaunchContext, LocalResourceType, Resource};

#[derive(Debug, Clone, thiserror::Error)]
pub enum RestError {
    #[error("{url}: {message}")]
    Http { url: String, message: String },
    #[error("{url}: HTTP {status}: {message}")]
    Status {
        url: String,
        status: u16,
        message: String,
    },
    #[error("{url}: unexpected response: {message}")]
    Shape { url: String, message: String },
}

impl RestError {
    pub fn is_not_found(&self) -> bool {
        matches!(self, RestError::Status { status: 404, .. })
    }
}

/// What `yarnflow` submits (`ApplicationSubmissionContext`).
#[derive(Debug, Clone, Default)]
pub struct SubmissionContext {
    pub application_id: Option<ApplicationId>,
    pub name: String,
    pub queue: String,
    pub application_type: String,
    pub max_app_attempts: i32,
    pub keep_containers_across_application_attempts: bool,
    /// Milliseconds; -1 counts every failure.
    pub attempt_failures_validity_interval: i64,
    pub resource: Resource,
    pub tags: Vec<String>,
    pub unmanaged_am: bool,
    pub am: LaunchContext,
}

/// The fields of an application report yarnflow reads.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct AppReport {
    pub id: String,
    pub user: String,
    pub name: String,
    pub state: String,
    pub final_status: String,
    pub diagnostics: String,
    pub tracking_url: String,
    pub started_time: i64,
    pub finished_time: i64,
    pub am_host_http_address: String,
    /// `host:port` the AM registered as its RPC address (yarnflow: the JobManager endpoint).
    pub am_rpc_address: String,
    pub current_attempt: Option<String>,
}

impl AppReport {
    /// FINISHED, FAILED or KILLED.
    pub fn is_final(&self) -> bool {
        matches!(self.state.as_str(), "FINISHED" | "FAILED" | "KILLED")
    }

    /// The registered AM RPC address as a base URL: a yarnflow AM registers its JobManager
    /// endpoint there. `None` until the current attempt has registered.
    pub fn jobmanager_url(&self) -> Option<String> {
        let a = self.am_rpc_address.trim();
        (!a.is_empty() && !a.ends_with(":0") && !a.starts_with("N/A"))
            .then(|| format!("http://{a}"))
    }
}

#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct AttemptReport {
    pub id: i64,
    pub attempt_id: String,
    pub container_id: String,
    pub node_http_address: String,
    pub node_id: String,
    pub state: String,
    pub start_time: i64,
    pub finished_time: i64,
    pub diagnostics: String,
}

#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct ContainerReport {
    pub container_id: String,
    pub node_id: String,
    pub node_http_address: String,
    pub state: String,
    pub exit_status: i64,
    pub started_time: i64,
    pub finished_time: i64,
    pub diagnostics: String,
}

/// Client of one ResourceManager's REST API.
#[derive(Clone)]
pub struct RmRest {
    base: String,
    http: reqwest::Client,
}

/// A JSON list that Jersey may have written as a single object or omitted.
fn list(v: &Value) -> Vec<Value> {
    match v {
        Value::Array(a) => a.clone(),
        Value::Null => vec![],
        other => vec![other.clone()],
    }
}

fn s(v: &Value, k: &str) -> String {
    match &v[k] {
        Value::String(x) => x.clone(),
        Value::Null => String::new(),
        other => other.to_string(),
    }
}

fn i(v: &Value, k: &str) -> i64 {
    v[k].as_i64()
        .or_else(|| v[k].as_str().and_then(|x| x.parse().ok()))
        .unwrap_or_default()
}

impl RmRest {
    /// `base` is the RM web address, e.g. `http://rm:8088`.
    pub fn new(base: &str) -> RmRest {
        let base = if base.starts_with("http") {
            base.trim_end_matches('/').to_string()
        } else {
            format!("http://{}", base.trim_end_matches('/'))
        };
        RmRest {
            base,
            http: reqwest::Client::builder()
                .timeout(Duration::from_secs(30))
                .build()
                .expect("a plain HTTP client builds"),
        }
    }

    pub fn base(&self) -> &str {
        &self.base
    }

    async fn send(&self, req: reqwest::RequestBuilder, url: &str) -> Result<Value, RestError> {
        let resp = req
            .header("Accept", "application/json")
            .send()
            .await
            .map_err(|e| RestError::Http {
                url: url.to_string(),
                message: e.to_string(),
            })?;
        let status = resp.status();
        let text = resp.text().await.unwrap_or_default();
        if !status.is_success() {
            let message = serde_json::from_str::<Value>(&text)
                .ok()
                .and_then(|v| v["RemoteException"]["message"].as_str().map(str::to_string))
                .unwrap_or_else(|| {
                    text.lines()
                        .next()
                        .unwrap_or_default()
                        .chars()
                        .take(200)
                        .collect()
                });
            return Err(RestError::Status {
                url: url.to_string(),
                status: status.as_u16(),
                message,
            });
        }
        if text.trim().is_empty() {
            return Ok(Value::Null);
        }
        serde_json::from_str(&text).map_err(|e| RestError::Shape {
            url: url.to_string(),
            message: format!("not JSON: {e}"),
        })
    }

    async fn get(&self, path: &str) -> Result<Value, RestError> {
        let url = format!("{}{path}", self.base);
        self.send(self.http.get(&url), &url).await
    }

    /// `/ws/v1/cluster/info` `state` (STARTED when healthy).
    pub async fn cluster_state(&self) -> Result<String, RestError> {
        Ok(s(
            &self.get("/ws/v1/cluster/info").await?["clusterInfo"],
            "state",
        ))
    }

    /// `POST /ws/v1/cluster/apps/new-application`.
    pub async fn new_application(&self) -> Result<(ApplicationId, Resource), RestError> {
        let url = format!("{}/ws/v1/cluster/apps/new-application", self.base);
        let v = self.send(self.http.post(&url), &url).await?;
        let id: ApplicationId = s(&v, "application-id")
            .parse()
            .map_err(|e| RestError::Shape {
                url: url.clone(),
                message: format!("{e}"),
            })?;
        let max = &v["maximum-resource-capability"];
        Ok((
            id,
            Resource {
                memory_mb: i(max, "memory"),
                vcores: i(max, "vCores") as i32,
            },
        ))
    }

    /// `POST /ws/v1/cluster/apps`.
    pub async fn submit_application(&self, ctx: &SubmissionContext) -> Result<(), RestError> {
        let url = format!("{}/ws/v1/cluster/apps", self.base);
        let id = ctx.application_id.ok_or_else(|| RestError::Shape {
            url: url.clone(),
            message: "submission without an application id".into(),
        })?;
        let body = submission_json(id, ctx);
        self.send(self.http.post(&url).json(&body), &url).await?;
        Ok(())
    }

    /// `GET /ws/v1/cluster/apps/{id}`.
    pub async fn application(&self, id: &str) -> Result<AppReport, RestError> {
        let v = self.get(&format!("/ws/v1/cluster/apps/{id}")).await?;
        let a = &v["app"];
        if a.is_null() {
            return Err(RestError::Shape {
                url: format!("{}/ws/v1/cluster/apps/{id}", self.base),
                message: "no 'app' in the report".into(),
            });
        }
        Ok(AppReport {
            id: s(a, "id"),
            user: s(a, "user"),
            name: s(a, "name"),
            state: s(a, "state"),
            final_status: s(a, "finalStatus"),
            diagnostics: s(a, "diagnostics"),
            tracking_url: s(a, "trackingUrl"),
            started_time: i(a, "startedTime"),
            finished_time: i(a, "finishedTime"),
            am_host_http_address: s(a, "amHostHttpAddress"),
            am_rpc_address: s(a, "amRPCAddress"),
            current_attempt: a["currentAppAttemptId"].as_str().map(str::to_string),
        })
    }

    /// `GET /ws/v1/cluster/apps/{id}/appattempts`.
    pub async fn attempts(&self, id: &str) -> Result<Vec<AttemptReport>, RestError> {
        let v = self
            .get(&format!("/ws/v1/cluster/apps/{id}/appattempts"))
            .await?;
        Ok(list(&v["appAttempts"]["appAttempt"])
            .iter()
            .map(|a| AttemptReport {
                id: i(a, "id"),
                attempt_id: s(a, "appAttemptId"),
                container_id: s(a, "containerId"),
                node_http_address: s(a, "nodeHttpAddress"),
                node_id: s(a, "nodeId"),
                state: s(a, "appAttemptState"),
                start_time: i(a, "startTime"),
                finished_time: i(a, "finishedTime"),
                diagnostics: s(a, "diagnosticsInfo"),
            })
            .collect())
    }

    /// `GET /ws/v1/cluster/apps/{id}/appattempts/{attempt}/containers` (running containers of
    /// the attempt as the RM knows them).
    pub async fn containers(
        &self,
        id: &str,
        attempt: &str,
    ) -> Result<Vec<ContainerReport>, RestError> {
        let v = self
            .get(&format!(
                "/ws/v1/cluster/apps/{id}/appattempts/{attempt}/containers"
            ))
            .await?;
        let c = if v["containers"].is_null() {
            &v["container"]
        } else {
            &v["containers"]["container"]
        };
        Ok(list(c)
            .iter()
            .map(|c| ContainerReport {
                container_id: s(c, "containerId"),
                // Hadoop 3.5.0 says `nodeId`; older releases `assignedNodeId`.
                node_id: Some(s(c, "nodeId"))
                    .filter(|n| !n.is_empty())
                    .unwrap_or_else(|| s(c, "assignedNodeId")),
                node_http_address: s(c, "nodeHttpAddress"),
                state: s(c, "containerState"),
                exit_status: i(c, "containerExitStatus"),
                started_time: i(c, "startedTime"),
                finished_time: i(c, "finishedTime"),
                diagnostics: s(c, "diagnosticsInfo"),
            })
            .collect())
    }

    /// `PUT /ws/v1/cluster/apps/{id}/state {"state":"KILLED"}`, repeated until done.
    pub async fn kill(&self, id: &str) -> Result<(), RestError> {
        let url = format!("{}/ws/v1/cluster/apps/{id}/state", self.base);
        for _ in 0..100 {
            let v = self
                .send(self.http.put(&url).json(&json!({"state": "KILLED"})), &url)
                .await?;
            if v["state"] == "KILLED" || self.application(id).await?.is_final() {
                return Ok(());
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
        Err(RestError::Shape {
            url,
            message: "the application did not reach KILLED within 20 s".into(),
        })
    }
}

fn submission_json(id: ApplicationId, ctx: &SubmissionContext) -> Value {
    let local_resources: Vec<Value> = ctx
        .am
        .local_resources
        .iter()
        .map(|(name, r)| {
            json!({"key": name, "value": {
                "resource": r.uri,
                "type": match r.kind { LocalResourceType::File => "FILE", LocalResourceType::Archive => "ARCHIVE" },
                "visibility": "APPLICATION",
                "size": r.size,
                "timestamp": r.timestamp,
            }})
        })
        .collect();
    let environment: Vec<Value> = ctx
        .am
        .environment
        .iter()
        .map(|(k, v)| json!({"key": k, "value": v}))
        .collect();
    let mut body = json!({
        "application-id": id.to_string(),
        "application-name": ctx.name,
        "queue": if ctx.queue.is_empty() { "default" } else { &ctx.queue },
        "application-type": if ctx.application_type.is_empty() { "YARNFLOW" } else { &ctx.application_type },
        "unmanaged-AM": ctx.unmanaged_am,
        "max-app-attempts": ctx.max_app_attempts,
        "keep-containers-across-application-attempts": ctx.keep_containers_across_application_attempts,
        "resource": {"memory": ctx.resource.memory_mb, "vCores": ctx.resource.vcores},
        "am-container-spec": {
            "local-resources": {"entry": local_resources},
            "environment": {"entry": environment},
            "commands": {"command": ctx.am.commands.join(" ")},
        },
        "application-tags": {"tag": ctx.tags},
    });
    if ctx.attempt_failures_validity_interval != 0 {
        body["attempt-failures-validity-interval"] = json!(ctx.attempt_failures_validity_interval);
    }
    body
}
