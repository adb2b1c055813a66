//! `yarnflow appmaster` (hidden): the ApplicationMaster YARN launches.

use std::process::ExitCode;

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum AmMode {
    /// The `yarnflow doctor` check: run N containers, report, unregister.
    Doctor,
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
}

pub async fn run(args: &AppmasterArgs) -> anyhow::Result<ExitCode> {
    match args.mode {
        AmMode::Doctor => {
            crate::appmaster::doctor::run(args.containers, args.container_exit).await?;
            Ok(ExitCode::SUCCESS)
        }
    }
}
