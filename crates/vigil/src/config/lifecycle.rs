//! The `[lifecycle]` section: the lifecycle consumer's group, replay bound and per-model policy,
//! its HTTP API (`[lifecycle.api]`), audit, alert resolving and serving-platform webhooks
//! (`[[lifecycle.platform]]`). `[alerts]` is `vigil_alerts::AlertsConfig` as it is.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::Duration;

use serde::Deserialize;
use vigil_alerts::{AlertsConfig, ReceiverConfig};
use vigil_lifecycle::auth::{Authenticator, Role, TokenEntry};
use vigil_lifecycle::jwt::{JwtSettings, JwtVerifier};
use vigil_lifecycle::{LifecycleError, LifecyclePolicy, ModelPolicy};

/// `defaults` and `models` are spelled out rather than a flattened `LifecyclePolicy`, because
/// `#[serde(flatten)]` would switch off `deny_unknown_fields`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct LifecycleSection {
    /// Consumer group for remediations; the lifecycle log itself is always read whole.
    pub group_id: String,
    /// Longest time the start-up replay of the lifecycle log may take.
    pub replay_timeout_ms: u64,
    /// For every model not listed in `models`.
    pub defaults: ModelPolicy,
    /// A model's entry replaces `defaults` whole.
    pub models: BTreeMap<String, ModelPolicy>,
    /// Where pending approvals are kept (`approvals.json`); created with the first one.
    pub state_dir: PathBuf,
    /// Write every lifecycle event and webhook delivery attempt to ClickHouse (`[clickhouse]`).
    pub audit: bool,
    /// Audit rows waiting for ClickHouse; more are dropped (counted), never waited for.
    pub audit_queue: usize,
    /// How often open alerts are checked against the monitor's `policy_checks` and resolved when
    /// healthy again; 0 never resolves them. Needs `audit` (ClickHouse).
    pub resolve_interval_ms: u64,
    /// How often canaries whose policy has `canary.analysis = true` are judged on the monitor's
    /// stored windows; 0 never. Needs `audit` (ClickHouse).
    pub canary_interval_ms: u64,
    /// How often the KPI gauges (`vigil_lifecycle_kpi_*` on `/metrics`) are recomputed; 0 never.
    pub kpi_interval_ms: u64,
    /// The trailing period the KPI gauges cover, in days.
    pub kpi_period_days: u32,
    /// Answers to a remediation later than this count as late approvals in the KPIs.
    pub approval_deadline_ms: u64,
    pub api: ApiSection,
    /// Serving-platform webhooks (`kind = "platform"` or `"mlflow"`), told after every change.
    pub platform: Vec<ReceiverConfig>,
    /// Training pipelines a `retrain` remediation reaches (`kind = "airflow"`,
    /// `"argo_workflows"`, `"kubeflow"` or `"retrain_webhook"`).
    pub retrain: Vec<ReceiverConfig>,
}

impl Default for LifecycleSection {
    fn default() -> Self {
        Self {
            group_id: "vigil-lifecycle".into(),
            replay_timeout_ms: 60_000,
            defaults: ModelPolicy::default(),
            models: BTreeMap::new(),
            state_dir: PathBuf::from("/var/lib/vigil/lifecycle"),
            audit: true,
            audit_queue: 10_000,
            resolve_interval_ms: 30_000,
            canary_interval_ms: 30_000,
            kpi_interval_ms: 60_000,
            kpi_period_days: 30,
            approval_deadline_ms: 86_400_000,
            api: ApiSection::default(),
            platform: Vec::new(),
            retrain: Vec::new(),
        }
    }
}

/// `[lifecycle.api]`: the registry API of `vigil lifecycle`, with `/metrics` and `/health`.
#[derive(Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ApiSection {
    /// Off only by choice: `vigil lifecycle` refuses to start the API without a token.
    pub enabled: bool,
    /// Address of the API, `/metrics` and `/health` (served even with the API off).
    pub listen: String,
    /// One token in clear, with the admin role on every model and `token_subject` as its subject
    /// (better: `VIGIL__LIFECYCLE__API__TOKEN` or `token_file`). Only its hash is kept in memory.
    /// The CLI's approve, reject, rollback and approvals send it unless `VIGIL_API_TOKEN` is set.
    pub token: String,
    /// A file holding the token (a mounted secret); surrounding white space is ignored.
    pub token_file: PathBuf,
    /// The subject (recorded actor) of `token`.
    pub token_subject: String,
    /// `[[lifecycle.api.tokens]]`: tokens known by their SHA-256, each with subject, role and scope.
    pub tokens: Vec<TokenSection>,
    /// The same as `subject:role:glob|glob:sha256hex` strings; from the environment as
    /// `VIGIL__LIFECYCLE__API__TOKEN_HASHES`, comma-separated.
    pub token_hashes: Vec<String>,
    /// `[lifecycle.api.oidc]`: also accept OIDC JWTs (RS256) verified against a JWKS file.
    pub oidc: OidcSection,
    /// Where `vigil lifecycle approve|reject|rollback|approvals` reach the API; empty:
    /// `http://<listen>`.
    pub url: String,
}

impl Default for ApiSection {
    fn default() -> Self {
        Self {
            enabled: true,
            listen: "127.0.0.1:9465".into(),
            token: String::new(),
            token_file: PathBuf::new(),
            token_subject: "admin".into(),
            tokens: Vec::new(),
            token_hashes: Vec::new(),
            oidc: OidcSection::default(),
            url: String::new(),
        }
    }
}

impl std::fmt::Debug for ApiSection {
    // Neither the token nor any hash in debug output.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ApiSection")
            .field("enabled", &self.enabled)
            .field("listen", &self.listen)
            .field("token_set", &!self.token.is_empty())
            .field("token_file", &self.token_file)
            .field("token_subject", &self.token_subject)
            .field("tokens", &self.tokens)
            .field("token_hashes", &self.token_hashes.len())
            .field("oidc", &self.oidc)
            .field("url", &self.url)
            .finish()
    }
}

/// One `[[lifecycle.api.tokens]]` entry.
#[derive(Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TokenSection {
    /// Recorded as the actor of every change made with the token.
    pub subject: String,
    /// `viewer`, `operator`, `approver` or `admin`.
    pub role: String,
    /// Model id globs the token may act on; default every model.
    #[serde(default = "every_model")]
    pub models: Vec<String>,
    /// Hex SHA-256 of the token (`printf %s "$TOKEN" | sha256sum`).
    pub sha256: String,
}

impl std::fmt::Debug for TokenSection {
    // The hash stays out of any debug output.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TokenSection")
            .field("subject", &self.subject)
            .field("role", &self.role)
            .field("models", &self.models)
            .finish_non_exhaustive()
    }
}

fn every_model() -> Vec<String> {
    vec!["*".into()]
}

/// `[lifecycle.api.oidc]`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct OidcSection {
    /// The identity provider's JWKS as a local file; empty: no JWTs.
    pub jwks_file: PathBuf,
    /// Required `iss`; empty: not checked.
    pub issuer: String,
    /// Required in `aud`; empty: not checked.
    pub audience: String,
    pub subject_claim: String,
    pub role_claim: String,
    pub models_claim: String,
}

impl Default for OidcSection {
    fn default() -> Self {
        Self {
            jwks_file: PathBuf::new(),
            issuer: String::new(),
            audience: String::new(),
            subject_claim: "sub".into(),
            role_claim: "vigil_role".into(),
            models_claim: "vigil_models".into(),
        }
    }
}

const TOKEN_FIX: &str = "set lifecycle.api.tokens (or lifecycle.api.token_hashes, or the VIGIL__LIFECYCLE__API__TOKEN_HASHES environment variable), \
                         lifecycle.api.token (or the VIGIL__LIFECYCLE__API__TOKEN environment variable, or lifecycle.api.token_file), \
                         or lifecycle.api.oidc.jwks_file; or run without the API with lifecycle.api.enabled = false";

impl ApiSection {
    /// What the CLI sends: `VIGIL_API_TOKEN`, else `token` or `token_file`.
    pub fn client_token(&self) -> Result<String, String> {
        match std::env::var("VIGIL_API_TOKEN") {
            Ok(token) if !token.trim().is_empty() => Ok(token.trim().to_owned()),
            _ => self.token().map_err(|e| format!("{e} (or set VIGIL_API_TOKEN to your own token)")),
        }
    }

    /// The hashed entries of `tokens` and `token_hashes`, each problem naming its key.
    fn token_entries(&self, errors: &mut Vec<String>) -> Vec<TokenEntry> {
        let mut entries = Vec::new();
        for (i, t) in self.tokens.iter().enumerate() {
            let entry = Role::parse(&t.role)
                .ok_or_else(|| format!("role {:?} must be viewer, operator, approver or admin", t.role))
                .and_then(|role| TokenEntry::new(&t.subject, role, t.models.clone(), &t.sha256));
            match entry {
                Ok(e) => entries.push(e),
                Err(e) => errors.push(format!("lifecycle.api.tokens[{i}]: {e}")),
            }
        }
        for (i, spec) in self.token_hashes.iter().enumerate() {
            match TokenEntry::parse_spec(spec) {
                Ok(e) => entries.push(e),
                // The spec holds a hash: name the entry and its subject, never echo it.
                Err(e) => errors.push(format!(
                    "lifecycle.api.token_hashes[{i}] (subject {:?}): {e}",
                    spec.split(':').next().unwrap_or_default()
                )),
            }
        }
        entries
    }

    /// Every token and the OIDC verifier the API accepts; an error names the key and the fix.
    pub fn authenticator(&self) -> Result<Authenticator, String> {
        let mut errors = Vec::new();
        let mut entries = self.token_entries(&mut errors);
        if !errors.is_empty() {
            return Err(errors.join("\n"));
        }
        if !self.token.trim().is_empty() || !self.token_file.as_os_str().is_empty() {
            entries.push(TokenEntry::from_secret(
                &self.token_subject,
                Role::Admin,
                vec!["*".into()],
                &self.token()?,
            ));
        }
        let mut auth = Authenticator::new(entries);
        if !self.oidc.jwks_file.as_os_str().is_empty() {
            let o = &self.oidc;
            let settings = JwtSettings {
                issuer: (!o.issuer.is_empty()).then(|| o.issuer.clone()),
                audience: (!o.audience.is_empty()).then(|| o.audience.clone()),
                subject_claim: o.subject_claim.clone(),
                role_claim: o.role_claim.clone(),
                models_claim: o.models_claim.clone(),
            };
            auth = auth.with_jwt(
                JwtVerifier::from_file(&o.jwks_file, settings)
                    .map_err(|e| format!("lifecycle.api.oidc.jwks_file: {e}"))?,
            );
        }
        if auth.is_empty() {
            return Err(format!(
                "lifecycle.api.tokens: the lifecycle API needs at least one token: {TOKEN_FIX}"
            ));
        }
        Ok(auth)
    }

    /// The token from `token` or `token_file`; an error names the key and the fix.
    pub fn token(&self) -> Result<String, String> {
        let token = if self.token_file.as_os_str().is_empty() {
            self.token.trim().to_owned()
        } else {
            std::fs::read_to_string(&self.token_file)
                .map_err(|e| {
                    format!("lifecycle.api.token_file: cannot read {}: {e}", self.token_file.display())
                })?
                .trim()
                .to_owned()
        };
        if token.is_empty() {
            return Err(format!("lifecycle.api.token: the lifecycle API needs a bearer token: {TOKEN_FIX}"));
        }
        Ok(token)
    }

    pub fn base_url(&self) -> String {
        if self.url.is_empty() {
            format!("http://{}", self.listen)
        } else {
            self.url.clone()
        }
    }
}

impl LifecycleSection {
    pub fn policy(&self) -> LifecyclePolicy {
        LifecyclePolicy { defaults: self.defaults.clone(), models: self.models.clone() }
    }

    pub fn replay_timeout(&self) -> Duration {
        Duration::from_millis(self.replay_timeout_ms)
    }

    /// Adds every problem to `errors`, each naming its key (`lifecycle.models.fraud.canary.max_weight`).
    pub fn check(&self, errors: &mut Vec<String>) {
        if self.group_id.trim().is_empty() {
            errors.push("lifecycle.group_id: must not be empty".into());
        }
        if !(1_000..=3_600_000).contains(&self.replay_timeout_ms) {
            errors.push(format!(
                "lifecycle.replay_timeout_ms: {} must be between 1000 and 3600000",
                self.replay_timeout_ms
            ));
        }
        match self.policy().validate("lifecycle") {
            Err(LifecycleError::Config(problems)) => errors.extend(problems),
            Err(other) => errors.push(other.to_string()),
            Ok(()) => {}
        }
        if self.state_dir.as_os_str().is_empty() {
            errors.push("lifecycle.state_dir: must not be empty (e.g. /var/lib/vigil/lifecycle)".into());
        }
        if self.audit_queue == 0 {
            errors.push("lifecycle.audit_queue: must be at least 1".into());
        }
        if !(1..=3660).contains(&self.kpi_period_days) {
            errors.push(format!(
                "lifecycle.kpi_period_days: {} must be between 1 and 3660",
                self.kpi_period_days
            ));
        }
        if self.approval_deadline_ms == 0 {
            errors.push("lifecycle.approval_deadline_ms: must be at least 1".into());
        }
        for (key, value) in [
            ("resolve_interval_ms", self.resolve_interval_ms),
            ("canary_interval_ms", self.canary_interval_ms),
            ("kpi_interval_ms", self.kpi_interval_ms),
        ] {
            if value != 0 && value < 1_000 {
                errors.push(format!("lifecycle.{key}: {value} must be 0 (never) or at least 1000"));
            }
        }
        if self.api.listen.parse::<std::net::SocketAddr>().is_err() {
            errors.push(format!(
                "lifecycle.api.listen: {:?} is not an address like 127.0.0.1:9465",
                self.api.listen
            ));
        }
        self.api.token_entries(errors);
        if self.api.token_subject.trim().is_empty() {
            errors.push("lifecycle.api.token_subject: must not be empty".into());
        }
        if !self.api.token.is_empty() && !self.api.token_file.as_os_str().is_empty() {
            errors.push("lifecycle.api.token and lifecycle.api.token_file: set one, not both".into());
        }
        if !(self.api.url.is_empty()
            || self.api.url.starts_with("http://")
            || self.api.url.starts_with("https://"))
        {
            errors.push(format!(
                "lifecycle.api.url: {:?} must be an http:// or https:// URL, or empty for http://<listen>",
                self.api.url
            ));
        }
        for (i, receiver) in self.retrain.iter().enumerate() {
            if !receiver.kind.takes_retrain() {
                errors.push(format!(
                    "lifecycle.retrain[{i}].kind: must be \"airflow\", \"argo_workflows\", \"kubeflow\" or \"retrain_webhook\""
                ));
            }
        }
        for (i, receiver) in self.platform.iter().enumerate() {
            if !receiver.kind.takes_traffic() {
                errors.push(format!(
                    "lifecycle.platform[{i}].kind: an alert receiver; platform webhooks are kind \"platform\" or \"mlflow\" (alert receivers go under [[alerts.receivers]])"
                ));
            }
        }
    }
}

/// Adds every problem of `[alerts]` and the platform webhooks to `errors`; no receivers is valid
/// (alerting is off). Receiver names are unique across both lists (the outbox keys by name).
pub fn check_alerts(alerts: &AlertsConfig, lifecycle: &LifecycleSection, errors: &mut Vec<String>) {
    match alerts.validate("alerts") {
        Err(vigil_alerts::AlertError::Config(problems)) => errors.extend(problems),
        Err(other) => errors.push(other.to_string()),
        Ok(()) => {}
    }
    let alert_count = alerts.receivers.len();
    for (i, receiver) in alerts.receivers.iter().enumerate() {
        if receiver.kind.takes_traffic() {
            errors.push(format!("alerts.receivers[{i}].kind: a serving-platform webhook takes no alerts; put it under [[lifecycle.platform]]"));
        }
        if receiver.kind.takes_retrain() {
            errors.push(format!("alerts.receivers[{i}].kind: a training pipeline takes no alerts; put it under [[lifecycle.retrain]]"));
        }
    }
    let platform_count = lifecycle.platform.len();
    let all: Vec<ReceiverConfig> =
        alerts.receivers.iter().chain(&lifecycle.platform).chain(&lifecycle.retrain).cloned().collect();
    let mut problems = Vec::new();
    let key = |i: usize| {
        if i < alert_count {
            format!("alerts.receivers[{i}]")
        } else if i < alert_count + platform_count {
            format!("lifecycle.platform[{}]", i - alert_count)
        } else {
            format!("lifecycle.retrain[{}]", i - alert_count - platform_count)
        }
    };
    vigil_alerts::check_receivers(&all, &key, &mut problems);
    // The alert receivers' own problems are already listed above.
    errors.extend(problems.into_iter().filter(|p| p.starts_with("lifecycle.")));
}

impl super::Config {
    /// Everything `vigil lifecycle` runs with; the API's token is read here, so a missing one
    /// stops the start with the key and the fix.
    pub fn lifecycle_service(&self) -> Result<vigil_lifecycle::service::ServiceSettings, String> {
        let l = &self.lifecycle;
        let api_auth = if l.api.enabled { Some(l.api.authenticator()?) } else { None };
        let mut webhooks = self.alerts.clone();
        webhooks.receivers.extend(l.platform.iter().cloned());
        webhooks.receivers.extend(l.retrain.iter().cloned());
        Ok(vigil_lifecycle::service::ServiceSettings {
            kafka: self.lifecycle_settings(),
            listen: l
                .api
                .listen
                .parse()
                .map_err(|_| format!("lifecycle.api.listen: {:?} is not an address", l.api.listen))?,
            api_auth,
            state_dir: l.state_dir.clone(),
            store: l.audit.then(|| self.store_config()),
            audit_queue: l.audit_queue,
            webhooks: (!webhooks.receivers.is_empty()).then_some(webhooks),
            resolve_interval: (l.audit && l.resolve_interval_ms > 0)
                .then(|| Duration::from_millis(l.resolve_interval_ms)),
            canary_interval: (l.audit && l.canary_interval_ms > 0)
                .then(|| Duration::from_millis(l.canary_interval_ms)),
            window_seconds: self.monitor.window_seconds,
            kpi_interval: (l.kpi_interval_ms > 0).then(|| Duration::from_millis(l.kpi_interval_ms)),
            kpi_period: Duration::from_secs(u64::from(l.kpi_period_days) * 86_400),
            approval_deadline: Duration::from_millis(l.approval_deadline_ms),
        })
    }
}
