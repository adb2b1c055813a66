//! The JobManager ApplicationMaster's settings, read once from the configuration (every key has
//! its default in `conf/yarnflow.yaml`).

use std::time::Duration;

use super::workers::WorkerPoolConfig;
use crate::config::{Config, ConfigError};
use crate::hadoop::yarn::Resource;

#[derive(Debug, Clone)]
pub struct AmConfig {
    /// `taskmanager.numberOfTaskSlots` (at least 1).
    pub slots_per_taskmanager: u32,
    /// A TaskManager container: `taskmanager.memory.process.size`, and `yarn.containers.vcores`
    /// (-1: one per slot, Flink's rule).
    pub taskmanager_resource: Resource,
    /// The allocate heartbeat while no container request is outstanding:
    /// `yarn.heartbeat.interval` (Flink: 5 s). It keeps the attempt alive and brings YARN's
    /// container reports; a lost TaskManager is noticed from its connection, not from these.
    pub heartbeat: Duration,
    /// The allocate heartbeat while containers are requested:
    /// `yarn.heartbeat.container-request-interval` (Flink: 500 ms), or the idle one if that is
    /// shorter.
    pub heartbeat_pending: Duration,
    /// `yarn.container-start-command-template`.
    pub start_command_template: String,
    /// Start-failure rate limit and node blocklist.
    pub workers: WorkerPoolConfig,
}

impl AmConfig {
    pub fn from_config(config: &Config) -> Result<AmConfig, ConfigError> {
        let slots = config
            .value(Config::u64, "taskmanager.numberOfTaskSlots")?
            .clamp(1, u64::from(u32::MAX)) as u32;
        let memory = config.value(Config::memory_bytes, "taskmanager.memory.process.size")?;
        let vcores = match config.value(Config::i64, "yarn.containers.vcores")? {
            v if v > 0 => v.min(i64::from(i32::MAX)) as i32,
            _ => slots.min(i32::MAX as u32) as i32,
        };
        let heartbeat = config
            .value(Config::duration, "yarn.heartbeat.interval")?
            .max(Duration::from_millis(1));
        let heartbeat_pending = config
            .value(
                Config::duration,
                "yarn.heartbeat.container-request-interval",
            )?
            .clamp(Duration::from_millis(1), heartbeat);
        Ok(AmConfig {
            slots_per_taskmanager: slots,
            taskmanager_resource: Resource {
                memory_mb: (memory >> 20) as i64,
                vcores,
            },
            heartbeat,
            heartbeat_pending,
            start_command_template: config
                .value(Config::text, "yarn.container-start-command-template")?,
            workers: WorkerPoolConfig::from_config(config)?,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_and_vcores_per_slot() {
        let mut c = Config::defaults();
        let d = AmConfig::from_config(&c).unwrap();
        assert_eq!(d.slots_per_taskmanager, 1);
        assert_eq!(d.taskmanager_resource.memory_mb, 256);
        assert_eq!(d.taskmanager_resource.vcores, 1);
        assert_eq!(d.heartbeat, Duration::from_secs(5));
        assert_eq!(d.heartbeat_pending, Duration::from_millis(500));
        c.set("taskmanager.numberOfTaskSlots", "3");
        assert_eq!(
            AmConfig::from_config(&c)
                .unwrap()
                .taskmanager_resource
                .vcores,
            3
        );
        c.merge_str(
            "yarn.heartbeat.container-request-interval: ~",
            crate::config::Origin::Override,
        )
        .unwrap();
        let e = AmConfig::from_config(&c).unwrap_err().to_string();
        assert!(
            e.contains("yarn.heartbeat.container-request-interval"),
            "{e}"
        );
    }
}
