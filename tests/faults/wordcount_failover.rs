//! The word count example on YARN through a fault: a TaskManager container or the AM is
//! SIGKILLed mid-job (`throttle` keeps the job running about 13 s). A lost TaskManager restarts
//! the whole keyed pipeline from the latest checkpoint (all-to-all edges make it one region); a
//! lost AM is replaced by an attempt that adopts the whole running pipeline (issue 13: no
//! subtask restarts). Either way every word's highest committed count is its true count and no
//! line is committed twice.

use std::path::PathBuf;
use std::time::{Duration, Instant};

use crate::support::yarn_app::*;
use crate::support::{self, MiniCluster};
use yarnflow::hadoop::rest::RmRest;

/// Words per second per source subtask: 200,000 words each, about 13 s.
const THROTTLE: u64 = 15_000;

/// Submits the throttled word count and waits for its first `checkpoints`: the job's view then.
async fn start(
    cluster: &MiniCluster,
    rest: &RmRest,
    name: &str,
    checkpoints: u64,
) -> (WordCountRun, PathBuf, String, serde_json::Value) {
    let run = WordCountRun::prepare(cluster, name, Some(THROTTLE)).await;
    let conf = conf_dir(cluster, name, "");
    let app = run.submit(cluster, &conf);
    let view = wait_checkpoints(cluster, rest, &app, checkpoints).await;
    (run, conf, app, view)
}

/// Waits until the job runs again with `check` holding for its view.
async fn wait_running(rest: &RmRest, app: &str, check: impl Fn(&serde_json::Value) -> bool) {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        if let Some((_, v)) = job_view(rest, app).await
            && v["status"] == "RUNNING"
            && check(&v)
        {
            return;
        }
        assert!(Instant::now() < deadline, "{app}: the job never ran again");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn wordcount_survives_a_taskmanager_sigkill_with_exact_counts() {
    let _one = support::ONE_AT_A_TIME.lock().await;
    let cluster = crate::cluster();
    let rest = RmRest::new(cluster.rm_rest());
    let (run, conf, app, _) = start(cluster, &rest, "wordcount-tm-kill", 3).await;
    let victim = busy_taskmanager_container(&rest, &app)
        .await
        .expect("a TaskManager running subtasks");
    kill_container(cluster, &victim);
    wait_running(&rest, &app, |v| v["restarts"].as_u64().unwrap_or(0) >= 1).await;
    wait_succeeded(&rest, &app, Duration::from_secs(180)).await;
    run.check_counts(cluster, &app).await;
    check_no_ha_data(cluster, &conf, &app).await;
}

/// The keyed pipeline is adopted as a whole: no restart, every subtask's attempt number kept,
/// and checkpoints complete under attempt 2 (the barriers of the new leader abandon whatever
/// checkpoint the dead one left half aligned). Killed after the first checkpoint, so that most
/// of the input is still to come.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn wordcount_survives_an_am_sigkill_without_restarting_a_subtask() {
    let _one = support::ONE_AT_A_TIME.lock().await;
    let cluster = crate::cluster();
    let rest = RmRest::new(cluster.rm_rest());
    let (run, conf, app, before) = start(cluster, &rest, "wordcount-am-kill", 1).await;
    let (attempt, am) = current_am_container(&rest, &app).await;
    assert_eq!(attempt, 1);
    let subtasks = before["subtask_attempts"].as_array().map_or(0, Vec::len);
    assert_eq!(subtasks, 6, "two stages of 3: {before}");
    kill_container(cluster, &am);
    let view = wait_attempt_running(&rest, &app, 2, 0, Duration::from_secs(60)).await;
    assert_eq!(view["adopted_subtasks"], 6, "{view}");
    assert_eq!(view["restarts"], before["restarts"], "{view}");
    assert_eq!(
        view["subtask_attempts"], before["subtask_attempts"],
        "{view}"
    );
    let recovered = view["restored_from_checkpoint"]
        .as_u64()
        .expect("recovered");
    let after = wait_attempt_running(&rest, &app, 2, 1, Duration::from_secs(60)).await;
    assert!(
        after["latest_checkpoint_id"].as_u64().unwrap() > recovered,
        "{after}"
    );
    assert_eq!(
        after["subtask_attempts"], before["subtask_attempts"],
        "{after}"
    );
    assert_eq!(after["restarts"], before["restarts"], "{after}");
    wait_succeeded(&rest, &app, Duration::from_secs(180)).await;
    assert_eq!(rest.attempts(&app).await.unwrap().len(), 2);
    run.check_counts(cluster, &app).await;
    check_no_ha_data(cluster, &conf, &app).await;
}
