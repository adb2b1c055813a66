//! The runtime's exactly-once guarantee, in one process with embedded HA and local storage: a
//! bounded sequence job's committed output holds every number exactly once, also when a subtask
//! is killed mid-job (only that subtask restarts, from the latest completed checkpoint).

use std::sync::Arc;
use std::time::Duration;

use yarnflow::ha::HaServices;
use yarnflow::job::spec::JobSpec;
use yarnflow::jobmanager::job_master::{self, JobMasterConfig};
use yarnflow::jobmanager::restart::RestartStrategy;
use yarnflow::jobmanager::status::JobStatus;
use yarnflow::storage::Location;
use yarnflow::storage::local::LocalStore;

fn workdir(name: &str) -> String {
    let d = std::env::temp_dir()
        .join(format!("yarnflow-rt-{name}-{}", std::process::id()))
        .display()
        .to_string();
    let _ = std::fs::remove_dir_all(&d);
    d
}

fn spec(to: u64, rate: u64) -> JobSpec {
    JobSpec::parse(
        &format!(
            "name: eo\nparallelism: 4\ncheckpoint-interval: 50 ms\npipeline:\n  - source: {{ kind: sequence, from: 0, to: {to}, rate: {rate} }}\n  - sink: {{ kind: files }}\n"
        ),
        "eo.yaml",
    )
    .unwrap()
}

/// The committed lines (visible part files only), sorted.
fn committed(dir: &str) -> Vec<u64> {
    let mut out = Vec::new();
    for e in std::fs::read_dir(dir).unwrap() {
        let e = e.unwrap();
        let name = e.file_name().to_string_lossy().to_string();
        if name.starts_with("part-") {
            for l in std::fs::read_to_string(e.path()).unwrap().lines() {
                out.push(l.parse().unwrap());
            }
        }
    }
    out.sort_unstable();
    out
}

fn config(spec: JobSpec, dir: &str, restart: RestartStrategy) -> JobMasterConfig {
    JobMasterConfig {
        spec,
        sink_dir: Location {
            store: Arc::new(LocalStore),
            path: format!("{dir}/output"),
        },
        restart,
        checkpoint_timeout: Duration::from_secs(10),
        tolerable_failed_checkpoints: 0,
        runtime: Arc::new(job_master::InProcess),
        leadership: tokio_util::sync::CancellationToken::new(),
        graph_persisted: false,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn output_is_exactly_once_across_a_subtask_failure() {
    let dir = workdir("failover");
    let ha = HaServices::embedded(Arc::new(LocalStore), &format!("{dir}/ha"), 1);
    let restart = RestartStrategy::FixedDelay {
        attempts: 3,
        delay: Duration::from_millis(100),
        failures: 0,
    };
    let (handle, done) =
        job_master::start(config(spec(200_000, 100_000), &dir, restart), ha.clone());
    tokio::time::sleep(Duration::from_millis(900)).await;
    handle.kill_subtask(2).await;
    let outcome = tokio::time::timeout(Duration::from_secs(60), done)
        .await
        .expect("the job ends")
        .unwrap();
    assert_eq!(outcome.status, JobStatus::Finished, "{outcome:?}");
    assert_eq!(outcome.restarts, 1, "{outcome:?}");
    assert!(outcome.completed_checkpoints >= 2, "{outcome:?}");
    let lines = committed(&format!("{dir}/output"));
    assert_eq!(lines.len(), 200_000, "every record exactly once");
    assert!(lines.iter().enumerate().all(|(i, n)| *n == i as u64));
    // Terminal: the job's HA data is gone, the result is recorded.
    assert!(ha.job_graphs.job_ids().await.unwrap().is_empty());
    let _ = std::fs::remove_dir_all(&dir);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_exhausted_restart_strategy_fails_the_job_with_the_cause() {
    let dir = workdir("exhausted");
    let ha = HaServices::embedded(Arc::new(LocalStore), &format!("{dir}/ha"), 1);
    let (handle, done) = job_master::start(
        config(spec(10_000_000, 100_000), &dir, RestartStrategy::None),
        ha,
    );
    tokio::time::sleep(Duration::from_millis(300)).await;
    handle.kill_subtask(1).await;
    let outcome = tokio::time::timeout(Duration::from_secs(30), done)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(outcome.status, JobStatus::Failed);
    let cause = outcome.failure.unwrap();
    assert!(
        cause.contains("subtask 1") && cause.contains("none"),
        "{cause}"
    );
    let _ = std::fs::remove_dir_all(&dir);
}
