//! The only include of the generated JobManager <-> TaskManager gRPC code
//! (`proto/yarnflow/control.proto`).
#![allow(clippy::all, missing_docs)]

include!(concat!(env!("OUT_DIR"), "/yarnflow.control.rs"));
