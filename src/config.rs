//! Configuration: Flink-style flat keys (`high-availability.type`, `restart-strategy.*`, `yarn.*`,
//! `execution.checkpointing.*`, yarnflow's `storage.hdfs.client`) with Flink's defaults. Each
//! layer reads its own keys (`HaConfig::from_config`, `storage::HdfsClient::from_config`, ...).
//!
//! Layers, later wins: the defaults in `conf/yarnflow.yaml` (compiled in) < the user's
//! `<conf dir>/yarnflow.yaml` (`--conf DIR`, else `$YARNFLOW_CONF_DIR`) < explicit overrides
//! (`-D key=value`, or what the ApplicationMaster is told by the submitter). YAML may use flat
//! dotted keys or nested maps; both flatten to the same dotted key. `~` (null) unsets a key.
//!
//! Every typed getter reports a bad value as one [`ConfigError`] line naming the key, the file the
//! value came from and what was expected.

use std::collections::BTreeMap;
use std::fmt;
use std::path::{Path, PathBuf};
use std::time::Duration;

/// The compiled-in defaults: every key yarnflow reads, documented.
pub const DEFAULTS_YAML: &str = include_str!("../conf/yarnflow.yaml");

/// The file name looked up inside a configuration directory.
pub const CONFIG_FILE_NAME: &str = "yarnflow.yaml";

/// Environment variable naming the configuration directory when `--conf` is not given.
pub const CONF_DIR_ENV: &str = "YARNFLOW_CONF_DIR";

/// Where a value came from, so errors can point at the right file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Origin {
    /// `conf/yarnflow.yaml` compiled into the binary.
    Defaults,
    /// A user configuration file.
    File(PathBuf),
    /// An explicit override (command line or environment handed over by the submitter).
    Override,
}

impl fmt::Display for Origin {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Origin::Defaults => f.write_str("built-in defaults (conf/yarnflow.yaml)"),
            Origin::File(p) => write!(f, "{}", p.display()),
            Origin::Override => f.write_str("command-line override"),
        }
    }
}

/// A configuration problem, always naming the file and, where there is one, the key.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("{file}: cannot read: {source}")]
    Io {
        file: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("{origin}: invalid YAML{location}: {message}")]
    Yaml {
        origin: Origin,
        /// " at line L column C", or empty when the parser gave no position.
        location: String,
        message: String,
    },
    #[error("{origin}: key '{key}': {message}")]
    Invalid {
        origin: Origin,
        key: String,
        message: String,
    },
    #[error("missing required key '{key}' (set it in {hint})")]
    Missing { key: String, hint: String },
}

#[derive(Debug, Clone)]
struct Entry {
    value: String,
    origin: Origin,
}

/// The effective configuration: a map of dotted keys to string values with their origin.
#[derive(Debug, Clone)]
pub struct Config {
    entries: BTreeMap<String, Entry>,
    /// Keys present in the defaults (with or without a value): anything else is unknown.
    known: Vec<String>,
    /// The user file, if one was loaded (named in "missing key" hints).
    user_file: Option<PathBuf>,
}

impl Config {
    /// The built-in defaults only.
    pub fn defaults() -> Config {
        let mut known = Vec::new();
        let mut entries = BTreeMap::new();
        let parsed = parse_yaml(DEFAULTS_YAML, &Origin::Defaults)
            .expect("conf/yarnflow.yaml is valid YAML (checked by a unit test)");
        for (key, value) in parsed {
            known.push(key.clone());
            if let Some(value) = value {
                entries.insert(
                    key,
                    Entry {
                        value,
                        origin: Origin::Defaults,
                    },
                );
            }
        }
        Config {
            entries,
            known,
            user_file: None,
        }
    }

    /// Defaults overlaid with `<dir>/yarnflow.yaml`. With `dir == None`, `$YARNFLOW_CONF_DIR`
    /// is used if set; a directory given explicitly must contain the file.
    pub fn load(dir: Option<&Path>) -> Result<Config, ConfigError> {
        let mut config = Config::defaults();
        let dir = dir
            .map(Path::to_path_buf)
            .or_else(|| std::env::var_os(CONF_DIR_ENV).map(PathBuf::from));
        if let Some(dir) = dir {
            config.merge_file(&dir.join(CONFIG_FILE_NAME))?;
        }
        Ok(config)
    }

    /// Overlays one YAML file.
    pub fn merge_file(&mut self, file: &Path) -> Result<(), ConfigError> {
        let text = std::fs::read_to_string(file).map_err(|source| ConfigError::Io {
            file: file.to_path_buf(),
            source,
        })?;
        self.merge_str(&text, Origin::File(file.to_path_buf()))?;
        self.user_file = Some(file.to_path_buf());
        Ok(())
    }

    /// Overlays YAML text; `origin` names it in errors.
    pub fn merge_str(&mut self, text: &str, origin: Origin) -> Result<(), ConfigError> {
        for (key, value) in parse_yaml(text, &origin)? {
            match value {
                Some(value) => {
                    self.entries.insert(
                        key,
                        Entry {
                            value,
                            origin: origin.clone(),
                        },
                    );
                }
                None => {
                    self.entries.remove(&key);
                }
            }
        }
        Ok(())
    }

    /// Sets one key (an explicit override).
    pub fn set(&mut self, key: impl Into<String>, value: impl Into<String>) {
        self.entries.insert(
            key.into(),
            Entry {
                value: value.into(),
                origin: Origin::Override,
            },
        );
    }

    /// Parses `key=value` (the `-D` syntax) and sets it.
    pub fn set_pair(&mut self, pair: &str) -> Result<(), ConfigError> {
        match pair.split_once('=') {
            Some((k, v)) if !k.trim().is_empty() => {
                self.set(k.trim(), v.trim());
                Ok(())
            }
            _ => Err(ConfigError::Invalid {
                origin: Origin::Override,
                key: pair.to_string(),
                message: "expected key=value".into(),
            }),
        }
    }

    /// Keys set by the user that yarnflow does not know (probably typos).
    pub fn unknown_keys(&self) -> Vec<&str> {
        self.entries
            .iter()
            .filter(|(k, e)| e.origin != Origin::Defaults && !self.known.iter().any(|n| n == *k))
            .map(|(k, _)| k.as_str())
            .collect()
    }

    /// Every effective key and value, sorted by key.
    pub fn iter(&self) -> impl Iterator<Item = (&str, &str)> {
        self.entries
            .iter()
            .map(|(k, e)| (k.as_str(), e.value.as_str()))
    }

    /// The raw value of `key`, if set.
    pub fn get(&self, key: &str) -> Option<&str> {
        self.entries.get(key).map(|e| e.value.as_str())
    }

    /// Where the value of `key` came from.
    pub fn origin(&self, key: &str) -> Option<&Origin> {
        self.entries.get(key).map(|e| &e.origin)
    }

    /// The value of a key that must be set.
    pub fn required(&self, key: &str) -> Result<&str, ConfigError> {
        self.get(key).ok_or_else(|| self.missing(key))
    }

    fn missing(&self, key: &str) -> ConfigError {
        ConfigError::Missing {
            key: key.to_string(),
            hint: match &self.user_file {
                Some(f) => f.display().to_string(),
                None => format!("<conf dir>/{CONFIG_FILE_NAME} or with -D {key}=..."),
            },
        }
    }

    /// Parses the value of `key` with `parse`, which explains what it expected on failure.
    pub fn parse_with<T>(
        &self,
        key: &str,
        parse: impl FnOnce(&str) -> Result<T, String>,
    ) -> Result<Option<T>, ConfigError> {
        let Some(entry) = self.entries.get(key) else {
            return Ok(None);
        };
        parse(&entry.value)
            .map(Some)
            .map_err(|message| ConfigError::Invalid {
                origin: entry.origin.clone(),
                key: key.to_string(),
                message,
            })
    }

    /// The value of a key that `conf/yarnflow.yaml` gives a default, through one of the typed
    /// getters (`config.value(Config::duration, "slot.request.timeout")`): unset only when a user
    /// set it to `~`, which is an error naming the key.
    pub fn value<T>(
        &self,
        get: impl FnOnce(&Config, &str) -> Result<Option<T>, ConfigError>,
        key: &str,
    ) -> Result<T, ConfigError> {
        get(self, key)?.ok_or_else(|| self.missing(key))
    }

    /// A string value, `None` when unset.
    pub fn string(&self, key: &str) -> Option<String> {
        self.get(key).map(str::to_string)
    }

    /// [`Config::string`] in the shape of the typed getters, for [`Config::value`].
    pub fn text(&self, key: &str) -> Result<Option<String>, ConfigError> {
        Ok(self.string(key))
    }

    pub fn bool(&self, key: &str) -> Result<Option<bool>, ConfigError> {
        self.parse_with(key, |v| match v.to_ascii_lowercase().as_str() {
            "true" => Ok(true),
            "false" => Ok(false),
            _ => Err(format!("expected true or false, got '{v}'")),
        })
    }

    pub fn u64(&self, key: &str) -> Result<Option<u64>, ConfigError> {
        self.parse_with(key, |v| {
            v.parse()
                .map_err(|_| format!("expected a non-negative integer, got '{v}'"))
        })
    }

    pub fn i64(&self, key: &str) -> Result<Option<i64>, ConfigError> {
        self.parse_with(key, |v| {
            v.parse()
                .map_err(|_| format!("expected an integer, got '{v}'"))
        })
    }

    pub fn f64(&self, key: &str) -> Result<Option<f64>, ConfigError> {
        self.parse_with(key, |v| match v.parse::<f64>() {
            Ok(x) if x.is_finite() => Ok(x),
            _ => Err(format!("expected a number, got '{v}'")),
        })
    }

    /// A Flink duration (`500 ms`, `10 s`, `1 min`; a bare number is milliseconds).
    pub fn duration(&self, key: &str) -> Result<Option<Duration>, ConfigError> {
        self.parse_with(key, parse_duration)
    }

    /// A Flink memory size in bytes (`256m`, `1g`, `512 kb`; a bare number is bytes).
    pub fn memory_bytes(&self, key: &str) -> Result<Option<u64>, ConfigError> {
        self.parse_with(key, parse_memory)
    }

    /// One of a fixed set of words (compared case-insensitively, returned lower-case).
    pub fn one_of(&self, key: &str, allowed: &[&str]) -> Result<Option<String>, ConfigError> {
        self.parse_with(key, |v| {
            let lower = v.to_ascii_lowercase();
            if allowed.contains(&lower.as_str()) {
                Ok(lower)
            } else {
                Err(format!(
                    "expected one of {}, got '{v}'",
                    allowed.join(" | ")
                ))
            }
        })
    }
}

/// Parses YAML into flattened `(dotted key, value)` pairs; `None` for null.
fn parse_yaml(text: &str, origin: &Origin) -> Result<Vec<(String, Option<String>)>, ConfigError> {
    let doc: serde_yaml_ng::Value = match serde_yaml_ng::from_str(text) {
        Ok(v) => v,
        Err(e) => {
            let location = e
                .location()
                .map(|l| format!(" at line {} column {}", l.line(), l.column()))
                .unwrap_or_default();
            return Err(ConfigError::Yaml {
                origin: origin.clone(),
                location,
                message: first_line(&e.to_string()),
            });
        }
    };
    let mut out = Vec::new();
    match doc {
        serde_yaml_ng::Value::Null => {}
        serde_yaml_ng::Value::Mapping(map) => flatten("", &map, origin, &mut out)?,
        _ => {
            return Err(ConfigError::Yaml {
                origin: origin.clone(),
                location: String::new(),
                message: "expected a mapping of configuration keys at the top level".into(),
            });
        }
    }
    Ok(out)
}

fn flatten(
    prefix: &str,
    map: &serde_yaml_ng::Mapping,
    origin: &Origin,
    out: &mut Vec<(String, Option<String>)>,
) -> Result<(), ConfigError> {
    use serde_yaml_ng::Value;
    for (k, v) in map {
        let key = match k {
            Value::String(s) => s.clone(),
            Value::Number(n) => n.to_string(),
            Value::Bool(b) => b.to_string(),
            other => {
                return Err(ConfigError::Invalid {
                    origin: origin.clone(),
                    key: format!("{prefix}{other:?}"),
                    message: "keys must be strings".into(),
                });
            }
        };
        let full = format!("{prefix}{key}");
        match v {
            Value::Mapping(m) => flatten(&format!("{full}."), m, origin, out)?,
            Value::Null => out.push((full, None)),
            Value::Sequence(items) => {
                let mut parts = Vec::with_capacity(items.len());
                for item in items {
                    parts.push(scalar(item).ok_or_else(|| ConfigError::Invalid {
                        origin: origin.clone(),
                        key: full.clone(),
                        message: "list items must be plain values".into(),
                    })?);
                }
                // Flink's list syntax: items separated by ';'.
                out.push((full, Some(parts.join(";"))));
            }
            other => match scalar(other) {
                Some(s) => out.push((full, Some(s))),
                None => {
                    return Err(ConfigError::Invalid {
                        origin: origin.clone(),
                        key: full,
                        message: "unsupported value".into(),
                    });
                }
            },
        }
    }
    Ok(())
}

fn scalar(v: &serde_yaml_ng::Value) -> Option<String> {
    use serde_yaml_ng::Value;
    match v {
        Value::String(s) => Some(s.clone()),
        Value::Number(n) => Some(n.to_string()),
        Value::Bool(b) => Some(b.to_string()),
        _ => None,
    }
}

fn first_line(s: &str) -> String {
    s.lines().next().unwrap_or_default().to_string()
}

/// Splits "10 s" / "10s" / "10" into (10, "s").
fn split_number(v: &str) -> Option<(f64, String)> {
    let v = v.trim();
    let end = v
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(v.len());
    let (num, unit) = v.split_at(end);
    let num: f64 = num.parse().ok()?;
    Some((num, unit.trim().to_ascii_lowercase()))
}

/// Parses a duration in Flink's syntax (`TimeUtils.parseDuration`).
pub fn parse_duration(v: &str) -> Result<Duration, String> {
    let err = || format!("expected a duration like '500 ms', '10 s' or '1 min', got '{v}'");
    let (n, unit) = split_number(v).ok_or_else(err)?;
    let ms_per_unit = match unit.as_str() {
        "" | "ms" | "milli" | "millis" | "millisecond" | "milliseconds" => 1.0,
        "s" | "sec" | "secs" | "second" | "seconds" => 1_000.0,
        "m" | "min" | "mins" | "minute" | "minutes" => 60_000.0,
        "h" | "hour" | "hours" => 3_600_000.0,
        "d" | "day" | "days" => 86_400_000.0,
        "us" | "micro" | "micros" | "microsecond" | "microseconds" => 0.001,
        "ns" | "nano" | "nanos" | "nanosecond" | "nanoseconds" => 0.000_001,
        _ => return Err(err()),
    };
    let ms = n * ms_per_unit;
    if !(0.0..=1e15).contains(&ms) {
        return Err(err());
    }
    Ok(Duration::from_secs_f64(ms / 1000.0))
}

/// Parses a memory size in Flink's syntax (`MemorySize.parse`); returns bytes.
pub fn parse_memory(v: &str) -> Result<u64, String> {
    let err = || format!("expected a memory size like '256m' or '1g', got '{v}'");
    let (n, unit) = split_number(v).ok_or_else(err)?;
    let factor: f64 = match unit.as_str() {
        "" | "b" | "bytes" => 1.0,
        "k" | "kb" | "kibibytes" => 1024.0,
        "m" | "mb" | "mebibytes" => 1024.0 * 1024.0,
        "g" | "gb" | "gibibytes" => 1024.0 * 1024.0 * 1024.0,
        "t" | "tb" | "tebibytes" => 1024.0 * 1024.0 * 1024.0 * 1024.0,
        _ => return Err(err()),
    };
    let bytes = n * factor;
    if !(0.0..=u64::MAX as f64).contains(&bytes) {
        return Err(err());
    }
    Ok(bytes as u64)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_parse_and_have_flink_values() {
        let c = Config::defaults();
        assert_eq!(c.get("high-availability.type"), Some("none"));
        assert_eq!(
            c.get("high-availability.zookeeper.path.root"),
            Some("/yarnflow")
        );
        assert_eq!(c.get("high-availability.storageDir"), None);
        assert_eq!(
            c.duration("high-availability.zookeeper.client.session-timeout")
                .unwrap(),
            Some(Duration::from_secs(60))
        );
        assert_eq!(
            c.f64("restart-strategy.exponential-delay.backoff-multiplier")
                .unwrap(),
            Some(1.5)
        );
        assert_eq!(c.i64("pipeline.max-parallelism").unwrap(), Some(-1));
        // yarnflow's own: subtasks outlive an AM restart, and the new leader waits for them.
        assert_eq!(
            c.duration("taskmanager.leaderless.timeout").unwrap(),
            Some(Duration::from_secs(30))
        );
        assert_eq!(
            c.duration("jobmanager.reconcile.timeout").unwrap(),
            Some(Duration::from_secs(10))
        );
        assert!(c.unknown_keys().is_empty());
    }

    #[test]
    fn nested_and_flat_keys_flatten_alike() {
        let mut c = Config::defaults();
        c.merge_str(
            "high-availability:\n  type: zookeeper\n  zookeeper:\n    quorum: a:1\nrest.port: 8081\n",
            Origin::Override,
        )
        .unwrap();
        assert_eq!(c.get("high-availability.type"), Some("zookeeper"));
        assert_eq!(c.get("high-availability.zookeeper.quorum"), Some("a:1"));
        assert_eq!(c.u64("rest.port").unwrap(), Some(8081));
    }

    #[test]
    fn errors_name_key_and_file() {
        let mut c = Config::defaults();
        c.merge_str(
            "heartbeat.interval: soon\n",
            Origin::File("/etc/yf/yarnflow.yaml".into()),
        )
        .unwrap();
        let e = c.duration("heartbeat.interval").unwrap_err().to_string();
        assert!(e.contains("/etc/yf/yarnflow.yaml"), "{e}");
        assert!(e.contains("heartbeat.interval"), "{e}");
        assert!(!e.contains('\n'));

        let e = c
            .merge_str("a: [1\n", Origin::File("x.yaml".into()))
            .unwrap_err()
            .to_string();
        assert!(e.starts_with("x.yaml: invalid YAML at line"), "{e}");

        let e = c.required("high-availability.storageDir").unwrap_err();
        assert!(e.to_string().contains("high-availability.storageDir"));
    }

    #[test]
    fn durations_and_memory_follow_flink_syntax() {
        assert_eq!(
            parse_duration("500 ms").unwrap(),
            Duration::from_millis(500)
        );
        assert_eq!(parse_duration("500").unwrap(), Duration::from_millis(500));
        assert_eq!(parse_duration("10s").unwrap(), Duration::from_secs(10));
        assert_eq!(parse_duration("1 min").unwrap(), Duration::from_secs(60));
        assert_eq!(parse_duration("2h").unwrap(), Duration::from_secs(7200));
        assert!(parse_duration("ten").is_err());
        assert!(parse_duration("5 parsecs").is_err());
        assert_eq!(parse_memory("256m").unwrap(), 256 << 20);
        assert_eq!(parse_memory("1g").unwrap(), 1 << 30);
        assert_eq!(parse_memory("1024").unwrap(), 1024);
        assert!(parse_memory("lots").is_err());
    }

    #[test]
    fn unknown_user_keys_are_reported() {
        let mut c = Config::defaults();
        c.merge_str("high-availibility.type: zookeeper\n", Origin::Override)
            .unwrap();
        assert_eq!(c.unknown_keys(), vec!["high-availibility.type"]);
    }
}
