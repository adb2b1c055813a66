//! `yarnflow config`: the effective configuration, so users can see which value wins.

use std::process::ExitCode;

use super::Cli;

#[derive(Debug, clap::Args)]
pub struct ConfigArgs {
    /// Also print where each value came from.
    #[arg(long)]
    pub origin: bool,
}

pub fn run(cli: &Cli, args: &ConfigArgs) -> anyhow::Result<ExitCode> {
    let config = cli.load_config()?;
    for (key, value) in config.iter() {
        if args.origin {
            let origin = config
                .origin(key)
                .map(|o| o.to_string())
                .unwrap_or_default();
            println!("{key}: {value}    # {origin}");
        } else {
            println!("{key}: {value}");
        }
    }
    Ok(ExitCode::SUCCESS)
}
