//! The TaskManager's data server: accepts connections from other TaskManagers' clients and
//! serves their partition requests (Flink's `PartitionRequestServerHandler` +
//! `PartitionRequestQueue`).
//!
//! Each connection is a [`ServerConnection`] task: it reads requests and credits, keeps the
//! readers that are available (data and credit, or an event) in a round-robin queue, and after
//! every message it handled writes what they have, one buffer per credit. Writing waits for the
//! socket, never for a credit, so it cannot deadlock with the client, which always reads.

use std::collections::{HashMap, VecDeque};
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use futures::{SinkExt, StreamExt};
use tokio::net::tcp::{OwnedReadHalf, OwnedWriteHalf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::mpsc;
use tokio_util::codec::{FramedRead, FramedWrite};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use super::buffer::Buffer;
use super::config::NetworkConfig;
use super::error::NetworkError;
use super::event::Event;
use super::ids::ChannelId;
use super::partition::{AvailabilityListener, Polled, ResultSubpartition, SubpartitionView};
use super::partition_manager::ResultPartitionManager;
use super::protocol::{CONNECTION, FrameError, Message, MessageCodec, ReceiverId};

/// Writes are coalesced up to this many bytes before the codec flushes on its own.
const WRITE_COALESCE: usize = 128 * 1024;

/// Accepts data connections until cancelled.
pub(crate) struct DataServer {
    pub(crate) listener: TcpListener,
    pub(crate) partitions: ResultPartitionManager,
    pub(crate) config: NetworkConfig,
    pub(crate) shutdown: CancellationToken,
    pub(crate) tracker: TaskTracker,
}

impl DataServer {
    pub(crate) async fn run(self) {
        loop {
            tokio::select! {
                _ = self.shutdown.cancelled() => return,
                accepted = self.listener.accept() => self.on_accept(accepted).await,
            }
        }
    }

    async fn on_accept(&self, accepted: std::io::Result<(TcpStream, SocketAddr)>) {
        match accepted {
            Ok((stream, peer)) => {
                let _ = stream.set_nodelay(true);
                let connection = ServerConnection::new(stream, peer, self);
                self.tracker.spawn(connection.run());
            }
            Err(e) => {
                // Out of file descriptors and the like: wait instead of spinning.
                tracing::warn!(error = %e, "data server cannot accept a connection");
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        }
    }
}

struct Reader {
    view: SubpartitionView,
    credit: u32,
    /// In `ServerConnection::available`.
    queued: bool,
}

/// What a partition request waited for: the subpartition, or why there is none.
struct Ready {
    receiver: ReceiverId,
    found: Result<Arc<ResultSubpartition>, NetworkError>,
}

/// One client connection's requests and readers.
struct ServerConnection {
    peer: SocketAddr,
    frames: FramedRead<OwnedReadHalf, MessageCodec>,
    sink: FramedWrite<OwnedWriteHalf, MessageCodec>,
    readers: HashMap<ReceiverId, Reader>,
    /// Requests waiting for their producer to register the partition, with their credit.
    pending: HashMap<ReceiverId, u32>,
    /// Readers with something to send, round robin.
    available: VecDeque<ReceiverId>,
    /// Error answers to send before any data.
    outbox: VecDeque<Message>,
    /// Subpartitions tell us here that they became readable.
    data_tx: mpsc::UnboundedSender<ReceiverId>,
    data_rx: mpsc::UnboundedReceiver<ReceiverId>,
    ready_tx: mpsc::UnboundedSender<Ready>,
    ready_rx: mpsc::UnboundedReceiver<Ready>,
    partitions: ResultPartitionManager,
    request_timeout: Duration,
    shutdown: CancellationToken,
    tracker: TaskTracker,
}

impl ServerConnection {
    fn new(stream: TcpStream, peer: SocketAddr, server: &DataServer) -> ServerConnection {
        let (read, write) = stream.into_split();
        let max = server.config.max_frame_size;
        let mut sink = FramedWrite::new(write, MessageCodec::new(max));
        sink.set_backpressure_boundary(WRITE_COALESCE);
        let (data_tx, data_rx) = mpsc::unbounded_channel();
        let (ready_tx, ready_rx) = mpsc::unbounded_channel();
        ServerConnection {
            peer,
            frames: FramedRead::new(read, MessageCodec::new(max)),
            sink,
            readers: HashMap::new(),
            pending: HashMap::new(),
            available: VecDeque::new(),
            outbox: VecDeque::new(),
            data_tx,
            data_rx,
            ready_tx,
            ready_rx,
            partitions: server.partitions.clone(),
            request_timeout: server.config.request_timeout,
            shutdown: server.shutdown.child_token(),
            tracker: server.tracker.clone(),
        }
    }

    async fn run(mut self) {
        let Err(error) = self.serve().await else {
            return;
        };
        tracing::warn!(peer = %self.peer, %error, "closing data connection");
        // Best effort: tell the client why, so its error names the cause too.
        let message = Message::Error {
            receiver: CONNECTION,
            message: error.to_string(),
        };
        let _ = tokio::time::timeout(Duration::from_secs(1), self.sink.send(message)).await;
        self.shutdown.cancel();
    }

    async fn serve(&mut self) -> Result<(), NetworkError> {
        let shutdown = self.shutdown.clone();
        loop {
            tokio::select! {
                _ = self.shutdown.cancelled() => return Ok(()),
                frame = self.frames.next() => match frame {
                    None => return Ok(()),
                    Some(frame) => self.on_frame(frame)?,
                },
                Some(receiver) = self.data_rx.recv() => self.enqueue(receiver),
                Some(ready) = self.ready_rx.recv() => self.on_partition_ready(ready),
            }
            tokio::select! {
                _ = shutdown.cancelled() => return Ok(()),
                written = self.write_available() => written?,
            }
        }
    }

    fn on_frame(&mut self, frame: Result<Message, FrameError>) -> Result<(), NetworkError> {
        match frame.map_err(|e| e.with_peer(self.peer))? {
            Message::PartitionRequest {
                receiver,
                channel,
                credit,
            } => self.on_partition_request(receiver, channel, credit),
            Message::AddCredit { receiver, credit } => {
                if let Some(r) = self.readers.get_mut(&receiver) {
                    r.credit += credit;
                    self.enqueue(receiver);
                } else if let Some(c) = self.pending.get_mut(&receiver) {
                    *c += credit;
                }
            }
            Message::ResumeConsumption { receiver } => {
                if let Some(r) = self.readers.get(&receiver) {
                    r.view.resume_consumption();
                    self.enqueue(receiver);
                }
            }
            Message::CancelPartitionRequest { receiver } => {
                // Dropping the view releases an unfinished subpartition.
                self.readers.remove(&receiver);
                self.pending.remove(&receiver);
            }
            Message::Error { message, .. } => {
                return Err(NetworkError::ConnectionLost {
                    peer: self.peer,
                    detail: format!("the client reported: {message}"),
                });
            }
            other => {
                return Err(NetworkError::Protocol {
                    peer: self.peer,
                    detail: format!("a client sent a server's message: {other:?}"),
                });
            }
        }
        Ok(())
    }

    fn on_partition_request(&mut self, receiver: ReceiverId, channel: ChannelId, credit: u32) {
        if self.readers.contains_key(&receiver) || self.pending.contains_key(&receiver) {
            self.outbox.push_back(Message::Error {
                receiver,
                message: format!("receiver id {receiver} is already in use on this connection"),
            });
            return;
        }
        self.pending.insert(receiver, credit);
        // The producer may not be deployed yet: wait for it off the connection's loop.
        let (partitions, timeout, ready) = (
            self.partitions.clone(),
            self.request_timeout,
            self.ready_tx.clone(),
        );
        let shutdown = self.shutdown.clone();
        self.tracker.spawn(async move {
            tokio::select! {
                _ = shutdown.cancelled() => {}
                found = partitions.subpartition(&channel, timeout) => {
                    let _ = ready.send(Ready { receiver, found });
                }
            }
        });
    }

    fn on_partition_ready(&mut self, ready: Ready) {
        let Some(credit) = self.pending.remove(&ready.receiver) else {
            return; // cancelled meanwhile
        };
        let listener = Arc::new(ServerListener {
            tx: self.data_tx.clone(),
            receiver: ready.receiver,
        });
        match ready.found.and_then(|sub| sub.create_read_view(listener)) {
            Ok(view) => {
                let reader = Reader {
                    view,
                    credit,
                    queued: false,
                };
                self.readers.insert(ready.receiver, reader);
                self.enqueue(ready.receiver);
            }
            Err(e) => self.outbox.push_back(Message::Error {
                receiver: ready.receiver,
                message: e.to_string(),
            }),
        }
    }

    fn enqueue(&mut self, receiver: ReceiverId) {
        if let Some(r) = self.readers.get_mut(&receiver)
            && !r.queued
            && r.view.is_available(r.credit > 0)
        {
            r.queued = true;
            self.available.push_back(receiver);
        }
    }

    /// The next message of the first available reader, round robin.
    fn next_message(&mut self) -> Option<(Message, Option<Buffer>)> {
        while let Some(receiver) = self.available.pop_front() {
            let Some(r) = self.readers.get_mut(&receiver) else {
                continue;
            };
            r.queued = false;
            match r.view.poll(r.credit > 0) {
                Err(e) => {
                    self.readers.remove(&receiver);
                    let message = e.to_string();
                    return Some((Message::Error { receiver, message }, None));
                }
                Ok(None) => continue,
                Ok(Some((Polled::Buffer(buffer), backlog))) => {
                    r.credit -= 1;
                    let data = buffer.data().clone();
                    self.enqueue(receiver);
                    let backlog = backlog as u32;
                    return Some((
                        Message::Buffer {
                            receiver,
                            backlog,
                            data,
                        },
                        Some(buffer),
                    ));
                }
                Ok(Some((Polled::Event(event), _))) => {
                    if event == Event::EndOfPartition {
                        self.readers.remove(&receiver);
                    } else {
                        self.enqueue(receiver);
                    }
                    return Some((Message::Event { receiver, event }, None));
                }
            }
        }
        None
    }

    /// Writes queued errors, then every buffer or event the readers have credit for.
    async fn write_available(&mut self) -> Result<(), NetworkError> {
        let mut wrote = false;
        loop {
            let (message, buffer) = match self.outbox.pop_front() {
                Some(m) => (m, None),
                None => match self.next_message() {
                    Some(next) => next,
                    None => break,
                },
            };
            self.sink
                .feed(message)
                .await
                .map_err(|e| e.with_peer(self.peer))?;
            // Encoded (copied) now: its slot in the subpartition is free.
            drop(buffer);
            wrote = true;
        }
        if wrote {
            self.sink
                .flush()
                .await
                .map_err(|e| e.with_peer(self.peer))?;
        }
        Ok(())
    }
}

struct ServerListener {
    tx: mpsc::UnboundedSender<ReceiverId>,
    receiver: ReceiverId,
}

impl AvailabilityListener for ServerListener {
    fn notify_data_available(&self) {
        let _ = self.tx.send(self.receiver);
    }
}
