//! One merged timeline out of many containers' logs: parse, filter, order by time, mark attempt
//! starts and container replacements, print as text or JSON.
//!
//! Input lines come from `yarnflow.jsonl` (our structured log: exact timestamps and fields) or,
//! for processes that never got that far, plain `stderr`/`stdout` text; a text line without a
//! timestamp inherits the previous line's, so stack traces and continuation lines stay in place.

use std::cmp::Ordering;

use regex::Regex;
use serde_json::{Map, Value};

/// Severity, ordered from least to most severe.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, serde::Serialize)]
pub enum Level {
    Trace,
    Debug,
    Info,
    Warn,
    Error,
}

impl Level {
    pub fn parse(s: &str) -> Option<Level> {
        match s.trim().to_ascii_uppercase().as_str() {
            "TRACE" => Some(Level::Trace),
            "DEBUG" => Some(Level::Debug),
            "INFO" => Some(Level::Info),
            "WARN" | "WARNING" => Some(Level::Warn),
            "ERROR" | "FATAL" => Some(Level::Error),
            _ => None,
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Level::Trace => "TRACE",
            Level::Debug => "DEBUG",
            Level::Info => "INFO",
            Level::Warn => "WARN",
            Level::Error => "ERROR",
        }
    }
}

/// Which process a line came from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Source {
    pub attempt: u32,
    pub container_id: String,
    /// The AM container of its attempt (else a TaskManager).
    pub is_am: bool,
}

/// One line of the timeline.
#[derive(Debug, Clone, PartialEq)]
pub struct LogLine {
    /// RFC 3339 UTC; `None` only before the first timestamped line of a file.
    pub ts: Option<jiff::Timestamp>,
    pub level: Option<Level>,
    pub source: Source,
    pub message: String,
    /// The structured fields (JSON logs only), without the ones printed separately.
    pub fields: Map<String, Value>,
    /// A marker line (attempt start, container replacement) rather than a log line.
    pub marker: bool,
}

/// Parses one container's `yarnflow.jsonl`. Lines that are not JSON objects are kept as text.
pub fn parse_json_log(text: &str, source: &Source) -> Vec<LogLine> {
    let mut out = Vec::new();
    let mut last_ts = None;
    for raw in text.lines().filter(|l| !l.trim().is_empty()) {
        let line = match serde_json::from_str::<Value>(raw) {
            Ok(Value::Object(mut map)) => {
                let ts = map
                    .remove("ts")
                    .and_then(|v| v.as_str().and_then(|s| s.parse().ok()))
                    .or(last_ts);
                let level = map
                    .remove("level")
                    .and_then(|v| v.as_str().and_then(Level::parse));
                let message = map
                    .remove("message")
                    .and_then(|v| v.as_str().map(str::to_string))
                    .unwrap_or_default();
                for k in [
                    "component",
                    "application_id",
                    "attempt",
                    "container_id",
                    "target",
                ] {
                    map.remove(k);
                }
                LogLine {
                    ts,
                    level,
                    source: source.clone(),
                    message,
                    fields: map,
                    marker: false,
                }
            }
            _ => text_line(raw, last_ts, source),
        };
        last_ts = line.ts;
        out.push(line);
    }
    out
}

/// Parses a plain-text log (stderr/stdout): a leading RFC 3339 timestamp and level are picked
/// up when present (our stderr format, Hadoop's `yyyy-MM-dd HH:mm:ss,SSS LEVEL`).
pub fn parse_text_log(text: &str, source: &Source) -> Vec<LogLine> {
    let mut out = Vec::new();
    let mut last_ts = None;
    for raw in text.lines().filter(|l| !l.trim().is_empty()) {
        let line = text_line(raw, last_ts, source);
        last_ts = line.ts;
        out.push(line);
    }
    out
}

fn text_line(raw: &str, last_ts: Option<jiff::Timestamp>, source: &Source) -> LogLine {
    let stripped = strip_ansi(raw);
    let mut words = stripped.split_whitespace();
    let first = words.next().unwrap_or_default();
    let (ts, rest) = match first.parse::<jiff::Timestamp>() {
        Ok(ts) => (Some(ts), stripped[first.len()..].trim_start().to_string()),
        Err(_) => (None, stripped.clone()),
    };
    let (level, message) = match rest.split_whitespace().next().and_then(Level::parse) {
        Some(level) if ts.is_some() => {
            let word = rest.split_whitespace().next().unwrap_or_default();
            (Some(level), rest[word.len()..].trim_start().to_string())
        }
        _ => (None, rest),
    };
    LogLine {
        ts: ts.or(last_ts),
        level,
        source: source.clone(),
        message,
        fields: Map::new(),
        marker: false,
    }
}

fn strip_ansi(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    let mut chars = s.chars().peekable();
    while let Some(c) = chars.next() {
        if c == '\u{1b}' && chars.peek() == Some(&'[') {
            chars.next();
            for c in chars.by_ref() {
                if c.is_ascii_alphabetic() {
                    break;
                }
            }
        } else {
            out.push(c);
        }
    }
    out
}

/// A marker line at an attempt start or a container start.
pub fn marker(ts: jiff::Timestamp, source: &Source, text: String) -> LogLine {
    LogLine {
        ts: Some(ts),
        level: None,
        source: source.clone(),
        message: text,
        fields: Map::new(),
        marker: true,
    }
}

/// Which containers `--container` selects.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ContainerFilter {
    Am,
    Tm,
    Id(String),
}

impl ContainerFilter {
    pub fn parse(s: &str) -> ContainerFilter {
        match s {
            "am" => ContainerFilter::Am,
            "tm" => ContainerFilter::Tm,
            id => ContainerFilter::Id(id.to_string()),
        }
    }
}

/// The `yarnflow logs` filters.
#[derive(Debug, Clone, Default)]
pub struct Filter {
    pub attempt: Option<u32>,
    pub container: Option<ContainerFilter>,
    pub min_level: Option<Level>,
    pub grep: Option<Regex>,
    pub since: Option<jiff::Timestamp>,
}

impl Filter {
    pub fn accepts(&self, line: &LogLine) -> bool {
        if let Some(a) = self.attempt
            && line.source.attempt != a
        {
            return false;
        }
        match &self.container {
            Some(ContainerFilter::Am) if !line.source.is_am => return false,
            Some(ContainerFilter::Tm) if line.source.is_am => return false,
            Some(ContainerFilter::Id(id)) if &line.source.container_id != id => return false,
            _ => {}
        }
        if let Some(since) = self.since
            && line.ts.is_some_and(|ts| ts < since)
        {
            return false;
        }
        if line.marker {
            // Markers frame whatever survives the level and grep filters.
            return true;
        }
        if let Some(min) = self.min_level
            && line.level.is_none_or(|l| l < min)
        {
            return false;
        }
        if let Some(re) = &self.grep
            && !re.is_match(&line.message)
            && !re.is_match(&Value::Object(line.fields.clone()).to_string())
        {
            return false;
        }
        true
    }
}

/// Merges per-container lines into one timeline ordered by time (stable: lines with equal or
/// missing timestamps keep their file order; a marker sorts before lines of the same instant).
pub fn merge(mut lines: Vec<LogLine>) -> Vec<LogLine> {
    lines.sort_by(|a, b| match (a.ts, b.ts) {
        (Some(x), Some(y)) => x.cmp(&y).then_with(|| b.marker.cmp(&a.marker)),
        _ => Ordering::Equal,
    });
    lines
}

/// `<ts> <LEVEL> [a<attempt> <container>] <message> k=v ...`
pub fn format_text(line: &LogLine) -> String {
    let ts = line
        .ts
        .map(|t| format!("{t:.3}"))
        .unwrap_or_else(|| "-".repeat(24));
    let who = format!(
        "a{} {}{}",
        line.source.attempt,
        short_container(&line.source.container_id),
        if line.source.is_am { " am" } else { "" }
    );
    if line.marker {
        return format!("{ts} ===== [{who}] {} =====", line.message);
    }
    let level = line.level.map(Level::as_str).unwrap_or("");
    let mut s = format!("{ts} {level:<5} [{who}] {}", line.message);
    for (k, v) in &line.fields {
        match v {
            Value::String(text) => s.push_str(&format!(" {k}={text}")),
            other => s.push_str(&format!(" {k}={other}")),
        }
    }
    s
}

/// One JSON object per line, with the source spelled out.
pub fn format_json(line: &LogLine) -> String {
    let mut map = line.fields.clone();
    if let Some(ts) = line.ts {
        map.insert("ts".into(), ts.to_string().into());
    }
    if let Some(level) = line.level {
        map.insert("level".into(), level.as_str().into());
    }
    map.insert("attempt".into(), line.source.attempt.into());
    map.insert(
        "container_id".into(),
        line.source.container_id.clone().into(),
    );
    map.insert("am".into(), line.source.is_am.into());
    map.insert("message".into(), line.message.clone().into());
    if line.marker {
        map.insert("marker".into(), true.into());
    }
    Value::Object(map).to_string()
}

/// `container_1700000000000_0001_02_000003` → `c02_000003` (attempt and sequence are what
/// tell containers of one application apart).
fn short_container(id: &str) -> String {
    let parts: Vec<&str> = id.split('_').collect();
    match parts.as_slice() {
        [.., attempt, seq] if parts.len() >= 5 => format!("c{attempt}_{seq}"),
        _ => id.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn src(attempt: u32, seq: u32, am: bool) -> Source {
        Source {
            attempt,
            container_id: format!("container_1_0001_{attempt:02}_{seq:06}"),
            is_am: am,
        }
    }

    #[test]
    fn merges_json_and_text_in_time_order_with_markers() {
        let am1 = parse_json_log(
            concat!(
                r#"{"ts":"2026-01-01T00:00:01Z","level":"INFO","message":"attempt started","component":"appmaster"}"#,
                "\n",
                r#"{"ts":"2026-01-01T00:00:03Z","level":"ERROR","message":"lost","job_id":"j1"}"#,
                "\n"
            ),
            &src(1, 1, true),
        );
        let tm = parse_text_log(
            "2026-01-01T00:00:02.000000Z  WARN yarnflow::tm: slow\n   continuation\n",
            &src(1, 2, false),
        );
        let am2 = parse_json_log(
            r#"{"ts":"2026-01-01T00:00:05Z","level":"INFO","message":"leadership granted","leader_epoch":2}"#,
            &src(2, 1, true),
        );
        let mark = marker(
            "2026-01-01T00:00:05Z".parse().unwrap(),
            &src(2, 1, true),
            "attempt 2 started".into(),
        );
        let all = merge([am1, tm, am2, vec![mark]].concat());
        let text: Vec<String> = all.iter().map(format_text).collect();
        assert!(text[0].contains("attempt started"), "{text:?}");
        assert!(
            text[1].contains("WARN") && text[1].contains("slow"),
            "{text:?}"
        );
        assert!(text[2].contains("continuation"), "{text:?}");
        assert!(text[3].contains("lost") && text[3].contains("job_id=j1"));
        assert!(text[4].contains("===== [a2 c02_000001 am] attempt 2 started"));
        assert!(text[5].contains("leader_epoch=2"));
    }

    #[test]
    fn filters_by_level_container_attempt_and_grep() {
        let lines = merge(
            [
                parse_json_log(
                    r#"{"ts":"2026-01-01T00:00:01Z","level":"INFO","message":"hello"}"#,
                    &src(1, 1, true),
                ),
                parse_json_log(
                    r#"{"ts":"2026-01-01T00:00:02Z","level":"ERROR","message":"boom"}"#,
                    &src(2, 3, false),
                ),
            ]
            .concat(),
        );
        let count = |f: Filter| lines.iter().filter(|l| f.accepts(l)).count();
        assert_eq!(count(Filter::default()), 2);
        assert_eq!(
            count(Filter {
                min_level: Some(Level::Error),
                ..Filter::default()
            }),
            1
        );
        assert_eq!(
            count(Filter {
                container: Some(ContainerFilter::Am),
                ..Filter::default()
            }),
            1
        );
        assert_eq!(
            count(Filter {
                attempt: Some(2),
                ..Filter::default()
            }),
            1
        );
        assert_eq!(
            count(Filter {
                grep: Some(Regex::new("^hel").unwrap()),
                ..Filter::default()
            }),
            1
        );
        assert_eq!(
            count(Filter {
                since: Some("2026-01-01T00:00:01.5Z".parse().unwrap()),
                ..Filter::default()
            }),
            1
        );
    }

    #[test]
    fn json_output_parses_and_garbage_is_kept_as_text() {
        let lines = parse_json_log("not json at all\n{\"broken\":\n", &src(1, 2, false));
        assert_eq!(lines.len(), 2);
        for l in &lines {
            let v: Value = serde_json::from_str(&format_json(l)).unwrap();
            assert_eq!(v["attempt"], 1);
        }
    }
}
