//! `yarnflow local JOB.yaml`: run a job on this machine, no Hadoop, no JVM (see
//! [`crate::local`]). Embedded HA and local storage under a work directory it prints.

use std::io::IsTerminal;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use anyhow::Context;

use super::Cli;
use crate::job::spec::{JobSpec, SinkSpec, Step};
use crate::jobmanager::status::JobStatus;
use crate::local::{LocalCluster, LocalEvent};

#[derive(Debug, clap::Args)]
pub struct LocalArgs {
    /// The job specification (YAML).
    pub job: PathBuf,
    /// Work directory for HA data and default output (default: a new one under the temp dir).
    #[arg(long)]
    pub workdir: Option<PathBuf>,
    /// TaskManager processes to start (0: run the subtasks inside this process).
    #[arg(long, default_value_t = 2)]
    pub taskmanagers: u32,
}

pub async fn run(cli: &Cli, args: &LocalArgs) -> anyhow::Result<ExitCode> {
    let config = cli.load_config()?;
    let spec = JobSpec::load(&args.job)?;
    let workdir = match &args.workdir {
        Some(d) => d.clone(),
        None => std::env::temp_dir().join(format!(
            "yarnflow-local-{}-{}",
            spec.job_id(),
            std::process::id()
        )),
    };
    std::fs::create_dir_all(&workdir)
        .with_context(|| format!("create the work directory {}", workdir.display()))?;
    let workdir = workdir.canonicalize()?;
    let spec = LocalCluster::with_default_output(spec, &workdir);
    let output = match spec.pipeline.last() {
        Some(Step::Sink(SinkSpec::Files { path: Some(p) })) => crate::storage::open(p)
            .await
            .context("open the sink path")?,
        _ => anyhow::bail!("{}: the job has no files sink", args.job.display()),
    };
    println!("work directory: {}", workdir.display());
    println!("output: {}", output.uri());
    let (mut cluster, mut events) =
        LocalCluster::start(&config, &workdir, args.taskmanagers == 0).await?;
    // Printed before any TaskManager starts, so the address precedes their lines.
    println!("REST API: {}", cluster.session.address);
    cluster.start_taskmanagers(
        args.taskmanagers,
        spec.parallelism.div_ceil(args.taskmanagers.max(1)),
    )?;
    let progress = std::io::stderr().is_terminal().then(|| {
        let bar = indicatif::ProgressBar::new_spinner();
        bar.set_message(format!("running {}", spec.name));
        bar.enable_steady_tick(Duration::from_millis(200));
        bar
    });
    let outcome = {
        let job = cluster.run_job(spec);
        tokio::pin!(job);
        loop {
            tokio::select! {
                outcome = &mut job => break outcome?,
                Some(event) = events.recv() => print_event(&event),
            }
        }
    };
    cluster.close().await;
    if let Some(bar) = progress {
        bar.finish_and_clear();
    }
    if let Some(cause) = outcome.recovery_failure() {
        // One line, and the work directory's HA data is untouched for `yarnflow ha inspect`.
        anyhow::bail!("{cause}");
    }
    println!(
        "job {} {}: {} checkpoints, {} restarts",
        outcome.job_id, outcome.status, outcome.completed_checkpoints, outcome.restarts
    );
    match outcome.status {
        JobStatus::Finished => Ok(ExitCode::SUCCESS),
        status => {
            anyhow::bail!(
                "job {} {status}: {}",
                outcome.job_id,
                outcome
                    .failure
                    .unwrap_or_else(|| "no cause recorded".into())
            )
        }
    }
}

fn print_event(event: &LocalEvent) {
    match event {
        LocalEvent::TaskManagerStarted { index, pid } => {
            println!("taskmanager {index} started (pid {pid})")
        }
        LocalEvent::TaskManagerExited { index, status } => {
            println!("taskmanager {index} exited ({status}); starting a replacement")
        }
        LocalEvent::TaskManagerLost { index, pid } => {
            println!(
                "taskmanager {index} (pid {pid}) lost by the JobManager; killed, starting a replacement"
            )
        }
        LocalEvent::TaskManagerFailed { index, error } => {
            eprintln!("yarnflow: cannot start TaskManager {index}: {error}")
        }
    }
}
