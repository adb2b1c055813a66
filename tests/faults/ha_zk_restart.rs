//! A ZooKeeper server restart that sessions survive: leadership is kept with
//! `tolerate-suspended-connections: true`, revoked (and handed over) with Flink's default
//! `false`, and there are never two leaders. In the faults binary, under `support::ONE_AT_A_TIME`:
//! restarting the server would disturb any test using the cluster at the same time.

use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::support::{self, unique};
use bytes::Bytes;
use yarnflow::ha::LeaderElection;
use yarnflow::ha::zookeeper::{PointerStore, ZkLeaderElection};

/// Long enough to outlive the restart.
const SESSION: Duration = Duration::from_secs(15);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn leadership_across_a_zookeeper_restart_follows_the_tolerate_key() {
    let _one = support::ONE_AT_A_TIME.lock().await;
    let cluster = crate::cluster();
    let blobs = support::hdfs_store(cluster).await;
    let quorum = cluster.zk_quorum();

    // Tolerant leader.
    let ns_t = format!("/yarnflow-test/{}", unique("tolerant"));
    let zk_t = support::session(quorum, &ns_t, SESSION).await;
    let tolerant = ZkLeaderElection::new(zk_t.clone(), "t", true);
    let lt = tolerant.acquire().await.unwrap();

    // Strict leader with a standby.
    let ns_s = format!("/yarnflow-test/{}", unique("strict"));
    let strict = Arc::new(ZkLeaderElection::new(
        support::session(quorum, &ns_s, SESSION).await,
        "s1",
        false,
    ));
    let ls = strict.acquire().await.unwrap();
    let standby = Arc::new(ZkLeaderElection::new(
        support::session(quorum, &ns_s, SESSION).await,
        "s2",
        false,
    ));
    let sb = standby.clone();
    let standby_grant = tokio::spawn(async move { sb.acquire().await });

    let out = cluster.run("zk", &["stop"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    tokio::time::sleep(Duration::from_secs(1)).await;
    let out = cluster.run("zk", &["start"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );

    // Strict: revoked on the suspension; someone (the standby, or s1 again) leads afterwards,
    // and never while s1's old grant is live.
    tokio::time::timeout(Duration::from_secs(5), ls.revoked.cancelled())
        .await
        .expect("the strict leader revokes on a suspended connection");
    let next = tokio::time::timeout(Duration::from_secs(20), standby_grant)
        .await
        .expect("the standby leads once the old latch is given up")
        .unwrap()
        .unwrap();
    assert!(ls.revoked.is_cancelled());
    assert!(next.epoch > ls.epoch);

    // Tolerant: still the leader, and its fenced writes still go through.
    let deadline = Instant::now() + Duration::from_secs(10);
    let store = PointerStore::new(
        zk_t,
        blobs,
        &format!("/yarnflow-test-ha/{}", unique("blobs")),
    );
    loop {
        match store
            .put("jobgraphs/j", "submittedJobGraph", Bytes::from_static(b"x"))
            .await
        {
            Ok(()) => break,
            // The client may still be reconnecting.
            Err(e) if Instant::now() < deadline && e.is_retriable() => {
                tokio::time::sleep(Duration::from_millis(200)).await
            }
            Err(e) => panic!("the tolerant leader could not write: {e}"),
        }
    }
    assert!(!lt.revoked.is_cancelled(), "tolerant leadership kept");
    tolerant.resign().await.unwrap();
    standby.resign().await.unwrap();
}
