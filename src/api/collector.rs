//! [`Collector`]: where a user operator emits its records (Flink's `Collector`).

use std::marker::PhantomData;

use serde::Serialize;

use super::data::to_record;
use crate::job::record::Record;

/// Takes a user operator's outputs for one input record, as [`Record`]s for what comes next.
pub struct Collector<T> {
    pub(super) records: Vec<Record>,
    /// The first value that did not serialize: the record fails once `process` returns.
    pub(super) error: Option<String>,
    _out: PhantomData<fn(T)>,
}

impl<T: Serialize> Collector<T> {
    pub(super) fn new() -> Collector<T> {
        Collector {
            records: Vec::new(),
            error: None,
            _out: PhantomData,
        }
    }

    /// Emits `value`.
    pub fn collect(&mut self, value: T) {
        match to_record(&value) {
            Ok(r) => self.records.push(r),
            Err(e) => {
                self.error.get_or_insert(e);
            }
        }
    }
}
