//! Finding and fetching every container log of a YARN application.
//!
//! Attempts (and their AM containers) come from the RM REST API. TaskManager containers come
//! from the AM's own structured log — every yarnflow AM logs `container started` with the
//! container id and its NodeManager's web address — plus the RM's list of running containers.
//! Logs are read from the NodeManagers' REST API (`/ws/v1/node/containers/{id}/logs/{file}`),
//! which serves finished containers' files while they are kept on the node.

use std::collections::BTreeMap;
use std::time::Duration;

use serde_json::Value;

use super::timeline::{self, LogLine, Source};
use crate::hadoop::rest::RmRest;
use crate::logging::JSON_LOG_FILE;

/// One container whose logs to read.
#[derive(Debug, Clone)]
pub struct ContainerRef {
    pub source: Source,
    pub node_http: String,
    /// When it started, if known (for the marker line and for untimed lines).
    pub started: Option<jiff::Timestamp>,
}

/// What was collected, plus one line per thing that could not be read.
#[derive(Debug, Default)]
pub struct Collected {
    pub lines: Vec<LogLine>,
    pub problems: Vec<String>,
}

fn ms_to_ts(ms: i64) -> Option<jiff::Timestamp> {
    (ms > 0)
        .then(|| jiff::Timestamp::from_millisecond(ms).ok())
        .flatten()
}

/// The NodeManager wraps a log file in a header and a footer; keep the contents.
pub fn strip_nm_wrapper(text: &str) -> String {
    match text.find("LogContents:\n") {
        Some(i) => {
            let body = &text[i + "LogContents:\n".len()..];
            match body.rfind("End of LogType:") {
                Some(j) => body[..j].to_string(),
                None => body.to_string(),
            }
        }
        None => text.to_string(),
    }
}

pub struct LogCollector {
    rest: RmRest,
    http: reqwest::Client,
}

impl LogCollector {
    pub fn new(rest: RmRest) -> LogCollector {
        LogCollector {
            rest,
            http: reqwest::Client::builder()
                .timeout(Duration::from_secs(10))
                .build()
                .expect("a plain HTTP client builds"),
        }
    }

    async fn get_text(&self, url: &str) -> Result<String, String> {
        let r = self.http.get(url).send().await.map_err(|e| e.to_string())?;
        if !r.status().is_success() {
            return Err(format!("HTTP {}", r.status()));
        }
        r.text().await.map_err(|e| e.to_string())
    }

    /// The log file names of a container on its NodeManager (empty: none left there).
    async fn files(&self, c: &ContainerRef) -> Result<Vec<String>, String> {
        let url = format!(
            "http://{}/ws/v1/node/containers/{}/logs",
            c.node_http, c.source.container_id
        );
        let text = self.get_text(&url).await?;
        let v: Value = serde_json::from_str(&text).map_err(|e| format!("not JSON: {e}"))?;
        let info = &v["containerLogsInfo"]["containerLogInfo"];
        let list = match info {
            Value::Array(a) => a.clone(),
            Value::Null => vec![],
            other => vec![other.clone()],
        };
        Ok(list
            .iter()
            .filter_map(|f| f["fileName"].as_str().map(str::to_string))
            .collect())
    }

    /// Reads one container: its JSON log if it has one, else its stderr and stdout.
    async fn read(&self, c: &ContainerRef, out: &mut Collected) {
        let files = match self.files(c).await {
            Ok(f) if !f.is_empty() => f,
            Ok(_) => {
                out.problems.push(format!(
                    "logs of {} are no longer on NodeManager {}",
                    c.source.container_id, c.node_http
                ));
                return;
            }
            Err(e) => {
                out.problems.push(format!(
                    "cannot read logs of {} from NodeManager {}: {e}",
                    c.source.container_id, c.node_http
                ));
                return;
            }
        };
        let mut wanted = Vec::new();
        if files.iter().any(|f| f == JSON_LOG_FILE) {
            wanted.push(JSON_LOG_FILE);
            // Lines a process wrote before its logging started (or a crash) are on stdout.
            wanted.push("stdout");
        } else {
            wanted.extend(["stderr", "stdout"]);
        }
        for file in wanted.into_iter().filter(|w| files.iter().any(|f| f == w)) {
            let url = format!(
                "http://{}/ws/v1/node/containers/{}/logs/{file}",
                c.node_http, c.source.container_id
            );
            match self.get_text(&url).await {
                Ok(text) => {
                    let text = strip_nm_wrapper(&text);
                    let mut lines = if file == JSON_LOG_FILE {
                        timeline::parse_json_log(&text, &c.source)
                    } else {
                        timeline::parse_text_log(&text, &c.source)
                    };
                    for l in &mut lines {
                        if l.ts.is_none() {
                            l.ts = c.started;
                        }
                    }
                    out.lines.extend(lines);
                }
                Err(e) => out.problems.push(format!(
                    "cannot read {file} of {} from NodeManager {}: {e}",
                    c.source.container_id, c.node_http
                )),
            }
        }
    }

    /// Everything of one application, with attempt and container markers.
    pub async fn collect(&self, app: &str) -> Result<Collected, crate::hadoop::rest::RestError> {
        let mut out = Collected::default();
        let attempts = self.rest.attempts(app).await?;
        let mut containers: BTreeMap<String, ContainerRef> = BTreeMap::new();
        for a in &attempts {
            let source = Source {
                attempt: a.id as u32,
                container_id: a.container_id.clone(),
                is_am: true,
            };
            let started = ms_to_ts(a.start_time);
            if let Some(ts) = started {
                out.lines.push(timeline::marker(
                    ts,
                    &source,
                    format!(
                        "attempt {} started: ApplicationMaster {} on {}",
                        a.id, a.container_id, a.node_id
                    ),
                ));
            }
            containers.insert(
                a.container_id.clone(),
                ContainerRef {
                    source,
                    node_http: a.node_http_address.clone(),
                    started,
                },
            );
            // Live containers the RM knows of.
            if let Ok(list) = self.rest.containers(app, &a.attempt_id).await {
                for c in list {
                    containers
                        .entry(c.container_id.clone())
                        .or_insert(ContainerRef {
                            source: source_of(&c.container_id, false),
                            node_http: c
                                .node_http_address
                                .trim_start_matches("http://")
                                .to_string(),
                            started: ms_to_ts(c.started_time),
                        });
                }
            }
        }
        // The AMs' logs first: they name every TaskManager container they started.
        let ams: Vec<ContainerRef> = containers.values().cloned().collect();
        for am in &ams {
            self.read(am, &mut out).await;
        }
        let mut started_events = Vec::new();
        for l in &out.lines {
            if l.source.is_am
                && l.message == "container started"
                && let (Some(id), Some(http)) = (
                    l.fields.get("container").and_then(Value::as_str),
                    l.fields.get("node_http").and_then(Value::as_str),
                )
            {
                started_events.push((id.to_string(), http.to_string(), l.ts));
            }
        }
        let mut tms = Vec::new();
        for (id, http, ts) in started_events {
            let entry = containers
                .entry(id.clone())
                .or_insert_with(|| ContainerRef {
                    source: source_of(&id, false),
                    node_http: http.clone(),
                    started: ts,
                });
            if entry.started.is_none() {
                entry.started = ts;
            }
            tms.push(entry.clone());
        }
        for c in containers.values() {
            if !c.source.is_am
                && !tms
                    .iter()
                    .any(|t| t.source.container_id == c.source.container_id)
            {
                tms.push(c.clone());
            }
        }
        // A container started after another of its attempt completed replaces it.
        let completions: Vec<(u32, Option<jiff::Timestamp>)> = out
            .lines
            .iter()
            .filter(|l| l.source.is_am && l.message == "container completed")
            .map(|l| (l.source.attempt, l.ts))
            .collect();
        for tm in &tms {
            if let Some(ts) = tm.started {
                let replaces = completions
                    .iter()
                    .any(|(a, t)| *a == tm.source.attempt && t.is_some_and(|t| t < ts));
                out.lines.push(timeline::marker(
                    ts,
                    &tm.source,
                    format!(
                        "container {} started on {}{}",
                        tm.source.container_id,
                        tm.node_http,
                        if replaces { " (replacement)" } else { "" }
                    ),
                ));
            }
            self.read(tm, &mut out).await;
        }
        out.lines = timeline::merge(std::mem::take(&mut out.lines));
        Ok(out)
    }
}

/// The attempt of a container id (`container_..._<attempt>_<seq>`).
fn source_of(container_id: &str, is_am: bool) -> Source {
    let attempt = container_id
        .rsplit('_')
        .nth(1)
        .and_then(|a| a.parse().ok())
        .unwrap_or(0);
    Source {
        attempt,
        container_id: container_id.to_string(),
        is_am,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nm_wrapper_is_stripped() {
        let t = "Container: c on n\nLogAggregationType: LOCAL\n=====\nLogType:stdout\nLogLength:6\nLogContents:\nhello\nEnd of LogType:stdout.This log file belongs to a running container\n****\n";
        assert_eq!(strip_nm_wrapper(t), "hello\n");
        assert_eq!(strip_nm_wrapper("plain"), "plain");
        assert_eq!(source_of("container_1_0001_02_000003", false).attempt, 2);
    }
}
