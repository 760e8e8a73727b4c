//! A client for the Confluent Schema Registry REST API (also served by Apicurio Registry under
//! `/apis/ccompat/v7` and by Karapace), as vigil needs it:
//!
//! - producers [`register`](Client::register) vigil's schemas under a subject ([`subject`], the
//!   Confluent naming strategies) and frame each message with the id they get back
//!   ([`vigil_events::Header::Confluent`]);
//! - consumers read the id from each message ([`vigil_events::detect`]) and ask a [`Cache`] for
//!   the writer schema: fetched once per id, parsed once, kept in a bounded map.
//!
//! ```no_run
//! # async fn demo() -> Result<(), Box<dyn std::error::Error>> {
//! use vigil_events::{detect, decode_confluent, Framing, PredictionEvent};
//! use vigil_registry::{Cache, Client, RegistryConfig};
//!
//! let client = Client::new(RegistryConfig::new("http://127.0.0.1:8081/apis/ccompat/v7"))?;
//! let cache = Cache::new(client, 1_000);
//! # let bytes: &[u8] = &[];
//! if let Ok(Framing::Confluent { schema_id }) = detect(bytes) {
//!     let writer = cache.schema(schema_id).await?;
//!     let event: PredictionEvent = decode_confluent(bytes, &writer)?;
//! }
//! # Ok(()) }
//! ```

mod cache;
mod client;
mod error;
mod subject;

pub use cache::Cache;
pub use client::{Client, RegistryConfig, VigilSchemaIds};
pub use error::RegistryError;
pub use subject::{subject, SubjectNameStrategy};
