//! What `yarnflow submit` hands the ApplicationMaster and the AM hands its TaskManager
//! containers: environment variable names, the staged files, and the launch contexts.
//!
//! YARN tells a container its own id, node and log dirs, but not the RM scheduler address, the
//! staged files or where the HA services live; those travel in these variables.
//!
//! ```text
//! <staging> = <fs.defaultFS>/user/<user>/.yarnflow/<application id>/
//!     yarnflow        the submitting binary (AM and TaskManagers): `yarnflow`, or a job
//!                     binary with its operators (its own name in YARNFLOW_PROGRAM)
//!     yarnflow.yaml   the effective configuration (submit's conf dir + -D overrides)
//!     job.yaml        the job spec (read by attempt 1; later attempts recover from HA)
//! ```

use crate::hadoop::yarn::{LaunchContext, LocalResource, LocalResourceType};

/// The RM scheduler address (ApplicationMasterProtocol), `host:port`.
pub const RM_SCHEDULER_ENV: &str = crate::appmaster::doctor::RM_SCHEDULER_ENV;
/// The staging directory URI, removed when the application ends.
pub const STAGING_ENV: &str = "YARNFLOW_STAGING_DIR";
/// The staged files ([`encode_staged_files`]), localized into every TaskManager too.
pub const STAGED_FILES_ENV: &str = "YARNFLOW_STAGED_FILES";
/// Where `files` sinks without a path write (`<dir>/<job id>`).
pub const OUTPUT_ENV: &str = "YARNFLOW_OUTPUT_DIR";
/// Who the AM and its TaskManagers are on HDFS without Kerberos: Hadoop's client takes the
/// user from this variable, else the container's OS user (the NodeManager's, e.g. `yarn`, with
/// the default container executor). `yarnflow submit` sets it to the submitting user, as
/// Flink's YARN client does.
pub const HADOOP_USER_NAME_ENV: &str = "HADOOP_USER_NAME";
/// The name the job binary was submitted under (it is staged as `yarnflow`), for messages.
pub const PROGRAM_ENV: &str = "YARNFLOW_PROGRAM";
/// Variables a yarnflow process needs (passed through from the submitter to the AM, and from the
/// AM to its TaskManagers). `JAVA_HOME`, `CLASSPATH`, `LD_LIBRARY_PATH` and `LIBHDFS_OPTS` are
/// for the libhdfs client (`storage.hdfs.client: libhdfs`); the native client reads none of them.
pub const PASS_THROUGH_ENV: &[&str] = &[
    HADOOP_USER_NAME_ENV,
    "JAVA_HOME",
    "CLASSPATH",
    "LD_LIBRARY_PATH",
    "LIBHDFS_OPTS",
    "RUST_LOG",
    "RUST_BACKTRACE",
    PROGRAM_ENV,
    // Fault points a test armed (read only by builds with the `fault-points` feature).
    crate::faults::ENV,
];

/// JVM options for libhdfs's embedded JVM when the submitter sets no `LIBHDFS_OPTS`: it only
/// runs the HDFS client, so start fast (C1 only, serial GC) and stay small.
pub const DEFAULT_LIBHDFS_OPTS: &str = "-XX:TieredStopAtLevel=1 -XX:+UseSerialGC -Xss512k -Xmx256m";

/// One staged file, with the exact size and modification time YARN's localizer checks.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StagedFile {
    /// The name in the container's working directory.
    pub name: String,
    pub uri: String,
    pub size: i64,
    pub timestamp: i64,
}

impl StagedFile {
    pub fn local_resource(&self) -> (String, LocalResource) {
        (
            self.name.clone(),
            LocalResource {
                uri: self.uri.clone(),
                size: self.size,
                timestamp: self.timestamp,
                kind: LocalResourceType::File,
            },
        )
    }
}

/// `name|uri|size|timestamp` joined by `;`: no quotes, because the NodeManager writes each
/// variable into a shell script inside double quotes.
pub fn encode_staged_files(files: &[StagedFile]) -> String {
    files
        .iter()
        .map(|f| format!("{}|{}|{}|{}", f.name, f.uri, f.size, f.timestamp))
        .collect::<Vec<_>>()
        .join(";")
}

/// The inverse of [`encode_staged_files`]; a malformed entry is one clear error.
pub fn decode_staged_files(raw: &str) -> anyhow::Result<Vec<StagedFile>> {
    raw.split(';')
        .filter(|e| !e.is_empty())
        .map(|entry| {
            let bad = || anyhow::anyhow!("{STAGED_FILES_ENV}: malformed entry '{entry}' (expected name|uri|size|timestamp)");
            let mut parts = entry.split('|');
            let (Some(name), Some(uri), Some(size), Some(ts), None) =
                (parts.next(), parts.next(), parts.next(), parts.next(), parts.next())
            else {
                return Err(bad());
            };
            Ok(StagedFile {
                name: name.to_string(),
                uri: uri.to_string(),
                size: size.parse().map_err(|_| bad())?,
                timestamp: ts.parse().map_err(|_| bad())?,
            })
        })
        .collect()
}

/// Reads [`STAGED_FILES_ENV`]; a missing or malformed value is one clear error.
pub fn staged_files_from_env() -> anyhow::Result<Vec<StagedFile>> {
    let raw = std::env::var(STAGED_FILES_ENV)
        .map_err(|_| anyhow::anyhow!("{STAGED_FILES_ENV} is not set by the submitter"))?;
    decode_staged_files(&raw)
}

/// The pass-through variables present in this process.
pub fn pass_through_env() -> Vec<(String, String)> {
    PASS_THROUGH_ENV
        .iter()
        .filter_map(|k| std::env::var(k).ok().map(|v| (k.to_string(), v)))
        .collect()
}

/// The launch context of one TaskManager container: it finds the leader through ZooKeeper
/// (cluster-id = the application id), so it survives the AM's restarts unchanged. `template`
/// is `yarn.container-start-command-template` (`%yarnflow%`, `%args%`, `%redirects%`).
pub fn taskmanager_context(
    files: &[StagedFile],
    application_id: &str,
    slots: u32,
    env: Vec<(String, String)>,
    template: &str,
) -> LaunchContext {
    // No double quotes: the NodeManager wraps the command in bash -c "...".
    let command = template
        .replace("%yarnflow%", "exec ./yarnflow")
        .replace(
            "%args%",
            &format!(
                "--conf . -D high-availability.cluster-id={application_id} taskmanager --slots {slots} --id tm-$CONTAINER_ID"
            ),
        )
        .replace(
            "%redirects%",
            "1><LOG_DIR>/taskmanager.out 2><LOG_DIR>/taskmanager.err",
        );
    LaunchContext {
        commands: vec![command],
        environment: env,
        local_resources: files.iter().map(StagedFile::local_resource).collect(),
        tokens: None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn staged_files_round_trip_and_bad_entries_are_named() {
        let files = vec![
            StagedFile {
                name: "yarnflow".into(),
                uri: "hdfs://127.0.0.1:9000/user/u/.yarnflow/app/yarnflow".into(),
                size: 12,
                timestamp: 1700000000000,
            },
            StagedFile {
                name: "job.yaml".into(),
                uri: "hdfs://nn:8020/x/job.yaml".into(),
                size: 3,
                timestamp: 5,
            },
        ];
        let raw = encode_staged_files(&files);
        assert!(!raw.contains('"'));
        assert_eq!(decode_staged_files(&raw).unwrap(), files);
        let e = decode_staged_files("a|b|c").unwrap_err().to_string();
        assert!(e.contains("'a|b|c'"), "{e}");
        let e = decode_staged_files("a|b|x|1").unwrap_err().to_string();
        assert!(e.contains(STAGED_FILES_ENV), "{e}");
    }
}
