//! HA services against the real ZooKeeper and HDFS of the mini cluster: election and failover,
//! eviction, fencing of deposed leaders, the pointer store on HDFS, terminal cleanup, and the
//! checkpoint id counter.

use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::support::proxy::TcpProxy;
use crate::support::{self, MiniCluster, unique};
use bytes::Bytes;
use tokio::sync::mpsc;
use yarnflow::ha::zookeeper::{PointerStore, ZkLeaderElection, ZkLeaderRetrieval};
use yarnflow::ha::{
    HaError, LeaderElection, LeaderInfo, LeaderRetrieval, Leadership, StoredCheckpoint,
};
use yarnflow::storage::BlobStore;

const SESSION: Duration = Duration::from_secs(4);

async fn hdfs(cluster: &MiniCluster) -> Arc<dyn BlobStore> {
    support::hdfs_store(cluster).await
}

fn namespace() -> String {
    format!("/yarnflow-test/{}", unique("cluster"))
}

/// Contends in the background; grants arrive on the channel as (contender, leadership, when).
fn contend(
    i: usize,
    e: Arc<ZkLeaderElection>,
    tx: mpsc::UnboundedSender<(usize, Leadership, Instant)>,
) {
    tokio::spawn(async move {
        if let Ok(l) = e.acquire().await {
            let _ = tx.send((i, l, Instant::now()));
        }
    });
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_contenders_one_leader_failover_and_eviction() {
    let cluster = MiniCluster::get();
    let ns = namespace();
    let mut proxies = Vec::new();
    let mut elections = Vec::new();
    for i in 0..3 {
        let p = TcpProxy::start(cluster.zk_quorum()).await;
        let zk = support::session(&p.addr_string(), &ns, SESSION).await;
        elections.push(Arc::new(ZkLeaderElection::new(
            zk,
            &format!("appattempt_{i}"),
            false,
        )));
        proxies.push(p);
    }
    let (tx, mut rx) = mpsc::unbounded_channel();
    for (i, e) in elections.iter().enumerate() {
        contend(i, e.clone(), tx.clone());
    }
    let (first, l1, _) = tokio::time::timeout(Duration::from_secs(10), rx.recv())
        .await
        .unwrap()
        .unwrap();
    // Exactly one leader: nobody else is granted while it holds the latch.
    assert!(
        tokio::time::timeout(Duration::from_secs(1), rx.recv())
            .await
            .is_err()
    );
    assert_eq!(elections[first].contenders().await.unwrap().len(), 3);

    // The leader's connection dies: it revokes itself, and another takes over once its session
    // expires (within the session timeout plus the detection margin).
    let cut_at = Instant::now();
    proxies[first].cut();
    let (second, l2, at) = tokio::time::timeout(SESSION * 3, rx.recv())
        .await
        .expect("a successor within the session timeout")
        .unwrap();
    let takeover = at - cut_at;
    println!("takeover after session loss: {takeover:?}");
    assert_ne!(second, first);
    assert!(
        l1.revoked.is_cancelled(),
        "the cut-off leader revoked itself"
    );
    assert!(l2.epoch > l1.epoch, "epochs strictly increase");
    assert!(
        tokio::time::timeout(Duration::from_millis(500), rx.recv())
            .await
            .is_err(),
        "one leader at a time"
    );

    // The third contender knows the second is dead (say YARN told it): eviction hands over at
    // once, without waiting for any session to expire.
    let third = 3 - first - second;
    elections[second]
        .publish(&l2, "10.0.0.2:6123")
        .await
        .unwrap();
    let discovery =
        ZkLeaderRetrieval::start(support::session(cluster.zk_quorum(), &ns, SESSION).await);
    let mut seen = discovery.watch();
    wait_for(
        &mut seen,
        "the second leader",
        Duration::from_secs(5),
        |i| i.as_ref().is_some_and(|i| i.epoch == l2.epoch),
    )
    .await;
    let evict_at = Instant::now();
    let n = elections[third]
        .evict(&format!("appattempt_{second}"))
        .await
        .unwrap();
    assert_eq!(n, 1);
    let (who, l3, at) = tokio::time::timeout(Duration::from_secs(5), rx.recv())
        .await
        .unwrap()
        .unwrap();
    let takeover = at - evict_at;
    println!("takeover after eviction: {takeover:?}");
    assert_eq!(who, third);
    assert!(takeover < Duration::from_secs(1), "{takeover:?}");
    // Discovery stops naming the evicted leader at once.
    wait_for(
        &mut seen,
        "no leader after eviction",
        Duration::from_secs(1),
        |i| i.as_ref().is_none_or(|i| i.epoch != l2.epoch),
    )
    .await;
    assert!(l3.epoch > l2.epoch);
    // The evicted leader notices its latch is gone and revokes itself.
    tokio::time::timeout(Duration::from_secs(2), l2.revoked.cancelled())
        .await
        .expect("the evicted leader revokes its grant");
    elections[third].resign().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_deposed_leader_cannot_write_any_pointer() {
    let cluster = MiniCluster::get();
    let blobs = hdfs(cluster).await;
    let ns = namespace();
    let blob_dir = format!("/yarnflow-test-ha/{}", unique("blobs"));

    // Leader A reaches ZooKeeper through a proxy the test controls.
    let proxy = TcpProxy::start(cluster.zk_quorum()).await;
    let zk_a = support::session(&proxy.addr_string(), &ns, SESSION).await;
    let a = ZkLeaderElection::new(zk_a.clone(), "a", true);
    let la = a.acquire().await.unwrap();
    let a_latch = a.contenders().await.unwrap()[0].0.clone();
    let store_a = PointerStore::new(zk_a.clone(), blobs.clone(), &blob_dir);
    store_a
        .put(
            "jobgraphs/j1",
            "submittedJobGraph",
            Bytes::from_static(b"from A"),
        )
        .await
        .unwrap();

    // A is cut off; B is elected once A's session is gone.
    proxy.cut();
    let zk_b = support::session(cluster.zk_quorum(), &ns, SESSION).await;
    let b = ZkLeaderElection::new(zk_b.clone(), "b", false);
    let lb = tokio::time::timeout(SESSION * 3, b.acquire())
        .await
        .expect("B leads after A's session expires")
        .unwrap();
    assert!(lb.epoch > la.epoch);
    let store_b = PointerStore::new(zk_b.clone(), blobs.clone(), &blob_dir);
    store_b
        .put(
            "jobgraphs/j1",
            "submittedJobGraph",
            Bytes::from_static(b"from B"),
        )
        .await
        .unwrap();

    // A comes back: every write it attempts fails, and B's data stays.
    proxy.restore();
    for key in [
        "jobgraphs/j1",
        "jobgraphs/j2",
        "jobs/j1/checkpoints/0000000000000000001",
    ] {
        let r = store_a
            .put(key, "submittedJobGraph", Bytes::from_static(b"zombie"))
            .await;
        assert!(r.is_err(), "a deposed leader wrote {key}");
    }
    assert!(store_a.remove("jobgraphs/j1").await.is_err());

    // A zombie whose session is alive and which still believes it leads (say its latch was
    // evicted before it noticed) is stopped by ZooKeeper itself: the multi-op's latch check
    // fails. Here: a live session fenced on A's old latch node, which is gone.
    let zombie = support::session(cluster.zk_quorum(), &ns, SESSION).await;
    zombie.fence_on(a_latch, la.epoch);
    let store_z = PointerStore::new(zombie, blobs.clone(), &blob_dir);
    match store_z
        .put(
            "jobgraphs/j1",
            "submittedJobGraph",
            Bytes::from_static(b"zombie"),
        )
        .await
    {
        Err(HaError::NotLeader(msg)) => assert!(msg.contains("fenced"), "{msg}"),
        other => panic!("expected NotLeader, got {other:?}"),
    }
    assert_eq!(
        store_b.get("jobgraphs/j1").await.unwrap().unwrap(),
        Bytes::from_static(b"from B")
    );
    b.resign().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pointer_round_trip_on_hdfs_and_corruption_is_named() {
    let cluster = MiniCluster::get();
    let blobs = hdfs(cluster).await;
    let ns = namespace();
    let blob_dir = format!("/yarnflow-test-ha/{}", unique("blobs"));
    let zk = support::session(cluster.zk_quorum(), &ns, SESSION).await;
    let e = ZkLeaderElection::new(zk.clone(), "leader", false);
    e.acquire().await.unwrap();
    let store = PointerStore::new(zk, blobs.clone(), &blob_dir);

    let payload: Bytes = (0..100_000u32).map(|i| (i % 251) as u8).collect();
    let mut times = Vec::new();
    for _ in 0..5 {
        let t = Instant::now();
        store
            .put("jobgraphs/j1", "submittedJobGraph", payload.clone())
            .await
            .unwrap();
        times.push(t.elapsed());
    }
    times.sort();
    println!(
        "pointer write (100 kB HDFS blob + ZooKeeper multi): first {:?}, median {:?}",
        times.last().unwrap(),
        times[2]
    );
    assert_eq!(store.get("jobgraphs/j1").await.unwrap().unwrap(), payload);

    // Same length, different bytes: the checksum catches it.
    let pointer = store.pointer("jobgraphs/j1").await.unwrap().unwrap();
    let mut bad = payload.to_vec();
    bad[7] ^= 0xff;
    blobs
        .write(&pointer.blob_path, Bytes::from(bad))
        .await
        .unwrap();
    let err = store.get("jobgraphs/j1").await.unwrap_err().to_string();
    assert!(
        err.contains(&pointer.blob_path) && err.contains("CRC-32C"),
        "{err}"
    );
    // Truncated: the length catches it.
    blobs
        .write(&pointer.blob_path, payload.slice(..10))
        .await
        .unwrap();
    let err = store.get("jobgraphs/j1").await.unwrap_err().to_string();
    assert!(
        err.contains(&pointer.blob_path) && err.contains("length"),
        "{err}"
    );
    // Missing.
    blobs.delete(&pointer.blob_path).await.unwrap();
    let err = store.get("jobgraphs/j1").await.unwrap_err().to_string();
    assert!(err.contains("missing"), "{err}");
    e.resign().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn terminal_cleanup_leaves_nothing_and_suspension_deletes_nothing() {
    let cluster = MiniCluster::get();
    let blobs = hdfs(cluster).await;
    let cluster_id = unique("application");
    let storage = format!("/yarnflow-test-ha/{}", unique("storage"));
    let mut config = cluster.zk_ha_config("/yarnflow-test", &cluster_id, &storage);
    config.set("high-availability.zookeeper.client.session-timeout", "4 s");
    let cfg = yarnflow::ha::config::HaConfig::from_config(&config).unwrap();
    let ha = yarnflow::ha::HaServices::from_config(&config, "attempt-1")
        .await
        .unwrap();
    ha.election.acquire().await.unwrap();

    let job = "job-0001";
    ha.job_graphs
        .put(job, Bytes::from_static(b"graph"))
        .await
        .unwrap();
    let checkpoints = ha.checkpoint_store_factory.checkpoint_store(job);
    let counter = ha.checkpoint_store_factory.checkpoint_id_counter(job);
    for _ in 0..3 {
        let id = counter.get_and_increment().await.unwrap();
        checkpoints
            .add(StoredCheckpoint {
                checkpoint_id: id,
                metadata: Bytes::from(format!("checkpoint {id}")),
            })
            .await
            .unwrap();
    }
    // num-retained = 1: only the newest is left, and the subsumed blobs are gone.
    assert_eq!(checkpoints.checkpoint_ids().await.unwrap(), vec![3]);
    let blob_dir = yarnflow::ha::uri_path(&cfg.blob_dir_uri());
    assert_eq!(
        blobs.list(&blob_dir).await.unwrap().len(),
        2,
        "graph + 1 checkpoint"
    );

    // A non-terminal shutdown (suspension) deletes nothing.
    checkpoints.shutdown(false).await.unwrap();
    counter.shutdown(false).await.unwrap();
    assert_eq!(checkpoints.checkpoint_ids().await.unwrap(), vec![3]);
    assert_eq!(counter.get().await.unwrap(), 4);
    assert_eq!(
        ha.job_graphs.job_ids().await.unwrap(),
        vec![job.to_string()]
    );

    // Terminal: zero znodes under the job, zero files in storage.
    ha.job_graphs.remove(job).await.unwrap();
    checkpoints.shutdown(true).await.unwrap();
    counter.shutdown(true).await.unwrap();
    let zk = zookeeper_client::Client::connect(cluster.zk_quorum())
        .await
        .unwrap();
    let ns = cfg.namespace();
    for gone in [format!("{ns}/jobs/{job}"), format!("{ns}/jobgraphs/{job}")] {
        assert_eq!(zk.check_stat(&gone).await.unwrap(), None, "{gone} is left");
    }
    assert!(blobs.list(&blob_dir).await.unwrap().is_empty());
    ha.election.resign().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_counter_increments_never_repeat_an_id() {
    let cluster = MiniCluster::get();
    let blobs = hdfs(cluster).await;
    let ns = namespace();
    let zk1 = support::session(cluster.zk_quorum(), &ns, SESSION).await;
    let e = ZkLeaderElection::new(zk1.clone(), "leader", false);
    e.acquire().await.unwrap();
    // A second session fenced on the same latch: two writers racing on one counter.
    let zk2 = support::session(cluster.zk_quorum(), &ns, SESSION).await;
    let latch = e.contenders().await.unwrap()[0].0.clone();
    zk2.fence_on(latch, 1);
    let mut tasks = Vec::new();
    for zk in [zk1, zk2] {
        let store = PointerStore::new(zk, blobs.clone(), "/yarnflow-test-ha/unused");
        let counter = yarnflow::ha::zookeeper::ZkCheckpointIdCounter::new(store, "job");
        tasks.push(tokio::spawn(async move {
            use yarnflow::ha::CheckpointIdCounter;
            let mut ids = Vec::new();
            for _ in 0..40 {
                ids.push(counter.get_and_increment().await.unwrap());
            }
            ids
        }));
    }
    let mut all = Vec::new();
    for t in tasks {
        all.extend(t.await.unwrap());
    }
    all.sort_unstable();
    let expected: Vec<u64> = (1..=80).collect();
    assert_eq!(all, expected, "every id handed out exactly once");
    e.resign().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn malformed_znodes_are_named_errors_and_do_not_hide_the_others() {
    use yarnflow::ha::zookeeper::{ZkCheckpointIdCounter, ZkCheckpointStore, ZkJobGraphStore};
    use yarnflow::ha::{CheckpointIdCounter, CompletedCheckpointStore, JobGraphStore};
    let cluster = MiniCluster::get();
    let blobs = hdfs(cluster).await;
    let ns = namespace();
    let blob_dir = format!("/yarnflow-test-ha/{}", unique("blobs"));
    let zk = support::session(cluster.zk_quorum(), &ns, SESSION).await;
    let e = ZkLeaderElection::new(zk.clone(), "leader", false);
    e.acquire().await.unwrap();
    let pointers = PointerStore::new(zk.clone(), blobs.clone(), &blob_dir);
    let graphs = ZkJobGraphStore::new(pointers.clone());
    let checkpoints = ZkCheckpointStore::new(pointers.clone(), "job", 5);
    let counter = ZkCheckpointIdCounter::new(pointers.clone(), "job");
    for job in ["j1", "j2"] {
        graphs.put(job, Bytes::from_static(b"graph")).await.unwrap();
    }
    for id in [1, 2] {
        counter.get_and_increment().await.unwrap();
        checkpoints
            .add(StoredCheckpoint {
                checkpoint_id: id,
                metadata: Bytes::from(format!("cp {id}")),
            })
            .await
            .unwrap();
    }

    // Damage some znodes by hand (another session, plain writes).
    let raw = zookeeper_client::Client::connect(cluster.zk_quorum())
        .await
        .unwrap();
    let cp2 = format!("{ns}/jobs/job/checkpoints/0000000000000000002");
    raw.set_data(&cp2, b"\xff\xff", None).await.unwrap();
    raw.set_data(&format!("{ns}/jobgraphs/j2"), b"", None)
        .await
        .unwrap();
    raw.set_data(
        &format!("{ns}/jobs/job/checkpoint_id_counter"),
        b"banana",
        None,
    )
    .await
    .unwrap();

    // Listed, named on read, and the others still readable: recovery can fall back.
    assert_eq!(checkpoints.checkpoint_ids().await.unwrap(), vec![1, 2]);
    let err = checkpoints.get(2).await.unwrap_err();
    assert!(matches!(err, HaError::Corrupt { .. }), "{err:?}");
    assert!(err.to_string().contains(&cp2), "{err}");
    assert_eq!(
        checkpoints.get(1).await.unwrap().metadata,
        Bytes::from_static(b"cp 1")
    );
    assert_eq!(graphs.job_ids().await.unwrap(), vec!["j1", "j2"]);
    let err = graphs.get("j2").await.unwrap_err().to_string();
    assert!(
        err.contains("jobgraphs/j2") && err.contains("no blob"),
        "{err}"
    );
    assert!(graphs.get("j1").await.unwrap().is_some());
    // Damaged entries can still be removed.
    graphs.remove("j2").await.unwrap();
    assert_eq!(graphs.job_ids().await.unwrap(), vec!["j1"]);

    // A counter that is not a number is an error naming it, never a restart at 1.
    let err = counter.get_and_increment().await.unwrap_err().to_string();
    assert!(
        err.contains("checkpoint_id_counter") && err.contains("banana"),
        "{err}"
    );
    // The same for the leader epoch: the next contender refuses to lead on it.
    e.resign().await.unwrap();
    raw.set_data(&format!("{ns}/leader/epoch"), b"-3", None)
        .await
        .unwrap();
    let err = e.acquire().await.unwrap_err().to_string();
    assert!(err.contains("leader/epoch") && err.contains("-3"), "{err}");
    assert!(e.contenders().await.unwrap().is_empty(), "latch given up");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_pointer_write_without_an_answer_never_loses_its_blob() {
    let cluster = MiniCluster::get();
    let blobs = hdfs(cluster).await;
    let ns = namespace();
    let blob_dir = format!("/yarnflow-test-ha/{}", unique("blobs"));
    let proxy = TcpProxy::start(cluster.zk_quorum()).await;
    let zk = support::session(&proxy.addr_string(), &ns, SESSION).await;
    let e = ZkLeaderElection::new(zk.clone(), "leader", true);
    e.acquire().await.unwrap();
    let store = PointerStore::new(zk, blobs.clone(), &blob_dir);
    store
        .put(
            "jobgraphs/j",
            "submittedJobGraph",
            Bytes::from_static(b"v1"),
        )
        .await
        .unwrap();

    // ZooKeeper applies the multi-op (the first request of a new key's write) but its answer
    // is lost: the writer cannot know the outcome.
    proxy.mute();
    let writer = tokio::spawn(async move {
        let r = store
            .put(
                "jobgraphs/k",
                "submittedJobGraph",
                Bytes::from_static(b"v2"),
            )
            .await;
        (store, r)
    });
    tokio::time::sleep(Duration::from_secs(3)).await;
    proxy.restore();
    let (store, r) = tokio::time::timeout(Duration::from_secs(15), writer)
        .await
        .expect("the write returns")
        .unwrap();
    println!("pointer write without an answer: {r:?}");
    if let Err(e) = &r {
        assert!(e.to_string().contains("outcome unknown"), "{e}");
    }

    // Whatever it returned, the pointer names a blob that exists and holds v2.
    let zk2 = support::session(cluster.zk_quorum(), &ns, SESSION).await;
    let reader = PointerStore::new(zk2, blobs.clone(), &blob_dir);
    assert_eq!(
        reader.get("jobgraphs/k").await.unwrap().unwrap(),
        Bytes::from_static(b"v2")
    );
    drop(store);
}

async fn wait_for(
    rx: &mut tokio::sync::watch::Receiver<Option<LeaderInfo>>,
    what: &str,
    within: Duration,
    f: impl FnMut(&Option<LeaderInfo>) -> bool,
) {
    tokio::time::timeout(within, rx.wait_for(f))
        .await
        .unwrap_or_else(|_| panic!("discovery: {what} within {within:?}"))
        .unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_tolerant_leader_steps_down_before_any_successor_and_discovery_follows_the_key() {
    let cluster = MiniCluster::get();
    let ns = namespace();
    let proxy = TcpProxy::start(cluster.zk_quorum()).await;
    let zk_l = support::session(&proxy.addr_string(), &ns, SESSION).await;
    let budget = zk_l.tolerated_disconnection();
    assert!(budget > Duration::ZERO && budget < SESSION, "{budget:?}");
    let leader = ZkLeaderElection::new(zk_l, "tolerant", true);
    let l = leader.acquire().await.unwrap();
    leader.publish(&l, "10.0.0.1:6123").await.unwrap();

    // Discovery behind its own proxy: Flink's default clears the leader while suspended, the
    // tolerant policy keeps it.
    let dproxy = TcpProxy::start(cluster.zk_quorum()).await;
    let strict = ZkLeaderRetrieval::start_with(
        support::session(&dproxy.addr_string(), &ns, SESSION).await,
        false,
    );
    let tolerant = ZkLeaderRetrieval::start_with(
        support::session(&dproxy.addr_string(), &ns, SESSION).await,
        true,
    );
    let (mut s, mut t) = (strict.watch(), tolerant.watch());
    let is_l = |i: &Option<LeaderInfo>| {
        i.as_ref().is_some_and(|i| {
            i.epoch == l.epoch && i.session_id == l.session_id && i.address == "10.0.0.1:6123"
        })
    };
    wait_for(&mut s, "the leader", Duration::from_secs(5), is_l).await;
    wait_for(&mut t, "the leader", Duration::from_secs(5), is_l).await;
    dproxy.cut();
    wait_for(
        &mut s,
        "no leader while suspended",
        Duration::from_secs(2),
        Option::is_none,
    )
    .await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(is_l(&t.borrow()), "the tolerant watcher keeps the leader");
    dproxy.restore();
    wait_for(&mut s, "the leader again", Duration::from_secs(5), is_l).await;

    // The tolerant leader loses ZooKeeper for good: it must step down before the server can
    // expire its session, i.e. before any successor is granted.
    let standby = Arc::new(ZkLeaderElection::new(
        support::session(cluster.zk_quorum(), &ns, SESSION).await,
        "standby",
        false,
    ));
    let sb = standby.clone();
    let grant = tokio::spawn(async move {
        let g = sb.acquire().await;
        (g, Instant::now())
    });
    // Its latch node queued behind the leader's: the standby is contending.
    let deadline = Instant::now() + Duration::from_secs(5);
    while standby.contenders().await.unwrap().len() < 2 {
        assert!(Instant::now() < deadline, "the standby never contended");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let cut_at = Instant::now();
    proxy.cut();
    tokio::time::timeout(SESSION * 2, l.revoked.cancelled())
        .await
        .expect("the tolerant leader revokes itself");
    let revoked_at = Instant::now();
    let (g, granted_at) = tokio::time::timeout(SESSION * 3, grant)
        .await
        .expect("the standby leads once the session expired")
        .unwrap();
    let ls = g.unwrap();
    println!(
        "tolerant leader cut off: revoked after {:?} (budget {budget:?}), successor after {:?}",
        revoked_at - cut_at,
        granted_at - cut_at
    );
    assert!(revoked_at < granted_at, "never two leaders");
    assert!(ls.epoch > l.epoch);
    standby.publish(&ls, "10.0.0.2:6123").await.unwrap();
    wait_for(&mut s, "the successor", Duration::from_secs(5), |i| {
        i.as_ref()
            .is_some_and(|i| i.epoch == ls.epoch && i.address == "10.0.0.2:6123")
    })
    .await;
    standby.resign().await.unwrap();
    wait_for(
        &mut s,
        "no leader after resign",
        Duration::from_secs(5),
        Option::is_none,
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ha_inspect_reports_orphans_and_clean_removes_a_dead_cluster() {
    let cluster = MiniCluster::get();
    let blobs = hdfs(cluster).await;
    let conf_dir = std::env::temp_dir().join(unique("yarnflow-conf"));
    std::fs::create_dir_all(&conf_dir).unwrap();
    let storage = format!(
        "{}/yarnflow-test-ha/{}",
        cluster.hdfs_uri(),
        unique("storage")
    );
    std::fs::write(
        conf_dir.join("yarnflow.yaml"),
        format!(
            "high-availability.type: zookeeper\n\
             high-availability.zookeeper.quorum: {}\n\
             high-availability.zookeeper.path.root: /yarnflow-test\n\
             high-availability.storageDir: {storage}\n\
             high-availability.zookeeper.client.session-timeout: 4 s\n",
            cluster.zk_quorum()
        ),
    )
    .unwrap();
    let cluster_id = unique("application");
    let mut config = yarnflow::config::Config::load(Some(&conf_dir)).unwrap();
    config.set("high-availability.cluster-id", &cluster_id);
    let cfg = yarnflow::ha::config::HaConfig::from_config(&config).unwrap();
    let ha = yarnflow::ha::HaServices::zookeeper(&cfg, "attempt-1", blobs.clone())
        .await
        .unwrap();
    ha.election.acquire().await.unwrap();
    for job in ["job-a", "job-b"] {
        ha.job_graphs
            .put(job, Bytes::from_static(b"graph"))
            .await
            .unwrap();
    }
    let cp = ha.checkpoint_store_factory.checkpoint_store("job-a");
    cp.add(StoredCheckpoint {
        checkpoint_id: 1,
        metadata: Bytes::from_static(b"cp"),
    })
    .await
    .unwrap();

    // Delete one blob by hand: exactly that pointer is reported, nothing else.
    let zk = support::session(cluster.zk_quorum(), &cfg.namespace(), SESSION).await;
    let probe = PointerStore::new(zk, blobs.clone(), "/unused");
    let victim = probe.pointer("jobgraphs/job-b").await.unwrap().unwrap();
    blobs.delete(&victim.blob_path).await.unwrap();
    let out = cluster
        .yarnflow(&conf_dir)
        .args(["ha", "inspect", "--cluster-id", &cluster_id])
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{text}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        text.contains("orphans: 1 pointer(s) without blob, 0 blob(s) without pointer"),
        "{text}"
    );
    assert!(
        text.contains("pointer without blob: jobgraphs/job-b"),
        "{text}"
    );
    assert!(text.contains("owner=attempt-1"), "{text}");
    let out = cluster
        .yarnflow(&conf_dir)
        .args(["ha", "inspect", "--cluster-id", &cluster_id, "--json"])
        .output()
        .unwrap();
    let report: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(
        report["pointers_without_blobs"].as_array().unwrap().len(),
        1
    );

    // Clean refuses while the cluster runs...
    let out = cluster
        .yarnflow(&conf_dir)
        .args(["ha", "clean", "--cluster-id", &cluster_id])
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("refusing") && err.contains("attempt-1"),
        "{err}"
    );
    assert_eq!(err.trim().lines().count(), 1, "one line: {err}");

    // ...and once it is gone, leaves nothing behind.
    ha.election.resign().await.unwrap();
    let out = cluster
        .yarnflow(&conf_dir)
        .args(["ha", "clean", "--cluster-id", &cluster_id])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let zk = zookeeper_client::Client::connect(cluster.zk_quorum())
        .await
        .unwrap();
    assert_eq!(zk.check_stat(&cfg.namespace()).await.unwrap(), None);
    let blob_dir = yarnflow::ha::uri_path(&cfg.blob_dir_uri());
    assert!(!blobs.exists(&blob_dir).await.unwrap());
    let _ = std::fs::remove_dir_all(&conf_dir);
}

/// A standalone JobManager that loses leadership and wins it again (issue 11, item 9): the job
/// master of the earlier term writes through services fenced by that term's grant, so none of
/// its late writes land under the new latch, and its fenced-off writes do not clear the new
/// term's fence.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stale_job_master_of_an_earlier_term_cannot_write_after_the_process_leads_again() {
    let cluster = MiniCluster::get();
    // Points libhdfs at the cluster's jars, as for the other tests here.
    let _ = hdfs(cluster).await;
    let storage = format!("/yarnflow-test-ha/{}", unique("storage"));
    let mut config = cluster.zk_ha_config("/yarnflow-test", &unique("standalone"), &storage);
    config.set("high-availability.zookeeper.client.session-timeout", "4 s");
    let ha = yarnflow::ha::HaServices::from_config(&config, "jobmanager-1")
        .await
        .unwrap();
    let first = ha.election.acquire().await.unwrap();
    let stale = ha.for_leader(&first);
    stale
        .job_graphs
        .put("job-a", Bytes::from_static(b"term 1"))
        .await
        .unwrap();
    // The term ends (as on a revocation) and the same process leads again.
    ha.election.resign().await.unwrap();
    let second = ha.election.acquire().await.unwrap();
    assert!(second.epoch > first.epoch, "{first:?} {second:?}");
    let current = ha.for_leader(&second);

    // Every write of the earlier term's job master is fenced off, however late it comes.
    let e = stale
        .job_graphs
        .put("job-a", Bytes::from_static(b"late write of term 1"))
        .await
        .unwrap_err();
    assert!(e.lost_leadership(), "{e}");
    let e = stale
        .checkpoint_store_factory
        .checkpoint_id_counter("job-a")
        .get_and_increment()
        .await
        .unwrap_err();
    assert!(e.lost_leadership(), "{e}");
    let e = stale
        .checkpoint_store_factory
        .checkpoint_store("job-a")
        .add(StoredCheckpoint {
            checkpoint_id: 7,
            metadata: Bytes::from_static(b"late checkpoint of term 1"),
        })
        .await
        .unwrap_err();
    assert!(e.lost_leadership(), "{e}");
    assert_eq!(
        current.job_graphs.get("job-a").await.unwrap().as_deref(),
        Some(&b"term 1"[..]),
        "the late write did not land"
    );

    // ... and they did not clear the new term's fence: its writes (and the process's own
    // services, which follow the current grant) still go through.
    current
        .job_graphs
        .put("job-b", Bytes::from_static(b"term 2"))
        .await
        .unwrap();
    ha.job_graphs
        .put("job-c", Bytes::from_static(b"term 2 too"))
        .await
        .unwrap();
    for job in ["job-a", "job-b", "job-c"] {
        current.remove_job_data(job).await.unwrap();
    }
    ha.close_and_cleanup_all_data().await.unwrap();
}
