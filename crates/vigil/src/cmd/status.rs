//! `vigil status`: models, versions and stages with their latest closed window, in a terminal.

use std::collections::BTreeMap;
use std::time::Duration;

use anyhow::Context;
use vigil_store::Store;

use crate::config::Config;

#[derive(clap::Args)]
pub struct Args {
    /// How long to wait for the lifecycle log replay before showing stages as unknown.
    #[arg(long, default_value = "10s", value_parser = super::parse_duration)]
    registry_timeout: Duration,
}

impl Args {
    /// For callers inside vigil (the quickstart): a short replay wait.
    pub fn quick() -> Self {
        Self { registry_timeout: Duration::from_secs(5) }
    }
}

#[derive(Default)]
struct Row {
    stage: Option<String>,
    window_start: Option<u32>,
    events: u64,
    latency_p99_ms: Option<f64>,
    score_mean: Option<f64>,
    drifted: usize,
    tested: usize,
    /// Whether the latest window was compared with a reference.
    has_reference: bool,
    /// Verdicts of the latest window, by policy.
    verdicts: BTreeMap<String, String>,
    /// Accuracy and outcomes of the latest window with outcomes.
    accuracy: Option<(u32, f64, u64)>,
}

impl Row {
    /// The worst verdict of the latest window: a breach names its policies.
    fn verdict(&self) -> String {
        let breached: Vec<&str> =
            self.verdicts.iter().filter(|(_, v)| v.as_str() == "breach").map(|(p, _)| p.as_str()).collect();
        if !breached.is_empty() {
            format!("breach ({})", breached.join(", "))
        } else if self.verdicts.values().any(|v| v == "healthy") {
            "healthy".into()
        } else if self.verdicts.is_empty() {
            "-".into()
        } else {
            "insufficient_data".into()
        }
    }
}

pub async fn run(config: &Config, args: Args) -> anyhow::Result<()> {
    let store = Store::new(config.store_config());
    // Idempotent: a fresh or older database gets the tables this build reads.
    store.migrate().await.with_context(|| {
        format!("preparing {} (is ClickHouse running? see deploy/local/up)", config.clickhouse.url)
    })?;
    let mut rows: BTreeMap<(String, String), Row> = BTreeMap::new();

    let registry = tokio::time::timeout(
        args.registry_timeout,
        vigil_lifecycle::kafka::replay(&config.lifecycle_settings()),
    )
    .await;
    let registry_note = match registry {
        Ok(Ok((registry, _))) => {
            for (model, state) in registry.models() {
                for (version, v) in &state.versions {
                    rows.entry((model.to_owned(), version.clone())).or_default().stage =
                        Some(format!("{:?}", v.stage).to_uppercase());
                }
            }
            None
        }
        Ok(Err(error)) => Some(format!("stages unknown: {error}")),
        Err(_) => Some(format!(
            "stages unknown: replaying {} took over {:?}",
            config.topics.lifecycle, args.registry_timeout
        )),
    };

    let context =
        || format!("reading {} (is ClickHouse running? see deploy/local/up)", config.clickhouse.url);
    for m in store.window_metrics().await.with_context(context)?.into_iter().filter(|m| m.segment.is_empty())
    {
        let row = rows.entry((m.model_id.clone(), m.model_version.clone())).or_default();
        if row.window_start.is_none_or(|w| m.window_start > w) {
            (row.window_start, row.events, row.latency_p99_ms, row.score_mean) =
                (Some(m.window_start), m.events, m.latency_p99_ms, m.score_mean);
            row.has_reference = !m.reference_id.is_empty();
        }
    }
    for d in store.feature_drift().await.with_context(context)?.into_iter().filter(|d| d.segment.is_empty()) {
        if let Some(row) = rows.get_mut(&(d.model_id.clone(), d.model_version.clone())) {
            if row.window_start == Some(d.window_start) {
                row.tested += 1;
                row.drifted += usize::from(d.drifted == 1);
            }
        }
    }
    for c in store.policy_checks().await.with_context(context)? {
        if let Some(row) = rows.get_mut(&(c.model_id.clone(), c.model_version.clone())) {
            if row.window_start == Some(c.window_start) {
                row.verdicts.insert(c.policy, c.verdict);
            }
        }
    }
    for p in store
        .window_performance()
        .await
        .with_context(context)?
        .into_iter()
        .filter(|p| p.segment.is_empty() && p.labeled > 0)
    {
        if let (Some(row), Some(accuracy)) =
            (rows.get_mut(&(p.model_id.clone(), p.model_version.clone())), p.accuracy)
        {
            if row.accuracy.is_none_or(|(w, _, _)| p.window_start > w) {
                row.accuracy = Some((p.window_start, accuracy, p.labeled));
            }
        }
    }

    if rows.is_empty() {
        println!("no models yet: nothing in {} and no closed window in ClickHouse", config.topics.lifecycle);
    } else {
        println!(
            "{:<20} {:<12} {:<12} {:<20} {:>8} {:>9} {:>7} {:>9} {:>15}  policy",
            "model",
            "version",
            "stage",
            "latest window (UTC)",
            "events",
            "p99 ms",
            "score",
            "drifted",
            "accuracy (n)"
        );
        for ((model, version), r) in &rows {
            let opt = |v: Option<f64>, digits: usize| v.map_or("-".to_owned(), |v| format!("{v:.digits$}"));
            println!(
                "{:<20} {:<12} {:<12} {:<20} {:>8} {:>9} {:>7} {:>9} {:>15}  {}",
                model,
                version,
                r.stage.as_deref().unwrap_or("-"),
                r.window_start.map_or("-".to_owned(), super::quickstart::format_utc),
                r.events,
                opt(r.latency_p99_ms, 2),
                opt(r.score_mean, 3),
                match (r.tested, r.has_reference) {
                    (0, false) if r.window_start.is_some() => "no ref".to_owned(),
                    (0, _) => "-".to_owned(),
                    _ => format!("{}/{}", r.drifted, r.tested),
                },
                r.accuracy.map_or("-".to_owned(), |(_, a, n)| format!("{a:.3} ({n})")),
                r.verdict(),
            );
        }
    }
    if let Some(note) = registry_note {
        eprintln!("note: {note}");
    }
    Ok(())
}
