//! vigil-stats kernels: sketch updates and merges, binned drift tests on 100-bin histograms,
//! AUC on 1e6 scores. Run: `cargo bench -p vigil-benches --bench stats`.

use std::hint::black_box;

use criterion::{criterion_group, criterion_main, BatchSize, Criterion, Throughput};
use vigil_stats::drift::{chisq, hellinger, js, ks, psi, wasserstein, ztest};
use vigil_stats::perf::{roc_auc, ScoreHistogram};
use vigil_stats::{CategoricalSketch, LatencySketch, NumericSketch};

/// Deterministic pseudo-random stream (xorshift), so runs are comparable without a rand dep.
fn uniform(n: usize, seed: u64) -> Vec<f64> {
    let mut s = seed;
    (0..n)
        .map(|_| {
            s ^= s << 13;
            s ^= s >> 7;
            s ^= s << 17;
            (s >> 11) as f64 / (1u64 << 53) as f64
        })
        .collect()
}

/// Roughly normal values (sum of four uniforms), shifted by `shift`.
fn normalish(n: usize, seed: u64, shift: f64) -> Vec<f64> {
    let u = uniform(4 * n, seed);
    u.chunks(4).map(|c| (c.iter().sum::<f64>() - 2.0) * 1.7 + shift).collect()
}

fn sketches() -> (NumericSketch, NumericSketch, CategoricalSketch, CategoricalSketch) {
    let reference = normalish(100_000, 1, 0.0);
    let r = NumericSketch::reference(&reference, 100).unwrap();
    let mut c = r.empty_like();
    c.extend(&normalish(100_000, 2, 0.1));
    let cats: Vec<String> =
        uniform(100_000, 3).iter().map(|u| format!("c{}", (u * u * 100.0) as u32)).collect();
    let rc = CategoricalSketch::reference(&cats, 100).unwrap();
    let mut cc = rc.empty_like();
    uniform(100_000, 4).iter().for_each(|u| cc.update(&format!("c{}", (u * 100.0) as u32)));
    (r, c, rc, cc)
}

fn updates(c: &mut Criterion) {
    let (r, _, rc, _) = sketches();
    let values = normalish(1_000_000, 5, 0.0);
    let mut g = c.benchmark_group("update");
    g.throughput(Throughput::Elements(values.len() as u64));
    g.bench_function("numeric_100_bins", |b| {
        b.iter_batched_ref(|| r.empty_like(), |s| s.extend(black_box(&values)), BatchSize::LargeInput)
    });
    // Heavy tail (Cauchy): quantile edges crowd into few grid cells, the lookup's worst case.
    let cauchy =
        |u: &[f64]| -> Vec<f64> { u.iter().map(|u| (std::f64::consts::PI * (u - 0.5)).tan()).collect() };
    let heavy = NumericSketch::from_reference(&cauchy(&uniform(100_000, 11)), 100).unwrap();
    let heavy_values = cauchy(&uniform(1_000_000, 12));
    g.bench_function("numeric_100_bins_cauchy", |b| {
        b.iter_batched_ref(
            || heavy.empty_like(),
            |s| s.extend(black_box(&heavy_values)),
            BatchSize::LargeInput,
        )
    });
    let labels: Vec<String> =
        uniform(1_000_000, 6).iter().map(|u| format!("c{}", (u * 120.0) as u32)).collect();
    g.bench_function("categorical_100_values", |b| {
        b.iter_batched_ref(
            || rc.empty_like(),
            |s| black_box(&labels).iter().for_each(|v| s.update(v)),
            BatchSize::LargeInput,
        )
    });
    let latencies: Vec<u64> = uniform(1_000_000, 7).iter().map(|u| (u * 1e6) as u64).collect();
    g.bench_function("latency_hdr", |b| {
        b.iter_batched_ref(
            || LatencySketch::new(3_600_000_000, 3).unwrap(),
            |s| black_box(&latencies).iter().for_each(|&v| s.update(v)),
            BatchSize::LargeInput,
        )
    });
    g.finish();
}

fn merges(c: &mut Criterion) {
    let (r, cur, rc, cc) = sketches();
    let mut g = c.benchmark_group("merge");
    g.throughput(Throughput::Elements(1));
    g.bench_function("numeric_100_bins", |b| {
        b.iter_batched_ref(|| r.clone(), |s| s.merge(black_box(&cur)).unwrap(), BatchSize::SmallInput)
    });
    g.bench_function("categorical_100_values", |b| {
        b.iter_batched_ref(|| rc.clone(), |s| s.merge(black_box(&cc)).unwrap(), BatchSize::SmallInput)
    });
    let mut lat = LatencySketch::new(3_600_000_000, 3).unwrap();
    uniform(100_000, 8).iter().for_each(|u| lat.update((u * 1e6) as u64));
    g.bench_function("latency_hdr", |b| {
        b.iter_batched_ref(|| lat.clone(), |s| s.merge(black_box(&lat)).unwrap(), BatchSize::SmallInput)
    });
    g.finish();
}

fn drift_tests(c: &mut Criterion) {
    let (r, cur, rc, cc) = sketches();
    let mut g = c.benchmark_group("drift_100_bins");
    g.throughput(Throughput::Elements(1));
    g.bench_function("psi", |b| b.iter(|| psi::psi(black_box(&r), black_box(&cur)).unwrap()));
    g.bench_function("ks_binned", |b| b.iter(|| ks::ks_binned(black_box(&r), black_box(&cur)).unwrap()));
    g.bench_function("wasserstein_normed_binned", |b| {
        b.iter(|| wasserstein::wasserstein_normed_binned(black_box(&r), black_box(&cur)).unwrap())
    });
    g.bench_function("jensen_shannon", |b| {
        b.iter(|| js::jensen_shannon(black_box(&r), black_box(&cur)).unwrap())
    });
    g.bench_function("hellinger", |b| {
        b.iter(|| hellinger::hellinger(black_box(&r), black_box(&cur)).unwrap())
    });
    g.bench_function("chi_square_categorical", |b| {
        b.iter(|| chisq::chi_square(black_box(&rc), black_box(&cc)).unwrap())
    });
    g.bench_function("z_test", |b| {
        b.iter(|| ztest::z_test_counts(black_box(4_900), 10_000, black_box(5_200), 10_000).unwrap())
    });
    g.finish();
}

fn auc(c: &mut Criterion) {
    let scores = uniform(1_000_000, 9);
    let labels: Vec<bool> =
        uniform(1_000_000, 10).iter().zip(&scores).map(|(u, s)| u * 0.7 + s * 0.3 > 0.5).collect();
    let mut g = c.benchmark_group("auc_1e6_scores");
    g.sample_size(10);
    g.throughput(Throughput::Elements(scores.len() as u64));
    g.bench_function("roc_auc_exact", |b| {
        b.iter(|| roc_auc(black_box(&scores), black_box(&labels)).unwrap())
    });
    g.bench_function("roc_auc_binned_1000", |b| {
        b.iter(|| {
            let mut h = ScoreHistogram::new(1000).unwrap();
            scores.iter().zip(&labels).for_each(|(&s, &l)| h.update(s, l));
            h.roc_auc().unwrap()
        })
    });
    g.finish();
}

criterion_group!(benches, updates, merges, drift_tests, auc);
criterion_main!(benches);
