//! The two framings vigil reads, told apart per message by their first byte ([`detect`]):
//!
//! - Avro single-object encoding (vigil's default): `c3 01`, the writer schema's 8-byte
//!   little-endian CRC-64-AVRO fingerprint, then the binary body. The fingerprint tells a reader
//!   which schema wrote the body, without a schema registry.
//! - The Confluent Schema Registry wire format: byte `00`, the writer schema's 4-byte big-endian
//!   registry id, then the binary body. The reader fetches the schema by id (crate
//!   `vigil-registry`), parses it once into a [`WriterSchema`] and decodes with
//!   [`decode_confluent`]; a writer schema other than vigil's own (an evolved copy registered by
//!   another producer) is resolved against vigil's by the Avro rules.

use std::borrow::Cow;

use apache_avro::rabin::Rabin;
use apache_avro::reader::datum::GenericDatumReader;
use apache_avro::writer::datum::GenericDatumWriter;
use apache_avro::Schema;

use crate::codec::{Reader, Writer};
use crate::error::DecodeError;
use crate::prediction::PredictionView;
use crate::schema::AvroRecord;
use crate::{LifecycleEvent, OutcomeEvent, PredictionEvent, RemediationEvent};

pub const MAGIC: [u8; 2] = [0xc3, 0x01];
pub const HEADER_LEN: usize = 10;
/// The Confluent wire format's magic byte.
pub const CONFLUENT_MAGIC: u8 = 0;
/// Magic byte and 4-byte big-endian schema id.
pub const CONFLUENT_HEADER_LEN: usize = 5;

/// How one message's bytes are framed, read from its header by [`detect`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Framing {
    /// `c3 01` and the writer schema's fingerprint: decode with [`decode`].
    SingleObject { fingerprint: u64 },
    /// `00` and the writer schema's registry id: fetch the schema by id, then [`decode_confluent`].
    Confluent { schema_id: u32 },
}

impl Framing {
    /// The number of header bytes before the Avro body.
    pub fn header_len(&self) -> usize {
        match self {
            Framing::SingleObject { .. } => HEADER_LEN,
            Framing::Confluent { .. } => CONFLUENT_HEADER_LEN,
        }
    }
}

/// Tells the framing of one message from its first bytes. Neither header: [`DecodeError::NotAvro`].
pub fn detect(bytes: &[u8]) -> Result<Framing, DecodeError> {
    match bytes.first() {
        Some(0xc3) => fingerprint(bytes).map(|fingerprint| Framing::SingleObject { fingerprint }),
        Some(&CONFLUENT_MAGIC) if bytes.len() >= CONFLUENT_HEADER_LEN => {
            let mut id = [0u8; 4];
            id.copy_from_slice(&bytes[1..CONFLUENT_HEADER_LEN]);
            Ok(Framing::Confluent { schema_id: u32::from_be_bytes(id) })
        }
        _ => Err(DecodeError::NotAvro),
    }
}

/// The header a producer writes before each body: vigil's default single-object header, or the
/// Confluent one with the id the registry gave the event type's schema.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Header {
    #[default]
    SingleObject,
    Confluent {
        schema_id: u32,
    },
}

impl Header {
    /// Writes the header for a body of type `T`.
    pub fn write<T: AvroRecord>(&self, w: &mut Writer) {
        match self {
            Header::SingleObject => {
                w.raw(&MAGIC);
                w.raw(&T::fingerprint().to_le_bytes());
            }
            Header::Confluent { schema_id } => {
                w.raw(&[CONFLUENT_MAGIC]);
                w.raw(&schema_id.to_be_bytes());
            }
        }
    }
}

/// Encodes `event` in the Confluent wire format with `schema_id`, the id under which the registry
/// holds `T::SCHEMA_JSON`. Does not validate, like [`encode`].
pub fn encode_confluent<T: AvroRecord>(schema_id: u32, event: &T) -> Vec<u8> {
    let mut w = Writer::with_capacity(256);
    Header::Confluent { schema_id }.write::<T>(&mut w);
    event.encode_body(&mut w);
    w.into_bytes()
}

/// A writer schema as a registry returns it, parsed once (cache it by id: parsing costs far more
/// than decoding one message).
#[derive(Debug, Clone)]
pub struct WriterSchema {
    schema: Schema,
    fingerprint: u64,
    full_name: Option<String>,
}

impl WriterSchema {
    /// Parses the schema's JSON text. A text that is not an Avro schema is
    /// [`DecodeError::BadWriterSchema`].
    pub fn parse(json: &str) -> Result<Self, DecodeError> {
        let schema = Schema::parse_str(json).map_err(|e| DecodeError::BadWriterSchema(e.to_string()))?;
        let fp = schema.fingerprint::<Rabin>();
        let mut bytes = [0u8; 8];
        bytes.copy_from_slice(&fp.bytes);
        let full_name = match &schema {
            Schema::Record(record) => Some(record.name.fullname(None)),
            _ => None,
        };
        Ok(Self { schema, fingerprint: u64::from_le_bytes(bytes), full_name })
    }

    /// The CRC-64-AVRO fingerprint of the schema's Parsing Canonical Form (equal to
    /// `T::fingerprint()` when the registry holds vigil's schema unchanged).
    pub fn fingerprint(&self) -> u64 {
        self.fingerprint
    }

    /// The record's full name, e.g. `vigil.v1.PredictionEvent`; `None` for a non-record schema.
    pub fn full_name(&self) -> Option<&str> {
        self.full_name.as_deref()
    }

    /// The body re-encoded as vigil's schema of `T` would have written it: borrowed when this is
    /// vigil's schema itself (no copy), resolved by the Avro rules otherwise (a field the writer
    /// added is skipped, one it lacks takes vigil's default).
    pub fn resolve<'b, T: AvroRecord>(&self, body: &'b [u8]) -> Result<Cow<'b, [u8]>, DecodeError> {
        if self.fingerprint == T::fingerprint() {
            return Ok(Cow::Borrowed(body));
        }
        if self.full_name.as_deref() != Some(T::FULL_NAME) {
            return Err(match self.full_name.as_deref().and_then(known_name) {
                Some(schema) => DecodeError::WrongEventType { schema },
                None => DecodeError::Incompatible {
                    expected: T::FULL_NAME,
                    detail: format!(
                        "writer schema is {}",
                        self.full_name.as_deref().unwrap_or("not a record")
                    ),
                },
            });
        }
        let parsed_here;
        let reader = match reader_schema::<T>() {
            Some(schema) => schema,
            None => {
                parsed_here = crate::schema::parse(T::SCHEMA_JSON);
                &parsed_here
            }
        };
        let incompatible = |detail: String| DecodeError::Incompatible { expected: T::FULL_NAME, detail };
        let mut input = body;
        let value = GenericDatumReader::builder(&self.schema)
            .reader_schema(reader)
            .build()
            .and_then(|datum| datum.read_value(&mut input))
            .map_err(|e| incompatible(e.to_string()))?;
        if !input.is_empty() {
            return Err(DecodeError::Malformed(crate::CodecError::TrailingBytes(input.len())));
        }
        let bytes = GenericDatumWriter::builder(reader)
            .build()
            .and_then(|datum| datum.write_value_to_vec(value))
            .map_err(|e| incompatible(e.to_string()))?;
        Ok(Cow::Owned(bytes))
    }
}

/// Decodes and validates one Confluent-framed event of type `T` written with `writer` (the schema
/// the registry holds under the id in the header: check it with [`detect`] first).
pub fn decode_confluent<T: AvroRecord>(bytes: &[u8], writer: &WriterSchema) -> Result<T, DecodeError> {
    let body = confluent_body(bytes)?;
    let body = writer.resolve::<T>(body)?;
    let mut r = Reader::new(&body);
    let event = T::decode_body(&mut r)?;
    r.finish()?;
    event.validate()?;
    Ok(event)
}

/// The Avro body after a Confluent header.
pub fn confluent_body(bytes: &[u8]) -> Result<&[u8], DecodeError> {
    match detect(bytes)? {
        Framing::Confluent { .. } => Ok(&bytes[CONFLUENT_HEADER_LEN..]),
        Framing::SingleObject { .. } => Err(DecodeError::NotAvro),
    }
}

/// Decodes and validates a prediction body (no header) already in vigil's schema, e.g. the
/// borrowed result of [`WriterSchema::resolve`], without copying its strings.
pub fn decode_prediction_view_body(body: &[u8]) -> Result<PredictionView<'_>, DecodeError> {
    let mut r = Reader::new(body);
    let view = PredictionView::read(&mut r)?;
    r.finish()?;
    view.validate()?;
    Ok(view)
}

/// vigil's schema of `T`, parsed once per process (resolution needs it for every evolved
/// message); `None` for a type that is not one of vigil's four events.
fn reader_schema<T: AvroRecord>() -> Option<&'static Schema> {
    static PARSED: [std::sync::OnceLock<Schema>; 4] = [
        std::sync::OnceLock::new(),
        std::sync::OnceLock::new(),
        std::sync::OnceLock::new(),
        std::sync::OnceLock::new(),
    ];
    let slot = [
        PredictionEvent::FULL_NAME,
        OutcomeEvent::FULL_NAME,
        RemediationEvent::FULL_NAME,
        LifecycleEvent::FULL_NAME,
    ]
    .iter()
    .position(|name| *name == T::FULL_NAME)?;
    Some(PARSED[slot].get_or_init(|| crate::schema::parse(T::SCHEMA_JSON)))
}

fn known_name(name: &str) -> Option<&'static str> {
    [
        PredictionEvent::FULL_NAME,
        OutcomeEvent::FULL_NAME,
        RemediationEvent::FULL_NAME,
        LifecycleEvent::FULL_NAME,
    ]
    .into_iter()
    .find(|known| *known == name)
}

/// Encodes `event` with its single-object header. Does not validate: call
/// [`AvroRecord::validate`] first where input comes from users.
pub fn encode<T: AvroRecord>(event: &T) -> Vec<u8> {
    let mut w = Writer::with_capacity(256);
    w.raw(&MAGIC);
    w.raw(&T::fingerprint().to_le_bytes());
    event.encode_body(&mut w);
    w.into_bytes()
}

/// Reads the fingerprint from a single-object header.
pub fn fingerprint(bytes: &[u8]) -> Result<u64, DecodeError> {
    if bytes.len() < HEADER_LEN || bytes[..2] != MAGIC {
        return Err(DecodeError::NotAvro);
    }
    let mut fp = [0u8; 8];
    fp.copy_from_slice(&bytes[2..HEADER_LEN]);
    Ok(u64::from_le_bytes(fp))
}

/// Decodes and validates one event of type `T`.
pub fn decode<T: AvroRecord>(bytes: &[u8]) -> Result<T, DecodeError> {
    let fp = fingerprint(bytes)?;
    let mut r = Reader::new(&bytes[HEADER_LEN..]);
    let event = if fp == T::fingerprint() {
        T::decode_body(&mut r)?
    } else {
        match T::decode_older(fp, &mut r) {
            Some(event) => event?,
            None => return Err(wrong_schema(fp)),
        }
    };
    r.finish()?;
    event.validate()?;
    Ok(event)
}

/// Decodes and validates a prediction without copying its strings.
pub fn decode_prediction_view(bytes: &[u8]) -> Result<PredictionView<'_>, DecodeError> {
    body_of::<PredictionEvent>(bytes)?;
    decode_prediction_view_body(&bytes[HEADER_LEN..])
}

/// A reader positioned at the body, once the header names `T`'s schema.
fn body_of<T: AvroRecord>(bytes: &[u8]) -> Result<Reader<'_>, DecodeError> {
    let fp = fingerprint(bytes)?;
    if fp != T::fingerprint() {
        return Err(wrong_schema(fp));
    }
    Ok(Reader::new(&bytes[HEADER_LEN..]))
}

fn wrong_schema(fp: u64) -> DecodeError {
    match schema_name(fp) {
        Some(schema) => DecodeError::WrongEventType { schema },
        None => DecodeError::UnknownSchema { fingerprint: fp },
    }
}

/// The full name of a schema this build knows by fingerprint.
pub fn schema_name(fingerprint: u64) -> Option<&'static str> {
    [
        (PredictionEvent::fingerprint(), PredictionEvent::FULL_NAME),
        (OutcomeEvent::fingerprint(), OutcomeEvent::FULL_NAME),
        (RemediationEvent::fingerprint(), RemediationEvent::FULL_NAME),
        (LifecycleEvent::fingerprint(), LifecycleEvent::FULL_NAME),
    ]
    .into_iter()
    .chain(RemediationEvent::older_fingerprints().into_iter().map(|fp| (fp, RemediationEvent::FULL_NAME)))
    .chain(LifecycleEvent::older_fingerprints().into_iter().map(|fp| (fp, LifecycleEvent::FULL_NAME)))
    .find_map(|(fp, name)| (fp == fingerprint).then_some(name))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::schema::{OUTCOME_SCHEMA, PREDICTION_SCHEMA};
    use crate::Prediction;

    fn prediction() -> PredictionEvent {
        PredictionEvent {
            event_id: "e-1".into(),
            prediction_id: "p-1".into(),
            model_id: "fraud".into(),
            model_version: "v3".into(),
            event_time_ms: 1_764_000_000_000,
            numeric_features: [("amount".to_owned(), 129.5)].into(),
            prediction: Prediction { score: Some(0.87), ..Default::default() },
            ..Default::default()
        }
    }

    #[test]
    fn each_message_says_its_framing() {
        let event = prediction();
        let single = encode(&event);
        assert_eq!(
            detect(&single).unwrap(),
            Framing::SingleObject { fingerprint: PredictionEvent::fingerprint() }
        );
        let confluent = encode_confluent(0x0102_0304, &event);
        assert_eq!(&confluent[..5], &[0, 1, 2, 3, 4]);
        assert_eq!(&confluent[5..], &single[HEADER_LEN..], "same body, other header");
        assert_eq!(detect(&confluent).unwrap(), Framing::Confluent { schema_id: 0x0102_0304 });
        for bad in [&b""[..], b"\x00\x01\x02", b"{\"json\":1}", b"\xc3\x01\x00"] {
            assert_eq!(detect(bad), Err(DecodeError::NotAvro), "{bad:?}");
        }
    }

    #[test]
    fn a_confluent_message_in_vigils_schema_decodes_without_resolution() {
        let event = prediction();
        let writer = WriterSchema::parse(PREDICTION_SCHEMA).unwrap();
        assert_eq!(writer.fingerprint(), PredictionEvent::fingerprint());
        assert_eq!(writer.full_name(), Some(PredictionEvent::FULL_NAME));
        let bytes = encode_confluent(7, &event);
        assert_eq!(decode_confluent::<PredictionEvent>(&bytes, &writer).unwrap(), event);
        let body = writer.resolve::<PredictionEvent>(confluent_body(&bytes).unwrap()).unwrap();
        assert!(matches!(body, Cow::Borrowed(_)));
        assert_eq!(decode_prediction_view_body(&body).unwrap().to_owned(), event);
    }

    #[test]
    fn an_evolved_writer_schema_is_resolved_against_vigils() {
        // Another producer registered the outcome schema with one more field (added last, with a
        // default, as backward-compatible evolution allows) and wrote it.
        let evolved = OUTCOME_SCHEMA.replacen(
            "\"fields\": [",
            "\"fields\": [{\"name\": \"source\", \"type\": \"string\", \"default\": \"\"},",
            1,
        );
        assert_ne!(evolved, OUTCOME_SCHEMA);
        let writer = WriterSchema::parse(&evolved).unwrap();
        assert_ne!(writer.fingerprint(), OutcomeEvent::fingerprint());
        let outcome = OutcomeEvent {
            event_id: "o-1".into(),
            prediction_id: "p-1".into(),
            model_id: "fraud".into(),
            event_time_ms: 1_764_000_060_000,
            label: Some("fraud".into()),
            ..Default::default()
        };
        let mut w = Writer::default();
        Header::Confluent { schema_id: 9 }.write::<OutcomeEvent>(&mut w);
        w.string("crm"); // the extra field comes first on the wire
        outcome.encode_body(&mut w);
        let bytes = w.into_bytes();
        assert_eq!(decode_confluent::<OutcomeEvent>(&bytes, &writer).unwrap(), outcome);
    }

    #[test]
    fn a_writer_schema_of_another_type_or_shape_is_refused_with_its_reason() {
        let outcome_writer = WriterSchema::parse(OUTCOME_SCHEMA).unwrap();
        let bytes = encode_confluent(1, &prediction());
        let err = decode_confluent::<PredictionEvent>(&bytes, &outcome_writer).unwrap_err();
        assert_eq!(err, DecodeError::WrongEventType { schema: OutcomeEvent::FULL_NAME });
        let foreign =
            WriterSchema::parse(r#"{"type":"record","name":"Click","fields":[{"name":"x","type":"long"}]}"#)
                .unwrap();
        let err = decode_confluent::<PredictionEvent>(&bytes, &foreign).unwrap_err();
        assert_eq!(err.reason(), "incompatible_schema");
        assert!(err.to_string().contains("Click"), "{err}");
        let err = WriterSchema::parse("{not json").unwrap_err();
        assert_eq!(err.reason(), "bad_writer_schema");
        // Truncated body.
        let writer = WriterSchema::parse(PREDICTION_SCHEMA).unwrap();
        let err = decode_confluent::<PredictionEvent>(&bytes[..bytes.len() - 3], &writer).unwrap_err();
        assert_eq!(err.reason(), "malformed");
        // A single-object message handed to the Confluent decoder.
        let err = decode_confluent::<PredictionEvent>(&encode(&prediction()), &writer).unwrap_err();
        assert_eq!(err, DecodeError::NotAvro);
    }
}
