//! `GET /metrics`: the JobManager's figures in the Prometheus text exposition format (0.0.4),
//! rendered by hand from the same snapshots the REST API shows, plus the ApplicationMaster's
//! container and failover counters.
//!
//! ```text
//! yarnflow_jobs{status="RUNNING"} 1                       gauge, every JobStatus
//! yarnflow_job_restarts_total{job_id,job_name}            counter (under this JobManager)
//! yarnflow_job_checkpoints_completed_total{job_id,...}    counter (under this JobManager)
//! yarnflow_job_lifetime_restarts_total{job_id,...}        counter (over the job's whole life,
//! yarnflow_job_lifetime_checkpoints_completed_total{...}  counter  carried across failovers
//! yarnflow_job_lifetime_checkpoints_failed_total{...}     counter  in the stored checkpoints)
//! yarnflow_job_failovers_total{job_id,...}                counter (JobManager failovers of the job)
//! yarnflow_job_latest_checkpoint_id{job_id,...}           gauge (once a checkpoint completed)
//! yarnflow_job_last_checkpoint_duration_seconds{...}      gauge (once a checkpoint completed)
//! yarnflow_taskmanagers_registered, yarnflow_taskmanager_slots{state="total"|"available"}
//! yarnflow_leader_epoch                                   gauge (when leading under HA)
//! yarnflow_containers_{requested,allocated,failed}_total, yarnflow_failovers_total
//! ```

use std::fmt::Write;

use super::job_master::JobSnapshot;
use super::status::JobStatus;

/// The content type Prometheus expects for the text format.
pub const CONTENT_TYPE: &str = "text/plain; version=0.0.4; charset=utf-8";

/// The ApplicationMaster's figures (from its worker pool's counters and its attempt number);
/// zero outside YARN.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ClusterCounters {
    /// TaskManager containers asked of the ResourceManager.
    pub containers_requested: u64,
    /// TaskManager containers the ResourceManager allocated.
    pub containers_allocated: u64,
    /// TaskManager containers that failed to start or completed while the application ran.
    pub containers_failed: u64,
    /// Leadership changes this JobManager went through (recoveries of the jobs it took over).
    pub failovers: u64,
}

/// Everything `/metrics` shows, as plain data the REST handler gathers.
#[derive(Debug, Clone, Copy, Default)]
pub struct MetricsView<'a> {
    pub jobs: &'a [JobSnapshot],
    /// Registered TaskManagers: (id, slots, free slots).
    pub taskmanagers: &'a [(String, u32, u32)],
    /// The fencing epoch of this JobManager's leadership, when it leads under HA.
    pub leader_epoch: Option<u64>,
    pub cluster: ClusterCounters,
}

/// Every job status, so that a status with no job still shows up as 0.
const STATUSES: [JobStatus; 8] = [
    JobStatus::Created,
    JobStatus::Running,
    JobStatus::Failing,
    JobStatus::Restarting,
    JobStatus::Finished,
    JobStatus::Canceled,
    JobStatus::Failed,
    JobStatus::Suspended,
];

/// A label value with `\`, `"` and newlines escaped as the text format requires.
fn escape(v: &str) -> String {
    v.replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}

/// `# HELP` and `# TYPE` of one metric family.
fn family(out: &mut String, name: &str, kind: &str, help: &str) {
    let _ = writeln!(out, "# HELP {name} {help}");
    let _ = writeln!(out, "# TYPE {name} {kind}");
}

/// Per-job samples of one family; jobs for which `value` is `None` are left out.
fn per_job(
    out: &mut String,
    jobs: &[JobSnapshot],
    name: &str,
    kind: &str,
    help: &str,
    value: impl Fn(&JobSnapshot) -> Option<String>,
) {
    family(out, name, kind, help);
    for j in jobs {
        if let Some(v) = value(j) {
            let _ = writeln!(
                out,
                "{name}{{job_id=\"{}\",job_name=\"{}\"}} {v}",
                escape(&j.job_id),
                escape(&j.name)
            );
        }
    }
}

/// The whole `/metrics` document.
pub fn render(view: &MetricsView<'_>) -> String {
    let jobs = view.jobs;
    let mut out = String::new();
    family(
        &mut out,
        "yarnflow_jobs",
        "gauge",
        "Jobs of this JobManager by status.",
    );
    for status in STATUSES {
        let n = jobs.iter().filter(|j| j.status == status).count();
        let _ = writeln!(out, "yarnflow_jobs{{status=\"{}\"}} {n}", status.as_str());
    }
    per_job(
        &mut out,
        jobs,
        "yarnflow_job_restarts_total",
        "counter",
        "Restarts of the job (full or region failover) under this JobManager.",
        |j| Some(j.restarts.to_string()),
    );
    per_job(
        &mut out,
        jobs,
        "yarnflow_job_checkpoints_completed_total",
        "counter",
        "Completed checkpoints of the job under this JobManager.",
        |j| Some(j.completed_checkpoints.to_string()),
    );
    per_job(
        &mut out,
        jobs,
        "yarnflow_job_lifetime_restarts_total",
        "counter",
        "Restarts of the job over its whole life (across JobManager failovers).",
        |j| Some(j.lifetime.restarts.to_string()),
    );
    per_job(
        &mut out,
        jobs,
        "yarnflow_job_lifetime_checkpoints_completed_total",
        "counter",
        "Completed checkpoints of the job over its whole life (across JobManager failovers).",
        |j| Some(j.lifetime.completed_checkpoints.to_string()),
    );
    per_job(
        &mut out,
        jobs,
        "yarnflow_job_lifetime_checkpoints_failed_total",
        "counter",
        "Failed (expired, declined, unstored) checkpoints of the job over its whole life.",
        |j| Some(j.lifetime.failed_checkpoints.to_string()),
    );
    per_job(
        &mut out,
        jobs,
        "yarnflow_job_failovers_total",
        "counter",
        "JobManager failovers the job went through (recoveries by a later leader).",
        |j| Some(j.lifetime.failovers.to_string()),
    );
    per_job(
        &mut out,
        jobs,
        "yarnflow_job_latest_checkpoint_id",
        "gauge",
        "Id of the job's latest completed checkpoint.",
        |j| j.latest_checkpoint_id.map(|id| id.to_string()),
    );
    per_job(
        &mut out,
        jobs,
        "yarnflow_job_last_checkpoint_duration_seconds",
        "gauge",
        "Trigger-to-completion time of the job's latest completed checkpoint.",
        |j| {
            j.last_checkpoint_duration_ms
                .map(|ms| format!("{:.3}", ms as f64 / 1000.0))
        },
    );

    let tms = view.taskmanagers;
    family(
        &mut out,
        "yarnflow_taskmanagers_registered",
        "gauge",
        "TaskManagers registered with this JobManager.",
    );
    let _ = writeln!(out, "yarnflow_taskmanagers_registered {}", tms.len());
    family(
        &mut out,
        "yarnflow_taskmanager_slots",
        "gauge",
        "Task slots of the registered TaskManagers.",
    );
    let total: u64 = tms.iter().map(|t| u64::from(t.1)).sum();
    let available: u64 = tms.iter().map(|t| u64::from(t.2)).sum();
    let _ = writeln!(out, "yarnflow_taskmanager_slots{{state=\"total\"}} {total}");
    let _ = writeln!(
        out,
        "yarnflow_taskmanager_slots{{state=\"available\"}} {available}"
    );

    if let Some(epoch) = view.leader_epoch {
        family(
            &mut out,
            "yarnflow_leader_epoch",
            "gauge",
            "The fencing epoch of this JobManager's leadership.",
        );
        let _ = writeln!(out, "yarnflow_leader_epoch {epoch}");
    }

    let m = &view.cluster;
    for (name, help, counter) in [
        (
            "yarnflow_containers_requested_total",
            "TaskManager containers requested from the ResourceManager.",
            m.containers_requested,
        ),
        (
            "yarnflow_containers_allocated_total",
            "TaskManager containers allocated by the ResourceManager.",
            m.containers_allocated,
        ),
        (
            "yarnflow_containers_failed_total",
            "TaskManager containers that completed while the application ran.",
            m.containers_failed,
        ),
        (
            "yarnflow_failovers_total",
            "JobManager failovers (leadership taken over from a previous leader).",
            m.failovers,
        ),
    ] {
        family(&mut out, name, "counter", help);
        let _ = writeln!(out, "{name} {counter}");
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Sample lines (`name{labels} value`) of a rendered document, comments left out.
    fn samples(text: &str) -> Vec<&str> {
        text.lines().filter(|l| !l.starts_with('#')).collect()
    }

    #[test]
    fn empty_state_renders_zeros_and_no_optional_families() {
        let text = render(&MetricsView::default());
        let lines = samples(&text);
        assert!(
            lines.contains(&"yarnflow_jobs{status=\"RUNNING\"} 0"),
            "{text}"
        );
        assert!(
            lines.contains(&"yarnflow_taskmanagers_registered 0"),
            "{text}"
        );
        assert!(lines.contains(&"yarnflow_taskmanager_slots{state=\"total\"} 0"));
        assert!(
            lines.contains(&"yarnflow_containers_failed_total 0"),
            "{text}"
        );
        assert!(lines.contains(&"yarnflow_failovers_total 0"), "{text}");
        assert!(!text.contains("yarnflow_leader_epoch"), "{text}");
        assert!(!text.contains("yarnflow_job_restarts_total{"), "{text}");
        // Every sample is `name[{labels}] value` with a numeric value.
        for l in lines {
            let (_, v) = l.rsplit_once(' ').expect("name and value");
            assert!(v.parse::<f64>().is_ok(), "{l}");
        }
    }

    #[test]
    fn jobs_epoch_and_counters_are_rendered() {
        let jobs = vec![
            JobSnapshot {
                job_id: "j1".into(),
                name: "say \"hi\"\n".into(),
                status: JobStatus::Running,
                restarts: 2,
                completed_checkpoints: 5,
                lifetime: crate::jobmanager::checkpoint::LifetimeCounts {
                    completed_checkpoints: 12,
                    failed_checkpoints: 1,
                    restarts: 4,
                    failovers: 3,
                },
                latest_checkpoint_id: Some(9),
                last_checkpoint_duration_ms: Some(1250),
                ..Default::default()
            },
            JobSnapshot {
                job_id: "j2".into(),
                status: JobStatus::Finished,
                ..Default::default()
            },
        ];
        let text = render(&MetricsView {
            jobs: &jobs,
            leader_epoch: Some(7),
            cluster: ClusterCounters {
                containers_failed: 2,
                failovers: 1,
                ..Default::default()
            },
            ..Default::default()
        });
        let lines = samples(&text);
        for want in [
            "yarnflow_jobs{status=\"RUNNING\"} 1",
            "yarnflow_jobs{status=\"FINISHED\"} 1",
            "yarnflow_jobs{status=\"FAILED\"} 0",
            "yarnflow_job_restarts_total{job_id=\"j1\",job_name=\"say \\\"hi\\\"\\n\"} 2",
            "yarnflow_job_checkpoints_completed_total{job_id=\"j2\",job_name=\"\"} 0",
            "yarnflow_job_lifetime_restarts_total{job_id=\"j1\",job_name=\"say \\\"hi\\\"\\n\"} 4",
            "yarnflow_job_lifetime_checkpoints_completed_total{job_id=\"j1\",job_name=\"say \\\"hi\\\"\\n\"} 12",
            "yarnflow_job_lifetime_checkpoints_failed_total{job_id=\"j1\",job_name=\"say \\\"hi\\\"\\n\"} 1",
            "yarnflow_job_failovers_total{job_id=\"j1\",job_name=\"say \\\"hi\\\"\\n\"} 3",
            "yarnflow_job_failovers_total{job_id=\"j2\",job_name=\"\"} 0",
            "yarnflow_job_latest_checkpoint_id{job_id=\"j1\",job_name=\"say \\\"hi\\\"\\n\"} 9",
            "yarnflow_job_last_checkpoint_duration_seconds{job_id=\"j1\",job_name=\"say \\\"hi\\\"\\n\"} 1.250",
            "yarnflow_leader_epoch 7",
            "yarnflow_containers_failed_total 2",
            "yarnflow_failovers_total 1",
        ] {
            assert!(lines.contains(&want), "missing {want}:\n{text}");
        }
        assert!(
            !text.contains("yarnflow_job_latest_checkpoint_id{job_id=\"j2\""),
            "{text}"
        );
    }
}
