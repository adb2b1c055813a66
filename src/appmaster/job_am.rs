//! The JobManager ApplicationMaster (`yarnflow appmaster --mode job`), one per YARN attempt.
//!
//! ```text
//! start ─▶ evict the latches of earlier attempts ─▶ lead (ZooKeeper) ─▶ serve REST + gRPC,
//!   publish the address ─▶ registerApplicationMaster (adopt previous containers) ─▶ recover
//!   job graphs / submit job.yaml ─▶ loop { allocate, launch, replace } ─▶ all jobs terminal:
//!   remove staging ─▶ finishApplicationMaster(SUCCEEDED | FAILED | KILLED)
//! ```
//!
//! A fatal error (lost leadership, RM unreachable, HA unreadable) ends the process non-zero
//! without touching HA data: YARN starts the next attempt, which recovers from it.

use std::collections::HashMap;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Context;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use super::launch::{self, StagedFile};
use super::workers::{Action, WorkerPool, WorkerPoolConfig, WorkerState};
use crate::config::Config;
use crate::ha::HaServices;
use crate::hadoop::ipc::Credentials;
use crate::hadoop::ipc::credentials::AMRM_TOKEN_KIND;
use crate::hadoop::yarn::{
    AllocateRequest, AmCommand, AmRmClient, ApplicationAttemptId, Container, ContainerId,
    FinalApplicationStatus, NmClient, Resource, ResourceAsk,
};
use crate::job::spec::JobSpec;
use crate::jobmanager::dispatcher::{DispatchError, Dispatcher};
use crate::jobmanager::job_master::JobOutcome;
use crate::jobmanager::metrics::Metrics;
use crate::jobmanager::status::JobStatus;

/// Consecutive retriable allocate failures tolerated (one per heartbeat) before the attempt
/// gives up.
const MAX_ALLOCATE_FAILURES: u32 = 20;

/// Priority of TaskManager container requests.
const TM_PRIORITY: i32 = 1;

/// Runs the AM until its jobs end; `job` is the spec staged by `yarnflow submit`.
pub async fn run(mut config: Config, job: Option<&std::path::Path>) -> anyhow::Result<ExitCode> {
    let started = Instant::now();
    let container_id: ContainerId = std::env::var("CONTAINER_ID")
        .context("CONTAINER_ID is not set: `yarnflow appmaster` is launched by YARN")?
        .parse()?;
    let attempt = container_id.attempt;
    let app = attempt.application.to_string();
    tracing::info!(attempt = attempt.attempt, application_id = %app, "attempt started");
    // On YARN the cluster id is the application id; a finished job's result is kept (not
    // deleted on commit) so a late restart of this application never runs it again.
    config.set("high-availability.cluster-id", app.clone());
    if matches!(
        config.origin("job-result-store.delete-on-commit"),
        None | Some(crate::config::Origin::Defaults)
    ) {
        config.set("job-result-store.delete-on-commit", "false");
    }
    let scheduler = std::env::var(launch::RM_SCHEDULER_ENV)
        .with_context(|| format!("{} is not set by the submitter", launch::RM_SCHEDULER_ENV))?;
    let files = launch::staged_files_from_env()?;
    let creds = Credentials::from_env()?;
    let token = creds
        .token_of_kind(AMRM_TOKEN_KIND)
        .with_context(|| format!("the container credentials hold no {AMRM_TOKEN_KIND}"))?
        .clone();

    // Leadership first: nothing below may act for this application unless we lead.
    let ha = HaServices::from_config(&config, &attempt.to_string()).await?;
    for n in 1..attempt.attempt {
        let previous = ApplicationAttemptId {
            application: attempt.application,
            attempt: n,
        };
        // YARN started this attempt, so the earlier ones are over: no need to wait out their
        // ZooKeeper sessions. Fencing makes a mistaken eviction harmless.
        match ha.election.evict(&previous.to_string()).await {
            Ok(0) => {}
            Ok(k) => {
                tracing::info!(owner = %previous, latches = k, "evicted the leader latch of an earlier attempt")
            }
            Err(e) => {
                tracing::warn!(owner = %previous, error = %e, "could not evict an earlier attempt's latch")
            }
        }
    }
    let leadership = ha
        .election
        .acquire()
        .await
        .context("contend for leadership")?;
    tracing::info!(epoch = leadership.epoch, leader_session_id = %leadership.session_id, elapsed_ms = started.elapsed().as_millis() as u64, "leadership granted");

    let host = std::env::var("NM_HOST").unwrap_or_else(|_| "localhost".into());
    let port = config.u64("rest.port")?.unwrap_or(0);
    let listener = tokio::net::TcpListener::bind(("0.0.0.0", port as u16))
        .await
        .context("bind the JobManager port (rest.port)")?;
    let jm_port = listener.local_addr()?.port();
    let address = format!("http://{host}:{jm_port}");
    let slots_per_tm = config
        .u64("taskmanager.numberOfTaskSlots")?
        .unwrap_or(1)
        .max(1) as u32;
    let (pool, rest) = crate::jobmanager::endpoint::leader_state(&config, &leadership)?;
    let metrics = rest.metrics.clone();
    metrics.failovers.store(
        (attempt.attempt - 1).max(0) as u64,
        std::sync::atomic::Ordering::Relaxed,
    );
    let shutdown = CancellationToken::new();
    let _stop_serving = shutdown.clone().drop_guard();
    crate::jobmanager::endpoint::spawn(listener, &pool, rest.clone(), shutdown.clone());
    ha.election
        .publish(&leadership, &address)
        .await
        .context("publish the leader address")?;
    tracing::info!(address = %address, "JobManager serving");

    let mut am = AmRmClient::new(&scheduler, token)?;
    let registration = am
        .register_application_master(&host, jm_port.into(), &address)
        .await
        .context("registerApplicationMaster")?;
    let mut workers = WorkerPool::new(WorkerPoolConfig::from_config(&config)?);
    let previous: Vec<(String, String)> = registration
        .containers_from_previous_attempts
        .iter()
        .map(|c| {
            tracing::info!(container = %c.id, node_http = %c.node_http_address, "container recovered from an earlier attempt");
            (c.id.to_string(), c.node.to_string())
        })
        .collect();
    tracing::info!(
        containers = previous.len(),
        "registered with the ResourceManager"
    );
    let mut pending = workers.on_recovered(&previous, Instant::now());

    let default_output = match std::env::var(launch::OUTPUT_ENV) {
        Ok(uri) => Some(crate::storage::open(&uri).await?),
        Err(_) => None,
    };
    let (dispatcher, mut outcomes) = Dispatcher::new(
        ha.clone(),
        Arc::new(config.clone()),
        Arc::new(pool.clone()),
        rest.clone(),
        default_output,
        leadership.revoked.child_token(),
    );
    let _ = rest.dispatcher.set(dispatcher.clone());
    let t_recover = Instant::now();
    let recovered = dispatcher.recover().await?;
    for job_id in &recovered {
        tracing::info!(job_id = %job_id, elapsed_ms = t_recover.elapsed().as_millis() as u64, "job recovered");
    }
    let mut results: Vec<JobOutcome> = Vec::new();
    let mut earlier: Vec<(String, JobStatus, Option<String>)> = Vec::new();
    if let Some(path) = job {
        let spec = JobSpec::load(path)?;
        let job_id = spec.job_id();
        if !recovered.contains(&job_id) {
            match dispatcher.submit(spec).await {
                Ok(_) => tracing::info!(job_id = %job_id, "job submitted"),
                Err(DispatchError::DuplicateJob(_)) => {
                    // It ended under an earlier attempt that died before unregistering.
                    let r = ha.job_results.get(&job_id).await?;
                    let (status, failure) = r
                        .map(|r| (r.status, r.failure))
                        .unwrap_or((JobStatus::Finished, None));
                    tracing::info!(job_id = %job_id, status = %status, "job already ended under an earlier attempt");
                    earlier.push((job_id, status, failure));
                }
                Err(e) => return Err(e.into()),
            }
        }
    }

    let env = {
        let mut env = launch::pass_through_env();
        env.push(("YARNFLOW_CONF_DIR".into(), ".".into()));
        env
    };
    let capability = Resource {
        memory_mb: (config
            .memory_bytes("taskmanager.memory.process.size")?
            .unwrap_or(256 << 20)
            >> 20) as i64,
        vcores: match config.i64("yarn.containers.vcores")?.unwrap_or(-1) {
            v if v > 0 => v as i32,
            _ => slots_per_tm as i32,
        },
    };
    let heartbeat = config
        .duration("yarn.heartbeat.container-request-interval")?
        .unwrap_or(Duration::from_millis(500))
        .min(
            config
                .duration("yarn.heartbeat.interval")?
                .unwrap_or(Duration::from_secs(5)),
        );
    let template = config
        .string("yarn.container-start-command-template")
        .unwrap_or_else(|| launch::DEFAULT_START_COMMAND_TEMPLATE.into());
    let mut allocated: HashMap<String, Container> = HashMap::new();
    let (launched_tx, mut launched) = mpsc::unbounded_channel::<(String, Result<(), String>)>();
    let mut request = AllocateRequest::default();
    let mut ticker = tokio::time::interval(heartbeat);
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut needed_before = u32::MAX;
    let mut allocate_failures = 0u32;
    // The outstanding ask last sent (for the containers-requested counter).
    let mut asked = 0u32;
    let revoked = leadership.revoked.clone();

    let (final_status, diagnostics) = loop {
        // The need follows the running jobs.
        let needed = dispatcher.slots_needed().div_ceil(slots_per_tm);
        if needed != needed_before {
            tracing::info!(taskmanagers = needed, "TaskManagers needed");
            pending.extend(workers.set_desired(needed, Instant::now()));
            needed_before = needed;
        }
        for c in pool.registered_resources() {
            if workers
                .state(&c)
                .is_some_and(|s| s != WorkerState::Registered)
            {
                workers.on_registered(&c);
                tracing::info!(container = %c, "TaskManager container registered");
            }
        }
        pending.extend(workers.tick(Instant::now()));
        for a in &pending {
            if let Action::Ask(n) = a {
                let more = n.saturating_sub(asked);
                metrics
                    .containers_requested
                    .fetch_add(more as u64, std::sync::atomic::Ordering::Relaxed);
                asked = *n;
            }
        }
        apply(
            std::mem::take(&mut pending),
            &mut request,
            &capability,
            &allocated,
            &am,
            &files,
            &app,
            slots_per_tm,
            &env,
            &template,
            &launched_tx,
        );
        if dispatcher.slots_needed() == 0 && (!results.is_empty() || !earlier.is_empty()) {
            break final_status(&results, &earlier);
        }
        tokio::select! {
            _ = revoked.cancelled() => {
                anyhow::bail!("leadership lost (epoch {}); exiting so the next attempt recovers", leadership.epoch);
            }
            Some(outcome) = outcomes.recv() => {
                if outcome.status == JobStatus::Suspended {
                    anyhow::bail!("job {} suspended: leadership lost", outcome.job_id);
                }
                results.push(outcome);
            }
            Some((container, r)) = launched.recv() => match r {
                Ok(()) => {
                    // `yarnflow logs` finds TaskManager containers (and their NodeManager's web
                    // address) through this line.
                    let node_http = allocated.get(&container).map(|c| c.node_http_address.clone()).unwrap_or_default();
                    tracing::info!(container = %container, node_http = %node_http, "container started");
                    workers.on_started(&container);
                }
                Err(e) => {
                    Metrics::inc(&metrics.containers_failed);
                    tracing::warn!(container = %container, error = %e, "container start failed");
                    allocated.remove(&container);
                    pending.extend(workers.on_start_failed(&container, Instant::now()));
                }
            },
            _ = ticker.tick() => {
                let sent = std::mem::take(&mut request);
                let r = match am.allocate(&sent).await {
                    Ok(r) => {
                        allocate_failures = 0;
                        r
                    }
                    // A blip at the RM: resend the same request next heartbeat; only a lasting
                    // failure ends the attempt (YARN then starts the next one).
                    Err(e) if e.is_retriable() && allocate_failures < MAX_ALLOCATE_FAILURES => {
                        allocate_failures += 1;
                        tracing::warn!(error = %e, failures = allocate_failures, "allocate failed; retrying");
                        request = sent;
                        continue;
                    }
                    Err(e) => return Err(anyhow::Error::new(e).context("allocate")),
                };
                if let Some(cmd) = r.am_command {
                    match cmd {
                        AmCommand::Shutdown => anyhow::bail!("the ResourceManager ordered a shutdown"),
                        AmCommand::Resync => tracing::warn!("the ResourceManager asked for a resync"),
                    }
                }
                for c in r.containers_from_previous_attempts {
                    tracing::info!(container = %c.id, node_http = %c.node_http_address, "container recovered from an earlier attempt");
                    pending.extend(workers.on_recovered(&[(c.id.to_string(), c.node.to_string())], Instant::now()));
                }
                for c in r.allocated {
                    Metrics::inc(&metrics.containers_allocated);
                    let id = c.id.to_string();
                    tracing::info!(container = %id, node = %c.node, node_http = %c.node_http_address, "container allocated");
                    pending.extend(workers.on_allocated(&id, &c.node.to_string(), Instant::now()));
                    allocated.insert(id, c);
                }
                for s in r.completed {
                    let id = s.id.to_string();
                    let ours = workers.state(&id).is_some();
                    allocated.remove(&id);
                    if ours {
                        Metrics::inc(&metrics.containers_failed);
                        tracing::warn!(container = %id, exit_status = s.exit_status, diagnostics = %s.diagnostics.lines().next().unwrap_or_default(), "container completed");
                        pending.extend(workers.on_completed(&id, Instant::now()));
                    }
                }
            }
        }
    };

    // Every job is over for good: each job master cleaned its own HA data; what is left is the
    // cluster's namespace and blob directory, then this application's staging directory.
    if let Err(e) = ha.close_and_cleanup_all_data().await {
        tracing::warn!(error = %e, "HA cleanup incomplete; `yarnflow ha clean` removes the rest");
    }
    if let Ok(staging) = std::env::var(launch::STAGING_ENV) {
        match crate::storage::open(&staging).await {
            Ok(loc) => {
                if let Err(e) = loc.store.delete_dir(&loc.path).await {
                    tracing::warn!(staging = %staging, error = %e, "could not remove the staging directory");
                }
            }
            Err(e) => {
                tracing::warn!(staging = %staging, error = %e, "could not remove the staging directory")
            }
        }
    }
    am.finish_application_master(final_status, &diagnostics, &address)
        .await
        .context("finishApplicationMaster")?;
    tracing::info!(final_status = ?final_status, diagnostics = %diagnostics, "unregistered");
    Ok(ExitCode::SUCCESS)
}

/// SUCCEEDED when every job FINISHED; FAILED if any failed; KILLED if any was cancelled.
fn final_status(
    results: &[JobOutcome],
    earlier: &[(String, JobStatus, Option<String>)],
) -> (FinalApplicationStatus, String) {
    let mut lines: Vec<String> = results
        .iter()
        .map(|o| {
            let mut l = format!(
                "job {} {}: {} checkpoints, {} restarts",
                o.job_id, o.status, o.completed_checkpoints, o.restarts
            );
            if let Some(f) = &o.failure {
                l.push_str(&format!("; cause: {f}"));
            }
            l
        })
        .collect();
    let mut statuses: Vec<JobStatus> = results.iter().map(|o| o.status).collect();
    for (job, status, failure) in earlier {
        lines.push(format!(
            "job {job} {status} (under an earlier attempt){}",
            failure
                .as_deref()
                .map(|f| format!("; cause: {f}"))
                .unwrap_or_default()
        ));
        statuses.push(*status);
    }
    let status = if statuses.contains(&JobStatus::Failed) {
        FinalApplicationStatus::Failed
    } else if statuses.contains(&JobStatus::Canceled) {
        FinalApplicationStatus::Killed
    } else {
        FinalApplicationStatus::Succeeded
    };
    (status, lines.join("\n"))
}

/// Performs the worker pool's actions: asks and releases go into the next allocate request,
/// launches run in the background and report back on `launched`.
#[allow(clippy::too_many_arguments)]
fn apply(
    actions: Vec<Action>,
    request: &mut AllocateRequest,
    capability: &Resource,
    allocated: &HashMap<String, Container>,
    am: &AmRmClient,
    files: &[StagedFile],
    app: &str,
    slots: u32,
    env: &[(String, String)],
    template: &str,
    launched: &mpsc::UnboundedSender<(String, Result<(), String>)>,
) {
    for action in actions {
        match action {
            Action::Ask(n) => {
                tracing::info!(containers = n, "container request (total outstanding)");
                request.asks = vec![ResourceAsk {
                    priority: TM_PRIORITY,
                    capability: *capability,
                    num_containers: n as i32,
                }];
            }
            Action::Release { container, reason } => {
                tracing::info!(container = %container, reason = %reason, "releasing container");
                match allocated.get(&container) {
                    Some(c) => request.releases.push(c.id),
                    None => {
                        if let Ok(id) = container.parse() {
                            request.releases.push(id)
                        }
                    }
                }
            }
            Action::Blocklist { node } => {
                tracing::warn!(node = %node, "node blocklisted after repeated start failures");
                request.blocklist_additions.push(node);
            }
            Action::Unblock { node } => request.blocklist_removals.push(node),
            Action::Launch { container, node } => {
                let Some(c) = allocated.get(&container).cloned() else {
                    let _ = launched.send((container, Err("allocation unknown".into())));
                    continue;
                };
                let Some(token) = am.nm_token(&c.node).cloned() else {
                    let _ = launched.send((container, Err(format!("no NMToken for node {node}"))));
                    continue;
                };
                let ctx = launch::taskmanager_context(files, app, slots, env.to_vec(), template);
                let launched = launched.clone();
                tokio::spawn(async move {
                    let mut nm = NmClient::new();
                    let r = nm
                        .start_container(&c, &token, &ctx)
                        .await
                        .map_err(|e| e.to_string());
                    let _ = launched.send((container, r));
                });
            }
        }
    }
}
