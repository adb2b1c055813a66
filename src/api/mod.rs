//! The operator API: a job's own Rust operators, in the spirit of Flink's
//! `KeyedProcessFunction`.
//!
//! A job is a Rust binary that depends on `yarnflow`, registers its operators and hands over
//! to [`crate::main`], which runs every `yarnflow` subcommand (`submit`, `local`, `run`, and the
//! ApplicationMaster and TaskManager roles YARN launches) with those operators. A job spec
//! names them as steps: `- operator: tokenize` or
//! `- operator: { name: throttle, config: { records-per-second: 100 } }`.
//!
//! * [`ProcessFunction`] (`function.rs`): the operator: `open`, `process` per record with a
//!   [`Collector`] (`collector.rs`), `close`; [`OperatorError`] (`error.rs`) what they fail
//!   with;
//! * [`OpenContext`], [`Context`] (`context.rs`): its configuration and keyed state
//!   ([`ValueState`], [`MapState`] handles on the subtask's backend, snapshotted and restored
//!   by the runtime with every checkpoint);
//! * [`Data`] (`data.rs`): what records may be (serde types), and how they travel;
//! * [`Operators`] (`registry.rs`): the registry by name; [`UserOperator`] (`operator.rs`) one
//!   registered function as the chain runs it, panics caught.
//!
//! No user code sees checkpoints, barriers or failover. Processing-time timers are not
//! offered yet.
//!
//! # Example
//!
//! ```no_run
//! use yarnflow::api::{Collector, Context, OpenContext, OperatorError, Operators, ProcessFunction, ValueState};
//!
//! /// Lines in, lowercase words out.
//! struct Tokenize;
//!
//! impl ProcessFunction for Tokenize {
//!     type In = String;
//!     type Out = String;
//!     fn process(&mut self, line: String, _: &mut Context, out: &mut Collector<String>) -> Result<(), OperatorError> {
//!         for word in line.split(|c: char| !c.is_alphanumeric()).filter(|w| !w.is_empty()) {
//!             out.collect(word.to_lowercase());
//!         }
//!         Ok(())
//!     }
//! }
//!
//! /// After `key-by: line`: each word with its running count, `word,count`.
//! #[derive(Default)]
//! struct Count {
//!     seen: Option<ValueState<u64>>,
//! }
//!
//! impl ProcessFunction for Count {
//!     type In = String;
//!     type Out = String;
//!     fn open(&mut self, ctx: &mut OpenContext) -> Result<(), OperatorError> {
//!         self.seen = Some(ctx.value_state("seen")?);
//!         Ok(())
//!     }
//!     fn process(&mut self, word: String, ctx: &mut Context, out: &mut Collector<String>) -> Result<(), OperatorError> {
//!         let seen = self.seen.ok_or_else(|| OperatorError::msg("not opened"))?;
//!         let n = seen.get_or_insert_with(ctx.state()?, || 0);
//!         *n += 1;
//!         out.collect(format!("{word},{n}"));
//!         Ok(())
//!     }
//! }
//!
//! fn main() -> std::process::ExitCode {
//!     yarnflow::main(
//!         Operators::new()
//!             .register("tokenize", || Tokenize)
//!             .register_keyed("count", Count::default),
//!     )
//! }
//! ```

mod collector;
mod context;
mod data;
mod error;
mod function;
mod operator;
mod registry;

pub use crate::state::{HeapKeyedStateBackend, MapState, ValueState};
pub use collector::Collector;
pub use context::{Context, OpenContext};
pub use data::Data;
pub use error::OperatorError;
pub use function::ProcessFunction;
pub use operator::UserOperator;
pub use registry::Operators;

#[cfg(test)]
mod tests;
