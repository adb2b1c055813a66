//! The tests that inject faults into the mini cluster: they SIGKILL ApplicationMasters and
//! TaskManager containers, freeze containers, stop and restart the ZooKeeper server, the
//! NameNode and DataNodes, make an HA blob unreadable, and run the short chaos test. One test binary, one cluster
//! ([`cluster`]: 2 DataNodes, replication 2, so stopping one degrades HDFS instead of stopping
//! it), and one test at a time: each test first takes [`support::ONE_AT_A_TIME`], so no fault
//! lands on another test.
//!
//! One module: `cargo test --test faults yarn_failover::`.

mod support;

#[path = "faults/chaos.rs"]
mod chaos;
#[path = "faults/ha_zk_restart.rs"]
mod ha_zk_restart;
#[path = "faults/hdfs_faults.rs"]
mod hdfs_faults;
#[path = "faults/recovery_blips.rs"]
mod recovery_blips;
#[path = "faults/wordcount_failover.rs"]
mod wordcount_failover;
#[path = "faults/yarn_failover.rs"]
mod yarn_failover;

/// The faults binary's cluster: 2 DataNodes.
pub fn cluster() -> &'static support::MiniCluster {
    support::MiniCluster::shared(2)
}
