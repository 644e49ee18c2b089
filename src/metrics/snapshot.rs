//! One reading of every metric, in the shape both exports need: the
//! Prometheus scrape ([`super::render`]) and the OTLP push
//! (`crate::telemetry`) are written from the same [`Snapshot`], so they can
//! never disagree about a value.
//!
//! Owns the data model only (instrument kinds as OpenTelemetry names them,
//! points, histogram buckets); no rendering, no state, no I/O.

use std::time::SystemTime;

/// The OpenTelemetry instrument behind a family; decides its Prometheus type
/// and its OTLP data kind.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Instrument {
    /// Last value (Prometheus gauge, OTLP Gauge).
    Gauge,
    /// Monotonic sum (Prometheus counter, OTLP monotonic cumulative Sum).
    Counter,
    /// Sum that goes up and down (Prometheus gauge, OTLP non-monotonic cumulative Sum).
    UpDownCounter,
    /// Explicit-bucket histogram (Prometheus histogram, OTLP cumulative Histogram).
    Histogram,
}

/// A histogram's buckets and totals.
#[derive(Debug, Clone, PartialEq)]
pub struct HistogramValue {
    /// Upper bounds, ascending (upper-inclusive, as in OpenTelemetry).
    pub bounds: &'static [f64],
    /// Per-bucket counts, `bounds.len() + 1` of them (the last is above every bound).
    pub counts: Vec<u64>,
    /// Sum of every observation.
    pub sum: f64,
    /// Smallest observation (the OpenTelemetry SDK exports min and max).
    pub min: f64,
    /// Largest observation.
    pub max: f64,
}

impl HistogramValue {
    /// How many observations.
    pub fn count(&self) -> u64 {
        self.counts.iter().sum()
    }
}

/// A point's value.
#[derive(Debug, Clone, PartialEq)]
pub enum Value {
    /// Every gauge and counter of the worker is an integer (Go's `Int64*` instruments).
    Int(i64),
    /// A histogram.
    Histogram(HistogramValue),
}

/// One series: its attributes (label name order) and value.
#[derive(Debug, Clone, PartialEq)]
pub struct Point {
    /// Attributes in label-name order, without the scope labels.
    pub attributes: Vec<(&'static str, String)>,
    /// The value.
    pub value: Value,
}

/// One metric with every series it has now.
#[derive(Debug, Clone, PartialEq)]
pub struct Family {
    /// Metric name, as the scrape shows it.
    pub name: &'static str,
    /// Description (`# HELP`).
    pub help: &'static str,
    /// UCUM unit (`s`, `By`), empty for none.
    pub unit: &'static str,
    /// Instrument kind.
    pub instrument: Instrument,
    /// Series, in label order.
    pub points: Vec<Point>,
}

/// Every family at one instant, in name order.
#[derive(Debug, Clone, PartialEq)]
pub struct Snapshot {
    /// When the process began recording (start of every cumulative series).
    pub start: SystemTime,
    /// When this reading was taken.
    pub at: SystemTime,
    /// Families in name order.
    pub families: Vec<Family>,
}

/// Nanoseconds since 1970 (0 for a clock before it).
pub fn unix_nanos(t: SystemTime) -> u64 {
    t.duration_since(SystemTime::UNIX_EPOCH)
        .map(|d| d.as_nanos().min(u128::from(u64::MAX)) as u64)
        .unwrap_or(0)
}
