//! Alertmanager API v2: `POST /api/v2/alerts` with a JSON array of alerts, each with `labels`
//! (which identify it), `annotations`, `startsAt`, `endsAt` (RFC 3339) and `generatorURL`.
//! Alertmanager resolves an alert whose `endsAt` has passed; clients are expected to re-send
//! active alerts, so a firing alert carries an `endsAt` a day ahead instead of relying on
//! `resolve_timeout` (five minutes by default) while vigil sends it once.

use serde_json::{json, Map, Value};

use super::WebhookRequest;
use crate::alert::rfc3339;
use crate::{Alert, AlertState};

/// How long a firing alert stays active in Alertmanager without a resolve.
pub const FIRING_HOLD_MS: i64 = 24 * 3600 * 1000;

pub fn build(base_url: &str, alert: &Alert, now_ms: i64) -> WebhookRequest {
    let ends_at = match alert.state {
        AlertState::Firing => now_ms.max(alert.starts_at_ms) + FIRING_HOLD_MS,
        AlertState::Resolved => alert.ends_at_ms.unwrap_or(now_ms),
    };
    let mut annotations = Map::new();
    annotations.insert("summary".into(), alert.summary.clone().into());
    if let Some(id) = &alert.remediation_id {
        annotations.insert("remediation_id".into(), id.clone().into());
    }
    for (name, value) in &alert.details {
        annotations.insert(name.clone(), value.clone().into());
    }
    let mut entry = json!({
        "labels": {
            "alertname": "VigilPolicyBreach",
            "model_id": alert.model_id,
            "model_version": alert.model_version,
            "policy": alert.policy,
            "severity": alert.severity.as_str(),
        },
        "annotations": annotations,
        "startsAt": rfc3339(alert.starts_at_ms),
        "endsAt": rfc3339(ends_at),
    });
    if let (Some(link), Value::Object(entry)) = (&alert.link, &mut entry) {
        entry.insert("generatorURL".into(), link.clone().into());
    }
    WebhookRequest::json(
        format!("{}/api/v2/alerts", base_url.trim_end_matches('/')),
        &Value::Array(vec![entry]),
    )
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;
    use crate::payload::fixtures::alert;

    #[test]
    fn firing_and_resolved_alerts_share_labels() {
        let now = 1_795_727_400_000;
        let request = build("http://am:9093/", &alert(), now);
        assert_eq!(request.url, "http://am:9093/api/v2/alerts");
        let body: Value = serde_json::from_slice(&request.body).unwrap();
        assert_eq!(
            body,
            json!([{
                "labels": {"alertname": "VigilPolicyBreach", "model_id": "fraud", "model_version": "v2", "policy": "error-rate", "severity": "critical"},
                "annotations": {"summary": "fraud v2 breached policy error-rate: error_rate = 0.4 vs 0.1", "remediation_id": "rem-1", "error_rate": "0.4 (threshold 0.1)"},
                "startsAt": "2026-11-26T21:09:00.000Z",
                "endsAt": "2026-11-27T21:10:00.000Z",
                "generatorURL": "http://grafana.local/d/vigil"
            }])
        );
        let resolved: Value =
            serde_json::from_slice(&build("http://am:9093", &alert().resolved(now), now + 5).body).unwrap();
        assert_eq!(resolved[0]["labels"], body[0]["labels"]);
        assert_eq!(resolved[0]["endsAt"], "2026-11-26T21:10:00.000Z");
    }
}
