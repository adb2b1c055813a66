//! Hadoop wire protocols: IPC with SASL, credentials, and the YARN protocols.

pub mod conf;
pub mod ipc;
pub(crate) mod proto;
pub mod rest;
pub mod webhdfs;
pub mod yarn;
