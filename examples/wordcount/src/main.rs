//! Word count on yarnflow: a job binary with its own operators. It has every `yarnflow`
//! subcommand (`wordcount local wordcount.yaml`, `wordcount submit ... --conf DIR`), with these
//! operators registered besides the built-in ones:
//!
//! * `tokenize`: a line in, its lowercase words out (a flat-map);
//! * `count` (keyed, after `key-by: line`): a word in, `word,count` out, the word's running
//!   count kept in a `ValueState<u64>`, so the highest count per word is its exact total;
//! * `throttle` (config `records-per-second`): passes numbers and lines through at that pace,
//!   by sleeping: the back-pressure demo (a slow step fills the exchange's buffers, and the
//!   source slows down instead of memory growing).

use std::process::ExitCode;
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};
use yarnflow::api::{
    Collector, Context, OpenContext, OperatorError, Operators, ProcessFunction, ValueState,
};

fn main() -> ExitCode {
    yarnflow::main(
        Operators::new()
            .register("tokenize", || Tokenize)
            .register_keyed("count", Count::default)
            .register("throttle", Throttle::default),
    )
}

/// A line in, its words out, lowercase (split at anything not alphanumeric).
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
        for word in line.split(|c: char| !c.is_alphanumeric()) {
            if !word.is_empty() {
                out.collect(word.to_lowercase());
            }
        }
        Ok(())
    }
}

/// A word in (the key of `key-by: line`), `word,count` out.
#[derive(Default)]
struct Count {
    /// The current word's count so far; registered in `open`.
    seen: Option<ValueState<u64>>,
}

impl ProcessFunction for Count {
    type In = String;
    type Out = String;

    fn open(&mut self, ctx: &mut OpenContext) -> Result<(), OperatorError> {
        self.seen = Some(ctx.value_state("seen")?);
        Ok(())
    }

    fn process(
        &mut self,
        word: String,
        ctx: &mut Context,
        out: &mut Collector<String>,
    ) -> Result<(), OperatorError> {
        let seen = self.seen.ok_or_else(|| OperatorError::msg("not opened"))?;
        let n = seen.get_or_insert_with(ctx.state()?, || 0);
        *n += 1;
        out.collect(format!("{word},{n}"));
        Ok(())
    }
}

/// `throttle`'s configuration.
#[derive(Deserialize)]
#[serde(rename_all = "kebab-case", deny_unknown_fields)]
struct ThrottleConfig {
    records_per_second: f64,
}

/// What `throttle` passes on: a number or a line, as it came.
#[derive(Serialize, Deserialize)]
#[serde(untagged)]
enum Passed {
    Number(i64),
    Line(String),
}

/// Passes records on at `records-per-second` per subtask.
#[derive(Default)]
struct Throttle {
    /// Time between two records.
    gap: Duration,
    /// When the next record is due.
    next: Option<Instant>,
}

impl ProcessFunction for Throttle {
    type In = Passed;
    type Out = Passed;

    fn open(&mut self, ctx: &mut OpenContext) -> Result<(), OperatorError> {
        let config: ThrottleConfig = ctx.config()?;
        if !(config.records_per_second > 0.0 && config.records_per_second.is_finite()) {
            return Err(OperatorError::msg(format!(
                "records-per-second must be above 0, not {}",
                config.records_per_second
            )));
        }
        self.gap = Duration::from_secs_f64(1.0 / config.records_per_second);
        Ok(())
    }

    fn process(
        &mut self,
        value: Passed,
        _: &mut Context,
        out: &mut Collector<Passed>,
    ) -> Result<(), OperatorError> {
        let now = Instant::now();
        // No credit for idle time beyond one gap: a pause is not followed by a burst.
        let floor = now.checked_sub(self.gap).unwrap_or(now);
        let due = self.next.map_or(now, |n| n.max(floor));
        self.next = Some(due + self.gap);
        // Sleep in steps of at least a millisecond (a finer pace sleeps every few records).
        if let Some(ahead) = due.checked_duration_since(now)
            && ahead >= Duration::from_millis(1)
        {
            sleep(ahead);
        }
        out.collect(value);
        Ok(())
    }
}

/// Blocks this thread for `d`, telling a multi-threaded tokio runtime first so that the
/// TaskManager's other work (heartbeats, barriers, other subtasks) moves to other threads.
fn sleep(d: Duration) {
    use tokio::runtime::{Handle, RuntimeFlavor};
    match Handle::try_current() {
        Ok(h) if h.runtime_flavor() == RuntimeFlavor::MultiThread => {
            tokio::task::block_in_place(|| std::thread::sleep(d))
        }
        _ => std::thread::sleep(d),
    }
}
