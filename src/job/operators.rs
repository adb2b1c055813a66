//! The built-in operators a subtask chains (forward edges), with their checkpointed state, and
//! the [`Record`]s they pass on, with their byte codec for the keyed exchange.

use std::fmt::Write as _;

use serde::{Deserialize, Serialize};

use super::spec::{FilterSpec, KeyBySpec, MapFunction, MapSpec, Step};
use crate::jobmanager::error::RuntimeError;
use crate::state::{HeapKeyedStateBackend, ValueState, ValueStateDescriptor};

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
    fn number(&self) -> Option<i64> {
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

/// A transform and its state.
#[derive(Debug, Clone, PartialEq)]
pub enum Operator {
    Map(MapSpec),
    Filter(FilterSpec),
    /// Keyed running count per key (the key of the key-by before it), in the subtask's
    /// keyed state.
    Count(KeyedAggregate),
    /// Keyed running sum per key.
    Sum(KeyedAggregate),
}

/// A built-in keyed aggregate's state: one `ValueState<i64>` of the subtask's backend, named
/// after the step and its position in the chain (`count-0`), so that two of one stage never
/// share a state.
#[derive(Debug, Clone, PartialEq)]
pub struct KeyedAggregate {
    pub key: KeyBySpec,
    name: String,
    /// Registered on the first record (the backend is at hand only then).
    state: Option<ValueState<i64>>,
}

/// The checkpointed state of one operator outside the keyed backend (the built-ins have none:
/// keyed counts and sums are in the subtask's keyed state snapshot).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct OperatorState {}

/// The key of a record under a key-by.
pub fn key_of(k: &KeyBySpec, r: &Record) -> String {
    let mut buf = String::new();
    key_str(k, r, &mut buf).to_string()
}

/// The key of a record under a key-by, borrowed from the record or written into `buf` (reused
/// from record to record: no allocation once it has grown).
pub fn key_str<'a>(k: &KeyBySpec, r: &'a Record, buf: &'a mut String) -> &'a str {
    match (k, r) {
        (KeyBySpec::Line, Record::Text(t)) => t,
        (KeyBySpec::Modulus(m), Record::Int(n)) => write_key(buf, n.rem_euclid(*m)),
        (KeyBySpec::Modulus(m), r) => match r.number() {
            Some(n) => write_key(buf, n.rem_euclid(*m)),
            None => write_line(buf, r),
        },
        (KeyBySpec::Line, r) => write_line(buf, r),
    }
}

fn write_key(buf: &mut String, n: i64) -> &str {
    buf.clear();
    let _ = write!(buf, "{n}");
    buf
}

fn write_line<'a>(buf: &'a mut String, r: &'a Record) -> &'a str {
    match r {
        Record::Text(t) => t,
        Record::Int(n) => write_key(buf, *n),
        Record::Data(_) => {
            buf.clear();
            buf.push_str(&r.to_line());
            buf
        }
    }
}

impl Operator {
    /// The transform of a pipeline step (sources, sinks and key-bys are not operators);
    /// `key` is the key-by right before it, which a keyed step needs.
    /// `position` is its place in the chain, which names its keyed state.
    pub fn from_step(
        step: &Step,
        key: Option<&KeyBySpec>,
        position: usize,
    ) -> Result<Option<Operator>, String> {
        Ok(match step {
            Step::Map(m) => Some(Operator::Map(m.clone())),
            Step::Filter(f) => Some(Operator::Filter(f.clone())),
            Step::Count | Step::Sum => {
                let key = key
                    .ok_or_else(|| format!("{} needs a key-by right before it", step.kind()))?
                    .clone();
                let aggregate = KeyedAggregate {
                    key,
                    name: format!("{}-{position}", step.kind()),
                    state: None,
                };
                Some(if matches!(step, Step::Count) {
                    Operator::Count(aggregate)
                } else {
                    Operator::Sum(aggregate)
                })
            }
            Step::Source(_) | Step::KeyBy(_) | Step::Sink(_) => None,
        })
    }

    /// Processes one record into `out` (nothing drops it). `keyed` is the subtask's keyed
    /// state with the record's key current, for a keyed step.
    pub fn process(
        &mut self,
        r: Record,
        keyed: Option<&mut HeapKeyedStateBackend>,
        out: &mut Vec<Record>,
    ) -> Result<(), RuntimeError> {
        match self {
            Operator::Count(a) => out.push(a.update(keyed, |c| c.wrapping_add(1))?),
            Operator::Sum(a) => {
                let n = r.number().unwrap_or(0);
                out.push(a.update(keyed, |s| s.wrapping_add(n))?);
            }
            _ => out.extend(self.apply(r)),
        }
        Ok(())
    }

    /// A built-in step: at most one output per record.
    fn apply(&mut self, r: Record) -> Option<Record> {
        match self {
            Operator::Map(m) => Some(match r.number() {
                Some(n) => Record::Int(match m.function {
                    MapFunction::Add => n.wrapping_add(m.value),
                    MapFunction::Mod => n.rem_euclid(m.value),
                    MapFunction::Multiply => n.wrapping_mul(m.value),
                }),
                None => r,
            }),
            Operator::Filter(f) => r
                .number()
                .filter(|n| n.rem_euclid(f.modulus) == f.equals)
                .map(|_| r),
            // Keyed: `process` runs them against the backend.
            Operator::Count(_) | Operator::Sum(_) => Some(r),
        }
    }

    pub fn snapshot(&self) -> OperatorState {
        OperatorState::default()
    }

    pub fn restore(&mut self, _state: &OperatorState) {}
}

impl KeyedAggregate {
    /// Applies `f` to the current key's value (0 for a new key) and emits `key,value`.
    fn update(
        &mut self,
        keyed: Option<&mut HeapKeyedStateBackend>,
        f: impl FnOnce(i64) -> i64,
    ) -> Result<Record, RuntimeError> {
        let error = |message: String| RuntimeError::Operator {
            operator: self.name.clone(),
            message,
        };
        let Some(backend) = keyed else {
            return Err(error(
                "a keyed step without keyed state (no key-by before it)".into(),
            ));
        };
        let state = match self.state {
            Some(s) => s,
            None => {
                let s = backend
                    .state(&ValueStateDescriptor::<i64>::new(self.name.as_str()))
                    .map_err(|e| error(e.to_string()))?;
                *self.state.insert(s)
            }
        };
        let v = state.get_or_insert_with(backend, || 0);
        *v = f(*v);
        let v = *v;
        // The runtime set the key from the record's key string: UTF-8.
        let key = std::str::from_utf8(backend.current_key()).unwrap_or_default();
        let mut line = String::with_capacity(key.len() + 21);
        line.push_str(key);
        let _ = write!(line, ",{v}");
        Ok(Record::Text(line))
    }
}

/// The transforms of one subtask, in order.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Chain {
    pub operators: Vec<Operator>,
    /// The records between two operators, reused from record to record (no allocation per
    /// record once they have grown).
    current: Vec<Record>,
    next: Vec<Record>,
}

impl Chain {
    /// The operators of `steps`. A key-by is no operator here (it is an edge of the execution
    /// plan): it gives the keyed step after it its key, which runs only as a stage's first
    /// operator, where the subtask's keyed state is at hand.
    pub fn from_steps(steps: &[Step]) -> Result<Chain, String> {
        Chain::from_stage(steps, None)
    }

    /// The operators of a stage's `steps`; `input_key` is the key-by of its keyed input edge,
    /// which the stage's first step follows.
    pub fn from_stage(steps: &[Step], input_key: Option<&KeyBySpec>) -> Result<Chain, String> {
        let mut operators = Vec::new();
        let mut key = input_key;
        for step in steps {
            operators.extend(Operator::from_step(step, key, operators.len())?);
            key = match step {
                Step::KeyBy(k) => Some(k),
                _ => None,
            };
        }
        Ok(Chain {
            operators,
            ..Chain::default()
        })
    }

    /// Runs one record through every operator, appending what comes out of the last one to
    /// `out`: none (filtered), one, or many (a flat-map). `keyed` is the subtask's keyed state
    /// with the record's key already current (the caller sets it); only a stage's first
    /// operator, the one right after the key-by, is keyed.
    pub fn process(
        &mut self,
        record: Record,
        keyed: Option<&mut HeapKeyedStateBackend>,
        out: &mut Vec<Record>,
    ) -> Result<(), RuntimeError> {
        let Some((first, rest)) = self.operators.split_first_mut() else {
            out.push(record);
            return Ok(());
        };
        if rest.is_empty() {
            return first.process(record, keyed, out);
        }
        self.current.clear();
        first.process(record, keyed, &mut self.current)?;
        for op in rest {
            self.next.clear();
            for r in self.current.drain(..) {
                op.process(r, None, &mut self.next)?;
            }
            std::mem::swap(&mut self.current, &mut self.next);
        }
        out.append(&mut self.current);
        Ok(())
    }

    pub fn snapshot(&self) -> Vec<OperatorState> {
        self.operators.iter().map(Operator::snapshot).collect()
    }

    pub fn restore(&mut self, states: &[OperatorState]) {
        for (op, s) in self.operators.iter_mut().zip(states) {
            op.restore(s);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::job::key_groups::{self, KeyGroupRange};
    use crate::job::spec::JobSpec;

    /// The keyed stage of `yaml`'s pipeline (the steps after its key-by) and its key.
    fn keyed_stage(yaml: &str) -> (Chain, KeyBySpec) {
        let spec = JobSpec::parse(yaml, "t.yaml").unwrap();
        let at = spec
            .pipeline
            .iter()
            .position(|s| matches!(s, Step::KeyBy(_)))
            .unwrap();
        let Step::KeyBy(key) = &spec.pipeline[at] else {
            unreachable!()
        };
        let chain = Chain::from_stage(&spec.pipeline[at + 1..], Some(key)).unwrap();
        (chain, key.clone())
    }

    #[test]
    fn keyed_counts_live_in_the_backend_and_restore_from_its_snapshot() {
        let (mut chain, key) = keyed_stage(
            "name: t\npipeline:\n  - source: { kind: sequence }\n  - key-by: { modulus: 3 }\n  - count\n  - map: { function: add, value: 0 }\n  - sink: { kind: files }\n",
        );
        let mut backend = HeapKeyedStateBackend::new(KeyGroupRange::new(0, 127));
        let out = run(
            &mut chain,
            &key,
            &mut backend,
            [2, 4, 6, 5].map(Record::Int),
        );
        // Keys 2, 1, 0, 2; the map after the count passes text on.
        assert_eq!(out, vec!["2,1", "1,1", "0,1", "2,2"]);
        assert_eq!(backend.state_names().collect::<Vec<_>>(), vec!["count-0"]);
        assert_eq!(backend.entries("count-0"), Some(3));
        let mut restored = HeapKeyedStateBackend::new(KeyGroupRange::new(0, 127));
        let snapshot = backend.snapshot().unwrap();
        let handle = crate::state::KeyedStateHandle {
            path: "mem".into(),
            length: snapshot.len() as u64,
            checksum: crc32c::crc32c(&snapshot.bytes()[..snapshot.len() - 4]),
            key_group_range: KeyGroupRange::new(0, 127),
        };
        let file = crate::state::SnapshotFile::parse(&handle, snapshot.bytes().clone()).unwrap();
        restored.restore_file(&file).unwrap();
        let (mut chain, _) = keyed_stage(
            "name: t\npipeline:\n  - source: { kind: sequence }\n  - key-by: { modulus: 3 }\n  - count\n  - sink: { kind: files }\n",
        );
        assert_eq!(
            run(&mut chain, &key, &mut restored, [Record::Int(8)]),
            vec!["2,3"]
        );
    }

    fn run(
        chain: &mut Chain,
        key: &KeyBySpec,
        backend: &mut HeapKeyedStateBackend,
        records: impl IntoIterator<Item = Record>,
    ) -> Vec<String> {
        let mut out = Vec::new();
        let mut buf = String::new();
        for r in records {
            let k = key_str(key, &r, &mut buf);
            let group = key_groups::assign_to_key_group(k.as_bytes(), 128);
            backend.set_current_key(k.as_bytes(), group).unwrap();
            chain.process(r, Some(backend), &mut out).unwrap();
        }
        out.iter().map(Record::to_line).collect()
    }

    #[test]
    fn a_forward_chain_maps_and_filters() {
        let spec = JobSpec::parse(
            "name: t\npipeline:\n  - source: { kind: sequence }\n  - map: { function: add, value: 1 }\n  - filter: { modulus: 2, equals: 0 }\n  - sink: { kind: files }\n",
            "t.yaml",
        )
        .unwrap();
        let mut chain = Chain::from_steps(&spec.pipeline).unwrap();
        let mut out = Vec::new();
        for r in (0..6).map(Record::Int) {
            chain.process(r, None, &mut out).unwrap();
        }
        assert_eq!(out, vec![Record::Int(2), Record::Int(4), Record::Int(6)]);
    }

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

    #[test]
    fn keyed_sum_and_line_keys() {
        let (mut chain, key) = keyed_stage(
            "name: t\npipeline:\n  - source: { kind: text-files, paths: [\"file:///x\"] }\n  - key-by: line\n  - sum\n  - sink: { kind: files }\n",
        );
        let mut backend = HeapKeyedStateBackend::new(KeyGroupRange::new(0, 127));
        let out = run(
            &mut chain,
            &key,
            &mut backend,
            ["7", "7", "a", "-2"].map(|t| Record::Text(t.into())),
        );
        assert_eq!(out, vec!["7,7", "7,14", "a,0", "-2,-2"]);
        // Modulus keys numbers by n mod m (never negative), other lines by the line.
        let m = KeyBySpec::Modulus(3);
        assert_eq!(key_of(&m, &Record::Int(-1)), "2");
        assert_eq!(key_of(&m, &Record::Text(" 4 ".into())), "1");
        assert_eq!(key_of(&m, &Record::Text("x".into())), "x");
        assert_eq!(key_of(&KeyBySpec::Line, &Record::Int(-1)), "-1");
        assert_eq!(key_of(&KeyBySpec::Line, &Record::Data(vec![1])), "01");
        // Without a key-by (a pipeline that skipped validation) the chain is refused, and a
        // keyed step run without keyed state is an error, not a panic.
        let e = Chain::from_steps(&[Step::Count]).unwrap_err();
        assert!(e.contains("count needs a key-by"), "{e}");
        let mut out = Vec::new();
        let e = chain
            .process(Record::Int(1), None, &mut out)
            .unwrap_err()
            .to_string();
        assert!(
            e.starts_with("operator sum-0: a keyed step without keyed state"),
            "{e}"
        );
    }
}
