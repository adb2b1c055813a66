//! The progress of a running job, as `yarnflow local` and an attached `yarnflow submit` show it:
//! fed the job's REST view about once a second ([`POLL_INTERVAL`]), it shows job status,
//! records/s, the latest checkpoint and its age, restarts and TaskManagers:
//!
//! * on a terminal (stderr): one live status line (indicatif), other lines printed above it;
//! * without one (CI, pipes): a plain `progress: ...` line on stdout every [`PLAIN_INTERVAL`];
//! * with `--json`: one JSON object per view on stdout (the fields of [`Report`]), the
//!   command's other lines on stderr, and a last object with `"final": true`.
//!
//! Per-checkpoint log lines stay off the terminal (see [`crate::logging::StderrLevel::Quiet`]).

use std::collections::VecDeque;
use std::io::IsTerminal;
use std::time::{Duration, Instant};

use serde::Serialize;

use crate::jobmanager::job_master::JobSnapshot;

/// How often the commands read the job's view and feed it here.
pub const POLL_INTERVAL: Duration = Duration::from_secs(1);
/// How often a plain progress line is printed without a terminal.
pub const PLAIN_INTERVAL: Duration = Duration::from_secs(5);
/// records/s is the rate over about this much of the latest views.
const RATE_WINDOW: Duration = Duration::from_secs(10);

/// How progress is shown.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    /// A live line on the terminal.
    Live,
    /// A plain line every [`PLAIN_INTERVAL`].
    Plain,
    /// A JSON object per view.
    Json,
}

impl Mode {
    /// `Json` if asked for, else `Live` when stderr (where the line is drawn) is a terminal.
    pub fn detect(json: bool) -> Mode {
        if json {
            Mode::Json
        } else if std::io::stderr().is_terminal() {
            Mode::Live
        } else {
            Mode::Plain
        }
    }
}

/// One progress report: what every mode shows of one job view.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Report {
    pub job_id: String,
    pub status: String,
    /// Records the sources read ([`JobSnapshot::records_in`]).
    pub records_in: u64,
    /// `None` until two views are far enough apart.
    pub records_per_second: Option<f64>,
    pub latest_checkpoint_id: Option<u64>,
    /// Seconds since the JobManager saw the latest checkpoint complete.
    pub latest_checkpoint_age_s: Option<f64>,
    pub completed_checkpoints: u64,
    pub restarts: u32,
    /// Registered TaskManagers, if the JobManager said.
    pub taskmanagers: Option<usize>,
    /// Seconds since the command started.
    pub elapsed_s: f64,
}

impl Report {
    /// The report of `job` at `now_ms` (ms since the Unix epoch, to age its checkpoint).
    pub fn new(
        job: &JobSnapshot,
        records_per_second: Option<f64>,
        taskmanagers: Option<usize>,
        elapsed: Duration,
        now_ms: u64,
    ) -> Report {
        Report {
            job_id: job.job_id.clone(),
            status: job.status.to_string(),
            records_in: job.records_in,
            records_per_second,
            latest_checkpoint_id: job.latest_checkpoint_id,
            latest_checkpoint_age_s: job
                .latest_checkpoint_completed_ms
                .map(|at| now_ms.saturating_sub(at) as f64 / 1000.0),
            completed_checkpoints: job.completed_checkpoints,
            restarts: job.restarts,
            taskmanagers,
            elapsed_s: elapsed.as_secs_f64(),
        }
    }
}

/// The one-line text of a report (the live line; the plain line after `progress: `).
pub fn format(r: &Report) -> String {
    let rate = match r.records_per_second {
        Some(v) if v >= 1_000_000.0 => format!("{:.2}M records/s", v / 1_000_000.0),
        Some(v) if v >= 10_000.0 => format!("{:.1}k records/s", v / 1000.0),
        Some(v) => format!("{v:.0} records/s"),
        None => "- records/s".into(),
    };
    let checkpoint = match (r.latest_checkpoint_id, r.latest_checkpoint_age_s) {
        (Some(id), Some(age)) => format!("checkpoint {id} ({age:.1} s ago)"),
        (Some(id), None) => format!("checkpoint {id}"),
        (None, _) => "no checkpoint yet".into(),
    };
    let mut line = format!(
        "{} {} | {rate} | {checkpoint} | restarts: {}",
        r.job_id, r.status, r.restarts
    );
    if let Some(n) = r.taskmanagers {
        line.push_str(&format!(" | TMs: {n}"));
    }
    line.push_str(&format!(" | {:.0} s", r.elapsed_s));
    line
}

/// records/s from a monotonic counter's samples over [`RATE_WINDOW`].
#[derive(Debug, Default)]
struct Rate {
    samples: VecDeque<(Instant, u64)>,
}

impl Rate {
    /// Takes the counter's value `total` at `now`; the rate over the window, once the samples
    /// span half a second. A value below the previous one (another JobManager counting from 0)
    /// starts over.
    fn sample(&mut self, now: Instant, total: u64) -> Option<f64> {
        if self.samples.back().is_some_and(|&(_, last)| total < last) {
            self.samples.clear();
        }
        self.samples.push_back((now, total));
        // Keep one sample at or beyond the window's start.
        while self.samples.len() > 2 && now.duration_since(self.samples[1].0) >= RATE_WINDOW {
            self.samples.pop_front();
        }
        let (t0, first) = *self.samples.front()?;
        let span = now.duration_since(t0);
        (span >= Duration::from_millis(500)).then(|| (total - first) as f64 / span.as_secs_f64())
    }
}

/// Shows a job's progress in one of the [`Mode`]s.
pub struct Progress {
    mode: Mode,
    /// The live line (`Live` only).
    bar: Option<indicatif::ProgressBar>,
    rate: Rate,
    started: Instant,
    /// When the next plain line is due.
    next_plain: Instant,
}

impl Progress {
    /// Starts showing progress; the live line spins at once (see [`Progress::status`]).
    pub fn new(mode: Mode) -> Progress {
        let bar = (mode == Mode::Live).then(|| {
            let bar = indicatif::ProgressBar::new_spinner();
            // Cut to the terminal's width: a wrapped line would not redraw in place.
            if let Ok(style) = indicatif::ProgressStyle::with_template("{spinner} {wide_msg}") {
                bar.set_style(style);
            }
            bar.enable_steady_tick(Duration::from_millis(200));
            bar
        });
        let now = Instant::now();
        Progress {
            mode,
            bar,
            rate: Rate::default(),
            started: now,
            next_plain: now,
        }
    }

    /// Prints a line of the command's own (above the live line; on stderr in `Json` mode).
    pub fn line(&self, msg: &str) {
        match (&self.bar, self.mode) {
            (Some(bar), _) => bar.println(msg),
            (None, Mode::Json) => eprintln!("{msg}"),
            (None, _) => println!("{msg}"),
        }
    }

    /// Prints a warning or error line on stderr (above the live line).
    pub fn warn(&self, msg: &str) {
        match &self.bar {
            Some(bar) => bar.suspend(|| eprintln!("{msg}")),
            None => eprintln!("{msg}"),
        }
    }

    /// What the command does before there is a job view (the live line only).
    pub fn status(&self, msg: &str) {
        if let Some(bar) = &self.bar {
            bar.set_message(msg.to_string());
        }
    }

    /// Shows the job's latest view (`taskmanagers`: how many are registered, if known).
    pub fn update(&mut self, job: &JobSnapshot, taskmanagers: Option<usize>) {
        let now = Instant::now();
        let rate = self.rate.sample(now, job.records_in);
        let report = Report::new(
            job,
            rate,
            taskmanagers,
            now.duration_since(self.started),
            crate::now_ms(),
        );
        match self.mode {
            Mode::Live => self.status(&format(&report)),
            Mode::Plain if now >= self.next_plain => {
                println!("progress: {}", format(&report));
                self.next_plain = now + PLAIN_INTERVAL;
            }
            Mode::Plain => {}
            Mode::Json => println!("{}", json_line(&report, false)),
        }
    }

    /// Clears the live line and prints the command's last line, `text` (on stderr in `Json`
    /// mode, where `job`'s report with `"final": true` follows on stdout).
    pub fn finish(&self, job: Option<&JobSnapshot>, text: &str) {
        if let Some(bar) = &self.bar {
            bar.finish_and_clear();
        }
        if self.mode != Mode::Json {
            println!("{text}");
            return;
        }
        eprintln!("{text}");
        if let Some(job) = job {
            let report = Report::new(job, None, None, self.started.elapsed(), crate::now_ms());
            println!("{}", json_line(&report, true));
        }
    }

    /// Clears the live line (an error follows, or nothing).
    pub fn clear(&self) {
        if let Some(bar) = &self.bar {
            bar.finish_and_clear();
        }
    }
}

/// `report` as one JSON object (`final`: the job's last one).
fn json_line(report: &Report, last: bool) -> String {
    let mut value = serde_json::to_value(report).unwrap_or_default();
    if let Some(map) = value.as_object_mut() {
        map.insert("final".into(), last.into());
    }
    value.to_string()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::jobmanager::status::JobStatus;

    fn job() -> JobSnapshot {
        JobSnapshot {
            job_id: "wordcount".into(),
            status: JobStatus::Running,
            records_in: 12_000,
            restarts: 1,
            completed_checkpoints: 6,
            latest_checkpoint_id: Some(7),
            latest_checkpoint_completed_ms: Some(1_000_000),
            ..Default::default()
        }
    }

    #[test]
    fn a_report_is_one_line_with_every_field() {
        let r = Report::new(
            &job(),
            Some(2500.4),
            Some(2),
            Duration::from_secs(42),
            1_002_100,
        );
        assert_eq!(
            format(&r),
            "wordcount RUNNING | 2500 records/s | checkpoint 7 (2.1 s ago) | restarts: 1 | TMs: 2 | 42 s"
        );
        let fresh = JobSnapshot {
            latest_checkpoint_id: None,
            latest_checkpoint_completed_ms: None,
            restarts: 0,
            ..job()
        };
        let r = Report::new(&fresh, None, None, Duration::ZERO, 0);
        assert_eq!(
            format(&r),
            "wordcount RUNNING | - records/s | no checkpoint yet | restarts: 0 | 0 s"
        );
        let rate = |v: f64| {
            let line = format(&Report::new(&job(), Some(v), None, Duration::ZERO, 0));
            line.split(" | ").nth(1).unwrap().to_string()
        };
        assert_eq!(rate(12_345.0), "12.3k records/s");
        assert_eq!(rate(1_250_000.0), "1.25M records/s");
    }

    #[test]
    fn json_lines_carry_the_same_fields() {
        let r = Report::new(
            &job(),
            Some(10.0),
            Some(3),
            Duration::from_secs(1),
            1_000_500,
        );
        let v: serde_json::Value = serde_json::from_str(&json_line(&r, false)).unwrap();
        assert_eq!(v["job_id"], "wordcount");
        assert_eq!(v["status"], "RUNNING");
        assert_eq!(v["records_in"], 12_000);
        assert_eq!(v["records_per_second"], 10.0);
        assert_eq!(v["latest_checkpoint_id"], 7);
        assert_eq!(v["latest_checkpoint_age_s"], 0.5);
        assert_eq!(v["restarts"], 1);
        assert_eq!(v["taskmanagers"], 3);
        assert_eq!(v["final"], false);
        assert!(!json_line(&r, true).contains('\n'));
    }

    #[test]
    fn the_rate_is_over_the_window_and_restarts_when_the_counter_does() {
        let t = Instant::now();
        let at = |ms: u64| t + Duration::from_millis(ms);
        let mut rate = Rate::default();
        assert_eq!(rate.sample(at(0), 0), None);
        assert_eq!(rate.sample(at(200), 100), None, "too short a span");
        assert_eq!(rate.sample(at(1000), 1000), Some(1000.0));
        for s in 2..=20u64 {
            rate.sample(at(s * 1000), s * 1000 + s * s);
        }
        // About 10 s of samples kept: the recent rate, not the average since the start.
        let r = rate.sample(at(21_000), 21_000 + 441).unwrap();
        let expected = ((21_000 + 441) - (11_000 + 121)) as f64 / 10.0;
        assert!((r - expected).abs() < 1e-9, "{r} vs {expected}");
        // Another JobManager counts from 0: no negative rate.
        assert_eq!(rate.sample(at(22_000), 50), None);
        assert_eq!(rate.sample(at(23_000), 1050), Some(1000.0));
    }
}
