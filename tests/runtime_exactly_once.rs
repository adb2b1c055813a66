//! The runtime's exactly-once guarantee, in one process with embedded HA and local storage: a
//! bounded sequence job's committed output holds every number exactly once, also when a subtask
//! is killed mid-job (only that subtask restarts, from the latest completed checkpoint).

mod support;

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use yarnflow::ha::HaServices;
use yarnflow::job::graph::RunId;
use yarnflow::job::spec::JobSpec;
use yarnflow::jobmanager::job_master::{self, JobMasterConfig, JobMasterHandle};
use yarnflow::jobmanager::restart::RestartStrategy;
use yarnflow::jobmanager::status::JobStatus;
use yarnflow::storage::Location;
use yarnflow::storage::local::LocalStore;

fn spec(to: u64, rate: u64) -> JobSpec {
    JobSpec::parse(
        &format!(
            "name: eo\nparallelism: 4\ncheckpoint-interval: 50 ms\npipeline:\n  - source: {{ kind: sequence, from: 0, to: {to}, rate: {rate} }}\n  - sink: {{ kind: files }}\n"
        ),
        "eo.yaml",
    )
    .unwrap()
}

/// Waits until the job has completed a checkpoint: every subtask is deployed and running.
async fn wait_for_a_checkpoint(handle: &JobMasterHandle) {
    let mut snapshot = handle.snapshot.clone();
    tokio::time::timeout(
        Duration::from_secs(30),
        snapshot.wait_for(|s| s.latest_checkpoint_id.is_some()),
    )
    .await
    .expect("a checkpoint completes")
    .unwrap();
}

fn config(spec: JobSpec, dir: &str, restart: RestartStrategy) -> JobMasterConfig {
    JobMasterConfig {
        spec,
        run_id: RunId::random(),
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
    let dir = support::workdir("rt-failover").display().to_string();
    let ha = HaServices::embedded(Arc::new(LocalStore), &format!("{dir}/ha"), 1);
    let restart = RestartStrategy::FixedDelay {
        attempts: 3,
        delay: Duration::from_millis(100),
        failures: 0,
    };
    let (handle, done) =
        job_master::start(config(spec(200_000, 100_000), &dir, restart), ha.clone());
    wait_for_a_checkpoint(&handle).await;
    handle.kill_subtask(2).await;
    let outcome = tokio::time::timeout(Duration::from_secs(60), done)
        .await
        .expect("the job ends")
        .unwrap();
    assert_eq!(outcome.status, JobStatus::Finished, "{outcome:?}");
    assert_eq!(outcome.restarts, 1, "{outcome:?}");
    assert!(outcome.completed_checkpoints >= 2, "{outcome:?}");
    // The committed numbers (visible part files only), sorted.
    let mut lines: Vec<u64> = support::committed(Path::new(&format!("{dir}/output")))
        .lines
        .iter()
        .map(|l| l.parse().unwrap())
        .collect();
    lines.sort_unstable();
    assert_eq!(lines.len(), 200_000, "every record exactly once");
    assert!(lines.iter().enumerate().all(|(i, n)| *n == i as u64));
    // Terminal: the job's HA data is gone, the result is recorded.
    assert!(ha.job_graphs.job_ids().await.unwrap().is_empty());
    let _ = std::fs::remove_dir_all(&dir);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_exhausted_restart_strategy_fails_the_job_with_the_cause() {
    let dir = support::workdir("rt-exhausted").display().to_string();
    let ha = HaServices::embedded(Arc::new(LocalStore), &format!("{dir}/ha"), 1);
    let (handle, done) = job_master::start(
        config(spec(10_000_000, 100_000), &dir, RestartStrategy::None),
        ha,
    );
    wait_for_a_checkpoint(&handle).await;
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
    // Its run's pending files are gone with it.
    let output = support::committed(Path::new(&format!("{dir}/output")));
    assert!(output.uncommitted.is_empty(), "{:?}", output.uncommitted);
    let _ = std::fs::remove_dir_all(&dir);
}

/// A cancelled job keeps what its completed checkpoints committed, commits no record twice and
/// leaves no hidden file behind. (`local_mode`'s cancel test holds a checkpoint in flight, so
/// that there are pending files to remove.)
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cancelled_job_leaves_only_committed_files() {
    let dir = support::workdir("rt-cancel").display().to_string();
    let ha = HaServices::embedded(Arc::new(LocalStore), &format!("{dir}/ha"), 1);
    let (handle, done) = job_master::start(
        config(spec(10_000_000, 100_000), &dir, RestartStrategy::None),
        ha,
    );
    let mut snapshot = handle.snapshot.clone();
    tokio::time::timeout(
        Duration::from_secs(30),
        snapshot.wait_for(|s| s.completed_checkpoints >= 3),
    )
    .await
    .expect("checkpoints complete")
    .unwrap();
    handle.cancel().await;
    let outcome = tokio::time::timeout(Duration::from_secs(30), done)
        .await
        .expect("the job ends")
        .unwrap();
    assert_eq!(outcome.status, JobStatus::Canceled, "{outcome:?}");
    let output = support::committed(Path::new(&format!("{dir}/output")));
    assert!(
        output.uncommitted.is_empty(),
        "hidden files remain: {:?}",
        output.uncommitted
    );
    let counts = output.counts();
    assert!(
        !counts.is_empty(),
        "the completed checkpoints are committed"
    );
    assert!(counts.values().all(|c| *c == 1), "no record twice");
    let _ = std::fs::remove_dir_all(&dir);
}
