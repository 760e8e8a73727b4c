use thiserror::Error;
use vigil_events::DecodeError;

/// What went wrong talking to the registry. [`RegistryError::retriable`] says whether trying
/// again later can help.
#[derive(Debug, Error)]
#[non_exhaustive]
pub enum RegistryError {
    /// The registry has no schema under this id (Confluent error 40403).
    #[error("schema id {id} is not in the schema registry at {url}")]
    UnknownId { id: u32, url: String },
    /// The registry answered with an error status; `code` is its `error_code` (e.g. 409 for an
    /// incompatible schema, 42201 for an invalid one) when the body had one.
    #[error("schema registry {url} answered {status} (error_code {code}): {message}")]
    Status { url: String, status: u16, code: i64, message: String },
    /// The registry could not be reached or did not answer in time.
    #[error("schema registry {url} unreachable: {source}")]
    Network {
        url: String,
        #[source]
        source: reqwest::Error,
    },
    /// The answer was not what the Confluent API documents.
    #[error("schema registry {url} gave an unexpected answer: {detail}")]
    Protocol { url: String, detail: String },
    /// The registry holds a schema under this id that vigil cannot read (not Avro, not parsable).
    #[error("schema id {id} is not a usable avro schema: {source}")]
    BadSchema {
        id: u32,
        #[source]
        source: DecodeError,
    },
    /// A setting is invalid (named in the message).
    #[error("invalid schema registry configuration: {0}")]
    Config(String),
}

impl RegistryError {
    /// Network errors and server-side (5xx) errors may pass; a missing id, a refused schema or a
    /// bad setting stay so.
    pub fn retriable(&self) -> bool {
        match self {
            RegistryError::Network { .. } => true,
            RegistryError::Status { status, .. } => *status >= 500 || *status == 429,
            _ => false,
        }
    }

    /// The decode error a consumer dead-letters a message with when its schema cannot be had
    /// (not for retriable errors: those should pause the consumer instead).
    pub fn as_decode_error(&self) -> Option<DecodeError> {
        match self {
            RegistryError::UnknownId { id, .. } => Some(DecodeError::UnknownSchemaId { id: *id }),
            RegistryError::BadSchema { source, .. } => Some(source.clone()),
            _ => None,
        }
    }
}
