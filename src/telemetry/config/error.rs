//! [`TelemetryConfigError`]: the OpenTelemetry settings the worker refuses
//! to start with. Never holds a header value.

use std::fmt;

use super::METRICS_EXPORTER;

/// A setting that makes the export impossible.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TelemetryConfigError {
    /// An exporter name this worker does not have.
    UnknownExporter {
        /// The variable.
        var: String,
        /// The name.
        name: String,
    },
    /// A protocol other than `http/protobuf` or `http/json`.
    Protocol {
        /// The variable.
        var: String,
        /// What it held.
        value: String,
    },
    /// The endpoint is not an `http://` or `https://` URL.
    Endpoint {
        /// The variable.
        var: String,
        /// What is wrong with it.
        problem: &'static str,
    },
    /// A headers variable holds a CR, LF or NUL (as written or %-decoded).
    LineBreak {
        /// The variable (never its value: it carries credentials).
        var: String,
    },
}

impl fmt::Display for TelemetryConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::UnknownExporter { var, name } => write!(
                f,
                "{var} lists {name:?}, which this worker does not have; use otlp, {}console or none",
                if var == METRICS_EXPORTER {
                    "prometheus, "
                } else {
                    ""
                }
            ),
            Self::Protocol { var, value } if value == "grpc" => write!(
                f,
                "{var}=grpc: this worker pushes OTLP over HTTP only; set http/protobuf (the collector's port 4318) or http/json, or OTEL_METRICS_EXPORTER=none to export nothing"
            ),
            Self::Protocol { var, value } => write!(
                f,
                "{var}={value:?} is not an OTLP protocol this worker speaks; use http/protobuf or http/json"
            ),
            Self::Endpoint { var, problem } => write!(
                f,
                "{var} {problem}; write a URL such as http://collector:4318"
            ),
            Self::LineBreak { var } => write!(
                f,
                "{var} holds a CR, LF or NUL character (as written or %-encoded), which would forge headers of the OTLP request; remove it"
            ),
        }
    }
}

impl std::error::Error for TelemetryConfigError {}
