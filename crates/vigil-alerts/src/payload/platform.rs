//! The serving-platform webhook: after every lifecycle change, one model's whole desired state
//! (production version, canary and its share, each version's weight) as signed JSON, like the
//! generic alert webhook (`X-Vigil-Signature`, `X-Vigil-Delivery`), plus `Idempotency-Key`: the
//! last lifecycle event id, the same on every retry and resend of that change.

use serde_json::json;

use super::{generic, WebhookRequest};
use crate::alert::rfc3339;
use crate::TrafficUpdate;

pub const IDEMPOTENCY_HEADER: &str = "idempotency-key";

pub fn build(url: &str, secret: &str, update: &TrafficUpdate, delivery_id: u64) -> WebhookRequest {
    let traffic: Vec<_> = update
        .weights()
        .into_iter()
        .map(|(version, weight)| json!({"model_version": version, "weight": weight}))
        .collect();
    let events: Vec<_> = update
        .changes
        .iter()
        .map(|c| {
            json!({
                "event_id": c.event_id,
                "model_version": c.model_version,
                "stage": c.stage,
                "traffic_weight": c.traffic_weight,
                "reason": c.reason,
                "actor": c.actor,
                "remediation_id": c.remediation_id,
                "training_run_id": c.lineage.as_ref().and_then(|l| l.training_run_id.as_deref()),
                "event_time": rfc3339(c.event_time_ms),
            })
        })
        .collect();
    let body = json!({
        "version": 1,
        "model_id": update.model_id,
        "idempotency_key": update.event_id,
        "production": update.production,
        "canary": update.canary.as_ref().map(|c| json!({"model_version": c.model_version, "traffic_weight": c.traffic_weight})),
        "traffic": traffic,
        "events": events,
        "applied_at": rfc3339(update.at_ms),
    });
    let mut request = generic::signed(url, secret, &body, delivery_id);
    request.headers.push((IDEMPOTENCY_HEADER, update.event_id.clone()));
    request
}

#[cfg(test)]
mod tests {
    use serde_json::{json, Value};

    use super::*;
    use crate::payload::fixtures::traffic;
    use crate::payload::{sign, SIGNATURE_HEADER};

    #[test]
    fn whole_state_signed_with_the_event_id_as_idempotency_key() {
        let request = build("http://serving/vigil", "s3cret", &traffic(), 4);
        assert_eq!((request.method, request.url.as_str()), ("POST", "http://serving/vigil"));
        let header = |name: &str| request.headers.iter().find(|(h, _)| *h == name).map(|(_, v)| v.clone());
        assert_eq!(header(SIGNATURE_HEADER), Some(sign(b"s3cret", &request.body)));
        assert_eq!(header(IDEMPOTENCY_HEADER).as_deref(), Some("api:fraud:v2:CANARY:1"));
        assert_eq!(header("x-vigil-delivery").as_deref(), Some("4"));
        let body: Value = serde_json::from_slice(&request.body).unwrap();
        assert_eq!(
            body,
            json!({
                "version": 1,
                "model_id": "fraud",
                "idempotency_key": "api:fraud:v2:CANARY:1",
                "production": "v1",
                "canary": {"model_version": "v2", "traffic_weight": 0.2},
                "traffic": [{"model_version": "v1", "weight": 0.8}, {"model_version": "v2", "weight": 0.2}],
                "events": [{
                    "event_id": "api:fraud:v2:CANARY:1",
                    "model_version": "v2",
                    "stage": "CANARY",
                    "traffic_weight": 0.2,
                    "reason": "registered by ci",
                    "actor": "ci",
                    "remediation_id": null,
                    "training_run_id": "run-7",
                    "event_time": "2026-11-26T21:09:00.000Z"
                }],
                "applied_at": "2026-11-26T21:09:00.000Z"
            })
        );
    }
}
