//! The JobManager: job masters (checkpoints, region failover, cleanup: a pure [`scheduler`]
//! core driven by the [`job_master`] loop), where subtasks run ([`runtime`]: in process or on
//! the TaskManager slot pool and its gRPC endpoint), restart strategies, job status, the
//! runtime's [`error`] type, the REST API, and the dispatcher that recovers and runs a leader's
//! jobs.

pub mod api;
pub mod checkpoint;
pub mod checkpoint_storage;
pub mod cleanup;
pub mod client;
pub mod dispatcher;
pub mod endpoint;
pub mod error;
pub mod job_master;
pub mod leader;
pub mod metrics;
pub mod rest;
pub mod restart;
pub mod runtime;
pub mod scheduler;
pub mod standalone;
pub mod status;
pub mod taskmanagers;

pub use error::RuntimeError;
