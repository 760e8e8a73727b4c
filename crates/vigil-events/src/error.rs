use thiserror::Error;

/// Why bytes could not be read as an event. Data errors: retrying never helps, so the consumer
/// dead-letters the message with [`DecodeError::reason`] and goes on.
#[derive(Debug, Clone, PartialEq, Error)]
pub enum DecodeError {
    #[error("not a vigil avro message: expected single-object marker c3 01 or confluent magic byte 00")]
    NotAvro,
    #[error("schema id {id} is not in the schema registry")]
    UnknownSchemaId { id: u32 },
    #[error("writer schema is not valid avro: {0}")]
    BadWriterSchema(String),
    #[error("writer schema cannot be read as {expected}: {detail}")]
    Incompatible { expected: &'static str, detail: String },
    #[error("unknown schema fingerprint {fingerprint:016x}")]
    UnknownSchema { fingerprint: u64 },
    #[error("schema {schema} is not accepted on this topic")]
    WrongEventType { schema: &'static str },
    #[error("malformed avro body: {0}")]
    Malformed(#[from] CodecError),
    #[error("invalid event: {0}")]
    Invalid(#[from] ValidationError),
}

impl DecodeError {
    /// A short, bounded label for metrics and dead-letter headers.
    pub fn reason(&self) -> &'static str {
        match self {
            DecodeError::NotAvro => "not_avro",
            DecodeError::UnknownSchema { .. } => "unknown_schema",
            DecodeError::UnknownSchemaId { .. } => "unknown_schema_id",
            DecodeError::BadWriterSchema(_) => "bad_writer_schema",
            DecodeError::Incompatible { .. } => "incompatible_schema",
            DecodeError::WrongEventType { .. } => "wrong_event_type",
            DecodeError::Malformed(_) => "malformed",
            DecodeError::Invalid(v) => v.reason(),
        }
    }
}

#[derive(Debug, Clone, PartialEq, Error)]
pub enum CodecError {
    #[error("unexpected end of input")]
    UnexpectedEnd,
    #[error("variable-length integer longer than 10 bytes")]
    VarintTooLong,
    #[error("negative length {0}")]
    NegativeLength(i64),
    #[error("string is not valid utf-8")]
    InvalidUtf8,
    #[error("index {index} out of range for {branches} branches")]
    BadIndex { index: i64, branches: usize },
    #[error("{0} bytes left after the record")]
    TrailingBytes(usize),
}

/// A well-formed event that vigil cannot use.
#[derive(Debug, Clone, PartialEq, Error)]
pub enum ValidationError {
    #[error("field {field} is empty")]
    Empty { field: &'static str },
    #[error("field {field} is not a finite number")]
    NonFinite { field: String },
    #[error("field {field} is out of range: {detail}")]
    OutOfRange { field: String, detail: String },
}

impl ValidationError {
    pub fn reason(&self) -> &'static str {
        match self {
            ValidationError::Empty { field: "model_id" } => "missing_model_id",
            ValidationError::Empty { .. } => "missing_field",
            ValidationError::NonFinite { .. } => "non_finite_value",
            ValidationError::OutOfRange { .. } => "out_of_range",
        }
    }
}
