//! Driving one yarnflow application on the mini cluster, for the fault tests and the chaos
//! benchmark: a conf dir with ZooKeeper HA, `yarnflow submit --detached`, the JobManager's view
//! of the job, the application's attempts and containers, and what the run left behind (its
//! committed output, znodes, HA blobs and staging directory).

use std::collections::HashSet;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use super::MiniCluster;
use yarnflow::hadoop::rest::{AppReport, RmRest};
use yarnflow::hadoop::webhdfs::WebHdfs;
use yarnflow::jobmanager::client::JobManagerClient;

/// The job of `examples/exactly-once.yaml` (and of the specs derived from it).
pub const JOB: &str = "exactly-once";

/// A yarnflow conf dir with ZooKeeper HA on the mini cluster, plus `extra` lines.
pub fn conf_dir(cluster: &MiniCluster, name: &str, extra: &str) -> PathBuf {
    conf_dir_on(cluster, cluster.zk_quorum(), name, extra)
}

/// [`conf_dir`] with ZooKeeper reached at `quorum` (e.g. through a proxy).
pub fn conf_dir_on(cluster: &MiniCluster, quorum: &str, name: &str, extra: &str) -> PathBuf {
    write_conf(cluster, quorum, HA_DIR, name, extra)
}

/// [`conf_dir`] whose HA storage is `ha_dir` (e.g. in a user's home).
pub fn conf_dir_with_storage(
    cluster: &MiniCluster,
    ha_dir: &str,
    name: &str,
    extra: &str,
) -> PathBuf {
    write_conf(cluster, cluster.zk_quorum(), ha_dir, name, extra)
}

/// The HA storage directory of [`conf_dir`].
pub const HA_DIR: &str = "/yarnflow/ha";

fn write_conf(
    cluster: &MiniCluster,
    quorum: &str,
    ha_dir: &str,
    name: &str,
    extra: &str,
) -> PathBuf {
    let dir = cluster.dir.join(format!("conf-{name}"));
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(
        dir.join("yarnflow.yaml"),
        format!(
            "high-availability.type: zookeeper\n\
             high-availability.storageDir: {}{ha_dir}\n\
             high-availability.zookeeper.quorum: {quorum}\n{extra}",
            cluster.hdfs_uri(),
        ),
    )
    .unwrap();
    dir
}

/// The numbers of [`half_spec`].
pub const HALF_RECORDS: u64 = 1_000_000;

/// The exactly-once example with half its numbers (about 15 s at its rate), for a test whose
/// job only has to outlast one fault and its recovery: the same checks in half the time.
pub fn half_spec(cluster: &MiniCluster) -> String {
    let path = exactly_once_spec(cluster, "exactly-once-half", HALF_RECORDS, 66_667);
    path.to_string_lossy().into_owned()
}

/// The exactly-once example with the numbers `0..records` at `rate` per second (all
/// subtasks), written to the cluster dir as `<name>.yaml`.
pub fn exactly_once_spec(cluster: &MiniCluster, name: &str, records: u64, rate: u64) -> PathBuf {
    let path = cluster.dir.join(format!("{name}.yaml"));
    std::fs::write(
        &path,
        format!(
            "name: {JOB}\n\
             parallelism: 4\n\
             checkpoint-interval: 500 ms\n\
             pipeline:\n\
             \x20 - source: {{ kind: sequence, from: 0, to: {records}, rate: {rate} }}\n\
             \x20 - sink: {{ kind: files }}\n",
        ),
    )
    .unwrap();
    path
}

/// `yarnflow submit --detached`: returns the application id once the job runs.
pub fn submit(cluster: &MiniCluster, conf: &Path, spec: &str) -> String {
    submit_with_env(cluster, conf, spec, &[])
}

/// [`submit`] with `env` in the submitter's environment (what it passes on reaches the AM
/// and the TaskManagers, e.g. `YARNFLOW_FAULTS`).
pub fn submit_with_env(
    cluster: &MiniCluster,
    conf: &Path,
    spec: &str,
    env: &[(&str, &str)],
) -> String {
    let mut command = cluster.yarnflow(conf);
    command.envs(env.iter().copied());
    submit_job(command, spec, JOB)
}

/// `<binary> submit SPEC --detached` with `command` (a binary set up for the cluster, see
/// [`MiniCluster::command`]): returns the application id once its job `job` runs.
pub fn submit_job(mut command: std::process::Command, spec: &str, job: &str) -> String {
    let out = command
        .args(["submit", spec, "--detached"])
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "submit failed:\n{stdout}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(stdout.contains(&format!("job {job} RUNNING")), "{stdout}");
    stdout
        .lines()
        .find_map(|l| l.strip_prefix("application ")?.split_whitespace().next())
        .expect("the application id is printed")
        .to_string()
}

/// The application's report once it is final (panics after `within`).
pub async fn wait_final(rest: &RmRest, app: &str, within: Duration) -> AppReport {
    let deadline = Instant::now() + within;
    loop {
        // A failed read (the RM's REST API has transient 503s) is tried again.
        match rest.application(app).await {
            Ok(r) if r.is_final() => return r,
            Ok(r) => assert!(Instant::now() < deadline, "{app} still {} ", r.state),
            Err(e) => assert!(Instant::now() < deadline, "{app}: {e}"),
        }
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
}

/// Waits for the application's end and asserts it FINISHED/SUCCEEDED (with its diagnostics
/// otherwise).
pub async fn wait_succeeded(rest: &RmRest, app: &str, within: Duration) -> AppReport {
    let report = wait_final(rest, app, within).await;
    assert_eq!(
        (report.state.as_str(), report.final_status.as_str()),
        ("FINISHED", "SUCCEEDED"),
        "{}",
        report.diagnostics
    );
    report
}

/// The JobManager's view of the application's job (an application runs one), once the
/// current attempt serves it.
pub async fn job_view(rest: &RmRest, app: &str) -> Option<(String, serde_json::Value)> {
    let jm = super::jobmanager_of(rest, app).await?;
    let client = JobManagerClient::new(&jm, Duration::from_secs(3));
    let id = client.jobs().await.ok()?.into_iter().next()?.id;
    let job = client.job(&id).await.ok()?;
    Some((jm, serde_json::to_value(job).unwrap()))
}

/// Waits until the job has completed `n` checkpoints under the current attempt. On a timeout
/// it panics with what it last saw: the app report, the job's view and the app's warnings.
pub async fn wait_checkpoints(
    cluster: &MiniCluster,
    rest: &RmRest,
    app: &str,
    n: u64,
) -> serde_json::Value {
    let deadline = Instant::now() + Duration::from_secs(60);
    let mut last = None;
    loop {
        if let Some((_, v)) = job_view(rest, app).await {
            if v["completed_checkpoints"].as_u64().unwrap_or(0) >= n {
                return v;
            }
            last = Some(v);
        }
        if Instant::now() >= deadline {
            let report = rest.application(app).await;
            let logs = cluster.client(&["logs", app, "--level", "warn"]);
            let logs = String::from_utf8_lossy(&logs.stdout);
            let tail: Vec<&str> = logs.lines().rev().take(60).collect();
            panic!(
                "no {n} checkpoints on {app} within 60 s\nreport: {report:?}\njob: {last:?}\n\
                 warnings and errors (last 60):\n{}",
                tail.into_iter().rev().collect::<Vec<_>>().join("\n")
            );
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// The current attempt's number and AM container. The RM's REST API fails now and then while
/// attempts change (a 503 from a ConcurrentModificationException), so a failed read is tried
/// again for up to 10 s.
pub async fn current_am_container(rest: &RmRest, app: &str) -> (i64, String) {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        match rest.attempts(app).await {
            Ok(attempts) if !attempts.is_empty() => {
                let a = attempts.iter().max_by_key(|a| a.id).unwrap();
                return (a.id, a.container_id.clone());
            }
            other => assert!(
                Instant::now() < deadline,
                "the attempts of {app}: {other:?}"
            ),
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// Waits until attempt `attempt` serves the job RUNNING with at least `checkpoints` completed
/// checkpoints, polling every 50 ms for up to `within`; its job view.
pub async fn wait_attempt_running(
    rest: &RmRest,
    app: &str,
    attempt: i64,
    checkpoints: u64,
    within: Duration,
) -> serde_json::Value {
    let deadline = Instant::now() + within;
    loop {
        if current_am_container(rest, app).await.0 == attempt
            && let Some((_, v)) = job_view(rest, app).await
            && v["status"] == "RUNNING"
            && v["completed_checkpoints"].as_u64().unwrap_or(0) >= checkpoints
        {
            return v;
        }
        assert!(
            Instant::now() < deadline,
            "attempt {attempt} never ran the job of {app} within {within:?}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// A container whose TaskManager runs a subtask now (TaskManager ids are `tm-<container>`),
/// never the AM's.
pub async fn busy_taskmanager_container(rest: &RmRest, app: &str) -> Option<String> {
    let (_, am) = current_am_container(rest, app).await;
    let jm = super::jobmanager_of(rest, app).await?;
    let tms = JobManagerClient::new(&jm, Duration::from_secs(3))
        .taskmanagers()
        .await
        .ok()?;
    tms.iter()
        .filter(|t| t.free_slots == 0)
        .filter_map(|t| t.id.strip_prefix("tm-"))
        .find(|c| *c != am)
        .map(str::to_string)
}

/// The log directories of `app`'s containers on the mini cluster's NodeManagers, by
/// container id.
fn container_log_dirs(cluster: &MiniCluster, app: &str) -> Vec<(String, PathBuf)> {
    fn walk(dir: &Path, app: &str, out: &mut Vec<(String, PathBuf)>, depth: u32) {
        let Ok(entries) = std::fs::read_dir(dir) else {
            return;
        };
        for e in entries.flatten() {
            let name = e.file_name().to_string_lossy().to_string();
            if name == app {
                for c in std::fs::read_dir(e.path()).into_iter().flatten().flatten() {
                    out.push((c.file_name().to_string_lossy().to_string(), c.path()));
                }
            } else if depth < 4 && e.path().is_dir() && name != "usercache" {
                walk(&e.path(), app, out, depth + 1);
            }
        }
    }
    let mut out = Vec::new();
    walk(&cluster.dir.join("data"), app, &mut out, 0);
    out
}

/// Containers of `app` that ever ran on the mini cluster's NodeManagers (their log dirs).
pub fn containers_of(cluster: &MiniCluster, app: &str) -> Vec<String> {
    let mut out: Vec<String> = container_log_dirs(cluster, app)
        .into_iter()
        .map(|(c, _)| c)
        .collect();
    out.sort();
    out.dedup();
    out
}

/// The log file `file` (`appmaster.err`, `taskmanager.err`, ...) of `app`'s container
/// `container`, as far as it is written; empty if there is none yet.
pub fn container_log(cluster: &MiniCluster, app: &str, container: &str, file: &str) -> String {
    container_log_dirs(cluster, app)
        .into_iter()
        .filter(|(c, _)| c == container)
        .filter_map(|(_, dir)| std::fs::read(dir.join(file)).ok())
        .map(|b| String::from_utf8_lossy(&b).into_owned())
        .collect()
}

/// `yarn/minicluster/run <verb> <args>`, asserting it succeeded; returns its stdout.
pub fn fault(cluster: &MiniCluster, verb: &str, args: &[&str]) -> String {
    let out = cluster.run(verb, args);
    assert!(
        out.status.success(),
        "run {verb} {args:?}: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).to_string()
}

pub fn kill_container(cluster: &MiniCluster, container: &str) {
    fault(cluster, "kill", &[container]);
}

/// The output directory of the job of `app` submitted by `user` (the files sink's default
/// path).
pub fn output_dir(user: &str, app: &str) -> String {
    output_dir_of(user, app, JOB)
}

/// [`output_dir`] of the job named `job`.
pub fn output_dir_of(user: &str, app: &str, job: &str) -> String {
    format!("/user/{user}/yarnflow-output/{app}/{job}")
}

/// Every line of the committed part files of job `job` of `app` (submitted by `user`),
/// through WebHDFS.
pub async fn committed_lines(
    cluster: &MiniCluster,
    user: &str,
    app: &str,
    job: &str,
) -> Vec<String> {
    let web = WebHdfs::new(cluster.webhdfs(), user);
    let dir = output_dir_of(user, app, job);
    let mut lines = Vec::new();
    for (name, _) in web.list(&dir).await.unwrap_or_default() {
        if name.starts_with("part-") {
            let data = web.open(&format!("{dir}/{name}")).await.unwrap();
            lines.extend(String::from_utf8_lossy(&data).lines().map(String::from));
        }
    }
    lines
}

/// Copies the corpus's files to HDFS under `dir` through WebHDFS; returns their `hdfs://` URIs as
/// a YAML flow list for a `text-files` source.
pub async fn upload_corpus(
    cluster: &MiniCluster,
    corpus: &super::wordcount::Corpus,
    dir: &str,
) -> String {
    let web = WebHdfs::new(cluster.webhdfs(), &super::user());
    web.mkdirs(dir).await.unwrap();
    let mut uris = Vec::new();
    for path in &corpus.paths {
        let name = path.file_name().unwrap().to_string_lossy();
        let target = format!("{dir}/{name}");
        web.create(&target, std::fs::read(path).unwrap().into())
            .await
            .unwrap();
        uris.push(format!("\"{}{target}\"", cluster.hdfs_uri()));
    }
    format!("[{}]", uris.join(", "))
}

/// The word count example's job on YARN: its name, and the shape of the corpus it counts.
pub const WORDCOUNT: &str = "wordcount";

/// A word count run on YARN: a Zipf corpus on HDFS and the `wordcount` spec over it at
/// parallelism 3 (3 TaskManagers of one slot), `throttle` (per source subtask) between tokenize
/// and the key-by when given, so a fault lands mid-job.
pub struct WordCountRun {
    pub corpus: super::wordcount::Corpus,
    pub spec: String,
}

impl WordCountRun {
    /// 3 files × 20,000 lines × 10 words (600,000 words, about 3.5 MB) over 20,000 words.
    pub async fn prepare(cluster: &MiniCluster, name: &str, throttle: Option<u64>) -> WordCountRun {
        let local = cluster.dir.join(format!("corpus-{name}"));
        std::fs::create_dir_all(&local).unwrap();
        let corpus = super::wordcount::Corpus::zipf(
            &local,
            &super::wordcount::Shape {
                files: 3,
                lines_per_file: 20_000,
                words_per_line: 10,
                vocabulary: 20_000,
                mixed: true,
            },
        );
        let paths = upload_corpus(cluster, &corpus, &format!("/{name}-input")).await;
        let throttle = throttle.map_or(String::new(), |r| {
            format!("  - operator: {{ name: throttle, config: {{ records-per-second: {r} }} }}\n")
        });
        let spec = cluster.dir.join(format!("{name}.yaml"));
        std::fs::write(
            &spec,
            format!(
                "name: {WORDCOUNT}\nparallelism: 3\ncheckpoint-interval: 500 ms\npipeline:\n\
                 \x20 - source: {{ kind: text-files, paths: {paths} }}\n\
                 \x20 - operator: tokenize\n{throttle}\
                 \x20 - key-by: line\n\
                 \x20 - operator: count\n\
                 \x20 - sink: {{ kind: files }}\n"
            ),
        )
        .unwrap();
        WordCountRun {
            corpus,
            spec: spec.to_string_lossy().into_owned(),
        }
    }

    /// `wordcount submit --detached` with `conf`: the application id once the job runs.
    pub fn submit(&self, cluster: &MiniCluster, conf: &Path) -> String {
        submit_job(
            cluster.command(&super::wordcount_exe(), conf),
            &self.spec,
            WORDCOUNT,
        )
    }

    /// Asserts what `app` committed is exact: no line twice, every word's highest count its
    /// true count.
    pub async fn check_counts(&self, cluster: &MiniCluster, app: &str) {
        let lines = committed_lines(cluster, &super::user(), app, WORDCOUNT).await;
        if let Err(e) = self.corpus.check(lines.iter().map(String::as_str)) {
            panic!("{app}: {e}");
        }
    }
}

/// What the committed part files of `app` hold, measured against the numbers `0..expected`.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Output {
    pub records: u64,
    pub duplicates: u64,
    pub missing: u64,
    /// Lines that are not a number (a torn or truncated part file).
    pub garbled: u64,
}

impl Output {
    pub fn exactly_once(&self) -> bool {
        self.duplicates == 0 && self.missing == 0 && self.garbled == 0
    }
}

/// Reads every committed part file of `app` through WebHDFS.
pub async fn output(cluster: &MiniCluster, app: &str, expected: u64) -> Output {
    output_of(cluster, &super::user(), app, expected).await
}

/// [`output`] of an application `user` submitted.
pub async fn output_of(cluster: &MiniCluster, user: &str, app: &str, expected: u64) -> Output {
    let mut seen = HashSet::new();
    let mut out = Output::default();
    for l in committed_lines(cluster, user, app, JOB).await {
        out.records += 1;
        match l.parse::<u64>() {
            Ok(n) if n < expected => {
                if !seen.insert(n) {
                    out.duplicates += 1;
                }
            }
            _ => out.garbled += 1,
        }
    }
    out.missing = expected - seen.len() as u64;
    out
}

/// Every committed number of the job's output, checked exactly-once against `0..expected`.
pub async fn check_output_of(cluster: &MiniCluster, app: &str, expected: u64) {
    let out = output(cluster, app, expected).await;
    assert!(
        out.exactly_once() && out.records == expected,
        "{out:?} in {}",
        output_dir(&super::user(), app)
    );
}

/// What a finished application left in ZooKeeper and HA storage.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Leftovers {
    /// Znodes under the application's cluster id.
    pub znodes: Vec<String>,
    /// Entries of the HA storage directory but the job result store's one result. The
    /// cluster's directory there also holds the default `execution.checkpointing.dir`
    /// (`<storageDir>/<cluster-id>/checkpoints`), so keyed state snapshot files left behind
    /// count too.
    pub blobs: Vec<String>,
    /// Whether the staging directory is still there.
    pub staging: bool,
}

impl Leftovers {
    pub fn is_empty(&self) -> bool {
        self.znodes.is_empty() && self.blobs.is_empty() && !self.staging
    }
}

/// Reads what `app` left: `ha inspect --json`, the HA storage directory and the staging
/// directory. The job result store keeps one result per job by design (Flink's
/// `JobResultStore`); any other or further entry is a leftover.
pub async fn leftovers(cluster: &MiniCluster, conf: &Path, app: &str) -> Leftovers {
    leftovers_of(cluster, conf, &super::user(), HA_DIR, app).await
}

/// [`leftovers`] of an application `user` submitted with HA storage `ha_dir`.
///
/// YARN reports an application FINISHED as soon as its AM unregisters (the RM's FINISHING
/// state reads as FINISHED), and the AM removes the HA data and staging directory after that
/// (Flink's order). So this reads again for up to [`AM_CLEANUP`] while anything is left, and
/// returns what it read last.
pub async fn leftovers_of(
    cluster: &MiniCluster,
    conf: &Path,
    user: &str,
    ha_dir: &str,
    app: &str,
) -> Leftovers {
    let deadline = Instant::now() + AM_CLEANUP;
    loop {
        let left = read_leftovers(cluster, conf, user, ha_dir, app).await;
        if left.is_empty() || Instant::now() >= deadline {
            return left;
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
}

async fn read_leftovers(
    cluster: &MiniCluster,
    conf: &Path,
    user: &str,
    ha_dir: &str,
    app: &str,
) -> Leftovers {
    let report = ha_inspect(cluster, conf, app);
    let znodes = report["nodes"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|n| n["path"].as_str().unwrap_or_default().to_string())
        .collect();
    let web = WebHdfs::new(cluster.webhdfs(), user);
    let mut blobs: Vec<String> = web
        .list(ha_dir)
        .await
        .unwrap_or_default()
        .into_iter()
        .map(|(n, _)| n)
        .filter(|n| n == app)
        .map(|n| format!("{ha_dir}/{n}"))
        .collect();
    let result_dir = format!("{ha_dir}/job-result-store/{app}");
    let results = web.list(&result_dir).await.unwrap_or_default();
    // An application runs one job: one result, whatever the job's name.
    blobs.extend(
        results
            .iter()
            .skip(1)
            .map(|(n, _)| format!("{result_dir}/{n}")),
    );
    if results.is_empty() {
        blobs.push(format!("(no job result in {result_dir})"));
    }
    let staging = web
        .list(&format!("/user/{user}/.yarnflow/{app}"))
        .await
        .is_ok();
    Leftovers {
        znodes,
        blobs,
        staging,
    }
}

/// `yarnflow ha inspect --cluster-id APP --json`: the znodes of `app`, each with the blob its
/// pointer names.
pub fn ha_inspect(cluster: &MiniCluster, conf: &Path, app: &str) -> serde_json::Value {
    let out = cluster
        .yarnflow(conf)
        .args(["ha", "inspect", "--cluster-id", app, "--json"])
        .output()
        .unwrap();
    serde_json::from_slice(&out.stdout).unwrap_or_else(|e| {
        panic!(
            "ha inspect --json: {e}: {}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        )
    })
}

/// Nothing under the cluster id in ZooKeeper, nothing in HA storage but the job result, no
/// staging directory.
pub async fn check_no_ha_data(cluster: &MiniCluster, conf: &Path, app: &str) {
    let left = leftovers(cluster, conf, app).await;
    assert!(left.is_empty(), "{app} left {left:?}");
}

/// How long an AM may take, after unregistering, to remove its HA data and staging directory.
pub const AM_CLEANUP: Duration = Duration::from_secs(20);
