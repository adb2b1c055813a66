//! The consumer side: an [`InputGate`] per consumer subtask with one input channel per
//! producer subtask (Flink's `SingleInputGate`, `RemoteInputChannel`, `LocalInputChannel`).
//!
//! Credits, as Flink's `BufferManager` keeps them: every remote channel owns
//! `buffers-per-channel` exclusive buffers and the gate lends `floating-buffers-per-gate`
//! floating ones. A free buffer is a credit: the producer sends a buffer only against one, so
//! the gate never holds more than `channels × exclusive + floating` buffers. Each buffer
//! carries its producer's backlog; a channel wants `backlog + exclusive` free buffers and takes
//! floating ones from the gate while it has fewer (or queues for the next one returned). When
//! the caller drops a buffer its credit comes back: an exclusive one is announced again (or, if
//! the channel has more than it wants, replaces one of its floating buffers, which goes back to
//! the gate); a floating one stays if the channel still wants it, else returns to the gate and
//! to the first channel waiting for one. Credits go to the producer as `AddCredit` messages.
//!
//! A local channel reads its producer's subpartition in place (no copy, no credit): the
//! buffer's slot in the subpartition is freed when the caller drops it, so the producer's
//! `max-buffers-per-channel` bounds it the same way credits bound a remote one.
//!
//! A blocked channel ([`InputGate::block_channel`], or after it delivered a barrier) keeps what
//! it has queued and yields nothing until [`InputGate::resume_consumption`]; its producer runs
//! out of credit and stalls. Nothing is dropped.

use std::collections::VecDeque;
use std::sync::{Arc, Mutex, Weak};

use bytes::Bytes;
use tokio::sync::Notify;

use super::buffer::{Buffer, BufferRecycler, Recycler};
use super::error::NetworkError;
use super::event::{BufferOrEvent, Content, Event};
use super::ids::ChannelId;
use super::partition::{AvailabilityListener, Polled, ResultSubpartition, SubpartitionView};
use super::protocol::{Message, ReceiverId};

/// The gate's view of a client connection to another TaskManager (implemented by the client).
pub(crate) trait RemoteConnection: Send + Sync {
    /// Queues a message to the producer's TaskManager; never blocks.
    fn send(&self, message: Message);
    /// Forgets the receiver: later frames for it are dropped.
    fn unregister(&self, receiver: ReceiverId);
}

enum ChannelKind {
    /// Not wired yet (during construction).
    Unset,
    Remote {
        receiver: ReceiverId,
        connection: Arc<dyn RemoteConnection>,
    },
    Local {
        view: SubpartitionView,
    },
}

enum Received {
    Buffer { data: Bytes, floating: bool },
    Event(Event),
}

struct ChannelState {
    id: ChannelId,
    kind: ChannelKind,
    /// Received from a remote producer, not yet yielded.
    received: VecDeque<Received>,
    blocked: bool,
    /// In `GateState::with_data`.
    queued: bool,
    finished: bool,
    /// Free buffers, each a credit the producer has or will be told about.
    free_exclusive: usize,
    free_floating: usize,
    /// `backlog + exclusive`: free buffers the channel wants.
    required: usize,
    waiting_for_floating: bool,
}

impl ChannelState {
    fn free(&self) -> usize {
        self.free_exclusive + self.free_floating
    }

    fn announce(&self, credit: usize) {
        if let (
            ChannelKind::Remote {
                receiver,
                connection,
            },
            true,
        ) = (&self.kind, credit > 0)
        {
            connection.send(Message::AddCredit {
                receiver: *receiver,
                credit: credit as u32,
            });
        }
    }
}

struct GateState {
    channels: Vec<ChannelState>,
    /// Channels that may have something to yield, in arrival order (round robin).
    with_data: VecDeque<usize>,
    /// Floating buffers no channel holds.
    free_floating: usize,
    floating_waiters: VecDeque<usize>,
    finished: usize,
    /// The first failure; every later `next` returns it.
    error: Option<NetworkError>,
    /// Remote buffers received and not yet dropped by the caller.
    held: usize,
    closed: bool,
}

impl GateState {
    fn enqueue(&mut self, ch: usize) -> bool {
        let c = &mut self.channels[ch];
        if c.queued || c.blocked || c.finished {
            return false;
        }
        c.queued = true;
        self.with_data.push_back(ch);
        true
    }

    /// Gives `ch` floating buffers until it has what it wants or the gate has none left.
    fn request_floating(&mut self, ch: usize) {
        let c = &mut self.channels[ch];
        let mut granted = 0;
        while c.free() < c.required {
            if self.free_floating == 0 {
                if !c.waiting_for_floating {
                    c.waiting_for_floating = true;
                    self.floating_waiters.push_back(ch);
                }
                break;
            }
            self.free_floating -= 1;
            c.free_floating += 1;
            granted += 1;
        }
        c.announce(granted);
    }

    /// A floating buffer is free: to the first waiter that still wants one, else to the pool.
    fn return_floating(&mut self) {
        while let Some(w) = self.floating_waiters.pop_front() {
            let c = &mut self.channels[w];
            c.waiting_for_floating = false;
            if c.finished || self.closed || c.free() >= c.required {
                continue;
            }
            c.free_floating += 1;
            c.announce(1);
            if c.free() < c.required {
                c.waiting_for_floating = true;
                self.floating_waiters.push_back(w);
            }
            return;
        }
        self.free_floating += 1;
    }

    fn finish_channel(&mut self, ch: usize) {
        let c = &mut self.channels[ch];
        c.finished = true;
        c.free_exclusive = 0;
        let floating = std::mem::take(&mut c.free_floating);
        self.finished += 1;
        for _ in 0..floating {
            self.return_floating();
        }
    }

    fn fail(&mut self, error: NetworkError) {
        if self.error.is_none() {
            self.error = Some(error);
        }
    }
}

/// The state an input gate shares with the connections and producers feeding it.
pub(crate) struct GateShared {
    state: Mutex<GateState>,
    /// Wakes the gate's one reader.
    data: Notify,
    exclusive: usize,
    floating: usize,
}

impl GateShared {
    pub(crate) fn new(
        channels: Vec<ChannelId>,
        exclusive: usize,
        floating: usize,
    ) -> Arc<GateShared> {
        let channels = channels
            .into_iter()
            .map(|id| ChannelState {
                id,
                kind: ChannelKind::Unset,
                received: VecDeque::new(),
                blocked: false,
                queued: false,
                finished: false,
                free_exclusive: exclusive,
                free_floating: 0,
                required: exclusive,
                waiting_for_floating: false,
            })
            .collect();
        Arc::new(GateShared {
            state: Mutex::new(GateState {
                channels,
                with_data: VecDeque::new(),
                free_floating: floating,
                floating_waiters: VecDeque::new(),
                finished: 0,
                error: None,
                held: 0,
                closed: false,
            }),
            data: Notify::new(),
            exclusive,
            floating,
        })
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, GateState> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    pub(crate) fn exclusive_credit(&self) -> usize {
        self.exclusive
    }

    pub(crate) fn channel_id(&self, ch: usize) -> ChannelId {
        self.lock().channels[ch].id.clone()
    }

    /// Wires channel `ch` to a remote producer through `connection` (before its request).
    pub(crate) fn set_remote(
        &self,
        ch: usize,
        receiver: ReceiverId,
        connection: Arc<dyn RemoteConnection>,
    ) {
        self.lock().channels[ch].kind = ChannelKind::Remote {
            receiver,
            connection,
        };
    }

    /// Wires channel `ch` to a subpartition in this process.
    pub(crate) fn set_local(
        self: &Arc<Self>,
        ch: usize,
        sub: &Arc<ResultSubpartition>,
    ) -> Result<(), NetworkError> {
        let listener = Arc::new(LocalListener {
            gate: Arc::downgrade(self),
            channel: ch,
        });
        let view = sub.create_read_view(listener)?;
        let mut s = self.lock();
        let c = &mut s.channels[ch];
        c.kind = ChannelKind::Local { view };
        // No credits: the producer's subpartition bounds a local channel.
        c.free_exclusive = 0;
        c.required = 0;
        Ok(())
    }

    /// A buffer from a remote producer, with the producer's backlog after it.
    ///
    /// # Errors
    /// The producer sent it without credit: what the client reports as a protocol violation.
    pub(crate) fn on_buffer(&self, ch: usize, data: Bytes, backlog: u32) -> Result<(), String> {
        let mut s = self.lock();
        if s.closed || s.channels[ch].finished {
            return Ok(());
        }
        let c = &mut s.channels[ch];
        // Floating first, as Flink takes them: exclusive ones are what the channel keeps.
        let floating = if c.free_floating > 0 {
            c.free_floating -= 1;
            true
        } else if c.free_exclusive > 0 {
            c.free_exclusive -= 1;
            false
        } else {
            return Err(format!("{} sent a buffer without credit", c.id));
        };
        c.received.push_back(Received::Buffer { data, floating });
        c.required = backlog as usize + self.exclusive;
        s.held += 1;
        s.request_floating(ch);
        let woke = s.enqueue(ch);
        drop(s);
        if woke {
            self.data.notify_one();
        }
        Ok(())
    }

    pub(crate) fn on_event(&self, ch: usize, event: Event) {
        let mut s = self.lock();
        if s.closed || s.channels[ch].finished {
            return;
        }
        s.channels[ch].received.push_back(Received::Event(event));
        let woke = s.enqueue(ch);
        drop(s);
        if woke {
            self.data.notify_one();
        }
    }

    pub(crate) fn on_error(&self, error: NetworkError) {
        self.lock().fail(error);
        self.data.notify_one();
    }

    fn notify_channel(&self, ch: usize) {
        let woke = self.lock().enqueue(ch);
        if woke {
            self.data.notify_one();
        }
    }

    /// The next item if one is ready; `Ok(None)` inside means the end of every channel.
    fn poll_next(self: &Arc<Self>) -> Result<Option<Option<BufferOrEvent>>, NetworkError> {
        let mut s = self.lock();
        if let Some(e) = &s.error {
            return Err(e.clone());
        }
        if s.finished == s.channels.len() {
            return Ok(Some(None));
        }
        while let Some(ch) = s.with_data.pop_front() {
            let c = &mut s.channels[ch];
            c.queued = false;
            if c.blocked || c.finished {
                continue;
            }
            let taken = match &c.kind {
                ChannelKind::Local { view } => match view.poll(true) {
                    Err(e) => Err(e),
                    Ok(None) => Ok(None),
                    Ok(Some((Polled::Buffer(b), _))) => {
                        Ok(Some((Content::Buffer(b), view.is_available(true))))
                    }
                    Ok(Some((Polled::Event(e), _))) => {
                        Ok(Some((Content::Event(e), view.is_available(true))))
                    }
                },
                _ => Ok(match c.received.pop_front() {
                    None => None,
                    Some(Received::Buffer { data, floating }) => {
                        let recycler = Recycler {
                            target: self.clone(),
                            channel: ch,
                            floating,
                        };
                        Some((
                            Content::Buffer(Buffer::new(data, Some(recycler))),
                            !c.received.is_empty(),
                        ))
                    }
                    Some(Received::Event(e)) => Some((Content::Event(e), !c.received.is_empty())),
                }),
            };
            let (content, more) = match taken {
                Err(e) => {
                    s.fail(e.clone());
                    return Err(e);
                }
                Ok(None) => continue,
                Ok(Some(t)) => t,
            };
            match &content {
                Content::Event(Event::EndOfPartition) => s.finish_channel(ch),
                Content::Event(Event::CheckpointBarrier(_)) => s.channels[ch].blocked = true,
                Content::Buffer(_) => {}
            }
            if more {
                s.enqueue(ch);
            }
            return Ok(Some(Some(BufferOrEvent {
                channel: ch,
                content,
            })));
        }
        Ok(None)
    }
}

impl BufferRecycler for GateShared {
    fn recycle(&self, ch: usize, floating: bool) {
        let mut s = self.lock();
        s.held -= 1;
        let closed = s.closed;
        let c = &mut s.channels[ch];
        let give_back = if closed || c.finished {
            floating
        } else if floating {
            if c.free() < c.required {
                c.free_floating += 1;
                c.announce(1);
                false
            } else {
                true
            }
        } else if c.free() >= c.required && c.free_floating > 0 {
            // The exclusive buffer replaces a floating one: same credit, one floating freed.
            c.free_floating -= 1;
            c.free_exclusive += 1;
            true
        } else {
            c.free_exclusive += 1;
            c.announce(1);
            false
        };
        if give_back {
            s.return_floating();
        }
    }
}

struct LocalListener {
    gate: Weak<GateShared>,
    channel: usize,
}

impl AvailabilityListener for LocalListener {
    fn notify_data_available(&self) {
        if let Some(gate) = self.gate.upgrade() {
            gate.notify_channel(self.channel);
        }
    }
}

/// A consumer subtask's input: one channel per producer subtask, read as one stream of
/// [`BufferOrEvent`]s. Dropping it cancels every channel.
pub struct InputGate {
    shared: Arc<GateShared>,
    num_channels: usize,
}

impl std::fmt::Debug for InputGate {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "InputGate({} channels)", self.num_channels)
    }
}

impl InputGate {
    pub(crate) fn new(shared: Arc<GateShared>, num_channels: usize) -> InputGate {
        InputGate {
            shared,
            num_channels,
        }
    }

    pub fn num_channels(&self) -> usize {
        self.num_channels
    }

    /// The next buffer or event from any readable channel, round robin; `None` once every
    /// channel delivered `EndOfPartition` (which is yielded too).
    ///
    /// # Errors
    /// The first failure of any channel (connection lost, protocol violation, the producer
    /// released its partition), again on every later call.
    ///
    /// # Cancel safety
    /// Cancel safe: nothing is taken from a channel until it is returned.
    pub async fn next(&mut self) -> Result<Option<BufferOrEvent>, NetworkError> {
        loop {
            if let Some(item) = self.shared.poll_next()? {
                return Ok(item);
            }
            // One reader: a wake-up between the poll and here is kept as a permit.
            self.shared.data.notified().await;
        }
    }

    /// Stops yielding from `channel` (for barrier alignment); what it has stays queued.
    pub fn block_channel(&self, channel: usize) {
        self.shared.lock().channels[channel].blocked = true;
    }

    /// Yields from `channel` again, and tells its producer, which stopped sending after the
    /// barrier it delivered (Flink's `resumeConsumption`).
    pub fn resume_consumption(&self, channel: usize) {
        let mut s = self.shared.lock();
        let c = &mut s.channels[channel];
        c.blocked = false;
        let has_data = match &c.kind {
            ChannelKind::Remote {
                receiver,
                connection,
            } => {
                connection.send(Message::ResumeConsumption {
                    receiver: *receiver,
                });
                !c.received.is_empty()
            }
            ChannelKind::Local { view } => {
                view.resume_consumption();
                view.is_available(true)
            }
            ChannelKind::Unset => false,
        };
        if has_data && s.enqueue(channel) {
            drop(s);
            self.shared.data.notify_one();
        }
    }

    /// Remote buffers received and not yet dropped: at most [`InputGate::max_buffers`].
    pub fn buffers_in_use(&self) -> usize {
        self.shared.lock().held
    }

    /// The gate's memory bound in buffers: exclusive ones of every remote channel + floating.
    pub fn max_buffers(&self) -> usize {
        let s = self.shared.lock();
        let remote = s
            .channels
            .iter()
            .filter(|c| matches!(c.kind, ChannelKind::Remote { .. }))
            .count();
        remote * self.shared.exclusive + self.shared.floating
    }
}

impl Drop for InputGate {
    fn drop(&mut self) {
        let mut s = self.shared.lock();
        s.closed = true;
        for c in &mut s.channels {
            c.received.clear();
            if let ChannelKind::Remote {
                receiver,
                connection,
            } = &c.kind
            {
                if !c.finished {
                    connection.send(Message::CancelPartitionRequest {
                        receiver: *receiver,
                    });
                }
                connection.unregister(*receiver);
            }
            // A local view's drop releases an unfinished subpartition.
            c.kind = ChannelKind::Unset;
        }
    }
}
