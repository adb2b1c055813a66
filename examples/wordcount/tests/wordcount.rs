//! `wordcount local` end to end: a generated Zipf-like corpus (a few MB, several files) through
//! `tokenize` → `key-by: line` → the keyed `count` at parallelism 2 on 2 TaskManager processes:
//! the highest count per word is its true count for every word. And the two bad specs (an
//! unregistered operator, a keyed `count` without a key-by) are one line and a non-zero exit,
//! in `local` and in `submit` (which checks before contacting any cluster).

#[path = "../../../tests/support/wordcount.rs"]
mod corpus;

use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

use corpus::{Corpus, Shape};

fn wordcount(args: &[&str]) -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_wordcount"));
    c.args(args)
        .env_remove("YARNFLOW_CONF_DIR")
        .env_remove("HADOOP_CONF_DIR")
        .stdin(Stdio::null());
    c
}

fn workdir(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("wordcount-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

/// The lines of the committed part files in `dir`.
fn committed_lines(dir: &Path) -> Vec<String> {
    let mut lines = Vec::new();
    for e in std::fs::read_dir(dir).unwrap() {
        let e = e.unwrap();
        if e.file_name().to_string_lossy().starts_with("part-") {
            let text = std::fs::read_to_string(e.path()).unwrap();
            lines.extend(text.lines().map(String::from));
        }
    }
    lines
}

fn transcript(out: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

#[test]
fn word_count_of_a_zipf_corpus_is_exact_on_two_taskmanagers() {
    let dir = workdir("zipf");
    let corpus = Corpus::zipf(
        &dir,
        &Shape {
            files: 4,
            lines_per_file: 25_000,
            words_per_line: 6,
            vocabulary: 10_000,
            mixed: true,
        },
    );
    let spec = dir.join("wordcount.yaml");
    std::fs::write(
        &spec,
        format!(
            "name: wordcount-zipf\nparallelism: 2\ncheckpoint-interval: 500 ms\npipeline:\n  - source: {{ kind: text-files, paths: {} }}\n  - operator: tokenize\n  - key-by: line\n  - operator: count\n  - sink: {{ kind: files }}\n",
            corpus.yaml_paths()
        ),
    )
    .unwrap();
    let out = wordcount(&["local"])
        .arg(&spec)
        .args(["--taskmanagers", "2", "--workdir"])
        .arg(dir.join("work"))
        .output()
        .unwrap();
    let transcript = transcript(&out);
    assert!(out.status.success(), "{transcript}");
    assert!(transcript.contains("FINISHED"), "{transcript}");
    let lines = committed_lines(&dir.join("work/output"));
    assert_eq!(
        lines.len() as u64,
        corpus.truth.values().sum::<u64>(),
        "one line per word"
    );
    if let Err(e) = corpus.check(lines.iter().map(String::as_str)) {
        panic!("{e}");
    }
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn the_bundled_example_runs() {
    let dir = workdir("bundled");
    let out = wordcount(&["local", "wordcount.yaml", "--workdir"])
        .arg(&dir)
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", transcript(&out));
    let lines = committed_lines(&dir.join("output"));
    assert!(lines.contains(&"sleep,5".to_string()), "{lines:?}");
    let _ = std::fs::remove_dir_all(&dir);
}

/// `local` and `submit` on `steps`: both exit non-zero with exactly one line on stderr, which
/// contains `expected`.
fn refused(name: &str, steps: &str, expected: &str) {
    let dir = workdir(name);
    let spec = dir.join("bad.yaml");
    std::fs::write(
        &spec,
        format!(
            "name: bad\npipeline:\n  - source: {{ kind: text-files, paths: [\"file:///nowhere.txt\"] }}\n{steps}  - sink: {{ kind: files }}\n"
        ),
    )
    .unwrap();
    for command in ["local", "submit"] {
        let out = wordcount(&[command]).arg(&spec).output().unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(!out.status.success(), "{command}: {}", transcript(&out));
        assert_eq!(stderr.trim().lines().count(), 1, "{command}: {stderr}");
        assert!(
            stderr.starts_with("wordcount: ") && stderr.contains(expected),
            "{command}: {stderr}"
        );
    }
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn an_unregistered_operator_is_one_line() {
    refused(
        "unregistered",
        "  - operator: tokenise\n  - key-by: line\n  - operator: count\n",
        "bad.yaml:4:5: pipeline[1]: no operator 'tokenise' is registered in wordcount; it has count, throttle, tokenize",
    );
}

#[test]
fn a_keyed_count_without_key_by_is_one_line() {
    refused(
        "keyed-user",
        "  - operator: tokenize\n  - operator: count\n",
        "bad.yaml:5:5: pipeline[2]: operator 'count' keeps state per key, so it needs a key-by right before it",
    );
    refused(
        "keyed-builtin",
        "  - operator: tokenize\n  - count\n",
        "bad.yaml:5:5: pipeline[2]: count keeps state per key, so it needs a key-by right before it",
    );
}

/// `throttle` passes every record on unchanged, at its pace: 40 numbers over 2 subtasks at 20
/// records/s each take at least a second.
#[test]
fn throttle_passes_records_on_at_its_pace() {
    let dir = workdir("throttle");
    let spec = dir.join("throttle.yaml");
    std::fs::write(
        &spec,
        "name: throttle\nparallelism: 2\npipeline:\n  - source: { kind: sequence, from: 0, to: 40 }\n  - operator: { name: throttle, config: { records-per-second: 20 } }\n  - sink: { kind: files }\n",
    )
    .unwrap();
    let t0 = std::time::Instant::now();
    let out = wordcount(&["local"])
        .arg(&spec)
        .args(["--taskmanagers", "0", "--workdir"])
        .arg(dir.join("work"))
        .output()
        .unwrap();
    let elapsed = t0.elapsed();
    assert!(out.status.success(), "{}", transcript(&out));
    let mut numbers: Vec<u64> = committed_lines(&dir.join("work/output"))
        .iter()
        .map(|l| l.parse().unwrap())
        .collect();
    numbers.sort_unstable();
    assert_eq!(numbers, (0..40).collect::<Vec<_>>());
    assert!(elapsed.as_secs_f64() >= 0.95, "{elapsed:?}");
    let _ = std::fs::remove_dir_all(&dir);
}
