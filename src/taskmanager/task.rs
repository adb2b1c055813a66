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
//! of the sink's commit) and acknowledges with that state; on a completion notice the sink
//! commits. When its input ends (a bounded source is exhausted, or every channel delivered its
//! end of partition) the task ends its own output and reports `Finished`, and keeps serving the
//! JobManager's barriers and notices, so the final checkpoint commits the tail, until it is
//! told to stop.

use std::time::Duration;

use serde::{Deserialize, Serialize};
use tokio::sync::mpsc;

use super::exchange::{BarrierAligner, Exchange, KeyedPartition, TaskNetwork};
use crate::job::graph::RunId;
use crate::job::operators::{Chain, OperatorState, Record};
use crate::job::sink::{FileSink, SinkState};
use crate::job::source::{Source, SourceState};
use crate::job::spec::{SourceSpec, Step};
use crate::jobmanager::error::RuntimeError;
use crate::network::{
    BufferOrEvent, CheckpointBarrier, Content, Event, InputChannelSpec, InputGate,
    PartitionLocation,
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
    /// Its stage's parallelism.
    pub parallelism: u32,
    /// Its stage's steps.
    pub pipeline: Vec<Step>,
    pub sink_dir: Location,
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
    /// Records processed so far (progress).
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
    let restore = restore.unwrap_or(SubtaskState {
        source: None,
        operators: Vec::new(),
        sink: None,
        index: None,
    });
    if let (Some(source), Some(state)) = (source.as_mut(), restore.source) {
        source.restore(state).map_err(RuntimeError::Source)?;
    }
    chain.restore(&restore.operators);
    // User operators open after the restore, with the keyed stage's state backend if any.
    chain.open(None)?;
    if let Output::Sink(sink) = &mut output {
        sink.restore(restore.sink.as_ref()).await?;
    }
    let flush_every = network.as_ref().map_or(Duration::from_millis(100), |n| {
        n.env.config().buffer_timeout
    });
    let mut task = Task {
        subtask: cfg.subtask,
        index,
        chain,
        output,
        events: events.clone(),
        outputs: Vec::new(),
        processed: 0,
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

/// A running subtask's parts.
struct Task {
    subtask: u32,
    index: u32,
    chain: Chain,
    output: Output,
    events: mpsc::Sender<TaskEvent>,
    /// The chain's outputs of one record, reused.
    outputs: Vec<Record>,
    processed: u64,
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
                    source.poll(per_tick, &mut batch).await.map_err(RuntimeError::Source)?;
                    for r in batch.drain(..) {
                        self.process(r).await?;
                    }
                    if source.finished() {
                        self.finish().await?;
                    } else if self.processed % 10_000 < per_tick as u64 {
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
                let before = self.processed;
                for frame in buffer.record_slices() {
                    let record = Record::decode(frame?).map_err(|e| RuntimeError::Operator {
                        operator: "keyed input".into(),
                        message: format!("channel {channel}: {e}"),
                    })?;
                    self.process(record).await?;
                }
                if self.processed / 10_000 != before / 10_000 {
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

    /// Runs one record through the chain and sends what comes out on.
    async fn process(&mut self, record: Record) -> Result<(), RuntimeError> {
        self.processed += 1;
        self.chain.process(record, None, &mut self.outputs)?;
        match &mut self.output {
            Output::Sink(sink) => {
                for out in self.outputs.drain(..) {
                    sink.write_line(&out.to_line());
                }
            }
            Output::Keyed(partition) => {
                for out in self.outputs.drain(..) {
                    partition.emit(&out).await?;
                }
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
    /// downstream, and acknowledges with the state.
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
        let state = SubtaskState {
            source,
            operators: self.chain.snapshot(),
            sink,
            index: Some(self.index),
        };
        let state = serde_json::to_value(&state)
            .map_err(|e| RuntimeError::bad_state(format!("checkpoint {id}: subtask state"), e))?;
        send(
            &self.events,
            TaskEvent::Ack {
                subtask: self.subtask,
                checkpoint_id: id,
                state,
            },
        )
        .await
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

    async fn progress(&self) -> Result<(), RuntimeError> {
        send(
            &self.events,
            TaskEvent::Progress {
                subtask: self.subtask,
                records: self.processed,
            },
        )
        .await
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
