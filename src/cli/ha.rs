//! `yarnflow ha inspect` / `yarnflow ha clean`: look at, and remove, what a cluster id left in
//! ZooKeeper and HA storage.

use std::process::ExitCode;

use anyhow::{Context, bail};

use super::Cli;
use crate::ha::config::{HaConfig, HaType};

#[derive(Debug, clap::Args)]
pub struct HaArgs {
    #[command(subcommand)]
    pub command: HaCommand,
}

#[derive(Debug, clap::Subcommand)]
pub enum HaCommand {
    /// Print the ZooKeeper tree of a cluster id, check every pointer's blob, list orphans.
    Inspect {
        /// The cluster id (on YARN: the application id); default: high-availability.cluster-id.
        #[arg(long)]
        cluster_id: Option<String>,
        /// Print the report as JSON.
        #[arg(long)]
        json: bool,
    },
    /// Remove the HA data of a cluster that is no longer running (refuses while it runs).
    Clean {
        #[arg(long)]
        cluster_id: String,
    },
}

fn ha_config(cli: &Cli, cluster_id: Option<&str>) -> anyhow::Result<HaConfig> {
    let mut config = cli.load_config()?;
    if let Some(id) = cluster_id {
        config.set("high-availability.cluster-id", id);
    }
    let cfg = HaConfig::from_config(&config)?;
    if cfg.kind != HaType::ZooKeeper {
        bail!(
            "high-availability.type is 'none': there is no HA data to look at (set it to zookeeper with --conf or -D)"
        );
    }
    Ok(cfg)
}

pub async fn run(cli: &Cli, args: &HaArgs) -> anyhow::Result<ExitCode> {
    match &args.command {
        HaCommand::Inspect { cluster_id, json } => {
            let cfg = ha_config(cli, cluster_id.as_deref())?;
            let storage = crate::storage::open(&cfg.storage_dir)
                .await
                .context("open HA storage")?;
            let report = crate::ha::inspect::inspect(&cfg, storage.store).await?;
            if *json {
                println!("{}", serde_json::to_string_pretty(&report)?);
            } else {
                print!("{}", report.render());
            }
            Ok(ExitCode::SUCCESS)
        }
        HaCommand::Clean { cluster_id } => {
            let cfg = ha_config(cli, Some(cluster_id))?;
            let storage = crate::storage::open(&cfg.storage_dir)
                .await
                .context("open HA storage")?;
            crate::ha::inspect::clean(&cfg, storage.store).await?;
            println!("removed the HA data of {}", cfg.namespace());
            Ok(ExitCode::SUCCESS)
        }
    }
}
