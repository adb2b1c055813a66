//! `yarnflow appmaster` (hidden): the ApplicationMaster YARN launches.

use std::process::ExitCode;

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum AmMode {
    /// The `yarnflow doctor` check: run N containers, report, unregister.
    Doctor,
    /// The JobManager AM of `yarnflow submit`.
    Job,
}

#[derive(Debug, clap::Args)]
pub struct AppmasterArgs {
    #[arg(long, value_enum)]
    pub mode: AmMode,
    /// Doctor mode: containers to start.
    #[arg(long, default_value_t = 2)]
    pub containers: u32,
    /// Doctor mode: the exit code each container's command ends with.
    #[arg(long, default_value_t = 0, hide = true)]
    pub container_exit: i32,
    /// Job mode: the job spec staged by `yarnflow submit`.
    #[arg(long)]
    pub job: Option<std::path::PathBuf>,
}

pub async fn run(cli: &super::Cli, args: &AppmasterArgs) -> anyhow::Result<ExitCode> {
    match args.mode {
        AmMode::Job => crate::appmaster::job_am::run(cli.load_config()?, args.job.as_deref()).await,
        AmMode::Doctor => {
            crate::appmaster::doctor::run(args.containers, args.container_exit).await?;
            Ok(ExitCode::SUCCESS)
        }
    }
}
