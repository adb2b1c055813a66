//! One TaskManager's network environment (Flink's `NettyShuffleEnvironment`): its data
//! server, its client connections and the registry of the partitions its producers write.

use std::net::SocketAddr;
use std::sync::Arc;

use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use super::client::ConnectionManager;
use super::config::NetworkConfig;
use super::error::NetworkError;
use super::gate::{GateShared, InputGate};
use super::ids::{ChannelId, ResultPartitionId};
use super::partition::ResultPartition;
use super::partition_manager::ResultPartitionManager;
use super::server::DataServer;

/// Where a consumer finds one of its producers' partitions.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PartitionLocation {
    /// In this TaskManager: a local channel, no TCP.
    Local,
    /// Behind another TaskManager's data server (the address it registered with).
    Remote(SocketAddr),
}

/// One input channel of a gate to be created: the producer's partition and where it is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InputChannelSpec {
    pub partition: ResultPartitionId,
    pub location: PartitionLocation,
}

/// A TaskManager's data plane. Its tasks (server, connections) stop when the token given to
/// [`NetworkEnvironment::start`] is cancelled or [`NetworkEnvironment::shutdown`] is called.
pub struct NetworkEnvironment {
    config: NetworkConfig,
    address: SocketAddr,
    partitions: ResultPartitionManager,
    connections: ConnectionManager,
    shutdown: CancellationToken,
    tracker: TaskTracker,
}

impl NetworkEnvironment {
    /// Binds the data server on `bind` (port 0: any free port, see
    /// [`NetworkEnvironment::data_address`]) and starts serving.
    ///
    /// # Errors
    /// [`NetworkError::Bind`].
    pub async fn start(
        config: NetworkConfig,
        bind: SocketAddr,
        parent: &CancellationToken,
    ) -> Result<NetworkEnvironment, NetworkError> {
        let listener = TcpListener::bind(bind)
            .await
            .map_err(|e| NetworkError::Bind {
                address: bind,
                source: Arc::new(e),
            })?;
        let address = listener.local_addr().map_err(|e| NetworkError::Bind {
            address: bind,
            source: Arc::new(e),
        })?;
        let shutdown = parent.child_token();
        let tracker = TaskTracker::new();
        let partitions = ResultPartitionManager::default();
        let server = DataServer {
            listener,
            partitions: partitions.clone(),
            config: config.clone(),
            shutdown: shutdown.clone(),
            tracker: tracker.clone(),
        };
        tracker.spawn(server.run());
        let connections = ConnectionManager::new(config.clone(), shutdown.clone(), tracker.clone());
        Ok(NetworkEnvironment {
            config,
            address,
            partitions,
            connections,
            shutdown,
            tracker,
        })
    }

    /// The data server's address, to publish with the TaskManager's registration.
    pub fn data_address(&self) -> SocketAddr {
        self.address
    }

    pub fn config(&self) -> &NetworkConfig {
        &self.config
    }

    /// A producer's partition with one subpartition per consumer subtask, registered so that
    /// its consumers' requests find it.
    ///
    /// # Errors
    /// [`NetworkError::DuplicatePartition`] while a partition of that id is still live.
    pub fn create_result_partition(
        &self,
        id: ResultPartitionId,
        num_subpartitions: usize,
    ) -> Result<ResultPartition, NetworkError> {
        let (partition, subpartitions) =
            ResultPartition::new(id.clone(), num_subpartitions, &self.config);
        self.partitions.register(id, subpartitions)?;
        Ok(partition)
    }

    /// `consumer_subtask`'s input gate with one channel per entry of `inputs`, in that order.
    /// Remote channels request their subpartitions at once (the producer's TaskManager waits up
    /// to `taskmanager.network.request-backoff.max` for the producer); local ones wait here as
    /// long for their producer to register.
    ///
    /// # Errors
    /// A peer that cannot be reached, a local partition that never appears or is already
    /// consumed.
    pub async fn create_input_gate(
        &self,
        consumer_subtask: u32,
        inputs: &[InputChannelSpec],
    ) -> Result<InputGate, NetworkError> {
        if self.shutdown.is_cancelled() {
            return Err(NetworkError::Shutdown);
        }
        let ids: Vec<ChannelId> = inputs
            .iter()
            .map(|i| ChannelId {
                partition: i.partition.clone(),
                consumer_subtask,
            })
            .collect();
        let shared = GateShared::new(
            ids.clone(),
            self.config.buffers_per_channel,
            self.config.floating_buffers_per_gate,
        );
        // Built first, so that an error below cancels the channels already requested.
        let gate = InputGate::new(shared.clone(), inputs.len());
        for (ch, (input, id)) in inputs.iter().zip(ids).enumerate() {
            match input.location {
                PartitionLocation::Local => {
                    let sub = self
                        .partitions
                        .subpartition(&id, self.config.request_timeout)
                        .await?;
                    shared.set_local(ch, &sub)?;
                }
                PartitionLocation::Remote(peer) => {
                    let connection = self.connections.connect(peer).await?;
                    let receiver = connection.allocate_receiver();
                    shared.set_remote(ch, receiver, connection.clone());
                    connection.request(receiver, &shared, ch, id)?;
                }
            }
        }
        Ok(gate)
    }

    /// Stops the server and every connection and waits for their tasks.
    pub async fn shutdown(&self) {
        self.shutdown.cancel();
        self.tracker.close();
        self.tracker.wait().await;
    }
}
