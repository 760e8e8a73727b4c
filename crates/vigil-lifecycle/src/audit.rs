//! The ClickHouse audit of `vigil lifecycle`: every lifecycle event it applies (the replayed ones
//! too) into `lifecycle_events`, every webhook delivery attempt into `alert_deliveries` (both
//! created by `vigil migrate`, migrations 8 and 9 of `vigil-store`).
//!
//! Senders never wait: rows go through a bounded channel, and a full channel drops the row
//! (counted in `vigil_lifecycle_audit_rows_total{result="dropped"}`), because the audit must not
//! hold up a rollback. The writer inserts in batches and retries while ClickHouse is unreachable;
//! a rejected insert (a schema or data error) is not retried. Lifecycle rows are idempotent
//! (ReplacingMergeTree by event id) and rewritten by every start's replay, so what a crash or an
//! outage loses there comes back; delivery attempts lost that way are lost.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;
use vigil_alerts::audit::DeliveryAttempt;
use vigil_alerts::Message;
use vigil_events::LifecycleEvent;
use vigil_store::{AlertDeliveryRow, LifecycleEventRow, Store};

use crate::metrics::LifecycleMetrics;
use crate::stage_name;

/// The `lifecycle_events` row of an event read at `partition`/`offset` of the lifecycle topic.
pub fn lifecycle_row(
    event: &LifecycleEvent,
    partition: i32,
    offset: i64,
    written_at: u32,
) -> LifecycleEventRow {
    LifecycleEventRow {
        event_id: event.event_id.clone(),
        model_id: event.model_id.clone(),
        model_version: event.model_version.clone(),
        stage: stage_name(event.stage).to_owned(),
        traffic_weight: event.traffic_weight,
        reason: event.reason.clone(),
        actor: event.actor.clone(),
        remediation_id: event.remediation_id.clone(),
        event_time_ms: event.event_time_ms,
        event_date: event.event_time_ms.div_euclid(86_400_000).clamp(0, i64::from(u16::MAX)) as u16,
        source_partition: partition,
        source_offset: offset,
        written_at,
    }
}

/// The `alert_deliveries` row of one attempt. A serving-platform update is recorded with state
/// `traffic`, its idempotency key (the lifecycle event id) as the key, and no policy; a
/// retraining request with state `retrain` and its idempotency key.
pub fn delivery_row(attempt: &DeliveryAttempt) -> AlertDeliveryRow {
    let (alert_key, state, severity, model_version, policy, remediation_id) = match &attempt.message {
        Message::Alert(alert) => (
            alert.key.clone(),
            alert.state.as_str(),
            alert.severity.as_str(),
            alert.model_version.clone(),
            alert.policy.clone(),
            alert.remediation_id.clone(),
        ),
        Message::Traffic(update) => (
            update.event_id.clone(),
            "traffic",
            "info",
            update.model_version().to_owned(),
            String::new(),
            update.changes.iter().find_map(|c| c.remediation_id.clone()),
        ),
        Message::Retrain(request) => (
            request.idempotency_key.clone(),
            "retrain",
            match request.severity.as_str() {
                "critical" => "critical",
                "warning" => "warning",
                _ => "info",
            },
            request.model_version.clone(),
            request.policy.clone(),
            Some(request.remediation_id.clone()),
        ),
    };
    AlertDeliveryRow {
        delivery_id: attempt.delivery_id,
        receiver: attempt.receiver.clone(),
        alert_key,
        state: state.to_owned(),
        severity: severity.to_owned(),
        model_id: attempt.message.model_id().to_owned(),
        model_version,
        policy,
        remediation_id,
        attempt: attempt.attempt,
        outcome: attempt.outcome.as_str().to_owned(),
        http_status: attempt.http_status.unwrap_or(0),
        error: attempt.error.clone().unwrap_or_default(),
        at: (attempt.at_ms.max(0) / 1000) as u32,
    }
}

#[derive(Debug, Clone, PartialEq)]
pub enum AuditRow {
    Lifecycle(LifecycleEventRow),
    Delivery(AlertDeliveryRow),
    Lineage(LineageRow),
}

impl AuditRow {
    fn table(&self) -> &'static str {
        match self {
            AuditRow::Lifecycle(_) => "lifecycle_events",
            AuditRow::Delivery(_) => "alert_deliveries",
            AuditRow::Lineage(_) => "lifecycle_lineage",
        }
    }
}

/// A `lifecycle_lineage` row: the lineage one event recorded (`vigil-store`'s migration 11).
#[derive(Debug, Clone, PartialEq, clickhouse::Row, serde::Serialize, serde::Deserialize)]
pub struct LineageRow {
    pub model_id: String,
    pub model_version: String,
    pub event_id: String,
    pub actor: String,
    /// The lineage as the API shows it (JSON).
    pub lineage: String,
    pub complete: u8,
    pub event_time_ms: i64,
    /// Seconds since the Unix epoch.
    pub written_at: u32,
}

/// The lineage row of an event that carries lineage.
pub fn lineage_row(event: &LifecycleEvent, written_at: u32) -> Option<LineageRow> {
    let lineage = event.lineage.as_deref()?;
    Some(LineageRow {
        model_id: event.model_id.clone(),
        model_version: event.model_version.clone(),
        event_id: event.event_id.clone(),
        actor: event.actor.clone(),
        lineage: serde_json::to_string(&crate::view::lineage_view(lineage)).unwrap_or_default(),
        complete: u8::from(lineage.is_complete()),
        event_time_ms: event.event_time_ms,
        written_at,
    })
}

/// The sending side; cheap to clone, never blocks.
#[derive(Clone)]
pub struct Auditor {
    rows: mpsc::Sender<AuditRow>,
    metrics: LifecycleMetrics,
}

impl Auditor {
    pub fn send(&self, row: AuditRow) {
        let table = row.table();
        if self.rows.try_send(row).is_err() {
            self.metrics.audit_rows.with_label_values(&[table, "dropped"]).inc();
        }
    }

    pub fn events(&self, events: &[crate::kafka::Logged]) {
        let now = (crate::now_ms() / 1000) as u32;
        for logged in events {
            self.send(AuditRow::Lifecycle(lifecycle_row(
                &logged.event,
                logged.partition,
                logged.offset,
                now,
            )));
            if let Some(row) = lineage_row(&logged.event, now) {
                self.send(AuditRow::Lineage(row));
            }
        }
    }
}

/// Inserts lineage rows; network trouble is retryable, anything else is not (as `vigil-store`
/// classifies its own inserts).
async fn insert_lineage(
    config: &vigil_store::StoreConfig,
    rows: &[LineageRow],
) -> Result<(), vigil_store::StoreError> {
    let classify = |error: clickhouse::error::Error| match error {
        clickhouse::error::Error::Network(_) | clickhouse::error::Error::TimedOut => {
            vigil_store::StoreError::Unreachable { url: config.url.clone(), source: error }
        }
        other => vigil_store::StoreError::Rejected(other),
    };
    let client = crate::kpi::store::client(config);
    let mut insert = client.insert::<LineageRow>("lifecycle_lineage").await.map_err(classify)?;
    for row in rows {
        insert.write(row).await.map_err(classify)?;
    }
    insert.end().await.map_err(classify)
}

/// Whether ClickHouse answered the writer's last request (for `/health/readyz`).
#[derive(Clone, Default)]
pub struct StoreHealth(Arc<AtomicBool>);

impl StoreHealth {
    pub fn is_up(&self) -> bool {
        self.0.load(Ordering::Relaxed)
    }

    fn set(&self, up: bool) {
        self.0.store(up, Ordering::Relaxed);
    }
}

/// Rows per INSERT at most.
const BATCH: usize = 1000;
/// How long a batch waits for more rows once it has one.
const LINGER: Duration = Duration::from_millis(500);
/// At shutdown, how long the last rows may take to land.
const FINAL_FLUSH: Duration = Duration::from_secs(5);

/// Starts the writer: it runs the migrations (retrying while ClickHouse is unreachable), then
/// writes batches until `shutdown`, and flushes what it holds then (within a few seconds).
pub fn start(
    store: Store,
    capacity: usize,
    metrics: LifecycleMetrics,
    health: StoreHealth,
    shutdown: CancellationToken,
) -> (Auditor, tokio::task::JoinHandle<()>) {
    let (tx, rx) = mpsc::channel(capacity);
    let writer = Writer { store, metrics: metrics.clone(), health };
    let task = tokio::spawn(writer.run(rx, shutdown));
    (Auditor { rows: tx, metrics }, task)
}

struct Writer {
    store: Store,
    metrics: LifecycleMetrics,
    health: StoreHealth,
}

impl Writer {
    async fn run(self, mut rows: mpsc::Receiver<AuditRow>, shutdown: CancellationToken) {
        if !self.migrate(&shutdown).await {
            // Rows are still taken (and counted as dropped) so senders never see a full channel
            // for a reason that cannot pass.
            while let Some(row) =
                tokio::select! { _ = shutdown.cancelled() => None, row = rows.recv() => row }
            {
                self.count(row.table(), "dropped", 1);
            }
            return;
        }
        loop {
            let first = tokio::select! {
                biased;
                _ = shutdown.cancelled() => break,
                row = rows.recv() => match row { Some(row) => row, None => break },
            };
            let mut batch = vec![first];
            let deadline = tokio::time::Instant::now() + LINGER;
            while batch.len() < BATCH {
                match tokio::time::timeout_at(deadline, rows.recv()).await {
                    Ok(Some(row)) => batch.push(row),
                    Ok(None) | Err(_) => break,
                }
            }
            self.write(batch, &shutdown).await;
        }
        // Shutdown: what is queued gets one bounded try.
        let mut batch = Vec::new();
        while let Ok(row) = rows.try_recv() {
            batch.push(row);
        }
        if !batch.is_empty() {
            let never = CancellationToken::new();
            if tokio::time::timeout(FINAL_FLUSH, self.write(batch, &never)).await.is_err() {
                tracing::warn!("audit rows not written before shutdown");
            }
        }
    }

    /// Whether the schema is there; retries while ClickHouse is unreachable.
    async fn migrate(&self, shutdown: &CancellationToken) -> bool {
        let mut wait = Duration::from_millis(500);
        loop {
            match self.store.migrate().await {
                Ok(_) => {
                    self.health.set(true);
                    return true;
                }
                Err(error) if error.is_retryable() => {
                    self.health.set(false);
                    tracing::warn!(%error, ?wait, "audit: clickhouse unreachable, retrying");
                }
                Err(error) => {
                    self.health.set(false);
                    tracing::error!(%error, "audit: clickhouse refused the migrations; lifecycle audit is off");
                    return false;
                }
            }
            tokio::select! {
                _ = shutdown.cancelled() => return false,
                _ = tokio::time::sleep(wait) => {}
            }
            wait = (wait * 2).min(Duration::from_secs(30));
        }
    }

    /// Inserts each table's rows, retrying network trouble until `shutdown`.
    async fn write(&self, batch: Vec<AuditRow>, shutdown: &CancellationToken) {
        let (mut lifecycle, mut deliveries, mut lineage) = (Vec::new(), Vec::new(), Vec::new());
        for row in batch {
            match row {
                AuditRow::Lifecycle(row) => lifecycle.push(row),
                AuditRow::Delivery(row) => deliveries.push(row),
                AuditRow::Lineage(row) => lineage.push(row),
            }
        }
        let store = &self.store;
        self.insert("lifecycle_events", lifecycle.len(), shutdown, || {
            store.insert_lifecycle_events(&lifecycle)
        })
        .await;
        self.insert("alert_deliveries", deliveries.len(), shutdown, || {
            store.insert_alert_deliveries(&deliveries)
        })
        .await;
        let config = store.config();
        self.insert("lifecycle_lineage", lineage.len(), shutdown, || insert_lineage(config, &lineage)).await;
    }

    async fn insert<F, Fut>(
        &self,
        table: &'static str,
        rows: usize,
        shutdown: &CancellationToken,
        mut insert: F,
    ) where
        F: FnMut() -> Fut,
        Fut: std::future::Future<Output = Result<(), vigil_store::StoreError>>,
    {
        if rows == 0 {
            return;
        }
        let mut wait = Duration::from_millis(200);
        loop {
            match insert().await {
                Ok(()) => {
                    self.health.set(true);
                    self.count(table, "written", rows);
                    return;
                }
                Err(error) if error.is_retryable() => {
                    self.health.set(false);
                    tracing::warn!(%error, table, rows, ?wait, "audit insert failed, retrying");
                }
                Err(error) => {
                    tracing::error!(%error, table, rows, "audit insert refused; rows dropped");
                    self.count(table, "dropped", rows);
                    return;
                }
            }
            tokio::select! {
                _ = shutdown.cancelled() => {
                    self.count(table, "dropped", rows);
                    return;
                }
                _ = tokio::time::sleep(wait) => {}
            }
            wait = (wait * 2).min(Duration::from_secs(10));
        }
    }

    fn count(&self, table: &str, result: &str, rows: usize) {
        if rows > 0 {
            self.metrics.audit_rows.with_label_values(&[table, result]).inc_by(rows as u64);
        }
    }
}

#[cfg(test)]
mod tests {
    /// RowBinary is positional: `lifecycle_lineage`'s columns are `LineageRow`'s fields, in order,
    /// on old and current servers.
    #[test]
    fn the_lineage_table_has_the_row_fields_in_order() {
        use clickhouse::Row;
        for version in
            [vigil_store::ServerVersion { major: 18, minor: 16 }, vigil_store::ServerVersion::MODERN]
        {
            let options = vigil_store::SchemaOptions { database: "vigil".into(), retention_days: Some(30) };
            let migrations = vigil_store::migrations(version, &options);
            let sql = &migrations.iter().find(|m| m.name == "lifecycle_lineage").unwrap().sql;
            let columns: Vec<&str> = sql
                .lines()
                .skip(1)
                .take_while(|l| !l.starts_with(')'))
                .map(|l| l.split_whitespace().next().unwrap())
                .collect();
            assert_eq!(columns, super::LineageRow::COLUMN_NAMES, "{sql}");
        }
    }

    #[test]
    fn only_events_with_lineage_get_a_lineage_row() {
        let mut event =
            crate::registry::tests::lifecycle("e1", "fraud", "v1", vigil_events::Stage::Candidate, None);
        assert_eq!(super::lineage_row(&event, 5), None);
        event.lineage =
            Some(Box::new(vigil_events::Lineage { team: Some("risk".into()), ..Default::default() }));
        let row = super::lineage_row(&event, 5).unwrap();
        assert_eq!((row.complete, row.lineage.as_str(), row.actor.as_str()), (0, r#"{"team":"risk"}"#, "ci"));
    }

    use vigil_alerts::audit::AttemptOutcome;
    use vigil_alerts::{StageChange, TrafficUpdate};
    use vigil_events::Stage;

    use super::*;

    #[test]
    fn row_from_event() {
        let event = LifecycleEvent {
            event_id: "r1:ROLLED_BACK:v2".into(),
            model_id: "fraud".into(),
            model_version: "v2".into(),
            stage: Stage::RolledBack,
            traffic_weight: None,
            reason: "canary rolled back".into(),
            actor: "vigil".into(),
            remediation_id: Some("r1".into()),
            event_time_ms: 1_795_727_340_000,
            kind: vigil_events::EventKind::StageChange,
            lineage: None,
        };
        let row = lifecycle_row(&event, 2, 41, 1_795_727_341);
        assert_eq!((row.stage.as_str(), row.event_date, row.source_offset), ("ROLLED_BACK", 20_783, 41));
    }

    #[test]
    fn a_platform_delivery_is_recorded_by_its_idempotency_key() {
        let update = TrafficUpdate {
            model_id: "fraud".into(),
            event_id: "r1:ROLLED_BACK:v2".into(),
            production: Some("v1".into()),
            canary: None,
            changes: vec![StageChange {
                event_id: "r1:ROLLED_BACK:v2".into(),
                model_id: "fraud".into(),
                model_version: "v2".into(),
                stage: "ROLLED_BACK".into(),
                traffic_weight: None,
                reason: "x".into(),
                actor: "vigil".into(),
                remediation_id: Some("r1".into()),
                event_time_ms: 0,
                kind: "STAGE_CHANGE".into(),
                lineage: None,
            }],
            at_ms: 0,
        };
        let row = delivery_row(&DeliveryAttempt {
            delivery_id: 3,
            receiver: "serving".into(),
            message: Message::Traffic(update),
            attempt: 2,
            outcome: AttemptOutcome::Retrying,
            http_status: None,
            error: Some("timed out".into()),
            at_ms: 1_795_727_340_999,
        });
        assert_eq!(
            (
                row.alert_key.as_str(),
                row.state.as_str(),
                row.model_version.as_str(),
                row.remediation_id.as_deref()
            ),
            ("r1:ROLLED_BACK:v2", "traffic", "v2", Some("r1"))
        );
        assert_eq!((row.outcome.as_str(), row.http_status, row.at), ("retrying", 0, 1_795_727_340));
    }
}
