//! PagerDuty Events API v2 (`POST /v2/enqueue`): `{routing_key, event_action, dedup_key,
//! payload: {summary, source, severity, ...}}` to trigger; a resolve needs only `routing_key`,
//! `event_action: "resolve"` and the same `dedup_key`. Severity is one of critical, error,
//! warning, info; `summary` at most 1024 characters, `dedup_key` at most 255.

use serde_json::json;

use super::{truncate, WebhookRequest};
use crate::alert::rfc3339;
use crate::{Alert, AlertState};

pub fn build(url: &str, routing_key: &str, alert: &Alert) -> WebhookRequest {
    let dedup_key = truncate(&alert.key, 255);
    let body = match alert.state {
        AlertState::Firing => {
            let mut body = json!({
                "routing_key": routing_key,
                "event_action": "trigger",
                "dedup_key": dedup_key,
                "payload": {
                    "summary": truncate(&alert.summary, 1024),
                    "source": format!("vigil/{}", alert.model_id),
                    "severity": alert.severity.as_str(),
                    "timestamp": rfc3339(alert.starts_at_ms),
                    "component": alert.model_id,
                    "group": alert.model_version,
                    "class": alert.policy,
                    "custom_details": {
                        "remediation_id": alert.remediation_id,
                        "details": alert.details,
                    },
                },
                "client": "vigil",
            });
            if let Some(link) = &alert.link {
                body["client_url"] = link.clone().into();
            }
            body
        }
        AlertState::Resolved => {
            json!({"routing_key": routing_key, "event_action": "resolve", "dedup_key": dedup_key})
        }
    };
    WebhookRequest::json(url.to_owned(), &body)
}

#[cfg(test)]
mod tests {
    use serde_json::{json, Value};

    use super::*;
    use crate::payload::fixtures::alert;

    #[test]
    fn trigger_then_resolve_with_one_dedup_key() {
        let trigger: Value =
            serde_json::from_slice(&build("https://pd/v2/enqueue", "R0UTING", &alert()).body).unwrap();
        assert_eq!(
            trigger,
            json!({
                "routing_key": "R0UTING",
                "event_action": "trigger",
                "dedup_key": "fraud/v2/error-rate",
                "payload": {
                    "summary": "fraud v2 breached policy error-rate: error_rate = 0.4 vs 0.1",
                    "source": "vigil/fraud",
                    "severity": "critical",
                    "timestamp": "2026-11-26T21:09:00.000Z",
                    "component": "fraud",
                    "group": "v2",
                    "class": "error-rate",
                    "custom_details": {"remediation_id": "rem-1", "details": {"error_rate": "0.4 (threshold 0.1)"}}
                },
                "client": "vigil",
                "client_url": "http://grafana.local/d/vigil"
            })
        );
        let resolve: Value =
            serde_json::from_slice(&build("https://pd/v2/enqueue", "R0UTING", &alert().resolved(1)).body)
                .unwrap();
        assert_eq!(
            resolve,
            json!({"routing_key": "R0UTING", "event_action": "resolve", "dedup_key": "fraud/v2/error-rate"})
        );
    }
}
