//! Restart strategies, with Flink's keys and defaults (`restart-strategy.*`):
//! `none`, `fixed-delay`, `failure-rate`, `exponential-delay`. Unset: `exponential-delay` when
//! checkpointing is on, else `none` (Flink 1.19+).
//!
//! Pure: [`RestartStrategy::on_failure`] takes the time of the failure and answers the delay
//! before the restart, or `None` when the job must fail.

use std::collections::VecDeque;
use std::time::Duration;

use tokio::time::Instant;

use crate::config::{Config, ConfigError};

#[derive(Debug, Clone, PartialEq)]
pub enum RestartStrategy {
    None,
    FixedDelay {
        attempts: u64,
        delay: Duration,
        failures: u64,
    },
    FailureRate {
        max_failures_per_interval: u64,
        interval: Duration,
        delay: Duration,
        failures: VecDeque<Instant>,
    },
    ExponentialDelay {
        initial_backoff: Duration,
        max_backoff: Duration,
        multiplier: f64,
        reset_threshold: Duration,
        jitter: f64,
        attempts_before_reset: u64,
        current: Duration,
        attempts: u64,
        last_failure: Option<Instant>,
    },
}

impl RestartStrategy {
    pub fn from_config(c: &Config, checkpointing: bool) -> Result<RestartStrategy, ConfigError> {
        let kind = c.one_of(
            "restart-strategy.type",
            &[
                "none",
                "off",
                "disable",
                "fixed-delay",
                "fixeddelay",
                "failure-rate",
                "failurerate",
                "exponential-delay",
                "exponentialdelay",
            ],
        )?;
        let kind = kind.unwrap_or_else(|| {
            if checkpointing {
                "exponential-delay"
            } else {
                "none"
            }
            .to_string()
        });
        let d = |k: &str, default: Duration| -> Result<Duration, ConfigError> {
            Ok(c.duration(k)?.unwrap_or(default))
        };
        Ok(match kind.as_str() {
            "fixed-delay" | "fixeddelay" => RestartStrategy::FixedDelay {
                attempts: c.u64("restart-strategy.fixed-delay.attempts")?.unwrap_or(1),
                delay: d("restart-strategy.fixed-delay.delay", Duration::from_secs(1))?,
                failures: 0,
            },
            "failure-rate" | "failurerate" => RestartStrategy::FailureRate {
                max_failures_per_interval: c
                    .u64("restart-strategy.failure-rate.max-failures-per-interval")?
                    .unwrap_or(1),
                interval: d(
                    "restart-strategy.failure-rate.failure-rate-interval",
                    Duration::from_secs(60),
                )?,
                delay: d(
                    "restart-strategy.failure-rate.delay",
                    Duration::from_secs(1),
                )?,
                failures: VecDeque::new(),
            },
            "exponential-delay" | "exponentialdelay" => {
                let initial = d(
                    "restart-strategy.exponential-delay.initial-backoff",
                    Duration::from_secs(1),
                )?;
                RestartStrategy::ExponentialDelay {
                    initial_backoff: initial,
                    max_backoff: d(
                        "restart-strategy.exponential-delay.max-backoff",
                        Duration::from_secs(60),
                    )?,
                    multiplier: c
                        .f64("restart-strategy.exponential-delay.backoff-multiplier")?
                        .unwrap_or(1.5),
                    reset_threshold: d(
                        "restart-strategy.exponential-delay.reset-backoff-threshold",
                        Duration::from_secs(3600),
                    )?,
                    jitter: c
                        .f64("restart-strategy.exponential-delay.jitter-factor")?
                        .unwrap_or(0.1),
                    attempts_before_reset: c
                        .u64("restart-strategy.exponential-delay.attempts-before-reset-backoff")?
                        .unwrap_or(i32::MAX as u64),
                    current: initial,
                    attempts: 0,
                    last_failure: None,
                }
            }
            _ => RestartStrategy::None,
        })
    }

    /// Flink's name of the strategy.
    pub fn name(&self) -> &'static str {
        match self {
            RestartStrategy::None => "none",
            RestartStrategy::FixedDelay { .. } => "fixed-delay",
            RestartStrategy::FailureRate { .. } => "failure-rate",
            RestartStrategy::ExponentialDelay { .. } => "exponential-delay",
        }
    }

    /// A failure happened at `now`: the delay before restarting, or `None` to fail the job.
    pub fn on_failure(&mut self, now: Instant) -> Option<Duration> {
        match self {
            RestartStrategy::None => None,
            RestartStrategy::FixedDelay {
                attempts,
                delay,
                failures,
            } => {
                *failures += 1;
                (*failures <= *attempts).then_some(*delay)
            }
            RestartStrategy::FailureRate {
                max_failures_per_interval,
                interval,
                delay,
                failures,
            } => {
                failures.push_back(now);
                while failures
                    .front()
                    .is_some_and(|t| now.duration_since(*t) > *interval)
                {
                    failures.pop_front();
                }
                (failures.len() as u64 <= *max_failures_per_interval).then_some(*delay)
            }
            RestartStrategy::ExponentialDelay {
                initial_backoff,
                max_backoff,
                multiplier,
                reset_threshold,
                jitter,
                attempts_before_reset,
                current,
                attempts,
                last_failure,
            } => {
                // A long enough healthy run resets the backoff.
                if last_failure.is_some_and(|t| now.duration_since(t) >= *reset_threshold) {
                    *current = *initial_backoff;
                    *attempts = 0;
                }
                *attempts += 1;
                if *attempts > *attempts_before_reset {
                    return None;
                }
                let backoff = if last_failure.is_none() || *attempts == 1 {
                    *initial_backoff
                } else {
                    current.mul_f64(*multiplier).min(*max_backoff)
                };
                *current = backoff;
                *last_failure = Some(now);
                let spread = backoff.as_secs_f64() * *jitter;
                let offset = if spread > 0.0 {
                    rand::random::<f64>() * 2.0 * spread - spread
                } else {
                    0.0
                };
                Some(Duration::from_secs_f64(
                    (backoff.as_secs_f64() + offset).max(0.0),
                ))
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn with(pairs: &[(&str, &str)], checkpointing: bool) -> RestartStrategy {
        let mut c = Config::defaults();
        for (k, v) in pairs {
            c.set(*k, *v);
        }
        RestartStrategy::from_config(&c, checkpointing).unwrap()
    }

    #[tokio::test(start_paused = true)]
    async fn defaults_follow_flink() {
        assert_eq!(with(&[], false), RestartStrategy::None);
        assert_eq!(with(&[], true).name(), "exponential-delay");
        let mut s = with(&[("restart-strategy.type", "fixed-delay")], false);
        let t = Instant::now();
        assert_eq!(s.on_failure(t), Some(Duration::from_secs(1)));
        assert_eq!(s.on_failure(t), None, "one attempt by default");
    }

    #[tokio::test(start_paused = true)]
    async fn fixed_delay_counts_attempts() {
        let mut s = with(
            &[
                ("restart-strategy.type", "fixed-delay"),
                ("restart-strategy.fixed-delay.attempts", "3"),
                ("restart-strategy.fixed-delay.delay", "250 ms"),
            ],
            true,
        );
        for _ in 0..3 {
            assert_eq!(
                s.on_failure(Instant::now()),
                Some(Duration::from_millis(250))
            );
            tokio::time::advance(Duration::from_secs(10)).await;
        }
        assert_eq!(s.on_failure(Instant::now()), None);
    }

    #[tokio::test(start_paused = true)]
    async fn failure_rate_allows_failures_spread_over_time() {
        let mut s = with(
            &[
                ("restart-strategy.type", "failure-rate"),
                (
                    "restart-strategy.failure-rate.max-failures-per-interval",
                    "2",
                ),
                (
                    "restart-strategy.failure-rate.failure-rate-interval",
                    "10 s",
                ),
            ],
            true,
        );
        assert!(s.on_failure(Instant::now()).is_some());
        tokio::time::advance(Duration::from_secs(6)).await;
        assert!(s.on_failure(Instant::now()).is_some());
        tokio::time::advance(Duration::from_secs(6)).await;
        // The first failure left the window: still two in 10 s.
        assert!(s.on_failure(Instant::now()).is_some());
        tokio::time::advance(Duration::from_secs(1)).await;
        assert_eq!(s.on_failure(Instant::now()), None, "three in 10 s");
    }

    #[tokio::test(start_paused = true)]
    async fn exponential_delay_grows_caps_and_resets() {
        let mut s = with(
            &[
                ("restart-strategy.type", "exponential-delay"),
                ("restart-strategy.exponential-delay.initial-backoff", "1 s"),
                ("restart-strategy.exponential-delay.max-backoff", "3 s"),
                ("restart-strategy.exponential-delay.backoff-multiplier", "2"),
                ("restart-strategy.exponential-delay.jitter-factor", "0"),
                (
                    "restart-strategy.exponential-delay.reset-backoff-threshold",
                    "1 min",
                ),
            ],
            true,
        );
        let mut delays = Vec::new();
        for _ in 0..4 {
            delays.push(s.on_failure(Instant::now()).unwrap());
            tokio::time::advance(Duration::from_secs(5)).await;
        }
        assert_eq!(
            delays,
            [1, 2, 3, 3].map(Duration::from_secs).to_vec(),
            "doubles, capped at max-backoff"
        );
        tokio::time::advance(Duration::from_secs(61)).await;
        assert_eq!(
            s.on_failure(Instant::now()),
            Some(Duration::from_secs(1)),
            "reset"
        );
    }

    #[tokio::test(start_paused = true)]
    async fn exponential_delay_jitter_stays_in_range_and_attempts_run_out() {
        let mut s = with(
            &[
                ("restart-strategy.type", "exponential-delay"),
                (
                    "restart-strategy.exponential-delay.attempts-before-reset-backoff",
                    "2",
                ),
            ],
            true,
        );
        let d = s.on_failure(Instant::now()).unwrap();
        assert!(
            d >= Duration::from_millis(900) && d <= Duration::from_millis(1100),
            "{d:?}"
        );
        assert!(s.on_failure(Instant::now()).is_some());
        assert_eq!(s.on_failure(Instant::now()), None);
    }

    #[test]
    fn an_unknown_strategy_names_the_key() {
        let mut c = Config::defaults();
        c.set("restart-strategy.type", "sometimes");
        let e = RestartStrategy::from_config(&c, true)
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("restart-strategy.type") && e.contains("fixed-delay"),
            "{e}"
        );
    }
}
