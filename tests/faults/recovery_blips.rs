//! Short HA outages around a running job (issue 11): a ZooKeeper server stopped for 3 s under
//! `tolerate-suspended-connections: true`, and an HA checkpoint blob unreadable when the next
//! attempt recovers. Neither may end the job or restart it from 0: the job keeps running (or
//! fails over), or the attempt gives up with the HA data kept and a later attempt recovers.
//! Each test takes `support::ONE_AT_A_TIME`, as every test of the faults binary does.

use std::collections::BTreeSet;
use std::time::{Duration, Instant};

use crate::support;
#[cfg(feature = "fault-points")]
use crate::support::MiniCluster;
use crate::support::yarn_app::*;
use yarnflow::hadoop::rest::RmRest;

/// Polls `app` during and after the outage: never final, still attempt 1 (a tolerant leader
/// keeps its leadership), the job never terminal. Records `attempt/RM state/job status` (`-`
/// when the JobManager does not answer).
async fn observe(rest: &RmRest, app: &str, seen: &mut BTreeSet<String>) {
    let report = rest.application(app).await.unwrap();
    assert!(!report.is_final(), "{app} ended: {report:?}");
    let (attempt, _) = current_am_container(rest, app).await;
    assert_eq!(attempt, 1, "leadership lost: a new attempt ({seen:?})");
    let status = match job_view(rest, app).await {
        Some((_, v)) => v["status"].as_str().unwrap_or_default().to_string(),
        None => "-".into(),
    };
    assert!(
        !["FINISHED", "FAILED", "CANCELED", "SUSPENDED"].contains(&status.as_str()),
        "job of {app} {status} during the outage"
    );
    seen.insert(format!("{attempt}/{}/{status}", report.state));
}

/// The ZooKeeper server stops for 3 s under `tolerate-suspended-connections: true`: the AM
/// keeps its leadership (attempt 1 throughout; with Flink's default `false` the same stop
/// revokes it and YARN runs attempt 2), the job is never terminal, checkpoints complete again
/// once ZooKeeper is back, and it finishes exactly once with no HA data left.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_3_s_zookeeper_stop_under_tolerance_never_ends_the_job() {
    let _one = support::ONE_AT_A_TIME.lock().await;
    let cluster = crate::cluster();
    let rest = RmRest::new(cluster.rm_rest());
    let conf = conf_dir(
        cluster,
        "zk-blip",
        "high-availability.zookeeper.client.tolerate-suspended-connections: true\n",
    );
    let spec = half_spec(cluster);
    let app = submit(cluster, &conf, &spec);
    let before = wait_checkpoints(cluster, &rest, &app, 3).await;
    let latest = before["latest_checkpoint_id"].as_u64().unwrap();
    let mut seen = BTreeSet::new();
    fault(cluster, "zk", &["stop"]);
    let stopped = Instant::now();
    while stopped.elapsed() < Duration::from_secs(3) {
        observe(&rest, &app, &mut seen).await;
        tokio::time::sleep(Duration::from_millis(150)).await;
    }
    fault(cluster, "zk", &["start"]);
    let started = Instant::now();
    // Expected: the client reconnects within a second or two and the next checkpoint
    // completes; 20 s is three times a generous bound.
    let deadline = started + Duration::from_secs(20);
    loop {
        observe(&rest, &app, &mut seen).await;
        if let Some((_, v)) = job_view(&rest, &app).await
            && v["status"] == "RUNNING"
            && v["latest_checkpoint_id"].as_u64().unwrap_or(0) > latest
        {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "no checkpoint after {latest} since ZooKeeper is back: {seen:?}"
        );
        tokio::time::sleep(Duration::from_millis(150)).await;
    }
    println!(
        "ZooKeeper stopped {} ms; then RUNNING with a new checkpoint after {} ms; seen {seen:?}",
        started.duration_since(stopped).as_millis(),
        started.elapsed().as_millis()
    );
    wait_succeeded(&rest, &app, Duration::from_secs(180)).await;
    check_output_of(cluster, &app, HALF_RECORDS).await;
    check_no_ha_data(cluster, &conf, &app).await;
}

#[cfg(feature = "fault-points")]
/// Not the NameNode's superuser (the user tests run as), so HDFS permissions apply to it.
const USER: &str = "alice";

#[cfg(feature = "fault-points")]
/// Creates `/user/alice`, owned by alice.
async fn user_home(cluster: &MiniCluster) {
    let admin = yarnflow::hadoop::webhdfs::WebHdfs::new(cluster.webhdfs(), &support::user());
    admin.mkdirs(&format!("/user/{USER}")).await.unwrap();
    admin
        .set_owner(&format!("/user/{USER}"), USER)
        .await
        .unwrap();
}

#[cfg(feature = "fault-points")]
/// The blob the completed checkpoint `id`'s pointer names (`ha inspect --json`).
fn checkpoint_blob(cluster: &MiniCluster, conf: &std::path::Path, app: &str, id: u64) -> String {
    let report = ha_inspect(cluster, conf, app);
    let pointer = format!("{JOB}/checkpoints/{id:019}");
    report["nodes"]
        .as_array()
        .into_iter()
        .flatten()
        .find(|n| n["path"].as_str().is_some_and(|p| p.ends_with(&pointer)))
        .and_then(|n| n["blob"]["path"].as_str())
        .unwrap_or_else(|| panic!("no pointer {pointer}: {report}"))
        .to_string()
}

/// The latest completed checkpoint's blob cannot be read when attempt 2 recovers (HDFS
/// permission denied): attempt 2 must not start the job from 0, nor fail the application; it
/// exits with the HA data kept, and once the blob is readable again a later attempt restores
/// the job from that checkpoint, exactly once.
///
/// The job runs as alice: the AM and TaskManagers act on HDFS as the submitting user
/// (`HADOOP_USER_NAME`), so the permission applies to them. Checkpoint 4 is held back (one
/// acknowledgement dropped; a checkpoint completes only after all arrive, and none is
/// triggered while it is pending), so checkpoint 3 stays the latest one and its blob stays.
#[cfg(feature = "fault-points")]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unreadable_checkpoint_blob_at_recovery_never_restarts_the_job_from_0() {
    let _one = support::ONE_AT_A_TIME.lock().await;
    let cluster = crate::cluster();
    let rest = RmRest::new(cluster.rm_rest());
    user_home(cluster).await;
    let admin = yarnflow::hadoop::webhdfs::WebHdfs::new(cluster.webhdfs(), &support::user());
    let ha_dir = format!("/user/{USER}/ha");
    let conf = conf_dir_with_storage(
        cluster,
        &ha_dir,
        "unreadable-checkpoint",
        "yarn.application-attempts: 4\n",
    );
    let spec = half_spec(cluster);
    let app = submit_with_env(
        cluster,
        &conf,
        &spec,
        &[
            ("HADOOP_USER_NAME", USER),
            ("USER", USER),
            (yarnflow::faults::ENV, "drop-ack:subtask=0,checkpoint=4"),
        ],
    );
    let view = wait_checkpoints(cluster, &rest, &app, 3).await;
    assert_eq!(view["latest_checkpoint_id"], 3, "{view}");
    let blob = checkpoint_blob(cluster, &conf, &app, 3);
    admin.set_permission(&blob, "000").await.unwrap();
    let (_, am) = current_am_container(&rest, &app).await;
    let killed = Instant::now();
    kill_container(cluster, &am);

    // Attempt 2 reads checkpoint 3 once (permission denied is not transient) and exits.
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let attempts = rest.attempts(&app).await.unwrap();
        if attempts.iter().any(|a| a.id == 2 && a.state == "FAILED") {
            break;
        }
        if attempts.iter().any(|a| a.id == 2)
            && let Some((_, v)) = job_view(&rest, &app).await
        {
            assert_ne!(v["status"], "RUNNING", "attempt 2 ran the job: {v}");
        }
        assert!(Instant::now() < deadline, "attempt 2 never failed");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    // HDFS's default permission of a new file (umask 022).
    admin.set_permission(&blob, "644").await.unwrap();
    println!(
        "AM SIGKILL -> attempt 2 failed to recover: {} ms",
        killed.elapsed().as_millis()
    );
    let report = rest.application(&app).await.unwrap();
    assert!(!report.is_final(), "{report:?}");

    let deadline = Instant::now() + Duration::from_secs(60);
    let view = loop {
        if current_am_container(&rest, &app).await.0 >= 3
            && let Some((_, v)) = job_view(&rest, &app).await
            && v["status"] == "RUNNING"
        {
            break v;
        }
        assert!(Instant::now() < deadline, "no later attempt ran the job");
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    println!(
        "AM SIGKILL -> job RUNNING under attempt {}: {} ms",
        current_am_container(&rest, &app).await.0,
        killed.elapsed().as_millis()
    );
    assert_eq!(view["restored_from_checkpoint"], 3, "{view}");
    let logs = cluster
        .yarnflow(&conf)
        .args(["logs", &app, "--attempt", "2", "--level", "error"])
        .output()
        .unwrap();
    let logs = String::from_utf8_lossy(&logs.stdout);
    assert!(
        logs.contains(&blob) && logs.to_lowercase().contains("permission denied"),
        "attempt 2 names the blob and the cause: {logs}"
    );

    wait_succeeded(&rest, &app, Duration::from_secs(180)).await;
    let out = output_of(cluster, USER, &app, HALF_RECORDS).await;
    assert!(out.exactly_once() && out.records == HALF_RECORDS, "{out:?}");
    let left = leftovers_of(cluster, &conf, USER, &ha_dir, &app).await;
    assert!(left.is_empty(), "{app} left {left:?}");
}
