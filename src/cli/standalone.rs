//! The standalone HA cluster (Flink's "standalone + ZooKeeper"): `yarnflow jobmanager --conf DIR`
//! (start any number: one leads, the rest stand by; see [`crate::jobmanager::standalone`]) and
//! `yarnflow run JOB.yaml --conf DIR` (finds the leader through ZooKeeper and submits).
//! TaskManagers are `yarnflow taskmanager --conf DIR`.

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use tokio_util::sync::CancellationToken;

use super::Cli;
use crate::ha::config::{HaConfig, HaType};
use crate::ha::zookeeper::{ZkCluster, ZkLeaderRetrieval};
use crate::ha::{LeaderInfo, LeaderRetrieval};
use crate::jobmanager::client::JobManagerClient;
use crate::jobmanager::standalone::StandaloneJobManager;
use crate::jobmanager::status::JobStatus;

/// Timeout of the submission: the JobManager persists the job graph to HA storage first, and
/// its first HDFS write may have to wait for libhdfs's JVM to start.
const SUBMIT_TIMEOUT: Duration = Duration::from_secs(60);
/// Timeout of each job status request while `yarnflow run` follows the job.
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

pub(super) fn zookeeper_config(config: &crate::config::Config) -> anyhow::Result<HaConfig> {
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
    let stop = CancellationToken::new();
    let jobmanager = StandaloneJobManager::new(config, &owner, &host, stop.clone()).await?;
    let run = jobmanager.run();
    tokio::pin!(run);
    tokio::select! {
        r = &mut run => r?,
        _ = stop_requested() => {
            stop.cancel();
            run.await?;
        }
    }
    Ok(ExitCode::SUCCESS)
}

/// SIGINT (Ctrl-C) or SIGTERM (`yarnflow cluster stop`, `kill`): the JobManager stops and
/// resigns, so a standby takes over at once instead of after the ZooKeeper session timeout.
async fn stop_requested() {
    use tokio::signal::unix::{SignalKind, signal};
    match signal(SignalKind::terminate()) {
        Ok(mut term) => tokio::select! {
            _ = tokio::signal::ctrl_c() => {}
            _ = term.recv() => {}
        },
        Err(_) => {
            let _ = tokio::signal::ctrl_c().await;
        }
    }
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
    let deadline = Instant::now() + SUBMIT_TIMEOUT;
    let leader = loop {
        let leader = leaders.get(Duration::from_secs(30)).await?;
        let client = JobManagerClient::new(&leader.address, SUBMIT_TIMEOUT);
        let Err(e) = client.submit(spec_text).await else {
            break leader;
        };
        // A new leader refuses submissions until it has recovered its jobs: ask again.
        if e.is_retriable() && Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(200)).await;
            continue;
        }
        if let Some(reason) = e.refusal() {
            bail!(
                "the JobManager at {} refused the job: {reason}",
                leader.address
            );
        }
        return Err(e).with_context(|| format!("submit to the JobManager at {}", leader.address));
    };
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
