//! `yarnflow doctor`: the preflight check before real jobs. One line per check with its latency;
//! exit 0 only if every check passed.

use std::process::ExitCode;
use std::time::{Duration, Instant};

use anyhow::{Context, anyhow, bail};
use bytes::Bytes;

use super::Cli;
use crate::appmaster::doctor::{DoctorReport, REPORT_PREFIX, RM_SCHEDULER_ENV};
use crate::hadoop::conf::{self, HadoopConf};
use crate::hadoop::rest::{RmRest, SubmissionContext};
use crate::hadoop::webhdfs::WebHdfs;
use crate::hadoop::yarn::{
    AppClient, ApplicationId, LaunchContext, LocalResource, LocalResourceType, Resource,
};

#[derive(Debug, clap::Args)]
pub struct DoctorArgs {
    /// Hadoop configuration directory (default: $HADOOP_CONF_DIR).
    #[arg(long, value_name = "DIR")]
    pub hadoop_conf: Option<std::path::PathBuf>,
    /// How many containers the test application starts.
    #[arg(long, default_value_t = 2)]
    pub containers: u32,
}

struct Checks {
    failed: usize,
}

impl Checks {
    fn report<T>(
        &mut self,
        component: &str,
        address: &str,
        started: Instant,
        r: &anyhow::Result<T>,
        ok: &str,
    ) {
        let ms = started.elapsed().as_millis();
        match r {
            Ok(_) => println!("ok    {component:<22} {address}  {ok} ({ms} ms)"),
            Err(e) => {
                self.failed += 1;
                println!("FAIL  {component:<22} {address}: {e:#} ({ms} ms)");
            }
        }
    }
}

/// The Hadoop user this process acts as: who stages files and whose name the AM and its
/// TaskManagers use on HDFS ([`crate::appmaster::launch::HADOOP_USER_NAME_ENV`]).
pub fn current_user() -> String {
    user_from(|k| std::env::var(k).ok())
}

/// Hadoop's order without Kerberos (`UserGroupInformation`): `HADOOP_USER_NAME` first, then
/// the login name.
fn user_from(var: impl Fn(&str) -> Option<String>) -> String {
    [
        crate::appmaster::launch::HADOOP_USER_NAME_ENV,
        "USER",
        "LOGNAME",
    ]
    .into_iter()
    .find_map(|k| var(k).filter(|v| !v.is_empty()))
    .unwrap_or_else(|| "root".into())
}

pub async fn run(cli: &Cli, args: &DoctorArgs) -> anyhow::Result<ExitCode> {
    let config = cli.load_config()?;
    let hadoop = HadoopConf::load(args.hadoop_conf.as_deref())?;
    let t_all = Instant::now();
    let mut checks = Checks { failed: 0 };
    let user = current_user();

    let web = hadoop.required(conf::RM_WEBAPP_ADDRESS)?.to_string();
    let rest = RmRest::new(&web);
    let t = Instant::now();
    let r = async {
        let state = rest.cluster_state().await?;
        anyhow::ensure!(
            state == "STARTED",
            "the ResourceManager is {state}, not STARTED"
        );
        Ok(state)
    }
    .await;
    checks.report("ResourceManager REST", rest.base(), t, &r, "STARTED");

    let rm_address = hadoop.required(conf::RM_ADDRESS)?.to_string();
    let t = Instant::now();
    let r = async {
        // An unknown application: the answer proves the port speaks ApplicationClientProtocol.
        let probe = ApplicationId {
            cluster_timestamp: 1,
            id: 1,
        };
        match AppClient::new(&rm_address, &user)
            .get_application_report(probe)
            .await
        {
            Err(e)
                if e.exception_class()
                    .is_some_and(|c| c.contains("ApplicationNotFound")) =>
            {
                Ok(())
            }
            Err(e) => Err(anyhow!(e)),
            Ok(_) => Ok(()),
        }
    }
    .await;
    checks.report(
        "ResourceManager IPC",
        &rm_address,
        t,
        &r,
        "ApplicationClientProtocol answers",
    );

    let webhdfs = WebHdfs::new(&hadoop.webhdfs_url()?, &user);
    let t = Instant::now();
    let probe = format!("/tmp/yarnflow-doctor-{}", uuid::Uuid::new_v4().simple());
    let r = async {
        let data = Bytes::from(format!("yarnflow doctor probe {probe}\n").repeat(100));
        webhdfs.create(&probe, data.clone()).await?;
        let back = webhdfs.open(&probe).await?;
        anyhow::ensure!(
            back == data,
            "read back {} bytes that differ from the {} written",
            back.len(),
            data.len()
        );
        webhdfs.delete(&probe).await?;
        Ok(())
    }
    .await;
    checks.report(
        "HDFS",
        &hadoop.webhdfs_url()?,
        t,
        &r,
        "write, read back, delete",
    );

    match config.get("high-availability.zookeeper.quorum") {
        Some(quorum) => {
            let t = Instant::now();
            let r = async {
                let zk = tokio::time::timeout(
                    Duration::from_secs(10),
                    zookeeper_client::Client::connector()
                        .with_session_timeout(Duration::from_secs(10))
                        .connect(quorum),
                )
                .await
                .map_err(|_| anyhow!("no session within 10 s"))??;
                zk.check_stat("/").await?;
                Ok(())
            }
            .await;
            checks.report("ZooKeeper", quorum, t, &r, "session established");
        }
        None => println!(
            "skip  {:<22} high-availability.zookeeper.quorum is not set",
            "ZooKeeper"
        ),
    }

    let t = Instant::now();
    let scheduler = hadoop.required(conf::RM_SCHEDULER_ADDRESS)?.to_string();
    let r =
        application_round_trip(&rest, &webhdfs, &hadoop, &scheduler, &user, args.containers).await;
    let app_line = match &r {
        Ok((app, report)) => {
            for c in &report.containers {
                println!(
                    "ok    {:<22} {} on {} exit {}  log line found",
                    "container", c.id, c.node, c.exit_status
                );
            }
            format!(
                "{app} SUCCEEDED; register {} ms, first allocation {} ms after register",
                report.register_ms,
                report
                    .first_allocation_ms
                    .saturating_sub(report.register_ms)
            )
        }
        Err(_) => String::new(),
    };
    checks.report("YARN application", &scheduler, t, &r, &app_line);

    println!(
        "{} in {} ms",
        if checks.failed == 0 {
            "all checks passed".to_string()
        } else {
            format!("{} check(s) failed", checks.failed)
        },
        t_all.elapsed().as_millis()
    );
    Ok(if checks.failed == 0 {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    })
}

/// Stages this binary, submits it as the AM in doctor mode, waits for the outcome and checks
/// that every container's log line is on its NodeManager.
async fn application_round_trip(
    rest: &RmRest,
    webhdfs: &WebHdfs,
    hadoop: &HadoopConf,
    scheduler: &str,
    user: &str,
    containers: u32,
) -> anyhow::Result<(ApplicationId, DoctorReport)> {
    let (app, _) = rest.new_application().await?;
    let staging = format!("/user/{user}/.yarnflow/{app}");
    let result = async {
        let exe = std::env::current_exe().context("find the yarnflow binary")?;
        let bytes = tokio::fs::read(&exe)
            .await
            .with_context(|| format!("read {}", exe.display()))?;
        webhdfs.mkdirs(&staging).await?;
        let path = format!("{staging}/yarnflow");
        webhdfs.create(&path, Bytes::from(bytes)).await?;
        let status = webhdfs.status(&path).await?;
        let fs = hadoop.required(conf::FS_DEFAULT)?.trim_end_matches('/').to_string();
        let am = LaunchContext {
            commands: vec![format!(
                "./yarnflow appmaster --mode doctor --containers {containers} 1><LOG_DIR>/stdout 2><LOG_DIR>/stderr"
            )],
            environment: vec![(RM_SCHEDULER_ENV.into(), scheduler.to_string())],
            local_resources: vec![(
                "yarnflow".into(),
                LocalResource {
                    uri: format!("{fs}{path}"),
                    size: status.length,
                    timestamp: status.modification_time,
                    kind: LocalResourceType::File,
                },
            )],
            tokens: None,
        };
        rest.submit_application(&SubmissionContext {
            application_id: Some(app),
            name: "yarnflow-doctor".into(),
            application_type: "YARNFLOW".into(),
            max_app_attempts: 1,
            resource: Resource {
                memory_mb: 128,
                vcores: 1,
            },
            tags: vec!["yarnflow-doctor".into()],
            am,
            ..Default::default()
        })
        .await?;
        let deadline = Instant::now() + Duration::from_secs(120);
        let report = loop {
            let r = rest.application(&app.to_string()).await?;
            if r.is_final() {
                break r;
            }
            if Instant::now() > deadline {
                let _ = rest.kill(&app.to_string()).await;
                bail!("{app} did not finish within 120 s (state {})", r.state);
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        };
        let doctor: Option<DoctorReport> = report
            .diagnostics
            .lines()
            .find_map(|l| l.split_once(REPORT_PREFIX))
            .and_then(|(_, json)| serde_json::from_str(json).ok());
        if report.final_status != "SUCCEEDED" {
            let first = report.diagnostics.lines().next().unwrap_or_default();
            bail!("{app} ended {} / {}: {first}", report.state, report.final_status);
        }
        let doctor = doctor.ok_or_else(|| anyhow!("{app} succeeded without the doctor AM's report"))?;
        let http = reqwest::Client::builder().timeout(Duration::from_secs(10)).build()?;
        for c in &doctor.containers {
            let url = format!("http://{}/ws/v1/node/containers/{}/logs/stdout", c.node_http_address, c.id);
            let text = http.get(&url).send().await?.text().await?;
            anyhow::ensure!(
                text.contains(&format!("yarnflow doctor container {}", c.id)),
                "the log line of {} is missing at {url}",
                c.id
            );
        }
        Ok((app, doctor))
    }
    .await;
    let _ = webhdfs.delete(&staging).await;
    result
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_user_is_hadoop_user_name_then_the_login_name() {
        let env = |vars: &'static [(&'static str, &'static str)]| {
            move |k: &str| {
                vars.iter()
                    .find(|(n, _)| *n == k)
                    .map(|(_, v)| v.to_string())
            }
        };
        assert_eq!(
            user_from(env(&[("HADOOP_USER_NAME", "alice"), ("USER", "bob")])),
            "alice"
        );
        assert_eq!(
            user_from(env(&[("HADOOP_USER_NAME", ""), ("USER", "bob")])),
            "bob"
        );
        assert_eq!(user_from(env(&[("LOGNAME", "carol")])), "carol");
        assert_eq!(user_from(env(&[])), "root");
    }
}
