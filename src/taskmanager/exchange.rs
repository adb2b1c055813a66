//! A subtask's place in the keyed exchange: what the job master tells it about its stage's
//! edges ([`Exchange`]), where its records go ([`KeyedOutput`]'s partitioner), and how it
//! aligns checkpoint barriers over its input channels ([`BarrierAligner`]).
//!
//! The data plane itself is [`crate::network`]; this is the runtime's use of it, pure apart
//! from the partition writes.

use serde::{Deserialize, Serialize};

use crate::job::key_groups::{self, KeyGroupRange};
use crate::job::operators::{Record, RecordDecodeError, TextPool, key_of, key_str};
use crate::job::spec::KeyBySpec;
use crate::network::{NetworkEnvironment, ResultPartition, ResultPartitionId};

/// A TaskManager's data plane as its subtasks use it.
#[derive(Clone)]
pub struct TaskNetwork {
    pub env: std::sync::Arc<NetworkEnvironment>,
    /// The data address the TaskManager registered with (what consumers' deployments name it
    /// by): a producer there is read through a local channel.
    pub address: String,
}

impl std::fmt::Debug for TaskNetwork {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "TaskNetwork({})", self.address)
    }
}

/// A deployed subtask's stage and edges, as the job master's deployment describes them.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Exchange {
    /// The stage it runs (its position in the execution plan).
    pub stage: u32,
    /// Its subtask index within the stage (its source split, key groups and sink files).
    pub index: u32,
    /// The deployment round of the job: in every partition id, so that a producer of an
    /// earlier round never feeds a consumer of this one.
    pub attempt: u32,
    /// Keyed records come in from every subtask of the previous stage.
    pub input: Option<KeyedInput>,
    /// Records go out keyed to every subtask of the next stage.
    pub output: Option<KeyedOutput>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct KeyedInput {
    pub key: KeyBySpec,
    pub max_parallelism: u32,
    /// The data address (`host:port`) of each producer subtask's TaskManager, by producer
    /// index; a producer in this TaskManager (the same address) is read through a local
    /// channel.
    pub producers: Vec<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct KeyedOutput {
    pub key: KeyBySpec,
    pub max_parallelism: u32,
    /// The next stage's parallelism: one subpartition per consumer subtask.
    pub consumers: u32,
}

impl KeyedOutput {
    /// The consumer subtask that owns `record`'s key group.
    pub fn channel_of(&self, record: &Record) -> usize {
        self.route(record, &mut String::new()).1
    }

    /// `record`'s key group and the consumer subtask that owns it, with `buf` for a key the
    /// record does not hold as text (reused: no allocation per record).
    #[inline]
    pub fn route(&self, record: &Record, buf: &mut String) -> (u32, usize) {
        let key = key_str(&self.key, record, buf);
        let group = key_groups::assign_to_key_group(key.as_bytes(), self.max_parallelism);
        let channel =
            key_groups::operator_index_for_key_group(self.max_parallelism, self.consumers, group);
        (group, channel as usize)
    }
}

impl Exchange {
    /// A single-stage job's subtask: no edges.
    pub fn single(index: u32) -> Exchange {
        Exchange {
            index,
            ..Exchange::default()
        }
    }

    /// The partition this subtask produces, of `job_id`.
    pub fn output_partition(&self, job_id: &str) -> ResultPartitionId {
        ResultPartitionId::new(job_id, self.attempt, self.stage, self.index)
    }

    /// The partition of producer `producer` of the previous stage.
    pub fn input_partition(&self, job_id: &str, producer: u32) -> ResultPartitionId {
        ResultPartitionId::new(job_id, self.attempt, self.stage.saturating_sub(1), producer)
    }

    /// The key groups this subtask owns, in a keyed stage of `parallelism` subtasks.
    pub fn key_groups(&self, parallelism: u32) -> Option<KeyGroupRange> {
        self.input.as_ref().map(|i| {
            key_groups::key_group_range_for_operator(i.max_parallelism, parallelism, self.index)
        })
    }
}

/// The serialized key of `record` under `key` and its key group among `max_parallelism`.
pub fn key_and_group(key: &KeyBySpec, max_parallelism: u32, record: &Record) -> (String, u32) {
    let k = key_of(key, record);
    let group = key_groups::assign_to_key_group(k.as_bytes(), max_parallelism);
    (k, group)
}

/// A producer's result partition with its keyed partitioner (Flink's `KeyGroupStreamPartitioner`).
pub struct KeyedPartition {
    pub partition: ResultPartition,
    spec: KeyedOutput,
    /// A record's encoding, reused.
    scratch: Vec<u8>,
    /// A record's key, reused.
    key: String,
}

impl KeyedPartition {
    pub fn new(partition: ResultPartition, spec: KeyedOutput) -> KeyedPartition {
        KeyedPartition {
            partition,
            spec,
            scratch: Vec::with_capacity(256),
            key: String::with_capacity(64),
        }
    }

    /// Sends `record` to the subtask owning its key group (waits while that one back-pressures).
    pub async fn emit(&mut self, record: &Record) -> Result<(), crate::network::NetworkError> {
        let (group, channel) = self.spec.route(record, &mut self.key);
        self.scratch.clear();
        encode_keyed(group, record, &mut self.scratch);
        self.partition.emit(channel, &self.scratch).await
    }
}

/// A keyed record's frame: its key group (2 bytes little-endian; there are at most 2^15), then
/// its [`Record::encode`] form. The producer's partitioner hashed the key already, so the
/// consumer does not hash it again.
pub fn encode_keyed(key_group: u32, record: &Record, out: &mut Vec<u8>) {
    debug_assert!(key_group <= u32::from(u16::MAX));
    out.extend_from_slice(&(key_group as u16).to_le_bytes());
    record.encode(out);
}

/// The key group and record of an [`encode_keyed`] frame, the text in a buffer from `pool`.
#[inline]
pub fn decode_keyed(frame: &[u8], pool: &mut TextPool) -> Result<(u32, Record), RecordDecodeError> {
    let (group, record) = frame
        .split_first_chunk::<2>()
        .ok_or(RecordDecodeError::NoKeyGroup(frame.len()))?;
    let record = Record::decode_reusing(record, pool)?;
    Ok((u32::from(u16::from_le_bytes(*group)), record))
}

/// What one barrier means for the checkpoints being aligned; the caller acts on every field.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Alignment {
    /// A barrier of a newer checkpoint arrived before this older one aligned: it is abandoned
    /// (declined) and the newer one aligns from here (Flink's `SingleCheckpointBarrierHandler`).
    pub abandoned: Option<u64>,
    /// Channels to resume at once: blocked on an abandoned checkpoint's barrier, or on a stale
    /// one (of a checkpoint already aligned or abandoned).
    pub release: Vec<usize>,
    /// Every live channel delivered this checkpoint's barrier: snapshot, forward the barrier,
    /// then resume [`BarrierAligner::take_blocked`].
    pub aligned: Option<u64>,
}

/// Aligned checkpoints over a consumer's input channels: each channel that delivered the
/// pending checkpoint's barrier is blocked (the gate does it) until every channel not yet
/// ended has delivered it. A channel that ended counts as aligned for every later checkpoint.
#[derive(Debug, Clone)]
pub struct BarrierAligner {
    ended: Vec<bool>,
    blocked: Vec<bool>,
    /// The checkpoint being aligned.
    pending: Option<u64>,
    /// The newest checkpoint aligned or abandoned.
    last: Option<u64>,
}

impl BarrierAligner {
    pub fn new(channels: usize) -> BarrierAligner {
        BarrierAligner {
            ended: vec![false; channels],
            blocked: vec![false; channels],
            pending: None,
            last: None,
        }
    }

    /// Every channel delivered its end of partition: the input is finished.
    pub fn all_ended(&self) -> bool {
        self.ended.iter().all(|e| *e)
    }

    /// A barrier of `checkpoint_id` came on `channel` (which the gate now blocks).
    pub fn on_barrier(&mut self, channel: usize, checkpoint_id: u64) -> Alignment {
        let mut outcome = Alignment::default();
        if self.last.is_some_and(|l| checkpoint_id <= l)
            || self.pending.is_some_and(|p| checkpoint_id < p)
        {
            outcome.release.push(channel);
            return outcome;
        }
        if let Some(old) = self.pending.filter(|p| *p < checkpoint_id) {
            self.last = Some(old);
            outcome.abandoned = Some(old);
            outcome.release = self.take_blocked();
        }
        self.pending = Some(checkpoint_id);
        self.blocked[channel] = true;
        outcome.aligned = self.check();
        outcome
    }

    /// `channel` delivered its end of partition: it no longer holds back any alignment; the
    /// checkpoint it completes, if any.
    pub fn on_end(&mut self, channel: usize) -> Option<u64> {
        self.ended[channel] = true;
        self.blocked[channel] = false;
        self.check()
    }

    /// The channels blocked on a barrier (to resume), now unblocked here.
    pub fn take_blocked(&mut self) -> Vec<usize> {
        let blocked: Vec<usize> = (0..self.blocked.len())
            .filter(|c| self.blocked[*c])
            .collect();
        for c in &blocked {
            self.blocked[*c] = false;
        }
        blocked
    }

    fn check(&mut self) -> Option<u64> {
        let id = self.pending?;
        let aligned = self.blocked.iter().zip(&self.ended).all(|(b, e)| *b || *e);
        if aligned {
            self.pending = None;
            self.last = Some(id);
            Some(id)
        } else {
            None
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn aligned(id: u64) -> Alignment {
        Alignment {
            aligned: Some(id),
            ..Alignment::default()
        }
    }

    #[test]
    fn a_checkpoint_aligns_once_every_live_channel_delivered_its_barrier() {
        let mut a = BarrierAligner::new(3);
        let pending = Alignment::default();
        assert_eq!(a.on_barrier(0, 1), pending);
        assert_eq!(a.on_barrier(2, 1), pending);
        assert_eq!(a.on_barrier(1, 1), aligned(1));
        assert_eq!(a.take_blocked(), vec![0, 1, 2]);
        // A repeated or older barrier is stale: its channel goes on at once.
        assert_eq!(a.on_barrier(1, 1).release, vec![1]);
        // An ended channel counts as aligned, also for the checkpoint it ended during.
        assert_eq!(a.on_barrier(0, 2), pending);
        assert_eq!(a.on_end(1), None);
        assert_eq!(a.on_barrier(2, 2), aligned(2));
        assert_eq!(a.take_blocked(), vec![0, 2]);
        assert_eq!(a.on_barrier(0, 3), pending);
        assert_eq!(a.on_end(2), Some(3));
        assert!(!a.all_ended());
        assert_eq!(a.take_blocked(), vec![0]);
        assert_eq!(a.on_end(0), None);
        assert!(a.all_ended());
    }

    #[test]
    fn a_newer_barrier_abandons_the_older_checkpoint() {
        let mut a = BarrierAligner::new(2);
        assert_eq!(a.on_barrier(0, 4), Alignment::default());
        // Checkpoint 4 never aligned on channel 1 (it expired, or its leader died mid-trigger
        // and the next leader drew 5 from the counter); 5 comes there first.
        let superseded = a.on_barrier(1, 5);
        assert_eq!(
            superseded,
            Alignment {
                abandoned: Some(4),
                release: vec![0],
                aligned: None
            }
        );
        assert_eq!(a.on_barrier(1, 4).release, vec![1]);
        assert_eq!(a.on_barrier(0, 5), aligned(5));
        assert_eq!(a.take_blocked(), vec![0, 1]);
        // With one live channel the newer barrier aligns at once.
        let mut b = BarrierAligner::new(2);
        b.on_end(1);
        assert_eq!(b.on_barrier(0, 1), aligned(1));
    }

    #[test]
    fn records_go_to_the_owner_of_their_key_group() {
        let spec = KeyedOutput {
            key: KeyBySpec::Line,
            max_parallelism: 128,
            consumers: 3,
        };
        for word in ["a", "the", "zebra", "ünïcode", ""] {
            let r = Record::Text(word.into());
            let (k, group) = key_and_group(&spec.key, spec.max_parallelism, &r);
            assert_eq!(k, word);
            let owner = key_groups::assign_key_to_operator(word.as_bytes(), 128, 3);
            assert_eq!(spec.channel_of(&r), owner as usize);
            assert_eq!(
                key_groups::operator_index_for_key_group(128, 3, group),
                owner
            );
            // The consumer that owns it owns the group in its range.
            let consumer = Exchange {
                index: owner,
                input: Some(KeyedInput {
                    key: KeyBySpec::Line,
                    max_parallelism: 128,
                    producers: vec![],
                }),
                ..Exchange::default()
            };
            assert!(consumer.key_groups(3).unwrap().contains(group));
            // The group travels in the frame, as the partitioner found it.
            assert_eq!(spec.route(&r, &mut String::new()), (group, owner as usize));
            let mut frame = Vec::new();
            encode_keyed(group, &r, &mut frame);
            let decoded = decode_keyed(&frame, &mut TextPool::default());
            assert_eq!(decoded, Ok((group, r)));
        }
        assert_eq!(
            decode_keyed(&[7], &mut TextPool::default()),
            Err(RecordDecodeError::NoKeyGroup(1))
        );
        let e = Exchange {
            stage: 1,
            index: 2,
            attempt: 7,
            ..Exchange::default()
        };
        assert_eq!(
            e.input_partition("j", 0),
            ResultPartitionId::new("j", 7, 0, 0)
        );
        assert_eq!(
            e.output_partition("j"),
            ResultPartitionId::new("j", 7, 1, 2)
        );
    }
}
