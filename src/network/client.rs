//! Client connections to other TaskManagers' data servers: one TCP connection per peer,
//! shared by every input channel of this TaskManager that reads from it (Flink's
//! `PartitionRequestClient` + `CreditBasedPartitionRequestClientHandler`).
//!
//! A [`ClientConnection`] task reads frames and hands buffers and events to the input gates,
//! which never block it: credit bounds what arrives. Everything the client sends (requests,
//! credits, resume, cancel) goes through a separate writer task, so reading never waits for
//! writing.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, Weak};

use futures::{SinkExt, StreamExt};
use tokio::net::TcpStream;
use tokio::net::tcp::{OwnedReadHalf, OwnedWriteHalf};
use tokio::sync::mpsc;
use tokio::task::JoinHandle;
use tokio_util::codec::{FramedRead, FramedWrite};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use super::config::NetworkConfig;
use super::error::NetworkError;
use super::event::Event;
use super::gate::{GateShared, RemoteConnection};
use super::ids::ChannelId;
use super::protocol::{CONNECTION, FrameError, Message, MessageCodec, ReceiverId};

/// Connections to peers, one each, made on first use and replaced once closed.
pub(crate) struct ConnectionManager {
    connections: tokio::sync::Mutex<HashMap<SocketAddr, Arc<ConnectionHandle>>>,
    config: NetworkConfig,
    shutdown: CancellationToken,
    tracker: TaskTracker,
}

impl ConnectionManager {
    pub(crate) fn new(
        config: NetworkConfig,
        shutdown: CancellationToken,
        tracker: TaskTracker,
    ) -> ConnectionManager {
        ConnectionManager {
            connections: tokio::sync::Mutex::new(HashMap::new()),
            config,
            shutdown,
            tracker,
        }
    }

    /// The connection to `peer`, connecting if there is none (one connect at a time).
    pub(crate) async fn connect(
        &self,
        peer: SocketAddr,
    ) -> Result<Arc<ConnectionHandle>, NetworkError> {
        let mut map = self.connections.lock().await;
        if let Some(c) = map.get(&peer)
            && !c.closed.is_cancelled()
        {
            return Ok(c.clone());
        }
        let connect = tokio::time::timeout(self.config.connect_timeout, TcpStream::connect(peer));
        let stream = match connect.await {
            Ok(Ok(s)) => s,
            Ok(Err(e)) => {
                return Err(NetworkError::Connect {
                    peer,
                    source: Arc::new(e),
                });
            }
            Err(_) => {
                let e = std::io::Error::new(std::io::ErrorKind::TimedOut, "connect timed out");
                return Err(NetworkError::Connect {
                    peer,
                    source: Arc::new(e),
                });
            }
        };
        let _ = stream.set_nodelay(true);
        let closed = self.shutdown.child_token();
        let (read, write) = stream.into_split();
        let (outbound, outbound_rx) = mpsc::unbounded_channel();
        let (commands, commands_rx) = mpsc::unbounded_channel();
        let max = self.config.max_frame_size;
        let writer = self.tracker.spawn(write_loop(
            FramedWrite::new(write, MessageCodec::new(max)),
            outbound_rx,
            peer,
            closed.clone(),
        ));
        let connection = ClientConnection {
            peer,
            frames: FramedRead::new(read, MessageCodec::new(max)),
            commands: commands_rx,
            outbound: outbound.clone(),
            channels: HashMap::new(),
            writer,
            closed: closed.clone(),
        };
        self.tracker.spawn(connection.run());
        let handle = Arc::new(ConnectionHandle {
            peer,
            outbound,
            commands,
            next_receiver: AtomicU32::new(0),
            closed,
        });
        map.insert(peer, handle.clone());
        Ok(handle)
    }
}

enum Command {
    Register {
        receiver: ReceiverId,
        gate: Weak<GateShared>,
        channel: usize,
        request: Message,
    },
    Unregister(ReceiverId),
}

/// What input gates hold of a connection.
pub(crate) struct ConnectionHandle {
    peer: SocketAddr,
    outbound: mpsc::UnboundedSender<Message>,
    commands: mpsc::UnboundedSender<Command>,
    next_receiver: AtomicU32,
    closed: CancellationToken,
}

impl ConnectionHandle {
    pub(crate) fn allocate_receiver(&self) -> ReceiverId {
        // Wrapping past u32::MAX - 1 would take four billion channels on one connection.
        self.next_receiver.fetch_add(1, Ordering::Relaxed) % CONNECTION
    }

    /// Routes `receiver`'s frames to `gate`'s `channel`, then requests the subpartition with
    /// the channel's exclusive credit.
    pub(crate) fn request(
        &self,
        receiver: ReceiverId,
        gate: &Arc<GateShared>,
        channel: usize,
        id: ChannelId,
    ) -> Result<(), NetworkError> {
        let request = Message::PartitionRequest {
            receiver,
            channel: id,
            credit: gate.exclusive_credit() as u32,
        };
        let command = Command::Register {
            receiver,
            gate: Arc::downgrade(gate),
            channel,
            request,
        };
        self.commands
            .send(command)
            .map_err(|_| NetworkError::ConnectionLost {
                peer: self.peer,
                detail: "the connection closed".into(),
            })
    }
}

impl RemoteConnection for ConnectionHandle {
    fn send(&self, message: Message) {
        // A closed connection has already failed every channel on it.
        let _ = self.outbound.send(message);
    }

    fn unregister(&self, receiver: ReceiverId) {
        let _ = self.commands.send(Command::Unregister(receiver));
    }
}

/// The reading side of one connection and its routing table.
struct ClientConnection {
    peer: SocketAddr,
    frames: FramedRead<OwnedReadHalf, MessageCodec>,
    commands: mpsc::UnboundedReceiver<Command>,
    outbound: mpsc::UnboundedSender<Message>,
    channels: HashMap<ReceiverId, (Weak<GateShared>, usize)>,
    writer: JoinHandle<Result<(), NetworkError>>,
    closed: CancellationToken,
}

impl ClientConnection {
    async fn run(mut self) {
        let error = self.serve().await;
        self.closed.cancel();
        if !matches!(error, NetworkError::Shutdown) {
            tracing::warn!(peer = %self.peer, %error, "data connection failed");
        }
        for (gate, _) in self.channels.values() {
            if let Some(gate) = gate.upgrade() {
                gate.on_error(error.clone());
            }
        }
        // Registrations that raced with the end fail too.
        self.commands.close();
        while let Ok(Command::Register { gate, .. }) = self.commands.try_recv() {
            if let Some(gate) = gate.upgrade() {
                gate.on_error(error.clone());
            }
        }
    }

    /// Serves until the connection ends; returns why.
    async fn serve(&mut self) -> NetworkError {
        loop {
            let step = tokio::select! {
                biased;
                _ = self.closed.cancelled() => Err(NetworkError::Shutdown),
                written = &mut self.writer => Err(self.on_writer_exit(written)),
                Some(command) = self.commands.recv() => {
                    self.on_command(command);
                    Ok(())
                }
                frame = self.frames.next() => self.on_frame(frame),
            };
            if let Err(e) = step {
                return e;
            }
        }
    }

    fn on_writer_exit(
        &self,
        written: Result<Result<(), NetworkError>, tokio::task::JoinError>,
    ) -> NetworkError {
        match written {
            Ok(Err(e)) => e,
            Ok(Ok(())) => NetworkError::Shutdown,
            Err(e) => NetworkError::ConnectionLost {
                peer: self.peer,
                detail: format!("the writer task ended: {e}"),
            },
        }
    }

    fn on_command(&mut self, command: Command) {
        match command {
            Command::Register {
                receiver,
                gate,
                channel,
                request,
            } => {
                self.channels.insert(receiver, (gate, channel));
                let _ = self.outbound.send(request);
            }
            Command::Unregister(receiver) => {
                self.channels.remove(&receiver);
            }
        }
    }

    fn on_frame(&mut self, frame: Option<Result<Message, FrameError>>) -> Result<(), NetworkError> {
        let message = match frame {
            None => {
                return Err(NetworkError::ConnectionLost {
                    peer: self.peer,
                    detail: "the peer closed the connection".into(),
                });
            }
            Some(frame) => frame.map_err(|e| e.with_peer(self.peer))?,
        };
        match message {
            Message::Buffer {
                receiver,
                backlog,
                data,
            } => {
                if let Some((gate, ch)) = self.target(receiver) {
                    gate.on_buffer(ch, data, backlog)
                        .map_err(|detail| NetworkError::Protocol {
                            peer: self.peer,
                            detail,
                        })?;
                }
            }
            Message::Event { receiver, event } => {
                if let Some((gate, ch)) = self.target(receiver) {
                    gate.on_event(ch, event);
                }
                if event == Event::EndOfPartition {
                    self.channels.remove(&receiver);
                }
            }
            Message::Error {
                receiver: CONNECTION,
                message,
            } => {
                return Err(NetworkError::ConnectionLost {
                    peer: self.peer,
                    detail: format!("the server closed the connection: {message}"),
                });
            }
            Message::Error { receiver, message } => {
                if let Some((gate, ch)) = self.target(receiver) {
                    let channel = gate.channel_id(ch);
                    gate.on_error(NetworkError::Remote {
                        peer: self.peer,
                        channel,
                        message,
                    });
                }
                self.channels.remove(&receiver);
            }
            other => {
                return Err(NetworkError::Protocol {
                    peer: self.peer,
                    detail: format!("a server sent a client's message: {other:?}"),
                });
            }
        }
        Ok(())
    }

    /// The live gate and channel of `receiver`; forgets receivers whose gate is gone.
    fn target(&mut self, receiver: ReceiverId) -> Option<(Arc<GateShared>, usize)> {
        let (gate, ch) = self.channels.get(&receiver)?;
        match gate.upgrade() {
            Some(gate) => Some((gate, *ch)),
            None => {
                self.channels.remove(&receiver);
                None
            }
        }
    }
}

/// Sends what the gates queue, coalescing everything queued into one flush.
async fn write_loop(
    mut sink: FramedWrite<OwnedWriteHalf, MessageCodec>,
    mut outbound: mpsc::UnboundedReceiver<Message>,
    peer: SocketAddr,
    closed: CancellationToken,
) -> Result<(), NetworkError> {
    loop {
        let message = tokio::select! {
            _ = closed.cancelled() => return Ok(()),
            m = outbound.recv() => m,
        };
        let Some(mut message) = message else {
            return Ok(());
        };
        loop {
            sink.feed(message).await.map_err(|e| e.with_peer(peer))?;
            match outbound.try_recv() {
                Ok(m) => message = m,
                Err(_) => break,
            }
        }
        sink.flush().await.map_err(|e| e.with_peer(peer))?;
    }
}
