//! YARN records as yarnflow's own types; the only place they meet the generated protobufs.

use std::fmt;

use super::ids::ContainerId;
use crate::hadoop::ipc::Token;
use crate::hadoop::proto::yarn as pb;

/// A NodeManager (`host:port` of its ContainerManagementProtocol).
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct NodeId {
    pub host: String,
    pub port: i32,
}

impl fmt::Display for NodeId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}", self.host, self.port)
    }
}

impl NodeId {
    pub(crate) fn from_proto(p: &pb::NodeIdProto) -> NodeId {
        NodeId {
            host: p.host.clone().unwrap_or_default(),
            port: p.port.unwrap_or_default(),
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, serde::Serialize)]
pub struct Resource {
    pub memory_mb: i64,
    pub vcores: i32,
}

impl Resource {
    pub(crate) fn to_proto(self) -> pb::ResourceProto {
        pb::ResourceProto {
            memory: Some(self.memory_mb),
            virtual_cores: Some(self.vcores),
            resource_value_map: vec![],
        }
    }
    pub(crate) fn from_proto(p: &pb::ResourceProto) -> Resource {
        Resource {
            memory_mb: p.memory.unwrap_or_default(),
            vcores: p.virtual_cores.unwrap_or_default(),
        }
    }
}

/// An allocated container.
#[derive(Debug, Clone)]
pub struct Container {
    pub id: ContainerId,
    pub node: NodeId,
    pub node_http_address: String,
    pub resource: Resource,
    pub priority: i32,
    /// The container token the NodeManager needs to start it.
    pub(crate) token: Option<Token>,
}

impl Container {
    pub(crate) fn from_proto(p: &pb::ContainerProto) -> Container {
        Container {
            id: p
                .id
                .as_ref()
                .map(ContainerId::from_proto)
                .unwrap_or_else(|| ContainerId::from_proto(&Default::default())),
            node: p
                .node_id
                .as_ref()
                .map(NodeId::from_proto)
                .unwrap_or(NodeId {
                    host: String::new(),
                    port: 0,
                }),
            node_http_address: p.node_http_address.clone().unwrap_or_default(),
            resource: p
                .resource
                .as_ref()
                .map(Resource::from_proto)
                .unwrap_or_default(),
            priority: p
                .priority
                .as_ref()
                .and_then(|x| x.priority)
                .unwrap_or_default(),
            token: p.container_token.as_ref().map(Token::from_proto),
        }
    }
}

/// `ContainerStateProto`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
pub enum ContainerState {
    New,
    Running,
    Complete,
    Unknown,
}

/// Special exit statuses (`ContainerExitStatus`); others are the process's exit code.
pub mod exit_status {
    pub const SUCCESS: i32 = 0;
    pub const INVALID: i32 = -1000;
    pub const ABORTED: i32 = -100;
    pub const DISKS_FAILED: i32 = -101;
    pub const PREEMPTED: i32 = -102;
    pub const KILLED_BY_APPMASTER: i32 = -105;
    pub const KILLED_BY_RESOURCEMANAGER: i32 = -106;
    pub const KILLED_AFTER_APP_COMPLETION: i32 = -107;
}

#[derive(Debug, Clone)]
pub struct ContainerStatus {
    pub id: ContainerId,
    pub state: ContainerState,
    pub exit_status: i32,
    pub diagnostics: String,
}

impl ContainerStatus {
    pub(crate) fn from_proto(p: &pb::ContainerStatusProto) -> ContainerStatus {
        ContainerStatus {
            id: p
                .container_id
                .as_ref()
                .map(ContainerId::from_proto)
                .unwrap_or_else(|| ContainerId::from_proto(&Default::default())),
            state: match p
                .state
                .and_then(|s| pb::ContainerStateProto::try_from(s).ok())
            {
                Some(pb::ContainerStateProto::CNew) => ContainerState::New,
                Some(pb::ContainerStateProto::CRunning) => ContainerState::Running,
                Some(pb::ContainerStateProto::CComplete) => ContainerState::Complete,
                None => ContainerState::Unknown,
            },
            exit_status: p.exit_status.unwrap_or(exit_status::INVALID),
            diagnostics: p.diagnostics.clone().unwrap_or_default(),
        }
    }
}

/// `FinalApplicationStatus`: what the AM reports when it unregisters.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
pub enum FinalApplicationStatus {
    Undefined,
    Succeeded,
    Failed,
    Killed,
}

impl FinalApplicationStatus {
    pub(crate) fn to_proto(self) -> i32 {
        (match self {
            FinalApplicationStatus::Undefined => pb::FinalApplicationStatusProto::AppUndefined,
            FinalApplicationStatus::Succeeded => pb::FinalApplicationStatusProto::AppSucceeded,
            FinalApplicationStatus::Failed => pb::FinalApplicationStatusProto::AppFailed,
            FinalApplicationStatus::Killed => pb::FinalApplicationStatusProto::AppKilled,
        }) as i32
    }
}

/// An outstanding container request: `num_containers` is the total wanted at this priority
/// and capability (YARN replaces, not adds).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ResourceAsk {
    pub priority: i32,
    pub capability: Resource,
    pub num_containers: i32,
}

impl ResourceAsk {
    pub(crate) fn to_proto(&self) -> pb::ResourceRequestProto {
        pb::ResourceRequestProto {
            priority: Some(pb::PriorityProto {
                priority: Some(self.priority),
            }),
            resource_name: Some("*".into()),
            capability: Some(self.capability.to_proto()),
            num_containers: Some(self.num_containers),
            relax_locality: Some(true),
            ..Default::default()
        }
    }
}

/// `LocalResourceType`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LocalResourceType {
    File,
    Archive,
}

/// A file the NodeManager downloads into the container's working directory. `size` and
/// `timestamp` (modification time, ms) must match the source exactly or localization fails.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LocalResource {
    /// `hdfs://host:port/path`.
    pub uri: String,
    pub size: i64,
    pub timestamp: i64,
    pub kind: LocalResourceType,
}

impl LocalResource {
    fn to_proto(&self) -> pb::LocalResourceProto {
        let (scheme, rest) = self.uri.split_once("://").unwrap_or(("hdfs", &self.uri));
        let (authority, file) = match rest.find('/') {
            Some(i) => (&rest[..i], &rest[i..]),
            None => (rest, "/"),
        };
        let (host, port) = match authority.rsplit_once(':') {
            Some((h, p)) => (h.to_string(), p.parse().ok()),
            None => (authority.to_string(), None),
        };
        pb::LocalResourceProto {
            resource: Some(pb::UrlProto {
                scheme: Some(scheme.into()),
                host: Some(host),
                port,
                file: Some(file.into()),
                user_info: None,
            }),
            size: Some(self.size),
            timestamp: Some(self.timestamp),
            r#type: Some(
                (match self.kind {
                    LocalResourceType::File => pb::LocalResourceTypeProto::File,
                    LocalResourceType::Archive => pb::LocalResourceTypeProto::Archive,
                }) as i32,
            ),
            visibility: Some(pb::LocalResourceVisibilityProto::Application as i32),
            ..Default::default()
        }
    }
}

/// What a container runs (`ContainerLaunchContext`).
#[derive(Debug, Clone, Default)]
pub struct LaunchContext {
    /// Joined with spaces into one shell line by the NodeManager; `<LOG_DIR>` is substituted.
    pub commands: Vec<String>,
    pub environment: Vec<(String, String)>,
    pub local_resources: Vec<(String, LocalResource)>,
    /// An `HDTS` credentials blob for the container, if any.
    pub tokens: Option<Vec<u8>>,
}

impl LaunchContext {
    pub(crate) fn to_proto(&self) -> pb::ContainerLaunchContextProto {
        pb::ContainerLaunchContextProto {
            local_resources: self
                .local_resources
                .iter()
                .map(|(k, v)| pb::StringLocalResourceMapProto {
                    key: Some(k.clone()),
                    value: Some(v.to_proto()),
                })
                .collect(),
            tokens: self.tokens.clone(),
            environment: self
                .environment
                .iter()
                .map(|(k, v)| pb::StringStringMapProto {
                    key: Some(k.clone()),
                    value: Some(v.clone()),
                })
                .collect(),
            command: self.commands.clone(),
            ..Default::default()
        }
    }
}
