//! The schemas in `schemas/*.avsc`, compiled in, and their CRC-64-AVRO fingerprints.

use std::sync::OnceLock;

use apache_avro::rabin::Rabin;
use apache_avro::Schema;

use crate::codec::{Reader, Writer};
use crate::error::{CodecError, ValidationError};

pub const PREDICTION_SCHEMA: &str = include_str!("../schemas/prediction.avsc");
pub const OUTCOME_SCHEMA: &str = include_str!("../schemas/outcome.avsc");
pub const REMEDIATION_SCHEMA: &str = include_str!("../schemas/remediation.avsc");
pub const LIFECYCLE_SCHEMA: &str = include_str!("../schemas/lifecycle.avsc");
/// Earlier revisions still read (`schemas/history/`): what they wrote stays on the topics.
pub const LIFECYCLE_SCHEMA_1: &str = include_str!("../schemas/history/lifecycle.1.avsc");
pub const REMEDIATION_SCHEMA_1: &str = include_str!("../schemas/history/remediation.1.avsc");

/// An event type with a schema in `schemas/` and a hand-written body codec for it.
pub trait AvroRecord: Sized {
    /// The Avro full name, e.g. `vigil.v1.PredictionEvent`.
    const FULL_NAME: &'static str;
    const SCHEMA_JSON: &'static str;

    /// Fingerprint of the schema's Parsing Canonical Form, as in the single-object header.
    fn fingerprint() -> u64;
    /// Fingerprints of earlier revisions of the schema that [`AvroRecord::decode_older`] reads.
    fn older_fingerprints() -> Vec<u64> {
        Vec::new()
    }
    /// A body written with an earlier revision (by its fingerprint), the fields added since set
    /// to their defaults; `None` for a fingerprint that is no revision of this schema.
    fn decode_older(_fingerprint: u64, _r: &mut Reader<'_>) -> Option<Result<Self, CodecError>> {
        None
    }
    fn encode_body(&self, w: &mut Writer);
    fn decode_body(r: &mut Reader<'_>) -> Result<Self, CodecError>;
    /// Checks what the schema cannot express (non-empty ids, finite numbers).
    fn validate(&self) -> Result<(), ValidationError>;
}

/// Parses a schema compiled into the binary; a failure is a bug caught by the unit tests.
pub fn parse(json: &str) -> Schema {
    Schema::parse_str(json).expect("compiled-in schema parses")
}

pub fn fingerprint_of(json: &str) -> u64 {
    let fp = parse(json).fingerprint::<Rabin>();
    let mut bytes = [0u8; 8];
    bytes.copy_from_slice(&fp.bytes);
    u64::from_le_bytes(bytes)
}

/// Computes a fingerprint once per process.
pub(crate) fn cached(cell: &'static OnceLock<u64>, json: &str) -> u64 {
    *cell.get_or_init(|| fingerprint_of(json))
}
