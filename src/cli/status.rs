//! `yarnflow status APP_ID [--json]`: one look at a yarnflow application from three places.
//!
//! * The ResourceManager's REST API: the application's state, final status and diagnostics,
//!   every attempt, and the containers it still runs.
//! * ZooKeeper discovery (`high-availability.cluster-id` = the application id): the leading
//!   JobManager's address and epoch.
//! * That JobManager's REST API: jobs (status; restarts, checkpoints and failovers over the
//!   job's whole life, and under this JobManager; latest checkpoint) and TaskManagers.
//!
//! Only the ResourceManager part is required; when ZooKeeper or the JobManager cannot be
//! reached the report says so in one line and shows the rest.

use std::path::Path;
use std::process::ExitCode;
use std::time::Duration;

use anyhow::{Context, bail};
use serde::Serialize;

use super::Cli;
use crate::ha::LeaderRetrieval;
use crate::ha::config::HaConfig;
use crate::ha::zookeeper::{ZkCluster, ZkLeaderRetrieval};
use crate::hadoop::conf::{self, HadoopConf};
use crate::hadoop::rest::{AppReport, AttemptReport, RmRest};
use crate::hadoop::yarn::{ApplicationAttemptId, ApplicationId, ContainerId};
use crate::jobmanager::client::{ClientError, JobManagerClient, TaskManagerInfo};
use crate::jobmanager::job_master::JobSnapshot;

/// How long discovery waits for ZooKeeper to answer with the leader's record.
const LEADER_WAIT: Duration = Duration::from_secs(2);
/// How long connecting to ZooKeeper may take before the leader is reported unknown.
const ZK_CONNECT_WAIT: Duration = Duration::from_secs(5);
/// Timeout of every request to the JobManager's REST API.
const JOBMANAGER_TIMEOUT: Duration = Duration::from_secs(5);

#[derive(Debug, clap::Args)]
pub struct StatusArgs {
    /// The application, e.g. application_1700000000000_0001.
    #[arg(value_name = "APP_ID")]
    pub app_id: String,
    /// Hadoop configuration directory (default: $HADOOP_CONF_DIR).
    #[arg(long, value_name = "DIR")]
    pub hadoop_conf: Option<std::path::PathBuf>,
    /// Print the report as one JSON document.
    #[arg(long)]
    pub json: bool,
}

/// Everything `yarnflow status` found out.
#[derive(Debug, Serialize)]
pub struct StatusReport {
    pub application: AppReport,
    pub attempts: Vec<AttemptReport>,
    /// The current attempt's containers (absent once the application is over).
    pub containers: Option<ContainerCounts>,
    /// The leader published in ZooKeeper.
    pub leader: Option<LeaderView>,
    /// What the leader's REST API shows.
    pub jobmanager: Option<JobManagerView>,
    /// What could not be looked at, or was not there: one line each.
    pub notes: Vec<String>,
}

#[derive(Debug, Serialize)]
pub struct ContainerCounts {
    pub attempt: String,
    /// Containers the ResourceManager runs for the application, its ApplicationMaster included.
    pub running: usize,
    pub taskmanagers_running: usize,
    /// TaskManager containers that completed while the application ran (each one is replaced
    /// by the ApplicationMaster): see [`completed_taskmanager_containers`].
    pub taskmanager_containers_completed: u64,
}

#[derive(Debug, Serialize)]
pub struct LeaderView {
    /// The JobManager's REST base URL.
    pub address: String,
    pub session_id: String,
    pub epoch: u64,
}

#[derive(Debug, Serialize)]
pub struct JobManagerView {
    pub jobs: Vec<JobSnapshot>,
    pub taskmanagers: Vec<TaskManagerInfo>,
}

/// The Hadoop configuration of `dir` (or `$HADOOP_CONF_DIR`) and a client of its
/// ResourceManager's REST API.
pub(super) fn rm_clients(dir: Option<&Path>) -> anyhow::Result<(HadoopConf, RmRest)> {
    let hadoop = HadoopConf::load(dir)?;
    let rest = RmRest::new(hadoop.required(conf::RM_WEBAPP_ADDRESS)?);
    Ok((hadoop, rest))
}

/// The ResourceManager's report of `app`; an unknown id is one line naming it.
pub(super) async fn known_application(
    rest: &RmRest,
    app: ApplicationId,
) -> anyhow::Result<AppReport> {
    match rest.application(&app.to_string()).await {
        Ok(r) => Ok(r),
        Err(e) if e.is_not_found() => bail!(
            "application {app} is not known to the ResourceManager at {}",
            rest.base()
        ),
        Err(e) => Err(e).with_context(|| format!("look up {app}")),
    }
}

/// The attempt with the highest number.
fn latest_attempt(attempts: &[AttemptReport]) -> Option<ApplicationAttemptId> {
    attempts
        .iter()
        .filter_map(|a| a.attempt_id.parse::<ApplicationAttemptId>().ok())
        .max_by_key(|a| a.attempt)
}

/// The application's current attempt: from its report, else the latest one the RM lists.
pub(super) async fn current_attempt(
    rest: &RmRest,
    report: &AppReport,
) -> anyhow::Result<Option<ApplicationAttemptId>> {
    if let Some(a) = report
        .current_attempt
        .as_deref()
        .and_then(|a| a.parse().ok())
    {
        return Ok(Some(a));
    }
    let attempts = rest
        .attempts(&report.id)
        .await
        .with_context(|| format!("list the attempts of {}", report.id))?;
    Ok(latest_attempt(&attempts))
}

/// TaskManager containers of the application that completed while it ran, from the containers
/// the ResourceManager still runs (it keeps no record of completed ones).
///
/// YARN numbers an application's containers 1, 2, 3, … in allocation order, the
/// ApplicationMaster's container first. Every number below the highest live one that no live
/// container holds therefore belongs to a container that completed: a TaskManager that was
/// lost, killed or released (and replaced), except for the AM containers of earlier attempts
/// when the numbering carried over to this attempt (keep-containers-across-application-attempts;
/// the current AM container's number is then above 1). A container allocated after the newest
/// live one and already gone is not counted, which in steady state (every lost container
/// replaced) does not happen.
pub fn completed_taskmanager_containers(
    live: &[ContainerId],
    current_am: Option<ContainerId>,
    earlier_ams: &[ContainerId],
) -> u64 {
    let seq = |c: &ContainerId| c.id & 0xff_ffff_ffff;
    let Some(highest) = live.iter().map(seq).max() else {
        return 0;
    };
    let carried_over = match current_am {
        Some(am) => seq(&am) > 1,
        None => false,
    };
    let earlier = if carried_over {
        earlier_ams.iter().filter(|c| seq(c) < highest).count()
    } else {
        0
    };
    let holders = (live.len() + earlier) as i64;
    u64::try_from(highest - holders).unwrap_or(0)
}

/// The current attempt's containers as the ResourceManager runs them.
async fn container_counts(
    rest: &RmRest,
    app: ApplicationId,
    attempts: &[AttemptReport],
) -> anyhow::Result<Option<ContainerCounts>> {
    let Some(current) = latest_attempt(attempts) else {
        return Ok(None);
    };
    let reports = rest
        .containers(&app.to_string(), &current.to_string())
        .await
        .with_context(|| format!("list the containers of {current}"))?;
    let live: Vec<ContainerId> = reports
        .iter()
        .filter_map(|c| c.container_id.parse().ok())
        .collect();
    let am_of = |a: &AttemptReport| a.container_id.parse::<ContainerId>().ok();
    let current_am = attempts
        .iter()
        .find(|a| a.attempt_id == current.to_string())
        .and_then(am_of);
    let earlier_ams: Vec<ContainerId> = attempts
        .iter()
        .filter(|a| a.attempt_id != current.to_string())
        .filter_map(am_of)
        .collect();
    let am_running = current_am.is_some_and(|am| live.contains(&am));
    Ok(Some(ContainerCounts {
        attempt: current.to_string(),
        running: live.len(),
        taskmanagers_running: live.len() - usize::from(am_running),
        taskmanager_containers_completed: completed_taskmanager_containers(
            &live,
            current_am,
            &earlier_ams,
        ),
    }))
}

/// The leader ZooKeeper discovery publishes for `app`, or one line saying why there is none
/// (not published, ZooKeeper unreachable or not configured).
async fn discover_leader(cli: &Cli, app: ApplicationId) -> Result<LeaderView, String> {
    let mut config = cli
        .load_config()
        .map_err(|e| format!("leader unknown: {e:#}"))?;
    if config.get("high-availability.zookeeper.quorum").is_none() {
        return Err(
            "leader unknown: high-availability.zookeeper.quorum is not set (--conf DIR or -D)"
                .into(),
        );
    }
    config.set("high-availability.type", "zookeeper");
    config.set("high-availability.cluster-id", app.to_string());
    // Discovery reads ZooKeeper only; HA storage is never opened here.
    config.set(
        "high-availability.storageDir",
        "file:///yarnflow-status/unused",
    );
    let cfg = HaConfig::from_config(&config).map_err(|e| format!("leader unknown: {e}"))?;
    let zk = match tokio::time::timeout(ZK_CONNECT_WAIT, ZkCluster::for_cluster(&cfg)).await {
        Ok(Ok(zk)) => zk,
        Ok(Err(e)) => return Err(format!("leader unknown: {e}")),
        Err(_) => {
            return Err(format!(
                "leader unknown: ZooKeeper {} did not answer within {} s",
                cfg.quorum,
                ZK_CONNECT_WAIT.as_secs()
            ));
        }
    };
    let retrieval = ZkLeaderRetrieval::start_with(zk, cfg.tolerate_suspended);
    let mut rx = retrieval.watch();
    let leader = match tokio::time::timeout(LEADER_WAIT, rx.wait_for(Option::is_some)).await {
        Ok(Ok(info)) => info.clone(),
        _ => None,
    };
    retrieval.stop().await;
    tracing::debug!(namespace = %cfg.namespace(), ?leader, "leader discovery");
    match leader {
        Some(l) => Ok(LeaderView {
            address: l.address,
            session_id: l.session_id.to_string(),
            epoch: l.epoch,
        }),
        None => Err(format!(
            "no leader published in ZooKeeper {} under {}/leader: no yarnflow JobManager leads {app}",
            cfg.quorum,
            cfg.namespace()
        )),
    }
}

/// Jobs and TaskManagers from the JobManager's REST API at `address` (`http://host:port`).
async fn jobmanager_view(address: &str) -> Result<JobManagerView, ClientError> {
    let client = JobManagerClient::new(address, JOBMANAGER_TIMEOUT);
    let mut jobs = Vec::new();
    for j in client.jobs().await? {
        jobs.push(client.job(&j.id).await?);
    }
    let taskmanagers = client.taskmanagers().await?;
    Ok(JobManagerView { jobs, taskmanagers })
}

pub async fn run(cli: &Cli, args: &StatusArgs) -> anyhow::Result<ExitCode> {
    let app: ApplicationId = args.app_id.parse()?;
    let (_, rest) = rm_clients(args.hadoop_conf.as_deref())?;
    let application = known_application(&rest, app).await?;
    let attempts = rest
        .attempts(&app.to_string())
        .await
        .with_context(|| format!("list the attempts of {app}"))?;
    let mut notes = Vec::new();
    let containers = if application.is_final() {
        None
    } else {
        container_counts(&rest, app, &attempts)
            .await
            .unwrap_or_else(|e| {
                notes.push(format!("containers unknown: {e:#}"));
                None
            })
    };
    let (leader, jobmanager) = if application.is_final() {
        notes.push(format!(
            "{app} is {}: no JobManager to ask",
            application.state
        ));
        (None, None)
    } else {
        match discover_leader(cli, app).await {
            Ok(leader) => {
                let jm = match jobmanager_view(&leader.address).await {
                    Ok(v) => Some(v),
                    Err(e) => {
                        notes.push(format!("JobManager unreachable: {e}"));
                        None
                    }
                };
                (Some(leader), jm)
            }
            Err(note) => {
                notes.push(note);
                (None, None)
            }
        }
    };
    let report = StatusReport {
        application,
        attempts,
        containers,
        leader,
        jobmanager,
        notes,
    };
    if args.json {
        println!("{}", serde_json::to_string_pretty(&report)?);
    } else {
        print!("{}", render(&report, crate::now_ms()));
    }
    Ok(ExitCode::SUCCESS)
}

/// A YARN time (ms since the Unix epoch, 0 = not yet) as RFC 3339 to the second.
fn time(ms: i64) -> String {
    if ms <= 0 {
        return "-".into();
    }
    jiff::Timestamp::from_second(ms / 1000)
        .map(|t| t.to_string())
        .unwrap_or_else(|_| ms.to_string())
}

/// Indented lines of a (possibly multi-line) diagnostics text.
fn diagnostics(out: &mut String, text: &str) {
    for line in text.lines().map(str::trim_end).filter(|l| !l.is_empty()) {
        out.push_str("    ");
        out.push_str(line);
        out.push('\n');
    }
}

/// The human-readable report; `now_ms` dates the checkpoint ages.
pub fn render(r: &StatusReport, now_ms: u64) -> String {
    use std::fmt::Write;
    let mut out = String::new();
    let a = &r.application;
    let _ = writeln!(
        out,
        "{} '{}' (user {}): {}, final status {}, started {}, finished {}",
        a.id,
        a.name,
        a.user,
        a.state,
        a.final_status,
        time(a.started_time),
        time(a.finished_time)
    );
    diagnostics(&mut out, &a.diagnostics);
    for t in &r.attempts {
        let _ = writeln!(
            out,
            "attempt {} {}: {}, started {}, ended {}, AM container {} on {}",
            t.id,
            t.attempt_id,
            if t.state.is_empty() { "-" } else { &t.state },
            time(t.start_time),
            time(t.finished_time),
            if t.container_id.is_empty() {
                "-"
            } else {
                &t.container_id
            },
            if t.node_id.is_empty() {
                "-"
            } else {
                &t.node_id
            }
        );
        diagnostics(&mut out, &t.diagnostics);
    }
    if let Some(c) = &r.containers {
        let _ = writeln!(
            out,
            "containers of {}: {} running ({} of them TaskManagers), {} TaskManager container(s) completed while the application ran",
            c.attempt, c.running, c.taskmanagers_running, c.taskmanager_containers_completed
        );
    }
    if let Some(l) = &r.leader {
        let _ = writeln!(
            out,
            "leader: {} epoch {} session {}",
            l.address, l.epoch, l.session_id
        );
    }
    if let Some(jm) = &r.jobmanager {
        if jm.jobs.is_empty() {
            let _ = writeln!(out, "jobs: none");
        }
        for j in &jm.jobs {
            let checkpoint = match (j.latest_checkpoint_id, j.latest_checkpoint_completed_ms) {
                (Some(id), Some(at)) => format!(
                    "latest checkpoint {id} ({} s ago)",
                    now_ms.saturating_sub(at) / 1000
                ),
                (Some(id), None) => format!("latest checkpoint {id}"),
                (None, _) => "no checkpoint yet".into(),
            };
            let l = &j.lifetime;
            let _ = writeln!(
                out,
                "job {} '{}': {}, {} restart(s), {} checkpoint(s) completed, {} failover(s) over its life ({} restart(s), {} checkpoint(s) under this JobManager), {checkpoint}",
                j.job_id,
                j.name,
                j.status,
                l.restarts,
                l.completed_checkpoints,
                l.failovers,
                j.restarts,
                j.completed_checkpoints
            );
        }
        if jm.taskmanagers.is_empty() {
            let _ = writeln!(out, "taskmanagers: none registered");
        }
        for t in &jm.taskmanagers {
            let _ = writeln!(
                out,
                "taskmanager {}: {} slot(s), {} free",
                t.id, t.slots, t.free_slots
            );
        }
    }
    for n in &r.notes {
        let _ = writeln!(out, "{n}");
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::jobmanager::status::JobStatus;

    fn c(s: &str) -> ContainerId {
        s.parse().unwrap()
    }

    #[test]
    fn completed_containers_are_the_gaps_below_the_newest_live_one() {
        // Fresh attempt: AM 1, TaskManagers 2 and 3 lost and replaced by 4 and 5.
        let am = c("container_1_0001_01_000001");
        let live = [
            am,
            c("container_1_0001_01_000004"),
            c("container_1_0001_01_000005"),
        ];
        assert_eq!(completed_taskmanager_containers(&live, Some(am), &[]), 2);
        // Nothing lost: numbers 1..=3 all live.
        let live = [
            am,
            c("container_1_0001_01_000002"),
            c("container_1_0001_01_000003"),
        ];
        assert_eq!(completed_taskmanager_containers(&live, Some(am), &[]), 0);
        assert_eq!(completed_taskmanager_containers(&[], None, &[]), 0);
    }

    #[test]
    fn earlier_am_containers_count_only_when_numbering_carried_over() {
        // Not work-preserving: attempt 2 numbers from 1 again; attempt 1's AM is no gap.
        let am2 = c("container_1_0001_02_000001");
        let live = [am2, c("container_1_0001_02_000002")];
        let earlier = [c("container_1_0001_01_000001")];
        assert_eq!(
            completed_taskmanager_containers(&live, Some(am2), &earlier),
            0
        );
        // Work-preserving: TaskManagers 2, 3 kept from attempt 1, whose AM (1) died; attempt 2's
        // AM is 4; TaskManager 5 replaced a lost one (3 gone) → 1 completed.
        let am2 = c("container_1_0001_02_000004");
        let live = [
            c("container_1_0001_01_000002"),
            am2,
            c("container_1_0001_02_000005"),
        ];
        assert_eq!(
            completed_taskmanager_containers(&live, Some(am2), &earlier),
            1
        );
    }

    #[test]
    fn render_names_attempts_and_notes() {
        let report = StatusReport {
            application: AppReport {
                id: "application_1_0001".into(),
                user: "u".into(),
                name: "n".into(),
                state: "ACCEPTED".into(),
                final_status: "UNDEFINED".into(),
                diagnostics: "waiting\nfor AM".into(),
                tracking_url: String::new(),
                started_time: 1_700_000_000_000,
                finished_time: 0,
                am_host_http_address: String::new(),
                am_rpc_address: String::new(),
                current_attempt: None,
            },
            attempts: vec![],
            containers: None,
            leader: None,
            jobmanager: Some(JobManagerView {
                jobs: vec![JobSnapshot {
                    job_id: "j".into(),
                    status: JobStatus::Running,
                    latest_checkpoint_id: Some(4),
                    latest_checkpoint_completed_ms: Some(10_000),
                    restarts: 1,
                    completed_checkpoints: 2,
                    lifetime: crate::jobmanager::checkpoint::LifetimeCounts {
                        completed_checkpoints: 5,
                        failed_checkpoints: 0,
                        restarts: 3,
                        failovers: 2,
                    },
                    ..Default::default()
                }],
                taskmanagers: vec![],
            }),
            notes: vec!["no leader published".into()],
        };
        let text = render(&report, 13_500);
        assert!(
            text.starts_with("application_1_0001 'n' (user u): ACCEPTED"),
            "{text}"
        );
        assert!(text.contains("2023-11-14T22:13:20Z"), "{text}");
        assert!(text.contains("    for AM\n"), "{text}");
        assert!(text.contains("latest checkpoint 4 (3 s ago)"), "{text}");
        assert!(
            text.contains("3 restart(s), 5 checkpoint(s) completed, 2 failover(s) over its life (1 restart(s), 2 checkpoint(s) under this JobManager)"),
            "{text}"
        );
        assert!(text.contains("taskmanagers: none registered"), "{text}");
        assert!(text.ends_with("no leader published\n"), "{text}");
    }
}
