//! The REST calls: register a schema under a subject, fetch a schema by id.

use std::time::Duration;

use serde::Deserialize;
use vigil_events::{AvroRecord, OutcomeEvent, PredictionEvent};

use crate::error::RegistryError;
use crate::subject::{subject, SubjectNameStrategy};

/// The content type of the Confluent API.
const CONTENT_TYPE: &str = "application/vnd.schemaregistry.v1+json";
/// The largest answer read from the registry (a schema is a few KiB; this bounds a broken proxy).
const MAX_BODY: usize = 4 << 20;

/// Where the registry is and how to talk to it.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct RegistryConfig {
    /// The base URL the Confluent paths (`/subjects`, `/schemas/ids/{id}`) hang from, e.g.
    /// `http://127.0.0.1:8081` for Confluent's or Karapace's registry,
    /// `http://127.0.0.1:8081/apis/ccompat/v7` for Apicurio Registry.
    pub url: String,
    /// HTTP basic auth (Confluent Cloud's API key and secret), if the registry wants it.
    pub basic_auth: Option<(String, String)>,
    /// Per request, connection included.
    pub timeout: Duration,
}

impl RegistryConfig {
    /// Defaults: no auth, a 5 s timeout.
    pub fn new(url: impl Into<String>) -> Self {
        Self { url: url.into(), basic_auth: None, timeout: Duration::from_secs(5) }
    }
}

/// A Confluent-API schema registry client. Cheap to clone (one connection pool).
#[derive(Debug, Clone)]
pub struct Client {
    http: reqwest::Client,
    base: String,
    basic_auth: Option<(String, String)>,
}

/// The ids vigil's two producer schemas got from [`Client::register_vigil_schemas`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct VigilSchemaIds {
    pub prediction: u32,
    pub outcome: u32,
}

#[derive(Deserialize)]
struct Registered {
    id: u32,
}

#[derive(Deserialize)]
struct SchemaById {
    schema: String,
    #[serde(rename = "schemaType")]
    schema_type: Option<String>,
}

#[derive(Deserialize)]
struct ErrorBody {
    error_code: Option<i64>,
    message: Option<String>,
}

impl Client {
    /// Checks the settings; does not contact the registry.
    pub fn new(config: RegistryConfig) -> Result<Self, RegistryError> {
        let base = config.url.trim().trim_end_matches('/').to_owned();
        let mut problems = Vec::new();
        if !(base.starts_with("http://") || base.starts_with("https://")) {
            problems.push(format!("url must start with http:// or https://, got {:?}", config.url));
        }
        if config.timeout.is_zero() {
            problems.push("timeout must be above zero".to_owned());
        }
        if !problems.is_empty() {
            return Err(RegistryError::Config(problems.join("; ")));
        }
        let http = reqwest::Client::builder()
            .timeout(config.timeout)
            .build()
            .map_err(|e| RegistryError::Config(format!("cannot build the http client: {e}")))?;
        Ok(Self { http, base, basic_auth: config.basic_auth })
    }

    /// The base URL, without a trailing slash.
    pub fn url(&self) -> &str {
        &self.base
    }

    /// Registers `schema_json` under `subject` (or finds it there) and returns its global id:
    /// `POST /subjects/{subject}/versions`. The registry checks it against the subject's
    /// compatibility level; an incompatible schema is [`RegistryError::Status`] with status 409.
    pub async fn register(&self, subject: &str, schema_json: &str) -> Result<u32, RegistryError> {
        let url = format!("{}/subjects/{}/versions", self.base, encode_path(subject));
        let body = serde_json::json!({ "schema": schema_json }).to_string();
        let request = self.http.post(&url).header("content-type", CONTENT_TYPE).body(body);
        let bytes = self.send(request, &url).await?;
        let registered: Registered = parse(&bytes, &url)?;
        Ok(registered.id)
    }

    /// The schema text the registry holds under `id`: `GET /schemas/ids/{id}`.
    pub async fn schema_text(&self, id: u32) -> Result<String, RegistryError> {
        let url = format!("{}/schemas/ids/{id}", self.base);
        let request = self.http.get(&url);
        let bytes = match self.send(request, &url).await {
            Err(RegistryError::Status { status: 404, .. }) => {
                return Err(RegistryError::UnknownId { id, url });
            }
            other => other?,
        };
        let found: SchemaById = parse(&bytes, &url)?;
        match found.schema_type.as_deref() {
            None | Some("AVRO") => Ok(found.schema),
            Some(other) => Err(RegistryError::BadSchema {
                id,
                source: vigil_events::DecodeError::BadWriterSchema(format!("schema type {other}, not AVRO")),
            }),
        }
    }

    /// Registers vigil's prediction and outcome schemas for the two topics under `strategy`.
    pub async fn register_vigil_schemas(
        &self,
        strategy: SubjectNameStrategy,
        predictions_topic: &str,
        outcomes_topic: &str,
    ) -> Result<VigilSchemaIds, RegistryError> {
        let prediction = self
            .register(
                &subject(strategy, predictions_topic, PredictionEvent::FULL_NAME),
                PredictionEvent::SCHEMA_JSON,
            )
            .await?;
        let outcome = self
            .register(&subject(strategy, outcomes_topic, OutcomeEvent::FULL_NAME), OutcomeEvent::SCHEMA_JSON)
            .await?;
        Ok(VigilSchemaIds { prediction, outcome })
    }

    async fn send(&self, mut request: reqwest::RequestBuilder, url: &str) -> Result<Vec<u8>, RegistryError> {
        request = request.header("accept", CONTENT_TYPE);
        if let Some((user, password)) = &self.basic_auth {
            request = request.basic_auth(user, Some(password));
        }
        let network = |source| RegistryError::Network { url: url.to_owned(), source };
        let mut response = request.send().await.map_err(network)?;
        let status = response.status();
        let mut body = Vec::new();
        while let Some(chunk) = response.chunk().await.map_err(network)? {
            if body.len() + chunk.len() > MAX_BODY {
                return Err(RegistryError::Protocol {
                    url: url.to_owned(),
                    detail: format!("answer longer than {MAX_BODY} bytes"),
                });
            }
            body.extend_from_slice(&chunk);
        }
        if status.is_success() {
            return Ok(body);
        }
        let error: Option<ErrorBody> = serde_json::from_slice(&body).ok();
        let (code, message) = match error {
            Some(ErrorBody { error_code, message }) => (
                error_code.unwrap_or(i64::from(status.as_u16())),
                message.unwrap_or_else(|| String::from_utf8_lossy(&body).into_owned()),
            ),
            None => (i64::from(status.as_u16()), String::from_utf8_lossy(&body).chars().take(500).collect()),
        };
        Err(RegistryError::Status { url: url.to_owned(), status: status.as_u16(), code, message })
    }
}

fn parse<'a, T: Deserialize<'a>>(bytes: &'a [u8], url: &str) -> Result<T, RegistryError> {
    serde_json::from_slice(bytes)
        .map_err(|e| RegistryError::Protocol { url: url.to_owned(), detail: format!("{e}") })
}

/// Percent-encodes a subject for a URL path (everything but RFC 3986's unreserved characters).
fn encode_path(segment: &str) -> String {
    let mut out = String::with_capacity(segment.len());
    for byte in segment.bytes() {
        if byte.is_ascii_alphanumeric() || matches!(byte, b'-' | b'.' | b'_' | b'~') {
            out.push(byte as char);
        } else {
            out.push_str(&format!("%{byte:02X}"));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bad_settings_are_named() {
        let mut config = RegistryConfig::new("127.0.0.1:8081");
        config.timeout = Duration::ZERO;
        let message = Client::new(config).unwrap_err().to_string();
        assert!(message.contains("url must start with http://"), "{message}");
        assert!(message.contains("timeout"), "{message}");
        let client = Client::new(RegistryConfig::new("http://127.0.0.1:8081/apis/ccompat/v7/")).unwrap();
        assert_eq!(client.url(), "http://127.0.0.1:8081/apis/ccompat/v7");
    }

    #[test]
    fn subjects_are_escaped_in_paths() {
        assert_eq!(encode_path("vigil.predictions.v1-value"), "vigil.predictions.v1-value");
        assert_eq!(encode_path("a/b c"), "a%2Fb%20c");
    }
}
