//! `yarnflow taskmanager --jobmanager http://host:port`: a TaskManager process (in YARN
//! containers, local mode, or by hand).

use std::process::ExitCode;

use tokio_util::sync::CancellationToken;

use crate::taskmanager::executor::{self, TaskManagerConfig};

#[derive(Debug, clap::Args)]
pub struct TaskManagerArgs {
    /// The JobManager's gRPC endpoint, e.g. http://127.0.0.1:6123.
    #[arg(long)]
    pub jobmanager: String,
    /// Slots offered (taskmanager.numberOfTaskSlots).
    #[arg(long)]
    pub slots: Option<u32>,
    /// An id for logs (default: host and pid).
    #[arg(long)]
    pub id: Option<String>,
}

pub async fn run(cli: &super::Cli, args: &TaskManagerArgs) -> anyhow::Result<ExitCode> {
    let config = cli.load_config()?;
    let slots = match args.slots {
        Some(s) => s,
        None => config.u64("taskmanager.numberOfTaskSlots")?.unwrap_or(1) as u32,
    };
    let id = args
        .id
        .clone()
        .unwrap_or_else(|| format!("taskmanager-{}", std::process::id()));
    let shutdown = CancellationToken::new();
    let s = shutdown.clone();
    tokio::spawn(async move {
        let _ = tokio::signal::ctrl_c().await;
        s.cancel();
    });
    executor::run(
        TaskManagerConfig {
            jobmanager: args.jobmanager.clone(),
            slots: slots.max(1),
            id,
            resource_id: std::env::var("CONTAINER_ID").unwrap_or_default(),
        },
        shutdown,
    )
    .await;
    Ok(ExitCode::SUCCESS)
}
