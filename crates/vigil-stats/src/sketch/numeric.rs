//! Numeric histogram whose edges come from reference quantiles.

use serde::{Deserialize, Serialize};

use crate::error::{Result, StatsError};
use crate::exact::ExactSum;

/// Histogram with quantile edges taken from a reference sample, plus an underflow and an overflow
/// bin.
///
/// With edges `e[0] < e[1] < ... < e[L-1]` (`e[0]` = reference minimum, `e[L-1]` = reference
/// maximum, the rest reference quantiles at `i / bins`, duplicates removed), the `L + 1` bins are:
/// `0`: `x < e[0]` (underflow); `j` in `1..L-1`: `e[j-1] <= x < e[j]`, except that the last real
/// bin `L-1` is closed on the right so it holds the reference maximum; `L`: `x > e[L-1]`
/// (overflow). A constant reference gives edges `[c, c]`: one point bin plus under/overflow.
///
/// NaN and ±inf never enter a bin: they are counted in [`NumericSketch::nonfinite`].
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(try_from = "Repr", into = "Repr")]
pub struct NumericSketch {
    edges: Vec<f64>,
    counts: Vec<u64>,
    nonfinite: u64,
    /// Sums of `x - shift` and `(x - shift)^2`: cheap to update and to merge, and accurate because
    /// `shift` (the midpoint of the reference range) sits near the data. Exact, so they do not
    /// depend on how partial states were grouped.
    shift: f64,
    sum: ExactSum,
    sum_sq: ExactSum,
    /// Smallest value below `e[0]` and largest above `e[L-1]` (±inf when none): they bound the
    /// under- and overflow bins for the binned Wasserstein distance.
    below: f64,
    above: f64,
    lut: Lut,
}

/// Serialized form: the lookup table is derived from the edges, so it is rebuilt on load.
#[derive(Serialize, Deserialize)]
struct Repr {
    edges: Vec<f64>,
    counts: Vec<u64>,
    nonfinite: u64,
    shift: f64,
    sum: ExactSum,
    sum_sq: ExactSum,
    below: Option<f64>,
    above: Option<f64>,
}

impl TryFrom<Repr> for NumericSketch {
    type Error = StatsError;
    fn try_from(r: Repr) -> Result<Self> {
        let mut s = NumericSketch::with_edges(r.edges)?;
        if r.counts.len() != s.counts.len() {
            return Err(StatsError::InvalidArgument("counts length does not match edges".into()));
        }
        s.counts = r.counts;
        s.nonfinite = r.nonfinite;
        s.shift = r.shift;
        s.sum = r.sum;
        s.sum_sq = r.sum_sq;
        s.below = r.below.unwrap_or(f64::INFINITY);
        s.above = r.above.unwrap_or(f64::NEG_INFINITY);
        Ok(s)
    }
}

impl From<NumericSketch> for Repr {
    fn from(s: NumericSketch) -> Self {
        Repr {
            edges: s.edges,
            counts: s.counts,
            nonfinite: s.nonfinite,
            shift: s.shift,
            sum: s.sum,
            sum_sq: s.sum_sq,
            below: s.below.is_finite().then_some(s.below),
            above: s.above.is_finite().then_some(s.above),
        }
    }
}

/// Uniform-grid lookup table over `[e[1], e[L-2]]` (the extreme edges are the reference's min and
/// max, often outliers that would stretch the grid), so a lookup is one multiply and one compare
/// instead of a binary search over all edges (what makes updates cost a few ns).
///
/// Cell `c` records `start`, the number of edges whose own cell is below `c`, and the edges of
/// cell `c` itself. Because the cell function is monotone in `x` even after rounding, every edge of
/// an earlier cell is `<= x` and every edge of a later cell is `> x` for `x` in cell `c`, so the
/// lookup is exact (values outside the grid clamp to its first or last cell, which keeps the cell
/// function monotone). The table starts with 8 cells per bin (small enough to stay in L1) and
/// grows to 32 or 128 when the edges crowd into few cells; then most cells hold at most one edge (`split`, or +inf when
/// none), giving a branch-free `start + (x >= split)`; crowded cells (heavy-tailed references pack
/// many quantiles into few cells) fall back to a binary search over their own edges.
#[derive(Debug, Clone, Default)]
struct Lut {
    lo: f64,
    scale: f64,
    last_cell: usize,
    cells: Vec<Cell>,
}

#[derive(Debug, Clone, Copy)]
struct Cell {
    split: f64,
    start: u32,
    end: u32,
}

impl Lut {
    fn new(edges: &[f64]) -> Self {
        let mut lut = Self::with_cells_per_edge(edges, 8);
        // The outer edges lie outside the grid (see `with_cells_per_edge`), so they share the
        // first and last cell with their neighbours at any resolution: only inner edges tell
        // whether a finer table helps (counting the outer ones built all three tables, 2,688
        // cells for 20 bins, for every sketch).
        let (first, end) = if edges.len() >= 4 { (1, edges.len() - 1) } else { (0, edges.len()) };
        for per_edge in [32, 128] {
            // Edges sharing a cell with another edge take the slower binary-search path.
            let crowded: usize = lut
                .cells
                .iter()
                .map(|c| (c.end as usize).min(end).saturating_sub((c.start as usize).max(first)))
                .filter(|&n| n > 1)
                .sum();
            if crowded * 10 <= edges.len() {
                break;
            }
            lut = Self::with_cells_per_edge(edges, per_edge);
        }
        lut
    }

    fn with_cells_per_edge(edges: &[f64], per_edge: usize) -> Self {
        let inner = if edges.len() >= 4 { &edges[1..edges.len() - 1] } else { edges };
        let lo = inner[0];
        let span = inner[inner.len() - 1] - lo;
        let n = if span > 0.0 && span.is_finite() { per_edge * edges.len() } else { 1 };
        let scale = if n > 1 { n as f64 / span } else { 0.0 };
        let mut lut = Lut { lo, scale, last_cell: n - 1, cells: Vec::with_capacity(n) };
        let mut i = 0;
        for c in 0..n {
            let start = i;
            while i < edges.len() && lut.cell(edges[i]) == c {
                i += 1;
            }
            let split = if i == start + 1 { edges[start] } else { f64::INFINITY };
            lut.cells.push(Cell { split, start: start as u32, end: i as u32 });
        }
        lut
    }

    #[inline(always)]
    fn cell(&self, x: f64) -> usize {
        // `as usize` saturates: negative values map to 0.
        (((x - self.lo) * self.scale) as usize).min(self.last_cell)
    }

    /// Number of edges `<= x`, for finite `x`.
    #[inline(always)]
    fn edges_le(&self, edges: &[f64], x: f64) -> usize {
        let cell = self.cells[self.cell(x)];
        let (start, end) = (cell.start as usize, cell.end as usize);
        if end - start <= 1 {
            start + usize::from(x >= cell.split)
        } else {
            start + edges[start..end].partition_point(|&e| e <= x)
        }
    }
}

/// Adds `xs` to `counts`; a free function so the slices get `noalias` and the optimizer keeps
/// edges and the table in registers. Adds to `sum` and `sum_sq`; returns (nonfinite, below_min,
/// above_max).
fn accumulate(
    edges: &[f64],
    lut: &Lut,
    counts: &mut [u64],
    shift: f64,
    xs: &[f64],
    (sum, sum_sq): (&mut ExactSum, &mut ExactSum),
) -> (u64, f64, f64) {
    let last = edges.len() - 1;
    let (first_edge, last_edge) = (edges[0], edges[last]);
    let mut nonfinite = 0u64;
    let (mut below, mut above) = (f64::INFINITY, f64::NEG_INFINITY);
    for &x in xs {
        if !x.is_finite() {
            nonfinite += 1;
            continue;
        }
        let i = if x < first_edge {
            below = below.min(x);
            0
        } else if x >= last_edge {
            if x > last_edge {
                above = above.max(x);
                last + 1
            } else {
                last
            }
        } else {
            lut.edges_le(edges, x)
        };
        counts[i] += 1;
        let d = x - shift;
        sum.add(d);
        sum_sq.add(d * d);
    }
    (nonfinite, below, above)
}

impl NumericSketch {
    /// Builds an empty sketch whose edges are the quantiles of `reference` (finite values only,
    /// linear interpolation as numpy's default `quantile`) at `0, 1/bins, ..., 1`.
    ///
    /// Fails with `NotEnoughData` when the reference has no finite value, `InvalidArgument` when
    /// `bins == 0`.
    pub fn from_reference(reference: &[f64], bins: usize) -> Result<Self> {
        if bins == 0 {
            return Err(StatsError::InvalidArgument("bins must be at least 1".into()));
        }
        let mut sorted: Vec<f64> = reference.iter().copied().filter(|x| x.is_finite()).collect();
        crate::error::require(1, sorted.len() as u64)?;
        sorted.sort_by(f64::total_cmp);
        let mut edges: Vec<f64> =
            (0..=bins).map(|i| quantile_sorted(&sorted, i as f64 / bins as f64)).collect();
        edges.dedup();
        Self::with_edges(edges)
    }

    /// Builds an empty sketch with explicit edges (finite, non-decreasing, strictly increasing
    /// except that a single edge is doubled into a point bin).
    pub fn with_edges(mut edges: Vec<f64>) -> Result<Self> {
        if edges.is_empty() || edges.iter().any(|e| !e.is_finite()) {
            return Err(StatsError::InvalidArgument("edges must be finite and non-empty".into()));
        }
        if edges.len() == 1 {
            edges.push(edges[0]);
        }
        let point = edges.len() == 2 && edges[0] == edges[1];
        if !point && edges.windows(2).any(|w| w[0] >= w[1]) {
            return Err(StatsError::InvalidArgument("edges must be strictly increasing".into()));
        }
        let lut = Lut::new(&edges);
        Ok(NumericSketch {
            counts: vec![0; edges.len() + 1],
            nonfinite: 0,
            shift: 0.5 * (edges[0] + edges[edges.len() - 1]),
            sum: ExactSum::new(),
            sum_sq: ExactSum::new(),
            below: f64::INFINITY,
            above: f64::NEG_INFINITY,
            edges,
            lut,
        })
    }

    /// Fills an empty sketch from counts computed elsewhere (re-binning a
    /// [`super::QuantileSketch`]): `counts` in the layout above, `nonfinite`, and the finite
    /// values' mean, sum of squared deviations from that mean (`m2`), minimum and maximum. The
    /// shifted sums and the extreme values beyond the edges are derived from them as
    /// [`Self::extend`] would have kept them (`sum (x - s)^2 = m2 + n (mean - s)^2`, no
    /// cancellation), so mean, std and extent equal those of the values themselves.
    pub(crate) fn set_parts(
        &mut self,
        counts: Vec<u64>,
        nonfinite: u64,
        (mean, m2): (f64, f64),
        (min, max): (f64, f64),
    ) -> Result<()> {
        if counts.len() != self.counts.len() {
            return Err(StatsError::InvalidArgument("counts length does not match edges".into()));
        }
        self.clear();
        self.counts = counts;
        self.nonfinite = nonfinite;
        let n = self.count() as f64;
        if n > 0.0 {
            let d = mean - self.shift;
            self.sum = ExactSum::from(n * d);
            self.sum_sq = ExactSum::from(m2 + n * d * d);
            let (first, last) = (self.edges[0], self.edges[self.edges.len() - 1]);
            if min < first {
                self.below = min;
            }
            if max > last {
                self.above = max;
            }
        }
        Ok(())
    }

    /// Builds the sketch of `reference` itself, with edges from its own quantiles.
    pub fn reference(reference: &[f64], bins: usize) -> Result<Self> {
        let mut s = Self::from_reference(reference, bins)?;
        s.extend(reference);
        Ok(s)
    }

    /// An empty sketch with the same edges (a new window against the same reference).
    pub fn empty_like(&self) -> Self {
        let mut s = self.clone();
        s.clear();
        s
    }

    /// Resets all counts, keeping the edges.
    pub fn clear(&mut self) {
        self.counts.iter_mut().for_each(|c| *c = 0);
        self.nonfinite = 0;
        self.sum = ExactSum::new();
        self.sum_sq = ExactSum::new();
        self.below = f64::INFINITY;
        self.above = f64::NEG_INFINITY;
    }

    /// Index of the bin holding finite `x` (see the type's docs for the layout).
    #[inline]
    pub fn bin_index(&self, x: f64) -> usize {
        let last = self.edges.len() - 1;
        if x < self.edges[0] {
            0
        } else if x >= self.edges[last] {
            if x == self.edges[last] {
                last
            } else {
                last + 1
            }
        } else {
            self.lut.edges_le(&self.edges, x)
        }
    }

    /// Adds one value; NaN and ±inf are counted apart.
    #[inline]
    pub fn update(&mut self, x: f64) {
        self.extend(std::slice::from_ref(&x));
    }

    /// Adds every value of `xs` (the fast path: prefer it to repeated `update`).
    pub fn extend(&mut self, xs: &[f64]) {
        let (nonfinite, below, above) = accumulate(
            &self.edges,
            &self.lut,
            &mut self.counts,
            self.shift,
            xs,
            (&mut self.sum, &mut self.sum_sq),
        );
        self.nonfinite += nonfinite;
        self.below = self.below.min(below);
        self.above = self.above.max(above);
    }

    /// Adds `other`'s counts; fails with `Incompatible` unless both have the same edges.
    pub fn merge(&mut self, other: &Self) -> Result<()> {
        if self.edges != other.edges || self.shift != other.shift {
            return Err(StatsError::Incompatible("numeric sketches have different edges"));
        }
        for (a, b) in self.counts.iter_mut().zip(&other.counts) {
            *a += b;
        }
        self.nonfinite += other.nonfinite;
        self.sum.merge(&other.sum);
        self.sum_sq.merge(&other.sum_sq);
        self.below = self.below.min(other.below);
        self.above = self.above.max(other.above);
        Ok(())
    }

    /// Edges `e[0..L]`.
    pub fn edges(&self) -> &[f64] {
        &self.edges
    }

    /// Bin counts, `L + 1` of them: underflow, the real bins, overflow.
    pub fn counts(&self) -> &[u64] {
        &self.counts
    }

    /// Finite values counted.
    pub fn count(&self) -> u64 {
        self.counts.iter().sum()
    }

    /// NaN and ±inf values seen (never in a bin).
    pub fn nonfinite(&self) -> u64 {
        self.nonfinite
    }

    /// Interval holding every finite value seen: the edges' span, widened to the smallest value
    /// below it and the largest above it. `None` when empty.
    pub fn extent(&self) -> Option<(f64, f64)> {
        let (first, last) = (self.edges[0], self.edges[self.edges.len() - 1]);
        (self.count() > 0).then_some((self.below.min(first), self.above.max(last)))
    }

    /// Mean of the finite values, if any.
    pub fn mean(&self) -> Option<f64> {
        let n = self.count();
        (n > 0).then(|| self.shift + self.sum.value() / n as f64)
    }

    /// Population standard deviation (ddof = 0, as `numpy.std`) of the finite values, if any.
    pub fn std(&self) -> Option<f64> {
        let n = self.count() as f64;
        (n > 0.0).then(|| {
            let m = self.sum.value() / n;
            (self.sum_sq.value() / n - m * m).max(0.0).sqrt()
        })
    }

    /// Proportions per bin (counts divided by the finite count). `NotEnoughData` when empty.
    pub fn proportions(&self) -> Result<Vec<f64>> {
        let n = self.count();
        crate::error::require(1, n)?;
        Ok(self.counts.iter().map(|&c| c as f64 / n as f64).collect())
    }

    /// Checks that `self` and `other` share their edges (drift tests compare bin by bin).
    pub(crate) fn check_compatible(&self, other: &Self) -> Result<()> {
        if self.edges != other.edges {
            return Err(StatsError::Incompatible("numeric sketches have different edges"));
        }
        Ok(())
    }
}

/// Quantile with linear interpolation between closest ranks (numpy's default method).
pub(crate) fn quantile_sorted(sorted: &[f64], q: f64) -> f64 {
    let h = (sorted.len() - 1) as f64 * q;
    let lo = h.floor() as usize;
    let hi = h.ceil() as usize;
    sorted[lo] + (h - lo as f64) * (sorted[hi] - sorted[lo])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bins_follow_the_documented_layout() {
        let s = NumericSketch::with_edges(vec![0.0, 1.0, 2.0]).unwrap();
        assert_eq!(s.bin_index(-0.5), 0);
        assert_eq!(s.bin_index(0.0), 1);
        assert_eq!(s.bin_index(0.99), 1);
        assert_eq!(s.bin_index(1.0), 2);
        assert_eq!(s.bin_index(2.0), 2);
        assert_eq!(s.bin_index(2.5), 3);
    }

    #[test]
    fn constant_reference_gives_a_point_bin() {
        let mut s = NumericSketch::reference(&[3.0; 10], 10).unwrap();
        assert_eq!(s.edges(), &[3.0, 3.0]);
        assert_eq!(s.counts(), &[0, 10, 0]);
        s.extend(&[2.0, 4.0, f64::NAN, f64::INFINITY]);
        assert_eq!(s.counts(), &[1, 10, 1]);
        assert_eq!(s.nonfinite(), 2);
        assert!((s.std().unwrap() - (1.0f64 / 6.0).sqrt()).abs() < 1e-12);
    }

    #[test]
    fn evenly_spread_edges_build_only_the_coarsest_table() {
        let edges: Vec<f64> = (0..=20).map(|i| i as f64 / 20.0).collect();
        let s = NumericSketch::with_edges(edges.clone()).unwrap();
        assert_eq!(s.lut.cells.len(), 8 * edges.len());
        for i in 0..=1000 {
            let x = i as f64 / 1000.0;
            let p = edges.partition_point(|&v| v <= x);
            assert_eq!(s.bin_index(x), if p == edges.len() { p - 1 } else { p }, "x = {x}");
        }
    }

    #[test]
    fn lut_lookup_matches_binary_search() {
        let reference: Vec<f64> = (0..5000).map(|i| ((i * 7919) % 5000) as f64).map(|x| x * x * x).collect();
        let s = NumericSketch::from_reference(&reference, 100).unwrap();
        let e = s.edges();
        for i in -100..150_000 {
            let x = i as f64 * 1e3 + 0.25;
            let p = e.partition_point(|&v| v <= x);
            let want = if p == e.len() && x == e[e.len() - 1] { p - 1 } else { p };
            assert_eq!(s.bin_index(x), want, "x = {x}");
        }
        for &x in e {
            let p = e.partition_point(|&v| v <= x);
            let want = if p == e.len() { p - 1 } else { p };
            assert_eq!(s.bin_index(x), want, "edge {x}");
        }
    }

    #[test]
    fn lut_lookup_is_exact_on_heavy_tails() {
        let cauchy: Vec<f64> =
            (1..20_000).map(|i| (std::f64::consts::PI * (i as f64 / 20_000.0 - 0.5)).tan()).collect();
        let s = NumericSketch::from_reference(&cauchy, 100).unwrap();
        let e = s.edges();
        let probes =
            cauchy.iter().flat_map(|&x| [x, x * 0.999, x * 1.001, x + 1e-9]).chain(e.iter().copied());
        for x in probes {
            let p = e.partition_point(|&v| v <= x);
            let want = if p == e.len() && x == e[e.len() - 1] { p - 1 } else { p };
            assert_eq!(s.bin_index(x), want, "x = {x}");
        }
    }

    #[test]
    fn empty_reference_is_not_enough_data() {
        assert_eq!(
            NumericSketch::from_reference(&[f64::NAN], 10).unwrap_err(),
            StatsError::NotEnoughData { needed: 1, got: 0 }
        );
    }

    #[test]
    fn serde_round_trip_keeps_lookups() {
        let s = NumericSketch::reference(&[1.0, 2.0, 3.0, 4.0, 5.0], 4).unwrap();
        let json = serde_json::to_string(&s).unwrap();
        let back: NumericSketch = serde_json::from_str(&json).unwrap();
        assert_eq!(back.counts(), s.counts());
        assert_eq!(back.bin_index(2.5), s.bin_index(2.5));
        assert_eq!(back.extent(), s.extent());
    }
}
