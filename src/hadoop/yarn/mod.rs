//! The YARN protocols, one small method per RPC named after Hadoop's:
//! [`AmRmClient`] (ApplicationMasterProtocol), [`NmClient`] (ContainerManagementProtocol) and
//! [`AppClient`] (ApplicationClientProtocol).

mod amrm;
mod appclient;
pub mod ids;
mod nm;
pub mod records;

pub use amrm::{AllocateRequest, AllocateResponse, AmCommand, AmRmClient, Registration};
pub use appclient::AppClient;
pub use ids::{ApplicationAttemptId, ApplicationId, ContainerId, IdError};
pub use nm::NmClient;
pub use records::*;

use crate::hadoop::ipc::IpcError;

pub const AM_PROTOCOL: &str = "org.apache.hadoop.yarn.api.ApplicationMasterProtocolPB";
pub const CM_PROTOCOL: &str = "org.apache.hadoop.yarn.api.ContainerManagementProtocolPB";
pub const CLIENT_PROTOCOL: &str = "org.apache.hadoop.yarn.api.ApplicationClientProtocolPB";

/// A YARN failure above the wire.
#[derive(Debug, Clone, thiserror::Error)]
pub enum YarnError {
    #[error(transparent)]
    Ipc(#[from] IpcError),
    /// The NodeManager refused to start or stop a container.
    #[error("NodeManager {node}: container {container}: {class}: {message}")]
    Container {
        node: String,
        container: String,
        class: String,
        message: String,
    },
    #[error("no NMToken for NodeManager {0}: the ResourceManager has not sent one")]
    NoNmToken(String),
    #[error("{0}")]
    Protocol(String),
}

impl YarnError {
    /// The Java exception class, when the server threw one.
    pub fn exception_class(&self) -> Option<&str> {
        match self {
            YarnError::Ipc(e) => e.exception_class(),
            YarnError::Container { class, .. } => Some(class),
            _ => None,
        }
    }

    /// `ApplicationAttemptNotFoundException`: this attempt is over, the AM must exit.
    pub fn attempt_gone(&self) -> bool {
        self.exception_class()
            .is_some_and(|c| c.ends_with("ApplicationAttemptNotFoundException"))
    }

    pub fn is_retriable(&self) -> bool {
        matches!(self, YarnError::Ipc(e) if e.is_retriable())
    }
}
