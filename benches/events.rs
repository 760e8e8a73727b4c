//! Decoding one PredictionEvent (20 numeric features, 2 tags): vigil's hand-written codec against
//! apache-avro's generic path (datum -> Value), the choice docs/schemas.md rests on.
//! Run: cargo bench -p vigil-benches --bench events

use std::hint::black_box;

use apache_avro::reader::datum::GenericDatumReader;
use apache_avro::Schema;
use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use vigil_events::{decode, decode_prediction_view, encode, PredictionEvent, HEADER_LEN, PREDICTION_SCHEMA};
use vigil_loadgen::Synthetic;

fn sample() -> PredictionEvent {
    let mut generator = Synthetic::new(1, vec!["fraud-detector".into()], vec!["v12".into()], 20);
    generator.next_prediction(1_764_000_000_000)
}

fn decode_prediction(c: &mut Criterion) {
    let event = sample();
    let bytes = encode(&event);
    let schema = Schema::parse_str(PREDICTION_SCHEMA).unwrap();
    let reader = GenericDatumReader::builder(&schema).build().unwrap();

    let mut group = c.benchmark_group(format!("decode_prediction_{}_bytes", bytes.len()));
    group.throughput(Throughput::Elements(1));
    group.bench_function("vigil_codec", |b| b.iter(|| decode::<PredictionEvent>(black_box(&bytes)).unwrap()));
    group.bench_function("vigil_codec_borrowed", |b| {
        b.iter(|| decode_prediction_view(black_box(&bytes)).unwrap().numeric_features.len())
    });
    group.bench_function("apache_avro_value", |b| {
        b.iter(|| reader.read_value(&mut black_box(&bytes[HEADER_LEN..])).unwrap())
    });
    group.finish();

    let mut group = c.benchmark_group("encode_prediction");
    group.throughput(Throughput::Elements(1));
    group.bench_function("vigil_codec", |b| b.iter(|| encode(black_box(&event))));
    group.finish();
}

criterion_group!(benches, decode_prediction);
criterion_main!(benches);
