//! `yarnflow fail-attempt APP_ID`: fails the application's current attempt through YARN's
//! `failApplicationAttempt` (ApplicationClientProtocol), the clean way to make the
//! ResourceManager start the next attempt (what a crashed ApplicationMaster would cause).

use std::process::ExitCode;

use anyhow::{Context, bail};

use super::status::{current_attempt, known_application, rm_clients};
use crate::hadoop::conf;
use crate::hadoop::yarn::{AppClient, ApplicationId};

#[derive(Debug, clap::Args)]
pub struct FailAttemptArgs {
    /// The application, e.g. application_1700000000000_0001.
    #[arg(value_name = "APP_ID")]
    pub app_id: String,
    /// Hadoop configuration directory (default: $HADOOP_CONF_DIR).
    #[arg(long, value_name = "DIR")]
    pub hadoop_conf: Option<std::path::PathBuf>,
}

pub async fn run(args: &FailAttemptArgs) -> anyhow::Result<ExitCode> {
    let app: ApplicationId = args.app_id.parse()?;
    let (hadoop, rest) = rm_clients(args.hadoop_conf.as_deref())?;
    let report = known_application(&rest, app).await?;
    if report.is_final() {
        bail!(
            "{app} is already {} ({}): it has no attempt to fail",
            report.state,
            report.final_status
        );
    }
    let attempt = current_attempt(&rest, &report).await?.with_context(|| {
        format!(
            "{app} has no attempt yet (state {}): nothing to fail",
            report.state
        )
    })?;
    let rm_address = hadoop.required(conf::RM_ADDRESS)?;
    AppClient::new(rm_address, &super::doctor::current_user())
        .fail_application_attempt(attempt)
        .await
        .with_context(|| format!("failApplicationAttempt {attempt} at {rm_address}"))?;
    tracing::debug!(%app, %attempt, "failed the current application attempt");
    println!(
        "failed attempt {} of {app} ({attempt}); the ResourceManager starts the next attempt if any is left",
        attempt.attempt
    );
    Ok(ExitCode::SUCCESS)
}
