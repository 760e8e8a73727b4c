//! vigil's webhooks: alerts to Alertmanager, PagerDuty Events v2, Opsgenie, Slack and signed
//! generic JSON, and lifecycle changes to the serving platform (signed JSON with an idempotency
//! key, or MLflow registry aliases). [`payload`] builds each documented format (pure); [`start`]
//! runs the delivery: dedup by (key, state) per receiver, a durable outbox, one lane per receiver
//! with per-request timeouts and retries (exponential backoff with full jitter, `Retry-After` on
//! 429).

mod alert;
pub mod audit;
mod config;
mod error;
mod notifier;
mod outbox;
pub mod payload;
mod retrain;
mod traffic;

pub use alert::{rfc3339, Alert, AlertSeverity, AlertState};
pub use config::{check_receivers, AlertsConfig, Channel, DeliveryConfig, ReceiverConfig, ReceiverKind};
pub use error::AlertError;
pub use notifier::{start, start_with_audit, Notifier, Stats, StatsSnapshot};
pub use retrain::{retrain_key, RetrainEvidence, RetrainRequest};
pub use traffic::{CanarySplit, DatasetView, LineageView, Message, StageChange, TrafficUpdate};
