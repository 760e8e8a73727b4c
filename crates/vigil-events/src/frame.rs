//! Avro single-object encoding: `c3 01`, the writer schema's 8-byte little-endian CRC-64-AVRO
//! fingerprint, then the binary body. The fingerprint tells a reader which schema wrote the body,
//! without a schema registry.

use crate::codec::{Reader, Writer};
use crate::error::DecodeError;
use crate::prediction::PredictionView;
use crate::schema::AvroRecord;
use crate::{LifecycleEvent, OutcomeEvent, PredictionEvent, RemediationEvent};

pub const MAGIC: [u8; 2] = [0xc3, 0x01];
pub const HEADER_LEN: usize = 10;

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
    let mut r = body_of::<PredictionEvent>(bytes)?;
    let view = PredictionView::read(&mut r)?;
    r.finish()?;
    view.validate()?;
    Ok(view)
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
