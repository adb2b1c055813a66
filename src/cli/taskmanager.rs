//! `yarnflow taskmanager [--jobmanager http://host:port]`: a TaskManager process (in YARN
//! containers, local mode, or by hand). Without `--jobmanager` it finds the leader through the
//! configured HA service discovery (`high-availability.type: zookeeper`) and follows it across
//! failovers.

use std::process::ExitCode;

use tokio_util::sync::CancellationToken;

use crate::config::Config;
use crate::ha::LeaderRetrieval;
use crate::ha::config::{HaConfig, HaType};
use crate::ha::zookeeper::{ZkCluster, ZkLeaderRetrieval};
use crate::network::{NetworkConfig, NetworkEnvironment};
use crate::taskmanager::exchange::TaskNetwork;
use crate::taskmanager::executor::{self, LeaderSource, TaskManagerConfig};

#[derive(Debug, clap::Args)]
pub struct TaskManagerArgs {
    /// The JobManager's address, e.g. http://127.0.0.1:6123 (default: the leader named by
    /// ZooKeeper service discovery).
    #[arg(long)]
    pub jobmanager: Option<String>,
    /// Slots offered (taskmanager.numberOfTaskSlots).
    #[arg(long)]
    pub slots: Option<u32>,
    /// An id for logs (default: host and pid).
    #[arg(long)]
    pub id: Option<String>,
    /// What the JobManager names this TaskManager's resource when it is lost (default: YARN's
    /// `CONTAINER_ID`; local mode names its children).
    #[arg(long, hide = true)]
    pub resource_id: Option<String>,
}

pub async fn run(cli: &super::Cli, args: &TaskManagerArgs) -> anyhow::Result<ExitCode> {
    let config = cli.load_config()?;
    let slots = match args.slots {
        Some(s) => s,
        None => config
            .value(Config::u64, "taskmanager.numberOfTaskSlots")?
            .min(u64::from(u32::MAX)) as u32,
    };
    let id = args
        .id
        .clone()
        .unwrap_or_else(|| format!("taskmanager-{}", std::process::id()));
    let shutdown = CancellationToken::new();
    let network = start_network(&config, &shutdown).await?;
    // Background work that ends with this function (dropping the set aborts it).
    let mut background = tokio::task::JoinSet::new();
    // Start libhdfs's JVM now, not when the first subtask opens its HDFS sink: a replacement
    // TaskManager then takes over its subtasks about a second sooner.
    if let Some(dir) = config
        .get("high-availability.storageDir")
        .filter(|d| d.starts_with("hdfs://"))
    {
        let dir = dir.to_string();
        background.spawn(async move {
            if let Err(e) = crate::storage::open(&dir).await {
                tracing::warn!(error = %e, "cannot reach HDFS yet");
            }
        });
    }
    // Keeps the discovery session alive while the TaskManager runs.
    let mut _retrieval = None;
    let leader = match &args.jobmanager {
        Some(a) => LeaderSource::Address(a.clone()),
        None => {
            let ha = HaConfig::from_config(&config)?;
            if ha.kind != HaType::ZooKeeper {
                anyhow::bail!(
                    "no --jobmanager given and high-availability.type is not zookeeper: nothing names the JobManager"
                );
            }
            let zk = ZkCluster::for_cluster(&ha).await?;
            let retrieval = ZkLeaderRetrieval::start_with(zk, ha.tolerate_suspended);
            let rx = retrieval.watch();
            _retrieval = Some(retrieval);
            LeaderSource::Discovery(rx)
        }
    };
    let taskmanager = executor::run(
        TaskManagerConfig {
            leader,
            slots: slots.max(1),
            id,
            resource_id: args
                .resource_id
                .clone()
                .or_else(|| std::env::var("CONTAINER_ID").ok())
                .unwrap_or_default(),
            heartbeat_interval: config.value(Config::duration, "heartbeat.interval")?,
            heartbeat_timeout: config.value(Config::duration, "heartbeat.timeout")?,
            leaderless_timeout: config.value(Config::duration, "taskmanager.leaderless.timeout")?,
            network: Some(network),
        },
        shutdown.clone(),
    );
    tokio::pin!(taskmanager);
    tokio::select! {
        _ = &mut taskmanager => {}
        _ = tokio::signal::ctrl_c() => {
            shutdown.cancel();
            taskmanager.await;
        }
    }
    Ok(ExitCode::SUCCESS)
}

/// The TaskManager's data server for the keyed exchange, on `taskmanager.data.port` (0: any
/// free port), advertised under the host YARN names (`NM_HOST`), else the loopback address
/// (local mode's child processes).
async fn start_network(
    config: &Config,
    shutdown: &CancellationToken,
) -> anyhow::Result<TaskNetwork> {
    let port = config.value(Config::u64, "taskmanager.data.port")?;
    let port = u16::try_from(port)
        .map_err(|_| anyhow::anyhow!("taskmanager.data.port: {port} is not a port (0..65535)"))?;
    let network_config = NetworkConfig::from_config(config)?;
    let env =
        NetworkEnvironment::start(network_config, ([0, 0, 0, 0], port).into(), shutdown).await?;
    let host = std::env::var("NM_HOST").unwrap_or_else(|_| "127.0.0.1".into());
    let address = format!("{host}:{}", env.data_address().port());
    tracing::info!(data_address = %address, "data server listening");
    Ok(TaskNetwork {
        env: std::sync::Arc::new(env),
        address,
    })
}
