//! `yarnflow doctor` against the real mini cluster: every check passes, the test application's
//! AM (this very binary) succeeds, and its containers' log lines are on the NodeManagers.

use crate::support::{self, MiniCluster};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn doctor_round_trip_succeeds() {
    let cluster = MiniCluster::get();
    let out = cluster.client(&[
        "doctor",
        "--containers",
        "2",
        "-D",
        &format!("high-availability.zookeeper.quorum={}", cluster.zk_quorum()),
    ]);
    let text = String::from_utf8_lossy(&out.stdout);
    println!("{text}");
    assert!(
        out.status.success(),
        "{text}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    for check in [
        "ResourceManager REST",
        "ResourceManager IPC",
        "HDFS",
        "ZooKeeper",
        "YARN application",
    ] {
        assert!(
            text.lines()
                .any(|l| l.starts_with("ok") && l.contains(check)),
            "{check}: {text}"
        );
    }
    assert_eq!(text.matches("log line found").count(), 2, "{text}");
    let app = text
        .split_whitespace()
        .find(|w| w.starts_with("application_"))
        .expect("the application id is printed");
    let rest = yarnflow::hadoop::rest::RmRest::new(cluster.rm_rest());
    let report = rest.application(app).await.unwrap();
    assert_eq!(report.final_status, "SUCCEEDED", "{report:?}");
}

#[test]
fn doctor_names_an_unreachable_component() {
    // A Hadoop configuration pointing at nothing: every check fails with a clear line.
    let dir = std::env::temp_dir().join(format!("yarnflow-doctor-bad-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(
        dir.join("yarn-site.xml"),
        "<configuration>\
         <property><name>yarn.resourcemanager.webapp.address</name><value>127.0.0.1:9</value></property>\
         <property><name>yarn.resourcemanager.address</name><value>127.0.0.1:9</value></property>\
         <property><name>yarn.resourcemanager.scheduler.address</name><value>127.0.0.1:9</value></property>\
         </configuration>",
    )
    .unwrap();
    std::fs::write(
        dir.join("hdfs-site.xml"),
        "<configuration><property><name>dfs.namenode.http-address</name><value>127.0.0.1:9</value></property></configuration>",
    )
    .unwrap();
    std::fs::write(
        dir.join("core-site.xml"),
        "<configuration><property><name>fs.defaultFS</name><value>hdfs://127.0.0.1:9</value></property></configuration>",
    )
    .unwrap();
    let out = support::yarnflow(&["doctor", "--hadoop-conf", dir.to_str().unwrap()])
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(!out.status.success());
    let rest = text
        .lines()
        .find(|l| l.contains("ResourceManager REST"))
        .unwrap();
    assert!(
        rest.starts_with("FAIL") && rest.contains("127.0.0.1:9"),
        "{text}"
    );
    let ipc = text
        .lines()
        .find(|l| l.contains("ResourceManager IPC"))
        .unwrap();
    assert!(
        ipc.starts_with("FAIL") && ipc.contains("cannot connect"),
        "{text}"
    );
    let _ = std::fs::remove_dir_all(&dir);
}

/// `yarnflow logs` of a doctor application: the AM's and both containers' lines in one
/// timeline, with the attempt marker; filters and JSON output.
#[test]
fn logs_merge_the_am_and_its_containers() {
    let cluster = MiniCluster::get();
    let out = cluster.client(&["doctor"]);
    let text = String::from_utf8_lossy(&out.stdout).to_string();
    assert!(out.status.success(), "{text}");
    let app = text
        .split_whitespace()
        .find(|w| w.starts_with("application_"))
        .unwrap()
        .to_string();

    let out = cluster.client(&["logs", &app]);
    let all = String::from_utf8_lossy(&out.stdout).to_string();
    assert!(
        out.status.success(),
        "{all}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let lines: Vec<&str> = all.lines().collect();
    assert!(
        lines[0].contains("===== [a1") && lines[0].contains("attempt 1 started"),
        "{all}"
    );
    assert!(all.contains("doctor ApplicationMaster started"), "{all}");
    assert_eq!(all.matches("yarnflow doctor container").count(), 2, "{all}");
    assert!(all.contains("unregistered"), "{all}");
    // In time order.
    let stamps: Vec<&str> = lines.iter().map(|l| l.split(' ').next().unwrap()).collect();
    let mut sorted = stamps.clone();
    sorted.sort();
    assert_eq!(stamps, sorted, "{all}");

    let am = String::from_utf8_lossy(&cluster.client(&["logs", &app, "--container", "am"]).stdout)
        .to_string();
    assert!(am.lines().all(|l| l.contains(" am]")), "{am}");
    assert!(!am.contains("yarnflow doctor container"), "{am}");

    let errors =
        String::from_utf8_lossy(&cluster.client(&["logs", &app, "--level", "error"]).stdout)
            .to_string();
    assert!(
        errors.lines().all(|l| l.contains("=====")),
        "only markers: {errors}"
    );

    let grep = String::from_utf8_lossy(
        &cluster
            .client(&["logs", &app, "--grep", "container completed"])
            .stdout,
    )
    .to_string();
    assert_eq!(
        grep.lines().filter(|l| !l.contains("=====")).count(),
        2,
        "{grep}"
    );

    let json = cluster.client(&["logs", &app, "--json"]);
    for l in String::from_utf8_lossy(&json.stdout).lines() {
        let v: serde_json::Value = serde_json::from_str(l).unwrap();
        assert!(v["container_id"].is_string() && v["attempt"] == 1, "{l}");
    }

    let missing = cluster.client(&["logs", "application_1_0999"]);
    assert!(!missing.status.success());
    let err = String::from_utf8_lossy(&missing.stderr);
    assert_eq!(err.trim().lines().count(), 1, "{err}");
    assert!(
        err.contains("application_1_0999") && err.contains("not known"),
        "{err}"
    );
}
