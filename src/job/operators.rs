//! The operators a subtask chains (forward edges): the built-in ones, whose keyed state is in
//! the subtask's keyed state backend, and users' registered ones ([`crate::api`]). The
//! [`Record`]s they pass on are in `record.rs`.

use serde::{Deserialize, Serialize};

pub use super::record::{Record, RecordDecodeError, TextPool};
use super::spec::{FilterSpec, KeyBySpec, MapFunction, MapSpec, Step};
use crate::api::{Operators, UserOperator};
use crate::jobmanager::error::RuntimeError;
use crate::state::{HeapKeyedStateBackend, ValueState, ValueStateDescriptor};

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
    /// A user's registered operator (`- operator: NAME`); its keyed state lives in the
    /// subtask's backend.
    User(UserOperator),
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
    buf.push_str(itoa::Buffer::new().format(n));
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
    /// The transform of a pipeline step (sources, sinks and key-bys are not operators), with
    /// user operators from `operators`; `key` is the key-by right before it, which a keyed
    /// step needs. `position` is its place in the chain, which names a built-in's keyed state.
    pub fn from_step(
        step: &Step,
        key: Option<&KeyBySpec>,
        position: usize,
        operators: &Operators,
    ) -> Result<Option<Operator>, String> {
        Ok(match step {
            Step::Operator(spec) => Some(Operator::User(operators.create(
                &spec.name,
                &spec.config,
                key.is_some(),
            )?)),
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
            Operator::User(user) => return user.process(r, keyed, out),
            Operator::Count(a) => out.push(a.update(keyed, r, |c| c.wrapping_add(1))?),
            Operator::Sum(a) => {
                let n = r.number().unwrap_or(0);
                out.push(a.update(keyed, r, |s| s.wrapping_add(n))?);
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
            // Keyed or the user's: `process` runs them.
            Operator::Count(_) | Operator::Sum(_) | Operator::User(_) => Some(r),
        }
    }

    pub fn snapshot(&self) -> OperatorState {
        OperatorState::default()
    }

    pub fn restore(&mut self, _state: &OperatorState) {}
}

impl KeyedAggregate {
    /// Applies `f` to the current key's value (0 for a new key) and emits `key,value`, in the
    /// text buffer of `input` if it has one (its key is in the backend already).
    fn update(
        &mut self,
        keyed: Option<&mut HeapKeyedStateBackend>,
        input: Record,
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
        let mut line = input.into_text().unwrap_or_default();
        line.clear();
        line.push_str(key);
        line.push(',');
        line.push_str(itoa::Buffer::new().format(v));
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
    /// which the stage's first step follows. User operators come from the binary's registry.
    pub fn from_stage(steps: &[Step], input_key: Option<&KeyBySpec>) -> Result<Chain, String> {
        Chain::from_stage_in(steps, input_key, Operators::installed())
    }

    /// [`from_stage`](Self::from_stage) with user operators from `registry`.
    pub fn from_stage_in(
        steps: &[Step],
        input_key: Option<&KeyBySpec>,
        registry: &Operators,
    ) -> Result<Chain, String> {
        let mut operators = Vec::new();
        let mut key = input_key;
        for step in steps {
            operators.extend(Operator::from_step(step, key, operators.len(), registry)?);
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

    /// Opens the user operators (after restore, before the first record): they read their
    /// configuration and register their keyed state with `keyed`, the subtask's backend (the
    /// first operator only, as in [`process`](Self::process)).
    pub fn open(
        &mut self,
        mut keyed: Option<&mut HeapKeyedStateBackend>,
    ) -> Result<(), RuntimeError> {
        for op in &mut self.operators {
            if let Operator::User(user) = op {
                user.open(keyed.take())?;
            }
            keyed = None;
        }
        Ok(())
    }

    /// Closes the user operators (the subtask ends); every one is closed, the first error
    /// returned.
    pub fn close(&mut self) -> Result<(), RuntimeError> {
        let mut result = Ok(());
        for op in &mut self.operators {
            if let Operator::User(user) = op {
                result = result.and(user.close());
            }
        }
        result
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
