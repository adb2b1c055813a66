//! Jobs: the YAML spec users write, the job graph stored for it (spec and run id), the sources
//! a subtask reads, the operators it chains and the records between them, the exactly-once
//! file sink, the key groups keyed records and state are spread over, and the execution plan
//! (stages cut at each key-by).

pub mod graph;
pub mod key_groups;
pub mod operators;
pub mod plan;
pub mod record;
pub mod sink;
pub mod source;
pub mod spec;
