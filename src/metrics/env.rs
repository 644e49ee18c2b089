//! Whether and where to serve metrics, read from the standard OpenTelemetry
//! environment variables the Go worker honours.
//!
//! Owns the reading of `OTEL_METRICS_EXPORTER`, `OTEL_EXPORTER_PROMETHEUS_HOST`
//! and `OTEL_EXPORTER_PROMETHEUS_PORT`. Pure: the environment is passed in as
//! a lookup function; nothing is bound here.

use std::fmt;

/// Port when `OTEL_EXPORTER_PROMETHEUS_PORT` is unset (the OpenTelemetry default).
pub const DEFAULT_PORT: u16 = 9464;
/// Host when `OTEL_EXPORTER_PROMETHEUS_HOST` is unset.
pub const DEFAULT_HOST: &str = "localhost";

/// Where the metrics endpoint listens.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ListenAddr {
    /// Host name or IP literal (without brackets).
    pub host: String,
    /// TCP port; 0 picks a free one.
    pub port: u16,
}

impl fmt::Display for ListenAddr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.host.contains(':') {
            write!(f, "[{}]:{}", self.host, self.port)
        } else {
            write!(f, "{}:{}", self.host, self.port)
        }
    }
}

/// The metrics settings in the environment are unusable.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum EnvError {
    /// `OTEL_EXPORTER_PROMETHEUS_PORT` is not a number from 0 to 65535.
    BadPort {
        /// What the variable held.
        value: String,
    },
}

impl fmt::Display for EnvError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::BadPort { value } => write!(
                f,
                "OTEL_EXPORTER_PROMETHEUS_PORT={value:?} is not a TCP port; set it to a number from 0 to 65535 (default {DEFAULT_PORT})"
            ),
        }
    }
}

impl std::error::Error for EnvError {}

/// `Ok(None)` unless `OTEL_METRICS_EXPORTER` lists `prometheus`; otherwise
/// the address to serve `/metrics`, `/healthz` and `/readyz` on.
///
/// The variable is read as the OpenTelemetry comma-separated list. An empty
/// host means every interface (as Go's `":9464"` does); an empty port means
/// the default rather than Go's accidental random port.
pub fn config_from_env(
    env: &dyn Fn(&str) -> Option<String>,
) -> Result<Option<ListenAddr>, EnvError> {
    let enabled = env("OTEL_METRICS_EXPORTER")
        .is_some_and(|v| v.split(',').any(|e| e.trim() == "prometheus"));
    if !enabled {
        return Ok(None);
    }
    let host = match env("OTEL_EXPORTER_PROMETHEUS_HOST") {
        None => DEFAULT_HOST.to_owned(),
        Some(h) if h.trim().is_empty() => "0.0.0.0".to_owned(),
        Some(h) => {
            let h = h.trim();
            h.strip_prefix('[')
                .and_then(|h| h.strip_suffix(']'))
                .unwrap_or(h)
                .to_owned()
        }
    };
    let port = match env("OTEL_EXPORTER_PROMETHEUS_PORT") {
        None => DEFAULT_PORT,
        Some(p) if p.trim().is_empty() => DEFAULT_PORT,
        Some(p) => p
            .trim()
            .parse::<u16>()
            .map_err(|_| EnvError::BadPort { value: p.clone() })?,
    };
    Ok(Some(ListenAddr { host, port }))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn read(vars: &[(&str, &str)]) -> Result<Option<ListenAddr>, EnvError> {
        let vars: Vec<(String, String)> = vars
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        config_from_env(&|k| vars.iter().find(|(n, _)| n == k).map(|(_, v)| v.clone()))
    }

    fn addr(host: &str, port: u16) -> Option<ListenAddr> {
        Some(ListenAddr {
            host: host.into(),
            port,
        })
    }

    #[test]
    fn disabled_unless_prometheus_is_listed() {
        assert_eq!(read(&[]), Ok(None));
        assert_eq!(read(&[("OTEL_METRICS_EXPORTER", "otlp")]), Ok(None));
        assert_eq!(read(&[("OTEL_METRICS_EXPORTER", "none")]), Ok(None));
        assert_eq!(
            read(&[
                ("OTEL_METRICS_EXPORTER", "otlp"),
                ("OTEL_EXPORTER_PROMETHEUS_PORT", "nope")
            ]),
            Ok(None)
        );
    }

    #[test]
    fn defaults_and_overrides() {
        assert_eq!(
            read(&[("OTEL_METRICS_EXPORTER", "prometheus")]),
            Ok(addr("localhost", 9464))
        );
        assert_eq!(
            read(&[
                ("OTEL_METRICS_EXPORTER", "otlp, prometheus"),
                ("OTEL_EXPORTER_PROMETHEUS_HOST", "0.0.0.0"),
                ("OTEL_EXPORTER_PROMETHEUS_PORT", "9100"),
            ]),
            Ok(addr("0.0.0.0", 9100))
        );
        assert_eq!(
            read(&[
                ("OTEL_METRICS_EXPORTER", "prometheus"),
                ("OTEL_EXPORTER_PROMETHEUS_HOST", "[::1]"),
                ("OTEL_EXPORTER_PROMETHEUS_PORT", ""),
            ]),
            Ok(addr("::1", 9464))
        );
        assert_eq!(
            read(&[
                ("OTEL_METRICS_EXPORTER", "prometheus"),
                ("OTEL_EXPORTER_PROMETHEUS_HOST", ""),
            ]),
            Ok(addr("0.0.0.0", 9464))
        );
    }

    #[test]
    fn bad_port_is_a_typed_error() {
        let err = read(&[
            ("OTEL_METRICS_EXPORTER", "prometheus"),
            ("OTEL_EXPORTER_PROMETHEUS_PORT", "70000"),
        ])
        .unwrap_err();
        assert_eq!(
            err,
            EnvError::BadPort {
                value: "70000".into()
            }
        );
        assert_eq!(
            err.to_string(),
            "OTEL_EXPORTER_PROMETHEUS_PORT=\"70000\" is not a TCP port; set it to a number from 0 to 65535 (default 9464)"
        );
    }

    #[test]
    fn addresses_print_bindably() {
        assert_eq!(addr("::1", 1).unwrap().to_string(), "[::1]:1");
        assert_eq!(
            addr("localhost", 9464).unwrap().to_string(),
            "localhost:9464"
        );
    }
}
