//! The ApplicationMaster protocols against the real ResourceManager and NodeManagers: this test
//! process is an (unmanaged) ApplicationMaster. It registers over SASL/DIGEST-MD5 with the
//! AMRMToken, allocates containers, starts them on their NodeManagers with NMTokens, collects
//! their exit statuses and unregisters.

use std::time::{Duration, Instant};

use crate::support::{self, MiniCluster};
use yarnflow::hadoop::rest::{RmRest, SubmissionContext};
use yarnflow::hadoop::yarn::{
    AllocateRequest, AmRmClient, AppClient, FinalApplicationStatus, LaunchContext, NmClient,
    Resource, ResourceAsk,
};

/// Submits an unmanaged-AM application and returns a registered AM client for it.
async fn unmanaged_am(cluster: &MiniCluster, name: &str) -> (String, AmRmClient) {
    let rest = RmRest::new(cluster.rm_rest());
    let (app, _max) = rest.new_application().await.unwrap();
    rest.submit_application(&SubmissionContext {
        application_id: Some(app),
        name: name.into(),
        unmanaged_am: true,
        max_app_attempts: 1,
        resource: Resource {
            memory_mb: 128,
            vcores: 1,
        },
        tags: vec!["yarnflow-test".into()],
        ..Default::default()
    })
    .await
    .unwrap();
    // The RM hands an unmanaged AM its token through the client protocol once the attempt is
    // launched.
    let client = AppClient::new(cluster.env("YARN_RM_ADDRESS"), &support::user());
    let deadline = Instant::now() + Duration::from_secs(30);
    let token = loop {
        let r = client.get_application_report(app).await.unwrap();
        if let Some(t) = r.am_rm_token {
            break t;
        }
        assert!(Instant::now() < deadline, "no AMRMToken for {app}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    let am = AmRmClient::new(cluster.env("YARN_RM_SCHEDULER"), token).unwrap();
    (app.to_string(), am)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn register_allocate_launch_and_finish() {
    let cluster = MiniCluster::get();
    let (app, mut am) = unmanaged_am(cluster, "yarnflow-am-protocol-test").await;
    let t_register = Instant::now();
    am.register_application_master("localhost", 0, "")
        .await
        .unwrap();

    let ask = ResourceAsk {
        priority: 1,
        capability: Resource {
            memory_mb: 128,
            vcores: 1,
        },
        num_containers: 2,
    };
    let mut containers = Vec::new();
    let mut first_allocation = None;
    let mut request = AllocateRequest {
        asks: vec![ask.clone()],
        ..Default::default()
    };
    let deadline = Instant::now() + Duration::from_secs(30);
    while containers.len() < 2 {
        let before = am.response_id();
        let r = am.allocate(&request).await.unwrap();
        assert_eq!(am.response_id(), before + 1, "response ids advance by one");
        if !r.allocated.is_empty() && first_allocation.is_none() {
            first_allocation = Some(t_register.elapsed());
        }
        containers.extend(r.allocated);
        request = AllocateRequest {
            asks: vec![ResourceAsk {
                num_containers: 2 - containers.len() as i32,
                ..ask.clone()
            }],
            ..Default::default()
        };
        assert!(Instant::now() < deadline, "no allocation within 30 s");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    println!(
        "register -> first allocation: {:?}",
        first_allocation.unwrap()
    );

    // Start both: one writes a line and succeeds, one exits 3.
    let mut nm = NmClient::new();
    for (i, c) in containers.iter().enumerate() {
        let exit = if i == 0 { 0 } else { 3 };
        let launch = LaunchContext {
            commands: vec![format!(
                // No double quotes: the NodeManager wraps the command in bash -c "...".
                "echo yarnflow test container $CONTAINER_ID 1><LOG_DIR>/stdout 2><LOG_DIR>/stderr; exit {exit}"
            )],
            ..Default::default()
        };
        let token = am
            .nm_token(&c.node)
            .expect("an NMToken for the node")
            .clone();
        nm.start_container(c, &token, &launch).await.unwrap();
    }

    // Their completions arrive through allocate.
    let mut done = Vec::new();
    let deadline = Instant::now() + Duration::from_secs(30);
    while done.len() < 2 {
        let r = am.allocate(&AllocateRequest::default()).await.unwrap();
        done.extend(r.completed);
        assert!(Instant::now() < deadline, "containers did not complete");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let ok = done.iter().find(|s| s.id == containers[0].id).unwrap();
    let failed = done.iter().find(|s| s.id == containers[1].id).unwrap();
    assert_eq!(ok.exit_status, 0, "{ok:?}");
    assert_eq!(failed.exit_status, 3, "{failed:?}");
    assert!(
        failed.diagnostics.contains("exit code 3") || failed.diagnostics.contains("Exit code"),
        "{failed:?}"
    );

    // The line is in the container's log on its NodeManager.
    let http = reqwest::Client::new();
    let c = &containers[0];
    let log = http
        .get(format!(
            "http://{}/ws/v1/node/containers/{}/logs/stdout",
            c.node_http_address, c.id
        ))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(
        log.contains(&format!("yarnflow test container {}", c.id)),
        "{log}"
    );

    am.finish_application_master(FinalApplicationStatus::Succeeded, "test done", "")
        .await
        .unwrap();
    let rest = RmRest::new(cluster.rm_rest());
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let r = rest.application(&app).await.unwrap();
        if r.is_final() {
            assert_eq!(r.final_status, "SUCCEEDED", "{r:?}");
            break;
        }
        assert!(Instant::now() < deadline);
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_wrong_token_is_refused_with_a_clear_error() {
    let cluster = MiniCluster::get();
    // A made-up AMRMToken: the identifier means nothing to the RM, the password is wrong.
    let token = yarnflow::hadoop::ipc::Token {
        identifier: vec![1, 2, 3],
        password: b"not the password".to_vec(),
        kind: "YARN_AM_RM_TOKEN".into(),
        service: String::new(),
    };
    let mut am = AmRmClient::new(cluster.env("YARN_RM_SCHEDULER"), token).unwrap();
    let err = am
        .register_application_master("localhost", 0, "")
        .await
        .unwrap_err()
        .to_string();
    assert!(err.contains("SASL") || err.contains("token"), "{err}");
    assert!(!err.contains("not the password"));
    assert_eq!(err.lines().count(), 1, "{err}");
}

/// An AM running well past an AMRM master-key roll keeps working: `allocate` hands it the new
/// token, and a fresh connection authenticates with it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn amrm_token_rollover_keeps_the_am_working() {
    // The RM wants the rolling interval above 3x the AM expiry; Hadoop's own tests use 13 s / 4 s.
    let cluster = MiniCluster::start_with(
        "-rollover",
        1,
        &[
            "yarn.am.liveness-monitor.expiry-interval-ms=4000",
            "yarn.resourcemanager.am-rm-tokens.master-key-rolling-interval-secs=13",
        ],
    );
    let (app, mut am) = unmanaged_am(&cluster, "yarnflow-rollover-test").await;
    am.register_application_master("localhost", 0, "")
        .await
        .unwrap();
    let start = Instant::now();
    let mut rolled_at = None;
    while start.elapsed() < Duration::from_secs(40) {
        let r = am.allocate(&AllocateRequest::default()).await.unwrap();
        if r.token_rolled && rolled_at.is_none() {
            rolled_at = Some(start.elapsed());
            // A new connection must authenticate with the new token.
            am.reconnect().await;
        }
        if rolled_at.is_some_and(|t| start.elapsed() > t + Duration::from_secs(3)) {
            break;
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    let rolled_at = rolled_at.expect("the AMRMToken rolled over within 40 s");
    println!("AMRMToken rolled over after {rolled_at:?}");
    am.allocate(&AllocateRequest::default()).await.unwrap();
    am.finish_application_master(FinalApplicationStatus::Succeeded, "", "")
        .await
        .unwrap();
    let rest = RmRest::new(cluster.rm_rest());
    let deadline = Instant::now() + Duration::from_secs(20);
    while !rest.application(&app).await.unwrap().is_final() {
        assert!(Instant::now() < deadline);
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(
        rest.application(&app).await.unwrap().final_status,
        "SUCCEEDED"
    );
}
