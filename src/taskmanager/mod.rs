//! The TaskManager side: subtasks and their checkpointing ([`task`]), the process that
//! registers with the JobManager over gRPC and runs what it deploys ([`executor`]), and the
//! conversions between subtask commands/events and the gRPC messages ([`wire`]).

pub mod exchange;
pub mod executor;
pub mod task;
pub mod wire;
