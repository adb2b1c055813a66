//! `yarnflow local JOB.yaml`: run a job on this machine, no Hadoop, no JVM. Embedded HA and
//! local storage under a work directory it prints.

use std::io::IsTerminal;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;

use super::Cli;
use crate::ha::HaServices;
use crate::job::spec::{JobSpec, SinkSpec, Step};
use crate::jobmanager::job_master::{self, JobMasterConfig};
use crate::jobmanager::rest::RestState;
use crate::jobmanager::status::JobStatus;
use crate::jobmanager::taskmanagers::TaskManagerPool;
use crate::storage::Location;
use crate::storage::local::LocalStore;
use tokio_util::sync::CancellationToken;

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

/// Starts the gRPC endpoint and N TaskManager processes, replacing any that exit (the local
/// stand-in for YARN's container replacement). Children die with this process.
async fn start_taskmanagers(
    n: u32,
    slots: u32,
    pool: &TaskManagerPool,
    shutdown: CancellationToken,
) -> anyhow::Result<()> {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let address = format!("http://{}", listener.local_addr()?);
    let service = pool.service();
    let stop = shutdown.clone();
    tokio::spawn(async move {
        let _ = tonic::transport::Server::builder()
            .add_service(service)
            .serve_with_incoming_shutdown(
                tokio_stream::wrappers::TcpListenerStream::new(listener),
                stop.cancelled_owned(),
            )
            .await;
    });
    let exe = std::env::current_exe()?;
    for i in 0..n {
        let exe = exe.clone();
        let address = address.clone();
        let shutdown = shutdown.clone();
        tokio::spawn(async move {
            let mut generation = 0;
            while !shutdown.is_cancelled() {
                generation += 1;
                let child = tokio::process::Command::new(&exe)
                    .args(["taskmanager", "--jobmanager", &address, "--slots"])
                    .arg(slots.to_string())
                    .arg("--id")
                    .arg(format!("taskmanager-{i}-{generation}"))
                    .kill_on_drop(true)
                    .stdin(std::process::Stdio::null())
                    .spawn();
                let mut child = match child {
                    Ok(c) => c,
                    Err(e) => {
                        eprintln!("yarnflow: cannot start a TaskManager: {e}");
                        return;
                    }
                };
                println!(
                    "taskmanager {i} started (pid {})",
                    child.id().unwrap_or_default()
                );
                tokio::select! {
                    _ = shutdown.cancelled() => {
                        let _ = child.kill().await;
                        return;
                    }
                    status = child.wait() => {
                        if !shutdown.is_cancelled() {
                            println!("taskmanager {i} exited ({}); starting a replacement", status.map(|s| s.to_string()).unwrap_or_default());
                        }
                    }
                }
            }
        });
    }
    Ok(())
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
    let output = match spec.pipeline.last() {
        Some(Step::Sink(SinkSpec::Files { path: Some(p) })) => crate::storage::open(p)
            .await
            .context("open the sink path")?,
        _ => Location {
            store: Arc::new(LocalStore),
            path: workdir.join("output").display().to_string(),
        },
    };
    println!("work directory: {}", workdir.display());
    println!("output: {}", output.uri());
    let cfg = JobMasterConfig::from_config(
        &config,
        spec.clone(),
        output.clone(),
        Arc::new(job_master::InProcess),
        CancellationToken::new(),
    )?;
    let num_retained = config
        .u64("execution.checkpointing.num-retained")?
        .unwrap_or(1)
        .max(1) as usize;
    let ha = HaServices::embedded(
        Arc::new(LocalStore),
        &workdir.join("ha").display().to_string(),
        num_retained,
    );
    // Bound (and printed) before any TaskManager starts, so the address precedes their lines.
    let port = config.u64("rest.port")?.unwrap_or(0);
    let listener = tokio::net::TcpListener::bind(("127.0.0.1", port as u16))
        .await
        .context("bind the REST port (rest.port)")?;
    println!("REST API: http://{}", listener.local_addr()?);
    let shutdown = CancellationToken::new();
    let _stop_children = shutdown.clone().drop_guard();
    let mut cfg = cfg;
    let mut pool_for_rest = None;
    if args.taskmanagers > 0 {
        let leadership = ha.election.acquire().await?;
        let pool = TaskManagerPool::new(
            leadership.epoch,
            &leadership.session_id.to_string(),
            Duration::from_secs(60),
        );
        let slots = spec.parallelism.div_ceil(args.taskmanagers);
        start_taskmanagers(args.taskmanagers, slots, &pool, shutdown.clone()).await?;
        pool_for_rest = Some(pool.clone());
        cfg.runtime = Arc::new(pool);
    }
    let pool = pool_for_rest.clone();
    let (handle, done) = job_master::start(cfg, ha);
    let rest = RestState {
        jobs: Default::default(),
        taskmanagers: pool,
        config: Arc::new(
            config
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
        ),
        ..Default::default()
    };
    rest.jobs
        .lock()
        .expect("jobs lock")
        .insert(spec.job_id(), handle);
    let app = crate::jobmanager::rest::router(rest);
    let stop = shutdown.clone();
    tokio::spawn(async move {
        let _ = axum::serve(listener, app)
            .with_graceful_shutdown(stop.cancelled_owned())
            .await;
    });
    let progress = std::io::stderr().is_terminal().then(|| {
        let bar = indicatif::ProgressBar::new_spinner();
        bar.set_message(format!("running {}", spec.name));
        bar.enable_steady_tick(Duration::from_millis(200));
        bar
    });
    let outcome = done.await.context("the job master stopped unexpectedly")?;
    if let Some(bar) = progress {
        bar.finish_and_clear();
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
