//! The worker's settings: command-line flags, the YAML config file, and the
//! rules that merge and validate them (`shared/spec/CONFIG.md`).
//!
//! Owns [`Config`], the one validated value the rest of the worker reads.
//! Parsing and validation are pure (arguments and an environment in, a
//! `Config` or a [`ConfigError`] out), so every rule has a unit test; this
//! module must not open sockets, start threads or log secrets.

mod cli;
mod doctor;
mod error;
mod file;
mod help;
mod limits;
mod merge;
mod values;
mod volume;

use std::collections::BTreeMap;
use std::ffi::OsString;
use std::fmt;
use std::path::PathBuf;
use std::time::Duration;

pub use doctor::{DOCTOR_ENV_VARS, DoctorEnv, DoctorFormat, DoctorInput};
pub use error::{ConfigError, EXIT_CONFIG, EXIT_USAGE, ValueError, VolumeProblem};
pub use help::{help, version};
pub use limits::{ContainerLogs, DEFAULT_LOG_MAX_FILE, DEFAULT_LOG_MAX_SIZE, parse_size};
pub use merge::{API_KEY_ENV, check_line_breaks, worker_id};
pub use values::{parse_env_flag, parse_volume, split_list};
pub use volume::{
    Access, Consistency, MountOptions, Propagation, SelinuxLabel, VolumeConflict, VolumeMount,
    VolumeSource, VolumeWarning, check_conflicts, warnings as volume_warnings,
};

/// What the command line asks the binary to do.
// Built once per process and matched straight away: boxing a variant would
// only add noise where it is taken apart.
#[allow(clippy::large_enum_variant)]
#[derive(Debug, PartialEq, Eq)]
pub enum Command {
    /// Run the worker.
    Run(Config),
    /// Check the host and configuration, then exit (`oz-agent-worker doctor ...`).
    /// Problems with the worker id, API key or config file do not stop it:
    /// they travel in the input and are reported as failed checks.
    Doctor(DoctorInput),
    /// Print this help text to stdout and exit 0.
    Help(String),
    /// Print this version line to stdout and exit 0.
    Version(String),
}

/// Parses the command line (without argv[0]) and the config file it names,
/// into what to do. `env` reads the worker's own environment
/// (`WARP_API_KEY`, `-e KEY`, file entries without a value, `HOME` for a
/// `~/` config path); it is a parameter so tests stay pure.
pub fn parse(
    args: Vec<OsString>,
    env: &dyn Fn(&str) -> Option<String>,
) -> Result<Command, ConfigError> {
    let mut flags = match cli::parse_args(args, env)? {
        cli::Parsed::Help => return Ok(Command::Help(help())),
        cli::Parsed::Version => return Ok(Command::Version(version())),
        cli::Parsed::Flags(flags) => *flags,
    };
    if flags.doctor {
        if let Some(e) = flags.deferred.take() {
            return Err(e);
        }
        return Ok(Command::Doctor(doctor::parse(flags, env)));
    }
    if flags.doctor_format.is_some() {
        return Err(ConfigError::DoctorOnlyFlag("--format"));
    }
    // In the Go worker's order: what its flag parser checks (the API key),
    // then the file, then what it checks while merging.
    let api_key = merge::api_key(&flags, env)?;
    let file = match &flags.config_file {
        Some(path) => file::load(&expand_home(path, env))?,
        None => file::FileConfig::default(),
    };
    if let Some(e) = flags.deferred.take() {
        return Err(e);
    }
    merge::merge(flags, api_key, file, env).map(Command::Run)
}

/// Builds the [`Config`] that config-file text alone yields (no flags, no
/// API key): the same strict decode the `--config-file` loader uses, then
/// the same merge. `path` only names the file in errors; `env` supplies
/// `environment` entries written without a value. Pure, so the file format
/// can be checked (and fuzzed) without touching the filesystem.
pub fn from_yaml(
    text: &str,
    path: &str,
    env: &dyn Fn(&str) -> Option<String>,
) -> Result<Config, ConfigError> {
    let file = file::decode(text, path)?;
    merge::merge(cli::Flags::default(), ApiKey::default(), file, env)
}

/// `~/x` → `$HOME/x`, as the Go worker's flag parser does for paths.
fn expand_home(path: &str, env: &dyn Fn(&str) -> Option<String>) -> String {
    match (path.strip_prefix("~/"), env("HOME")) {
        (Some(rest), Some(home)) if !home.is_empty() => {
            format!("{}/{rest}", home.trim_end_matches('/'))
        }
        _ => path.to_owned(),
    }
}

/// The API key. Its `Debug` and `Display` never show the value.
#[derive(Clone, PartialEq, Eq, Default)]
pub struct ApiKey(String);

impl ApiKey {
    /// Wraps a key.
    pub fn new(key: impl Into<String>) -> Self {
        Self(key.into())
    }
    /// The key itself, for the `Authorization` header only.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for ApiKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("ApiKey(<redacted>)")
    }
}

/// Log line format.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum LogFormat {
    /// Plain text, one line per record.
    #[default]
    Text,
    /// One JSON object per line.
    Json,
}

/// When to pull an image (`backend.docker.image_pull_policy`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum PullPolicy {
    /// Pull every time (the Go worker's behaviour).
    #[default]
    Always,
    /// Pull only when the image is not on the host.
    IfNotPresent,
    /// Never pull; a missing image fails the task.
    Never,
}

/// What a stop request (SIGTERM / SIGINT) does with running tasks
/// (`--on-shutdown`); SIGQUIT always drains.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum ShutdownMode {
    /// End every task (`graceful_shutdown`), as the Go worker does.
    #[default]
    Cancel,
    /// Wait for running tasks to finish (up to `drain_timeout` when set),
    /// then end the rest.
    Drain,
    /// Leave running task containers to the next worker process, which
    /// adopts them; report nothing for them.
    Detach,
}

impl ShutdownMode {
    /// The flag value.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Cancel => "cancel",
            Self::Drain => "drain",
            Self::Detach => "detach",
        }
    }
}

/// How this process shares a worker id and a daemon with others: its lease
/// and how often it looks for what a gone process left (hidden flags,
/// shrunk by tests).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Upkeep {
    /// How long this process's lease lasts after each renewal.
    pub lease_ttl: Duration,
    /// How often the reaper looks for leftovers and tasks to adopt.
    pub reap_interval: Duration,
}

impl Default for Upkeep {
    fn default() -> Self {
        Self {
            lease_ttl: DEFAULT_LEASE_TTL,
            reap_interval: DEFAULT_REAP_INTERVAL,
        }
    }
}

/// Options passed to every task container to harden it (our extension; none by default).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Hardening {
    /// OCI runtime, e.g. `runsc`.
    pub runtime: Option<String>,
    /// Network mode, e.g. `none` or a network name.
    pub network: Option<String>,
    /// `--security-opt` entries.
    pub security_opt: Vec<String>,
    /// Capabilities to drop.
    pub cap_drop: Vec<String>,
    /// Most processes the container may hold.
    pub pids_limit: Option<i64>,
    /// Run an init process as PID 1.
    pub init: Option<bool>,
}

/// Settings of the Docker backend. `Debug` shows environment names only.
#[derive(Clone, PartialEq, Eq)]
pub struct DockerConfig {
    /// Binds for every task container, flags first then the file's.
    pub volumes: Vec<VolumeMount>,
    /// Operator environment, resolved (name → value), flag beating file.
    /// Values are secrets.
    pub environment: BTreeMap<String, String>,
    /// Image for tasks that name none (default `ubuntu:22.04`).
    pub default_image: String,
    /// Replaces the orchestrator's agent sidecar image.
    pub sidecar_image: Option<String>,
    /// Registry prefix → replacement for every pulled image.
    pub registry_mirrors: BTreeMap<String, String>,
    /// When to pull.
    pub image_pull_policy: PullPolicy,
    /// Longest a task may run; `None` = no limit.
    pub task_timeout: Option<Duration>,
    /// Time between SIGTERM and SIGKILL when stopping a task container.
    pub stop_grace: Duration,
    /// Hardening options.
    pub hardening: Hardening,
    /// Bounds on container logs on the host.
    pub container_logs: ContainerLogs,
    /// Images pulled in the background at start (besides the default and
    /// sidecar images), flags first then the file's, without repeats.
    pub prefetch_images: Vec<String>,
    /// A directory of `docker save` archives loaded at start.
    pub image_archives: Option<PathBuf>,
    /// How long an unused sidecar volume is kept; `None` = forever.
    pub sidecar_retention: Option<Duration>,
    /// How long an unused task image this worker pulled is kept; `None`
    /// (the default) = forever.
    pub image_retention: Option<Duration>,
}

impl fmt::Debug for DockerConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // Environment values are secrets (tokens); a debug dump must not leak them.
        let environment: BTreeMap<&str, &str> = self
            .environment
            .keys()
            .map(|k| (k.as_str(), "<redacted>"))
            .collect();
        f.debug_struct("DockerConfig")
            .field("volumes", &self.volumes)
            .field("environment", &environment)
            .field("default_image", &self.default_image)
            .field("sidecar_image", &self.sidecar_image)
            .field("registry_mirrors", &self.registry_mirrors)
            .field("image_pull_policy", &self.image_pull_policy)
            .field("task_timeout", &self.task_timeout)
            .field("stop_grace", &self.stop_grace)
            .field("hardening", &self.hardening)
            .field("container_logs", &self.container_logs)
            .field("prefetch_images", &self.prefetch_images)
            .field("image_archives", &self.image_archives)
            .field("sidecar_retention", &self.sidecar_retention)
            .field("image_retention", &self.image_retention)
            .finish()
    }
}

impl Default for DockerConfig {
    fn default() -> Self {
        Self {
            volumes: Vec::new(),
            environment: BTreeMap::new(),
            default_image: DEFAULT_IMAGE.into(),
            sidecar_image: None,
            registry_mirrors: BTreeMap::new(),
            image_pull_policy: PullPolicy::Always,
            task_timeout: Some(DEFAULT_TASK_TIMEOUT),
            stop_grace: DEFAULT_STOP_GRACE,
            hardening: Hardening::default(),
            container_logs: ContainerLogs::default(),
            prefetch_images: Vec::new(),
            image_archives: None,
            sidecar_retention: Some(DEFAULT_SIDECAR_RETENTION),
            image_retention: None,
        }
    }
}

/// Where the agent sidecar is mounted in every task container (its
/// `entrypoint.sh` starts the agent): no operator volume may mount there.
pub const AGENT_MOUNT_PATH: &str = "/agent";
/// Image used when neither the assignment nor the config names one.
pub const DEFAULT_IMAGE: &str = "ubuntu:22.04";
/// Default `sidecar_retention`: a week unused.
pub const DEFAULT_SIDECAR_RETENTION: Duration = Duration::from_secs(7 * 24 * 3600);
/// Default orchestrator endpoint.
pub const DEFAULT_WEBSOCKET_URL: &str = "wss://oz.warp.dev/api/v1/selfhosted/worker/ws";
/// Default Warp server root.
pub const DEFAULT_SERVER_ROOT_URL: &str = "https://app.warp.dev";
/// Default `task_timeout`.
pub const DEFAULT_TASK_TIMEOUT: Duration = Duration::from_secs(8 * 3600);
/// Default grace between SIGTERM and SIGKILL.
pub const DEFAULT_STOP_GRACE: Duration = Duration::from_secs(10);
/// Default `shutdown_timeout`: inside the 10 s `docker stop` gives by default.
pub const DEFAULT_SHUTDOWN_TIMEOUT: Duration = Duration::from_secs(9);
/// Default lease expiry.
pub const DEFAULT_LEASE_TTL: Duration = Duration::from_secs(30);
/// Shortest lease that means anything with the daemon's whole-second clock.
pub const MIN_LEASE_TTL: Duration = Duration::from_secs(3);
/// Default time between reaper passes (a pass also comes as soon as the
/// lease of a process that owns tasks here runs out).
pub const DEFAULT_REAP_INTERVAL: Duration = Duration::from_secs(30);

/// Everything the worker needs to run, validated.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Config {
    /// This worker's id (never starts with `warp`).
    pub worker_id: String,
    /// The Oz API key.
    pub api_key: ApiKey,
    /// Orchestrator WebSocket endpoint.
    pub websocket_url: String,
    /// Warp server root, passed to the agent.
    pub server_root_url: String,
    /// Session-sharing server, passed to the agent when set.
    pub session_sharing_server_url: Option<String>,
    /// Log level.
    pub log_level: log::LevelFilter,
    /// Log format.
    pub log_format: LogFormat,
    /// Remove task containers when they end.
    pub cleanup: bool,
    /// Most tasks at once; 0 = unlimited.
    pub max_concurrent_tasks: usize,
    /// Most bytes of assignment frames held by claimed tasks; 0 = no cap.
    pub max_in_flight_bytes: usize,
    /// Passed to the agent as `--idle-on-complete`.
    pub idle_on_complete: Option<String>,
    /// How long shutdown waits for running tasks before cancelling them (0 = not at
    /// all, or without limit in [`ShutdownMode::Drain`]).
    pub drain_timeout: Duration,
    /// What SIGTERM / SIGINT does with running tasks.
    pub on_shutdown: ShutdownMode,
    /// Longest a stop takes after any drain: status messages first, then the
    /// containers' stops share what is left.
    pub shutdown_timeout: Duration,
    /// Lease and reaper timings.
    pub upkeep: Upkeep,
    /// Docker backend settings.
    pub docker: DockerConfig,
}

#[cfg(test)]
mod tests;
