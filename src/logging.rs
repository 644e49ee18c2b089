//! Log output: level, format, the task id on each line, and secret masking.
//!
//! Owns the global logger (built on `env_logger`), the panic hook (a panic
//! is one ERROR record, masked and escaped like any line), the per-thread
//! "current task" that lines carry, and the registry of secret values that
//! must never reach a log line (each line of a multi-line one masked on its
//! own too, since output is logged a line at a time). Every line passes through [`redact`] before it is
//! written, so a secret that slips into a message (an `env_vars` value, the
//! API key, a registry password) comes out as `[REDACTED]`; then through
//! [`crate::untrusted::escape_line`], so whatever a message holds (a task id,
//! container output) a record is one line the worker wrote. This module must
//! not decide what is worth logging; callers do.
//!
//! Two kinds of secret: the worker's own (API key, operator environment,
//! registry credentials during a pull), masked in every line once at least
//! [`MIN_SECRET_LEN`] long; and a task's `env_vars` values, masked only in
//! that task's lines (its thread, see [`TaskScope::with_secrets`]) and only
//! once at least [`MIN_TASK_SECRET_LEN`] long, so one task's ordinary word
//! never blanks another task's lines.

use std::cell::RefCell;
use std::collections::BTreeMap;
use std::io::Write;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{SystemTime, UNIX_EPOCH};

use crate::calendar::civil_from_days;
use crate::config::LogFormat;
use crate::untrusted::{self, Escaped, MESSAGE_MAX_BYTES};

/// What a masked secret looks like in a log line.
pub const REDACTED: &str = "[REDACTED]";

/// The worker's own secrets shorter than this are not masked: they would
/// garble every line and leak nothing worth hiding.
pub const MIN_SECRET_LEN: usize = 4;
/// A task's `env_vars` values shorter than this are not masked (Buildkite's
/// rule, `redact.LengthMin`): the orchestrator sends many short non-secret
/// values (`1`, `true`, `main`) that would otherwise blank ordinary words.
pub const MIN_TASK_SECRET_LEN: usize = 6;

static SECRETS: Mutex<BTreeMap<String, usize>> = Mutex::new(BTreeMap::new());
/// The worker id every JSON line carries, once known.
static WORKER_ID: std::sync::OnceLock<String> = std::sync::OnceLock::new();

/// Puts `worker_id` on every JSON line from now on (set once).
pub fn set_worker_id(worker_id: &str) {
    let _ = WORKER_ID.set(worker_id.to_owned());
}

/// The values one task's lines mask, read where they already live (the
/// task's assignment), never copied.
pub trait TaskSecrets: Send + Sync {
    /// Calls `f` with every value.
    fn each_secret<'s>(&'s self, f: &mut dyn FnMut(&'s str));
}

thread_local! {
    /// Set while [`redact`] runs on this thread (see [`log_panic`]).
    static MASKING: std::cell::Cell<bool> = const { std::cell::Cell::new(false) };
    static CURRENT_TASK: RefCell<Option<String>> = const { RefCell::new(None) };
    static TASK_SECRETS: RefCell<Option<Arc<dyn TaskSecrets>>> = const { RefCell::new(None) };
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
    if builder.try_init().is_ok() {
        std::panic::set_hook(Box::new(log_panic));
    }
}

/// The panic hook: a panic's message can carry outside text (a raw id, a
/// daemon's words) and secrets, so it is one ERROR record like any other,
/// masked and escaped, instead of the default hook's raw stderr text.
fn log_panic(info: &std::panic::PanicHookInfo<'_>) {
    let thread = std::thread::current();
    let payload = info.payload();
    let message = payload
        .downcast_ref::<&str>()
        .copied()
        .or_else(|| payload.downcast_ref::<String>().map(String::as_str));
    let place = info.location().map(|l| (l.file(), l.line()));
    let line = panic_message(thread.name(), place, message);
    if MASKING.with(|m| m.get()) {
        // The panic came from inside the masking itself: its lock is held
        // by this thread, and an unmasked message must not be written.
        let _ = writeln!(
            std::io::stderr(),
            "{} ERROR internal error in thread {} while masking a log line (message withheld)",
            now_rfc3339(),
            thread.name().unwrap_or("unnamed")
        );
        return;
    }
    log::error!("{line}");
}

/// The text of a panic's log record (masked and escaped by the logger like
/// every message; cut here to half a record).
fn panic_message(
    thread: Option<&str>,
    place: Option<(&str, u32)>,
    message: Option<&str>,
) -> String {
    let place = place
        .map(|(file, line)| format!(" at {file}:{line}"))
        .unwrap_or_default();
    let message = message.unwrap_or("(no message)");
    format!(
        "internal error in thread {}{place}: {}",
        thread.unwrap_or("unnamed"),
        untrusted::truncate_message(message, MESSAGE_MAX_BYTES / 2)
    )
}

/// A line's structured fields (`info!(task_id = id; "…")`), as JSON values:
/// numbers and booleans stay numbers and booleans, text is masked.
struct Fields(serde_json::Map<String, serde_json::Value>);

impl<'kvs> log::kv::VisitSource<'kvs> for Fields {
    fn visit_pair(
        &mut self,
        key: log::kv::Key<'kvs>,
        value: log::kv::Value<'kvs>,
    ) -> Result<(), log::kv::Error> {
        let json = if let Some(b) = value.to_bool() {
            b.into()
        } else if let Some(i) = value.to_i64() {
            i.into()
        } else if let Some(u) = value.to_u64() {
            u.into()
        } else if let Some(f) = value.to_f64() {
            serde_json::Number::from_f64(f).map_or(serde_json::Value::Null, Into::into)
        } else {
            redact(&value.to_string()).into()
        };
        self.0.insert(key.as_str().to_owned(), json);
        Ok(())
    }
}

fn render(format: LogFormat, record: &log::Record<'_>, timestamp: &str) -> String {
    let message = redact(&record.args().to_string());
    let message = untrusted::truncate_message(&message, MESSAGE_MAX_BYTES).into_owned();
    let mut fields = Fields(serde_json::Map::new());
    let _ = record.key_values().visit(&mut fields);
    let fields = fields.0;
    // The thread's task, or the one a line names (the claim line runs on
    // the connection thread).
    let task = CURRENT_TASK.with(|t| t.borrow().clone()).or_else(|| {
        fields
            .get("task_id")
            .and_then(|v| v.as_str())
            .map(str::to_owned)
    });
    match format {
        LogFormat::Text => {
            // JSON escapes by itself; a text line must not break either.
            let message = untrusted::escape_line(&message);
            let task = task
                .map(|t| format!(" task={}", Escaped(&t)))
                .unwrap_or_default();
            format!("{timestamp} {:<5}{task} {message}", record.level().as_str())
        }
        LogFormat::Json => {
            let mut object = serde_json::Map::new();
            object.insert("timestamp".into(), timestamp.into());
            object.insert("level".into(), record.level().as_str().into());
            object.insert("message".into(), message.into());
            object.insert("target".into(), record.target().into());
            if let Some(id) = WORKER_ID.get() {
                object.insert("worker_id".into(), id.as_str().into());
            }
            if let Some(task) = task {
                object.insert("task_id".into(), task.into());
            }
            for (k, v) in fields {
                // The fixed keys keep their meaning whatever a call site names.
                if !["timestamp", "level", "message", "target"].contains(&k.as_str()) {
                    object.insert(k, v);
                }
            }
            serde_json::Value::Object(object).to_string()
        }
    }
}

/// Replaces every registered secret in `text` with [`REDACTED`]: the
/// worker's own, and the current task's (on its thread).
pub fn redact(text: &str) -> String {
    struct Masking;
    impl Drop for Masking {
        fn drop(&mut self) {
            MASKING.with(|m| m.set(false));
        }
    }
    MASKING.with(|m| m.set(true));
    let _masking = Masking;
    let secrets = lock_secrets();
    let task = TASK_SECRETS.with(|t| t.borrow().clone());
    let mut keys: Vec<&str> = Vec::with_capacity(secrets.len());
    for secret in secrets.keys() {
        keys.push(secret);
        keys.extend(lines_of(secret, MIN_SECRET_LEN));
    }
    if let Some(task) = &task {
        task.each_secret(&mut |v| {
            if v.len() >= MIN_TASK_SECRET_LEN && text.contains(v) {
                keys.push(v);
            }
            keys.extend(lines_of(v, MIN_TASK_SECRET_LEN).filter(|l| text.contains(l)));
        });
    }
    // Longest first, so a secret that contains another is masked whole.
    keys.sort_by_key(|k| std::cmp::Reverse(k.len()));
    let mut out = text.to_owned();
    for secret in keys {
        if out.contains(secret) {
            out = out.replace(secret, REDACTED);
        }
    }
    out
}

/// The lines of a multi-line secret (a PEM key, a kubeconfig) that are at
/// least `min` bytes long, each as written and trimmed: container output
/// and error text are logged a line at a time, so each line must be masked
/// on its own. Nothing for a one-line secret.
fn lines_of(secret: &str, min: usize) -> impl Iterator<Item = &str> {
    let multi = secret.contains(['\n', '\r']);
    secret
        .split(['\n', '\r'])
        .filter(move |_| multi)
        .flat_map(|line| [line, line.trim()])
        .filter(move |line| line.len() >= min)
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

/// The task this thread's lines are about, if any (see [`TaskScope`]).
pub fn current_task() -> Option<String> {
    CURRENT_TASK.with(|t| t.borrow().clone())
}

/// Marks this thread's log lines with a task id (and masks that task's
/// secrets in them) while it lives.
pub struct TaskScope {
    task: Option<String>,
    secrets: Option<Arc<dyn TaskSecrets>>,
}

impl TaskScope {
    /// Lines logged on this thread carry `task_id` until the scope ends.
    pub fn enter(task_id: &str) -> Self {
        let task = CURRENT_TASK.with(|t| t.replace(Some(task_id.to_owned())));
        let secrets = TASK_SECRETS.with(|s| s.borrow().clone());
        Self { task, secrets }
    }

    /// As [`TaskScope::enter`], and lines on this thread also mask `secrets`.
    pub fn with_secrets(task_id: &str, secrets: Arc<dyn TaskSecrets>) -> Self {
        let task = CURRENT_TASK.with(|t| t.replace(Some(task_id.to_owned())));
        let secrets = TASK_SECRETS.with(|s| s.replace(Some(secrets)));
        Self { task, secrets }
    }
}

impl Drop for TaskScope {
    fn drop(&mut self) {
        let (task, secrets) = (self.task.take(), self.secrets.take());
        CURRENT_TASK.with(|t| *t.borrow_mut() = task);
        TASK_SECRETS.with(|s| *s.borrow_mut() = secrets);
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

    const PEM: &str = "-----BEGIN PRIVATE KEY-----\nMIIEvQIBADANBgkqhkiG9w0BAQEFAASC\r\n  BKcwggSjAgEAAoIBAQC7\nab\n-----END PRIVATE KEY-----\n";

    #[test]
    fn each_line_of_a_multi_line_secret_is_masked_on_its_own() {
        assert_eq!(
            lines_of(PEM, MIN_SECRET_LEN).collect::<Vec<_>>(),
            [
                "-----BEGIN PRIVATE KEY-----",
                "-----BEGIN PRIVATE KEY-----",
                "MIIEvQIBADANBgkqhkiG9w0BAQEFAASC",
                "MIIEvQIBADANBgkqhkiG9w0BAQEFAASC",
                "  BKcwggSjAgEAAoIBAQC7",
                "BKcwggSjAgEAAoIBAQC7",
                "-----END PRIVATE KEY-----",
                "-----END PRIVATE KEY-----",
            ]
        );
        assert_eq!(lines_of("one-line-secret", 4).count(), 0);
        let _g = register_secret(PEM);
        assert_eq!(
            redact("[container] MIIEvQIBADANBgkqhkiG9w0BAQEFAASC"),
            "[container] [REDACTED]"
        );
        assert_eq!(redact("x   BKcwggSjAgEAAoIBAQC7"), "x [REDACTED]");
        // A line shorter than the minimum stays (it would blank words).
        assert_eq!(redact("ab"), "ab");
        assert_eq!(redact(PEM), "[REDACTED]");
    }

    #[test]
    fn a_tasks_multi_line_value_is_masked_line_by_line_in_its_lines() {
        let values = Arc::new(Values(vec!["first-line-1\nsecond-line-2\nshort".into()]));
        let _scope = TaskScope::with_secrets("T", values);
        assert_eq!(redact("out: second-line-2"), "out: [REDACTED]");
        assert_eq!(redact("first-line-1 short"), "[REDACTED] short");
    }

    #[test]
    fn a_panic_is_one_masked_escaped_record() {
        let _g = register_secret("panic-secret-99");
        let message = panic_message(
            Some("connection"),
            Some(("src/x.rs", 7)),
            Some("bad id \"a\n2026-01-01T00:00:00.000Z ERROR forged\" with panic-secret-99"),
        );
        assert_eq!(
            message,
            "internal error in thread connection at src/x.rs:7: bad id \"a\n2026-01-01T00:00:00.000Z ERROR forged\" with panic-secret-99"
        );
        let line = render(
            LogFormat::Text,
            &log::Record::builder()
                .args(format_args!("{message}"))
                .level(log::Level::Error)
                .target("t")
                .build(),
            "TS",
        );
        assert_eq!(
            line,
            "TS ERROR internal error in thread connection at src/x.rs:7: bad id \"a\\n2026-01-01T00:00:00.000Z ERROR forged\" with [REDACTED]"
        );
        let long = "z".repeat(MESSAGE_MAX_BYTES);
        assert!(
            panic_message(None, None, Some(&long))
                .starts_with("internal error in thread unnamed: zzz")
        );
        assert!(panic_message(None, None, Some(&long)).len() < MESSAGE_MAX_BYTES / 2 + 100);
        assert_eq!(
            panic_message(Some("t"), None, None),
            "internal error in thread t: (no message)"
        );
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

    struct Values(Vec<String>);
    impl TaskSecrets for Values {
        fn each_secret<'s>(&'s self, f: &mut dyn FnMut(&'s str)) {
            self.0.iter().for_each(|v| f(v));
        }
    }

    #[test]
    fn task_secrets_mask_only_that_tasks_lines_and_only_long_values() {
        let values = Arc::new(Values(vec!["container".into(), "short".into()]));
        let line = "started container abc (short)";
        {
            let _scope = TaskScope::with_secrets("A", values);
            assert_eq!(redact(line), "started [REDACTED] abc (short)");
        }
        // Another task (or no task) sees the word.
        let _other = TaskScope::enter("B");
        assert_eq!(redact(line), line);
    }

    #[test]
    fn text_records_are_one_line_whatever_they_hold() {
        let _scope = TaskScope::enter("T\n2026-01-01T00:00:00.000Z INFO  forged");
        let line = render(
            LogFormat::Text,
            &log::Record::builder()
                .args(format_args!("out\n2026-01-01T00:00:00.000Z ERROR forged"))
                .level(log::Level::Info)
                .target("t")
                .build(),
            "TS",
        );
        assert_eq!(
            line,
            "TS INFO  task=T\\n2026-01-01T00:00:00.000Z INFO  forged out\\n2026-01-01T00:00:00.000Z ERROR forged"
        );
        let long = "y".repeat(MESSAGE_MAX_BYTES + 10);
        let line = render(
            LogFormat::Text,
            &log::Record::builder()
                .args(format_args!("{long}"))
                .level(log::Level::Info)
                .target("t")
                .build(),
            "TS",
        );
        assert!(line.ends_with("…(message cut: 10 more bytes)"), "{line}");
    }

    #[test]
    fn json_lines_carry_structured_fields() {
        let _g = register_secret("field-secret-1");
        let line = render(
            LogFormat::Json,
            &log::Record::builder()
                .args(format_args!("task X failed"))
                .level(log::Level::Warn)
                .target("t")
                .key_values(&[
                    ("task_id", log::kv::Value::from("X")),
                    ("exit_code", log::kv::Value::from(3i64)),
                    ("duration_seconds", log::kv::Value::from(1.25f64)),
                    ("failure_reason", log::kv::Value::from("container_exit")),
                    ("note", log::kv::Value::from("has field-secret-1")),
                    ("level", log::kv::Value::from("spoof")),
                ])
                .build(),
            "TS",
        );
        let v: serde_json::Value = serde_json::from_str(&line).unwrap();
        assert_eq!(v["task_id"], "X");
        assert_eq!(v["exit_code"], 3);
        assert_eq!(v["duration_seconds"], 1.25);
        assert_eq!(v["failure_reason"], "container_exit");
        assert_eq!(v["note"], "has [REDACTED]");
        assert_eq!(v["level"], "WARN");
        let text = render(
            LogFormat::Text,
            &log::Record::builder()
                .args(format_args!("claimed"))
                .level(log::Level::Info)
                .target("t")
                .key_values(&[("task_id", log::kv::Value::from("X"))])
                .build(),
            "TS",
        );
        assert_eq!(text, "TS INFO  task=X claimed");
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
