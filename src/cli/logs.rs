//! `yarnflow logs APP_ID`: one merged timeline of every attempt's and container's logs.

use std::collections::HashSet;
use std::process::ExitCode;
use std::time::Duration;

use anyhow::{Context, bail};

use crate::hadoop::conf::{self, HadoopConf};
use crate::hadoop::rest::RmRest;
use crate::logs::timeline::{self, ContainerFilter, Filter, Level, LogLine};
use crate::logs::yarn::LogCollector;

#[derive(Debug, clap::Args)]
pub struct LogsArgs {
    /// The application id (application_<cluster timestamp>_<n>).
    pub app_id: String,
    /// Hadoop configuration directory (default: $HADOOP_CONF_DIR).
    #[arg(long, value_name = "DIR")]
    pub hadoop_conf: Option<std::path::PathBuf>,
    /// One attempt (its number) or `all`.
    #[arg(long, default_value = "all")]
    pub attempt: String,
    /// A container id, `am` or `tm`.
    #[arg(long)]
    pub container: Option<String>,
    /// Minimum level: trace, debug, info, warn, error.
    #[arg(long)]
    pub level: Option<String>,
    /// Only lines (message or fields) matching this regular expression.
    #[arg(long)]
    pub grep: Option<String>,
    /// Only lines from this long ago onwards, e.g. `10 min`.
    #[arg(long)]
    pub since: Option<String>,
    /// Keep printing new lines until the application ends.
    #[arg(long)]
    pub follow: bool,
    /// One JSON object per line.
    #[arg(long)]
    pub json: bool,
}

fn filter(args: &LogsArgs) -> anyhow::Result<Filter> {
    let attempt = match args.attempt.as_str() {
        "all" => None,
        n => Some(
            n.parse::<u32>()
                .with_context(|| format!("--attempt: expected a number or 'all', got '{n}'"))?,
        ),
    };
    let min_level = match &args.level {
        Some(l) => Some(Level::parse(l).with_context(|| {
            format!("--level: expected trace, debug, info, warn or error, got '{l}'")
        })?),
        None => None,
    };
    let grep = match &args.grep {
        Some(g) => {
            Some(regex::Regex::new(g).with_context(|| format!("--grep: invalid regex '{g}'"))?)
        }
        None => None,
    };
    let since = match &args.since {
        Some(s) => {
            let d =
                crate::config::parse_duration(s).map_err(|e| anyhow::anyhow!("--since: {e}"))?;
            let span = jiff::SignedDuration::try_from(d)?;
            Some(jiff::Timestamp::now().checked_sub(span)?)
        }
        None => None,
    };
    Ok(Filter {
        attempt,
        container: args.container.as_deref().map(ContainerFilter::parse),
        min_level,
        grep,
        since,
    })
}

fn key(l: &LogLine) -> String {
    format!(
        "{}|{:?}|{}|{}",
        l.source.container_id, l.ts, l.marker, l.message
    )
}

pub async fn run(args: &LogsArgs) -> anyhow::Result<ExitCode> {
    let filter = filter(args)?;
    let hadoop = HadoopConf::load(args.hadoop_conf.as_deref())?;
    let rest = RmRest::new(hadoop.required(conf::RM_WEBAPP_ADDRESS)?);
    let app = match rest.application(&args.app_id).await {
        Ok(a) => a,
        Err(e) if e.is_not_found() => bail!(
            "application {} is not known to the ResourceManager at {}",
            args.app_id,
            rest.base()
        ),
        Err(e) => return Err(e.into()),
    };
    let collector = LogCollector::new(rest.clone());
    let mut printed = HashSet::new();
    let mut final_pass = app.is_final() || !args.follow;
    loop {
        let collected = collector.collect(&args.app_id).await?;
        for p in &collected.problems {
            eprintln!("yarnflow: {p}");
        }
        for l in collected.lines.iter().filter(|l| filter.accepts(l)) {
            if printed.insert(key(l)) {
                if args.json {
                    println!("{}", timeline::format_json(l));
                } else {
                    println!("{}", timeline::format_text(l));
                }
            }
        }
        if final_pass {
            return Ok(ExitCode::SUCCESS);
        }
        tokio::time::sleep(Duration::from_secs(2)).await;
        final_pass = rest.application(&args.app_id).await?.is_final();
    }
}
