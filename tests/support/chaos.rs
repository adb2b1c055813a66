//! The chaos run (issue 11, item 11): one exactly-once job on YARN with ZooKeeper HA, and N
//! faults of every kind injected at random, one after another, each once the job runs again
//! and has completed a checkpoint since the last one. Shared by `cargo bench --bench chaos`
//! (any seed and count; prints the figures) and the faults binary's short chaos test (one
//! fixed seed; asserts them).
//!
//! The faults are real: `yarn/minicluster/run kill|pause|resume|zk|nn|dn` against the mini
//! cluster (2 DataNodes, replication 2, so a stopped DataNode degrades HDFS instead of
//! stopping it).

use std::fmt;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use rand::rngs::StdRng;
use rand::seq::{IndexedRandom, SliceRandom};
use rand::{Rng, SeedableRng};

use super::MiniCluster;
use super::yarn_app::{self, Leftovers, Output};
use yarnflow::hadoop::rest::RmRest;

/// One kind of fault.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FaultKind {
    /// SIGKILL of the current ApplicationMaster container: YARN starts the next attempt.
    AmKill,
    /// SIGKILL of a busy TaskManager container: the AM requests a replacement.
    TmKill,
    /// SIGSTOP of a busy TaskManager container for longer than `heartbeat.timeout`: only the
    /// JobManager's heartbeats notice; the AM stops it and requests a replacement.
    TmPause,
    /// The ZooKeeper server stopped for a few seconds.
    ZkStop,
    /// The NameNode restarted (same data, same ports).
    NnRestart,
    /// A DataNode stopped for a few seconds, then started again.
    DnStop,
}

impl FaultKind {
    pub const ALL: [FaultKind; 6] = [
        FaultKind::AmKill,
        FaultKind::TmKill,
        FaultKind::TmPause,
        FaultKind::ZkStop,
        FaultKind::NnRestart,
        FaultKind::DnStop,
    ];
}

impl fmt::Display for FaultKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.pad(match self {
            FaultKind::AmKill => "AM SIGKILL",
            FaultKind::TmKill => "TaskManager SIGKILL",
            FaultKind::TmPause => "TaskManager pause",
            FaultKind::ZkStop => "ZooKeeper stop",
            FaultKind::NnRestart => "NameNode restart",
            FaultKind::DnStop => "DataNode stop",
        })
    }
}

/// `heartbeat.timeout` of the chaos job; a pause lasts longer.
pub const HEARTBEAT_TIMEOUT: Duration = Duration::from_secs(5);
/// How long a ZooKeeper stop or a DataNode stop lasts.
const OUTAGE: Duration = Duration::from_secs(3);
/// How long the job may take to run again after a fault (three times the slowest expected
/// recovery, a pause: the heartbeat timeout, a replacement container, redeployment).
const SETTLE: Duration = Duration::from_secs(60);
/// The job's source rate (records per second, all subtasks).
const RATE: u64 = 20_000;

/// A chaos run to do: `faults` in order, from `seed`.
#[derive(Debug, Clone)]
pub struct Plan {
    pub seed: u64,
    pub faults: Vec<FaultKind>,
    /// Records of the job (`0..records`), enough to outlast the faults.
    pub records: u64,
}

impl Plan {
    /// `n` faults: with `n >= 6`, each kind once among the first six, then kinds at random; the
    /// order, the gaps and the victims all follow from `seed`.
    pub fn new(seed: u64, n: usize) -> Plan {
        let mut rng = StdRng::seed_from_u64(seed);
        let mut first = FaultKind::ALL.to_vec();
        first.shuffle(&mut rng);
        let mut faults: Vec<FaultKind> = first.into_iter().take(n).collect();
        while faults.len() < n {
            faults.push(*FaultKind::ALL.choose(&mut rng).unwrap());
        }
        // About 9 s of running per fault (a gap, recovery and a checkpoint: the faults take
        // 2-4 s of the job's running time each), and 60 s at least.
        let records = RATE * (9 * n as u64).max(60);
        Plan {
            seed,
            faults,
            records,
        }
    }
}

/// One injected fault.
#[derive(Debug, Clone)]
pub struct Injected {
    pub kind: FaultKind,
    /// Since the job was submitted.
    pub at: Duration,
    /// The victim or the fault verb's answer.
    pub detail: String,
    /// From the fault to the job RUNNING again (restarted, where the fault must restart it);
    /// `None` if it never was (the job may also have ended meanwhile).
    pub running_after: Option<Duration>,
    /// From the fault to the first checkpoint completed after it was over.
    pub recovered_after: Option<Duration>,
}

/// What a chaos run did and left.
#[derive(Debug, Clone)]
pub struct Report {
    pub seed: u64,
    pub app: String,
    pub injected: Vec<Injected>,
    /// Faults of the plan not injected because the job had ended or had not recovered.
    pub skipped: usize,
    pub state: String,
    pub final_status: String,
    pub diagnostics: String,
    pub records: u64,
    pub output: Output,
    pub leftovers: Leftovers,
    pub elapsed: Duration,
}

impl Report {
    /// FINISHED/SUCCEEDED, exactly once, nothing left behind.
    pub fn passed(&self) -> bool {
        self.state == "FINISHED"
            && self.final_status == "SUCCEEDED"
            && self.output.exactly_once()
            && self.output.records == self.records
            && self.leftovers.is_empty()
    }

    /// The kinds of fault the run never injected.
    pub fn kinds_missing(&self) -> Vec<FaultKind> {
        FaultKind::ALL
            .into_iter()
            .filter(|k| !self.injected.iter().any(|i| i.kind == *k))
            .collect()
    }
}

impl fmt::Display for Report {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(f, "chaos: {} faults on {}", self.injected.len(), self.app)?;
        for (n, i) in self.injected.iter().enumerate() {
            let secs = |d: Option<Duration>| match d {
                Some(d) => format!("{:.1} s", d.as_secs_f64()),
                None => "never".to_string(),
            };
            let recovered = format!(
                "RUNNING after {}, checkpoint after {}",
                secs(i.running_after),
                secs(i.recovered_after)
            );
            writeln!(
                f,
                "  {:>3}  t={:>7.1} s  {:<20} {:<44} {recovered}",
                n + 1,
                i.at.as_secs_f64(),
                i.kind.to_string(),
                i.detail
            )?;
        }
        for kind in FaultKind::ALL {
            let times: Vec<f64> = self
                .injected
                .iter()
                .filter(|i| i.kind == kind)
                .filter_map(|i| i.running_after.map(|d| d.as_secs_f64()))
                .collect();
            if !times.is_empty() {
                let max = times.iter().cloned().fold(0.0, f64::max);
                let mean = times.iter().sum::<f64>() / times.len() as f64;
                writeln!(
                    f,
                    "  {kind:<20} x{:<3} to RUNNING: mean {mean:.1} s, max {max:.1} s",
                    times.len()
                )?;
            }
        }
        writeln!(f, "skipped faults:   {}", self.skipped)?;
        writeln!(
            f,
            "final status:     {}/{} {}",
            self.state, self.final_status, self.diagnostics
        )?;
        writeln!(
            f,
            "records:          {} committed of {}",
            self.output.records, self.records
        )?;
        writeln!(f, "duplicates:       {}", self.output.duplicates)?;
        writeln!(f, "missing:          {}", self.output.missing)?;
        writeln!(f, "garbled lines:    {}", self.output.garbled)?;
        writeln!(
            f,
            "left behind:      {} znode(s), {} HA blob(s), staging directory {}",
            self.leftovers.znodes.len(),
            self.leftovers.blobs.len(),
            if self.leftovers.staging {
                "present"
            } else {
                "removed"
            }
        )?;
        for z in &self.leftovers.znodes {
            writeln!(f, "    znode {z}")?;
        }
        for b in &self.leftovers.blobs {
            writeln!(f, "    blob  {b}")?;
        }
        writeln!(f, "elapsed:          {:.1} s", self.elapsed.as_secs_f64())?;
        write!(f, "seed:             {}", self.seed)
    }
}

/// The job's conf: ZooKeeper HA, heartbeats that notice a pause within 5 s, restarts without
/// a growing backoff, and attempts enough for every AM fault of the run.
fn conf(cluster: &MiniCluster, plan: &Plan) -> PathBuf {
    yarn_app::conf_dir(
        cluster,
        &format!("chaos-{}", plan.seed),
        &format!(
            "heartbeat.interval: 1 s\n\
             heartbeat.timeout: {} s\n\
             restart-strategy.type: fixed-delay\n\
             restart-strategy.fixed-delay.attempts: 1000\n\
             restart-strategy.fixed-delay.delay: 500 ms\n\
             yarn.application-attempts: {}\n",
            HEARTBEAT_TIMEOUT.as_secs(),
            plan.faults.len() + 2
        ),
    )
}

/// Runs `plan` on `cluster` (whose every other use must wait) and reports.
pub async fn run(cluster: &MiniCluster, plan: &Plan) -> Report {
    let rest = RmRest::new(cluster.rm_rest());
    let conf = conf(cluster, plan);
    let spec =
        yarn_app::exactly_once_spec(cluster, &format!("chaos-{}", plan.seed), plan.records, RATE);
    let t0 = Instant::now();
    let app = yarn_app::submit(cluster, &conf, spec.to_str().unwrap());
    let mut chaos = Chaos {
        cluster,
        rest: &rest,
        app: &app,
        rng: StdRng::seed_from_u64(plan.seed ^ 0x5eed),
        t0,
    };
    let mut injected = Vec::new();
    for kind in &plan.faults {
        if !chaos.settle(0).await.unwrap_or(false) {
            break;
        }
        let gap = Duration::from_millis(chaos.rng.random_range(0..2000));
        tokio::time::sleep(gap).await;
        let Some(fault) = chaos.inject(*kind).await else {
            break;
        };
        println!(
            "  t={:.1} s {kind}: {}",
            fault.at.as_secs_f64(),
            fault.detail
        );
        injected.push(fault);
    }
    let skipped = plan.faults.len() - injected.len();
    // The job, slowed by every restart, still has to end: give it its run time again.
    let within = Duration::from_secs(plan.records / RATE * 2 + 300);
    let report = yarn_app::wait_final(&rest, &app, within).await;
    let elapsed = t0.elapsed();
    Report {
        seed: plan.seed,
        injected,
        skipped,
        state: report.state,
        final_status: report.final_status,
        diagnostics: report.diagnostics,
        records: plan.records,
        output: yarn_app::output(cluster, &app, plan.records).await,
        leftovers: yarn_app::leftovers(cluster, &conf, &app).await,
        elapsed,
        app,
    }
}

/// The state of a run while it injects faults.
struct Chaos<'a> {
    cluster: &'a MiniCluster,
    rest: &'a RmRest,
    app: &'a str,
    rng: StdRng,
    t0: Instant,
}

impl Chaos<'_> {
    /// Waits until the job runs and has completed a checkpoint beyond `after` under the
    /// current attempt. `Some(false)` once the application is final (the job ended: nothing
    /// more to inject), `None` if it did not within [`SETTLE`].
    async fn settle(&self, after: u64) -> Option<bool> {
        let deadline = Instant::now() + SETTLE;
        while Instant::now() < deadline {
            if let Ok(r) = self.rest.application(self.app).await
                && r.is_final()
            {
                return Some(false);
            }
            if let Some((_, v)) = yarn_app::job_view(self.rest, self.app).await
                && v["status"] == "RUNNING"
                && v["completed_checkpoints"].as_u64().unwrap_or(0) > after
            {
                return Some(true);
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        None
    }

    /// Injects one fault of `kind` and waits for the job to run again; `None` when there is no
    /// victim (the job ended).
    async fn inject(&mut self, kind: FaultKind) -> Option<Injected> {
        let at = self.t0.elapsed();
        let started = Instant::now();
        let (attempt, am) = yarn_app::current_am_container(self.rest, self.app).await;
        let before = Before {
            attempt,
            restarts: self.restarts().await,
            kind,
        };
        let mut running_after = None;
        let detail = match kind {
            FaultKind::AmKill => {
                yarn_app::kill_container(self.cluster, &am);
                format!("attempt {attempt} {am}")
            }
            FaultKind::TmKill => {
                let tm = yarn_app::busy_taskmanager_container(self.rest, self.app).await?;
                yarn_app::kill_container(self.cluster, &tm);
                tm
            }
            FaultKind::TmPause => {
                let tm = yarn_app::busy_taskmanager_container(self.rest, self.app).await?;
                let pause = HEARTBEAT_TIMEOUT + Duration::from_secs(2);
                yarn_app::fault(self.cluster, "pause", &[&tm]);
                // Frozen, the TaskManager is lost by heartbeat and replaced while it stays so.
                running_after = self.running(&before, started).await;
                tokio::time::sleep(pause.saturating_sub(started.elapsed())).await;
                // The AM has stopped it by now; resuming a container that is gone fails.
                let _ = self.cluster.run("resume", &[&tm]);
                format!("{tm} for {} s", pause.as_secs())
            }
            FaultKind::ZkStop => {
                yarn_app::fault(self.cluster, "zk", &["stop"]);
                tokio::time::sleep(OUTAGE).await;
                yarn_app::fault(self.cluster, "zk", &["start"]);
                format!("for {} s", OUTAGE.as_secs())
            }
            FaultKind::NnRestart => yarn_app::fault(self.cluster, "nn", &["restart"])
                .trim()
                .trim_start_matches("minicluster: ")
                .to_string(),
            FaultKind::DnStop => {
                // `dn start` waits for the re-replication, so either may stop next time.
                let index = self
                    .rng
                    .random_range(0..self.cluster.datanodes())
                    .to_string();
                yarn_app::fault(self.cluster, "dn", &["stop", &index]);
                tokio::time::sleep(OUTAGE).await;
                yarn_app::fault(self.cluster, "dn", &["start", &index]);
                format!("DataNode {index} for {} s", OUTAGE.as_secs())
            }
        };
        if running_after.is_none() {
            running_after = self.running(&before, started).await;
        }
        // A checkpoint completed after the fault was over: the job makes progress again.
        let mut recovered_after = None;
        if running_after.is_some() {
            let now = self.checkpoints().await;
            if self.settle(now).await == Some(true) {
                recovered_after = Some(started.elapsed());
            }
        }
        Some(Injected {
            kind,
            at,
            detail,
            running_after,
            recovered_after,
        })
    }

    /// The completed checkpoints under the current attempt (0 if it does not answer).
    async fn checkpoints(&self) -> u64 {
        yarn_app::job_view(self.rest, self.app)
            .await
            .and_then(|(_, v)| v["completed_checkpoints"].as_u64())
            .unwrap_or(0)
    }

    /// The job's restarts under the current attempt (0 if it does not answer).
    async fn restarts(&self) -> u64 {
        yarn_app::job_view(self.rest, self.app)
            .await
            .and_then(|(_, v)| v["restarts"].as_u64())
            .unwrap_or(0)
    }

    /// Waits until the job runs again after a fault: under a later attempt after an AM kill,
    /// restarted after a TaskManager fault, RUNNING after any. Returns the time since
    /// `started`; `None` if the application ended or [`SETTLE`] passed first.
    async fn running(&self, before: &Before, started: Instant) -> Option<Duration> {
        let deadline = Instant::now() + SETTLE;
        while Instant::now() < deadline {
            if let Ok(r) = self.rest.application(self.app).await
                && r.is_final()
            {
                return None;
            }
            let (attempt, _) = yarn_app::current_am_container(self.rest, self.app).await;
            if let Some((_, v)) = yarn_app::job_view(self.rest, self.app).await
                && v["status"] == "RUNNING"
                && before.moved_on(attempt, v["restarts"].as_u64().unwrap_or(0))
            {
                return Some(started.elapsed());
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        None
    }
}

/// Where the job stood when a fault was injected.
struct Before {
    attempt: i64,
    restarts: u64,
    kind: FaultKind,
}

impl Before {
    /// Whether the job, at `attempt` with `restarts`, has reacted to the fault: a killed AM is
    /// replaced by a later attempt, a lost TaskManager restarts the job. Other faults need not
    /// restart anything.
    fn moved_on(&self, attempt: i64, restarts: u64) -> bool {
        match self.kind {
            FaultKind::AmKill => attempt > self.attempt,
            FaultKind::TmKill | FaultKind::TmPause => {
                attempt > self.attempt || restarts > self.restarts
            }
            FaultKind::ZkStop | FaultKind::NnRestart | FaultKind::DnStop => true,
        }
    }
}
