//! The worker's own bounds on what tasks may cost the host: the cap on
//! bytes of assignments in flight and the size of container logs on the
//! host. Owns their types, defaults, the byte-size parser (Docker's
//! `units.RAMInBytes` grammar: `10m`, `64MiB`, `1.5g`) and their config-file
//! decoding. Pure; the dispatcher and the runner apply them.

use std::fmt;

use serde::Deserialize;
use serde::de::{self, Deserializer, Visitor};

use super::ValueError;

/// Default largest size of one container's log file on the host.
pub const DEFAULT_LOG_MAX_SIZE: u64 = 10 << 20;
/// Default number of log files Docker keeps per container.
pub const DEFAULT_LOG_MAX_FILE: u32 = 3;

/// Container logs on the host (`HostConfig.LogConfig` `max-size` /
/// `max-file`), applied only when the daemon's default log driver is
/// `json-file` or `local`. `None` = leave the daemon's settings alone.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ContainerLogs {
    /// Bytes per log file, and files kept.
    pub limit: Option<(u64, u32)>,
}

impl Default for ContainerLogs {
    fn default() -> Self {
        Self {
            limit: Some((DEFAULT_LOG_MAX_SIZE, DEFAULT_LOG_MAX_FILE)),
        }
    }
}

impl ContainerLogs {
    /// From the file's `container_log_max_size` (0 disables) and
    /// `container_log_max_file`, each defaulted when absent.
    pub fn from_keys(max_size: Option<u64>, max_file: Option<u32>) -> Self {
        let size = max_size.unwrap_or(DEFAULT_LOG_MAX_SIZE);
        Self {
            limit: (size > 0).then(|| (size, max_file.unwrap_or(DEFAULT_LOG_MAX_FILE))),
        }
    }
}

/// A byte size as Docker writes one: a number (decimals allowed), an
/// optional space, an optional unit `k`, `m`, `g`, `t`, `p` (powers of
/// 1024), an optional `i`, an optional `b`, any case. `0` is 0.
pub fn parse_size(text: &str) -> Result<u64, ValueError> {
    let bad = || ValueError::Size(text.to_owned());
    let digits_end = text
        .find(|c: char| !c.is_ascii_digit() && c != '.')
        .unwrap_or(text.len());
    let (number, rest) = text.split_at(digits_end);
    if number.is_empty() || number.starts_with('.') || number.ends_with('.') {
        return Err(bad());
    }
    let value: f64 = number.parse().map_err(|_| bad())?;
    let rest = rest.strip_prefix(' ').unwrap_or(rest).to_ascii_lowercase();
    let mut unit = rest.as_str();
    let shift = match unit.chars().next() {
        Some('k') => 10,
        Some('m') => 20,
        Some('g') => 30,
        Some('t') => 40,
        Some('p') => 50,
        _ => 0,
    };
    if shift > 0 {
        unit = &unit[1..];
    }
    let unit = unit.strip_prefix('i').unwrap_or(unit);
    if !matches!(unit, "" | "b") {
        return Err(bad());
    }
    let bytes = value * (1u64 << shift) as f64;
    if !bytes.is_finite() || bytes >= u64::MAX as f64 {
        return Err(bad());
    }
    Ok(bytes as u64)
}

/// A size key of the config file: a string (`10m`) or a plain number of bytes.
#[derive(Debug, Clone, Copy, Default)]
pub(crate) struct Size(pub u64);

impl<'de> Deserialize<'de> for Size {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl Visitor<'_> for V {
            type Value = Size;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a size such as 10m, 64MiB or a number of bytes")
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<Size, E> {
                parse_size(v).map(Size).map_err(E::custom)
            }
            fn visit_u64<E: de::Error>(self, v: u64) -> Result<Size, E> {
                Ok(Size(v))
            }
            fn visit_i64<E: de::Error>(self, v: i64) -> Result<Size, E> {
                u64::try_from(v)
                    .map(Size)
                    .map_err(|_| E::custom(ValueError::Size(v.to_string())))
            }
        }
        d.deserialize_any(V)
    }
}

/// `container_log_max_file`: a whole number, 1 or more.
#[derive(Debug, Clone, Copy)]
pub(crate) struct FileCount(pub u32);

impl<'de> Deserialize<'de> for FileCount {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        // Checked inside the visitor, so the error names this key's line.
        struct V;
        impl Visitor<'_> for V {
            type Value = FileCount;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a whole number of files (1 or more)")
            }
            fn visit_u64<E: de::Error>(self, n: u64) -> Result<FileCount, E> {
                match u32::try_from(n) {
                    Ok(n) if n >= 1 => Ok(FileCount(n)),
                    _ => Err(E::custom(ValueError::FileCount(n.to_string()))),
                }
            }
            fn visit_i64<E: de::Error>(self, n: i64) -> Result<FileCount, E> {
                match u64::try_from(n) {
                    Ok(n) => self.visit_u64(n),
                    Err(_) => Err(E::custom(ValueError::FileCount(n.to_string()))),
                }
            }
        }
        d.deserialize_any(V)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_as_docker_reads_them() {
        for (text, bytes) in [
            ("0", 0),
            ("512", 512),
            ("10m", 10 << 20),
            ("10M", 10 << 20),
            ("64MiB", 64 << 20),
            ("64 mb", 64 << 20),
            ("1.5g", 3 << 29),
            ("2k", 2048),
            ("1b", 1),
        ] {
            assert_eq!(parse_size(text), Ok(bytes), "{text}");
        }
        for bad in ["", "m", "-1", "1.", ".5m", "10x", "10 m b", "1e9", "10mm"] {
            assert_eq!(parse_size(bad), Err(ValueError::Size(bad.into())), "{bad}");
        }
    }

    #[test]
    fn file_keys() {
        let cfg = super::super::from_yaml(
            "worker_id: w\nmax_in_flight_bytes: 32m\nbackend:\n  docker:\n    container_log_max_size: 1MiB\n    container_log_max_file: 2\n",
            "FILE",
            &|_| None,
        )
        .unwrap();
        assert_eq!(cfg.max_in_flight_bytes, 32 << 20);
        assert_eq!(cfg.docker.container_logs.limit, Some((1 << 20, 2)));
        let off = super::super::from_yaml(
            "worker_id: w\nmax_in_flight_bytes: 0\nbackend:\n  docker:\n    container_log_max_size: 0\n",
            "FILE",
            &|_| None,
        )
        .unwrap();
        assert_eq!(off.max_in_flight_bytes, 0);
        assert_eq!(off.docker.container_logs.limit, None);
        let err = super::super::from_yaml(
            "backend:\n  docker:\n    container_log_max_file: 0\n",
            "FILE",
            &|_| None,
        )
        .unwrap_err();
        assert_eq!(
            err.to_string(),
            "failed to parse config file FILE: backend.docker.container_log_max_file: `0` is not a whole number of files (1 or more) at line 3 column 29"
        );
        let err =
            super::super::from_yaml("max_in_flight_bytes: lots\n", "FILE", &|_| None).unwrap_err();
        assert_eq!(
            err.to_string(),
            "failed to parse config file FILE: max_in_flight_bytes: `lots` is not a size (a number with an optional unit k, m, g: `10m`, `64MiB`) at line 1 column 22"
        );
    }

    #[test]
    fn the_example_config_file_sets_them() {
        let text = include_str!("../../deploy/config.example.yaml");
        let cfg = super::super::from_yaml(text, "config.example.yaml", &|_| None).unwrap();
        assert_eq!(cfg.max_in_flight_bytes, 64 << 20);
        assert_eq!(cfg.docker.container_logs.limit, Some((10 << 20, 3)));
    }

    #[test]
    fn log_limits_default_and_disable() {
        assert_eq!(
            ContainerLogs::from_keys(None, None).limit,
            Some((10 << 20, 3))
        );
        assert_eq!(ContainerLogs::from_keys(Some(0), Some(5)).limit, None);
        assert_eq!(
            ContainerLogs::from_keys(Some(1 << 20), Some(2)).limit,
            Some((1 << 20, 2))
        );
    }
}
