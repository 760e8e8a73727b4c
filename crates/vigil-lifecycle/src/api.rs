//! The HTTP side of `vigil lifecycle`: the registry API under `/api/v1` (bearer tokens, see
//! [`crate::auth`]), and `/metrics`, `/health/livez`, `/health/readyz` (and `/healthz`) and
//! `/openapi.json` without one. `docs/openapi/lifecycle.json` describes every route; a test
//! checks the router against it.
//!
//! Reads come from the engine the consumer task keeps; changes go to that task as commands, so
//! they are checked, applied and published in one order with the decisions on remediations, and
//! answered once the broker acknowledged them. A request with a missing or unknown token is
//! answered 401 before anything is read or changed; the middleware puts the [`Caller`] in the
//! request's extensions, and each handler takes it and states what it needs with
//! [`Caller::require`] (403 naming the missing role or model otherwise). A new route does the
//! same: `async fn route(caller: Extension<Caller>, ...) { caller.require(Role::Viewer, Some(&model))?; }`.
//! The actor recorded for a change is always the caller's subject.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use axum::body::Bytes;
use axum::extract::{Extension, MatchedPath, Path, RawQuery, Request, State};
use axum::http::{header, HeaderMap, HeaderValue, Method, StatusCode};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post, MethodRouter};
use axum::Router;
use prometheus::{Encoder, TextEncoder};
use serde::{Deserialize, Serialize};
use tokio::sync::{mpsc, oneshot};
use tokio_util::sync::CancellationToken;

use crate::approvals::Pending;
use crate::audit::StoreHealth;
use crate::auth::{Authenticator, Caller, Forbidden, Role};
use crate::engine::{Command, CommandError, CommandErrorKind};
use crate::kafka::{lock, Request as EngineRequest, SharedEngine};
use crate::metrics::LifecycleMetrics;
use crate::view::{event_view, lineage_of, stage_from_name, EventView, ModelView, StateView};
use crate::LifecycleError;

/// The OpenAPI 3 document of this API, served at `/openapi.json`.
pub const OPENAPI: &str = include_str!("../../../docs/openapi/lifecycle.json");

/// Longest wait for the consumer task to carry out a command.
const COMMAND_TIMEOUT: Duration = Duration::from_secs(30);

/// Whether the process can serve: the replay is done and the consumer runs, and ClickHouse
/// answered the audit's last request (when the audit is on).
#[derive(Clone, Default)]
pub struct Readiness {
    pub running: Arc<AtomicBool>,
    pub store: Option<StoreHealth>,
}

impl Readiness {
    pub fn is_ready(&self) -> bool {
        self.running.load(Ordering::Relaxed) && self.store.as_ref().is_none_or(StoreHealth::is_up)
    }
}

#[derive(Clone)]
pub struct ApiState {
    pub engine: SharedEngine,
    pub commands: mpsc::Sender<EngineRequest>,
    /// `None` turns the `/api/v1` routes off (the metrics and health stay).
    pub auth: Option<Arc<Authenticator>>,
    pub metrics: LifecycleMetrics,
    pub registry: prometheus::Registry,
    pub readiness: Readiness,
    /// ClickHouse for the KPIs' times to detect and remediate; `None` leaves them empty.
    pub store: Option<vigil_store::StoreConfig>,
    /// Answers to a remediation later than this are late approvals (KPIs).
    pub approval_deadline_ms: i64,
}

type Route = (Method, &'static str, MethodRouter<ApiState>);

/// The registry API; every route needs a bearer token, and each handler checks the caller's role
/// and model scope.
fn api_routes() -> Vec<Route> {
    vec![
        (Method::GET, "/api/v1/models", get(list_models)),
        (Method::GET, "/api/v1/models/{model}", get(get_model)),
        (Method::GET, "/api/v1/models/{model}/history", get(history)),
        (Method::POST, "/api/v1/models/{model}/versions", post(register)),
        (Method::POST, "/api/v1/models/{model}/versions/{version}/rollback", post(rollback)),
        (Method::GET, "/api/v1/models/{model}/versions/{version}/analysis", get(crate::provider::analysis)),
        (Method::GET, "/api/v1/approvals", get(list_approvals)),
        (Method::POST, "/api/v1/approvals/{id}/approve", post(approve)),
        (Method::POST, "/api/v1/approvals/{id}/reject", post(reject)),
        (Method::GET, "/api/v1/kpis", get(kpis)),
    ]
}

/// Served without a token.
fn public_routes() -> Vec<Route> {
    vec![
        (Method::GET, "/metrics", get(metrics)),
        (Method::GET, "/healthz", get(live)),
        (Method::GET, "/health/livez", get(live)),
        (Method::GET, "/health/readyz", get(ready)),
        (Method::GET, "/openapi.json", get(openapi)),
    ]
}

/// Every (method, path) the router serves, API routes first.
pub fn routes() -> Vec<(Method, &'static str)> {
    api_routes().into_iter().chain(public_routes()).map(|(method, path, _)| (method, path)).collect()
}

pub fn router(state: ApiState) -> Router {
    let mut api = Router::new();
    if state.auth.is_some() {
        for (_, path, handler) in api_routes() {
            api = api.route(path, handler);
        }
        api = api.route_layer(middleware::from_fn_with_state(state.clone(), authorize));
    }
    let mut public = Router::new();
    for (_, path, handler) in public_routes() {
        public = public.route(path, handler);
    }
    api.merge(public).layer(middleware::from_fn_with_state(state.clone(), count)).with_state(state)
}

/// Binds `addr` now (so a taken port fails the start) and serves until `shutdown`.
pub async fn serve(
    addr: SocketAddr,
    router: Router,
    shutdown: CancellationToken,
) -> Result<tokio::task::JoinHandle<()>, LifecycleError> {
    let listener = tokio::net::TcpListener::bind(addr)
        .await
        .map_err(|source| LifecycleError::Http { addr: addr.to_string(), source })?;
    tracing::info!(addr = %addr, "serving the lifecycle api, /metrics and /health");
    Ok(tokio::spawn(async move {
        let server = axum::serve(listener, router).with_graceful_shutdown(shutdown.cancelled_owned());
        if let Err(error) = server.await {
            tracing::error!(%error, "http server stopped");
        }
    }))
}

/// `Authorization: Bearer <token>`: a known token's hash (compared in constant time) or a valid
/// OIDC JWT names the [`Caller`], put in the request's extensions; anything else is 401.
async fn authorize(State(state): State<ApiState>, mut request: Request, next: Next) -> Response {
    let given = request
        .headers()
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .unwrap_or_default();
    let now_s = crate::now_ms() / 1000;
    let Some(caller) = state.auth.as_ref().and_then(|auth| auth.authenticate(given.trim(), now_s)) else {
        state.metrics.auth_failures.with_label_values(&["unauthenticated"]).inc();
        let mut response = error(
            StatusCode::UNAUTHORIZED,
            "missing or unknown bearer token (Authorization: Bearer <token>; see lifecycle.api.tokens)",
        );
        response
            .headers_mut()
            .insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer realm=\"vigil\""));
        return response;
    };
    if !state.readiness.running.load(Ordering::Relaxed) {
        return error(StatusCode::SERVICE_UNAVAILABLE, "the lifecycle log is still being replayed");
    }
    request.extensions_mut().insert(caller);
    next.run(request).await
}

impl IntoResponse for Forbidden {
    fn into_response(self) -> Response {
        error(StatusCode::FORBIDDEN, &self.0)
    }
}

/// A refusal a handler answers with: status and message.
pub struct Refused(pub StatusCode, pub String);

impl IntoResponse for Refused {
    fn into_response(self) -> Response {
        error(self.0, &self.1)
    }
}

/// 403 when `caller` lacks `role` or `model`, counted.
pub fn check(state: &ApiState, caller: &Caller, role: Role, model: Option<&str>) -> Result<(), Refused> {
    caller.require(role, model).map_err(|Forbidden(why)| {
        state.metrics.auth_failures.with_label_values(&["forbidden"]).inc();
        Refused(StatusCode::FORBIDDEN, why)
    })
}

/// The actor of a change: the caller's subject. A body may repeat it, never name someone else.
fn actor_of(caller: &Caller, claimed: Option<&str>) -> Result<String, Refused> {
    match claimed {
        Some(name) if name != caller.subject => Err(Refused(
            StatusCode::BAD_REQUEST,
            format!(
                "actor: the actor is the token's subject ({:?}), not {name:?}; leave the field out",
                caller.subject
            ),
        )),
        _ => Ok(caller.subject.clone()),
    }
}

/// Counts every request by route template, method and status.
async fn count(State(state): State<ApiState>, request: Request, next: Next) -> Response {
    let route = request.extensions().get::<MatchedPath>().map_or("unmatched", |p| {
        // Templates come from the router, so the label set is bounded.
        routes().into_iter().map(|(_, path)| path).find(|path| *path == p.as_str()).unwrap_or("unmatched")
    });
    let method = request.method().clone();
    let response = next.run(request).await;
    state.metrics.api_requests.with_label_values(&[route, method.as_str(), response.status().as_str()]).inc();
    response
}

fn json<T: Serialize>(status: StatusCode, body: &T) -> Response {
    match serde_json::to_vec(body) {
        Ok(bytes) => (status, [(header::CONTENT_TYPE, "application/json")], bytes).into_response(),
        Err(e) => error(StatusCode::INTERNAL_SERVER_ERROR, &e.to_string()),
    }
}

#[derive(Serialize, Deserialize)]
pub struct ErrorBody {
    pub error: String,
}

fn error(status: StatusCode, message: &str) -> Response {
    json(status, &ErrorBody { error: message.to_owned() })
}

/// The body as `T`, refusing unknown fields; the answer to give otherwise (400 with serde's
/// message, 415 for another content type).
fn body<T: for<'de> Deserialize<'de>>(headers: &HeaderMap, bytes: &Bytes) -> Result<T, (StatusCode, String)> {
    let json_type = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_none_or(|v| v.starts_with("application/json"));
    if !json_type {
        return Err((StatusCode::UNSUPPORTED_MEDIA_TYPE, "send the body as application/json".into()));
    }
    serde_json::from_slice(bytes).map_err(|e| (StatusCode::BAD_REQUEST, format!("invalid request body: {e}")))
}

async fn list_models(State(state): State<ApiState>, Extension(caller): Extension<Caller>) -> Response {
    if let Err(refused) = check(&state, &caller, Role::Viewer, None) {
        return refused.into_response();
    }
    let mut view = StateView::of(&lock(&state.engine).registry);
    view.models.retain(|m| caller.covers(&m.model_id));
    json(StatusCode::OK, &view)
}

async fn get_model(
    State(state): State<ApiState>,
    Extension(caller): Extension<Caller>,
    Path(model): Path<String>,
) -> Response {
    if let Err(refused) = check(&state, &caller, Role::Viewer, Some(&model)) {
        return refused.into_response();
    }
    let engine = lock(&state.engine);
    match engine.registry.model(&model) {
        Some(m) => json(StatusCode::OK, &ModelView::of(&model, m)),
        None => error(StatusCode::NOT_FOUND, &format!("no model {model:?}")),
    }
}

/// A model's events, oldest first.
#[derive(Serialize, Deserialize)]
pub struct History {
    pub model_id: String,
    pub events: Vec<EventView>,
}

async fn history(
    State(state): State<ApiState>,
    Extension(caller): Extension<Caller>,
    Path(model): Path<String>,
) -> Response {
    if let Err(refused) = check(&state, &caller, Role::Viewer, Some(&model)) {
        return refused.into_response();
    }
    let engine = lock(&state.engine);
    match engine.registry.model(&model) {
        Some(m) => json(
            StatusCode::OK,
            &History { model_id: model.clone(), events: m.history.iter().map(event_view).collect() },
        ),
        None => error(StatusCode::NOT_FOUND, &format!("no model {model:?}")),
    }
}

#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RegisterBody {
    pub version: String,
    /// `candidate`, `canary` or `production`.
    pub stage: String,
    #[serde(default)]
    pub traffic_weight: Option<f64>,
    /// Deprecated: the actor is the token's subject; when given it must be that subject.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub actor: Option<String>,
    #[serde(default)]
    pub reason: Option<String>,
    /// Where the version came from (training run, datasets, code, artifact, parent, team, tags).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub lineage: Option<vigil_alerts::LineageView>,
}

/// Why: every change through the API records it, with the caller's subject as actor.
#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DecisionBody {
    /// Deprecated: the actor is the token's subject; when given it must be that subject.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub actor: Option<String>,
    pub reason: String,
}

/// The events a change published, in order.
#[derive(Serialize, Deserialize)]
pub struct Published {
    pub events: Vec<EventView>,
}

async fn register(
    State(state): State<ApiState>,
    Extension(caller): Extension<Caller>,
    Path(model): Path<String>,
    headers: HeaderMap,
    bytes: Bytes,
) -> Response {
    if let Err(refused) = check(&state, &caller, Role::Operator, Some(&model)) {
        return refused.into_response();
    }
    let request: RegisterBody = match body(&headers, &bytes) {
        Ok(r) => r,
        Err((status, message)) => return error(status, &message),
    };
    let actor = match actor_of(&caller, request.actor.as_deref()) {
        Ok(actor) => actor,
        Err(refused) => return refused.into_response(),
    };
    let lineage = request.lineage.as_ref().map(|l| Box::new(lineage_of(l)));
    if let Some(Err(invalid)) = lineage.as_deref().map(vigil_events::Lineage::validate) {
        return error(StatusCode::BAD_REQUEST, &format!("invalid lineage: {invalid}"));
    }
    let Some(stage) = stage_from_name(&request.stage) else {
        return error(
            StatusCode::BAD_REQUEST,
            &format!("stage {:?}: must be candidate, canary or production", request.stage),
        );
    };
    let command = Command::Register {
        model_id: model,
        version: request.version,
        stage,
        traffic_weight: request.traffic_weight,
        actor,
        reason: request.reason,
        lineage,
    };
    run(&state, command, StatusCode::CREATED).await
}

async fn rollback(
    State(state): State<ApiState>,
    Extension(caller): Extension<Caller>,
    Path((model_id, version)): Path<(String, String)>,
    headers: HeaderMap,
    bytes: Bytes,
) -> Response {
    if let Err(refused) = check(&state, &caller, Role::Operator, Some(&model_id)) {
        return refused.into_response();
    }
    decision(&state, &caller, &headers, &bytes, |actor, reason| Command::Rollback {
        model_id,
        version,
        actor,
        reason,
    })
    .await
}

/// A command from a [`DecisionBody`] (actor, reason), carried out.
async fn decision(
    state: &ApiState,
    caller: &Caller,
    headers: &HeaderMap,
    bytes: &Bytes,
    command: impl FnOnce(String, String) -> Command,
) -> Response {
    match body::<DecisionBody>(headers, bytes) {
        Ok(d) => match actor_of(caller, d.actor.as_deref()) {
            Ok(actor) => run(state, command(actor, d.reason), StatusCode::OK).await,
            Err(refused) => refused.into_response(),
        },
        Err((status, message)) => error(status, &message),
    }
}

#[derive(Serialize, Deserialize)]
pub struct Approvals {
    pub approvals: Vec<Pending>,
}

async fn list_approvals(
    State(state): State<ApiState>,
    Extension(caller): Extension<Caller>,
    RawQuery(query): RawQuery,
) -> Response {
    if let Err(refused) = check(&state, &caller, Role::Viewer, None) {
        return refused.into_response();
    }
    let mut model = None;
    let mut version = None;
    for pair in query.as_deref().unwrap_or_default().split('&') {
        match pair.split_once('=') {
            Some(("model", v)) => model = Some(percent_decode(v)),
            Some(("version", v)) => version = Some(percent_decode(v)),
            _ => {}
        }
    }
    let engine = lock(&state.engine);
    let approvals = engine
        .approvals
        .list()
        .filter(|p| model.as_deref().is_none_or(|m| m == p.model_id))
        .filter(|p| version.as_deref().is_none_or(|v| v == p.model_version))
        .filter(|p| caller.covers(&p.model_id))
        .cloned()
        .collect();
    json(StatusCode::OK, &Approvals { approvals })
}

/// Approving and rejecting need the approver role on the proposal's model.
fn check_approver(state: &ApiState, caller: &Caller, id: &str) -> Result<(), Refused> {
    let model = lock(&state.engine).approvals.get(id).map(|p| p.model_id.clone());
    check(state, caller, Role::Approver, model.as_deref())
}

async fn approve(
    State(state): State<ApiState>,
    Extension(caller): Extension<Caller>,
    Path(id): Path<String>,
    headers: HeaderMap,
    bytes: Bytes,
) -> Response {
    if let Err(refused) = check_approver(&state, &caller, &id) {
        return refused.into_response();
    }
    decision(&state, &caller, &headers, &bytes, |actor, reason| Command::Approve { id, actor, reason }).await
}

async fn reject(
    State(state): State<ApiState>,
    Extension(caller): Extension<Caller>,
    Path(id): Path<String>,
    headers: HeaderMap,
    bytes: Bytes,
) -> Response {
    if let Err(refused) = check_approver(&state, &caller, &id) {
        return refused.into_response();
    }
    decision(&state, &caller, &headers, &bytes, |actor, reason| Command::Reject { id, actor, reason }).await
}

/// Hands a command to the consumer task and answers with the events it published.
async fn run(state: &ApiState, command: Command, success: StatusCode) -> Response {
    let (reply, answer) = oneshot::channel();
    let unavailable = || error(StatusCode::SERVICE_UNAVAILABLE, "the lifecycle consumer is not running");
    if state.commands.send(EngineRequest { command, reply }).await.is_err() {
        return unavailable();
    }
    match tokio::time::timeout(COMMAND_TIMEOUT, answer).await {
        Ok(Ok(Ok(events))) => json(success, &Published { events: events.iter().map(event_view).collect() }),
        Ok(Ok(Err(refused))) => {
            if refused.kind == CommandErrorKind::Forbidden {
                state.metrics.auth_failures.with_label_values(&["forbidden"]).inc();
            }
            command_error(&refused)
        }
        Ok(Err(_)) | Err(_) => unavailable(),
    }
}

fn command_error(refused: &CommandError) -> Response {
    let status = match refused.kind {
        CommandErrorKind::Invalid => StatusCode::BAD_REQUEST,
        CommandErrorKind::NotFound => StatusCode::NOT_FOUND,
        CommandErrorKind::Conflict => StatusCode::CONFLICT,
        CommandErrorKind::Forbidden => StatusCode::FORBIDDEN,
        CommandErrorKind::Unavailable => StatusCode::SERVICE_UNAVAILABLE,
    };
    error(status, &refused.message)
}

async fn metrics(State(state): State<ApiState>) -> Response {
    state.metrics.pending_approvals.set(lock(&state.engine).approvals.len() as i64);
    let mut body = Vec::new();
    match TextEncoder::new().encode(&state.registry.gather(), &mut body) {
        Ok(()) => (StatusCode::OK, [(header::CONTENT_TYPE, prometheus::TEXT_FORMAT)], body).into_response(),
        Err(e) => error(StatusCode::INTERNAL_SERVER_ERROR, &e.to_string()),
    }
}

async fn live() -> &'static str {
    "ok\n"
}

async fn ready(State(state): State<ApiState>) -> (StatusCode, &'static str) {
    if state.readiness.is_ready() {
        (StatusCode::OK, "ready\n")
    } else {
        (StatusCode::SERVICE_UNAVAILABLE, "not ready\n")
    }
}

async fn openapi() -> Response {
    (StatusCode::OK, [(header::CONTENT_TYPE, "application/json")], OPENAPI).into_response()
}

/// `?name=value&...` as pairs, values decoded.
fn query_pairs(query: Option<&str>) -> Vec<(String, String)> {
    query
        .unwrap_or_default()
        .split('&')
        .filter_map(|pair| pair.split_once('='))
        .map(|(k, v)| (k.to_owned(), percent_decode(v)))
        .collect()
}

/// The lifecycle KPIs of `[from_ms, to_ms)` (default: the last 30 days), of one model
/// (`?model=`) or of every model, which needs a token scoped to all of them.
async fn kpis(
    State(state): State<ApiState>,
    Extension(caller): Extension<Caller>,
    RawQuery(query): RawQuery,
) -> Response {
    let mut model = None;
    let now = crate::now_ms();
    let (mut from_ms, mut to_ms) = (None, now);
    for (key, value) in query_pairs(query.as_deref()) {
        let number = || {
            value.parse::<i64>().map_err(|_| format!("{key}: {value:?} is not milliseconds since the epoch"))
        };
        match key.as_str() {
            "model" => model = Some(value.clone()),
            "from_ms" => match number() {
                Ok(v) => from_ms = Some(v),
                Err(e) => return error(StatusCode::BAD_REQUEST, &e),
            },
            "to_ms" => match number() {
                Ok(v) => to_ms = v,
                Err(e) => return error(StatusCode::BAD_REQUEST, &e),
            },
            _ => {}
        }
    }
    let from_ms = from_ms.unwrap_or(to_ms - 30 * 86_400_000);
    if from_ms >= to_ms || to_ms - from_ms > crate::kpi::MAX_PERIOD_DAYS * 86_400_000 {
        return error(
            StatusCode::BAD_REQUEST,
            &format!("from_ms must be before to_ms, at most {} days", crate::kpi::MAX_PERIOD_DAYS),
        );
    }
    if let Err(refused) = check(&state, &caller, Role::Viewer, model.as_deref()) {
        return refused.into_response();
    }
    let registry = lock(&state.engine).registry.clone();
    if model.is_none() {
        if let Some((outside, _)) = registry.models().find(|(m, _)| !caller.covers(m)) {
            state.metrics.auth_failures.with_label_values(&["forbidden"]).inc();
            return error(
                StatusCode::FORBIDDEN,
                &format!(
                    "subject {:?} is not scoped to model {outside:?}: ask for ?model= within {}",
                    caller.subject,
                    caller.models.join(", ")
                ),
            );
        }
    }
    match crate::kpi::store::report(
        &registry,
        state.store.as_ref(),
        from_ms,
        to_ms,
        model.as_deref(),
        state.approval_deadline_ms,
    )
    .await
    {
        Ok(report) => json(StatusCode::OK, &report),
        Err(e) => error(StatusCode::SERVICE_UNAVAILABLE, &e.to_string()),
    }
}

/// `%XX` escapes and `+` of a query value.
fn percent_decode(text: &str) -> String {
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'+' => out.push(b' '),
            b'%' if i + 2 < bytes.len() => {
                let hex = |b: u8| (b as char).to_digit(16);
                match (hex(bytes[i + 1]), hex(bytes[i + 2])) {
                    (Some(high), Some(low)) => {
                        out.push((high * 16 + low) as u8);
                        i += 2;
                    }
                    _ => out.push(b'%'),
                }
            }
            byte => out.push(byte),
        }
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_route_is_in_the_openapi_document_and_nothing_else() {
        let doc: serde_json::Value = serde_json::from_str(OPENAPI).expect("the document is JSON");
        assert!(doc["openapi"].as_str().unwrap().starts_with("3."), "OpenAPI 3");
        let paths = doc["paths"].as_object().unwrap();
        let api: Vec<_> = api_routes().into_iter().map(|(m, p, _)| (m, p)).collect();
        for (method, path) in routes() {
            let operation =
                &paths.get(path).unwrap_or_else(|| panic!("{path} is not in docs/openapi/lifecycle.json"))
                    [method.as_str().to_lowercase()];
            assert!(operation.is_object(), "{method} {path} is not in docs/openapi/lifecycle.json");
            let protected = api.contains(&(method.clone(), path));
            let responses = operation["responses"].as_object().unwrap();
            assert_eq!(
                responses.contains_key("401"),
                protected,
                "{method} {path}: 401 documented exactly for the token-protected routes"
            );
            assert_eq!(
                operation.get("security") == Some(&serde_json::json!([])),
                !protected,
                "{method} {path}: public routes say security: []"
            );
        }
        let served = routes();
        for (path, item) in paths {
            for method in item.as_object().unwrap().keys().filter(|k| *k != "parameters") {
                let method = Method::from_bytes(method.to_uppercase().as_bytes()).unwrap();
                assert!(
                    served.contains(&(method.clone(), path.as_str())),
                    "{method} {path} is documented but not served"
                );
            }
        }
    }

    #[test]
    fn query_values_are_decoded() {
        assert_eq!(percent_decode("fraud%2Fde"), "fraud/de");
        assert_eq!(percent_decode("a+b"), "a b");
        assert_eq!(percent_decode("100%"), "100%");
    }
}
