//! The wire protocol between TaskManagers' data connections (Flink's `NettyMessage`).
//!
//! A frame is a 4-byte big-endian length, then that many bytes: a message type (u8), the
//! receiver id (u32 big-endian: the consumer's input channel on this connection, chosen by the
//! client; `u32::MAX` for the connection itself) and the payload, all integers big-endian:
//!
//! | type | message | direction | payload |
//! |---|---|---|---|
//! | 1 | `PartitionRequest` | client → server | credit u32, consumer subtask u32, attempt u32, producer vertex u32, producer subtask u32, job id (u16 length + UTF-8) |
//! | 2 | `AddCredit` | client → server | credit u32 |
//! | 3 | `ResumeConsumption` | client → server | — |
//! | 4 | `CancelPartitionRequest` | client → server | — |
//! | 16 | `Buffer` | server → client | backlog u32, then the buffer (length-prefixed records) |
//! | 17 | `Event` | server → client | the event (tag u8: 1 barrier + checkpoint id u64, 2 end of partition) |
//! | 18 | `Error` | either way | UTF-8 message |
//!
//! A frame longer than `taskmanager.network.max-frame-size`, an unknown type or a payload that
//! does not parse is a protocol violation: the decoder says which, and the connection closes.

use bytes::{Buf, BufMut, Bytes, BytesMut};
use tokio_util::codec::{Decoder, Encoder};

use super::error::NetworkError;
use super::event::Event;
use super::ids::{ChannelId, ResultPartitionId};

/// The consumer's input channel on one connection, chosen by the client.
pub(crate) type ReceiverId = u32;

/// The receiver id of messages about the whole connection.
pub(crate) const CONNECTION: ReceiverId = u32::MAX;

const HEADER: usize = 1 + 4;
const MAX_JOB_ID: usize = 1024;

#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Message {
    PartitionRequest {
        receiver: ReceiverId,
        channel: ChannelId,
        credit: u32,
    },
    AddCredit {
        receiver: ReceiverId,
        credit: u32,
    },
    ResumeConsumption {
        receiver: ReceiverId,
    },
    CancelPartitionRequest {
        receiver: ReceiverId,
    },
    Buffer {
        receiver: ReceiverId,
        backlog: u32,
        data: Bytes,
    },
    Event {
        receiver: ReceiverId,
        event: Event,
    },
    Error {
        receiver: ReceiverId,
        message: String,
    },
}

/// Why a frame could not be read.
#[derive(Debug)]
pub(crate) enum FrameError {
    Io(std::io::Error),
    /// Not our protocol: what is wrong.
    Invalid(String),
}

impl FrameError {
    /// The connection error this is, on the connection with `peer`.
    pub(crate) fn with_peer(self, peer: std::net::SocketAddr) -> NetworkError {
        match self {
            FrameError::Io(e) => NetworkError::ConnectionLost {
                peer,
                detail: e.to_string(),
            },
            FrameError::Invalid(detail) => NetworkError::Protocol { peer, detail },
        }
    }
}

impl From<std::io::Error> for FrameError {
    fn from(e: std::io::Error) -> FrameError {
        FrameError::Io(e)
    }
}

/// Frames [`Message`]s in both directions (a length-delimited codec that parses the frame
/// and checks its length before reserving memory for it).
pub(crate) struct MessageCodec {
    max_frame_size: usize,
}

impl MessageCodec {
    pub(crate) fn new(max_frame_size: usize) -> MessageCodec {
        MessageCodec { max_frame_size }
    }
}

impl Decoder for MessageCodec {
    type Item = Message;
    type Error = FrameError;

    fn decode(&mut self, src: &mut BytesMut) -> Result<Option<Message>, FrameError> {
        if src.len() < 4 {
            return Ok(None);
        }
        let len = u32::from_be_bytes([src[0], src[1], src[2], src[3]]) as usize;
        if len > self.max_frame_size {
            return Err(FrameError::Invalid(format!(
                "frame of {len} bytes exceeds the maximum of {} (taskmanager.network.max-frame-size); first bytes {:02x?}",
                self.max_frame_size,
                &src[..src.len().min(8)]
            )));
        }
        if src.len() < 4 + len {
            src.reserve(4 + len - src.len());
            return Ok(None);
        }
        src.advance(4);
        parse(src.split_to(len).freeze())
            .map(Some)
            .map_err(FrameError::Invalid)
    }
}

fn parse(mut frame: Bytes) -> Result<Message, String> {
    if frame.len() < HEADER {
        return Err(format!(
            "frame of {} bytes is shorter than a message header",
            frame.len()
        ));
    }
    let kind = frame.get_u8();
    let receiver = frame.get_u32();
    let need = |frame: &Bytes, n: usize, what: &str| {
        if frame.len() < n {
            Err(format!(
                "{what} message with a payload of {} bytes, expected at least {n}",
                frame.len()
            ))
        } else {
            Ok(())
        }
    };
    let message = match kind {
        1 => {
            need(&frame, 22, "partition request")?;
            let credit = frame.get_u32();
            let consumer_subtask = frame.get_u32();
            let attempt = frame.get_u32();
            let producer_vertex = frame.get_u32();
            let producer_subtask = frame.get_u32();
            let len = frame.get_u16() as usize;
            if len != frame.len() || len > MAX_JOB_ID {
                return Err(format!(
                    "partition request with a job id of {len} bytes in {} remaining",
                    frame.len()
                ));
            }
            let job_id = std::str::from_utf8(&frame)
                .map_err(|_| "partition request with a job id that is not UTF-8".to_string())?
                .to_string();
            Message::PartitionRequest {
                receiver,
                credit,
                channel: ChannelId {
                    partition: ResultPartitionId {
                        job_id,
                        attempt,
                        producer_vertex,
                        producer_subtask,
                    },
                    consumer_subtask,
                },
            }
        }
        2 => {
            need(&frame, 4, "add-credit")?;
            Message::AddCredit {
                receiver,
                credit: frame.get_u32(),
            }
        }
        3 => Message::ResumeConsumption { receiver },
        4 => Message::CancelPartitionRequest { receiver },
        16 => {
            need(&frame, 4, "buffer")?;
            let backlog = frame.get_u32();
            Message::Buffer {
                receiver,
                backlog,
                data: frame,
            }
        }
        17 => Message::Event {
            receiver,
            event: Event::decode(&frame)?,
        },
        18 => Message::Error {
            receiver,
            message: String::from_utf8_lossy(&frame).into_owned(),
        },
        other => return Err(format!("unknown message type {other}")),
    };
    Ok(message)
}

impl Encoder<Message> for MessageCodec {
    type Error = FrameError;

    fn encode(&mut self, m: Message, dst: &mut BytesMut) -> Result<(), FrameError> {
        let start = dst.len();
        dst.put_u32(0); // the length, patched below
        let (kind, receiver) = match &m {
            Message::PartitionRequest { receiver, .. } => (1, receiver),
            Message::AddCredit { receiver, .. } => (2, receiver),
            Message::ResumeConsumption { receiver } => (3, receiver),
            Message::CancelPartitionRequest { receiver } => (4, receiver),
            Message::Buffer { receiver, .. } => (16, receiver),
            Message::Event { receiver, .. } => (17, receiver),
            Message::Error { receiver, .. } => (18, receiver),
        };
        dst.put_u8(kind);
        dst.put_u32(*receiver);
        match m {
            Message::PartitionRequest {
                channel, credit, ..
            } => {
                let p = &channel.partition;
                dst.put_u32(credit);
                dst.put_u32(channel.consumer_subtask);
                dst.put_u32(p.attempt);
                dst.put_u32(p.producer_vertex);
                dst.put_u32(p.producer_subtask);
                let job = p.job_id.as_bytes();
                let job = &job[..job.len().min(MAX_JOB_ID)];
                dst.put_u16(job.len() as u16);
                dst.extend_from_slice(job);
            }
            Message::AddCredit { credit, .. } => dst.put_u32(credit),
            Message::Buffer { backlog, data, .. } => {
                dst.put_u32(backlog);
                dst.extend_from_slice(&data);
            }
            Message::Event { event, .. } => event.encode(dst),
            Message::Error { message, .. } => dst.extend_from_slice(message.as_bytes()),
            Message::ResumeConsumption { .. } | Message::CancelPartitionRequest { .. } => {}
        }
        let len = dst.len() - start - 4;
        if len > self.max_frame_size {
            dst.truncate(start);
            return Err(FrameError::Invalid(format!(
                "refusing to send a frame of {len} bytes (taskmanager.network.max-frame-size is {})",
                self.max_frame_size
            )));
        }
        dst[start..start + 4].copy_from_slice(&(len as u32).to_be_bytes());
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::network::event::CheckpointBarrier;

    fn round_trip(m: Message) {
        let mut codec = MessageCodec::new(1 << 20);
        let mut buf = BytesMut::new();
        codec.encode(m.clone(), &mut buf).unwrap();
        // Byte by byte: a partial frame is not an error.
        let mut partial = BytesMut::new();
        for (i, b) in buf.iter().enumerate() {
            partial.put_u8(*b);
            let got = codec.decode(&mut partial).unwrap();
            assert_eq!(got.is_some(), i == buf.len() - 1);
            if let Some(got) = got {
                assert_eq!(got, m);
            }
        }
    }

    #[test]
    fn every_message_round_trips() {
        let channel = ChannelId {
            partition: ResultPartitionId::new("job-1", 3, 2, 7),
            consumer_subtask: 5,
        };
        round_trip(Message::PartitionRequest {
            receiver: 9,
            channel,
            credit: 2,
        });
        round_trip(Message::AddCredit {
            receiver: 1,
            credit: 4,
        });
        round_trip(Message::ResumeConsumption { receiver: 1 });
        round_trip(Message::CancelPartitionRequest { receiver: 1 });
        round_trip(Message::Buffer {
            receiver: 2,
            backlog: 6,
            data: Bytes::from_static(b"\0\0\0\x01x"),
        });
        round_trip(Message::Event {
            receiver: 2,
            event: Event::CheckpointBarrier(CheckpointBarrier { checkpoint_id: 42 }),
        });
        round_trip(Message::Error {
            receiver: CONNECTION,
            message: "no".into(),
        });
    }

    fn decode_err(bytes: &[u8]) -> String {
        let mut codec = MessageCodec::new(1 << 20);
        let mut buf = BytesMut::from(bytes);
        match codec.decode(&mut buf) {
            Err(FrameError::Invalid(s)) => s,
            other => panic!("expected an invalid frame, got {other:?}"),
        }
    }

    #[test]
    fn garbage_is_named() {
        assert!(
            decode_err(b"GET / HTTP/1.1\r\n")
                .contains("frame of 1195725856 bytes exceeds the maximum of 1048576")
        );
        assert!(decode_err(&[0, 0, 0, 5, 99, 0, 0, 0, 1]).contains("unknown message type 99"));
        assert!(decode_err(&[0, 0, 0, 2, 1, 0]).contains("shorter than a message header"));
        assert!(
            decode_err(&[0, 0, 0, 6, 2, 0, 0, 0, 1, 0])
                .contains("add-credit message with a payload of 1 bytes")
        );
        assert!(decode_err(&[0, 0, 0, 6, 17, 0, 0, 0, 1, 9]).contains("event tag 9"));
    }
}
