//! Exact float sums: the result depends only on the multiset of values added, never on their
//! order or on how partial sums were grouped and merged.
//!
//! Why: a window's state is merged from partials whose split depends on when flushes, restarts
//! and rebalances happened; with plain `f64` sums the merged total then differs in its last bits
//! from run to run, and so do the rows and reference hashes computed from it
//! (docs/design/monitor-state.md).
//!
//! Algorithm: Shewchuk's non-overlapping partials (J. R. Shewchuk, "Adaptive Precision
//! Floating-Point Arithmetic and Fast Robust Geometric Predicates", Discrete & Computational
//! Geometry 18, 1997; the `grow-expansion` step), with the correctly rounded read-out that
//! Python's `math.fsum` uses (R. Hettinger's recipe 393090). The state is a short list of doubles
//! whose exact real sum is the exact sum of every value added; adding `x` runs Knuth's error-free
//! `two_sum` of `x` against each partial in turn, keeping the non-zero rounding errors as the new
//! partials. For data of one scale the list holds two to four doubles, so an add costs a few ns.

use std::fmt;

use serde::de::{self, SeqAccess, Visitor};
use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// Magnitude from which values (and partials) leave the exact path: from 2^1021 on an exact
/// `two_sum` could overflow, so such values are summed in plain floating point in `special`.
const HUGE: f64 = 2.247_015_553_003_863e307; // 2^1021

/// An exactly rounded, order- and grouping-independent sum of `f64` values.
///
/// [`ExactSum::value`] is the sum of every finite value added, computed exactly and rounded once
/// to nearest (ties to even), as Python's `math.fsum`. NaN and ±inf are summed apart with IEEE
/// rules (so +inf and -inf give NaN) and dominate the result; so do magnitudes of 2^1021 and more
/// (about 2.2e307), summed in plain floating point there, the one case where the order of adds
/// can matter.
///
/// Serialized as its canonical expansion, which depends only on the exact sum: the correctly
/// rounded value, then the rounded value of what remains, and so on (largest first, no zeros).
/// Human-readable formats write a plain number when one double is exact (and read plain numbers,
/// the form older states stored), others always a sequence.
#[derive(Debug, Clone, Default)]
pub struct ExactSum {
    /// Non-overlapping, non-zero doubles of increasing magnitude whose exact sum is the exact
    /// sum of the finite values added.
    partials: Vec<f64>,
    /// Sum of the non-finite values and of the huge ones (0.0 when none).
    special: f64,
}

/// Knuth's branch-free error-free addition: `a + b == s + e` exactly (round to nearest, no
/// overflow).
#[inline(always)]
fn two_sum(a: f64, b: f64) -> (f64, f64) {
    let s = a + b;
    let b_virtual = s - a;
    let a_virtual = s - b_virtual;
    (s, (a - a_virtual) + (b - b_virtual))
}

/// Error-free product: `a * b == p + e` exactly unless the product underflows or `|a|`, `|b|`
/// reach 2^996 (then `e` is 0 and `p` is the rounded product). With hardware FMA one fused
/// multiply-add, else Dekker's product with Veltkamp's split.
#[inline(always)]
pub fn two_product(a: f64, b: f64) -> (f64, f64) {
    let p = a * b;
    #[cfg(target_feature = "fma")]
    let e = a.mul_add(b, -p);
    #[cfg(not(target_feature = "fma"))]
    let e = {
        #[inline(always)]
        fn split(x: f64) -> (f64, f64) {
            let c = 134_217_729.0 * x; // 2^27 + 1
            let hi = c - (c - x);
            (hi, x - hi)
        }
        let ((ah, al), (bh, bl)) = (split(a), split(b));
        ((ah * bh - p) + ah * bl + al * bh) + al * bl
    };
    (p, if e.is_finite() { e } else { 0.0 })
}

impl ExactSum {
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds `x`.
    #[inline]
    pub fn add(&mut self, x: f64) {
        let last = self.partials.last().map_or(0.0, |p| p.abs());
        if !(x.abs() < HUGE && last < HUGE) {
            // Non-finite or huge: the rare path (NaN fails the comparison too).
            self.special += x;
            return;
        }
        let mut x = x;
        let mut kept = 0;
        for j in 0..self.partials.len() {
            let (hi, lo) = two_sum(x, self.partials[j]);
            if lo != 0.0 {
                self.partials[kept] = lo;
                kept += 1;
            }
            x = hi;
        }
        self.partials.truncate(kept);
        if x != 0.0 {
            self.partials.push(x);
        }
    }

    /// Adds the exact product `a * b` (see [`two_product`] for the limits).
    #[inline]
    pub fn add_product(&mut self, a: f64, b: f64) {
        let (p, e) = two_product(a, b);
        self.add(p);
        if e != 0.0 {
            self.add(e);
        }
    }

    /// Adds everything `other` holds: afterwards `self` is the sum of both inputs, exactly.
    pub fn merge(&mut self, other: &Self) {
        for &p in &other.partials {
            self.add(p);
        }
        self.special += other.special;
    }

    /// The sum, correctly rounded (or the special sum when a non-finite or huge value was added).
    pub fn value(&self) -> f64 {
        let exact = round(&self.partials);
        if self.special == 0.0 {
            exact
        } else {
            self.special + exact
        }
    }

    /// Whether nothing but zeros was added.
    pub fn is_zero(&self) -> bool {
        self.partials.is_empty() && self.special == 0.0
    }

    /// The canonical expansion (see the type's docs): unique for a given exact sum.
    fn canonical(&self) -> Vec<f64> {
        let mut rest = ExactSum { partials: self.partials.clone(), special: 0.0 };
        let mut out = Vec::with_capacity(self.partials.len());
        // Each step leaves at most half an ulp of the previous value: 40 steps exhaust the
        // exponent range; the bound only guards against the huge path.
        while out.len() < 64 {
            let v = round(&rest.partials);
            if v == 0.0 {
                break;
            }
            out.push(v);
            rest.add(-v);
            if rest.special != 0.0 {
                break;
            }
        }
        out
    }

    /// The sum of the doubles of `parts`, exactly.
    fn of_parts(parts: &[f64]) -> Self {
        let mut s = Self::default();
        parts.iter().rev().for_each(|&p| s.add(p));
        s
    }

    /// `n * sum_sq - sum^2` computed exactly, rounded once, divided by `n`: the sum of squared
    /// deviations from the mean of `n` values whose sum is `sum` and sum of squares `sum_sq`
    /// (both added exactly, squares by [`Self::add_product`]). A function of the exact sums
    /// only, so as independent of grouping as they are. 0 when `n == 0`.
    pub fn centered_squares(n: u64, sum: &Self, sum_sq: &Self) -> f64 {
        if n == 0 {
            return 0.0;
        }
        let nf = n as f64;
        if sum.special != 0.0 || sum_sq.special != 0.0 {
            let s = sum.value();
            return (sum_sq.value() - s * s / nf).max(0.0);
        }
        let mut acc = Self::default();
        for q in sum_sq.canonical() {
            acc.add_product(nf, q);
        }
        let s = sum.canonical();
        for p in &s {
            for r in &s {
                acc.add_product(-p, *r);
            }
        }
        (acc.value() / nf).max(0.0)
    }
}

/// Correctly rounded sum of non-overlapping partials of increasing magnitude (`math.fsum`'s
/// read-out): add from the largest down until a rounding error appears; if that error and the
/// next partial have the same sign, the sum sits exactly between two doubles in the first
/// addition's view, and the next partial decides the rounding.
fn round(partials: &[f64]) -> f64 {
    let mut n = partials.len();
    if n == 0 {
        return 0.0;
    }
    n -= 1;
    let mut hi = partials[n];
    let mut lo = 0.0;
    while n > 0 {
        let x = hi;
        n -= 1;
        let y = partials[n];
        hi = x + y;
        lo = y - (hi - x);
        if lo != 0.0 {
            break;
        }
    }
    if n > 0 && ((lo < 0.0 && partials[n - 1] < 0.0) || (lo > 0.0 && partials[n - 1] > 0.0)) {
        let y = lo * 2.0;
        let x = hi + y;
        if y == x - hi {
            hi = x;
        }
    }
    hi
}

impl PartialEq for ExactSum {
    /// Equal exact sums (and bit-equal special sums), however they were reached.
    fn eq(&self, other: &Self) -> bool {
        self.special.to_bits() == other.special.to_bits() && self.canonical() == other.canonical()
    }
}

impl From<f64> for ExactSum {
    fn from(x: f64) -> Self {
        let mut s = Self::default();
        s.add(x);
        s
    }
}

impl Serialize for ExactSum {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        let parts = if self.special != 0.0 {
            vec![self.value()]
        } else {
            self.canonical()
        };
        if serializer.is_human_readable() && parts.len() <= 1 {
            serializer.serialize_f64(parts.first().copied().unwrap_or(0.0))
        } else {
            parts.serialize(serializer)
        }
    }
}

impl<'de> Deserialize<'de> for ExactSum {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct NumberOrParts;
        impl<'de> Visitor<'de> for NumberOrParts {
            type Value = ExactSum;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("a number or a sequence of numbers")
            }
            fn visit_f64<E: de::Error>(self, v: f64) -> Result<ExactSum, E> {
                Ok(ExactSum::from(v))
            }
            fn visit_i64<E: de::Error>(self, v: i64) -> Result<ExactSum, E> {
                Ok(ExactSum::from(v as f64))
            }
            fn visit_u64<E: de::Error>(self, v: u64) -> Result<ExactSum, E> {
                Ok(ExactSum::from(v as f64))
            }
            fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<ExactSum, A::Error> {
                let mut parts = Vec::new();
                while let Some(p) = seq.next_element::<f64>()? {
                    parts.push(p);
                }
                Ok(ExactSum::of_parts(&parts))
            }
        }
        if deserializer.is_human_readable() {
            deserializer.deserialize_any(NumberOrParts)
        } else {
            deserializer.deserialize_seq(NumberOrParts)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sum_of(xs: &[f64]) -> ExactSum {
        let mut s = ExactSum::new();
        xs.iter().for_each(|&x| s.add(x));
        s
    }

    #[test]
    fn cancellation_keeps_the_small_terms() {
        assert_eq!(sum_of(&[1e16, 1.0, -1e16]).value(), 1.0);
        assert_eq!(sum_of(&[1e100, 1.0, -1e100, 1e-100, 1e50, -1.0, -1e50]).value(), 1e-100);
        assert_eq!(sum_of(&[0.1; 10]).value(), 1.0);
        assert_eq!(sum_of(&[]).value(), 0.0);
    }

    #[test]
    fn half_way_cases_round_to_even_on_the_exact_value() {
        // 1 + 2^-53 is a tie (rounds to 1); with a further 2^-105 it is above the tie.
        assert_eq!(sum_of(&[1.0, 2f64.powi(-53)]).value(), 1.0);
        assert_eq!(sum_of(&[1.0, 2f64.powi(-53), 2f64.powi(-105)]).value(), 1.0 + f64::EPSILON);
        assert_eq!(sum_of(&[2f64.powi(-105), 2f64.powi(-53), 1.0]).value(), 1.0 + f64::EPSILON);
    }

    #[test]
    fn special_values_dominate() {
        assert_eq!(sum_of(&[1.0, f64::INFINITY]).value(), f64::INFINITY);
        assert!(sum_of(&[f64::INFINITY, f64::NEG_INFINITY]).value().is_nan());
        assert!(sum_of(&[f64::NAN, 1.0]).value().is_nan());
        assert_eq!(sum_of(&[f64::MAX, 1.0]).value(), f64::MAX);
    }

    #[test]
    fn serializes_canonically_and_reads_old_plain_numbers() {
        let a = sum_of(&[1e16, 1.0, 0.25, -3.0]);
        let b = sum_of(&[-3.0, 0.25, 1.0, 1e16]);
        let (ja, jb) = (serde_json::to_string(&a).unwrap(), serde_json::to_string(&b).unwrap());
        assert_eq!(ja, jb);
        // 1e16 - 1.75: the nearest double (they are 2 apart there), then what remains.
        assert_eq!(ja, "[9999999999999998.0,0.25]");
        assert_eq!(serde_json::from_str::<ExactSum>(&ja).unwrap(), a);
        assert_eq!(serde_json::to_string(&sum_of(&[0.5, 0.25])).unwrap(), "0.75");
        assert_eq!(serde_json::from_str::<ExactSum>("2.5").unwrap().value(), 2.5);
        assert_eq!(serde_json::from_str::<ExactSum>("3").unwrap().value(), 3.0);
        assert_eq!(serde_json::to_string(&ExactSum::new()).unwrap(), "0.0");
    }

    #[test]
    fn centered_squares_are_exact_where_welford_rounds() {
        // Large offset, small spread: mean 1e9 + 2, deviations -1, 0, 1 -> 2.
        let xs = [1e9 + 1.0, 1e9 + 2.0, 1e9 + 3.0];
        let (mut s, mut q) = (ExactSum::new(), ExactSum::new());
        for &x in &xs {
            s.add(x);
            q.add_product(x, x);
        }
        assert_eq!(ExactSum::centered_squares(3, &s, &q), 2.0);
        assert_eq!(ExactSum::centered_squares(0, &s, &q), 0.0);
    }
}
