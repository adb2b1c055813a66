//! The JobManager: restart strategies so far; the dispatcher, job masters and the checkpoint
//! coordinator come with the runtime issue.

pub mod checkpoint;
pub mod job_master;
pub mod rest;
pub mod restart;
pub mod status;
pub mod taskmanagers;
