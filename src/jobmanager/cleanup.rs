//! Retries of HA writes that must eventually happen: the cleanup of a globally terminal job
//! (Flink's `cleanup-strategy` keys and defaults) and the persisting of a submitted job graph.
//!
//! ```text
//! cleanup-strategy: exponential-delay   1 s, 2 s, 4 s, … up to 1 h, forever (Flink's default)
//!                   fixed-delay         every 1 min, forever
//!                   none                once
//! ```
//!
//! A retry stops early when leadership is lost: the job result stays dirty and the next leader
//! finishes the cleanup ([`super::dispatcher::Dispatcher::recover`]).

use std::future::Future;
use std::time::Duration;

use tokio_util::sync::CancellationToken;

use crate::config::{Config, ConfigError};
use crate::ha::HaError;

/// How often, and how far apart, a failed HA write is tried again.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RetryStrategy {
    /// One try.
    None,
    FixedDelay {
        attempts: u64,
        delay: Duration,
    },
    ExponentialDelay {
        attempts: u64,
        initial_backoff: Duration,
        max_backoff: Duration,
    },
}

/// Flink's "infinite" attempts (`Integer.MAX_VALUE`).
const INFINITE: u64 = i32::MAX as u64;

impl RetryStrategy {
    /// `cleanup-strategy.*`.
    pub fn cleanup(config: &Config) -> Result<RetryStrategy, ConfigError> {
        let kind = config.value(
            |c, k| {
                c.one_of(
                    k,
                    &[
                        "none",
                        "off",
                        "disable",
                        "fixed-delay",
                        "fixeddelay",
                        "exponential-delay",
                        "exponentialdelay",
                    ],
                )
            },
            "cleanup-strategy",
        )?;
        let attempts = |key: &str| -> Result<u64, ConfigError> {
            let v = config.value(Config::text, key)?;
            if v.eq_ignore_ascii_case("infinite") {
                return Ok(INFINITE);
            }
            config.value(Config::u64, key)
        };
        Ok(match kind.as_str() {
            "fixed-delay" | "fixeddelay" => RetryStrategy::FixedDelay {
                attempts: attempts("cleanup-strategy.fixed-delay.attempts")?,
                delay: config.value(Config::duration, "cleanup-strategy.fixed-delay.delay")?,
            },
            "exponential-delay" | "exponentialdelay" => RetryStrategy::ExponentialDelay {
                attempts: attempts("cleanup-strategy.exponential-delay.attempts")?,
                initial_backoff: config.value(
                    Config::duration,
                    "cleanup-strategy.exponential-delay.initial-backoff",
                )?,
                max_backoff: config.value(
                    Config::duration,
                    "cleanup-strategy.exponential-delay.max-backoff",
                )?,
            },
            _ => RetryStrategy::None,
        })
    }

    /// Persisting a submitted job graph: a few quick retries of a transient error, then the
    /// submission fails (the caller decides; the AM's attempt ends and YARN retries it).
    pub const JOB_GRAPH: RetryStrategy = RetryStrategy::ExponentialDelay {
        attempts: 5,
        initial_backoff: Duration::from_millis(200),
        max_backoff: Duration::from_secs(5),
    };

    /// The delay before retry number `retry` (1-based), or `None` when no retry is left.
    pub fn delay(&self, retry: u64) -> Option<Duration> {
        match *self {
            RetryStrategy::None => None,
            RetryStrategy::FixedDelay { attempts, delay } => (retry <= attempts).then_some(delay),
            RetryStrategy::ExponentialDelay {
                attempts,
                initial_backoff,
                max_backoff,
            } => (retry <= attempts).then(|| {
                let factor = 2u32.saturating_pow(retry.saturating_sub(1).min(31) as u32);
                initial_backoff.saturating_mul(factor).min(max_backoff)
            }),
        }
    }

    /// Runs `op` until it succeeds, the strategy gives up, the error is not transient (fenced
    /// out, corrupt data), or `leadership` is cancelled; the last error otherwise. `what` names
    /// the write in the log.
    pub async fn run<T, F, Fut>(
        &self,
        what: &str,
        leadership: &CancellationToken,
        mut op: F,
    ) -> Result<T, HaError>
    where
        F: FnMut() -> Fut,
        Fut: Future<Output = Result<T, HaError>>,
    {
        let mut retry = 0;
        loop {
            let e = match op().await {
                Ok(v) => return Ok(v),
                Err(e) => e,
            };
            retry += 1;
            let delay = match self.delay(retry) {
                Some(d) if e.is_retriable() && !leadership.is_cancelled() => d,
                _ => return Err(e),
            };
            tracing::warn!(what, error = %e, retry, delay_ms = delay.as_millis() as u64, "HA write failed; retrying");
            tokio::select! {
                biased;
                _ = leadership.cancelled() => return Err(e),
                _ = tokio::time::sleep(delay) => {}
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn flink_defaults_and_backoff() {
        let mut c = Config::defaults();
        let s = RetryStrategy::cleanup(&c).unwrap();
        assert_eq!(
            s,
            RetryStrategy::ExponentialDelay {
                attempts: INFINITE,
                initial_backoff: Duration::from_secs(1),
                max_backoff: Duration::from_secs(3600),
            }
        );
        assert_eq!(s.delay(1), Some(Duration::from_secs(1)));
        assert_eq!(s.delay(4), Some(Duration::from_secs(8)));
        assert_eq!(s.delay(40), Some(Duration::from_secs(3600)));
        c.set("cleanup-strategy", "fixed-delay");
        c.set("cleanup-strategy.fixed-delay.attempts", "2");
        let s = RetryStrategy::cleanup(&c).unwrap();
        assert_eq!(s.delay(2), Some(Duration::from_secs(60)));
        assert_eq!(s.delay(3), None);
        c.set("cleanup-strategy", "none");
        assert_eq!(RetryStrategy::cleanup(&c).unwrap().delay(1), None);
        c.set("cleanup-strategy", "sometimes");
        let e = RetryStrategy::cleanup(&c).unwrap_err().to_string();
        assert!(e.contains("cleanup-strategy"), "{e}");
    }

    #[tokio::test(start_paused = true)]
    async fn transient_errors_are_retried_and_fencing_is_not() {
        let leadership = CancellationToken::new();
        let mut calls = 0;
        let r = RetryStrategy::JOB_GRAPH
            .run("test", &leadership, || {
                calls += 1;
                let n = calls;
                async move {
                    if n < 3 {
                        Err(HaError::ZooKeeper {
                            quorum: "zk".into(),
                            message: "connection loss".into(),
                        })
                    } else {
                        Ok(n)
                    }
                }
            })
            .await;
        assert_eq!(r.unwrap(), 3);
        let mut calls = 0;
        let r: Result<(), _> = RetryStrategy::JOB_GRAPH
            .run("test", &leadership, || {
                calls += 1;
                async { Err(HaError::NotLeader("deposed".into())) }
            })
            .await;
        assert!(r.unwrap_err().lost_leadership());
        assert_eq!(calls, 1);
    }
}
