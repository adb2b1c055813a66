//! The JobManager's REST API (axum), Flink's paths: `GET /overview`, `/jobs`, `/jobs/{id}`,
//! `/jobs/{id}/checkpoints`, `/taskmanagers`, `/config`, `POST /jobs/{id}/cancel`, and
//! `/metrics` (Prometheus text, see [`super::metrics`]). Handlers only read job snapshots and
//! counters and post to job masters; they own nothing.

use std::collections::BTreeMap;
use std::sync::Arc;

use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use serde_json::json;

use super::api::{
    CheckpointCounts, CheckpointStats, CheckpointSummary, Errors, JobList, JobSummary,
    LatestCheckpoints, Overview, Submitted, TaskManagerInfo, TaskManagerList,
};
use super::dispatcher::Dispatcher;
use super::metrics::{ClusterCounters, MetricsView};
use super::taskmanagers::TaskManagerPool;

/// What the handlers read: a leader's dispatcher (its jobs), its TaskManagers and figures.
#[derive(Clone)]
pub struct RestState {
    /// Where `POST /jobs` submits and job snapshots come from.
    pub dispatcher: Dispatcher,
    pub taskmanagers: TaskManagerPool,
    /// The effective configuration (key, value).
    pub config: Arc<Vec<(String, String)>>,
    /// The fencing epoch of this JobManager's leadership.
    pub leader_epoch: u64,
    /// The ApplicationMaster's container and failover figures, shown by `/metrics`.
    pub cluster: tokio::sync::watch::Receiver<ClusterCounters>,
}

fn error(code: StatusCode, message: String) -> Response {
    (
        code,
        Json(Errors {
            errors: vec![message],
        }),
    )
        .into_response()
}

fn not_found(what: &str) -> Response {
    error(StatusCode::NOT_FOUND, what.to_string())
}

pub fn router(state: RestState) -> Router {
    Router::new()
        .route("/overview", get(overview))
        .route("/jobs", get(jobs).post(submit))
        .route("/jobs/{id}", get(job))
        .route("/jobs/{id}/checkpoints", get(checkpoints))
        .route("/jobs/{id}/cancel", post(cancel))
        .route("/taskmanagers", get(taskmanagers))
        .route("/config", get(config))
        .route("/metrics", get(metrics))
        .with_state(state)
}

async fn overview(State(s): State<RestState>) -> Json<Overview> {
    let mut jobs: BTreeMap<String, u32> = BTreeMap::new();
    for j in s.dispatcher.snapshots() {
        *jobs.entry(j.status.to_string()).or_default() += 1;
    }
    let tms = s.taskmanagers.registered();
    Json(Overview {
        jobs,
        taskmanagers: tms.len(),
        slots_total: tms.iter().map(|t| t.1).sum(),
        slots_available: tms.iter().map(|t| t.2).sum(),
    })
}

async fn jobs(State(s): State<RestState>) -> Json<JobList> {
    let jobs = s
        .dispatcher
        .snapshots()
        .into_iter()
        .map(|j| JobSummary {
            id: j.job_id,
            name: j.name,
            status: j.status,
        })
        .collect();
    Json(JobList { jobs })
}

/// `POST /jobs` with a job spec (YAML) as the body.
async fn submit(State(s): State<RestState>, body: String) -> Response {
    let spec = match crate::job::spec::JobSpec::parse(&body, "the request body") {
        Ok(spec) => spec,
        Err(e) => {
            return error(StatusCode::BAD_REQUEST, e.to_string());
        }
    };
    match s.dispatcher.submit(spec).await {
        Ok(jobid) => (StatusCode::ACCEPTED, Json(Submitted { jobid })).into_response(),
        Err(e) => {
            let code = if e.is_retriable() {
                StatusCode::SERVICE_UNAVAILABLE
            } else if e.is_user_error() {
                StatusCode::CONFLICT
            } else {
                StatusCode::INTERNAL_SERVER_ERROR
            };
            error(code, e.to_string())
        }
    }
}

async fn job(State(s): State<RestState>, Path(id): Path<String>) -> Response {
    match s.dispatcher.job(&id) {
        Some(h) => Json(h.snapshot.borrow().clone()).into_response(),
        None => not_found(&format!("job {id} not found")),
    }
}

async fn checkpoints(State(s): State<RestState>, Path(id): Path<String>) -> Response {
    match s.dispatcher.job(&id) {
        Some(h) => {
            let j = h.snapshot.borrow().clone();
            Json(CheckpointStats {
                counts: CheckpointCounts {
                    completed: j.completed_checkpoints,
                },
                latest: LatestCheckpoints {
                    completed: j.latest_checkpoint_id,
                    restored: j.restored_from_checkpoint,
                },
                summary: CheckpointSummary {
                    duration_ms_p50: j.checkpoint_duration_ms_p50,
                    duration_ms_max: j.checkpoint_duration_ms_max,
                },
            })
            .into_response()
        }
        None => not_found(&format!("job {id} not found")),
    }
}

async fn cancel(State(s): State<RestState>, Path(id): Path<String>) -> Response {
    match s.dispatcher.job(&id) {
        Some(h) => {
            h.cancel().await;
            (
                StatusCode::ACCEPTED,
                Json(json!({"job": id, "request": "cancel"})),
            )
                .into_response()
        }
        None => not_found(&format!("job {id} not found")),
    }
}

async fn taskmanagers(State(s): State<RestState>) -> Json<TaskManagerList> {
    let taskmanagers = s
        .taskmanagers
        .registered()
        .into_iter()
        .map(|(id, slots, free_slots)| TaskManagerInfo {
            id,
            slots,
            free_slots,
        })
        .collect();
    Json(TaskManagerList { taskmanagers })
}

async fn config(State(s): State<RestState>) -> Json<serde_json::Value> {
    let list: Vec<_> = s
        .config
        .iter()
        .map(|(k, v)| json!({"key": k, "value": v}))
        .collect();
    Json(json!(list))
}

async fn metrics(State(s): State<RestState>) -> Response {
    let jobs = s.dispatcher.snapshots();
    let taskmanagers = s.taskmanagers.registered();
    let text = super::metrics::render(&MetricsView {
        jobs: &jobs,
        taskmanagers: &taskmanagers,
        leader_epoch: Some(s.leader_epoch),
        cluster: *s.cluster.borrow(),
    });
    (
        [(
            axum::http::header::CONTENT_TYPE,
            super::metrics::CONTENT_TYPE,
        )],
        text,
    )
        .into_response()
}
