//! Category counts against a vocabulary frozen from the reference.

use std::collections::HashMap;
use std::hash::{BuildHasherDefault, Hasher};

use serde::{Deserialize, Serialize};

use crate::error::{Result, StatsError};

/// Counts per category for a vocabulary taken from the reference: its `cap` most frequent
/// categories (ties broken by name), sorted by name. Everything else, including categories never
/// seen in the reference, is counted in one "other" bucket; missing values are counted apart and
/// never enter the distribution.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(try_from = "Repr", into = "Repr")]
pub struct CategoricalSketch {
    vocabulary: Vec<String>,
    /// `vocabulary.len() + 1` counts; the last is "other".
    counts: Vec<u64>,
    missing: u64,
    index: HashMap<String, usize, FastHash>,
}

/// FxHash-style hasher (multiply-rotate over 8-byte words): category names come from the
/// reference, not from an adversary choosing collisions, and SipHash would double the update cost.
type FastHash = BuildHasherDefault<WordHasher>;

#[derive(Default)]
struct WordHasher(u64);

impl Hasher for WordHasher {
    fn write(&mut self, bytes: &[u8]) {
        const K: u64 = 0x51_7c_c1_b7_27_22_0a_95;
        let mut chunks = bytes.chunks_exact(8);
        for c in &mut chunks {
            let w = u64::from_le_bytes(c.try_into().expect("8 bytes"));
            self.0 = (self.0.rotate_left(5) ^ w).wrapping_mul(K);
        }
        let mut tail = [0u8; 8];
        tail[..chunks.remainder().len()].copy_from_slice(chunks.remainder());
        self.0 = (self.0.rotate_left(5) ^ u64::from_le_bytes(tail) ^ bytes.len() as u64).wrapping_mul(K);
    }

    fn finish(&self) -> u64 {
        self.0
    }
}

#[derive(Serialize, Deserialize)]
struct Repr {
    vocabulary: Vec<String>,
    counts: Vec<u64>,
    missing: u64,
}

impl TryFrom<Repr> for CategoricalSketch {
    type Error = StatsError;
    fn try_from(r: Repr) -> Result<Self> {
        let mut s = CategoricalSketch::with_vocabulary(r.vocabulary)?;
        if r.counts.len() != s.counts.len() {
            return Err(StatsError::InvalidArgument("counts length does not match vocabulary".into()));
        }
        s.counts = r.counts;
        s.missing = r.missing;
        Ok(s)
    }
}

impl From<CategoricalSketch> for Repr {
    fn from(s: CategoricalSketch) -> Self {
        Repr { vocabulary: s.vocabulary, counts: s.counts, missing: s.missing }
    }
}

impl CategoricalSketch {
    /// Builds an empty sketch whose vocabulary is the `cap` most frequent categories of
    /// `reference`. `InvalidArgument` when `cap == 0`.
    pub fn from_reference<S: AsRef<str>>(reference: &[S], cap: usize) -> Result<Self> {
        if cap == 0 {
            return Err(StatsError::InvalidArgument("cardinality cap must be at least 1".into()));
        }
        let mut freq: HashMap<&str, u64> = HashMap::new();
        for v in reference {
            *freq.entry(v.as_ref()).or_default() += 1;
        }
        let mut by_freq: Vec<(&str, u64)> = freq.into_iter().collect();
        by_freq.sort_by(|a, b| b.1.cmp(&a.1).then(a.0.cmp(b.0)));
        by_freq.truncate(cap);
        let mut vocabulary: Vec<String> = by_freq.into_iter().map(|(k, _)| k.to_owned()).collect();
        vocabulary.sort();
        Self::with_vocabulary(vocabulary)
    }

    /// Builds the sketch of `reference` itself.
    pub fn reference<S: AsRef<str>>(reference: &[S], cap: usize) -> Result<Self> {
        let mut s = Self::from_reference(reference, cap)?;
        for v in reference {
            s.update(v.as_ref());
        }
        Ok(s)
    }

    /// Builds an empty sketch with an explicit vocabulary (duplicates are an error).
    pub fn with_vocabulary(vocabulary: Vec<String>) -> Result<Self> {
        let index: HashMap<String, usize, FastHash> =
            vocabulary.iter().enumerate().map(|(i, v)| (v.clone(), i)).collect();
        if index.len() != vocabulary.len() {
            return Err(StatsError::InvalidArgument("vocabulary has duplicates".into()));
        }
        Ok(CategoricalSketch { counts: vec![0; vocabulary.len() + 1], missing: 0, vocabulary, index })
    }

    /// An empty sketch with the same vocabulary.
    pub fn empty_like(&self) -> Self {
        let mut s = self.clone();
        s.counts.iter_mut().for_each(|c| *c = 0);
        s.missing = 0;
        s
    }

    /// Position of `value` in the vocabulary, or `vocabulary().len()` (the "other" bucket). The
    /// monitor can resolve a value once and then call [`CategoricalSketch::update_index`].
    #[inline]
    pub fn index_of(&self, value: &str) -> usize {
        self.index.get(value).copied().unwrap_or(self.vocabulary.len())
    }

    /// Counts one value.
    #[inline]
    pub fn update(&mut self, value: &str) {
        let i = self.index_of(value);
        self.counts[i] += 1;
    }

    /// Counts one value by its index from [`CategoricalSketch::index_of`].
    #[inline]
    pub fn update_index(&mut self, i: usize) {
        let last = self.vocabulary.len();
        self.counts[i.min(last)] += 1;
    }

    /// Counts `n` occurrences of `value` at once: what a window's stored category counts add.
    pub fn add_count(&mut self, value: &str, n: u64) {
        let i = self.index_of(value);
        self.counts[i] += n;
    }

    /// Counts one missing value.
    pub fn update_missing(&mut self) {
        self.missing += 1;
    }

    /// Adds `other`'s counts; `Incompatible` unless both have the same vocabulary.
    pub fn merge(&mut self, other: &Self) -> Result<()> {
        self.check_compatible(other)?;
        for (a, b) in self.counts.iter_mut().zip(&other.counts) {
            *a += b;
        }
        self.missing += other.missing;
        Ok(())
    }

    pub fn vocabulary(&self) -> &[String] {
        &self.vocabulary
    }

    /// Counts per vocabulary entry, then "other".
    pub fn counts(&self) -> &[u64] {
        &self.counts
    }

    /// Non-missing values counted (vocabulary plus "other").
    pub fn count(&self) -> u64 {
        self.counts.iter().sum()
    }

    pub fn other(&self) -> u64 {
        self.counts[self.vocabulary.len()]
    }

    pub fn missing(&self) -> u64 {
        self.missing
    }

    pub(crate) fn check_compatible(&self, other: &Self) -> Result<()> {
        if self.vocabulary != other.vocabulary {
            return Err(StatsError::Incompatible("categorical sketches have different vocabularies"));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn adding_counts_equals_updating_one_by_one() {
        let vocabulary = vec!["a".to_owned(), "b".to_owned()];
        let mut one_by_one = CategoricalSketch::with_vocabulary(vocabulary.clone()).unwrap();
        let mut at_once = CategoricalSketch::with_vocabulary(vocabulary).unwrap();
        for (value, n) in [("a", 3u64), ("b", 1), ("zz", 2)] {
            (0..n).for_each(|_| one_by_one.update(value));
            at_once.add_count(value, n);
        }
        assert_eq!(at_once.counts(), one_by_one.counts());
        assert_eq!(at_once.other(), 2);
    }

    #[test]
    fn cap_keeps_the_most_frequent_and_buckets_the_rest() {
        let reference = ["a", "a", "a", "b", "b", "c", "d"];
        let mut s = CategoricalSketch::reference(&reference, 2).unwrap();
        assert_eq!(s.vocabulary(), &["a", "b"]);
        assert_eq!(s.counts(), &[3, 2, 2]);
        s.update("never-seen");
        s.update_missing();
        assert_eq!(s.other(), 3);
        assert_eq!(s.missing(), 1);
        assert_eq!(s.count(), 8);
    }

    #[test]
    fn merge_rejects_other_vocabularies() {
        let mut a = CategoricalSketch::from_reference(&["x", "y"], 5).unwrap();
        let b = CategoricalSketch::from_reference(&["x", "z"], 5).unwrap();
        assert!(matches!(a.merge(&b), Err(StatsError::Incompatible(_))));
    }

    #[test]
    fn serde_round_trip_rebuilds_the_index() {
        let s = CategoricalSketch::reference(&["x", "y", "y"], 5).unwrap();
        let back: CategoricalSketch = serde_json::from_str(&serde_json::to_string(&s).unwrap()).unwrap();
        assert_eq!(back.index_of("y"), 1);
        assert_eq!(back.counts(), s.counts());
    }
}
