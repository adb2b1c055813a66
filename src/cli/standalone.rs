//! The standalone HA cluster (Flink's "standalone + ZooKeeper"): `yarnflow jobmanager --conf DIR`
//! (start any number: one leads, the rest stand by) and `yarnflow run JOB.yaml --conf DIR`
//! (finds the leader through ZooKeeper and submits). TaskManagers are
//! `yarnflow taskmanager --conf DIR`.
//!
//! ```text
//! contend ──granted──▶ serve (REST + gRPC), publish, recover jobs, accept submissions
//!    ▲                                    │ revoked (session lost, deposed)
//!    └───── jobs SUSPENDED, endpoint closed ◀┘
//! ```

use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use tokio_util::sync::CancellationToken;

use super::Cli;
use crate::ha::HaServices;
use crate::ha::config::{HaConfig, HaType};
use crate::ha::zookeeper::{ZkCluster, ZkLeaderRetrieval};
use crate::ha::{LeaderInfo, LeaderRetrieval};
use crate::jobmanager::client::JobManagerClient;
use crate::jobmanager::dispatcher::Dispatcher;
use crate::jobmanager::status::JobStatus;

/// Timeout of each request `yarnflow run` makes to the JobManager.
const RUN_TIMEOUT: Duration = Duration::from_secs(10);

#[derive(Debug, clap::Args)]
pub struct JobManagerArgs {
    /// The host name published for TaskManagers and clients (default: this host's name).
    #[arg(long)]
    pub host: Option<String>,
}

#[derive(Debug, clap::Args)]
pub struct RunArgs {
    /// The job specification (YAML).
    pub job: PathBuf,
    /// Return once the job is accepted instead of following it to its end.
    #[arg(long)]
    pub detached: bool,
}

fn zookeeper_config(config: &crate::config::Config) -> anyhow::Result<HaConfig> {
    let ha = HaConfig::from_config(config)?;
    if ha.kind != HaType::ZooKeeper {
        bail!(
            "high-availability.type is not zookeeper: a standalone HA cluster finds its leader through ZooKeeper"
        );
    }
    Ok(ha)
}

pub async fn jobmanager(cli: &Cli, args: &JobManagerArgs) -> anyhow::Result<ExitCode> {
    let config = cli.load_config()?;
    zookeeper_config(&config)?;
    let host = args.host.clone().unwrap_or_else(|| {
        std::env::var("HOSTNAME")
            .ok()
            .filter(|h| !h.is_empty())
            .unwrap_or_else(|| "localhost".into())
    });
    let owner = format!("jobmanager@{host}:{}", std::process::id());
    let ha = HaServices::from_config(&config, &owner).await?;
    let bind = config
        .string("rest.address")
        .unwrap_or_else(|| "0.0.0.0".into());
    let port = config.u64("rest.port")?.unwrap_or(0) as u16;
    let stop = CancellationToken::new();
    let s = stop.clone();
    tokio::spawn(async move {
        let _ = tokio::signal::ctrl_c().await;
        s.cancel();
    });
    tracing::info!(owner = %owner, "JobManager contending for leadership");
    loop {
        let leadership = tokio::select! {
            _ = stop.cancelled() => break,
            l = ha.election.acquire() => l.context("contend for leadership")?,
        };
        tracing::info!(epoch = leadership.epoch, leader_session_id = %leadership.session_id, "leadership granted");
        let listener = tokio::net::TcpListener::bind((bind.as_str(), port))
            .await
            .with_context(|| format!("bind the JobManager port {bind}:{port} (rest.port)"))?;
        let address = format!("http://{host}:{}", listener.local_addr()?.port());
        let (pool, rest) = crate::jobmanager::endpoint::leader_state(&config, &leadership)?;
        let serving = leadership.revoked.child_token();
        crate::jobmanager::endpoint::spawn(listener, &pool, rest.clone(), serving.clone());
        let (dispatcher, mut outcomes) = Dispatcher::new(
            ha.clone(),
            Arc::new(config.clone()),
            Arc::new(pool),
            rest.clone(),
            None,
            leadership.revoked.child_token(),
        );
        let _ = rest.dispatcher.set(dispatcher.clone());
        ha.election
            .publish(&leadership, &address)
            .await
            .context("publish the leader address")?;
        tracing::info!(address = %address, "JobManager serving");
        let t = Instant::now();
        for job_id in dispatcher.recover().await? {
            tracing::info!(job_id = %job_id, elapsed_ms = t.elapsed().as_millis() as u64, "job recovered");
        }
        loop {
            tokio::select! {
                _ = stop.cancelled() => {
                    serving.cancel();
                    let _ = ha.election.resign().await;
                    return Ok(ExitCode::SUCCESS);
                }
                _ = leadership.revoked.cancelled() => {
                    tracing::warn!(epoch = leadership.epoch, "leadership revoked; standing by");
                    serving.cancel();
                    break;
                }
                Some(o) = outcomes.recv() => {
                    tracing::info!(job_id = %o.job_id, status = %o.status, "job ended");
                }
            }
        }
    }
    let _ = ha.election.resign().await;
    Ok(ExitCode::SUCCESS)
}

/// Follows the published leader of the configured cluster.
struct Leader {
    retrieval: ZkLeaderRetrieval,
    ha: HaConfig,
}

impl Leader {
    async fn follow(config: &crate::config::Config) -> anyhow::Result<Leader> {
        let ha = zookeeper_config(config)?;
        let zk = ZkCluster::for_cluster(&ha).await?;
        Ok(Leader {
            retrieval: ZkLeaderRetrieval::start_with(zk, ha.tolerate_suspended),
            ha,
        })
    }

    /// The current leader, waiting up to `within` for one.
    async fn get(&self, within: Duration) -> anyhow::Result<LeaderInfo> {
        let mut rx = self.retrieval.watch();
        match tokio::time::timeout(within, rx.wait_for(|l| l.is_some())).await {
            Ok(Ok(l)) => Ok(l.clone().expect("waited for Some")),
            _ => bail!(
                "no JobManager leads cluster {} (ZooKeeper {}{}) within {within:?}",
                self.ha.cluster_id,
                self.ha.quorum,
                self.ha.namespace()
            ),
        }
    }
}

pub async fn run(cli: &Cli, args: &RunArgs) -> anyhow::Result<ExitCode> {
    let config = cli.load_config()?;
    let spec = crate::job::spec::JobSpec::load(&args.job)?;
    let text = std::fs::read_to_string(&args.job)
        .with_context(|| format!("read {}", args.job.display()))?;
    let leaders = Leader::follow(&config).await?;
    let result = submit_and_follow(&leaders, &spec.job_id(), &text, args.detached).await;
    leaders.retrieval.stop().await;
    result
}

/// Submits the job to the current leader and, unless `detached`, follows it across leader
/// changes to its end.
async fn submit_and_follow(
    leaders: &Leader,
    job_id: &str,
    spec_text: &str,
    detached: bool,
) -> anyhow::Result<ExitCode> {
    let leader = leaders.get(Duration::from_secs(30)).await?;
    let client = JobManagerClient::new(&leader.address, RUN_TIMEOUT);
    if let Err(e) = client.submit(spec_text).await {
        if let Some(reason) = e.refusal() {
            bail!(
                "the JobManager at {} refused the job: {reason}",
                leader.address
            );
        }
        return Err(e).with_context(|| format!("submit to the JobManager at {}", leader.address));
    }
    println!(
        "job {job_id} submitted to {} (epoch {})",
        leader.address, leader.epoch
    );
    if detached {
        return Ok(ExitCode::SUCCESS);
    }
    let mut last = None;
    loop {
        tokio::time::sleep(Duration::from_millis(500)).await;
        let Ok(leader) = leaders.get(Duration::from_secs(60)).await else {
            continue;
        };
        // Not there yet (a new leader still recovering), or the leader is going away: ask the
        // next one.
        let Ok(job) = JobManagerClient::new(&leader.address, RUN_TIMEOUT)
            .job(job_id)
            .await
        else {
            continue;
        };
        if last != Some(job.status) {
            println!("job {job_id} {}", job.status);
            last = Some(job.status);
        }
        match job.status {
            JobStatus::Finished => return Ok(ExitCode::SUCCESS),
            JobStatus::Failed | JobStatus::Canceled => bail!(
                "job {job_id} {}: {}",
                job.status,
                job.failure.as_deref().unwrap_or("no cause recorded")
            ),
            _ => {}
        }
    }
}
