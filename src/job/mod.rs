//! Jobs: the YAML spec users write, the job graph stored for it (spec and run id), the sources
//! a subtask reads, the operators it chains, and the exactly-once file sink.

pub mod graph;
pub mod operators;
pub mod sink;
pub mod source;
pub mod spec;
