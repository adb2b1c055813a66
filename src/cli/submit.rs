//! `yarnflow submit JOB.yaml` and `yarnflow cancel APP_ID`: put a job on YARN (stage the binary,
//! the effective configuration and the spec in HDFS, submit an application whose AM is
//! `yarnflow appmaster --mode job`), follow it, or cancel its jobs cleanly.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use bytes::Bytes;

use super::Cli;
use super::doctor::current_user;
use super::progress::{Mode, Progress};
use crate::appmaster::launch::{self, StagedFile};
use crate::config::Origin;
use crate::hadoop::conf::{self, HadoopConf};
use crate::hadoop::rest::{AppReport, RmRest, SubmissionContext};
use crate::hadoop::webhdfs::WebHdfs;
use crate::hadoop::yarn::{ApplicationId, LaunchContext, Resource};
use crate::job::spec::JobSpec;
use crate::jobmanager::client::JobManagerClient;
use crate::jobmanager::job_master::JobSnapshot;
use crate::jobmanager::status::JobStatus;

/// Timeout of each job status request while `submit` follows the job.
const JOB_STATUS_TIMEOUT: Duration = Duration::from_secs(3);
/// Where the AM keeps job graphs and checkpoints (defaulted under the user's HDFS home).
const HA_STORAGE_DIR_KEY: &str = "high-availability.storageDir";
/// Timeout of each request `cancel` makes to the JobManager.
const CANCEL_TIMEOUT: Duration = Duration::from_secs(10);

#[derive(Debug, clap::Args)]
pub struct SubmitArgs {
    /// The job specification (YAML).
    pub job: PathBuf,
    /// Hadoop configuration directory (default: $HADOOP_CONF_DIR).
    #[arg(long, value_name = "DIR")]
    pub hadoop_conf: Option<PathBuf>,
    /// Application name (default: yarn.application.name, else the job's name).
    #[arg(long)]
    pub name: Option<String>,
    /// YARN queue (default: yarn.application.queue).
    #[arg(long)]
    pub queue: Option<String>,
    /// Return once the job runs instead of following it to its end.
    #[arg(long)]
    pub detached: bool,
    /// Progress as JSON lines on stdout (other lines go to stderr).
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, clap::Args)]
pub struct CancelArgs {
    /// The application id (application_<cluster timestamp>_<n>).
    pub application_id: String,
    /// Hadoop configuration directory (default: $HADOOP_CONF_DIR).
    #[arg(long, value_name = "DIR")]
    pub hadoop_conf: Option<PathBuf>,
}

/// The configuration handed to the AM: every key that is not a built-in default.
fn effective_config_yaml(config: &crate::config::Config) -> anyhow::Result<String> {
    let map: BTreeMap<&str, &str> = config
        .iter()
        .filter(|(k, _)| !matches!(config.origin(k), Some(Origin::Defaults)))
        .collect();
    Ok(format!(
        "# written by yarnflow submit: the submitter's configuration and -D overrides\n{}",
        serde_yaml_ng::to_string(&map)?
    ))
}

pub async fn submit(cli: &Cli, args: &SubmitArgs) -> anyhow::Result<ExitCode> {
    let mut config = cli.load_config()?;
    let spec = JobSpec::load(&args.job)?;
    let spec_text = std::fs::read_to_string(&args.job)
        .with_context(|| format!("read {}", args.job.display()))?;
    let hadoop = HadoopConf::load(args.hadoop_conf.as_deref())?;
    let user = current_user();
    let rest = RmRest::new(hadoop.required(conf::RM_WEBAPP_ADDRESS)?);
    let webhdfs = WebHdfs::new(&hadoop.webhdfs_url()?, &user);
    let fs = hadoop
        .required(conf::FS_DEFAULT)?
        .trim_end_matches('/')
        .to_string();
    let mut progress = Progress::new(Mode::detect(args.json));
    let t0 = Instant::now();
    if config.get(HA_STORAGE_DIR_KEY).is_none() {
        // The AM keeps job graphs and checkpoints there; it gets the value in the staged
        // configuration.
        let dir = crate::ha::config::default_storage_dir(&fs, &user);
        progress.line(&format!(
            "{HA_STORAGE_DIR_KEY} is not set: HA data goes to {dir} (your HDFS home)"
        ));
        config.set(HA_STORAGE_DIR_KEY, dir);
    }

    let (app, max) = rest.new_application().await?;
    let staging = format!("/user/{user}/.yarnflow/{app}");
    progress.status(&format!("staging {fs}{staging}"));
    let files = stage(&webhdfs, &fs, &staging, &config, spec_text).await?;
    let output = format!("{fs}/user/{user}/yarnflow-output/{app}");
    let env = am_environment(&hadoop, &user, &fs, &staging, &files, &output)?;
    let context = submission_context(&config, args, &spec, max, env, &files)?;
    let attempts = context.max_app_attempts;
    rest.submit_application(&SubmissionContext {
        application_id: Some(app),
        ..context
    })
    .await?;
    progress.line(&format!(
        "application {app} submitted ({attempts} attempts)"
    ));
    progress.line(&format!("output: {output}"));

    let followed = follow(&rest, app, &spec.job_id(), &mut progress, t0, args.detached).await;
    let (report, job) = match followed {
        Ok((Some(report), job)) => (report, job),
        Ok((None, _)) => {
            progress.clear();
            return Ok(ExitCode::SUCCESS);
        }
        Err(e) => {
            progress.clear();
            return Err(e);
        }
    };
    progress.finish(
        job.as_ref(),
        &format!(
            "{app} {} / {}: {}",
            report.state,
            report.final_status,
            report.diagnostics.lines().next().unwrap_or_default()
        ),
    );
    Ok(if report.final_status == "SUCCEEDED" {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    })
}

/// Uploads this binary, the effective configuration and the job spec to `staging` (an HDFS
/// path on `fs`), and returns them as the AM's local resources.
async fn stage(
    webhdfs: &WebHdfs,
    fs: &str,
    staging: &str,
    config: &crate::config::Config,
    spec_text: String,
) -> anyhow::Result<Vec<StagedFile>> {
    // This very binary, with its registered operators, is the AM's and TaskManagers'.
    let exe = std::env::current_exe().context("find this binary")?;
    let binary = tokio::fs::read(&exe)
        .await
        .with_context(|| format!("read {}", exe.display()))?;
    webhdfs.mkdirs(staging).await?;
    let mut files = Vec::new();
    for (name, data) in [
        ("yarnflow", Bytes::from(binary)),
        ("yarnflow.yaml", Bytes::from(effective_config_yaml(config)?)),
        ("job.yaml", Bytes::from(spec_text)),
    ] {
        let path = format!("{staging}/{name}");
        webhdfs.create(&path, data).await?;
        let status = webhdfs.status(&path).await?;
        files.push(StagedFile {
            name: name.into(),
            uri: format!("{fs}{path}"),
            size: status.length,
            timestamp: status.modification_time,
        });
    }
    Ok(files)
}

/// The AM container's environment: where the scheduler, staging dir, staged files and output
/// are, and what libhdfs needs (`user`'s name included: it owns the staging and output dirs).
fn am_environment(
    hadoop: &HadoopConf,
    user: &str,
    fs: &str,
    staging: &str,
    files: &[StagedFile],
    output: &str,
) -> anyhow::Result<Vec<(String, String)>> {
    let mut env = vec![
        (
            launch::RM_SCHEDULER_ENV.to_string(),
            hadoop.required(conf::RM_SCHEDULER_ADDRESS)?.to_string(),
        ),
        (launch::STAGING_ENV.to_string(), format!("{fs}{staging}")),
        (
            launch::STAGED_FILES_ENV.to_string(),
            launch::encode_staged_files(files),
        ),
        (launch::OUTPUT_ENV.to_string(), output.to_string()),
        (
            launch::PROGRAM_ENV.to_string(),
            crate::api::Operators::installed().program().to_string(),
        ),
    ];
    env.extend(launch::pass_through_env());
    env.retain(|(k, _)| k != launch::HADOOP_USER_NAME_ENV);
    env.push((launch::HADOOP_USER_NAME_ENV.into(), user.into()));
    if !env.iter().any(|(k, _)| k == "LIBHDFS_OPTS") {
        env.push(("LIBHDFS_OPTS".into(), launch::DEFAULT_LIBHDFS_OPTS.into()));
    }
    // libhdfs in the AM and TaskManagers needs the Hadoop client jars.
    if let Ok(cp) = std::env::var("YARNFLOW_HADOOP_CLASSPATH") {
        env.retain(|(k, _)| k != "CLASSPATH");
        env.push(("CLASSPATH".into(), cp));
    }
    Ok(env)
}

/// The application to submit (without its id): name, queue, attempts, the AM's resources
/// (capped at the cluster's `max`) and launch context.
fn submission_context(
    config: &crate::config::Config,
    args: &SubmitArgs,
    spec: &JobSpec,
    max: Resource,
    env: Vec<(String, String)>,
    files: &[StagedFile],
) -> anyhow::Result<SubmissionContext> {
    let ha_on = config.get("high-availability.type") == Some("zookeeper");
    let attempts = match config.i64("yarn.application-attempts")? {
        Some(n) => n as i32,
        None if ha_on => 2,
        None => 1,
    };
    let memory_mb = (config
        .memory_bytes("jobmanager.memory.process.size")?
        .unwrap_or(256 << 20)
        >> 20) as i64;
    let name = args
        .name
        .clone()
        .or_else(|| {
            config
                .get("yarn.application.name")
                .filter(|n| *n != "yarnflow")
                .map(str::to_string)
        })
        .unwrap_or_else(|| spec.name.clone());
    Ok(SubmissionContext {
        name,
        queue: args
            .queue
            .clone()
            .or_else(|| config.string("yarn.application.queue"))
            .unwrap_or_else(|| "default".into()),
        application_type: "YARNFLOW".into(),
        max_app_attempts: attempts,
        keep_containers_across_application_attempts: ha_on,
        attempt_failures_validity_interval: config
            .i64("yarn.application-attempt-failures-validity-interval")?
            .unwrap_or(10_000),
        resource: Resource {
            memory_mb: memory_mb.min(max.memory_mb.max(1)),
            vcores: config.u64("yarn.appmaster.vcores")?.unwrap_or(1) as i32,
        },
        tags: vec!["yarnflow".into(), format!("job:{}", spec.job_id())],
        am: LaunchContext {
            commands: vec![
                "exec ./yarnflow --conf . appmaster --mode job --job job.yaml 1><LOG_DIR>/appmaster.out 2><LOG_DIR>/appmaster.err".into(),
            ],
            environment: env,
            local_resources: files.iter().map(StagedFile::local_resource).collect(),
            tokens: None,
        },
        ..Default::default()
    })
}

/// Follows the application (ACCEPTED → RUNNING) and its job (→ RUNNING) to the end, showing
/// the job's progress: the final report (`None` once the job runs when `detached`) and the
/// job's last view.
async fn follow(
    rest: &RmRest,
    app: ApplicationId,
    job_id: &str,
    progress: &mut Progress,
    t0: Instant,
    detached: bool,
) -> anyhow::Result<(Option<AppReport>, Option<JobSnapshot>)> {
    let mut last_job: Option<JobSnapshot> = None;
    let mut last_state = String::new();
    let mut jobmanager: Option<JobManagerClient> = None;
    let mut job_running = false;
    loop {
        let r = rest.application(&app.to_string()).await?;
        if r.state != last_state {
            progress.line(&format!(
                "{app} {} ({:.1} s)",
                r.state,
                t0.elapsed().as_secs_f64()
            ));
            if r.state == "RUNNING" {
                progress.line(&format!("tracking URL: {}", r.tracking_url));
            }
            last_state = r.state.clone();
        }
        if r.is_final() {
            return Ok((Some(r), last_job));
        }
        if let Some(address) = r.jobmanager_url()
            && jobmanager.as_ref().map(JobManagerClient::address) != Some(address.as_str())
        {
            progress.line(&format!("JobManager: {address}"));
            jobmanager = Some(JobManagerClient::new(&address, JOB_STATUS_TIMEOUT));
        }
        // The JobManager may not serve the job yet, or be going away: ask again next round.
        if let Some(jm) = &jobmanager
            && let Ok(job) = jm.job(job_id).await
        {
            if job.status == JobStatus::Running && !job_running {
                job_running = true;
                progress.line(&format!(
                    "job {job_id} RUNNING ({:.1} s)",
                    t0.elapsed().as_secs_f64()
                ));
                if detached {
                    return Ok((None, Some(job)));
                }
            }
            let taskmanagers = jm.overview().await.ok().map(|o| o.taskmanagers);
            progress.update(&job, taskmanagers);
            last_job = Some(job);
        } else if let Some(job) = &last_job {
            // Between JobManagers (an AM failover): the last view stands.
            progress.status(&format!(
                "job {job_id} {}: waiting for the JobManager",
                job.status
            ));
        } else {
            progress.status(&format!("{app} {}", r.state));
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
}

pub async fn cancel(args: &CancelArgs) -> anyhow::Result<ExitCode> {
    let hadoop = HadoopConf::load(args.hadoop_conf.as_deref())?;
    let rest = RmRest::new(hadoop.required(conf::RM_WEBAPP_ADDRESS)?);
    let app = &args.application_id;
    let r = match rest.application(app).await {
        Ok(r) => r,
        Err(e) if e.is_not_found() => bail!(
            "application {app} is not known to the ResourceManager at {}",
            rest.base()
        ),
        Err(e) => return Err(e).with_context(|| format!("application {app}")),
    };
    if r.is_final() {
        bail!(
            "application {app} already ended ({} / {})",
            r.state,
            r.final_status
        );
    }
    let jm = r.jobmanager_url().with_context(|| {
        format!(
            "application {app} has no JobManager yet (state {})",
            r.state
        )
    })?;
    let client = JobManagerClient::new(&jm, CANCEL_TIMEOUT);
    for j in client.jobs().await? {
        match client.cancel(&j.id).await {
            Ok(()) => println!("job {}: cancel requested", j.id),
            // It ended between the listing and the request.
            Err(e) if e.is_not_found() => println!("job {}: already gone", j.id),
            Err(e) => return Err(e.into()),
        }
    }
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let r = rest.application(app).await?;
        if r.is_final() {
            println!("{app} {} / {}", r.state, r.final_status);
            return Ok(if r.final_status == "KILLED" {
                ExitCode::SUCCESS
            } else {
                ExitCode::FAILURE
            });
        }
        if Instant::now() > deadline {
            bail!("application {app} did not end within 60 s of the cancel");
        }
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_am_acts_on_hdfs_as_the_submitting_user() {
        let dir = std::env::temp_dir().join(format!("yarnflow-submit-env-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(
            dir.join("yarn-site.xml"),
            "<configuration><property><name>yarn.resourcemanager.scheduler.address</name><value>rm:8030</value></property></configuration>",
        )
        .unwrap();
        let hadoop = HadoopConf::load(Some(&dir)).unwrap();
        let env = am_environment(&hadoop, "alice", "hdfs://nn:8020", "/s", &[], "/o").unwrap();
        let users: Vec<&str> = env
            .iter()
            .filter(|(k, _)| k == launch::HADOOP_USER_NAME_ENV)
            .map(|(_, v)| v.as_str())
            .collect();
        assert_eq!(users, ["alice"]);
        let _ = std::fs::remove_dir_all(&dir);
    }
}
