//! Named one-shot fault points for tests, compiled in only with the cargo feature
//! `fault-points` (off by default; the test command turns it on). Without the feature every
//! call is an inlined `None`/`false`, so production code pays nothing.
//!
//! Tests arm fault points in processes they start, out of process, with an environment
//! variable read once per process (on the first fault-point call):
//!
//! ```text
//! YARNFLOW_FAULTS="drop-ack:subtask=1"                  # one point, one parameter
//! YARNFLOW_FAULTS="drop-ack:subtask=1;drop-ack:subtask=0,checkpoint=3"
//! ```
//!
//! Entries are separated by `;`; an entry is `name` or `name:key=value,key=value`. Every entry
//! fires once: the first [`take`] of `name` whose context has every `key=value` of the entry
//! disarms and returns it (a key the entry leaves out matches anything). Child processes
//! inherit the variable, so each TaskManager of `yarnflow local` fires its own entries once.
//!
//! # Points
//! * `drop-ack` (TaskManager, context `subtask`, `checkpoint`): the acknowledgement is not sent,
//!   so the JobManager never sees it (the checkpoint expires).
//! * `decline-ack` (TaskManager, context `subtask`, `checkpoint`): the acknowledgement is sent
//!   as a decline (the checkpoint fails at once, counted as a checkpoint failure).
//! * `pause-before-unregister` (ApplicationMaster, context `attempt`, parameter `secs`, default
//!   60): every job is over, the AM waits before `finishApplicationMaster` (a kill then lands
//!   between the end and the unregistration). `YARNFLOW_FAULTS` reaches YARN containers through
//!   the submitter's environment (`appmaster::launch::PASS_THROUGH_ENV`).
//!
//! Add a point by calling [`take`] or [`fire`] where the fault belongs and listing it here.

use std::fmt::Display;

/// The environment variable that arms fault points.
pub const ENV: &str = "YARNFLOW_FAULTS";

/// An armed fault point that fired, with the parameters it was armed with (e.g. a duration a
/// pause point reads).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Fault {
    pub name: String,
    pub params: Vec<(String, String)>,
}

impl Fault {
    /// The value the entry gave `key`.
    pub fn param(&self, key: &str) -> Option<&str> {
        self.params
            .iter()
            .find(|(k, _)| k == key)
            .map(|(_, v)| v.as_str())
    }

    /// Whether this is an entry of `name` every parameter of which `context` satisfies.
    pub fn matches(&self, name: &str, context: &[(&str, &dyn Display)]) -> bool {
        self.name == name
            && self.params.iter().all(|(k, v)| {
                context
                    .iter()
                    .find(|(ck, _)| ck == k)
                    .is_none_or(|(_, cv)| cv.to_string() == *v)
            })
    }
}

/// Parses `YARNFLOW_FAULTS`' syntax; an entry that does not parse is named in the error.
pub fn parse(spec: &str) -> Result<Vec<Fault>, String> {
    let mut faults = Vec::new();
    for entry in spec.split(';').map(str::trim).filter(|e| !e.is_empty()) {
        let (name, params) = entry.split_once(':').unwrap_or((entry, ""));
        let mut fault = Fault {
            name: name.trim().to_string(),
            params: Vec::new(),
        };
        for pair in params.split(',').map(str::trim).filter(|p| !p.is_empty()) {
            let Some((k, v)) = pair.split_once('=') else {
                return Err(format!("{ENV}: '{entry}': '{pair}' is not key=value"));
            };
            fault
                .params
                .push((k.trim().to_string(), v.trim().to_string()));
        }
        if fault.name.is_empty() {
            return Err(format!("{ENV}: '{entry}' has no fault point name"));
        }
        faults.push(fault);
    }
    Ok(faults)
}

/// Takes (disarms) the first armed entry of `name` that `context` satisfies.
#[cfg(feature = "fault-points")]
pub fn take(name: &str, context: &[(&str, &dyn Display)]) -> Option<Fault> {
    let mut armed = armed().lock().unwrap_or_else(|e| e.into_inner());
    let i = armed.iter().position(|f| f.matches(name, context))?;
    let fault = armed.remove(i);
    tracing::warn!(fault = name, params = ?fault.params, "fault point fired");
    Some(fault)
}

/// Without the `fault-points` feature nothing is ever armed.
#[cfg(not(feature = "fault-points"))]
#[inline(always)]
pub fn take(_name: &str, _context: &[(&str, &dyn Display)]) -> Option<Fault> {
    None
}

/// Whether an armed entry of `name` fired (see [`take`]).
#[inline(always)]
pub fn fire(name: &str, context: &[(&str, &dyn Display)]) -> bool {
    take(name, context).is_some()
}

/// The entries `YARNFLOW_FAULTS` armed in this process, read once.
#[cfg(feature = "fault-points")]
fn armed() -> &'static std::sync::Mutex<Vec<Fault>> {
    static ARMED: std::sync::OnceLock<std::sync::Mutex<Vec<Fault>>> = std::sync::OnceLock::new();
    ARMED.get_or_init(|| {
        let spec = std::env::var(ENV).unwrap_or_default();
        let faults = parse(&spec).unwrap_or_else(|e| {
            tracing::error!(error = %e, "fault points not armed");
            Vec::new()
        });
        if !faults.is_empty() {
            tracing::warn!(faults = ?faults, "fault points armed");
        }
        std::sync::Mutex::new(faults)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn entries_parse_and_match_their_context() {
        let faults = parse("drop-ack:subtask=1; pause-before-unregister:secs=30 ;;x").unwrap();
        assert_eq!(faults.len(), 3);
        assert_eq!(faults[1].param("secs"), Some("30"));
        let drop = &faults[0];
        assert!(drop.matches("drop-ack", &[("subtask", &1u32), ("checkpoint", &7u64)]));
        assert!(!drop.matches("drop-ack", &[("subtask", &2u32)]));
        assert!(!drop.matches("drop-acks", &[("subtask", &1u32)]));
        // A key the context does not name does not constrain it.
        assert!(drop.matches("drop-ack", &[]));
        assert!(faults[2].matches("x", &[("subtask", &0u32)]));
        assert!(parse("drop-ack:subtask").unwrap_err().contains("key=value"));
        assert!(parse(":a=1").unwrap_err().contains("no fault point name"));
        assert!(parse("").unwrap().is_empty());
    }

    #[cfg(not(feature = "fault-points"))]
    #[test]
    fn without_the_feature_nothing_fires() {
        assert!(!fire("drop-ack", &[("subtask", &1u32)]));
    }
}
