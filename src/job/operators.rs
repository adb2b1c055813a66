//! The built-in operators a subtask chains (forward edges), with their checkpointed state, and
//! the [`Record`]s they pass on.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use super::spec::{FilterSpec, KeySpec, MapFunction, MapSpec, Step};

/// One record: a number (sequence source) or a line of text (text-files source).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Record {
    Int(i64),
    Text(String),
}

impl Record {
    fn number(&self) -> Option<i64> {
        match self {
            Record::Int(n) => Some(*n),
            Record::Text(t) => t.trim().parse().ok(),
        }
    }

    /// The line a sink writes.
    pub fn to_line(&self) -> String {
        match self {
            Record::Int(n) => n.to_string(),
            Record::Text(t) => t.clone(),
        }
    }
}

/// A transform and its state.
#[derive(Debug, Clone, PartialEq)]
pub enum Operator {
    Map(MapSpec),
    Filter(FilterSpec),
    /// Keyed running count per key (`value % modulus`, or the whole line for text).
    Count {
        key: KeySpec,
        counts: BTreeMap<String, i64>,
    },
    /// Keyed running sum per key.
    Sum {
        key: KeySpec,
        sums: BTreeMap<String, i64>,
    },
}

/// The checkpointed state of one operator (keyed counts and sums; map and filter have none).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct OperatorState {
    pub keyed: BTreeMap<String, i64>,
}

fn key_of(k: &KeySpec, r: &Record) -> String {
    match r.number() {
        Some(n) => n.rem_euclid(k.modulus).to_string(),
        None => r.to_line(),
    }
}

impl Operator {
    /// The transform of a pipeline step (sources and sinks are not operators).
    pub fn from_step(step: &Step) -> Option<Operator> {
        match step {
            Step::Map(m) => Some(Operator::Map(m.clone())),
            Step::Filter(f) => Some(Operator::Filter(f.clone())),
            Step::Count(k) => Some(Operator::Count {
                key: k.clone(),
                counts: BTreeMap::new(),
            }),
            Step::Sum(k) => Some(Operator::Sum {
                key: k.clone(),
                sums: BTreeMap::new(),
            }),
            Step::Source(_) | Step::Sink(_) => None,
        }
    }

    /// Processes one record; `None` drops it.
    pub fn process(&mut self, r: Record) -> Option<Record> {
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
}

impl Chain {
    pub fn from_steps(steps: &[Step]) -> Chain {
        Chain {
            operators: steps.iter().filter_map(Operator::from_step).collect(),
        }
    }

    pub fn process(&mut self, mut r: Record) -> Option<Record> {
        for op in &mut self.operators {
            r = op.process(r)?;
        }
        Some(r)
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
            "name: t\npipeline:\n  - source: { kind: sequence }\n  - map: { function: add, value: 1 }\n  - filter: { modulus: 2, equals: 0 }\n  - count: { modulus: 3 }\n  - sink: { kind: files }\n",
            "t.yaml",
        )
        .unwrap();
        let mut chain = Chain::from_steps(&spec.pipeline);
        let out: Vec<String> = (0..6)
            .filter_map(|n| chain.process(Record::Int(n)))
            .map(|r| r.to_line())
            .collect();
        // 0..6 +1 = 1..7, evens 2,4,6 → keys 2,1,0.
        assert_eq!(out, vec!["2,1", "1,1", "0,1"]);
        let state = chain.snapshot();
        let mut restored = Chain::from_steps(&spec.pipeline);
        restored.restore(&state);
        assert_eq!(restored.process(Record::Int(1)).unwrap().to_line(), "2,2");
    }
}
