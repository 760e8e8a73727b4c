//! Receivers and delivery settings, as the `[alerts]` config section.

use std::path::PathBuf;
use std::time::Duration;

use serde::Deserialize;

use crate::AlertError;

#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AlertsConfig {
    /// Where the outbox lives (`outbox.jsonl`); it must survive restarts.
    #[serde(default = "default_outbox_dir")]
    pub outbox_dir: PathBuf,
    #[serde(default)]
    pub receivers: Vec<ReceiverConfig>,
    #[serde(default)]
    pub delivery: DeliveryConfig,
    /// Alerts waiting for the dispatcher; a full queue refuses new alerts (counted), it never
    /// blocks the caller.
    #[serde(default = "default_queue")]
    pub queue_capacity: usize,
}

fn default_queue() -> usize {
    1024
}

fn default_outbox_dir() -> PathBuf {
    PathBuf::from("/var/lib/vigil/alerts")
}

/// No receivers: alerting is off until some are configured.
impl Default for AlertsConfig {
    fn default() -> Self {
        Self {
            outbox_dir: default_outbox_dir(),
            receivers: Vec::new(),
            delivery: DeliveryConfig::default(),
            queue_capacity: default_queue(),
        }
    }
}

/// Unknown keys are refused by [`ReceiverKind`] (`deny_unknown_fields` does not work through
/// `flatten` on this struct).
#[derive(Debug, Clone, PartialEq, Deserialize)]
pub struct ReceiverConfig {
    /// Unique; names the receiver in logs, metrics and the outbox.
    pub name: String,
    #[serde(flatten)]
    pub kind: ReceiverKind,
}

#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case", deny_unknown_fields)]
pub enum ReceiverKind {
    /// Alertmanager's base URL; alerts go to `<url>/api/v2/alerts`.
    Alertmanager { url: String },
    /// PagerDuty Events API v2.
    Pagerduty {
        routing_key: String,
        #[serde(default = "default_pagerduty_url")]
        url: String,
    },
    /// Opsgenie Alert API (`https://api.eu.opsgenie.com` for EU accounts).
    Opsgenie {
        api_key: String,
        #[serde(default = "default_opsgenie_url")]
        url: String,
    },
    /// A Slack incoming webhook URL.
    Slack { webhook_url: String },
    /// JSON to any URL, signed with HMAC-SHA256 of the raw body in `X-Vigil-Signature`.
    Generic { url: String, secret: String },
    /// The serving platform: every lifecycle change as a model's desired traffic split, signed
    /// like `generic`, with the lifecycle event id as `Idempotency-Key`. Takes no alerts.
    Platform { url: String, secret: String },
    /// MLflow Model Registry: production and canary aliases follow the lifecycle. Takes no
    /// alerts.
    Mlflow {
        /// The tracking server's base URL; requests go to `<url>/api/2.0/mlflow/...`.
        url: String,
        /// Sent as `Authorization: Bearer <token>` when not empty.
        #[serde(default)]
        token: String,
        #[serde(default = "default_production_alias")]
        production_alias: String,
        #[serde(default = "default_canary_alias")]
        canary_alias: String,
        /// Cut from vigil's version to get MLflow's version number (`v` makes `v3` version 3).
        #[serde(default)]
        version_prefix: String,
    },
    /// Apache Airflow's stable REST API: a retrain remediation triggers a run of `dag_id` with
    /// the request as `conf` and its idempotency key as `dag_run_id` (409: already triggered).
    Airflow {
        /// The webserver's base URL; requests go to `<url>/api/v1/dags/<dag_id>/dagRuns`.
        url: String,
        dag_id: String,
        /// `Authorization: Bearer <token>` when not empty; else basic auth when `username` is set.
        #[serde(default)]
        token: String,
        #[serde(default)]
        username: String,
        #[serde(default)]
        password: String,
    },
    /// Argo Workflows' server: submits a workflow from the WorkflowTemplate `workflow_template`
    /// named by the idempotency key (409: already submitted), with parameters `model_id`,
    /// `model_version`, `remediation_id`, `policy` and `request` (the whole request as JSON).
    ArgoWorkflows {
        /// The Argo server's base URL; requests go to `<url>/api/v1/workflows/<namespace>/submit`.
        url: String,
        namespace: String,
        workflow_template: String,
        #[serde(default)]
        token: String,
    },
    /// Kubeflow Pipelines (v2beta1): creates a run of a pipeline version, the request's fields as
    /// runtime parameters, the idempotency key as display name.
    Kubeflow {
        /// The pipelines API's base URL; requests go to `<url>/apis/v2beta1/runs`.
        url: String,
        pipeline_id: String,
        pipeline_version_id: String,
        #[serde(default)]
        experiment_id: String,
        #[serde(default)]
        token: String,
    },
    /// The retraining request as JSON to any URL, signed like `generic`, with the idempotency
    /// key as `Idempotency-Key`.
    RetrainWebhook { url: String, secret: String },
}

/// Which messages a receiver takes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Channel {
    Alerts,
    /// Serving-platform updates.
    Traffic,
    /// Retraining requests.
    Retrain,
}

impl ReceiverKind {
    /// Whether this receiver takes serving-platform updates (and no alerts).
    pub fn takes_traffic(&self) -> bool {
        self.channel() == Channel::Traffic
    }

    /// Whether this receiver takes retraining requests (and nothing else).
    pub fn takes_retrain(&self) -> bool {
        self.channel() == Channel::Retrain
    }

    pub fn channel(&self) -> Channel {
        match self {
            ReceiverKind::Platform { .. } | ReceiverKind::Mlflow { .. } => Channel::Traffic,
            ReceiverKind::Airflow { .. }
            | ReceiverKind::ArgoWorkflows { .. }
            | ReceiverKind::Kubeflow { .. }
            | ReceiverKind::RetrainWebhook { .. } => Channel::Retrain,
            _ => Channel::Alerts,
        }
    }
}

fn default_production_alias() -> String {
    "production".to_owned()
}

fn default_canary_alias() -> String {
    "canary".to_owned()
}

fn default_pagerduty_url() -> String {
    "https://events.pagerduty.com/v2/enqueue".to_owned()
}

fn default_opsgenie_url() -> String {
    "https://api.opsgenie.com".to_owned()
}

/// Retries: exponential backoff with full jitter (a random wait between zero and
/// `initial_backoff * 2^attempt`, capped at `max_backoff`), and a 429's `Retry-After` when given.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct DeliveryConfig {
    #[serde(with = "millis", rename = "request_timeout_ms")]
    pub request_timeout: Duration,
    #[serde(with = "millis", rename = "initial_backoff_ms")]
    pub initial_backoff: Duration,
    #[serde(with = "millis", rename = "max_backoff_ms")]
    pub max_backoff: Duration,
    /// Longest `Retry-After` honoured; a longer one is cut to this.
    #[serde(with = "millis", rename = "max_retry_after_ms")]
    pub max_retry_after: Duration,
    /// Attempts before a delivery is given up (and logged as such).
    pub max_attempts: u32,
    /// Deliveries waiting per receiver.
    pub lane_capacity: usize,
}

impl Default for DeliveryConfig {
    fn default() -> Self {
        Self {
            request_timeout: Duration::from_secs(10),
            initial_backoff: Duration::from_millis(500),
            max_backoff: Duration::from_secs(300),
            max_retry_after: Duration::from_secs(600),
            max_attempts: 12,
            lane_capacity: 256,
        }
    }
}

mod millis {
    use std::time::Duration;

    use serde::{Deserialize, Deserializer};

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Duration, D::Error> {
        u64::deserialize(d).map(Duration::from_millis)
    }
}

impl AlertsConfig {
    /// Checks everything and reports every problem at once, each naming its key under `prefix`.
    pub fn validate(&self, prefix: &str) -> Result<(), AlertError> {
        let mut problems = Vec::new();
        check_receivers(&self.receivers, &|i| format!("{prefix}.receivers[{i}]"), &mut problems);
        if self.outbox_dir.as_os_str().is_empty() {
            problems.push(format!("{prefix}.outbox_dir must not be empty"));
        }
        let d = &self.delivery;
        if d.max_attempts == 0 {
            problems.push(format!("{prefix}.delivery.max_attempts must be at least 1"));
        }
        if d.request_timeout.is_zero() {
            problems.push(format!("{prefix}.delivery.request_timeout_ms must be above 0"));
        }
        if d.initial_backoff > d.max_backoff {
            problems.push(format!("{prefix}.delivery.initial_backoff_ms must not exceed max_backoff_ms"));
        }
        if self.queue_capacity == 0 || d.lane_capacity == 0 {
            problems
                .push(format!("{prefix}.queue_capacity and {prefix}.delivery.lane_capacity must be above 0"));
        }
        if problems.is_empty() {
            Ok(())
        } else {
            Err(AlertError::Config(problems))
        }
    }
}

/// Checks receivers (names unique among them, URLs, secrets), adding every problem to
/// `problems` under the key `key(index)` gives.
pub fn check_receivers(
    receivers: &[ReceiverConfig],
    key: &dyn Fn(usize) -> String,
    problems: &mut Vec<String>,
) {
    let mut names = std::collections::BTreeSet::new();
    for (i, receiver) in receivers.iter().enumerate() {
        let key = key(i);
        if receiver.name.is_empty()
            || !receiver.name.chars().all(|c| c.is_ascii_alphanumeric() || "-_.".contains(c))
        {
            problems.push(format!(
                "{key}.name must be non-empty letters, digits, '-', '_' or '.', got {:?}",
                receiver.name
            ));
        }
        if !names.insert(&receiver.name) {
            problems.push(format!("{key}.name {:?} is used twice", receiver.name));
        }
        let (field, url) = match &receiver.kind {
            ReceiverKind::Alertmanager { url }
            | ReceiverKind::Pagerduty { url, .. }
            | ReceiverKind::Opsgenie { url, .. }
            | ReceiverKind::Generic { url, .. }
            | ReceiverKind::Platform { url, .. }
            | ReceiverKind::Mlflow { url, .. }
            | ReceiverKind::Airflow { url, .. }
            | ReceiverKind::ArgoWorkflows { url, .. }
            | ReceiverKind::Kubeflow { url, .. }
            | ReceiverKind::RetrainWebhook { url, .. } => ("url", url),
            ReceiverKind::Slack { webhook_url } => ("webhook_url", webhook_url),
        };
        if !(url.starts_with("http://") || url.starts_with("https://")) {
            problems.push(format!("{key}.{field} must be an http:// or https:// URL, got {url:?}"));
        }
        let secret = match &receiver.kind {
            ReceiverKind::Pagerduty { routing_key, .. } => Some(("routing_key", routing_key)),
            ReceiverKind::Opsgenie { api_key, .. } => Some(("api_key", api_key)),
            ReceiverKind::Generic { secret, .. }
            | ReceiverKind::Platform { secret, .. }
            | ReceiverKind::RetrainWebhook { secret, .. } => Some(("secret", secret)),
            _ => None,
        };
        if let Some((field, _)) = secret.filter(|(_, v)| v.is_empty()) {
            problems.push(format!("{key}.{field} must not be empty"));
        }
        let required: Vec<(&str, &String)> = match &receiver.kind {
            ReceiverKind::Airflow { dag_id, .. } => vec![("dag_id", dag_id)],
            ReceiverKind::ArgoWorkflows { namespace, workflow_template, .. } => {
                vec![("namespace", namespace), ("workflow_template", workflow_template)]
            }
            ReceiverKind::Kubeflow { pipeline_id, pipeline_version_id, .. } => {
                vec![("pipeline_id", pipeline_id), ("pipeline_version_id", pipeline_version_id)]
            }
            _ => Vec::new(),
        };
        for (field, value) in required {
            if value.trim().is_empty() {
                problems.push(format!("{key}.{field} must not be empty"));
            }
        }
        if let ReceiverKind::Mlflow { production_alias, canary_alias, .. } = &receiver.kind {
            if production_alias.is_empty() || canary_alias.is_empty() || production_alias == canary_alias {
                problems.push(format!(
                    "{key}.production_alias and canary_alias must be two different non-empty names, got {production_alias:?} and {canary_alias:?}"
                ));
            }
        }
    }
}
