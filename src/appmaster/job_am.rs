//! The JobManager ApplicationMaster (`yarnflow appmaster --mode job`), one per YARN attempt.
//!
//! ```text
//! start ─▶ evict the latches of earlier attempts ─▶ leader session (lead, serve REST + gRPC,
//!   publish) ─▶ registerApplicationMaster (adopt previous containers) ─▶ recover
//!   job graphs / submit job.yaml ─▶ allocate loop { allocate, launch, replace } ─▶ all jobs
//!   terminal: remove HA data and staging ─▶ finishApplicationMaster(SUCCEEDED | FAILED | KILLED)
//! ```
//!
//! A fatal error (lost leadership, RM unreachable, HA unreadable) ends the process non-zero
//! without touching HA data: YARN starts the next attempt, which recovers from it.

use std::collections::HashMap;
use std::process::ExitCode;
use std::time::Instant;

use anyhow::Context;
use tokio::sync::{broadcast, watch};
use tokio::task::JoinSet;

use super::config::AmConfig;
use super::launch::{self, StagedFile};
use super::workers::{Action, WorkerPool, WorkerState};
use crate::config::{Config, Origin};
use crate::ha::HaServices;
use crate::hadoop::ipc::Credentials;
use crate::hadoop::ipc::credentials::AMRM_TOKEN_KIND;
use crate::hadoop::yarn::{
    AllocateRequest, AllocateResponse, AmCommand, AmRmClient, ApplicationAttemptId, Container,
    ContainerId, FinalApplicationStatus, NmClient, ResourceAsk,
};
use crate::job::spec::JobSpec;
use crate::jobmanager::checkpoint::LifetimeCounts;
use crate::jobmanager::dispatcher::DispatchError;
use crate::jobmanager::error::LossCause;
use crate::jobmanager::job_master::JobOutcome;
use crate::jobmanager::leader::{LeaderOptions, LeaderSession};
use crate::jobmanager::metrics::ClusterCounters;
use crate::jobmanager::status::JobStatus;
use crate::jobmanager::taskmanagers::TaskManagerLoss;

/// Consecutive retriable allocate failures tolerated (one per heartbeat) before the attempt
/// gives up.
const MAX_ALLOCATE_FAILURES: u32 = 20;

/// Priority of TaskManager container requests.
const TM_PRIORITY: i32 = 1;

/// A job that ended under an earlier attempt which died before unregistering.
#[derive(Debug, Clone)]
struct EarlierResult {
    job_id: String,
    status: JobStatus,
    failure: Option<String>,
    /// Its lifetime counts, if its result record has them.
    lifetime: Option<LifetimeCounts>,
}

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
        None | Some(Origin::Defaults)
    ) {
        config.set("job-result-store.delete-on-commit", "false");
    }
    let settings = AmConfig::from_config(&config)?;
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
    evict_earlier_attempts(&ha, attempt).await;
    let host = std::env::var("NM_HOST").unwrap_or_else(|_| "localhost".into());
    let (counters, cluster) = watch::channel(ClusterCounters::default());
    let session = LeaderSession::start(
        &ha,
        &config,
        LeaderOptions {
            default_output: std::env::var(launch::OUTPUT_ENV).ok(),
            cluster,
            started,
            ..LeaderOptions::new("0.0.0.0", &host)
        },
    )
    .await?;
    // Subscribed before any TaskManager can find the published address... or before the
    // adopted ones re-register: none of their registrations is missed.
    let registrations = session.pool.registrations();
    let losses = session.pool.losses();

    let mut am = AmRmClient::new(&scheduler, token)?;
    let registration = am
        .register_application_master(&host, session.port.into(), &session.address)
        .await
        .context("registerApplicationMaster")?;
    tracing::info!(
        containers = registration.containers_from_previous_attempts.len(),
        "registered with the ResourceManager"
    );
    // The previous attempt's TaskManagers: once all have registered again, recovering job
    // masters stop waiting for the subtasks they report (jobmanager.reconcile.timeout).
    session.pool.expect_previous(
        registration
            .containers_from_previous_attempts
            .iter()
            .map(|c| c.id.to_string()),
    );

    let recovered = session.recover().await?;
    let earlier = match job {
        Some(path) => submit_staged_job(&session, &ha, path, &recovered).await?,
        None => None,
    };
    let mut allocate = AllocateLoop {
        am,
        workers: WorkerPool::new(settings.workers.clone()),
        launch: TaskManagerLaunch {
            env: {
                let mut env = launch::pass_through_env();
                env.push(("YARNFLOW_CONF_DIR".into(), ".".into()));
                env
            },
            files,
            application_id: app,
        },
        next_heartbeat: tokio::time::Instant::now(),
        settings,
        session,
        allocated: HashMap::new(),
        request: AllocateRequest::default(),
        pending: Vec::new(),
        launches: JoinSet::new(),
        stops: JoinSet::new(),
        registrations,
        losses,
        counters,
        failovers: (attempt.attempt - 1).max(0) as u64,
        results: Vec::new(),
        earlier: earlier.into_iter().collect(),
        needed: None,
        allocate_failures: 0,
    };
    allocate.on_recovered(&registration.containers_from_previous_attempts);
    let (final_status, diagnostics) = allocate.run().await?;
    let AllocateLoop {
        mut am, session, ..
    } = allocate;

    if let Some(f) =
        crate::faults::take("pause-before-unregister", &[("attempt", &attempt.attempt)])
    {
        let secs = f.param("secs").and_then(|s| s.parse().ok()).unwrap_or(60);
        tracing::warn!(secs, "fault point: pausing before unregister");
        tokio::time::sleep(std::time::Duration::from_secs(secs)).await;
    }
    // Every job is over for good and each job master cleaned its own HA data. Unregister
    // first (Flink's order): until then a kill only means another attempt, which finds the
    // results and needs the staged files to start. Then the cluster's namespace and blob
    // directory, then this application's staging directory.
    am.finish_application_master(final_status, &diagnostics, &session.address)
        .await
        .context("finishApplicationMaster")?;
    tracing::info!(final_status = ?final_status, diagnostics = %diagnostics, "unregistered");
    // Never while a job's own cleanup is incomplete (its result still dirty): what is left
    // is exactly what `yarnflow ha inspect` shows and `yarnflow ha clean` removes.
    match ha.job_results.dirty_results().await {
        Ok(dirty) if dirty.is_empty() => {
            if let Err(e) = ha.close_and_cleanup_all_data().await {
                tracing::warn!(error = %e, "HA cleanup incomplete; `yarnflow ha clean` removes the rest");
            }
        }
        Ok(dirty) => {
            let jobs: Vec<&str> = dirty.iter().map(|r| r.job_id.as_str()).collect();
            tracing::warn!(jobs = %jobs.join(", "), "HA data kept: the cleanup of these jobs is incomplete; `yarnflow ha clean` removes it");
        }
        Err(e) => {
            tracing::warn!(error = %e, "HA data kept: cannot read the job result store; `yarnflow ha clean` removes it");
        }
    }
    remove_staging().await;
    session.close().await;
    Ok(ExitCode::SUCCESS)
}

/// YARN started this attempt, so the earlier ones are over: no need to wait out their
/// ZooKeeper sessions. Fencing makes a mistaken eviction harmless.
async fn evict_earlier_attempts(ha: &HaServices, attempt: ApplicationAttemptId) {
    for n in 1..attempt.attempt {
        let previous = ApplicationAttemptId {
            application: attempt.application,
            attempt: n,
        };
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
}

/// Submits the staged job unless it was recovered; a job that already has a result ended
/// under an earlier attempt that died before unregistering.
async fn submit_staged_job(
    session: &LeaderSession,
    ha: &HaServices,
    path: &std::path::Path,
    recovered: &[String],
) -> anyhow::Result<Option<EarlierResult>> {
    let spec = JobSpec::load(path)?;
    let job_id = spec.job_id();
    if recovered.contains(&job_id) {
        return Ok(None);
    }
    match session.dispatcher.submit(spec).await {
        Ok(_) => {
            tracing::info!(job_id = %job_id, "job submitted");
            Ok(None)
        }
        Err(DispatchError::DuplicateJob(_)) => {
            let (status, failure, lifetime) = match ha.job_results.get(&job_id).await? {
                Some(r) => (r.status, r.failure, r.lifetime),
                None => (JobStatus::Finished, None, None),
            };
            tracing::info!(job_id = %job_id, status = %status, "job already ended under an earlier attempt");
            Ok(Some(EarlierResult {
                job_id,
                status,
                failure,
                lifetime,
            }))
        }
        Err(e) => Err(e.into()),
    }
}

async fn remove_staging() {
    let Ok(staging) = std::env::var(launch::STAGING_ENV) else {
        return;
    };
    let removed = match crate::storage::open(&staging).await {
        Ok(loc) => loc.store.delete_dir(&loc.path).await,
        Err(e) => Err(e),
    };
    if let Err(e) = removed {
        tracing::warn!(staging = %staging, error = %e, "could not remove the staging directory");
    }
}

/// A job's counts over its whole life, as the diagnostics show them.
fn lifetime_line(l: &LifetimeCounts) -> String {
    format!(
        "{} checkpoints, {} restarts, {} failovers",
        l.completed_checkpoints, l.restarts, l.failovers
    )
}

/// SUCCEEDED when every job FINISHED; FAILED if any failed; KILLED if any was cancelled. Each
/// job's line counts over its whole life, not just under this attempt.
fn final_status(
    results: &[JobOutcome],
    earlier: &[EarlierResult],
) -> (FinalApplicationStatus, String) {
    let mut lines: Vec<String> = results
        .iter()
        .map(|o| {
            let mut l = format!(
                "job {} {}: {}",
                o.job_id,
                o.status,
                lifetime_line(&o.lifetime)
            );
            if let Some(f) = &o.failure {
                l.push_str(&format!("; cause: {f}"));
            }
            l
        })
        .collect();
    let mut statuses: Vec<JobStatus> = results.iter().map(|o| o.status).collect();
    for e in earlier {
        lines.push(format!(
            "job {} {} (under an earlier attempt){}{}",
            e.job_id,
            e.status,
            e.lifetime
                .as_ref()
                .map(|l| format!(": {}", lifetime_line(l)))
                .unwrap_or_default(),
            e.failure
                .as_deref()
                .map(|f| format!("; cause: {f}"))
                .unwrap_or_default()
        ));
        statuses.push(e.status);
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

/// What launching a TaskManager container needs besides the container.
struct TaskManagerLaunch {
    /// The staged binary, configuration and job spec, localized into every container.
    files: Vec<StagedFile>,
    application_id: String,
    /// Environment passed through to the TaskManagers.
    env: Vec<(String, String)>,
}

/// The allocate loop (Flink's `YarnResourceManagerDriver` heartbeat), as a struct owning its
/// state and driven by one `select!` with a method per arm. Each pass first brings the
/// container need in line with the running jobs; the worker pool turns events into
/// [`Action`]s, which [`AllocateLoop::perform`] carries out.
struct AllocateLoop {
    /// The ResourceManager's AMRM protocol (allocate, NMTokens, finish).
    am: AmRmClient,
    /// TaskManager containers as a pure state machine: events in, actions out.
    workers: WorkerPool,
    settings: AmConfig,
    launch: TaskManagerLaunch,
    /// This attempt's leadership, dispatcher (what the jobs need) and job outcomes.
    session: LeaderSession,
    /// Containers the RM allocated that are still ours, for launches and releases.
    allocated: HashMap<String, Container>,
    /// The next allocate request, filled by actions between heartbeats.
    request: AllocateRequest,
    /// The worker pool's actions not yet performed.
    pending: Vec<Action>,
    /// NodeManager `startContainers` calls in flight: (container, outcome).
    launches: JoinSet<(String, Result<(), String>)>,
    /// NodeManager `stopContainers` calls in flight (for TaskManagers declared lost).
    stops: JoinSet<()>,
    /// The container of every TaskManager that registers with this leader.
    registrations: broadcast::Receiver<String>,
    /// Every TaskManager the JobManager lost: by heartbeat timeout (frozen or cut off, so YARN
    /// still reports it RUNNING), or hung up while running subtasks (killed, most likely).
    losses: broadcast::Receiver<TaskManagerLoss>,
    /// The figures `/metrics` shows, from the worker pool's counters.
    counters: watch::Sender<ClusterCounters>,
    /// Attempts before this one.
    failovers: u64,
    /// Jobs that reached a final state under this attempt.
    results: Vec<JobOutcome>,
    /// Jobs that had ended under an earlier attempt.
    earlier: Vec<EarlierResult>,
    /// TaskManagers needed at the last pass.
    needed: Option<u32>,
    /// Retriable allocate failures in a row.
    allocate_failures: u32,
    /// When the next allocate call goes out: `yarn.heartbeat.interval` after the last one, or
    /// `yarn.heartbeat.container-request-interval` while containers are requested, or at once
    /// when the request changed (a lost TaskManager's replacement is asked for without
    /// waiting out an idle heartbeat).
    next_heartbeat: tokio::time::Instant,
}

impl AllocateLoop {
    /// Runs until every job is over; the final status and diagnostics to unregister with.
    async fn run(&mut self) -> anyhow::Result<(FinalApplicationStatus, String)> {
        loop {
            self.follow_need();
            if self.session.dispatcher.slots_needed() == 0
                && (!self.results.is_empty() || !self.earlier.is_empty())
            {
                return Ok(final_status(&self.results, &self.earlier));
            }
            tokio::select! {
                _ = self.session.leadership.revoked.cancelled() => {
                    anyhow::bail!("leadership lost (epoch {}); exiting so the next attempt recovers", self.session.leadership.epoch);
                }
                Some(outcome) = self.session.outcomes.recv() => self.on_job_ended(outcome)?,
                Some(launched) = self.launches.join_next() => self.on_launched(launched),
                registered = self.registrations.recv() => self.on_registered(registered),
                Ok(lost) = self.losses.recv() => self.on_lost(lost),
                Some(_) = self.stops.join_next() => {}
                _ = tokio::time::sleep_until(self.next_heartbeat) => self.on_heartbeat().await?,
            }
        }
    }

    /// The need follows the running jobs; time-driven pool rules run; actions are performed
    /// and the figures published.
    fn follow_need(&mut self) {
        let needed = self
            .session
            .dispatcher
            .slots_needed()
            .div_ceil(self.settings.slots_per_taskmanager);
        if self.needed != Some(needed) {
            tracing::info!(taskmanagers = needed, "TaskManagers needed");
            self.pending
                .extend(self.workers.set_desired(needed, Instant::now()));
            self.needed = Some(needed);
        }
        self.pending.extend(self.workers.tick(Instant::now()));
        for action in std::mem::take(&mut self.pending) {
            self.perform(action);
        }
        let s = &self.workers.stats;
        let figures = ClusterCounters {
            containers_requested: s.requested,
            containers_allocated: s.allocated,
            containers_failed: s.failed,
            failovers: self.failovers,
        };
        self.counters.send_if_modified(|c| {
            let changed = *c != figures;
            *c = figures;
            changed
        });
    }

    /// Containers of earlier attempts that YARN kept running.
    fn on_recovered(&mut self, containers: &[Container]) {
        let adopted: Vec<(String, String)> = containers
            .iter()
            .map(|c| {
                tracing::info!(container = %c.id, node_http = %c.node_http_address, "container recovered from an earlier attempt");
                self.allocated.insert(c.id.to_string(), c.clone());
                (c.id.to_string(), c.node.to_string())
            })
            .collect();
        self.pending
            .extend(self.workers.on_recovered(&adopted, Instant::now()));
    }

    fn on_job_ended(&mut self, outcome: JobOutcome) -> anyhow::Result<()> {
        if let Some(cause) = outcome.recovery_failure() {
            // Nothing was cleaned up: the next attempt tries again.
            anyhow::bail!("{cause}");
        }
        if outcome.status == JobStatus::Suspended {
            anyhow::bail!("job {} suspended: leadership lost", outcome.job_id);
        }
        self.results.push(outcome);
        Ok(())
    }

    fn on_launched(
        &mut self,
        launched: Result<(String, Result<(), String>), tokio::task::JoinError>,
    ) {
        let (container, result) = match launched {
            Ok(l) => l,
            Err(e) => {
                tracing::error!(error = %e, "a container launch task panicked");
                return;
            }
        };
        match result {
            Ok(()) => {
                // `yarnflow logs` finds TaskManager containers (and their NodeManager's web
                // address) through this line.
                let node_http = self
                    .allocated
                    .get(&container)
                    .map(|c| c.node_http_address.clone())
                    .unwrap_or_default();
                tracing::info!(container = %container, node_http = %node_http, "container started");
                self.workers.on_started(&container);
            }
            Err(e) => {
                tracing::warn!(container = %container, error = %e, "container start failed");
                self.allocated.remove(&container);
                self.pending
                    .extend(self.workers.on_start_failed(&container, Instant::now()));
            }
        }
    }

    fn on_registered(&mut self, registered: Result<String, broadcast::error::RecvError>) {
        let containers = match registered {
            Ok(c) => vec![c],
            // Missed some: the pool knows who is registered now.
            Err(broadcast::error::RecvError::Lagged(_)) => self.session.pool.registered_resources(),
            // The pool lives as long as the session; never closed while we run.
            Err(broadcast::error::RecvError::Closed) => Vec::new(),
        };
        for c in containers {
            if self
                .workers
                .state(&c)
                .is_some_and(|s| s != WorkerState::Registered)
            {
                let actions = self.workers.on_registered(&c, Instant::now());
                self.pending.extend(actions);
                tracing::info!(container = %c, "TaskManager container registered");
            }
        }
    }

    /// The JobManager lost a TaskManager. One that hung up while it ran subtasks is replaced
    /// now, and its container, which YARN will report completed, waits for that report. One
    /// lost to a heartbeat timeout YARN still sees running: stop and release it (Flink's
    /// `releaseResource`) and count it gone at once, so its replacement is asked for now, not
    /// after a completion YARN would never report.
    fn on_lost(&mut self, lost: TaskManagerLoss) {
        let container = lost.resource_id;
        if self.workers.state(&container).is_none() {
            return;
        }
        match lost.cause {
            LossCause::SessionEnded => {
                tracing::warn!(container = %container, "TaskManager hung up while running subtasks; asking for its replacement");
                self.pending
                    .extend(self.workers.on_disconnected(&container, Instant::now()));
            }
            LossCause::HeartbeatTimeout(_) => {
                tracing::warn!(container = %container, "TaskManager lost (heartbeat timeout); stopping its container");
                self.pending
                    .extend(self.workers.on_completed(&container, Instant::now()));
                self.stop_container(&container);
            }
        }
    }

    /// Stops `container` at its NodeManager and releases it to the RM.
    fn stop_container(&mut self, container: &str) {
        let Some(c) = self.allocated.remove(container) else {
            if let Ok(id) = container.parse() {
                self.request.releases.push(id);
            }
            return;
        };
        self.request.releases.push(c.id);
        if let Some(token) = self.am.nm_token(&c.node).cloned() {
            self.stops.spawn(async move {
                if let Err(e) = NmClient::new().stop_container(&c.node, &token, c.id).await {
                    tracing::warn!(container = %c.id, error = %e, "stopContainers failed; the release stops it");
                }
            });
        }
    }

    /// One allocate call: sends the request built since the last one and feeds the response
    /// to the worker pool.
    async fn on_heartbeat(&mut self) -> anyhow::Result<()> {
        let sent = std::mem::take(&mut self.request);
        let result = self.am.allocate(&sent).await;
        let interval = if self.workers.pending() > 0 {
            self.settings.heartbeat_pending
        } else {
            self.settings.heartbeat
        };
        self.next_heartbeat = tokio::time::Instant::now() + interval;
        let response = match result {
            Ok(r) => {
                self.allocate_failures = 0;
                r
            }
            // A blip at the RM: resend the same request next heartbeat; only a lasting failure
            // ends the attempt (YARN then starts the next one).
            Err(e) if e.is_retriable() && self.allocate_failures < MAX_ALLOCATE_FAILURES => {
                self.allocate_failures += 1;
                tracing::warn!(error = %e, failures = self.allocate_failures, "allocate failed; retrying");
                self.request = sent;
                return Ok(());
            }
            Err(e) => return Err(anyhow::Error::new(e).context("allocate")),
        };
        self.on_allocate_response(response)
    }

    fn on_allocate_response(&mut self, r: AllocateResponse) -> anyhow::Result<()> {
        match r.am_command {
            Some(AmCommand::Shutdown) => anyhow::bail!("the ResourceManager ordered a shutdown"),
            Some(AmCommand::Resync) => tracing::warn!("the ResourceManager asked for a resync"),
            None => {}
        }
        self.on_recovered(&r.containers_from_previous_attempts);
        let now = Instant::now();
        for c in r.allocated {
            let id = c.id.to_string();
            tracing::info!(container = %id, node = %c.node, node_http = %c.node_http_address, "container allocated");
            self.pending
                .extend(self.workers.on_allocated(&id, &c.node.to_string(), now));
            self.allocated.insert(id, c);
        }
        for s in r.completed {
            let id = s.id.to_string();
            self.allocated.remove(&id);
            if self.workers.state(&id).is_some() {
                tracing::warn!(container = %id, exit_status = s.exit_status, diagnostics = %s.diagnostics.lines().next().unwrap_or_default(), "container completed");
                self.pending.extend(self.workers.on_completed(&id, now));
            }
        }
        // Still waiting for containers: the next heartbeat comes at the request interval.
        if self.workers.pending() > 0 {
            self.heartbeat_within(self.settings.heartbeat_pending);
        }
        Ok(())
    }

    /// Brings the next allocate call forward to at most `within` from now.
    fn heartbeat_within(&mut self, within: std::time::Duration) {
        let at = tokio::time::Instant::now() + within;
        if at < self.next_heartbeat {
            self.next_heartbeat = at;
        }
    }

    /// Carries out one worker pool action: asks and releases go into the next allocate
    /// request; launches run in the background and report to [`AllocateLoop::on_launched`].
    fn perform(&mut self, action: Action) {
        match action {
            Action::Ask(n) => {
                tracing::info!(containers = n, "container request (total outstanding)");
                self.request.asks = vec![ResourceAsk {
                    priority: TM_PRIORITY,
                    capability: self.settings.taskmanager_resource,
                    num_containers: n as i32,
                }];
                // The RM allocates on NodeManager heartbeats only after it has the ask.
                self.heartbeat_within(std::time::Duration::ZERO);
            }
            Action::Stop { container, reason } => {
                tracing::warn!(container = %container, reason = %reason, "stopping container");
                self.stop_container(&container);
            }
            Action::Release { container, reason } => {
                tracing::info!(container = %container, reason = %reason, "releasing container");
                match self.allocated.get(&container) {
                    Some(c) => self.request.releases.push(c.id),
                    None => {
                        if let Ok(id) = container.parse() {
                            self.request.releases.push(id)
                        }
                    }
                }
            }
            Action::Blocklist { node } => {
                tracing::warn!(node = %node, "node blocklisted after repeated start failures");
                self.request.blocklist_additions.push(node);
            }
            Action::Unblock { node } => self.request.blocklist_removals.push(node),
            Action::Launch { container, node } => self.start_container(container, node),
        }
    }

    fn start_container(&mut self, container: String, node: String) {
        let Some(c) = self.allocated.get(&container).cloned() else {
            self.launches
                .spawn(async move { (container, Err("allocation unknown".into())) });
            return;
        };
        let Some(token) = self.am.nm_token(&c.node).cloned() else {
            self.launches
                .spawn(async move { (container, Err(format!("no NMToken for node {node}"))) });
            return;
        };
        let ctx = launch::taskmanager_context(
            &self.launch.files,
            &self.launch.application_id,
            self.settings.slots_per_taskmanager,
            self.launch.env.clone(),
            &self.settings.start_command_template,
        );
        self.launches.spawn(async move {
            let r = NmClient::new()
                .start_container(&c, &token, &ctx)
                .await
                .map_err(|e| e.to_string());
            (container, r)
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_diagnostics_count_over_each_jobs_whole_life() {
        let outcome = JobOutcome {
            job_id: "j".into(),
            status: JobStatus::Finished,
            // Under this attempt only.
            restarts: 0,
            failure: None,
            completed_checkpoints: 3,
            failed_checkpoints: 0,
            checkpoint_durations: Vec::new(),
            restored_from: Some(9),
            failures: Vec::new(),
            recovery_failed: false,
            lifetime: LifetimeCounts {
                completed_checkpoints: 12,
                failed_checkpoints: 1,
                restarts: 6,
                failovers: 7,
            },
        };
        let earlier = [
            EarlierResult {
                job_id: "k".into(),
                status: JobStatus::Finished,
                failure: None,
                lifetime: Some(LifetimeCounts {
                    completed_checkpoints: 4,
                    failed_checkpoints: 0,
                    restarts: 1,
                    failovers: 2,
                }),
            },
            EarlierResult {
                job_id: "old".into(),
                status: JobStatus::Canceled,
                failure: Some("by the user".into()),
                lifetime: None,
            },
        ];
        let (status, diagnostics) = final_status(&[outcome], &earlier);
        assert_eq!(status, FinalApplicationStatus::Killed);
        assert_eq!(
            diagnostics,
            "job j FINISHED: 12 checkpoints, 6 restarts, 7 failovers\n\
             job k FINISHED (under an earlier attempt): 4 checkpoints, 1 restarts, 2 failovers\n\
             job old CANCELED (under an earlier attempt); cause: by the user"
        );
    }
}
