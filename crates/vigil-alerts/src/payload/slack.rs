//! Slack incoming webhook: `{text, blocks}`; `text` is the notification fallback, `blocks` the
//! Block Kit layout (a section in mrkdwn and a context line). Slack answers `ok`, or 429 with
//! `Retry-After`.

use serde_json::json;

use super::WebhookRequest;
use crate::{Alert, AlertState};

pub fn build(webhook_url: &str, alert: &Alert) -> WebhookRequest {
    let (icon, verb) = match alert.state {
        AlertState::Firing => (":rotating_light:", "FIRING"),
        AlertState::Resolved => (":white_check_mark:", "RESOLVED"),
    };
    let text = format!("{icon} [{verb}] {} ({})", alert.summary, alert.severity.as_str());
    let mut fields = String::new();
    for (name, value) in &alert.details {
        fields.push_str(&format!("\n• *{}*: {}", escape(name), escape(value)));
    }
    let mut context = format!(
        "model `{}` version `{}` policy `{}`",
        escape(&alert.model_id),
        escape(&alert.model_version),
        escape(&alert.policy)
    );
    if let Some(link) = &alert.link {
        context.push_str(&format!(" · <{link}|dashboard>"));
    }
    let body = json!({
        "text": text,
        "blocks": [
            {"type": "section", "text": {"type": "mrkdwn", "text": format!("{icon} *[{verb}]* {}{fields}", escape(&alert.summary))}},
            {"type": "context", "elements": [{"type": "mrkdwn", "text": context}]},
        ],
    });
    WebhookRequest::json(webhook_url.to_owned(), &body)
}

/// Slack's three control characters in mrkdwn.
fn escape(text: &str) -> String {
    text.replace('&', "&amp;").replace('<', "&lt;").replace('>', "&gt;")
}

#[cfg(test)]
mod tests {
    use serde_json::Value;

    use super::*;
    use crate::payload::fixtures::alert;

    #[test]
    fn text_and_blocks() {
        let body: Value = serde_json::from_slice(&build("https://hooks/x", &alert()).body).unwrap();
        assert_eq!(body["text"], ":rotating_light: [FIRING] fraud v2 breached policy error-rate: error_rate = 0.4 vs 0.1 (critical)");
        assert_eq!(body["blocks"][0]["type"], "section");
        assert_eq!(body["blocks"][0]["text"]["type"], "mrkdwn");
        assert!(body["blocks"][0]["text"]["text"]
            .as_str()
            .unwrap()
            .contains("• *error_rate*: 0.4 (threshold 0.1)"));
        assert_eq!(
            body["blocks"][1]["elements"][0]["text"],
            "model `fraud` version `v2` policy `error-rate` · <http://grafana.local/d/vigil|dashboard>"
        );
        let resolved: Value =
            serde_json::from_slice(&build("https://hooks/x", &alert().resolved(1)).body).unwrap();
        assert!(resolved["text"].as_str().unwrap().starts_with(":white_check_mark: [RESOLVED]"));
    }

    #[test]
    fn escapes_control_characters() {
        assert_eq!(escape("a<b>&c"), "a&lt;b&gt;&amp;c");
    }
}
