//! Criterion benchmarks live in this package's `[[bench]]` targets; this library holds what
//! several of them share.

use std::collections::BTreeMap;

use vigil_events::{Prediction, PredictionEvent};

/// splitmix64: a fixed stream of well-mixed numbers, for ids and feature values.
pub fn splitmix64(seed: u64) -> u64 {
    let mut z = seed.wrapping_add(0x9e37_79b9_7f4a_7c15);
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

/// The prediction a fraud model in a serving app logs: 20 numeric features, 3 categorical ones,
/// 2 segment tags, label, score and latency, UUID-like ids (about 600 bytes encoded). The same
/// `i` gives the same event.
pub fn realistic_prediction(i: u64, event_time_ms: i64) -> PredictionEvent {
    let r = |k: u64| splitmix64(i.wrapping_mul(64).wrapping_add(k));
    let unit = |k: u64| (r(k) >> 11) as f64 / (1u64 << 53) as f64;
    let pick = |k: u64, options: &[&str]| options[(r(k) % options.len() as u64) as usize].to_owned();
    let score = unit(40);
    PredictionEvent {
        event_id: format!("{:016x}{:016x}", r(0), r(1)),
        prediction_id: format!("{:016x}{:016x}", r(2), r(3)),
        model_id: "fraud-detector".into(),
        model_version: "v12".into(),
        event_time_ms,
        segment: BTreeMap::from([
            ("country".to_owned(), pick(10, &["DE", "US", "BR", "IN", "FR"])),
            ("channel".to_owned(), pick(11, &["web", "ios", "android"])),
        ]),
        numeric_features: (0..20u64)
            .map(|f| (format!("feature_{f:02}"), unit(f + 12) * 100.0 - 50.0))
            .collect(),
        categorical_features: BTreeMap::from([
            ("device".to_owned(), pick(32, &["iphone", "pixel", "galaxy", "desktop"])),
            ("plan".to_owned(), pick(33, &["free", "pro", "enterprise"])),
            ("merchant_category".to_owned(), pick(34, &["grocery", "travel", "electronics", "gaming"])),
        ]),
        prediction: Prediction {
            label: Some(if score >= 0.5 { "fraud" } else { "legit" }.to_owned()),
            probabilities: None,
            score: Some(score),
            value: None,
        },
        serving_latency_ms: Some(0.5 + 4.5 * unit(41)),
    }
}

/// Deletes benchmark topics; a failure is only printed.
pub fn delete_topics(brokers: &str, topics: &[&str]) {
    use rdkafka::admin::{AdminClient, AdminOptions};
    use rdkafka::client::DefaultClientContext;
    let admin: AdminClient<DefaultClientContext> =
        match rdkafka::ClientConfig::new().set("bootstrap.servers", brokers).create() {
            Ok(admin) => admin,
            Err(error) => return eprintln!("cannot delete {topics:?}: {error}"),
        };
    let runtime =
        tokio::runtime::Builder::new_current_thread().enable_all().build().expect("a tokio runtime");
    if let Err(error) = runtime.block_on(admin.delete_topics(topics, &AdminOptions::new())) {
        eprintln!("cannot delete {topics:?}: {error}");
    }
}

#[cfg(test)]
mod tests {
    use vigil_events::{encode, AvroRecord};

    #[test]
    fn the_realistic_prediction_is_valid_and_about_600_bytes() {
        let event = super::realistic_prediction(7, 1_764_000_000_000);
        event.validate().unwrap();
        assert_eq!(event, super::realistic_prediction(7, 1_764_000_000_000));
        assert_eq!(event.numeric_features.len(), 20);
        let len = encode(&event).len();
        assert!((500..700).contains(&len), "{len} bytes");
    }
}
