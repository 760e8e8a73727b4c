//! Retraining requests, in each training pipeline's own API:
//! - Airflow (stable REST API): `POST <url>/api/v1/dags/<dag_id>/dagRuns` with
//!   `{"dag_run_id": <key>, "conf": <request>, "note": ...}`; a second trigger with the same
//!   run id is answered 409, which counts as done.
//! - Argo Workflows: `POST <url>/api/v1/workflows/<namespace>/submit` with
//!   `{"namespace", "resourceKind": "WorkflowTemplate", "resourceName": <template>,
//!   "submitOptions": {"name": <key>, "parameters": ["k=v", ...], "labels": ...}}`; the workflow
//!   name is the key, so a second submit is answered 409 (already exists).
//! - Kubeflow Pipelines (v2beta1): `POST <url>/apis/v2beta1/runs` with `display_name` (the key),
//!   `pipeline_version_reference`, `runtime_config.parameters` and `experiment_id`. That API
//!   takes no client-chosen run id: the outbox's dedup is what keeps it to one run.
//! - Signed webhook: the request as JSON, `X-Vigil-Signature`, `Idempotency-Key`.

use serde_json::{json, Value};

use super::{generic, WebhookRequest};
use crate::alert::rfc3339;
use crate::config::ReceiverKind;
use crate::RetrainRequest;

pub fn build(receiver: &ReceiverKind, request: &RetrainRequest, delivery_id: u64) -> Option<WebhookRequest> {
    let conf = serde_json::to_value(request).unwrap_or(Value::Null);
    let base = |url: &str| url.trim_end_matches('/').to_owned();
    let segment = super::encode_path_segment;
    Some(match receiver {
        ReceiverKind::Airflow { url, dag_id, token, username, password } => {
            let body = json!({
                "dag_run_id": request.idempotency_key,
                "conf": conf,
                "note": format!("vigil: retrain {} {} after remediation {}", request.model_id, request.model_version, request.remediation_id),
            });
            let mut r =
                WebhookRequest::json(format!("{}/api/v1/dags/{}/dagRuns", base(url), segment(dag_id)), &body);
            if !token.is_empty() {
                r.headers.push(("authorization", format!("Bearer {token}")));
            } else if !username.is_empty() {
                r.headers.push((
                    "authorization",
                    format!("Basic {}", base64(format!("{username}:{password}").as_bytes())),
                ));
            }
            r.conflict_is_done = true;
            r
        }
        ReceiverKind::ArgoWorkflows { url, namespace, workflow_template, token } => {
            let parameters = [
                ("model_id", request.model_id.clone()),
                ("model_version", request.model_version.clone()),
                ("remediation_id", request.remediation_id.clone()),
                ("policy", request.policy.clone()),
                ("request", conf.to_string()),
            ]
            .iter()
            .map(|(k, v)| format!("{k}={v}"))
            .collect::<Vec<_>>();
            let body = json!({
                "namespace": namespace,
                "resourceKind": "WorkflowTemplate",
                "resourceName": workflow_template,
                "submitOptions": {
                    "name": request.idempotency_key,
                    "parameters": parameters,
                    "labels": format!("app.kubernetes.io/managed-by=vigil,vigil.dev/remediation={}", label(&request.remediation_id)),
                },
            });
            let mut r = WebhookRequest::json(
                format!("{}/api/v1/workflows/{}/submit", base(url), segment(namespace)),
                &body,
            );
            if !token.is_empty() {
                r.headers.push(("authorization", format!("Bearer {token}")));
            }
            r.conflict_is_done = true;
            r
        }
        ReceiverKind::Kubeflow { url, pipeline_id, pipeline_version_id, experiment_id, token } => {
            let mut body = json!({
                "display_name": request.idempotency_key,
                "description": format!("vigil: retrain {} {} after remediation {} (policy {}, window from {})",
                    request.model_id, request.model_version, request.remediation_id, request.policy, rfc3339(request.window_start_ms)),
                "pipeline_version_reference": {"pipeline_id": pipeline_id, "pipeline_version_id": pipeline_version_id},
                "runtime_config": {"parameters": {
                    "model_id": request.model_id,
                    "model_version": request.model_version,
                    "remediation_id": request.remediation_id,
                    "policy": request.policy,
                    "request": conf.to_string(),
                }},
            });
            if !experiment_id.is_empty() {
                body["experiment_id"] = json!(experiment_id);
            }
            let mut r = WebhookRequest::json(format!("{}/apis/v2beta1/runs", base(url)), &body);
            if !token.is_empty() {
                r.headers.push(("authorization", format!("Bearer {token}")));
            }
            r
        }
        ReceiverKind::RetrainWebhook { url, secret } => {
            let body = json!({"version": 1, "type": "retrain", "request": conf});
            let mut r = generic::signed(url, secret, &body, delivery_id);
            r.headers.push((super::platform::IDEMPOTENCY_HEADER, request.idempotency_key.clone()));
            r
        }
        _ => return None,
    })
}

/// A Kubernetes label value: at most 63 of `[A-Za-z0-9._-]`.
fn label(text: &str) -> String {
    text.chars().filter(|c| c.is_ascii_alphanumeric() || "-_.".contains(*c)).take(63).collect()
}

/// Standard base64 with padding (RFC 4648), for basic auth.
fn base64(bytes: &[u8]) -> String {
    const A: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = String::with_capacity(bytes.len().div_ceil(3) * 4);
    for chunk in bytes.chunks(3) {
        let n = chunk.iter().enumerate().fold(0u32, |acc, (i, b)| acc | (u32::from(*b) << (16 - 8 * i)));
        for i in 0..4 {
            if i <= chunk.len() {
                out.push(A[((n >> (18 - 6 * i)) & 63) as usize] as char);
            } else {
                out.push('=');
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    pub fn request() -> RetrainRequest {
        RetrainRequest {
            idempotency_key: crate::retrain_key("rem-1"),
            remediation_id: "rem-1".into(),
            model_id: "fraud".into(),
            model_version: "v2".into(),
            policy: "drift".into(),
            severity: "warning".into(),
            window_start_ms: 0,
            window_end_ms: 60_000,
            evidence: vec![],
            lineage: None,
            requested_at_ms: 61_000,
        }
    }

    #[test]
    fn basic_auth_is_base64() {
        assert_eq!(base64(b"Aladdin:open sesame"), "QWxhZGRpbjpvcGVuIHNlc2FtZQ==");
        assert_eq!(base64(b"ab"), "YWI=");
    }

    #[test]
    fn each_pipeline_gets_its_shape_named_by_the_key() {
        let r = request();
        assert!(r.idempotency_key.starts_with("vigil-retrain-") && r.idempotency_key.len() == 30);
        let airflow = ReceiverKind::Airflow {
            url: "http://af/".into(),
            dag_id: "retrain fraud".into(),
            token: String::new(),
            username: "u".into(),
            password: "p".into(),
        };
        let a = build(&airflow, &r, 1).unwrap();
        assert_eq!(a.url, "http://af/api/v1/dags/retrain%20fraud/dagRuns");
        let body: Value = serde_json::from_slice(&a.body).unwrap();
        assert_eq!(
            (body["dag_run_id"].as_str(), body["conf"]["model_id"].as_str()),
            (Some(r.idempotency_key.as_str()), Some("fraud"))
        );
        assert!(a.conflict_is_done && a.headers.contains(&("authorization", "Basic dTpw".into())));

        let argo = ReceiverKind::ArgoWorkflows {
            url: "http://argo".into(),
            namespace: "ml".into(),
            workflow_template: "retrain".into(),
            token: "t".into(),
        };
        let b = build(&argo, &r, 1).unwrap();
        assert_eq!(b.url, "http://argo/api/v1/workflows/ml/submit");
        let body: Value = serde_json::from_slice(&b.body).unwrap();
        assert_eq!(body["resourceKind"], "WorkflowTemplate");
        assert_eq!(body["submitOptions"]["name"], r.idempotency_key.as_str());
        assert_eq!(body["submitOptions"]["parameters"][0], "model_id=fraud");

        let kfp = ReceiverKind::Kubeflow {
            url: "http://kfp".into(),
            pipeline_id: "p".into(),
            pipeline_version_id: "pv".into(),
            experiment_id: "e".into(),
            token: String::new(),
        };
        let c = build(&kfp, &r, 1).unwrap();
        assert_eq!(c.url, "http://kfp/apis/v2beta1/runs");
        let body: Value = serde_json::from_slice(&c.body).unwrap();
        assert_eq!(body["pipeline_version_reference"]["pipeline_version_id"], "pv");
        assert_eq!((body["experiment_id"].as_str(), c.conflict_is_done), (Some("e"), false));
    }
}
