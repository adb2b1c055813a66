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
        checkpoint_storage: yarnflow::jobmanager::checkpoint_storage::CheckpointStorage::new(
            Location {
                store: Arc::new(LocalStore),
                path: format!("{dir}/checkpoints"),
            },
        ),
        restart,
        checkpoint_timeout: Duration::from_secs(10),
        tolerable_failed_checkpoints: 0,
        max_parallelism: -1,
        runtime: Arc::new(job_master::InProcess::default()),
        leadership: tokio_util::sync::CancellationToken::new(),
        graph_persisted: false,
        recovered: false,
        recovery: job_master::RecoveryPolicy::default(),
        cleanup: yarnflow::jobmanager::cleanup::RetryStrategy::None,
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
        Arc::new(job_master::InProcess::default()),
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

/// Quick retries, so that a store that stays unreadable ends recovery soon.
fn quick(fall_back_on_corruption: bool) -> job_master::RecoveryPolicy {
    job_master::RecoveryPolicy {
        retry: yarnflow::jobmanager::cleanup::RetryStrategy::ExponentialDelay {
            attempts: 3,
            initial_backoff: Duration::from_millis(10),
            max_backoff: Duration::from_millis(50),
        },
        fall_back_on_corruption,
    }
}

/// Runs the job until `n` checkpoints completed, then revokes leadership: SUSPENDED, HA data
/// kept. Returns the retained checkpoint ids.
async fn run_then_revoke(cfg: JobMasterConfig, ha: &HaServices, n: u64) -> Vec<u64> {
    let leadership = cfg.leadership.clone();
    let job_id = cfg.spec.job_id();
    let (handle, done) = job_master::start(cfg, ha.clone());
    let mut snapshot = handle.snapshot.clone();
    tokio::time::timeout(
        Duration::from_secs(30),
        snapshot.wait_for(|s| s.completed_checkpoints >= n),
    )
    .await
    .expect("checkpoints complete")
    .unwrap();
    leadership.cancel();
    let outcome = tokio::time::timeout(Duration::from_secs(30), done)
        .await
        .expect("the job master ends")
        .unwrap();
    assert_eq!(outcome.status, JobStatus::Suspended, "{outcome:?}");
    assert!(!outcome.recovery_failed);
    let store = ha.checkpoint_store_factory.checkpoint_store(&job_id);
    store.checkpoint_ids().await.unwrap()
}

/// A recovering job master on the same HA data (a new leader).
async fn recover(cfg: JobMasterConfig, ha: &HaServices) -> job_master::JobOutcome {
    let cfg = JobMasterConfig {
        graph_persisted: true,
        leadership: tokio_util::sync::CancellationToken::new(),
        ..cfg
    };
    let (_handle, done) = job_master::start(cfg, ha.clone());
    tokio::time::timeout(Duration::from_secs(60), done)
        .await
        .expect("the job master ends")
        .unwrap()
}

fn committed_numbers(dir: &str) -> Vec<u64> {
    let mut lines: Vec<u64> = support::committed(Path::new(&format!("{dir}/output")))
        .lines
        .iter()
        .map(|l| l.parse().unwrap())
        .collect();
    lines.sort_unstable();
    lines
}

fn assert_exactly_once(dir: &str, to: u64) {
    let lines = committed_numbers(dir);
    assert_eq!(lines.len() as u64, to, "every record exactly once");
    assert!(lines.iter().enumerate().all(|(i, n)| *n == i as u64));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unreadable_checkpoint_store_suspends_recovery_instead_of_restarting_from_zero() {
    let dir = support::workdir("rt-unreadable").display().to_string();
    let ha = HaServices::embedded(Arc::new(LocalStore), &format!("{dir}/ha"), 1);
    let to = 60_000;
    let restart = RestartStrategy::None;
    let cfg = JobMasterConfig {
        recovery: quick(false),
        cleanup: yarnflow::jobmanager::cleanup::RetryStrategy::None,
        ..config(spec(to, 20_000), &dir, restart)
    };
    let job_id = cfg.spec.job_id();
    let ids = run_then_revoke(cfg.clone(), &ha, 2).await;
    let newest = *ids.last().expect("a retained checkpoint");
    // The blob cannot be read (a directory in its place: an I/O error, as root too).
    let blob = format!("{dir}/ha/jobs/{job_id}/checkpoints/{newest:019}");
    let saved = std::fs::read(&blob).unwrap();
    std::fs::remove_file(&blob).unwrap();
    std::fs::create_dir(&blob).unwrap();
    let before = committed_numbers(&dir);

    let outcome = recover(cfg.clone(), &ha).await;
    assert_eq!(outcome.status, JobStatus::Suspended, "{outcome:?}");
    assert!(outcome.recovery_failed, "{outcome:?}");
    let failure = outcome.failure.unwrap();
    assert!(
        failure.starts_with(&format!(
            "cannot recover job {job_id}: the checkpoint store could not be read (4 tries): "
        )) && failure.contains(&blob),
        "{failure}"
    );
    assert_eq!(outcome.restored_from, None);
    // Nothing ran from 0, nothing was cleaned up, no result recorded.
    assert_eq!(committed_numbers(&dir), before);
    assert_eq!(ha.job_graphs.job_ids().await.unwrap(), vec![job_id.clone()]);
    assert!(!ha.job_results.has_result(&job_id).await.unwrap());

    // Readable again: the next recovery resumes from that checkpoint, exactly once.
    std::fs::remove_dir(&blob).unwrap();
    std::fs::write(&blob, saved).unwrap();
    let outcome = recover(cfg, &ha).await;
    assert_eq!(outcome.status, JobStatus::Finished, "{outcome:?}");
    assert_eq!(outcome.restored_from, Some(newest));
    // Over the job's life: one failover (the recovery that failed recovered nothing), and the
    // first leader's checkpoints on top of this one's, carried in the recovered checkpoint.
    assert_eq!(outcome.lifetime.failovers, 1, "{outcome:?}");
    assert!(
        outcome.lifetime.completed_checkpoints >= outcome.completed_checkpoints + 2,
        "{outcome:?}"
    );
    assert_exactly_once(&dir, to);
    let _ = std::fs::remove_dir_all(&dir);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_corrupt_newest_checkpoint_fails_recovery_unless_opted_in_then_output_stays_exactly_once()
{
    let dir = support::workdir("rt-corrupt").display().to_string();
    let ha = HaServices::embedded(Arc::new(LocalStore), &format!("{dir}/ha"), 2);
    let to = 60_000;
    let cfg = JobMasterConfig {
        recovery: quick(false),
        cleanup: yarnflow::jobmanager::cleanup::RetryStrategy::None,
        ..config(spec(to, 20_000), &dir, RestartStrategy::None)
    };
    let job_id = cfg.spec.job_id();
    let ids = run_then_revoke(cfg.clone(), &ha, 3).await;
    let [older, newest] = ids[..] else {
        panic!("two retained checkpoints: {ids:?}")
    };
    // The sinks committed the newest checkpoint (its completion notice precedes the stop):
    // those parts' records come again after a fallback, so they must go.
    let newer_parts = |dir: &str| {
        std::fs::read_dir(format!("{dir}/output"))
            .unwrap()
            .filter(|e| {
                let name = e.as_ref().unwrap().file_name();
                let name = name.to_string_lossy();
                name.starts_with("part-") && name.ends_with(&format!("-{newest}"))
            })
            .count()
    };
    assert!(newer_parts(&dir) > 0, "the newest checkpoint was committed");
    let blob = format!("{dir}/ha/jobs/{job_id}/checkpoints/{newest:019}");
    std::fs::write(&blob, b"{\"version\": 1, \"job_id\": trunc").unwrap();

    // By default: SUSPENDED, naming the checkpoint and its file.
    let outcome = recover(cfg.clone(), &ha).await;
    assert_eq!(outcome.status, JobStatus::Suspended, "{outcome:?}");
    assert!(outcome.recovery_failed);
    let failure = outcome.failure.unwrap();
    assert!(
        failure.starts_with(&format!(
            "cannot recover job {job_id}: checkpoint {newest} (file {blob}) is corrupt: "
        )) && failure.contains("recover-from-older-on-corruption: false"),
        "{failure}"
    );

    // Opted in: the older checkpoint is restored, the newer one's committed parts removed.
    let cfg = JobMasterConfig {
        recovery: quick(true),
        cleanup: yarnflow::jobmanager::cleanup::RetryStrategy::None,
        ..cfg
    };
    let outcome = recover(cfg, &ha).await;
    assert_eq!(outcome.status, JobStatus::Finished, "{outcome:?}");
    assert_eq!(outcome.restored_from, Some(older));
    assert_eq!(newer_parts(&dir), 0);
    assert_exactly_once(&dir, to);
    let _ = std::fs::remove_dir_all(&dir);
}

/// A keyed job's state goes to snapshot files, not into the checkpoint metadata: with 100 000
/// distinct keys the metadata in HA storage stays a few hundred bytes of handles while the
/// files grow; the counts are exact; once the job finished its checkpoint directory is empty.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn keyed_state_goes_to_files_and_the_metadata_holds_only_handles() {
    let dir = support::workdir("rt-keyed").display().to_string();
    let ha = HaServices::embedded(Arc::new(LocalStore), &format!("{dir}/ha"), 1);
    let spec = JobSpec::parse(
        "name: keyed\nparallelism: 2\ncheckpoint-interval: 50 ms\npipeline:\n  - source: { kind: sequence, from: 0, to: 300000, rate: 100000 }\n  - key-by: { modulus: 100000 }\n  - count\n  - sink: { kind: files }\n",
        "keyed.yaml",
    )
    .unwrap();
    let job_id = spec.job_id();
    let (_handle, done) = job_master::start(config(spec, &dir, RestartStrategy::None), ha.clone());
    let store = ha.checkpoint_store_factory.checkpoint_store(&job_id);
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    let (mut largest_metadata, mut file_bytes) = (0, 0);
    while file_bytes < 500_000 {
        assert!(
            tokio::time::Instant::now() < deadline,
            "no checkpoint with 500 kB of keyed state within 30 s (metadata {largest_metadata} B, files {file_bytes} B)"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
        let Some(&id) = store.checkpoint_ids().await.unwrap().last() else {
            continue;
        };
        // Subsumed meanwhile: look again.
        let Ok(stored) = store.get(id).await else {
            continue;
        };
        largest_metadata = largest_metadata.max(stored.metadata.len());
        let metadata: serde_json::Value = serde_json::from_slice(&stored.metadata).unwrap();
        let handles: Vec<&serde_json::Value> = metadata["subtasks"]
            .as_object()
            .unwrap()
            .values()
            .filter_map(|s| s.get("keyed"))
            .flat_map(|k| k.as_array().unwrap())
            .collect();
        assert_eq!(handles.len(), 2, "one file per keyed subtask: {metadata}");
        file_bytes = handles.iter().map(|h| h["length"].as_u64().unwrap()).sum();
    }
    assert!(
        largest_metadata < 4096,
        "metadata of {largest_metadata} bytes"
    );
    let outcome = tokio::time::timeout(Duration::from_secs(60), done)
        .await
        .expect("the job ends")
        .unwrap();
    assert_eq!(outcome.status, JobStatus::Finished, "{outcome:?}");
    let mut highest = std::collections::BTreeMap::<String, u64>::new();
    for l in support::committed(Path::new(&format!("{dir}/output"))).lines {
        let (key, count) = l.rsplit_once(',').unwrap();
        let c = highest.entry(key.to_string()).or_default();
        *c = (*c).max(count.parse().unwrap());
    }
    assert_eq!(highest.len(), 100_000);
    assert!(highest.values().all(|c| *c == 3));
    let left: Vec<_> = std::fs::read_dir(format!("{dir}/checkpoints"))
        .map(|d| d.map(|e| e.unwrap().path()).collect())
        .unwrap_or_default();
    assert!(left.is_empty(), "{left:?}");
    let _ = std::fs::remove_dir_all(&dir);
}
