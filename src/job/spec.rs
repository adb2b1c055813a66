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
//! `text-files` paths are URIs; [`JobSpec::load`] also takes paths relative to the spec file.
//!
//! # User operators
//! A binary's registered operators ([`crate::api`]) are steps too, by name, with an optional
//! `config` the operator reads in `open`:
//!
//! ```yaml
//!   - operator: tokenize
//!   - key-by: line
//!   - operator: { name: count, config: { emit-every: 1 } }   # a keyed one: after a key-by
//! ```
//!
//! A name the binary has not registered is refused when the spec is read, with the names it has.
//!
//! # Keyed steps
//! `count` and `sum` keep state per key, so they need a keyed stream: a `key-by` right before
//! them says what the key is (Flink's `keyBy(..).sum(..)`; as with a `KeyedStream`, the key-by
//! keys only the step right after it):
//!
//! ```yaml
//!   - key-by: { modulus: 10 }   # numbers by n mod 10; a line that is not a number by itself
//!   - count                     # emits `key,count` per record (`sum`: `key,sum`)
//! ```
//!
//! `key-by: line` keys by the whole record, as the line a sink would write; a later
//! `key-by: { selector: NAME }` will name a user's key selector. A key-by hash-partitions the
//! records into key groups (`pipeline.max-parallelism`, [`key_groups`](super::key_groups)) and
//! starts a new stage of the execution plan ([`plan`](super::plan)), whose subtasks each own a
//! range of key groups and their keyed state.

use std::path::Path;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::api::Operators;

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
    /// Partitions the stream by key for the keyed step after it.
    KeyBy(KeyBySpec),
    /// Keyed running count (after a key-by): emits `key,count` per record.
    Count,
    /// Keyed running sum of the numbers (after a key-by): emits `key,sum` per record.
    Sum,
    /// A user operator the binary registered ([`crate::api::Operators`]).
    Operator(OperatorSpec),
    Sink(SinkSpec),
}

impl Step {
    pub fn kind(&self) -> &'static str {
        match self {
            Step::Source(_) => "source",
            Step::Map(_) => "map",
            Step::Filter(_) => "filter",
            Step::KeyBy(_) => "key-by",
            Step::Count => "count",
            Step::Sum => "sum",
            Step::Operator(_) => "operator",
            Step::Sink(_) => "sink",
        }
    }

    /// What error messages call it: its kind, or `operator 'NAME'`.
    pub fn describe(&self) -> String {
        match self {
            Step::Operator(o) => format!("operator '{}'", o.name),
            s => s.kind().to_string(),
        }
    }

    /// Keeps state per key, so it needs a keyed stream (a key-by right before it). A user
    /// operator is keyed if registered so in `operators`.
    pub fn is_keyed(&self) -> bool {
        matches!(self, Step::Count | Step::Sum)
    }

    /// [`is_keyed`](Self::is_keyed), user operators looked up in `operators`.
    pub fn is_keyed_in(&self, operators: &Operators) -> bool {
        match self {
            Step::Operator(o) => operators.is_keyed(&o.name) == Some(true),
            s => s.is_keyed(),
        }
    }
}

/// A user operator step: `- operator: NAME`, or `- operator: { name: NAME, config: {...} }`
/// with `config` whatever the operator reads (`OpenContext::config`).
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub struct OperatorSpec {
    pub name: String,
    /// `null` when absent.
    #[serde(default, skip_serializing_if = "serde_json::Value::is_null")]
    pub config: serde_json::Value,
}

/// The long form of [`OperatorSpec`], for its errors (unknown keys, a missing name).
#[derive(Deserialize)]
#[serde(rename_all = "kebab-case", deny_unknown_fields)]
struct OperatorSpecMap {
    name: String,
    #[serde(default)]
    config: serde_json::Value,
}

impl<'de> Deserialize<'de> for OperatorSpec {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<OperatorSpec, D::Error> {
        struct V;
        impl<'de> serde::de::Visitor<'de> for V {
            type Value = OperatorSpec;
            fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
                f.write_str("an operator name, or { name: NAME, config: {...} }")
            }
            fn visit_str<E: serde::de::Error>(self, name: &str) -> Result<OperatorSpec, E> {
                Ok(OperatorSpec {
                    name: name.to_string(),
                    config: serde_json::Value::Null,
                })
            }
            fn visit_map<A: serde::de::MapAccess<'de>>(
                self,
                map: A,
            ) -> Result<OperatorSpec, A::Error> {
                let m = OperatorSpecMap::deserialize(
                    serde::de::value::MapAccessDeserializer::new(map),
                )?;
                Ok(OperatorSpec {
                    name: m.name,
                    config: m.config,
                })
            }
        }
        d.deserialize_any(V)
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

/// What a key-by keys records by (`key-by: { modulus: 10 }`, `key-by: line`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum KeyBySpec {
    /// A number's `n mod modulus` (never negative); a text line that is not a number is its
    /// own key.
    Modulus(i64),
    /// The whole record, as the line a sink would write.
    Line,
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
    /// Parses a spec; `file` names it in errors. User operators are checked against this
    /// binary's registry ([`Operators::installed`]).
    pub fn parse(text: &str, file: &str) -> Result<JobSpec, SpecError> {
        JobSpec::parse_with(text, file, Operators::installed())
    }

    /// [`parse`](Self::parse) against the registry `operators`.
    pub fn parse_with(text: &str, file: &str, operators: &Operators) -> Result<JobSpec, SpecError> {
        let spec = JobSpec::parse_unchecked(text, file)?;
        spec.validate(file, Some(text), operators)?;
        Ok(spec)
    }

    fn parse_unchecked(text: &str, file: &str) -> Result<JobSpec, SpecError> {
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
                message: friendlier(&msg),
            }
        })?;
        Ok(spec)
    }

    /// Validates a spec that was parsed before (a job graph read back from HA storage) against
    /// this binary's registry: `what` names it in the error.
    pub fn check(&self, what: &str) -> Result<(), SpecError> {
        self.validate(what, None, Operators::installed())
    }

    pub fn load(path: &Path) -> Result<JobSpec, SpecError> {
        let file = path.display().to_string();
        let text = std::fs::read_to_string(path).map_err(|e| SpecError {
            file: file.clone(),
            location: String::new(),
            message: format!("cannot read: {e}"),
        })?;
        let mut spec = JobSpec::parse_unchecked(&text, &file)?;
        let dir = match path.parent() {
            Some(d) if !d.as_os_str().is_empty() => d,
            _ => Path::new("."),
        };
        if let Ok(dir) = dir.canonicalize() {
            spec.resolve_relative_paths(&dir);
        }
        spec.validate(&file, Some(&text), Operators::installed())?;
        Ok(spec)
    }

    /// Makes each relative `text-files` path (no scheme, e.g. `data/words.txt`) a `file://`
    /// URI under `dir`, the spec file's directory: a spec and its local input travel together.
    fn resolve_relative_paths(&mut self, dir: &Path) {
        for step in &mut self.pipeline {
            if let Step::Source(SourceSpec::TextFiles { paths }) = step {
                for p in paths
                    .iter_mut()
                    .filter(|p| !p.contains("://") && !p.starts_with('/'))
                {
                    *p = format!("file://{}", dir.join(&*p).display());
                }
            }
        }
    }

    fn validate(
        &self,
        file: &str,
        text: Option<&str>,
        operators: &Operators,
    ) -> Result<(), SpecError> {
        let err = |m: String| SpecError {
            file: file.to_string(),
            location: String::new(),
            message: m,
        };
        // Errors about one step point at it in the text.
        let step_err = |i: usize, m: String| SpecError {
            file: file.to_string(),
            location: text.map(|t| step_location(t, i)).unwrap_or_default(),
            message: m,
        };
        if self.parallelism == 0 {
            return Err(err("parallelism: must be at least 1".into()));
        }
        match self.pipeline.first() {
            Some(Step::Source(_)) => {}
            Some(other) => {
                return Err(step_err(
                    0,
                    format!(
                        "pipeline[0]: the pipeline starts with a source, not a {}",
                        other.kind()
                    ),
                ));
            }
            None => return Err(err("pipeline: empty; it needs a source and a sink".into())),
        }
        match self.pipeline.last() {
            Some(Step::Sink(_)) if self.pipeline.len() >= 2 => {}
            _ => {
                let last = self.pipeline.len().saturating_sub(1);
                return Err(step_err(
                    last,
                    format!("pipeline[{last}]: the pipeline ends with a sink"),
                ));
            }
        }
        for (i, s) in self.pipeline.iter().enumerate() {
            let inner = i > 0 && i + 1 < self.pipeline.len();
            if inner && matches!(s, Step::Source(_) | Step::Sink(_)) {
                return Err(step_err(
                    i,
                    format!(
                        "pipeline[{i}]: a {} may only stand at the {}",
                        s.kind(),
                        if matches!(s, Step::Source(_)) {
                            "start"
                        } else {
                            "end"
                        }
                    ),
                ));
            }
            if let Some(m) = self.step_problem(i, operators) {
                return Err(step_err(i, m));
            }
        }
        if let Some(ci) = &self.checkpoint_interval {
            crate::config::parse_duration(ci)
                .map_err(|e| err(format!("checkpoint-interval: {e}")))?;
        }
        Ok(())
    }

    /// What is wrong with step `i` on its own or where it stands, if anything.
    fn step_problem(&self, i: usize, operators: &Operators) -> Option<String> {
        let s = &self.pipeline[i];
        let previous = i.checked_sub(1).map(|p| &self.pipeline[p]);
        Some(match s {
            Step::Filter(f) if f.modulus == 0 => {
                format!("pipeline[{i}].filter.modulus: must not be 0")
            }
            Step::KeyBy(KeyBySpec::Modulus(0)) => {
                format!("pipeline[{i}].key-by.modulus: must not be 0")
            }
            Step::Map(m) if m.function == MapFunction::Mod && m.value == 0 => {
                format!("pipeline[{i}].map.value: mod by 0")
            }
            Step::Source(SourceSpec::Sequence {
                from, to: Some(to), ..
            }) if to < from => format!("pipeline[{i}].source.to: {to} is below from {from}"),
            Step::Source(SourceSpec::TextFiles { paths }) if paths.is_empty() => {
                format!("pipeline[{i}].source.paths: empty; list at least one file URI")
            }
            Step::Source(SourceSpec::TextFiles { paths }) => {
                let (j, p) = paths
                    .iter()
                    .enumerate()
                    .find(|(_, p)| !(p.starts_with("hdfs://") || p.starts_with("file:///")))?;
                format!(
                    "pipeline[{i}].source.paths[{j}]: '{p}' is not a file URI; write hdfs://host:port/path or file:///absolute/path"
                )
            }
            Step::Operator(o) if operators.unknown(&o.name).is_some() => {
                format!("pipeline[{i}]: {}", operators.unknown(&o.name)?)
            }
            s if s.is_keyed_in(operators) && !matches!(previous, Some(Step::KeyBy(_))) => {
                let earlier = self.pipeline[..i]
                    .iter()
                    .rposition(|s| matches!(s, Step::KeyBy(_)))
                    .map(|j| {
                        format!("; the key-by at pipeline[{j}] keys only the step right after it")
                    })
                    .unwrap_or_default();
                format!(
                    "pipeline[{i}]: {} keeps state per key, so it needs a key-by right before it (e.g. `- key-by: {{ modulus: 10 }}` or `- key-by: line`){earlier}",
                    s.describe()
                )
            }
            _ => return None,
        })
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

/// serde's wording made to read as spec errors.
fn friendlier(msg: &str) -> String {
    let msg = msg.replace("unknown variant", "unknown step or kind");
    let bare = "invalid type: map, expected unit variant";
    if !msg.contains(bare) {
        return msg;
    }
    let msg = msg.replace(bare, "expected a bare word, not settings");
    // `- count: { modulus: 3 }`: the key moved to the key-by.
    if msg.starts_with("pipeline[") && msg.contains("]: expected a bare word") {
        format!(
            "{msg} (`- count` and `- sum` take no settings: the key-by before them sets the key)"
        )
    } else {
        msg
    }
}

/// Where step `index` of the pipeline starts in `text` (":line:column"), or "" if not found. The
/// parsed spec keeps no positions, so this reads the text again up to that step and refuses
/// it: the parser's error carries the position.
fn step_location(text: &str, index: usize) -> String {
    use serde::de::DeserializeSeed;
    match PipelineProbe(index).deserialize(serde_yaml_ng::Deserializer::from_str(text)) {
        Err(e) => e
            .location()
            .map(|l| format!(":{}:{}", l.line(), l.column()))
            .unwrap_or_default(),
        Ok(()) => String::new(),
    }
}

/// Finds the top-level `pipeline` of a spec, then its step `.0`.
struct PipelineProbe(usize);

impl<'de> serde::de::DeserializeSeed<'de> for PipelineProbe {
    type Value = ();
    fn deserialize<D: serde::Deserializer<'de>>(self, d: D) -> Result<(), D::Error> {
        d.deserialize_map(self)
    }
}

impl<'de> serde::de::Visitor<'de> for PipelineProbe {
    type Value = ();
    fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
        f.write_str("a job spec")
    }
    fn visit_map<A: serde::de::MapAccess<'de>>(self, mut map: A) -> Result<(), A::Error> {
        while let Some(key) = map.next_key::<String>()? {
            if key == "pipeline" {
                return map.next_value_seed(StepProbe(self.0));
            }
            map.next_value::<serde::de::IgnoredAny>()?;
        }
        Ok(())
    }
}

/// Skips `.0` steps, then refuses the next one (every `visit_*` left at its default).
struct StepProbe(usize);

impl<'de> serde::de::DeserializeSeed<'de> for StepProbe {
    type Value = ();
    fn deserialize<D: serde::Deserializer<'de>>(self, d: D) -> Result<(), D::Error> {
        d.deserialize_seq(self)
    }
}

impl<'de> serde::de::Visitor<'de> for StepProbe {
    type Value = ();
    fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
        f.write_str("pipeline steps")
    }
    fn visit_seq<A: serde::de::SeqAccess<'de>>(self, mut seq: A) -> Result<(), A::Error> {
        for _ in 0..self.0 {
            if seq.next_element::<serde::de::IgnoredAny>()?.is_none() {
                return Ok(());
            }
        }
        seq.next_element::<Refused>()?;
        Ok(())
    }
}

/// Deserializes from nothing: the error names where it stood.
struct Refused;

impl<'de> Deserialize<'de> for Refused {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Refused, D::Error> {
        struct V;
        impl serde::de::Visitor<'_> for V {
            type Value = Refused;
            fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
                f.write_str("nothing")
            }
        }
        d.deserialize_any(V)
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

    fn keyed(steps: &str) -> String {
        format!(
            "name: k\npipeline:\n  - source: {{ kind: sequence, to: 10 }}\n{steps}  - sink: {{ kind: files }}\n"
        )
    }

    #[test]
    fn key_by_parses_in_both_shapes() {
        let s = JobSpec::parse(
            &keyed("  - key-by: { modulus: 3 }\n  - count\n  - key-by: line\n  - sum\n"),
            "k.yaml",
        )
        .unwrap();
        assert_eq!(s.pipeline[1], Step::KeyBy(KeyBySpec::Modulus(3)));
        assert_eq!(s.pipeline[2], Step::Count);
        assert_eq!(s.pipeline[3], Step::KeyBy(KeyBySpec::Line));
        assert_eq!(s.pipeline[4], Step::Sum);
        assert!(s.pipeline[4].is_keyed() && !s.pipeline[3].is_keyed());
        // A key-by before a sink (no keyed step) is fine too.
        assert!(JobSpec::parse(&keyed("  - key-by: line\n"), "k.yaml").is_ok());
        // The job graph (JSON) and a deployment's pipeline round-trip.
        let json = serde_json::to_string(&s).unwrap();
        assert_eq!(serde_json::from_str::<JobSpec>(&json).unwrap(), s);
        let steps = serde_json::to_string(&s.pipeline).unwrap();
        assert_eq!(
            serde_json::from_str::<Vec<Step>>(&steps).unwrap(),
            s.pipeline
        );
    }

    #[test]
    fn keyed_steps_need_a_key_by_right_before_them() {
        let e = JobSpec::parse(&keyed("  - count\n"), "k.yaml")
            .unwrap_err()
            .to_string();
        assert!(
            e.starts_with("k.yaml:4:5: pipeline[1]: count keeps state per key"),
            "{e}"
        );
        assert!(
            e.contains("key-by right before it") && !e.contains('\n'),
            "{e}"
        );
        let e = JobSpec::parse(
            &keyed("  - key-by: line\n  - map: { function: add, value: 1 }\n  - sum\n"),
            "k.yaml",
        )
        .unwrap_err()
        .to_string();
        assert!(
            e.starts_with("k.yaml:6:5: pipeline[3]: sum keeps state"),
            "{e}"
        );
        assert!(
            e.contains("the key-by at pipeline[1] keys only the step right after it"),
            "{e}"
        );
        // The old shape, with the key on the count, says where the key went.
        let e = JobSpec::parse(&keyed("  - count: { modulus: 3 }\n"), "k.yaml")
            .unwrap_err()
            .to_string();
        assert!(e.starts_with("k.yaml:4:"), "{e}");
        assert!(
            e.contains("pipeline[1]: expected a bare word") && e.contains("key-by"),
            "{e}"
        );
        let e = JobSpec::parse(&keyed("  - key-by: { modulus: 0 }\n  - count\n"), "k.yaml")
            .unwrap_err()
            .to_string();
        assert!(
            e.starts_with("k.yaml:4:5: pipeline[1].key-by.modulus: must not be 0"),
            "{e}"
        );
        let e = JobSpec::parse(&keyed("  - key-by: lines\n"), "k.yaml")
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("lines") && e.contains("`modulus`") && e.contains("`line`"),
            "{e}"
        );
        // A key-by can stand neither first nor last.
        let e = JobSpec::parse(
            "name: k\npipeline:\n  - key-by: line\n  - sink: { kind: files }\n",
            "k.yaml",
        )
        .unwrap_err()
        .to_string();
        assert!(
            e.starts_with(
                "k.yaml:3:5: pipeline[0]: the pipeline starts with a source, not a key-by"
            ),
            "{e}"
        );
        let e = JobSpec::parse(
            "name: k\npipeline:\n  - source: { kind: sequence }\n  - key-by: line\n",
            "k.yaml",
        )
        .unwrap_err()
        .to_string();
        assert!(
            e.starts_with("k.yaml:4:5: pipeline[1]: the pipeline ends with a sink"),
            "{e}"
        );
    }

    #[test]
    fn key_by_runs_at_any_parallelism() {
        let spec = keyed("  - key-by: { modulus: 3 }\n  - count\n")
            .replace("name: k\n", "name: k\nparallelism: 2\n");
        assert_eq!(JobSpec::parse(&spec, "k.yaml").unwrap().parallelism, 2);
    }

    #[test]
    fn step_errors_point_at_the_step_in_flow_and_block_style() {
        let e = JobSpec::parse(
            "name: t\npipeline: [ { source: { kind: sequence } }, { filter: { modulus: 0 } }, { sink: { kind: files } } ]\n",
            "t.yaml",
        )
        .unwrap_err()
        .to_string();
        assert!(
            e.starts_with("t.yaml:2:45: pipeline[1].filter.modulus"),
            "{e}"
        );
        let e = JobSpec::parse(
            "name: t\npipeline:\n  - source: { kind: sequence }\n  - sink: { kind: files }\n  - sink: { kind: files }\n",
            "t.yaml",
        )
        .unwrap_err()
        .to_string();
        assert!(
            e.starts_with("t.yaml:4:5: pipeline[1]: a sink may only stand at the end"),
            "{e}"
        );
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
