//! vigil's events: the types in `schemas/*.avsc`, their Avro wire formats (single-object, and the
//! Confluent Schema Registry framing), and the validation every consumer applies. No I/O.
//!
//! ```
//! use vigil_events::{decode, encode, PredictionEvent};
//! let event = PredictionEvent {
//!     prediction_id: "p-1".into(),
//!     model_id: "fraud".into(),
//!     model_version: "v3".into(),
//!     ..Default::default()
//! };
//! let bytes = encode(&event);
//! assert_eq!(decode::<PredictionEvent>(&bytes).unwrap(), event);
//! ```

mod codec;
mod error;
mod frame;
mod hash;
mod lifecycle;
mod outcome;
mod prediction;
mod remediation;
mod schema;
mod validate;

pub use codec::{Reader, Writer};
pub use error::{CodecError, DecodeError, ValidationError};
pub use frame::{
    confluent_body, decode, decode_confluent, decode_prediction_view, decode_prediction_view_body, detect,
    encode, encode_confluent, fingerprint, schema_name, Framing, Header, WriterSchema, CONFLUENT_HEADER_LEN,
    CONFLUENT_MAGIC, HEADER_LEN, MAGIC,
};
pub use hash::fnv1a64;
pub use lifecycle::{
    DatasetRef, EventKind, LifecycleEvent, Lineage, Stage, MAX_LINEAGE_ITEMS, MAX_LINEAGE_TEXT,
};
pub use outcome::OutcomeEvent;
pub use prediction::{Prediction, PredictionEvent, PredictionView};
pub use remediation::{Evidence, RemediationAction, RemediationEvent, Severity};
pub use schema::{
    fingerprint_of, AvroRecord, LIFECYCLE_SCHEMA, LIFECYCLE_SCHEMA_1, OUTCOME_SCHEMA, PREDICTION_SCHEMA,
    REMEDIATION_SCHEMA, REMEDIATION_SCHEMA_1,
};

/// Topic names, versioned with the schemas' namespace.
pub mod topics {
    pub const PREDICTIONS: &str = "vigil.predictions.v1";
    pub const OUTCOMES: &str = "vigil.outcomes.v1";
    pub const REMEDIATIONS: &str = "vigil.remediations.v1";
    pub const LIFECYCLE: &str = "vigil.lifecycle.v1";
    pub const DEADLETTER: &str = "vigil.deadletter.v1";
}
