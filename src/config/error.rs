//! What can be wrong with a command line or config file, in words an
//! operator can act on. Owns [`ConfigError`] (the whole-configuration error)
//! and [`ValueError`] (one bad value, shared by flags and file keys).
//!
//! No message may contain the API key or an environment value: errors about
//! `-e` entries name the key only.

use std::fmt;

use super::volume::VolumeConflict;
pub use super::volume::VolumeProblem;
use crate::duration::DurationError;

/// One value that is not acceptable, wherever it came from (a flag or a
/// config-file key). The caller says where.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ValueError {
    /// A duration that Go's `time.ParseDuration` would refuse (or negative).
    Duration(DurationError),
    /// `--max-concurrent-tasks` / `max_concurrent_tasks` not a whole number ≥ 0.
    TaskCount(String),
    /// `--log-level` other than debug, info, warn, error.
    LogLevel(String),
    /// `--log-format` / `log_format` other than text, json.
    LogFormat(String),
    /// `--image-pull-policy` / `image_pull_policy` other than Always, IfNotPresent, Never.
    PullPolicy(String),
    /// `--on-shutdown` / `on_shutdown` other than cancel, drain, detach.
    ShutdownMode(String),
    /// A duration below the least that works.
    TooShort {
        /// As given, Go-formatted.
        given: String,
        /// The least, Go-formatted.
        min: String,
    },
    /// A `-v` / `volumes` entry Docker would refuse.
    Volume {
        /// The entry as written (paths, never secrets).
        entry: String,
        /// What is wrong with it.
        problem: VolumeProblem,
    },
    /// An empty `-e` entry.
    EnvEmpty,
    /// A `-e` entry with nothing before the `=`.
    EnvMissingKey,
    /// An environment name with a space or tab in it.
    EnvNameWhitespace(String),
    /// An empty `name` in the config file's `environment`.
    EnvNameEmpty,
    /// An environment `value` in the file that is not a plain scalar.
    EnvValueNotScalar,
    /// A byte size Docker would not read (`10m`, `64MiB`, a number of bytes).
    Size(String),
    /// `container_log_max_file` not a whole number ≥ 1.
    FileCount(String),
    /// `doctor --format` other than text, json.
    DoctorFormat(String),
}

impl fmt::Display for ValueError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Duration(e) => write!(f, "{e}"),
            Self::TaskCount(v) => write!(
                f,
                "`{v}` is not a whole number of tasks (0 or more; 0 = unlimited)"
            ),
            Self::LogLevel(v) => write!(f, "`{v}` is not one of debug, info, warn, error"),
            Self::LogFormat(v) => write!(f, "`{v}` is not one of text, json"),
            Self::PullPolicy(v) => {
                write!(f, "`{v}` is not one of Always, IfNotPresent, Never")
            }
            Self::ShutdownMode(v) => write!(f, "`{v}` is not one of cancel, drain, detach"),
            Self::TooShort { given, min } => write!(f, "{given} is too short: the least is {min}"),
            Self::Volume { entry, problem } => write!(f, "volume `{entry}` {problem}"),
            Self::EnvEmpty => f.write_str("empty value (expected KEY=VALUE or KEY)"),
            Self::EnvMissingKey => {
                f.write_str("missing key before '=' (expected KEY=VALUE or KEY)")
            }
            Self::EnvNameWhitespace(name) => {
                write!(f, "name `{name}` must not contain spaces or tabs")
            }
            Self::EnvNameEmpty => f.write_str("name is required and must not be empty"),
            Self::EnvValueNotScalar => f.write_str("value must be a string, number or boolean"),
            Self::Size(v) => write!(
                f,
                "`{v}` is not a size (a number with an optional unit k, m, g: `10m`, `64MiB`)"
            ),
            Self::FileCount(v) => write!(f, "`{v}` is not a whole number of files (1 or more)"),
            Self::DoctorFormat(v) => write!(f, "`{v}` is not one of text, json"),
        }
    }
}

impl std::error::Error for ValueError {}

/// Why the worker cannot start with the given command line and config file.
#[derive(Debug)]
pub enum ConfigError {
    /// A flag this worker does not know.
    UnknownFlag {
        /// The flag as given, without its value.
        flag: String,
        /// Known flags it may have been meant as.
        suggestions: Vec<String>,
    },
    /// A flag that needs a value was given none.
    MissingValue(String),
    /// A switch (e.g. `--no-cleanup`) was given a value it cannot use.
    UnexpectedValue(String),
    /// A word that is neither a flag, a flag's value, nor the `doctor` subcommand.
    UnexpectedArgument(String),
    /// A flag's value (or an argument) is not valid UTF-8.
    NotUnicode(String),
    /// A flag's value was refused.
    InvalidFlag {
        /// The flag, e.g. `--volumes`.
        flag: &'static str,
        /// What is wrong with the value.
        problem: ValueError,
    },
    /// A list flag's value, split at commas, holds a refused item.
    InvalidListFlag {
        /// `--env` or `--volumes`.
        flag: &'static str,
        /// What is wrong with the item.
        problem: ValueError,
    },
    /// A flag that only `doctor` takes, given without it.
    DoctorOnlyFlag(&'static str),
    /// `--backend` names something other than `docker`.
    UnsupportedBackend(String),
    /// A Go worker flag of a backend this build does not run (`--target-dir`).
    OtherBackendFlag {
        /// The flag.
        flag: String,
        /// The backend it belongs to.
        backend: &'static str,
    },
    /// Two volume entries that Docker cannot mount together.
    VolumeConflict(VolumeConflict),
    /// The config file could not be read.
    ReadFile {
        /// The path given with `--config-file`.
        path: String,
        /// The operating system's reason.
        source: std::io::Error,
    },
    /// The config file is not valid YAML for this worker (unknown key, wrong
    /// type, bad value); the message names the key and its line.
    ParseFile {
        /// The path given with `--config-file`.
        path: String,
        /// The YAML decoder's error, with location.
        source: serde_yaml::Error,
    },
    /// The config file indents with a tab, which YAML forbids.
    TabIndent {
        /// The path given with `--config-file`.
        path: String,
        /// The line (1-based) with the tab.
        line: usize,
    },
    /// The config file configures a backend this build does not run.
    FileBackendUnsupported {
        /// The path given with `--config-file`.
        path: String,
        /// `direct`, `kubernetes` or `command`.
        backend: &'static str,
    },
    /// The config file configures more than one backend.
    MultipleBackends {
        /// The path given with `--config-file`.
        path: String,
        /// The backends configured, in file order of the Go schema.
        backends: Vec<&'static str>,
    },
    /// Neither `--worker-id` nor `worker_id` was given.
    MissingWorkerId,
    /// The worker id starts with the reserved prefix `warp`.
    ReservedWorkerId,
    /// Neither `--api-key` nor `WARP_API_KEY` was given.
    MissingApiKey,
    /// A URL or header-bound setting holds a CR, LF or NUL character.
    LineBreak(&'static str),
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::UnknownFlag { flag, suggestions } => {
                write!(f, "unknown flag `{flag}`")?;
                match suggestions.as_slice() {
                    [] => {}
                    [one] => write!(f, ", did you mean {one}?")?,
                    many => write!(f, ", did you mean one of {}?", many.join(", "))?,
                }
                f.write_str(" (see `oz-agent-worker --help`)")
            }
            Self::MissingValue(flag) => write!(f, "flag `{flag}` needs a value"),
            Self::UnexpectedValue(flag) => write!(f, "flag `{flag}` does not take a value"),
            Self::UnexpectedArgument(arg) => write!(
                f,
                "unexpected argument `{arg}` (the only subcommand is `doctor`; see `oz-agent-worker --help`)"
            ),
            Self::NotUnicode(what) => write!(f, "{what} is not valid UTF-8"),
            Self::InvalidFlag { flag, problem } => write!(f, "invalid {flag} flag: {problem}"),
            Self::InvalidListFlag { flag, problem } => write!(
                f,
                "invalid {flag} flag: {problem} (the value was split at commas, as the Go worker splits it; write \\, for a comma inside one entry)"
            ),
            Self::OtherBackendFlag { flag, backend } => write!(
                f,
                "flag `{flag}` belongs to the Go worker's {backend} backend, but this build runs the Docker backend only"
            ),
            Self::VolumeConflict(c) => write!(f, "{c}"),
            Self::DoctorOnlyFlag(flag) => write!(
                f,
                "flag `{flag}` is for `oz-agent-worker doctor` only (see `oz-agent-worker --help`)"
            ),
            Self::UnsupportedBackend(name) => write!(
                f,
                "unsupported backend `{name}`: this build runs the Docker backend only (supported: docker)"
            ),
            Self::ReadFile { path, source } => {
                write!(f, "failed to read config file {path}: {source}")
            }
            Self::ParseFile { path, source } => {
                write!(f, "failed to parse config file {path}: {source}")
            }
            Self::TabIndent { path, line } => write!(
                f,
                "failed to parse config file {path}: line {line}: tabs are not allowed for indentation; use spaces"
            ),
            Self::FileBackendUnsupported { path, backend } => write!(
                f,
                "invalid config file {path}: backend.{backend} is configured, but this build runs the Docker backend only (use backend.docker)"
            ),
            Self::MultipleBackends { path, backends } => write!(
                f,
                "invalid config file {path}: at most one backend may be configured (found {})",
                backends.join(", ")
            ),
            Self::MissingWorkerId => {
                f.write_str("worker-id is required (via --worker-id flag or config file)")
            }
            Self::ReservedWorkerId => f.write_str(
                "invalid worker-id: values starting with 'warp' are reserved and cannot be used",
            ),
            Self::MissingApiKey => f.write_str(
                "an API key is required: pass --api-key KEY or set the WARP_API_KEY environment variable",
            ),
            Self::LineBreak(setting) => write!(
                f,
                "invalid {setting}: it holds a CR, LF or NUL character, which would split the HTTP request or label it goes into; remove it"
            ),
        }
    }
}

/// Every cause (a refused value, the I/O or YAML error) is already in the
/// `Display` text, so `source()` stays `None` (the crate's rule: one or the
/// other).
impl std::error::Error for ConfigError {}

/// Exit status for a command line the Go worker's parser (kong) would
/// refuse: unknown flag, missing value, a value not of the flag's type or
/// not one of its choices, no API key.
pub const EXIT_USAGE: i32 = 80;
/// Exit status for a configuration that cannot run: the config file, the
/// worker id, an `-e` or volume entry, another backend (Go's `log.Fatalf`).
pub const EXIT_CONFIG: i32 = 1;

impl ConfigError {
    /// The exit status the Go worker uses for this kind of error.
    pub fn exit_code(&self) -> i32 {
        match self {
            Self::UnknownFlag { .. }
            | Self::MissingValue(_)
            | Self::UnexpectedValue(_)
            | Self::UnexpectedArgument(_)
            | Self::NotUnicode(_)
            | Self::DoctorOnlyFlag(_)
            | Self::MissingApiKey => EXIT_USAGE,
            // The flag parser defers the ones Go checks after parsing
            // (`--env`, `--volumes`, `--idle-on-complete`, a negative count).
            Self::InvalidFlag { flag, problem } => match (*flag, problem) {
                ("--env" | "--volumes" | "--idle-on-complete", _) => EXIT_CONFIG,
                ("--max-concurrent-tasks", ValueError::TaskCount(v))
                    if v.parse::<i64>().is_ok() =>
                {
                    EXIT_CONFIG
                }
                _ => EXIT_USAGE,
            },
            Self::UnsupportedBackend(name)
                if !["direct", "kubernetes", "command"].contains(&name.as_str()) =>
            {
                EXIT_USAGE
            }
            _ => EXIT_CONFIG,
        }
    }
}
