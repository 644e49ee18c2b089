//! The command line: turns the arguments into [`Flags`], each value already
//! checked, or says which flag is wrong. Knows the Go worker's flag names
//! (and `--websocket-url` as a second spelling), the Go flags of backends
//! this build does not run, our extension flags, and the `doctor` subcommand
//! word. List flags (`-v`, `-e`) are split at commas as kong splits them.
//!
//! Errors kong itself would raise for the Go worker (unknown flag, missing
//! value, a value not of the flag's type) end parsing at once; those the Go
//! worker raises only after parsing (an `-e` entry, another backend) are
//! kept in [`Flags::deferred`], so a command line with both reports the
//! former, as Go does, and exits with its code.
//!
//! Must not read files or the process environment (the environment is passed
//! in, for `-e KEY` and nothing else); merging with the file is `merge`'s job.
//! The "did you mean" of an unknown flag is [`suggest`]'s.

mod suggest;

use std::ffi::OsString;
use std::time::Duration;

use lexopt::{Arg, Parser};

use super::error::{ConfigError, ValueError};
use super::values;
use super::{ApiKey, DoctorFormat, LogFormat, PullPolicy, ShutdownMode, VolumeMount};
use suggest::unknown_flag;

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
    /// `--prefetch-image`, in order (repeatable).
    pub prefetch_images: Vec<String>,
    pub image_archives: Option<String>,
    pub sidecar_retention: Option<Duration>,
    pub image_retention: Option<Duration>,
    /// The first configuration error found in a flag, reported once the
    /// whole command line has parsed.
    pub deferred: Option<ConfigError>,
    /// `doctor --format`.
    pub doctor_format: Option<DoctorFormat>,
}

/// The Go worker's flags that belong to a backend this build does not run.
const OTHER_BACKEND_FLAGS: &[(&str, &str)] = &[("target-dir", "direct")];

/// The Go worker's backends; `--backend` naming one of the others is a
/// configuration this build cannot run, anything else a typo.
const GO_BACKENDS: &[&str] = &["docker", "direct", "kubernetes", "command"];

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
                let value = text(&mut parser, "--volumes")?;
                for_each_item(&mut flags, "--volumes", &value, |flags, item| {
                    flags.volumes.push(values::parse_volume(item)?);
                    Ok(())
                });
            }
            Arg::Short('e') | Arg::Long("env") => {
                let value = text(&mut parser, "--env")?;
                for_each_item(&mut flags, "--env", &value, |flags, item| {
                    flags.env.push(values::parse_env_flag(item, env)?);
                    Ok(())
                });
            }
            Arg::Long(name) => {
                let name = name.to_owned();
                long_with_value(&mut parser, &mut flags, &name)?;
            }
            Arg::Short(c) => return Err(unknown_flag(&format!("-{c}"))),
        }
    }
    Ok(Parsed::Flags(Box::new(flags)))
}

/// Splits a list flag's value as kong does and takes each item; the first
/// bad item becomes the deferred error (the Go worker checks them after
/// parsing). Saying the value was split matters when it was: a comma meant
/// as part of one entry (`ro,z`) is the likely cause.
fn for_each_item(
    flags: &mut Flags,
    flag: &'static str,
    value: &str,
    mut take: impl FnMut(&mut Flags, &str) -> Result<(), ValueError>,
) {
    let items = values::split_list(value);
    // An empty item can only come from a comma.
    let split = items.len() > 1 || items.first().is_some_and(String::is_empty);
    for item in &items {
        if let Err(problem) = take(flags, item) {
            defer(
                flags,
                if split {
                    ConfigError::InvalidListFlag { flag, problem }
                } else {
                    ConfigError::InvalidFlag { flag, problem }
                },
            );
            return;
        }
    }
}

fn defer(flags: &mut Flags, error: ConfigError) {
    flags.deferred.get_or_insert(error);
}

/// A flag's spelling on the command line, the name its errors use, and
/// where its value goes.
type Slot<T> = (&'static str, &'static str, Place<T>);

/// The field of [`Flags`] a flag's value goes into.
type Place<T> = fn(&mut Flags) -> &mut Option<T>;

/// Flags whose value is kept as written (empty = not given).
const TEXT_FLAGS: &[Slot<String>] = &[
    ("worker-id", "--worker-id", |f| &mut f.worker_id),
    ("config-file", "--config-file", |f| &mut f.config_file),
    ("web-socket-url", "--web-socket-url", |f| {
        &mut f.websocket_url
    }),
    ("websocket-url", "--web-socket-url", |f| {
        &mut f.websocket_url
    }),
    ("server-root-url", "--server-root-url", |f| {
        &mut f.server_root_url
    }),
    (
        "session-sharing-server-url",
        "--session-sharing-server-url",
        |f| &mut f.session_sharing_server_url,
    ),
    ("image-archives", "--image-archives", |f| {
        &mut f.image_archives
    }),
    ("default-image", "--default-image", |f| &mut f.default_image),
    ("sidecar-image", "--sidecar-image", |f| &mut f.sidecar_image),
];

/// Flags holding a Go duration, taken as parsed.
const DURATION_FLAGS: &[Slot<Duration>] = &[
    ("drain-timeout", "--drain-timeout", |f| &mut f.drain_timeout),
    ("shutdown-timeout", "--shutdown-timeout", |f| {
        &mut f.shutdown_timeout
    }),
    ("task-timeout", "--task-timeout", |f| &mut f.task_timeout),
    ("stop-grace", "--stop-grace", |f| &mut f.stop_grace),
    ("sidecar-retention", "--sidecar-retention", |f| {
        &mut f.sidecar_retention
    }),
    ("image-retention", "--image-retention", |f| {
        &mut f.image_retention
    }),
];

/// `name`'s entry in `table`: the name its errors use, and its field.
fn slot<T>(table: &[Slot<T>], name: &str) -> Option<(&'static str, Place<T>)> {
    table
        .iter()
        .find(|(known, ..)| *known == name)
        .map(|&(_, flag, place)| (flag, place))
}

/// The long flags that take one value; the last occurrence wins. Plain
/// text and duration flags come from the tables above, flags the Go worker
/// checks only after parsing from [`go_checked_flag`].
fn long_with_value(parser: &mut Parser, flags: &mut Flags, name: &str) -> Result<(), ConfigError> {
    if let Some((flag, place)) = slot(TEXT_FLAGS, name) {
        *place(flags) = non_empty(text(parser, flag)?);
        return Ok(());
    }
    if let Some((flag, place)) = slot(DURATION_FLAGS, name) {
        *place(flags) = Some(duration(parser, flag)?);
        return Ok(());
    }
    match name {
        "api-key" => {
            flags.api_key = non_empty(text(parser, "--api-key")?).map(ApiKey::new);
        }
        "prefetch-image" => {
            if let Some(image) = non_empty(text(parser, "--prefetch-image")?) {
                flags.prefetch_images.push(image);
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
        "on-shutdown" => {
            let v = text(parser, "--on-shutdown")?;
            flags.on_shutdown = Some(check("--on-shutdown", values::parse_shutdown_mode(&v))?);
        }
        "image-pull-policy" => {
            let v = text(parser, "--image-pull-policy")?;
            flags.image_pull_policy =
                Some(check("--image-pull-policy", values::parse_pull_policy(&v))?);
        }
        "format" => {
            let v = text(parser, "--format")?;
            let format = DoctorFormat::parse(&v).ok_or(ValueError::DoctorFormat(v));
            flags.doctor_format = Some(check("--format", format)?);
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
        _ => go_checked_flag(parser, flags, name)?,
    }
    Ok(())
}

/// Flags the Go worker takes as plain text or numbers and checks after
/// parsing: a bad value there is deferred (a configuration error), while
/// what Go's flag parser itself refuses ends parsing at once. Also the
/// other backends' flags, and the unknown ones.
fn go_checked_flag(parser: &mut Parser, flags: &mut Flags, name: &str) -> Result<(), ConfigError> {
    match name {
        "backend" => {
            let backend = text(parser, "--backend")?;
            // Empty is what the Go worker's flag defaults to: "pick from the file".
            if !(backend.is_empty() || backend == "docker") {
                let known = GO_BACKENDS.contains(&backend.as_str());
                let error = ConfigError::UnsupportedBackend(backend);
                if !known {
                    return Err(error);
                }
                defer(flags, error);
            }
        }
        "max-concurrent-tasks" => {
            let v = text(parser, "--max-concurrent-tasks")?;
            match values::parse_task_count(&v) {
                Ok(n) => flags.max_concurrent_tasks = Some(n),
                // Go's int flag takes a negative number; only the value is wrong.
                Err(problem) if v.parse::<i64>().is_ok() => defer(
                    flags,
                    ConfigError::InvalidFlag {
                        flag: "--max-concurrent-tasks",
                        problem,
                    },
                ),
                Err(problem) => return Err(check_failed("--max-concurrent-tasks", problem)),
            }
        }
        "idle-on-complete" => {
            let v = text(parser, "--idle-on-complete")?;
            // Go's flag is a plain string: a bad duration is a configuration error.
            match values::parse_duration(&v) {
                Err(problem) if !v.is_empty() => defer(
                    flags,
                    ConfigError::InvalidFlag {
                        flag: "--idle-on-complete",
                        problem,
                    },
                ),
                _ => flags.idle_on_complete = non_empty(v),
            }
        }
        other => match OTHER_BACKEND_FLAGS.iter().find(|(f, _)| *f == other) {
            Some((flag, backend)) => {
                text(parser, &format!("--{flag}"))?;
                defer(
                    flags,
                    ConfigError::OtherBackendFlag {
                        flag: format!("--{flag}"),
                        backend,
                    },
                );
            }
            None => return Err(unknown_flag(&format!("--{other}"))),
        },
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
    result.map_err(|problem| check_failed(flag, problem))
}

fn check_failed(flag: &'static str, problem: ValueError) -> ConfigError {
    ConfigError::InvalidFlag { flag, problem }
}

/// lexopt's errors, re-worded; values are dropped so a secret given to the
/// wrong flag is never echoed.
fn lexopt_error(e: lexopt::Error) -> ConfigError {
    match e {
        lexopt::Error::MissingValue { option } => {
            ConfigError::MissingValue(option.unwrap_or_else(|| "a flag".to_owned()))
        }
        lexopt::Error::UnexpectedOption(o) => unknown_flag(&o),
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

#[cfg(test)]
mod tests;
