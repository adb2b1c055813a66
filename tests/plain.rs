//! The tests on the plain mini cluster: one test binary, one cluster
//! ([`support::MiniCluster::get`], started by the first test that needs it, stopped when this
//! process exits) shared by every test here. They run in parallel, so each keeps to its own
//! ZooKeeper namespace or cluster id and HDFS paths (`support::unique`) and its own
//! applications, and stops or kills only its own processes and containers. `yarn_am`'s AMRMToken
//! rollover test needs other ResourceManager settings and starts a cluster of its own
//! ([`support::MiniCluster::start_with`]). `hadoop_ipc` needs no cluster (its peers are raw
//! sockets). Tests that kill AMs or containers, or stop shared services, are in `tests/faults.rs`.
//!
//! One module: `cargo test --test plain cli_tools::`.

mod support;

#[path = "plain/cli_tools.rs"]
mod cli_tools;
#[path = "plain/doctor.rs"]
mod doctor;
#[path = "plain/ha_zookeeper.rs"]
mod ha_zookeeper;
#[path = "plain/hadoop_ipc.rs"]
mod hadoop_ipc;
#[path = "plain/hdfs_storage.rs"]
mod hdfs_storage;
#[path = "plain/minicluster.rs"]
mod minicluster;
#[path = "plain/standalone_ha.rs"]
mod standalone_ha;
#[path = "plain/wordcount.rs"]
mod wordcount;
#[path = "plain/yarn_am.rs"]
mod yarn_am;
