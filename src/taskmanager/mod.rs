//! The TaskManager side: subtasks and their checkpointing ([`task`]) and the process that
//! registers with the JobManager over gRPC and runs what it deploys ([`executor`]).

pub mod executor;
pub mod task;
