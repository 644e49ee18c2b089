//! Parsers for single setting values (volume, `-e` entry, log level, pull
//! policy, task count, duration), shared by the flag parser and the config
//! file decoder so both accept exactly the same forms, and kong's splitting
//! of a list flag's value.
//!
//! Pure functions only: the process environment is passed in, never read.

use std::time::Duration;

use super::error::ValueError;
use super::{LogFormat, PullPolicy, ShutdownMode, VolumeMount, volume};
use crate::duration;

/// A `-v` / `volumes` entry, checked as Docker checks it (see [`volume`]).
pub fn parse_volume(entry: &str) -> Result<VolumeMount, ValueError> {
    volume::parse_volume(entry).map_err(|problem| ValueError::Volume {
        entry: entry.to_owned(),
        problem,
    })
}

/// A list flag's value split as kong (the Go worker's flag parser) splits
/// it: at each `,` not preceded by `\`; `\,` stands for a comma, and any
/// other backslash is kept as written (a trailing one too). A trailing empty
/// item is dropped, so `""` is no item at all and `"a,"` is one, while
/// `",a"` and `"a,,b"` keep their empty items.
pub fn split_list(value: &str) -> Vec<String> {
    let mut items = Vec::new();
    let mut item = String::new();
    let mut chars = value.chars().peekable();
    while let Some(c) = chars.next() {
        match c {
            '\\' if chars.peek().is_some() => {
                let next = chars.next().unwrap_or_default();
                if next != ',' {
                    item.push('\\');
                }
                item.push(next);
            }
            ',' => items.push(std::mem::take(&mut item)),
            c => item.push(c),
        }
    }
    if !item.is_empty() {
        items.push(item);
    }
    items
}

/// A `-e` entry: `KEY=VALUE` as given, or `KEY` alone taking the worker's
/// own value (empty when unset, as the Go worker does).
pub fn parse_env_flag(
    entry: &str,
    env: &dyn Fn(&str) -> Option<String>,
) -> Result<(String, String), ValueError> {
    if entry.is_empty() {
        return Err(ValueError::EnvEmpty);
    }
    let (key, value) = match entry.split_once('=') {
        Some((key, value)) => (key, Some(value)),
        None => (entry, None),
    };
    if key.is_empty() {
        return Err(ValueError::EnvMissingKey);
    }
    check_env_name(key)?;
    let value = match value {
        Some(value) => value.to_owned(),
        None => env(key).unwrap_or_default(),
    };
    Ok((key.to_owned(), value))
}

/// An environment variable name: non-empty, no space or tab.
pub fn check_env_name(name: &str) -> Result<(), ValueError> {
    if name.is_empty() {
        return Err(ValueError::EnvNameEmpty);
    }
    if name.contains([' ', '\t']) {
        return Err(ValueError::EnvNameWhitespace(name.to_owned()));
    }
    Ok(())
}

/// `debug|info|warn|error`, the Go worker's four levels.
pub fn parse_log_level(value: &str) -> Result<log::LevelFilter, ValueError> {
    match value {
        "debug" => Ok(log::LevelFilter::Debug),
        "info" => Ok(log::LevelFilter::Info),
        "warn" => Ok(log::LevelFilter::Warn),
        "error" => Ok(log::LevelFilter::Error),
        _ => Err(ValueError::LogLevel(value.to_owned())),
    }
}

/// `text|json`.
pub fn parse_log_format(value: &str) -> Result<LogFormat, ValueError> {
    match value {
        "text" => Ok(LogFormat::Text),
        "json" => Ok(LogFormat::Json),
        _ => Err(ValueError::LogFormat(value.to_owned())),
    }
}

/// `Always|IfNotPresent|Never`, spelled as Kubernetes and the Go worker spell them.
pub fn parse_pull_policy(value: &str) -> Result<PullPolicy, ValueError> {
    match value {
        "Always" => Ok(PullPolicy::Always),
        "IfNotPresent" => Ok(PullPolicy::IfNotPresent),
        "Never" => Ok(PullPolicy::Never),
        _ => Err(ValueError::PullPolicy(value.to_owned())),
    }
}

/// `cancel`, `drain` or `detach`.
pub fn parse_shutdown_mode(value: &str) -> Result<ShutdownMode, ValueError> {
    match value {
        "cancel" => Ok(ShutdownMode::Cancel),
        "drain" => Ok(ShutdownMode::Drain),
        "detach" => Ok(ShutdownMode::Detach),
        _ => Err(ValueError::ShutdownMode(value.to_owned())),
    }
}

/// `d`, if it is at least `min`.
pub fn at_least(d: Duration, min: Duration) -> Result<Duration, ValueError> {
    if d < min {
        return Err(ValueError::TooShort {
            given: crate::duration::format(d),
            min: crate::duration::format(min),
        });
    }
    Ok(d)
}

/// A whole number of tasks, 0 or more.
pub fn parse_task_count(value: &str) -> Result<usize, ValueError> {
    value
        .parse::<usize>()
        .map_err(|_| ValueError::TaskCount(value.to_owned()))
}

/// A Go duration.
pub fn parse_duration(value: &str) -> Result<Duration, ValueError> {
    duration::parse(value).map_err(ValueError::Duration)
}

/// A task timeout, where zero means "no limit".
pub fn timeout_or_none(d: Duration) -> Option<Duration> {
    (!d.is_zero()).then_some(d)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn volume_errors_name_the_entry() {
        assert_eq!(
            parse_volume("/data:data").unwrap_err().to_string(),
            "volume `/data:data` has container path `data`, which is not absolute"
        );
        assert_eq!(parse_volume("/a:/b:ro,z").unwrap().to_bind(), "/a:/b:ro,z");
    }

    #[test]
    fn lists_split_as_kong_splits_them() {
        let cases: &[(&str, &[&str])] = &[
            ("", &[]),
            ("A=1", &["A=1"]),
            ("A=1,B=2", &["A=1", "B=2"]),
            ("/a:/a,/b:/b", &["/a:/a", "/b:/b"]),
            ("A=1,", &["A=1"]),
            (",A=1", &["", "A=1"]),
            ("A=1,,B=2", &["A=1", "", "B=2"]),
            (",", &[""]),
            (",,", &["", ""]),
            (r"A=x\,y", &["A=x,y"]),
            (r"/a:/b:ro\,z,/c:/d", &["/a:/b:ro,z", "/c:/d"]),
            (r"A=c:\path", &[r"A=c:\path"]),
            (r"A=x\\,B=y", &[r"A=x\\", "B=y"]),
            (r"A=x\", &[r"A=x\"]),
            (r"\", &[r"\"]),
            (r"\,", &[","]),
            (r"A=\\\,", &[r"A=\\,"]),
            ("K=é,L=😀", &["K=é", "L=😀"]),
        ];
        for (value, want) in cases {
            assert_eq!(split_list(value), *want, "{value:?}");
        }
    }

    fn host_env(name: &str) -> Option<String> {
        (name == "FROM_HOST").then(|| "host-value".to_owned())
    }

    #[test]
    fn env_flag_forms() {
        assert_eq!(
            parse_env_flag("A=b=c", &host_env).unwrap(),
            ("A".to_owned(), "b=c".to_owned())
        );
        assert_eq!(
            parse_env_flag("A=", &host_env).unwrap(),
            ("A".to_owned(), String::new())
        );
        assert_eq!(
            parse_env_flag("FROM_HOST", &host_env).unwrap(),
            ("FROM_HOST".to_owned(), "host-value".to_owned())
        );
        assert_eq!(
            parse_env_flag("UNSET", &host_env).unwrap(),
            ("UNSET".to_owned(), String::new())
        );
    }

    #[test]
    fn env_flag_errors_never_show_the_value() {
        let msg = |e: &str| parse_env_flag(e, &host_env).unwrap_err().to_string();
        assert_eq!(msg(""), "empty value (expected KEY=VALUE or KEY)");
        assert_eq!(
            msg("=s3cret"),
            "missing key before '=' (expected KEY=VALUE or KEY)"
        );
        assert_eq!(
            msg("MY VAR=s3cret"),
            "name `MY VAR` must not contain spaces or tabs"
        );
        assert_eq!(
            msg("MY\tVAR"),
            "name `MY\tVAR` must not contain spaces or tabs"
        );
    }

    #[test]
    fn env_name_rules() {
        assert_eq!(check_env_name("OK_NAME"), Ok(()));
        assert_eq!(check_env_name(""), Err(ValueError::EnvNameEmpty));
        assert_eq!(
            check_env_name("A B"),
            Err(ValueError::EnvNameWhitespace("A B".into()))
        );
    }

    #[test]
    fn enumerated_values() {
        assert_eq!(parse_log_level("warn"), Ok(log::LevelFilter::Warn));
        assert_eq!(parse_log_level("debug"), Ok(log::LevelFilter::Debug));
        assert_eq!(
            parse_log_level("trace").unwrap_err().to_string(),
            "`trace` is not one of debug, info, warn, error"
        );
        assert_eq!(parse_log_format("json"), Ok(LogFormat::Json));
        assert_eq!(
            parse_log_format("xml").unwrap_err().to_string(),
            "`xml` is not one of text, json"
        );
        assert_eq!(
            parse_pull_policy("IfNotPresent"),
            Ok(PullPolicy::IfNotPresent)
        );
        assert_eq!(parse_pull_policy("Never"), Ok(PullPolicy::Never));
        assert_eq!(
            parse_pull_policy("always").unwrap_err().to_string(),
            "`always` is not one of Always, IfNotPresent, Never"
        );
        assert_eq!(parse_shutdown_mode("cancel"), Ok(ShutdownMode::Cancel));
        assert_eq!(parse_shutdown_mode("drain"), Ok(ShutdownMode::Drain));
        assert_eq!(parse_shutdown_mode("detach"), Ok(ShutdownMode::Detach));
        assert_eq!(
            parse_shutdown_mode("Detach").unwrap_err().to_string(),
            "`Detach` is not one of cancel, drain, detach"
        );
        assert_eq!(
            at_least(Duration::from_secs(2), Duration::from_secs(3))
                .unwrap_err()
                .to_string(),
            "2s is too short: the least is 3s"
        );
        assert_eq!(
            at_least(Duration::from_secs(3), Duration::from_secs(3)),
            Ok(Duration::from_secs(3))
        );
    }

    #[test]
    fn task_counts() {
        assert_eq!(parse_task_count("0"), Ok(0));
        assert_eq!(parse_task_count("12"), Ok(12));
        let tail = "is not a whole number of tasks (0 or more; 0 = unlimited)";
        assert_eq!(
            parse_task_count("-1").unwrap_err().to_string(),
            format!("`-1` {tail}")
        );
        assert_eq!(
            parse_task_count("four").unwrap_err().to_string(),
            format!("`four` {tail}")
        );
    }

    #[test]
    fn zero_timeout_means_none() {
        assert_eq!(timeout_or_none(Duration::ZERO), None);
        assert_eq!(
            timeout_or_none(Duration::from_secs(5)),
            Some(Duration::from_secs(5))
        );
    }
}
