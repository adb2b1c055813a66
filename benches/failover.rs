//! Failover benchmark on the real mini cluster (prints figures; not a timed test):
//!
//! ```text
//! cargo bench --bench failover            # or YARNFLOW_MINICLUSTER_DIR=<running cluster> ...
//! ```
//!
//! Submits an unbounded exactly-once job (4 subtasks, checkpoints every 500 ms), SIGKILLs the
//! ApplicationMaster 5 times and a TaskManager container 5 times (`yarn/minicluster/run kill`),
//! and prints p50/p95 of
//! * AM SIGKILL → job RUNNING again, split into YARN detection (kill → the RM starts the next
//!   attempt), new AM start (→ the AM process logs "attempt started"), leadership (→ "leadership
//!   granted"), recovery (→ "job recovered") and redeployment (→ the JobManager reports RUNNING
//!   with every subtask deployed on the re-registered TaskManagers);
//! * TaskManager SIGKILL → job RUNNING again;
//! * the AM's peak RSS (VmHWM).
//!
//! The restart strategy is fixed-delay with 100 ms, so the TaskManager figure measures the
//! replacement (allocation, launch, registration, redeployment), not a backoff; with Flink's
//! default (exponential-delay from 1 s, growing 1.5x per restart) add that delay.
//!
//! Phase boundaries come from the AM's JSON log (`yarnflow.jsonl` in its container log dir) and
//! the RM REST API; all clocks are this machine's.

#[path = "../tests/support/mod.rs"]
mod support;

use std::path::Path;
use std::time::{Duration, Instant};

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

/// The JobManager's view of the job under the current attempt.
async fn job(rest: &RmRest, app: &str) -> Option<serde_json::Value> {
    let jm = support::jobmanager_of(rest, app).await?;
    let job = JobManagerClient::new(&jm, Duration::from_secs(2))
        .job("bench")
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
        .filter_map(|t| t.id.strip_prefix("tm-").map(str::to_string))
        .collect()
}

/// First timestamp (ms) of a message in a container's JSON log, searched under the cluster dir.
fn log_ts(cluster: &MiniCluster, container: &str, message: &str) -> Option<i64> {
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
    let dir = find(&cluster.dir.join("data"), container, 0)?;
    let text = std::fs::read_to_string(dir.join("yarnflow.jsonl")).ok()?;
    text.lines().find_map(|l| {
        let v: serde_json::Value = serde_json::from_str(l).ok()?;
        (v["message"] == message).then(|| {
            v["ts"]
                .as_str()?
                .parse::<jiff::Timestamp>()
                .ok()
                .map(|t| t.as_millisecond())
        })?
    })
}

/// Peak RSS (kB) of the process running in `container`.
fn peak_rss_kb(container: &str) -> Option<u64> {
    for e in std::fs::read_dir("/proc").ok()?.flatten() {
        let p = e.path();
        let Ok(env) = std::fs::read(p.join("environ")) else {
            continue;
        };
        let wanted = format!("CONTAINER_ID={container}");
        let cmd = std::fs::read_to_string(p.join("cmdline")).unwrap_or_default();
        if cmd.contains("appmaster") && env.split(|b| *b == 0).any(|kv| kv == wanted.as_bytes()) {
            let status = std::fs::read_to_string(p.join("status")).ok()?;
            return status
                .lines()
                .find_map(|l| l.strip_prefix("VmHWM:"))
                .and_then(|v| v.split_whitespace().next()?.parse().ok());
        }
    }
    None
}

async fn wait_running(rest: &RmRest, app: &str, attempt: i64, restarts: u64) -> i64 {
    let deadline = Instant::now() + Duration::from_secs(90);
    loop {
        let current = rest
            .attempts(app)
            .await
            .ok()
            .and_then(|a| a.iter().map(|a| a.id).max())
            .unwrap_or(0);
        if current >= attempt
            && let Some(j) = job(rest, app).await
            && j["status"] == "RUNNING"
            && j["restarts"].as_u64().unwrap_or(0) >= restarts
        {
            return now_ms();
        }
        assert!(Instant::now() < deadline, "job not RUNNING again");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

async fn run() {
    let cluster = MiniCluster::get();
    let rest = RmRest::new(cluster.rm_rest());
    // Failures older than the validity interval do not count toward the 4 attempts.
    let conf = support::yarn_app::conf_dir(
        cluster,
        "bench",
        "yarn.application-attempts: 4\n\
         yarn.application-attempt-failures-validity-interval: 4000\n\
         restart-strategy.type: fixed-delay\n\
         restart-strategy.fixed-delay.attempts: 1000\n\
         restart-strategy.fixed-delay.delay: 100 ms\n",
    );
    let spec = conf.join("bench.yaml");
    std::fs::write(
        &spec,
        "name: bench\nparallelism: 4\ncheckpoint-interval: 500 ms\npipeline:\n  - source: { kind: sequence, from: 0, rate: 20000 }\n  - sink: { kind: files }\n",
    )
    .unwrap();
    let out = cluster
        .yarnflow(&conf)
        .arg("submit")
        .arg(&spec)
        .arg("--detached")
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout).to_string();
    assert!(
        out.status.success(),
        "{stdout}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let app = stdout
        .lines()
        .find_map(|l| l.strip_prefix("application ")?.split_whitespace().next())
        .unwrap()
        .to_string();
    println!("application {app}");

    let mut total = Vec::new();
    let mut phases: [Vec<f64>; 5] = Default::default();
    let mut rss = Vec::new();
    for i in 0..AM_KILLS {
        let attempts = rest.attempts(&app).await.unwrap();
        let current = attempts.iter().max_by_key(|a| a.id).unwrap().clone();
        // Out of the validity window of the previous kill, and some checkpoints in.
        tokio::time::sleep(Duration::from_millis(4500)).await;
        if let Some(kb) = peak_rss_kb(&current.container_id) {
            rss.push(kb);
        }
        let t_kill = now_ms();
        let k = cluster.run("kill", &[&current.container_id]);
        assert!(k.status.success(), "{}", String::from_utf8_lossy(&k.stderr));
        let t_running = wait_running(&rest, &app, current.id + 1, 0).await;
        let next = rest
            .attempts(&app)
            .await
            .unwrap()
            .into_iter()
            .max_by_key(|a| a.id)
            .unwrap();
        let c = &next.container_id;
        let started = log_ts(cluster, c, "attempt started");
        let leader = log_ts(cluster, c, "leadership granted");
        let recovered = log_ts(cluster, c, "job recovered");
        let points = [
            Some(t_kill),
            Some(next.start_time),
            started,
            leader,
            recovered,
            Some(t_running),
        ];
        if points.iter().all(Option::is_some) {
            let p: Vec<i64> = points.iter().map(|p| p.unwrap()).collect();
            for j in 0..5 {
                phases[j].push((p[j + 1] - p[j]) as f64);
            }
        }
        total.push((t_running - t_kill) as f64);
        println!(
            "AM kill {}: job RUNNING again after {} ms (attempt {})",
            i + 1,
            t_running - t_kill,
            next.id
        );
    }

    let mut tm_total = Vec::new();
    for i in 0..TM_KILLS {
        tokio::time::sleep(Duration::from_millis(1500)).await;
        let restarts = job(&rest, &app).await.unwrap()["restarts"]
            .as_u64()
            .unwrap_or(0);
        let tms = taskmanagers(&rest, &app).await;
        let victim = tms.first().expect("a registered TaskManager").clone();
        let t_kill = now_ms();
        let k = cluster.run("kill", &[&victim]);
        assert!(k.status.success(), "{}", String::from_utf8_lossy(&k.stderr));
        let t = wait_running(&rest, &app, 0, restarts + 1).await;
        tm_total.push((t - t_kill) as f64);
        println!(
            "TaskManager kill {}: job RUNNING again after {} ms",
            i + 1,
            t - t_kill
        );
    }
    let _ = cluster.yarnflow(&conf).args(["cancel", &app]).output();

    let names = [
        "YARN detection",
        "new AM start",
        "leadership",
        "recovery",
        "redeploy on re-registered TaskManagers",
    ];
    println!(
        "\nAM SIGKILL -> job RUNNING: p50 {:.0} ms, p95 {:.0} ms (n={})",
        percentile(&total, 0.5),
        percentile(&total, 0.95),
        total.len()
    );
    for (name, v) in names.iter().zip(&phases) {
        println!(
            "  {name:<40} p50 {:>6.0} ms  p95 {:>6.0} ms",
            percentile(v, 0.5),
            percentile(v, 0.95)
        );
    }
    println!(
        "TaskManager SIGKILL -> job RUNNING: p50 {:.0} ms, p95 {:.0} ms (n={})",
        percentile(&tm_total, 0.5),
        percentile(&tm_total, 0.95),
        tm_total.len()
    );
    println!(
        "AM peak RSS (VmHWM): max {} MB over {} attempts",
        rss.iter().max().copied().unwrap_or(0) / 1024,
        rss.len()
    );
}

fn main() {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap()
        .block_on(run());
}
