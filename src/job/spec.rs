//! Job specifications: the YAML users write (`examples/*.yaml`).
//!
//! ```yaml
//! name: exactly-once
//! parallelism: 4
//! checkpoint-interval: 500 ms        # execution.checkpointing.interval
//! pipeline:
//!   - source: { kind: sequence, from: 0, to: 2000000, rate: 66000 }
//!   - map: { function: add, value: 1 }
//!   - filter: { function: mod, modulus: 2, equals: 0 }
//!   - sink: { kind: files, path: "file:///tmp/out" }
//! ```
//!
//! A pipeline is one source, any number of transforms, one sink: each subtask runs the chain
//! with forward edges. Errors name the file, the line and column, and the offending key.

use std::path::Path;
use std::time::Duration;

use serde::{Deserialize, Serialize};

/// A malformed job specification: one line with file, position and what is wrong.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{file}{location}: {message}")]
pub struct SpecError {
    pub file: String,
    /// ":line:column", or empty.
    pub location: String,
    pub message: String,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case", deny_unknown_fields)]
pub struct JobSpec {
    pub name: String,
    /// Fixed job id (default: derived from the name), so resubmission is detectable.
    #[serde(default)]
    pub job_id: Option<String>,
    #[serde(default = "one")]
    pub parallelism: u32,
    /// Flink duration syntax; absent = no checkpointing.
    #[serde(default)]
    pub checkpoint_interval: Option<String>,
    /// Steps as one-key maps (`- source: {...}`), not YAML tags.
    #[serde(with = "serde_yaml_ng::with::singleton_map_recursive")]
    pub pipeline: Vec<Step>,
}

fn one() -> u32 {
    1
}

/// One element of the pipeline, named by its only key.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Step {
    Source(SourceSpec),
    Map(MapSpec),
    Filter(FilterSpec),
    /// Keyed count within a subtask: emits `key,count` per record.
    Count(KeySpec),
    /// Keyed sum within a subtask: emits `key,sum` per record.
    Sum(KeySpec),
    Sink(SinkSpec),
}

impl Step {
    pub fn kind(&self) -> &'static str {
        match self {
            Step::Source(_) => "source",
            Step::Map(_) => "map",
            Step::Filter(_) => "filter",
            Step::Count(_) => "count",
            Step::Sum(_) => "sum",
            Step::Sink(_) => "sink",
        }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "kebab-case", deny_unknown_fields)]
pub enum SourceSpec {
    /// Numbers `from..to` (unbounded without `to`); subtask i takes n with n % parallelism == i.
    Sequence {
        #[serde(default)]
        from: u64,
        #[serde(default)]
        to: Option<u64>,
        /// Records per second for the whole job; absent = as fast as possible.
        #[serde(default)]
        rate: Option<u64>,
    },
    /// Lines of files (`hdfs://host:port/path` or `file:///path`), one record per line;
    /// file i goes to subtask i % parallelism. Bounded: done when its files are.
    TextFiles { paths: Vec<String> },
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum MapFunction {
    Add,
    Mod,
    Multiply,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case", deny_unknown_fields)]
pub struct MapSpec {
    pub function: MapFunction,
    pub value: i64,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case", deny_unknown_fields)]
pub struct FilterSpec {
    /// Keep records with `value % modulus == equals`.
    pub modulus: i64,
    #[serde(default)]
    pub equals: i64,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case", deny_unknown_fields)]
pub struct KeySpec {
    /// The key of a record is `value % modulus`.
    pub modulus: i64,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "kebab-case", deny_unknown_fields)]
pub enum SinkSpec {
    /// Exactly-once files: `part-<run id>-<subtask>-<checkpoint id>` appear only for completed
    /// checkpoints. `path` defaults to `<job dir>/output`.
    Files {
        #[serde(default)]
        path: Option<String>,
    },
}

impl JobSpec {
    /// Parses a spec; `file` names it in errors.
    pub fn parse(text: &str, file: &str) -> Result<JobSpec, SpecError> {
        let spec: JobSpec = serde_yaml_ng::from_str(text).map_err(|e| {
            let location = e
                .location()
                .map(|l| format!(":{}:{}", l.line(), l.column()))
                .unwrap_or_default();
            // serde_yaml appends " at line L column C"; the location is already in front.
            let msg = e.to_string();
            let msg = msg.split(" at line ").next().unwrap_or(&msg).to_string();
            SpecError {
                file: file.to_string(),
                location,
                message: msg.replace("unknown variant", "unknown step or kind"),
            }
        })?;
        spec.validate(file)?;
        Ok(spec)
    }

    pub fn load(path: &Path) -> Result<JobSpec, SpecError> {
        let file = path.display().to_string();
        let text = std::fs::read_to_string(path).map_err(|e| SpecError {
            file: file.clone(),
            location: String::new(),
            message: format!("cannot read: {e}"),
        })?;
        JobSpec::parse(&text, &file)
    }

    fn validate(&self, file: &str) -> Result<(), SpecError> {
        let err = |m: String| SpecError {
            file: file.to_string(),
            location: String::new(),
            message: m,
        };
        if self.parallelism == 0 {
            return Err(err("parallelism: must be at least 1".into()));
        }
        match self.pipeline.first() {
            Some(Step::Source(_)) => {}
            Some(other) => {
                return Err(err(format!(
                    "pipeline[0]: the pipeline starts with a source, not a {}",
                    other.kind()
                )));
            }
            None => return Err(err("pipeline: empty; it needs a source and a sink".into())),
        }
        match self.pipeline.last() {
            Some(Step::Sink(_)) if self.pipeline.len() >= 2 => {}
            _ => {
                return Err(err(format!(
                    "pipeline[{}]: the pipeline ends with a sink",
                    self.pipeline.len().saturating_sub(1)
                )));
            }
        }
        for (i, s) in self.pipeline.iter().enumerate() {
            let inner = i > 0 && i + 1 < self.pipeline.len();
            if inner && matches!(s, Step::Source(_) | Step::Sink(_)) {
                return Err(err(format!(
                    "pipeline[{i}]: a {} may only stand at the {}",
                    s.kind(),
                    if matches!(s, Step::Source(_)) {
                        "start"
                    } else {
                        "end"
                    }
                )));
            }
            match s {
                Step::Filter(f) if f.modulus == 0 => {
                    return Err(err(format!("pipeline[{i}].filter.modulus: must not be 0")));
                }
                Step::Count(k) | Step::Sum(k) if k.modulus == 0 => {
                    return Err(err(format!(
                        "pipeline[{i}].{}.modulus: must not be 0",
                        s.kind()
                    )));
                }
                Step::Map(m) if m.function == MapFunction::Mod && m.value == 0 => {
                    return Err(err(format!("pipeline[{i}].map.value: mod by 0")));
                }
                Step::Source(SourceSpec::Sequence {
                    from, to: Some(to), ..
                }) if to < from => {
                    return Err(err(format!(
                        "pipeline[{i}].source.to: {to} is below from {from}"
                    )));
                }
                Step::Source(SourceSpec::TextFiles { paths }) => {
                    if paths.is_empty() {
                        return Err(err(format!(
                            "pipeline[{i}].source.paths: empty; list at least one file URI"
                        )));
                    }
                    for (j, p) in paths.iter().enumerate() {
                        if !(p.starts_with("hdfs://") || p.starts_with("file:///")) {
                            return Err(err(format!(
                                "pipeline[{i}].source.paths[{j}]: '{p}' is not a file URI; write hdfs://host:port/path or file:///absolute/path"
                            )));
                        }
                    }
                }
                _ => {}
            }
        }
        if let Some(ci) = &self.checkpoint_interval {
            crate::config::parse_duration(ci)
                .map_err(|e| err(format!("checkpoint-interval: {e}")))?;
        }
        Ok(())
    }

    /// The checkpoint interval, if checkpointing is on.
    pub fn checkpoint_interval(&self) -> Option<Duration> {
        self.checkpoint_interval
            .as_deref()
            .and_then(|s| crate::config::parse_duration(s).ok())
    }

    /// The job id: the fixed one, else one derived from the name.
    pub fn job_id(&self) -> String {
        self.job_id.clone().unwrap_or_else(|| {
            let slug: String = self
                .name
                .chars()
                .map(|c| {
                    if c.is_ascii_alphanumeric() {
                        c.to_ascii_lowercase()
                    } else {
                        '-'
                    }
                })
                .collect();
            slug.trim_matches('-').to_string()
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const GOOD: &str = "name: Exactly Once\nparallelism: 4\ncheckpoint-interval: 500 ms\npipeline:\n  - source: { kind: sequence, from: 0, to: 2000000, rate: 66000 }\n  - map: { function: add, value: 1 }\n  - sink: { kind: files }\n";

    #[test]
    fn parses_the_example_shape() {
        let s = JobSpec::parse(GOOD, "job.yaml").unwrap();
        assert_eq!(s.parallelism, 4);
        assert_eq!(s.checkpoint_interval(), Some(Duration::from_millis(500)));
        assert_eq!(s.job_id(), "exactly-once");
        assert!(matches!(
            s.pipeline[0],
            Step::Source(SourceSpec::Sequence {
                to: Some(2_000_000),
                ..
            })
        ));
    }

    #[test]
    fn errors_name_file_position_and_key() {
        let e = JobSpec::parse(&GOOD.replace("  - map:", "  - mapp:"), "job.yaml").unwrap_err();
        let m = e.to_string();
        assert!(m.starts_with("job.yaml:6:"), "{m}");
        assert!(
            m.contains("mapp") && m.contains("`filter`") && m.contains("`sink`"),
            "{m}"
        );
        assert!(!m.contains('\n'));

        let e = JobSpec::parse(
            &GOOD.replace("kind: sequence", "kind: sequense"),
            "job.yaml",
        )
        .unwrap_err()
        .to_string();
        assert!(e.contains("sequense") && e.contains("text-files"), "{e}");

        let e = JobSpec::parse(&GOOD.replace("parallelism", "paralelism"), "job.yaml")
            .unwrap_err()
            .to_string();
        assert!(e.contains("paralelism"), "{e}");

        let e = JobSpec::parse(&GOOD.replace("500 ms", "soon"), "job.yaml")
            .unwrap_err()
            .to_string();
        assert!(e.contains("checkpoint-interval"), "{e}");

        let no_sink = "name: x\npipeline:\n  - source: { kind: sequence }\n";
        assert!(
            JobSpec::parse(no_sink, "j")
                .unwrap_err()
                .to_string()
                .contains("ends with a sink")
        );
        let text = |paths: &str| {
            format!(
                "name: t\npipeline:\n  - source: {{ kind: text-files, paths: {paths} }}\n  - sink: {{ kind: files }}\n"
            )
        };
        assert!(JobSpec::parse(&text("[\"file:///a\", \"hdfs://nn:8020/b\"]"), "j").is_ok());
        let e = JobSpec::parse(&text("[]"), "j").unwrap_err().to_string();
        assert!(e.contains("pipeline[0].source.paths: empty"), "{e}");
        let e = JobSpec::parse(&text("[\"file:///a\", \"data/b.txt\"]"), "j")
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("paths[1]") && e.contains("'data/b.txt'") && e.contains("file:///"),
            "{e}"
        );
        assert!(JobSpec::parse("[1", "j").is_err());
        assert!(JobSpec::parse("", "j").is_err());
    }
}

#[cfg(test)]
mod example_tests {
    #[test]
    fn shipped_examples_parse() {
        for entry in std::fs::read_dir(concat!(env!("CARGO_MANIFEST_DIR"), "/examples")).unwrap() {
            let path = entry.unwrap().path();
            if path.extension().is_some_and(|e| e == "yaml") {
                super::JobSpec::load(&path).unwrap();
            }
        }
    }
}
