//! The configuration as `oz-agent-worker doctor` sees it: built as far as it
//! can be, with the problems that would stop the worker kept beside it
//! instead of refusing, so the doctor can report them as failed checks.
//!
//! Owns [`DoctorInput`] and [`DoctorEnv`] (the environment variables the
//! checks read, captured once through the same injected lookup `parse` uses).
//! Pure like the rest of `config`: reads the config file, nothing else; no
//! value of a secret variable may appear in a `Debug` output.

use std::collections::BTreeMap;
use std::fmt;

use super::cli::Flags;
use super::error::ConfigError;
use super::{ApiKey, Config, expand_home, file, merge};

/// The environment variables the doctor's checks read: Docker discovery and
/// credentials, the proxy, and extra CA certificates.
pub const DOCTOR_ENV_VARS: &[&str] = &[
    "HOME",
    "PATH",
    "XDG_RUNTIME_DIR",
    "DOCKER_HOST",
    "DOCKER_CONTEXT",
    "DOCKER_CONFIG",
    "DOCKER_API_VERSION",
    "DOCKER_TLS_VERIFY",
    "DOCKER_CERT_PATH",
    "DOCKER_AUTH_CONFIG",
    "HTTPS_PROXY",
    "https_proxy",
    "HTTP_PROXY",
    "http_proxy",
    "ALL_PROXY",
    "all_proxy",
    "NO_PROXY",
    "no_proxy",
    "SSL_CERT_FILE",
    "SSL_CERT_DIR",
];

/// A snapshot of [`DOCTOR_ENV_VARS`]. `Debug` shows names only: some values
/// (`DOCKER_AUTH_CONFIG`, proxy URLs) hold secrets.
#[derive(Clone, Default, PartialEq, Eq)]
pub struct DoctorEnv(BTreeMap<String, String>);

impl DoctorEnv {
    /// Captures the doctor's variables through `env`.
    pub fn capture(env: &dyn Fn(&str) -> Option<String>) -> Self {
        Self(
            DOCTOR_ENV_VARS
                .iter()
                .filter_map(|name| env(name).map(|v| ((*name).to_owned(), v)))
                .collect(),
        )
    }

    /// A snapshot of exactly these variables (tests).
    pub fn from_pairs<'a>(pairs: impl IntoIterator<Item = (&'a str, &'a str)>) -> Self {
        Self(
            pairs
                .into_iter()
                .map(|(k, v)| (k.to_owned(), v.to_owned()))
                .collect(),
        )
    }

    /// One variable's value, as `std::env::var(..).ok()` would give it.
    pub fn get(&self, name: &str) -> Option<String> {
        self.0.get(name).cloned()
    }
}

impl fmt::Debug for DoctorEnv {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_set().entries(self.0.keys()).finish()
    }
}

/// How the doctor prints its report (`doctor --format text|json`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum DoctorFormat {
    /// One `PASS`/`WARN`/`FAIL` line per check, as each ends.
    #[default]
    Text,
    /// One JSON document at the end.
    Json,
}

impl DoctorFormat {
    /// `text` or `json`.
    pub fn parse(value: &str) -> Option<Self> {
        match value {
            "text" => Some(Self::Text),
            "json" => Some(Self::Json),
            _ => None,
        }
    }
}

/// Everything the doctor checks: the best-effort configuration and what was
/// wrong while building it.
#[derive(Debug)]
pub struct DoctorInput {
    /// The configuration. When the worker id is missing or reserved it is
    /// empty; when the API key is missing it is empty; when the config file
    /// failed, it is flags and defaults only.
    pub config: Config,
    /// The config file given (`~/` expanded), if any.
    pub config_file: Option<String>,
    /// Why the config file could not be read or decoded.
    pub file_problem: Option<ConfigError>,
    /// Why the worker id is unusable (missing or reserved).
    pub worker_id_problem: Option<ConfigError>,
    /// Why there is no API key.
    pub api_key_problem: Option<ConfigError>,
    /// The environment the checks read.
    pub env: DoctorEnv,
    /// How to print the report.
    pub format: DoctorFormat,
}

// ConfigError holds io and YAML errors, which cannot be compared; their
// messages are what an operator sees, so those are compared instead.
impl PartialEq for DoctorInput {
    fn eq(&self, other: &Self) -> bool {
        let text = |p: &Option<ConfigError>| p.as_ref().map(ToString::to_string);
        self.config == other.config
            && self.config_file == other.config_file
            && text(&self.file_problem) == text(&other.file_problem)
            && text(&self.worker_id_problem) == text(&other.worker_id_problem)
            && text(&self.api_key_problem) == text(&other.api_key_problem)
            && self.env == other.env
            && self.format == other.format
    }
}

impl Eq for DoctorInput {}

/// Builds the doctor's input from the parsed flags; never fails.
pub(crate) fn parse(flags: Flags, env: &dyn Fn(&str) -> Option<String>) -> DoctorInput {
    let (api_key, api_key_problem) = match merge::api_key(&flags, env) {
        Ok(key) => (key, None),
        Err(e) => (ApiKey::default(), Some(e)),
    };
    let config_file = flags.config_file.as_deref().map(|p| expand_home(p, env));
    let (file, file_problem) = match config_file.as_deref().map(file::load) {
        None => (file::FileConfig::default(), None),
        Some(Ok(file)) => (file, None),
        Some(Err(e)) => (file::FileConfig::default(), Some(e)),
    };
    let (worker_id, worker_id_problem) =
        match merge::worker_id(flags.worker_id.as_deref(), file.worker_id.as_deref()) {
            Ok(id) => (id, None),
            Err(e) => (String::new(), Some(e)),
        };
    DoctorInput {
        format: flags.doctor_format.unwrap_or_default(),
        config: merge::build(flags, worker_id, api_key, file, env),
        config_file,
        file_problem,
        worker_id_problem,
        api_key_problem,
        env: DoctorEnv::capture(env),
    }
}

#[cfg(test)]
mod tests {
    use std::ffi::OsString;

    use super::super::{Command, parse as parse_command};
    use super::*;

    fn env(name: &str) -> Option<String> {
        match name {
            "DOCKER_AUTH_CONFIG" => Some("{\"auths\":{}}".into()),
            "UNRELATED" => Some("x".into()),
            _ => None,
        }
    }

    fn doctor(list: &[&str]) -> DoctorInput {
        let args = list.iter().map(OsString::from).collect();
        match parse_command(args, &env) {
            Ok(Command::Doctor(input)) => input,
            other => panic!("expected Doctor for {list:?}, got {other:?}"),
        }
    }

    fn problem(p: &Option<ConfigError>) -> Option<String> {
        p.as_ref().map(ToString::to_string)
    }

    #[test]
    fn missing_worker_id_and_key_are_kept_as_problems() {
        let input = doctor(&["doctor"]);
        assert_eq!(input.config.worker_id, "");
        assert_eq!(input.config.api_key.expose(), "");
        assert_eq!(
            problem(&input.worker_id_problem).as_deref(),
            Some("worker-id is required (via --worker-id flag or config file)")
        );
        assert_eq!(
            problem(&input.api_key_problem).as_deref(),
            Some(
                "an API key is required: pass --api-key KEY or set the WARP_API_KEY environment variable"
            )
        );
        assert!(input.file_problem.is_none());
        assert_eq!(input.config.docker.default_image, "ubuntu:22.04");
    }

    #[test]
    fn reserved_worker_id_is_a_problem_not_a_refusal() {
        let input = doctor(&["doctor", "--worker-id", "warp-1", "--api-key", "k"]);
        assert_eq!(input.config.worker_id, "");
        assert_eq!(
            problem(&input.worker_id_problem).as_deref(),
            Some("invalid worker-id: values starting with 'warp' are reserved and cannot be used")
        );
        assert!(input.api_key_problem.is_none());
    }

    #[test]
    fn a_broken_file_leaves_flags_and_defaults() {
        let path = std::env::temp_dir().join(format!("oz-doctor-cfg-{}.yaml", std::process::id()));
        std::fs::write(&path, "worker_id: w\nbogus: 1\n").unwrap();
        let path_text = path.to_str().unwrap().to_owned();
        let input = doctor(&[
            "doctor",
            "--config-file",
            &path_text,
            "--worker-id",
            "flag-id",
            "--default-image",
            "alpine:3",
        ]);
        std::fs::remove_file(&path).unwrap();
        let message = problem(&input.file_problem).unwrap();
        assert!(
            message.starts_with(&format!(
                "failed to parse config file {path_text}: unknown field `bogus`"
            )),
            "{message}"
        );
        assert_eq!(input.config_file.as_deref(), Some(path_text.as_str()));
        assert_eq!(input.config.worker_id, "flag-id");
        assert_eq!(input.config.docker.default_image, "alpine:3");
    }

    #[test]
    fn format_is_text_by_default_json_on_request_and_doctor_only() {
        assert_eq!(doctor(&["doctor"]).format, DoctorFormat::Text);
        assert_eq!(
            doctor(&["doctor", "--format", "json"]).format,
            DoctorFormat::Json
        );
        assert_eq!(
            doctor(&["--format=text", "doctor"]).format,
            DoctorFormat::Text
        );
        let refused = |list: &[&str]| {
            let args = list.iter().map(OsString::from).collect();
            parse_command(args, &env).unwrap_err().to_string()
        };
        assert_eq!(
            refused(&["doctor", "--format", "yaml"]),
            "invalid --format flag: `yaml` is not one of text, json"
        );
        assert_eq!(
            refused(&["--worker-id", "w", "--api-key", "k", "--format", "json"]),
            "flag `--format` is for `oz-agent-worker doctor` only (see `oz-agent-worker --help`)"
        );
    }

    #[test]
    fn env_snapshot_keeps_only_doctor_variables_and_hides_values() {
        let input = doctor(&["doctor"]);
        assert_eq!(
            input.env.get("DOCKER_AUTH_CONFIG").as_deref(),
            Some("{\"auths\":{}}")
        );
        assert_eq!(input.env.get("UNRELATED"), None);
        assert_eq!(format!("{:?}", input.env), "{\"DOCKER_AUTH_CONFIG\"}");
    }
}
