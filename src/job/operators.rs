//! The built-in operators a subtask chains (forward edges), with their checkpointed state, and
//! the [`Record`]s they pass on.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use super::spec::{FilterSpec, KeyBySpec, MapFunction, MapSpec, Step};

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
    /// The operators of `steps`. A key-by is no operator here: at parallelism 1 (all a key-by
    /// runs at until the keyed exchange exists) one subtask owns every key group, so the
    /// records need no partitioning; it gives the keyed step after it its key.
    pub fn from_steps(steps: &[Step]) -> Result<Chain, String> {
        let mut operators = Vec::new();
        let mut previous: Option<&Step> = None;
        for step in steps {
            let key = match previous {
                Some(Step::KeyBy(k)) => Some(k),
                _ => None,
            };
            operators.extend(Operator::from_step(step, key)?);
            previous = Some(step);
        }
        Ok(Chain { operators })
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
            "name: t\npipeline:\n  - source: { kind: sequence }\n  - map: { function: add, value: 1 }\n  - filter: { modulus: 2, equals: 0 }\n  - key-by: { modulus: 3 }\n  - count\n  - sink: { kind: files }\n",
            "t.yaml",
        )
        .unwrap();
        let mut chain = Chain::from_steps(&spec.pipeline).unwrap();
        let out: Vec<String> = (0..6)
            .filter_map(|n| chain.process(Record::Int(n)))
            .map(|r| r.to_line())
            .collect();
        // 0..6 +1 = 1..7, evens 2,4,6 → keys 2,1,0.
        assert_eq!(out, vec!["2,1", "1,1", "0,1"]);
        let state = chain.snapshot();
        let mut restored = Chain::from_steps(&spec.pipeline).unwrap();
        restored.restore(&state);
        assert_eq!(restored.process(Record::Int(1)).unwrap().to_line(), "2,2");
    }

    #[test]
    fn keyed_sum_and_line_keys() {
        let spec = JobSpec::parse(
            "name: t\npipeline:\n  - source: { kind: text-files, paths: [\"file:///x\"] }\n  - key-by: line\n  - sum\n  - sink: { kind: files }\n",
            "t.yaml",
        )
        .unwrap();
        let mut chain = Chain::from_steps(&spec.pipeline).unwrap();
        let out: Vec<String> = ["7", "7", "a", "-2"]
            .into_iter()
            .filter_map(|t| chain.process(Record::Text(t.into())))
            .map(|r| r.to_line())
            .collect();
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
