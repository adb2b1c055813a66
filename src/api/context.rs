//! What a user operator's hooks see of the runtime: [`OpenContext`] in `open` (configuration,
//! keyed state registration), [`Context`] in `process` (the keyed state backend, its current
//! key set to the record's).

use std::hash::Hash;

use serde::de::DeserializeOwned;

use super::error::OperatorError;
use crate::state::{
    HeapKeyedStateBackend, MapState, MapStateDescriptor, StateValue, ValueState,
    ValueStateDescriptor,
};

/// `open`'s view: the step's `config` and, in a keyed operator, the subtask's state backend.
pub struct OpenContext<'a> {
    pub(super) operator: &'a str,
    pub(super) config: &'a serde_json::Value,
    pub(super) keyed: Option<&'a mut HeapKeyedStateBackend>,
}

impl OpenContext<'_> {
    /// The step's `config` (`- operator: { name: NAME, config: {...} }`) as a `T`; no config
    /// reads as an empty map, so a struct whose fields all have defaults needs none.
    pub fn config<T: DeserializeOwned>(&self) -> Result<T, OperatorError> {
        let empty = serde_json::Value::Object(Default::default());
        let value = if self.config.is_null() {
            &empty
        } else {
            self.config
        };
        T::deserialize(value)
            .map_err(|e| OperatorError::msg(format!("config of operator '{}': {e}", self.operator)))
    }

    /// Registers (or, after a restore, gets back) the keyed `ValueState<T>` named `name`: one
    /// value per key, snapshotted with the subtask.
    pub fn value_state<T: StateValue>(
        &mut self,
        name: &str,
    ) -> Result<ValueState<T>, OperatorError> {
        let backend = self.backend()?;
        Ok(backend.state(&ValueStateDescriptor::<T>::new(name))?)
    }

    /// Registers (or gets back) the keyed `MapState<K, V>` named `name`: a map per key.
    pub fn map_state<K: StateValue + Hash + Eq, V: StateValue>(
        &mut self,
        name: &str,
    ) -> Result<MapState<K, V>, OperatorError> {
        let backend = self.backend()?;
        Ok(backend.state(&MapStateDescriptor::<K, V>::new(name))?)
    }

    fn backend(&mut self) -> Result<&mut HeapKeyedStateBackend, OperatorError> {
        let operator = self.operator;
        self.keyed.as_deref_mut().ok_or_else(|| not_keyed(operator))
    }
}

/// `process`'s view: the keyed state backend with the record's key current.
pub struct Context<'a> {
    pub(super) operator: &'a str,
    pub(super) keyed: Option<&'a mut HeapKeyedStateBackend>,
}

impl Context<'_> {
    /// The keyed state backend, for the handles `open` registered
    /// (`self.count.get(ctx.state()?)`); an error in an operator that is not keyed.
    pub fn state(&mut self) -> Result<&mut HeapKeyedStateBackend, OperatorError> {
        let operator = self.operator;
        self.keyed.as_deref_mut().ok_or_else(|| not_keyed(operator))
    }

    /// The current key's serialized bytes (the key-by's key of this record), if keyed.
    pub fn current_key(&self) -> Option<&[u8]> {
        self.keyed
            .as_deref()
            .map(HeapKeyedStateBackend::current_key)
    }
}

fn not_keyed(operator: &str) -> OperatorError {
    OperatorError::msg(format!(
        "operator '{operator}' uses keyed state but is not keyed: register it with `register_keyed` and put a key-by right before it"
    ))
}
