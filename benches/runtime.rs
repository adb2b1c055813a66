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
//!
//! Then the keyed exchange, through `yarnflow local`'s machinery ([`LocalCluster`]: the
//! JobManager in this process, 2 TaskManager processes of the `yarnflow` binary, 1 slot each):
//! a word count (`text-files` over a Zipf-like corpus of one word per line, ~10 k distinct
//! words → `key-by: line` → `count` → `files`) at parallelism 2 with a checkpoint every 1 s,
//! and the forward chain (`text-files` → `files`) over the same corpus on the same cluster.
//! Records/s of wall time, records per CPU-second of the TaskManager processes and this one
//! (from `/proc/<pid>/stat` and `getrusage`), and checkpoint completion p50 / p99 under load.
//! The keyed run's output is checked: the highest count per word is its true count, and there
//! is one line per record. `YARNFLOW_BENCH_KEYED_LINES` sets the corpus size (default
//! 100,000,000 lines: 15-30 s of the keyed job on 2 free cores); `YARNFLOW_BENCH_KEYED_ONLY=1`
//! runs only this part.

#[path = "../tests/support/mod.rs"]
mod support;

use std::io::BufRead;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use support::MiniCluster;
use support::wordcount::ZipfCorpus;
use yarnflow::config::Config;
use yarnflow::ha::HaServices;
use yarnflow::job::graph::RunId;
use yarnflow::job::spec::JobSpec;
use yarnflow::jobmanager::job_master::{self, JobMasterConfig, JobOutcome};
use yarnflow::jobmanager::restart::RestartStrategy;
use yarnflow::jobmanager::status::JobStatus;
use yarnflow::local::{LocalCluster, LocalEvent};
use yarnflow::storage::{BlobStore, Location};

/// Set in the child process that measures HDFS: the HDFS base URI.
const HDFS_CHILD_ENV: &str = "YARNFLOW_BENCH_RUNTIME_HDFS";

const THROUGHPUT_RECORDS: u64 = 20_000_000;
const LATENCY_RATE: u64 = 200_000;
const LATENCY_SECONDS: u64 = 20;
/// Distinct words of the word count corpus.
const KEYED_WORDS: usize = 10_000;
/// Lines of the word count corpus unless `YARNFLOW_BENCH_KEYED_LINES` says otherwise.
const KEYED_LINES: usize = 100_000_000;
/// The binding target of the keyed word count (issue 12: twice Flink 2.3.0's).
const KEYED_TARGET: f64 = 5_400_000.0;

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
        recovered: false,
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
    if std::env::var_os("YARNFLOW_BENCH_KEYED_ONLY").is_some() {
        runtime().block_on(keyed_exchange());
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
        println!();
        keyed_exchange().await;
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

/// User + system CPU time of process `pid` so far, from `/proc/<pid>/stat` (fields 14 and 15,
/// in clock ticks); zero once it is gone.
fn process_cpu_time(pid: u32) -> Duration {
    let Ok(stat) = std::fs::read_to_string(format!("/proc/{pid}/stat")) else {
        return Duration::ZERO;
    };
    // The command name (field 2) may hold spaces; the fields after it do not.
    let fields: Vec<&str> = stat
        .rsplit_once(')')
        .map_or("", |(_, rest)| rest)
        .split_whitespace()
        .collect();
    let ticks = |i: usize| {
        fields
            .get(i)
            .and_then(|f| f.parse::<u64>().ok())
            .unwrap_or(0)
    };
    // SAFETY: sysconf only reads a constant.
    let per_second = unsafe { libc::sysconf(libc::_SC_CLK_TCK) }.max(1) as f64;
    Duration::from_secs_f64((ticks(11) + ticks(12)) as f64 / per_second)
}

/// A job's run on the local cluster: wall time from submission to outcome, and CPU time of
/// the JobManager (this process) and of the TaskManager processes over it.
struct ClusterRun {
    outcome: JobOutcome,
    wall: Duration,
    jobmanager_cpu: Duration,
    taskmanager_cpu: Duration,
}

impl ClusterRun {
    fn cpu(&self) -> Duration {
        self.jobmanager_cpu + self.taskmanager_cpu
    }
}

/// `yarnflow local`'s cluster: the JobManager in this process on embedded HA under `workdir`,
/// 2 TaskManager processes of 1 slot each.
struct BenchCluster {
    cluster: LocalCluster,
    taskmanagers: Vec<u32>,
}

impl BenchCluster {
    async fn start(workdir: &Path) -> BenchCluster {
        let config = Config::defaults();
        let (cluster, mut events) = LocalCluster::start(&config, workdir, false)
            .await
            .expect("start the local cluster");
        cluster.start_taskmanagers_of(Path::new(env!("CARGO_BIN_EXE_yarnflow")), 2, 1);
        let mut taskmanagers = Vec::new();
        while taskmanagers.len() < 2 {
            match events.recv().await.expect("TaskManager events") {
                LocalEvent::TaskManagerStarted { pid, .. } => taskmanagers.push(pid),
                other => panic!("a benchmark TaskManager: {other:?}"),
            }
        }
        // Registered before the clock starts, so the figures leave out process start-up.
        let client = yarnflow::jobmanager::client::JobManagerClient::new(
            &cluster.session.address,
            Duration::from_secs(10),
        );
        let deadline = Instant::now() + Duration::from_secs(60);
        while client.taskmanagers().await.map_or(0, |t| t.len()) < 2 {
            assert!(
                Instant::now() < deadline,
                "the TaskManagers registered within 60 s"
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        BenchCluster {
            cluster,
            taskmanagers,
        }
    }

    fn taskmanager_cpu_time(&self) -> Duration {
        (self.taskmanagers.iter())
            .map(|p| process_cpu_time(*p))
            .sum()
    }

    /// Runs `spec` to its end; it must finish without a restart.
    async fn run(&mut self, spec: JobSpec) -> ClusterRun {
        let (wall, jm, tm) = (Instant::now(), cpu_time(), self.taskmanager_cpu_time());
        let outcome = self.cluster.run_job(spec).await.expect("the benchmark job");
        let run = ClusterRun {
            wall: wall.elapsed(),
            jobmanager_cpu: cpu_time() - jm,
            taskmanager_cpu: self.taskmanager_cpu_time() - tm,
            outcome,
        };
        assert!(
            run.outcome.status == JobStatus::Finished && run.outcome.restarts == 0,
            "benchmark job: {:?}",
            run.outcome
        );
        run
    }
}

/// A files-sink job over the corpus at parallelism 2, `steps` between source and sink.
fn corpus_spec(name: &str, corpus: &[PathBuf], steps: &str, output: &Path) -> JobSpec {
    let paths: Vec<String> = (corpus.iter())
        .map(|p| format!("\"file://{}\"", p.display()))
        .collect();
    JobSpec::parse(
        &format!(
            "name: {name}\nparallelism: 2\ncheckpoint-interval: 1 s\npipeline:\n  - source: {{ kind: text-files, paths: [{}] }}\n{steps}  - sink: {{ kind: files, path: 'file://{}' }}\n",
            paths.join(", "),
            output.display()
        ),
        "bench.yaml",
    )
    .expect("the benchmark's job spec")
}

/// Every committed line under `output`, to `line`.
fn for_each_committed_line(output: &Path, mut line: impl FnMut(&str)) {
    for e in std::fs::read_dir(output).expect("the output directory") {
        let path = e.expect("an output file").path();
        if !path
            .file_name()
            .is_some_and(|n| n.to_string_lossy().starts_with("part-"))
        {
            continue;
        }
        let file = std::io::BufReader::new(std::fs::File::open(&path).expect("a part file"));
        for l in file.lines() {
            line(&l.expect("a line of a part file"));
        }
    }
}

/// The word count's output is exact: one `w{i},count` line per record, and the highest count
/// per word is the number of times it was drawn.
fn check_word_counts(output: &Path, truth: &[u64]) {
    let mut highest = vec![0u64; truth.len()];
    let mut lines = 0u64;
    for_each_committed_line(output, |l| {
        lines += 1;
        let parsed = l.rsplit_once(',').and_then(|(w, c)| {
            let w: usize = w.strip_prefix('w')?.parse().ok()?;
            Some((w, c.parse::<u64>().ok()?))
        });
        let Some((w, c)) = parsed.filter(|(w, _)| *w < truth.len()) else {
            panic!("not a word count line of the corpus: {l:?}");
        };
        highest[w] = highest[w].max(c);
    });
    assert_eq!(lines, truth.iter().sum::<u64>(), "one line per record");
    let wrong: Vec<_> = (0..truth.len())
        .filter(|w| highest[*w] != truth[*w])
        .take(5)
        .map(|w| (w, highest[w], truth[w]))
        .collect();
    assert!(
        wrong.is_empty(),
        "wrong counts (word, counted, true): {wrong:?}"
    );
}

fn print_run(label: &str, records: u64, run: &ClusterRun) -> f64 {
    let d = &run.outcome.checkpoint_durations;
    let ms = |d: Duration| d.as_secs_f64() * 1000.0;
    let per_core = records as f64 / run.cpu().as_secs_f64();
    println!(
        "{label}: {records} records in {:.2} s wall, {:.2} s CPU (TaskManagers {:.2} s, JobManager {:.2} s): {:.0} records/s, {per_core:.0} records/s per core; checkpoint completion p50 {:.1} ms, p99 {:.1} ms (n={})",
        run.wall.as_secs_f64(),
        run.cpu().as_secs_f64(),
        run.taskmanager_cpu.as_secs_f64(),
        run.jobmanager_cpu.as_secs_f64(),
        records as f64 / run.wall.as_secs_f64(),
        ms(percentile(d, 0.5)),
        ms(percentile(d, 0.99)),
        d.len()
    );
    per_core
}

/// The keyed word count and the forward chain over one corpus on one 2-process local cluster.
async fn keyed_exchange() {
    let lines = std::env::var("YARNFLOW_BENCH_KEYED_LINES")
        .ok()
        .map(|v| {
            v.parse::<usize>()
                .expect("YARNFLOW_BENCH_KEYED_LINES: a number")
        })
        .unwrap_or(KEYED_LINES);
    let dir = std::env::temp_dir().join(format!("yarnflow-bench-keyed-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).expect("the benchmark's directory");
    // One file per source subtask (file i is read by subtask i % parallelism).
    let (corpus, truth) = ZipfCorpus::new(KEYED_WORDS, 42).write(&dir, 2, lines / 2);
    let records = truth.iter().sum::<u64>();
    println!(
        "keyed exchange: {records} words ({} distinct) of a Zipf-like corpus, parallelism 2, 2 TaskManager processes (yarnflow local), a checkpoint every 1 s",
        truth.iter().filter(|n| **n > 0).count()
    );
    let mut cluster = BenchCluster::start(&dir.join("work")).await;
    let keyed_out = dir.join("keyed-output");
    let keyed = cluster
        .run(corpus_spec(
            "keyed-wordcount",
            &corpus,
            "  - key-by: line\n  - count\n",
            &keyed_out,
        ))
        .await;
    check_word_counts(&keyed_out, &truth);
    let _ = std::fs::remove_dir_all(&keyed_out);
    let forward_out = dir.join("forward-output");
    let forward = cluster
        .run(corpus_spec("forward", &corpus, "", &forward_out))
        .await;
    let mut forwarded = 0u64;
    for_each_committed_line(&forward_out, |_| forwarded += 1);
    assert_eq!(forwarded, records, "the forward chain: one line per record");
    cluster.cluster.close().await;
    let keyed_per_core = print_run(
        "keyed word count (text-files → key-by: line → count → files)",
        records,
        &keyed,
    );
    let forward_per_core = print_run("forward chain (text-files → files)", records, &forward);
    let keyed_rate = records as f64 / keyed.wall.as_secs_f64();
    println!(
        "keyed: {:.2} × the target of {KEYED_TARGET:.0} records/s; per core {:.2} × the forward chain's (target ≥ 0.5)",
        keyed_rate / KEYED_TARGET,
        keyed_per_core / forward_per_core
    );
    let _ = std::fs::remove_dir_all(&dir);
}
