//! Generic JSON: the alert as JSON, signed so the receiver can check it came from vigil:
//! `X-Vigil-Signature: sha256=<lowercase hex HMAC-SHA256 of the raw body with the shared
//! secret>`, as GitHub's `X-Hub-Signature-256`. `X-Vigil-Delivery` is unique per delivery (a
//! retry repeats it), so a receiver can drop a redelivery.

use hmac::{Hmac, KeyInit, Mac};
use serde_json::json;
use sha2::Sha256;

use super::WebhookRequest;
use crate::alert::rfc3339;
use crate::Alert;

pub const SIGNATURE_HEADER: &str = "x-vigil-signature";

pub fn build(url: &str, secret: &str, alert: &Alert, delivery_id: u64) -> WebhookRequest {
    let body = json!({
        "version": 1,
        "key": alert.key,
        "state": alert.state,
        "severity": alert.severity,
        "model_id": alert.model_id,
        "model_version": alert.model_version,
        "policy": alert.policy,
        "summary": alert.summary,
        "details": alert.details,
        "remediation_id": alert.remediation_id,
        "starts_at": rfc3339(alert.starts_at_ms),
        "ends_at": alert.ends_at_ms.map(rfc3339),
        "link": alert.link,
    });
    signed(url, secret, &body, delivery_id)
}

/// `body` as JSON to `url`, with `X-Vigil-Signature` over the bytes sent and `X-Vigil-Delivery`.
pub(super) fn signed(url: &str, secret: &str, body: &serde_json::Value, delivery_id: u64) -> WebhookRequest {
    let mut request = WebhookRequest::json(url.to_owned(), body);
    let signature = sign(secret.as_bytes(), &request.body);
    request.headers.push((SIGNATURE_HEADER, signature));
    request.headers.push(("x-vigil-delivery", delivery_id.to_string()));
    request
}

/// `sha256=<hex>` of HMAC-SHA256(`secret`, `body`).
pub fn sign(secret: &[u8], body: &[u8]) -> String {
    // HMAC accepts keys of any length, so this cannot fail.
    let mut mac = <Hmac<Sha256> as KeyInit>::new_from_slice(secret)
        .unwrap_or_else(|_| unreachable!("hmac takes any key length"));
    mac.update(body);
    let digest = mac.finalize().into_bytes();
    let mut out = String::with_capacity(7 + 64);
    out.push_str("sha256=");
    for byte in digest {
        out.push_str(&format!("{byte:02x}"));
    }
    out
}

#[cfg(test)]
mod tests {
    use serde_json::Value;

    use super::*;
    use crate::payload::fixtures::alert;

    #[test]
    fn hmac_sha256_matches_rfc_4231_case_2() {
        // RFC 4231, test case 2: key "Jefe".
        assert_eq!(
            sign(b"Jefe", b"what do ya want for nothing?"),
            "sha256=5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843"
        );
    }

    #[test]
    fn body_is_signed_as_sent() {
        let request = build("http://hook", "s3cret", &alert(), 7);
        let signature = &request.headers.iter().find(|(h, _)| *h == SIGNATURE_HEADER).unwrap().1;
        assert_eq!(signature, &sign(b"s3cret", &request.body));
        assert!(request.headers.contains(&("x-vigil-delivery", "7".to_owned())));
        let body: Value = serde_json::from_slice(&request.body).unwrap();
        assert_eq!((body["state"].as_str(), body["severity"].as_str()), (Some("firing"), Some("critical")));
        assert_eq!(body["ends_at"], Value::Null);
    }
}
