//! Flags + config file + defaults → one validated [`Config`]. Precedence is
//! flag > file > default; `-e` overlays the file's `environment` (flag wins
//! on the same key); the file's `volumes` and `-v` are concatenated, in the
//! Go worker's order, and refused when two mount at one container path.
//!
//! Pure: the environment is passed in. Must not read files (the caller hands
//! over the decoded file) or log anything.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::Duration;

use super::cli::Flags;
use super::error::ConfigError;
use super::file::{DockerSection, EnvEntry, FileConfig};
use super::values::timeout_or_none;
use super::volume;
use super::{
    ApiKey, Config, ContainerLogs, DEFAULT_IMAGE, DEFAULT_LEASE_TTL, DEFAULT_REAP_INTERVAL,
    DEFAULT_SERVER_ROOT_URL, DEFAULT_SHUTDOWN_TIMEOUT, DEFAULT_SIDECAR_RETENTION,
    DEFAULT_STOP_GRACE, DEFAULT_TASK_TIMEOUT, DEFAULT_WEBSOCKET_URL, DockerConfig, Hardening,
    LogFormat, Upkeep,
};

/// The environment variable holding the API key when `--api-key` is absent.
pub const API_KEY_ENV: &str = "WARP_API_KEY";

/// The API key: `--api-key`, else `WARP_API_KEY`. Checked before the file is
/// read, as the Go worker's flag parser does.
pub(crate) fn api_key(
    flags: &Flags,
    env: &dyn Fn(&str) -> Option<String>,
) -> Result<ApiKey, ConfigError> {
    if let Some(key) = &flags.api_key {
        return Ok(key.clone());
    }
    env(API_KEY_ENV)
        .filter(|k| !k.is_empty())
        .map(ApiKey::new)
        .ok_or(ConfigError::MissingApiKey)
}

/// The worker id: flag, else file; required, and never `warp…`.
pub fn worker_id(flag: Option<&str>, file: Option<&str>) -> Result<String, ConfigError> {
    let id = flag
        .filter(|s| !s.is_empty())
        .or(file.filter(|s| !s.is_empty()))
        .ok_or(ConfigError::MissingWorkerId)?;
    if id.starts_with("warp") {
        return Err(ConfigError::ReservedWorkerId);
    }
    Ok(id.to_owned())
}

/// Builds the final config.
pub(crate) fn merge(
    flags: Flags,
    api_key: ApiKey,
    file: FileConfig,
    env: &dyn Fn(&str) -> Option<String>,
) -> Result<Config, ConfigError> {
    let worker_id = worker_id(flags.worker_id.as_deref(), file.worker_id.as_deref())?;
    let config = build(flags, worker_id, api_key, file, env);
    volume::check_conflicts(&config.docker.volumes).map_err(ConfigError::VolumeConflict)?;
    check_line_breaks(&config)?;
    Ok(config)
}

/// The settings that end up in a URL or an HTTP header (the handshake's
/// request line and `Authorization`, a proxy's `CONNECT`) or in labels:
/// a CR, LF or NUL in one would split a header line or a label, so it stops
/// the start, naming the setting (never its value: one is the API key).
pub fn check_line_breaks(config: &Config) -> Result<(), ConfigError> {
    let settings = [
        ("--web-socket-url", config.websocket_url.as_str()),
        ("--server-root-url", config.server_root_url.as_str()),
        (
            "--session-sharing-server-url",
            config.session_sharing_server_url.as_deref().unwrap_or(""),
        ),
        ("--api-key (or WARP_API_KEY)", config.api_key.expose()),
        ("--worker-id", config.worker_id.as_str()),
    ];
    match settings
        .iter()
        .find(|(_, value)| value.contains(['\r', '\n', '\0']))
    {
        Some((setting, _)) => Err(ConfigError::LineBreak(setting)),
        None => Ok(()),
    }
}

/// Builds the config around an already-decided worker id (the doctor passes
/// an empty one when it is missing or reserved, to check everything else).
pub(crate) fn build(
    flags: Flags,
    worker_id: String,
    api_key: ApiKey,
    file: FileConfig,
    env: &dyn Fn(&str) -> Option<String>,
) -> Config {
    let docker = merge_docker(&flags, file.backend.docker.unwrap_or_default(), env);
    Config {
        worker_id,
        api_key,
        websocket_url: flags
            .websocket_url
            .unwrap_or_else(|| DEFAULT_WEBSOCKET_URL.to_owned()),
        server_root_url: flags
            .server_root_url
            .unwrap_or_else(|| DEFAULT_SERVER_ROOT_URL.to_owned()),
        session_sharing_server_url: flags.session_sharing_server_url,
        log_level: flags.log_level.unwrap_or(log::LevelFilter::Info),
        log_format: flags
            .log_format
            .or(file.log_format.map(|c| c.0))
            .unwrap_or(LogFormat::Text),
        cleanup: !flags.no_cleanup && file.cleanup.unwrap_or(true),
        max_concurrent_tasks: flags
            .max_concurrent_tasks
            .or(file.max_concurrent_tasks.map(|c| c.0))
            .unwrap_or(0),
        max_in_flight_bytes: file
            .max_in_flight_bytes
            .map_or(crate::inflight::DEFAULT_CAP, |s| {
                usize::try_from(s.0).unwrap_or(usize::MAX)
            }),
        idle_on_complete: flags
            .idle_on_complete
            .or(file.idle_on_complete.map(|t| t.0.0)),
        drain_timeout: flags
            .drain_timeout
            .or(file.drain_timeout.map(|c| c.0))
            .unwrap_or(Duration::ZERO),
        on_shutdown: flags
            .on_shutdown
            .or(file.on_shutdown.map(|c| c.0))
            .unwrap_or_default(),
        shutdown_timeout: flags
            .shutdown_timeout
            .or(file.shutdown_timeout.map(|c| c.0))
            .unwrap_or(DEFAULT_SHUTDOWN_TIMEOUT),
        upkeep: Upkeep {
            lease_ttl: flags.lease_ttl.unwrap_or(DEFAULT_LEASE_TTL),
            reap_interval: flags.reap_interval.unwrap_or(DEFAULT_REAP_INTERVAL),
        },
        docker,
    }
}

fn merge_docker(
    flags: &Flags,
    file: DockerSection,
    env: &dyn Fn(&str) -> Option<String>,
) -> DockerConfig {
    let environment = environment(flags, file.environment, env);
    let prefetch_images = prefetch_images(flags, &file.prefetch_images);
    let hardening = Hardening {
        runtime: file.runtime.filter(|s| !s.is_empty()),
        network: file.network.filter(|s| !s.is_empty()),
        security_opt: file.security_opt,
        cap_drop: file.cap_drop,
        pids_limit: file.pids_limit,
        init: file.init,
    };
    let mut volumes: Vec<_> = file.volumes.into_iter().map(|c| c.0).collect();
    volumes.extend(flags.volumes.iter().cloned());

    DockerConfig {
        volumes,
        environment,
        default_image: flags
            .default_image
            .clone()
            .or(file.default_image.filter(|s| !s.is_empty()))
            .unwrap_or_else(|| DEFAULT_IMAGE.to_owned()),
        sidecar_image: flags
            .sidecar_image
            .clone()
            .or(file.sidecar_image.filter(|s| !s.is_empty())),
        registry_mirrors: file.registry_mirrors,
        image_pull_policy: flags
            .image_pull_policy
            .or(file.image_pull_policy.map(|c| c.0))
            .unwrap_or_default(),
        task_timeout: timeout_or_none(
            flags
                .task_timeout
                .or(file.task_timeout.map(|c| c.0))
                .unwrap_or(DEFAULT_TASK_TIMEOUT),
        ),
        stop_grace: flags
            .stop_grace
            .or(file.stop_grace.map(|c| c.0))
            .unwrap_or(DEFAULT_STOP_GRACE),
        hardening,
        container_logs: ContainerLogs::from_keys(
            file.container_log_max_size.map(|s| s.0),
            file.container_log_max_file.map(|c| c.0),
        ),
        prefetch_images,
        image_archives: flags
            .image_archives
            .clone()
            .or(file.image_archives.filter(|s| !s.is_empty()))
            .map(PathBuf::from),
        sidecar_retention: timeout_or_none(
            flags
                .sidecar_retention
                .or(file.sidecar_retention.map(|c| c.0))
                .unwrap_or(DEFAULT_SIDECAR_RETENTION),
        ),
        image_retention: flags
            .image_retention
            .or(file.image_retention.map(|c| c.0))
            .and_then(timeout_or_none),
    }
}

/// The file's `environment` (a name alone copies this process's value),
/// overlaid by `-e` (the flag wins on the same key).
fn environment(
    flags: &Flags,
    file: Vec<EnvEntry>,
    env: &dyn Fn(&str) -> Option<String>,
) -> BTreeMap<String, String> {
    let mut environment: BTreeMap<String, String> = file
        .into_iter()
        .map(|e| {
            let name = e.name.0.0;
            let value = match e.value {
                Some(v) => v.0,
                None => env(&name).unwrap_or_default(),
            };
            (name, value)
        })
        .collect();
    environment.extend(flags.env.iter().cloned());
    environment
}

/// `--prefetch-image` then the file's list, without blanks or repeats.
fn prefetch_images(flags: &Flags, file: &[String]) -> Vec<String> {
    let mut images: Vec<String> = Vec::new();
    for image in flags.prefetch_images.iter().chain(file) {
        if !image.is_empty() && !images.contains(image) {
            images.push(image.clone());
        }
    }
    images
}
