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
