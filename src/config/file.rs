//! The YAML config file (`--config-file`): its schema, decoded strictly so an
//! unknown key anywhere is an error naming the key and its line, as the Go
//! worker's strict decoder does. Values are checked while decoding, so a bad
//! volume or duration is reported at its own line too.
//!
//! Owns the file's shape only; it must not apply defaults or merge with
//! flags (that is `merge`'s job) and must not put environment values in
//! errors.

use std::collections::BTreeMap;
use std::fmt;
use std::time::Duration;

use serde::Deserialize;
use serde::de::{self, Deserializer, IgnoredAny, Visitor};

use super::error::{ConfigError, ValueError};
use super::limits::{FileCount, Size};
use super::values;
use super::{LogFormat, PullPolicy, ShutdownMode, VolumeMount};

/// The whole file. Every field is optional; absent = flag or default.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct FileConfig {
    pub worker_id: Option<String>,
    pub cleanup: Option<bool>,
    pub max_concurrent_tasks: Option<TaskCount>,
    pub idle_on_complete: Option<Checked<DurationText>>,
    pub log_format: Option<Checked<LogFormat>>,
    pub drain_timeout: Option<Checked<Duration>>,
    pub on_shutdown: Option<Checked<ShutdownMode>>,
    pub shutdown_timeout: Option<Checked<Duration>>,
    #[serde(default)]
    pub backend: Backends,
    pub max_in_flight_bytes: Option<Size>,
}

/// `backend:`. The Go worker's other backends are known keys so the error
/// can say this build runs Docker only, rather than "unknown field".
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct Backends {
    pub docker: Option<DockerSection>,
    pub direct: Option<IgnoredAny>,
    pub kubernetes: Option<IgnoredAny>,
    pub command: Option<IgnoredAny>,
}

/// `backend.docker:`: the Go worker's keys, then ours.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct DockerSection {
    #[serde(default)]
    pub volumes: Vec<Checked<VolumeMount>>,
    #[serde(default)]
    pub environment: Vec<EnvEntry>,
    pub default_image: Option<String>,
    pub sidecar_image: Option<String>,
    #[serde(default)]
    pub registry_mirrors: BTreeMap<String, String>,
    pub image_pull_policy: Option<Checked<PullPolicy>>,
    pub task_timeout: Option<Checked<Duration>>,
    pub stop_grace: Option<Checked<Duration>>,
    pub runtime: Option<String>,
    /// `network_mode` is the Go worker's name for it (its pending change).
    #[serde(alias = "network_mode")]
    pub network: Option<String>,
    #[serde(default)]
    pub security_opt: Vec<String>,
    #[serde(default)]
    pub cap_drop: Vec<String>,
    pub pids_limit: Option<i64>,
    pub init: Option<bool>,
    pub container_log_max_size: Option<Size>,
    pub container_log_max_file: Option<FileCount>,
    #[serde(default)]
    pub prefetch_images: Vec<String>,
    pub image_archives: Option<String>,
    pub sidecar_retention: Option<Checked<Duration>>,
    pub image_retention: Option<Checked<Duration>>,
}

/// One `environment` entry; no `value` = the worker's own value.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct EnvEntry {
    pub name: Checked<EnvName>,
    pub value: Option<ScalarText>,
}

impl fmt::Debug for EnvEntry {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("EnvEntry")
            .field("name", &self.name.0.0)
            .field("value", &self.value.as_ref().map(|_| "<redacted>"))
            .finish()
    }
}

/// A value decoded from a YAML string and checked by one of [`values`]'
/// parsers, so the error carries the key's line.
#[derive(Debug, Default)]
pub(crate) struct Checked<T>(pub T);

/// A string value with a parser.
pub(crate) trait FromText: Sized {
    /// Parses the text or says what is wrong.
    fn from_text(text: &str) -> Result<Self, ValueError>;
}

impl FromText for Duration {
    fn from_text(text: &str) -> Result<Self, ValueError> {
        values::parse_duration(text)
    }
}
impl FromText for VolumeMount {
    fn from_text(text: &str) -> Result<Self, ValueError> {
        values::parse_volume(text)
    }
}
impl FromText for PullPolicy {
    fn from_text(text: &str) -> Result<Self, ValueError> {
        values::parse_pull_policy(text)
    }
}
impl FromText for ShutdownMode {
    fn from_text(text: &str) -> Result<Self, ValueError> {
        values::parse_shutdown_mode(text)
    }
}
impl FromText for LogFormat {
    fn from_text(text: &str) -> Result<Self, ValueError> {
        values::parse_log_format(text)
    }
}

/// An environment variable name (non-empty, no whitespace).
#[derive(Debug, Default)]
pub(crate) struct EnvName(pub String);

impl FromText for EnvName {
    fn from_text(text: &str) -> Result<Self, ValueError> {
        values::check_env_name(text).map(|()| EnvName(text.to_owned()))
    }
}

/// Checks inside the scalar's own visitor: the YAML decoder then reports
/// the error at that scalar's key and line rather than at its section's.
struct TextVisitor<T>(std::marker::PhantomData<T>);

impl<T: FromText> Visitor<'_> for TextVisitor<T> {
    type Value = T;
    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a string")
    }
    fn visit_str<E: de::Error>(self, v: &str) -> Result<T, E> {
        T::from_text(v).map_err(E::custom)
    }
}

impl<'de, T: FromText> Deserialize<'de> for Checked<T> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        d.deserialize_str(TextVisitor(std::marker::PhantomData))
            .map(Checked)
    }
}

/// `idle_on_complete`: must parse as a Go duration, but is kept as written
/// because it is handed to the agent verbatim.
#[derive(Debug)]
pub(crate) struct DurationText(pub String);

impl FromText for DurationText {
    fn from_text(text: &str) -> Result<Self, ValueError> {
        values::parse_duration(text).map(|_| DurationText(text.to_owned()))
    }
}

/// `max_concurrent_tasks`: a whole number, 0 or more.
#[derive(Debug)]
pub(crate) struct TaskCount(pub usize);

impl<'de> Deserialize<'de> for TaskCount {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct Count;
        impl Visitor<'_> for Count {
            type Value = TaskCount;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a whole number of tasks (0 or more; 0 = unlimited)")
            }
            fn visit_u64<E: de::Error>(self, n: u64) -> Result<TaskCount, E> {
                usize::try_from(n)
                    .map(TaskCount)
                    .map_err(|_| E::custom(ValueError::TaskCount(n.to_string())))
            }
            fn visit_i64<E: de::Error>(self, n: i64) -> Result<TaskCount, E> {
                usize::try_from(n)
                    .map(TaskCount)
                    .map_err(|_| E::custom(ValueError::TaskCount(n.to_string())))
            }
        }
        d.deserialize_any(Count)
    }
}

/// An environment value: any YAML scalar, as text (`123` → "123", like the
/// Go decoder). Type errors never quote the value, which may be a secret.
pub(crate) struct ScalarText(pub String);

impl<'de> Deserialize<'de> for ScalarText {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct Scalar;
        impl Visitor<'_> for Scalar {
            type Value = ScalarText;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                write!(f, "{}", ValueError::EnvValueNotScalar)
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<ScalarText, E> {
                Ok(ScalarText(v.to_owned()))
            }
            fn visit_bool<E: de::Error>(self, v: bool) -> Result<ScalarText, E> {
                Ok(ScalarText(v.to_string()))
            }
            fn visit_i64<E: de::Error>(self, v: i64) -> Result<ScalarText, E> {
                Ok(ScalarText(v.to_string()))
            }
            fn visit_u64<E: de::Error>(self, v: u64) -> Result<ScalarText, E> {
                Ok(ScalarText(v.to_string()))
            }
            fn visit_f64<E: de::Error>(self, v: f64) -> Result<ScalarText, E> {
                Ok(ScalarText(v.to_string()))
            }
        }
        d.deserialize_any(Scalar)
    }
}

/// Reads and decodes the file at `path`.
pub(crate) fn load(path: &str) -> Result<FileConfig, ConfigError> {
    let text = std::fs::read_to_string(path).map_err(|source| ConfigError::ReadFile {
        path: path.to_owned(),
        source,
    })?;
    decode(&text, path)
}

/// Decodes file text; `path` is only for messages. A file with no document
/// at all (empty, or only comments) is an empty config.
pub(crate) fn decode(text: &str, path: &str) -> Result<FileConfig, ConfigError> {
    let file: Option<FileConfig> = serde_yaml::from_str(text).map_err(|source| {
        match source
            .location()
            .and_then(|at| tab_indent(text, at.line(), at.column()))
        {
            Some(line) => ConfigError::TabIndent {
                path: path.to_owned(),
                line,
            },
            None => ConfigError::ParseFile {
                path: path.to_owned(),
                source,
            },
        }
    })?;
    let file = file.unwrap_or_default();
    let b = &file.backend;
    let configured: Vec<&'static str> = [
        ("docker", b.docker.is_some()),
        ("direct", b.direct.is_some()),
        ("kubernetes", b.kubernetes.is_some()),
        ("command", b.command.is_some()),
    ]
    .into_iter()
    .filter_map(|(name, set)| set.then_some(name))
    .collect();
    match configured.as_slice() {
        [] | ["docker"] => Ok(file),
        [backend] => Err(ConfigError::FileBackendUnsupported {
            path: path.to_owned(),
            backend,
        }),
        _ => Err(ConfigError::MultipleBackends {
            path: path.to_owned(),
            backends: configured,
        }),
    }
}

/// The line number when the YAML error at `line`:`column` (1-based) points
/// at a tab in that line's indentation: YAML forbids tabs there, and the
/// scanner's own words ("found character that cannot start any token") do
/// not say so.
fn tab_indent(text: &str, line: usize, column: usize) -> Option<usize> {
    let row = text.lines().nth(line.checked_sub(1)?)?;
    let before: String = row.chars().take(column.checked_sub(1)?).collect();
    let at = row.chars().nth(column - 1)?;
    let indent = before.chars().all(|c| c == ' ' || c == '\t');
    (indent && (at == '\t' || before.contains('\t'))).then_some(line)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn refusal(text: &str) -> String {
        decode(text, "c.yaml").unwrap_err().to_string()
    }

    #[test]
    fn a_tab_in_the_indentation_says_so() {
        assert_eq!(
            refusal("backend:\n\tdocker:\n"),
            "failed to parse config file c.yaml: line 2: tabs are not allowed for indentation; use spaces"
        );
        assert_eq!(
            refusal("worker_id: w\nbackend:\n  docker:\n  \tvolumes: []\n"),
            "failed to parse config file c.yaml: line 4: tabs are not allowed for indentation; use spaces"
        );
        assert_eq!(
            refusal("backend:\n  docker:\n    volumes:\n      - /a:/a\n\t  - /b:/b\n"),
            "failed to parse config file c.yaml: line 5: tabs are not allowed for indentation; use spaces"
        );
        // A tab after the colon is a separator YAML allows.
        assert!(decode("worker_id:\tw\n", "c.yaml").is_ok());
        // Other syntax errors keep the parser's words and position.
        assert_eq!(
            refusal("worker_id: \"w\n"),
            "failed to parse config file c.yaml: found unexpected end of stream at line 2 column 1, while scanning a quoted scalar at line 1 column 12"
        );
    }

    const EXAMPLE: &str = include_str!("../../deploy/config.example.yaml");

    /// The example with every commented-out option enabled: a `#` followed
    /// by a key or by indentation (two spaces or more) is removed; prose
    /// comments (`# text`) stay.
    fn uncommented(text: &str) -> String {
        text.lines()
            .map(|line| match line.strip_prefix('#') {
                Some("") => "",
                Some(rest) if !rest.starts_with(' ') || rest.starts_with("  ") => rest,
                _ => line,
            })
            .collect::<Vec<_>>()
            .join("\n")
    }

    #[test]
    fn the_example_as_installed_sets_the_worker_id_and_nothing_else() {
        let config = super::super::from_yaml(EXAMPLE, "config.example.yaml", &|_| None).unwrap();
        let defaults =
            super::super::from_yaml("worker_id: oz-worker-1\n", "d.yaml", &|_| None).unwrap();
        assert_eq!(config, defaults);
        assert!(config.docker.environment.is_empty());
        assert!(config.docker.registry_mirrors.is_empty());
        assert!(config.docker.volumes.is_empty());
    }

    #[test]
    fn every_commented_out_option_of_the_example_is_valid() {
        let env = |k: &str| (k == "NPM_TOKEN").then(|| "npm-from-env".to_owned());
        let text = uncommented(EXAMPLE);
        let c = super::super::from_yaml(&text, "all.yaml", &env)
            .unwrap_or_else(|e| panic!("{e}\n{text}"));
        let d = &c.docker;
        assert_eq!(c.worker_id, "oz-worker-1");
        assert_eq!(c.idle_on_complete.as_deref(), Some("45m"));
        assert_eq!(d.volumes.len(), 1);
        assert_eq!(
            d.environment.keys().collect::<Vec<_>>(),
            ["CI", "NPM_TOKEN"]
        );
        assert_eq!(d.environment["NPM_TOKEN"], "npm-from-env");
        assert!(d.sidecar_image.is_some());
        assert_eq!(d.registry_mirrors.len(), 1);
        assert_eq!(d.task_timeout, Some(Duration::from_secs(8 * 3600)));
        assert_eq!(
            d.image_archives.as_deref(),
            Some(std::path::Path::new("/srv/oz-images"))
        );
        assert_eq!(
            d.prefetch_images,
            vec!["registry.example:5000/base/node:20"]
        );
        let h = &d.hardening;
        assert_eq!(h.runtime.as_deref(), Some("runsc"));
        assert_eq!(h.network.as_deref(), Some("oz-tasks"));
        assert_eq!(h.security_opt.len(), 2);
        assert_eq!(h.cap_drop.len(), 2);
        assert_eq!((h.pids_limit, h.init), (Some(4096), Some(true)));
    }

    #[test]
    fn a_bare_number_as_a_duration_gets_an_example() {
        assert_eq!(
            refusal("backend:\n  docker:\n    stop_grace: 10\n"),
            r#"failed to parse config file c.yaml: backend.docker.stop_grace: time: missing unit in duration "10" (did you mean "10s" or "10m"? units are ns, us, ms, s, m, h) at line 3 column 17"#
        );
        assert_eq!(
            refusal("idle_on_complete: 1.5\n"),
            r#"failed to parse config file c.yaml: idle_on_complete: time: missing unit in duration "1.5" (did you mean "1.5s" or "1.5m"? units are ns, us, ms, s, m, h) at line 1 column 19"#
        );
        let zero = decode("drain_timeout: 0\n", "c.yaml").unwrap();
        assert_eq!(zero.drain_timeout.map(|d| d.0), Some(Duration::ZERO));
    }
}
