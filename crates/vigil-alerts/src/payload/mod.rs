//! Pure builders of each receiver's documented request format. Nothing here sends anything.

mod alertmanager;
mod generic;
mod mlflow;
mod opsgenie;
mod pagerduty;
mod platform;
mod retrain;
mod slack;

pub use generic::{sign, SIGNATURE_HEADER};
pub use mlflow::ALIAS_PATH as MLFLOW_ALIAS_PATH;
pub use opsgenie::encode_path_segment;

use crate::config::ReceiverKind;
use crate::{Alert, Message};

/// One HTTP request, ready to send.
#[derive(Debug, Clone, PartialEq)]
pub struct WebhookRequest {
    /// `POST`, or `DELETE` (MLflow removes an alias with a DELETE and a JSON body).
    pub method: &'static str,
    pub url: String,
    pub headers: Vec<(&'static str, String)>,
    pub body: Vec<u8>,
    /// A 409 answer means an earlier attempt already did it (the request is named by an
    /// idempotency key): delivered, not retried.
    pub conflict_is_done: bool,
}

impl WebhookRequest {
    fn json(url: String, body: &serde_json::Value) -> Self {
        Self {
            method: "POST",
            url,
            headers: vec![("content-type", "application/json".to_owned())],
            // A `Value` always serializes.
            body: serde_json::to_vec(body).unwrap_or_default(),
            conflict_is_done: false,
        }
    }
}

/// The requests that tell `receiver` about `message`, to send in order; empty when the receiver
/// does not take this kind of message. `delivery_id` is unique per outbox entry and `now_ms` is
/// the send time (Alertmanager's `endsAt` for a firing alert depends on it).
pub fn build(
    receiver: &ReceiverKind,
    message: &Message,
    delivery_id: u64,
    now_ms: i64,
) -> Vec<WebhookRequest> {
    match message {
        Message::Alert(alert) => build_alert(receiver, alert, delivery_id, now_ms).into_iter().collect(),
        Message::Traffic(update) => match receiver {
            ReceiverKind::Platform { url, secret } => {
                vec![platform::build(url, secret, update, delivery_id)]
            }
            ReceiverKind::Mlflow { url, token, production_alias, canary_alias, version_prefix } => {
                mlflow::build(
                    url,
                    token,
                    &mlflow::Aliases { production: production_alias, canary: canary_alias, version_prefix },
                    update,
                )
            }
            _ => Vec::new(),
        },
        Message::Retrain(request) => retrain::build(receiver, request, delivery_id).into_iter().collect(),
    }
}

fn build_alert(
    receiver: &ReceiverKind,
    alert: &Alert,
    delivery_id: u64,
    now_ms: i64,
) -> Option<WebhookRequest> {
    Some(match receiver {
        ReceiverKind::Alertmanager { url } => alertmanager::build(url, alert, now_ms),
        ReceiverKind::Pagerduty { routing_key, url } => pagerduty::build(url, routing_key, alert),
        ReceiverKind::Opsgenie { api_key, url } => opsgenie::build(url, api_key, alert),
        ReceiverKind::Slack { webhook_url } => slack::build(webhook_url, alert),
        ReceiverKind::Generic { url, secret } => generic::build(url, secret, alert, delivery_id),
        _ => return None,
    })
}

/// Cuts `text` to at most `max` characters (receivers reject longer fields), ending in `…`.
fn truncate(text: &str, max: usize) -> String {
    if text.chars().count() <= max {
        return text.to_owned();
    }
    let mut cut: String = text.chars().take(max.saturating_sub(1)).collect();
    cut.push('…');
    cut
}

#[cfg(test)]
pub(crate) mod fixtures {
    use std::collections::BTreeMap;

    use crate::traffic::{CanarySplit, StageChange, TrafficUpdate};
    use crate::{Alert, AlertSeverity, AlertState};

    pub fn alert() -> Alert {
        Alert {
            key: "fraud/v2/error-rate".into(),
            state: AlertState::Firing,
            severity: AlertSeverity::Critical,
            model_id: "fraud".into(),
            model_version: "v2".into(),
            policy: "error-rate".into(),
            summary: "fraud v2 breached policy error-rate: error_rate = 0.4 vs 0.1".into(),
            details: BTreeMap::from([("error_rate".to_owned(), "0.4 (threshold 0.1)".to_owned())]),
            remediation_id: Some("rem-1".into()),
            starts_at_ms: 1_795_727_340_000,
            ends_at_ms: None,
            link: Some("http://grafana.local/d/vigil".into()),
        }
    }

    /// A canary at 20% next to production v1.
    pub fn traffic() -> TrafficUpdate {
        TrafficUpdate {
            model_id: "fraud".into(),
            event_id: "api:fraud:v2:CANARY:1".into(),
            production: Some("v1".into()),
            canary: Some(CanarySplit { model_version: "v2".into(), traffic_weight: 0.2 }),
            changes: vec![StageChange {
                event_id: "api:fraud:v2:CANARY:1".into(),
                model_id: "fraud".into(),
                model_version: "v2".into(),
                stage: "CANARY".into(),
                traffic_weight: Some(0.2),
                reason: "registered by ci".into(),
                actor: "ci".into(),
                remediation_id: None,
                event_time_ms: 1_795_727_340_000,
                kind: "STAGE_CHANGE".into(),
                lineage: Some(crate::LineageView {
                    training_run_id: Some("run-7".into()),
                    ..Default::default()
                }),
            }],
            at_ms: 1_795_727_340_000,
        }
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn truncates_by_characters() {
        assert_eq!(super::truncate("abc", 3), "abc");
        assert_eq!(super::truncate("abcdé", 4), "abc…");
    }
}
