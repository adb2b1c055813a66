//! HDFS writes are durable before they count (issue 11, item 7): DataNodes stop while the
//! exactly-once job checkpoints (`yarn/minicluster/run dn stop|start`).
//!
//! * On the faults cluster (2 DataNodes, replication 2) a stopped DataNode degrades HDFS: the
//!   clients' pipelines drop it and checkpoints go on.
//! * On a cluster of its own with a single DataNode, stopping it is a total outage: every close
//!   of a written file fails. Those writes must be errors (a failed checkpoint, a failover),
//!   never a rename of a truncated file into place.
//!
//! Either way the committed parts hold every number once and none is torn.

use std::time::{Duration, Instant};

use crate::support::yarn_app::*;
use crate::support::{self, MiniCluster};
use yarnflow::hadoop::rest::RmRest;
use yarnflow::hadoop::webhdfs::WebHdfs;

/// Runs the exactly-once job on `cluster`, stops DataNode `index` once `n` checkpoints have
/// completed, keeps it stopped for `outage`, starts it again, and checks the end: SUCCEEDED,
/// exactly once, nothing left. Returns the application id.
async fn job_through_a_datanode_stop(
    cluster: &MiniCluster,
    name: &str,
    index: &str,
    outage: Duration,
) -> String {
    let rest = RmRest::new(cluster.rm_rest());
    let conf = conf_dir(cluster, name, "");
    let app = submit(cluster, &conf, &half_spec(cluster));
    let before = wait_checkpoints(cluster, &rest, &app, 3).await["completed_checkpoints"]
        .as_u64()
        .unwrap();
    let stopped = Instant::now();
    println!("{}", fault(cluster, "dn", &["stop", index]).trim());
    tokio::time::sleep(outage).await;
    println!("{}", fault(cluster, "dn", &["start", index]).trim());
    let during = job_view(&rest, &app)
        .await
        .map(|(_, v)| v["completed_checkpoints"].to_string());
    println!(
        "DataNode {index} down for {} ms; checkpoints completed: {before} before, {} after",
        stopped.elapsed().as_millis(),
        during.as_deref().unwrap_or("?")
    );
    wait_succeeded(&rest, &app, Duration::from_secs(180)).await;
    check_output_of(cluster, &app, HALF_RECORDS).await;
    check_no_ha_data(cluster, &conf, &app).await;
    // The AM and TaskManagers wrote with the cluster's hdfs-site.xml (HADOOP_CONF_DIR on
    // libhdfs's classpath): its replication, not Hadoop's default of 3 that 2 DataNodes can
    // never satisfy.
    let web = WebHdfs::new(cluster.webhdfs(), &support::user());
    let expected = cluster.datanodes().min(2) as u16;
    for (name, status) in web.list(&output_dir(&support::user(), &app)).await.unwrap() {
        assert_eq!(status.replication, expected, "{name}");
    }
    app
}

/// One of two DataNodes stops while checkpoints run every 500 ms: writes in flight lose a
/// pipeline node, later ones go to the other DataNode; no committed part is truncated.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_datanode_stopped_during_checkpoints_truncates_no_committed_part() {
    let _one = support::ONE_AT_A_TIME.lock().await;
    let cluster = crate::cluster();
    job_through_a_datanode_stop(cluster, "dn-stop", "1", Duration::from_secs(6)).await;
}

/// The only DataNode stops: a total outage. Closing a written file fails (the NameNode can
/// place its block on no DataNode), so checkpoints fail and the job fails over until HDFS is
/// back; it then restores and ends exactly once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_total_hdfs_outage_fails_the_writes_and_loses_nothing() {
    // Its own cluster, started before the turn so its start overlaps another test.
    let cluster = MiniCluster::start_with("-one-datanode", 1, &[]);
    let _one = support::ONE_AT_A_TIME.lock().await;
    let app = job_through_a_datanode_stop(&cluster, "dn-outage", "0", Duration::from_secs(6)).await;
    // The failed-close path ran: some write's close reported the outage.
    let conf = cluster.dir.join("conf-dn-outage");
    let out = cluster
        .yarnflow(&conf)
        .args(["logs", &app, "--grep", "closing the written file failed"])
        .output()
        .unwrap();
    let logs = String::from_utf8_lossy(&out.stdout);
    assert!(
        logs.lines()
            .any(|l| l.contains("closing the written file failed")),
        "no write failed at close during the outage:\n{logs}"
    );
}
