//! HDR latency histogram.

use hdrhistogram::serialization::{Deserializer, Serializer, V2Serializer};
use hdrhistogram::Histogram;
use serde::{Deserialize, Serialize};

use crate::error::{Result, StatsError};

/// Latency histogram (values in microseconds, or any integer unit the caller picks) backed by
/// `hdrhistogram` with a fixed number of significant figures; values above the configured
/// maximum are clamped to it (and counted in [`LatencySketch::clamped`]) rather than lost.
/// Serialized with the HdrHistogram V2 format inside serde, so it travels with window states.
#[derive(Debug, Clone)]
pub struct LatencySketch {
    hist: Histogram<u64>,
    clamped: u64,
}

impl LatencySketch {
    /// `max` is the largest value tracked exactly (e.g. 3_600_000_000 µs = one hour);
    /// `sigfig` in 1..=5.
    pub fn new(max: u64, sigfig: u8) -> Result<Self> {
        let hist = Histogram::new_with_bounds(1, max.max(2), sigfig)
            .map_err(|e| StatsError::InvalidArgument(format!("latency histogram: {e:?}")))?;
        Ok(LatencySketch { hist, clamped: 0 })
    }

    /// Records one value; `0` is recorded as `1` (the lowest trackable value).
    #[inline]
    pub fn update(&mut self, value: u64) {
        let high = self.hist.high();
        if value > high {
            self.clamped += 1;
        }
        self.hist.saturating_record(value.max(1));
    }

    /// Adds `other`; `Incompatible` unless both have the same bounds and precision.
    pub fn merge(&mut self, other: &Self) -> Result<()> {
        if self.hist.sigfig() != other.hist.sigfig() || self.hist.high() != other.hist.high() {
            return Err(StatsError::Incompatible("latency sketches have different bounds"));
        }
        self.hist
            .add(&other.hist)
            .map_err(|_| StatsError::Incompatible("latency sketches have different bounds"))?;
        self.clamped += other.clamped;
        Ok(())
    }

    pub fn count(&self) -> u64 {
        self.hist.len()
    }

    /// Value at quantile `q` in [0, 1] (relative error set by `sigfig`); `NotEnoughData` if empty.
    pub fn quantile(&self, q: f64) -> Result<u64> {
        crate::error::require(1, self.count())?;
        Ok(self.hist.value_at_quantile(q.clamp(0.0, 1.0)))
    }

    pub fn mean(&self) -> Option<f64> {
        (self.count() > 0).then(|| self.hist.mean())
    }

    pub fn max(&self) -> Option<u64> {
        (self.count() > 0).then(|| self.hist.max())
    }

    /// Values above the configured maximum, recorded as the maximum.
    pub fn clamped(&self) -> u64 {
        self.clamped
    }

    pub fn histogram(&self) -> &Histogram<u64> {
        &self.hist
    }
}

#[derive(Serialize, Deserialize)]
struct Repr {
    high: u64,
    sigfig: u8,
    clamped: u64,
    /// A byte string in binary formats; JSON keeps writing (and reading) an array of numbers.
    #[serde(with = "serde_bytes")]
    v2: Vec<u8>,
}

impl Serialize for LatencySketch {
    fn serialize<S: serde::Serializer>(&self, s: S) -> std::result::Result<S::Ok, S::Error> {
        let mut v2 = Vec::new();
        V2Serializer::new().serialize(&self.hist, &mut v2).map_err(serde::ser::Error::custom)?;
        Repr { high: self.hist.high(), sigfig: self.hist.sigfig(), clamped: self.clamped, v2 }.serialize(s)
    }
}

impl<'de> Deserialize<'de> for LatencySketch {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> std::result::Result<Self, D::Error> {
        use serde::de::Error;
        let r = Repr::deserialize(d)?;
        let decoded: Histogram<u64> = Deserializer::new()
            .deserialize(&mut r.v2.as_slice())
            .map_err(|e| D::Error::custom(format!("{e:?}")))?;
        let mut s = LatencySketch::new(r.high, r.sigfig).map_err(D::Error::custom)?;
        if (decoded.low(), decoded.high(), decoded.sigfig()) == (s.hist.low(), s.hist.high(), s.hist.sigfig())
        {
            // The same layout: the decoded histogram is what adding it to an empty one gives.
            s.hist = decoded;
        } else {
            s.hist.add(&decoded).map_err(|e| D::Error::custom(format!("{e:?}")))?;
        }
        s.clamped = r.clamped;
        Ok(s)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn merge_and_round_trip() {
        let mut a = LatencySketch::new(1_000_000, 3).unwrap();
        let mut b = LatencySketch::new(1_000_000, 3).unwrap();
        (1..=500).for_each(|v| a.update(v));
        (501..=1000).for_each(|v| b.update(v));
        b.update(5_000_000);
        a.merge(&b).unwrap();
        assert_eq!(a.count(), 1001);
        assert_eq!(a.clamped(), 1);
        assert!((a.quantile(0.5).unwrap() as i64 - 501).abs() <= 1);
        let back: LatencySketch = serde_json::from_str(&serde_json::to_string(&a).unwrap()).unwrap();
        assert_eq!(back.count(), 1001);
        assert_eq!(back.quantile(0.99).unwrap(), a.quantile(0.99).unwrap());
        let other = LatencySketch::new(1_000, 2).unwrap();
        assert!(a.merge(&other).is_err());
    }
}
