//! Which telemetry to export and where, read from the OpenTelemetry
//! environment variables the Go worker's `autoexport` honours.
//!
//! Owns the reading of `OTEL_METRICS_EXPORTER`, `OTEL_TRACES_EXPORTER`, the
//! `OTEL_EXPORTER_OTLP_*` family (general and per-signal, per-signal
//! winning), `OTEL_METRIC_EXPORT_*` and `OTEL_BSP_*`. Settings that make the
//! export impossible (an unknown exporter, `grpc`, an endpoint that is not an
//! http(s) URL) are errors the worker refuses to start with; settings the Go
//! SDK ignores with a log line (a bad timeout, an unknown compression) become
//! warnings and the default. Pure: the environment is passed in, nothing is
//! opened here. Header values never appear in a warning or error.
//!
//! The endpoint URL ([`HttpUrl`]), the headers lists and the error
//! ([`TelemetryConfigError`]) each have a child module; this file reads the
//! variables and puts the settings together.

mod error;
mod headers;
mod url;

use std::path::PathBuf;
use std::time::Duration;

pub use error::TelemetryConfigError;
use headers::breaks_a_line;
pub use headers::parse_headers;
pub use url::{HttpUrl, parse_endpoint};

/// The OTLP/HTTP body encoding.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Protocol {
    /// `http/protobuf` (the default).
    Protobuf,
    /// `http/json`.
    Json,
}

/// Where and how one signal is pushed over OTLP/HTTP.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OtlpSettings {
    /// The full URL (`…/v1/metrics`, `…/v1/traces`).
    pub endpoint: HttpUrl,
    /// Body encoding.
    pub protocol: Protocol,
    /// Extra request headers (often an API key: never log the values).
    pub headers: Vec<(String, String)>,
    /// Per-request timeout.
    pub timeout: Duration,
    /// `Content-Encoding: gzip`.
    pub gzip: bool,
    /// PEM file of the CAs to trust instead of the built-in roots.
    pub certificate: Option<PathBuf>,
}

/// Metrics export settings.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MetricsExport {
    /// OTLP push, when `otlp` is listed (or nothing is).
    pub otlp: Option<OtlpSettings>,
    /// Print each export to stdout (`console`).
    pub console: bool,
    /// `OTEL_METRIC_EXPORT_INTERVAL`.
    pub interval: Duration,
    /// `OTEL_METRIC_EXPORT_TIMEOUT`: the most one export may take.
    pub timeout: Duration,
}

/// Batch span processor settings (`OTEL_BSP_*`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BatchSettings {
    /// Most time a finished span waits before export.
    pub schedule_delay: Duration,
    /// The most one export may take.
    pub export_timeout: Duration,
    /// Spans kept waiting at most; more are dropped (and counted).
    pub max_queue: usize,
    /// Spans per export at most.
    pub max_batch: usize,
}

/// Trace export settings.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TraceExport {
    /// OTLP push.
    pub otlp: Option<OtlpSettings>,
    /// Print each batch to stdout (`console`).
    pub console: bool,
    /// Batching.
    pub batch: BatchSettings,
}

/// Everything the worker exports besides the Prometheus endpoint.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TelemetryConfig {
    /// `None` when `OTEL_METRICS_EXPORTER` lists neither `otlp` nor `console`.
    pub metrics: Option<MetricsExport>,
    /// `None` unless `OTEL_TRACES_EXPORTER` lists `otlp` or `console`.
    pub traces: Option<TraceExport>,
    /// Settings not taken as written, one line each, safe to log.
    pub warnings: Vec<String>,
}

const METRICS_EXPORTER: &str = "OTEL_METRICS_EXPORTER";
const TRACES_EXPORTER: &str = "OTEL_TRACES_EXPORTER";
/// The default OTLP/HTTP endpoint.
pub const DEFAULT_ENDPOINT: &str = "http://localhost:4318";
const DEFAULT_TIMEOUT: Duration = Duration::from_secs(10);

/// The signal a setting is for: names its variables and its URL path.
#[derive(Debug, Clone, Copy)]
enum Signal {
    Metrics,
    Traces,
}

impl Signal {
    fn var(self, suffix: &str) -> String {
        let signal = match self {
            Self::Metrics => "METRICS",
            Self::Traces => "TRACES",
        };
        format!("OTEL_EXPORTER_OTLP_{signal}_{suffix}")
    }

    fn path(self) -> &'static str {
        match self {
            Self::Metrics => "/v1/metrics",
            Self::Traces => "/v1/traces",
        }
    }
}

type Env<'a> = &'a dyn Fn(&str) -> Option<String>;

/// A variable's value, trimmed; `None` when unset or blank (as Go reads them).
fn get(env: Env<'_>, name: &str) -> Option<String> {
    env(name)
        .map(|v| v.trim().to_owned())
        .filter(|v| !v.is_empty())
}

/// The per-signal variable when set, else the general one; with the name read.
fn pick(env: Env<'_>, signal: Signal, suffix: &str) -> Option<(String, String)> {
    let specific = signal.var(suffix);
    if let Some(v) = get(env, &specific) {
        return Some((specific, v));
    }
    let general = format!("OTEL_EXPORTER_OTLP_{suffix}");
    get(env, &general).map(|v| (general, v))
}

/// Reads every telemetry setting.
pub fn from_env(env: Env<'_>) -> Result<TelemetryConfig, TelemetryConfigError> {
    let mut warnings = Vec::new();
    let metric_names = exporters(env, METRICS_EXPORTER, &["otlp", "prometheus", "console"])?
        .unwrap_or_else(|| vec!["otlp".into()]);
    let trace_names = exporters(env, TRACES_EXPORTER, &["otlp", "console"])?.unwrap_or_default();

    let metrics = if metric_names.iter().any(|n| n == "otlp" || n == "console") {
        let otlp = if metric_names.iter().any(|n| n == "otlp") {
            Some(otlp(env, Signal::Metrics, &mut warnings)?)
        } else {
            None
        };
        if let Some((var, v)) = pick(env, Signal::Metrics, "TEMPORALITY_PREFERENCE")
            .filter(|(_, v)| !v.eq_ignore_ascii_case("cumulative"))
        {
            warnings.push(format!(
                "{var}={v:?}: this worker pushes cumulative sums and histograms only"
            ));
        }
        Some(MetricsExport {
            otlp,
            console: metric_names.iter().any(|n| n == "console"),
            interval: millis(env, "OTEL_METRIC_EXPORT_INTERVAL", 60_000, &mut warnings),
            timeout: millis(env, "OTEL_METRIC_EXPORT_TIMEOUT", 30_000, &mut warnings),
        })
    } else {
        None
    };

    let traces = if trace_names.is_empty() {
        None
    } else {
        let otlp = if trace_names.iter().any(|n| n == "otlp") {
            Some(otlp(env, Signal::Traces, &mut warnings)?)
        } else {
            None
        };
        let max_queue = count(env, "OTEL_BSP_MAX_QUEUE_SIZE", 2048, &mut warnings);
        let mut max_batch = count(env, "OTEL_BSP_MAX_EXPORT_BATCH_SIZE", 512, &mut warnings);
        // As the Go SDK: a batch never exceeds the queue.
        max_batch = max_batch.min(max_queue);
        Some(TraceExport {
            otlp,
            console: trace_names.iter().any(|n| n == "console"),
            batch: BatchSettings {
                schedule_delay: millis(env, "OTEL_BSP_SCHEDULE_DELAY", 5_000, &mut warnings),
                export_timeout: millis(env, "OTEL_BSP_EXPORT_TIMEOUT", 30_000, &mut warnings),
                max_queue,
                max_batch,
            },
        })
    };
    Ok(TelemetryConfig {
        metrics,
        traces,
        warnings,
    })
}

/// The exporter names listed in `var` (comma-separated, `none` dropped);
/// `None` when unset or blank.
fn exporters(
    env: Env<'_>,
    var: &'static str,
    known: &[&str],
) -> Result<Option<Vec<String>>, TelemetryConfigError> {
    let Some(value) = get(env, var) else {
        return Ok(None);
    };
    let mut names = Vec::new();
    for name in value.split(',').map(str::trim).filter(|n| !n.is_empty()) {
        if name == "none" {
            continue;
        }
        if !known.contains(&name) {
            return Err(TelemetryConfigError::UnknownExporter {
                var: var.to_owned(),
                name: name.chars().take(40).collect(),
            });
        }
        names.push(name.to_owned());
    }
    Ok(Some(names))
}

fn otlp(
    env: Env<'_>,
    signal: Signal,
    warnings: &mut Vec<String>,
) -> Result<OtlpSettings, TelemetryConfigError> {
    let protocol = match pick(env, signal, "PROTOCOL") {
        None => Protocol::Protobuf,
        Some((_, v)) if v == "http/protobuf" => Protocol::Protobuf,
        Some((_, v)) if v == "http/json" => Protocol::Json,
        Some((var, value)) => {
            return Err(TelemetryConfigError::Protocol {
                var,
                value: value.chars().take(40).collect(),
            });
        }
    };
    let endpoint = match get(env, &signal.var("ENDPOINT")) {
        // Per-signal: the URL as written ("/" when it has no path).
        Some(v) => parse_endpoint(&v).map_err(|problem| TelemetryConfigError::Endpoint {
            var: signal.var("ENDPOINT"),
            problem,
        })?,
        None => {
            let base = get(env, "OTEL_EXPORTER_OTLP_ENDPOINT")
                .unwrap_or_else(|| DEFAULT_ENDPOINT.to_owned());
            let mut e =
                parse_endpoint(&base).map_err(|problem| TelemetryConfigError::Endpoint {
                    var: "OTEL_EXPORTER_OTLP_ENDPOINT".into(),
                    problem,
                })?;
            // The general endpoint is a base: the signal's path goes after its own.
            e.path = format!("{}{}", e.path.trim_end_matches('/'), signal.path());
            e
        }
    };
    let headers = match pick(env, signal, "HEADERS") {
        // A line break would forge headers of the request: refused at start.
        Some((var, v)) if breaks_a_line(&v) => return Err(TelemetryConfigError::LineBreak { var }),
        Some((var, v)) => parse_headers(&var, &v, warnings),
        None => Vec::new(),
    };
    let timeout = match pick(env, signal, "TIMEOUT") {
        Some((var, v)) => parse_millis(&var, &v, DEFAULT_TIMEOUT, warnings),
        None => DEFAULT_TIMEOUT,
    };
    let gzip = match pick(env, signal, "COMPRESSION") {
        None => false,
        Some((_, v)) if v == "gzip" => true,
        Some((_, v)) if v == "none" => false,
        Some((var, v)) => {
            warnings.push(format!(
                "{var}={:?} is not a compression this worker knows; sending uncompressed (use gzip or none)",
                v.chars().take(40).collect::<String>()
            ));
            false
        }
    };
    let certificate = pick(env, signal, "CERTIFICATE").map(|(_, v)| PathBuf::from(v));
    if let Some((var, _)) = pick(env, signal, "CLIENT_CERTIFICATE") {
        warnings.push(format!(
            "{var} is set, but this worker does not present client certificates to the collector; it is ignored"
        ));
    }
    Ok(OtlpSettings {
        endpoint,
        protocol,
        headers,
        timeout,
        gzip,
        certificate,
    })
}

fn millis(env: Env<'_>, var: &str, default_ms: u64, warnings: &mut Vec<String>) -> Duration {
    let default = Duration::from_millis(default_ms);
    match get(env, var) {
        Some(v) => parse_millis(var, &v, default, warnings),
        None => default,
    }
}

fn parse_millis(var: &str, v: &str, default: Duration, warnings: &mut Vec<String>) -> Duration {
    match v.parse::<i64>() {
        Ok(n) if n > 0 => Duration::from_millis(n as u64),
        _ => {
            warnings.push(format!(
                "{var}={:?} is not a positive whole number of milliseconds; using {} ms",
                v.chars().take(40).collect::<String>(),
                default.as_millis()
            ));
            default
        }
    }
}

fn count(env: Env<'_>, var: &str, default: usize, warnings: &mut Vec<String>) -> usize {
    match get(env, var) {
        None => default,
        Some(v) => match v.parse::<usize>() {
            Ok(n) if n > 0 => n,
            _ => {
                warnings.push(format!(
                    "{var}={:?} is not a positive whole number; using {default}",
                    v.chars().take(40).collect::<String>()
                ));
                default
            }
        },
    }
}

#[cfg(test)]
mod tests;
