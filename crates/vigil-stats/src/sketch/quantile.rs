//! Reference-independent, mergeable quantile sketch (DDSketch-style log buckets), and its
//! re-binning onto reference edges with a stated error bound.
//!
//! Why: partial window states must merge whatever the reference is, and a live-baseline
//! reference has no quantile edges until it is complete. So partials keep a [`QuantileSketch`]
//! per numeric feature; at window close the reference's edges come from the reference's sketch
//! ([`QuantileSketch::edges`]) and both sides are re-binned ([`QuantileSketch::rebin`]) into
//! [`NumericSketch`]es, on which the binned drift tests run unchanged.

use serde::{Deserialize, Serialize};

use super::numeric::NumericSketch;
use crate::drift::wasserstein::STD_FLOOR;
use crate::drift::{DriftTest, EMPTY_BIN_EPSILON};
use crate::error::{require, Result, StatsError};
use crate::exact::ExactSum;

/// Default relative accuracy: quantile estimates within 1% of the true value.
pub const DEFAULT_ALPHA: f64 = 0.01;
/// Default bucket budget per sign: at `alpha = 0.01` 2048 buckets span magnitudes over a ratio
/// of about 6e17 before anything collapses.
pub const DEFAULT_MAX_BUCKETS: u32 = 2048;
/// Magnitudes below this (zeros and subnormals) are counted in the zero bucket, represented by 0.
pub const MIN_INDEXABLE: f64 = f64::MIN_POSITIVE;

/// Accepted `alpha`: below 1e-6 bucket keys would overflow `i32` near `f64::MAX` and the bucket
/// widths approach rounding error; above 0.5 the sketch says little.
const ALPHA_RANGE: (f64, f64) = (1e-6, 0.5);
/// Serialized runs of buckets break at gaps of more than this many empty buckets (a zero costs 2
/// bytes of JSON, a new run about 10).
const MAX_GAP: i32 = 4;

/// Quantile sketch with relative accuracy `alpha` (DDSketch, Masson et al. 2019).
///
/// A finite `x` with `|x| >= MIN_INDEXABLE` falls in bucket `k = ceil(ln|x| / ln g)` of the
/// store of its sign, `g = (1 + alpha) / (1 - alpha)`; bucket `k` holds magnitudes in
/// `(g^(k-1), g^k]` and is represented by `(1 - alpha) g^k`, within relative `alpha` of every
/// value in it. Smaller magnitudes count in a zero bucket (represented by 0), NaN and ±inf in
/// [`QuantileSketch::nonfinite`], never in a bucket. Count, minimum and maximum are exact; the
/// sum and the sum of squares are kept exactly ([`ExactSum`], squares split error-free), so the
/// mean and variance are correctly rounded functions of the values, whatever the merge order.
///
/// Size is bounded: each store spans at most `max_buckets` consecutive keys. When a new largest
/// key would exceed that span, the lowest-magnitude buckets collapse into the lowest kept one;
/// the values moved are counted by [`QuantileSketch::collapsed`] and their quantile estimates
/// lose the `alpha` guarantee (they can be too large in magnitude). The collapse point depends
/// only on the largest key, so merging stays exact.
///
/// Representatives are clamped to `[min, max]`, which keeps the guarantee (the true value lies
/// there too) and makes constant data exact.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(try_from = "Repr", into = "Repr")]
pub struct QuantileSketch {
    alpha: f64,
    max_buckets: u32,
    ln_gamma: f64,
    inv_ln_gamma: f64,
    pos: Store,
    neg: Store,
    zero: u64,
    nonfinite: u64,
    count: u64,
    sum: ExactSum,
    /// Sum of the squares, each added exactly as `x*x` plus its rounding error.
    sum_sq: ExactSum,
    min: f64,
    max: f64,
}

impl Default for QuantileSketch {
    fn default() -> Self {
        Self::new(DEFAULT_ALPHA, DEFAULT_MAX_BUCKETS).expect("defaults are valid")
    }
}

impl QuantileSketch {
    /// An empty sketch. `InvalidArgument` unless `1e-6 <= alpha <= 0.5` and `max_buckets >= 1`.
    pub fn new(alpha: f64, max_buckets: u32) -> Result<Self> {
        if !(ALPHA_RANGE.0..=ALPHA_RANGE.1).contains(&alpha) {
            return Err(StatsError::InvalidArgument(format!(
                "alpha must be in [{}, {}], got {alpha}",
                ALPHA_RANGE.0, ALPHA_RANGE.1
            )));
        }
        if max_buckets == 0 || max_buckets > i32::MAX as u32 {
            return Err(StatsError::InvalidArgument("max_buckets must be in [1, 2^31)".into()));
        }
        // ln((1 + a) / (1 - a)) without the rounding of forming the ratio first.
        let ln_gamma = alpha.ln_1p() - (-alpha).ln_1p();
        Ok(QuantileSketch {
            alpha,
            max_buckets,
            ln_gamma,
            inv_ln_gamma: 1.0 / ln_gamma,
            pos: Store::default(),
            neg: Store::default(),
            zero: 0,
            nonfinite: 0,
            count: 0,
            sum: ExactSum::new(),
            sum_sq: ExactSum::new(),
            min: f64::INFINITY,
            max: f64::NEG_INFINITY,
        })
    }

    /// Builds the sketch of `xs` with the default accuracy and size.
    pub fn of(xs: &[f64]) -> Self {
        let mut s = Self::default();
        s.extend(xs);
        s
    }

    #[inline]
    fn cap(&self) -> i32 {
        self.max_buckets as i32
    }

    /// Key of magnitude `m >= MIN_INDEXABLE`. Monotone in `m`, which the re-binning bound uses.
    #[inline]
    fn key(&self, m: f64) -> i32 {
        (m.ln() * self.inv_ln_gamma).ceil() as i32
    }

    /// Adds one value; NaN and ±inf are counted apart.
    #[inline]
    pub fn update(&mut self, x: f64) {
        if !x.is_finite() {
            self.nonfinite += 1;
            return;
        }
        let m = x.abs();
        if m < MIN_INDEXABLE {
            self.zero += 1;
        } else {
            let (key, cap) = (self.key(m), self.cap());
            let store = if x > 0.0 { &mut self.pos } else { &mut self.neg };
            store.add(key, 1, cap);
        }
        self.count += 1;
        self.sum.add(x);
        self.sum_sq.add_square(x);
        self.min = self.min.min(x);
        self.max = self.max.max(x);
    }

    /// Adds every value of `xs`.
    pub fn extend(&mut self, xs: &[f64]) {
        xs.iter().for_each(|&x| self.update(x));
    }

    /// Adds `other`'s values: afterwards the buckets equal those of one sketch fed both inputs
    /// (count, min, max, sum and sum of squares exactly). `Incompatible`
    /// unless both have the same `alpha` and `max_buckets`.
    pub fn merge(&mut self, other: &Self) -> Result<()> {
        if self.alpha != other.alpha || self.max_buckets != other.max_buckets {
            return Err(StatsError::Incompatible("quantile sketches have different alpha or max_buckets"));
        }
        let cap = self.cap();
        self.pos.merge(&other.pos, cap);
        self.neg.merge(&other.neg, cap);
        self.zero += other.zero;
        self.nonfinite += other.nonfinite;
        if other.count > 0 {
            self.count += other.count;
            self.sum.merge(&other.sum);
            self.sum_sq.merge(&other.sum_sq);
            self.min = self.min.min(other.min);
            self.max = self.max.max(other.max);
        }
        Ok(())
    }

    pub fn alpha(&self) -> f64 {
        self.alpha
    }

    pub fn max_buckets(&self) -> u32 {
        self.max_buckets
    }

    /// Finite values counted.
    pub fn count(&self) -> u64 {
        self.count
    }

    /// NaN and ±inf values seen (never in a bucket).
    pub fn nonfinite(&self) -> u64 {
        self.nonfinite
    }

    /// Sum of the finite values, correctly rounded.
    pub fn sum(&self) -> f64 {
        self.sum.value()
    }

    /// Sum of squared deviations from the mean of the finite values, from the exact sums.
    fn m2(&self) -> f64 {
        ExactSum::centered_squares(self.count, &self.sum, &self.sum_sq)
    }

    /// Exact smallest finite value, if any.
    pub fn min(&self) -> Option<f64> {
        (self.count > 0).then_some(self.min)
    }

    /// Exact largest finite value, if any.
    pub fn max(&self) -> Option<f64> {
        (self.count > 0).then_some(self.max)
    }

    /// Mean of the finite values, if any.
    pub fn mean(&self) -> Option<f64> {
        (self.count > 0).then(|| self.sum.value() / self.count as f64)
    }

    /// Population standard deviation (ddof = 0) of the finite values, if any.
    pub fn std(&self) -> Option<f64> {
        (self.count > 0).then(|| (self.m2() / self.count as f64).max(0.0).sqrt())
    }

    /// Values whose bucket collapsed to keep the size bound: their estimates may miss the
    /// `alpha` guarantee. 0 unless magnitudes span a ratio above `g^max_buckets`.
    pub fn collapsed(&self) -> u64 {
        self.pos.collapsed + self.neg.collapsed
    }

    /// Non-empty buckets (the zero bucket included): what the serialized size grows with.
    pub fn bucket_count(&self) -> usize {
        self.buckets().count()
    }

    /// Estimate of the `q` quantile of the finite values with numpy's default (linear)
    /// interpolation: with `h = (n - 1) q`, `x_(floor h) + (h - floor h) (x_(ceil h) - x_(floor h))`,
    /// each order statistic replaced by the representative of its bucket (the minimum and maximum
    /// are exact).
    ///
    /// Guarantee (outside collapsed buckets): each order statistic is within `alpha |x|`, so the
    /// estimate is within `alpha ((1 - t) |x_lo| + t |x_hi|)`, which is `alpha |q-quantile|` when
    /// both neighbours have the same sign; a value in the zero band is off by less than
    /// [`MIN_INDEXABLE`]. `NotEnoughData` when empty, `InvalidArgument` unless `0 <= q <= 1`.
    pub fn quantile(&self, q: f64) -> Result<f64> {
        if !(0.0..=1.0).contains(&q) {
            return Err(StatsError::InvalidArgument(format!("quantile must be in [0, 1], got {q}")));
        }
        require(1, self.count)?;
        Ok(self.interpolated(&[q])[0])
    }

    /// Reference edges for `bins` quantile bins: the estimated quantiles at `0, 1/bins, ..., 1`
    /// with duplicates removed, as [`NumericSketch::from_reference`] computes them from exact
    /// values (same interpolation, same deduplication; the first and last edge are the exact
    /// minimum and maximum). Feed them to [`NumericSketch::with_edges`] or [`Self::rebin`].
    /// `InvalidArgument` when `bins == 0`, `NotEnoughData` when empty.
    pub fn edges(&self, bins: usize) -> Result<Vec<f64>> {
        if bins == 0 {
            return Err(StatsError::InvalidArgument("bins must be at least 1".into()));
        }
        require(1, self.count)?;
        let qs: Vec<f64> = (0..=bins).map(|i| i as f64 / bins as f64).collect();
        let mut edges = self.interpolated(&qs);
        // Estimates are monotone in exact arithmetic; keep rounding from breaking the order.
        for i in 1..edges.len() {
            edges[i] = edges[i].max(edges[i - 1]);
        }
        edges.dedup();
        Ok(edges)
    }

    /// numpy-linear quantiles at ascending `qs` (count > 0), interpolating exactly as
    /// `numeric::quantile_sorted` does so equal order statistics give equal edges.
    fn interpolated(&self, qs: &[f64]) -> Vec<f64> {
        let last = (self.count - 1) as f64;
        let hs: Vec<f64> = qs.iter().map(|&q| last * q).collect();
        let ranks: Vec<u64> = hs.iter().flat_map(|h| [h.floor() as u64, h.ceil() as u64]).collect();
        let values = self.values_at_ranks(&ranks);
        hs.iter().zip(values.chunks(2)).map(|(&h, v)| v[0] + (h - h.floor()) * (v[1] - v[0])).collect()
    }

    /// Estimated order statistics at ascending 0-based `ranks` (count > 0): the clamped
    /// representative of the bucket holding each rank; ranks 0 and n - 1 give the exact extremes.
    fn values_at_ranks(&self, ranks: &[u64]) -> Vec<f64> {
        let mut out = Vec::with_capacity(ranks.len());
        let mut r = ranks.iter().peekable();
        let mut cum = 0u64;
        for (b, c) in self.buckets() {
            cum += c;
            let v = self.representative(b);
            while let Some(&&rank) = r.peek() {
                if rank >= cum {
                    break;
                }
                out.push(if rank == 0 {
                    self.min
                } else if rank + 1 == self.count {
                    self.max
                } else {
                    v
                });
                r.next();
            }
        }
        debug_assert_eq!(out.len(), ranks.len());
        out
    }

    /// Non-empty buckets in ascending order of value, with their counts.
    fn buckets(&self) -> impl Iterator<Item = (Bucket, u64)> + '_ {
        let neg = self.neg.iter().rev().map(|(k, c)| (Bucket::Neg(k), c));
        let zero = (self.zero > 0).then_some((Bucket::Zero, self.zero));
        let pos = self.pos.iter().map(|(k, c)| (Bucket::Pos(k), c));
        neg.chain(zero).chain(pos)
    }

    /// Representative of a non-empty bucket, clamped to `[min, max]` (count > 0).
    fn representative(&self, b: Bucket) -> f64 {
        let mag = |k: i32| (1.0 - self.alpha) * (k as f64 * self.ln_gamma).exp();
        let v = match b {
            Bucket::Neg(k) => -mag(k),
            Bucket::Zero => 0.0,
            Bucket::Pos(k) => mag(k),
        };
        v.clamp(self.min, self.max)
    }

    /// The bucket a value `x` would be counted in now (collapse included), for finite `x`.
    fn bucket_of(&self, x: f64) -> Bucket {
        let m = x.abs();
        if m < MIN_INDEXABLE {
            return Bucket::Zero;
        }
        let store = if x > 0.0 { &self.pos } else { &self.neg };
        let mut k = self.key(m);
        if store.total > 0 {
            k = k.max(store.hi - (self.cap() - 1));
        }
        if x > 0.0 {
            Bucket::Pos(k)
        } else {
            Bucket::Neg(k)
        }
    }

    /// Re-bins onto `edges` (as [`NumericSketch::with_edges`] takes them, e.g. from
    /// [`Self::edges`] of the reference's sketch): a bucket that holds no edge goes to the bin of
    /// its representative (where all its values are); a bucket an edge falls in goes to the bin
    /// of its first edge (clamped to `[min, max]`). Count, nonfinite, mean, standard deviation
    /// and extent are carried exactly. See [`Self::rebin_with_bounds`] for how far the result
    /// can be from binning the values themselves.
    pub fn rebin(&self, edges: &[f64]) -> Result<NumericSketch> {
        Ok(self.rebin_with_bounds(edges)?.sketch)
    }

    /// [`Self::rebin`] plus what bounds its error, bucket by bucket.
    ///
    /// Why a bound exists: keys are monotone in the value, so every value of a bucket lies on
    /// the same side of an edge as its representative unless the edge falls in that bucket
    /// itself (it has the bucket's key), or the bucket holds the minimum or maximum and the
    /// edge lies between that extreme and the representative's side. Such a bucket *straddles*;
    /// only straddling buckets can put a value in another bin than binning the value itself
    /// would. A bucket's values can therefore land in bins `lo..=hi` only (one bin when it does
    /// not straddle), which gives, with the same edges:
    /// - per bin `j`, the exact count lies in `[bin_min[j], bin_max[j]]` (non-straddling
    ///   buckets of bin `j`; plus every straddling bucket whose range covers `j`);
    /// - per CDF point `j` (values in bins `0..=j`, i.e. below edge `j`, or up to it for the
    ///   last edge), the exact cumulative count is within `edge_mass[j]` (the counts of the
    ///   buckets whose range straddles that point, at most one bucket for an edge that does
    ///   not share its bucket with others) of the re-binned one.
    ///
    /// [`Rebinned::error_bound`] turns these into a bound per drift test.
    pub fn rebin_with_bounds(&self, edges: &[f64]) -> Result<Rebinned> {
        let mut sketch = NumericSketch::with_edges(edges.to_vec())?;
        let e = sketch.edges().to_vec();
        let nbins = e.len() + 1;
        let mut counts = vec![0u64; nbins];
        let mut bin_min = vec![0u64; nbins];
        // Difference arrays: +c where a bucket's bin range starts, -c past its end.
        let mut bin_span = vec![0u64; nbins + 1];
        let mut point_span = vec![0u64; nbins];
        let edge_keys: Vec<Bucket> = e.iter().map(|&x| self.bucket_of(x)).collect();
        let nb = self.bucket_count();
        let mut j = 0;
        for (i, (b, c)) in self.buckets().enumerate() {
            while j < e.len() && edge_keys[j] < b {
                j += 1;
            }
            let mut j2 = j;
            while j2 < e.len() && edge_keys[j2] == b {
                j2 += 1;
            }
            // A bucket holding no edge lies inside one bin, found by its representative. One
            // holding edges j..j2 can reach bins j..=j2; its count goes where a value equal to
            // its first edge goes (clamped to [min, max], where the values are), so that point
            // masses at an edge (constant or discrete features, the reference's exact extremes)
            // land exactly, and the two sides of a comparison split such buckets alike.
            let (target, (mut lo, mut hi)) = if j2 > j {
                (e[j].clamp(self.min, self.max), (j, j2))
            } else {
                let bin = sketch.bin_index(self.representative(b));
                (self.representative(b), (bin, bin))
            };
            let bin = sketch.bin_index(target);
            counts[bin] += c;
            if i == 0 {
                lo = sketch.bin_index(self.min);
            }
            if i + 1 == nb {
                hi = sketch.bin_index(self.max);
            }
            debug_assert!(lo <= bin && bin <= hi);
            if lo == hi {
                bin_min[lo] += c;
            }
            bin_span[lo] = bin_span[lo].wrapping_add(c);
            bin_span[hi + 1] = bin_span[hi + 1].wrapping_sub(c);
            point_span[lo] = point_span[lo].wrapping_add(c);
            point_span[hi] = point_span[hi].wrapping_sub(c);
        }
        let prefix = |d: &[u64], len: usize| -> Vec<u64> {
            d.iter()
                .take(len)
                .scan(0u64, |acc, &x| {
                    *acc = acc.wrapping_add(x);
                    Some(*acc)
                })
                .collect()
        };
        let bin_max = prefix(&bin_span, nbins);
        let edge_mass = prefix(&point_span, e.len());
        let mean = self.mean().unwrap_or(0.0);
        sketch.set_parts(counts, self.nonfinite, (mean, self.m2()), (self.min, self.max))?;
        Ok(Rebinned { sketch, edge_mass, bin_min, bin_max })
    }
}

/// A bucket, ordered by value: negative buckets (larger key = more negative), zero, positive.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Bucket {
    Neg(i32),
    Zero,
    Pos(i32),
}

impl Bucket {
    fn rank(self) -> (i8, i64) {
        match self {
            Bucket::Neg(k) => (-1, -(k as i64)),
            Bucket::Zero => (0, 0),
            Bucket::Pos(k) => (1, k as i64),
        }
    }
}

impl PartialOrd for Bucket {
    fn partial_cmp(&self, other: &Self) -> Option<std::cmp::Ordering> {
        Some(self.cmp(other))
    }
}

impl Ord for Bucket {
    fn cmp(&self, other: &Self) -> std::cmp::Ordering {
        self.rank().cmp(&other.rank())
    }
}

/// A [`QuantileSketch`] re-binned onto edges, with what bounds the difference from binning the
/// raw values onto the same edges (see [`QuantileSketch::rebin_with_bounds`]).
#[derive(Debug, Clone)]
pub struct Rebinned {
    /// The histogram the drift tests run on.
    pub sketch: NumericSketch,
    /// Per edge `j` (CDF point after bin `j`): the most the exact cumulative count can differ.
    pub edge_mass: Vec<u64>,
    /// Per bin: the least and the most values the exact histogram can hold there.
    pub bin_min: Vec<u64>,
    pub bin_max: Vec<u64>,
}

impl Rebinned {
    /// Bound on `|statistic(self, current) - statistic(exact_ref, exact_cur)|` where the exact
    /// histograms bin the raw values onto the same edges, for the binned test `test` (`self` is
    /// the reference). With `r_j = edge_mass_ref[j] / n_ref + edge_mass_cur[j] / n_cur`:
    /// - KS: `max_j r_j` (each CDF point moves by at most its straddling mass);
    /// - Wasserstein: `sum_bins width (r_left + r_right) / 2` (the binned W1 integrates the CDF
    ///   difference linearly across each bin, and `|mean |d| - mean |d'|| <= mean |d - d'|`),
    ///   divided by the reference standard deviation (floored, carried exactly) when normed;
    /// - PSI, Jensen-Shannon, Hellinger: each is a sum over bins of `p phi(q / p)` with `phi`
    ///   convex and `phi(1) = 0`, jointly convex in `(p, q)`; over the box of possible exact
    ///   proportions per bin (`bin_min / n ..= bin_max / n`, PSI's 1e-4 floor applied) a term's
    ///   maximum sits at a corner and its minimum at a corner or is 0 when the box meets `p = q`.
    ///   The bound is the distance from the statistic to the ends of the summed interval.
    ///
    /// Up to floating-point rounding. `InvalidArgument` for tests without a binned form here
    /// (chi-square, Cramér-von Mises, Z), `Incompatible` for different edges, `NotEnoughData`
    /// for an empty side. Add the binned test's own `error_bound` (vs raw values) to get a bound
    /// against the exact statistic of the raw values.
    pub fn error_bound(&self, test: DriftTest, current: &Rebinned) -> Result<f64> {
        let (r, c) = (&self.sketch, &current.sketch);
        r.check_compatible(c)?;
        let (nr, nc) = (r.count(), c.count());
        require(1, nr)?;
        require(1, nc)?;
        let (nr, nc) = (nr as f64, nc as f64);
        let point: Vec<f64> = self
            .edge_mass
            .iter()
            .zip(&current.edge_mass)
            .map(|(&a, &b)| a as f64 / nr + b as f64 / nc)
            .collect();
        let box_of = |s: &Rebinned, n: f64| -> Vec<(f64, f64)> {
            s.bin_min.iter().zip(&s.bin_max).map(|(&lo, &hi)| (lo as f64 / n, hi as f64 / n)).collect()
        };
        let stat_of = |t: DriftTest| -> Result<f64> {
            use crate::drift::{hellinger, js, psi};
            Ok(match t {
                DriftTest::Psi => psi::psi(r, c)?.statistic,
                DriftTest::JensenShannon => js::jensen_shannon(r, c)?.statistic,
                _ => hellinger::hellinger(r, c)?.statistic,
            })
        };
        match test {
            DriftTest::Ks => Ok(point.iter().copied().fold(0.0, f64::max)),
            DriftTest::Wasserstein | DriftTest::WassersteinNormed => {
                let w = wasserstein_bound(r, c, &point);
                if test == DriftTest::Wasserstein {
                    Ok(w)
                } else {
                    Ok(w / r.std().unwrap_or(0.0).max(STD_FLOOR))
                }
            }
            DriftTest::Psi | DriftTest::JensenShannon | DriftTest::Hellinger => {
                let (pb, qb) = (box_of(self, nr), box_of(current, nc));
                let (lo, hi) = divergence_range(test, &pb, &qb, (nr, nc));
                let stat = stat_of(test)?;
                Ok((hi - stat).max(stat - lo).max(0.0))
            }
            DriftTest::ChiSquare
            | DriftTest::ChiSquare2Samp
            | DriftTest::CramerVonMises
            | DriftTest::ZTest => {
                Err(StatsError::InvalidArgument(format!("no re-binning bound for {}", test.name())))
            }
        }
    }
}

/// `sum_bins width (r_left + r_right) / 2` with the bins' spans as `wasserstein_binned` uses
/// them (outer bins out to the extreme values either side saw; carried exactly by the rebin).
fn wasserstein_bound(r: &NumericSketch, c: &NumericSketch, point: &[f64]) -> f64 {
    let (rlo, rhi) = r.extent().expect("non-empty");
    let (clo, chi) = c.extent().expect("non-empty");
    let e = r.edges();
    let (lo, hi) = (rlo.min(clo), rhi.max(chi));
    // Bin j spans [bound(j), bound(j + 1)]; its CDF points are j - 1 (left) and j (right),
    // where the points outside 0..L are the ends, at which both CDFs agree exactly.
    let bound = |j: usize| match j {
        0 => lo,
        j if j > e.len() => hi,
        j => e[j - 1],
    };
    let at = |j: isize| usize::try_from(j).ok().and_then(|j| point.get(j)).copied().unwrap_or(0.0);
    (0..=e.len()).map(|j| (bound(j + 1) - bound(j)) * 0.5 * (at(j as isize - 1) + at(j as isize))).sum()
}

/// The interval the f-divergence statistic `test` can take over the per-bin boxes of possible
/// exact proportions `pb` (reference) and `qb` (current).
fn divergence_range(
    test: DriftTest,
    pb: &[(f64, f64)],
    qb: &[(f64, f64)],
    (nr, nc): (f64, f64),
) -> (f64, f64) {
    let floored = |(lo, hi): (f64, f64), n: f64| {
        // PSI replaces a proportion of exactly 0 by the floor; others are >= 1/n.
        if lo > 0.0 {
            (lo, hi)
        } else if hi == 0.0 {
            (EMPTY_BIN_EPSILON, EMPTY_BIN_EPSILON)
        } else {
            (EMPTY_BIN_EPSILON.min(1.0 / n), hi.max(EMPTY_BIN_EPSILON))
        }
    };
    let term = |p: f64, q: f64| -> f64 {
        match test {
            DriftTest::Psi => (q - p) * (q / p).ln(),
            DriftTest::JensenShannon => {
                let m = 0.5 * (p + q);
                let t = |x: f64| if x > 0.0 { x * (x / m).ln() } else { 0.0 };
                t(p) + t(q)
            }
            _ => (p.sqrt() - q.sqrt()).powi(2),
        }
    };
    let (mut lo, mut hi) = (0.0, 0.0);
    for (&p, &q) in pb.iter().zip(qb) {
        let (p, q) = if test == DriftTest::Psi { (floored(p, nr), floored(q, nc)) } else { (p, q) };
        let corners = [term(p.0, q.0), term(p.0, q.1), term(p.1, q.0), term(p.1, q.1)];
        hi += corners.iter().copied().fold(0.0, f64::max);
        let meets_diagonal = p.0 <= q.1 && q.0 <= p.1;
        if !meets_diagonal {
            lo += corners.iter().copied().fold(f64::INFINITY, f64::min);
        }
    }
    // Map the summed terms to the statistic as the binned tests do.
    match test {
        DriftTest::Psi => (lo, hi),
        DriftTest::JensenShannon => {
            let f = |s: f64| (s / 2.0 / std::f64::consts::LN_2).max(0.0).sqrt();
            (f(lo), f(hi))
        }
        _ => ((0.5 * lo).sqrt(), (0.5 * hi).sqrt()),
    }
}

/// Counts per key of one sign, densely over a window of keys that grows with some slack.
/// Invariants: `lo..=hi` are the lowest and highest non-empty keys when `total > 0`;
/// `hi - lo < cap`; the `collapsed` values (original key below `hi - cap + 1`) sit at `lo`.
#[derive(Debug, Clone, Default)]
struct Store {
    offset: i32,
    counts: Vec<u64>,
    lo: i32,
    hi: i32,
    total: u64,
    collapsed: u64,
}

impl PartialEq for Store {
    fn eq(&self, other: &Self) -> bool {
        self.total == other.total && self.collapsed == other.collapsed && self.iter().eq(other.iter())
    }
}

impl Store {
    /// Non-empty (key, count) pairs, ascending.
    fn iter(&self) -> impl DoubleEndedIterator<Item = (i32, u64)> + '_ {
        self.counts.iter().enumerate().filter(|(_, &c)| c > 0).map(move |(i, &c)| (self.offset + i as i32, c))
    }

    #[inline]
    fn add(&mut self, key: i32, n: u64, cap: i32) {
        if self.total == 0 {
            self.offset = key;
            self.counts.clear();
            self.counts.push(0);
            self.lo = key;
            self.hi = key;
        } else if key > self.hi {
            let floor = key - (cap - 1);
            if self.lo < floor {
                self.collapse_below(floor);
            }
            self.hi = key;
        }
        let floor = self.hi - (cap - 1);
        let key = if key < floor {
            self.collapsed += n;
            floor
        } else {
            key
        };
        let i = self.slot(key, cap);
        self.counts[i] += n;
        self.lo = self.lo.min(key);
        self.total += n;
    }

    /// Moves every count below `floor` (> `lo`) to `floor`. The values moved are exactly those
    /// whose original key is below `floor` (earlier collapses moved only keys below a lower
    /// floor), so they replace the collapsed count.
    fn collapse_below(&mut self, floor: i32) {
        let cut = ((floor - self.offset) as usize).min(self.counts.len());
        let moved: u64 = self.counts.drain(..cut).sum();
        self.offset = floor;
        if self.counts.is_empty() {
            self.counts.push(0);
        }
        self.counts[0] += moved;
        self.lo = floor;
        self.collapsed = moved;
    }

    /// Index of `key` (at or above `hi - cap + 1`) in `counts`, growing the window with slack
    /// so a stream of new keys does not move the counts each time; the window stays within
    /// about 1.5 `cap` because nothing is stored below `hi - cap + 1`.
    #[inline]
    fn slot(&mut self, key: i32, cap: i32) -> usize {
        let pad = 16.max(self.counts.len() as i32 / 2);
        if key < self.offset {
            let new_offset = (key - pad).max(self.hi - (cap - 1)).min(key);
            let grow = (self.offset - new_offset) as usize;
            // One copy into a new buffer (what `splice` at the front costs several times over).
            let mut counts = Vec::with_capacity(grow + self.counts.len());
            counts.resize(grow, 0);
            counts.extend_from_slice(&self.counts);
            self.counts = counts;
            self.offset = new_offset;
        } else if key - self.offset >= self.counts.len() as i32 {
            self.counts.resize((key - self.offset + 1 + pad) as usize, 0);
        }
        (key - self.offset) as usize
    }

    fn merge(&mut self, other: &Store, cap: i32) {
        if other.total == 0 {
            return;
        }
        if self.total == 0 {
            *self = other.clone();
            return;
        }
        let hi = self.hi.max(other.hi);
        let floor = hi - (cap - 1);
        if self.lo < floor {
            self.collapse_below(floor);
        }
        self.hi = hi;
        let from_other = if other.lo < floor {
            other.iter().take_while(|&(k, _)| k < floor).map(|(_, c)| c).sum()
        } else {
            other.collapsed
        };
        for (k, c) in other.iter() {
            let k = k.max(floor);
            let i = self.slot(k, cap);
            self.counts[i] += c;
            self.lo = self.lo.min(k);
        }
        self.total += other.total;
        self.collapsed += from_other;
    }

    /// Runs of keys with their counts, split at gaps of more than `MAX_GAP` empty keys.
    fn runs(&self) -> Vec<(i32, Vec<u64>)> {
        let mut runs: Vec<(i32, Vec<u64>)> = Vec::new();
        for (k, c) in self.iter() {
            match runs.last_mut() {
                Some((start, cs)) if k - (*start + cs.len() as i32) <= MAX_GAP => {
                    cs.resize((k - *start) as usize, 0);
                    cs.push(c);
                }
                _ => runs.push((k, vec![c])),
            }
        }
        runs
    }

    fn from_runs(runs: Vec<(i32, Vec<u64>)>, collapsed: u64, cap: i32) -> Result<Self> {
        let err = |m: &str| StatsError::InvalidArgument(format!("quantile sketch: {m}"));
        let bad = |m: &str| Err(err(m));
        let mut s = Store::default();
        let mut next = i64::MIN;
        for (start, cs) in runs {
            if (start as i64) < next {
                return bad("bucket runs overlap or are unsorted");
            }
            next = start as i64 + cs.len() as i64;
            for (i, c) in cs.into_iter().enumerate() {
                let k = i32::try_from(start as i64 + i as i64).map_err(|_| err("bucket key out of range"))?;
                if c == 0 {
                    continue;
                }
                if s.total > 0 && k - s.lo >= cap {
                    return bad("buckets span more than max_buckets");
                }
                if s.total.checked_add(c).is_none() {
                    return bad("count overflows");
                }
                s.add(k, c, cap);
            }
        }
        if collapsed > 0 {
            let at_lo = s.iter().next().map_or(0, |(_, c)| c);
            if collapsed > at_lo || s.lo != s.hi - (cap - 1) {
                return bad("collapsed count does not match the lowest bucket");
            }
        }
        s.collapsed = collapsed;
        Ok(s)
    }
}

/// Serialized form: sparse runs of dense counts per sign; count and the key scale are derived.
#[derive(Serialize, Deserialize)]
struct Repr {
    alpha: f64,
    max_buckets: u32,
    #[serde(default, skip_serializing_if = "is_zero")]
    zero: u64,
    #[serde(default, skip_serializing_if = "is_zero")]
    nonfinite: u64,
    sum: ExactSum,
    /// Absent in states written before the sums were exact: derived from `m2` then.
    #[serde(default)]
    sum_sq: Option<ExactSum>,
    /// Welford's sum of squared deviations, as older states stored it (read, never written).
    #[serde(default, skip_serializing)]
    m2: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    min: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    max: Option<f64>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pos: Vec<(i32, Vec<u64>)>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    neg: Vec<(i32, Vec<u64>)>,
    #[serde(default, skip_serializing_if = "is_zero")]
    pos_collapsed: u64,
    #[serde(default, skip_serializing_if = "is_zero")]
    neg_collapsed: u64,
}

fn is_zero(x: &u64) -> bool {
    *x == 0
}

impl TryFrom<Repr> for QuantileSketch {
    type Error = StatsError;
    fn try_from(r: Repr) -> Result<Self> {
        let mut s = QuantileSketch::new(r.alpha, r.max_buckets)?;
        let cap = s.cap();
        s.pos = Store::from_runs(r.pos, r.pos_collapsed, cap)?;
        s.neg = Store::from_runs(r.neg, r.neg_collapsed, cap)?;
        s.zero = r.zero;
        s.nonfinite = r.nonfinite;
        s.count = [s.pos.total, s.neg.total, s.zero]
            .into_iter()
            .try_fold(0u64, u64::checked_add)
            .ok_or_else(|| StatsError::InvalidArgument("quantile sketch: count overflows".into()))?;
        s.sum = r.sum;
        s.sum_sq = match (r.sum_sq, r.m2) {
            (Some(sum_sq), _) => sum_sq,
            // sum x^2 = m2 + sum^2 / n, as near as the old state allows.
            (None, Some(m2)) if s.count > 0 => {
                let total = s.sum.value();
                ExactSum::from(m2 + total * total / s.count as f64)
            }
            (None, _) => ExactSum::new(),
        };
        match (r.min, r.max) {
            (Some(min), Some(max)) if s.count > 0 && min <= max => {
                s.min = min;
                s.max = max;
            }
            (None, None) if s.count == 0 => {}
            _ => {
                return Err(StatsError::InvalidArgument(
                    "quantile sketch: min and max must be present exactly when not empty".into(),
                ))
            }
        }
        Ok(s)
    }
}

impl From<QuantileSketch> for Repr {
    fn from(s: QuantileSketch) -> Self {
        let (min, max) = (s.min(), s.max());
        Repr {
            alpha: s.alpha,
            max_buckets: s.max_buckets,
            zero: s.zero,
            nonfinite: s.nonfinite,
            sum: s.sum,
            sum_sq: Some(s.sum_sq),
            m2: None,
            min,
            max,
            pos: s.pos.runs(),
            neg: s.neg.runs(),
            pos_collapsed: s.pos.collapsed,
            neg_collapsed: s.neg.collapsed,
        }
    }
}

#[cfg(test)]
#[path = "quantile_tests.rs"]
mod tests;
