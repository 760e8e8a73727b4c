//! Property tests: merging two window states equals building one from the union of their events,
//! and binned statistics stay within their stated bounds of the exact ones.

use proptest::prelude::*;
use vigil_stats::drift::{ks, wasserstein};
use vigil_stats::perf::{
    ConfusionMatrix, MulticlassLogLoss, ProbabilityMetrics, RegressionMetrics, ScoreHistogram, ScoreSample,
};
use vigil_stats::{CategoricalSketch, ExactSum, LatencySketch, NumericSketch, QuantileSketch, Reservoir};

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

    #[test]
    fn exact_sums_do_not_depend_on_order_or_grouping(
        (xs, shuffled) in prop::collection::vec(
            prop_oneof![
                4 => -1e3f64..1e3,
                2 => any::<f64>().prop_filter("finite, no overflow", |x| x.is_finite() && x.abs() < 1e300),
                1 => -1e-300f64..1e-300,
                1 => prop_oneof![Just(1e16), Just(-1e16), Just(1.0), Just(2f64.powi(-53))],
            ],
            0..300,
        ).prop_flat_map(|xs| (Just(xs.clone()), Just(xs).prop_shuffle())),
        cuts in prop::collection::vec(0usize..300, 0..6),
        reverse in any::<bool>(),
    ) {
        let sum_of = |xs: &[f64]| {
            let mut s = ExactSum::new();
            xs.iter().for_each(|&x| s.add(x));
            s
        };
        let whole = sum_of(&xs);
        let mut cuts: Vec<usize> = cuts.into_iter().map(|c| c.min(shuffled.len())).collect();
        cuts.extend([0, shuffled.len()]);
        cuts.sort_unstable();
        let mut parts: Vec<ExactSum> = cuts.windows(2).map(|w| sum_of(&shuffled[w[0]..w[1]])).collect();
        if reverse {
            parts.reverse();
        }
        let mut merged = ExactSum::new();
        // Merge as a tree sometimes, as a chain otherwise: any grouping.
        if parts.len() > 2 && reverse {
            let mut right = parts.split_off(parts.len() / 2).into_iter().fold(ExactSum::new(), |mut acc, p| { acc.merge(&p); acc });
            let left = parts.into_iter().fold(ExactSum::new(), |mut acc, p| { acc.merge(&p); acc });
            right.merge(&left);
            merged = right;
        } else {
            parts.iter().for_each(|p| merged.merge(p));
        }
        prop_assert_eq!(merged.value().to_bits(), whole.value().to_bits());
        prop_assert_eq!(serde_json::to_string(&merged).unwrap(), serde_json::to_string(&whole).unwrap());
    }

    /// Every float a mergeable state keeps is exact: states merged from any split serialize
    /// byte for byte as the state of all events.
    #[test]
    fn merged_states_serialize_identically_however_split(
        events in prop::collection::vec((-1e6f64..1e6, 0.0f64..=1.0, any::<bool>()), 0..120),
        cut1 in 0usize..120,
        cut2 in 0usize..120,
    ) {
        let (c1, c2) = (cut1.min(events.len()), cut2.min(events.len()));
        let (c1, c2) = (c1.min(c2), c1.max(c2));
        let edges: Vec<f64> = (0..=20).map(|i| f64::from(i) / 20.0).collect();
        #[derive(Clone)]
        struct State(QuantileSketch, NumericSketch, ProbabilityMetrics, RegressionMetrics);
        let state_of = |evs: &[(f64, f64, bool)]| {
            let mut s = State(QuantileSketch::default(), NumericSketch::with_edges(edges.clone()).unwrap(), ProbabilityMetrics::new(), RegressionMetrics::new());
            for &(x, p, y) in evs {
                s.0.update(x);
                s.1.update(p);
                s.2.update(p, y).unwrap();
                s.3.update(x, x * p);
            }
            s
        };
        let json = |s: &State| {
            [serde_json::to_string(&s.0).unwrap(), serde_json::to_string(&s.1).unwrap(), serde_json::to_string(&s.2).unwrap(), serde_json::to_string(&s.3).unwrap()]
        };
        let whole = state_of(&events);
        let (a, b, c) = (state_of(&events[..c1]), state_of(&events[c1..c2]), state_of(&events[c2..]));
        // (c + a) + b: another order and grouping than the events'.
        let mut merged = c.clone();
        merged.0.merge(&a.0).unwrap();
        merged.1.merge(&a.1).unwrap();
        merged.2.merge(&a.2);
        merged.3.merge(&a.3);
        merged.0.merge(&b.0).unwrap();
        merged.1.merge(&b.1).unwrap();
        merged.2.merge(&b.2);
        merged.3.merge(&b.3);
        prop_assert_eq!(json(&merged), json(&whole));
        if let Some(std) = whole.0.std() {
            prop_assert_eq!(merged.0.std().unwrap().to_bits(), std.to_bits());
        }
        if whole.3.count() > 0 {
            prop_assert_eq!(merged.3.r2().unwrap().to_bits(), whole.3.r2().unwrap().to_bits());
        }
    }
}
