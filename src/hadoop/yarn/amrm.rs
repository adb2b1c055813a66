//! ApplicationMasterProtocol: register, allocate (the heartbeat), finish.
//!
//! Response ids: `registerApplicationMaster` resets the RM's last id to 0; every `allocate`
//! sends the id of the last response received and the RM answers with the next one. A request
//! repeating the previous id gets the cached last response, so a call whose answer was lost is
//! safe to retry with the same id.

use std::collections::HashMap;
use std::time::Duration;

use super::ids::ContainerId;
use super::records::{
    Container, ContainerStatus, FinalApplicationStatus, NodeId, Resource, ResourceAsk,
};
use super::{AM_PROTOCOL, YarnError};
use crate::hadoop::ipc::credentials::AMRM_TOKEN_KIND;
use crate::hadoop::ipc::{Auth, IpcClient, IpcConfig, Token};
use crate::hadoop::proto::yarn as pb;

/// What `registerApplicationMaster` returns that an AM acts on.
#[derive(Debug, Clone)]
pub struct Registration {
    pub maximum_capability: Resource,
    /// Containers of earlier attempts still running (work-preserving AM restart).
    pub containers_from_previous_attempts: Vec<Container>,
    pub queue: String,
}

#[derive(Debug, Clone, Default)]
pub struct AllocateRequest {
    /// The outstanding asks (totals); empty = unchanged.
    pub asks: Vec<ResourceAsk>,
    pub releases: Vec<ContainerId>,
    pub blocklist_additions: Vec<String>,
    pub blocklist_removals: Vec<String>,
    pub progress: f32,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AmCommand {
    /// Re-register and resend every ask.
    Resync,
    /// Exit.
    Shutdown,
}

#[derive(Debug, Clone, Default)]
pub struct AllocateResponse {
    pub allocated: Vec<Container>,
    pub completed: Vec<ContainerStatus>,
    pub am_command: Option<AmCommand>,
    pub num_cluster_nodes: i32,
    /// Containers of earlier attempts reported late (after registration).
    pub containers_from_previous_attempts: Vec<Container>,
    /// Whether this response rolled the AMRMToken over.
    pub token_rolled: bool,
}

/// One ApplicationMaster's connection to the RM scheduler.
pub struct AmRmClient {
    ipc: IpcClient,
    response_id: i32,
    registration: Option<(String, i32, String)>,
    /// The asks last sent, resent after a re-registration.
    last_asks: Vec<ResourceAsk>,
    nm_tokens: HashMap<String, Token>,
}

impl AmRmClient {
    /// Connects (lazily) to the scheduler address with the attempt's AMRMToken.
    pub fn new(scheduler_address: &str, amrm_token: Token) -> Result<AmRmClient, YarnError> {
        if amrm_token.kind != AMRM_TOKEN_KIND {
            return Err(YarnError::Protocol(format!(
                "expected a {AMRM_TOKEN_KIND} token, got kind '{}'",
                amrm_token.kind
            )));
        }
        let mut config = IpcConfig::new(scheduler_address, AM_PROTOCOL, Auth::Token(amrm_token));
        config.call_timeout = Duration::from_secs(30);
        Ok(AmRmClient {
            ipc: IpcClient::new(config),
            response_id: 0,
            registration: None,
            last_asks: Vec::new(),
            nm_tokens: HashMap::new(),
        })
    }

    /// The NMToken for a node, cached from register/allocate responses.
    pub fn nm_token(&self, node: &NodeId) -> Option<&Token> {
        self.nm_tokens.get(&node.to_string())
    }

    fn cache_nm_tokens(&mut self, tokens: &[pb::NmTokenProto]) {
        for t in tokens {
            if let (Some(node), Some(token)) = (&t.node_id, &t.token) {
                self.nm_tokens.insert(
                    NodeId::from_proto(node).to_string(),
                    Token::from_proto(token),
                );
            }
        }
    }

    /// `registerApplicationMaster`.
    pub async fn register_application_master(
        &mut self,
        host: &str,
        rpc_port: i32,
        tracking_url: &str,
    ) -> Result<Registration, YarnError> {
        let request = pb::RegisterApplicationMasterRequestProto {
            host: Some(host.to_string()),
            rpc_port: Some(rpc_port),
            tracking_url: Some(tracking_url.to_string()),
            placement_constraints: vec![],
        };
        let response: pb::RegisterApplicationMasterResponseProto =
            self.ipc.call("registerApplicationMaster", &request).await?;
        self.registration = Some((host.to_string(), rpc_port, tracking_url.to_string()));
        self.response_id = 0;
        self.cache_nm_tokens(&response.nm_tokens_from_previous_attempts);
        Ok(Registration {
            maximum_capability: response
                .maximum_capability
                .as_ref()
                .map(Resource::from_proto)
                .unwrap_or_default(),
            containers_from_previous_attempts: response
                .containers_from_previous_attempts
                .iter()
                .map(Container::from_proto)
                .collect(),
            queue: response.queue.unwrap_or_default(),
        })
    }

    /// `allocate`: the heartbeat. Re-registers once if the RM lost our registration (RM
    /// restart), then retries with every ask resent.
    pub async fn allocate(
        &mut self,
        request: &AllocateRequest,
    ) -> Result<AllocateResponse, YarnError> {
        if !request.asks.is_empty() {
            self.last_asks = request.asks.clone();
        }
        match self.allocate_once(request, false).await {
            Err(e)
                if e.exception_class()
                    .is_some_and(|c| c.ends_with("ApplicationMasterNotRegisteredException")) =>
            {
                let (host, port, url) = self.registration.clone().ok_or_else(|| {
                    YarnError::Protocol("allocate before registerApplicationMaster".into())
                })?;
                tracing::warn!("the ResourceManager lost our registration; registering again");
                self.register_application_master(&host, port, &url).await?;
                self.allocate_once(request, true).await
            }
            other => other,
        }
    }

    async fn allocate_once(
        &mut self,
        request: &AllocateRequest,
        resend_asks: bool,
    ) -> Result<AllocateResponse, YarnError> {
        let asks = if resend_asks {
            &self.last_asks
        } else {
            &request.asks
        };
        let blocklist = (!request.blocklist_additions.is_empty()
            || !request.blocklist_removals.is_empty())
        .then(|| pb::ResourceBlacklistRequestProto {
            blacklist_additions: request.blocklist_additions.clone(),
            blacklist_removals: request.blocklist_removals.clone(),
        });
        let proto = pb::AllocateRequestProto {
            ask: asks.iter().map(ResourceAsk::to_proto).collect(),
            release: request.releases.iter().map(|c| c.to_proto()).collect(),
            blacklist_request: blocklist,
            response_id: Some(self.response_id),
            progress: Some(request.progress),
            ..Default::default()
        };
        let r: pb::AllocateResponseProto = self.ipc.call("allocate", &proto).await?;
        self.response_id = r.response_id.unwrap_or(self.response_id + 1);
        self.cache_nm_tokens(&r.nm_tokens);
        let token_rolled = match &r.am_rm_token {
            Some(t) => {
                // Used for new connections; the open one stays authenticated.
                tracing::info!("AMRMToken rolled over by the ResourceManager");
                self.ipc.set_auth(Auth::Token(Token::from_proto(t))).await;
                true
            }
            None => false,
        };
        Ok(AllocateResponse {
            allocated: r
                .allocated_containers
                .iter()
                .map(Container::from_proto)
                .collect(),
            completed: r
                .completed_container_statuses
                .iter()
                .map(ContainerStatus::from_proto)
                .collect(),
            am_command: r
                .a_m_command
                .and_then(|c| match pb::AmCommandProto::try_from(c) {
                    Ok(pb::AmCommandProto::AmResync) => Some(AmCommand::Resync),
                    Ok(pb::AmCommandProto::AmShutdown) => Some(AmCommand::Shutdown),
                    Err(_) => None,
                }),
            num_cluster_nodes: r.num_cluster_nodes.unwrap_or_default(),
            containers_from_previous_attempts: r
                .containers_from_previous_attempts
                .iter()
                .map(Container::from_proto)
                .collect(),
            token_rolled,
        })
    }

    /// The response id the next `allocate` will send.
    pub fn response_id(&self) -> i32 {
        self.response_id
    }

    /// Reconnects (e.g. to prove a rolled AMRMToken authenticates a new connection).
    pub async fn reconnect(&self) {
        self.ipc.disconnect().await;
    }

    /// `finishApplicationMaster`, repeated until the RM has stored the final state.
    pub async fn finish_application_master(
        &mut self,
        status: FinalApplicationStatus,
        diagnostics: &str,
        tracking_url: &str,
    ) -> Result<(), YarnError> {
        let request = pb::FinishApplicationMasterRequestProto {
            diagnostics: Some(diagnostics.to_string()),
            tracking_url: Some(tracking_url.to_string()),
            final_application_status: Some(status.to_proto()),
        };
        for _ in 0..100 {
            let r: pb::FinishApplicationMasterResponseProto =
                self.ipc.call("finishApplicationMaster", &request).await?;
            if r.is_unregistered.unwrap_or(false) {
                return Ok(());
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        Err(YarnError::Protocol(
            "the ResourceManager did not confirm the unregistration within 10 s".into(),
        ))
    }
}
