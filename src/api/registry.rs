//! [`Operators`]: the user operators a binary registers, by the name job specs use
//! (`- operator: NAME`), and the one registry of this process.
//!
//! The registry is what the binary is: `yarnflow::main` installs it once, before any command
//! runs, and everything that reads a job spec or builds a chain (submit, `local`, `run`, the
//! JobManager recovering a job graph, TaskManagers deploying subtasks) looks names up in it.
//! `submit` stages this very binary for the ApplicationMaster and the TaskManagers, so they all
//! have the same operators.

use std::collections::BTreeMap;
use std::sync::{Arc, OnceLock};

use super::collector::Collector;
use super::function::ProcessFunction;
use super::operator::{ErasedFunction, Factory, Typed, UserOperator};

/// The process's registry, once `yarnflow::main` installed it.
static INSTALLED: OnceLock<Operators> = OnceLock::new();

/// One registered operator.
#[derive(Clone)]
struct Registration {
    /// It keeps keyed state: it must follow a key-by.
    keyed: bool,
    factory: Factory,
}

/// The user operators of a binary: `Operators::new().register("tokenize", || Tokenize)`. The
/// built-in steps (`map`, `filter`, `count`, `sum`) are always there besides.
#[derive(Clone, Default)]
pub struct Operators {
    /// What error messages call this binary ("no operator 'x' is registered in wordcount").
    program: String,
    by_name: BTreeMap<String, Registration>,
}

impl std::fmt::Debug for Operators {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Operators")
            .field("program", &self.program)
            .field("names", &self.by_name.keys().collect::<Vec<_>>())
            .finish()
    }
}

impl Operators {
    /// No user operators: what the stock `yarnflow` binary runs with.
    pub fn new() -> Operators {
        Operators::default()
    }

    /// Registers an operator that keeps no keyed state: `factory` makes one instance per
    /// subtask.
    ///
    /// # Panics
    /// If `name` is empty or already registered (a bug in the binary's `main`, found at its
    /// first start).
    pub fn register<F: ProcessFunction>(
        self,
        name: &str,
        factory: impl Fn() -> F + Send + Sync + 'static,
    ) -> Operators {
        self.add(name, false, factory)
    }

    /// Registers a keyed operator: its state handles act on the current key, so a spec must
    /// put a `key-by` right before it (checked when the spec is read).
    ///
    /// # Panics
    /// As [`register`](Self::register).
    pub fn register_keyed<F: ProcessFunction>(
        self,
        name: &str,
        factory: impl Fn() -> F + Send + Sync + 'static,
    ) -> Operators {
        self.add(name, true, factory)
    }

    fn add<F: ProcessFunction>(
        mut self,
        name: &str,
        keyed: bool,
        factory: impl Fn() -> F + Send + Sync + 'static,
    ) -> Operators {
        assert!(!name.trim().is_empty(), "an operator needs a name");
        let factory: Factory = Arc::new(move || -> Box<dyn ErasedFunction> {
            Box::new(Typed {
                function: factory(),
                out: Collector::new(),
            })
        });
        let previous = self
            .by_name
            .insert(name.to_string(), Registration { keyed, factory });
        assert!(previous.is_none(), "operator '{name}' is registered twice");
        self
    }

    /// The name error messages give this binary (default: its file name).
    pub fn named(mut self, program: &str) -> Operators {
        self.program = program.to_string();
        self
    }

    /// Whether [`named`](Self::named) gave it a name.
    pub fn is_named(&self) -> bool {
        !self.program.is_empty()
    }

    pub fn program(&self) -> &str {
        if self.program.is_empty() {
            "yarnflow"
        } else {
            &self.program
        }
    }

    /// The registered names, sorted.
    pub fn names(&self) -> impl Iterator<Item = &str> {
        self.by_name.keys().map(String::as_str)
    }

    /// Whether `name` is registered, and if so whether it is keyed.
    pub fn is_keyed(&self, name: &str) -> Option<bool> {
        self.by_name.get(name).map(|r| r.keyed)
    }

    /// Why `name` cannot be used, if it is not registered: one sentence naming what is.
    pub fn unknown(&self, name: &str) -> Option<String> {
        if self.by_name.contains_key(name) {
            return None;
        }
        let has = if self.by_name.is_empty() {
            "it has none (a job binary registers its own: see \"Write your own operator\" in the README)".to_string()
        } else {
            format!("it has {}", self.names().collect::<Vec<_>>().join(", "))
        };
        Some(format!(
            "no operator '{name}' is registered in {}; {has}",
            self.program()
        ))
    }

    /// A new instance of operator `name` with its step's `config`; `after_key_by`: a key-by
    /// stands right before the step, which a keyed operator needs.
    pub fn create(
        &self,
        name: &str,
        config: &serde_json::Value,
        after_key_by: bool,
    ) -> Result<UserOperator, String> {
        let r = self
            .by_name
            .get(name)
            .ok_or_else(|| self.unknown(name).unwrap_or_default())?;
        if r.keyed && !after_key_by {
            return Err(format!(
                "operator '{name}' keeps state per key, so it needs a key-by right before it"
            ));
        }
        Ok(UserOperator::new(
            name,
            config.clone(),
            r.keyed,
            r.factory.clone(),
        ))
    }

    /// Makes `self` the process's registry. Only the first call counts (`yarnflow::main`
    /// makes it); a later one returns its argument back.
    pub fn install(self) -> Result<(), Operators> {
        INSTALLED.set(self)
    }

    /// The process's registry: the installed one, else one without user operators.
    pub fn installed() -> &'static Operators {
        static NONE: OnceLock<Operators> = OnceLock::new();
        INSTALLED
            .get()
            .unwrap_or_else(|| NONE.get_or_init(Operators::new))
    }
}
