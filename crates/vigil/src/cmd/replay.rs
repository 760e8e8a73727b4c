//! `vigil replay`: rebuilds the closed windows from the retained topics (or a file written by
//! `vigil replay --export`) and diffs their rows against ClickHouse. Exit code 0 when identical,
//! 1 when anything differs, 2 on an error. The engine is `vigil_monitor::replay`.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::fs::File;
use std::io::{BufReader, BufWriter};
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use vigil_monitor::replay::{
    self, Comparison, LogMessage, PartitionExtent, Replay, ReplaySettings, Selection, StoredWindow,
};
use vigil_monitor::rows::{ReferenceRef, RowContext, RowKey};
use vigil_monitor::{KafkaSettings, Source, WindowState};
use vigil_store::{FeatureDriftRow, Store, WindowPerformanceRow};

use crate::config::Config;

#[derive(clap::Args)]
pub struct Args {
    /// Only this model's windows.
    #[arg(long)]
    model: Option<String>,
    /// Only this model version's windows.
    #[arg(long)]
    version: Option<String>,
    /// Only windows starting at or after this time: UTC as 2025-11-24T16:00:00Z, or seconds
    /// since the Unix epoch.
    #[arg(long, value_parser = parse_time)]
    from: Option<u32>,
    /// Only windows starting before this time.
    #[arg(long, value_parser = parse_time)]
    to: Option<u32>,
    /// Replay from a file written by `--export` instead of the topics.
    #[arg(long, value_name = "FILE", conflicts_with = "export")]
    input: Option<PathBuf>,
    /// Write the retained messages of topics.predictions and topics.outcomes to FILE, and
    /// compare nothing.
    #[arg(long, value_name = "FILE")]
    export: Option<PathBuf>,
    /// How many differences to print.
    #[arg(long, default_value_t = 20)]
    max_differences: usize,
}

/// How long the broker may send nothing before the read fails.
const STALL: Duration = Duration::from_secs(30);

/// 0 when identical (or exported), 1 when anything differs, 2 on an error.
pub fn exit_code(result: anyhow::Result<bool>) -> ExitCode {
    match result {
        Ok(true) => ExitCode::SUCCESS,
        Ok(false) => ExitCode::from(1),
        Err(error) => {
            eprintln!("error: {error:#}");
            ExitCode::from(2)
        }
    }
}

/// Returns whether every compared window is identical.
pub async fn run(config: &Config, args: Args) -> anyhow::Result<bool> {
    let settings = config.monitor_settings();
    let topics = [settings.predictions_topic.clone(), settings.outcomes_topic.clone()];
    if let Some(path) = &args.export {
        export(&settings.kafka, &topics, path).await?;
        return Ok(true);
    }
    let store = Store::new(config.store_config());
    let context =
        || format!("reading {} (is ClickHouse running? see deploy/local/up)", config.clickhouse.url);
    let mut positions = [HashMap::new(), HashMap::new()];
    for (stored, topic) in positions.iter_mut().zip(&topics) {
        *stored = store.stored_positions(topic).await.with_context(context)?;
    }
    let selection =
        Selection { model: args.model.clone(), version: args.version.clone(), from: args.from, to: args.to };
    let mut engine = Replay::new(ReplaySettings::of(&settings), selection.clone());
    let mut progress = Progress::new();
    let (origin, beyond) = match &args.input {
        Some(path) => {
            (path.display().to_string(), replay_file(path, &topics, &positions, &mut engine, &mut progress)?)
        }
        None => (
            "kafka".to_owned(),
            replay_topics(&settings.kafka, &topics, &positions, &mut engine, &mut progress).await?,
        ),
    };
    let replayed = engine.finish().context("merging replayed window states")?;
    let c = &replayed.counts;
    eprintln!(
        "replay: {} messages from {origin} in {:.1} s ({} predictions, {} outcomes, {} undecodable; {} late events, {} outcomes matched); \
         {beyond} past the stored positions left out",
        c.messages,
        progress.started.elapsed().as_secs_f64(),
        c.predictions,
        c.outcomes,
        c.undecodable,
        c.late_events,
        c.join.matched,
    );

    let stored_metrics: Vec<_> = store
        .window_metrics()
        .await
        .with_context(context)?
        .into_iter()
        .filter(|m| selection.contains(&m.model_id, &m.model_version, m.window_start))
        .collect();
    let key_of = |model: &str, version: &str, segment: &str, window_start: u32| RowKey {
        model_id: model.to_owned(),
        model_version: version.to_owned(),
        segment: segment.to_owned(),
        window_start,
    };
    let stored_performance: HashMap<RowKey, WindowPerformanceRow> = store
        .window_performance()
        .await
        .with_context(context)?
        .into_iter()
        .map(|p| (key_of(&p.model_id, &p.model_version, &p.segment, p.window_start), p))
        .collect();
    let mut stored_drift: HashMap<RowKey, Vec<FeatureDriftRow>> = HashMap::new();
    for d in store.feature_drift().await.with_context(context)? {
        stored_drift
            .entry(key_of(&d.model_id, &d.model_version, &d.segment, d.window_start))
            .or_default()
            .push(d);
    }
    // The reference each stored row names, in use or since replaced (by an upload, say).
    let mut references: HashMap<String, WindowState> = HashMap::new();
    let mut notes = Vec::new();
    let named: BTreeSet<&str> =
        stored_metrics.iter().map(|m| m.reference_id.as_str()).filter(|id| !id.is_empty()).collect();
    for id in named {
        let Some(reference) = store.reference(id).await.with_context(context)? else { continue };
        let state = WindowState::decode(&reference.state)
            .with_context(|| format!("reference {id} does not parse"))?;
        if !vigil_monitor::reference::matches_content_hash(&reference.state, &reference.content_hash) {
            let hash = vigil_monitor::reference::state_content_hash(&state)?;
            notes.push(format!(
                "reference {id} does not match its content hash ({} stored, {hash} computed)",
                reference.content_hash
            ));
        }
        references.insert(reference.reference_id, state);
    }

    let config_hash = settings.config_hash();
    let drift_policy = replay::monitor_drift_policy();
    let ctx_for = |model_id: &str| RowContext {
        window_seconds: settings.windows.for_model(model_id).length,
        config_hash: &config_hash,
        positive_label: &settings.positive_label,
        drift_policy: &drift_policy,
        computed_at: 0,
    };
    let mut comparison = Comparison::new();
    let (mut not_covered, mut missing_references, mut other_configs) =
        (0u64, BTreeSet::new(), BTreeSet::new());
    let mut stored_keys = BTreeSet::new();
    for m in &stored_metrics {
        let key = key_of(&m.model_id, &m.model_version, &m.segment, m.window_start);
        stored_keys.insert(key.clone());
        let coverage = replayed.coverage(m.source_partition as i32);
        if m.window_start < coverage.metrics_from {
            not_covered += 1;
            continue;
        }
        if m.config_hash != config_hash {
            other_configs.insert(m.config_hash.clone());
        }
        let reference = match references.get(&m.reference_id) {
            Some(state) => Some(ReferenceRef { id: &m.reference_id, state }),
            None if m.reference_id.is_empty() => None,
            None => {
                missing_references.insert(m.reference_id.clone());
                None
            }
        };
        let recomputed = replayed
            .windows
            .get(&key)
            .map(|w| replay::window_rows(&ctx_for(&key.model_id), &key, w, reference.as_ref()));
        let stored = StoredWindow {
            metrics: m,
            performance: stored_performance.get(&key),
            drift: stored_drift.get(&key).map_or(&[], Vec::as_slice),
        };
        comparison.window(&key, stored, recomputed.as_ref(), m.window_start >= coverage.performance_from);
    }
    let (mut not_stored, mut still_open) = (0, 0);
    for (key, window) in
        replayed.windows.iter().filter(|(key, w)| w.state.events > 0 && !stored_keys.contains(*key))
    {
        if replayed.closed_by_watermark(
            window.partition,
            vigil_monitor::Window { start: key.window_start, length: window.length },
        ) {
            not_stored += 1;
        } else {
            still_open += 1;
        }
    }

    println!("{:<20} {:>8} {:>10} {:>10}", "table", "windows", "identical", "differing");
    for (table, tally) in &comparison.tallies {
        println!("{table:<20} {:>8} {:>10} {:>10}", tally.compared, tally.identical, tally.differing);
    }
    if !comparison.is_identical() {
        let total = comparison.differences.len();
        println!(
            "differences: {total}{}",
            if total > args.max_differences {
                format!(" (the first {})", args.max_differences)
            } else {
                String::new()
            }
        );
        for d in comparison.differences.iter().take(args.max_differences) {
            let feature = d.feature.as_deref().map(|f| format!(" feature {f}")).unwrap_or_default();
            println!(
                "  {} {}{feature} {}: stored {}, recomputed {}",
                d.table,
                show_key(&d.key),
                d.column,
                d.stored,
                d.recomputed
            );
        }
    }
    if not_covered > 0 {
        notes.push(format!("{not_covered} stored windows skipped: their partition's log no longer starts at offset 0 (retention), so they cannot be rebuilt whole"));
    }
    if !missing_references.is_empty() {
        notes.push(format!(
            "references named by stored rows but not in reference_profiles_v2: {missing_references:?}"
        ));
    }
    if !other_configs.is_empty() {
        notes.push(format!(
            "stored rows were computed under configuration hash(es) {other_configs:?}, this replay under {config_hash}: run it with the monitor's configuration"
        ));
    }
    if still_open > 0 {
        notes.push(format!("{still_open} windows rebuilt from the log are still open (the watermark has not passed them), as in the monitor"));
    }
    if not_stored > 0 {
        notes.push(format!(
            "{not_stored} windows the log's watermark has passed have no stored row: the monitor has not closed them (yet; after a crash it \
             closes them when their partition gets traffic again)"
        ));
    }
    if stored_metrics.is_empty() {
        notes.push("no closed window in ClickHouse matches the selection: nothing was compared".to_owned());
    }
    for note in &notes {
        eprintln!("note: {note}");
    }
    let windows = comparison.tallies[0].1.compared;
    if comparison.is_identical() {
        println!("identical: {windows} closed windows match what ClickHouse stores");
    } else {
        let differing = comparison.differences.iter().map(|d| &d.key).collect::<BTreeSet<_>>().len();
        println!("differs: {differing} of {windows} closed windows");
    }
    Ok(comparison.is_identical())
}

/// `model/version/segment window-start`, the segment `(all)` for all traffic.
fn show_key(key: &RowKey) -> String {
    let segment = if key.segment.is_empty() { "(all)" } else { key.segment.as_str() };
    format!(
        "{}/{}/{segment} window {} ({})",
        key.model_id,
        key.model_version,
        super::quickstart::format_utc(key.window_start),
        key.window_start
    )
}

fn source_of(topics: &[String; 2], topic: &str) -> Option<Source> {
    if topic == topics[0] {
        Some(Source::Predictions)
    } else if topic == topics[1] {
        Some(Source::Outcomes)
    } else {
        None
    }
}

fn slot(source: Source) -> usize {
    usize::from(source == Source::Outcomes)
}

async fn extents(kafka: &KafkaSettings, topics: &[String; 2]) -> anyhow::Result<Vec<PartitionExtent>> {
    let (kafka, names) = (kafka.clone(), topics.clone());
    tokio::task::spawn_blocking(move || replay::log_extents(&kafka, &[&names[0], &names[1]]))
        .await?
        .context("reading the topics' extents (is the broker running? see deploy/local/up)")
}

/// Feeds the retained topics up to the stored positions; returns how many retained messages lie
/// past them (not stored yet, so not in any stored row).
async fn replay_topics(
    kafka: &KafkaSettings,
    topics: &[String; 2],
    positions: &[HashMap<u32, i64>; 2],
    engine: &mut Replay,
    progress: &mut Progress,
) -> anyhow::Result<u64> {
    let mut ends = HashMap::new();
    let mut ranges = Vec::new();
    let mut beyond = 0;
    for extent in extents(kafka, topics).await? {
        let source = source_of(topics, &extent.topic).expect("extents of the two topics");
        let stored = positions[slot(source)].get(&(extent.partition as u32)).copied().unwrap_or(0);
        let end = extent.end.min(stored).max(extent.start);
        beyond += (extent.end - end).max(0) as u64;
        engine.log_start(source, extent.partition, extent.start);
        if end == extent.start {
            engine.end_of(source, extent.partition);
            continue;
        }
        ends.insert((source, extent.partition), end);
        ranges.push(PartitionExtent { end, ..extent });
    }
    replay::read_retained(kafka, &ranges, STALL, |m| {
        let source = source_of(topics, m.topic).expect("only the two topics are assigned");
        engine.push(LogMessage {
            source,
            partition: m.partition,
            offset: m.offset,
            timestamp_ms: m.timestamp_ms,
            payload: m.payload,
        });
        if ends.get(&(source, m.partition)).is_some_and(|end| m.offset + 1 >= *end) {
            engine.end_of(source, m.partition);
        }
        progress.tick();
    })
    .await
    .context("reading the topics")?;
    Ok(beyond)
}

/// Feeds an exported file's messages up to the stored positions; returns how many lie past them.
fn replay_file(
    path: &Path,
    topics: &[String; 2],
    positions: &[HashMap<u32, i64>; 2],
    engine: &mut Replay,
    progress: &mut Progress,
) -> anyhow::Result<u64> {
    let context = || format!("reading {}", path.display());
    let mut input = BufReader::with_capacity(1 << 20, File::open(path).with_context(context)?);
    replay::read_header(&mut input).with_context(context)?;
    let mut beyond = 0;
    while let Some(record) = replay::read_record(&mut input).with_context(context)? {
        let Some(source) = source_of(topics, &record.topic) else {
            bail!(
                "{}: holds topic {:?}, which is neither topics.predictions {:?} nor topics.outcomes {:?}",
                path.display(),
                record.topic,
                topics[0],
                topics[1]
            );
        };
        if positions[slot(source)]
            .get(&(record.partition as u32))
            .is_none_or(|stored| record.offset >= *stored)
        {
            beyond += 1;
            continue;
        }
        engine.push(LogMessage {
            source,
            partition: record.partition,
            offset: record.offset,
            timestamp_ms: record.timestamp_ms,
            payload: &record.payload,
        });
        progress.tick();
    }
    Ok(beyond)
}

/// Writes every retained message of both topics to `path`.
async fn export(kafka: &KafkaSettings, topics: &[String; 2], path: &Path) -> anyhow::Result<()> {
    let context = || format!("writing {}", path.display());
    let extents = extents(kafka, topics).await?;
    let mut out = BufWriter::with_capacity(1 << 20, File::create(path).with_context(context)?);
    replay::write_header(&mut out).with_context(context)?;
    let mut progress = Progress::new();
    let mut failed = None;
    replay::read_retained(kafka, &extents, STALL, |m| {
        if failed.is_none() {
            failed = replay::write_record(&mut out, &m).err();
        }
        progress.tick();
    })
    .await
    .context("reading the topics")?;
    if let Some(error) = failed {
        return Err(error).with_context(context);
    }
    out.into_inner().map_err(|e| e.into_error()).and_then(|file| file.sync_all()).with_context(context)?;
    let retained: BTreeMap<&str, i64> = extents.iter().fold(BTreeMap::new(), |mut m, e| {
        *m.entry(e.topic.as_str()).or_default() += e.end - e.start;
        m
    });
    eprintln!(
        "exported {} messages ({retained:?}) to {} in {:.1} s",
        progress.messages,
        path.display(),
        progress.started.elapsed().as_secs_f64()
    );
    Ok(())
}

/// Messages read so far, reported on stderr every few seconds.
struct Progress {
    started: Instant,
    reported: Instant,
    messages: u64,
}

impl Progress {
    fn new() -> Self {
        let now = Instant::now();
        Self { started: now, reported: now, messages: 0 }
    }

    fn tick(&mut self) {
        self.messages += 1;
        if self.messages.is_multiple_of(4096) && self.reported.elapsed() >= Duration::from_secs(2) {
            self.reported = Instant::now();
            let rate = self.messages as f64 / self.started.elapsed().as_secs_f64();
            eprintln!("replay: {} messages read ({rate:.0} messages/s)", self.messages);
        }
    }
}

/// Seconds since the Unix epoch, from themselves or from a UTC time such as
/// `2025-11-24T16:00:00Z` (also with a space, without seconds, or a date alone).
pub(crate) fn parse_time(text: &str) -> Result<u32, String> {
    let text = text.trim();
    if let Ok(seconds) = text.parse::<u32>() {
        return Ok(seconds);
    }
    let bad =
        || format!("{text:?} is not a UTC time like 2025-11-24T16:00:00Z, nor seconds since the Unix epoch");
    let utc = text.strip_suffix('Z').or_else(|| text.strip_suffix("+00:00")).unwrap_or(text);
    let (date, time) = utc.split_once(['T', ' ']).unwrap_or((utc, "00:00"));
    // Fractions of a second are cut off.
    let time = time.split('.').next().unwrap_or(time);
    let numbers = |s: &str, sep: char| {
        s.split(sep).map(|n| n.parse::<i64>().map_err(|_| bad())).collect::<Result<Vec<_>, _>>()
    };
    let (date, time) = (numbers(date, '-')?, numbers(time, ':')?);
    let ([year, month, day], [hour, minute, rest @ ..]) = (date.as_slice(), time.as_slice()) else {
        return Err(bad());
    };
    let second = match rest {
        [] => 0,
        [s] => *s,
        _ => return Err(bad()),
    };
    if !(1..=12).contains(month) || !(1..=31).contains(day) || *hour > 23 || *minute > 59 || second > 60 {
        return Err(bad());
    }
    // Days from the civil date (H. Hinnant's algorithm).
    let y = if *month <= 2 { year - 1 } else { *year };
    let era = y.div_euclid(400);
    let year_of_era = y - era * 400;
    let day_of_year = (153 * ((month + 9) % 12) + 2) / 5 + day - 1;
    let day_of_era = year_of_era * 365 + year_of_era / 4 - year_of_era / 100 + day_of_year;
    let days = era * 146_097 + day_of_era - 719_468;
    u32::try_from(days * 86_400 + hour * 3_600 + minute * 60 + second).map_err(|_| bad())
}

#[cfg(test)]
mod tests {
    use super::parse_time;

    #[test]
    fn times_parse_as_utc_or_epoch_seconds() {
        assert_eq!(parse_time("1764000000"), Ok(1_764_000_000));
        for seconds in [0u32, 951_782_400, 1_764_000_000, 1_764_000_059, 4_102_444_799] {
            let text = vigil_alerts::rfc3339(i64::from(seconds) * 1000);
            assert_eq!(parse_time(&text), Ok(seconds), "{text}");
        }
        assert_eq!(parse_time("2025-11-24T16:00:00Z"), Ok(1_764_000_000));
        assert_eq!(parse_time("2025-11-24 16:00"), Ok(1_764_000_000));
        assert_eq!(parse_time("2025-11-24"), Ok(1_763_942_400));
        assert!(parse_time("yesterday").is_err());
        assert!(parse_time("2025-13-01T00:00:00Z").is_err());
    }
}
