//! `yarnflow doctor` against the real mini cluster: every check passes, the test application's
//! AM (this very binary) succeeds, and its containers' log lines are on the NodeManagers.

mod support;

use support::MiniCluster;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn doctor_round_trip_succeeds() {
    let cluster = MiniCluster::get();
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_yarnflow"))
        .args([
            "doctor",
            "--hadoop-conf",
            cluster.env("HADOOP_CONF_DIR"),
            "--containers",
            "2",
            "-D",
            &format!("high-availability.zookeeper.quorum={}", cluster.zk_quorum()),
        ])
        .output()
        .unwrap();
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
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_yarnflow"))
        .args(["doctor", "--hadoop-conf", dir.to_str().unwrap()])
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
