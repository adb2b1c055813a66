//! `yarnflow status` and `yarnflow fail-attempt` against the real mini cluster: unknown ids are
//! one line naming them; an application whose AM is just `sleep` gets its attempt failed and a
//! second one started; status shows attempts, says when no leader is published, and reads a
//! leader's JobManager REST API (served by this test, `/metrics` included) when one is.

use std::process::Output;
use std::time::{Duration, Instant};

use crate::support::{MiniCluster, unique};
use yarnflow::ha::LeaderElection;
use yarnflow::ha::zookeeper::{ZkCluster, ZkLeaderElection};
use yarnflow::hadoop::rest::{RmRest, SubmissionContext};
use yarnflow::hadoop::yarn::{ApplicationId, LaunchContext, Resource};
use yarnflow::jobmanager::rest::{RestState, router};

/// The REST state of a JobManager with no jobs and no TaskManagers (embedded HA under `dir`).
fn idle_jobmanager(dir: &str) -> RestState {
    use std::sync::Arc;
    use yarnflow::jobmanager::dispatcher::Dispatcher;
    use yarnflow::jobmanager::taskmanagers::TaskManagerPool;
    let ha =
        yarnflow::ha::HaServices::embedded(Arc::new(yarnflow::storage::local::LocalStore), dir, 1);
    let pool = TaskManagerPool::new(1, "cli-tools", Duration::from_secs(1));
    let (dispatcher, _) = Dispatcher::new(
        ha,
        Arc::new(yarnflow::config::Config::defaults()),
        Arc::new(pool.clone()),
        None,
        tokio_util::sync::CancellationToken::new(),
    );
    RestState {
        dispatcher,
        taskmanagers: pool,
        config: Default::default(),
        leader_epoch: 1,
        cluster: tokio::sync::watch::channel(Default::default()).1,
    }
}

fn text(out: &Output) -> (String, String) {
    (
        String::from_utf8_lossy(&out.stdout).to_string(),
        String::from_utf8_lossy(&out.stderr).to_string(),
    )
}

#[test]
fn unknown_application_is_one_line_naming_the_id() {
    let cluster = MiniCluster::get();
    for sub in ["status", "fail-attempt", "logs", "cancel"] {
        let out = cluster.client(&[sub, "application_1_0001"]);
        let (stdout, stderr) = text(&out);
        assert!(!out.status.success(), "{sub}: {stdout}{stderr}");
        let lines: Vec<&str> = stderr.lines().filter(|l| !l.trim().is_empty()).collect();
        assert_eq!(lines.len(), 1, "{sub}: {stderr}");
        assert!(
            lines[0].contains("application_1_0001") && lines[0].contains("not known"),
            "{sub}: {stderr}"
        );
    }
    let out = cluster.client(&["status", "app_1"]);
    let (_, stderr) = text(&out);
    assert!(!out.status.success());
    assert_eq!(stderr.trim().lines().count(), 1, "{stderr}");
    assert!(stderr.contains("'app_1'"), "{stderr}");
}

/// Submits an application whose ApplicationMaster is `sleep 120` (it never registers: the RM
/// expires it after yarn.am.liveness-monitor.expiry-interval-ms, 20 s on the mini cluster).
async fn submit_sleeper(rest: &RmRest) -> ApplicationId {
    let (app, _) = rest.new_application().await.unwrap();
    rest.submit_application(&SubmissionContext {
        application_id: Some(app),
        name: "yarnflow-cli-tools-sleep".into(),
        max_app_attempts: 2,
        resource: Resource {
            memory_mb: 128,
            vcores: 1,
        },
        tags: vec!["yarnflow-test".into()],
        am: LaunchContext {
            commands: vec!["sleep 120".into()],
            ..Default::default()
        },
        ..Default::default()
    })
    .await
    .unwrap();
    app
}

/// Waits until `app` has `n` attempts, the last one launched.
async fn wait_for_attempts(rest: &RmRest, app: ApplicationId, n: usize) {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let attempts = rest.attempts(&app.to_string()).await.unwrap();
        if attempts.len() >= n
            && attempts
                .last()
                .is_some_and(|a| matches!(a.state.as_str(), "LAUNCHED" | "RUNNING"))
        {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "{app}: not {n} launched attempts within 30 s: {attempts:?}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fail_attempt_starts_the_next_attempt_and_status_follows() {
    let cluster = MiniCluster::get();
    let rest = RmRest::new(cluster.rm_rest());
    let app = submit_sleeper(&rest).await;
    let id = app.to_string();
    let root = format!("/{}", unique("yarnflow-cli-tools"));
    let zk_args = [
        "-D".to_string(),
        format!("high-availability.zookeeper.quorum={}", cluster.zk_quorum()),
        "-D".to_string(),
        format!("high-availability.zookeeper.path.root={root}"),
    ];
    let status = |json: bool| {
        let mut args = vec!["status", id.as_str()];
        if json {
            args.push("--json");
        }
        args.extend(zk_args.iter().map(String::as_str));
        cluster.client(&args)
    };
    wait_for_attempts(&rest, app, 1).await;

    // No yarnflow AM: the RM part only, and a line saying no leader is published.
    let out = status(false);
    let (stdout, stderr) = text(&out);
    assert!(out.status.success(), "{stdout}{stderr}");
    assert!(
        stdout.starts_with(&format!("{id} 'yarnflow-cli-tools-sleep'")),
        "{stdout}"
    );
    assert!(stdout.contains("ACCEPTED"), "{stdout}");
    assert!(
        stdout.contains(&format!(
            "attempt 1 appattempt_{}",
            &id["application_".len()..]
        )),
        "{stdout}"
    );
    assert!(stdout.contains("no leader published"), "{stdout}");

    // Fail attempt 1: the RM starts attempt 2.
    let out = cluster.client(&["fail-attempt", &id]);
    let (stdout, stderr) = text(&out);
    assert!(out.status.success(), "{stdout}{stderr}");
    assert_eq!(stdout.lines().count(), 1, "{stdout}");
    assert!(
        stdout.contains("failed attempt 1") && stdout.contains("_000001"),
        "{stdout}"
    );
    wait_for_attempts(&rest, app, 2).await;
    let attempts = rest.attempts(&id).await.unwrap();
    assert_eq!(attempts.len(), 2, "{attempts:?}");
    assert_eq!(attempts[0].state, "FAILED", "{attempts:?}");

    // A leader published under the application id: status reads its JobManager's REST API.
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let address = format!("http://{}", listener.local_addr().unwrap());
    let state = idle_jobmanager(&format!("/tmp/yarnflow-cli-tools-{}", unique("jm")));
    let serve = tokio::spawn(async move { axum::serve(listener, router(state)).await.unwrap() });
    let zk = ZkCluster::connect(
        cluster.zk_quorum(),
        &format!("{root}/{id}"),
        Duration::from_secs(10),
        Duration::from_secs(5),
    )
    .await
    .unwrap();
    let election = ZkLeaderElection::new(zk, "cli-tools-test", false);
    let leadership = election.acquire().await.unwrap();
    election.publish(&leadership, &address).await.unwrap();
    let out = status(true);
    let (stdout, stderr) = text(&out);
    assert!(out.status.success(), "{stdout}{stderr}");
    let v: serde_json::Value = serde_json::from_str(&stdout).expect("one JSON document");
    assert_eq!(v["application"]["id"], id.as_str(), "{v}");
    assert_eq!(v["attempts"].as_array().unwrap().len(), 2, "{v}");
    assert_eq!(v["leader"]["address"], address.as_str(), "{v}");
    assert_eq!(v["leader"]["epoch"], leadership.epoch, "{v}");
    assert_eq!(v["jobmanager"]["jobs"], serde_json::json!([]), "{v}");
    assert_eq!(
        v["jobmanager"]["taskmanagers"],
        serde_json::json!([]),
        "{v}"
    );
    assert_eq!(
        v["containers"]["taskmanager_containers_completed"], 0,
        "{v}"
    );

    // Its Prometheus endpoint answers too (nothing running: zeros).
    let resp = reqwest::get(format!("{address}/metrics")).await.unwrap();
    assert!(resp.status().is_success());
    assert!(
        resp.headers()["content-type"]
            .to_str()
            .unwrap()
            .starts_with("text/plain; version=0.0.4"),
        "{:?}",
        resp.headers()
    );
    let metrics = resp.text().await.unwrap();
    assert!(
        metrics
            .lines()
            .any(|l| l == "yarnflow_jobs{status=\"RUNNING\"} 0"),
        "{metrics}"
    );
    assert!(
        metrics
            .lines()
            .any(|l| l == "yarnflow_containers_failed_total 0"),
        "{metrics}"
    );

    // The leader's JobManager gone: one line says so, the RM part is still there.
    serve.abort();
    let _ = serve.await;
    let out = status(false);
    let (stdout, stderr) = text(&out);
    assert!(out.status.success(), "{stdout}{stderr}");
    assert!(stdout.contains("attempt 2 "), "{stdout}");
    assert!(
        stdout.contains(&format!("leader: {address} epoch {}", leadership.epoch)),
        "{stdout}"
    );
    assert!(stdout.contains("JobManager unreachable"), "{stdout}");

    election.resign().await.unwrap();
    rest.kill(&id).await.unwrap();
    assert_eq!(rest.application(&id).await.unwrap().state, "KILLED");
}
