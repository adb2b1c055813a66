//! `yarnflow local JOB.yaml`: run a job on this machine, no Hadoop, no JVM (see
//! [`crate::local`]). Embedded HA and local storage under a work directory it prints.

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use anyhow::Context;

use super::Cli;
use super::progress::{self, Mode, Progress};
use crate::job::spec::{JobSpec, SinkSpec, Step};
use crate::jobmanager::client::JobManagerClient;
use crate::jobmanager::job_master::JobSnapshot;
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
    /// Progress as JSON lines on stdout (other lines go to stderr).
    #[arg(long)]
    pub json: bool,
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
    let mut progress = Progress::new(Mode::detect(args.json));
    progress.line(&format!("work directory: {}", workdir.display()));
    progress.line(&format!("output: {}", output.uri()));
    let (mut cluster, mut events) =
        LocalCluster::start(&config, &workdir, args.taskmanagers == 0).await?;
    // Printed before any TaskManager starts, so the address precedes their lines.
    progress.line(&format!("REST API: {}", cluster.session.address));
    cluster.start_taskmanagers(
        args.taskmanagers,
        spec.parallelism.div_ceil(args.taskmanagers.max(1)),
    )?;
    progress.status(&format!("running {}", spec.name));
    let job_id = spec.job_id();
    let rest = JobManagerClient::new(&cluster.session.address, Duration::from_secs(2));
    let mut poll = tokio::time::interval(progress::POLL_INTERVAL);
    let outcome = {
        let job = cluster.run_job(spec);
        tokio::pin!(job);
        loop {
            tokio::select! {
                outcome = &mut job => break outcome,
                Some(event) = events.recv() => print_event(&progress, &event),
                _ = poll.tick() => {
                    if let Ok(view) = rest.job(&job_id).await {
                        let taskmanagers = rest.overview().await.ok().map(|o| o.taskmanagers);
                        progress.update(&view, taskmanagers);
                    }
                }
            }
        }
    };
    // The last view (if the JobManager still serves it), for --json's final line.
    let last = rest.job(&job_id).await.unwrap_or_default();
    cluster.close().await;
    let outcome = match outcome {
        Ok(o) => o,
        Err(e) => {
            progress.clear();
            return Err(e.into());
        }
    };
    if let Some(cause) = outcome.recovery_failure() {
        progress.clear();
        // One line, and the work directory's HA data is untouched for `yarnflow ha inspect`.
        anyhow::bail!("{cause}");
    }
    let last = JobSnapshot {
        job_id: outcome.job_id.clone(),
        status: outcome.status,
        restarts: outcome.restarts,
        completed_checkpoints: outcome.completed_checkpoints,
        ..last
    };
    progress.finish(
        Some(&last),
        &format!(
            "job {} {}: {} checkpoints, {} restarts",
            outcome.job_id, outcome.status, outcome.completed_checkpoints, outcome.restarts
        ),
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

fn print_event(progress: &Progress, event: &LocalEvent) {
    match event {
        LocalEvent::TaskManagerStarted { index, pid } => {
            progress.line(&format!("taskmanager {index} started (pid {pid})"))
        }
        LocalEvent::TaskManagerExited { index, status } => progress.line(&format!(
            "taskmanager {index} exited ({status}); starting a replacement"
        )),
        LocalEvent::TaskManagerLost { index, pid } => progress.line(&format!(
            "taskmanager {index} (pid {pid}) lost by the JobManager; killed, starting a replacement"
        )),
        LocalEvent::TaskManagerFailed { index, error } => progress.warn(&format!(
            "yarnflow: cannot start TaskManager {index}: {error}"
        )),
    }
}
