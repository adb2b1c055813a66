//! A standalone HA JobManager (Flink's "standalone + ZooKeeper"): any number of them contend for
//! leadership; the leader runs a [`LeaderSession`], the rest stand by, and a leader that loses
//! leadership closes its session and contends again.
//!
//! ```text
//! contend ──granted──▶ serve (REST + gRPC), publish, recover jobs, accept submissions
//!    ▲                                    │ revoked (session lost, deposed)
//!    └───── jobs SUSPENDED, endpoint closed ◀┘
//! ```

use tokio_util::sync::CancellationToken;

use super::leader::{LeaderError, LeaderOptions, LeaderSession};
use crate::config::Config;
use crate::ha::{HaError, HaServices};

/// Why a standalone JobManager stopped.
#[derive(Debug, thiserror::Error)]
pub enum StandaloneError {
    #[error(transparent)]
    Leader(#[from] LeaderError),
    #[error(transparent)]
    Dispatch(#[from] super::dispatcher::DispatchError),
    #[error(transparent)]
    Ha(#[from] HaError),
    /// A job's checkpoints could not be recovered (its job master ended SUSPENDED with this
    /// cause, HA data untouched): the process exits non-zero and a standby (or a restart of
    /// this one) tries again.
    #[error("{0}")]
    Recovery(String),
}

/// One standalone JobManager process.
pub struct StandaloneJobManager {
    ha: HaServices,
    config: Config,
    /// The interface to bind (`rest.address`) and the host name to publish.
    bind_host: String,
    advertised_host: String,
    /// Ends the process: serving stops and leadership is resigned.
    stop: CancellationToken,
}

impl StandaloneJobManager {
    /// A JobManager named `owner` in ZooKeeper, publishing `advertised_host`.
    pub async fn new(
        config: Config,
        owner: &str,
        advertised_host: &str,
        stop: CancellationToken,
    ) -> Result<StandaloneJobManager, StandaloneError> {
        let ha = HaServices::from_config(&config, owner).await?;
        let bind_host = config
            .value(Config::text, "rest.address")
            .map_err(LeaderError::from)?;
        tracing::info!(owner = %owner, "JobManager contending for leadership");
        Ok(StandaloneJobManager {
            ha,
            config,
            bind_host,
            advertised_host: advertised_host.to_string(),
            stop,
        })
    }

    /// Contends, leads, stands by again after a revocation, until `stop`.
    pub async fn run(self) -> Result<(), StandaloneError> {
        while let Some(session) = self.lead().await? {
            let stopped = match self.serve(session).await {
                Ok(stopped) => stopped,
                Err(e) => {
                    let _ = self.ha.election.resign().await;
                    return Err(e);
                }
            };
            if stopped {
                break;
            }
        }
        // A standby takes over at once; the job masters of this process end with it.
        let _ = self.ha.election.resign().await;
        Ok(())
    }

    /// Waits for leadership; `None` once stopped.
    async fn lead(&self) -> Result<Option<LeaderSession>, StandaloneError> {
        let options = LeaderOptions::new(&self.bind_host, &self.advertised_host);
        let session = tokio::select! {
            _ = self.stop.cancelled() => return Ok(None),
            s = LeaderSession::start(&self.ha, &self.config, options) => s?,
        };
        session.recover().await?;
        Ok(Some(session))
    }

    /// Leads until stopped (`true`) or revoked (`false`), or until a job cannot be recovered.
    async fn serve(&self, mut session: LeaderSession) -> Result<bool, StandaloneError> {
        let ended = loop {
            tokio::select! {
                _ = self.stop.cancelled() => break Ok(true),
                _ = session.leadership.revoked.cancelled() => {
                    tracing::warn!(epoch = session.leadership.epoch, "leadership revoked; standing by");
                    break Ok(false);
                }
                Some(o) = session.outcomes.recv() => {
                    if let Some(cause) = o.recovery_failure() {
                        tracing::error!(job_id = %o.job_id, error = %cause, "job recovery failed; exiting");
                        break Err(StandaloneError::Recovery(cause));
                    }
                    tracing::info!(job_id = %o.job_id, status = %o.status, "job ended");
                }
            }
        };
        session.close().await;
        ended
    }
}
