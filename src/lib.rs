//! yarnflow: a YARN ApplicationMaster hosting a highly available stream-processing JobManager.
//!
//! # Layout
//!
//! Three kinds of process run the same binary:
//!
//! * the **client** (`yarnflow submit`, `status`, `logs`, `ha inspect`, `local`) stages artifacts in
//!   HDFS and talks to the ResourceManager's REST API;
//! * the **ApplicationMaster** (`yarnflow appmaster`, launched by YARN) registers with the
//!   ResourceManager over Hadoop IPC, wins leadership in ZooKeeper and runs the JobManager;
//! * **TaskManagers** (`yarnflow taskmanager`, in YARN containers or as local processes) run the
//!   subtasks the JobManager deploys.
//!
//! A job's own operators: a binary that depends on this crate registers them and calls
//! [`main`] (see [`api`]); the stock `yarnflow` binary is `main(Operators::new())`.
//!
//! Modules, one concept each:
//!
//! * [`api`]: the operator API: `ProcessFunction`, keyed state handles, the `Operators`
//!   registry;
//! * [`appmaster`]: the ApplicationMaster: TaskManager containers, the allocate loop;
//! * [`cli`]: clap subcommands, the thin layer between argv and the library;
//! * [`cluster`]: the standalone cluster's `masters` and `workers` files and this host's daemons
//!   (`yarnflow cluster start|stop`, Flink's `start-cluster.sh`);
//! * [`faults`]: test-only fault points (cargo feature `fault-points`), armed by `YARNFLOW_FAULTS`;
//! * [`config`]: Flink-style flat configuration keys with Flink's defaults, from `conf/yarnflow.yaml`;
//! * [`job`]: job specs, operators and the exactly-once file sink;
//! * [`jobmanager`]: the leader session, dispatcher, job masters, checkpoint tracking, restart
//!   strategies, slot pool, REST API, and the standalone HA JobManager;
//! * [`local`]: `yarnflow local`: a leader session and TaskManager child processes on this
//!   machine;
//! * [`logging`]: stderr + JSON-lines logs stamped with application, attempt and container;
//! * [`logs`]: one merged timeline of every attempt's and container's logs;
//! * [`network`]: the TaskManager ↔ TaskManager data plane: result partitions, input gates,
//!   credit-based flow control over one TCP connection per TaskManager pair;
//! * [`state`]: keyed state: the heap state backend, `ValueState`/`MapState`, snapshot files;
//! * [`taskmanager`]: subtasks (source → chain → sink) driven by barriers, the TaskManager process;
//! * [`storage`]: blob storage (HDFS, local files) behind one trait;
//! * [`hadoop`]: Hadoop IPC + SASL, credentials files, YARN AM/NM protocols, RM REST, WebHDFS;
//! * [`ha`]: leader election, discovery and the fenced job-graph/checkpoint/result stores.

pub mod api;
pub mod appmaster;
pub mod cli;
pub mod cluster;
pub mod config;
pub mod control;
pub mod faults;
pub mod ha;
pub mod hadoop;
pub mod job;
pub mod jobmanager;
pub mod local;
pub mod logging;
pub mod logs;
pub mod network;
pub mod state;
pub mod storage;
pub mod taskmanager;

/// Runs the command line (every subcommand, the ApplicationMaster and TaskManager roles
/// included) with `operators` as this binary's registry; a job binary's whole `main`:
///
/// ```no_run
/// fn main() -> std::process::ExitCode {
///     yarnflow::main(yarnflow::api::Operators::new())
/// }
/// ```
///
/// Error messages call the binary by its file name (or `Operators::named`); a staged binary
/// in YARN keeps the name it was submitted under (`YARNFLOW_PROGRAM`).
pub fn main(operators: api::Operators) -> std::process::ExitCode {
    let operators = if operators.is_named() {
        operators
    } else {
        let program = std::env::var(appmaster::launch::PROGRAM_ENV)
            .ok()
            .or_else(|| {
                let argv0 = std::env::args_os().next()?;
                let stem = std::path::Path::new(&argv0).file_stem()?;
                Some(stem.to_string_lossy().into_owned())
            })
            .unwrap_or_else(|| "yarnflow".into());
        operators.named(&program)
    };
    // The first installation wins; a second `main` in one process keeps the first registry.
    let _ = operators.install();
    cli::main()
}

/// Wall-clock milliseconds since the Unix epoch: the timestamps job views, job results and
/// heartbeats carry (0 on a clock before 1970).
pub fn now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}
