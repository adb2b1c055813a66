//! The runtime's exactly-once guarantee, in one process with embedded HA and local storage: a
//! bounded sequence job's committed output holds every number exactly once, also when a subtask
//! is killed mid-job (only that subtask restarts, from the latest completed checkpoint); a job
//! that ends CANCELED or FAILED leaves no hidden sink file; a recovered job keeps its run id.

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

/// A recovered job keeps the run id stored with its graph, and a graph stored before run ids
/// gets one derived from its job id: the new leader names, commits and cleans up the job's own
/// files. Two jobs share one output directory here, with the same subtask and checkpoint ids:
/// their files never collide.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_recovered_job_keeps_its_run_id() {
    use std::collections::{BTreeMap, BTreeSet};
    use yarnflow::config::Config;
    use yarnflow::job::graph::JobGraph;
    use yarnflow::job::sink::{PartKind, PartName};
    use yarnflow::jobmanager::dispatcher::Dispatcher;

    let dir = support::workdir("rt-recover-run").display().to_string();
    let ha = HaServices::embedded(Arc::new(LocalStore), &format!("{dir}/ha"), 1);
    let spec = |name: &str| {
        JobSpec::parse(
            &format!(
                "name: {name}\nparallelism: 2\npipeline:\n  - source: {{ kind: sequence, from: 0, to: 1000 }}\n  - sink: {{ kind: files, path: 'file://{dir}/out' }}\n"
            ),
            "recover.yaml",
        )
        .unwrap()
    };
    // What the previous leader left: one graph with a run id, one from before run ids.
    let current = JobGraph {
        spec: spec("current"),
        run_id: RunId::parse("feedbeef").unwrap(),
    };
    let stored = [
        ("current", current.to_bytes().unwrap()),
        ("old", serde_json::to_vec(&spec("old")).unwrap()),
    ];
    for (id, graph) in stored {
        ha.job_graphs
            .put(id, bytes::Bytes::from(graph))
            .await
            .unwrap();
    }
    let (dispatcher, mut outcomes) = Dispatcher::new(
        ha,
        Arc::new(Config::defaults()),
        Arc::new(job_master::InProcess),
        None,
        tokio_util::sync::CancellationToken::new(),
    );
    let mut recovered = dispatcher.recover().await.unwrap();
    recovered.sort();
    assert_eq!(recovered, ["current", "old"]);
    for _ in 0..2 {
        let outcome = tokio::time::timeout(Duration::from_secs(30), outcomes.recv())
            .await
            .expect("the jobs end")
            .unwrap();
        assert_eq!(outcome.status, JobStatus::Finished, "{outcome:?}");
    }
    let mut by_run: BTreeMap<String, BTreeSet<u64>> = BTreeMap::new();
    for e in std::fs::read_dir(format!("{dir}/out")).unwrap() {
        let e = e.unwrap();
        let name = e.file_name().to_string_lossy().to_string();
        let part = PartName::parse(&name)
            .filter(|p| p.kind == PartKind::Committed)
            .unwrap_or_else(|| panic!("only committed part files remain: {name}"));
        let numbers = by_run.entry(part.run_id.unwrap().to_string()).or_default();
        for l in std::fs::read_to_string(e.path()).unwrap().lines() {
            assert!(numbers.insert(l.parse().unwrap()), "{name}: {l} twice");
        }
    }
    assert_eq!(
        by_run.keys().collect::<Vec<_>>(),
        ["feedbeef", "old"],
        "the stored run id and the old graph's job id"
    );
    assert!(by_run.values().all(|n| n.iter().copied().eq(0..1000)));
    let _ = std::fs::remove_dir_all(&dir);
}
