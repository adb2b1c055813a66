//! [`Record`]: what flows between a subtask's operators and over the keyed exchange, with the
//! exchange's byte codec.

use std::fmt::Write as _;

/// One record: a number (sequence source), a line of text (text-files source), or a value of
/// a user's type in its postcard encoding (user operators).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Record {
    Int(i64),
    Text(String),
    Data(Vec<u8>),
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
            Record::Int(n) => n.to_string(),
            Record::Text(t) => t.clone(),
            Record::Data(d) => d
                .iter()
                .fold(String::with_capacity(d.len() * 2), |mut s, b| {
                    let _ = write!(s, "{b:02x}");
                    s
                }),
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
        let (&tag, payload) = frame.split_first().ok_or(RecordDecodeError::Empty)?;
        match tag {
            TAG_INT => payload
                .try_into()
                .map(|b| Record::Int(i64::from_le_bytes(b)))
                .map_err(|_| RecordDecodeError::IntLength(payload.len())),
            TAG_TEXT => std::str::from_utf8(payload)
                .map(|t| Record::Text(t.to_owned()))
                .map_err(RecordDecodeError::NotUtf8),
            TAG_DATA => Ok(Record::Data(payload.to_vec())),
            other => Err(RecordDecodeError::UnknownTag(other)),
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
    }
}
