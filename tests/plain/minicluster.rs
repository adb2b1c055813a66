//! Smoke test of the mini cluster harness: the real ResourceManager, HDFS (through WebHDFS) and
//! ZooKeeper that every other test stands on answer as they should.

use std::time::Duration;

use crate::support::{MiniCluster, unique};

fn http() -> reqwest::Client {
    reqwest::Client::builder()
        .timeout(Duration::from_secs(30))
        .build()
        .unwrap()
}

#[tokio::test]
async fn resourcemanager_is_started_with_two_running_nodemanagers() {
    let cluster = MiniCluster::get();
    let info: serde_json::Value = http()
        .get(format!("{}/ws/v1/cluster/info", cluster.rm_rest()))
        .send()
        .await
        .unwrap()
        .error_for_status()
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(info["clusterInfo"]["state"], "STARTED", "{info}");
    assert_eq!(info["clusterInfo"]["hadoopVersion"], "3.5.0", "{info}");

    let nodes: serde_json::Value = http()
        .get(format!("{}/ws/v1/cluster/nodes", cluster.rm_rest()))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let running = nodes["nodes"]["node"]
        .as_array()
        .expect("node list")
        .iter()
        .filter(|n| n["state"] == "RUNNING")
        .count();
    assert!(running >= 2, "expected >= 2 RUNNING NodeManagers: {nodes}");
}

#[tokio::test]
async fn webhdfs_write_reads_back_byte_exact() {
    let cluster = MiniCluster::get();
    let user = std::env::var("USER").unwrap_or_else(|_| "root".into());
    let path = format!("/tmp/{}", unique("smoke"));
    // Every byte value, several times over, so any re-encoding would show.
    let data: Vec<u8> = (0..200_000u32).map(|i| (i * 7 % 256) as u8).collect();
    let client = http();

    // WebHDFS CREATE is two steps: the NameNode names a DataNode, the DataNode takes the bytes.
    let created: serde_json::Value = client
        .put(format!(
            "{}{path}?op=CREATE&overwrite=true&noredirect=true&user.name={user}",
            cluster.webhdfs()
        ))
        .send()
        .await
        .unwrap()
        .error_for_status()
        .unwrap()
        .json()
        .await
        .unwrap();
    let location = created["Location"].as_str().expect("Location").to_string();
    let put = client
        .put(location)
        .body(data.clone())
        .send()
        .await
        .unwrap();
    assert_eq!(put.status(), reqwest::StatusCode::CREATED);

    let read = client
        .get(format!(
            "{}{path}?op=OPEN&user.name={user}",
            cluster.webhdfs()
        ))
        .send()
        .await
        .unwrap()
        .error_for_status()
        .unwrap()
        .bytes()
        .await
        .unwrap();
    assert_eq!(read.len(), data.len());
    assert!(read.as_ref() == data.as_slice(), "bytes differ");

    client
        .delete(format!(
            "{}{path}?op=DELETE&user.name={user}",
            cluster.webhdfs()
        ))
        .send()
        .await
        .unwrap()
        .error_for_status()
        .unwrap();
}

#[tokio::test]
async fn zookeeper_znode_can_be_created_and_read() {
    let cluster = MiniCluster::get();
    let zk = zookeeper_client::Client::connector()
        .with_session_timeout(Duration::from_secs(5))
        .connect(cluster.zk_quorum())
        .await
        .unwrap();
    let path = format!("/{}", unique("smoke"));
    let options =
        zookeeper_client::CreateMode::Persistent.with_acls(zookeeper_client::Acls::anyone_all());
    zk.create(&path, b"hello yarnflow", &options).await.unwrap();
    let (data, stat) = zk.get_data(&path).await.unwrap();
    assert_eq!(data, b"hello yarnflow");
    zk.delete(&path, Some(stat.version)).await.unwrap();
}

#[test]
fn status_reports_every_component_up() {
    let cluster = MiniCluster::get();
    let out = cluster.run("status", &[]);
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{text}");
    for component in ["hdfs: up", "yarn: up", "zookeeper: up"] {
        assert!(text.contains(component), "{text}");
    }
}
