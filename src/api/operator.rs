//! [`UserOperator`]: a registered [`ProcessFunction`] as a subtask's chain runs it: records in
//! and out as [`Record`]s, every hook behind `catch_unwind`, so a panic in user code fails the
//! subtask with the operator's name instead of taking the TaskManager down.

use std::panic::{AssertUnwindSafe, catch_unwind};
use std::sync::{Arc, Mutex};

use super::collector::Collector;
use super::context::{Context, OpenContext};
use super::data::from_record;
use super::error::OperatorError;
use super::function::ProcessFunction;
use crate::job::record::Record;
use crate::jobmanager::error::RuntimeError;
use crate::state::HeapKeyedStateBackend;

/// Makes a fresh, unopened instance of a registered function.
pub(super) type Factory = Arc<dyn Fn() -> Box<dyn ErasedFunction> + Send + Sync>;

/// A [`ProcessFunction`] with its types erased: what the chain calls.
pub(super) trait ErasedFunction: Send {
    fn open(&mut self, ctx: &mut OpenContext) -> Result<(), OperatorError>;
    fn process(
        &mut self,
        record: Record,
        ctx: &mut Context,
        out: &mut Vec<Record>,
    ) -> Result<(), OperatorError>;
    fn close(&mut self) -> Result<(), OperatorError>;
}

/// A function and its collector (reused from record to record).
pub(super) struct Typed<F: ProcessFunction> {
    pub function: F,
    pub out: Collector<F::Out>,
}

impl<F: ProcessFunction> ErasedFunction for Typed<F> {
    fn open(&mut self, ctx: &mut OpenContext) -> Result<(), OperatorError> {
        self.function.open(ctx)
    }

    fn process(
        &mut self,
        record: Record,
        ctx: &mut Context,
        out: &mut Vec<Record>,
    ) -> Result<(), OperatorError> {
        let value = from_record::<F::In>(record).map_err(OperatorError::msg)?;
        let result = self.function.process(value, ctx, &mut self.out);
        if let Some(e) = self.out.error.take() {
            self.out.records.clear();
            return Err(OperatorError::msg(e));
        }
        out.append(&mut self.out.records);
        result
    }

    fn close(&mut self) -> Result<(), OperatorError> {
        self.function.close()
    }
}

/// One instance of a registered operator in a subtask's chain.
pub struct UserOperator {
    name: String,
    config: serde_json::Value,
    keyed: bool,
    factory: Factory,
    /// Behind a `Mutex` only to be `Sync` without asking user code to be (the task is held
    /// across awaits); reached through `get_mut`, never locked.
    function: Mutex<Box<dyn ErasedFunction>>,
}

impl UserOperator {
    pub(super) fn new(
        name: &str,
        config: serde_json::Value,
        keyed: bool,
        factory: Factory,
    ) -> UserOperator {
        UserOperator {
            name: name.to_string(),
            config,
            keyed,
            function: Mutex::new(factory()),
            factory,
        }
    }

    /// The name it is registered under.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// Opens it with `keyed`, the subtask's backend (for a keyed operator).
    pub fn open(&mut self, keyed: Option<&mut HeapKeyedStateBackend>) -> Result<(), RuntimeError> {
        let mut ctx = OpenContext {
            operator: &self.name,
            config: &self.config,
            keyed: if self.keyed { keyed } else { None },
        };
        let function = exclusive(&mut self.function);
        guarded(&self.name, "open", || function.open(&mut ctx))
    }

    /// Runs one record (its key current in `keyed`, for a keyed operator) into `out`.
    pub fn process(
        &mut self,
        record: Record,
        keyed: Option<&mut HeapKeyedStateBackend>,
        out: &mut Vec<Record>,
    ) -> Result<(), RuntimeError> {
        let mut ctx = Context {
            operator: &self.name,
            keyed: if self.keyed { keyed } else { None },
        };
        let function = exclusive(&mut self.function);
        guarded(&self.name, "process", || {
            function.process(record, &mut ctx, out)
        })
    }

    pub fn close(&mut self) -> Result<(), RuntimeError> {
        let function = exclusive(&mut self.function);
        guarded(&self.name, "close", || function.close())
    }
}

/// The value behind a never-locked `Mutex` (a panic inside cannot poison what nobody locks,
/// but a poisoned one is still ours alone).
fn exclusive<T: ?Sized>(m: &mut Mutex<T>) -> &mut T {
    m.get_mut().unwrap_or_else(|p| p.into_inner())
}

/// Runs a hook of operator `name`; its error or panic becomes [`RuntimeError::Operator`].
fn guarded(
    name: &str,
    hook: &str,
    f: impl FnOnce() -> Result<(), OperatorError>,
) -> Result<(), RuntimeError> {
    match catch_unwind(AssertUnwindSafe(f)) {
        Ok(Ok(())) => Ok(()),
        Ok(Err(e)) => Err(operator_error(name, hook, e)),
        Err(panic) => {
            let message = panic
                .downcast_ref::<&str>()
                .map(|s| s.to_string())
                .or_else(|| panic.downcast_ref::<String>().cloned())
                .unwrap_or_else(|| "a panic without a message".into());
            Err(operator_error(name, hook, format!("panicked: {message}")))
        }
    }
}

fn operator_error(name: &str, hook: &str, e: impl std::fmt::Display) -> RuntimeError {
    RuntimeError::Operator {
        operator: format!("'{name}'"),
        message: format!("{hook}: {e}"),
    }
}

/// A copy is a fresh, unopened instance from the same registration (as Flink deploys a copy of
/// the user function to each subtask).
impl Clone for UserOperator {
    fn clone(&self) -> UserOperator {
        UserOperator::new(
            &self.name,
            self.config.clone(),
            self.keyed,
            self.factory.clone(),
        )
    }
}

impl PartialEq for UserOperator {
    fn eq(&self, other: &UserOperator) -> bool {
        self.name == other.name && self.config == other.config && self.keyed == other.keyed
    }
}

impl std::fmt::Debug for UserOperator {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("UserOperator")
            .field("name", &self.name)
            .field("config", &self.config)
            .field("keyed", &self.keyed)
            .finish()
    }
}
