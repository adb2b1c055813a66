//! The execution plan of a job: its pipeline cut into stages, as Flink chains operators into
//! job vertices.
//!
//! Steps joined by forward edges (same parallelism, no repartitioning) chain into one stage and
//! run in one subtask, record by record. A `key-by` is an edge, not an operator: it ends the
//! stage before it and starts a keyed stage, whose subtask `i` owns the key groups
//! [`key_group_range_for_operator`]`(max_parallelism, parallelism, i)`; every upstream subtask
//! sends each record to the owner of its key's group. So
//!
//! ```text
//! source → map → key-by → count → sink
//! ```
//!
//! is two stages: `[source, map]` (input: the source) and `[count, sink]` (input: keyed).
//!
//! Pure data, from a validated [`JobSpec`]; nothing runs it yet.

use super::key_groups::{self, KeyGroupRange, MaxParallelismError};
use super::spec::{JobSpec, KeyBySpec, Step};

/// A job's stages in pipeline order; stage `i + 1` reads what stage `i` emits.
#[derive(Debug, Clone, PartialEq)]
pub struct ExecutionPlan {
    /// The number of key groups of every keyed stage (`pipeline.max-parallelism`, resolved).
    pub max_parallelism: u32,
    pub stages: Vec<Stage>,
}

/// A chain of steps run together in each of its subtasks (Flink's `JobVertex` with its
/// operator chain).
#[derive(Debug, Clone, PartialEq)]
pub struct Stage {
    /// Its position in [`ExecutionPlan::stages`].
    pub index: usize,
    /// The chained steps: the first stage starts with the source, the last ends with the sink;
    /// key-bys are edges ([`StageInput::Keyed`]), never steps.
    pub steps: Vec<Step>,
    pub parallelism: u32,
    pub input: StageInput,
    /// One per subtask, by subtask index.
    pub subtasks: Vec<SubtaskPlan>,
}

/// Where a stage's records come from (Flink's job edge and its partitioner).
#[derive(Debug, Clone, PartialEq)]
pub enum StageInput {
    /// The stage starts with the source: each subtask reads its own split.
    Source,
    /// Subtask `i` of the previous stage feeds subtask `i` (equal parallelism, no
    /// repartitioning). Not produced while one parallelism holds for the whole job, since then
    /// forward steps chain; a per-step parallelism will cut stages here.
    Forward,
    /// Every subtask of the previous stage sends each record to the subtask owning its key's
    /// group among `max_parallelism`.
    Keyed {
        key: KeyBySpec,
        max_parallelism: u32,
    },
}

/// One subtask of a stage.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SubtaskPlan {
    pub index: u32,
    /// The key groups it owns, in a keyed stage; `None` otherwise.
    pub key_groups: Option<KeyGroupRange>,
}

impl ExecutionPlan {
    /// The plan of a validated spec, with `configured_max_parallelism` the value of
    /// `pipeline.max-parallelism` (-1: derived from the parallelism).
    pub fn new(
        spec: &JobSpec,
        configured_max_parallelism: i64,
    ) -> Result<ExecutionPlan, MaxParallelismError> {
        let max_parallelism =
            key_groups::max_parallelism(configured_max_parallelism, spec.parallelism)?;
        let mut stages = Vec::new();
        let mut input = StageInput::Source;
        let mut steps = Vec::new();
        for step in &spec.pipeline {
            if let Step::KeyBy(key) = step {
                let next = StageInput::Keyed {
                    key: key.clone(),
                    max_parallelism,
                };
                let done = std::mem::replace(&mut input, next);
                stages.push(Stage::new(
                    stages.len(),
                    std::mem::take(&mut steps),
                    spec.parallelism,
                    done,
                ));
            } else {
                steps.push(step.clone());
            }
        }
        stages.push(Stage::new(stages.len(), steps, spec.parallelism, input));
        Ok(ExecutionPlan {
            max_parallelism,
            stages,
        })
    }

    /// The edge a stage's output goes out on: the next stage's input (`None` for the last).
    pub fn output_of(&self, stage: usize) -> Option<&StageInput> {
        self.stages.get(stage + 1).map(|s| &s.input)
    }
}

impl Stage {
    fn new(index: usize, steps: Vec<Step>, parallelism: u32, input: StageInput) -> Stage {
        let subtasks = (0..parallelism)
            .map(|i| SubtaskPlan {
                index: i,
                key_groups: match &input {
                    StageInput::Keyed {
                        max_parallelism, ..
                    } => Some(key_groups::key_group_range_for_operator(
                        *max_parallelism,
                        parallelism,
                        i,
                    )),
                    StageInput::Source | StageInput::Forward => None,
                },
            })
            .collect();
        Stage {
            index,
            steps,
            parallelism,
            input,
            subtasks,
        }
    }

    /// Whether its subtasks own key groups.
    pub fn is_keyed(&self) -> bool {
        matches!(self.input, StageInput::Keyed { .. })
    }

    /// The subtask that owns `key_group` in a keyed stage (`None` in another).
    pub fn subtask_for_key_group(&self, key_group: u32) -> Option<u32> {
        match self.input {
            StageInput::Keyed {
                max_parallelism, ..
            } if key_group < max_parallelism => Some(key_groups::operator_index_for_key_group(
                max_parallelism,
                self.parallelism,
                key_group,
            )),
            _ => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A spec of `steps` between a sequence source and a files sink.
    fn spec(parallelism: u32, steps: &[Step]) -> JobSpec {
        let mut pipeline = vec![Step::Source(crate::job::spec::SourceSpec::Sequence {
            from: 0,
            to: Some(10),
            rate: None,
        })];
        pipeline.extend_from_slice(steps);
        pipeline.push(Step::Sink(crate::job::spec::SinkSpec::Files { path: None }));
        JobSpec {
            name: "plan".into(),
            job_id: None,
            parallelism,
            checkpoint_interval: None,
            pipeline,
        }
    }

    fn map() -> Step {
        Step::Map(crate::job::spec::MapSpec {
            function: crate::job::spec::MapFunction::Add,
            value: 1,
        })
    }

    #[test]
    fn a_forward_pipeline_is_one_stage() {
        let s = spec(4, &[map()]);
        let plan = ExecutionPlan::new(&s, -1).unwrap();
        assert_eq!(plan.max_parallelism, 128);
        assert_eq!(plan.stages.len(), 1);
        let stage = &plan.stages[0];
        assert_eq!(stage.steps, s.pipeline);
        assert_eq!(stage.input, StageInput::Source);
        assert_eq!(stage.parallelism, 4);
        assert!(!stage.is_keyed());
        assert_eq!(stage.subtasks.len(), 4);
        assert!(stage.subtasks.iter().all(|t| t.key_groups.is_none()));
        assert_eq!(stage.subtask_for_key_group(0), None);
        assert_eq!(plan.output_of(0), None);
    }

    #[test]
    fn each_key_by_starts_a_keyed_stage() {
        let s = spec(
            3,
            &[
                map(),
                Step::KeyBy(KeyBySpec::Modulus(7)),
                Step::Count,
                Step::KeyBy(KeyBySpec::Line),
                Step::Sum,
            ],
        );
        let plan = ExecutionPlan::new(&s, -1).unwrap();
        let steps: Vec<Vec<&str>> = plan
            .stages
            .iter()
            .map(|st| st.steps.iter().map(Step::kind).collect())
            .collect();
        assert_eq!(
            steps,
            vec![vec!["source", "map"], vec!["count"], vec!["sum", "sink"]]
        );
        assert_eq!(plan.stages[0].input, StageInput::Source);
        assert_eq!(
            plan.stages[1].input,
            StageInput::Keyed {
                key: KeyBySpec::Modulus(7),
                max_parallelism: 128
            }
        );
        assert_eq!(plan.output_of(0), Some(&plan.stages[1].input));
        assert_eq!(
            plan.stages[2].input,
            StageInput::Keyed {
                key: KeyBySpec::Line,
                max_parallelism: 128
            }
        );
        for (i, stage) in plan.stages.iter().enumerate() {
            assert_eq!(stage.index, i);
            assert_eq!(stage.parallelism, 3);
        }
        // Flink's split of 128 key groups over 3 subtasks, and its inverse.
        let ranges: Vec<KeyGroupRange> = plan.stages[1]
            .subtasks
            .iter()
            .map(|t| t.key_groups.unwrap())
            .collect();
        assert_eq!(
            ranges,
            vec![
                KeyGroupRange::new(0, 42),
                KeyGroupRange::new(43, 85),
                KeyGroupRange::new(86, 127)
            ]
        );
        let keyed = &plan.stages[2];
        for t in &keyed.subtasks {
            for kg in t.key_groups.unwrap() {
                assert_eq!(keyed.subtask_for_key_group(kg), Some(t.index));
            }
        }
        assert_eq!(keyed.subtask_for_key_group(128), None);
    }

    #[test]
    fn a_key_by_before_the_sink_keys_the_sink_stage() {
        let plan = ExecutionPlan::new(&spec(1, &[Step::KeyBy(KeyBySpec::Line)]), 4).unwrap();
        assert_eq!(plan.max_parallelism, 4);
        assert_eq!(plan.stages.len(), 2);
        assert_eq!(
            plan.stages[1]
                .steps
                .iter()
                .map(Step::kind)
                .collect::<Vec<_>>(),
            vec!["sink"]
        );
        // At parallelism 1 one subtask owns every key group.
        assert_eq!(
            plan.stages[1].subtasks[0].key_groups,
            Some(KeyGroupRange::new(0, 3))
        );
    }

    #[test]
    fn the_max_parallelism_is_checked_against_the_parallelism() {
        let s = spec(8, &[Step::KeyBy(KeyBySpec::Line), Step::Count]);
        let e = ExecutionPlan::new(&s, 4).unwrap_err().to_string();
        assert!(e.contains("pipeline.max-parallelism: 4 is below"), "{e}");
        assert!(ExecutionPlan::new(&s, 0).is_err());
        assert_eq!(ExecutionPlan::new(&s, 8).unwrap().max_parallelism, 8);
    }
}
