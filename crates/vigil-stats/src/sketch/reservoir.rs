//! Bounded exact sample for small windows.

use serde::{Deserialize, Serialize};

use crate::error::{Result, StatsError};

/// Keeps every finite value of a window while there are at most `cap` of them, so exact tests
/// (Kolmogorov-Smirnov, Cramér-von Mises, Wasserstein) can run on small windows. Past `cap` it
/// drops its values and reports itself saturated: callers then use the binned variants. This is
/// deterministic on purpose (no random sampling), so a window's result is a pure function of its
/// events, whatever the merge order.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Reservoir {
    cap: usize,
    values: Vec<f64>,
    seen: u64,
    nonfinite: u64,
}

impl Reservoir {
    pub fn new(cap: usize) -> Self {
        Reservoir { cap, values: Vec::new(), seen: 0, nonfinite: 0 }
    }

    /// Adds one value; NaN and ±inf are counted apart.
    pub fn update(&mut self, x: f64) {
        if !x.is_finite() {
            self.nonfinite += 1;
            return;
        }
        self.seen += 1;
        if self.seen <= self.cap as u64 {
            self.values.push(x);
        } else if !self.values.is_empty() {
            self.values = Vec::new();
        }
    }

    pub fn extend(&mut self, xs: &[f64]) {
        xs.iter().for_each(|&x| self.update(x));
    }

    /// Adds `other`'s values; `Incompatible` when the caps differ.
    pub fn merge(&mut self, other: &Self) -> Result<()> {
        if self.cap != other.cap {
            return Err(StatsError::Incompatible("reservoirs have different caps"));
        }
        self.seen += other.seen;
        self.nonfinite += other.nonfinite;
        if self.seen <= self.cap as u64 {
            self.values.extend_from_slice(&other.values);
        } else {
            self.values = Vec::new();
        }
        Ok(())
    }

    /// All finite values of the window (in arrival/merge order), or `None` once saturated.
    pub fn exact(&self) -> Option<&[f64]> {
        (self.seen <= self.cap as u64).then_some(self.values.as_slice())
    }

    /// Finite values seen, kept or not.
    pub fn seen(&self) -> u64 {
        self.seen
    }

    pub fn nonfinite(&self) -> u64 {
        self.nonfinite
    }

    pub fn cap(&self) -> usize {
        self.cap
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn saturates_past_cap_even_through_merge() {
        let mut a = Reservoir::new(3);
        a.extend(&[1.0, 2.0, f64::NAN]);
        let mut b = Reservoir::new(3);
        b.extend(&[3.0]);
        a.merge(&b).unwrap();
        assert_eq!(a.exact(), Some(&[1.0, 2.0, 3.0][..]));
        a.update(4.0);
        assert_eq!(a.exact(), None);
        assert_eq!(a.seen(), 4);
        assert_eq!(a.nonfinite(), 1);
    }
}
