//! What the dispatcher persists for a job in the HA job graph store: the spec and the job's
//! run id.
//!
//! The run id is Flink's FileSink part prefix: a UUID drawn once, when the job is submitted, and
//! kept for as long as the job runs. Every subtask names its part files with it
//! (`part-<run id>-<subtask>-<checkpoint id>`), so two runs of one spec writing to one directory
//! never share a file name, and a recovered job (an AM restart, a failover to a new leader)
//! reads it back with the graph and goes on committing and cleaning up its own files.
//!
//! # Stored form
//! The spec's JSON object with one more key, `run-id`. A graph stored before run ids existed
//! has no such key; its run id is derived from the job id ([`RunId::for_legacy_job`]), so every
//! leader that recovers it agrees on the same one.

use std::fmt;

use serde::{Deserialize, Serialize};

use super::spec::JobSpec;

/// The key of the run id in a stored job graph.
const RUN_ID_KEY: &str = "run-id";

/// One run of a job: what its part files are named by. Only ASCII letters, digits and `-`, never
/// empty, so that it is safe in a file name and [`PartName`](super::sink::PartName) can find
/// the subtask and checkpoint id after it.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct RunId(String);

impl RunId {
    /// A new run: a random UUID (32 hex digits).
    pub fn random() -> RunId {
        RunId(uuid::Uuid::new_v4().simple().to_string())
    }

    /// The run id of a job whose graph was stored without one: its job id, every character
    /// outside `[A-Za-z0-9-]` replaced by `-`.
    pub fn for_legacy_job(job_id: &str) -> RunId {
        let id: String = job_id
            .chars()
            .map(|c| if c.is_ascii_alphanumeric() { c } else { '-' })
            .collect();
        if id.is_empty() {
            RunId("job".into())
        } else {
            RunId(id)
        }
    }

    /// Checks a run id read from elsewhere (a stored graph, a deployment).
    pub fn parse(s: &str) -> Result<RunId, String> {
        if s.is_empty() {
            return Err("empty run id".into());
        }
        if let Some(c) = s
            .chars()
            .find(|c| !(c.is_ascii_alphanumeric() || *c == '-'))
        {
            return Err(format!("run id '{s}': unexpected character '{c}'"));
        }
        Ok(RunId(s.to_string()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for RunId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl TryFrom<String> for RunId {
    type Error = String;
    fn try_from(s: String) -> Result<RunId, String> {
        RunId::parse(&s)
    }
}

impl From<RunId> for String {
    fn from(r: RunId) -> String {
        r.0
    }
}

/// A job as the job graph store holds it.
#[derive(Debug, Clone, PartialEq)]
pub struct JobGraph {
    pub spec: JobSpec,
    pub run_id: RunId,
}

impl JobGraph {
    /// A newly submitted job: a new run.
    pub fn submitted(spec: JobSpec) -> JobGraph {
        JobGraph {
            spec,
            run_id: RunId::random(),
        }
    }

    /// The stored form (see the module docs).
    pub fn to_bytes(&self) -> Result<Vec<u8>, serde_json::Error> {
        let mut value = serde_json::to_value(&self.spec)?;
        if let serde_json::Value::Object(map) = &mut value {
            map.insert(RUN_ID_KEY.into(), self.run_id.as_str().into());
        }
        serde_json::to_vec(&value)
    }

    /// Reads a stored graph, with or without a run id.
    pub fn from_bytes(data: &[u8]) -> Result<JobGraph, serde_json::Error> {
        let mut value: serde_json::Value = serde_json::from_slice(data)?;
        let run_id = value.as_object_mut().and_then(|m| m.remove(RUN_ID_KEY));
        let spec: JobSpec = serde_json::from_value(value)?;
        let run_id = match run_id {
            Some(r) => serde_json::from_value(r)?,
            None => RunId::for_legacy_job(&spec.job_id()),
        };
        Ok(JobGraph { spec, run_id })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec() -> JobSpec {
        JobSpec::parse(
            "name: Graph Test\npipeline:\n  - source: { kind: sequence, to: 10 }\n  - sink: { kind: files }\n",
            "test",
        )
        .unwrap()
    }

    #[test]
    fn the_run_id_round_trips_and_each_submission_draws_a_new_one() {
        let a = JobGraph::submitted(spec());
        let b = JobGraph::submitted(spec());
        assert_ne!(a.run_id, b.run_id);
        assert_eq!(a.run_id.as_str().len(), 32);
        assert_eq!(JobGraph::from_bytes(&a.to_bytes().unwrap()).unwrap(), a);
    }

    #[test]
    fn a_graph_stored_without_a_run_id_gets_one_derived_from_its_job_id() {
        // What the dispatcher stored before run ids: the spec's JSON alone.
        let old = serde_json::to_vec(&spec()).unwrap();
        let g = JobGraph::from_bytes(&old).unwrap();
        assert_eq!(g.spec, spec());
        assert_eq!(g.run_id.as_str(), "graph-test");
        // Every leader that recovers it agrees.
        assert_eq!(JobGraph::from_bytes(&old).unwrap().run_id, g.run_id);
        assert_eq!(RunId::for_legacy_job("a/b c").as_str(), "a-b-c");
    }

    #[test]
    fn a_bad_run_id_is_refused() {
        let mut v = serde_json::to_value(spec()).unwrap();
        v["run-id"] = "../x".into();
        let e = JobGraph::from_bytes(&serde_json::to_vec(&v).unwrap()).unwrap_err();
        assert!(e.to_string().contains("unexpected character '.'"), "{e}");
        assert!(RunId::parse("").is_err());
    }
}
