//! The tests that inject faults into the mini cluster: they SIGKILL ApplicationMasters and
//! TaskManager containers, or stop and restart the ZooKeeper server. One test binary, one cluster
//! ([`support::MiniCluster::get`]), and one test at a time: each test first takes
//! [`support::ONE_AT_A_TIME`], so no fault lands on another test.
//!
//! One module: `cargo test --test faults yarn_failover::`.

mod support;

#[path = "faults/ha_zk_restart.rs"]
mod ha_zk_restart;
#[path = "faults/yarn_failover.rs"]
mod yarn_failover;
