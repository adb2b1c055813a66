//! The TaskManager side: subtasks and their checkpointing. (Registration with the JobManager
//! over gRPC comes with the runtime issue.)

pub mod executor;
pub mod task;
