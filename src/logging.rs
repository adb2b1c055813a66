//! Logging for every yarnflow process: human-readable lines on stderr, and, where the process has
//! a log directory (YARN's `LOG_DIRS` in a container, `YARNFLOW_LOG_DIR` elsewhere), a
//! machine-readable JSON-lines file `yarnflow.jsonl` that `yarnflow logs` merges across attempts
//! and containers.
//!
//! Every JSON line carries `ts` (RFC 3339, UTC, microseconds), `level`, `target`, `message`, the
//! process identity (`component`, `application_id`, `attempt`, `container_id`, from
//! `CONTAINER_ID`), the fields of the enclosing spans (e.g. `job_id`, `leader_epoch`) and the
//! event's own fields (e.g. `checkpoint_id`). Lines are flushed one by one, so a SIGKILLed process
//! loses nothing it logged. Fields whose name says they hold a secret are redacted as a last line
//! of defence; code must not log tokens or passwords in the first place.

use std::fs::{File, OpenOptions};
use std::io::{LineWriter, Write};
use std::path::{Path, PathBuf};
use std::sync::Mutex;

use serde_json::{Map, Value};
use tracing::field::{Field, Visit};
use tracing::span::{Attributes, Id, Record};
use tracing::{Event, Subscriber};
use tracing_subscriber::layer::{Context, SubscriberExt};
use tracing_subscriber::registry::LookupSpan;
use tracing_subscriber::util::SubscriberInitExt;
use tracing_subscriber::{EnvFilter, Layer};

/// The JSON log file name inside the log directory.
pub const JSON_LOG_FILE: &str = "yarnflow.jsonl";

/// Who this process is, stamped on every JSON line.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct ProcessIdentity {
    /// `client`, `appmaster`, `taskmanager`, `jobmanager`, ...
    pub component: String,
    pub application_id: Option<String>,
    pub attempt: Option<u32>,
    pub container_id: Option<String>,
}

impl ProcessIdentity {
    /// The identity from YARN's `CONTAINER_ID` (absent outside a container).
    pub fn from_env(component: &str) -> ProcessIdentity {
        let container_id = std::env::var("CONTAINER_ID").ok();
        let parsed = container_id.as_deref().and_then(parse_container_id);
        ProcessIdentity {
            component: component.to_string(),
            application_id: parsed.as_ref().map(|p| p.0.clone()),
            attempt: parsed.map(|p| p.1),
            container_id,
        }
    }
}

/// `container_[e<epoch>_]<clusterTs>_<appId>_<attempt>_<seq>` → (`application_<ts>_<app>`, attempt).
pub fn parse_container_id(id: &str) -> Option<(String, u32)> {
    let rest = id.strip_prefix("container_")?;
    let mut parts: Vec<&str> = rest.split('_').collect();
    if parts.first().is_some_and(|p| p.starts_with('e')) {
        parts.remove(0);
    }
    let [ts, app, attempt, seq] = parts.as_slice() else {
        return None;
    };
    if ![ts, app, attempt, seq]
        .iter()
        .all(|p| !p.is_empty() && p.bytes().all(|b| b.is_ascii_digit()))
    {
        return None;
    }
    Some((format!("application_{ts}_{app}"), attempt.parse().ok()?))
}

/// The log directory of this process: the first of YARN's `LOG_DIRS`, else `YARNFLOW_LOG_DIR`.
pub fn log_dir_from_env() -> Option<PathBuf> {
    if let Ok(dirs) = std::env::var("LOG_DIRS")
        && let Some(first) = dirs.split(',').find(|d| !d.is_empty())
    {
        return Some(PathBuf::from(first));
    }
    std::env::var_os("YARNFLOW_LOG_DIR").map(PathBuf::from)
}

/// The default filter: `info`, dependencies' routine chatter (session established, ...) only
/// when asked for.
const DEFAULT_FILTER: &str = "info,zookeeper_client=warn,h2=warn,hyper=warn";

/// Overrides what reaches stderr (a filter directive), below `RUST_LOG`: how `yarnflow local`
/// keeps its TaskManager children as quiet on the terminal as itself.
pub const STDERR_FILTER_ENV: &str = "YARNFLOW_STDERR_LOG";

/// How much of the log reaches stderr (the JSON log always gets `info` and up).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StderrLevel {
    /// Everything from `info` up: what a long-running role (AM, JobManager, TaskManager) shows.
    Info,
    /// Warnings and errors only: a command that shows its own progress (`local`, `submit`),
    /// whose per-checkpoint `info` lines would bury it. `-v` gives `Info`.
    Quiet,
    /// `-vv`: debug lines too.
    Debug,
}

impl StderrLevel {
    /// The filter directive of this level.
    pub fn directive(self) -> &'static str {
        match self {
            StderrLevel::Info => DEFAULT_FILTER,
            StderrLevel::Quiet => "warn",
            StderrLevel::Debug => "debug,zookeeper_client=info,h2=info,hyper=info",
        }
    }
}

/// The stderr filter directive this process chose (for its children to inherit through
/// [`STDERR_FILTER_ENV`]); `None` before [`init`] or under `RUST_LOG`.
pub fn stderr_directive() -> Option<&'static str> {
    STDERR_DIRECTIVE.get().copied().flatten()
}

static STDERR_DIRECTIVE: std::sync::OnceLock<Option<&'static str>> = std::sync::OnceLock::new();

/// Installs the global subscriber. `RUST_LOG` sets the level of both outputs; without it the
/// JSON file gets `info` (dependencies `warn`) and stderr what [`STDERR_FILTER_ENV`] says, else
/// `stderr`. A JSON file that cannot be opened is reported on stderr and skipped: logging must
/// never stop the process.
pub fn init(identity: ProcessIdentity, log_dir: Option<&Path>, stderr: StderrLevel) {
    let from_env = std::env::var("RUST_LOG").is_ok_and(|v| !v.is_empty());
    let filter = |default: &str| {
        EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new(default))
    };
    let inherited = std::env::var(STDERR_FILTER_ENV)
        .ok()
        .filter(|v| !v.is_empty());
    let directive: &'static str = match inherited {
        Some(v) => v.leak(),
        None => stderr.directive(),
    };
    let _ = STDERR_DIRECTIVE.set((!from_env).then_some(directive));
    let stderr = tracing_subscriber::fmt::layer()
        .with_writer(std::io::stderr)
        .with_filter(filter(directive));
    let json = log_dir.and_then(|dir| match JsonLinesLayer::open(dir, &identity) {
        Ok(layer) => Some(layer.with_filter(filter(DEFAULT_FILTER))),
        Err(e) => {
            eprintln!(
                "yarnflow: cannot write {}: {e}; JSON log disabled",
                dir.join(JSON_LOG_FILE).display()
            );
            None
        }
    });
    let _ = tracing_subscriber::registry()
        .with(stderr)
        .with(json)
        .try_init();
}

/// A `tracing` layer writing one JSON object per event.
pub struct JsonLinesLayer {
    out: Mutex<LineWriter<File>>,
    base: Map<String, Value>,
}

impl JsonLinesLayer {
    /// Appends to `<dir>/yarnflow.jsonl`, creating the directory if needed.
    pub fn open(dir: &Path, identity: &ProcessIdentity) -> std::io::Result<JsonLinesLayer> {
        std::fs::create_dir_all(dir)?;
        let file = OpenOptions::new()
            .create(true)
            .append(true)
            .open(dir.join(JSON_LOG_FILE))?;
        let mut base = Map::new();
        base.insert("component".into(), identity.component.clone().into());
        if let Some(a) = &identity.application_id {
            base.insert("application_id".into(), a.clone().into());
        }
        if let Some(a) = identity.attempt {
            base.insert("attempt".into(), a.into());
        }
        if let Some(c) = &identity.container_id {
            base.insert("container_id".into(), c.clone().into());
        }
        Ok(JsonLinesLayer {
            out: Mutex::new(LineWriter::new(file)),
            base,
        })
    }
}

/// Span fields, kept in the span's extensions.
struct SpanFields(Map<String, Value>);

struct JsonVisitor<'a>(&'a mut Map<String, Value>);

fn is_secret(name: &str) -> bool {
    let n = name.to_ascii_lowercase();
    ["password", "secret", "token"]
        .iter()
        .any(|s| n.contains(s))
}

impl JsonVisitor<'_> {
    fn put(&mut self, field: &Field, value: Value) {
        let value = if is_secret(field.name()) {
            Value::String("<redacted>".into())
        } else {
            value
        };
        self.0.insert(field.name().to_string(), value);
    }
}

impl Visit for JsonVisitor<'_> {
    fn record_str(&mut self, field: &Field, value: &str) {
        self.put(field, value.into());
    }
    fn record_i64(&mut self, field: &Field, value: i64) {
        self.put(field, value.into());
    }
    fn record_u64(&mut self, field: &Field, value: u64) {
        self.put(field, value.into());
    }
    fn record_bool(&mut self, field: &Field, value: bool) {
        self.put(field, value.into());
    }
    fn record_f64(&mut self, field: &Field, value: f64) {
        self.put(field, value.into());
    }
    fn record_error(&mut self, field: &Field, value: &(dyn std::error::Error + 'static)) {
        self.put(field, value.to_string().into());
    }
    fn record_debug(&mut self, field: &Field, value: &dyn std::fmt::Debug) {
        self.put(field, format!("{value:?}").into());
    }
}

impl<S> Layer<S> for JsonLinesLayer
where
    S: Subscriber + for<'a> LookupSpan<'a>,
{
    fn on_new_span(&self, attrs: &Attributes<'_>, id: &Id, ctx: Context<'_, S>) {
        let mut fields = Map::new();
        attrs.record(&mut JsonVisitor(&mut fields));
        if let Some(span) = ctx.span(id) {
            span.extensions_mut().insert(SpanFields(fields));
        }
    }

    fn on_record(&self, id: &Id, values: &Record<'_>, ctx: Context<'_, S>) {
        if let Some(span) = ctx.span(id)
            && let Some(fields) = span.extensions_mut().get_mut::<SpanFields>()
        {
            values.record(&mut JsonVisitor(&mut fields.0));
        }
    }

    fn on_event(&self, event: &Event<'_>, ctx: Context<'_, S>) {
        let mut line = self.base.clone();
        line.insert("ts".into(), now_rfc3339().into());
        line.insert("level".into(), event.metadata().level().as_str().into());
        line.insert("target".into(), event.metadata().target().into());
        if let Some(scope) = ctx.event_scope(event) {
            for span in scope.from_root() {
                if let Some(fields) = span.extensions().get::<SpanFields>() {
                    for (k, v) in &fields.0 {
                        line.insert(k.clone(), v.clone());
                    }
                }
            }
        }
        event.record(&mut JsonVisitor(&mut line));
        let Ok(mut text) = serde_json::to_string(&Value::Object(line)) else {
            return;
        };
        text.push('\n');
        if let Ok(mut out) = self.out.lock() {
            let _ = out.write_all(text.as_bytes());
        }
    }
}

/// The current time as RFC 3339 in UTC with microseconds (sorts lexicographically).
pub fn now_rfc3339() -> String {
    jiff::Timestamp::now()
        .round(jiff::Unit::Microsecond)
        .map(|t| format!("{t:.6}"))
        .unwrap_or_else(|_| jiff::Timestamp::now().to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn container_ids_parse_with_and_without_epoch() {
        assert_eq!(
            parse_container_id("container_1700000000000_0001_02_000003"),
            Some(("application_1700000000000_0001".into(), 2))
        );
        assert_eq!(
            parse_container_id("container_e17_1700000000000_0001_01_000002"),
            Some(("application_1700000000000_0001".into(), 1))
        );
        assert_eq!(parse_container_id("container_x_1_2_3"), None);
        assert_eq!(parse_container_id("garbage"), None);
        assert_eq!(parse_container_id("container_1_2_3"), None);
    }

    #[test]
    fn json_lines_carry_identity_span_and_event_fields() {
        let dir = std::env::temp_dir().join(format!("yarnflow-log-test-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        let identity = ProcessIdentity {
            component: "appmaster".into(),
            application_id: Some("application_1_0001".into()),
            attempt: Some(2),
            container_id: Some("container_1_0001_02_000001".into()),
        };
        let layer = JsonLinesLayer::open(&dir, &identity).unwrap();
        let subscriber = tracing_subscriber::registry().with(layer);
        tracing::subscriber::with_default(subscriber, || {
            let span = tracing::info_span!("job", job_id = "j1", leader_epoch = 7u64);
            let _g = span.enter();
            tracing::info!(
                checkpoint_id = 42u64,
                amrm_token = "s3cret",
                "checkpoint completed"
            );
        });
        let text = std::fs::read_to_string(dir.join(JSON_LOG_FILE)).unwrap();
        let line: Value = serde_json::from_str(text.lines().next().unwrap()).unwrap();
        assert_eq!(line["component"], "appmaster");
        assert_eq!(line["attempt"], 2);
        assert_eq!(line["job_id"], "j1");
        assert_eq!(line["leader_epoch"], 7);
        assert_eq!(line["checkpoint_id"], 42);
        assert_eq!(line["message"], "checkpoint completed");
        assert_eq!(line["level"], "INFO");
        assert_eq!(line["amrm_token"], "<redacted>");
        assert!(!text.contains("s3cret"));
        assert!(line["ts"].as_str().unwrap().ends_with('Z'));
        let _ = std::fs::remove_dir_all(&dir);
    }
}
