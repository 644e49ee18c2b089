//! The telemetry resource: who is reporting. Exported as `target_info` on
//! the scrape and as the OTLP `Resource` of every push.
//!
//! Owns the merge the Go worker's OpenTelemetry SDK performs
//! (`resource.New(WithFromEnv(), WithTelemetrySDK(), WithAttributes(…))`,
//! later sources winning): first `OTEL_RESOURCE_ATTRIBUTES` (comma-separated
//! `key=value`, values percent-decoded, entries without `=` dropped) with
//! `OTEL_SERVICE_NAME` over its `service.name`, then the `telemetry.sdk.*`
//! attributes, then the worker's own `service.name`, `service.version`,
//! `worker.id` and `worker.backend`. So, exactly as in the Go worker, the
//! environment adds attributes (`deployment.environment`, `host.name`, …) but
//! cannot rename the service or spoof the worker's identity. Also owns the
//! Prometheus label names those attributes get (Go's `otlptranslator`
//! rules). Pure: the environment is passed in.

use std::collections::BTreeMap;

use super::WorkerInfo;

/// `telemetry.sdk.name`: this worker's own implementation, not the
/// OpenTelemetry SDK (the Go worker reports `opentelemetry`).
pub const SDK_NAME: &str = "oz-agent-worker";
/// `telemetry.sdk.language` (the Go worker reports `go`).
pub const SDK_LANGUAGE: &str = "rust";
/// `service.name`, fixed as in the Go worker.
pub const SERVICE_NAME: &str = "oz-agent-worker";

/// Resource attributes, sorted by key (as an OpenTelemetry attribute set is).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Resource {
    /// Key → value.
    pub attributes: BTreeMap<String, String>,
}

/// Entries of `OTEL_RESOURCE_ATTRIBUTES` that were not taken as written.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct EnvProblems {
    /// Entries without `=`, dropped.
    pub without_value: Vec<String>,
    /// Keys whose value has a bad `%` escape, kept undecoded (as Go does).
    pub bad_escape: Vec<String>,
}

impl EnvProblems {
    /// The one WARN line, or `None` when everything was fine.
    pub fn warning(&self) -> Option<String> {
        let mut parts = Vec::new();
        if !self.without_value.is_empty() {
            let shown: Vec<String> = self.without_value.iter().map(|e| shorten(e)).collect();
            parts.push(format!(
                "ignored {} entr{} without `=`: {}",
                shown.len(),
                if shown.len() == 1 { "y" } else { "ies" },
                shown.join(", ")
            ));
        }
        if !self.bad_escape.is_empty() {
            let shown: Vec<String> = self.bad_escape.iter().map(|e| shorten(e)).collect();
            parts.push(format!(
                "kept the value of {} undecoded (bad %-escape)",
                shown.join(", ")
            ));
        }
        (!parts.is_empty()).then(|| {
            format!(
                "OTEL_RESOURCE_ATTRIBUTES: {}; write key=value pairs separated by commas, with %XX for special characters",
                parts.join("; ")
            )
        })
    }
}

/// At most 40 characters, quoted and escaped: entries are outside input.
fn shorten(s: &str) -> String {
    let cut: String = s.chars().take(40).collect();
    if cut.len() < s.len() {
        format!("{cut:?}…")
    } else {
        format!("{cut:?}")
    }
}

/// The attributes `OTEL_RESOURCE_ATTRIBUTES` and `OTEL_SERVICE_NAME` give,
/// as the OpenTelemetry Go SDK's environment detector reads them.
pub fn from_env(env: &dyn Fn(&str) -> Option<String>) -> (BTreeMap<String, String>, EnvProblems) {
    let mut attrs = BTreeMap::new();
    let mut problems = EnvProblems::default();
    let raw = env("OTEL_RESOURCE_ATTRIBUTES").unwrap_or_default();
    let raw = raw.trim();
    if !raw.is_empty() {
        for entry in raw.split(',') {
            let Some((k, v)) = entry.split_once('=') else {
                problems.without_value.push(entry.to_owned());
                continue;
            };
            let key = k.trim();
            let value = match percent_decode(v.trim()) {
                Some(decoded) => decoded,
                None => {
                    problems.bad_escape.push(key.to_owned());
                    v.to_owned()
                }
            };
            // An empty key is not a valid attribute; Go drops it silently.
            if !key.is_empty() {
                attrs.insert(key.to_owned(), value);
            }
        }
    }
    let service = env("OTEL_SERVICE_NAME").unwrap_or_default();
    if !service.trim().is_empty() {
        attrs.insert("service.name".to_owned(), service.trim().to_owned());
    }
    (attrs, problems)
}

/// Go's `url.PathUnescape`: `%XX` decoded, `+` kept; `None` for a bad escape.
/// Decoded bytes that are not UTF-8 become U+FFFD.
pub fn percent_decode(s: &str) -> Option<String> {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' {
            let hex = |b: u8| (b as char).to_digit(16);
            let hi = bytes.get(i + 1).copied().and_then(hex)?;
            let lo = bytes.get(i + 2).copied().and_then(hex)?;
            out.push((hi * 16 + lo) as u8);
            i += 3;
        } else {
            out.push(bytes[i]);
            i += 1;
        }
    }
    Some(String::from_utf8_lossy(&out).into_owned())
}

impl Resource {
    /// The worker's resource: the environment's attributes, then the SDK's,
    /// then the worker's own (each later source wins).
    pub fn build(
        info: &WorkerInfo,
        sdk_version: &str,
        env: &dyn Fn(&str) -> Option<String>,
    ) -> (Resource, EnvProblems) {
        let (mut attributes, problems) = from_env(env);
        for (k, v) in [
            ("telemetry.sdk.language", SDK_LANGUAGE),
            ("telemetry.sdk.name", SDK_NAME),
            ("telemetry.sdk.version", sdk_version),
            ("service.name", SERVICE_NAME),
        ] {
            attributes.insert(k.to_owned(), v.to_owned());
        }
        // Empty values are left out, as the Go worker leaves them out.
        for (k, v) in [
            ("service.version", &info.version),
            ("worker.id", &info.worker_id),
            ("worker.backend", &info.backend),
        ] {
            if !v.is_empty() {
                attributes.insert(k.to_owned(), v.clone());
            }
        }
        (Resource { attributes }, problems)
    }

    /// `target_info`'s labels: names as Go's Prometheus exporter writes them
    /// (`deployment.environment` → `deployment_environment`), values of keys
    /// that meet after renaming joined with `;` in sorted order, sorted by
    /// name. A key with no usable character is left out (Go would drop the
    /// whole `target_info`).
    pub fn prometheus_labels(&self) -> Vec<(String, String)> {
        let mut merged: BTreeMap<String, Vec<&str>> = BTreeMap::new();
        for (k, v) in &self.attributes {
            if let Some(name) = label_name(k) {
                merged.entry(name).or_default().push(v);
            }
        }
        merged
            .into_iter()
            .map(|(k, mut vs)| {
                vs.sort_unstable();
                (k, vs.join(";"))
            })
            .collect()
    }
}

/// `otlptranslator.LabelNamer{}.Build`: every character other than ASCII
/// letters and digits becomes `_`, runs collapsed to one (`__x__` keeps its
/// reserved underscores), a leading digit gets `key_`. `None` when only
/// underscores would remain.
pub fn label_name(key: &str) -> Option<String> {
    if key.is_empty() {
        return None;
    }
    let reserved = key.len() >= 4 && key.starts_with("__") && key.ends_with("__");
    let inner = if reserved {
        &key[2..key.len() - 2]
    } else {
        key
    };
    let mut out = String::with_capacity(key.len());
    let mut prev_underscore = false;
    for c in inner.chars() {
        if c.is_ascii_alphanumeric() {
            out.push(c);
            prev_underscore = false;
        } else if !prev_underscore {
            out.push('_');
            prev_underscore = true;
        }
    }
    if reserved {
        out = format!("__{out}__");
    }
    if out.starts_with(|c: char| c.is_ascii_digit()) {
        out.insert_str(0, "key_");
    }
    (!out.chars().all(|c| c == '_')).then_some(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env_of(vars: &'static [(&'static str, &'static str)]) -> impl Fn(&str) -> Option<String> {
        move |k| {
            vars.iter()
                .find(|(n, _)| *n == k)
                .map(|(_, v)| v.to_string())
        }
    }

    fn info() -> WorkerInfo {
        WorkerInfo {
            version: "0.1.0+abc".into(),
            backend: "docker".into(),
            worker_id: "prod-1".into(),
        }
    }

    fn attrs(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn env_attributes_are_read_as_the_go_sdk_reads_them() {
        let env = env_of(&[(
            "OTEL_RESOURCE_ATTRIBUTES",
            "  deployment.environment = prod%20eu ,team=a%2Cb,novalue, =x,k=1+2,k=last,bad=%zz ",
        )]);
        let (got, problems) = from_env(&env);
        assert_eq!(
            got,
            attrs(&[
                ("bad", "%zz"),
                ("deployment.environment", "prod eu"),
                ("k", "last"),
                ("team", "a,b"),
            ])
        );
        assert_eq!(problems.without_value, vec!["novalue".to_string()]);
        assert_eq!(problems.bad_escape, vec!["bad".to_string()]);
        assert_eq!(
            problems.warning().unwrap(),
            "OTEL_RESOURCE_ATTRIBUTES: ignored 1 entry without `=`: \"novalue\"; kept the value of \"bad\" undecoded (bad %-escape); write key=value pairs separated by commas, with %XX for special characters"
        );
    }

    #[test]
    fn service_name_variable_wins_over_the_attribute() {
        let env = env_of(&[
            ("OTEL_RESOURCE_ATTRIBUTES", "service.name=from-attrs,a=b"),
            ("OTEL_SERVICE_NAME", " from-var "),
        ]);
        let (got, problems) = from_env(&env);
        assert_eq!(got, attrs(&[("a", "b"), ("service.name", "from-var")]));
        assert_eq!(problems.warning(), None);
        // …and, as in the Go worker, the worker's own name wins over both.
        let (r, _) = Resource::build(&info(), "0.1.0", &env);
        assert_eq!(r.attributes["service.name"], "oz-agent-worker");
    }

    #[test]
    fn the_worker_attributes_win_and_empty_ones_are_left_out() {
        let env = env_of(&[(
            "OTEL_RESOURCE_ATTRIBUTES",
            "worker.id=spoof,telemetry.sdk.language=go,deployment.environment=staging,host.name=h1",
        )]);
        let (r, _) = Resource::build(&info(), "0.1.0", &env);
        assert_eq!(
            r.attributes,
            attrs(&[
                ("deployment.environment", "staging"),
                ("host.name", "h1"),
                ("service.name", "oz-agent-worker"),
                ("service.version", "0.1.0+abc"),
                ("telemetry.sdk.language", "rust"),
                ("telemetry.sdk.name", "oz-agent-worker"),
                ("telemetry.sdk.version", "0.1.0"),
                ("worker.backend", "docker"),
                ("worker.id", "prod-1"),
            ])
        );
        let empty = WorkerInfo {
            version: String::new(),
            backend: "docker".into(),
            worker_id: String::new(),
        };
        let (r, _) = Resource::build(&empty, "0.1.0", &|_| None);
        assert!(!r.attributes.contains_key("service.version"));
        assert!(!r.attributes.contains_key("worker.id"));
    }

    #[test]
    fn target_info_labels_follow_the_go_exporter() {
        let r = Resource {
            attributes: attrs(&[
                ("deployment.environment", "prod"),
                ("deployment_environment", "also"),
                ("9lives", "cat"),
                ("a..b", "x"),
                ("__meta__", "m"),
                ("..", "gone"),
                ("héllo", "w"),
            ]),
        };
        assert_eq!(
            r.prometheus_labels(),
            vec![
                ("__meta__".to_string(), "m".to_string()),
                ("a_b".to_string(), "x".to_string()),
                (
                    "deployment_environment".to_string(),
                    "also;prod".to_string()
                ),
                ("h_llo".to_string(), "w".to_string()),
                ("key_9lives".to_string(), "cat".to_string()),
            ]
        );
    }

    #[test]
    fn percent_decoding_is_go_path_unescape() {
        assert_eq!(percent_decode("a%20b+c").as_deref(), Some("a b+c"));
        assert_eq!(percent_decode("%41%4a%4A").as_deref(), Some("AJJ"));
        assert_eq!(percent_decode("%e2%82%ac").as_deref(), Some("€"));
        assert_eq!(percent_decode("%ff").as_deref(), Some("\u{fffd}"));
        assert_eq!(percent_decode("%4"), None);
        assert_eq!(percent_decode("%"), None);
        assert_eq!(percent_decode("%g0"), None);
    }
}
