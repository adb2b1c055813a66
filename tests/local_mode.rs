//! `yarnflow local` runs the shipped exactly-once example end to end: its committed output is
//! exactly the numbers 0..1,999,999, each once. Bad job specs are one clear line.

mod support;

use std::collections::HashSet;
use std::time::{Duration, Instant};

use yarnflow::jobmanager::client::JobManagerClient;

#[test]
fn the_exactly_once_example_commits_every_number_once() {
    let dir = std::env::temp_dir().join(format!("yarnflow-local-test-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    let out = support::yarnflow(&["local", "examples/exactly-once.yaml", "--workdir"])
        .arg(&dir)
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{stdout}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(stdout.contains("FINISHED"), "{stdout}");
    let mut seen = HashSet::new();
    let mut lines = 0u64;
    for e in std::fs::read_dir(dir.join("output")).unwrap() {
        let e = e.unwrap();
        let name = e.file_name().to_string_lossy().to_string();
        assert!(
            name.starts_with("part-"),
            "only committed files remain visible or at all: {name}"
        );
        for l in std::fs::read_to_string(e.path()).unwrap().lines() {
            lines += 1;
            assert!(seen.insert(l.parse::<u64>().unwrap()), "duplicate {l}");
        }
    }
    assert_eq!(lines, 2_000_000);
    assert!((0..2_000_000u64).all(|n| seen.contains(&n)));
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn a_malformed_job_spec_is_one_line_naming_file_and_position() {
    let dir = std::env::temp_dir().join(format!("yarnflow-badspec-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let file = dir.join("bad.yaml");
    std::fs::write(
        &file,
        "name: bad\npipeline:\n  - source: { kind: sequence, to: 10 }\n  - explode: {}\n  - sink: { kind: files }\n",
    )
    .unwrap();
    let out = support::yarnflow(&["local"]).arg(&file).output().unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(err.trim().lines().count(), 1, "{err}");
    assert!(
        err.contains("bad.yaml:4:") && err.contains("explode") && err.contains("`map`"),
        "{err}"
    );
    let _ = std::fs::remove_dir_all(&dir);
}

/// SIGKILL one TaskManager process mid-job: its subtasks restart (on the replacement process)
/// from the latest completed checkpoint, the job finishes, the output is still exactly-once.
#[test]
fn a_killed_taskmanager_process_costs_no_record_and_duplicates_none() {
    use std::io::{BufRead, BufReader};
    let dir = std::env::temp_dir().join(format!("yarnflow-local-kill-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    let mut child = support::yarnflow(&[
        "local",
        "examples/exactly-once.yaml",
        "--taskmanagers",
        "2",
        "--workdir",
    ])
    .arg(&dir)
    .stdout(std::process::Stdio::piped())
    .stderr(std::process::Stdio::null())
    .spawn()
    .unwrap();
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    let mut victim = None;
    let mut rest = None;
    let mut transcript = String::new();
    for line in lines.by_ref() {
        let line = line.unwrap();
        transcript.push_str(&line);
        transcript.push('\n');
        if let Some(url) = line.strip_prefix("REST API: ") {
            rest = Some(url.to_string());
        }
        if let Some(pid) = line
            .strip_prefix("taskmanager 0 started (pid ")
            .and_then(|r| r.strip_suffix(')'))
        {
            victim = Some(pid.parse::<i32>().unwrap());
            break;
        }
    }
    let victim = victim.expect("the TaskManager pids are printed");
    let rest = rest.expect("the REST address is printed");
    let client = JobManagerClient::new(&rest, Duration::from_secs(10));
    let rt = tokio::runtime::Runtime::new().unwrap();
    // Mid-job: once a checkpoint completed, every subtask runs and has state to restore.
    rt.block_on(async {
        let deadline = Instant::now() + Duration::from_secs(60);
        while !client
            .job("exactly-once")
            .await
            .is_ok_and(|j| j.completed_checkpoints >= 1)
        {
            assert!(Instant::now() < deadline, "no checkpoint within 60 s");
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    });
    unsafe {
        libc::kill(victim, libc::SIGKILL);
    }
    // The restart shows in the REST API while the job runs.
    let job: serde_json::Value = rt.block_on(async {
        let mut last = serde_json::Value::Null;
        for _ in 0..50 {
            tokio::time::sleep(Duration::from_millis(200)).await;
            last = serde_json::to_value(client.job("exactly-once").await.unwrap()).unwrap();
            if last["restarts"].as_u64().unwrap_or(0) >= 1 {
                break;
            }
        }
        last
    });
    assert!(job["restarts"].as_u64().unwrap() >= 1, "{job}");
    assert!(
        job["exceptions"][0].as_str().unwrap().contains("was lost"),
        "{job}"
    );
    for line in lines {
        transcript.push_str(&line.unwrap());
        transcript.push('\n');
    }
    let status = child.wait().unwrap();
    assert!(status.success(), "{transcript}");
    assert!(
        transcript.contains("starting a replacement"),
        "{transcript}"
    );
    assert!(!transcript.contains(" 0 restarts"), "{transcript}");
    let mut seen = HashSet::new();
    let mut count = 0u64;
    for e in std::fs::read_dir(dir.join("output")).unwrap() {
        let e = e.unwrap();
        if e.file_name().to_string_lossy().starts_with("part-") {
            for l in std::fs::read_to_string(e.path()).unwrap().lines() {
                count += 1;
                assert!(seen.insert(l.parse::<u64>().unwrap()), "duplicate {l}");
            }
        }
    }
    assert_eq!(count, 2_000_000, "{transcript}");
    let _ = std::fs::remove_dir_all(&dir);
}
