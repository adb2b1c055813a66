//! The JobManager REST API's messages (Flink's field names), one definition shared by the
//! server ([`super::rest`]) and the client ([`super::client`]). `GET /jobs/{id}` answers a
//! [`super::job_master::JobSnapshot`].

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use super::status::JobStatus;

/// `GET /overview`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Overview {
    /// How many jobs are in each status (`RUNNING`, ...; only statuses that have a job).
    pub jobs: BTreeMap<String, u32>,
    pub taskmanagers: usize,
    #[serde(rename = "slots-total")]
    pub slots_total: u32,
    #[serde(rename = "slots-available")]
    pub slots_available: u32,
}

/// One entry of `GET /jobs`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct JobSummary {
    pub id: String,
    pub name: String,
    pub status: JobStatus,
}

/// `GET /jobs/{id}/checkpoints`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CheckpointStats {
    pub counts: CheckpointCounts,
    pub latest: LatestCheckpoints,
    pub summary: CheckpointSummary,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CheckpointCounts {
    pub completed: u64,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LatestCheckpoints {
    /// The latest completed checkpoint's id.
    pub completed: Option<u64>,
    /// The checkpoint the job was restored from, if it was.
    pub restored: Option<u64>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CheckpointSummary {
    pub duration_ms_p50: Option<u64>,
    pub duration_ms_max: Option<u64>,
}

/// One entry of `GET /taskmanagers` (Flink's field names).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TaskManagerInfo {
    pub id: String,
    #[serde(rename = "slotsNumber")]
    pub slots: u32,
    #[serde(rename = "freeSlots")]
    pub free_slots: u32,
}

/// What `POST /jobs` answers (202).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Submitted {
    pub jobid: String,
}

/// `GET /jobs`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct JobList {
    pub jobs: Vec<JobSummary>,
}

/// `GET /taskmanagers`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TaskManagerList {
    pub taskmanagers: Vec<TaskManagerInfo>,
}

/// Every error answer: `{"errors": [..]}` (Flink's shape).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Errors {
    pub errors: Vec<String>,
}
