//! `yarnflow cluster start|stop --conf DIR`: Flink's `start-cluster.sh` and `stop-cluster.sh`
//! for the standalone HA cluster. `start` runs one `yarnflow jobmanager` per `masters` entry of
//! this host (its port as `rest.port`) and one `yarnflow taskmanager` per `workers` entry, as
//! detached daemons, and prints each; `stop` stops every daemon this host's pid files record.
//! Files, pid files and logs: [`crate::cluster`].

use std::ffi::OsString;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use anyhow::Context;

use super::Cli;
use crate::cluster::{ClusterFiles, DaemonKind, Daemons, Stopped, ThisHost};
use crate::config::Config;

/// How long `stop` waits for the daemons to exit after SIGTERM before it SIGKILLs them.
const STOP_GRACE: Duration = Duration::from_secs(10);

#[derive(Debug, clap::Args)]
pub struct ClusterArgs {
    #[command(subcommand)]
    pub action: ClusterAction,
}

#[derive(Debug, clap::Subcommand)]
pub enum ClusterAction {
    /// Start this host's JobManagers (`<conf>/masters`, `host[:webui-port]` per line) and
    /// TaskManagers (`<conf>/workers`, `host` per line) as daemons.
    Start(StartArgs),
    /// Stop the JobManagers and TaskManagers recorded in this host's pid files (`env.pid.dir`):
    /// SIGTERM, then SIGKILL what still runs after 10 s.
    Stop,
}

#[derive(Debug, clap::Args)]
pub struct StartArgs {
    /// Where the daemons' logs go (default: `env.log.dir`, else `<conf>/../log`).
    #[arg(long, value_name = "DIR")]
    pub log_dir: Option<PathBuf>,
}

pub async fn run(cli: &Cli, args: &ClusterArgs) -> anyhow::Result<ExitCode> {
    match &args.action {
        ClusterAction::Start(start_args) => start(cli, start_args),
        ClusterAction::Stop => stop(cli).await,
    }
}

/// This host's daemons of this user, recorded in `env.pid.dir`.
fn daemons(config: &Config, this: &ThisHost) -> anyhow::Result<Daemons> {
    Ok(Daemons {
        pid_dir: config.value(Config::text, "env.pid.dir")?.into(),
        ident: crate::cluster::ident(),
        host: this.name.clone(),
    })
}

fn start(cli: &Cli, args: &StartArgs) -> anyhow::Result<ExitCode> {
    let conf = cli
        .conf
        .clone()
        .or_else(|| std::env::var_os(crate::config::CONF_DIR_ENV).map(PathBuf::from))
        .context("yarnflow cluster start needs --conf DIR (or $YARNFLOW_CONF_DIR): the directory holding yarnflow.yaml, masters and workers")?;
    // The daemons may run from another directory: they get it absolute.
    let conf = std::path::absolute(&conf).with_context(|| format!("{}", conf.display()))?;
    let config = cli.load_config()?;
    // TaskManagers find the leader, and JobManagers each other, through ZooKeeper.
    super::standalone::zookeeper_config(&config)?;
    let files = ClusterFiles::read(&conf)?;
    let this = ThisHost::get();
    let daemons = daemons(&config, &this)?;
    let log_dir = match (&args.log_dir, config.get("env.log.dir")) {
        (Some(dir), _) => dir.clone(),
        (None, Some(dir)) => dir.into(),
        (None, None) => conf.parent().unwrap_or(&conf).join("log"),
    };
    let exe = std::env::current_exe().context("cannot find this executable")?;
    // What every daemon is told: this configuration and the same -D overrides.
    let mut common: Vec<OsString> = vec!["--conf".into(), conf.clone().into()];
    for pair in &cli.define {
        common.extend(["-D".into(), pair.into()]);
    }
    let configured_port = config.value(Config::u64, "rest.port")?;
    println!("Starting HA cluster with {} masters.", files.masters.len());
    for master in &files.masters {
        if !skipped(&this, &master.host, DaemonKind::JobManager) {
            let mut args = common.clone();
            if let Some(port) = master.rest_port {
                args.extend(["-D".into(), format!("rest.port={port}").into()]);
            }
            args.extend(["--host".into(), master.host.clone().into()]);
            let started = daemons.start(DaemonKind::JobManager, &exe, &args, &log_dir)?;
            let port = master.rest_port.map_or(configured_port, u64::from);
            println!(
                "Starting {} daemon on host {} ({}, pid {}, log {}).",
                DaemonKind::JobManager.name(),
                this.name,
                if port == 0 {
                    "any free REST port".into()
                } else {
                    format!("REST port {port}")
                },
                started.pid,
                started.log.display()
            );
        }
    }
    for worker in &files.workers {
        if !skipped(&this, worker, DaemonKind::TaskManager) {
            let started = daemons.start(DaemonKind::TaskManager, &exe, &common, &log_dir)?;
            println!(
                "Starting {} daemon on host {} (pid {}, log {}).",
                DaemonKind::TaskManager.name(),
                this.name,
                started.pid,
                started.log.display()
            );
        }
    }
    Ok(ExitCode::SUCCESS)
}

/// Whether `host` is another machine (said in one line): Flink starts it over ssh, we do not.
fn skipped(this: &ThisHost, host: &str, kind: DaemonKind) -> bool {
    if this.is(host) {
        return false;
    }
    println!(
        "Skipping {} daemon on host {host}: not this host ({}); run `yarnflow cluster start` there.",
        kind.name(),
        this.name
    );
    true
}

/// JobManagers first: a JobManager stopping while its TaskManagers still run suspends its jobs
/// (recovered at the next start); TaskManagers gone first could fail them for good.
async fn stop(cli: &Cli) -> anyhow::Result<ExitCode> {
    let config = cli.load_config()?;
    let this = ThisHost::get();
    let daemons = daemons(&config, &this)?;
    let mut code = ExitCode::SUCCESS;
    for kind in [DaemonKind::JobManager, DaemonKind::TaskManager] {
        let stopped = daemons.stop(kind, STOP_GRACE).await?;
        if stopped.is_empty() {
            println!("No {} daemon to stop on host {}.", kind.name(), this.name);
        }
        for (pid, how) in stopped {
            let (name, host) = (kind.name(), &this.name);
            match how {
                Stopped::Terminated => {
                    println!("Stopped {name} daemon (pid: {pid}) on host {host}.")
                }
                Stopped::Killed => println!(
                    "Killed {name} daemon (pid: {pid}) on host {host}: still running {STOP_GRACE:?} after SIGTERM."
                ),
                Stopped::NotRunning => {
                    println!("No {name} daemon (pid: {pid}) is running anymore on host {host}.")
                }
                Stopped::StillRunning => {
                    println!(
                        "The {name} daemon (pid: {pid}) on host {host} still runs after SIGKILL; its pid stays in {}.",
                        daemons.pid_file(kind).display()
                    );
                    code = ExitCode::FAILURE;
                }
            }
        }
    }
    Ok(code)
}
