//! Exact float sums: the result depends only on the multiset of values added, never on their
//! order or on how partial sums were grouped and merged.
//!
//! Why: a window's state is merged from partials whose split depends on when flushes, restarts
//! and rebalances happened; with plain `f64` sums the merged total then differs in its last bits
//! from run to run, and so do the rows and reference hashes computed from it
//! (docs/design/monitor-state.md).
//!
//! Algorithm, in two parts:
//! - Adding: a sparse fixed-point superaccumulator (Kulisch's exact accumulator, in the "small
//!   superaccumulator" form of R. M. Neal, "Fast exact summation using small and large
//!   superaccumulators", arXiv:1505.05571, 2015). Every finite double is an integer multiple of
//!   2^-1074; its 53-bit mantissa, shifted to its exponent, is split into 32-bit digits that are
//!   added to signed 64-bit chunks, one chunk per 32 bits of weight. Chunks have 31 bits of
//!   headroom, so carries are propagated only every 2^30 adds. An add is a few integer
//!   operations without branches on the data, and only the chunks the values' exponents reach
//!   are kept (typically 4 to 8). Merging adds chunk to chunk: exact, in any grouping.
//! - Reading: the normalized chunks become a few exact doubles, summed into Shewchuk's
//!   non-overlapping partials (J. R. Shewchuk, "Adaptive Precision Floating-Point Arithmetic and
//!   Fast Robust Geometric Predicates", Discrete & Computational Geometry 18, 1997; the
//!   `grow-expansion` step with Knuth's `two_sum`), read out with the correctly rounded final
//!   step of Python's `math.fsum` (R. Hettinger's recipe 393090).

use std::fmt;

use serde::de::{self, SeqAccess, Visitor};
use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// Bits of weight per chunk.
const DIGIT_BITS: u32 = 32;
const DIGIT_MASK: u64 = (1 << DIGIT_BITS) - 1;
/// Carries are propagated after this many adds: each add puts less than 2^32 into a chunk, so
/// two accumulators at the limit still merge without overflowing an `i64`.
const NORMALIZE_AFTER: u32 = 1 << 30;

/// An exactly rounded, order- and grouping-independent sum of `f64` values.
///
/// [`ExactSum::value`] is the sum of every finite value added, computed exactly and rounded once
/// to nearest (ties to even), as Python's `math.fsum` (±inf when the exact sum is beyond the
/// largest double). NaN and ±inf inputs are summed apart with IEEE rules (so +inf and -inf give
/// NaN) and dominate the result.
///
/// Serialized as its canonical expansion, which depends only on the exact sum: the correctly
/// rounded value, then the rounded value of what remains, and so on (largest first, no zeros).
/// Human-readable formats write a plain number when one double is exact (and read plain numbers,
/// the form older states stored), others always a sequence.
#[derive(Debug, Clone, Default)]
pub struct ExactSum {
    /// Chunk `i` holds a signed multiple of 2^(32 (base + i) - 1074).
    base: u32,
    chunks: Vec<i64>,
    /// Adds since the chunks were last normalized (digits in [0, 2^32), the top one signed).
    pending: u32,
    /// Sum of the non-finite values (0.0 when none).
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

/// 2^e as a double: exact from 2^-1074 to 2^1023, +inf above.
fn pow2(e: i32) -> f64 {
    if e > 1023 {
        f64::INFINITY
    } else if e >= -1022 {
        f64::from_bits(((e + 1023) as u64) << 52)
    } else {
        f64::from_bits(1u64 << (e + 1074))
    }
}

impl ExactSum {
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds `x`.
    #[inline]
    pub fn add(&mut self, x: f64) {
        let bits = x.to_bits();
        let exponent = ((bits >> 52) & 0x7ff) as u32;
        if exponent == 0x7ff {
            self.special += x;
            return;
        }
        let fraction = bits & ((1u64 << 52) - 1);
        // x = m 2^(p - 1074), m < 2^53 (subnormals have the exponent of the smallest normal).
        let (m, p) = if exponent == 0 { (fraction, 0) } else { (fraction | (1u64 << 52), exponent - 1) };
        if m == 0 {
            return;
        }
        // m shifted to its weight spans three digits (53 + 31 bits); the top one is computed from
        // m directly (a shift by 64 - s would overflow for s = 0).
        let shift = p % DIGIT_BITS;
        let low = m << shift;
        let top = (m >> DIGIT_BITS) >> (DIGIT_BITS - shift);
        // 0 or -1: the digits are negated branch-free for negative x.
        let sign = -((bits >> 63) as i64);
        let signed = |d: u64| (d as i64 ^ sign) - sign;
        let k = p / DIGIT_BITS;
        let at = k.wrapping_sub(self.base) as usize;
        let [c0, c1, c2] = match self.chunks.get_mut(at..at.wrapping_add(3)) {
            Some([c0, c1, c2]) => [c0, c1, c2],
            _ => {
                let at = self.reach(k, 3);
                let [c0, c1, c2] = &mut self.chunks[at..at + 3] else {
                    unreachable!("reach covers 3 chunks")
                };
                [c0, c1, c2]
            }
        };
        *c0 += signed(low & DIGIT_MASK);
        *c1 += signed(low >> DIGIT_BITS);
        *c2 += signed(top);
        self.pending += 1;
        if self.pending >= NORMALIZE_AFTER {
            self.normalize();
        }
    }

    /// Adds `x * x` exactly: the 106-bit square of the mantissa goes straight into the chunks
    /// (one integer multiply, no error-free float product). Squares of magnitudes below 2^-485,
    /// whose low bits would fall under 2^-1074, are added as [`Self::add_product`] does.
    #[inline]
    pub fn add_square(&mut self, x: f64) {
        let bits = x.to_bits();
        let exponent = ((bits >> 52) & 0x7ff) as u32;
        if exponent == 0x7ff {
            self.special += x * x;
            return;
        }
        // x = m 2^(p - 1074) with p = exponent - 1, so x^2 = m^2 2^(2p - 2148).
        if exponent < 538 {
            self.add_product(x, x);
            return;
        }
        let m = (bits & ((1u64 << 52) - 1)) | (1u64 << 52);
        let square = u128::from(m) * u128::from(m);
        let position = 2 * (exponent - 1) - 1074;
        let shift = position % DIGIT_BITS;
        let low = square << shift;
        // Bits shifted past 128 (a shift by 128 - s would overflow for s = 0).
        let top = ((square >> 64) >> (64 - shift)) as u64;
        let k = position / DIGIT_BITS;
        let at = k.wrapping_sub(self.base) as usize;
        let chunks = match self.chunks.get_mut(at..at.wrapping_add(5)) {
            Some(chunks) if chunks.len() == 5 => chunks,
            _ => {
                let at = self.reach(k, 5);
                &mut self.chunks[at..at + 5]
            }
        };
        for (i, chunk) in chunks.iter_mut().take(4).enumerate() {
            *chunk += ((low >> (DIGIT_BITS as usize * i)) as u64 & DIGIT_MASK) as i64;
        }
        chunks[4] += top as i64;
        self.pending += 1;
        if self.pending >= NORMALIZE_AFTER {
            self.normalize();
        }
    }

    /// Adds the exact product `a * b` (see [`two_product`] for the limits).
    #[inline]
    pub fn add_product(&mut self, a: f64, b: f64) {
        let (p, e) = two_product(a, b);
        self.add(p);
        self.add(e);
    }

    /// Adds everything `other` holds: afterwards `self` is the sum of both inputs, exactly.
    pub fn merge(&mut self, other: &Self) {
        self.special += other.special;
        if other.chunks.is_empty() {
            return;
        }
        let at = self.reach(other.base, other.chunks.len() as u32);
        for (mine, theirs) in self.chunks[at..].iter_mut().zip(&other.chunks) {
            *mine += theirs;
        }
        // Normalized chunks count as one add's worth of headroom.
        self.pending += other.pending + 1;
        if self.pending >= NORMALIZE_AFTER {
            self.normalize();
        }
    }

    /// Makes the chunks cover absolute chunks `k .. k + n`; returns the index of chunk `k`.
    #[cold]
    fn reach(&mut self, k: u32, n: u32) -> usize {
        if self.chunks.is_empty() {
            self.base = k;
        } else if k < self.base {
            let grow = (self.base - k) as usize;
            self.chunks.splice(0..0, std::iter::repeat_n(0, grow));
            self.base = k;
        }
        let end = (k - self.base + n) as usize;
        if end > self.chunks.len() {
            self.chunks.resize(end, 0);
        }
        (k - self.base) as usize
    }

    /// Propagates carries: every chunk in [0, 2^32) but the top one, which keeps the sign and
    /// stays below 2^31 in magnitude (a chunk is added on top when needed).
    fn normalize(&mut self) {
        let mut i = 0;
        while i + 1 < self.chunks.len() {
            let carry = self.chunks[i] >> DIGIT_BITS;
            self.chunks[i] -= carry << DIGIT_BITS;
            self.chunks[i + 1] += carry;
            i += 1;
            if i + 1 == self.chunks.len() && self.chunks[i].unsigned_abs() >= 1 << (DIGIT_BITS - 1) {
                self.chunks.push(0);
            }
        }
        self.pending = 0;
    }

    /// The exact sum of the finite values as non-overlapping doubles.
    fn expansion(&self) -> Expansion {
        let mut normalized = self.clone();
        if normalized.chunks.len() == 1 && normalized.chunks[0].unsigned_abs() >= 1 << (DIGIT_BITS - 1) {
            normalized.chunks.push(0);
        }
        normalized.normalize();
        let mut expansion = Expansion::default();
        for (i, &digit) in normalized.chunks.iter().enumerate() {
            if digit != 0 {
                let weight = (DIGIT_BITS * (self.base + i as u32)) as i32 - 1074;
                // |digit| < 2^32 and a power-of-two weight: exact (or +-inf beyond f64::MAX).
                expansion.add(digit as f64 * pow2(weight));
            }
        }
        expansion
    }

    /// The sum, correctly rounded (or the special sum when a non-finite value was added).
    pub fn value(&self) -> f64 {
        let exact = self.expansion().round();
        if self.special == 0.0 {
            exact
        } else {
            self.special + exact
        }
    }

    /// The canonical expansion (see the type's docs): unique for a given exact sum.
    fn canonical(&self) -> Vec<f64> {
        self.expansion().canonical()
    }

    /// `n * sum_sq - sum^2` computed exactly, rounded once, divided by `n`: the sum of squared
    /// deviations from the mean of `n` values whose sum is `sum` and sum of squares `sum_sq`
    /// (both added exactly, squares by [`Self::add_square`]). A function of the exact sums
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

/// Shewchuk's non-overlapping partials: the read-out side of [`ExactSum`].
#[derive(Debug, Clone, Default)]
struct Expansion {
    /// Non-overlapping, non-zero doubles of increasing magnitude whose exact sum is the sum.
    partials: Vec<f64>,
    /// Sum of what left the exact path: non-finite values, and magnitudes from 2^1021 where a
    /// `two_sum` could overflow (only an exact sum near `f64::MAX` gets there).
    special: f64,
}

/// 2^1021.
const HUGE: f64 = 2.247_015_553_003_863e307;

impl Expansion {
    fn add(&mut self, x: f64) {
        let last = self.partials.last().map_or(0.0, |p| p.abs());
        if !(x.abs() < HUGE && last < HUGE) {
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

    /// Correctly rounded sum (`math.fsum`'s read-out): add from the largest partial down until
    /// a rounding error appears; if that error and the next partial have the same sign, the sum
    /// sits exactly between two doubles in the first addition's view, and the next partial
    /// decides the rounding.
    fn round(&self) -> f64 {
        let partials = &self.partials;
        let mut n = partials.len();
        let mut hi = 0.0;
        if n > 0 {
            n -= 1;
            hi = partials[n];
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
        }
        if self.special == 0.0 {
            hi
        } else {
            self.special + hi
        }
    }

    /// The rounded value, then the rounded value of what remains, and so on: unique for a given
    /// exact sum. Each step leaves at most half an ulp of the previous value, so 40 steps exhaust
    /// the exponent range; the bound only guards the huge path.
    fn canonical(&self) -> Vec<f64> {
        if self.special != 0.0 {
            return vec![self.round()];
        }
        let mut rest = self.clone();
        let mut out = Vec::with_capacity(self.partials.len());
        while out.len() < 64 {
            let v = rest.round();
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
        let parts = if self.special != 0.0 { vec![self.value()] } else { self.canonical() };
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
                let mut sum = ExactSum::new();
                while let Some(part) = seq.next_element::<f64>()? {
                    sum.add(part);
                }
                Ok(sum)
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
        assert_eq!(sum_of(&[f64::MAX, f64::MAX]).value(), f64::INFINITY, "beyond the largest double");
        assert_eq!(sum_of(&[f64::MAX, f64::MAX, -f64::MAX]).value(), f64::MAX, "exact in between");
        assert_eq!(
            sum_of(&[f64::MIN_POSITIVE / 4.0, f64::MIN_POSITIVE / 4.0]).value(),
            f64::MIN_POSITIVE / 2.0
        );
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
    fn carries_survive_normalization_and_merges() {
        let mut a = ExactSum::new();
        let mut b = ExactSum::new();
        for i in 0..10_000 {
            a.add(f64::from(i) * 0.75 - 1e-9);
            b.add(-(f64::from(i) * 0.75) + 3e20);
        }
        a.normalize();
        let mut c = a.clone();
        c.merge(&b);
        let mut d = b.clone();
        d.merge(&a);
        assert_eq!(c.value().to_bits(), d.value().to_bits());
        assert_eq!(c.value(), 3e24 - 1e-5);
        let mut e = ExactSum::from(-1.0);
        e.add(0.25);
        assert_eq!(e.value(), -0.75, "a negative top chunk");
    }

    #[test]
    fn squares_go_in_exactly() {
        let xs = [3.0, -1.5, 1e-140, 2.5e-146, 1e-150, 1e150, 0.1, -7e11, 1.0 + f64::EPSILON, 5e-324];
        for &x in &xs {
            let (mut by_square, mut by_product) = (ExactSum::new(), ExactSum::new());
            by_square.add_square(x);
            by_product.add_product(x, x);
            assert_eq!(by_square, by_product, "{x:e}");
        }
        let mut s = ExactSum::new();
        s.add_square(1.0 + f64::EPSILON);
        s.add(-1.0);
        s.add(-2.0 * f64::EPSILON);
        assert_eq!(s.value(), f64::EPSILON * f64::EPSILON, "the square's low bit is kept");
        let mut inf = ExactSum::new();
        inf.add_square(1e200);
        assert_eq!(inf.value(), f64::INFINITY);
        inf.add_square(f64::NAN);
        assert!(inf.value().is_nan());
    }

    #[test]
    fn centered_squares_are_exact_where_welford_rounds() {
        // Large offset, small spread: mean 1e9 + 2, deviations -1, 0, 1 -> 2.
        let xs = [1e9 + 1.0, 1e9 + 2.0, 1e9 + 3.0];
        let (mut s, mut q) = (ExactSum::new(), ExactSum::new());
        for &x in &xs {
            s.add(x);
            q.add_square(x);
        }
        assert_eq!(ExactSum::centered_squares(3, &s, &q), 2.0);
        assert_eq!(ExactSum::centered_squares(0, &s, &q), 0.0);
    }
}
