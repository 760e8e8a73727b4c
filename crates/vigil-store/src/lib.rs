//! vigil's ClickHouse side: server version detection, idempotent migrations and the writers and
//! readers the monitor needs. No business logic: callers decide what a row means.

mod error;
mod schema;
mod version;

use std::collections::HashMap;

use clickhouse::{Client, Row};
use serde::{Deserialize, Serialize};

pub use error::StoreError;
pub use schema::{
    create_database, is_valid_identifier, migrations, migrations_table, Migration, SchemaOptions,
};
pub use version::ServerVersion;

/// Where and how to reach ClickHouse.
#[derive(Debug, Clone, PartialEq)]
pub struct StoreConfig {
    pub url: String,
    pub database: String,
    pub user: String,
    pub password: String,
    pub retention_days: Option<u32>,
}

/// One flush's contribution to a (model, version, segment, window), with the Kafka position the
/// flush covered on one partition.
#[derive(Debug, Clone, PartialEq, Row, Serialize, Deserialize)]
pub struct WindowPartialRow {
    pub model_id: String,
    pub model_version: String,
    /// `""` for all of the model version's traffic, else `tag=value`.
    pub segment: String,
    /// Window start, seconds since the Unix epoch (ClickHouse `DateTime`).
    pub window_start: u32,
    pub window_seconds: u32,
    pub events: u64,
    /// The partial window state (mergeable sketches), encoded by the monitor (a ClickHouse
    /// `String` holds any bytes); empty for position-only rows.
    #[serde(with = "serde_bytes")]
    pub state: Vec<u8>,
    pub source_topic: String,
    pub source_partition: u32,
    /// The next offset to read on that partition once this row is stored.
    pub source_end_offset: i64,
    pub written_at: u32,
}

/// A closed window's numbers (`window_metrics`).
#[derive(Debug, Clone, PartialEq, Row, Serialize, Deserialize)]
pub struct WindowMetricsRow {
    pub model_id: String,
    pub model_version: String,
    pub segment: String,
    pub window_start: u32,
    pub window_seconds: u32,
    pub events: u64,
    /// Events that arrived after the window first closed.
    pub late_events: u64,
    pub latency_p50_ms: Option<f64>,
    pub latency_p95_ms: Option<f64>,
    pub latency_p99_ms: Option<f64>,
    pub score_mean: Option<f64>,
    /// JSON object: predicted label -> count.
    pub predicted_labels: String,
    /// JSON object: numeric feature -> mean.
    pub feature_means: String,
    pub features_missing: u64,
    pub reference_id: String,
    pub config_hash: String,
    pub source_partition: u32,
    pub computed_at: u32,
}

/// A reference profile (`reference_profiles_v2`, one row per reference id): what a model
/// version's windows are tested against.
#[derive(Debug, Clone, PartialEq, Row, Serialize, Deserialize)]
pub struct ReferenceRow {
    pub model_id: String,
    pub model_version: String,
    /// `upload:<model>:<version>:<content hash>`, `capture:<model>:<version>:<from>-<to>` (a
    /// range of stored windows, `vigil reference capture`) or
    /// `baseline:<model>:<version>:<window start>`.
    pub reference_id: String,
    /// FNV-1a 64 of the state's JSON without `performance`, whatever `state`'s encoding
    /// (`vigil_monitor::reference::state_content_hash`; references stored before that: of the
    /// stored bytes), 16 hex digits.
    pub content_hash: String,
    /// Where the data came from (a file and its rows, live windows), for people.
    pub source: String,
    pub events: u64,
    /// The window state (mergeable sketches), encoded by the monitor.
    #[serde(with = "serde_bytes")]
    pub state: Vec<u8>,
    pub created_at: u32,
}

/// Ids of uploaded references start with this.
pub const UPLOAD_REFERENCE_PREFIX: &str = "upload:";
/// Ids of references captured from a range of stored windows start with this.
pub const CAPTURE_REFERENCE_PREFIX: &str = "capture:";
/// Ids of the live baselines the monitor makes itself start with this. Every other reference
/// (an upload, a capture) was chosen by a person and comes first.
pub const BASELINE_REFERENCE_PREFIX: &str = "baseline:";

/// How a version's references rank, most preferred last: chosen ones (uploads, captures) above
/// live baselines, then the newest (`created_at`, which storing the same data again refreshes),
/// then the greatest id. The top one is the reference the monitor uses.
const PREFERENCE: [&str; 3] = ["reference_id NOT LIKE 'baseline:%'", "created_at", "reference_id"];

/// `ORDER BY` over `reference_profiles_v2` by model, version and [`PREFERENCE`], ascending (the
/// one in use last) or descending (first).
fn by_preference(descending: bool) -> String {
    let direction = if descending { " DESC" } else { "" };
    let terms: Vec<String> = PREFERENCE.iter().map(|t| format!("{t}{direction}")).collect();
    format!("ORDER BY model_id, model_version, {}", terms.join(", "))
}

/// Keeps the reference in use per (model, version) of a query over `reference_profiles_v2 FINAL`.
fn in_use() -> String {
    format!("{} LIMIT 1 BY model_id, model_version", by_preference(true))
}

/// A reference without its state, and whether it is the one in use.
#[derive(Debug, Clone, PartialEq, Row, Deserialize)]
pub struct ReferenceInfo {
    pub model_id: String,
    pub model_version: String,
    pub reference_id: String,
    pub content_hash: String,
    pub source: String,
    pub events: u64,
    pub created_at: u32,
    /// Whether the monitor tests this version's windows against it (see
    /// [`Store::references_in_use`]).
    pub in_use: bool,
}

#[derive(Debug, Row, Deserialize)]
struct ModelVersion {
    model_id: String,
    model_version: String,
}

/// One drift test of one feature in one closed window (`feature_drift`).
#[derive(Debug, Clone, PartialEq, Row, Serialize, Deserialize)]
pub struct FeatureDriftRow {
    pub model_id: String,
    pub model_version: String,
    pub segment: String,
    pub window_start: u32,
    pub feature: String,
    pub test: String,
    pub statistic: f64,
    pub p_value: Option<f64>,
    pub error_bound: Option<f64>,
    pub threshold: f64,
    pub drifted: u8,
    pub current_count: u64,
    pub events: u64,
    pub reference_id: String,
    pub config_hash: String,
    pub computed_at: u32,
}

/// One policy evaluation at window close (`policy_checks`).
#[derive(Debug, Clone, PartialEq, Row, Serialize, Deserialize)]
pub struct PolicyCheckRow {
    pub model_id: String,
    pub model_version: String,
    pub window_start: u32,
    pub policy: String,
    /// `healthy`, `breach` or `insufficient_data`.
    pub verdict: String,
    pub value: f64,
    pub threshold: f64,
    /// JSON: what the verdict rests on (drifted features, corrected alpha).
    pub detail: String,
    pub streak: u32,
    pub remediation_id: String,
    pub events: u64,
    pub reference_id: String,
    pub config_hash: String,
    pub computed_at: u32,
}

/// A decided remediation, encoded as published (`remediation_outbox`).
#[derive(Debug, Clone, PartialEq, Row, Serialize, Deserialize)]
pub struct RemediationOutboxRow {
    pub remediation_id: String,
    pub model_id: String,
    pub model_version: String,
    /// The Avro single-object message, as sent to the remediations topic.
    #[serde(with = "serde_bytes")]
    pub payload: Vec<u8>,
    /// 1 once Kafka acknowledged the message.
    pub published: u8,
    pub written_at: u32,
}

/// A window's performance from the outcomes joined so far (`window_performance`).
#[derive(Debug, Clone, PartialEq, Row, Serialize, Deserialize)]
pub struct WindowPerformanceRow {
    pub model_id: String,
    pub model_version: String,
    pub segment: String,
    pub window_start: u32,
    pub window_seconds: u32,
    pub predictions: u64,
    pub labeled: u64,
    /// `labeled / predictions`: the share of the window's predictions with an outcome so far.
    pub coverage: f64,
    pub accuracy: Option<f64>,
    pub precision: Option<f64>,
    pub recall: Option<f64>,
    pub f1: Option<f64>,
    pub auc: Option<f64>,
    pub brier: Option<f64>,
    pub log_loss: Option<f64>,
    pub ece: Option<f64>,
    pub mae: Option<f64>,
    pub rmse: Option<f64>,
    pub mean_error: Option<f64>,
    /// `predictions + labeled`; both only grow, so the highest revision is the newest row.
    pub revision: u64,
    pub reference_id: String,
    pub config_hash: String,
    pub computed_at: u32,
}

/// One lifecycle event as audited in `lifecycle_events`, with the position it has in the
/// lifecycle topic.
#[derive(Debug, Clone, PartialEq, Row, Serialize, Deserialize)]
pub struct LifecycleEventRow {
    pub event_id: String,
    pub model_id: String,
    pub model_version: String,
    /// The Avro symbol: `CANDIDATE`, `CANARY`, `PRODUCTION`, `RETIRED` or `ROLLED_BACK`.
    pub stage: String,
    pub traffic_weight: Option<f64>,
    pub reason: String,
    pub actor: String,
    pub remediation_id: Option<String>,
    pub event_time_ms: i64,
    /// Days since the Unix epoch (ClickHouse `Date`), from `event_time_ms`.
    pub event_date: u16,
    pub source_partition: i32,
    pub source_offset: i64,
    /// Seconds since the Unix epoch; the newest write of an event id is the one kept.
    pub written_at: u32,
}

/// One attempt to deliver one alert or serving-platform update to one receiver
/// (`alert_deliveries`).
#[derive(Debug, Clone, PartialEq, Row, Serialize, Deserialize)]
pub struct AlertDeliveryRow {
    pub delivery_id: u64,
    pub receiver: String,
    /// The alert key (`model/version/policy`), or a platform update's idempotency key.
    pub alert_key: String,
    /// `firing`, `resolved`, or `traffic` for a serving-platform update.
    pub state: String,
    pub severity: String,
    pub model_id: String,
    pub model_version: String,
    pub policy: String,
    pub remediation_id: Option<String>,
    pub attempt: u32,
    /// `delivered`, `retrying` or `gave_up`.
    pub outcome: String,
    /// 0 when there was no answer (timeout, connection error).
    pub http_status: u16,
    pub error: String,
    /// Seconds since the Unix epoch.
    pub at: u32,
}

/// The newest policy check of one (model, version, policy).
#[derive(Debug, Clone, PartialEq, Row, Deserialize)]
pub struct LatestVerdict {
    pub model_id: String,
    pub model_version: String,
    pub policy: String,
    /// Start of the newest checked window, seconds since the Unix epoch.
    pub window_start: u32,
    /// `healthy`, `breach` or `insufficient_data`.
    pub verdict: String,
    /// When the monitor judged that window.
    pub computed_at: u32,
}

/// The newest decided window of one (model, version, policy), with its streak.
#[derive(Debug, Clone, PartialEq, Row, Deserialize)]
pub struct LatestDecision {
    pub model_id: String,
    pub model_version: String,
    pub policy: String,
    pub window_start: u32,
    pub streak: u32,
    /// `healthy` or `breach`.
    pub verdict: String,
}

/// The performance of a live baseline's own window.
#[derive(Debug, Clone, PartialEq, Row, Deserialize)]
pub struct BaselinePerformance {
    pub reference_id: String,
    pub labeled: u64,
    pub accuracy: Option<f64>,
    pub mae: Option<f64>,
}

#[derive(Debug, Row, Deserialize)]
struct VersionWindow {
    model_version: String,
    window_start: u32,
}

#[derive(Debug, Row, Deserialize)]
struct ModelVersionWindow {
    model_id: String,
    model_version: String,
    window_start: u32,
}

/// One stored policy verdict of a model version's window (for canary analysis).
#[derive(Debug, Clone, PartialEq, Row, Deserialize)]
pub struct WindowVerdict {
    pub model_version: String,
    pub window_start: u32,
    pub policy: String,
    /// `healthy`, `breach` or `insufficient_data`.
    pub verdict: String,
}

/// One metric of a model version's window (all traffic) and the samples behind it.
#[derive(Debug, Clone, PartialEq, Row, Deserialize)]
pub struct WindowSample {
    pub model_version: String,
    pub window_start: u32,
    pub value: Option<f64>,
    pub samples: u64,
}

/// One partial of a window being closed, with its key.
#[derive(Debug, Clone, PartialEq, Row, Deserialize)]
pub struct KeyedPartial {
    pub model_id: String,
    pub model_version: String,
    pub segment: String,
    pub events: u64,
    #[serde(with = "serde_bytes")]
    pub state: Vec<u8>,
}

#[derive(Debug, Row, Deserialize)]
struct PartitionWindow {
    source_partition: u32,
    window_start: u32,
}

#[derive(Debug, Row, Deserialize)]
struct PartitionModelPane {
    source_partition: u32,
    model_id: String,
    window_start: u32,
    written_at: u32,
}

#[derive(Debug, Row, Deserialize)]
struct PartitionWindowLength {
    source_partition: u32,
    window_start: u32,
    window_seconds: u32,
    computed_at: u32,
}

/// Total events per (model, version, segment, window), summed over flushes.
#[derive(Debug, Clone, PartialEq, Row, Deserialize)]
pub struct WindowCountTotal {
    pub model_id: String,
    pub model_version: String,
    pub segment: String,
    pub window_start: u32,
    pub events: u64,
}

/// A version's stored window (all traffic): [`Store::stored_windows`].
#[derive(Debug, Clone, PartialEq, Row, Deserialize)]
pub struct StoredWindow {
    pub window_start: u32,
    /// Partial rows stored for it (flushes times partitions, outcomes included).
    pub partials: u64,
    pub events: u64,
    /// Whether the monitor has closed it (written its `window_metrics` row).
    pub closed: bool,
}

/// One stored partial of a window in a range: [`Store::partials_between`].
#[derive(Debug, Clone, PartialEq, Row, Deserialize)]
pub struct RangePartial {
    pub window_start: u32,
    pub events: u64,
    #[serde(with = "serde_bytes")]
    pub state: Vec<u8>,
}

#[derive(Debug, Row, Deserialize)]
struct WindowSpan {
    first: u32,
    last: u32,
    rows: u64,
}

/// The partial states of one window, in the order they were written.
#[derive(Debug, Clone, PartialEq, Row, Deserialize)]
pub struct StoredPartial {
    pub events: u64,
    #[serde(with = "serde_bytes")]
    pub state: Vec<u8>,
}

#[derive(Debug, Row, Deserialize)]
struct ModelSegment {
    model_id: String,
    segment: String,
}

#[derive(Debug, Row, Deserialize)]
struct PartitionPosition {
    source_partition: u32,
    end_offset: i64,
}

#[derive(Debug, Clone, PartialEq)]
pub struct MigrationReport {
    pub server_version: ServerVersion,
    pub applied: Vec<&'static str>,
    pub already_applied: Vec<&'static str>,
}

#[derive(Clone)]
pub struct Store {
    config: StoreConfig,
    /// Without a default database, for `CREATE DATABASE`.
    server: Client,
    db: Client,
}

impl Store {
    pub fn new(config: StoreConfig) -> Self {
        // Validation needs RowBinaryWithNamesAndTypes, which 18.16 lacks; rows are typed
        // structs kept next to the DDL above, and the integration tests catch a mismatch.
        // Compression is off: 18.16's HTTP compression is not what current clients expect.
        let server = Client::default()
            .with_url(&config.url)
            .with_user(&config.user)
            .with_password(&config.password)
            .with_compression(clickhouse::Compression::None)
            .with_validation(false);
        let db = server.clone().with_database(&config.database);
        Self { config, server, db }
    }

    pub fn config(&self) -> &StoreConfig {
        &self.config
    }

    fn classify(&self, error: clickhouse::error::Error) -> StoreError {
        StoreError::classify(&self.config.url, error)
    }

    pub async fn server_version(&self) -> Result<ServerVersion, StoreError> {
        let text: String =
            self.server.query("SELECT version()").fetch_one().await.map_err(|e| self.classify(e))?;
        ServerVersion::parse(&text).ok_or(StoreError::BadVersion(text))
    }

    /// Answers when the server is up and the database exists (used by readiness checks).
    pub async fn ping(&self) -> Result<(), StoreError> {
        self.db.query("SELECT 1").execute().await.map_err(|e| self.classify(e))
    }

    pub fn schema_options(&self) -> SchemaOptions {
        SchemaOptions { database: self.config.database.clone(), retention_days: self.config.retention_days }
    }

    /// Creates the database and runs the migrations not yet recorded. Safe to run any number of
    /// times, and concurrently with a running monitor.
    pub async fn migrate(&self) -> Result<MigrationReport, StoreError> {
        let version = self.server_version().await?;
        let database = &self.config.database;
        self.execute_ddl(&schema::create_database(database)).await?;
        self.execute_ddl(&schema::migrations_table(database)).await?;
        let done: Vec<u32> = self
            .db
            .query("SELECT DISTINCT id FROM schema_migrations")
            .fetch_all()
            .await
            .map_err(|e| self.classify(e))?;
        let mut report =
            MigrationReport { server_version: version, applied: vec![], already_applied: vec![] };
        for migration in migrations(version, &self.schema_options()) {
            if done.contains(&migration.id) {
                report.already_applied.push(migration.name);
                continue;
            }
            tracing::info!(id = migration.id, name = migration.name, "applying migration");
            self.execute_ddl(&migration.sql).await?;
            self.db
                .query("INSERT INTO schema_migrations (id, name, server_version, applied_at) VALUES (?, ?, ?, now())")
                .bind(migration.id)
                .bind(migration.name)
                .bind(version.to_string())
                .execute()
                .await
                .map_err(|e| self.classify(e))?;
            report.applied.push(migration.name);
        }
        Ok(report)
    }

    async fn execute_ddl(&self, sql: &str) -> Result<(), StoreError> {
        // DDL goes through `query_raw`: `?` inside it is not a bind.
        self.server.query_raw(sql).execute().await.map_err(|e| self.classify(e))
    }

    /// Writes all rows in one INSERT, which ClickHouse applies atomically (one block, far below
    /// `max_insert_block_size`): either every partial and position lands, or none does.
    pub async fn insert_window_partials(&self, rows: &[WindowPartialRow]) -> Result<(), StoreError> {
        self.insert_rows("window_partials", rows).await
    }

    /// The next offset to read per partition of `topic`, as far as stored rows cover it.
    pub async fn stored_positions(&self, topic: &str) -> Result<HashMap<u32, i64>, StoreError> {
        let rows: Vec<PartitionPosition> = self
            .db
            .query(
                "SELECT source_partition, max(source_end_offset) AS end_offset FROM window_partials \
                 WHERE source_topic = ? GROUP BY source_partition",
            )
            .bind(topic)
            .fetch_all()
            .await
            .map_err(|e| self.classify(e))?;
        Ok(rows.into_iter().map(|p| (p.source_partition, p.end_offset)).collect())
    }

    /// The newest window with stored predictions per partition: about where each partition's
    /// event time stood at its stored position (a restarted monitor re-reads the outcome join's
    /// horizon before it).
    pub async fn newest_windows(&self) -> Result<HashMap<u32, u32>, StoreError> {
        let rows: Vec<PartitionWindow> = self
            .db
            .query(
                "SELECT source_partition, toUInt32(max(window_start)) AS ws FROM window_partials \
                 WHERE events > 0 GROUP BY source_partition",
            )
            .fetch_all()
            .await
            .map_err(|e| self.classify(e))?;
        Ok(rows.into_iter().map(|r| (r.source_partition, r.window_start)).collect())
    }

    /// Every partial of the panes starting in `[from, to)` written from `partition` (predictions
    /// and outcomes), pane by pane in write order: the input of closing the window `[from, to)`.
    pub async fn partials_on_partition(
        &self,
        partition: u32,
        from: u32,
        to: u32,
    ) -> Result<Vec<KeyedPartial>, StoreError> {
        self.db
            .query(
                "SELECT model_id, model_version, segment, events, state FROM window_partials \
                 WHERE source_partition = ? AND window_start >= toDateTime(?) AND window_start < toDateTime(?) AND state != '' \
                 ORDER BY window_start, source_end_offset, model_id, model_version, segment",
            )
            .bind(partition)
            .bind(from)
            .bind(to)
            .fetch_all()
            .await
            .map_err(|e| self.classify(e))
    }

    /// Stores a reference. Storing the same id again (the same data uploaded twice) leaves one
    /// row, with the newest `created_at`.
    pub async fn insert_reference(&self, row: &ReferenceRow) -> Result<(), StoreError> {
        self.insert_references(std::slice::from_ref(row)).await
    }

    pub async fn insert_outbox(&self, rows: &[RemediationOutboxRow]) -> Result<(), StoreError> {
        self.insert_rows("remediation_outbox", rows).await
    }

    /// Remediations written to the outbox and never marked published.
    pub async fn unpublished_remediations(&self) -> Result<Vec<RemediationOutboxRow>, StoreError> {
        self.db
            .query(
                "SELECT remediation_id, model_id, model_version, payload, published, toUInt32(written_at) \
                 FROM remediation_outbox FINAL WHERE published = 0 ORDER BY written_at, remediation_id",
            )
            .fetch_all()
            .await
            .map_err(|e| self.classify(e))
    }

    /// Several references in one INSERT (the baselines of one closed window).
    pub async fn insert_references(&self, rows: &[ReferenceRow]) -> Result<(), StoreError> {
        self.insert_rows("reference_profiles_v2", rows).await
    }

    /// The reference the monitor uses, one per (model, version) that has any: the newest upload
    /// or capture, else the newest live baseline. A version missing here has no reference yet: its windows
    /// are counted but not tested for drift until a baseline forms or a file is uploaded.
    pub async fn references_in_use(&self) -> Result<Vec<ReferenceRow>, StoreError> {
        self.db
            .query(&format!(
                "SELECT model_id, model_version, reference_id, content_hash, source, events, state, toUInt32(created_at) \
                 FROM reference_profiles_v2 FINAL {}",
                in_use()
            ))
            .fetch_all()
            .await
            .map_err(|e| self.classify(e))
    }

    /// Every stored reference, one per id (what a replay looks rows' references up in). Per
    /// (model, version) they come in [`PREFERENCE`] order, the one in use last, so a caller that
    /// keeps one per version by overwriting keeps the one in use; prefer
    /// [`Store::references_in_use`] for that.
    pub async fn references(&self) -> Result<Vec<ReferenceRow>, StoreError> {
        self.db
            .query(&format!(
                "SELECT model_id, model_version, reference_id, content_hash, source, events, state, toUInt32(created_at) \
                 FROM reference_profiles_v2 FINAL {}",
                by_preference(false)
            ))
            .fetch_all()
            .await
            .map_err(|e| self.classify(e))
    }

    /// One reference by id, with its state.
    pub async fn reference(&self, reference_id: &str) -> Result<Option<ReferenceRow>, StoreError> {
        self.db
            .query(
                "SELECT model_id, model_version, reference_id, content_hash, source, events, state, toUInt32(created_at) \
                 FROM reference_profiles_v2 FINAL WHERE reference_id = ?",
            )
            .bind(reference_id)
            .fetch_optional()
            .await
            .map_err(|e| self.classify(e))
    }

    /// Every stored reference (of `model_id`, if given) without its state, marked in use or
    /// not, by model and version, newest first.
    pub async fn reference_list(&self, model_id: Option<&str>) -> Result<Vec<ReferenceInfo>, StoreError> {
        let filter = if model_id.is_some() { "WHERE model_id = ?" } else { "" };
        let mut query = self.db.query(&format!(
            "SELECT model_id, model_version, reference_id, content_hash, source, events, toUInt32(created_at), \
             (model_id, model_version, reference_id) IN \
             (SELECT model_id, model_version, reference_id FROM reference_profiles_v2 FINAL {}) \
             FROM reference_profiles_v2 FINAL {filter} \
             ORDER BY model_id, model_version, created_at DESC, reference_id DESC",
            in_use()
        ));
        if let Some(model_id) = model_id {
            query = query.bind(model_id);
        }
        query.fetch_all().await.map_err(|e| self.classify(e))
    }

    /// (model, version) pairs with closed windows but no reference: their drift is not tested.
    pub async fn versions_without_reference(&self) -> Result<Vec<(String, String)>, StoreError> {
        let rows: Vec<ModelVersion> = self
            .db
            .query(
                "SELECT DISTINCT model_id, model_version FROM window_metrics WHERE segment = '' \
                 AND (model_id, model_version) NOT IN (SELECT model_id, model_version FROM reference_profiles_v2) \
                 ORDER BY model_id, model_version",
            )
            .fetch_all()
            .await
            .map_err(|e| self.classify(e))?;
        Ok(rows.into_iter().map(|r| (r.model_id, r.model_version)).collect())
    }

    pub async fn insert_policy_checks(&self, rows: &[PolicyCheckRow]) -> Result<(), StoreError> {
        self.insert_rows("policy_checks", rows).await
    }

    pub async fn policy_checks(&self) -> Result<Vec<PolicyCheckRow>, StoreError> {
        self.db
            .query(
                "SELECT model_id, model_version, toUInt32(window_start), policy, verdict, value, threshold, detail, streak, \
                 remediation_id, events, reference_id, config_hash, toUInt32(computed_at) \
                 FROM policy_checks FINAL ORDER BY window_start, model_id, model_version, policy",
            )
            .fetch_all()
            .await
            .map_err(|e| self.classify(e))
    }

    pub async fn insert_feature_drift(&self, rows: &[FeatureDriftRow]) -> Result<(), StoreError> {
        self.insert_rows("feature_drift", rows).await
    }

    /// The latest drift verdicts, oldest window first.
    pub async fn feature_drift(&self) -> Result<Vec<FeatureDriftRow>, StoreError> {
        self.db
            .query(
                "SELECT model_id, model_version, segment, toUInt32(window_start), feature, test, statistic, p_value, \
                 error_bound, threshold, drifted, current_count, events, reference_id, config_hash, toUInt32(computed_at) \
                 FROM feature_drift FINAL ORDER BY window_start, model_id, model_version, segment, feature",
            )
            .fetch_all()
            .await
            .map_err(|e| self.classify(e))
    }

    /// Writes rows to `table` in one INSERT.
    async fn insert_rows<T>(&self, table: &str, rows: &[T]) -> Result<(), StoreError>
    where
        T: Serialize + clickhouse::RowWrite + for<'a> Row<Value<'a> = T>,
    {
        if rows.is_empty() {
            return Ok(());
        }
        let mut insert = self.db.insert::<T>(table).await.map_err(|e| self.classify(e))?;
        for row in rows {
            insert.write(row).await.map_err(|e| self.classify(e))?;
        }
        insert.end().await.map_err(|e| self.classify(e))
    }

    /// Writes the metrics of closed windows in one INSERT.
    pub async fn insert_window_metrics(&self, rows: &[WindowMetricsRow]) -> Result<(), StoreError> {
        self.insert_rows("window_metrics", rows).await
    }

    pub async fn insert_window_performance(&self, rows: &[WindowPerformanceRow]) -> Result<(), StoreError> {
        self.insert_rows("window_performance", rows).await
    }

    /// The latest performance of every window, oldest first.
    pub async fn window_performance(&self) -> Result<Vec<WindowPerformanceRow>, StoreError> {
        self.db
            .query(
                "SELECT model_id, model_version, segment, toUInt32(window_start), window_seconds, predictions, labeled, \
                 coverage, accuracy, precision, recall, f1, auc, brier, log_loss, ece, mae, rmse, mean_error, revision, \
                 reference_id, config_hash, toUInt32(computed_at) \
                 FROM window_performance FINAL ORDER BY window_start, model_id, model_version, segment",
            )
            .fetch_all()
            .await
            .map_err(|e| self.classify(e))
    }

    /// Every pane from `since` on with stored partials (predictions or outcomes), as (partition,
    /// model, pane start) and when it was last written: with [`Self::closed_windows`], what a
    /// restarted monitor still has to close.
    pub async fn stored_panes(&self, since: u32) -> Result<Vec<((u32, String, u32), u32)>, StoreError> {
        let rows: Vec<PartitionModelPane> = self
            .db
            .query(
                // Aliases differ from column names: 18.16 substitutes aliases into WHERE.
                "SELECT source_partition, model_id, toUInt32(window_start) AS ws, toUInt32(max(written_at)) AS last_written \
                 FROM window_partials WHERE state != '' AND window_start >= toDateTime(?) \
                 GROUP BY source_partition, model_id, window_start",
            )
            .bind(since)
            .fetch_all()
            .await
            .map_err(|e| self.classify(e))?;
        Ok(rows
            .into_iter()
            .map(|r| ((r.source_partition, r.model_id, r.window_start), r.written_at))
            .collect())
    }

    /// Every window from `since` on with metrics stored, as (partition, start, length), and when
    /// it was last closed.
    pub async fn closed_windows(&self, since: u32) -> Result<HashMap<(u32, u32, u32), u32>, StoreError> {
        let rows: Vec<PartitionWindowLength> = self
            .db
            .query(
                "SELECT source_partition, toUInt32(window_start) AS ws, window_seconds, toUInt32(max(computed_at)) AS last_computed \
                 FROM window_metrics WHERE window_start >= toDateTime(?) \
                 GROUP BY source_partition, window_start, window_seconds",
            )
            .bind(since)
            .fetch_all()
            .await
            .map_err(|e| self.classify(e))?;
        Ok(rows
            .into_iter()
            .map(|r| ((r.source_partition, r.window_start, r.window_seconds), r.computed_at))
            .collect())
    }

    /// The latest metrics of every closed window, oldest first.
    pub async fn window_metrics(&self) -> Result<Vec<WindowMetricsRow>, StoreError> {
        self.db
            .query(
                "SELECT model_id, model_version, segment, toUInt32(window_start), window_seconds, events, late_events, \
                 latency_p50_ms, latency_p95_ms, latency_p99_ms, score_mean, predicted_labels, feature_means, \
                 features_missing, reference_id, config_hash, source_partition, toUInt32(computed_at) \
                 FROM window_metrics FINAL ORDER BY window_start, model_id, model_version, segment",
            )
            .fetch_all()
            .await
            .map_err(|e| self.classify(e))
    }

    /// (model, segment) pairs stored so far, so a restarted monitor admits the same segments.
    pub async fn stored_segments(&self) -> Result<Vec<(String, String)>, StoreError> {
        let rows: Vec<ModelSegment> = self
            .db
            .query("SELECT DISTINCT model_id, segment FROM window_partials WHERE segment != ''")
            .fetch_all()
            .await
            .map_err(|e| self.classify(e))?;
        Ok(rows.into_iter().map(|r| (r.model_id, r.segment)).collect())
    }

    /// The partial states of one window in write order, to merge into the window's state.
    pub async fn partials_of(
        &self,
        model_id: &str,
        model_version: &str,
        segment: &str,
        window_start: u32,
    ) -> Result<Vec<StoredPartial>, StoreError> {
        self.db
            .query(
                "SELECT events, state FROM window_partials WHERE model_id = ? AND model_version = ? \
                 AND segment = ? AND window_start = toDateTime(?) AND events > 0 \
                 ORDER BY source_partition, source_end_offset",
            )
            .bind(model_id)
            .bind(model_version)
            .bind(segment)
            .bind(window_start)
            .fetch_all()
            .await
            .map_err(|e| self.classify(e))
    }

    /// A version's stored panes (all traffic, segment `""`) starting in `[from, to)`, oldest
    /// first, with their partial and event counts and whether they have closed: a closed window
    /// of the version ends at or after them (windows close in order of their end). Panes with
    /// outcomes only (no predictions) are left out.
    pub async fn stored_windows(
        &self,
        model_id: &str,
        model_version: &str,
        from: u32,
        to: u32,
    ) -> Result<Vec<StoredWindow>, StoreError> {
        self.db
            .query(
                // Aliases differ from column names: 18.16 substitutes aliases into WHERE.
                "SELECT toUInt32(window_start) AS start_s, count() AS partial_rows, sum(events) AS total, \
                 toUInt32(window_start) < (SELECT max(toUInt32(window_start) + window_seconds) FROM window_metrics \
                   WHERE model_id = ? AND model_version = ? AND segment = '') AS is_closed \
                 FROM window_partials \
                 WHERE model_id = ? AND model_version = ? AND segment = '' AND state != '' \
                 AND window_start >= toDateTime(?) AND window_start < toDateTime(?) \
                 GROUP BY window_start HAVING sum(events) > 0 ORDER BY window_start",
            )
            .bind(model_id)
            .bind(model_version)
            .bind(model_id)
            .bind(model_version)
            .bind(from)
            .bind(to)
            .fetch_all()
            .await
            .map_err(|e| self.classify(e))
    }

    /// The first and last window start a version has stored partials for (all traffic), if any:
    /// what retention (`clickhouse.retention_days`) has left.
    pub async fn stored_window_span(
        &self,
        model_id: &str,
        model_version: &str,
    ) -> Result<Option<(u32, u32)>, StoreError> {
        let span: WindowSpan = self
            .db
            .query(
                "SELECT toUInt32(min(window_start)) AS first_s, toUInt32(max(window_start)) AS last_s, count() AS n \
                 FROM window_partials WHERE model_id = ? AND model_version = ? AND segment = '' AND events > 0",
            )
            .bind(model_id)
            .bind(model_version)
            .fetch_one()
            .await
            .map_err(|e| self.classify(e))?;
        Ok((span.rows > 0).then_some((span.first, span.last)))
    }

    /// The partial states (with predictions or outcomes) of `segment` of a version's windows
    /// starting in `[from, to)`, by window, then in write order per partition: the input of
    /// capturing a reference from stored traffic.
    pub async fn partials_between(
        &self,
        model_id: &str,
        model_version: &str,
        segment: &str,
        from: u32,
        to: u32,
    ) -> Result<Vec<RangePartial>, StoreError> {
        self.db
            .query(
                "SELECT toUInt32(window_start) AS start_s, events, state FROM window_partials \
                 WHERE model_id = ? AND model_version = ? AND segment = ? AND state != '' \
                 AND window_start >= toDateTime(?) AND window_start < toDateTime(?) \
                 ORDER BY window_start, source_partition, source_end_offset",
            )
            .bind(model_id)
            .bind(model_version)
            .bind(segment)
            .bind(from)
            .bind(to)
            .fetch_all()
            .await
            .map_err(|e| self.classify(e))
    }

    /// Summed counts per (model, version, segment, window), oldest window first. Segment `""`
    /// is all of a version's traffic.
    pub async fn window_count_totals(&self) -> Result<Vec<WindowCountTotal>, StoreError> {
        self.db
            .query(
                // Aliases differ from column names: 18.16 substitutes aliases into WHERE.
                "SELECT model_id, model_version, segment, toUInt32(window_start) AS start_s, sum(events) AS total \
                 FROM window_partials WHERE events > 0 \
                 GROUP BY model_id, model_version, segment, start_s \
                 ORDER BY start_s, model_id, model_version, segment",
            )
            .fetch_all()
            .await
            .map_err(|e| self.classify(e))
    }

    /// Events stored over all models, versions and windows (segment `""` only).
    pub async fn total_events(&self) -> Result<u64, StoreError> {
        self.db
            .query("SELECT toUInt64(sum(events)) FROM window_partials WHERE segment = ''")
            .fetch_one()
            .await
            .map_err(|e| self.classify(e))
    }

    /// Audits lifecycle events in one INSERT; writing an event again replaces its row.
    pub async fn insert_lifecycle_events(&self, rows: &[LifecycleEventRow]) -> Result<(), StoreError> {
        self.insert_rows("lifecycle_events", rows).await
    }

    /// Every audited lifecycle event (one row per event id), oldest first.
    pub async fn lifecycle_events(&self) -> Result<Vec<LifecycleEventRow>, StoreError> {
        self.db
            .query(
                "SELECT event_id, model_id, model_version, stage, traffic_weight, reason, actor, remediation_id, \
                 event_time_ms, event_date, source_partition, source_offset, toUInt32(written_at) \
                 FROM lifecycle_events FINAL ORDER BY event_time_ms, source_partition, source_offset, event_id",
            )
            .fetch_all()
            .await
            .map_err(|e| self.classify(e))
    }

    pub async fn insert_alert_deliveries(&self, rows: &[AlertDeliveryRow]) -> Result<(), StoreError> {
        self.insert_rows("alert_deliveries", rows).await
    }

    /// Every delivery attempt, oldest first.
    pub async fn alert_deliveries(&self) -> Result<Vec<AlertDeliveryRow>, StoreError> {
        self.db
            .query(
                "SELECT delivery_id, receiver, alert_key, state, severity, model_id, model_version, policy, \
                 remediation_id, attempt, outcome, http_status, error, toUInt32(at) \
                 FROM alert_deliveries ORDER BY at, delivery_id, attempt",
            )
            .fetch_all()
            .await
            .map_err(|e| self.classify(e))
    }

    /// Per (model, version): the partition and end (s) of its newest closed window with events,
    /// so a restarted monitor knows since when a version has been quiet.
    pub async fn version_traffic(&self) -> Result<Vec<(String, String, u32, u64)>, StoreError> {
        self.db
            .query(
                "SELECT model_id, model_version, argMax(source_partition, window_start), \
                 toUInt64(max(toUInt32(window_start) + window_seconds)) \
                 FROM window_metrics FINAL WHERE segment = '' AND events > 0 \
                 GROUP BY model_id, model_version",
            )
            .fetch_all()
            .await
            .map_err(|e| self.classify(e))
    }

    /// Versions whose latest lifecycle stage is retired or rolled back: no traffic is expected
    /// of them.
    pub async fn retired_versions(&self) -> Result<Vec<(String, String)>, StoreError> {
        self.db
            .query(
                "SELECT model_id, model_version FROM lifecycle_events FINAL \
                 GROUP BY model_id, model_version \
                 HAVING argMax(stage, event_time_ms) IN ('RETIRED', 'ROLLED_BACK')",
            )
            .fetch_all()
            .await
            .map_err(|e| self.classify(e))
    }

    /// The newest policy check per (model, version, policy) among windows starting at or after
    /// `since` (seconds since the Unix epoch).
    pub async fn latest_verdicts(&self, since: u32) -> Result<Vec<LatestVerdict>, StoreError> {
        self.db
            .query(
                // Aliases differ from column names: 18.16 substitutes aliases into WHERE.
                "SELECT model_id, model_version, policy, toUInt32(max(window_start)) AS last_start, \
                 argMax(verdict, window_start) AS last_verdict, toUInt32(argMax(computed_at, window_start)) AS last_computed \
                 FROM policy_checks FINAL WHERE window_start >= toDateTime(?) \
                 GROUP BY model_id, model_version, policy ORDER BY model_id, model_version, policy",
            )
            .bind(since)
            .fetch_all()
            .await
            .map_err(|e| self.classify(e))
    }

    /// Per (model, version, policy): the newest window with a verdict (not insufficient data)
    /// and the streak there, so a restarted monitor continues the streak and does not decide a
    /// window twice.
    pub async fn latest_decisions(&self) -> Result<Vec<LatestDecision>, StoreError> {
        self.db
            .query(
                // Aliases differ from column names: 18.16 substitutes aliases into WHERE.
                "SELECT model_id, model_version, policy, toUInt32(max(window_start)) AS last_start, \
                 argMax(streak, window_start) AS last_streak, argMax(verdict, window_start) AS last_verdict \
                 FROM policy_checks FINAL WHERE verdict != 'insufficient_data' \
                 GROUP BY model_id, model_version, policy",
            )
            .fetch_all()
            .await
            .map_err(|e| self.classify(e))
    }

    /// (model, version, window start) of the windows from `since` on with a verdict of `policy`
    /// (not insufficient data).
    pub async fn decided_windows(
        &self,
        policy: &str,
        since: u32,
    ) -> Result<Vec<(String, String, u32)>, StoreError> {
        let rows: Vec<ModelVersionWindow> = self
            .db
            .query(
                "SELECT DISTINCT model_id, model_version, toUInt32(window_start) AS ws FROM policy_checks \
                 WHERE policy = ? AND verdict != 'insufficient_data' AND window_start >= toDateTime(?)",
            )
            .bind(policy)
            .bind(since)
            .fetch_all()
            .await
            .map_err(|e| self.classify(e))?;
        Ok(rows.into_iter().map(|r| (r.model_id, r.model_version, r.window_start)).collect())
    }

    /// The performance (all traffic) of every live baseline's own window, by reference id: the
    /// yardstick later windows' accuracy is compared with.
    pub async fn baseline_performance(&self) -> Result<Vec<BaselinePerformance>, StoreError> {
        self.db
            .query(
                "SELECT reference_id, labeled, accuracy, mae FROM window_performance FINAL \
                 WHERE segment = '' AND reference_id = concat('baseline:', model_id, ':', model_version, ':', toString(toUInt32(window_start)))",
            )
            .fetch_all()
            .await
            .map_err(|e| self.classify(e))
    }

    /// The stored verdicts of two versions of a model (a canary and production) for windows
    /// starting at or after `since` (seconds), oldest window first.
    pub async fn window_verdicts(
        &self,
        model_id: &str,
        versions: [&str; 2],
        since: u32,
    ) -> Result<Vec<WindowVerdict>, StoreError> {
        let query = self.db.query(
            "SELECT model_version, toUInt32(window_start) AS ws, policy, verdict FROM policy_checks FINAL \
             WHERE model_id = ? AND model_version IN (?, ?) AND window_start >= toDateTime(?) \
             ORDER BY ws, model_version, policy",
        );
        self.of_versions(query, model_id, versions, since).await
    }

    /// (version, window start) of the windows of two versions of a model whose metrics row is
    /// stored, from `since` on. The monitor stores a window's metrics row last, so a window listed
    /// here has all its rows.
    pub async fn closed_windows_of(
        &self,
        model_id: &str,
        versions: [&str; 2],
        since: u32,
    ) -> Result<Vec<(String, u32)>, StoreError> {
        let query = self.db.query(
            "SELECT DISTINCT model_version, toUInt32(window_start) AS ws FROM window_metrics \
             WHERE model_id = ? AND model_version IN (?, ?) AND segment = '' AND window_start >= toDateTime(?)",
        );
        let rows: Vec<VersionWindow> = self.of_versions(query, model_id, versions, since).await?;
        Ok(rows.into_iter().map(|r| (r.model_version, r.window_start)).collect())
    }

    /// `column` of `table` (`window_metrics` or `window_performance`, a Nullable(Float64) column)
    /// with `samples` (the count behind it) for two versions of a model, all traffic (segment
    /// `""`), windows starting at or after `since`, oldest first. Table and columns go into the
    /// query as names: pass only identifiers from a fixed list.
    pub async fn window_samples(
        &self,
        (table, column, samples): (&str, &str, &str),
        model_id: &str,
        versions: [&str; 2],
        since: u32,
    ) -> Result<Vec<WindowSample>, StoreError> {
        if ![table, column, samples].iter().all(|name| is_valid_identifier(name)) {
            return Err(StoreError::Rejected(clickhouse::error::Error::Custom(format!(
                "not identifiers: {table}.{column}, {samples}"
            ))));
        }
        let query = self.db.query(&format!(
            "SELECT model_version, toUInt32(window_start) AS ws, {column} AS metric_value, toUInt64({samples}) AS metric_samples \
             FROM {table} FINAL WHERE model_id = ? AND model_version IN (?, ?) AND segment = '' \
             AND window_start >= toDateTime(?) ORDER BY ws, model_version"
        ));
        self.of_versions(query, model_id, versions, since).await
    }

    /// Runs a query whose binds are a model, two of its versions and a first window start.
    async fn of_versions<T>(
        &self,
        query: clickhouse::query::Query,
        model_id: &str,
        versions: [&str; 2],
        since: u32,
    ) -> Result<Vec<T>, StoreError>
    where
        T: clickhouse::RowOwned + clickhouse::RowRead,
    {
        query
            .bind(model_id)
            .bind(versions[0])
            .bind(versions[1])
            .bind(since)
            .fetch_all()
            .await
            .map_err(|e| self.classify(e))
    }

    /// Drops the database; used by tests that create one per test.
    pub async fn drop_database(&self) -> Result<(), StoreError> {
        self.execute_ddl(&format!("DROP DATABASE IF EXISTS {}", self.config.database)).await
    }
}

#[cfg(test)]
mod reference_tests {
    #[test]
    fn the_in_use_rule_prefers_ids_without_the_baseline_prefix() {
        assert_eq!(
            super::PREFERENCE[0],
            format!("reference_id NOT LIKE '{}%'", super::BASELINE_REFERENCE_PREFIX)
        );
        assert_eq!(
            super::in_use(),
            "ORDER BY model_id, model_version, reference_id NOT LIKE 'baseline:%' DESC, created_at DESC, reference_id DESC \
             LIMIT 1 BY model_id, model_version"
        );
    }
}
