//! ContainerManagementProtocol: start, stop and query containers on their NodeManagers, one
//! connection per node, authenticated with that node's NMToken.

use std::collections::HashMap;

use super::ids::ContainerId;
use super::records::{Container, ContainerStatus, LaunchContext, NodeId};
use super::{CM_PROTOCOL, YarnError};
use crate::hadoop::ipc::{Auth, IpcClient, IpcConfig, Token};
use crate::hadoop::proto::yarn as pb;

/// NodeManager clients by node.
#[derive(Default)]
pub struct NmClient {
    nodes: HashMap<String, (Vec<u8>, IpcClient)>,
}

impl NmClient {
    pub fn new() -> NmClient {
        NmClient::default()
    }

    fn client(&mut self, node: &NodeId, token: &Token) -> IpcClient {
        let key = node.to_string();
        match self.nodes.get(&key) {
            // Same token: keep the connection. A new NMToken (key roll) gets a new one.
            Some((id, c)) if *id == token.identifier => c.clone(),
            _ => {
                let c = IpcClient::new(IpcConfig::new(
                    &key,
                    CM_PROTOCOL,
                    Auth::Token(token.clone()),
                ));
                self.nodes
                    .insert(key, (token.identifier.clone(), c.clone()));
                c
            }
        }
    }

    fn container_error(node: &NodeId, e: &pb::ContainerExceptionMapProto) -> YarnError {
        let ex = e.exception.clone().unwrap_or_default();
        YarnError::Container {
            node: node.to_string(),
            container: e
                .container_id
                .as_ref()
                .map(|c| ContainerId::from_proto(c).to_string())
                .unwrap_or_default(),
            class: ex.class_name.unwrap_or_default(),
            message: ex.message.unwrap_or_default(),
        }
    }

    /// `startContainers` for one allocated container.
    pub async fn start_container(
        &mut self,
        container: &Container,
        nm_token: &Token,
        launch: &LaunchContext,
    ) -> Result<(), YarnError> {
        let token = container.token.as_ref().ok_or_else(|| {
            YarnError::Protocol(format!(
                "container {} came without a container token",
                container.id
            ))
        })?;
        let request = pb::StartContainersRequestProto {
            start_container_request: vec![pb::StartContainerRequestProto {
                container_launch_context: Some(launch.to_proto()),
                container_token: Some(token.to_proto()),
            }],
        };
        let client = self.client(&container.node, nm_token);
        let r: pb::StartContainersResponseProto = client.call("startContainers", &request).await?;
        if let Some(e) = r.failed_requests.first() {
            return Err(Self::container_error(&container.node, e));
        }
        Ok(())
    }

    /// `stopContainers`.
    pub async fn stop_container(
        &mut self,
        node: &NodeId,
        nm_token: &Token,
        container: ContainerId,
    ) -> Result<(), YarnError> {
        let request = pb::StopContainersRequestProto {
            container_id: vec![container.to_proto()],
        };
        let client = self.client(node, nm_token);
        let r: pb::StopContainersResponseProto = client.call("stopContainers", &request).await?;
        if let Some(e) = r.failed_requests.first() {
            return Err(Self::container_error(node, e));
        }
        Ok(())
    }

    /// `getContainerStatuses`.
    pub async fn get_container_statuses(
        &mut self,
        node: &NodeId,
        nm_token: &Token,
        containers: &[ContainerId],
    ) -> Result<Vec<ContainerStatus>, YarnError> {
        let request = pb::GetContainerStatusesRequestProto {
            container_id: containers.iter().map(|c| c.to_proto()).collect(),
        };
        let client = self.client(node, nm_token);
        let r: pb::GetContainerStatusesResponseProto =
            client.call("getContainerStatuses", &request).await?;
        if let Some(e) = r.failed_requests.first() {
            return Err(Self::container_error(node, e));
        }
        Ok(r.status.iter().map(ContainerStatus::from_proto).collect())
    }
}
