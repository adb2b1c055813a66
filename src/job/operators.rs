//! The operators a subtask chains (forward edges): the built-in ones with their checkpointed
//! state, and users' registered ones ([`crate::api`]). The [`Record`]s they pass on are in
//! `record.rs`.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

pub use super::record::{Record, RecordDecodeError};
use super::spec::{FilterSpec, KeyBySpec, MapFunction, MapSpec, Step};
use crate::api::{Operators, UserOperator};
use crate::jobmanager::error::RuntimeError;
use crate::state::HeapKeyedStateBackend;

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
    /// A user's registered operator (`- operator: NAME`); its keyed state lives in the
    /// subtask's backend.
    User(UserOperator),
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
        Operator::from_step_in(step, key, Operators::installed())
    }

    /// [`from_step`](Self::from_step) with user operators from `operators`.
    pub fn from_step_in(
        step: &Step,
        key: Option<&KeyBySpec>,
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
        if let Operator::User(user) = self {
            return user.process(r, _keyed, out);
        }
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
            Operator::User(_) => unreachable!("user operators run in process"),
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
            operators.extend(Operator::from_step_in(step, key, registry)?);
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
