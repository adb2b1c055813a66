//! The JobManager: job masters (checkpoints, region failover, cleanup), the TaskManager slot
//! pool and its gRPC endpoint, restart strategies, job status, and the REST API. (A dispatcher
//! for several jobs per JobManager is still to come.)

pub mod checkpoint;
pub mod job_master;
pub mod rest;
pub mod restart;
pub mod status;
pub mod taskmanagers;
