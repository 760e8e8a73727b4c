//! `vigil reference`: build a model version's reference profile from a file and store it
//! (`upload`) or from a time range of its stored live traffic (`capture`), and see the stored
//! ones (`list`, `show`). Reading the file is vigil-offline's, building the profile
//! vigil-monitor's, storing (and reading stored windows) vigil-store's.

use std::path::PathBuf;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use anyhow::Context;
use vigil_monitor::reference::{BuiltReference, CaptureBuilder, ReferenceBuilder};
use vigil_offline::reference::{grouped, read_reference, Progress, ReadOptions, ReadReport, Role};
use vigil_store::{ReferenceRow, Store};

use crate::config::Config;

#[derive(clap::Args)]
pub struct Args {
    #[command(subcommand)]
    command: Command,
}

#[derive(clap::Subcommand)]
enum Command {
    /// Build a model version's reference profile from a CSV, Avro, Parquet or Arrow file and store it; the
    /// monitor then tests the version's windows against it instead of a live baseline.
    Upload(UploadArgs),
    /// Make a model version's reference profile from its own live traffic over a time range:
    /// the windows the monitor stored and closed there, merged; the monitor then tests the
    /// version's windows against it instead of a live baseline.
    Capture(CaptureArgs),
    /// Stored references: model, version, id, source, events, content hash, created, in use.
    List(ListArgs),
    /// One reference and what it holds per feature: by id, or a version's reference in use.
    Show(ShowArgs),
}

#[derive(clap::Args)]
struct UploadArgs {
    /// The model id, as the serving app sends it.
    #[arg(long)]
    model: String,
    /// The model version the reference is for.
    #[arg(long)]
    version: String,
    /// A CSV file with a header row (one column per feature), an Avro object container file of
    /// vigil PredictionEvents or of flat records (one field per feature), or a Parquet or Arrow
    /// IPC file (one column per feature).
    file: PathBuf,
    #[command(flatten)]
    read: ReadOptions,
    /// No progress lines on stderr.
    #[arg(long)]
    quiet: bool,
}

#[derive(clap::Args)]
struct CaptureArgs {
    /// The model id, as the serving app sends it.
    #[arg(long)]
    model: String,
    /// The model version whose traffic makes the reference (and that is tested against it).
    #[arg(long)]
    version: String,
    /// Windows starting at or after this time: UTC as 2025-11-24T16:00:00Z, or seconds since
    /// the Unix epoch.
    #[arg(long, value_parser = super::replay::parse_time)]
    from: u32,
    /// Windows starting before this time (UTC or epoch seconds). Every window in the range
    /// must have closed.
    #[arg(long, value_parser = super::replay::parse_time)]
    to: u32,
    /// No progress lines on stderr.
    #[arg(long)]
    quiet: bool,
}

#[derive(clap::Args)]
struct ListArgs {
    /// Only this model's references.
    #[arg(long)]
    model: Option<String>,
}

#[derive(clap::Args)]
struct ShowArgs {
    /// A reference id, as `vigil reference list` prints it.
    #[arg(required_unless_present_all = ["model", "version"], conflicts_with_all = ["model", "version"])]
    reference_id: Option<String>,
    /// With --version: the reference the monitor uses for this model version.
    #[arg(long, requires = "version")]
    model: Option<String>,
    #[arg(long, requires = "model")]
    version: Option<String>,
}

pub async fn run(config: &Config, args: Args) -> anyhow::Result<()> {
    if let Command::Capture(capture) = &args.command {
        // Before touching the database: these need none.
        capture.check(unix_seconds())?;
    }
    let store = Store::new(config.store_config());
    // Idempotent: a fresh or older database gets the tables this command reads and writes.
    store.migrate().await.with_context(|| {
        format!("preparing {} (is ClickHouse running? see deploy/local/up)", config.clickhouse.url)
    })?;
    match args.command {
        Command::Upload(args) => upload(&store, args).await,
        Command::Capture(args) => capture(config, &store, args).await,
        Command::List(args) => list(&store, args).await,
        Command::Show(args) => show(config, &store, args).await,
    }
}

async fn upload(store: &Store, args: UploadArgs) -> anyhow::Result<()> {
    anyhow::ensure!(
        !args.model.trim().is_empty() && !args.version.trim().is_empty(),
        "--model and --version must not be empty"
    );
    let (model, version) = (args.model.clone(), args.version.clone());
    // Reading and sketching is CPU work: off the async reactor.
    let (report, built) =
        tokio::task::spawn_blocking(move || -> anyhow::Result<(ReadReport, Option<BuiltReference>)> {
            let mut progress = if args.quiet {
                Progress::hidden()
            } else {
                let stderr = std::io::stderr();
                let interactive = std::io::IsTerminal::is_terminal(&stderr);
                Progress::new(Box::new(stderr), interactive, Duration::from_secs(1))
            };
            let mut builder = ReferenceBuilder::new();
            let report = read_reference(&args.file, &args.read, &mut progress, &mut |row| builder.add(row))?;
            Ok((report, builder.finish(&args.model, &args.version)?))
        })
        .await??;
    let built = built.context("no rows")?;
    anyhow::ensure!(
        !(built.state.numeric.is_empty() && built.state.categorical.is_empty()),
        "{}: no features (every column is skipped, empty, the score or the label): there is nothing to test drift against",
        report.path.display()
    );

    let before = in_use(store, &model, &version).await?;
    let known = store.reference(&built.reference_id).await.context("reading reference_profiles_v2")?;
    let row = built.row(source(&report), unix_seconds());
    store.insert_reference(&row).await.context("storing the reference in reference_profiles_v2")?;
    let after = in_use(store, &model, &version).await?;

    print_warnings(&report, &built, &model, &version);
    let note = known.map(|k| {
        format!("the same data was stored before ({}); this upload makes it the newest", utc(k.created_at))
    });
    print_stored(&built, &row, "the state", note);
    print_in_use(&built, &model, &version, before, after)
}

/// What was stored: id, source, profile, content hash (of `hashed`) and a note.
fn print_stored(built: &BuiltReference, row: &ReferenceRow, hashed: &str, note: Option<String>) {
    println!("stored reference {} for {} {}", built.reference_id, built.model_id, built.model_version);
    println!("  source        {}", row.source);
    println!("  profile       {}", profile(built));
    println!(
        "  content hash  {} (FNV-1a 64 of {hashed} as JSON; {} bytes stored)",
        built.content_hash,
        grouped(built.encoded.len() as u64)
    );
    if let Some(note) = note {
        println!("  note          {note}");
    }
}

/// Whether the stored reference is the one the monitor now uses for (model, version).
fn print_in_use(
    built: &BuiltReference,
    model: &str,
    version: &str,
    before: Option<String>,
    after: Option<String>,
) -> anyhow::Result<()> {
    match after {
        Some(id) if id == built.reference_id => {
            let replaced = before
                .filter(|b| *b != built.reference_id)
                .map_or(String::new(), |b| format!(", instead of {b}"));
            println!("  in use        yes: {model} {version}'s windows are tested against it{replaced}");
            println!("                (a running vigil monitor takes it up within about 30 s, for the windows it closes after that)");
        }
        Some(id) => println!("  in use        no: {id} is newer and stays in use"),
        None => anyhow::bail!("the reference was stored but does not read back for {model} {version}"),
    }
    Ok(())
}

/// Windows merged per store query: bounds memory and paces the progress lines.
const CAPTURE_CHUNK_WINDOWS: usize = 60;

impl CaptureArgs {
    /// `[from, to)` as people read it.
    fn range(&self) -> String {
        format!(
            "[{}, {}) UTC",
            super::quickstart::format_utc(self.from),
            super::quickstart::format_utc(self.to)
        )
    }

    /// What can be refused without the database: empty names, an empty range, and a range that
    /// ends after `now` (windows still to come, or still filling, would be missing).
    fn check(&self, now: u32) -> anyhow::Result<()> {
        anyhow::ensure!(
            !self.model.trim().is_empty() && !self.version.trim().is_empty(),
            "--model and --version must not be empty"
        );
        anyhow::ensure!(
            self.from < self.to,
            "--from must be before --to: the range {} is empty",
            self.range()
        );
        anyhow::ensure!(
            self.to <= now,
            "the range {} ends in the future: its later windows have not happened yet. Choose --to at or before the end of the last closed window",
            self.range()
        );
        Ok(())
    }
}

async fn capture(config: &Config, store: &Store, args: CaptureArgs) -> anyhow::Result<()> {
    let (model, version) = (args.model.as_str(), args.version.as_str());
    let (range, now) = (args.range(), unix_seconds());
    let windows =
        store.stored_windows(model, version, args.from, args.to).await.context("reading window_partials")?;
    if windows.is_empty() {
        let span = store.stored_window_span(model, version).await.context("reading window_partials")?;
        let retention = match config.clickhouse.retention_days {
            0 => "retention is off (clickhouse.retention_days = 0)".to_owned(),
            days => format!("partials older than clickhouse.retention_days ({days} days) are dropped (on ClickHouse 20.3 and later)"),
        };
        match span {
            None => anyhow::bail!("no stored windows of {model} {version} at all: is that the model id and version the serving app sends, and has the monitor written its windows to {}?", config.clickhouse.database),
            Some((first, last)) => anyhow::bail!(
                "no stored windows of {model} {version} start in {range}: its stored windows start from {} to {} UTC; {retention}",
                super::quickstart::format_utc(first),
                super::quickstart::format_utc(last)
            ),
        }
    }
    // Open windows would make a reference that differs from what the monitor reports for them.
    let open: Vec<u32> = windows.iter().filter(|w| !w.closed).map(|w| w.window_start).collect();
    if let Some(first) = open.first() {
        anyhow::bail!(
            "{} of the {} windows in {range} have not closed yet (the first starts {} UTC): the monitor closes a window once \
             event time passes its end plus monitor.allowed_lateness_seconds. Wait, or end the range with --to {first}",
            open.len(),
            windows.len(),
            super::quickstart::format_utc(*first)
        );
    }

    let total_events: u64 = windows.iter().map(|w| w.events).sum();
    let chunks: Vec<&[vigil_store::StoredWindow]> = windows.chunks(CAPTURE_CHUNK_WINDOWS).collect();
    let mut builder = CaptureBuilder::new();
    for chunk in &chunks {
        let (first, last) = (chunk[0].window_start, chunk[chunk.len() - 1].window_start);
        let partials = store
            .partials_between(model, version, "", first, last + 1)
            .await
            .context("reading window_partials")?;
        // Parsing and merging is CPU work: off the async reactor.
        builder = tokio::task::spawn_blocking(move || -> anyhow::Result<CaptureBuilder> {
            for p in &partials {
                builder
                    .add_partial(p.window_start, &p.state)
                    .with_context(|| format!("a stored partial of the window at {}", p.window_start))?;
            }
            Ok(builder)
        })
        .await??;
        if !args.quiet && chunks.len() > 1 {
            eprintln!(
                "merged {} of {} windows ({} of {} events)",
                builder.windows(),
                windows.len(),
                grouped(builder.events()),
                grouped(total_events)
            );
        }
    }
    let (count, events) = (builder.windows(), builder.events());
    let built =
        builder.finish(model, version, args.from, args.to)?.context("the stored windows hold no events")?;

    let before = in_use(store, model, version).await?;
    let known = store.reference(&built.reference_id).await.context("reading reference_profiles_v2")?;
    let source = format!("live traffic: {count} windows starting in {range}, {} events", grouped(events));
    let row = built.row(source, now);
    store.insert_reference(&row).await.context("storing the reference in reference_profiles_v2")?;
    let after = in_use(store, model, version).await?;

    print_feature_warnings(&built);
    let note = known.map(|k| {
        format!("this range was captured before ({}); the new capture replaces it", utc(k.created_at))
    });
    print_stored(&built, &row, "the stored state without outcomes", note);
    print_in_use(&built, model, version, before, after)
}

/// The id of the reference the monitor uses for (model, version), if any.
async fn in_use(store: &Store, model: &str, version: &str) -> anyhow::Result<Option<String>> {
    let references = store.reference_list(Some(model)).await.context("reading reference_profiles_v2")?;
    Ok(references.into_iter().find(|r| r.in_use && r.model_version == version).map(|r| r.reference_id))
}

/// Where a reference's rows came from, as stored with it.
fn source(report: &ReadReport) -> String {
    let kind = if report.prediction_events { "avro prediction events" } else { report.format.name() };
    let skipped = match report.bad_rows {
        0 => String::new(),
        n => format!(", {} bad rows skipped", grouped(n)),
    };
    format!("file {} ({kind}, {} rows{skipped})", report.path.display(), grouped(report.rows))
}

fn profile(built: &BuiltReference) -> String {
    let state = &built.state;
    let mut parts =
        vec![format!("{} rows", grouped(state.events)), format!("{} numeric features", state.numeric.len())];
    parts.push(format!("{} categorical", state.categorical.len()));
    if let Some(scores) = &state.scores {
        parts.push(format!("scores ({})", grouped(scores.count())));
    }
    if !state.predicted_labels.is_empty() {
        parts.push(format!("predicted labels ({} values)", state.predicted_labels.len()));
    }
    parts.join(", ")
}

fn print_warnings(report: &ReadReport, built: &BuiltReference, model: &str, version: &str) {
    if report.bad_rows > 0 {
        eprintln!("warning: {} bad rows skipped (--max-bad-rows), the first:", grouped(report.bad_rows));
        for example in &report.bad_examples {
            eprintln!("  {example}");
        }
    }
    let empty: Vec<&str> =
        report.columns.iter().filter(|(_, r)| *r == Role::Empty).map(|(c, _)| c.as_str()).collect();
    if !empty.is_empty() {
        eprintln!("warning: columns without any value, left out: {}", empty.join(", "));
    }
    print_feature_warnings(built);
    let others: Vec<String> = report
        .event_versions
        .iter()
        .filter(|((m, v), _)| m != model || v != version)
        .map(|((m, v), n)| format!("{m} {v} ({})", grouped(*n)))
        .collect();
    if !others.is_empty() {
        eprintln!(
            "note: the file holds events of {}; all of them make the reference of {model} {version}",
            others.join(", ")
        );
    }
}

/// Features the reference cannot test well: without values, or beyond the category cap.
fn print_feature_warnings(built: &BuiltReference) {
    let missing = built.features_without_values();
    if !missing.is_empty() {
        eprintln!(
            "warning: numeric features with no finite value (their drift cannot be tested): {}",
            missing.join(", ")
        );
    }
    let capped = built.capped_features();
    if !capped.is_empty() {
        eprintln!(
            "warning: categorical features with more than {} values (the rest are pooled as {}): {}",
            vigil_monitor::reference::CATEGORY_CAP,
            vigil_monitor::reference::OTHER,
            capped.join(", ")
        );
    }
}

async fn list(store: &Store, args: ListArgs) -> anyhow::Result<()> {
    let references =
        store.reference_list(args.model.as_deref()).await.context("reading reference_profiles_v2")?;
    let missing: Vec<(String, String)> = store
        .versions_without_reference()
        .await
        .context("reading window_metrics")?
        .into_iter()
        .filter(|(m, _)| args.model.as_ref().is_none_or(|want| want == m))
        .collect();
    if references.is_empty() {
        println!(
            "no references stored{}",
            args.model.as_ref().map_or(String::new(), |m| format!(" for {m}"))
        );
    } else {
        let header = [
            "model",
            "version",
            "reference id",
            "source",
            "events",
            "content hash",
            "created (UTC)",
            "in use",
        ];
        let rows: Vec<[String; 8]> = references
            .iter()
            .map(|r| {
                [
                    r.model_id.clone(),
                    r.model_version.clone(),
                    r.reference_id.clone(),
                    r.source.clone(),
                    grouped(r.events),
                    r.content_hash.clone(),
                    super::quickstart::format_utc(r.created_at),
                    if r.in_use { "yes" } else { "no" }.to_owned(),
                ]
            })
            .collect();
        print!("{}", table(&header, &rows));
    }
    if !missing.is_empty() {
        let names: Vec<String> = missing.iter().map(|(m, v)| format!("{m} {v}")).collect();
        println!("\nno reference yet (windows counted, drift not tested): {}", names.join(", "));
    }
    Ok(())
}

/// Left-aligned columns, two spaces apart.
fn table<const N: usize>(header: &[&str; N], rows: &[[String; N]]) -> String {
    let mut widths = header.map(str::len);
    for row in rows {
        for (w, cell) in widths.iter_mut().zip(row) {
            *w = (*w).max(cell.chars().count());
        }
    }
    let line = |cells: [&str; N]| -> String {
        let padded: Vec<String> = cells.iter().zip(widths).map(|(c, w)| format!("{c:<w$}")).collect();
        padded.join("  ").trim_end().to_owned() + "\n"
    };
    let mut out = line(*header);
    for row in rows {
        out.push_str(&line(row.each_ref().map(String::as_str)));
    }
    out
}

async fn show(config: &Config, store: &Store, args: ShowArgs) -> anyhow::Result<()> {
    let reference = match (&args.reference_id, &args.model, &args.version) {
        (Some(id), _, _) => {
            store.reference(id).await.context("reading reference_profiles_v2")?.with_context(|| {
                format!("no reference {id:?} (vigil reference list shows the stored ones)")
            })?
        }
        (None, Some(model), Some(version)) => {
            let id = in_use(store, model, version).await?.with_context(|| {
                format!(
                    "no reference for {model} {version}: its windows are not tested for drift. Upload one with \
                     `vigil reference upload --model {model} --version {version} FILE`, or let the monitor take the \
                     version's first window with at least {} events (monitor.baseline_min_events) as its baseline",
                    config.monitor.baseline_min_events
                )
            })?;
            store
                .reference(&id)
                .await
                .context("reading reference_profiles_v2")?
                .with_context(|| format!("reference {id} went away"))?
        }
        _ => unreachable!("clap requires an id or --model and --version"),
    };
    print!("{}", describe(&reference)?);
    Ok(())
}

/// A reference's identity, then one line per feature.
fn describe(reference: &ReferenceRow) -> anyhow::Result<String> {
    use std::fmt::Write;
    let state = vigil_monitor::WindowState::decode(&reference.state)
        .with_context(|| format!("reference {} holds no readable window state", reference.reference_id))?;
    let mut out = String::new();
    writeln!(out, "reference     {}", reference.reference_id)?;
    writeln!(out, "model         {} {}", reference.model_id, reference.model_version)?;
    writeln!(out, "source        {}", reference.source)?;
    writeln!(out, "events        {}", grouped(reference.events))?;
    writeln!(out, "content hash  {}", reference.content_hash)?;
    writeln!(out, "created       {}", utc(reference.created_at))?;
    let mut rows = Vec::new();
    for (name, sketch) in &state.numeric {
        let q = |p: f64| sketch.quantile(p).map_or("-".to_owned(), |x| format!("{x:.4}"));
        let values = format!(
            "mean {}, p5 {}, p50 {}, p95 {}",
            sketch.mean().map_or("-".to_owned(), |m| format!("{m:.4}")),
            q(0.05),
            q(0.5),
            q(0.95)
        );
        rows.push([
            name.clone(),
            "numeric".to_owned(),
            grouped(sketch.count()),
            grouped(sketch.nonfinite()),
            values,
        ]);
    }
    for (name, counts) in &state.categorical {
        let total: u64 = counts.values().sum();
        rows.push([
            name.clone(),
            "categorical".to_owned(),
            grouped(total),
            "-".to_owned(),
            top_values(counts, total),
        ]);
    }
    if let Some(scores) = &state.scores {
        rows.push([
            "(score)".to_owned(),
            "score".to_owned(),
            grouped(scores.count()),
            "-".to_owned(),
            scores.mean().map_or("-".to_owned(), |m| format!("mean {m:.4}")),
        ]);
    }
    if !state.predicted_labels.is_empty() {
        let total: u64 = state.predicted_labels.values().sum();
        rows.push([
            "(predicted label)".to_owned(),
            "label".to_owned(),
            grouped(total),
            "-".to_owned(),
            top_values(&state.predicted_labels, total),
        ]);
    }
    writeln!(out)?;
    out.push_str(&table(&["feature", "type", "values", "missing", "distribution"], &rows));
    Ok(out)
}

/// The five most frequent values with their shares.
fn top_values(counts: &std::collections::BTreeMap<String, u64>, total: u64) -> String {
    let mut sorted: Vec<(&String, &u64)> = counts.iter().collect();
    sorted.sort_by(|a, b| b.1.cmp(a.1).then(a.0.cmp(b.0)));
    let mut parts: Vec<String> = sorted
        .iter()
        .take(5)
        .map(|(v, n)| format!("{v} {:.1}%", 100.0 * **n as f64 / total.max(1) as f64))
        .collect();
    if sorted.len() > 5 {
        parts.push(format!("... {} values", sorted.len()));
    }
    parts.join(", ")
}

fn utc(seconds: u32) -> String {
    format!("{} UTC", super::quickstart::format_utc(seconds))
}

fn unix_seconds() -> u32 {
    SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs() as u32)
}
