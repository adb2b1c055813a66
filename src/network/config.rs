//! The data plane's settings, under Flink's key names with Flink's defaults.

use std::time::Duration;

use crate::config::{Config, ConfigError, Origin};

/// `taskmanager.memory.segment-size`: the size of one network buffer.
pub const SEGMENT_SIZE: &str = "taskmanager.memory.segment-size";
/// `taskmanager.network.memory.buffers-per-channel`: exclusive credits of a remote input channel.
pub const BUFFERS_PER_CHANNEL: &str = "taskmanager.network.memory.buffers-per-channel";
/// `taskmanager.network.memory.floating-buffers-per-gate`: credits an input gate lends to the
/// channels whose producers report a backlog.
pub const FLOATING_BUFFERS_PER_GATE: &str = "taskmanager.network.memory.floating-buffers-per-gate";
/// `taskmanager.network.memory.max-buffers-per-channel`: finished buffers one subpartition may
/// hold before its producer waits (the producer side of back-pressure).
pub const MAX_BUFFERS_PER_CHANNEL: &str = "taskmanager.network.memory.max-buffers-per-channel";
/// `execution.buffer-timeout.interval`: how often a producer flushes partly filled buffers.
pub const BUFFER_TIMEOUT: &str = "execution.buffer-timeout.interval";
/// `taskmanager.network.request-backoff.max`: how long a partition request waits for its
/// producer to register the partition.
pub const REQUEST_TIMEOUT: &str = "taskmanager.network.request-backoff.max";
/// `taskmanager.network.netty.client.connectTimeoutSec`: connecting to another TaskManager.
pub const CONNECT_TIMEOUT: &str = "taskmanager.network.netty.client.connectTimeoutSec";
/// yarnflow's own: the largest frame accepted from a peer (a record larger than a segment
/// travels whole in one buffer of its own, so this also bounds the record size).
pub const MAX_FRAME_SIZE: &str = "taskmanager.network.max-frame-size";

/// Settings of one TaskManager's network environment.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NetworkConfig {
    pub segment_size: usize,
    pub buffers_per_channel: usize,
    pub floating_buffers_per_gate: usize,
    pub max_buffers_per_channel: usize,
    pub buffer_timeout: Duration,
    pub request_timeout: Duration,
    pub connect_timeout: Duration,
    pub max_frame_size: usize,
}

impl Default for NetworkConfig {
    /// Flink's defaults.
    fn default() -> NetworkConfig {
        NetworkConfig {
            segment_size: 32 * 1024,
            buffers_per_channel: 2,
            floating_buffers_per_gate: 8,
            max_buffers_per_channel: 10,
            buffer_timeout: Duration::from_millis(100),
            request_timeout: Duration::from_secs(10),
            connect_timeout: Duration::from_secs(120),
            max_frame_size: 16 * 1024 * 1024,
        }
    }
}

impl NetworkConfig {
    /// Reads every key, falling back to the default for unset ones.
    ///
    /// # Errors
    /// A malformed value, or a combination the data plane cannot work with (a zero segment size
    /// or buffer count, a segment larger than a frame), as one line naming the key.
    pub fn from_config(config: &Config) -> Result<NetworkConfig, ConfigError> {
        let d = NetworkConfig::default();
        let size = |key: &str, default: usize| -> Result<usize, ConfigError> {
            Ok(config.memory_bytes(key)?.map_or(default, |v| v as usize))
        };
        let count = |key: &str, default: usize| -> Result<usize, ConfigError> {
            Ok(config.u64(key)?.map_or(default, |v| v as usize))
        };
        let c = NetworkConfig {
            segment_size: size(SEGMENT_SIZE, d.segment_size)?,
            buffers_per_channel: count(BUFFERS_PER_CHANNEL, d.buffers_per_channel)?,
            floating_buffers_per_gate: count(
                FLOATING_BUFFERS_PER_GATE,
                d.floating_buffers_per_gate,
            )?,
            max_buffers_per_channel: count(MAX_BUFFERS_PER_CHANNEL, d.max_buffers_per_channel)?,
            buffer_timeout: config.duration(BUFFER_TIMEOUT)?.unwrap_or(d.buffer_timeout),
            request_timeout: config
                .duration(REQUEST_TIMEOUT)?
                .unwrap_or(d.request_timeout),
            // Flink's key counts seconds.
            connect_timeout: config
                .u64(CONNECT_TIMEOUT)?
                .map_or(d.connect_timeout, Duration::from_secs),
            max_frame_size: size(MAX_FRAME_SIZE, d.max_frame_size)?,
        };
        let bad = |key: &str, message: &str| ConfigError::Invalid {
            origin: config.origin(key).cloned().unwrap_or(Origin::Defaults),
            key: key.to_string(),
            message: format!("'{}': {message}", config.get(key).unwrap_or("(default)")),
        };
        if c.segment_size < 64 || c.segment_size > c.max_frame_size / 2 {
            return Err(bad(
                SEGMENT_SIZE,
                "expected at least 64 bytes and at most half of taskmanager.network.max-frame-size",
            ));
        }
        if c.buffers_per_channel == 0 {
            return Err(bad(
                BUFFERS_PER_CHANNEL,
                "expected at least 1 (yarnflow needs an exclusive credit per channel)",
            ));
        }
        if c.max_buffers_per_channel == 0 {
            return Err(bad(MAX_BUFFERS_PER_CHANNEL, "expected at least 1"));
        }
        Ok(c)
    }

    /// The largest record a producer may emit: what fits one frame with its headers.
    pub fn max_record_size(&self) -> usize {
        self.max_frame_size - 64
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_compiled_in_defaults_are_flinks() {
        assert_eq!(
            NetworkConfig::from_config(&Config::defaults()).unwrap(),
            NetworkConfig::default()
        );
    }

    #[test]
    fn a_zero_credit_is_refused_with_its_key() {
        let mut c = Config::defaults();
        c.set(BUFFERS_PER_CHANNEL, "0");
        let e = NetworkConfig::from_config(&c).unwrap_err().to_string();
        assert!(e.contains(BUFFERS_PER_CHANNEL), "{e}");
    }
}
