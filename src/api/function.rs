//! [`ProcessFunction`]: a user's operator (Flink's `KeyedProcessFunction`, Rust-native).

use super::collector::Collector;
use super::context::{Context, OpenContext};
use super::data::Data;
use super::error::OperatorError;

/// A user operator: called once per record with an output collector; `open` before the first
/// record (read the configuration, register keyed state), `close` when the subtask ends.
///
/// One instance runs per subtask, on one thread at a time. Checkpoints, barriers, restore and
/// failover are the runtime's: state kept in the handles `open` registers is snapshotted and
/// restored with the subtask; state in plain fields is not (it starts over after a failover).
/// A panic in a hook fails the subtask (and restarts the job from its latest checkpoint), not
/// the TaskManager.
pub trait ProcessFunction: Send + 'static {
    /// The records it takes: a `String` takes text lines (the `text-files` source), an integer
    /// takes numbers (the `sequence` source), any other [`Data`] what an operator before it
    /// emits.
    type In: Data;
    /// The records it emits: a `String` is written as the line by the `files` sink.
    type Out: Data;

    /// Before the first record, after the subtask restored its state.
    fn open(&mut self, ctx: &mut OpenContext) -> Result<(), OperatorError> {
        let _ = ctx;
        Ok(())
    }

    /// One record: emit none, one or many with `out.collect(..)`. In a keyed operator,
    /// `ctx.state()` has the record's key current.
    fn process(
        &mut self,
        value: Self::In,
        ctx: &mut Context,
        out: &mut Collector<Self::Out>,
    ) -> Result<(), OperatorError>;

    /// When the subtask ends (its input is done and it is stopped, or it is cancelled).
    fn close(&mut self) -> Result<(), OperatorError> {
        Ok(())
    }
}
