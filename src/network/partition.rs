//! The producer side: a [`ResultPartition`] per producer subtask, with one
//! [`ResultSubpartition`] queue per consumer subtask (Flink's `PipelinedSubpartition`).
//!
//! The producer appends records into a buffer per subpartition and hands a buffer to its
//! subpartition when it is full, on [`ResultPartition::flush_all`] (the caller's
//! `execution.buffer-timeout.interval` timer) and before every event. A subpartition holds at
//! most `max-buffers-per-channel` buffers that are queued or still in use downstream; the
//! producer waits for a free one, which is how back-pressure reaches it. One reader (a data
//! connection or a local input channel) consumes a subpartition, once.

use std::collections::VecDeque;
use std::sync::{Arc, Mutex};

use bytes::Bytes;
use tokio::sync::Notify;

use super::buffer::{Buffer, BufferBuilder, BufferRecycler, Recycler};
use super::config::NetworkConfig;
use super::error::NetworkError;
use super::event::Event;
use super::ids::{ChannelId, ResultPartitionId};

/// Told when a subpartition may have become readable: data added to an empty queue, the
/// producer released it.
pub(crate) trait AvailabilityListener: Send + Sync {
    fn notify_data_available(&self);
}

enum Item {
    Buffer(Bytes),
    Event(Event),
}

/// What a reader takes from a subpartition.
pub(crate) enum Polled {
    /// A buffer whose drop frees its slot in the subpartition.
    Buffer(Buffer),
    Event(Event),
}

struct SubpartitionState {
    queue: VecDeque<Item>,
    /// Data buffers in `queue` (events excluded), reported to the consumer with each buffer.
    backlog: usize,
    /// Data buffers queued or handed out and not yet dropped: what `max-buffers-per-channel`
    /// bounds.
    outstanding: usize,
    /// An aligned barrier was handed out; nothing more until the consumer resumes.
    blocked: bool,
    /// `EndOfPartition` was added.
    finished: bool,
    /// The producer cancelled, or the reader went away before the end.
    released: bool,
    /// A reader was attached (a pipelined subpartition is read once).
    consumed: bool,
    listener: Option<Arc<dyn AvailabilityListener>>,
}

/// One consumer subtask's queue of buffers and events.
pub(crate) struct ResultSubpartition {
    id: ChannelId,
    capacity: usize,
    state: Mutex<SubpartitionState>,
    /// Wakes the producer waiting for a free slot (one waiter: the producer).
    space: Notify,
}

impl ResultSubpartition {
    fn new(id: ChannelId, capacity: usize) -> ResultSubpartition {
        ResultSubpartition {
            id,
            capacity,
            state: Mutex::new(SubpartitionState {
                queue: VecDeque::new(),
                backlog: 0,
                outstanding: 0,
                blocked: false,
                finished: false,
                released: false,
                consumed: false,
                listener: None,
            }),
            space: Notify::new(),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, SubpartitionState> {
        // Nothing panics while holding the lock; a poisoned one still holds consistent state.
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Queues a finished buffer, waiting while `capacity` buffers are outstanding.
    async fn add_buffer(&self, data: Bytes) -> Result<(), NetworkError> {
        loop {
            {
                let mut s = self.lock();
                if s.released {
                    return Err(NetworkError::Released(self.id.clone()));
                }
                if s.outstanding < self.capacity {
                    s.backlog += 1;
                    s.outstanding += 1;
                    self.push(s, Item::Buffer(data));
                    return Ok(());
                }
            }
            // A permit stored by a recycle between the check and here wakes us at once.
            self.space.notified().await;
        }
    }

    fn add_event(&self, event: Event) -> Result<(), NetworkError> {
        let mut s = self.lock();
        if s.released {
            return Err(NetworkError::Released(self.id.clone()));
        }
        if event == Event::EndOfPartition {
            s.finished = true;
        }
        self.push(s, Item::Event(event));
        Ok(())
    }

    fn push(&self, mut s: std::sync::MutexGuard<'_, SubpartitionState>, item: Item) {
        let was_empty = s.queue.is_empty();
        s.queue.push_back(item);
        let listener = if was_empty { s.listener.clone() } else { None };
        drop(s);
        if let Some(l) = listener {
            l.notify_data_available();
        }
    }

    /// Drops what is queued; the producer's next add and the reader's next poll fail.
    fn release(&self) {
        let mut s = self.lock();
        if s.released {
            return;
        }
        s.released = true;
        let queued = s.backlog;
        s.queue.clear();
        s.backlog = 0;
        s.outstanding -= queued;
        let listener = s.listener.clone();
        drop(s);
        self.space.notify_one();
        if let Some(l) = listener {
            l.notify_data_available();
        }
    }

    /// Finished and fully read, or released: the partition manager may forget it.
    pub(crate) fn is_disposable(&self) -> bool {
        let s = self.lock();
        s.released || (s.finished && s.consumed && s.queue.is_empty())
    }

    fn outstanding(&self) -> usize {
        self.lock().outstanding
    }

    /// Attaches the one reader.
    ///
    /// # Errors
    /// [`NetworkError::AlreadyConsumed`] for a second reader, [`NetworkError::Released`] when the
    /// producer has already given up.
    pub(crate) fn create_read_view(
        self: &Arc<Self>,
        listener: Arc<dyn AvailabilityListener>,
    ) -> Result<SubpartitionView, NetworkError> {
        let mut s = self.lock();
        if s.consumed {
            return Err(NetworkError::AlreadyConsumed(self.id.clone()));
        }
        if s.released {
            return Err(NetworkError::Released(self.id.clone()));
        }
        s.consumed = true;
        s.listener = Some(listener.clone());
        let ready = !s.queue.is_empty();
        drop(s);
        if ready {
            listener.notify_data_available();
        }
        Ok(SubpartitionView { sub: self.clone() })
    }
}

impl BufferRecycler for ResultSubpartition {
    fn recycle(&self, _channel: usize, _floating: bool) {
        self.lock().outstanding -= 1;
        self.space.notify_one();
    }
}

/// The reader's handle on a subpartition (Flink's `ResultSubpartitionView`). Dropping it before
/// the end of the partition releases the subpartition, so the producer stops with an error
/// instead of waiting forever for a consumer that is gone.
pub(crate) struct SubpartitionView {
    sub: Arc<ResultSubpartition>,
}

impl SubpartitionView {
    /// Whether [`SubpartitionView::poll`] would return something: not blocked, and a next item
    /// that is an event or a buffer the reader has credit for (events need no credit, as in
    /// Flink's `getAvailabilityAndBacklog`).
    pub(crate) fn is_available(&self, has_credit: bool) -> bool {
        let s = self.sub.lock();
        if s.released {
            return true;
        }
        match s.queue.front() {
            _ if s.blocked => false,
            Some(Item::Buffer(_)) => has_credit,
            Some(Item::Event(_)) => true,
            None => false,
        }
    }

    /// The next buffer or event and the backlog (data buffers still queued) after it.
    ///
    /// # Errors
    /// [`NetworkError::Released`] when the producer released the partition.
    pub(crate) fn poll(&self, has_credit: bool) -> Result<Option<(Polled, usize)>, NetworkError> {
        let mut s = self.sub.lock();
        if s.released {
            return Err(NetworkError::Released(self.sub.id.clone()));
        }
        if s.blocked {
            return Ok(None);
        }
        let polled = match s.queue.front() {
            None => return Ok(None),
            Some(Item::Buffer(_)) if !has_credit => return Ok(None),
            Some(_) => match s.queue.pop_front() {
                Some(Item::Buffer(data)) => {
                    s.backlog -= 1;
                    let recycler = Recycler {
                        target: self.sub.clone(),
                        channel: 0,
                        floating: false,
                    };
                    Polled::Buffer(Buffer::new(data, Some(recycler)))
                }
                Some(Item::Event(e)) => {
                    s.blocked = e.blocks_upstream();
                    Polled::Event(e)
                }
                None => return Ok(None),
            },
        };
        Ok(Some((polled, s.backlog)))
    }

    /// Unblocks after an aligned barrier (Flink's `resumeConsumption`).
    pub(crate) fn resume_consumption(&self) {
        let mut s = self.sub.lock();
        s.blocked = false;
    }
}

impl Drop for SubpartitionView {
    fn drop(&mut self) {
        let finished = {
            let mut s = self.sub.lock();
            s.listener = None;
            s.finished && s.queue.is_empty()
        };
        if !finished {
            self.sub.release();
        }
    }
}

/// A producer subtask's output: records and events into one subpartition per consumer
/// subtask. Owned by the producing task; dropping it before [`ResultPartition::finish`]
/// releases every subpartition (the consumers see [`NetworkError::Released`]).
pub struct ResultPartition {
    id: ResultPartitionId,
    subpartitions: Vec<Arc<ResultSubpartition>>,
    builders: Vec<BufferBuilder>,
    max_record_size: usize,
    finished: bool,
}

impl std::fmt::Debug for ResultPartition {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "ResultPartition({}, {} subpartitions)",
            self.id,
            self.subpartitions.len()
        )
    }
}

impl ResultPartition {
    /// A partition and the subpartitions its readers attach to (registered by the network
    /// environment).
    pub(crate) fn new(
        id: ResultPartitionId,
        num_subpartitions: usize,
        config: &NetworkConfig,
    ) -> (ResultPartition, Vec<Arc<ResultSubpartition>>) {
        let subpartitions: Vec<_> = (0..num_subpartitions)
            .map(|i| {
                let channel = ChannelId {
                    partition: id.clone(),
                    consumer_subtask: i as u32,
                };
                Arc::new(ResultSubpartition::new(
                    channel,
                    config.max_buffers_per_channel,
                ))
            })
            .collect();
        let partition = ResultPartition {
            id,
            subpartitions: subpartitions.clone(),
            builders: (0..num_subpartitions)
                .map(|_| BufferBuilder::new(config.segment_size))
                .collect(),
            max_record_size: config.max_record_size(),
            finished: false,
        };
        (partition, subpartitions)
    }

    pub fn id(&self) -> &ResultPartitionId {
        &self.id
    }

    pub fn num_subpartitions(&self) -> usize {
        self.subpartitions.len()
    }

    /// Appends one serialized record for `subpartition`'s consumer. Waits only when a buffer
    /// fills up and its subpartition has no free slot (back-pressure).
    ///
    /// # Errors
    /// [`NetworkError::RecordTooLarge`]; [`NetworkError::Released`] when the consumer is gone.
    ///
    /// # Panics
    /// If `subpartition >= num_subpartitions()` (a wiring bug).
    #[inline]
    pub async fn emit(&mut self, subpartition: usize, record: &[u8]) -> Result<(), NetworkError> {
        if !self.builders[subpartition].fits(record.len()) {
            self.flush(subpartition).await?;
        }
        if record.len() > self.max_record_size {
            return Err(NetworkError::RecordTooLarge {
                len: record.len(),
                max: self.max_record_size,
            });
        }
        let builder = &mut self.builders[subpartition];
        builder.append(record);
        if builder.is_full() {
            self.flush(subpartition).await?;
        }
        Ok(())
    }

    /// Hands `subpartition`'s partly filled buffer to its queue, if there is one.
    pub async fn flush(&mut self, subpartition: usize) -> Result<(), NetworkError> {
        let builder = &mut self.builders[subpartition];
        if builder.is_empty() {
            return Ok(());
        }
        let data = builder.finish();
        self.subpartitions[subpartition].add_buffer(data).await
    }

    /// Flushes every subpartition: call it every `execution.buffer-timeout.interval`.
    pub async fn flush_all(&mut self) -> Result<(), NetworkError> {
        for i in 0..self.builders.len() {
            self.flush(i).await?;
        }
        Ok(())
    }

    /// Sends `event` to every consumer after everything emitted before it (flushes first).
    pub async fn broadcast_event(&mut self, event: Event) -> Result<(), NetworkError> {
        self.flush_all().await?;
        for s in &self.subpartitions {
            s.add_event(event)?;
        }
        Ok(())
    }

    /// Ends the partition: flushes and sends `EndOfPartition` to every consumer.
    pub async fn finish(&mut self) -> Result<(), NetworkError> {
        self.broadcast_event(Event::EndOfPartition).await?;
        self.finished = true;
        Ok(())
    }

    /// Buffers queued or in use downstream, over all subpartitions (at most
    /// `num_subpartitions × max-buffers-per-channel`).
    pub fn outstanding_buffers(&self) -> usize {
        self.subpartitions.iter().map(|s| s.outstanding()).sum()
    }
}

impl Drop for ResultPartition {
    fn drop(&mut self) {
        if !self.finished {
            for s in &self.subpartitions {
                s.release();
            }
        }
    }
}
