//! The standalone HA cluster on the real mini cluster's ZooKeeper and HDFS: two JobManagers, two
//! TaskManagers, `yarnflow run`; SIGKILL the leading JobManager mid-job → the standby takes over
//! when the dead one's ZooKeeper session ends, recovers the job graph and the latest checkpoint
//! through the pointers, the TaskManagers re-register with it (same processes), and the output
//! is exactly-once.

use std::collections::HashSet;
use std::process::Child;
use std::time::{Duration, Instant};

use crate::support::{self, MiniCluster};
use yarnflow::hadoop::webhdfs::WebHdfs;
use yarnflow::jobmanager::client::JobManagerClient;

struct Children(Vec<(String, Child)>);

impl Drop for Children {
    fn drop(&mut self) {
        for (_, c) in &mut self.0 {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

fn jobmanager(port: u16) -> JobManagerClient {
    JobManagerClient::new(&format!("http://127.0.0.1:{port}"), Duration::from_secs(2))
}

async fn job(port: u16) -> Option<serde_json::Value> {
    let job = jobmanager(port).job("exactly-once").await.ok()?;
    Some(serde_json::to_value(job).unwrap())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_standby_jobmanager_takes_over_and_the_output_stays_exactly_once() {
    let cluster = MiniCluster::get();
    let id = support::unique("standalone");
    let conf = cluster.dir.join(format!("conf-{id}"));
    std::fs::create_dir_all(&conf).unwrap();
    std::fs::write(
        conf.join("yarnflow.yaml"),
        format!(
            "high-availability.type: zookeeper\n\
             high-availability.storageDir: {hdfs}/yarnflow/ha\n\
             high-availability.zookeeper.quorum: {zk}\n\
             high-availability.cluster-id: {id}\n\
             high-availability.zookeeper.client.session-timeout: 6 s\n\
             rest.address: 127.0.0.1\n",
            hdfs = cluster.hdfs_uri(),
            zk = cluster.zk_quorum()
        ),
    )
    .unwrap();
    let out_dir = format!("/yarnflow/standalone-output/{id}");
    let spec = conf.join("job.yaml");
    std::fs::write(
        &spec,
        std::fs::read_to_string(support::repo_root().join("examples/exactly-once.yaml"))
            .unwrap()
            .replace(
                "kind: files }",
                &format!("kind: files, path: \"{}{out_dir}\" }}", cluster.hdfs_uri()),
            ),
    )
    .unwrap();
    let logs = cluster.dir.join(format!("logs-{id}"));
    std::fs::create_dir_all(&logs).unwrap();
    let spawn = |name: &str, args: &[&str]| -> (String, Child) {
        let log = std::fs::File::create(logs.join(format!("{name}.log"))).unwrap();
        let child = cluster
            .yarnflow(&conf)
            .args(args)
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .spawn()
            .unwrap();
        (name.to_string(), child)
    };
    let ports = [free_port(), free_port()];
    let mut children = Children(vec![]);
    for (i, port) in ports.iter().enumerate() {
        children.0.push(spawn(
            &format!("jobmanager-{i}"),
            &[
                "-D",
                &format!("rest.port={port}"),
                "jobmanager",
                "--host",
                "127.0.0.1",
            ],
        ));
        // The first one leads: wait until it serves (only a leader binds its port).
        let deadline = Instant::now() + Duration::from_secs(30);
        while i == 0 && jobmanager(*port).overview().await.is_err() {
            assert!(
                Instant::now() < deadline,
                "the first JobManager never led; logs in {}",
                logs.display()
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
    for i in 0..2 {
        children.0.push(spawn(
            &format!("taskmanager-{i}"),
            &["taskmanager", "--slots", "2", "--id", &format!("tm-{i}")],
        ));
    }
    let run = cluster
        .yarnflow(&conf)
        .args(["run"])
        .arg(&spec)
        .arg("--detached")
        .output()
        .unwrap();
    assert!(
        run.status.success(),
        "{}{}",
        String::from_utf8_lossy(&run.stdout),
        String::from_utf8_lossy(&run.stderr)
    );
    // Which one leads: only the leader binds its port.
    let deadline = Instant::now() + Duration::from_secs(60);
    let leader = loop {
        let mut found = None;
        for (i, p) in ports.iter().enumerate() {
            if let Some(j) = job(*p).await
                && j["completed_checkpoints"].as_u64().unwrap_or(0) >= 5
            {
                found = Some(i);
            }
        }
        if let Some(i) = found {
            break i;
        }
        assert!(
            Instant::now() < deadline,
            "no leader ran 5 checkpoints; logs in {}",
            logs.display()
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    let standby = 1 - leader;
    let killed = Instant::now();
    {
        let c = &mut children.0[leader].1;
        c.kill().unwrap();
        c.wait().unwrap();
    }
    let deadline = Instant::now() + Duration::from_secs(60);
    let view = loop {
        if let Some(j) = job(ports[standby]).await
            && j["status"] == "RUNNING"
        {
            break j;
        }
        assert!(
            Instant::now() < deadline,
            "the standby never ran the job; logs in {}",
            logs.display()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    println!(
        "leader SIGKILL -> job RUNNING on the standby: {} ms (ZooKeeper session timeout 6 s)",
        killed.elapsed().as_millis()
    );
    assert!(
        view["restored_from_checkpoint"].as_u64().is_some(),
        "{view}"
    );
    let deadline = Instant::now() + Duration::from_secs(120);
    loop {
        let j = job(ports[standby]).await.unwrap_or_default();
        if j["status"] == "FINISHED" {
            break;
        }
        assert_ne!(j["status"], "FAILED", "{j}");
        assert!(Instant::now() < deadline, "{j}");
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
    // The same TaskManager processes served both leaders.
    for (name, c) in children
        .0
        .iter_mut()
        .filter(|(n, _)| n.starts_with("taskmanager"))
    {
        assert!(c.try_wait().unwrap().is_none(), "{name} exited");
    }
    let web = WebHdfs::new(cluster.webhdfs(), "root");
    let mut seen = HashSet::new();
    let mut count = 0u64;
    for (name, _) in web.list(&out_dir).await.unwrap() {
        if !name.starts_with("part-") {
            continue;
        }
        let data = web.open(&format!("{out_dir}/{name}")).await.unwrap();
        for l in std::str::from_utf8(&data).unwrap().lines() {
            count += 1;
            assert!(seen.insert(l.parse::<u64>().unwrap()), "duplicate {l}");
        }
    }
    assert_eq!(count, 2_000_000);
}
