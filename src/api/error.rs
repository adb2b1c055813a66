//! [`OperatorError`]: what a user operator's hooks fail with.

/// Why a user operator's hook failed: the subtask fails with this message, naming the operator.
/// Any error converts with `?`; [`OperatorError::msg`] makes one from text.
pub struct OperatorError {
    message: String,
}

impl OperatorError {
    pub fn msg(message: impl std::fmt::Display) -> OperatorError {
        OperatorError {
            message: message.to_string(),
        }
    }

    pub fn message(&self) -> &str {
        &self.message
    }
}

impl<E: std::error::Error + Send + Sync + 'static> From<E> for OperatorError {
    fn from(e: E) -> OperatorError {
        OperatorError::msg(e)
    }
}

impl std::fmt::Display for OperatorError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.message)
    }
}

impl std::fmt::Debug for OperatorError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "OperatorError({:?})", self.message)
    }
}
