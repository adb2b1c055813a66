//! Runtime benchmark (prints figures; not a timed test):
//!
//! ```text
//! cargo bench --bench runtime            # or YARNFLOW_MINICLUSTER_DIR=<running cluster> ...
//! ```
//!
//! Runs jobs in this process through the job master with the `InProcess` runtime (subtasks are
//! tasks of a 2-worker tokio runtime) and embedded HA, and prints
//! * throughput of the exactly-once job (`examples/exactly-once.yaml` without its rate limit:
//!   the numbers 0..20,000,000, parallelism 2, files sink on local storage) without
//!   checkpointing (only the final checkpoint that commits the output) and with checkpoints
//!   every 500 ms and every 100 ms: records per second of wall time, and records per CPU-second
//!   of this process (user + system time from `getrusage`), i.e. per core;
//! * checkpoint completion latency (trigger → every subtask acknowledged → metadata stored),
//!   p50 / p99 / max, of a rate-limited job (200,000 records/s, parallelism 2, a checkpoint every
//!   100 ms, 20 s) with HA blobs and sink on local storage, and on the mini cluster's HDFS.
//!
//! The HDFS run needs libhdfs's JVM: it runs in a child process of this benchmark started with
//! the cluster's `JAVA_HOME` and `YARNFLOW_HADOOP_CLASSPATH` (set before that process starts),
//! which also keeps the JVM's threads out of the CPU figures above. The local figures are
//! measured before the mini cluster starts, so its JVM does not compete for the cores.
//! `YARNFLOW_BENCH_SKIP_HDFS=1` skips the HDFS run.

#[path = "../tests/support/mod.rs"]
mod support;

use std::sync::Arc;
use std::time::{Duration, Instant};

use support::MiniCluster;
use yarnflow::ha::HaServices;
use yarnflow::job::graph::RunId;
use yarnflow::job::spec::JobSpec;
use yarnflow::jobmanager::job_master::{self, JobMasterConfig, JobOutcome};
use yarnflow::jobmanager::restart::RestartStrategy;
use yarnflow::jobmanager::status::JobStatus;
use yarnflow::storage::{BlobStore, Location};

/// Set in the child process that measures HDFS: the HDFS base URI.
const HDFS_CHILD_ENV: &str = "YARNFLOW_BENCH_RUNTIME_HDFS";

const THROUGHPUT_RECORDS: u64 = 20_000_000;
const LATENCY_RATE: u64 = 200_000;
const LATENCY_SECONDS: u64 = 20;

/// User + system CPU time of this process so far.
fn cpu_time() -> Duration {
    let mut usage: libc::rusage = unsafe { std::mem::zeroed() };
    // SAFETY: getrusage writes into the struct we own.
    let rc = unsafe { libc::getrusage(libc::RUSAGE_SELF, &mut usage) };
    assert_eq!(rc, 0, "getrusage failed");
    let tv = |t: libc::timeval| Duration::new(t.tv_sec as u64, t.tv_usec as u32 * 1000);
    tv(usage.ru_utime) + tv(usage.ru_stime)
}

fn percentile(values: &[Duration], p: f64) -> Duration {
    let mut v = values.to_vec();
    v.sort_unstable();
    if v.is_empty() {
        return Duration::ZERO;
    }
    v[((v.len() - 1) as f64 * p).round() as usize]
}

fn spec(name: &str, to: u64, rate: Option<u64>, checkpoint_interval: Option<&str>) -> JobSpec {
    let rate = rate.map(|r| format!(", rate: {r}")).unwrap_or_default();
    let interval = checkpoint_interval
        .map(|i| format!("checkpoint-interval: {i}\n"))
        .unwrap_or_default();
    JobSpec::parse(
        &format!(
            "name: {name}\nparallelism: 2\n{interval}pipeline:\n  - source: {{ kind: sequence, from: 0, to: {to}{rate} }}\n  - sink: {{ kind: files }}\n"
        ),
        "bench.yaml",
    )
    .expect("the benchmark's job spec")
}

/// Runs one job to its end on `store` under `dir` (HA blobs in `dir/ha`, output in
/// `dir/output`, both removed afterwards).
async fn run_job(spec: JobSpec, store: Arc<dyn BlobStore>, dir: &str) -> JobOutcome {
    let _ = store.delete_dir(dir).await;
    let ha = HaServices::embedded(store.clone(), &format!("{dir}/ha"), 1);
    let cfg = JobMasterConfig {
        spec,
        run_id: RunId::random(),
        sink_dir: Location {
            store: store.clone(),
            path: format!("{dir}/output"),
        },
        checkpoint_storage: yarnflow::jobmanager::checkpoint_storage::CheckpointStorage::new(
            Location {
                store: store.clone(),
                path: format!("{dir}/checkpoints"),
            },
        ),
        restart: RestartStrategy::None,
        checkpoint_timeout: Duration::from_secs(60),
        tolerable_failed_checkpoints: 0,
        max_parallelism: -1,
        runtime: Arc::new(job_master::InProcess::default()),
        leadership: tokio_util::sync::CancellationToken::new(),
        graph_persisted: false,
        recovery: job_master::RecoveryPolicy::default(),
        cleanup: yarnflow::jobmanager::cleanup::RetryStrategy::None,
    };
    let (_handle, done) = job_master::start(cfg, ha);
    let outcome = done.await.expect("the job master ends");
    assert_eq!(
        outcome.status,
        JobStatus::Finished,
        "benchmark job: {outcome:?}"
    );
    let _ = store.delete_dir(dir).await;
    outcome
}

async fn throughput(label: &str, checkpoint_interval: Option<&str>, dir: &str) {
    let store: Arc<dyn BlobStore> = Arc::new(yarnflow::storage::local::LocalStore);
    let spec = spec("throughput", THROUGHPUT_RECORDS, None, checkpoint_interval);
    let (wall, cpu) = (Instant::now(), cpu_time());
    let outcome = run_job(spec, store, dir).await;
    let (wall, cpu) = (wall.elapsed(), cpu_time() - cpu);
    let n = THROUGHPUT_RECORDS as f64;
    println!(
        "{label}: {n:.0} records in {:.2} s wall, {:.2} s CPU: {:.0} records/s, {:.0} records/s per core ({} checkpoints)",
        wall.as_secs_f64(),
        cpu.as_secs_f64(),
        n / wall.as_secs_f64(),
        n / cpu.as_secs_f64(),
        outcome.completed_checkpoints
    );
}

async fn latency(label: &str, store: Arc<dyn BlobStore>, dir: &str) {
    let spec = spec(
        "latency",
        LATENCY_RATE * LATENCY_SECONDS,
        Some(LATENCY_RATE),
        Some("100 ms"),
    );
    let wall = Instant::now();
    let outcome = run_job(spec, store, dir).await;
    let wall = wall.elapsed();
    let d = &outcome.checkpoint_durations;
    let ms = |d: Duration| d.as_secs_f64() * 1000.0;
    println!(
        "{label}: checkpoint completion p50 {:.1} ms, p99 {:.1} ms, max {:.1} ms (n={}, job ran {:.1} s)",
        ms(percentile(d, 0.5)),
        ms(percentile(d, 0.99)),
        ms(percentile(d, 1.0)),
        d.len(),
        wall.as_secs_f64()
    );
}

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("a tokio runtime")
}

/// The HDFS measurement, in the child process.
fn hdfs_child(hdfs_uri: &str) {
    runtime().block_on(async {
        let dir = format!("/yarnflow-bench/runtime-{}", std::process::id());
        let location = yarnflow::storage::open(&format!("{hdfs_uri}{dir}"))
            .await
            .expect("open the mini cluster's HDFS");
        latency(
            "HDFS storage (HA blobs and sink on the mini cluster's HDFS)",
            location.store.clone(),
            &dir,
        )
        .await;
    });
}

fn main() {
    if let Ok(uri) = std::env::var(HDFS_CHILD_ENV) {
        hdfs_child(&uri);
        return;
    }
    let local_dir = std::env::temp_dir()
        .join(format!("yarnflow-bench-runtime-{}", std::process::id()))
        .display()
        .to_string();
    println!(
        "exactly-once job, 0..{THROUGHPUT_RECORDS}, parallelism 2, in process (2 tokio workers), local storage"
    );
    runtime().block_on(async {
        throughput("without checkpointing", None, &local_dir).await;
        for interval in ["500 ms", "100 ms"] {
            let label = format!("checkpoints every {interval}");
            throughput(&label, Some(interval), &local_dir).await;
        }
        println!(
            "\ncheckpoint latency: {LATENCY_RATE} records/s, parallelism 2, a checkpoint every 100 ms for {LATENCY_SECONDS} s"
        );
        latency(
            "local storage",
            Arc::new(yarnflow::storage::local::LocalStore),
            &local_dir,
        )
        .await;
    });
    if std::env::var_os("YARNFLOW_BENCH_SKIP_HDFS").is_some() {
        return;
    }
    let cluster = MiniCluster::get();
    let status = std::process::Command::new(std::env::current_exe().expect("this benchmark"))
        .env(HDFS_CHILD_ENV, cluster.hdfs_uri())
        .env("JAVA_HOME", cluster.env("JAVA_HOME"))
        .env(
            "YARNFLOW_HADOOP_CLASSPATH",
            cluster.env("YARNFLOW_HADOOP_CLASSPATH"),
        )
        .status()
        .expect("start the HDFS measurement");
    assert!(status.success(), "the HDFS measurement failed: {status}");
}
