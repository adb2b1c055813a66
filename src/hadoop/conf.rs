//! Hadoop `*-site.xml` configuration (`HADOOP_CONF_DIR`): the few keys yarnflow's client reads.

use std::collections::HashMap;
use std::path::{Path, PathBuf};

pub const RM_ADDRESS: &str = "yarn.resourcemanager.address";
pub const RM_SCHEDULER_ADDRESS: &str = "yarn.resourcemanager.scheduler.address";
pub const RM_WEBAPP_ADDRESS: &str = "yarn.resourcemanager.webapp.address";
pub const FS_DEFAULT: &str = "fs.defaultFS";
pub const NN_HTTP_ADDRESS: &str = "dfs.namenode.http-address";

#[derive(Debug, Clone, thiserror::Error)]
pub enum HadoopConfError {
    #[error("{0}: cannot read: {1}")]
    Io(PathBuf, String),
    #[error("{file}: missing {key} (is this the cluster's HADOOP_CONF_DIR?)")]
    Missing { file: String, key: String },
    #[error("no Hadoop configuration: pass --hadoop-conf DIR or set HADOOP_CONF_DIR")]
    NoDir,
}

/// Merged `core-site.xml`, `hdfs-site.xml` and `yarn-site.xml` of one directory.
#[derive(Debug, Clone, Default)]
pub struct HadoopConf {
    pub dir: PathBuf,
    values: HashMap<String, String>,
}

fn unescape(s: &str) -> String {
    s.replace("&lt;", "<")
        .replace("&gt;", ">")
        .replace("&quot;", "\"")
        .replace("&apos;", "'")
        .replace("&amp;", "&")
}

/// The `<name>`/`<value>` pairs of a Hadoop configuration document.
pub fn parse_properties(xml: &str) -> Vec<(String, String)> {
    let re = regex::Regex::new(
        r"(?s)<property>.*?<name>\s*(.*?)\s*</name>.*?<value>(.*?)</value>.*?</property>",
    )
    .expect("a valid regex");
    re.captures_iter(xml)
        .map(|c| (unescape(&c[1]), unescape(c[2].trim())))
        .collect()
}

impl HadoopConf {
    /// Reads `dir` (or `$HADOOP_CONF_DIR`); missing files are skipped.
    pub fn load(dir: Option<&Path>) -> Result<HadoopConf, HadoopConfError> {
        let dir = dir
            .map(Path::to_path_buf)
            .or_else(|| std::env::var_os("HADOOP_CONF_DIR").map(PathBuf::from))
            .ok_or(HadoopConfError::NoDir)?;
        let mut values = HashMap::new();
        for f in ["core-site.xml", "hdfs-site.xml", "yarn-site.xml"] {
            let path = dir.join(f);
            match std::fs::read_to_string(&path) {
                Ok(xml) => values.extend(parse_properties(&xml)),
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                Err(e) => return Err(HadoopConfError::Io(path, e.to_string())),
            }
        }
        Ok(HadoopConf { dir, values })
    }

    pub fn get(&self, key: &str) -> Option<&str> {
        self.values.get(key).map(String::as_str)
    }

    pub fn required(&self, key: &str) -> Result<&str, HadoopConfError> {
        self.get(key).ok_or_else(|| HadoopConfError::Missing {
            file: self.dir.display().to_string(),
            key: key.to_string(),
        })
    }

    /// The WebHDFS base URL from `dfs.namenode.http-address`.
    pub fn webhdfs_url(&self) -> Result<String, HadoopConfError> {
        Ok(format!(
            "http://{}/webhdfs/v1",
            self.required(NN_HTTP_ADDRESS)?
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_hadoop_xml() {
        let xml = "<?xml version=\"1.0\"?><configuration>\n<property><name>a.b</name><value>x&amp;y</value><source>z</source></property>\n<property>\n <name> c </name>\n <value>1</value>\n</property></configuration>";
        assert_eq!(
            parse_properties(xml),
            vec![("a.b".into(), "x&y".into()), ("c".into(), "1".into())]
        );
    }
}
