//! The command line: turns the arguments into [`Flags`], each value already
//! checked, or says which flag is wrong. Knows the Go worker's flag names
//! (and `--websocket-url` as a second spelling), our extension flags, and the
//! `doctor` subcommand word.
//!
//! Must not read files or the process environment (the environment is passed
//! in, for `-e KEY` and nothing else); merging with the file is `merge`'s job.

use std::ffi::OsString;
use std::time::Duration;

use lexopt::{Arg, Parser};

use super::error::{ConfigError, ValueError};
use super::values;
use super::{ApiKey, LogFormat, PullPolicy, ShutdownMode, VolumeMount};

/// What the command line asks for.
pub(crate) enum Parsed {
    /// `-h` / `--help`.
    Help,
    /// `--version`.
    Version,
    /// Run (or, with `doctor`, check) with these flags.
    Flags(Box<Flags>),
}

/// Every flag as given; `None` / empty = not given, so the file or default applies.
#[derive(Default)]
pub(crate) struct Flags {
    pub doctor: bool,
    pub worker_id: Option<String>,
    pub api_key: Option<ApiKey>,
    pub config_file: Option<String>,
    pub log_level: Option<log::LevelFilter>,
    pub log_format: Option<LogFormat>,
    pub no_cleanup: bool,
    pub volumes: Vec<VolumeMount>,
    /// `-e` entries resolved to (key, value), in order; a later key wins.
    pub env: Vec<(String, String)>,
    pub max_concurrent_tasks: Option<usize>,
    pub idle_on_complete: Option<String>,
    pub websocket_url: Option<String>,
    pub server_root_url: Option<String>,
    pub session_sharing_server_url: Option<String>,
    pub drain_timeout: Option<Duration>,
    pub on_shutdown: Option<ShutdownMode>,
    pub shutdown_timeout: Option<Duration>,
    pub lease_ttl: Option<Duration>,
    pub reap_interval: Option<Duration>,
    pub task_timeout: Option<Duration>,
    pub default_image: Option<String>,
    pub sidecar_image: Option<String>,
    pub image_pull_policy: Option<PullPolicy>,
    pub stop_grace: Option<Duration>,
}

/// Parses the arguments (without argv[0]). `--help` and `--version` win as
/// soon as they are seen, as with the Go worker.
pub(crate) fn parse_args(
    args: Vec<OsString>,
    env: &dyn Fn(&str) -> Option<String>,
) -> Result<Parsed, ConfigError> {
    let mut parser = Parser::from_args(args);
    let mut flags = Flags::default();
    let mut positional_seen = false;
    while let Some(arg) = parser.next().map_err(lexopt_error)? {
        match arg {
            Arg::Short('h') | Arg::Long("help") => return Ok(Parsed::Help),
            Arg::Long("version") => return Ok(Parsed::Version),
            Arg::Value(word) => {
                let word = word
                    .into_string()
                    .map_err(|_| ConfigError::NotUnicode("an argument".into()))?;
                if word == "doctor" && !positional_seen {
                    flags.doctor = true;
                    positional_seen = true;
                } else {
                    return Err(ConfigError::UnexpectedArgument(word));
                }
            }
            Arg::Long("no-cleanup") => flags.no_cleanup = switch(&mut parser, "--no-cleanup")?,
            Arg::Short('v') | Arg::Long("volumes") => {
                let entry = text(&mut parser, "--volumes")?;
                flags
                    .volumes
                    .push(check("--volumes", values::parse_volume(&entry))?);
            }
            Arg::Short('e') | Arg::Long("env") => {
                let entry = text(&mut parser, "--env")?;
                flags
                    .env
                    .push(check("--env", values::parse_env_flag(&entry, env))?);
            }
            Arg::Long(name) => {
                let name = name.to_owned();
                long_with_value(&mut parser, &mut flags, &name)?;
            }
            Arg::Short(c) => return Err(ConfigError::UnknownFlag(format!("-{c}"))),
        }
    }
    Ok(Parsed::Flags(Box::new(flags)))
}

/// The long flags that take one value; the last occurrence wins.
fn long_with_value(parser: &mut Parser, flags: &mut Flags, name: &str) -> Result<(), ConfigError> {
    match name {
        "worker-id" => flags.worker_id = non_empty(text(parser, "--worker-id")?),
        "api-key" => {
            flags.api_key = non_empty(text(parser, "--api-key")?).map(ApiKey::new);
        }
        "config-file" => flags.config_file = non_empty(text(parser, "--config-file")?),
        "backend" => {
            let backend = text(parser, "--backend")?;
            // Empty is what the Go worker's flag defaults to: "pick from the file".
            if !(backend.is_empty() || backend == "docker") {
                return Err(ConfigError::UnsupportedBackend(backend));
            }
        }
        "log-level" => {
            let v = text(parser, "--log-level")?;
            flags.log_level = Some(check("--log-level", values::parse_log_level(&v))?);
        }
        "log-format" => {
            let v = text(parser, "--log-format")?;
            flags.log_format = Some(check("--log-format", values::parse_log_format(&v))?);
        }
        "max-concurrent-tasks" => {
            let v = text(parser, "--max-concurrent-tasks")?;
            flags.max_concurrent_tasks = Some(check(
                "--max-concurrent-tasks",
                values::parse_task_count(&v),
            )?);
        }
        "idle-on-complete" => {
            let v = text(parser, "--idle-on-complete")?;
            if !v.is_empty() {
                check("--idle-on-complete", values::parse_duration(&v))?;
            }
            flags.idle_on_complete = non_empty(v);
        }
        "web-socket-url" | "websocket-url" => {
            flags.websocket_url = non_empty(text(parser, "--web-socket-url")?);
        }
        "server-root-url" => flags.server_root_url = non_empty(text(parser, "--server-root-url")?),
        "session-sharing-server-url" => {
            flags.session_sharing_server_url =
                non_empty(text(parser, "--session-sharing-server-url")?);
        }
        "drain-timeout" => flags.drain_timeout = Some(duration(parser, "--drain-timeout")?),
        "on-shutdown" => {
            let v = text(parser, "--on-shutdown")?;
            flags.on_shutdown = Some(check("--on-shutdown", values::parse_shutdown_mode(&v))?);
        }
        "shutdown-timeout" => {
            flags.shutdown_timeout = Some(duration(parser, "--shutdown-timeout")?);
        }
        "lease-ttl" => {
            let v = duration(parser, "--lease-ttl")?;
            flags.lease_ttl = Some(check(
                "--lease-ttl",
                values::at_least(v, super::MIN_LEASE_TTL),
            )?);
        }
        "reap-interval" => {
            let v = duration(parser, "--reap-interval")?;
            let min = Duration::from_millis(100);
            flags.reap_interval = Some(check("--reap-interval", values::at_least(v, min))?);
        }
        "task-timeout" => flags.task_timeout = Some(duration(parser, "--task-timeout")?),
        "stop-grace" => flags.stop_grace = Some(duration(parser, "--stop-grace")?),
        "default-image" => flags.default_image = non_empty(text(parser, "--default-image")?),
        "sidecar-image" => flags.sidecar_image = non_empty(text(parser, "--sidecar-image")?),
        "image-pull-policy" => {
            let v = text(parser, "--image-pull-policy")?;
            flags.image_pull_policy =
                Some(check("--image-pull-policy", values::parse_pull_policy(&v))?);
        }
        other => return Err(ConfigError::UnknownFlag(format!("--{other}"))),
    }
    Ok(())
}

fn text(parser: &mut Parser, flag: &str) -> Result<String, ConfigError> {
    parser
        .value()
        .map_err(lexopt_error)?
        .into_string()
        .map_err(|_| ConfigError::NotUnicode(format!("the value of {flag}")))
}

fn duration(parser: &mut Parser, flag: &'static str) -> Result<Duration, ConfigError> {
    let v = text(parser, flag)?;
    check(flag, values::parse_duration(&v))
}

/// A switch, also accepting `--flag=true|false` as Go flag parsers do.
fn switch(parser: &mut Parser, flag: &str) -> Result<bool, ConfigError> {
    match parser.optional_value() {
        None => Ok(true),
        Some(v) => match v.to_str() {
            Some("true") => Ok(true),
            Some("false") => Ok(false),
            _ => Err(ConfigError::UnexpectedValue(flag.to_owned())),
        },
    }
}

fn non_empty(value: String) -> Option<String> {
    (!value.is_empty()).then_some(value)
}

fn check<T>(flag: &'static str, result: Result<T, ValueError>) -> Result<T, ConfigError> {
    result.map_err(|problem| ConfigError::InvalidFlag { flag, problem })
}

/// lexopt's errors, re-worded; values are dropped so a secret given to the
/// wrong flag is never echoed.
fn lexopt_error(e: lexopt::Error) -> ConfigError {
    match e {
        lexopt::Error::MissingValue { option } => {
            ConfigError::MissingValue(option.unwrap_or_else(|| "a flag".to_owned()))
        }
        lexopt::Error::UnexpectedOption(o) => ConfigError::UnknownFlag(o),
        lexopt::Error::UnexpectedValue { option, .. } => ConfigError::UnexpectedValue(option),
        lexopt::Error::UnexpectedArgument(a) => {
            ConfigError::UnexpectedArgument(a.to_string_lossy().into_owned())
        }
        // The last two come only from lexopt's value helpers, which are not
        // used here; a non-UTF-8 value is the only way left to reach them.
        lexopt::Error::NonUnicodeValue(_)
        | lexopt::Error::ParsingFailed { .. }
        | lexopt::Error::Custom(_) => ConfigError::NotUnicode("an argument".to_owned()),
    }
}
