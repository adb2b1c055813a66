//! Jobs: the YAML spec users write, the operators a subtask chains, and the exactly-once file
//! sink.

pub mod operators;
pub mod sink;
pub mod spec;
