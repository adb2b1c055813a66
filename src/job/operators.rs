//! The built-in operators a subtask chains (forward edges), with their checkpointed state, and
//! the [`Record`]s they pass on, with their byte codec for the keyed exchange.

use std::collections::BTreeMap;
use std::fmt::Write as _;

use serde::{Deserialize, Serialize};

use super::spec::{FilterSpec, KeyBySpec, MapFunction, MapSpec, Step};
use crate::jobmanager::error::RuntimeError;
use crate::state::HeapKeyedStateBackend;

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
    /// Keyed running count per key (the key of the key-by before it).
    Count {
        key: KeyBySpec,
        counts: BTreeMap<String, i64>,
    },
    /// Keyed running sum per key.
    Sum {
        key: KeyBySpec,
        sums: BTreeMap<String, i64>,
    },
}

/// The checkpointed state of one operator (keyed counts and sums; map and filter have none).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct OperatorState {
    pub keyed: BTreeMap<String, i64>,
}

/// The key of a record under a key-by.
pub fn key_of(k: &KeyBySpec, r: &Record) -> String {
    match (k, r.number()) {
        (KeyBySpec::Modulus(m), Some(n)) => n.rem_euclid(*m).to_string(),
        (KeyBySpec::Modulus(_), None) | (KeyBySpec::Line, _) => r.to_line(),
    }
}

impl Operator {
    /// The transform of a pipeline step (sources, sinks and key-bys are not operators);
    /// `key` is the key-by right before it, which a keyed step needs.
    pub fn from_step(step: &Step, key: Option<&KeyBySpec>) -> Result<Option<Operator>, String> {
        Ok(match step {
            Step::Map(m) => Some(Operator::Map(m.clone())),
            Step::Filter(f) => Some(Operator::Filter(f.clone())),
            Step::Count | Step::Sum => {
                let key = key
                    .ok_or_else(|| format!("{} needs a key-by right before it", step.kind()))?
                    .clone();
                Some(if matches!(step, Step::Count) {
                    Operator::Count {
                        key,
                        counts: BTreeMap::new(),
                    }
                } else {
                    Operator::Sum {
                        key,
                        sums: BTreeMap::new(),
                    }
                })
            }
            Step::Source(_) | Step::KeyBy(_) | Step::Sink(_) => None,
        })
    }

    /// Processes one record into `out` (nothing drops it). `_keyed` is the subtask's keyed
    /// state with the record's key current, for a keyed step.
    pub fn process(
        &mut self,
        r: Record,
        _keyed: Option<&mut HeapKeyedStateBackend>,
        out: &mut Vec<Record>,
    ) -> Result<(), RuntimeError> {
        out.extend(self.apply(r));
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
            Operator::Count { key, counts } => {
                let k = key_of(key, &r);
                let c = counts.entry(k.clone()).or_default();
                *c += 1;
                Some(Record::Text(format!("{k},{c}")))
            }
            Operator::Sum { key, sums } => {
                let k = key_of(key, &r);
                let s = sums.entry(k.clone()).or_default();
                *s = s.wrapping_add(r.number().unwrap_or(0));
                Some(Record::Text(format!("{k},{s}")))
            }
        }
    }

    pub fn snapshot(&self) -> OperatorState {
        match self {
            Operator::Count { counts: m, .. } | Operator::Sum { sums: m, .. } => {
                OperatorState { keyed: m.clone() }
            }
            _ => OperatorState::default(),
        }
    }

    pub fn restore(&mut self, state: &OperatorState) {
        if let Operator::Count { counts: m, .. } | Operator::Sum { sums: m, .. } = self {
            *m = state.keyed.clone();
        }
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
    /// The operators of `steps`. A key-by is no operator here: at parallelism 1 (all a key-by
    /// runs at until the keyed exchange exists) one subtask owns every key group, so the
    /// records need no partitioning; it gives the keyed step after it its key.
    pub fn from_steps(steps: &[Step]) -> Result<Chain, String> {
        Chain::from_stage(steps, None)
    }

    /// The operators of a stage's `steps`; `input_key` is the key-by of its keyed input edge,
    /// which the stage's first step follows.
    pub fn from_stage(steps: &[Step], input_key: Option<&KeyBySpec>) -> Result<Chain, String> {
        let mut operators = Vec::new();
        let mut key = input_key;
        for step in steps {
            operators.extend(Operator::from_step(step, key)?);
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
    use crate::job::spec::JobSpec;

    #[test]
    fn chain_maps_filters_counts_and_snapshots() {
        let spec = JobSpec::parse(
            "name: t\npipeline:\n  - source: { kind: sequence }\n  - map: { function: add, value: 1 }\n  - filter: { modulus: 2, equals: 0 }\n  - key-by: { modulus: 3 }\n  - count\n  - sink: { kind: files }\n",
            "t.yaml",
        )
        .unwrap();
        let mut chain = Chain::from_steps(&spec.pipeline).unwrap();
        let out = run(&mut chain, (0..6).map(Record::Int));
        // 0..6 +1 = 1..7, evens 2,4,6 → keys 2,1,0.
        assert_eq!(out, vec!["2,1", "1,1", "0,1"]);
        let state = chain.snapshot();
        let mut restored = Chain::from_steps(&spec.pipeline).unwrap();
        restored.restore(&state);
        assert_eq!(run(&mut restored, [Record::Int(1)]), vec!["2,2"]);
    }

    fn run(chain: &mut Chain, records: impl IntoIterator<Item = Record>) -> Vec<String> {
        let mut out = Vec::new();
        for r in records {
            chain.process(r, None, &mut out).unwrap();
        }
        out.iter().map(Record::to_line).collect()
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
        let spec = JobSpec::parse(
            "name: t\npipeline:\n  - source: { kind: text-files, paths: [\"file:///x\"] }\n  - key-by: line\n  - sum\n  - sink: { kind: files }\n",
            "t.yaml",
        )
        .unwrap();
        let mut chain = Chain::from_steps(&spec.pipeline).unwrap();
        let out = run(
            &mut chain,
            ["7", "7", "a", "-2"].map(|t| Record::Text(t.into())),
        );
        assert_eq!(out, vec!["7,7", "7,14", "a,0", "-2,-2"]);
        // Modulus keys numbers by n mod m (never negative), other lines by the line.
        let m = KeyBySpec::Modulus(3);
        assert_eq!(key_of(&m, &Record::Int(-1)), "2");
        assert_eq!(key_of(&m, &Record::Text(" 4 ".into())), "1");
        assert_eq!(key_of(&m, &Record::Text("x".into())), "x");
        assert_eq!(key_of(&KeyBySpec::Line, &Record::Int(-1)), "-1");
        // Without a key-by (a pipeline that skipped validation) the chain is refused.
        let e = Chain::from_steps(&[Step::Count]).unwrap_err();
        assert!(e.contains("count needs a key-by"), "{e}");
    }
}
