//! The crate's single error type.

/// Every failure a statistic can report. All variants are data errors: retrying the same call with
/// the same inputs gives the same error, so [`StatsError::is_retryable`] is always `false`.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum StatsError {
    /// A sample or window holds fewer (finite) values than the statistic needs.
    #[error("not enough data: needed {needed}, got {got}")]
    NotEnoughData { needed: u64, got: u64 },
    /// Two sketches built with different edges, vocabularies, caps or bin counts.
    #[error("incompatible sketches: {0}")]
    Incompatible(&'static str),
    /// A metric is undefined for this input, e.g. ROC AUC with a single class present.
    #[error("undefined statistic: {0}")]
    Undefined(&'static str),
    /// An argument outside its domain, e.g. zero bins or a probability outside [0, 1].
    #[error("invalid argument: {0}")]
    InvalidArgument(String),
}

impl StatsError {
    /// Whether retrying can help: never, statistics are pure functions of their inputs.
    pub fn is_retryable(&self) -> bool {
        false
    }
}

pub type Result<T, E = StatsError> = std::result::Result<T, E>;

/// Fails with [`StatsError::NotEnoughData`] unless `got >= needed`.
pub(crate) fn require(needed: u64, got: u64) -> Result<()> {
    if got < needed {
        return Err(StatsError::NotEnoughData { needed, got });
    }
    Ok(())
}
