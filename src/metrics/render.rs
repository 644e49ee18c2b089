//! Prometheus text exposition format 0.0.4, written the way Go's
//! `prometheus/common/expfmt` writes it.
//!
//! Owns the bytes of a scrape: `# HELP` / `# TYPE` lines, label escaping,
//! number formatting (Go's shortest `%g`, so `1e+06`, `0.75`, `+Inf`), and
//! [`prometheus`], which writes a [`Snapshot`] the way the Go worker's
//! OpenTelemetry exporter does (scope labels on every series, labels sorted
//! by name, `target_info` from the resource). Which metrics exist is the
//! snapshot's business, not this module's.

use std::fmt::Write;

use super::snapshot::{Instrument, Snapshot, Value};
use super::{HELP_HANDLER_ERRORS, Resource, SCOPE_NAME};

/// The scope labels the Go exporter adds to every series.
const SCOPE_LABELS: [(&str, &str); 3] = [
    ("otel_scope_name", SCOPE_NAME),
    ("otel_scope_schema_url", ""),
    ("otel_scope_version", ""),
];

/// The whole scrape of `snapshot`, with `target_info` from `resource`.
pub fn prometheus(snapshot: &Snapshot, resource: &Resource) -> String {
    let mut e = Exposition::default();
    for family in &snapshot.families {
        let kind = match family.instrument {
            Instrument::Gauge | Instrument::UpDownCounter => Kind::Gauge,
            Instrument::Counter => Kind::Counter,
            Instrument::Histogram => Kind::Histogram,
        };
        e.family(family.name, family.help, kind);
        for point in &family.points {
            let mut labels: Vec<(&str, &str)> = SCOPE_LABELS.to_vec();
            labels.extend(point.attributes.iter().map(|(k, v)| (*k, v.as_str())));
            labels.sort_by_key(|(k, _)| *k);
            match &point.value {
                Value::Int(v) => e.sample(family.name, &labels, None, *v as f64),
                Value::Histogram(h) => {
                    let bucket = format!("{}_bucket", family.name);
                    let mut cumulative = 0;
                    for (bound, count) in h.bounds.iter().zip(&h.counts) {
                        cumulative += count;
                        e.sample(&bucket, &labels, Some(*bound), cumulative as f64);
                    }
                    e.sample(&bucket, &labels, Some(f64::INFINITY), h.count() as f64);
                    e.sample(&format!("{}_sum", family.name), &labels, None, h.sum);
                    e.sample(
                        &format!("{}_count", family.name),
                        &labels,
                        None,
                        h.count() as f64,
                    );
                }
            }
        }
    }
    // The Go worker's HTTP handler registers this in the same registry.
    let name = "promhttp_metric_handler_errors_total";
    e.family(name, HELP_HANDLER_ERRORS, Kind::Counter);
    for cause in ["encoding", "gathering"] {
        e.sample(name, &[("cause", cause)], None, 0.0);
    }
    e.family("target_info", "Target metadata", Kind::Gauge);
    let labels = resource.prometheus_labels();
    let labels: Vec<(&str, &str)> = labels
        .iter()
        .map(|(k, v)| (k.as_str(), v.as_str()))
        .collect();
    e.sample("target_info", &labels, None, 1.0);
    e.finish()
}

/// Prometheus metric type of a family.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// Monotonic counter.
    Counter,
    /// Value that goes up and down.
    Gauge,
    /// Bucketed distribution.
    Histogram,
}

impl Kind {
    fn as_str(self) -> &'static str {
        match self {
            Self::Counter => "counter",
            Self::Gauge => "gauge",
            Self::Histogram => "histogram",
        }
    }
}

/// A scrape being written.
#[derive(Debug, Default)]
pub struct Exposition {
    out: String,
}

impl Exposition {
    /// Starts a family: its HELP and TYPE lines.
    pub fn family(&mut self, name: &str, help: &str, kind: Kind) {
        let _ = writeln!(self.out, "# HELP {name} {}", escape_help(help));
        let _ = writeln!(self.out, "# TYPE {name} {}", kind.as_str());
    }

    /// One sample line; `le` is appended after `labels`, as Go does for buckets.
    pub fn sample(&mut self, name: &str, labels: &[(&str, &str)], le: Option<f64>, value: f64) {
        self.out.push_str(name);
        let mut sep = '{';
        for (k, v) in labels {
            let _ = write!(self.out, "{sep}{k}=\"{}\"", escape_label_value(v));
            sep = ',';
        }
        if let Some(bound) = le {
            let _ = write!(self.out, "{sep}le=\"{}\"", go_float(bound));
            sep = ',';
        }
        if sep == ',' {
            self.out.push('}');
        }
        self.out.push(' ');
        self.out.push_str(&go_float(value));
        self.out.push('\n');
    }

    /// The text written so far.
    pub fn finish(self) -> String {
        self.out
    }
}

/// HELP text escaping: backslash and newline.
pub fn escape_help(s: &str) -> String {
    s.replace('\\', "\\\\").replace('\n', "\\n")
}

/// Label value escaping: backslash, double quote and newline.
pub fn escape_label_value(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '\\' => out.push_str("\\\\"),
            '"' => out.push_str("\\\""),
            '\n' => out.push_str("\\n"),
            c => out.push(c),
        }
    }
    out
}

/// A float as Go's `strconv.FormatFloat(f, 'g', -1, 64)` spells it, with
/// expfmt's `+Inf`/`-Inf`/`NaN`: a scrape must read the same as a Go worker's.
pub fn go_float(f: f64) -> String {
    if f.is_nan() {
        return "NaN".into();
    }
    if f.is_infinite() {
        return if f > 0.0 { "+Inf" } else { "-Inf" }.into();
    }
    if f == 0.0 {
        return "0".into();
    }
    // Rust's `{:e}` gives the shortest round-trip digits, e.g. "1.25e6".
    let sci = format!("{f:e}");
    let (mantissa, exp) = sci.split_once('e').unwrap_or((&sci, "0"));
    let exp: i32 = exp.parse().unwrap_or(0);
    // Go's shortest %g decides with precision 6: exponent form below 1e-4
    // and from 1e6 on, with at least two exponent digits.
    if !(-4..6).contains(&exp) {
        let sign = if exp < 0 { '-' } else { '+' };
        format!("{mantissa}e{sign}{:02}", exp.abs())
    } else {
        format!("{f}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn floats_match_go() {
        let cases = [
            (0.0, "0"),
            (1.0, "1"),
            (-1.0, "-1"),
            (2.0, "2"),
            (0.75, "0.75"),
            (2.25, "2.25"),
            (10000.0, "10000"),
            (100000.0, "100000"),
            (1000000.0, "1e+06"),
            (1234567.0, "1.234567e+06"),
            (0.0001, "0.0001"),
            (0.00001, "1e-05"),
            (1.5e-7, "1.5e-07"),
            (1e21, "1e+21"),
            (1e100, "1e+100"),
            (f64::INFINITY, "+Inf"),
            (f64::NEG_INFINITY, "-Inf"),
            (f64::NAN, "NaN"),
            (0.1 + 0.2, "0.30000000000000004"),
        ];
        for (f, want) in cases {
            assert_eq!(go_float(f), want, "{f}");
        }
    }

    #[test]
    fn escapes_like_expfmt() {
        assert_eq!(escape_help("a\\b\nc\"d"), "a\\\\b\\nc\"d");
        assert_eq!(escape_label_value("a\\b\nc\"d"), "a\\\\b\\nc\\\"d");
    }

    #[test]
    fn writes_families_and_samples() {
        let mut e = Exposition::default();
        e.family("x_total", "Things\nseen.", Kind::Counter);
        e.sample("x_total", &[], None, 3.0);
        e.sample("x_bucket", &[("a", "q\"")], Some(f64::INFINITY), 1.0);
        e.sample("x_bucket", &[], Some(5.0), 0.0);
        assert_eq!(
            e.finish(),
            "# HELP x_total Things\\nseen.\n# TYPE x_total counter\nx_total 3\n\
             x_bucket{a=\"q\\\"\",le=\"+Inf\"} 1\nx_bucket{le=\"5\"} 0\n"
        );
    }
}
