//! vigil's alert webhooks: Alertmanager, PagerDuty Events v2, Opsgenie, Slack and signed generic
//! JSON. [`payload`] builds each documented format (pure); [`start`] runs the delivery: dedup by
//! (alert key, state) per receiver, a durable outbox, one lane per receiver with per-request
//! timeouts and retries (exponential backoff with full jitter, `Retry-After` on 429).

mod alert;
pub mod audit;
mod config;
mod error;
mod notifier;
mod outbox;
pub mod payload;

pub use alert::{rfc3339, Alert, AlertSeverity, AlertState};
pub use config::{AlertsConfig, DeliveryConfig, ReceiverConfig, ReceiverKind};
pub use error::AlertError;
pub use notifier::{start, start_with_audit, Notifier, Stats, StatsSnapshot};
