//! Pure builders of each receiver's documented request format. Nothing here sends anything.

mod alertmanager;
mod generic;
mod opsgenie;
mod pagerduty;
mod slack;

pub use generic::{sign, SIGNATURE_HEADER};

use crate::config::ReceiverKind;
use crate::Alert;

/// One HTTP POST, ready to send.
#[derive(Debug, Clone, PartialEq)]
pub struct WebhookRequest {
    pub url: String,
    pub headers: Vec<(&'static str, String)>,
    pub body: Vec<u8>,
}

impl WebhookRequest {
    fn json(url: String, body: &serde_json::Value) -> Self {
        Self {
            url,
            headers: vec![("content-type", "application/json".to_owned())],
            // A `Value` always serializes.
            body: serde_json::to_vec(body).unwrap_or_default(),
        }
    }
}

/// The request that tells `receiver` about `alert`. `delivery_id` is unique per outbox entry and
/// `now_ms` is the send time (Alertmanager's `endsAt` for a firing alert depends on it).
pub fn build(
    receiver: &ReceiverKind,
    alert: &Alert,
    delivery_id: u64,
    now_ms: i64,
) -> WebhookRequest {
    match receiver {
        ReceiverKind::Alertmanager { url } => alertmanager::build(url, alert, now_ms),
        ReceiverKind::Pagerduty { routing_key, url } => pagerduty::build(url, routing_key, alert),
        ReceiverKind::Opsgenie { api_key, url } => opsgenie::build(url, api_key, alert),
        ReceiverKind::Slack { webhook_url } => slack::build(webhook_url, alert),
        ReceiverKind::Generic { url, secret } => generic::build(url, secret, alert, delivery_id),
    }
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
}

#[cfg(test)]
mod tests {
    #[test]
    fn truncates_by_characters() {
        assert_eq!(super::truncate("abc", 3), "abc");
        assert_eq!(super::truncate("abcdé", 4), "abc…");
    }
}
