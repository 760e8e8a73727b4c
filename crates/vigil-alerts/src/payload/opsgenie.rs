//! Opsgenie Alert API: `POST /v2/alerts` with `Authorization: GenieKey <key>` and
//! `{message, alias, description, priority, ...}` (message at most 130 characters, alias 512;
//! one open alert per alias, which is the dedup); close with
//! `POST /v2/alerts/<alias>/close?identifierType=alias`. Both answer 202 and work asynchronously.

use serde_json::json;

use super::{truncate, WebhookRequest};
use crate::{Alert, AlertSeverity, AlertState};

pub fn build(base_url: &str, api_key: &str, alert: &Alert) -> WebhookRequest {
    let base = base_url.trim_end_matches('/');
    let alias = truncate(&alert.key, 512);
    let (url, body) = match alert.state {
        AlertState::Firing => {
            let priority = match alert.severity {
                AlertSeverity::Critical => "P1",
                AlertSeverity::Warning => "P3",
                AlertSeverity::Info => "P5",
            };
            let mut details = alert.details.clone();
            if let Some(id) = &alert.remediation_id {
                details.insert("remediation_id".into(), id.clone());
            }
            let body = json!({
                "message": truncate(&alert.summary, 130),
                "alias": alias,
                "description": alert.summary,
                "priority": priority,
                "tags": ["vigil", format!("model:{}", alert.model_id), format!("policy:{}", alert.policy)],
                "details": details,
                "entity": alert.model_id,
                "source": "vigil",
            });
            (format!("{base}/v2/alerts"), body)
        }
        AlertState::Resolved => (
            format!("{base}/v2/alerts/{}/close?identifierType=alias", encode_path_segment(&alias)),
            json!({"source": "vigil", "note": "healthy again"}),
        ),
    };
    let mut request = WebhookRequest::json(url, &body);
    request.headers.push(("authorization", format!("GenieKey {api_key}")));
    request
}

/// Percent-encodes everything but RFC 3986's unreserved characters, for one path segment (an
/// alias, a model id, may hold `/`).
pub fn encode_path_segment(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for byte in text.bytes() {
        if byte.is_ascii_alphanumeric() || b"-._~".contains(&byte) {
            out.push(byte as char);
        } else {
            out.push_str(&format!("%{byte:02X}"));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use serde_json::{json, Value};

    use super::*;
    use crate::payload::fixtures::alert;

    #[test]
    fn create_with_alias_and_close_by_alias() {
        let create = build("https://api.opsgenie.com/", "KEY", &alert());
        assert_eq!(create.url, "https://api.opsgenie.com/v2/alerts");
        assert!(create.headers.contains(&("authorization", "GenieKey KEY".to_owned())));
        let body: Value = serde_json::from_slice(&create.body).unwrap();
        assert_eq!(body["alias"], "fraud/v2/error-rate");
        assert_eq!(body["priority"], "P1");
        assert_eq!(body["details"], json!({"error_rate": "0.4 (threshold 0.1)", "remediation_id": "rem-1"}));
        assert!(body["message"].as_str().unwrap().chars().count() <= 130);

        let close = build("https://api.opsgenie.com", "KEY", &alert().resolved(1));
        assert_eq!(
            close.url,
            "https://api.opsgenie.com/v2/alerts/fraud%2Fv2%2Ferror-rate/close?identifierType=alias"
        );
        assert_eq!(
            serde_json::from_slice::<Value>(&close.body).unwrap(),
            json!({"source": "vigil", "note": "healthy again"})
        );
    }
}
