//! Network buffers and the record format inside them.
//!
//! A buffer is a batch of records, each a 4-byte big-endian length followed by that many bytes
//! (as Flink's record serializer writes them). Records never span buffers: one that does not fit
//! the current buffer starts the next, and one larger than a segment gets a buffer of its own, so
//! the consumer reads every record as a slice of the buffer it came in, without copying.

use std::sync::Arc;

use bytes::{BufMut, Bytes, BytesMut};

use super::error::NetworkError;

/// Bytes of the length prefix before each record.
pub const LENGTH_PREFIX: usize = 4;

/// Whoever lent a buffer's memory and wants to know when it is free again: the input gate
/// (a credit to return) or a local producer's subpartition (a slot to free).
pub(crate) trait BufferRecycler: Send + Sync {
    fn recycle(&self, channel: usize, floating: bool);
}

/// Returns a buffer's memory to its lender when dropped.
pub(crate) struct Recycler {
    pub(crate) target: Arc<dyn BufferRecycler>,
    pub(crate) channel: usize,
    /// Whether the buffer used one of the gate's floating credits rather than an exclusive one.
    pub(crate) floating: bool,
}

impl Drop for Recycler {
    fn drop(&mut self) {
        self.target.recycle(self.channel, self.floating);
    }
}

/// A buffer of length-prefixed records, received from a channel. Dropping it gives its credit
/// back (Flink's `recycleBuffer`), so a consumer holding buffers holds back its producers.
/// A record slice from [`Buffer::records`] keeps the memory alive but not the credit.
pub struct Buffer {
    data: Bytes,
    _recycler: Option<Recycler>,
}

impl std::fmt::Debug for Buffer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Buffer({} bytes)", self.data.len())
    }
}

impl Buffer {
    pub(crate) fn new(data: Bytes, recycler: Option<Recycler>) -> Buffer {
        Buffer {
            data,
            _recycler: recycler,
        }
    }

    /// The raw contents: length-prefixed records.
    pub fn data(&self) -> &Bytes {
        &self.data
    }

    pub fn len(&self) -> usize {
        self.data.len()
    }

    pub fn is_empty(&self) -> bool {
        self.data.is_empty()
    }

    /// The records, each a `Bytes` slice of this buffer (no copy).
    pub fn records(&self) -> RecordDeserializer {
        RecordDeserializer {
            data: self.data.clone(),
            pos: 0,
        }
    }

    /// The records as borrowed slices: cheaper than [`Buffer::records`] (no reference count
    /// per record) when the caller only reads them.
    pub fn record_slices(&self) -> RecordSlices<'_> {
        RecordSlices {
            data: &self.data,
            pos: 0,
        }
    }
}

/// The next record of `data` at `pos`: its range, or the corruption found.
#[inline]
fn next_record(data: &[u8], pos: usize) -> Option<Result<(usize, usize), NetworkError>> {
    let rest = data.len() - pos;
    if rest == 0 {
        return None;
    }
    let corrupt = |len| {
        Some(Err(NetworkError::CorruptBuffer {
            offset: pos,
            len,
            size: data.len(),
        }))
    };
    if rest < LENGTH_PREFIX {
        return corrupt(rest);
    }
    let len = u32::from_be_bytes([data[pos], data[pos + 1], data[pos + 2], data[pos + 3]]) as usize;
    if len > rest - LENGTH_PREFIX {
        return corrupt(len);
    }
    let start = pos + LENGTH_PREFIX;
    Some(Ok((start, start + len)))
}

/// Iterates a buffer's records as `Bytes` slices (Flink's record deserializer, minus spanning
/// records). After an error it yields nothing more.
pub struct RecordDeserializer {
    data: Bytes,
    pos: usize,
}

impl Iterator for RecordDeserializer {
    type Item = Result<Bytes, NetworkError>;

    #[inline]
    fn next(&mut self) -> Option<Self::Item> {
        match next_record(&self.data, self.pos)? {
            Ok((start, end)) => {
                self.pos = end;
                Some(Ok(self.data.slice(start..end)))
            }
            Err(e) => {
                self.pos = self.data.len();
                Some(Err(e))
            }
        }
    }
}

/// Iterates a buffer's records as borrowed slices. After an error it yields nothing more.
pub struct RecordSlices<'a> {
    data: &'a [u8],
    pos: usize,
}

impl<'a> Iterator for RecordSlices<'a> {
    type Item = Result<&'a [u8], NetworkError>;

    #[inline]
    fn next(&mut self) -> Option<Self::Item> {
        match next_record(self.data, self.pos)? {
            Ok((start, end)) => {
                self.pos = end;
                Some(Ok(&self.data[start..end]))
            }
            Err(e) => {
                self.pos = self.data.len();
                Some(Err(e))
            }
        }
    }
}

/// Appends length-prefixed records into one buffer of at most a segment (Flink's
/// `BufferBuilder`). The producer keeps one per subpartition.
#[derive(Debug)]
pub(crate) struct BufferBuilder {
    data: BytesMut,
    segment_size: usize,
}

impl BufferBuilder {
    pub(crate) fn new(segment_size: usize) -> BufferBuilder {
        BufferBuilder {
            data: BytesMut::new(),
            segment_size,
        }
    }

    /// Whether `len` more bytes of record fit without passing the segment size (an empty
    /// buffer takes any record: a large one travels alone).
    #[inline]
    pub(crate) fn fits(&self, len: usize) -> bool {
        self.data.is_empty() || self.data.len() + LENGTH_PREFIX + len <= self.segment_size
    }

    /// Whether no further record, even an empty one, fits.
    #[inline]
    pub(crate) fn is_full(&self) -> bool {
        self.data.len() + LENGTH_PREFIX > self.segment_size
    }

    #[inline]
    pub(crate) fn append(&mut self, record: &[u8]) {
        if self.data.capacity() == 0 {
            // Allocated on first use, so an idle subpartition costs no segment.
            self.data =
                BytesMut::with_capacity(self.segment_size.max(LENGTH_PREFIX + record.len()));
        }
        self.data.put_u32(record.len() as u32);
        self.data.extend_from_slice(record);
    }

    pub(crate) fn is_empty(&self) -> bool {
        self.data.is_empty()
    }

    /// The finished buffer; the builder starts an empty one.
    pub(crate) fn finish(&mut self) -> Bytes {
        std::mem::take(&mut self.data).freeze()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn built(records: &[&[u8]], segment: usize) -> Vec<Bytes> {
        let mut b = BufferBuilder::new(segment);
        let mut out = Vec::new();
        for r in records {
            if !b.fits(r.len()) {
                out.push(b.finish());
            }
            b.append(r);
            if b.is_full() {
                out.push(b.finish());
            }
        }
        if !b.is_empty() {
            out.push(b.finish());
        }
        out
    }

    #[test]
    fn records_round_trip_without_spanning_buffers() {
        let records: Vec<Vec<u8>> = (0..100u32)
            .map(|i| vec![i as u8; (i % 7) as usize])
            .collect();
        let refs: Vec<&[u8]> = records.iter().map(|r| r.as_slice()).collect();
        let buffers = built(&refs, 64);
        assert!(buffers.iter().all(|b| b.len() <= 64));
        let mut back = Vec::new();
        for data in buffers {
            let buffer = Buffer::new(data, None);
            let slices: Vec<Vec<u8>> = buffer
                .record_slices()
                .map(|r| r.unwrap().to_vec())
                .collect();
            let owned: Vec<Vec<u8>> = buffer.records().map(|r| r.unwrap().to_vec()).collect();
            assert_eq!(slices, owned);
            back.extend(owned);
        }
        assert_eq!(back, records);
    }

    #[test]
    fn a_record_larger_than_a_segment_travels_alone() {
        let big = vec![7u8; 200];
        let buffers = built(&[b"a", &big, b"b"], 64);
        assert_eq!(buffers.len(), 3);
        assert_eq!(buffers[1].len(), 204);
    }

    #[test]
    fn a_corrupt_length_is_an_error_not_a_panic() {
        let mut data = BytesMut::new();
        data.put_u32(3);
        data.extend_from_slice(b"abc");
        data.put_u32(1000);
        data.extend_from_slice(b"xy");
        let buffer = Buffer::new(data.freeze(), None);
        let items: Vec<_> = buffer.records().collect();
        assert_eq!(items.len(), 2);
        assert_eq!(items[0].as_ref().unwrap().as_ref(), b"abc");
        let e = items[1].as_ref().unwrap_err().to_string();
        assert!(e.contains("record length 1000 at offset 7"), "{e}");
        let tail = Buffer::new(Bytes::from_static(&[0, 0]), None);
        assert!(tail.record_slices().next().unwrap().is_err());
    }
}
