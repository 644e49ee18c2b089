//! Log output: level, format, the task id on each line, and secret masking.
//!
//! Owns the global logger (built on `env_logger`), the per-thread "current
//! task" that lines carry, and the registry of secret values that must never
//! reach a log line. Every line passes through [`redact`] before it is
//! written, so a secret that slips into a message (an `env_vars` value, the
//! API key, a registry password) comes out as `[REDACTED]`. This module must
//! not decide what is worth logging; callers do.

use std::cell::RefCell;
use std::collections::BTreeMap;
use std::io::Write;
use std::sync::{Mutex, MutexGuard};
use std::time::{SystemTime, UNIX_EPOCH};

use crate::calendar::civil_from_days;
use crate::config::LogFormat;

/// What a masked secret looks like in a log line.
pub const REDACTED: &str = "[REDACTED]";

/// Secrets shorter than this are not masked: they would garble every line and
/// leak nothing worth hiding.
const MIN_SECRET_LEN: usize = 4;

static SECRETS: Mutex<BTreeMap<String, usize>> = Mutex::new(BTreeMap::new());

thread_local! {
    static CURRENT_TASK: RefCell<Option<String>> = const { RefCell::new(None) };
}

/// Installs the global logger. `RUST_LOG`, when set, overrides `level`.
pub fn init(level: log::LevelFilter, format: LogFormat) {
    let mut builder = env_logger::Builder::new();
    builder.filter_level(level);
    // Other crates' chatter (rustls, tungstenite) stays at warn unless asked
    // for; tungstenite's debug/trace lines are dropped even then, because
    // they print the upgrade request with its Authorization header.
    for noisy in ["rustls", "tungstenite"] {
        builder.filter_module(noisy, level.min(log::LevelFilter::Warn));
    }
    if let Ok(spec) = std::env::var("RUST_LOG") {
        builder.parse_filters(&spec);
    }
    builder.format(move |out, record| {
        if !crate::connection::log_record_allowed(record.target(), record.level()) {
            return Ok(());
        }
        let line = render(format, record, now_rfc3339().as_str());
        writeln!(out, "{line}")
    });
    builder.target(env_logger::Target::Stderr);
    // A second init (tests) keeps the first logger.
    let _ = builder.try_init();
}

fn render(format: LogFormat, record: &log::Record<'_>, timestamp: &str) -> String {
    let message = redact(&record.args().to_string());
    let task = CURRENT_TASK.with(|t| t.borrow().clone());
    match format {
        LogFormat::Text => {
            let task = task.map(|t| format!(" task={t}")).unwrap_or_default();
            format!("{timestamp} {:<5}{task} {message}", record.level().as_str())
        }
        LogFormat::Json => {
            let mut object = serde_json::Map::new();
            object.insert("timestamp".into(), timestamp.into());
            object.insert("level".into(), record.level().as_str().into());
            object.insert("message".into(), message.into());
            object.insert("target".into(), record.target().into());
            if let Some(task) = task {
                object.insert("task_id".into(), task.into());
            }
            serde_json::Value::Object(object).to_string()
        }
    }
}

/// Replaces every registered secret in `text` with [`REDACTED`].
pub fn redact(text: &str) -> String {
    let secrets = lock_secrets();
    let mut out = text.to_owned();
    // Longest first, so a secret that contains another is masked whole.
    let mut keys: Vec<&String> = secrets.keys().collect();
    keys.sort_by_key(|k| std::cmp::Reverse(k.len()));
    for secret in keys {
        if out.contains(secret.as_str()) {
            out = out.replace(secret.as_str(), REDACTED);
        }
    }
    out
}

/// Registers `value` as a secret until the guard is dropped.
pub fn register_secret(value: &str) -> SecretGuard {
    if value.len() < MIN_SECRET_LEN {
        return SecretGuard(None);
    }
    *lock_secrets().entry(value.to_owned()).or_insert(0) += 1;
    SecretGuard(Some(value.to_owned()))
}

/// Registers `value` as a secret for the life of the process.
pub fn register_secret_forever(value: &str) {
    std::mem::forget(register_secret(value));
}

/// Keeps a secret masked while it lives.
#[must_use = "the secret is unmasked as soon as the guard is dropped"]
pub struct SecretGuard(Option<String>);

impl Drop for SecretGuard {
    fn drop(&mut self) {
        if let Some(value) = self.0.take() {
            let mut secrets = lock_secrets();
            if let Some(n) = secrets.get_mut(&value) {
                *n -= 1;
                if *n == 0 {
                    secrets.remove(&value);
                }
            }
        }
    }
}

fn lock_secrets() -> MutexGuard<'static, BTreeMap<String, usize>> {
    SECRETS.lock().unwrap_or_else(|e| e.into_inner())
}

/// Marks this thread's log lines with a task id while it lives.
pub struct TaskScope(Option<String>);

impl TaskScope {
    /// Lines logged on this thread carry `task_id` until the scope ends.
    pub fn enter(task_id: &str) -> Self {
        let previous = CURRENT_TASK.with(|t| t.replace(Some(task_id.to_owned())));
        Self(previous)
    }
}

impl Drop for TaskScope {
    fn drop(&mut self) {
        let previous = self.0.take();
        CURRENT_TASK.with(|t| *t.borrow_mut() = previous);
    }
}

/// The current time as RFC 3339 UTC with milliseconds.
fn now_rfc3339() -> String {
    let since = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or_default();
    format_rfc3339(since.as_secs() as i64, since.subsec_millis())
}

/// Formats seconds since the epoch (UTC) as `YYYY-MM-DDTHH:MM:SS.mmmZ`.
fn format_rfc3339(secs: i64, millis: u32) -> String {
    let days = secs.div_euclid(86_400);
    let rem = secs.rem_euclid(86_400);
    let (y, m, d) = civil_from_days(days);
    format!(
        "{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}.{millis:03}Z",
        rem / 3600,
        rem % 3600 / 60,
        rem % 60
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn formats_timestamps() {
        assert_eq!(format_rfc3339(0, 0), "1970-01-01T00:00:00.000Z");
        assert_eq!(format_rfc3339(951_782_400, 5), "2000-02-29T00:00:00.005Z");
        assert_eq!(
            format_rfc3339(1_795_251_661, 123),
            "2026-11-21T09:01:01.123Z"
        );
    }

    #[test]
    fn masks_registered_secrets_until_dropped() {
        let guard = register_secret("s3cr3t-value-1");
        let short = register_secret("abc");
        assert_eq!(redact("token=s3cr3t-value-1; abc"), "token=[REDACTED]; abc");
        drop(guard);
        drop(short);
        assert_eq!(redact("token=s3cr3t-value-1"), "token=s3cr3t-value-1");
    }

    #[test]
    fn json_lines_carry_the_task_id() {
        let _scope = TaskScope::enter("T-1");
        let _g = register_secret("hidden-json-secret");
        let line = render(
            LogFormat::Json,
            &log::Record::builder()
                .args(format_args!("value hidden-json-secret"))
                .level(log::Level::Info)
                .target("t")
                .build(),
            "2026-01-01T00:00:00.000Z",
        );
        let v: serde_json::Value = serde_json::from_str(&line).unwrap();
        assert_eq!(v["task_id"], "T-1");
        assert_eq!(v["level"], "INFO");
        assert_eq!(v["message"], "value [REDACTED]");
        assert_eq!(v["timestamp"], "2026-01-01T00:00:00.000Z");
    }

    #[test]
    fn text_lines_are_plain() {
        let line = render(
            LogFormat::Text,
            &log::Record::builder()
                .args(format_args!("hello"))
                .level(log::Level::Warn)
                .target("t")
                .build(),
            "TS",
        );
        assert_eq!(line, "TS WARN  hello");
    }
}
