//! The monitor's per-event and per-flush kernels: adding one decoded prediction (20 numeric
//! features, 2 tags, score, label, latency) to its window state, and encoding / decoding one
//! partial state as flushes store it and window closes read it back (MessagePack, the stored
//! format, against the JSON states were stored as before, and CBOR). Run: cargo bench -p vigil-benches --bench window

use std::hint::black_box;

use criterion::{criterion_group, criterion_main, BatchSize, Criterion, Throughput};
use vigil_events::{decode_prediction_view, encode};
use vigil_loadgen::Synthetic;
use vigil_monitor::WindowState;

/// Encoded predictions of one model version, 20 numeric features each, as loadgen makes them.
fn events(n: usize) -> Vec<Vec<u8>> {
    let mut generator = Synthetic::new(7, vec!["fraud-detector".into()], vec!["v12".into()], 20);
    (0..n).map(|i| encode(&generator.next_prediction(1_764_000_000_000 + i as i64))).collect()
}

fn state_of(events: &[Vec<u8>]) -> WindowState {
    let mut state = WindowState::default();
    for bytes in events {
        state.add(&decode_prediction_view(bytes).unwrap(), false);
    }
    state
}

fn window_update(c: &mut Criterion) {
    let encoded = events(10_000);
    let views: Vec<_> = encoded.iter().map(|b| decode_prediction_view(b).unwrap()).collect();
    let mut group = c.benchmark_group("window_update");
    group.throughput(Throughput::Elements(views.len() as u64));
    // A state that has seen the key before (the steady state within a flush).
    group.bench_function("add_10k_events_20_features", |b| {
        b.iter_batched_ref(
            || state_of(&encoded[..100]),
            |state| views.iter().for_each(|v| state.add(black_box(v), false)),
            BatchSize::LargeInput,
        )
    });
    group.throughput(Throughput::Elements(1));
    // The first event of a key in a flush: every sketch is created.
    group.bench_function("first_event_of_a_new_state", |b| {
        b.iter(|| {
            let mut state = WindowState::default();
            state.add(black_box(&views[0]), false);
            state
        })
    });
    group.finish();
}

fn state_codec(c: &mut Criterion) {
    let encoded = events(10_000);
    // Events per key per 1 s flush at 100,000 predictions/s: 33 with 3,000 model versions,
    // 1,667 with 60; 10,000 is a merged 5 s window (references, replay).
    for n in [33, 1_667, 10_000] {
        let state = state_of(&encoded[..n]);
        let stored = state.encode().unwrap();
        let json = serde_json::to_vec(&state).unwrap();
        eprintln!(
            "state of {n} events, 20 features: {} bytes encoded, {} bytes of JSON",
            stored.len(),
            json.len()
        );
        let mut group = c.benchmark_group(format!("state_codec_{n}_events"));
        group.throughput(Throughput::Elements(1));
        group.bench_function("encode", |b| b.iter(|| black_box(&state).encode().unwrap()));
        group.bench_function("decode", |b| b.iter(|| WindowState::decode(black_box(&stored)).unwrap()));
        group.bench_function("encode_json", |b| b.iter(|| serde_json::to_vec(black_box(&state)).unwrap()));
        group.bench_function("decode_json", |b| b.iter(|| WindowState::decode(black_box(&json)).unwrap()));
        // The other self-describing binary format tried (CBOR, ciborium): as small, slower.
        let mut cbor = Vec::new();
        ciborium::into_writer(&state, &mut cbor).unwrap();
        eprintln!("  CBOR: {} bytes", cbor.len());
        group.bench_function("encode_cbor", |b| {
            b.iter(|| ciborium::into_writer(black_box(&state), Vec::new()).unwrap())
        });
        group.bench_function("decode_cbor", |b| {
            b.iter(|| ciborium::from_reader::<WindowState, _>(black_box(&cbor[..])).unwrap())
        });
        group.bench_function("merge_decoded", |b| {
            b.iter_batched_ref(
                WindowState::default,
                |acc| acc.merge(&WindowState::decode(black_box(&stored)).unwrap()).unwrap(),
                BatchSize::SmallInput,
            )
        });
        group.finish();
    }
}

criterion_group!(benches, window_update, state_codec);
criterion_main!(benches);
