//! One subtask: a stage's chain between its input (the source, or the keyed exchange from
//! every subtask of the previous stage) and its output (the files sink, or the keyed exchange
//! to the next stage), driven by checkpoint barriers.
//!
//! The task owns its state and runs a `select!` loop over its command inbox (barriers,
//! completion notices, cancel) and its input. A source: a rate-limited source pulls one batch
//! per 10 ms tick, an unlimited one pulls batch after batch, yielding to the runtime in between
//! (the inbox comes first in every round, so a barrier waits for at most one batch); the
//! JobManager's barriers come to sources only. A consumer reads its input gate and aligns the
//! barriers that come in band on every channel ([`BarrierAligner`]): a channel that delivered
//! the barrier is blocked until all have, then the subtask snapshots, forwards the barrier and
//! resumes them. On a checkpoint it snapshots source offset, operator state and sink (phase one
//! of the sink's commit); a keyed stage's subtask also writes its keyed state backend to one
//! snapshot file under `execution.checkpointing.dir`; it acknowledges with that state (the
//! file by its handle only); on a completion notice the sink commits. When its input ends (a bounded source is exhausted, or every channel delivered its
//! end of partition) the task ends its own output and reports `Finished`, and keeps serving the
//! JobManager's barriers and notices, so the final checkpoint commits the tail, until it is
//! told to stop.

use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};
use tokio::sync::mpsc;

use super::exchange::{BarrierAligner, Exchange, KeyedPartition, TaskNetwork, decode_keyed};
use crate::job::graph::RunId;
use crate::job::key_groups::KeyGroupRange;
use crate::job::operators::{Chain, OperatorState, Record, TextPool, key_str};
use crate::job::sink::{FileSink, SinkState};
use crate::job::source::{Source, SourceState};
use crate::job::spec::{KeyBySpec, SourceSpec, Step};
use crate::jobmanager::error::RuntimeError;
use crate::network::{
    BufferOrEvent, CheckpointBarrier, Content, Event, InputChannelSpec, InputGate,
    PartitionLocation,
};
use crate::state::{
    HeapKeyedStateBackend, KeyedStateHandle, KeyedStateSnapshot, job_dir_name, snapshot_location,
};
use crate::storage::Location;

/// Everything a subtask needs to run.
#[derive(Debug, Clone)]
pub struct TaskConfig {
    pub job_id: String,
    /// The job's run (what its part files are named by), the same in every attempt.
    pub run_id: RunId,
    /// Its execution vertex: the index the job master knows it by, over all stages.
    pub subtask: u32,
    /// Its attempt number (Flink's `attemptNumber`): 0 at first, one more per redeployment;
    /// kept when a new leader adopts the running subtask.
    pub attempt: u32,
    /// Its stage's parallelism.
    pub parallelism: u32,
    /// Its stage's steps.
    pub pipeline: Vec<Step>,
    pub sink_dir: Location,
    /// `execution.checkpointing.dir`: where a keyed subtask writes its snapshots (and reads
    /// those it restores); a keyed subtask without one fails at start.
    pub checkpoint_dir: Option<Location>,
    /// Upper bound of records per tick (keeps barriers prompt).
    pub batch: usize,
    /// Its stage and the edges to the stages around it.
    pub exchange: Exchange,
}

/// A subtask's checkpointed state.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SubtaskState {
    /// Its source's position, in the first stage.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub source: Option<SourceState>,
    pub operators: Vec<OperatorState>,
    /// Its sink, in the last stage.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sink: Option<SinkState>,
    /// Its index in its stage, what its sink files are named by (absent: its vertex, as in a
    /// single-stage job).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub index: Option<u32>,
    /// Its stage (absent: the first), whose keyed handles a restore of the stage may take.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stage: Option<u32>,
    /// Its keyed state, by handle only: in an acknowledgement the snapshot file it wrote; in a
    /// restore every file of its stage whose key groups overlap its own (the job master picks
    /// them, so a rescaled subtask takes over groups from several files).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub keyed: Vec<KeyedStateHandle>,
}

impl SubtaskState {
    /// A fresh start: no state at all.
    pub fn empty() -> SubtaskState {
        SubtaskState {
            source: None,
            operators: Vec::new(),
            sink: None,
            index: None,
            stage: None,
            keyed: Vec::new(),
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TaskCommand {
    /// Snapshot for this checkpoint and acknowledge.
    Barrier(u64),
    /// This checkpoint completed: commit.
    Complete(u64),
    /// Stop now (cancel, failover of the job, or done after the final checkpoint).
    Stop,
}

#[derive(Debug, Clone)]
pub enum TaskEvent {
    Ack {
        subtask: u32,
        checkpoint_id: u64,
        state: serde_json::Value,
    },
    /// The subtask cannot take part in this checkpoint but keeps running (Flink's
    /// `declineCheckpoint`): the checkpoint fails.
    Declined {
        subtask: u32,
        checkpoint_id: u64,
        reason: String,
    },
    /// The input is exhausted; everything emitted is in the sink's buffer or sent on.
    Finished {
        subtask: u32,
    },
    Failed {
        subtask: u32,
        error: RuntimeError,
    },
    /// Records processed so far by this deployment (about once a second while records flow,
    /// and at the end): the job's records/s.
    Progress {
        subtask: u32,
        records: u64,
    },
    /// The sink committed everything up to this checkpoint (the job may end after the final
    /// checkpoint only once every subtask has said so).
    Committed {
        subtask: u32,
        checkpoint_id: u64,
    },
}

/// Runs a subtask until `Stop` or a failure, starting from `restore` if given. `network` is
/// its TaskManager's data plane, which a stage with a keyed edge needs.
pub async fn run_task(
    cfg: TaskConfig,
    restore: Option<SubtaskState>,
    mut commands: mpsc::Receiver<TaskCommand>,
    events: mpsc::Sender<TaskEvent>,
    network: Option<TaskNetwork>,
) {
    let subtask = cfg.subtask;
    if let Err(error) = run(cfg, restore, &mut commands, &events, network).await {
        let _ = events.send(TaskEvent::Failed { subtask, error }).await;
    }
}

async fn run(
    cfg: TaskConfig,
    restore: Option<SubtaskState>,
    commands: &mut mpsc::Receiver<TaskCommand>,
    events: &mpsc::Sender<TaskEvent>,
    network: Option<TaskNetwork>,
) -> Result<(), RuntimeError> {
    let exchange = cfg.exchange.clone();
    let index = exchange.index;
    let source_spec = match cfg.pipeline.first() {
        Some(Step::Source(s)) => Some(s.clone()),
        _ => None,
    };
    if source_spec.is_none() && exchange.input.is_none() {
        return Err(RuntimeError::InvalidJob(
            "the stage has neither a source nor an input".into(),
        ));
    }
    let needs_network = || {
        network.clone().ok_or_else(|| {
            RuntimeError::InvalidJob(
                "a stage with a keyed edge needs its TaskManager's network environment".into(),
            )
        })
    };
    let input_key = exchange.input.as_ref().map(|i| &i.key);
    let mut chain =
        Chain::from_stage(&cfg.pipeline, input_key).map_err(RuntimeError::InvalidJob)?;
    let mut output = match &exchange.output {
        Some(spec) => {
            let partition = needs_network()?.env.create_result_partition(
                exchange.output_partition(&cfg.job_id),
                spec.consumers as usize,
            )?;
            Output::Keyed(KeyedPartition::new(partition, spec.clone()))
        }
        None => Output::Sink(FileSink::new(
            cfg.sink_dir.clone(),
            cfg.run_id.clone(),
            index,
        )),
    };
    let mut source = source_spec
        .as_ref()
        .map(|s| Source::new(s, index, cfg.parallelism));
    let restore = restore.unwrap_or_else(SubtaskState::empty);
    if let (Some(source), Some(state)) = (source.as_mut(), restore.source) {
        source.restore(state).map_err(RuntimeError::Source)?;
    }
    chain.restore(&restore.operators);
    let mut keyed = match (&exchange.input, exchange.key_groups(cfg.parallelism)) {
        (Some(input), Some(range)) => {
            let mut keyed = KeyedContext::new(&cfg, &input.key, range)?;
            keyed.restore(&restore.keyed).await?;
            Some(keyed)
        }
        _ => None,
    };
    // User operators open after the restore, with the keyed stage's state backend if any.
    chain.open(keyed.as_mut().map(|k| &mut k.backend))?;
    if let Output::Sink(sink) = &mut output {
        sink.restore(restore.sink.as_ref()).await?;
    }
    let flush_every = network.as_ref().map_or(Duration::from_millis(100), |n| {
        n.env.config().buffer_timeout
    });
    let mut task = Task {
        subtask: cfg.subtask,
        index,
        stage: exchange.stage,
        chain,
        keyed,
        writes: tokio::task::JoinSet::new(),
        output,
        events: events.clone(),
        outputs: Vec::new(),
        pool: TextPool::default(),
        processed: 0,
        last_progress: tokio::time::Instant::now(),
        finished: false,
        flush: tokio::time::interval(flush_every),
    };
    let result = match (source, source_spec) {
        (Some(source), Some(spec)) => task.run_source(&cfg, &spec, source, commands).await,
        _ => match open_gate(&cfg, &needs_network()?, commands).await {
            Ok(Some(gate)) => task.run_consumer(gate, commands).await,
            Ok(None) => Ok(()),
            Err(e) => Err(e),
        },
    };
    // Closed however the subtask ends; a failure of its own comes first.
    result.and(task.chain.close())
}

/// The consumer's input gate, one channel per producer; `None` if told to stop meanwhile
/// (a partition request waits up to `taskmanager.network.request-backoff.max` for its producer).
async fn open_gate(
    cfg: &TaskConfig,
    network: &TaskNetwork,
    commands: &mut mpsc::Receiver<TaskCommand>,
) -> Result<Option<InputGate>, RuntimeError> {
    let Some(input) = &cfg.exchange.input else {
        return Err(RuntimeError::InvalidJob(
            "a consumer without an input".into(),
        ));
    };
    let mut channels = Vec::with_capacity(input.producers.len());
    for (producer, address) in input.producers.iter().enumerate() {
        let location = if *address == network.address {
            PartitionLocation::Local
        } else {
            let peer = tokio::net::lookup_host(address.as_str())
                .await
                .ok()
                .and_then(|mut a| a.next())
                .ok_or_else(|| {
                    RuntimeError::InvalidJob(format!(
                        "producer {producer}'s data address {address:?} does not resolve"
                    ))
                })?;
            PartitionLocation::Remote(peer)
        };
        channels.push(InputChannelSpec {
            partition: cfg.exchange.input_partition(&cfg.job_id, producer as u32),
            location,
        });
    }
    let gate = network.env.create_input_gate(cfg.exchange.index, &channels);
    tokio::pin!(gate);
    loop {
        tokio::select! {
            gate = &mut gate => return Ok(Some(gate?)),
            cmd = commands.recv() => match cmd {
                Some(TaskCommand::Stop) | None => return Ok(None),
                // Nothing of this run is checkpointed or pending yet.
                Some(other) => tracing::debug!(command = ?other, "command before the input is connected; ignored"),
            },
        }
    }
}

/// Where a stage's records go.
enum Output {
    Sink(FileSink),
    Keyed(KeyedPartition),
}

/// A keyed stage's subtask's state: the backend of the key groups it owns, how a record's key
/// is found (its group comes in its frame, from the producers' partitioner), and where its
/// snapshots go.
struct KeyedContext {
    backend: HeapKeyedStateBackend,
    key: KeyBySpec,
    /// A record's key when it is not borrowed from the record (reused: no allocation per record).
    key_buf: String,
    checkpoint_dir: Location,
    job_id: String,
    /// Its job run's directory name in `checkpoint_dir`.
    job_dir: String,
    /// Its file's name in a checkpoint's directory.
    name: String,
}

impl KeyedContext {
    fn new(
        cfg: &TaskConfig,
        key: &KeyBySpec,
        range: KeyGroupRange,
    ) -> Result<KeyedContext, RuntimeError> {
        let checkpoint_dir = cfg.checkpoint_dir.clone().ok_or_else(|| {
            RuntimeError::InvalidJob(
                "a keyed stage needs execution.checkpointing.dir (default: <high-availability.storageDir>/<cluster-id>/checkpoints), and neither is set".into(),
            )
        })?;
        Ok(KeyedContext {
            backend: HeapKeyedStateBackend::new(range),
            key: key.clone(),
            key_buf: String::with_capacity(64),
            checkpoint_dir,
            job_id: cfg.job_id.clone(),
            job_dir: job_dir_name(&cfg.job_id, &cfg.run_id.to_string()),
            name: format!(
                "stage-{}-subtask-{}",
                cfg.exchange.stage, cfg.exchange.index
            ),
        })
    }

    /// Restores the key groups it owns from `handles` (the others' groups are skipped).
    async fn restore(&mut self, handles: &[KeyedStateHandle]) -> Result<(), RuntimeError> {
        if handles.is_empty() {
            return Ok(());
        }
        let started = Instant::now();
        let store = self.checkpoint_dir.store.clone();
        self.backend.restore(store.as_ref(), handles).await?;
        tracing::info!(job_id = %self.job_id, subtask = %self.name, files = handles.len(),
            range = %self.backend.key_group_range(), ms = started.elapsed().as_millis() as u64,
            "keyed state restored");
        Ok(())
    }

    /// Makes `record`'s key current, in `key_group` (the producer's partitioner found it): a
    /// group this subtask does not own is an error (a partitioner that disagrees with the
    /// plan), never a panic.
    #[inline]
    fn set_current_key(&mut self, record: &Record, key_group: u32) -> Result<(), RuntimeError> {
        let key = key_str(&self.key, record, &mut self.key_buf);
        self.backend.set_current_key(key.as_bytes(), key_group)?;
        Ok(())
    }

    /// The synchronous part of a snapshot: the backend encoded into the file's bytes, and
    /// where they go. (No borrow of the backend lives on while the file is written: it is not
    /// `Sync`.)
    fn snapshot(&self, checkpoint_id: u64) -> Result<PendingSnapshot, RuntimeError> {
        let started = Instant::now();
        let snapshot = self.backend.snapshot()?;
        Ok(PendingSnapshot {
            snapshot,
            location: snapshot_location(
                &self.checkpoint_dir,
                &self.job_dir,
                checkpoint_id,
                &self.name,
            ),
            started,
            sync: started.elapsed(),
        })
    }
}

/// A keyed state snapshot encoded and not yet written.
struct PendingSnapshot {
    snapshot: KeyedStateSnapshot,
    location: Location,
    started: Instant,
    /// How long the task loop waited for the encoding.
    sync: Duration,
}

impl PendingSnapshot {
    /// Writes the file (the task loop awaits it); its handle.
    async fn write(self) -> Result<KeyedStateHandle, RuntimeError> {
        let bytes = self.snapshot.len();
        let store = self.location.store.clone();
        let handle = self
            .snapshot
            .write(store.as_ref(), &self.location.path)
            .await?;
        tracing::debug!(file = %self.location.uri(), bytes, sync_ms = self.sync.as_millis() as u64,
            total_ms = self.started.elapsed().as_millis() as u64, "keyed state snapshot written");
        Ok(handle)
    }
}

/// A running subtask's parts.
struct Task {
    subtask: u32,
    index: u32,
    /// Its stage in the execution plan.
    stage: u32,
    chain: Chain,
    /// A keyed stage's state (`None` in a stage without a keyed input).
    keyed: Option<KeyedContext>,
    /// Keyed state snapshot files being written, each acknowledging its checkpoint when done.
    writes: tokio::task::JoinSet<()>,
    output: Output,
    events: mpsc::Sender<TaskEvent>,
    /// The chain's outputs of one batch (a source poll, an input buffer), reused.
    outputs: Vec<Record>,
    /// The text buffers of records written or sent, for the next ones read.
    pool: TextPool,
    processed: u64,
    /// When [`Task::progress`] last reported (see [`PROGRESS_INTERVAL`]).
    last_progress: tokio::time::Instant,
    /// The input ended and so did the output.
    finished: bool,
    /// `execution.buffer-timeout.interval`: partly filled buffers go out at least this often.
    flush: tokio::time::Interval,
}

impl Task {
    async fn run_source(
        &mut self,
        cfg: &TaskConfig,
        spec: &SourceSpec,
        mut source: Source,
        commands: &mut mpsc::Receiver<TaskCommand>,
    ) -> Result<(), RuntimeError> {
        let rate = match spec {
            SourceSpec::Sequence { rate, .. } => {
                rate.map(|r| (r / cfg.parallelism.max(1) as u64).max(1))
            }
            SourceSpec::TextFiles { .. } => None,
        };
        let tick = Duration::from_millis(10);
        let per_tick = match rate {
            Some(r) => ((r as f64 * tick.as_secs_f64()).ceil() as usize).clamp(1, cfg.batch),
            None => cfg.batch,
        };
        let mut interval = tokio::time::interval(tick);
        interval.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let limited = rate.is_some();
        let mut batch = Vec::with_capacity(per_tick);
        loop {
            tokio::select! {
                biased;
                cmd = commands.recv() => match cmd {
                    Some(TaskCommand::Barrier(id)) => self.checkpoint(id, Some(source.snapshot())).await?,
                    Some(TaskCommand::Complete(id)) => self.complete(id).await?,
                    Some(TaskCommand::Stop) | None => return Ok(()),
                },
                _ = self.flush.tick(), if self.flushes() => self.flush_output().await?,
                _ = next_batch(&mut interval, limited), if !self.finished => {
                    batch.clear();
                    source.poll_reusing(per_tick, &mut batch, &mut self.pool).await.map_err(RuntimeError::Source)?;
                    for r in batch.drain(..) {
                        self.process(r, None)?;
                    }
                    self.emit_outputs().await?;
                    if source.finished() {
                        self.finish().await?;
                    } else if self.progress_due() {
                        // Awaited like every event: a full inbox slows the source, never loses one.
                        self.progress().await?;
                    }
                }
            }
        }
    }

    async fn run_consumer(
        &mut self,
        mut gate: InputGate,
        commands: &mut mpsc::Receiver<TaskCommand>,
    ) -> Result<(), RuntimeError> {
        let mut aligner = BarrierAligner::new(gate.num_channels());
        loop {
            tokio::select! {
                biased;
                cmd = commands.recv() => match cmd {
                    // The JobManager triggers a consumer only once its input ended.
                    Some(TaskCommand::Barrier(id)) if self.finished => self.checkpoint(id, None).await?,
                    Some(TaskCommand::Barrier(id)) => {
                        let reason = "a consumer still reading its input takes barriers from its channels only".to_string();
                        send(&self.events, TaskEvent::Declined { subtask: self.subtask, checkpoint_id: id, reason }).await?;
                    }
                    Some(TaskCommand::Complete(id)) => self.complete(id).await?,
                    Some(TaskCommand::Stop) | None => return Ok(()),
                },
                _ = self.flush.tick(), if self.flushes() => self.flush_output().await?,
                next = gate.next(), if !self.finished => match next? {
                    Some(item) => self.on_input(item, &gate, &mut aligner).await?,
                    None => self.finish().await?,
                },
            }
        }
    }

    /// One buffer or event from the input gate.
    async fn on_input(
        &mut self,
        item: BufferOrEvent,
        gate: &InputGate,
        aligner: &mut BarrierAligner,
    ) -> Result<(), RuntimeError> {
        let channel = item.channel;
        match item.content {
            Content::Buffer(buffer) => {
                for frame in buffer.record_slices() {
                    let (group, record) = decode_keyed(frame?, &mut self.pool).map_err(|e| {
                        RuntimeError::Operator {
                            operator: "keyed input".into(),
                            message: format!("channel {channel}: {e}"),
                        }
                    })?;
                    self.process(record, Some(group))?;
                }
                self.emit_outputs().await?;
                if self.progress_due() {
                    self.progress().await?;
                }
            }
            Content::Event(Event::CheckpointBarrier(b)) => {
                let alignment = aligner.on_barrier(channel, b.checkpoint_id);
                if let Some(abandoned) = alignment.abandoned {
                    let reason = format!(
                        "checkpoint {abandoned} was superseded by a newer barrier before it aligned"
                    );
                    let declined = TaskEvent::Declined {
                        subtask: self.subtask,
                        checkpoint_id: abandoned,
                        reason,
                    };
                    send(&self.events, declined).await?;
                }
                for c in alignment.release {
                    gate.resume_consumption(c);
                }
                if let Some(id) = alignment.aligned {
                    self.aligned(id, gate, aligner).await?;
                }
            }
            Content::Event(Event::EndOfPartition) => {
                if let Some(id) = aligner.on_end(channel) {
                    self.aligned(id, gate, aligner).await?;
                }
                if aligner.all_ended() && !self.finished {
                    self.finish().await?;
                }
            }
        }
        Ok(())
    }

    /// Every live channel delivered checkpoint `id`'s barrier: snapshot, forward, resume.
    async fn aligned(
        &mut self,
        id: u64,
        gate: &InputGate,
        aligner: &mut BarrierAligner,
    ) -> Result<(), RuntimeError> {
        self.checkpoint(id, None).await?;
        for c in aligner.take_blocked() {
            gate.resume_consumption(c);
        }
        Ok(())
    }

    /// Runs one record through the chain: what comes out goes into the sink at once, or waits
    /// in `outputs` for [`emit_outputs`](Self::emit_outputs) (the batch's one await). A keyed
    /// stage's record comes with its key group (from its frame).
    #[inline]
    fn process(&mut self, record: Record, key_group: Option<u32>) -> Result<(), RuntimeError> {
        self.processed += 1;
        let keyed = match (&mut self.keyed, key_group) {
            (Some(k), Some(group)) => {
                k.set_current_key(&record, group)?;
                Some(&mut k.backend)
            }
            (Some(_), None) => {
                return Err(RuntimeError::InvalidJob(
                    "a keyed stage's record without its key group".into(),
                ));
            }
            (None, _) => None,
        };
        self.chain.process(record, keyed, &mut self.outputs)?;
        if let Output::Sink(sink) = &mut self.output {
            for out in self.outputs.drain(..) {
                sink.write_record(&out);
                self.pool.recycle(out);
            }
        }
        Ok(())
    }

    /// Sends a batch's outputs on to the subtasks owning their keys (waits while one of them
    /// back-pressures).
    async fn emit_outputs(&mut self) -> Result<(), RuntimeError> {
        if let Output::Keyed(partition) = &mut self.output {
            for out in self.outputs.drain(..) {
                partition.emit(&out).await?;
                self.pool.recycle(out);
            }
        }
        Ok(())
    }

    fn flushes(&self) -> bool {
        !self.finished && matches!(self.output, Output::Keyed(_))
    }

    async fn flush_output(&mut self) -> Result<(), RuntimeError> {
        if let Output::Keyed(p) = &mut self.output {
            p.partition.flush_all().await?;
        }
        Ok(())
    }

    /// Snapshots for checkpoint `id` (phase one of the sink's commit), forwards the barrier
    /// downstream, encodes the keyed state (the only part the subtask waits for), and
    /// acknowledges with the state once its file is written. A snapshot that fails declines
    /// the checkpoint (the subtask goes on).
    async fn checkpoint(
        &mut self,
        id: u64,
        source: Option<SourceState>,
    ) -> Result<(), RuntimeError> {
        let sink = match &mut self.output {
            Output::Sink(sink) => Some(sink.snapshot(id).await?),
            Output::Keyed(p) => {
                if !self.finished {
                    let barrier = Event::CheckpointBarrier(CheckpointBarrier { checkpoint_id: id });
                    p.partition.broadcast_event(barrier).await?;
                }
                None
            }
        };
        let mut state = SubtaskState {
            source,
            operators: self.chain.snapshot(),
            sink,
            index: Some(self.index),
            stage: Some(self.stage),
            keyed: Vec::new(),
        };
        let subtask = self.subtask;
        let pending = match self.keyed.as_ref().map(|k| k.snapshot(id)) {
            None => return send(&self.events, acknowledge(subtask, id, &state)).await,
            Some(Err(e)) => return send(&self.events, decline(subtask, id, &e)).await,
            Some(Ok(pending)) => pending,
        };
        // The file is written while the subtask goes on; the acknowledgement follows it.
        // Dropping the task (stop, failure) aborts a write under way: its checkpoint never
        // completes, and the cleaner deletes what it left.
        while self.writes.try_join_next().is_some() {}
        let events = self.events.clone();
        self.writes.spawn(async move {
            let event = match pending.write().await {
                Ok(handle) => {
                    state.keyed = vec![handle];
                    acknowledge(subtask, id, &state)
                }
                Err(e) => decline(subtask, id, &e),
            };
            // A closed inbox: the job master is gone, and so is the checkpoint.
            let _ = events.send(event).await;
        });
        Ok(())
    }

    /// Checkpoint `id` completed: the sink commits.
    async fn complete(&mut self, id: u64) -> Result<(), RuntimeError> {
        if let Output::Sink(sink) = &mut self.output {
            sink.notify_complete(id).await?;
        }
        send(
            &self.events,
            TaskEvent::Committed {
                subtask: self.subtask,
                checkpoint_id: id,
            },
        )
        .await
    }

    /// The input ended: the output ends too (end of partition downstream), and the job master
    /// hears it.
    async fn finish(&mut self) -> Result<(), RuntimeError> {
        if let Output::Keyed(p) = &mut self.output {
            p.partition.finish().await?;
        }
        self.finished = true;
        self.progress().await?;
        send(
            &self.events,
            TaskEvent::Finished {
                subtask: self.subtask,
            },
        )
        .await
    }

    /// [`PROGRESS_INTERVAL`] has passed since the last report (which this one then is).
    fn progress_due(&mut self) -> bool {
        let now = tokio::time::Instant::now();
        if now.duration_since(self.last_progress) < PROGRESS_INTERVAL {
            return false;
        }
        self.last_progress = now;
        true
    }

    /// Reports the records processed so far. (Holds no borrow of the task while it waits:
    /// the keyed backend in it is not `Sync`.)
    fn progress(&self) -> impl std::future::Future<Output = Result<(), RuntimeError>> + use<> {
        let events = self.events.clone();
        let event = TaskEvent::Progress {
            subtask: self.subtask,
            records: self.processed,
        };
        async move { send(&events, event).await }
    }
}

/// How often a subtask reports its records processed while records flow: often enough for a
/// live records/s, rare enough to cost nothing on the control stream.
const PROGRESS_INTERVAL: Duration = Duration::from_secs(1);

/// The acknowledgement of checkpoint `id` with `state` (a state that does not serialize
/// declines the checkpoint).
fn acknowledge(subtask: u32, id: u64, state: &SubtaskState) -> TaskEvent {
    match serde_json::to_value(state) {
        Ok(state) => TaskEvent::Ack {
            subtask,
            checkpoint_id: id,
            state,
        },
        Err(e) => decline(
            subtask,
            id,
            &RuntimeError::bad_state(format!("checkpoint {id}: subtask state"), e),
        ),
    }
}

/// Declines checkpoint `id`: its snapshot failed (the subtask goes on).
fn decline(subtask: u32, id: u64, error: &RuntimeError) -> TaskEvent {
    TaskEvent::Declined {
        subtask,
        checkpoint_id: id,
        reason: format!("the snapshot failed: {error}"),
    }
}

/// Reports `event`; a closed inbox means the job master (or the session) is gone, which ends
/// the subtask.
async fn send(events: &mpsc::Sender<TaskEvent>, event: TaskEvent) -> Result<(), RuntimeError> {
    events
        .send(event)
        .await
        .map_err(|_| RuntimeError::JobMasterGone)
}

/// When the source may emit its next batch: on the next tick when rate-limited, else as soon as
/// the runtime has run whatever else is ready.
async fn next_batch(interval: &mut tokio::time::Interval, limited: bool) {
    if limited {
        interval.tick().await;
    } else {
        tokio::task::yield_now().await;
    }
}

/// Parses a subtask's state from checkpoint metadata.
pub fn subtask_state(value: &serde_json::Value) -> Result<SubtaskState, RuntimeError> {
    serde_json::from_value(value.clone())
        .map_err(|e| RuntimeError::bad_state("subtask state", format!("unreadable: {e}")))
}

/// The keyed handles a subtask of `stage` owning `range` restores from, out of a checkpoint's
/// subtasks (`subtasks` as in its metadata): every file of that stage whose key groups overlap
/// `range`, whichever subtask (of whichever parallelism) wrote it.
pub fn keyed_handles(
    subtasks: &std::collections::BTreeMap<u32, serde_json::Value>,
    stage: u32,
    range: KeyGroupRange,
) -> Result<Vec<KeyedStateHandle>, RuntimeError> {
    let mut handles = Vec::new();
    for value in subtasks.values() {
        let state = subtask_state(value)?;
        if state.stage.unwrap_or(0) != stage {
            continue;
        }
        handles.extend(
            state
                .keyed
                .into_iter()
                .filter(|h| h.key_group_range.intersection(&range).is_some()),
        );
    }
    Ok(handles)
}

/// The sink states of a checkpoint's subtasks (`subtasks` as in its metadata), by the sink
/// subtask's index (what its files are named by).
pub fn sink_states(
    subtasks: &std::collections::BTreeMap<u32, serde_json::Value>,
) -> Result<std::collections::BTreeMap<u32, SinkState>, RuntimeError> {
    let mut states = std::collections::BTreeMap::new();
    for (vertex, value) in subtasks {
        let state = subtask_state(value)?;
        if let Some(sink) = state.sink {
            states.insert(state.index.unwrap_or(*vertex), sink);
        }
    }
    Ok(states)
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;
    use std::sync::Arc;

    use super::*;
    use crate::job::key_groups;
    use crate::storage::local::LocalStore;
    use crate::taskmanager::exchange::KeyedInput;

    /// Subtask `index` of a keyed stage 1 (`count` after `key-by: line`) at `parallelism`.
    fn keyed_config(dir: &str, parallelism: u32, index: u32) -> TaskConfig {
        let local = |path: String| Location {
            store: Arc::new(LocalStore),
            path,
        };
        TaskConfig {
            job_id: "wc".into(),
            run_id: RunId::for_legacy_job("wc"),
            subtask: parallelism + index,
            attempt: 0,
            parallelism,
            pipeline: vec![Step::Count],
            sink_dir: local(format!("{dir}/out")),
            checkpoint_dir: Some(local(format!("{dir}/checkpoints"))),
            batch: 1,
            exchange: Exchange {
                stage: 1,
                index,
                attempt: 0,
                input: Some(KeyedInput {
                    key: KeyBySpec::Line,
                    max_parallelism: 128,
                    producers: Vec::new(),
                }),
                output: None,
            },
        }
    }

    fn keyed(cfg: &TaskConfig) -> (KeyedContext, Chain) {
        let range = cfg.exchange.key_groups(cfg.parallelism).unwrap();
        let k = KeyedContext::new(cfg, &KeyBySpec::Line, range).unwrap();
        (
            k,
            Chain::from_stage(&cfg.pipeline, Some(&KeyBySpec::Line)).unwrap(),
        )
    }

    /// Counts `word` once more; the count it reaches.
    fn count(k: &mut KeyedContext, chain: &mut Chain, word: &str) -> Result<String, RuntimeError> {
        let record = Record::Text(word.into());
        k.set_current_key(
            &record,
            key_groups::assign_to_key_group(word.as_bytes(), 128),
        )?;
        let mut out = Vec::new();
        chain.process(record, Some(&mut k.backend), &mut out)?;
        Ok(out[0].to_line())
    }

    #[tokio::test]
    async fn a_snapshot_file_restores_into_subtasks_of_another_parallelism_each_its_groups() {
        let dir = std::env::temp_dir().join(format!("yarnflow-task-keyed-{}", std::process::id()));
        let d = dir.display().to_string();
        let words: Vec<String> = (0..2_000).map(|i| format!("w{i}")).collect();
        // One subtask owns every key group: each word counted i % 3 + 1 times.
        let (mut k, mut chain) = keyed(&keyed_config(&d, 1, 0));
        for (i, w) in words.iter().enumerate() {
            for _ in 0..=i % 3 {
                count(&mut k, &mut chain, w).unwrap();
            }
        }
        let handle = k.snapshot(7).unwrap().write().await.unwrap();
        assert_eq!(
            handle.path,
            format!("{d}/checkpoints/wc-wc/chk-7/stage-1-subtask-0")
        );
        let state = SubtaskState {
            stage: Some(1),
            keyed: vec![handle.clone()],
            ..SubtaskState::empty()
        };
        // The checkpoint's metadata: a source subtask of stage 0 and the keyed one.
        let subtasks = BTreeMap::from([
            (0, serde_json::to_value(SubtaskState::empty()).unwrap()),
            (1, serde_json::to_value(&state).unwrap()),
        ]);
        // Rescaled to 2: each subtask takes the file (it overlaps both) and restores only the
        // groups it owns.
        let mut restored = 0;
        for index in 0..2 {
            let cfg = keyed_config(&d, 2, index);
            let range = cfg.exchange.key_groups(2).unwrap();
            let handles = keyed_handles(&subtasks, 1, range).unwrap();
            assert_eq!(handles, vec![handle.clone()]);
            assert!(keyed_handles(&subtasks, 0, range).unwrap().is_empty());
            let (mut k, mut chain) = keyed(&cfg);
            k.restore(&handles).await.unwrap();
            let entries = k.backend.entries("count-0").unwrap();
            restored += entries;
            for (i, w) in words.iter().enumerate() {
                let group = key_groups::assign_to_key_group(w.as_bytes(), 128);
                let counted = count(&mut k, &mut chain, w);
                if range.contains(group) {
                    assert_eq!(counted.unwrap(), format!("{w},{}", i % 3 + 2));
                } else {
                    // A key routed to the wrong subtask is an error naming the key group.
                    let e = counted.unwrap_err().to_string();
                    assert!(
                        e.starts_with(&format!("keyed state: key group {group} ")),
                        "{e}"
                    );
                }
            }
            assert!(entries > 0 && entries < words.len() as u64);
        }
        assert_eq!(restored, words.len() as u64);
        // A missing file is one error naming it.
        std::fs::remove_file(&handle.path).unwrap();
        let (mut k, _) = keyed(&keyed_config(&d, 1, 0));
        let e = k
            .restore(std::slice::from_ref(&handle))
            .await
            .unwrap_err()
            .to_string();
        assert!(e.contains(&handle.path), "{e}");
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn a_rescaled_subtask_gets_every_file_overlapping_its_key_groups() {
        // Written at parallelism 2 (groups 0..=63, 64..=127), restored at parallelism 3.
        let file = |index: u32| {
            let range = key_groups::key_group_range_for_operator(128, 2, index);
            let state = SubtaskState {
                stage: Some(1),
                index: Some(index),
                keyed: vec![KeyedStateHandle {
                    path: format!("chk-3/stage-1-subtask-{index}"),
                    length: 1,
                    checksum: 0,
                    key_group_range: range,
                }],
                ..SubtaskState::empty()
            };
            (2 + index, serde_json::to_value(state).unwrap())
        };
        let subtasks = BTreeMap::from([file(0), file(1)]);
        let paths = |index: u32| -> Vec<String> {
            let range = key_groups::key_group_range_for_operator(128, 3, index);
            keyed_handles(&subtasks, 1, range)
                .unwrap()
                .into_iter()
                .map(|h| h.path)
                .collect()
        };
        assert_eq!(paths(0), vec!["chk-3/stage-1-subtask-0"]);
        assert_eq!(
            paths(1),
            vec!["chk-3/stage-1-subtask-0", "chk-3/stage-1-subtask-1"]
        );
        assert_eq!(paths(2), vec!["chk-3/stage-1-subtask-1"]);
        // Unreadable metadata is an error, not a panic.
        let bad = BTreeMap::from([(0, serde_json::json!({"keyed": 7}))]);
        assert!(keyed_handles(&bad, 1, KeyGroupRange::new(0, 127)).is_err());
    }

    #[test]
    fn a_keyed_stage_without_a_checkpoint_dir_is_refused_at_start() {
        let cfg = TaskConfig {
            checkpoint_dir: None,
            ..keyed_config("/nowhere", 1, 0)
        };
        let range = cfg.exchange.key_groups(1).unwrap();
        let Err(e) = KeyedContext::new(&cfg, &KeyBySpec::Line, range) else {
            panic!("refused")
        };
        assert!(e.to_string().contains("execution.checkpointing.dir"), "{e}");
    }
}
