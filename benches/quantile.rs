//! vigil-stats quantile sketch: updates, merging partial states, reference edges and re-binning
//! onto them. Run: `cargo bench -p vigil-benches --bench quantile`.

use std::hint::black_box;

use criterion::{criterion_group, criterion_main, BatchSize, Criterion, Throughput};
use vigil_stats::QuantileSketch;

/// Roughly normal values (sum of four xorshift uniforms), scaled by `scale`, shifted by `shift`.
fn normalish(n: usize, seed: u64, shift: f64, scale: f64) -> Vec<f64> {
    let mut s = seed;
    let mut u = || {
        s ^= s << 13;
        s ^= s >> 7;
        s ^= s << 17;
        (s >> 11) as f64 / (1u64 << 53) as f64
    };
    (0..n).map(|_| (u() + u() + u() + u() - 2.0) * 1.7 * scale + shift).collect()
}

fn quantile(c: &mut Criterion) {
    let values = normalish(1_000_000, 5, 0.0, 1.0);
    let mut g = c.benchmark_group("quantile");
    g.throughput(Throughput::Elements(values.len() as u64));
    g.bench_function("update_1e6_normal", |b| {
        b.iter_batched_ref(QuantileSketch::default, |s| s.extend(black_box(&values)), BatchSize::LargeInput)
    });
    let lognormal: Vec<f64> = values.iter().map(|x| x.exp()).collect();
    g.bench_function("update_1e6_lognormal", |b| {
        b.iter_batched_ref(
            QuantileSketch::default,
            |s| s.extend(black_box(&lognormal)),
            BatchSize::LargeInput,
        )
    });
    g.throughput(Throughput::Elements(1));
    let a = QuantileSketch::of(&normalish(10_000, 1, 0.0, 1.0));
    let b10k = QuantileSketch::of(&normalish(10_000, 2, 0.1, 1.0));
    g.bench_function("merge_two_10k", |b| {
        b.iter_batched_ref(|| a.clone(), |s| s.merge(black_box(&b10k)).unwrap(), BatchSize::SmallInput)
    });
    let reference = QuantileSketch::of(&normalish(100_000, 3, 0.0, 1.0));
    g.bench_function("edges_100_of_100k", |b| b.iter(|| black_box(&reference).edges(100).unwrap()));
    let edges = reference.edges(100).unwrap();
    g.bench_function("rebin_10k_to_100_bins", |b| {
        b.iter(|| black_box(&b10k).rebin(black_box(&edges)).unwrap())
    });
    g.bench_function("rebin_with_bounds_10k_to_100_bins", |b| {
        b.iter(|| black_box(&b10k).rebin_with_bounds(black_box(&edges)).unwrap())
    });
    g.finish();
}

criterion_group!(benches, quantile);
criterion_main!(benches);
