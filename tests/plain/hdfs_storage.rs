//! The `BlobStore` contract on the mini cluster's HDFS, for each HDFS client: hdfs-native and, in
//! builds with the `libhdfs` feature (the default, and the test command's), libhdfs. Both must
//! give the same answers and the same error kinds; the figures printed are each client's
//! latency of one small atomic write (most of an HA checkpoint commit). And no binary links
//! libjvm: libhdfs loads it at run time.

use std::sync::Arc;
use std::time::Instant;

use crate::support::{self, MiniCluster, unique};
use bytes::Bytes;
use yarnflow::storage::{BlobStore, HdfsClient, StorageError};

async fn store(cluster: &MiniCluster, client: HdfsClient) -> Arc<dyn BlobStore> {
    if client == HdfsClient::Libhdfs {
        // libhdfs reads CLASSPATH; its store takes it from YARNFLOW_HADOOP_CLASSPATH, and
        // libjvm from JAVA_HOME.
        unsafe {
            std::env::set_var(
                "YARNFLOW_HADOOP_CLASSPATH",
                cluster.env("YARNFLOW_HADOOP_CLASSPATH"),
            );
            std::env::set_var("JAVA_HOME", cluster.env("JAVA_HOME"));
        };
    }
    yarnflow::storage::open_with(cluster.hdfs_uri(), client)
        .await
        .unwrap()
        .store
}

async fn contract(client: HdfsClient) {
    let cluster = MiniCluster::get();
    let s = store(cluster, client).await;
    assert_eq!(s.base_uri(), cluster.hdfs_uri().trim_end_matches('/'));
    let dir = format!("/yarnflow-test-storage/{}", unique("contract"));
    let a = format!("{dir}/sub/a");

    // Missing paths: absent, empty, deletable; a read is NotFound naming the path.
    assert!(!s.exists(&a).await.unwrap());
    assert!(s.list(&dir).await.unwrap().is_empty());
    s.delete(&a).await.unwrap();
    s.delete_dir(&dir).await.unwrap();
    let e = s.read(&a).await.unwrap_err();
    assert!(e.is_not_found() && e.to_string().contains(&a), "{e}");

    // Write creates parents; overwrite replaces; no temporary file is left.
    s.write(&a, Bytes::from_static(b"first")).await.unwrap();
    assert_eq!(s.read(&a).await.unwrap(), Bytes::from_static(b"first"));
    s.write(&a, Bytes::from_static(b"second, longer"))
        .await
        .unwrap();
    assert_eq!(
        s.read(&a).await.unwrap(),
        Bytes::from_static(b"second, longer")
    );
    s.write(&format!("{dir}/sub/empty"), Bytes::new())
        .await
        .unwrap();
    assert!(
        s.read(&format!("{dir}/sub/empty"))
            .await
            .unwrap()
            .is_empty()
    );
    let big = Bytes::from(
        (0..3_000_000u32)
            .map(|i| (i % 251) as u8)
            .collect::<Vec<u8>>(),
    );
    s.write(&format!("{dir}/big"), big.clone()).await.unwrap();
    assert_eq!(s.read(&format!("{dir}/big")).await.unwrap(), big);

    let listed = s.list(&format!("{dir}/sub")).await.unwrap();
    let names: Vec<(&str, u64, bool)> = listed
        .iter()
        .map(|m| (m.path.as_str(), m.len, m.is_dir))
        .collect();
    let (pa, pe) = (a.clone(), format!("{dir}/sub/empty"));
    assert_eq!(
        names,
        vec![(pa.as_str(), 14, false), (pe.as_str(), 0, false)]
    );
    let top = s.list(&dir).await.unwrap();
    assert_eq!(top.len(), 2, "{top:?}");
    assert!(
        top.iter()
            .any(|m| m.is_dir && m.path == format!("{dir}/sub"))
    );

    // A directory is not a blob.
    let e = s.read(&format!("{dir}/sub")).await.unwrap_err();
    assert!(matches!(e, StorageError::Io { .. }), "{e:?}");

    // Rename: never onto an existing name, NotFound for a missing source.
    let b = format!("{dir}/sub/b");
    s.rename(&a, &b).await.unwrap();
    assert!(!s.exists(&a).await.unwrap() && s.exists(&b).await.unwrap());
    let e = s.rename(&b, &pe).await.unwrap_err();
    assert!(matches!(e, StorageError::AlreadyExists { .. }), "{e:?}");
    assert!(e.to_string().contains(&pe), "{e}");
    let e = s.rename(&a, &format!("{dir}/c")).await.unwrap_err();
    assert!(e.is_not_found() && e.to_string().contains(&a), "{e}");

    s.mkdirs(&format!("{dir}/x/y")).await.unwrap();
    assert!(s.exists(&format!("{dir}/x/y")).await.unwrap());
    s.delete(&b).await.unwrap();
    assert!(!s.exists(&b).await.unwrap());
    s.delete_dir(&dir).await.unwrap();
    assert!(!s.exists(&dir).await.unwrap());

    // The figure: one small blob written atomically, as an HA commit writes its metadata.
    let mut ms: Vec<f64> = Vec::new();
    for i in 0..20 {
        let t = Instant::now();
        s.write(&format!("{dir}/commit-{i}"), Bytes::from(vec![7u8; 512]))
            .await
            .unwrap();
        ms.push(t.elapsed().as_secs_f64() * 1000.0);
    }
    ms.sort_by(f64::total_cmp);
    // hdfs-native waits a fixed 500 ms after a `complete()` that answers false (the DataNode's
    // block report not yet in); a write above 400 ms is one whose first `complete()` failed.
    println!(
        "HDFS blob write ({client:?}), 512 B x {}: min {:.1} ms, p50 {:.1} ms, p99 {:.1} ms, over 400 ms: {}",
        ms.len(),
        ms[0],
        ms[ms.len() / 2],
        ms[(ms.len() * 99 / 100).min(ms.len() - 1)],
        ms.iter().filter(|&&m| m > 400.0).count()
    );
    s.delete_dir(&dir).await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_native_client_keeps_the_blob_store_contract() {
    contract(HdfsClient::Native).await;
}

#[cfg(feature = "libhdfs")]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_libhdfs_client_keeps_the_blob_store_contract() {
    contract(HdfsClient::Libhdfs).await;
}

/// Deliverable figure: the HA checkpoint commit (metadata blob + fenced ZooKeeper multi) per
/// client, and how often the NameNode's first `complete()` answered false.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_ha_commit_cost_of_each_client() {
    let cluster = MiniCluster::get();
    let mut clients = vec![HdfsClient::Native];
    if cfg!(feature = "libhdfs") {
        clients.push(HdfsClient::Libhdfs);
    }
    for client in clients {
        let stats = support::commit::ha_commit_latency(cluster, client, 20).await;
        println!("{stats}");
        assert_eq!(stats.n, 20);
    }
}

/// Nothing listens on port 9: a call fails within about 10 s (never hangs), one line naming the
/// path.
async fn unreachable(client: HdfsClient) {
    let cluster = MiniCluster::get();
    let _ = store(cluster, client).await;
    let s = yarnflow::storage::open_with("hdfs://127.0.0.1:9/x", client)
        .await
        .unwrap();
    let t = Instant::now();
    let e = tokio::time::timeout(std::time::Duration::from_secs(60), s.store.exists("/x"))
        .await
        .expect("a refused connection fails, never hangs")
        .unwrap_err();
    println!(
        "unreachable NameNode ({client:?}): failed after {} ms",
        t.elapsed().as_millis()
    );
    assert!(matches!(e, StorageError::Io { .. }), "{e:?}");
    let text = e.to_string();
    assert!(text.starts_with("/x: ") && !text.contains('\n'), "{text}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unreachable_namenode_is_an_error_naming_the_path() {
    unreachable(HdfsClient::Native).await;
}

#[cfg(feature = "libhdfs")]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unreachable_namenode_is_an_error_naming_the_path_on_libhdfs() {
    unreachable(HdfsClient::Libhdfs).await;
}

/// `readelf -d` of a binary: its dynamic section (NEEDED libraries, RPATH/RUNPATH).
fn dynamic_section(exe: &std::path::Path) -> String {
    let out = std::process::Command::new("readelf")
        .arg("-d")
        .arg(exe)
        .output()
        .expect("run readelf (binutils; .ci/run installs it)");
    assert!(
        out.status.success(),
        "readelf -d {}: {}",
        exe.display(),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// The binaries start on a host whose JDK lives elsewhere, or that has none: neither `yarnflow`
/// nor a job binary needs libjvm or has a runpath into a JDK, whatever features they were built
/// with (libhdfs loads libjvm at run time).
#[test]
fn no_binary_links_libjvm() {
    for exe in [
        std::path::PathBuf::from(env!("CARGO_BIN_EXE_yarnflow")),
        support::wordcount_exe(),
    ] {
        let section = dynamic_section(&exe);
        assert!(section.contains("(NEEDED)"), "{section}");
        let jvm: Vec<&str> = section
            .lines()
            .filter(|l| l.contains("NEEDED") || l.contains("RPATH") || l.contains("RUNPATH"))
            .filter(|l| l.contains("jvm") || l.contains("/lib/server"))
            .collect();
        assert!(jvm.is_empty(), "{} links the JVM: {jvm:?}", exe.display());
    }
}

/// Without a JDK, the libhdfs client fails to open with one line naming JAVA_HOME and
/// libjvm.so, and the process (no libjvm mapped) starts and reports it.
#[cfg(feature = "libhdfs")]
#[test]
fn libhdfs_without_a_jdk_is_one_line_naming_java_home() {
    let cluster = MiniCluster::get();
    let storage_dir = format!("high-availability.storageDir={}/x", cluster.hdfs_uri());
    let quorum = format!("high-availability.zookeeper.quorum={}", cluster.zk_quorum());
    let out = support::yarnflow(&[
        "ha",
        "inspect",
        "-D",
        "high-availability.type=zookeeper",
        "-D",
        &quorum,
        "-D",
        &storage_dir,
        "-D",
        "storage.hdfs.client=libhdfs",
    ])
    .env_remove("JAVA_HOME")
    .env_remove("LD_LIBRARY_PATH")
    .env("CLASSPATH", cluster.env("YARNFLOW_HADOOP_CLASSPATH"))
    .output()
    .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "{stderr}");
    let lines: Vec<&str> = stderr.lines().collect();
    assert_eq!(lines.len(), 1, "{stderr}");
    assert!(
        lines[0].contains("JAVA_HOME is not set") && lines[0].contains("libjvm.so"),
        "{stderr}"
    );
}
