//! The `run` command: everything `main` starts for a working worker.
//!
//! Owns start-up order and the one-line start-up errors: logging and secret
//! masking first, then Docker (discovery, ping, platform, orphan reaping),
//! metrics, the [`Daemon`], and finally the wait for SIGTERM/SIGINT and the
//! shutdown. It must not contain task or protocol logic.

use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use log::{error, info, warn};

use crate::config::Config;
use crate::daemon::{ConnectionEvent, Daemon, Hooks, StartupError, Timings};
use crate::docker::{Docker, DockerError, discovery};
use crate::execute::{DockerRunner, RunnerSettings, reaper};
use crate::metrics::{self, Health, Metrics, ReconnectReason, WorkerInfo};
use crate::{logging, signals};

/// How often the reaper looks for orphans while running.
const REAP_INTERVAL: Duration = Duration::from_secs(60);
/// Containers younger than this are never reaped by the periodic pass.
const REAP_GRACE: Duration = Duration::from_secs(120);
/// How often Docker is pinged for `/readyz`.
const DOCKER_PING_INTERVAL: Duration = Duration::from_secs(15);

/// Why `run` could not start.
#[derive(Debug)]
enum RunError {
    Docker(DockerError),
    Metrics(String),
    Startup(StartupError),
}

impl fmt::Display for RunError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Docker(e) => write!(f, "{e}"),
            Self::Metrics(e) => write!(f, "metrics: {e}"),
            Self::Startup(e) => write!(f, "{e}"),
        }
    }
}

/// Runs the worker until a shutdown signal; returns the process exit code.
pub fn run(config: Config) -> i32 {
    logging::init(config.log_level, config.log_format);
    logging::register_secret_forever(config.api_key.expose());
    for value in config.docker.environment.values() {
        logging::register_secret_forever(value);
    }
    warn_about_volumes(&config);
    match start_and_wait(&config) {
        Ok(()) => 0,
        Err(e) => {
            error!("{e}");
            1
        }
    }
}

/// Named volumes and missing host paths (the operator may have meant
/// otherwise). Host paths are judged only where this filesystem is likely
/// the Docker host's: outside a container, or beside the daemon's data
/// directory. A worker container given only the socket cannot tell.
fn warn_about_volumes(config: &Config) {
    let here = |p: &str| std::path::Path::new(p).exists();
    let host_visible =
        !(here("/.dockerenv") || here("/run/.containerenv")) || here("/var/lib/docker");
    let exists = |path: &str| {
        host_visible
            .then(|| std::path::Path::new(path).try_exists().ok())
            .flatten()
    };
    for warning in crate::config::volume_warnings(&config.docker.volumes, &exists) {
        warn!("{warning}");
    }
}

fn start_and_wait(config: &Config) -> Result<(), RunError> {
    let env = |k: &str| std::env::var(k).ok();
    let target = discovery::from_process_env().map_err(RunError::Docker)?;
    let docker = Docker::connect(&target).map_err(RunError::Docker)?;
    let platform = docker.platform().map_err(RunError::Docker)?;
    info!(
        "Docker at {} answers (API {}, {platform})",
        docker.endpoint(),
        docker.api_version()
    );
    let health = Health::default();
    health.docker_ok();

    let runner = Arc::new(DockerRunner::new(
        docker.clone(),
        RunnerSettings::from_config(config, platform),
    ));
    match reaper::reap(&docker, &config.worker_id, &|_| false) {
        Ok(r) if r.containers + r.volumes > 0 => info!(
            "removed leftovers of an earlier run: {} container(s), {} volume(s)",
            r.containers, r.volumes
        ),
        Ok(_) => {}
        Err(e) => warn!("could not look for leftovers of an earlier run: {e}"),
    }
    let _reaper = runner.spawn_reaper(REAP_INTERVAL, REAP_GRACE);
    spawn_docker_pinger(docker, health.clone());

    let metrics = Metrics::new(
        WorkerInfo {
            version: env!("CARGO_PKG_VERSION").into(),
            backend: "docker".into(),
            worker_id: config.worker_id.clone(),
        },
        config.max_concurrent_tasks,
    );
    let _server =
        match metrics::config_from_env(&env).map_err(|e| RunError::Metrics(e.to_string()))? {
            Some(addr) => {
                let server = metrics::serve(addr.to_string(), metrics.clone(), health.clone())
                    .map_err(|e| RunError::Metrics(format!("cannot listen on {addr}: {e}")))?;
                info!(
                    "serving /metrics, /healthz and /readyz on {}",
                    server.local_addr()
                );
                Some(server)
            }
            None => None,
        };

    let (m, h) = (metrics.clone(), health.clone());
    let hooks = Hooks {
        observer: Some(Arc::new(metrics)),
        on_connection: Some(Box::new(move |event| match event {
            ConnectionEvent::Connected => {
                m.set_connected(true);
                h.set_connected(true);
            }
            ConnectionEvent::Lost => {
                m.set_connected(false);
                h.set_connected(false);
                m.reconnect(ReconnectReason::RemoteClose);
            }
            ConnectionEvent::DialFailed => m.reconnect(ReconnectReason::DialFailed),
        })),
    };
    let daemon = Daemon::start(config, runner, &env, Timings::default(), hooks)
        .map_err(RunError::Startup)?;

    let (tx, rx) = crossbeam_channel::bounded(1);
    signals::watch(move |signal| {
        let _ = tx.send(signal);
    });
    let _ = rx.recv();
    let report = daemon.shutdown();
    if report.tasks_left > 0 || report.unacknowledged > 0 {
        warn!(
            "exiting with {} task(s) still cleaning up and {} undelivered status message(s)",
            report.tasks_left, report.unacknowledged
        );
    }
    Ok(())
}

fn spawn_docker_pinger(docker: Docker, health: Health) {
    let _ = std::thread::Builder::new()
        .name("docker-ping".into())
        .spawn(move || {
            loop {
                std::thread::sleep(DOCKER_PING_INTERVAL);
                match docker.ping() {
                    Ok(()) => health.docker_ok(),
                    Err(e) => warn!("Docker did not answer a ping: {e}"),
                }
            }
        });
}
