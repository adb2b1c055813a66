//! Test fixture: one real mini Hadoop cluster (MiniDFSCluster + MiniYARNCluster + ZooKeeper)
//! per test binary, started through `yarn/minicluster/run` and always torn down.
//!
//! * Started lazily by the first test that calls [`MiniCluster::get`]; every test of the binary
//!   shares it. Starting it is blocking code behind a `OnceLock` (callers wait for the first),
//!   so the shared handle belongs to no test's tokio runtime.
//! * Torn down at process exit (`run down`, from an `atexit` hook) and, should the test process
//!   die without running it (SIGINT, SIGKILL), by the cluster itself: it is started with
//!   `--watch-pid <this process>` and stops when this process is gone, containers included.
//! * `YARNFLOW_MINICLUSTER_DIR=<dir of a running cluster>` reuses that cluster instead (handy
//!   while iterating on one test); the fixture then leaves it running.
//! * `YARNFLOW_KEEP_MINICLUSTER=1` keeps the stopped cluster's directory (logs, HDFS data).
#![allow(dead_code)] // each test binary uses a different part of the fixture

pub mod chaos;
pub mod commit;
pub mod proxy;
pub mod wordcount;
pub mod yarn_app;

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::OnceLock;
use std::time::Duration;

/// A running mini cluster and the values of its `cluster.env`.
pub struct MiniCluster {
    pub dir: PathBuf,
    env: HashMap<String, String>,
}

static CLUSTER: OnceLock<MiniCluster> = OnceLock::new();
/// Clusters this process started (torn down at exit).
static OWNED_DIRS: std::sync::Mutex<Vec<PathBuf>> = std::sync::Mutex::new(Vec::new());
static ATEXIT: std::sync::Once = std::sync::Once::new();

/// The repository root (where Cargo.toml is).
pub fn repo_root() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

/// `yarn/minicluster/run`.
pub fn run_script() -> PathBuf {
    repo_root().join("yarn/minicluster/run")
}

impl MiniCluster {
    /// The cluster of this test binary, started on first use (1 DataNode).
    pub fn get() -> &'static MiniCluster {
        Self::shared(1)
    }

    /// The cluster of this test binary with `datanodes` DataNodes (replication 2 from 2 on),
    /// started on first use. A binary asks for one size only.
    pub fn shared(datanodes: u32) -> &'static MiniCluster {
        let cluster = CLUSTER.get_or_init(|| match std::env::var_os("YARNFLOW_MINICLUSTER_DIR") {
            Some(dir) => Self::reuse(PathBuf::from(dir)),
            None => Self::start_owned("", datanodes, &[]),
        });
        assert_eq!(
            cluster.datanodes(),
            datanodes,
            "{} runs another number of DataNodes",
            cluster.dir.display()
        );
        cluster
    }

    fn reuse(dir: PathBuf) -> MiniCluster {
        let out = script(&["status", "--dir"], &dir, &[]);
        assert!(
            out.status.success(),
            "YARNFLOW_MINICLUSTER_DIR={} is not a running mini cluster:\n{}",
            dir.display(),
            String::from_utf8_lossy(&out.stdout)
        );
        Self::load(dir)
    }

    /// Starts another cluster of this test binary with `datanodes` DataNodes and extra Hadoop
    /// settings (`key=value`), owned and torn down exactly like the shared one.
    pub fn start_with(name: &str, datanodes: u32, overrides: &[&str]) -> MiniCluster {
        Self::start_owned(name, datanodes, overrides)
    }

    fn start_owned(name: &str, datanodes: u32, overrides: &[&str]) -> MiniCluster {
        let exe = std::env::current_exe().expect("current exe");
        let stem = exe
            .file_stem()
            .and_then(|s| s.to_str())
            .unwrap_or("test")
            .to_string();
        let parent = Path::new(env!("CARGO_TARGET_TMPDIR")).join("minicluster");
        let dir = parent.join(format!("{stem}{name}-{}", std::process::id()));
        ATEXIT.call_once(|| {
            remove_stale_dirs(&parent);
            // Registered before any `up`, so a failed start still cleans up.
            unsafe {
                libc::atexit(teardown_at_exit);
            }
        });
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).expect("create the cluster dir");
        OWNED_DIRS.lock().unwrap().push(dir.clone());
        let pid = std::process::id().to_string();
        let datanodes = datanodes.to_string();
        let mut tail = vec![
            "--watch-pid",
            pid.as_str(),
            "--datanodes",
            datanodes.as_str(),
        ];
        for o in overrides {
            tail.push("--conf");
            tail.push(o);
        }
        let out = script(&["up", "--dir"], &dir, &tail);
        assert!(
            out.status.success(),
            "yarn/minicluster/run up failed:\n{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        Self::load(dir)
    }

    fn load(dir: PathBuf) -> MiniCluster {
        let text = std::fs::read_to_string(dir.join("cluster.env")).expect("read cluster.env");
        MiniCluster {
            env: parse_env(&text),
            dir,
        }
    }

    /// A value from `cluster.env` (panics if absent: the fixture's contract).
    pub fn env(&self, key: &str) -> &str {
        self.env
            .get(key)
            .unwrap_or_else(|| panic!("cluster.env has no {key}"))
    }

    /// Every `cluster.env` value, to hand to child processes.
    pub fn env_vars(&self) -> &HashMap<String, String> {
        &self.env
    }

    pub fn rm_rest(&self) -> &str {
        self.env("YARN_RM_REST")
    }
    pub fn zk_quorum(&self) -> &str {
        self.env("ZK_QUORUM")
    }
    pub fn hdfs_uri(&self) -> &str {
        self.env("HDFS_URI")
    }
    pub fn webhdfs(&self) -> &str {
        self.env("WEBHDFS")
    }
    /// A configuration with ZooKeeper HA on this cluster: znodes under `root`, the cluster id
    /// `cluster_id`, HA blobs in `storage_path` on this cluster's HDFS.
    pub fn zk_ha_config(
        &self,
        root: &str,
        cluster_id: &str,
        storage_path: &str,
    ) -> yarnflow::config::Config {
        let mut config = yarnflow::config::Config::defaults();
        config.set("high-availability.type", "zookeeper");
        config.set("high-availability.zookeeper.quorum", self.zk_quorum());
        config.set("high-availability.zookeeper.path.root", root);
        config.set("high-availability.cluster-id", cluster_id);
        config.set(
            "high-availability.storageDir",
            format!("{}{storage_path}", self.hdfs_uri()),
        );
        config
    }

    pub fn datanodes(&self) -> u32 {
        self.env("MINICLUSTER_DATANODES").parse().unwrap()
    }

    /// The `yarnflow` binary set up for this cluster: `--conf conf`, its Hadoop conf, and the
    /// JVM and Hadoop client jars libhdfs needs (for this process and for what it submits).
    pub fn yarnflow(&self, conf: &Path) -> Command {
        self.command(Path::new(env!("CARGO_BIN_EXE_yarnflow")), conf)
    }

    /// [`MiniCluster::yarnflow`] for another binary built on yarnflow (a user's job, such as
    /// `wordcount`): it has every yarnflow subcommand.
    pub fn command(&self, exe: &Path, conf: &Path) -> Command {
        let mut c = command(exe, &["--conf"]);
        c.arg(conf)
            .env("HADOOP_CONF_DIR", self.env("HADOOP_CONF_DIR"))
            .env("JAVA_HOME", self.env("JAVA_HOME"))
            .env("CLASSPATH", self.env("YARNFLOW_HADOOP_CLASSPATH"))
            .env(
                "YARNFLOW_HADOOP_CLASSPATH",
                self.env("YARNFLOW_HADOOP_CLASSPATH"),
            );
        c
    }

    /// Runs the client command `yarnflow ARGS --hadoop-conf <this cluster's Hadoop conf>` to
    /// completion.
    pub fn client(&self, args: &[&str]) -> Output {
        yarnflow(args)
            .args(["--hadoop-conf", self.env("HADOOP_CONF_DIR")])
            .output()
            .expect("run yarnflow")
    }

    /// Runs `yarn/minicluster/run <sub> --dir <dir> <args>` against this cluster.
    pub fn run(&self, sub: &str, args: &[&str]) -> Output {
        script(&[sub, "--dir"], &self.dir, args)
    }
}

/// The `yarnflow` binary under test with `args`, as a user runs it: from the repository root,
/// stdin closed, no `YARNFLOW_CONF_DIR` from this process's environment.
pub fn yarnflow(args: &[&str]) -> Command {
    command(Path::new(env!("CARGO_BIN_EXE_yarnflow")), args)
}

/// The `wordcount` binary of `examples/wordcount`: next to `yarnflow` in the target dir, built by
/// the test command (`cargo test --workspace`) before any test runs, never by a test.
pub fn wordcount_exe() -> PathBuf {
    let exe = Path::new(env!("CARGO_BIN_EXE_yarnflow")).with_file_name("wordcount");
    assert!(
        exe.exists(),
        "{} is missing: run the tests with `cargo test --workspace` (it builds examples/wordcount)",
        exe.display()
    );
    exe
}

/// [`yarnflow`] for another binary built on yarnflow.
pub fn command(exe: &Path, args: &[&str]) -> Command {
    let mut c = Command::new(exe);
    c.args(args)
        .current_dir(repo_root())
        .env_remove("YARNFLOW_CONF_DIR")
        .stdin(std::process::Stdio::null());
    c
}

/// The cluster's HDFS through this process's client (`storage::open`). libhdfs reads its jars
/// from `YARNFLOW_HADOOP_CLASSPATH` and libjvm from `JAVA_HOME`, both set here for this process.
pub async fn hdfs_store(cluster: &MiniCluster) -> std::sync::Arc<dyn yarnflow::storage::BlobStore> {
    unsafe {
        std::env::set_var(
            "YARNFLOW_HADOOP_CLASSPATH",
            cluster.env("YARNFLOW_HADOOP_CLASSPATH"),
        );
        std::env::set_var("JAVA_HOME", cluster.env("JAVA_HOME"));
    };
    yarnflow::storage::open(cluster.hdfs_uri())
        .await
        .unwrap()
        .store
}

/// The Hadoop user tests act as (`$USER`, else root).
pub fn user() -> String {
    std::env::var("USER").unwrap_or_else(|_| "root".into())
}

/// A ZooKeeper session on `quorum` scoped to `namespace`, expiring after `session_timeout`.
pub async fn session(
    quorum: &str,
    namespace: &str,
    session_timeout: Duration,
) -> yarnflow::ha::zookeeper::ZkCluster {
    yarnflow::ha::zookeeper::ZkCluster::connect(
        quorum,
        namespace,
        session_timeout,
        Duration::from_secs(2),
    )
    .await
    .unwrap()
}

/// A fresh, empty directory `yarnflow-<name>-<pid>` under the temp dir.
pub fn workdir(name: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("yarnflow-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).unwrap();
    d
}

/// What the files sink left in an output directory.
pub struct Committed {
    /// Every line of the committed `part-` files, file by file in name order.
    pub lines: Vec<String>,
    /// The names of the other files (pending files of checkpoints not completed).
    pub uncommitted: Vec<String>,
}

impl Committed {
    /// Each committed line with how often it was committed.
    pub fn counts(&self) -> HashMap<String, u32> {
        let mut seen = HashMap::new();
        for l in &self.lines {
            *seen.entry(l.clone()).or_default() += 1;
        }
        seen
    }
}

/// The files sink's output in `dir` (a local directory).
pub fn committed(dir: &Path) -> Committed {
    let mut names: Vec<String> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().to_string())
        .collect();
    names.sort();
    let (parts, uncommitted): (Vec<String>, Vec<String>) =
        names.into_iter().partition(|n| n.starts_with("part-"));
    let mut lines = Vec::new();
    for name in parts {
        let text = std::fs::read_to_string(dir.join(&name)).unwrap();
        lines.extend(text.lines().map(String::from));
    }
    Committed { lines, uncommitted }
}

fn script(head: &[&str], dir: &Path, tail: &[&str]) -> Output {
    Command::new(run_script())
        .args(head)
        .arg(dir)
        .args(tail)
        .output()
        .expect("run yarn/minicluster/run")
}

/// The JobManager base URL of a yarnflow application's current attempt (the AM registers it as
/// its RPC address), once it has registered.
pub async fn jobmanager_of(rest: &yarnflow::hadoop::rest::RmRest, app: &str) -> Option<String> {
    rest.application(app).await.ok()?.jobmanager_url()
}

/// Parses `export KEY='value'` lines.
pub fn parse_env(text: &str) -> HashMap<String, String> {
    text.lines()
        .filter_map(|l| l.strip_prefix("export "))
        .filter_map(|l| l.split_once('='))
        .map(|(k, v)| {
            let v = v
                .strip_prefix('\'')
                .and_then(|v| v.strip_suffix('\''))
                .unwrap_or(v);
            (k.to_string(), v.replace("'\\''", "'"))
        })
        .collect()
}

/// Cluster dirs left by test processes that were killed (their atexit hook never ran; the
/// cluster itself stopped when its owner died): `<name>-<pid>` with `<pid>` no longer alive.
fn remove_stale_dirs(parent: &Path) {
    let Ok(entries) = std::fs::read_dir(parent) else {
        return;
    };
    for entry in entries.flatten() {
        let name = entry.file_name().to_string_lossy().to_string();
        let Some(pid) = name.rsplit('-').next().and_then(|p| p.parse::<i32>().ok()) else {
            continue;
        };
        let cluster_pid = std::fs::read_to_string(entry.path().join("pid"))
            .ok()
            .and_then(|p| p.trim().parse::<i32>().ok());
        if !pid_alive(pid) && !cluster_pid.is_some_and(pid_alive) {
            let _ = std::fs::remove_dir_all(entry.path());
        }
    }
}

fn pid_alive(pid: i32) -> bool {
    // kill(pid, 0) fails with ESRCH only when no such process exists.
    let rc = unsafe { libc::kill(pid, 0) };
    rc == 0 || std::io::Error::last_os_error().raw_os_error() != Some(libc::ESRCH)
}

extern "C" fn teardown_at_exit() {
    let dirs = OWNED_DIRS.lock().map(|d| d.clone()).unwrap_or_default();
    for dir in dirs {
        teardown(&dir);
    }
}

/// `down`, then the directory goes (unless `YARNFLOW_KEEP_MINICLUSTER` is set).
fn teardown(dir: &Path) {
    let _ = script(&["down", "--dir"], dir, &[]);
    if std::env::var_os("YARNFLOW_KEEP_MINICLUSTER").is_none() {
        let _ = std::fs::remove_dir_all(dir);
    }
}

/// A cluster of [`MiniCluster::start_with`] goes when its test is done with it, so its JVM
/// does not slow the binary's later tests. (The shared cluster lives in a static, never
/// dropped: the exit hook takes it down.)
impl Drop for MiniCluster {
    fn drop(&mut self) {
        let mut owned = OWNED_DIRS.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(i) = owned.iter().position(|d| *d == self.dir) {
            owned.remove(i);
            drop(owned);
            teardown(&self.dir);
        }
    }
}

/// Held by each test of a binary whose tests inject faults into the shared cluster (kill AMs or
/// containers, restart ZooKeeper): they run one at a time, and none disturbs another.
pub static ONE_AT_A_TIME: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

/// A name unique to this process and call, for znodes, HDFS paths and job ids.
pub fn unique(prefix: &str) -> String {
    use std::sync::atomic::{AtomicU32, Ordering};
    static N: AtomicU32 = AtomicU32::new(0);
    format!(
        "{prefix}-{}-{}",
        std::process::id(),
        N.fetch_add(1, Ordering::Relaxed)
    )
}
