//! Parquet and Arrow IPC input give the report CSV input gives: the same types, tests,
//! statistics and counts (the files in testdata/ are pyarrow's copies of the CSV files, written
//! by testdata/make_columnar.py), and every format's statistics match the same SciPy values.

use std::path::PathBuf;

use vigil_offline::engine::InputFormat;
use vigil_offline::{drift_report, DriftArgs, DriftReport};
use vigil_stats::{DriftTest, FeatureKind};

fn data(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("testdata").join(name)
}

fn report(ext: &str) -> DriftReport {
    drift_report(&DriftArgs::new(data(&format!("reference.{ext}")), data(&format!("current.{ext}")))).unwrap()
}

fn close(a: Option<f64>, b: Option<f64>) -> bool {
    match (a, b) {
        (Some(a), Some(b)) => (a - b).abs() <= 1e-12 * a.abs().max(b.abs()).max(1e-300),
        (None, None) => true,
        _ => false,
    }
}

/// SciPy 1.17.1 on testdata/reference.csv and current.csv (missing cells dropped), the same
/// golden values for every input format: (column, test, statistic, p-value).
/// - age, income: `scipy.stats.ks_2samp(reference, current)`;
/// - city, note: `scipy.stats.chisquare(current_counts, reference_shares * n_current)` over the
///   reference's categories plus "other" (city's "rennes, fr" is new: its expected share is
///   floored at 1e-4 and the shares renormalised, as `vigil_stats::chi_square_counts` documents);
/// - churned: the pooled two-proportion z of "1" and `2 * scipy.stats.norm.sf(|z|)`.
const GOLDEN: [(&str, DriftTest, f64, f64); 5] = [
    ("age", DriftTest::Ks, 0.298, 3.536820966548333e-11),
    ("income", DriftTest::Ks, 0.08469879518072289, 0.2634177286406304),
    ("city", DriftTest::ChiSquare, 139150.90524037607, 0.0),
    ("churned", DriftTest::ZTest, -6.568023753190678, 5.0987409336970266e-11),
    ("note", DriftTest::ChiSquare, 7.279438872827129, 0.06350482693534192),
];

#[test]
fn every_format_matches_scipy() {
    for ext in ["csv", "parquet", "arrow", "arrows"] {
        let report = report(ext);
        assert_eq!(report.columns.len(), GOLDEN.len(), "{ext}");
        for (name, test, statistic, p_value) in GOLDEN {
            let c = report.columns.iter().find(|c| c.column == name).unwrap();
            let what = format!("{ext}: {name}");
            assert_eq!(c.test, test, "{what}");
            let stat = c.statistic.unwrap();
            assert!((stat - statistic).abs() <= 1e-12 * statistic.abs(), "{what}: statistic {stat}");
            // p-values through statrs' distributions against SciPy's: 1e-9 relative (the
            // chi-square p of city underflows in both).
            let p = c.p_value.unwrap();
            assert!((p - p_value).abs() <= 1e-9 * p_value.max(1e-300), "{what}: p {p} against {p_value}");
        }
    }
}

#[test]
fn parquet_and_arrow_give_the_csv_report() {
    let csv = report("csv");
    for ext in ["parquet", "arrow", "arrows"] {
        let other = report(ext);
        assert_eq!((other.reference_rows, other.current_rows), (300, 250), "{ext}");
        let format = if ext == "parquet" { InputFormat::Parquet } else { InputFormat::Arrow };
        assert_eq!(other.formats, [format, format]);
        for (a, b) in csv.columns.iter().zip(&other.columns) {
            let what = format!("{ext}: {}", a.column);
            assert_eq!(a.column, b.column, "{what}");
            assert_eq!(a.kind, b.kind, "{what}");
            assert_eq!(a.test, b.test, "{what}");
            assert!(close(a.statistic, b.statistic), "{what}: {:?} vs {:?}", a.statistic, b.statistic);
            assert!(close(a.p_value, b.p_value), "{what}: {:?} vs {:?}", a.p_value, b.p_value);
            assert_eq!(a.drifted, b.drifted, "{what}");
            assert_eq!((a.reference_count, a.current_count), (b.reference_count, b.current_count), "{what}");
            assert_eq!(
                (a.reference_missing, a.current_missing),
                (b.reference_missing, b.current_missing),
                "{what}"
            );
        }
    }
    let churned = csv.columns.iter().find(|c| c.column == "churned").unwrap();
    assert_eq!(churned.kind, FeatureKind::Binary);
}

#[test]
fn formats_mix_and_the_extension_can_be_overridden() {
    let mixed = drift_report(&DriftArgs::new(data("reference.parquet"), data("current.csv"))).unwrap();
    let csv = report("csv");
    for (a, b) in csv.columns.iter().zip(&mixed.columns) {
        assert!(close(a.statistic, b.statistic), "{}", a.column);
    }
    // A Parquet file under another name, read as Parquet because the flag says so.
    let dir = std::env::temp_dir().join(format!("vigil-formats-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let renamed = dir.join("reference.data");
    std::fs::copy(data("reference.parquet"), &renamed).unwrap();
    let mut args = DriftArgs::new(&renamed, data("current.parquet"));
    args.input_format = Some(InputFormat::Parquet);
    assert!(drift_report(&args).is_ok());
    // Without the flag an unknown extension is recognised by the file's first bytes.
    assert!(drift_report(&DriftArgs::new(&renamed, data("current.parquet"))).is_ok());
    std::fs::remove_dir_all(&dir).ok();
}
