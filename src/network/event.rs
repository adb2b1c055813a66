//! Events that travel in order with the data, and what an input gate yields.

use super::buffer::Buffer;

/// Flink's `CheckpointBarrier` for aligned checkpoints: every record emitted before it on a
/// channel arrives before it. Once a subpartition has handed out a barrier it sends nothing more
/// until its consumer resumes consumption (see the module docs).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct CheckpointBarrier {
    pub checkpoint_id: u64,
}

/// An in-band event.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Event {
    CheckpointBarrier(CheckpointBarrier),
    /// The producer finished this subpartition: nothing follows (Flink's `EndOfPartitionEvent`).
    EndOfPartition,
}

impl Event {
    const BARRIER: u8 = 1;
    const END_OF_PARTITION: u8 = 2;

    /// Whether handing this event out blocks its subpartition until the consumer resumes it
    /// (Flink's `DataType.isBlockingUpstream` of an aligned barrier).
    pub(crate) fn blocks_upstream(&self) -> bool {
        matches!(self, Event::CheckpointBarrier(_))
    }

    /// Wire form: a tag byte, then for a barrier its id as u64 big-endian.
    pub(crate) fn encode(&self, dst: &mut bytes::BytesMut) {
        use bytes::BufMut;
        match self {
            Event::CheckpointBarrier(b) => {
                dst.put_u8(Event::BARRIER);
                dst.put_u64(b.checkpoint_id);
            }
            Event::EndOfPartition => dst.put_u8(Event::END_OF_PARTITION),
        }
    }

    /// Parses [`Event::encode`]'s form; `Err` says what is wrong.
    pub(crate) fn decode(src: &[u8]) -> Result<Event, String> {
        match src {
            [Event::BARRIER, id @ ..] if id.len() == 8 => {
                let checkpoint_id = u64::from_be_bytes(id.try_into().expect("8 bytes"));
                Ok(Event::CheckpointBarrier(CheckpointBarrier {
                    checkpoint_id,
                }))
            }
            [Event::END_OF_PARTITION] => Ok(Event::EndOfPartition),
            [] => Err("empty event".into()),
            [tag, ..] => Err(format!(
                "event tag {tag} with {} bytes is not a barrier (1, 8 bytes) or end of partition (2)",
                src.len() - 1
            )),
        }
    }
}

/// What a buffer or event came with.
#[derive(Debug)]
pub enum Content {
    Buffer(Buffer),
    Event(Event),
}

/// One item from an input gate: which of its channels it came from, and what.
#[derive(Debug)]
pub struct BufferOrEvent {
    /// The input channel's index in the gate (the order the gate was created with).
    pub channel: usize,
    pub content: Content,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn events_round_trip_and_garbage_is_explained() {
        for e in [
            Event::EndOfPartition,
            Event::CheckpointBarrier(CheckpointBarrier {
                checkpoint_id: u64::MAX - 3,
            }),
        ] {
            let mut b = bytes::BytesMut::new();
            e.encode(&mut b);
            assert_eq!(Event::decode(&b), Ok(e));
        }
        assert!(
            Event::decode(&[1, 2])
                .unwrap_err()
                .contains("event tag 1 with 1 bytes")
        );
        assert!(Event::decode(&[]).is_err());
    }
}
