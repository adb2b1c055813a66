//! `yarnflow local` runs the shipped exactly-once example end to end: its committed output is
//! exactly the numbers 0..1,999,999, each once. Bad job specs are one clear line.

mod support;

use std::collections::{BTreeMap, HashSet};
use std::time::{Duration, Instant};

use yarnflow::job::sink::{PartKind, PartName};
use yarnflow::jobmanager::client::JobManagerClient;
use yarnflow::jobmanager::job_master::JobSnapshot;
use yarnflow::jobmanager::status::JobStatus;

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

/// Runs `yarnflow local` on the spec twice, with one work directory and one sink path: both
/// runs are committed, each exactly once, told apart by the run id in their part files' names.
/// (Before run ids the second run's part files had the first run's names, and its commits
/// took those for its own: its output was dropped.)
#[test]
fn re_running_a_spec_on_the_same_path_keeps_both_runs_output() {
    let dir = std::env::temp_dir().join(format!("yarnflow-rerun-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    let output = dir.join("out");
    let job = dir.join("rerun.yaml");
    std::fs::write(
        &job,
        format!(
            "name: rerun\nparallelism: 2\ncheckpoint-interval: 50 ms\npipeline:\n  - source: {{ kind: sequence, from: 0, to: 20000, rate: 20000 }}\n  - sink: {{ kind: files, path: 'file://{}' }}\n",
            output.display()
        ),
    )
    .unwrap();
    for round in 1..=2 {
        let out = support::yarnflow(&["local"])
            .arg(&job)
            .args(["--taskmanagers", "0", "--workdir"])
            .arg(dir.join("work"))
            .output()
            .unwrap();
        let stdout = String::from_utf8_lossy(&out.stdout);
        assert!(
            out.status.success() && stdout.contains("FINISHED"),
            "run {round}: {stdout}{}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    let mut by_run: BTreeMap<String, Vec<u64>> = BTreeMap::new();
    for e in std::fs::read_dir(&output).unwrap() {
        let name = e.unwrap().file_name().to_string_lossy().to_string();
        let part = PartName::parse(&name)
            .filter(|p| p.kind == PartKind::Committed)
            .unwrap_or_else(|| panic!("only committed part files remain: {name}"));
        let run = part.run_id.expect("a run id in every name").to_string();
        let text = std::fs::read_to_string(output.join(&name)).unwrap();
        by_run
            .entry(run)
            .or_default()
            .extend(text.lines().map(|l| l.parse::<u64>().unwrap()));
    }
    assert_eq!(by_run.len(), 2, "two runs' files: {:?}", by_run.keys());
    for (run, mut records) in by_run {
        records.sort_unstable();
        assert_eq!(records.len(), 20_000, "run {run}: records");
        assert!(
            records.iter().copied().eq(0..20_000u64),
            "run {run}: every number exactly once"
        );
    }
    let _ = std::fs::remove_dir_all(&dir);
}

/// A `yarnflow local` run's stdout up to the line saying TaskManager 0 started: what the
/// tests that kill that process need.
struct FirstTaskManager {
    /// The lines read so far.
    transcript: String,
    /// The JobManager's REST address, if it was printed.
    rest: Option<String>,
    /// TaskManager 0's pid, if it was printed.
    victim: Option<i32>,
}

impl FirstTaskManager {
    /// Reads `lines` up to and including TaskManager 0's start (or to their end).
    fn read(lines: &mut impl Iterator<Item = std::io::Result<String>>) -> FirstTaskManager {
        let mut first = FirstTaskManager {
            transcript: String::new(),
            rest: None,
            victim: None,
        };
        for line in lines {
            let line = line.unwrap();
            first.transcript.push_str(&line);
            first.transcript.push('\n');
            if let Some(url) = line.strip_prefix("REST API: ") {
                first.rest = Some(url.to_string());
            }
            if let Some(pid) = line
                .strip_prefix("taskmanager 0 started (pid ")
                .and_then(|r| r.strip_suffix(')'))
            {
                first.victim = Some(pid.parse::<i32>().unwrap());
                break;
            }
        }
        first
    }
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
    let FirstTaskManager {
        mut transcript,
        rest,
        victim,
    } = FirstTaskManager::read(&mut lines);
    let victim = victim.expect("the TaskManager pids are printed");
    let rest = rest.expect("the REST address is printed");
    let client = JobManagerClient::new(&rest, Duration::from_secs(10));
    let rt = tokio::runtime::Runtime::new().unwrap();
    // Mid-job: once a checkpoint completed, every subtask runs and has state to restore.
    poll_job(&rt, &client, "exactly-once", Duration::from_secs(60), |j| {
        j.completed_checkpoints >= 1
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

/// A `yarnflow local` run of a job counting 0..`to` on 2 subtasks at `rate` records/s,
/// checkpointed every 500 ms, with its stdout lines as they come.
struct LocalRun {
    child: std::process::Child,
    dir: std::path::PathBuf,
    lines: std::sync::mpsc::Receiver<String>,
    transcript: String,
    to: u64,
}

impl LocalRun {
    fn start(name: &str, to: u64, rate: u64, args: &[&str], env: &[(&str, &str)]) -> LocalRun {
        let dir = support::workdir(name);
        let spec = dir.join("job.yaml");
        std::fs::write(
            &spec,
            format!(
                "name: {name}\nparallelism: 2\ncheckpoint-interval: 500 ms\npipeline:\n  - source: {{ kind: sequence, from: 0, to: {to}, rate: {rate} }}\n  - sink: {{ kind: files }}\n"
            ),
        )
        .unwrap();
        let mut child = support::yarnflow(&["local"])
            .arg(&spec)
            .args(args)
            .arg("--workdir")
            .arg(dir.join("work"))
            .envs(env.iter().copied())
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::null())
            .spawn()
            .unwrap();
        let stdout = child.stdout.take().unwrap();
        let (tx, lines) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            use std::io::BufRead;
            for line in std::io::BufReader::new(stdout).lines() {
                let Ok(line) = line else { break };
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
        LocalRun {
            child,
            dir,
            lines,
            transcript: String::new(),
            to,
        }
    }

    /// Reads stdout until a line gives `Some`, for up to `within`.
    fn wait_line<T>(&mut self, within: Duration, f: impl Fn(&str) -> Option<T>) -> T {
        let deadline = Instant::now() + within;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            let line = self
                .lines
                .recv_timeout(left)
                .unwrap_or_else(|e| panic!("{e}; stdout so far:\n{}", self.transcript));
            self.transcript.push_str(&line);
            self.transcript.push('\n');
            if let Some(v) = f(&line) {
                return v;
            }
        }
    }

    /// The JobManager's REST client, once its address is printed.
    fn client(&mut self) -> JobManagerClient {
        let rest = self.wait_line(Duration::from_secs(30), |l| {
            l.strip_prefix("REST API: ").map(str::to_string)
        });
        JobManagerClient::new(&rest, Duration::from_secs(10))
    }

    /// Waits for the process to end; its whole stdout is in the transcript then.
    fn finish(&mut self) -> std::process::ExitStatus {
        let status = self.child.wait().unwrap();
        while let Ok(line) = self.lines.recv_timeout(Duration::from_secs(5)) {
            self.transcript.push_str(&line);
            self.transcript.push('\n');
        }
        status
    }

    /// The committed output holds every number of 0..to exactly once.
    fn assert_exactly_once(&self) {
        let committed = support::committed(&self.dir.join("work/output"));
        let counts = committed.counts();
        let duplicates = counts.values().filter(|n| **n > 1).count();
        assert_eq!(duplicates, 0, "duplicates\n{}", self.transcript);
        assert_eq!(committed.lines.len() as u64, self.to, "{}", self.transcript);
        assert!(
            (0..self.to).all(|n| counts.contains_key(&n.to_string())),
            "missing numbers\n{}",
            self.transcript
        );
    }
}

impl Drop for LocalRun {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// Polls job `id` every 100 ms until `ready` holds, for up to `within`; that snapshot.
fn poll_job(
    rt: &tokio::runtime::Runtime,
    client: &JobManagerClient,
    id: &str,
    within: Duration,
    ready: impl Fn(&JobSnapshot) -> bool,
) -> JobSnapshot {
    let deadline = Instant::now() + within;
    rt.block_on(async {
        loop {
            let job = client.job(id).await;
            if let Ok(job) = &job
                && ready(job)
            {
                return job.clone();
            }
            assert!(
                Instant::now() < deadline,
                "job {id} not there within {within:?}: {job:?}"
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    })
}

/// SIGSTOP one TaskManager that runs a subtask: the process, its TCP connection and its HTTP/2
/// stream stay up, but it answers no heartbeat. After `heartbeat.timeout` the JobManager
/// declares it lost, its subtask restarts on the free slot of another TaskManager from the
/// latest completed checkpoint, and the job finishes exactly once.
#[test]
fn a_frozen_taskmanager_is_lost_by_heartbeat_timeout_and_its_subtask_restarts_elsewhere() {
    let timeout = Duration::from_secs(5);
    // 3 TaskManagers of 1 slot for 2 subtasks: one slot stays free for the restart.
    let mut run = LocalRun::start(
        "heartbeat-frozen",
        900_000,
        40_000,
        &[
            "--taskmanagers",
            "3",
            "-D",
            "heartbeat.interval=1s",
            "-D",
            "heartbeat.timeout=5s",
        ],
        &[],
    );
    let client = run.client();
    let mut pids = std::collections::HashMap::new();
    while pids.len() < 3 {
        let (index, pid) = run.wait_line(Duration::from_secs(30), |l| {
            let rest = l.strip_prefix("taskmanager ")?;
            let (index, pid) = rest.split_once(" started (pid ")?;
            Some((
                index.to_string(),
                pid.strip_suffix(')')?.parse::<i32>().ok()?,
            ))
        });
        pids.insert(index, pid);
    }
    let rt = tokio::runtime::Runtime::new().unwrap();
    let id = "heartbeat-frozen";
    poll_job(&rt, &client, id, Duration::from_secs(30), |j| {
        j.status == JobStatus::Running && j.completed_checkpoints >= 1
    });
    // A TaskManager with no free slot runs a subtask; its id is taskmanager-<index>-<n>.
    let busy = rt.block_on(async {
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            let tms = client.taskmanagers().await.unwrap_or_default();
            let busy: Vec<_> = tms.iter().filter(|t| t.free_slots == 0).collect();
            if tms.len() == 3 && busy.len() == 2 {
                return busy[0].id.clone();
            }
            assert!(Instant::now() < deadline, "{tms:?}");
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    });
    let victim = pids[busy.split('-').nth(1).unwrap()];
    let paused = Instant::now();
    unsafe {
        libc::kill(victim, libc::SIGSTOP);
    }
    // Expected: the timeout, up to one heartbeat interval, the restart delay (about 1 s) and a
    // deployment: about 8 s. Wait up to three times that.
    let bound = timeout + Duration::from_secs(3);
    let lost = poll_job(&rt, &client, id, 3 * bound, |j| {
        j.exceptions.iter().any(|e| e.contains("heartbeat timeout"))
    });
    let detected = paused.elapsed();
    assert!(
        lost.exceptions[0].contains(&format!("TaskManager {busy} was lost: heartbeat timeout")),
        "{lost:?}"
    );
    poll_job(&rt, &client, id, 3 * bound, |j| {
        j.status == JobStatus::Running && j.restarts >= 1
    });
    let recovered = paused.elapsed();
    eprintln!(
        "TaskManager {busy} paused: declared lost after {:.1} s, job RUNNING again after {:.1} s",
        detected.as_secs_f64(),
        recovered.as_secs_f64()
    );
    let status = run.finish();
    unsafe {
        libc::kill(victim, libc::SIGKILL);
        libc::kill(victim, libc::SIGCONT);
    }
    assert!(status.success(), "{}", run.transcript);
    assert!(run.transcript.contains("FINISHED"), "{}", run.transcript);
    // Local mode kills the frozen process, as the AM stops its container, and replaces it.
    assert!(
        run.transcript
            .contains(&format!("(pid {victim}) lost by the JobManager; killed")),
        "{}",
        run.transcript
    );
    run.assert_exactly_once();
}

/// With the fault point `drop-ack:subtask=1,checkpoint=1` (feature `fault-points`), the
/// TaskManager of subtask 1 swallows that subtask's acknowledgement of checkpoint 1, which can
/// then never complete and expires after `execution.checkpointing.timeout`; tolerated (1
/// allowed), the job runs on, the next interval triggers a later checkpoint that completes,
/// and the job finishes exactly once without a restart.
#[cfg(feature = "fault-points")]
#[test]
fn a_swallowed_ack_expires_its_checkpoint_and_a_later_one_completes() {
    let mut run = LocalRun::start(
        "dropped-ack",
        600_000,
        40_000,
        &[
            "--taskmanagers",
            "2",
            "-D",
            "execution.checkpointing.timeout=2s",
            "-D",
            "execution.checkpointing.tolerable-failed-checkpoints=1",
        ],
        &[("YARNFLOW_FAULTS", "drop-ack:subtask=1,checkpoint=1")],
    );
    let client = run.client();
    let rt = tokio::runtime::Runtime::new().unwrap();
    let id = "dropped-ack";
    let started = Instant::now();
    // Checkpoint 1 expires 2 s after it is triggered (500 ms in); wait up to three times.
    let expired = poll_job(&rt, &client, id, Duration::from_secs(3 * 3), |j| {
        j.failed_checkpoints >= 1
    });
    eprintln!(
        "checkpoint 1 expired within {:.1} s of the job's start",
        started.elapsed().as_secs_f64()
    );
    // Checkpoint 1 never completes. (Checkpoint 2 may have completed by this poll already: it
    // is triggered by the tick that falls on the instant checkpoint 1 expires, 2.5 s in.)
    assert_ne!(expired.latest_checkpoint_id, Some(1), "{expired:?}");
    let later = poll_job(&rt, &client, id, Duration::from_secs(3 * 2), |j| {
        j.latest_checkpoint_id >= Some(2)
    });
    assert_eq!(later.restarts, 0, "{later:?}");
    let status = run.finish();
    assert!(status.success(), "{}", run.transcript);
    assert!(
        run.transcript.contains("FINISHED") && run.transcript.contains(" 0 restarts"),
        "{}",
        run.transcript
    );
    run.assert_exactly_once();
}

/// Cancelling a job while a checkpoint is in flight (`drop-ack:subtask=1,checkpoint=2` keeps
/// checkpoint 2 pending: subtask 1's acknowledgement never arrives) removes the pending files
/// its subtasks wrote for it; what completed stays committed, nothing hidden is left.
#[cfg(feature = "fault-points")]
#[test]
fn a_cancelled_jobs_pending_files_are_removed() {
    let mut run = LocalRun::start(
        "cancel-pending",
        100_000_000,
        20_000,
        &[
            "--taskmanagers",
            "2",
            "-D",
            "execution.checkpointing.timeout=10min",
        ],
        &[("YARNFLOW_FAULTS", "drop-ack:subtask=1,checkpoint=2")],
    );
    let client = run.client();
    let rt = tokio::runtime::Runtime::new().unwrap();
    let id = "cancel-pending";
    poll_job(&rt, &client, id, Duration::from_secs(3 * 5), |j| {
        j.latest_checkpoint_id == Some(1)
    });
    let output = run.dir.join("work/output");
    let pending_of_2 = || {
        std::fs::read_dir(&output)
            .unwrap()
            .filter_map(|e| PartName::parse(&e.unwrap().file_name().to_string_lossy()))
            .filter(|p| p.kind == PartKind::Pending && p.checkpoint_id == 2)
            .count()
    };
    let deadline = Instant::now() + Duration::from_secs(3 * 3);
    while pending_of_2() < 2 {
        assert!(
            Instant::now() < deadline,
            "no pending files of checkpoint 2"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    rt.block_on(client.cancel(id)).unwrap();
    run.finish();
    assert!(run.transcript.contains("CANCELED"), "{}", run.transcript);
    let committed = support::committed(&output);
    assert!(
        committed.uncommitted.is_empty(),
        "hidden files remain: {:?}\n{}",
        committed.uncommitted,
        run.transcript
    );
    assert!(!committed.lines.is_empty(), "checkpoint 1 stays committed");
    assert!(
        committed.counts().values().all(|c| *c == 1),
        "no record twice"
    );
}

/// A checkpoint failure is not a job failure: with `decline-ack:subtask=0,checkpoint=1`
/// checkpoint 1 is declined, which exceeds the default 0 tolerated failures, so the whole job
/// fails over through the restart strategy (one restart, every subtask from the latest
/// completed checkpoint) instead of ending FAILED, and still finishes exactly once.
#[cfg(feature = "fault-points")]
#[test]
fn too_many_checkpoint_failures_fail_the_job_over_and_it_still_finishes_exactly_once() {
    let mut run = LocalRun::start(
        "declined-checkpoint",
        400_000,
        40_000,
        &["--taskmanagers", "2"],
        &[("YARNFLOW_FAULTS", "decline-ack:subtask=0,checkpoint=1")],
    );
    let client = run.client();
    let rt = tokio::runtime::Runtime::new().unwrap();
    // Checkpoint 1 comes 500 ms in, the restart about 1 s later.
    let failed_over = poll_job(
        &rt,
        &client,
        "declined-checkpoint",
        Duration::from_secs(3 * 3),
        |j| j.restarts >= 1,
    );
    let exception = failed_over.exceptions.first().cloned().unwrap_or_default();
    assert!(
        exception.starts_with("job: 1 consecutive checkpoint failures exceed")
            && exception.contains("declined by subtask 0"),
        "{failed_over:?}"
    );
    let status = run.finish();
    assert!(status.success(), "{}", run.transcript);
    assert!(
        run.transcript.contains("FINISHED") && run.transcript.contains(" 1 restarts"),
        "{}",
        run.transcript
    );
    run.assert_exactly_once();
}

/// A local run killed after a checkpoint, whose newest checkpoint is then corrupted: the next
/// `yarnflow local` on the work directory recovers the job, refuses the corrupt checkpoint
/// (falling back is off by default) and exits non-zero with one line naming it; nothing ran
/// from 0 and the HA data is still there.
#[test]
fn a_corrupt_checkpoint_at_recovery_exits_non_zero_with_one_line_and_keeps_the_ha_data() {
    let name = "corrupt-at-recovery";
    let mut run = LocalRun::start(name, 10_000_000, 40_000, &["--taskmanagers", "0"], &[]);
    let client = run.client();
    let rt = tokio::runtime::Runtime::new().unwrap();
    poll_job(&rt, &client, name, Duration::from_secs(3 * 10), |j| {
        j.latest_checkpoint_id.is_some()
    });
    run.child.kill().unwrap();
    run.finish();
    let work = run.dir.join("work");
    let blobs: Vec<std::path::PathBuf> = std::fs::read_dir(work.join("ha/jobs"))
        .unwrap()
        .flat_map(|job| std::fs::read_dir(job.unwrap().path().join("checkpoints")).unwrap())
        .map(|e| e.unwrap().path())
        .collect();
    let [blob] = &blobs[..] else {
        panic!("one retained checkpoint: {blobs:?}")
    };
    std::fs::write(blob, b"not json").unwrap();
    let before = support::committed(&work.join("output")).lines.len();

    let out = support::yarnflow(&["local"])
        .arg(run.dir.join("job.yaml"))
        .args(["--taskmanagers", "0", "--workdir"])
        .arg(&work)
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "{stderr}");
    let line = stderr
        .lines()
        .find(|l| l.starts_with("yarnflow: "))
        .unwrap_or_else(|| panic!("no error line: {stderr}"));
    assert!(
        line.contains("cannot recover job")
            && line.contains(&blob.display().to_string())
            && line.contains("is corrupt"),
        "{line}"
    );
    assert_eq!(
        support::committed(&work.join("output")).lines.len(),
        before,
        "nothing ran from 0"
    );
    assert!(blob.exists(), "the HA data is kept");
    let _ = std::fs::remove_dir_all(&run.dir);
}

/// The keyed exchange between `yarnflow local`'s TaskManager processes: a word count
/// (`text-files` → `key-by: line` → `count` → files) at parallelism 2 on 2 processes, one of
/// them SIGKILLed mid-job. The whole job restarts from its latest checkpoint; the highest
/// count per word is its true count, and no `word,count` line is committed twice.
#[test]
fn a_keyed_count_across_taskmanager_processes_survives_a_sigkill_exactly() {
    let dir = support::workdir("local-keyed-kill");
    // A Zipf-like corpus: word i drawn with weight 1/(i+1), one per line.
    let corpus = support::wordcount::Corpus::zipf(
        &dir,
        &support::wordcount::Shape {
            files: 4,
            lines_per_file: 200_000,
            words_per_line: 1,
            vocabulary: 20_000,
            mixed: false,
        },
    );
    let spec = dir.join("wordcount.yaml");
    std::fs::write(
        &spec,
        format!(
            "name: keyed-kill\nparallelism: 2\ncheckpoint-interval: 200 ms\npipeline:\n  - source: {{ kind: text-files, paths: {} }}\n  - key-by: line\n  - count\n  - sink: {{ kind: files }}\n",
            corpus.yaml_paths()
        ),
    )
    .unwrap();
    let mut child = support::yarnflow(&["local"])
        .arg(&spec)
        .args(["--taskmanagers", "2", "--workdir"])
        .arg(dir.join("work"))
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    use std::io::BufRead;
    let mut lines = std::io::BufReader::new(child.stdout.take().unwrap()).lines();
    let FirstTaskManager {
        mut transcript,
        rest,
        victim,
    } = FirstTaskManager::read(&mut lines);
    let client = JobManagerClient::new(&rest.expect("REST address"), Duration::from_secs(10));
    let rt = tokio::runtime::Runtime::new().unwrap();
    poll_job(&rt, &client, "keyed-kill", Duration::from_secs(60), |j| {
        j.completed_checkpoints >= 1
    });
    // Keyed state went to files in the checkpoint directory, one per keyed subtask.
    let job_dirs: Vec<_> = std::fs::read_dir(dir.join("work/checkpoints"))
        .expect("the checkpoint directory exists once a checkpoint completed")
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    assert!(
        job_dirs.len() == 1 && job_dirs[0].starts_with("keyed-kill-"),
        "{job_dirs:?}"
    );
    unsafe {
        libc::kill(victim.expect("TaskManager pids are printed"), libc::SIGKILL);
    }
    for line in lines {
        transcript.push_str(&line.unwrap());
        transcript.push('\n');
    }
    assert!(child.wait().unwrap().success(), "{transcript}");
    assert!(transcript.contains("FINISHED"), "{transcript}");
    assert!(!transcript.contains(" 0 restarts"), "{transcript}");
    let committed = support::committed(&dir.join("work/output"));
    if let Err(e) = corpus.check(committed.lines.iter().map(String::as_str)) {
        panic!("{e}\n{transcript}");
    }
    // The finished job's keyed state snapshots are gone with its other HA data.
    let checkpoints = dir.join("work/checkpoints");
    let left: Vec<_> = std::fs::read_dir(&checkpoints)
        .map(|d| d.map(|e| e.unwrap().path()).collect())
        .unwrap_or_default();
    assert!(
        left.is_empty(),
        "left in {}: {left:?}",
        checkpoints.display()
    );
    let _ = std::fs::remove_dir_all(&dir);
}

/// The resident set of process `pid` in bytes (`VmRSS` of /proc), if it still runs.
fn rss(pid: i32) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let kb = status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))?
        .trim()
        .strip_suffix("kB")?
        .trim()
        .parse::<u64>()
        .ok()?;
    Some(kb * 1024)
}

/// Back-pressure: the word count with a `throttle` right before the sink, 1,000 records/s per
/// subtask against a source that reads millions per second, for over 60 s on 2 TaskManager
/// processes. Every word is padded to 1 kB, so the 130,000 words are 130 MB: more than the bound
/// if the source's reads piled up anywhere. The slow consumer withholds credit, so its
/// producers wait instead of buffering: each TaskManager's RSS grows by at most 64 MB over the
/// run, and the counts are exact.
#[test]
fn a_slow_sink_back_pressures_the_source_with_bounded_memory_and_exact_counts() {
    let dir = support::workdir("local-backpressure");
    let short = support::wordcount::Corpus::zipf(
        &dir,
        &support::wordcount::Shape {
            // Files of 1 MB: the source reads a file whole, so big files would be what
            // the RSS measures.
            files: 130,
            lines_per_file: 100,
            words_per_line: 10,
            vocabulary: 5_000,
            mixed: false,
        },
    );
    let pad = "x".repeat(1_000);
    for path in &short.paths {
        let text = std::fs::read_to_string(path).unwrap();
        let padded: Vec<String> = text
            .lines()
            .map(|l| {
                let words: Vec<String> = l.split(' ').map(|w| format!("{w}{pad}")).collect();
                words.join(" ")
            })
            .collect();
        std::fs::write(path, padded.join("\n") + "\n").unwrap();
    }
    let corpus = support::wordcount::Corpus {
        truth: short
            .truth
            .iter()
            .map(|(w, n)| (format!("{w}{pad}"), *n))
            .collect(),
        paths: short.paths,
    };
    let spec = dir.join("backpressure.yaml");
    std::fs::write(
        &spec,
        format!(
            "name: backpressure\nparallelism: 2\ncheckpoint-interval: 1 s\npipeline:\n  - source: {{ kind: text-files, paths: {} }}\n  - operator: tokenize\n  - key-by: line\n  - operator: count\n  - operator: {{ name: throttle, config: {{ records-per-second: 1000 }} }}\n  - sink: {{ kind: files }}\n",
            corpus.yaml_paths()
        ),
    )
    .unwrap();
    let started = Instant::now();
    let mut child = support::command(&support::wordcount_exe(), &["local"])
        .arg(&spec)
        .args(["--taskmanagers", "2", "--workdir"])
        .arg(dir.join("work"))
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let stdout = child.stdout.take().unwrap();
    let pids = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
    let reader = {
        let pids = pids.clone();
        std::thread::spawn(move || {
            use std::io::BufRead;
            let mut transcript = String::new();
            for line in std::io::BufReader::new(stdout).lines() {
                let line = line.unwrap();
                if let Some(pid) = line
                    .split_once(" started (pid ")
                    .filter(|(head, _)| head.starts_with("taskmanager "))
                    .and_then(|(_, r)| r.strip_suffix(')'))
                {
                    pids.lock().unwrap().push(pid.parse::<i32>().unwrap());
                }
                transcript.push_str(&line);
                transcript.push('\n');
            }
            transcript
        })
    };
    // Per TaskManager: its first RSS and its highest, sampled every 500 ms.
    let mut rss_of: BTreeMap<i32, (u64, u64)> = BTreeMap::new();
    let status = loop {
        for pid in pids.lock().unwrap().iter() {
            if let Some(now) = rss(*pid) {
                let (_, high) = rss_of.entry(*pid).or_insert((now, now));
                *high = (*high).max(now);
            }
        }
        if let Some(status) = child.try_wait().unwrap() {
            break status;
        }
        std::thread::sleep(Duration::from_millis(500));
    };
    let elapsed = started.elapsed();
    let transcript = reader.join().unwrap();
    assert!(status.success(), "{transcript}");
    assert!(
        elapsed >= Duration::from_secs(60),
        "{elapsed:?}: not throttled"
    );
    assert_eq!(rss_of.len(), 2, "2 TaskManagers sampled: {transcript}");
    for (pid, (first, high)) in &rss_of {
        println!(
            "TaskManager pid {pid}: RSS {} MB at start, {} MB at most, over {elapsed:?}",
            first >> 20,
            high >> 20
        );
        assert!(
            high - first <= 64 << 20,
            "TaskManager {pid} grew by {} MB",
            (high - first) >> 20
        );
    }
    let committed = support::committed(&dir.join("work/output"));
    if let Err(e) = corpus.check(committed.lines.iter().map(String::as_str)) {
        panic!("{e}");
    }
    let _ = std::fs::remove_dir_all(&dir);
}

/// A job of about `seconds` s (4,000 records/s), checkpointed every 200 ms, in `dir`.
fn progress_job(dir: &std::path::Path, seconds: u64) -> std::path::PathBuf {
    let _ = std::fs::remove_dir_all(dir);
    std::fs::create_dir_all(dir).unwrap();
    let job = dir.join("job.yaml");
    std::fs::write(
        &job,
        format!(
            "name: progress\nparallelism: 2\ncheckpoint-interval: 200 ms\npipeline:\n  - source: {{ kind: sequence, from: 0, to: {}, rate: 4000 }}\n  - sink: {{ kind: files }}\n",
            seconds * 4000
        ),
    )
    .unwrap();
    job
}

/// On a terminal (a pseudo-terminal from util-linux's `script`), `yarnflow local` shows one live
/// line with the job's status and latest checkpoint, redrawn in place; the per-checkpoint log
/// lines stay off the terminal.
#[test]
fn on_a_terminal_local_shows_one_live_progress_line() {
    let dir = std::env::temp_dir().join(format!("yarnflow-live-{}", std::process::id()));
    let job = progress_job(&dir, 4);
    // A terminal wide enough for the whole line (it is cut to the width).
    let command = format!(
        "stty rows 40 cols 200; '{}' local '{}' --taskmanagers 1 --workdir '{}'",
        env!("CARGO_BIN_EXE_yarnflow"),
        job.display(),
        dir.join("work").display()
    );
    let out = std::process::Command::new("script")
        .args(["-qec", &command, "/dev/null"])
        .current_dir(support::repo_root())
        .env_remove("YARNFLOW_CONF_DIR")
        .env_remove("RUST_LOG")
        .stdin(std::process::Stdio::null())
        .output()
        .expect("script (util-linux / bsdutils) is installed");
    let tty = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{tty}");
    assert!(tty.contains("FINISHED"), "{tty}");
    // Redrawn in place: carriage returns and erase-line sequences, no plain lines.
    assert!(tty.contains("\r\x1b[2K"), "{tty:?}");
    assert!(!tty.contains("progress: "), "{tty}");
    let live = tty
        .split(['\r', '\n'])
        .find(|l| l.contains("progress RUNNING | ") && l.contains(" s ago) | restarts: 0 | TMs: 1"))
        .unwrap_or_else(|| panic!("no live line with a checkpoint: {tty:?}"));
    assert!(live.contains("records/s | checkpoint "), "{live}");
    assert!(!tty.contains("checkpoint completed"), "{tty}");
    let _ = std::fs::remove_dir_all(&dir);
}

/// Without a terminal, `yarnflow local` prints a plain progress line every few seconds, and no
/// line per checkpoint.
#[test]
fn without_a_terminal_local_prints_a_periodic_progress_line() {
    let dir = std::env::temp_dir().join(format!("yarnflow-plain-{}", std::process::id()));
    let job = progress_job(&dir, 7);
    let started = Instant::now();
    let out = support::yarnflow(&["local"])
        .arg(&job)
        .args(["--taskmanagers", "0", "--workdir"])
        .arg(dir.join("work"))
        .env_remove("RUST_LOG")
        .output()
        .unwrap();
    let elapsed = started.elapsed();
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stdout}{stderr}");
    let progress: Vec<&str> = stdout
        .lines()
        .filter(|l| l.starts_with("progress: "))
        .collect();
    // One at the start, then one every 5 s: far fewer than the ~35 checkpoints.
    let most = elapsed.as_secs() / 5 + 1;
    assert!(
        !progress.is_empty() && progress.len() as u64 <= most,
        "{} progress lines in {elapsed:?}: {stdout}",
        progress.len()
    );
    assert!(
        progress.iter().all(|l| l.contains(" | restarts: 0")),
        "{stdout}"
    );
    assert!(
        progress
            .iter()
            .any(|l| l.contains("progress RUNNING") && l.contains(" records/s | ")),
        "{stdout}"
    );
    assert!(!stdout.contains("checkpoint completed"), "{stdout}");
    assert!(!stderr.contains("checkpoint completed"), "{stderr}");
    assert!(
        !stderr.contains(" INFO "),
        "info lines only at -v: {stderr}"
    );
    let _ = std::fs::remove_dir_all(&dir);
}

/// `yarnflow local --json` prints one JSON object per line, the last one `final`; with `-v`
/// the per-checkpoint log lines go to stderr, stdout stays JSON.
#[test]
fn local_json_progress_is_one_object_per_line() {
    let dir = std::env::temp_dir().join(format!("yarnflow-json-{}", std::process::id()));
    let job = progress_job(&dir, 3);
    let out = support::yarnflow(&["-v", "local", "--json"])
        .arg(&job)
        .args(["--taskmanagers", "1", "--workdir"])
        .arg(dir.join("work"))
        .env_remove("RUST_LOG")
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stdout}{stderr}");
    let lines: Vec<serde_json::Value> = stdout
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{e}: {l:?}")))
        .collect();
    let (last, running) = lines.split_last().expect("progress lines");
    assert_eq!(last["final"], true, "{stdout}");
    assert_eq!(last["status"], "FINISHED", "{stdout}");
    assert!(last["completed_checkpoints"].as_u64() > Some(0), "{stdout}");
    assert_eq!(last["records_in"], 12_000, "{stdout}");
    let view = running
        .iter()
        .find(|v| v["status"] == "RUNNING" && v["records_per_second"].is_number())
        .unwrap_or_else(|| panic!("a RUNNING line with a rate: {stdout}"));
    for key in [
        "job_id",
        "records_in",
        "latest_checkpoint_id",
        "latest_checkpoint_age_s",
        "restarts",
        "taskmanagers",
        "elapsed_s",
    ] {
        assert!(view.get(key).is_some(), "{key}: {view}");
    }
    assert_eq!(view["final"], false);
    assert!(stderr.contains("work directory: "), "{stderr}");
    assert!(stderr.contains("job progress FINISHED: "), "{stderr}");
    assert!(stderr.contains("checkpoint completed"), "-v: {stderr}");
    let _ = std::fs::remove_dir_all(&dir);
}
