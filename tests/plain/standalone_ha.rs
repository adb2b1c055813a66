//! The standalone HA cluster on the real mini cluster's ZooKeeper and HDFS: two JobManagers, two
//! TaskManagers, `yarnflow run`; SIGKILL the leading JobManager mid-job → the standby takes over
//! when the dead one's ZooKeeper session ends, recovers the job graph and the latest checkpoint
//! through the pointers, the TaskManagers re-register with it (same processes), and the output
//! is exactly-once. The same cluster from `conf/masters` and `conf/workers` through `yarnflow
//! cluster start|stop`, and its second master taking over.

use std::collections::HashSet;
use std::path::{Path, PathBuf};
use std::process::Child;
use std::time::{Duration, Instant};

use crate::support::{self, MiniCluster};
use yarnflow::hadoop::webhdfs::WebHdfs;
use yarnflow::jobmanager::client::JobManagerClient;
use yarnflow::jobmanager::job_master::JobSnapshot;
use yarnflow::jobmanager::status::JobStatus;

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

/// Polls `check` every `every` until it gives a value; fails after `within`, naming `what` and
/// where the daemons' logs are.
async fn wait_for<T>(
    within: Duration,
    every: Duration,
    what: &str,
    logs: &Path,
    mut check: impl AsyncFnMut() -> Option<T>,
) -> T {
    let deadline = Instant::now() + within;
    loop {
        if let Some(v) = check().await {
            return v;
        }
        assert!(
            Instant::now() < deadline,
            "{what} within {within:?}; logs in {}",
            logs.display()
        );
        tokio::time::sleep(every).await;
    }
}

/// Which of the JobManagers on `ports` gives `check` a value, once one does (only a leader binds
/// its port).
async fn wait_leader<T>(
    ports: &[u16],
    what: &str,
    logs: &Path,
    check: impl AsyncFn(u16) -> Option<T>,
) -> usize {
    wait_for(
        Duration::from_secs(60),
        Duration::from_millis(200),
        what,
        logs,
        async || {
            for (i, p) in ports.iter().enumerate() {
                if check(*p).await.is_some() {
                    return Some(i);
                }
            }
            None
        },
    )
    .await
}

/// A standalone cluster's `yarnflow.yaml`: ZooKeeper HA on the mini cluster under cluster id
/// `id`, a short session timeout (the takeover waits for it), then `extra` lines.
fn standalone_yaml(cluster: &MiniCluster, id: &str, extra: &str) -> String {
    format!(
        "high-availability.type: zookeeper\n\
         high-availability.storageDir: {hdfs}/yarnflow/ha\n\
         high-availability.zookeeper.quorum: {zk}\n\
         high-availability.cluster-id: {id}\n\
         high-availability.zookeeper.client.session-timeout: 6 s\n\
         rest.address: 127.0.0.1\n{extra}",
        hdfs = cluster.hdfs_uri(),
        zk = cluster.zk_quorum()
    )
}

/// `yarnflow run SPEC --detached` with `conf`: the job is accepted.
fn run_detached(cluster: &MiniCluster, conf: &Path, spec: &Path) {
    let run = cluster
        .yarnflow(conf)
        .arg("run")
        .arg(spec)
        .arg("--detached")
        .output()
        .unwrap();
    assert!(
        run.status.success(),
        "{}{}",
        String::from_utf8_lossy(&run.stdout),
        String::from_utf8_lossy(&run.stderr)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_standby_jobmanager_takes_over_and_the_output_stays_exactly_once() {
    let cluster = MiniCluster::get();
    let id = support::unique("standalone");
    let conf = cluster.dir.join(format!("conf-{id}"));
    std::fs::create_dir_all(&conf).unwrap();
    std::fs::write(
        conf.join("yarnflow.yaml"),
        standalone_yaml(cluster, &id, ""),
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
    run_detached(cluster, &conf, &spec);
    let leader = wait_leader(&ports, "no leader ran 5 checkpoints", &logs, async |p| {
        job(p)
            .await
            .filter(|j| j["completed_checkpoints"].as_u64().unwrap_or(0) >= 5)
    })
    .await;
    let standby = 1 - leader;
    let killed = Instant::now();
    {
        let c = &mut children.0[leader].1;
        c.kill().unwrap();
        c.wait().unwrap();
    }
    let view = wait_for(
        Duration::from_secs(60),
        Duration::from_millis(100),
        "the standby never ran the job",
        &logs,
        async || {
            job(ports[standby])
                .await
                .filter(|j| j["status"] == "RUNNING")
        },
    )
    .await;
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

/// The daemons `yarnflow cluster start` recorded in a pid directory, SIGKILLed when the test ends
/// however it ends (those whose command line still names the test's configuration directory:
/// never a process that took a recorded pid over).
struct ClusterDaemons {
    pid_dir: PathBuf,
    conf: PathBuf,
    /// Every pid seen in the pid files.
    seen: Vec<i32>,
}

impl ClusterDaemons {
    /// The pids of `<pid dir>/yarnflow-<user>-<daemon>.pid`, in start order.
    fn pids(&mut self, daemon: &str) -> Vec<i32> {
        let mut pids = vec![];
        for entry in std::fs::read_dir(&self.pid_dir)
            .into_iter()
            .flatten()
            .flatten()
        {
            let name = entry.file_name().to_string_lossy().to_string();
            if name.starts_with("yarnflow-") && name.ends_with(&format!("-{daemon}.pid")) {
                let text = std::fs::read_to_string(entry.path()).unwrap_or_default();
                pids.extend(text.lines().filter_map(|l| l.trim().parse::<i32>().ok()));
            }
        }
        self.seen.extend(&pids);
        pids
    }

    /// Whether `pid` is a live (not zombie) daemon of this test's cluster.
    fn runs(&self, pid: i32) -> bool {
        let proc = PathBuf::from(format!("/proc/{pid}"));
        let zombie = std::fs::read_to_string(proc.join("stat"))
            .map(|s| {
                s.rsplit(')')
                    .next()
                    .unwrap_or_default()
                    .trim_start()
                    .starts_with('Z')
            })
            .unwrap_or(true);
        let conf = self.conf.to_string_lossy();
        !zombie
            && std::fs::read(proc.join("cmdline"))
                .is_ok_and(|c| String::from_utf8_lossy(&c).contains(conf.as_ref()))
    }
}

impl Drop for ClusterDaemons {
    fn drop(&mut self) {
        let mut pids = self.pids("standalonesession");
        pids.extend(self.pids("taskexecutor"));
        pids.extend(self.seen.clone());
        for pid in pids {
            if pid > 0 && self.runs(pid) {
                unsafe { libc::kill(pid, libc::SIGKILL) };
            }
        }
    }
}

/// The job of the `cluster start` test: runs until cancelled, checkpointing.
const CLUSTER_JOB: &str = "cluster-takeover";

async fn cluster_job(port: u16) -> Option<JobSnapshot> {
    jobmanager(port).job(CLUSTER_JOB).await.ok()
}

/// `yarnflow cluster start --conf DIR` with two masters and two workers on this host (and one
/// master elsewhere, skipped): it prints each daemon it starts and records its pid; one
/// JobManager leads, runs a job; SIGKILL it → the other takes over and runs the job from its
/// latest checkpoint; `yarnflow cluster stop` ends every daemon and removes the pid files.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cluster_start_runs_this_hosts_masters_and_workers_and_the_second_master_takes_over() {
    let cluster = MiniCluster::get();
    let id = support::unique("cluster");
    // `<conf>/../log` is where the daemons log by default.
    let home = cluster.dir.join(&id);
    let (conf, log_dir, pid_dir) = (home.join("conf"), home.join("log"), home.join("pids"));
    std::fs::create_dir_all(&conf).unwrap();
    std::fs::write(
        conf.join("yarnflow.yaml"),
        standalone_yaml(
            cluster,
            &id,
            &format!("env.pid.dir: {}\n", pid_dir.display()),
        ),
    )
    .unwrap();
    let ports = [free_port(), free_port()];
    std::fs::write(
        conf.join("masters"),
        format!(
            "# two JobManagers here, one elsewhere\nlocalhost:{}\n\n127.0.0.1:{}   # the standby\nother-host.invalid:8081\n",
            ports[0], ports[1]
        ),
    )
    .unwrap();
    std::fs::write(conf.join("workers"), "localhost\n127.0.0.1\n").unwrap();
    let mut daemons = ClusterDaemons {
        pid_dir: pid_dir.clone(),
        conf: conf.clone(),
        seen: vec![],
    };
    let start = cluster
        .yarnflow(&conf)
        .args(["cluster", "start"])
        .output()
        .unwrap();
    let out = String::from_utf8_lossy(&start.stdout).to_string();
    assert!(
        start.status.success(),
        "{out}{}",
        String::from_utf8_lossy(&start.stderr)
    );
    let jobmanagers = daemons.pids("standalonesession");
    let taskmanagers = daemons.pids("taskexecutor");
    assert_eq!((jobmanagers.len(), taskmanagers.len()), (2, 2), "{out}");
    // What it started, one line each, as start-cluster.sh prints it.
    let lines: Vec<&str> = out.lines().collect();
    assert_eq!(lines[0], "Starting HA cluster with 3 masters.", "{out}");
    assert_eq!(lines.len(), 6, "{out}");
    for (i, (port, pid)) in ports.iter().zip(&jobmanagers).enumerate() {
        assert!(
            lines[1 + i].starts_with("Starting standalonesession daemon on host ")
                && lines[1 + i].contains(&format!("(REST port {port}, pid {pid}, log ")),
            "{out}"
        );
    }
    assert!(
        lines[3].starts_with(
            "Skipping standalonesession daemon on host other-host.invalid: not this host"
        ),
        "{out}"
    );
    for (i, pid) in taskmanagers.iter().enumerate() {
        assert!(
            lines[4 + i].starts_with("Starting taskexecutor daemon on host ")
                && lines[4 + i].contains(&format!("(pid {pid}, log {}", log_dir.display())),
            "{out}"
        );
    }
    let all: Vec<i32> = jobmanagers.iter().chain(&taskmanagers).copied().collect();
    for pid in &all {
        assert!(daemons.runs(*pid), "daemon {pid} is not running: {out}");
    }
    let leader = wait_leader(&ports, "no JobManager led", &log_dir, async |p| {
        jobmanager(p).overview().await.ok()
    })
    .await;
    let standby = 1 - leader;
    let spec = home.join("job.yaml");
    std::fs::write(
        &spec,
        format!(
            "name: {CLUSTER_JOB}\nparallelism: 2\ncheckpoint-interval: 500 ms\npipeline:\n  \
             - source: {{ kind: sequence, from: 0, to: 1000000000, rate: 1000 }}\n  \
             - sink: {{ kind: files, path: \"{}/yarnflow/cluster-output/{id}\" }}\n",
            cluster.hdfs_uri()
        ),
    )
    .unwrap();
    run_detached(cluster, &conf, &spec);
    wait_for(
        Duration::from_secs(60),
        Duration::from_millis(200),
        "the leader never ran the job",
        &log_dir,
        async || {
            cluster_job(ports[leader])
                .await
                .filter(|j| j.status == JobStatus::Running && j.completed_checkpoints >= 2)
        },
    )
    .await;
    let killed = Instant::now();
    unsafe { libc::kill(jobmanagers[leader], libc::SIGKILL) };
    let view = wait_for(
        Duration::from_secs(60),
        Duration::from_millis(100),
        "the other JobManager never took over the job",
        &log_dir,
        async || {
            cluster_job(ports[standby])
                .await
                .filter(|j| j.status == JobStatus::Running)
        },
    )
    .await;
    println!(
        "cluster start: leader SIGKILL -> job RUNNING on the other master: {} ms (ZooKeeper session timeout 6 s)",
        killed.elapsed().as_millis()
    );
    assert!(view.restored_from_checkpoint.is_some(), "{view:?}");
    // Cancelled, so that its HA data goes.
    jobmanager(ports[standby])
        .cancel(CLUSTER_JOB)
        .await
        .unwrap();
    wait_for(
        Duration::from_secs(60),
        Duration::from_millis(200),
        "the job was never cancelled",
        &log_dir,
        async || {
            cluster_job(ports[standby])
                .await
                .filter(|j| j.status == JobStatus::Canceled)
        },
    )
    .await;
    let stop = cluster
        .yarnflow(&conf)
        .args(["cluster", "stop"])
        .output()
        .unwrap();
    let out = String::from_utf8_lossy(&stop.stdout).to_string();
    assert!(
        stop.status.success(),
        "{out}{}",
        String::from_utf8_lossy(&stop.stderr)
    );
    let host = " on host ";
    for expected in [
        format!(
            "No standalonesession daemon (pid: {}) is running anymore{host}",
            jobmanagers[leader]
        ),
        format!(
            "Stopped standalonesession daemon (pid: {}){host}",
            jobmanagers[standby]
        ),
        format!(
            "Stopped taskexecutor daemon (pid: {}){host}",
            taskmanagers[0]
        ),
        format!(
            "Stopped taskexecutor daemon (pid: {}){host}",
            taskmanagers[1]
        ),
    ] {
        assert!(out.contains(&expected), "no '{expected}' in:\n{out}");
    }
    for pid in &all {
        assert!(
            !daemons.runs(*pid),
            "daemon {pid} still runs after stop:\n{out}"
        );
    }
    assert!(
        daemons.pids("standalonesession").is_empty() && daemons.pids("taskexecutor").is_empty(),
        "pid files left in {}",
        pid_dir.display()
    );
    let again = cluster
        .yarnflow(&conf)
        .args(["cluster", "stop"])
        .output()
        .unwrap();
    assert_eq!(
        String::from_utf8_lossy(&again.stdout)
            .lines()
            .map(|l| l.split(" on host ").next().unwrap().to_string())
            .collect::<Vec<_>>(),
        [
            "No standalonesession daemon to stop",
            "No taskexecutor daemon to stop"
        ]
    );
}
