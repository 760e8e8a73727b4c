/// Where a prediction id falls in [0, 1): the top 53 bits of FNV-1a 64 of its UTF-8 bytes. A
/// prediction (and its outcome) is kept when this is below `sample_rate`; the Python SDK's
/// `vigil_sdk.sample_point` is the same function, so every SDK, process and restart keeps the
/// same predictions, and their outcomes with them.
///
/// Random ids (UUIDs, random hex) are kept at the configured rate. FNV-1a's top bits change little
/// with the last characters of an id, so ids that differ only there (a sequence like `req-1`,
/// `req-2`, ...) are sampled unevenly: `req-00000000` to `req-00009999` keep 14% at a rate of 0.25,
/// `p-0` to `p-999` none.
pub fn sample_point(prediction_id: &str) -> f64 {
    let hash = vigil_events::fnv1a64(prediction_id.as_bytes());
    (hash >> 11) as f64 / (1u64 << 53) as f64
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sample_points_follow_fnv1a_and_spread_evenly() {
        // FNV-1a 64 of "a" is 0xaf63dc4c8601ec8c (published test vector).
        assert_eq!(sample_point("a"), (0xaf63_dc4c_8601_ec8cu64 >> 11) as f64 / (1u64 << 53) as f64);
        let kept = (0..100_000).filter(|i| sample_point(&format!("pred-{i}")) < 0.25).count();
        assert!((24_000..26_000).contains(&kept), "kept {kept} of 100000 at rate 0.25");
    }

    #[test]
    fn sequential_ids_are_sampled_unevenly_as_documented() {
        let kept = (0..10_000).filter(|i| sample_point(&format!("req-{i:08}")) < 0.25).count();
        assert_eq!(kept, 1_400);
        assert!((0..1000).all(|i| sample_point(&format!("p-{i}")) >= 0.25));
    }
}
