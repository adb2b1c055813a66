//! [`Record`]: what flows between a subtask's operators and over the keyed exchange, with the
//! exchange's byte codec.

/// One record: a number (sequence source), a line of text (text-files source), or a value of
/// a user's type in its postcard encoding (user operators).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Record {
    Int(i64),
    Text(String),
    Data(Vec<u8>),
}

/// The text buffers of records a subtask is done with (written to the sink, sent on), which its
/// next records' text goes into: no allocation per record once a batch has gone round. Holds
/// at most [`TextPool::MAX_BYTES`] of buffers; the rest are freed.
#[derive(Debug, Default)]
pub struct TextPool {
    buffers: Vec<String>,
    /// The buffers' capacity in all.
    bytes: usize,
}

impl TextPool {
    pub const MAX_BYTES: usize = 1 << 20;

    /// An empty buffer, reused if there is one.
    #[inline]
    pub fn take(&mut self) -> String {
        match self.buffers.pop() {
            Some(mut text) => {
                self.bytes -= text.capacity();
                text.clear();
                text
            }
            None => String::new(),
        }
    }

    /// Keeps `record`'s text buffer for [`take`](Self::take), if there is room.
    #[inline]
    pub fn recycle(&mut self, record: Record) {
        if let Record::Text(text) = record
            && self.bytes + text.capacity() <= Self::MAX_BYTES
        {
            self.bytes += text.capacity();
            self.buffers.push(text);
        }
    }
}

/// The tag bytes of [`Record::encode`].
const TAG_INT: u8 = 0;
const TAG_TEXT: u8 = 1;
const TAG_DATA: u8 = 2;

/// A frame that is no [`Record::encode`] output.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RecordDecodeError {
    #[error("an empty record frame (no tag byte)")]
    Empty,
    #[error("record frame with unknown tag {0}")]
    UnknownTag(u8),
    #[error("number record with {0} payload bytes instead of 8")]
    IntLength(usize),
    #[error("text record that is not UTF-8: {0}")]
    NotUtf8(std::str::Utf8Error),
    #[error("keyed record frame of {0} bytes, shorter than its 2-byte key group")]
    NoKeyGroup(usize),
}

impl Record {
    pub(crate) fn number(&self) -> Option<i64> {
        match self {
            Record::Int(n) => Some(*n),
            Record::Text(t) => t.trim().parse().ok(),
            Record::Data(_) => None,
        }
    }

    /// The line a sink writes. A [`Record::Data`] is written as lowercase hex of its encoding
    /// (lossy: a job whose sink should read well maps its values to text before the sink).
    pub fn to_line(&self) -> String {
        match self {
            Record::Text(t) => t.clone(),
            _ => {
                let mut line = Vec::new();
                self.write_line(&mut line);
                // Digits and hex digits: ASCII.
                String::from_utf8_lossy(&line).into_owned()
            }
        }
    }

    /// Appends [`to_line`](Self::to_line)'s bytes to `out` without building the line (the
    /// sink's hot path).
    pub fn write_line(&self, out: &mut Vec<u8>) {
        match self {
            Record::Int(n) => out.extend_from_slice(itoa::Buffer::new().format(*n).as_bytes()),
            Record::Text(t) => out.extend_from_slice(t.as_bytes()),
            Record::Data(d) => {
                const HEX: &[u8; 16] = b"0123456789abcdef";
                out.reserve(d.len() * 2);
                for b in d {
                    out.push(HEX[usize::from(b >> 4)]);
                    out.push(HEX[usize::from(b & 0xf)]);
                }
            }
        }
    }

    /// Appends the record's wire form to `out`: a tag byte, then the payload (a number as 8
    /// bytes little-endian, a text's UTF-8, a value's bytes). The frame around it (the network
    /// layer's length prefix) delimits it, so no length is written.
    pub fn encode(&self, out: &mut Vec<u8>) {
        match self {
            Record::Int(n) => {
                out.push(TAG_INT);
                out.extend_from_slice(&n.to_le_bytes());
            }
            Record::Text(t) => {
                out.push(TAG_TEXT);
                out.extend_from_slice(t.as_bytes());
            }
            Record::Data(d) => {
                out.push(TAG_DATA);
                out.extend_from_slice(d);
            }
        }
    }

    /// The record of one [`Record::encode`] frame.
    pub fn decode(frame: &[u8]) -> Result<Record, RecordDecodeError> {
        Record::decode_reusing(frame, &mut TextPool::default())
    }

    /// [`decode`](Self::decode) into a text buffer from `pool`.
    #[inline]
    pub fn decode_reusing(frame: &[u8], pool: &mut TextPool) -> Result<Record, RecordDecodeError> {
        let (&tag, payload) = frame.split_first().ok_or(RecordDecodeError::Empty)?;
        match tag {
            TAG_INT => payload
                .try_into()
                .map(|b| Record::Int(i64::from_le_bytes(b)))
                .map_err(|_| RecordDecodeError::IntLength(payload.len())),
            TAG_TEXT => std::str::from_utf8(payload)
                .map(|t| {
                    let mut text = pool.take();
                    text.push_str(t);
                    Record::Text(text)
                })
                .map_err(RecordDecodeError::NotUtf8),
            TAG_DATA => Ok(Record::Data(payload.to_vec())),
            other => Err(RecordDecodeError::UnknownTag(other)),
        }
    }

    /// The text buffer of a record done with (for a keyed aggregate's output line).
    pub fn into_text(self) -> Option<String> {
        match self {
            Record::Text(t) => Some(t),
            Record::Int(_) | Record::Data(_) => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn records_round_trip_and_garbage_is_an_error() {
        for r in [
            Record::Int(-7),
            Record::Int(i64::MAX),
            Record::Text(String::new()),
            Record::Text("héllo,1".into()),
            Record::Data(vec![]),
            Record::Data(vec![0, 255, 3]),
        ] {
            let mut frame = Vec::new();
            r.encode(&mut frame);
            assert_eq!(Record::decode(&frame), Ok(r));
        }
        assert_eq!(Record::decode(&[]), Err(RecordDecodeError::Empty));
        assert_eq!(
            Record::decode(&[9, 1]),
            Err(RecordDecodeError::UnknownTag(9))
        );
        assert_eq!(
            Record::decode(&[TAG_INT, 1, 2]),
            Err(RecordDecodeError::IntLength(2))
        );
        let e = Record::decode(&[TAG_TEXT, 0xff]).unwrap_err();
        assert!(e.to_string().contains("not UTF-8"), "{e}");
        assert_eq!(Record::Data(vec![0, 171]).to_line(), "00ab");
        assert_eq!(Record::Int(-42).to_line(), "-42");
        let mut line = b"x".to_vec();
        Record::Text("é".into()).write_line(&mut line);
        assert_eq!(line, "xé".as_bytes());
        // A reused buffer holds the frame's text only.
        let mut frame = Vec::new();
        Record::Text("ab".into()).encode(&mut frame);
        let mut pool = TextPool::default();
        pool.recycle(Record::Text("leftover".into()));
        pool.recycle(Record::Int(1));
        assert_eq!(
            Record::decode_reusing(&frame, &mut pool),
            Ok(Record::Text("ab".into()))
        );
        assert_eq!(pool.bytes, 0);
        // A pool holds at most MAX_BYTES of buffers.
        pool.recycle(Record::Text(String::with_capacity(TextPool::MAX_BYTES + 1)));
        assert_eq!((pool.buffers.len(), pool.bytes), (0, 0));
    }
}
