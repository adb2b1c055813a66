//! Restart attempts on the real mini cluster: `yarnflow submit` runs the exactly-once example
//! (most tests its half-length [`half_spec`], which outlasts one fault) under a yarnflow
//! ApplicationMaster; the tests SIGKILL the AM or a TaskManager container
//! (`yarn/minicluster/run kill`), freeze a TaskManager (`pause`), kill the AM between the end
//! and its unregistration (fault point), or cut every ZooKeeper session, and check the
//! committed output holds every number exactly once, the final state through the RM REST
//! API, and what is left in ZooKeeper and HDFS.
//!
//! Each test takes `support::ONE_AT_A_TIME`, as every test of the faults binary does: one
//! application runs at a time (2 cores), and no fault lands on another test's cluster use.

use std::path::Path;
use std::time::{Duration, Instant};

use crate::support::yarn_app::*;
use crate::support::{self, MiniCluster};
use yarnflow::hadoop::rest::RmRest;

/// `yarnflow <args>` with the cluster's Hadoop conf; returns stdout (asserting success).
fn cli(cluster: &MiniCluster, conf: &Path, args: &[&str]) -> String {
    let out = cluster.yarnflow(conf).args(args).output().unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout).to_string();
    assert!(
        out.status.success(),
        "yarnflow {args:?}:\n{stdout}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    stdout
}

/// `yarnflow logs` after an AM kill: both attempts and the TaskManagers in one timeline, with
/// the attempt markers; the filters and `--json` work.
fn check_logs(cluster: &MiniCluster, conf: &Path, app: &str) {
    let all = cli(cluster, conf, &["logs", app, "--attempt", "all"]);
    assert!(all.contains("attempt 1 started"), "{all}");
    assert!(all.contains("attempt 2 started"), "{all}");
    assert!(all.contains("[a1 ") && all.contains("[a2 "), "{all}");
    // TaskManager containers: their start markers and their own lines, under both leaders.
    assert!(all.contains("started on localhost"), "{all}");
    assert!(
        all.lines()
            .filter(|l| l.contains("registered with the JobManager epoch=2"))
            .count()
            >= 1,
        "TaskManagers re-registered with attempt 2: {all}"
    );
    assert!(all.contains("leadership granted"), "{all}");
    let stamps: Vec<&str> = all.lines().filter_map(|l| l.split(' ').next()).collect();
    assert!(
        stamps.windows(2).all(|w| w[0] <= w[1]),
        "the timeline is ordered by time"
    );
    let am = cli(cluster, conf, &["logs", app, "--container", "am"]);
    assert!(
        !am.is_empty() && am.lines().all(|l| l.contains(" am] ")),
        "{am}"
    );
    let errors = cli(cluster, conf, &["logs", app, "--level", "error"]);
    assert!(
        errors
            .lines()
            .all(|l| l.contains("ERROR") || l.contains("=====")),
        "{errors}"
    );
    let grep = cli(
        cluster,
        conf,
        &["logs", app, "--grep", "leadership granted"],
    );
    let granted: Vec<&str> = grep.lines().filter(|l| !l.contains("=====")).collect();
    assert!(granted.len() >= 2, "one grant per attempt: {grep}");
    assert!(
        granted.iter().all(|l| l.contains("leadership granted")),
        "{grep}"
    );
    let json = cli(cluster, conf, &["logs", app, "--json"]);
    for l in json.lines() {
        serde_json::from_str::<serde_json::Value>(l).unwrap_or_else(|e| panic!("{e}: {l}"));
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_killed_am_is_replaced_by_an_attempt_that_adopts_the_taskmanagers() {
    am_kill_is_adopted("am-kill", "").await;
}

/// The same restart attempt with every process (submitter, AM, TaskManagers) on the libhdfs
/// client (the default is native): its YARN test, the JVM loaded from JAVA_HOME.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_killed_am_is_replaced_by_an_attempt_that_adopts_the_taskmanagers_on_libhdfs() {
    am_kill_is_adopted("am-kill-libhdfs", "storage.hdfs.client: libhdfs\n").await;
}

async fn am_kill_is_adopted(name: &str, extra: &str) {
    let _one = support::ONE_AT_A_TIME.lock().await;
    let cluster = crate::cluster();
    let rest = RmRest::new(cluster.rm_rest());
    let conf = conf_dir(cluster, name, extra);
    let app = submit(cluster, &conf, &half_spec(cluster));
    wait_checkpoints(cluster, &rest, &app, 5).await;
    let (attempt, am) = current_am_container(&rest, &app).await;
    assert_eq!(attempt, 1);
    let before = containers_of(cluster, &app);
    let killed = Instant::now();
    kill_container(cluster, &am);
    // Attempt 2 serves the job, restored from a checkpoint.
    let view = wait_attempt_running(&rest, &app, 2, 0, Duration::from_secs(60)).await;
    println!(
        "AM SIGKILL -> job RUNNING under attempt 2 ({name}): {} ms",
        killed.elapsed().as_millis()
    );
    assert!(
        view["restored_from_checkpoint"].as_u64().is_some(),
        "{view}"
    );
    wait_succeeded(&rest, &app, Duration::from_secs(180)).await;
    assert_eq!(rest.attempts(&app).await.unwrap().len(), 2);
    // Adopted, not replaced: attempt 2 started no container but its own AM.
    let after = containers_of(cluster, &app);
    let new: Vec<&String> = after.iter().filter(|c| !before.contains(c)).collect();
    assert_eq!(new.len(), 1, "attempt 2 started only its AM: {new:?}");
    assert!(new[0].ends_with("_02_000001"), "{new:?}");
    check_output_of(cluster, &app, HALF_RECORDS).await;
    check_no_ha_data(cluster, &conf, &app).await;
    check_logs(cluster, &conf, &app);
}

/// Issue 13: an AM SIGKILL restarts no subtask. The TaskManagers keep their subtasks running
/// while no leader is known; attempt 2 recovers the job from HA and adopts every subtask they
/// report (the job's restart count and every subtask's attempt number stay as they were),
/// checkpoints go on with the next ids, and the output is exactly-once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_am_sigkill_restarts_no_subtask() {
    let _one = support::ONE_AT_A_TIME.lock().await;
    let cluster = crate::cluster();
    let rest = RmRest::new(cluster.rm_rest());
    let conf = conf_dir(cluster, "am-kill-no-restart", "");
    let app = submit(cluster, &conf, &half_spec(cluster));
    let before = wait_checkpoints(cluster, &rest, &app, 5).await;
    let (attempt, am) = current_am_container(&rest, &app).await;
    assert_eq!(attempt, 1);
    let parallelism = before["parallelism"].as_u64().unwrap();
    let attempts = before["subtask_attempts"].clone();
    assert_eq!(
        attempts.as_array().map(Vec::len),
        Some(parallelism as usize),
        "{before}"
    );
    let restarts = before["restarts"].clone();
    let killed = Instant::now();
    kill_container(cluster, &am);
    let view = wait_attempt_running(&rest, &app, 2, 0, Duration::from_secs(60)).await;
    println!(
        "AM SIGKILL -> job RUNNING under attempt 2, subtasks adopted: {} ms",
        killed.elapsed().as_millis()
    );
    assert_eq!(view["adopted_subtasks"], parallelism, "{view}");
    assert_eq!(view["restarts"], restarts, "{view}");
    assert_eq!(view["subtask_attempts"], attempts, "{view}");
    let recovered = view["restored_from_checkpoint"]
        .as_u64()
        .expect("recovered");
    // Checkpoints go on under attempt 2, with ids past the recovered one.
    let after = wait_checkpoints(cluster, &rest, &app, 2).await;
    assert!(
        after["latest_checkpoint_id"].as_u64().unwrap() > recovered,
        "{after}"
    );
    assert_eq!(after["restarts"], restarts, "{after}");
    assert_eq!(after["subtask_attempts"], attempts, "{after}");
    wait_succeeded(&rest, &app, Duration::from_secs(180)).await;
    assert_eq!(rest.attempts(&app).await.unwrap().len(), 2);
    check_output_of(cluster, &app, HALF_RECORDS).await;
    check_no_ha_data(cluster, &conf, &app).await;
}

/// The AM and a TaskManager container die together: attempt 2 adopts the subtasks the
/// surviving TaskManagers report and restarts only the lost one from the latest completed
/// checkpoint (one restart, its attempt number one more), once every container of attempt 1
/// still alive has registered or `jobmanager.reconcile.timeout` is over; exactly-once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_am_and_taskmanager_sigkill_restarts_only_the_lost_subtask() {
    let _one = support::ONE_AT_A_TIME.lock().await;
    let cluster = crate::cluster();
    let rest = RmRest::new(cluster.rm_rest());
    let conf = conf_dir(cluster, "am-tm-kill", "");
    let app = submit(cluster, &conf, &half_spec(cluster));
    let before = wait_checkpoints(cluster, &rest, &app, 5).await;
    let parallelism = before["parallelism"].as_u64().unwrap();
    let (_, am) = current_am_container(&rest, &app).await;
    let victim = busy_taskmanager_container(&rest, &app)
        .await
        .expect("a TaskManager running a subtask");
    kill_container(cluster, &victim);
    kill_container(cluster, &am);
    let view = wait_attempt_running(&rest, &app, 2, 1, Duration::from_secs(90)).await;
    assert_eq!(view["adopted_subtasks"], parallelism - 1, "{view}");
    assert_eq!(view["restarts"], 1, "{view}");
    let attempts: Vec<u64> = view["subtask_attempts"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| a.as_u64().unwrap())
        .collect();
    assert_eq!(
        attempts.iter().filter(|a| **a == 1).count(),
        1,
        "only the lost subtask is a new attempt: {view}"
    );
    wait_succeeded(&rest, &app, Duration::from_secs(180)).await;
    check_output_of(cluster, &app, HALF_RECORDS).await;
    check_no_ha_data(cluster, &conf, &app).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_killed_taskmanager_container_is_replaced_and_its_subtasks_restore() {
    let _one = support::ONE_AT_A_TIME.lock().await;
    let cluster = crate::cluster();
    let rest = RmRest::new(cluster.rm_rest());
    let conf = conf_dir(cluster, "tm-kill", "");
    let app = submit(cluster, &conf, &half_spec(cluster));
    wait_checkpoints(cluster, &rest, &app, 5).await;
    let (_, am) = current_am_container(&rest, &app).await;
    let before = containers_of(cluster, &app);
    let victim = before
        .iter()
        .find(|c| **c != am)
        .expect("a TaskManager container")
        .clone();
    let killed = Instant::now();
    kill_container(cluster, &victim);
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        if let Some((_, v)) = job_view(&rest, &app).await
            && v["restarts"].as_u64().unwrap_or(0) >= 1
            && v["status"] == "RUNNING"
        {
            break;
        }
        assert!(Instant::now() < deadline, "the job never restarted");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    println!(
        "TaskManager SIGKILL -> job RUNNING again: {} ms",
        killed.elapsed().as_millis()
    );
    // `yarnflow status` while it runs matches the RM and the JobManager.
    let status: serde_json::Value =
        serde_json::from_str(&cli(cluster, &conf, &["status", &app, "--json"])).unwrap();
    let (jm, view) = job_view(&rest, &app).await.unwrap();
    assert_eq!(status["application"]["state"], "RUNNING", "{status}");
    assert_eq!(status["leader"]["address"], jm.as_str(), "{status}");
    assert_eq!(status["leader"]["epoch"], 1, "{status}");
    let job = &status["jobmanager"]["jobs"][0];
    assert_eq!(job["job_id"], JOB, "{status}");
    assert_eq!(job["restarts"], view["restarts"], "{status} vs {view}");
    assert!(
        status["containers"]["taskmanager_containers_completed"]
            .as_u64()
            .unwrap()
            >= 1,
        "{status}"
    );
    let report = wait_final(&rest, &app, Duration::from_secs(180)).await;
    assert_eq!(
        report.final_status, "SUCCEEDED",
        "{} {}",
        report.state, report.diagnostics
    );
    assert_eq!(rest.attempts(&app).await.unwrap().len(), 1);
    let status: serde_json::Value =
        serde_json::from_str(&cli(cluster, &conf, &["status", &app, "--json"])).unwrap();
    assert_eq!(status["application"]["state"], "FINISHED", "{status}");
    assert_eq!(
        status["application"]["final_status"], "SUCCEEDED",
        "{status}"
    );
    let after = containers_of(cluster, &app);
    assert!(
        after.len() > before.len(),
        "a replacement container was started: before {before:?}, after {after:?}"
    );
    check_output_of(cluster, &app, HALF_RECORDS).await;
    check_no_ha_data(cluster, &conf, &app).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn killing_the_am_beyond_the_allowed_attempts_fails_the_app_and_keeps_ha_data() {
    let _one = support::ONE_AT_A_TIME.lock().await;
    let cluster = crate::cluster();
    let rest = RmRest::new(cluster.rm_rest());
    // A short ZooKeeper session, so the killed attempt's latch goes soon after the app fails.
    let conf = conf_dir(
        cluster,
        "am-exhaust",
        "yarn.application-attempts: 2\n\
         high-availability.zookeeper.client.session-timeout: 6 s\n",
    );
    // Ten times the example's numbers: the job must still run when the second AM is killed,
    // however slow the restarts are.
    let spec = exactly_once_spec(cluster, "exactly-once-long", 20_000_000, 66_667);
    let app = submit(cluster, &conf, spec.to_str().unwrap());
    for attempt in 1..=2 {
        let deadline = Instant::now() + Duration::from_secs(60);
        while current_am_container(&rest, &app).await.0 != attempt {
            assert!(Instant::now() < deadline, "attempt {attempt} never started");
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
        wait_checkpoints(cluster, &rest, &app, 2).await;
        let (_, am) = current_am_container(&rest, &app).await;
        kill_container(cluster, &am);
    }
    let report = wait_final(&rest, &app, Duration::from_secs(60)).await;
    assert_eq!(report.final_status, "FAILED", "{}", report.state);
    assert!(
        report.diagnostics.contains("failed 2 times"),
        "{}",
        report.diagnostics
    );
    // Kept for a later recovery.
    let out = cluster
        .yarnflow(&conf)
        .args(["ha", "inspect", "--cluster-id", &app])
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.contains(&format!("jobgraphs/{JOB}")), "{text}");
    assert!(text.contains("checkpoints/"), "{text}");
    assert!(
        text.contains("orphans: 0 pointer(s) without blob"),
        "{text}"
    );
    // What `ha clean` is for, once nothing runs: it refuses while the killed attempt's
    // ZooKeeper session (and so its latch) lives on, then removes everything.
    let deadline = Instant::now() + Duration::from_secs(40);
    loop {
        let out = cluster
            .yarnflow(&conf)
            .args(["ha", "clean", "--cluster-id", &app])
            .output()
            .unwrap();
        if out.status.success() {
            break;
        }
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(err.contains("refusing to clean"), "{err}");
        assert!(Instant::now() < deadline, "{err}");
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
    let out = cluster
        .yarnflow(&conf)
        .args(["ha", "inspect", "--cluster-id", &app])
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.contains("(no znodes)"), "{text}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_taskmanager_that_never_starts_is_rate_limited_and_fails_the_job() {
    let _one = support::ONE_AT_A_TIME.lock().await;
    let cluster = crate::cluster();
    let rest = RmRest::new(cluster.rm_rest());
    let conf = conf_dir(
        cluster,
        "tm-start-fail",
        "yarn.container-start-command-template: \"exit 3; %yarnflow% %args% %redirects%\"\n\
         resourcemanager.start-worker.max-failure-rate: 2\n\
         resourcemanager.start-worker.retry-interval: 5 s\n\
         slot.request.timeout: 20 s\n\
         restart-strategy.type: none\n",
    );
    // Not detached: the job never runs; submit follows it to its end and fails.
    let t0 = Instant::now();
    let out = cluster
        .yarnflow(&conf)
        .args(["submit", "examples/exactly-once.yaml"])
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(!out.status.success(), "{stdout}");
    let app = stdout
        .lines()
        .find_map(|l| l.strip_prefix("application ")?.split_whitespace().next())
        .unwrap()
        .to_string();
    let report = rest.application(&app).await.unwrap();
    assert_eq!(report.final_status, "FAILED", "{stdout}");
    assert!(
        report.diagnostics.contains("no free TaskManager slot"),
        "{}",
        report.diagnostics
    );
    let containers = containers_of(cluster, &app);
    let tms = containers.len() - 1;
    println!(
        "start failures: {tms} TaskManager containers in {} s",
        t0.elapsed().as_secs()
    );
    // Unthrottled, 4 wanted containers failing at once are re-requested every heartbeat.
    assert!(tms <= 14, "a request storm: {containers:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cancel_ends_the_app_killed_and_removes_its_ha_data() {
    let _one = support::ONE_AT_A_TIME.lock().await;
    let cluster = crate::cluster();
    let rest = RmRest::new(cluster.rm_rest());
    let conf = conf_dir(cluster, "cancel", "");
    let app = submit(cluster, &conf, &half_spec(cluster));
    wait_checkpoints(cluster, &rest, &app, 2).await;
    let out = cli(cluster, &conf, &["cancel", &app]);
    assert!(out.contains("KILLED"), "{out}");
    let report = rest.application(&app).await.unwrap();
    assert_eq!(
        (report.state.as_str(), report.final_status.as_str()),
        ("FINISHED", "KILLED"),
        "{}",
        report.diagnostics
    );
    assert!(
        report.diagnostics.contains("CANCELED"),
        "{}",
        report.diagnostics
    );
    check_no_ha_data(cluster, &conf, &app).await;
}

/// A TaskManager container frozen with SIGSTOP (issue 11, item 2): YARN still reports it
/// RUNNING, so only the JobManager's heartbeats notice. After `heartbeat.timeout` the AM stops
/// and releases the container and asks for a replacement; the lost subtasks restore and the
/// job finishes exactly once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_paused_taskmanager_container_is_lost_by_heartbeat_and_replaced() {
    let _one = support::ONE_AT_A_TIME.lock().await;
    let cluster = crate::cluster();
    let rest = RmRest::new(cluster.rm_rest());
    let conf = conf_dir(
        cluster,
        "tm-pause",
        "heartbeat.interval: 1 s\nheartbeat.timeout: 5 s\n",
    );
    let app = submit(cluster, &conf, &half_spec(cluster));
    wait_checkpoints(cluster, &rest, &app, 3).await;
    let before = containers_of(cluster, &app);
    let victim = busy_taskmanager_container(&rest, &app)
        .await
        .expect("a busy TaskManager container");
    let paused = Instant::now();
    fault(cluster, "pause", &[&victim]);
    // Expected: the 5 s timeout, a restart delay and a replacement container: about 10 s.
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        if let Some((_, v)) = job_view(&rest, &app).await
            && v["restarts"].as_u64().unwrap_or(0) >= 1
            && v["status"] == "RUNNING"
            && v["exceptions"].as_array().is_some_and(|e| {
                e.iter()
                    .any(|e| e.as_str().unwrap_or_default().contains("heartbeat timeout"))
            })
        {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the paused TaskManager was never replaced"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    println!(
        "TaskManager paused -> job RUNNING again: {} ms",
        paused.elapsed().as_millis()
    );
    let report = wait_final(&rest, &app, Duration::from_secs(180)).await;
    // The frozen container was stopped by the AM (resume it in case it was not).
    let _ = cluster.run("resume", &[&victim]);
    assert_eq!(
        (report.state.as_str(), report.final_status.as_str()),
        ("FINISHED", "SUCCEEDED"),
        "{}",
        report.diagnostics
    );
    let after = containers_of(cluster, &app);
    assert!(
        after.len() > before.len(),
        "a replacement started: {after:?}"
    );
    check_output_of(cluster, &app, HALF_RECORDS).await;
    check_no_ha_data(cluster, &conf, &app).await;
}

/// The AM dies after every job ended and before it unregistered (issue 11, item 8): the next
/// attempt finds the job's result, does not run it again, and unregisters SUCCEEDED.
#[cfg(feature = "fault-points")]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_am_killed_between_the_end_and_unregister_still_ends_succeeded() {
    let _one = support::ONE_AT_A_TIME.lock().await;
    let cluster = crate::cluster();
    let rest = RmRest::new(cluster.rm_rest());
    let conf = conf_dir(cluster, "end-kill", "");
    let app = submit_with_env(
        cluster,
        &conf,
        &half_spec(cluster),
        &[(
            yarnflow::faults::ENV,
            "pause-before-unregister:attempt=1,secs=600",
        )],
    );
    // The job ended under attempt 1, which now waits before unregistering. Its FINISHED
    // status shows before its result is recorded (a kill in between recovers the job, as in
    // Flink), so the fault point's log line is what says the result is recorded.
    let deadline = Instant::now() + Duration::from_secs(180);
    let am = loop {
        let (attempt, am) = current_am_container(&rest, &app).await;
        assert_eq!(attempt, 1);
        if container_log(cluster, &app, &am, "appmaster.err")
            .contains("fault point: pausing before unregister")
        {
            break am;
        }
        assert!(
            Instant::now() < deadline,
            "attempt 1 never paused before unregistering"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    kill_container(cluster, &am);
    let report = wait_succeeded(&rest, &app, Duration::from_secs(120)).await;
    assert_eq!(rest.attempts(&app).await.unwrap().len(), 2);
    assert!(
        report.diagnostics.contains("under an earlier attempt"),
        "{}",
        report.diagnostics
    );
    check_output_of(cluster, &app, HALF_RECORDS).await;
    check_no_ha_data(cluster, &conf, &app).await;
}

/// Every ZooKeeper session of the application expires (issue 11, item 9): the AM, its
/// TaskManagers and a submitter reach ZooKeeper through a proxy that is cut for longer than the
/// session timeout, so the server expires their sessions. The AM loses leadership and exits;
/// YARN's next attempt leads. The TaskManagers do not exit: their discovery opens new
/// sessions, finds the new leader and they re-register, and the job finishes exactly once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn taskmanagers_outlive_a_zookeeper_session_expiry_and_re_register() {
    let _one = support::ONE_AT_A_TIME.lock().await;
    let cluster = crate::cluster();
    let rest = RmRest::new(cluster.rm_rest());
    let proxy = crate::support::proxy::TcpProxy::start(cluster.zk_quorum()).await;
    let dir = conf_dir_on(
        cluster,
        &proxy.addr_string(),
        "zk-expiry",
        "high-availability.zookeeper.client.session-timeout: 4 s\n\
         high-availability.zookeeper.client.connection-timeout: 2 s\n\
         yarn.application-attempts: 20\n",
    );
    let app = submit(cluster, &dir, &half_spec(cluster));
    wait_checkpoints(cluster, &rest, &app, 3).await;
    let before = containers_of(cluster, &app);
    let cut = Instant::now();
    proxy.cut();
    // Three session timeouts: the server has expired every session by then.
    tokio::time::sleep(Duration::from_secs(12)).await;
    proxy.restore();
    let deadline = Instant::now() + Duration::from_secs(90);
    loop {
        if current_am_container(&rest, &app).await.0 >= 2
            && let Some((_, v)) = job_view(&rest, &app).await
            && v["status"] == "RUNNING"
        {
            break;
        }
        assert!(Instant::now() < deadline, "no later attempt ran the job");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    println!(
        "ZooKeeper cut for 12 s -> job RUNNING under a later attempt: {} ms",
        cut.elapsed().as_millis()
    );
    wait_succeeded(&rest, &app, Duration::from_secs(180)).await;
    // The TaskManagers were adopted, not replaced: only AM containers are new.
    let after = containers_of(cluster, &app);
    let new: Vec<&String> = after.iter().filter(|c| !before.contains(c)).collect();
    assert!(
        new.iter().all(|c| c.ends_with("_000001")),
        "only new AMs started: {new:?}"
    );
    check_output_of(cluster, &app, HALF_RECORDS).await;
    check_no_ha_data(cluster, &dir, &app).await;
}

/// Issue 17: the counts cover the job's whole life, not its last attempt. Two AM SIGKILLs
/// (each new attempt RUNNING with a checkpoint of its own) and one TaskManager SIGKILL: the
/// job view, `/metrics`, `yarnflow status` and the final diagnostics count 2 failovers, the
/// restart, and at least every checkpoint each attempt was seen to complete.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn counts_cover_the_jobs_whole_life_across_am_and_taskmanager_kills() {
    let _one = support::ONE_AT_A_TIME.lock().await;
    let cluster = crate::cluster();
    let rest = RmRest::new(cluster.rm_rest());
    let conf = conf_dir(cluster, "lifetime-counts", "yarn.application-attempts: 4\n");
    // Each failover takes a few seconds (the subtasks run on): the half job outlasts them all.
    let app = submit(cluster, &conf, &half_spec(cluster));
    let count = |v: &serde_json::Value, key: &str| v[key].as_u64().unwrap_or(0);
    let lifetime = |v: &serde_json::Value, key: &str| v["lifetime"][key].as_u64().unwrap_or(0);
    let mut view = wait_checkpoints(cluster, &rest, &app, 2).await;
    // Checkpoints seen completed under the attempts before the current one.
    let mut earlier = 0;
    for attempt in 2..=3 {
        let (_, am) = current_am_container(&rest, &app).await;
        if let Some((_, v)) = job_view(&rest, &app).await {
            view = v;
        }
        earlier += count(&view, "completed_checkpoints");
        kill_container(cluster, &am);
        view = wait_attempt_running(&rest, &app, attempt, 1, Duration::from_secs(60)).await;
        assert_eq!(lifetime(&view, "failovers"), attempt as u64 - 1, "{view}");
        assert!(
            lifetime(&view, "completed_checkpoints")
                >= earlier + count(&view, "completed_checkpoints"),
            "{earlier} checkpoints seen before: {view}"
        );
    }
    let victim = busy_taskmanager_container(&rest, &app)
        .await
        .expect("a TaskManager running a subtask");
    kill_container(cluster, &victim);
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        if let Some((_, v)) = job_view(&rest, &app).await {
            view = v;
            if count(&view, "restarts") >= 1 && view["status"] == "RUNNING" {
                break;
            }
        }
        assert!(Instant::now() < deadline, "the job never restarted: {view}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(lifetime(&view, "failovers"), 2, "{view}");
    assert!(lifetime(&view, "restarts") >= 1, "{view}");
    // `yarnflow status` and `/metrics` show the same lifetime counts.
    let status: serde_json::Value =
        serde_json::from_str(&cli(cluster, &conf, &["status", &app, "--json"])).unwrap();
    let job = &status["jobmanager"]["jobs"][0];
    assert_eq!(job["lifetime"]["failovers"], 2, "{status}");
    assert!(
        lifetime(job, "restarts") >= lifetime(&view, "restarts"),
        "{status}"
    );
    let jm = support::jobmanager_of(&rest, &app).await.expect("a leader");
    let metrics = yarnflow::jobmanager::client::JobManagerClient::new(&jm, Duration::from_secs(3))
        .metrics()
        .await
        .unwrap();
    assert!(
        metrics
            .lines()
            .any(|l| l.starts_with("yarnflow_job_failovers_total{") && l.ends_with(" 2")),
        "{metrics}"
    );
    let seen = earlier + count(&view, "completed_checkpoints");
    let report = wait_succeeded(&rest, &app, Duration::from_secs(120)).await;
    assert_eq!(rest.attempts(&app).await.unwrap().len(), 3);
    // "job exactly-once FINISHED: N checkpoints, R restarts, F failovers"
    let line = report
        .diagnostics
        .lines()
        .find(|l| l.starts_with(&format!("job {JOB} FINISHED: ")))
        .unwrap_or_else(|| panic!("{}", report.diagnostics));
    let numbers: Vec<u64> = line
        .split(|c: char| !c.is_ascii_digit())
        .filter_map(|n| n.parse().ok())
        .collect();
    let [checkpoints, restarts, failovers] = numbers[..] else {
        panic!("{line}")
    };
    assert_eq!(failovers, 2, "{line}");
    assert!(restarts >= 1, "{line}");
    assert!(checkpoints >= seen, "{seen} checkpoints seen: {line}");
    check_output_of(cluster, &app, HALF_RECORDS).await;
    check_no_ha_data(cluster, &conf, &app).await;
}
