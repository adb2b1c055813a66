//! The operator API end to end inside a chain: user operators built from spec steps through a
//! registry, records converted, keyed state in a backend the test drives as a keyed subtask
//! does (set the key, process), snapshotted and restored; failures and panics as errors naming
//! the operator; spec validation against the registry.

use serde::{Deserialize, Serialize};

use super::*;
use crate::job::key_groups::assign_to_key_group;
use crate::job::operators::{Chain, Record};
use crate::job::spec::{JobSpec, KeyBySpec, Step};
use crate::jobmanager::error::RuntimeError;
use crate::state::{KeyGroupRange, SnapshotFile};
use crate::storage::BlobStore;
use crate::storage::local::LocalStore;

struct Tokenize;

impl ProcessFunction for Tokenize {
    type In = String;
    type Out = String;
    fn process(
        &mut self,
        line: String,
        _: &mut Context,
        out: &mut Collector<String>,
    ) -> Result<(), OperatorError> {
        for w in line.split_whitespace() {
            match w {
                "panic!" => panic!("boom on {w}"),
                "fail!" => return Err(OperatorError::msg("refused")),
                w => out.collect(w.to_lowercase()),
            }
        }
        Ok(())
    }
}

#[derive(Default)]
struct Count {
    seen: Option<ValueState<u64>>,
    words: Option<MapState<String, u32>>,
}

impl ProcessFunction for Count {
    type In = String;
    type Out = Counted;
    fn open(&mut self, ctx: &mut OpenContext) -> Result<(), OperatorError> {
        self.seen = Some(ctx.value_state("seen")?);
        self.words = Some(ctx.map_state("spellings")?);
        Ok(())
    }
    fn process(
        &mut self,
        word: String,
        ctx: &mut Context,
        out: &mut Collector<Counted>,
    ) -> Result<(), OperatorError> {
        let (seen, words) = (self.seen.unwrap(), self.words.unwrap());
        let state = ctx.state()?;
        let n = seen.get_or_insert_with(state, || 0);
        *n += 1;
        let count = *n;
        let spelled = words.get(state, word.as_str()).copied().unwrap_or(0);
        words.put(state, word.clone(), spelled + 1);
        out.collect(Counted { word, count });
        Ok(())
    }
}

/// A user type between two user operators: postcard records.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
struct Counted {
    word: String,
    count: u64,
}

/// `Counted` in, text out, with a configured separator.
#[derive(Default)]
struct Format {
    separator: String,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct FormatConfig {
    separator: String,
}

impl ProcessFunction for Format {
    type In = Counted;
    type Out = String;
    fn open(&mut self, ctx: &mut OpenContext) -> Result<(), OperatorError> {
        self.separator = ctx.config::<FormatConfig>()?.separator;
        Ok(())
    }
    fn process(
        &mut self,
        c: Counted,
        _: &mut Context,
        out: &mut Collector<String>,
    ) -> Result<(), OperatorError> {
        out.collect(format!("{}{}{}", c.word, self.separator, c.count));
        Ok(())
    }
}

/// Uses keyed state though registered as not keyed.
struct Sneaky;

impl ProcessFunction for Sneaky {
    type In = String;
    type Out = String;
    fn process(
        &mut self,
        _: String,
        ctx: &mut Context,
        _: &mut Collector<String>,
    ) -> Result<(), OperatorError> {
        ctx.state()?;
        Ok(())
    }
}

fn operators() -> Operators {
    Operators::new()
        .named("wc")
        .register("tokenize", || Tokenize)
        .register_keyed("count", Count::default)
        .register("format", Format::default)
        .register("sneaky", || Sneaky)
}

fn spec(steps: &str) -> Result<JobSpec, String> {
    JobSpec::parse_with(
        &format!(
            "name: t\npipeline:\n  - source: {{ kind: text-files, paths: [\"file:///x\"] }}\n{steps}  - sink: {{ kind: files }}\n"
        ),
        "t.yaml",
        &operators(),
    )
    .map_err(|e| e.to_string())
}

const MAX: u32 = 8;

/// A keyed subtask's loop: set the record's key, process.
fn run_keyed(
    chain: &mut Chain,
    backend: &mut HeapKeyedStateBackend,
    words: &[&str],
) -> Vec<String> {
    let mut out = Vec::new();
    for w in words {
        let kg = assign_to_key_group(w.as_bytes(), MAX);
        backend.set_current_key(w.as_bytes(), kg).unwrap();
        chain
            .process(Record::Text(w.to_string()), Some(backend), &mut out)
            .unwrap();
    }
    out.iter().map(Record::to_line).collect()
}

#[tokio::test]
async fn user_operators_chain_keep_keyed_state_and_it_restores() {
    let ops = operators();
    let spec = spec(
        "  - operator: tokenize\n  - key-by: line\n  - operator: count\n  - operator: { name: format, config: { separator: \"=\" } }\n",
    )
    .unwrap();
    // Stage 0: source, tokenize; stage 1 (keyed): count, format, sink.
    let mut first = Chain::from_stage_in(&spec.pipeline[..2], None, &ops).unwrap();
    first.open(None).unwrap();
    let mut words = Vec::new();
    first
        .process(Record::Text("To be or NOT to be".into()), None, &mut words)
        .unwrap();
    let words: Vec<String> = words.iter().map(Record::to_line).collect();
    assert_eq!(words, ["to", "be", "or", "not", "to", "be"]);

    let keyed = &spec.pipeline[3..];
    let mut backend = HeapKeyedStateBackend::new(KeyGroupRange::new(0, MAX - 1));
    let mut chain = Chain::from_stage_in(keyed, Some(&KeyBySpec::Line), &ops).unwrap();
    chain.open(Some(&mut backend)).unwrap();
    let words: Vec<&str> = words.iter().map(String::as_str).collect();
    assert_eq!(
        run_keyed(&mut chain, &mut backend, &words),
        ["to=1", "be=1", "or=1", "not=1", "to=2", "be=2"]
    );
    assert_eq!(backend.entries("seen"), Some(4));
    assert_eq!(backend.entries("spellings"), Some(4));

    // The backend's snapshot holds the user's states; a new subtask restores and goes on.
    let dir = std::env::temp_dir().join(format!("yarnflow-api-{}", std::process::id()));
    let path = format!("{}/keyed-0", dir.display());
    let handle = backend
        .snapshot()
        .unwrap()
        .write(&LocalStore, &path)
        .await
        .unwrap();
    let file = SnapshotFile::parse(&handle, LocalStore.read(&path).await.unwrap()).unwrap();
    let mut restored = HeapKeyedStateBackend::new(KeyGroupRange::new(0, MAX - 1));
    restored.restore_file(&file).unwrap();
    let mut chain = Chain::from_stage_in(keyed, Some(&KeyBySpec::Line), &ops).unwrap();
    chain.open(Some(&mut restored)).unwrap();
    assert_eq!(
        run_keyed(&mut chain, &mut restored, &["be", "question"]),
        ["be=3", "question=1"]
    );
    chain.close().unwrap();
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn failures_and_panics_fail_the_record_naming_the_operator() {
    let ops = operators();
    let spec = spec("  - operator: tokenize\n").unwrap();
    let mut chain = Chain::from_stage_in(&spec.pipeline, None, &ops).unwrap();
    chain.open(None).unwrap();
    let mut out = Vec::new();
    let message = |r: Result<(), RuntimeError>| match r {
        Err(e @ RuntimeError::Operator { .. }) => e.to_string(),
        other => panic!("{other:?}"),
    };
    let e = message(chain.process(Record::Text("a panic! b".into()), None, &mut out));
    assert_eq!(e, "operator 'tokenize': process: panicked: boom on panic!");
    let e = message(chain.process(Record::Text("fail!".into()), None, &mut out));
    assert_eq!(e, "operator 'tokenize': process: refused");
    // A number is no `String`: the record fails, saying what was expected.
    let e = message(chain.process(Record::Int(3), None, &mut out));
    assert!(
        e.contains("expects alloc::string::String, got a number record"),
        "{e}"
    );
    // Keyed state in an operator not registered as keyed.
    let spec = self::spec("  - operator: sneaky\n").unwrap();
    let mut chain = Chain::from_stage_in(&spec.pipeline, None, &ops).unwrap();
    chain.open(None).unwrap();
    let e = message(chain.process(Record::Text("x".into()), None, &mut out));
    assert!(
        e.contains("operator 'sneaky' uses keyed state but is not keyed"),
        "{e}"
    );
    // A config the operator cannot read fails its open.
    let spec = self::spec("  - operator: { name: format, config: { sep: 1 } }\n").unwrap();
    let mut chain = Chain::from_stage_in(&spec.pipeline, None, &ops).unwrap();
    let e = message(chain.open(None));
    assert!(
        e.starts_with("operator 'format': open: config of operator 'format': unknown field `sep`"),
        "{e}"
    );
}

#[test]
fn specs_name_registered_operators_only_and_keyed_ones_after_a_key_by() {
    let e = spec("  - operator: tokenise\n").unwrap_err();
    assert_eq!(
        e,
        "t.yaml:4:5: pipeline[1]: no operator 'tokenise' is registered in wc; it has count, format, sneaky, tokenize"
    );
    let e = spec("  - operator: tokenize\n  - operator: count\n").unwrap_err();
    assert!(
        e.starts_with("t.yaml:5:5: pipeline[2]: operator 'count' keeps state per key, so it needs a key-by right before it"),
        "{e}"
    );
    let e = spec("  - operator: { nam: tokenize }\n").unwrap_err();
    assert!(
        e.starts_with("t.yaml:4:") && e.contains("unknown field `nam`"),
        "{e}"
    );
    // Without user operators (the stock binary) the line says where they come from.
    let e = JobSpec::parse_with(
        "name: t\npipeline:\n  - source: { kind: sequence }\n  - operator: count\n  - sink: { kind: files }\n",
        "t.yaml",
        &Operators::new(),
    )
    .unwrap_err()
    .to_string();
    assert!(
        e.contains("no operator 'count' is registered in yarnflow; it has none"),
        "{e}"
    );
    // Both forms, stored as the job graph (JSON) and read back; a chain refuses a keyed
    // operator without a key even if validation was skipped.
    let s = spec(
        "  - operator: tokenize\n  - key-by: line\n  - operator: { name: count }\n  - operator: { name: format, config: { separator: \",\" } }\n",
    )
    .unwrap();
    let json = serde_json::to_string(&s).unwrap();
    assert_eq!(serde_json::from_str::<JobSpec>(&json).unwrap(), s);
    let Step::Operator(format) = &s.pipeline[4] else {
        panic!("{:?}", s.pipeline[4]);
    };
    assert_eq!(format.config, serde_json::json!({ "separator": "," }));
    let e = Chain::from_stage_in(&s.pipeline[3..4], None, &operators()).unwrap_err();
    assert!(e.contains("operator 'count' keeps state per key"), "{e}");
}
