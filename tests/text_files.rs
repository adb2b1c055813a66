//! The `text-files` source end to end. `yarnflow local`: the lines of a few local files, read by
//! two subtasks on two TaskManager processes, checkpointed often, are committed by the files sink
//! exactly once; a missing input file ends the job with one line naming its URI. In process: a
//! subtask killed mid-file resumes at its checkpointed offset, losing and repeating no line.

mod support;

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::process::Output;

use yarnflow::job::sink::PartName;

fn run_local(job: &Path, workdir: &Path, extra: &[&str]) -> Output {
    support::yarnflow(extra)
        .arg("local")
        .arg(job)
        .arg("--workdir")
        .arg(workdir)
        .output()
        .unwrap()
}

fn job_spec(dir: &Path, paths: &[String]) -> PathBuf {
    let list: Vec<String> = paths.iter().map(|p| format!("\"{p}\"")).collect();
    let spec = dir.join("job.yaml");
    std::fs::write(
        &spec,
        format!(
            "name: text\nparallelism: 2\ncheckpoint-interval: 20 ms\npipeline:\n  - source: {{ kind: text-files, paths: [{}] }}\n  - sink: {{ kind: files }}\n",
            list.join(", ")
        ),
    )
    .unwrap();
    spec
}

/// Each committed line with how often it was committed; only `part-` files may remain.
fn exactly_committed(output: &Path) -> HashMap<String, u32> {
    let output = support::committed(output);
    assert!(
        output.uncommitted.is_empty(),
        "an uncommitted file remains: {}",
        output.uncommitted.join(", ")
    );
    output.counts()
}

#[test]
fn every_line_of_every_file_is_committed_exactly_once() {
    let dir = support::workdir("text-once");
    let input = dir.join("input");
    std::fs::create_dir_all(&input).unwrap();
    let mut expected = Vec::new();
    let mut paths = Vec::new();
    // Five files over two subtasks (0, 2, 4 and 1, 3): different sizes, CRLF endings, a last
    // line without a newline, non-ASCII text, an empty file.
    for (f, lines) in [20_000usize, 35_000, 0, 15_000, 7].into_iter().enumerate() {
        let mut text = String::new();
        for n in 0..lines {
            let line = format!("file {f} line {n}: grüße, {}", n * 7919 % 1000);
            text.push_str(&line);
            text.push_str(if f == 1 { "\r\n" } else { "\n" });
            expected.push(line);
        }
        if f == 4 {
            text.push_str("file 4 unterminated last line");
            expected.push("file 4 unterminated last line".into());
        }
        let path = input.join(format!("part-{f}.txt"));
        std::fs::write(&path, text).unwrap();
        paths.push(format!("file://{}", path.display()));
    }
    let job = job_spec(&dir, &paths);
    let out = run_local(&job, &dir, &[]);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{stdout}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(stdout.contains("FINISHED"), "{stdout}");
    let seen = exactly_committed(&dir.join("output"));
    let repeated: Vec<_> = seen.iter().filter(|(_, c)| **c > 1).take(3).collect();
    assert!(
        repeated.is_empty(),
        "lines committed more than once: {repeated:?}"
    );
    let missing: Vec<_> = expected
        .iter()
        .filter(|l| !seen.contains_key(*l))
        .take(3)
        .collect();
    assert!(missing.is_empty(), "lines never committed: {missing:?}");
    assert_eq!(seen.len(), expected.len());
    // Subtask 0 read files 0, 2 and 4, subtask 1 files 1 and 3, in file order.
    let mut by_subtask: [Vec<String>; 2] = Default::default();
    let mut parts: Vec<(u32, u64, PathBuf)> = std::fs::read_dir(dir.join("output"))
        .unwrap()
        .map(|e| {
            let path = e.unwrap().path();
            let name = path.file_name().unwrap().to_string_lossy().to_string();
            let part = PartName::parse(&name).unwrap_or_else(|| panic!("not a part file: {name}"));
            (part.subtask, part.checkpoint_id, path)
        })
        .collect();
    parts.sort();
    for (s, _, path) in parts {
        by_subtask[s as usize].extend(
            std::fs::read_to_string(path)
                .unwrap()
                .lines()
                .map(String::from),
        );
    }
    let of_files = |files: &[usize]| -> Vec<String> {
        expected
            .iter()
            .filter(|l| files.iter().any(|f| l.starts_with(&format!("file {f} "))))
            .cloned()
            .collect()
    };
    assert!(
        by_subtask[0] == of_files(&[0, 2, 4]),
        "subtask 0's lines are out of order"
    );
    assert!(
        by_subtask[1] == of_files(&[1, 3]),
        "subtask 1's lines are out of order"
    );
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn a_missing_input_file_fails_the_job_with_one_line_naming_it() {
    let dir = support::workdir("text-missing");
    let present = dir.join("present.txt");
    std::fs::write(&present, "one\ntwo\n").unwrap();
    let missing = format!("file://{}/absent.txt", dir.display());
    let job = job_spec(
        &dir,
        &[format!("file://{}", present.display()), missing.clone()],
    );
    let out = run_local(&job, &dir, &["-D", "restart-strategy.type=none"]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "{stderr}");
    let last = stderr.trim().lines().last().unwrap_or_default();
    assert!(
        last.contains("FAILED") && last.contains(&format!("{missing}: no such file")),
        "{stderr}"
    );
    let _ = std::fs::remove_dir_all(&dir);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_killed_subtask_resumes_at_its_checkpointed_offset() {
    use std::sync::Arc;
    use std::time::Duration;
    use yarnflow::ha::HaServices;
    use yarnflow::job::graph::RunId;
    use yarnflow::job::spec::JobSpec;
    use yarnflow::jobmanager::job_master::{self, JobMasterConfig};
    use yarnflow::jobmanager::restart::RestartStrategy;
    use yarnflow::jobmanager::status::JobStatus;
    use yarnflow::storage::Location;
    use yarnflow::storage::local::LocalStore;

    let dir = support::workdir("text-resume");
    let mut paths = Vec::new();
    let mut expected = 0usize;
    for f in 0..4 {
        let path = dir.join(format!("in-{f}.txt"));
        let lines = 400_000 + f * 10_000;
        let text: String = (0..lines).map(|n| format!("{f}:{n}\n")).collect();
        std::fs::write(&path, text).unwrap();
        expected += lines;
        paths.push(format!("\"file://{}\"", path.display()));
    }
    let spec = JobSpec::parse(
        &format!(
            "name: resume\nparallelism: 2\ncheckpoint-interval: 50 ms\npipeline:\n  - source: {{ kind: text-files, paths: [{}] }}\n  - sink: {{ kind: files }}\n",
            paths.join(", ")
        ),
        "resume.yaml",
    )
    .unwrap();
    let ha = HaServices::embedded(Arc::new(LocalStore), &format!("{}/ha", dir.display()), 1);
    let cfg = JobMasterConfig {
        spec,
        run_id: RunId::random(),
        sink_dir: Location {
            store: Arc::new(LocalStore),
            path: format!("{}/output", dir.display()),
        },
        checkpoint_storage: yarnflow::jobmanager::checkpoint_storage::CheckpointStorage::new(
            Location {
                store: Arc::new(LocalStore),
                path: format!("{}/checkpoints", dir.display()),
            },
        ),
        restart: RestartStrategy::FixedDelay {
            attempts: 3,
            delay: Duration::from_millis(50),
            failures: 0,
        },
        checkpoint_timeout: Duration::from_secs(10),
        tolerable_failed_checkpoints: 0,
        max_parallelism: -1,
        runtime: Arc::new(job_master::InProcess::default()),
        leadership: tokio_util::sync::CancellationToken::new(),
        graph_persisted: false,
        recovered: false,
        recovery: job_master::RecoveryPolicy::default(),
        cleanup: yarnflow::jobmanager::cleanup::RetryStrategy::None,
    };
    let (handle, done) = job_master::start(cfg, ha);
    // Kill subtask 1 right after the first completed checkpoint: it is mid-file by then.
    let mut snapshot = handle.snapshot.clone();
    tokio::time::timeout(
        Duration::from_secs(30),
        snapshot.wait_for(|s| s.latest_checkpoint_id.is_some()),
    )
    .await
    .expect("a checkpoint completes")
    .unwrap();
    handle.kill_subtask(1).await;
    let outcome = tokio::time::timeout(Duration::from_secs(120), done)
        .await
        .expect("the job ends")
        .unwrap();
    assert_eq!(outcome.status, JobStatus::Finished, "{outcome:?}");
    assert_eq!(outcome.restarts, 1, "{outcome:?}");
    let seen = exactly_committed(&dir.join("output"));
    assert!(seen.values().all(|c| *c == 1), "a line was committed twice");
    assert_eq!(seen.len(), expected, "every line committed");
    let _ = std::fs::remove_dir_all(&dir);
}
