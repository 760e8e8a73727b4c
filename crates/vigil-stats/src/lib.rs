//! vigil-stats: the numbers behind vigil's verdicts.
//!
//! - [`sketch`]: mergeable, serializable window states (quantile-binned numeric histograms, a
//!   reference-independent quantile sketch that re-bins onto them, capped category counts, an
//!   exact reservoir for small windows, HDR latency histograms);
//! - [`drift`]: drift tests between a reference and a current window, each defined in its doc
//!   comment and checked against SciPy by golden vectors;
//! - [`select`]: the default test per feature type and window size, overridable;
//! - [`exact`]: exact float sums, independent of the order and grouping of adds and merges, for
//!   every sum a mergeable state keeps;
//! - [`perf`]: classification, ranking, calibration and regression metrics from mergeable
//!   accumulators, checked against scikit-learn.
//!
//! Pure computation: no I/O, no async, no clock. See `docs/stats.md` for the design.

pub mod drift;
mod error;
pub mod exact;
pub mod perf;
pub mod select;
pub mod sketch;

pub use drift::{DriftResult, DriftTest, Statistic};
pub use error::{Result, StatsError};
pub use exact::ExactSum;
pub use select::{DriftPolicy, FeatureKind, TestChoice};
pub use sketch::{CategoricalSketch, LatencySketch, NumericSketch, QuantileSketch, Rebinned, Reservoir};
