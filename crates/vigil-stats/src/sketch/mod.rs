//! Mergeable, serializable window sketches.
//!
//! Every sketch satisfies `a.merge(&b)` == the sketch built from the union of `a`'s and `b`'s
//! events (exactly for counts; up to floating-point summation order for sums), so partial
//! window states from different partitions can be combined downstream.

pub mod categorical;
pub mod latency;
pub mod numeric;
pub mod quantile;
pub mod reservoir;

pub use categorical::CategoricalSketch;
pub use latency::LatencySketch;
pub use numeric::NumericSketch;
pub use quantile::{QuantileSketch, Rebinned};
pub use reservoir::Reservoir;
