//! The HA configuration, from Flink's keys (`high-availability.*`, `job-result-store.*`).

use std::time::Duration;

use crate::config::{Config, ConfigError};

/// `high-availability.type`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HaType {
    /// Embedded: always leader, nothing survives the process (local mode).
    None,
    ZooKeeper,
}

#[derive(Debug, Clone)]
pub struct HaConfig {
    pub kind: HaType,
    /// `high-availability.zookeeper.quorum` (required with ZooKeeper).
    pub quorum: String,
    /// `high-availability.zookeeper.path.root`.
    pub root: String,
    /// `high-availability.cluster-id` (on YARN: the application id).
    pub cluster_id: String,
    /// `high-availability.storageDir` URI (required with ZooKeeper).
    pub storage_dir: String,
    pub session_timeout: Duration,
    pub connection_timeout: Duration,
    /// `high-availability.zookeeper.client.tolerate-suspended-connections`.
    pub tolerate_suspended: bool,
    /// `job-result-store.storage-path` (default `<storageDir>/job-result-store/<cluster-id>`).
    pub job_result_store_path: String,
    pub delete_on_commit: bool,
    /// `execution.checkpointing.num-retained` (≤ 0 becomes 1, as in Flink).
    pub num_retained: usize,
    /// `execution.checkpointing.dir` (Flink 2's `state.checkpoints.dir`), where keyed subtasks
    /// write their snapshot files: default `<storageDir>/<cluster-id>/checkpoints`, with the
    /// cluster's other HA blobs (so that closing the cluster removes what a job left, and two
    /// clusters never share a directory); `None` without either.
    pub checkpoint_dir: Option<String>,
}

impl HaConfig {
    pub fn from_config(c: &Config) -> Result<HaConfig, ConfigError> {
        let kind = match c
            .one_of("high-availability.type", &["none", "zookeeper"])?
            .as_deref()
        {
            Some("zookeeper") => HaType::ZooKeeper,
            _ => HaType::None,
        };
        let cluster_id = c
            .string("high-availability.cluster-id")
            .unwrap_or_else(|| "default".into())
            .trim_matches('/')
            .to_string();
        let (quorum, storage_dir) = match kind {
            HaType::ZooKeeper => {
                c.required("high-availability.zookeeper.quorum")?;
                c.required("high-availability.storageDir")?;
                (
                    c.parse_with("high-availability.zookeeper.quorum", parse_quorum)?
                        .unwrap_or_default(),
                    c.parse_with("high-availability.storageDir", parse_storage_uri)?
                        .unwrap_or_default(),
                )
            }
            HaType::None => (
                String::new(),
                c.parse_with("high-availability.storageDir", parse_storage_uri)?
                    .unwrap_or_default(),
            ),
        };
        let root = format!(
            "/{}",
            c.string("high-availability.zookeeper.path.root")
                .unwrap_or_else(|| "/yarnflow".into())
                .trim_matches('/')
        );
        if cluster_id.is_empty() {
            c.parse_with("high-availability.cluster-id", |_| -> Result<(), String> {
                Err("must not be empty".into())
            })?;
        }
        let job_result_store_path = c
            .parse_with("job-result-store.storage-path", parse_storage_uri)?
            .unwrap_or_else(|| format!("{storage_dir}/job-result-store/{cluster_id}"));
        let num_retained = c
            .i64("execution.checkpointing.num-retained")?
            .unwrap_or(1)
            .max(1) as usize;
        let checkpoint_dir = c
            .parse_with("execution.checkpointing.dir", parse_storage_uri)?
            .or_else(|| {
                (!storage_dir.is_empty()).then(|| format!("{storage_dir}/{cluster_id}/checkpoints"))
            });
        Ok(HaConfig {
            checkpoint_dir,
            kind,
            quorum,
            root,
            cluster_id,
            storage_dir,
            session_timeout: c
                .duration("high-availability.zookeeper.client.session-timeout")?
                .unwrap_or(Duration::from_secs(60)),
            connection_timeout: c
                .duration("high-availability.zookeeper.client.connection-timeout")?
                .unwrap_or(Duration::from_secs(15)),
            tolerate_suspended: c
                .bool("high-availability.zookeeper.client.tolerate-suspended-connections")?
                .unwrap_or(false),
            job_result_store_path,
            delete_on_commit: c.bool("job-result-store.delete-on-commit")?.unwrap_or(true),
            num_retained,
        })
    }

    /// The znode every path of this cluster lives under: `<root>/<cluster-id>`.
    pub fn namespace(&self) -> String {
        format!("{}/{}", self.root.trim_end_matches('/'), self.cluster_id)
    }

    /// Where this cluster's HA blobs live: `<storageDir>/<cluster-id>`.
    pub fn blob_dir_uri(&self) -> String {
        format!("{}/{}", self.storage_dir, self.cluster_id)
    }
}

/// The `high-availability.storageDir` `yarnflow submit` uses when none is configured: the
/// submitting user's HDFS home on the default file system `fs` (`hdfs://nn:8020`), so that a
/// first submit needs no configuration at all.
pub fn default_storage_dir(fs: &str, user: &str) -> String {
    format!("{}/user/{user}/.yarnflow/ha", fs.trim_end_matches('/'))
}

/// `host:port[,host:port...]`, whitespace stripped (as Flink does).
fn parse_quorum(v: &str) -> Result<String, String> {
    let quorum: String = v.split_whitespace().collect();
    let expected = || format!("expected host:port[,host:port...], got '{v}'");
    if quorum.is_empty() {
        return Err(expected());
    }
    for server in quorum.split(',') {
        match server.rsplit_once(':') {
            Some((host, port)) if !host.is_empty() && port.parse::<u16>().is_ok() => {}
            _ => return Err(expected()),
        }
    }
    Ok(quorum)
}

/// A storage URI yarnflow can open: `hdfs://host:port/path` or `file:///path` (trailing `/`
/// removed).
fn parse_storage_uri(v: &str) -> Result<String, String> {
    let v = v.trim();
    let bad = |why: &str| {
        Err(format!(
            "{why}: expected hdfs://host:port/path or file:///path, got '{v}'"
        ))
    };
    let Some((scheme, rest)) = v.split_once("://") else {
        return bad("not a URI");
    };
    let (authority, path) = rest.split_at(rest.find('/').unwrap_or(rest.len()));
    match scheme {
        "hdfs" if authority.is_empty() => return bad("missing the namenode host:port"),
        "hdfs" => {}
        "file" if !authority.is_empty() => return bad("a file URI takes no host"),
        "file" => {}
        _ => return bad(&format!("unsupported scheme '{scheme}'")),
    }
    if path.trim_matches('/').is_empty() {
        return bad("the path must not be the root directory");
    }
    Ok(v.trim_end_matches('/').to_string())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Origin;

    #[test]
    fn the_default_storage_dir_is_under_the_users_hdfs_home() {
        let dir = default_storage_dir("hdfs://nn:8020/", "alice");
        assert_eq!(dir, "hdfs://nn:8020/user/alice/.yarnflow/ha");
        let mut c = Config::defaults();
        c.set("high-availability.storageDir", &dir);
        assert_eq!(HaConfig::from_config(&c).unwrap().storage_dir, dir);
    }

    #[test]
    fn zookeeper_requires_quorum_and_storage_dir() {
        let mut c = Config::defaults();
        c.merge_str(
            "high-availability.type: zookeeper\n",
            Origin::File("conf/yarnflow.yaml".into()),
        )
        .unwrap();
        let e = HaConfig::from_config(&c).unwrap_err().to_string();
        assert!(e.contains("high-availability.zookeeper.quorum"), "{e}");
        c.set("high-availability.zookeeper.quorum", " a:1, b:2 ");
        c.set("high-availability.storageDir", "hdfs://nn:1/ha/");
        c.set("high-availability.cluster-id", "application_1_0001");
        let h = HaConfig::from_config(&c).unwrap();
        assert_eq!(h.quorum, "a:1,b:2");
        assert_eq!(h.namespace(), "/yarnflow/application_1_0001");
        assert_eq!(h.blob_dir_uri(), "hdfs://nn:1/ha/application_1_0001");
        assert_eq!(
            h.job_result_store_path,
            "hdfs://nn:1/ha/job-result-store/application_1_0001"
        );
        assert_eq!(h.session_timeout, Duration::from_secs(60));
        assert!(!h.tolerate_suspended);
        assert_eq!(
            h.checkpoint_dir.as_deref(),
            Some("hdfs://nn:1/ha/application_1_0001/checkpoints")
        );
        c.set("execution.checkpointing.dir", "hdfs://nn:1/chk/");
        let h = HaConfig::from_config(&c).unwrap();
        assert_eq!(h.checkpoint_dir.as_deref(), Some("hdfs://nn:1/chk"));
        c.set("execution.checkpointing.dir", "chk");
        let e = HaConfig::from_config(&c).unwrap_err().to_string();
        assert!(e.contains("execution.checkpointing.dir"), "{e}");
        assert_eq!(
            HaConfig::from_config(&Config::defaults())
                .unwrap()
                .checkpoint_dir,
            None
        );
    }

    #[test]
    fn bad_type_names_the_key() {
        let mut c = Config::defaults();
        c.set("high-availability.type", "etcd");
        let e = HaConfig::from_config(&c).unwrap_err().to_string();
        assert!(
            e.contains("high-availability.type") && e.contains("zookeeper"),
            "{e}"
        );
    }

    #[test]
    fn malformed_values_name_key_and_file() {
        let mut c = Config::defaults();
        c.merge_str(
            "high-availability.type: zookeeper\n\
             high-availability.zookeeper.quorum: zk1:2181, zk2\n\
             high-availability.storageDir: hdfs:///ha\n",
            Origin::File("conf/yarnflow.yaml".into()),
        )
        .unwrap();
        let e = HaConfig::from_config(&c).unwrap_err().to_string();
        assert!(
            e.contains("conf/yarnflow.yaml")
                && e.contains("high-availability.zookeeper.quorum")
                && e.contains("zk2"),
            "{e}"
        );
        assert_eq!(e.lines().count(), 1, "{e}");
        c.merge_str(
            "high-availability.zookeeper.quorum: zk1:2181,zk2:2181\n",
            Origin::File("conf/yarnflow.yaml".into()),
        )
        .unwrap();
        let e = HaConfig::from_config(&c).unwrap_err().to_string();
        assert!(
            e.contains("conf/yarnflow.yaml")
                && e.contains("high-availability.storageDir")
                && e.contains("host:port"),
            "{e}"
        );
        for bad in ["/ha", "s3://b/ha", "file://host/ha", "file:///"] {
            c.set("high-availability.storageDir", bad);
            let e = HaConfig::from_config(&c).unwrap_err().to_string();
            assert!(e.contains("high-availability.storageDir"), "{bad}: {e}");
        }
        c.set("high-availability.storageDir", "file:///tmp/ha/");
        c.set("job-result-store.storage-path", "jrs");
        let e = HaConfig::from_config(&c).unwrap_err().to_string();
        assert!(e.contains("job-result-store.storage-path"), "{e}");
        c.set("job-result-store.storage-path", "file:///tmp/jrs");
        let h = HaConfig::from_config(&c).unwrap();
        assert_eq!(h.storage_dir, "file:///tmp/ha");
        assert_eq!(h.job_result_store_path, "file:///tmp/jrs");
    }
}
