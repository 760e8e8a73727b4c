/// Where a prediction id falls in [0, 1): FNV-1a 64 of its UTF-8 bytes, then MurmurHash3's
/// 64-bit finalizer (`fmix64`), top 53 bits. A prediction (and its outcome) is kept when this is
/// below `sample_rate`; the Python SDK's `vigil_sdk.sample_point` is the same function, so every
/// SDK, process and restart keeps the same predictions, and their outcomes with them.
///
/// The finalizer is there because FNV-1a's top bits change little with an id's last characters:
/// without it, ids that differ only there (`req-1`, `req-2`, ...) were sampled unevenly (`p-0` to
/// `p-999` kept none at a rate of 0.25).
pub fn sample_point(prediction_id: &str) -> f64 {
    let hash = fmix64(vigil_events::fnv1a64(prediction_id.as_bytes()));
    (hash >> 11) as f64 / (1u64 << 53) as f64
}

/// MurmurHash3's 64-bit finalizer: every input bit flips each output bit with probability ~1/2.
fn fmix64(mut h: u64) -> u64 {
    h ^= h >> 33;
    h = h.wrapping_mul(0xff51_afd7_ed55_8ccd);
    h ^= h >> 33;
    h = h.wrapping_mul(0xc4ce_b9fe_1a85_ec53);
    h ^ (h >> 33)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sample_points_follow_fnv1a_and_fmix64() {
        // FNV-1a 64 of "a" is 0xaf63dc4c8601ec8c (published test vector); fmix64(0) is 0 and
        // fmix64(1) 0xb456bcfc34c2cb2c (the finalizer's known value).
        assert_eq!(fmix64(0), 0);
        assert_eq!(fmix64(1), 0xb456_bcfc_34c2_cb2c);
        assert_eq!(sample_point("a"), (fmix64(0xaf63_dc4c_8601_ec8c) >> 11) as f64 / (1u64 << 53) as f64);
    }

    #[test]
    fn random_and_sequential_ids_are_kept_at_the_rate() {
        let kept = (0..100_000).filter(|i| sample_point(&format!("pred-{i}")) < 0.25).count();
        assert!((24_000..26_000).contains(&kept), "kept {kept} of 100000 at rate 0.25");
        let kept = (0..10_000).filter(|i| sample_point(&format!("req-{i:08}")) < 0.25).count();
        assert!((2_300..2_700).contains(&kept), "kept {kept} of 10000 sequential ids at rate 0.25");
        let kept = (0..1_000).filter(|i| sample_point(&format!("p-{i}")) < 0.25).count();
        assert!((200..300).contains(&kept), "kept {kept} of 1000 short sequential ids at rate 0.25");
    }
}
