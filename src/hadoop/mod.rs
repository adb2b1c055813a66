//! Hadoop wire protocols: IPC with SASL, credentials, and the YARN protocols.

pub(crate) mod proto;
