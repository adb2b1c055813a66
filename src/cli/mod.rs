//! The command line: one clap subcommand per user action, plus hidden roles launched by YARN.
//! Each subcommand lives in its own file and returns `anyhow::Result`; errors print as one line.

mod appmaster;
mod cluster;
mod config;
mod doctor;
mod fail_attempt;
mod ha;
mod local;
mod logs;
mod progress;
mod standalone;
mod status;
mod submit;
mod taskmanager;

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{CommandFactory, FromArgMatches, Parser, Subcommand};

/// yarnflow: highly available stream processing on YARN.
#[derive(Debug, Parser)]
#[command(name = "yarnflow", version, about, propagate_version = true)]
pub struct Cli {
    /// Configuration directory holding yarnflow.yaml (default: $YARNFLOW_CONF_DIR).
    #[arg(long, global = true, value_name = "DIR")]
    pub conf: Option<PathBuf>,

    /// Override one configuration key, e.g. -D high-availability.type=zookeeper.
    #[arg(short = 'D', global = true, value_name = "KEY=VALUE")]
    pub define: Vec<String>,

    /// More log lines on stderr: -v shows `local`'s and `submit`'s info lines (per-checkpoint
    /// ones included; they always go to the JSON log), -vv debug lines.
    #[arg(short, long, global = true, action = clap::ArgAction::Count)]
    pub verbose: u8,

    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Print the effective configuration (defaults, the config file and -D overrides merged).
    Config(config::ConfigArgs),
    /// Inspect or clean the high-availability data of a cluster (ZooKeeper + HA storage).
    Ha(ha::HaArgs),
    /// Preflight check of a YARN cluster: RM REST and IPC, HDFS, ZooKeeper, and a test
    /// application whose ApplicationMaster is this binary.
    Doctor(doctor::DoctorArgs),
    /// Submit a job to YARN: stage it in HDFS and start its ApplicationMaster.
    Submit(submit::SubmitArgs),
    /// Cancel the jobs of a yarnflow application cleanly (HA data removed, final status KILLED).
    Cancel(submit::CancelArgs),
    /// Run a job on this machine: embedded HA, local storage, no Hadoop needed.
    Local(local::LocalArgs),
    /// An application at a glance: attempts, containers, the leading JobManager, its jobs and
    /// TaskManagers.
    Status(status::StatusArgs),
    /// Fail the application's current attempt (YARN's failApplicationAttempt): the
    /// ResourceManager starts the next one, as after an ApplicationMaster crash.
    FailAttempt(fail_attempt::FailAttemptArgs),
    /// One merged timeline of an application's logs across attempts and containers.
    Logs(logs::LogsArgs),
    /// A standalone JobManager of an HA cluster: contends for leadership in ZooKeeper, leads or
    /// stands by.
    Jobmanager(standalone::JobManagerArgs),
    /// Submit a job to the leading standalone JobManager (found through ZooKeeper).
    Run(standalone::RunArgs),
    /// Start or stop this host's part of a standalone HA cluster: a JobManager per
    /// `<conf>/masters` entry, a TaskManager per `<conf>/workers` entry (Flink's
    /// start-cluster.sh / stop-cluster.sh).
    Cluster(cluster::ClusterArgs),
    /// A TaskManager process: registers its slots with a JobManager and runs subtasks.
    Taskmanager(taskmanager::TaskManagerArgs),
    /// The ApplicationMaster (launched by YARN, not by users).
    #[command(hide = true)]
    Appmaster(appmaster::AppmasterArgs),
}

impl Command {
    /// A command that shows its own live progress keeps stderr to warnings unless `-v`.
    fn shows_progress(&self) -> bool {
        matches!(self, Command::Local(_) | Command::Submit(_))
    }

    /// The component name stamped on every log line of this process.
    pub fn component(&self) -> &'static str {
        match self {
            Command::Config(_)
            | Command::Ha(_)
            | Command::Doctor(_)
            | Command::Logs(_)
            | Command::Submit(_)
            | Command::Cancel(_)
            | Command::Status(_)
            | Command::FailAttempt(_)
            | Command::Run(_)
            | Command::Cluster(_) => "client",
            Command::Jobmanager(_) => "jobmanager",
            Command::Appmaster(_) => "appmaster",
            Command::Local(_) => "jobmanager",
            Command::Taskmanager(_) => "taskmanager",
        }
    }
}

impl Cli {
    /// Loads the configuration named by `--conf` / `$YARNFLOW_CONF_DIR` with `-D` overrides.
    pub fn load_config(&self) -> anyhow::Result<crate::config::Config> {
        let mut config = crate::config::Config::load(self.conf.as_deref())?;
        for pair in &self.define {
            config.set_pair(pair)?;
        }
        for key in config.unknown_keys() {
            tracing::warn!(key, "unknown configuration key (typo?)");
        }
        // Every process (client, AM, TaskManager) loads its configuration here, before it
        // opens any store.
        crate::storage::HdfsClient::from_config(&config)?.install();
        Ok(config)
    }
}

/// Parses argv, runs the subcommand and turns its outcome into an exit code.
pub fn main() -> ExitCode {
    // The binary's own name in usage and errors (`wordcount submit ...`): a job binary is
    // this command line with its operators.
    let program = crate::api::Operators::installed().program();
    let cli = match Cli::command()
        .name(program)
        .bin_name(program)
        .try_get_matches()
        .and_then(|m| Cli::from_arg_matches(&m))
    {
        Ok(cli) => cli,
        Err(e) => e.exit(),
    };
    let identity = crate::logging::ProcessIdentity::from_env(cli.command.component());
    let stderr = match (cli.verbose, cli.command.shows_progress()) {
        (0, true) => crate::logging::StderrLevel::Quiet,
        (0 | 1, _) => crate::logging::StderrLevel::Info,
        _ => crate::logging::StderrLevel::Debug,
    };
    crate::logging::init(
        identity,
        crate::logging::log_dir_from_env().as_deref(),
        stderr,
    );
    let runtime = match tokio::runtime::Runtime::new() {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("{program}: cannot start the async runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(run(cli)) {
        Ok(code) => code,
        Err(e) => {
            // One line: the error and its causes, outermost first.
            eprintln!("{program}: {e:#}");
            ExitCode::FAILURE
        }
    }
}

async fn run(cli: Cli) -> anyhow::Result<ExitCode> {
    match &cli.command {
        Command::Config(args) => config::run(&cli, args),
        Command::Ha(args) => ha::run(&cli, args).await,
        Command::Doctor(args) => doctor::run(&cli, args).await,
        Command::Logs(args) => logs::run(args).await,
        Command::Status(args) => status::run(&cli, args).await,
        Command::FailAttempt(args) => fail_attempt::run(args).await,
        Command::Local(args) => local::run(&cli, args).await,
        Command::Jobmanager(args) => standalone::jobmanager(&cli, args).await,
        Command::Run(args) => standalone::run(&cli, args).await,
        Command::Cluster(args) => cluster::run(&cli, args).await,
        Command::Submit(args) => submit::submit(&cli, args).await,
        Command::Cancel(args) => submit::cancel(args).await,
        Command::Taskmanager(args) => taskmanager::run(&cli, args).await,
        Command::Appmaster(args) => appmaster::run(&cli, args).await,
    }
}
