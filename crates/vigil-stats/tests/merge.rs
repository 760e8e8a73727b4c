//! Property tests: merging two window states equals building one from the union of their events,
//! and binned statistics stay within their stated bounds of the exact ones.

use proptest::prelude::*;
use vigil_stats::drift::{ks, wasserstein};
use vigil_stats::perf::{
    ConfusionMatrix, MulticlassLogLoss, ProbabilityMetrics, RegressionMetrics, ScoreHistogram,
    ScoreSample,
};
use vigil_stats::{CategoricalSketch, LatencySketch, NumericSketch, Reservoir};

fn values() -> impl Strategy<Value = Vec<f64>> {
    prop::collection::vec(
        prop_oneof![
            8 => -1e3f64..1e3,
            1 => (-5i32..5).prop_map(f64::from),
            1 => Just(f64::NAN),
            1 => Just(f64::INFINITY),
        ],
        0..200,
    )
}

fn approx(a: f64, b: f64) -> bool {
    (a - b).abs() <= 1e-9 * (1.0 + a.abs().max(b.abs()))
}

proptest! {
    #[test]
    fn numeric_merge_is_union(reference in values(), a in values(), b in values(), bins in 1usize..50) {
        prop_assume!(reference.iter().any(|x| x.is_finite()));
        let empty = NumericSketch::from_reference(&reference, bins).unwrap();
        let (mut sa, mut sb, mut su) = (empty.clone(), empty.clone(), empty);
        sa.extend(&a);
        sb.extend(&b);
        su.extend(&a);
        su.extend(&b);
        sa.merge(&sb).unwrap();
        prop_assert_eq!(sa.counts(), su.counts());
        prop_assert_eq!(sa.nonfinite(), su.nonfinite());
        prop_assert_eq!(sa.extent(), su.extent());
        if let (Some(x), Some(y)) = (sa.mean(), su.mean()) {
            prop_assert!(approx(x, y));
            prop_assert!(approx(sa.std().unwrap(), su.std().unwrap()));
        }
        // And the state survives serialization.
        let back: NumericSketch = serde_json::from_str(&serde_json::to_string(&sa).unwrap()).unwrap();
        prop_assert_eq!(back.counts(), sa.counts());
    }

    #[test]
    fn categorical_merge_is_union(
        reference in prop::collection::vec("[a-f]", 1..50),
        a in prop::collection::vec("[a-h]", 0..50),
        b in prop::collection::vec("[a-h]", 0..50),
        cap in 1usize..8,
    ) {
        let empty = CategoricalSketch::from_reference(&reference, cap).unwrap();
        let (mut sa, mut sb, mut su) = (empty.clone(), empty.clone(), empty);
        a.iter().for_each(|v| { sa.update(v); su.update(v); });
        b.iter().for_each(|v| { sb.update(v); su.update(v); });
        sa.merge(&sb).unwrap();
        prop_assert_eq!(sa.counts(), su.counts());
    }

    #[test]
    fn reservoir_merge_is_union(a in values(), b in values(), cap in 0usize..300) {
        let (mut ra, mut rb, mut ru) = (Reservoir::new(cap), Reservoir::new(cap), Reservoir::new(cap));
        ra.extend(&a);
        rb.extend(&b);
        ru.extend(&a);
        ru.extend(&b);
        ra.merge(&rb).unwrap();
        prop_assert_eq!(ra, ru);
    }

    #[test]
    fn latency_merge_is_union(a in prop::collection::vec(0u64..10_000_000, 0..100), b in prop::collection::vec(0u64..10_000_000, 0..100)) {
        let empty = LatencySketch::new(1_000_000, 3).unwrap();
        let (mut sa, mut sb, mut su) = (empty.clone(), empty.clone(), empty);
        a.iter().for_each(|&v| { sa.update(v); su.update(v); });
        b.iter().for_each(|&v| { sb.update(v); su.update(v); });
        sa.merge(&sb).unwrap();
        prop_assert_eq!(sa.count(), su.count());
        prop_assert_eq!(sa.clamped(), su.clamped());
        prop_assert_eq!(sa.histogram(), su.histogram());
    }

    #[test]
    fn metric_accumulators_merge_is_union(events in prop::collection::vec((0usize..3, 0usize..3, 0.0f64..=1.0, -50.0f64..50.0), 0..100), split in 0usize..100) {
        let split = split.min(events.len());
        let (mut cm, mut hist, mut prob, mut reg) = (
            [ConfusionMatrix::new(3).unwrap(), ConfusionMatrix::new(3).unwrap(), ConfusionMatrix::new(3).unwrap()],
            [ScoreHistogram::new(10).unwrap(), ScoreHistogram::new(10).unwrap(), ScoreHistogram::new(10).unwrap()],
            [ProbabilityMetrics::new(), ProbabilityMetrics::new(), ProbabilityMetrics::new()],
            [RegressionMetrics::new(), RegressionMetrics::new(), RegressionMetrics::new()],
        );
        for (i, &(t, p, s, y)) in events.iter().enumerate() {
            for part in [if i < split { 0 } else { 1 }, 2] {
                cm[part].update(t, p).unwrap();
                hist[part].update(s, t == 1);
                prob[part].update(s, t == 1).unwrap();
                reg[part].update(y, y + s - 0.5);
            }
        }
        let [mut cm0, cm1, cmu] = cm;
        cm0.merge(&cm1).unwrap();
        prop_assert_eq!(cm0, cmu);
        let [mut h0, h1, hu] = hist;
        h0.merge(&h1).unwrap();
        prop_assert_eq!(h0, hu);
        let [mut p0, p1, pu] = prob;
        p0.merge(&p1);
        prop_assert_eq!(p0.count(), pu.count());
        if pu.count() > 0 {
            prop_assert!(approx(p0.log_loss().unwrap(), pu.log_loss().unwrap()));
            prop_assert!(approx(p0.expected_calibration_error().unwrap(), pu.expected_calibration_error().unwrap()));
        }
        let [mut r0, r1, ru] = reg;
        r0.merge(&r1);
        if ru.count() > 0 {
            prop_assert!(approx(r0.r2().unwrap(), ru.r2().unwrap()));
            prop_assert!(approx(r0.rmse().unwrap(), ru.rmse().unwrap()));
        }
    }

    #[test]
    fn binned_ks_and_wasserstein_stay_within_bounds(
        reference in prop::collection::vec(-100.0f64..100.0, 1..300),
        current in prop::collection::vec(-150.0f64..150.0, 1..300),
        bins in 1usize..60,
    ) {
        let rs = NumericSketch::reference(&reference, bins).unwrap();
        let mut cs = rs.empty_like();
        cs.extend(&current);
        let exact = ks::ks_2samp(&reference, &current).unwrap().statistic;
        let binned = ks::ks_binned(&rs, &cs).unwrap();
        prop_assert!(binned.statistic <= exact + 1e-12);
        prop_assert!(exact - binned.statistic <= binned.error_bound.unwrap() + 1e-12);
        let exact = wasserstein::wasserstein(&reference, &current).unwrap().statistic;
        let binned = wasserstein::wasserstein_binned(&rs, &cs).unwrap();
        prop_assert!((exact - binned.statistic).abs() <= binned.error_bound.unwrap() * (1.0 + 1e-9) + 1e-9);
    }

    #[test]
    fn score_sample_and_multiclass_log_loss_merge_is_union(
        events in prop::collection::vec((0.0f64..=1.0, 0usize..3), 0..80),
        split in 0usize..80,
        cap in 0usize..100,
    ) {
        let split = split.min(events.len());
        let (mut a, mut b, mut u) = (ScoreSample::new(cap), ScoreSample::new(cap), ScoreSample::new(cap));
        let new_loss = || MulticlassLogLoss::new(3).unwrap();
        let (mut la, mut lb, mut lu) = (new_loss(), new_loss(), new_loss());
        for (i, &(s, c)) in events.iter().enumerate() {
            let (sample, loss) = if i < split { (&mut a, &mut la) } else { (&mut b, &mut lb) };
            let probs = [s / 2.0, s / 2.0, 1.0 - s];
            sample.update(s, c == 1);
            loss.update(&probs, c).unwrap();
            u.update(s, c == 1);
            lu.update(&probs, c).unwrap();
        }
        a.merge(&b).unwrap();
        prop_assert_eq!(a, u);
        la.merge(&lb).unwrap();
        if !events.is_empty() {
            prop_assert!(approx(la.log_loss().unwrap(), lu.log_loss().unwrap()));
        }
    }
}
