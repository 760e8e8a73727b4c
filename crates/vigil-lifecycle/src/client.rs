//! A client of the lifecycle HTTP API, for `vigil lifecycle approve`, `reject`, `rollback` and
//! `approvals`: people's decisions go through the running consumer (which holds the pending
//! approvals and publishes in one order), never straight to the log. The actor is the token's
//! subject; an `actor` given here is only checked against it.

use std::time::Duration;

use serde::de::DeserializeOwned;
use serde::Serialize;
use vigil_alerts::payload::encode_path_segment as segment;

use crate::api::{Approvals, DecisionBody, ErrorBody, Published};
use crate::approvals::Pending;
use crate::view::EventView;
use crate::LifecycleError;

pub struct Client {
    base: String,
    token: String,
    http: reqwest::Client,
}

impl Client {
    /// `base` is the API's root, e.g. `http://127.0.0.1:9465`.
    pub fn new(base: &str, token: &str) -> Result<Self, LifecycleError> {
        let http = reqwest::Client::builder()
            .timeout(Duration::from_secs(60))
            .user_agent(concat!("vigil/", env!("CARGO_PKG_VERSION")))
            .build()
            .map_err(|source| LifecycleError::ApiUnreachable { url: base.to_owned(), source })?;
        Ok(Self { base: base.trim_end_matches('/').to_owned(), token: token.to_owned(), http })
    }

    pub async fn approvals(
        &self,
        model: Option<&str>,
        version: Option<&str>,
    ) -> Result<Vec<Pending>, LifecycleError> {
        let mut query = Vec::new();
        if let Some(m) = model {
            query.push(format!("model={}", segment(m)));
        }
        if let Some(v) = version {
            query.push(format!("version={}", segment(v)));
        }
        let path = format!("/api/v1/approvals?{}", query.join("&"));
        let answer: Approvals = self.call(reqwest::Method::GET, &path, None::<&()>).await?;
        Ok(answer.approvals)
    }

    pub async fn approve(
        &self,
        id: &str,
        actor: Option<&str>,
        reason: &str,
    ) -> Result<Vec<EventView>, LifecycleError> {
        self.answer(id, "approve", actor, reason).await
    }

    pub async fn reject(
        &self,
        id: &str,
        actor: Option<&str>,
        reason: &str,
    ) -> Result<Vec<EventView>, LifecycleError> {
        self.answer(id, "reject", actor, reason).await
    }

    async fn answer(
        &self,
        id: &str,
        verb: &str,
        actor: Option<&str>,
        reason: &str,
    ) -> Result<Vec<EventView>, LifecycleError> {
        let path = format!("/api/v1/approvals/{}/{verb}", segment(id));
        self.decide(&path, actor, reason).await
    }

    pub async fn rollback(
        &self,
        model: &str,
        version: &str,
        actor: Option<&str>,
        reason: &str,
    ) -> Result<Vec<EventView>, LifecycleError> {
        let path = format!("/api/v1/models/{}/versions/{}/rollback", segment(model), segment(version));
        self.decide(&path, actor, reason).await
    }

    async fn decide(
        &self,
        path: &str,
        actor: Option<&str>,
        reason: &str,
    ) -> Result<Vec<EventView>, LifecycleError> {
        let body = DecisionBody { actor: actor.map(str::to_owned), reason: reason.to_owned() };
        let answer: Published = self.call(reqwest::Method::POST, path, Some(&body)).await?;
        Ok(answer.events)
    }

    async fn call<B: Serialize, T: DeserializeOwned>(
        &self,
        method: reqwest::Method,
        path: &str,
        body: Option<&B>,
    ) -> Result<T, LifecycleError> {
        let url = format!("{}{path}", self.base);
        let unreachable = |source| LifecycleError::ApiUnreachable { url: url.clone(), source };
        let mut request = self.http.request(method, &url).bearer_auth(&self.token);
        if let Some(body) = body {
            request = request
                .header(reqwest::header::CONTENT_TYPE, "application/json")
                .body(serde_json::to_vec(body).unwrap_or_default());
        }
        let response = request.send().await.map_err(unreachable)?;
        let status = response.status();
        let bytes = response.bytes().await.map_err(unreachable)?;
        if !status.is_success() {
            let message = serde_json::from_slice::<ErrorBody>(&bytes)
                .map(|e| e.error)
                .unwrap_or_else(|_| String::from_utf8_lossy(&bytes).into_owned());
            return Err(LifecycleError::Api { status: status.as_u16(), message });
        }
        serde_json::from_slice(&bytes).map_err(|e| LifecycleError::Api {
            status: status.as_u16(),
            message: format!("unexpected answer: {e}"),
        })
    }
}
