//! MLflow Model Registry aliases (REST API 2.0): the serving platform reads which version to
//! serve from a registered model's aliases. After every lifecycle change vigil sets the whole
//! state, production first:
//!
//! - `POST <url>/api/2.0/mlflow/registered-models/alias` with `{name, alias, version}` points
//!   the production alias at the production version (MLflow moves an existing alias);
//! - the same for the canary alias and the canary version, or, with no canary (rolled back,
//!   promoted, retired), `DELETE` on the same path with `{name, alias}` (MLflow's own client
//!   sends DELETE parameters as a JSON body).
//!
//! `name` is the model id; `version` is the model version without `version_prefix` (MLflow
//! numbers its versions: with prefix `v`, vigil's `v3` is MLflow's `3`). Aliases carry no traffic
//! share: a platform that splits traffic reads the weight from the signed `platform` webhook.
//! `Authorization: Bearer <token>` when a token is set (Databricks, or an auth proxy).
//!
//! A change whose event recorded lineage with a training run id also tags that model version:
//! `POST <url>/api/2.0/mlflow/model-versions/set-tag` with
//! `{name, version, key: "vigil.training_run_id", value}` (and `vigil.registered_by`), after the
//! aliases.

use serde_json::json;

use super::WebhookRequest;
use crate::TrafficUpdate;

pub const ALIAS_PATH: &str = "/api/2.0/mlflow/registered-models/alias";
pub const SET_TAG_PATH: &str = "/api/2.0/mlflow/model-versions/set-tag";

pub struct Aliases<'a> {
    pub production: &'a str,
    pub canary: &'a str,
    pub version_prefix: &'a str,
}

pub fn build(
    base_url: &str,
    token: &str,
    aliases: &Aliases<'_>,
    update: &TrafficUpdate,
) -> Vec<WebhookRequest> {
    let url = format!("{}{ALIAS_PATH}", base_url.trim_end_matches('/'));
    let version = |v: &str| v.strip_prefix(aliases.version_prefix).unwrap_or(v).to_owned();
    let name = &update.model_id;
    let set_or_delete = |alias: &str, target: Option<&str>| {
        let mut request = match target {
            Some(v) => WebhookRequest::json(
                url.clone(),
                &json!({"name": name, "alias": alias, "version": version(v)}),
            ),
            None => WebhookRequest {
                method: "DELETE",
                ..WebhookRequest::json(url.clone(), &json!({"name": name, "alias": alias}))
            },
        };
        if !token.is_empty() {
            request.headers.push(("authorization", format!("Bearer {token}")));
        }
        request
    };
    let mut requests = vec![
        set_or_delete(aliases.production, update.production.as_deref()),
        set_or_delete(aliases.canary, update.canary.as_ref().map(|c| c.model_version.as_str())),
    ];
    let tag_url = format!("{}{SET_TAG_PATH}", base_url.trim_end_matches('/'));
    for change in &update.changes {
        let Some(run) = change.lineage.as_ref().and_then(|l| l.training_run_id.as_deref()) else {
            continue;
        };
        for (key, value) in [("vigil.training_run_id", run), ("vigil.registered_by", change.actor.as_str())] {
            let mut request = WebhookRequest::json(
                tag_url.clone(),
                &json!({"name": name, "version": version(&change.model_version), "key": key, "value": value}),
            );
            if !token.is_empty() {
                request.headers.push(("authorization", format!("Bearer {token}")));
            }
            requests.push(request);
        }
    }
    requests
}

#[cfg(test)]
mod tests {
    use serde_json::{json, Value};

    use super::*;
    use crate::payload::fixtures::traffic;

    const ALIASES: Aliases<'static> =
        Aliases { production: "production", canary: "canary", version_prefix: "v" };

    fn shape(requests: &[WebhookRequest]) -> Vec<(&str, &str, Value)> {
        requests
            .iter()
            .map(|r| (r.method, r.url.as_str(), serde_json::from_slice(&r.body).unwrap()))
            .collect()
    }

    #[test]
    fn sets_production_then_canary_aliases() {
        let requests = build("http://mlflow:5000/", "", &ALIASES, &traffic());
        assert_eq!(
            shape(&requests),
            vec![
                (
                    "POST",
                    "http://mlflow:5000/api/2.0/mlflow/registered-models/alias",
                    json!({"name": "fraud", "alias": "production", "version": "1"})
                ),
                (
                    "POST",
                    "http://mlflow:5000/api/2.0/mlflow/registered-models/alias",
                    json!({"name": "fraud", "alias": "canary", "version": "2"})
                ),
                (
                    "POST",
                    "http://mlflow:5000/api/2.0/mlflow/model-versions/set-tag",
                    json!({"name": "fraud", "version": "2", "key": "vigil.training_run_id", "value": "run-7"})
                ),
                (
                    "POST",
                    "http://mlflow:5000/api/2.0/mlflow/model-versions/set-tag",
                    json!({"name": "fraud", "version": "2", "key": "vigil.registered_by", "value": "ci"})
                ),
            ]
        );
        assert!(requests.iter().all(|r| !r.headers.iter().any(|(h, _)| *h == "authorization")));
    }

    #[test]
    fn a_rolled_back_canary_loses_its_alias() {
        let update = TrafficUpdate { canary: None, ..traffic() };
        let requests = build("http://mlflow:5000", "T0KEN", &ALIASES, &update);
        assert_eq!(
            shape(&requests)[1],
            (
                "DELETE",
                "http://mlflow:5000/api/2.0/mlflow/registered-models/alias",
                json!({"name": "fraud", "alias": "canary"})
            )
        );
        assert!(requests[1].headers.contains(&("authorization", "Bearer T0KEN".to_owned())));
    }
}
