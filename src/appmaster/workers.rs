//! TaskManager containers as the ApplicationMaster sees them: how many the JobManager needs, which
//! are requested, allocated, starting, registered or gone, and when to ask YARN for more.
//!
//! This is Flink's `ActiveResourceManager` + `YarnResourceManagerDriver` bookkeeping as one pure
//! state machine: events go in ([`WorkerPool::on_allocated`], [`WorkerPool::on_completed`], ...),
//! [`Action`]s come out, and the caller (the allocate loop) performs them. No I/O, no clock of
//! its own (every call takes `now`), so every rule is unit-tested.
//!
//! Rules, with the Flink pain point each one fixes:
//! * the ask is the *total outstanding* count and only changes when the need does (no request
//!   storm, FLINK-12342); surplus allocations are released at once (FLINK-8613);
//! * containers of previous attempts are adopted and count toward the need; one that is merely
//!   slow to re-register is never replaced (FLINK-24713) — only its completion frees its place;
//! * a worker that dies before registering counts as a start failure; beyond
//!   `resourcemanager.start-worker.max-failure-rate` failures per minute, requests pause for
//!   `resourcemanager.start-worker.retry-interval` (FLINK-10868);
//! * a node with `yarn.node-blocklist.max-start-failures` start failures is blocklisted for
//!   `cluster.resource-blocklist.item.timeout`; allocations on it are released;
//! * a registered TaskManager whose connection to the JobManager breaks while it runs subtasks
//!   (a killed process, almost always) is replaced at once, not after YARN's completed-container
//!   report: it stops counting toward the need. If it registers again (a network blip) it counts
//!   again; if it neither registers nor completes within `heartbeat.timeout`, it is stopped.
//!
//! ```text
//!            allocate() response                 NM startContainers ok        TM registers
//! (ask) ───────────────────────▶ Allocated ──────────────────▶ Started ───────────────▶ Registered
//!                                   │ start failed                 │ completed               │ completed
//!                                   ▼                              ▼                         ▼
//!                                 gone (start failure)        gone (start failure)      gone (replacement)
//! previous attempt: Recovered ── TM registers ──▶ Registered;  completed ──▶ gone (replacement)
//! Registered ── connection lost ──▶ Disconnected (replaced now) ── registers ──▶ Registered
//!                                        │ completed: gone │ heartbeat.timeout: stopped, gone
//! ```

use std::collections::{BTreeMap, BTreeSet, VecDeque};
use std::time::{Duration, Instant};

use crate::config::{Config, ConfigError};

/// Where one TaskManager container is in its life.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WorkerState {
    /// Allocated by the RM; launch not yet confirmed by the NodeManager.
    Allocated,
    /// The NodeManager started it; the TaskManager has not registered yet.
    Started,
    /// Its TaskManager registered with the JobManager.
    Registered,
    /// Adopted from a previous attempt; its TaskManager has not re-registered yet.
    Recovered,
    /// Its TaskManager's connection broke while it ran subtasks: already replaced, no longer
    /// counted toward the need, waiting for YARN's completion (or a re-registration).
    Disconnected,
}

impl WorkerState {
    /// Whether the worker's TaskManager has registered at least once.
    fn ever_registered(self) -> bool {
        matches!(self, WorkerState::Registered | WorkerState::Disconnected)
    }
}

#[derive(Debug, Clone)]
struct Worker {
    node: String,
    state: WorkerState,
    /// Requested by this attempt (only those count as start failures).
    this_attempt: bool,
    /// When it became [`WorkerState::Disconnected`].
    disconnected_at: Option<Instant>,
}

/// What the allocate loop must do.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Action {
    /// Set the outstanding container ask to this total (YARN replaces the previous value).
    Ask(u32),
    /// Launch a TaskManager in this freshly allocated container.
    Launch { container: String, node: String },
    /// Give this container back to YARN (surplus or blocklisted node).
    Release { container: String, reason: String },
    /// Add this node to the AM's blocklist (allocate's blacklist additions).
    Blocklist { node: String },
    /// Remove this node from the blocklist.
    Unblock { node: String },
    /// Stop this container at its NodeManager and release it (a TaskManager that stayed
    /// disconnected).
    Stop { container: String, reason: String },
}

/// Tuning, from Flink's keys.
#[derive(Debug, Clone)]
pub struct WorkerPoolConfig {
    /// `resourcemanager.start-worker.max-failure-rate` (failures per minute).
    pub max_start_failure_rate: f64,
    /// `resourcemanager.start-worker.retry-interval`.
    pub start_retry_interval: Duration,
    /// `yarn.node-blocklist.max-start-failures` (0 disables the blocklist).
    pub node_max_start_failures: u32,
    /// `cluster.resource-blocklist.item.timeout`.
    pub blocklist_timeout: Duration,
    /// `heartbeat.timeout`: how long a disconnected TaskManager may take to register again
    /// before its container is stopped.
    pub disconnected_timeout: Duration,
}

impl Default for WorkerPoolConfig {
    /// The built-in defaults (`conf/yarnflow.yaml`).
    fn default() -> Self {
        WorkerPoolConfig::from_config(&Config::defaults())
            .expect("the built-in defaults are valid (unit-tested)")
    }
}

impl WorkerPoolConfig {
    pub fn from_config(config: &Config) -> Result<Self, ConfigError> {
        Ok(WorkerPoolConfig {
            max_start_failure_rate: config
                .value(Config::f64, "resourcemanager.start-worker.max-failure-rate")?,
            start_retry_interval: config.value(
                Config::duration,
                "resourcemanager.start-worker.retry-interval",
            )?,
            node_max_start_failures: config
                .value(Config::u64, "yarn.node-blocklist.max-start-failures")?
                .min(u32::MAX as u64) as u32,
            blocklist_timeout: config
                .value(Config::duration, "cluster.resource-blocklist.item.timeout")?,
            disconnected_timeout: config.value(Config::duration, "heartbeat.timeout")?,
        })
    }
}

/// Counts events in a sliding one-minute window (Flink's `ThresholdMeter`).
#[derive(Debug, Clone)]
struct ThresholdMeter {
    per_minute: f64,
    events: VecDeque<Instant>,
}

impl ThresholdMeter {
    const WINDOW: Duration = Duration::from_secs(60);

    fn mark(&mut self, now: Instant) {
        self.events.push_back(now);
        self.expire(now);
    }

    fn expire(&mut self, now: Instant) {
        while let Some(first) = self.events.front() {
            if now.duration_since(*first) >= Self::WINDOW {
                self.events.pop_front();
            } else {
                break;
            }
        }
    }

    fn exceeded(&mut self, now: Instant) -> bool {
        self.expire(now);
        self.events.len() as f64 > self.per_minute
    }
}

/// The AM's TaskManager containers.
#[derive(Debug)]
pub struct WorkerPool {
    config: WorkerPoolConfig,
    /// TaskManagers the JobManager needs.
    desired: u32,
    workers: BTreeMap<String, Worker>,
    /// The ask last sent to YARN.
    asked: Option<u32>,
    /// Containers requested and not yet allocated.
    pending: u32,
    meter: ThresholdMeter,
    /// No new requests before this instant (start-failure cool-down).
    cooldown_until: Option<Instant>,
    node_failures: BTreeMap<String, u32>,
    blocklisted: BTreeMap<String, Instant>,
    /// Totals for status and metrics.
    pub stats: WorkerStats,
}

/// Counters over the life of this attempt.
#[derive(Debug, Default, Clone, PartialEq, Eq, serde::Serialize)]
pub struct WorkerStats {
    pub requested: u64,
    pub allocated: u64,
    pub released: u64,
    pub start_failures: u64,
    /// Containers that failed to start (NodeManager refused) or completed while ours.
    pub failed: u64,
    pub completed: u64,
    pub replacements: u64,
    pub recovered: u64,
}

impl WorkerPool {
    pub fn new(config: WorkerPoolConfig) -> WorkerPool {
        let meter = ThresholdMeter {
            per_minute: config.max_start_failure_rate,
            events: VecDeque::new(),
        };
        WorkerPool {
            config,
            desired: 0,
            workers: BTreeMap::new(),
            asked: None,
            pending: 0,
            meter,
            cooldown_until: None,
            node_failures: BTreeMap::new(),
            blocklisted: BTreeMap::new(),
            stats: WorkerStats::default(),
        }
    }

    /// The JobManager's need changed.
    pub fn set_desired(&mut self, n: u32, now: Instant) -> Vec<Action> {
        self.desired = n;
        self.reconcile(now)
    }

    pub fn desired(&self) -> u32 {
        self.desired
    }

    /// Containers of previous attempts that YARN kept running (register response).
    pub fn on_recovered(&mut self, containers: &[(String, String)], now: Instant) -> Vec<Action> {
        for (container, node) in containers {
            self.stats.recovered += 1;
            self.workers.insert(
                container.clone(),
                Worker {
                    node: node.clone(),
                    state: WorkerState::Recovered,
                    this_attempt: false,
                    disconnected_at: None,
                },
            );
        }
        self.reconcile(now)
    }

    /// A container arrived in an allocate response.
    pub fn on_allocated(&mut self, container: &str, node: &str, now: Instant) -> Vec<Action> {
        self.stats.allocated += 1;
        self.pending = self.pending.saturating_sub(1);
        let mut actions = Vec::new();
        if self.is_blocklisted(node, now) {
            self.stats.released += 1;
            actions.push(Action::Release {
                container: container.to_string(),
                reason: format!("node {node} is blocklisted after repeated start failures"),
            });
        } else if self.live() >= self.desired {
            self.stats.released += 1;
            actions.push(Action::Release {
                container: container.to_string(),
                reason: "surplus allocation".into(),
            });
        } else {
            self.workers.insert(
                container.to_string(),
                Worker {
                    node: node.to_string(),
                    state: WorkerState::Allocated,
                    this_attempt: true,
                    disconnected_at: None,
                },
            );
            actions.push(Action::Launch {
                container: container.to_string(),
                node: node.to_string(),
            });
        }
        actions.extend(self.reconcile(now));
        actions
    }

    /// The NodeManager accepted `startContainers`.
    pub fn on_started(&mut self, container: &str) {
        if let Some(w) = self.workers.get_mut(container)
            && w.state == WorkerState::Allocated
        {
            w.state = WorkerState::Started;
        }
    }

    /// The NodeManager refused to start the container.
    pub fn on_start_failed(&mut self, container: &str, now: Instant) -> Vec<Action> {
        match self.workers.remove(container) {
            Some(w) => {
                self.stats.failed += 1;
                let mut actions = self.record_start_failure(&w.node, now);
                actions.push(Action::Release {
                    container: container.to_string(),
                    reason: "the NodeManager could not start it".into(),
                });
                self.stats.released += 1;
                actions.extend(self.reconcile(now));
                actions
            }
            None => Vec::new(),
        }
    }

    /// A TaskManager running in `container` registered with the JobManager. A disconnected
    /// one counts toward the need again, so an ask still outstanding for its replacement
    /// shrinks.
    pub fn on_registered(&mut self, container: &str, now: Instant) -> Vec<Action> {
        let Some(w) = self.workers.get_mut(container) else {
            return Vec::new();
        };
        let was = w.state;
        w.state = WorkerState::Registered;
        w.disconnected_at = None;
        if let Some(count) = self.node_failures.get_mut(&w.node) {
            *count = 0;
        }
        if was == WorkerState::Disconnected {
            self.reconcile(now)
        } else {
            Vec::new()
        }
    }

    /// The JobManager saw `container`'s TaskManager hang up while it ran subtasks: ask for its
    /// replacement now (the completed-container report would come a heartbeat or more later).
    pub fn on_disconnected(&mut self, container: &str, now: Instant) -> Vec<Action> {
        let Some(w) = self.workers.get_mut(container) else {
            return Vec::new();
        };
        if w.state != WorkerState::Registered {
            return Vec::new();
        }
        w.state = WorkerState::Disconnected;
        w.disconnected_at = Some(now);
        if self.live() < self.desired {
            self.stats.replacements += 1;
        }
        self.reconcile(now)
    }

    /// YARN reported the container completed (any exit status).
    pub fn on_completed(&mut self, container: &str, now: Instant) -> Vec<Action> {
        let Some(w) = self.workers.remove(container) else {
            // Released by us or unknown: nothing to replace.
            return self.reconcile(now);
        };
        self.stats.completed += 1;
        self.stats.failed += 1;
        let mut actions = Vec::new();
        if w.this_attempt && !w.state.ever_registered() {
            actions.extend(self.record_start_failure(&w.node, now));
        }
        // A disconnected one was replaced when it disconnected.
        if w.state != WorkerState::Disconnected && self.live() < self.desired {
            self.stats.replacements += 1;
        }
        actions.extend(self.reconcile(now));
        actions
    }

    /// Time passed: expire blocklist entries and end a cool-down.
    pub fn tick(&mut self, now: Instant) -> Vec<Action> {
        let mut actions = Vec::new();
        let expired: Vec<String> = self
            .blocklisted
            .iter()
            .filter(|(_, until)| now >= **until)
            .map(|(n, _)| n.clone())
            .collect();
        for node in expired {
            self.blocklisted.remove(&node);
            self.node_failures.remove(&node);
            actions.push(Action::Unblock { node });
        }
        let timeout = self.config.disconnected_timeout;
        let silent: Vec<String> = self
            .workers
            .iter()
            .filter(|(_, w)| w.disconnected_at.is_some_and(|t| now >= t + timeout))
            .map(|(c, _)| c.clone())
            .collect();
        for container in silent {
            self.workers.remove(&container);
            self.stats.completed += 1;
            self.stats.failed += 1;
            self.stats.released += 1;
            actions.push(Action::Stop {
                container,
                reason: format!(
                    "its TaskManager disconnected and did not register again within {timeout:?}"
                ),
            });
        }
        actions.extend(self.reconcile(now));
        actions
    }

    /// Containers asked for and not yet allocated: while there are any, the AM heartbeats at
    /// `yarn.heartbeat.container-request-interval`.
    pub fn pending(&self) -> u32 {
        self.pending
    }

    /// Whether new requests are paused by the start-failure rate limit.
    pub fn in_cooldown(&self, now: Instant) -> bool {
        self.cooldown_until.is_some_and(|t| now < t)
    }

    /// The state of one container, if it is ours.
    pub fn state(&self, container: &str) -> Option<WorkerState> {
        self.workers.get(container).map(|w| w.state)
    }

    /// Containers and their nodes, for status output.
    pub fn workers(&self) -> impl Iterator<Item = (&str, &str, WorkerState)> {
        self.workers
            .iter()
            .map(|(c, w)| (c.as_str(), w.node.as_str(), w.state))
    }

    pub fn blocklisted_nodes(&self) -> BTreeSet<&str> {
        self.blocklisted.keys().map(String::as_str).collect()
    }

    /// Workers that count toward the need: any state but disconnected.
    fn live(&self) -> u32 {
        self.workers
            .values()
            .filter(|w| w.state != WorkerState::Disconnected)
            .count() as u32
    }

    fn is_blocklisted(&self, node: &str, now: Instant) -> bool {
        self.blocklisted.get(node).is_some_and(|until| now < *until)
    }

    fn record_start_failure(&mut self, node: &str, now: Instant) -> Vec<Action> {
        self.stats.start_failures += 1;
        self.meter.mark(now);
        if self.meter.exceeded(now) {
            self.cooldown_until = Some(now + self.config.start_retry_interval);
        }
        let mut actions = Vec::new();
        if self.config.node_max_start_failures > 0 {
            let count = self.node_failures.entry(node.to_string()).or_default();
            *count += 1;
            if *count >= self.config.node_max_start_failures && !self.blocklisted.contains_key(node)
            {
                self.blocklisted
                    .insert(node.to_string(), now + self.config.blocklist_timeout);
                actions.push(Action::Blocklist {
                    node: node.to_string(),
                });
            }
        }
        actions
    }

    /// Brings the outstanding ask in line with the need.
    fn reconcile(&mut self, now: Instant) -> Vec<Action> {
        let missing = self.desired.saturating_sub(self.live());
        let want = if missing > self.pending && self.in_cooldown(now) {
            // Keep what is already asked for, add nothing during the cool-down.
            self.pending.min(missing)
        } else {
            missing
        };
        if want > self.pending {
            self.stats.requested += u64::from(want - self.pending);
        }
        self.pending = want;
        if self.asked != Some(want) {
            self.asked = Some(want);
            vec![Action::Ask(want)]
        } else {
            Vec::new()
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pool() -> WorkerPool {
        WorkerPool::new(WorkerPoolConfig::default())
    }

    fn launches(actions: &[Action]) -> usize {
        actions
            .iter()
            .filter(|a| matches!(a, Action::Launch { .. }))
            .count()
    }

    #[test]
    fn asks_for_the_need_once_and_launches_allocations() {
        let now = Instant::now();
        let mut p = pool();
        assert_eq!(p.set_desired(2, now), vec![Action::Ask(2)]);
        // Same need again: no new ask (no request storm).
        assert_eq!(p.set_desired(2, now), vec![]);
        let a = p.on_allocated("c1", "n1:1", now);
        assert_eq!(launches(&a), 1);
        assert!(a.contains(&Action::Ask(1)));
        let a = p.on_allocated("c2", "n2:1", now);
        assert_eq!(launches(&a), 1);
        assert!(a.contains(&Action::Ask(0)));
        // A late extra allocation is surplus and goes back at once.
        let a = p.on_allocated("c3", "n1:1", now);
        assert!(matches!(&a[0], Action::Release { container, .. } if container == "c3"));
        assert_eq!(p.stats.released, 1);
    }

    #[test]
    fn a_registered_worker_that_dies_is_replaced() {
        let now = Instant::now();
        let mut p = pool();
        p.set_desired(1, now);
        p.on_allocated("c1", "n1:1", now);
        p.on_started("c1");
        assert_eq!(p.on_registered("c1", now), vec![]);
        assert_eq!(p.state("c1"), Some(WorkerState::Registered));
        let a = p.on_completed("c1", now);
        assert_eq!(a, vec![Action::Ask(1)]);
        assert_eq!(p.stats.replacements, 1);
        assert_eq!(p.stats.start_failures, 0);
    }

    #[test]
    fn recovered_containers_count_and_are_not_replaced_while_slow() {
        let now = Instant::now();
        let mut p = pool();
        let a = p.on_recovered(
            &[
                ("old1".into(), "n1:1".into()),
                ("old2".into(), "n2:1".into()),
            ],
            now,
        );
        // Nothing needed yet.
        assert_eq!(a, vec![Action::Ask(0)]);
        // The job needs 2: the two recovered workers cover it, even unregistered.
        assert_eq!(p.set_desired(2, now), vec![]);
        let later = now + Duration::from_secs(120);
        assert_eq!(p.tick(later), vec![]);
        assert_eq!(p.state("old1"), Some(WorkerState::Recovered));
        p.on_registered("old1", later);
        // One that really died is replaced, without counting as a start failure.
        assert_eq!(p.on_completed("old2", later), vec![Action::Ask(1)]);
        assert_eq!(p.stats.start_failures, 0);
    }

    #[test]
    fn start_failures_beyond_the_rate_pause_requests() {
        let mut p = WorkerPool::new(WorkerPoolConfig {
            max_start_failure_rate: 2.0,
            node_max_start_failures: 0,
            ..WorkerPoolConfig::default()
        });
        let t0 = Instant::now();
        p.set_desired(1, t0);
        let mut asks = 0;
        let mut outstanding = 1;
        let mut t = t0;
        for i in 0..10 {
            // YARN allocates only what is asked for.
            if outstanding > 0 {
                let c = format!("c{i}");
                for a in p
                    .on_allocated(&c, "n1:1", t)
                    .into_iter()
                    .chain(p.on_completed(&c, t))
                {
                    if let Action::Ask(n) = a {
                        outstanding = n;
                        if n == 1 {
                            asks += 1;
                        }
                    }
                }
            }
            t += Duration::from_millis(100);
        }
        // Two failures are tolerated per minute; the third starts a 3 s cool-down, during which
        // nothing new is asked for.
        assert_eq!(p.stats.start_failures, 3);
        assert_eq!(asks, 2);
        assert!(p.in_cooldown(t));
        let after = t0 + Duration::from_secs(4);
        assert_eq!(p.tick(after), vec![Action::Ask(1)]);
    }

    #[test]
    fn a_node_with_repeated_start_failures_is_blocklisted_then_unblocked() {
        let mut p = WorkerPool::new(WorkerPoolConfig {
            max_start_failure_rate: 100.0,
            node_max_start_failures: 2,
            blocklist_timeout: Duration::from_secs(60),
            ..WorkerPoolConfig::default()
        });
        let t0 = Instant::now();
        p.set_desired(1, t0);
        p.on_allocated("c1", "bad:1", t0);
        p.on_completed("c1", t0);
        p.on_allocated("c2", "bad:1", t0);
        let a = p.on_completed("c2", t0);
        assert!(a.contains(&Action::Blocklist {
            node: "bad:1".into()
        }));
        let a = p.on_allocated("c3", "bad:1", t0);
        assert!(matches!(&a[0], Action::Release { reason, .. } if reason.contains("blocklisted")));
        assert_eq!(launches(&p.on_allocated("c4", "good:1", t0)), 1);
        let a = p.tick(t0 + Duration::from_secs(61));
        assert!(a.contains(&Action::Unblock {
            node: "bad:1".into()
        }));
    }

    #[test]
    fn a_start_refused_by_the_nodemanager_counts_and_releases() {
        let now = Instant::now();
        let mut p = pool();
        p.set_desired(1, now);
        p.on_allocated("c1", "n1:1", now);
        let a = p.on_start_failed("c1", now);
        assert!(
            a.iter()
                .any(|a| matches!(a, Action::Release { container, .. } if container == "c1"))
        );
        assert!(a.contains(&Action::Ask(1)));
        assert_eq!(p.stats.start_failures, 1);
    }

    #[test]
    fn lowering_the_need_cancels_outstanding_asks() {
        let now = Instant::now();
        let mut p = pool();
        p.set_desired(3, now);
        assert_eq!(p.set_desired(1, now), vec![Action::Ask(1)]);
        assert_eq!(p.set_desired(0, now), vec![Action::Ask(0)]);
    }

    fn registered(p: &mut WorkerPool, container: &str, now: Instant) {
        p.on_allocated(container, "n1:1", now);
        p.on_started(container);
        p.on_registered(container, now);
    }

    #[test]
    fn a_disconnected_worker_is_replaced_at_once_and_not_again_when_it_completes() {
        let now = Instant::now();
        let mut p = pool();
        p.set_desired(2, now);
        registered(&mut p, "c1", now);
        registered(&mut p, "c2", now);
        assert_eq!(p.pending(), 0);
        assert_eq!(p.on_disconnected("c1", now), vec![Action::Ask(1)]);
        assert_eq!(p.pending(), 1);
        assert_eq!(p.stats.replacements, 1);
        // A second report of the same loss changes nothing.
        assert_eq!(p.on_disconnected("c1", now), vec![]);
        // YARN's report of the killed container comes later: no second replacement.
        assert_eq!(p.on_completed("c1", now), vec![]);
        assert_eq!(p.stats.replacements, 1);
        assert_eq!(p.stats.start_failures, 0);
        let a = p.on_allocated("c3", "n1:1", now);
        assert_eq!(launches(&a), 1);
        assert!(a.contains(&Action::Ask(0)));
        assert_eq!(p.pending(), 0);
    }

    #[test]
    fn a_disconnected_worker_that_registers_again_cancels_its_replacement() {
        let now = Instant::now();
        let mut p = pool();
        p.set_desired(1, now);
        registered(&mut p, "c1", now);
        assert_eq!(p.on_disconnected("c1", now), vec![Action::Ask(1)]);
        assert_eq!(p.on_registered("c1", now), vec![Action::Ask(0)]);
        assert_eq!(p.state("c1"), Some(WorkerState::Registered));
        // Not a re-registration: no ask change.
        assert_eq!(p.on_registered("c1", now), vec![]);
    }

    #[test]
    fn a_worker_disconnected_beyond_the_heartbeat_timeout_is_stopped() {
        let now = Instant::now();
        let mut p = pool();
        p.set_desired(1, now);
        registered(&mut p, "c1", now);
        p.on_disconnected("c1", now);
        let deadline = now + WorkerPoolConfig::default().disconnected_timeout;
        assert!(p.tick(deadline - Duration::from_millis(1)).is_empty());
        let a = p.tick(deadline);
        assert!(matches!(&a[0], Action::Stop { container, .. } if container == "c1"));
        assert_eq!(p.state("c1"), None);
        // Its replacement is still asked for, once.
        assert_eq!(p.pending(), 1);
    }

    #[test]
    fn only_a_registered_worker_can_disconnect() {
        let now = Instant::now();
        let mut p = pool();
        p.set_desired(1, now);
        p.on_allocated("c1", "n1:1", now);
        assert_eq!(p.on_disconnected("c1", now), vec![]);
        assert_eq!(p.on_disconnected("unknown", now), vec![]);
        assert_eq!(p.state("c1"), Some(WorkerState::Allocated));
    }
}
