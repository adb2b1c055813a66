//! Failover benchmark on the real mini cluster (prints figures; not a timed test):
//!
//! ```text
//! cargo bench --features yarnflow/fault-points --bench failover   # or YARNFLOW_MINICLUSTER_DIR=<running cluster> ...
//! ```
//!
//! Runs once per HDFS client (`storage.hdfs.client: native`, then `libhdfs`; `YARNFLOW_BENCH_BACKENDS`
//! picks others, comma-separated) and prints issue 13's table for each:
//!
//! * one job: an unbounded exactly-once job (4 subtasks, checkpoints every 500 ms); the
//!   ApplicationMaster is SIGKILLed 5 times and a TaskManager container 5 times
//!   (`yarn/minicluster/run kill`). Per AM kill: kill → job RUNNING again, split into YARN
//!   detection (kill → the RM starts the next attempt), new AM start (→ "attempt started" in
//!   the AM's log), leadership (→ "leadership granted"), recovery (→ "job recovered") and
//!   redeployment (→ the JobManager reports RUNNING); kill → the first checkpoint completed
//!   after it; the gap between the last checkpoint completed before the kill and that one;
//!   the subtasks the failover restarted (by the job view's `subtask_attempts`). Per
//!   TaskManager kill: kill → RUNNING again and → the next completed checkpoint. RSS of the AM
//!   and of a TaskManager running a subtask.
//! * many jobs: a session of `YARNFLOW_BENCH_JOBS` (200) small jobs, one submitted with
//!   `yarnflow submit` and the rest through `POST /jobs`, each with 3 retained checkpoints;
//!   once all run with 3 completed checkpoints the AM is SIGKILLed once: kill → every job
//!   RUNNING again, with the phases up to "job graphs recovered" and the first and last job
//!   RUNNING.
//!
//! The restart strategy is fixed-delay with 100 ms, so the TaskManager figure measures the
//! replacement (allocation, launch, registration, redeployment), not a backoff; with Flink's
//! default (exponential-delay from 1 s, growing 1.5x per restart) add that delay.
//!
//! Phase boundaries come from the AM's JSON log (`yarnflow.jsonl` in its container log dir),
//! the RM REST API and the JobManager's REST API; all clocks are this machine's.

#[path = "../tests/support/mod.rs"]
mod support;

use std::path::Path;
use std::time::{Duration, Instant};

use futures::StreamExt;
use support::MiniCluster;
use yarnflow::hadoop::rest::RmRest;
use yarnflow::jobmanager::client::JobManagerClient;

const AM_KILLS: usize = 5;
const TM_KILLS: usize = 5;

fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis() as i64
}

fn percentile(values: &[f64], p: f64) -> f64 {
    let mut v = values.to_vec();
    v.sort_by(|a, b| a.partial_cmp(b).unwrap());
    if v.is_empty() {
        return f64::NAN;
    }
    v[((v.len() - 1) as f64 * p).round() as usize]
}

/// The JobManager's view of the job `id` under the current attempt.
async fn job(rest: &RmRest, app: &str, id: &str) -> Option<serde_json::Value> {
    let jm = support::jobmanager_of(rest, app).await?;
    let job = JobManagerClient::new(&jm, Duration::from_secs(2))
        .job(id)
        .await
        .ok()?;
    Some(serde_json::to_value(job).unwrap())
}

async fn taskmanagers(rest: &RmRest, app: &str) -> Vec<String> {
    let Some(jm) = support::jobmanager_of(rest, app).await else {
        return vec![];
    };
    let client = JobManagerClient::new(&jm, Duration::from_secs(30));
    let Ok(tms) = client.taskmanagers().await else {
        return vec![];
    };
    tms.into_iter()
        .filter(|t| t.free_slots < t.slots)
        .filter_map(|t| t.id.strip_prefix("tm-").map(str::to_string))
        .collect()
}

/// The JSON log lines of a container, searched under the cluster dir.
fn log_lines(cluster: &MiniCluster, container: &str) -> Vec<serde_json::Value> {
    fn find(dir: &Path, name: &str, depth: u32) -> Option<std::path::PathBuf> {
        for e in std::fs::read_dir(dir).ok()?.flatten() {
            let p = e.path();
            // The log dir, not the NodeManager's private copy of the same name.
            if e.file_name().to_string_lossy() == name && p.join("yarnflow.jsonl").exists() {
                return Some(p);
            }
            if depth < 5
                && p.is_dir()
                && e.file_name() != "usercache"
                && let Some(found) = find(&p, name, depth + 1)
            {
                return Some(found);
            }
        }
        None
    }
    let Some(dir) = find(&cluster.dir.join("data"), container, 0) else {
        return vec![];
    };
    std::fs::read_to_string(dir.join("yarnflow.jsonl"))
        .unwrap_or_default()
        .lines()
        .filter_map(|l| serde_json::from_str(l).ok())
        .collect()
}

fn ts_ms(line: &serde_json::Value) -> Option<i64> {
    line["ts"]
        .as_str()?
        .parse::<jiff::Timestamp>()
        .ok()
        .map(|t| t.as_millisecond())
}

/// First timestamp (ms) of a message in a container's JSON log.
fn log_ts(cluster: &MiniCluster, container: &str, message: &str) -> Option<i64> {
    log_lines(cluster, container)
        .iter()
        .find(|v| v["message"] == message)
        .and_then(ts_ms)
}

/// (current RSS, peak RSS) in kB of the yarnflow `role` process running in `container`.
fn rss_kb(container: &str, role: &str) -> Option<(u64, u64)> {
    let wanted = format!("CONTAINER_ID={container}");
    for e in std::fs::read_dir("/proc").ok()?.flatten() {
        let p = e.path();
        let Ok(env) = std::fs::read(p.join("environ")) else {
            continue;
        };
        let cmd = std::fs::read_to_string(p.join("cmdline")).unwrap_or_default();
        if cmd.contains("yarnflow")
            && cmd.split('\0').any(|a| a == role)
            && env.split(|b| *b == 0).any(|kv| kv == wanted.as_bytes())
        {
            let status = std::fs::read_to_string(p.join("status")).ok()?;
            let field = |name: &str| {
                status
                    .lines()
                    .find_map(|l| l.strip_prefix(name))
                    .and_then(|v| v.split_whitespace().next()?.parse().ok())
            };
            return Some((field("VmRSS:")?, field("VmHWM:")?));
        }
    }
    None
}

async fn latest_attempt(rest: &RmRest, app: &str) -> yarnflow::hadoop::rest::AttemptReport {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        // The RM's REST API has transient 503s while attempts change.
        if let Ok(a) = rest.attempts(app).await
            && let Some(a) = a.into_iter().max_by_key(|a| a.id)
        {
            return a;
        }
        assert!(Instant::now() < deadline, "no attempts of {app}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Waits until the job runs under `attempt` (or later) with at least `restarts` restarts;
/// returns when (ms) and the job view.
async fn wait_running(
    rest: &RmRest,
    app: &str,
    attempt: i64,
    restarts: u64,
) -> (i64, serde_json::Value) {
    let deadline = Instant::now() + Duration::from_secs(90);
    loop {
        let current = rest
            .attempts(app)
            .await
            .ok()
            .and_then(|a| a.iter().map(|a| a.id).max())
            .unwrap_or(0);
        if current >= attempt
            && let Some(j) = job(rest, app, "bench").await
            && j["status"] == "RUNNING"
            && j["restarts"].as_u64().unwrap_or(0) >= restarts
        {
            return (now_ms(), j);
        }
        assert!(Instant::now() < deadline, "job not RUNNING again");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// When (ms) this JobManager saw the first checkpoint complete after `after_ms`.
async fn wait_checkpoint_after(rest: &RmRest, app: &str, after_ms: i64) -> Option<i64> {
    let deadline = Instant::now() + Duration::from_secs(60);
    while Instant::now() < deadline {
        if let Some(j) = job(rest, app, "bench").await
            && let Some(t) = j["latest_checkpoint_completed_ms"].as_i64()
            && t > after_ms
        {
            return Some(t);
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    None
}

/// Subtasks an AM failover restarted, from the job views before and after it: each subtask
/// whose attempt number changed (`subtask_attempts`), else what the new leader did not adopt
/// (`adopted_subtasks`). `None` when the job view shows neither.
fn restarted_subtasks(before: &serde_json::Value, after: &serde_json::Value) -> Option<u64> {
    let attempts = |v: &serde_json::Value| {
        v["subtask_attempts"]
            .as_array()
            .filter(|a| !a.is_empty())
            .cloned()
    };
    if let (Some(b), Some(a)) = (attempts(before), attempts(after)) {
        let changed = b.iter().zip(&a).filter(|(b, a)| b != a).count();
        // A subtask present on one side only was deployed anew.
        return Some((changed + b.len().abs_diff(a.len())) as u64);
    }
    let parallelism = after["parallelism"].as_u64()?;
    after["adopted_subtasks"]
        .as_u64()
        .map(|adopted| parallelism.saturating_sub(adopted))
}

/// What one backend's single-job run measured.
#[derive(Default)]
struct SingleJob {
    am_running: Vec<f64>,
    phases: [Vec<f64>; 5],
    am_checkpoint: Vec<f64>,
    am_gap: Vec<f64>,
    /// Per AM kill; `None` when the job view cannot tell.
    am_restarted: Vec<Option<u64>>,
    tm_running: Vec<f64>,
    tm_checkpoint: Vec<f64>,
    am_rss_kb: Vec<(u64, u64)>,
    tm_rss_kb: Vec<(u64, u64)>,
}

fn submit_detached(cluster: &MiniCluster, conf: &Path, spec: &Path) -> String {
    let out = cluster
        .yarnflow(conf)
        .arg("submit")
        .arg(spec)
        .arg("--detached")
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout).to_string();
    assert!(
        out.status.success(),
        "{stdout}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    stdout
        .lines()
        .find_map(|l| l.strip_prefix("application ")?.split_whitespace().next())
        .unwrap()
        .to_string()
}

async fn single_job(cluster: &MiniCluster, backend: &str) -> SingleJob {
    let rest = RmRest::new(cluster.rm_rest());
    // Failures older than the validity interval do not count toward the 4 attempts.
    let conf = support::yarn_app::conf_dir(
        cluster,
        &format!("bench-{backend}"),
        &format!(
            "storage.hdfs.client: {backend}\n\
             yarn.application-attempts: 4\n\
             yarn.application-attempt-failures-validity-interval: 4000\n\
             restart-strategy.type: fixed-delay\n\
             restart-strategy.fixed-delay.attempts: 1000\n\
             restart-strategy.fixed-delay.delay: 100 ms\n"
        ),
    );
    let spec = conf.join("bench.yaml");
    std::fs::write(
        &spec,
        "name: bench\nparallelism: 4\ncheckpoint-interval: 500 ms\npipeline:\n  - source: { kind: sequence, from: 0, rate: 20000 }\n  - sink: { kind: files }\n",
    )
    .unwrap();
    let app = submit_detached(cluster, &conf, &spec);
    println!("[{backend}] one job: application {app}");

    let mut m = SingleJob::default();
    for i in 0..AM_KILLS {
        let current = latest_attempt(&rest, &app).await;
        // Out of the validity window of the previous kill, and some checkpoints in.
        tokio::time::sleep(Duration::from_millis(4500)).await;
        if let Some(kb) = rss_kb(&current.container_id, "appmaster") {
            m.am_rss_kb.push(kb);
        }
        if let Some(tm) = taskmanagers(&rest, &app).await.first()
            && let Some(kb) = rss_kb(tm, "taskmanager")
        {
            m.tm_rss_kb.push(kb);
        }
        let before = job(&rest, &app, "bench").await.unwrap_or_default();
        let t_kill = now_ms();
        let k = cluster.run("kill", &[&current.container_id]);
        assert!(k.status.success(), "{}", String::from_utf8_lossy(&k.stderr));
        let (t_running, after) = wait_running(&rest, &app, current.id + 1, 0).await;
        let next = latest_attempt(&rest, &app).await;
        let c = &next.container_id;
        let points = [
            Some(t_kill),
            Some(next.start_time),
            log_ts(cluster, c, "attempt started"),
            log_ts(cluster, c, "leadership granted"),
            log_ts(cluster, c, "job recovered"),
            Some(t_running),
        ];
        if points.iter().all(Option::is_some) {
            let p: Vec<i64> = points.iter().map(|p| p.unwrap()).collect();
            for j in 0..5 {
                m.phases[j].push((p[j + 1] - p[j]) as f64);
            }
        }
        m.am_running.push((t_running - t_kill) as f64);
        let checkpoint = wait_checkpoint_after(&rest, &app, t_kill).await;
        if let Some(t) = checkpoint {
            m.am_checkpoint.push((t - t_kill) as f64);
            // The last checkpoint the dead leader completed: its view just before the kill,
            // or a later line of its log.
            let last_before = log_lines(cluster, &current.container_id)
                .iter()
                .filter(|v| v["message"] == "checkpoint completed")
                .filter_map(ts_ms)
                .filter(|t| *t <= t_kill)
                .max()
                .into_iter()
                .chain(before["latest_checkpoint_completed_ms"].as_i64())
                .max();
            if let Some(last) = last_before {
                m.am_gap.push((t - last) as f64);
            }
        }
        let after = job(&rest, &app, "bench").await.unwrap_or(after);
        m.am_restarted.push(restarted_subtasks(&before, &after));
        println!(
            "[{backend}] AM kill {}: RUNNING after {} ms, next checkpoint after {} (attempt {})",
            i + 1,
            t_running - t_kill,
            checkpoint.map_or("none".into(), |t| format!("{} ms", t - t_kill)),
            next.id
        );
    }

    for i in 0..TM_KILLS {
        tokio::time::sleep(Duration::from_millis(1500)).await;
        let restarts = job(&rest, &app, "bench").await.unwrap()["restarts"]
            .as_u64()
            .unwrap_or(0);
        let tms = taskmanagers(&rest, &app).await;
        let victim = tms
            .first()
            .expect("a TaskManager running a subtask")
            .clone();
        let t_kill = now_ms();
        let k = cluster.run("kill", &[&victim]);
        assert!(k.status.success(), "{}", String::from_utf8_lossy(&k.stderr));
        let (t, _) = wait_running(&rest, &app, 0, restarts + 1).await;
        m.tm_running.push((t - t_kill) as f64);
        // One with the restarted subtasks in it: a checkpoint completing between the kill and
        // its detection was acknowledged before the kill.
        let checkpoint = wait_checkpoint_after(&rest, &app, t).await;
        if let Some(c) = checkpoint {
            m.tm_checkpoint.push((c - t_kill) as f64);
        }
        println!(
            "[{backend}] TaskManager kill {}: RUNNING after {} ms, next checkpoint after {}",
            i + 1,
            t - t_kill,
            checkpoint.map_or("none".into(), |c| format!("{} ms", c - t_kill)),
        );
    }
    let _ = cluster.yarnflow(&conf).args(["cancel", &app]).output();
    support::yarn_app::wait_final(&rest, &app, Duration::from_secs(120)).await;
    m
}

/// What one backend's many-jobs run measured (`error`: why it stopped short).
#[derive(Default)]
struct ManyJobs {
    jobs: usize,
    /// Kill → every job RUNNING again (ms).
    all_running: Option<f64>,
    /// YARN detection (the next attempt starts), new AM start, leadership, job graphs
    /// recovered, first job RUNNING, every job RUNNING: each since the kill (ms).
    phases: Vec<(&'static str, Option<f64>)>,
    error: Option<String>,
}

fn many_spec(i: usize) -> String {
    // Light: 10 records a second, a checkpoint every 2 s (3 retained after 6 s).
    format!(
        "name: many-{i:03}\nparallelism: 1\ncheckpoint-interval: 2 s\npipeline:\n  - source: {{ kind: sequence, from: 0, rate: 10 }}\n  - sink: {{ kind: files }}\n"
    )
}

/// Every job of the session as (id, status), from the current attempt's JobManager.
async fn statuses(rest: &RmRest, app: &str) -> Option<Vec<(String, String)>> {
    let jm = support::jobmanager_of(rest, app).await?;
    let jobs = JobManagerClient::new(&jm, Duration::from_secs(5))
        .jobs()
        .await
        .ok()?;
    Some(
        jobs.into_iter()
            .map(|j| (j.id, j.status.to_string()))
            .collect(),
    )
}

async fn many_jobs(cluster: &MiniCluster, backend: &str, jobs: usize) -> ManyJobs {
    let mut m = ManyJobs {
        jobs,
        ..Default::default()
    };
    let rest = RmRest::new(cluster.rm_rest());
    let conf = support::yarn_app::conf_dir(
        cluster,
        &format!("bench-many-{backend}"),
        &format!(
            "storage.hdfs.client: {backend}\n\
             yarn.application-attempts: 2\n\
             execution.checkpointing.num-retained: 3\n\
             taskmanager.numberOfTaskSlots: 50\n\
             yarn.containers.vcores: 1\n\
             taskmanager.memory.process.size: 1024m\n"
        ),
    );
    let seed = conf.join("many-000.yaml");
    std::fs::write(&seed, many_spec(0)).unwrap();
    let app = submit_detached(cluster, &conf, &seed);
    println!("[{backend}] {jobs} jobs: application {app}");
    let jm = support::jobmanager_of(&rest, &app)
        .await
        .expect("JobManager");
    let client = JobManagerClient::new(&jm, Duration::from_secs(30));
    let refused: Vec<String> = futures::stream::iter(1..jobs)
        .map(|i| {
            let client = client.clone();
            async move {
                client
                    .submit(&many_spec(i))
                    .await
                    .err()
                    .map(|e| e.to_string())
            }
        })
        .buffer_unordered(8)
        .filter_map(|e| async move { e })
        .collect()
        .await;
    if let Some(first) = refused.first() {
        m.error = Some(format!(
            "{} of {jobs} submissions refused; the first: {first}",
            refused.len()
        ));
    }

    // Every job RUNNING with 3 completed checkpoints.
    let deadline = Instant::now() + Duration::from_secs(240);
    let ready = loop {
        let views: Vec<Option<serde_json::Value>> = futures::stream::iter(0..jobs)
            .map(|i| {
                let client = client.clone();
                async move {
                    let j = client.job(&format!("many-{i:03}")).await.ok()?;
                    Some(serde_json::to_value(j).unwrap())
                }
            })
            .buffer_unordered(16)
            .collect()
            .await;
        let running = views
            .iter()
            .flatten()
            .filter(|v| v["status"] == "RUNNING")
            .count();
        let checkpointed = views
            .iter()
            .flatten()
            .filter(|v| v["status"] == "RUNNING" && v["completed_checkpoints"].as_u64() >= Some(3))
            .count();
        if checkpointed == jobs {
            break true;
        }
        if Instant::now() >= deadline {
            let logs = cluster.client(&["logs", &app, "--level", "warn"]);
            let logs = String::from_utf8_lossy(&logs.stdout);
            let tail: Vec<&str> = logs.lines().rev().take(5).collect();
            m.error = Some(format!(
                "after 240 s {running} of {jobs} jobs RUNNING, {checkpointed} with 3 checkpoints; last warnings: {}",
                tail.into_iter().rev().collect::<Vec<_>>().join(" | ")
            ));
            break false;
        }
        tokio::time::sleep(Duration::from_secs(1)).await;
    };
    if ready {
        let current = latest_attempt(&rest, &app).await;
        let t_kill = now_ms();
        let k = cluster.run("kill", &[&current.container_id]);
        assert!(k.status.success(), "{}", String::from_utf8_lossy(&k.stderr));
        let deadline = Instant::now() + Duration::from_secs(120);
        let mut first_running = None;
        let mut all_running = None;
        while Instant::now() < deadline {
            if latest_attempt(&rest, &app).await.id > current.id
                && let Some(s) = statuses(&rest, &app).await
            {
                let running = s.iter().filter(|(_, st)| st == "RUNNING").count();
                if running > 0 && first_running.is_none() {
                    first_running = Some(now_ms());
                }
                if running == jobs {
                    all_running = Some(now_ms());
                    break;
                }
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        let next = latest_attempt(&rest, &app).await;
        let c = &next.container_id;
        let points = [
            ("YARN detection (next attempt)", Some(next.start_time)),
            ("new AM start", log_ts(cluster, c, "attempt started")),
            (
                "leadership granted",
                log_ts(cluster, c, "leadership granted"),
            ),
            (
                "job graphs recovered",
                log_ts(cluster, c, "job graphs recovered"),
            ),
            ("first job RUNNING", first_running),
            ("every job RUNNING", all_running),
        ];
        // Since the kill: jobs start while others still recover, so the boundaries overlap.
        for (name, at) in points {
            m.phases.push((name, at.map(|a| (a - t_kill) as f64)));
        }
        match all_running {
            Some(t) => m.all_running = Some((t - t_kill) as f64),
            None => {
                let s = statuses(&rest, &app).await.unwrap_or_default();
                let running = s.iter().filter(|(_, st)| st == "RUNNING").count();
                m.error = Some(format!(
                    "120 s after the AM kill {running} of {jobs} jobs RUNNING (of {} listed)",
                    s.len()
                ));
            }
        }
    }
    let _ = cluster.yarnflow(&conf).args(["cancel", &app]).output();
    support::yarn_app::wait_final(&rest, &app, Duration::from_secs(180)).await;
    m
}

/// HA checkpoint commit p50 (ms) on the mini cluster's HDFS with `backend` (blob write plus
/// fenced ZooKeeper multi, `support::commit`); its whole line (p99, how often the NameNode's
/// first `complete()` answered false) is printed as it is measured.
async fn ha_commit_p50_ms(cluster: &MiniCluster, backend: &str) -> Option<f64> {
    let client = match backend {
        "libhdfs" => yarnflow::storage::HdfsClient::Libhdfs,
        _ => yarnflow::storage::HdfsClient::Native,
    };
    let stats = support::commit::ha_commit_latency(cluster, client, COMMITS).await;
    println!("{stats}");
    Some(stats.p50.as_secs_f64() * 1000.0)
}

/// HA commits measured per backend.
const COMMITS: usize = 100;

struct Report {
    backend: String,
    single: SingleJob,
    many: ManyJobs,
    commit_p50_ms: Option<f64>,
}

fn ms(v: &[f64]) -> String {
    if v.is_empty() {
        return "n/a (not measured)".into();
    }
    format!(
        "{:.0} ms (p95 {:.0}, n={})",
        percentile(v, 0.5),
        percentile(v, 0.95),
        v.len()
    )
}

fn mb(v: &[(u64, u64)]) -> String {
    match v.iter().map(|(rss, _)| *rss).max() {
        Some(rss) => format!(
            "{} MB (peak {} MB)",
            rss / 1024,
            v.iter().map(|(_, hwm)| *hwm).max().unwrap_or(0) / 1024
        ),
        None => "n/a (process not found)".into(),
    }
}

/// The table's rows: figure, now, target.
const ROWS: [(&str, &str, &str); 10] = [
    ("AM SIGKILL → job RUNNING, p50", "1.6–2.4 s", "≤ 0.8 s"),
    (
        "AM SIGKILL → first checkpoint completed after the kill, p50",
        "2.3 s",
        "≤ 1.2 s",
    ),
    ("TaskManager SIGKILL → job RUNNING, p50", "2.0 s", "≤ 1.0 s"),
    (
        "TaskManager SIGKILL → first checkpoint completed after the kill, p50",
        "2.8 s",
        "≤ 1.5 s",
    ),
    ("AM RSS with a running job", "~160 MB", "≤ 40 MB"),
    (
        "TaskManager RSS with a running subtask",
        "~160 MB",
        "≤ 40 MB",
    ),
    ("200 jobs recovered after AM SIGKILL", "–", "≤ 3 s"),
    ("HA checkpoint commit p50 on HDFS", "~32 ms", "≤ 10 ms"),
    ("subtasks restarted by an AM SIGKILL", "all", "0"),
    (
        "longest gap between committed checkpoints across an AM SIGKILL, p50",
        "~2.8 s",
        "≤ 1.5 s",
    ),
];

/// One backend's column of [`ROWS`].
fn column(r: &Report) -> [String; 10] {
    let s = &r.single;
    let restarted = if !s.am_restarted.is_empty() && s.am_restarted.iter().all(Option::is_some) {
        let per: Vec<String> = s
            .am_restarted
            .iter()
            .flatten()
            .map(u64::to_string)
            .collect();
        format!(
            "{} (max; per kill: {})",
            s.am_restarted.iter().flatten().max().unwrap(),
            per.join(", ")
        )
    } else {
        "n/a (the job view has no subtask_attempts / adopted_subtasks)".into()
    };
    let many = match (&r.many.all_running, &r.many.error) {
        (Some(t), None) => format!("{t:.0} ms ({} jobs)", r.many.jobs),
        (Some(t), Some(e)) => format!("{t:.0} ms ({} jobs; {e})", r.many.jobs),
        (None, Some(e)) => format!("not measured: {e}"),
        (None, None) => "not measured".into(),
    };
    [
        ms(&s.am_running),
        ms(&s.am_checkpoint),
        ms(&s.tm_running),
        ms(&s.tm_checkpoint),
        mb(&s.am_rss_kb),
        mb(&s.tm_rss_kb),
        many,
        r.commit_p50_ms
            .map_or("n/a (not measured)".into(), |v| format!("{v:.1} ms")),
        restarted,
        ms(&s.am_gap),
    ]
}

fn print_reports(reports: &[Report]) {
    let columns: Vec<[String; 10]> = reports.iter().map(column).collect();
    let names: Vec<&str> = reports.iter().map(|r| r.backend.as_str()).collect();
    println!("\n| figure | now | target | {} |", names.join(" | "));
    println!("|---|---|---|{}", "---|".repeat(names.len()));
    for (i, (figure, now, target)) in ROWS.iter().enumerate() {
        let measured: Vec<&str> = columns.iter().map(|c| c[i].as_str()).collect();
        println!("| {figure} | {now} | {target} | {} |", measured.join(" | "));
    }
    let phases = [
        "YARN detection",
        "new AM start",
        "leadership",
        "recovery",
        "redeploy on re-registered TaskManagers",
    ];
    for r in reports {
        println!(
            "\n[{}] AM SIGKILL → job RUNNING, by phase (one job):",
            r.backend
        );
        for (name, v) in phases.iter().zip(&r.single.phases) {
            println!(
                "  {name:<40} p50 {:>6.0} ms  p95 {:>6.0} ms",
                percentile(v, 0.5),
                percentile(v, 0.95)
            );
        }
        println!(
            "[{}] AM SIGKILL → every job RUNNING, each boundary since the kill ({} jobs):",
            r.backend, r.many.jobs
        );
        for (name, v) in &r.many.phases {
            println!(
                "  {name:<40} {}",
                v.map_or("n/a".into(), |v| format!("{v:>6.0} ms"))
            );
        }
    }
}

async fn run() {
    // Two DataNodes: HA blobs and checkpoints are written with replication 2, as in production.
    let cluster = MiniCluster::shared(2);
    let backends = std::env::var("YARNFLOW_BENCH_BACKENDS").unwrap_or("native,libhdfs".into());
    let jobs = std::env::var("YARNFLOW_BENCH_JOBS")
        .ok()
        .and_then(|n| n.parse().ok())
        .unwrap_or(200);
    let mut reports = Vec::new();
    for backend in backends.split(',').map(str::trim).filter(|b| !b.is_empty()) {
        let single = single_job(cluster, backend).await;
        let many = many_jobs(cluster, backend, jobs).await;
        let commit_p50_ms = ha_commit_p50_ms(cluster, backend).await;
        reports.push(Report {
            backend: backend.to_string(),
            single,
            many,
            commit_p50_ms,
        });
    }
    print_reports(&reports);
}

fn main() {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap()
        .block_on(run());
}
