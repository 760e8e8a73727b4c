use crate::error::ValidationError;

pub(crate) fn non_empty(field: &'static str, value: &str) -> Result<(), ValidationError> {
    if value.is_empty() {
        return Err(ValidationError::Empty { field });
    }
    Ok(())
}

pub(crate) fn finite(field: &'static str, value: Option<f64>) -> Result<(), ValidationError> {
    match value {
        Some(v) if !v.is_finite() => Err(ValidationError::NonFinite { field: field.to_owned() }),
        _ => Ok(()),
    }
}

/// Event times must fit ClickHouse's `DateTime` (seconds since 1970 in a UInt32).
pub(crate) fn event_time(field: &'static str, ms: i64) -> Result<(), ValidationError> {
    const MAX_MS: i64 = u32::MAX as i64 * 1000 + 999;
    if !(0..=MAX_MS).contains(&ms) {
        return Err(ValidationError::OutOfRange {
            field: field.to_owned(),
            detail: format!("{ms} ms is not between 1970 and 2106"),
        });
    }
    Ok(())
}
