//! The doctor's ApplicationMaster (`yarnflow appmaster --mode doctor`): proves, inside a real YARN
//! AM container, everything the JobManager AM will do: read the AMRMToken from the container's
//! credentials, register over SASL-authenticated IPC, allocate containers, start them on their
//! NodeManagers with NMTokens, collect their exit statuses, unregister.

use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};

use crate::hadoop::ipc::Credentials;
use crate::hadoop::ipc::credentials::AMRM_TOKEN_KIND;
use crate::hadoop::yarn::{
    AllocateRequest, AmRmClient, ContainerId, FinalApplicationStatus, LaunchContext, NmClient,
    Resource, ResourceAsk,
};

/// Environment variable through which the submitter passes the RM scheduler address (YARN does
/// not tell the AM).
pub const RM_SCHEDULER_ENV: &str = "YARNFLOW_RM_SCHEDULER";
/// Prefix of the doctor AM's diagnostics, followed by a [`DoctorReport`] as JSON.
pub const REPORT_PREFIX: &str = "yarnflow-doctor:";

/// What the doctor AM saw, handed back to the client in the unregister diagnostics.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct DoctorReport {
    pub register_ms: u64,
    pub first_allocation_ms: u64,
    pub containers: Vec<DoctorContainer>,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct DoctorContainer {
    pub id: String,
    pub node: String,
    pub node_http_address: String,
    pub exit_status: i32,
    pub diagnostics: String,
}

/// Runs the doctor AM; the returned error has already been reported to the RM when possible.
pub async fn run(containers: u32, command_exit: i32) -> anyhow::Result<()> {
    let container_id: ContainerId = std::env::var("CONTAINER_ID")
        .map_err(|_| anyhow::anyhow!("CONTAINER_ID is not set: run only by YARN"))?
        .parse()?;
    let scheduler = std::env::var(RM_SCHEDULER_ENV)
        .map_err(|_| anyhow::anyhow!("{RM_SCHEDULER_ENV} is not set by the submitter"))?;
    let creds = Credentials::from_env()?;
    let token = creds
        .token_of_kind(AMRM_TOKEN_KIND)
        .ok_or_else(|| anyhow::anyhow!("the container credentials hold no {AMRM_TOKEN_KIND}"))?
        .clone();
    tracing::info!(attempt = %container_id.attempt, "doctor ApplicationMaster started");
    let mut am = AmRmClient::new(&scheduler, token)?;
    let host = std::env::var("NM_HOST").unwrap_or_else(|_| "localhost".into());
    let t0 = Instant::now();
    am.register_application_master(&host, 0, "").await?;
    let register_ms = t0.elapsed().as_millis() as u64;

    let outcome = exercise(&mut am, containers, command_exit, register_ms, t0).await;
    let (status, diagnostics) = match &outcome {
        Ok(report) => {
            let ok = report
                .containers
                .iter()
                .all(|c| c.exit_status == command_exit);
            (
                if ok {
                    FinalApplicationStatus::Succeeded
                } else {
                    FinalApplicationStatus::Failed
                },
                format!("{REPORT_PREFIX}{}", serde_json::to_string(report)?),
            )
        }
        Err(e) => (
            FinalApplicationStatus::Failed,
            format!("doctor AM failed: {e:#}"),
        ),
    };
    am.finish_application_master(status, &diagnostics, "")
        .await?;
    tracing::info!(?status, "unregistered");
    outcome.map(|_| ())
}

async fn exercise(
    am: &mut AmRmClient,
    n: u32,
    command_exit: i32,
    register_ms: u64,
    t0: Instant,
) -> anyhow::Result<DoctorReport> {
    let ask = ResourceAsk {
        priority: 1,
        capability: Resource {
            memory_mb: 128,
            vcores: 1,
        },
        num_containers: n as i32,
    };
    let mut allocated = Vec::new();
    let mut first_allocation_ms = 0;
    let mut request = AllocateRequest {
        asks: vec![ask.clone()],
        ..Default::default()
    };
    let deadline = Instant::now() + Duration::from_secs(60);
    let mut nm = NmClient::new();
    while allocated.len() < n as usize {
        anyhow::ensure!(
            Instant::now() < deadline,
            "only {} of {n} containers allocated in 60 s",
            allocated.len()
        );
        let r = am.allocate(&request).await?;
        for c in r.allocated {
            if allocated.len() >= n as usize {
                continue;
            }
            if first_allocation_ms == 0 {
                first_allocation_ms = t0.elapsed().as_millis() as u64;
            }
            let token = am
                .nm_token(&c.node)
                .ok_or_else(|| anyhow::anyhow!("no NMToken for {}", c.node))?
                .clone();
            // No double quotes: the NodeManager wraps the command in bash -c "...".
            let launch = LaunchContext {
                commands: vec![format!(
                    "echo yarnflow doctor container $CONTAINER_ID on $NM_HOST 1><LOG_DIR>/stdout 2><LOG_DIR>/stderr; exit {command_exit}"
                )],
                ..Default::default()
            };
            nm.start_container(&c, &token, &launch).await?;
            tracing::info!(
                container = %c.id,
                node = %c.node,
                node_http = %c.node_http_address,
                "container started"
            );
            allocated.push(c);
        }
        request = AllocateRequest {
            asks: vec![ResourceAsk {
                num_containers: n as i32 - allocated.len() as i32,
                ..ask.clone()
            }],
            ..Default::default()
        };
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let mut done = Vec::new();
    while done.len() < allocated.len() {
        anyhow::ensure!(
            Instant::now() < deadline,
            "containers did not complete within 60 s"
        );
        let r = am.allocate(&AllocateRequest::default()).await?;
        for s in r.completed {
            if let Some(c) = allocated.iter().find(|c| c.id == s.id) {
                tracing::info!(
                    container = %s.id,
                    exit_status = s.exit_status,
                    diagnostics = %s.diagnostics.lines().next().unwrap_or_default(),
                    "container completed"
                );
                done.push(DoctorContainer {
                    id: s.id.to_string(),
                    node: c.node.to_string(),
                    node_http_address: c.node_http_address.clone(),
                    exit_status: s.exit_status,
                    diagnostics: s.diagnostics.lines().next().unwrap_or_default().to_string(),
                });
            }
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    Ok(DoctorReport {
        register_ms,
        first_allocation_ms,
        containers: done,
    })
}
