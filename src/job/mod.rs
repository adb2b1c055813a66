//! Jobs: the YAML spec users write, the sources a subtask reads, the operators it chains, and
//! the exactly-once file sink.

pub mod operators;
pub mod sink;
pub mod source;
pub mod spec;
