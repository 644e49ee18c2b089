//! The `run` command: everything `main` starts for a working worker. This
//! is the top of the runtime (start here); [`crate::daemon`] is one part of
//! it, the dispatcher and the connection with their shutdown sequence, the
//! part tests start on its own.
//!
//! Owns start-up order and the one-line start-up errors: logging and secret
//! masking first, then Docker (discovery, ping, platform), the task network
//! (unless the operator named one), this process's
//! instance id and lease, metrics, the image archives to load (before the
//! first claim), the [`Daemon`] (whose dispatcher first
//! adopts what an earlier worker process left running), the reaper, the
//! Docker health watch that turns assignments away while the daemon does
//! not answer, and finally the wait for a stop signal, the shutdown in the
//! mode it asks for, and the lease's release. It must not contain task or
//! protocol logic.
//!
//! # Every thread the process starts
//!
//! Kept here so one look shows them all; a new thread gets a row. No
//! thread name holds outside text.
//!
//! | thread | started in | owns | receives / sends | ends |
//! | --- | --- | --- | --- | --- |
//! | main | `main.rs`, this file | start-up, then the shutdown sequence | waits on a channel for the first stop signal from `signals` | when `run` returns |
//! | `signals` | `signals.rs` | the stop-signal rule ([`crate::signals::react`]) | `sigwait` on SIGTERM/SIGINT/SIGQUIT/SIGHUP; sends the first stop signal to main | with the process; a repeated stop signal exits it (code 130) |
//! | `connection` | `connection.rs` | the WebSocket to the orchestrator: dial, backoff, ping/pong, acks | reads frames and hands them to the dispatcher (`Daemon`'s handler); writes the [`crate::outbox`]'s messages, woken by the outbox through a socket pair; sends its finish report to [`Daemon::shutdown_in`] | after `finish` (shutdown): the outbox is empty or the deadline passed, Close sent |
//! | `task-slot-N` (one per slot) | `dispatch/pool.rs` | one claimed task at a time, run to its terminal message | receives jobs on the pool's bounded channel; calls the task runner (Docker); queues status messages in the outbox | when the dispatcher, the channel's sender, is dropped (with the process) |
//! | `task` (one per task) | `dispatch/pool.rs` | one task, without `max_concurrent_tasks` or when adopted | like a slot, for its one job | when the task's terminal message is queued |
//! | `task-deadlines` | `deadline.rs` | the task timeouts | a list of deadlines under a mutex/condvar; fires [`crate::task::CancelToken`]s | with the process |
//! | `docker-ping` | `worker/docker_watch.rs` | the Docker health watch | pings Docker and probes its disk; flips the dispatcher's Docker/disk switches, `/readyz` and `docker_up` | with the process |
//! | `reaper` | `execute/reaper.rs` | the periodic reaper and retention passes | calls Docker; hands adopted tasks to the dispatcher; a stop channel | when its handle is dropped (start of shutdown) |
//! | `lease` | `execute/lease/handle.rs` | renewing this process's lease every `ttl / 3` | calls Docker; a stop channel | at the lease's release (end of shutdown) |
//! | `prefetch` | `execute/prefetch.rs` | warming the configured images at start | calls Docker; sets the prefetch gauge; a cancel token | when every image is done, or its handle is dropped (shutdown) |
//! | `cleanup` | `execute/cleanup.rs` | removing ended tasks' containers and volumes once their messages are delivered | receives leftovers on an unbounded channel; calls Docker | when the runner, the only sender, is dropped |
//! | `pull-watch` (one per pull) | `execute/image/stall.rs` | the stall timeout of one image pull | receives progress beats on a channel; aborts the pull once when they stop | when the pull ends, or after it fired |
//! | `metrics-http` | `metrics/server.rs` | `/metrics`, `/healthz`, `/readyz` (only when configured) | accepts and serves TCP clients, reading [`Metrics`] and [`Health`] | when its handle is dropped (end of `run`) |
//! | `otlp-metrics` | `telemetry.rs` (via `telemetry/export.rs`) | pushing metric snapshots (only when configured) | reads [`Metrics`]; sends over HTTP to the collector or prints; a stop channel with the final flush's budget | after the final flush (end of `run`) |
//! | `otlp-traces` | `telemetry.rs` (via `telemetry/export.rs`) | pushing task spans (only when configured) | receives spans, and the final flush request, on the tracer's queue; sends over HTTP or prints | after the final flush (end of `run`) |
//! | `mirror-probe` | `preflight.rs` | checking the daemon's registry mirrors once at start | connects to each mirror; logs what it finds | when every mirror answered or timed out |
//! | `net-dns` (one per lookup) | `net/tcp.rs` | one DNS lookup, so a hung resolver costs only its timeout | sends the addresses on a channel the caller waits on with a deadline | when the lookup returns (possibly after the caller gave up) |
//! | unnamed (two per helper call) | `docker/auth/helper.rs` | reading a credential helper's stdout or stderr | sends the bytes on a channel | at the pipe's end |

use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use log::{debug, error, info, warn};

use crate::config::{Config, ShutdownMode};
use crate::daemon::{ConnectionEvent, Daemon, Hooks, StartupError, Timings};
use crate::dispatch::Dispatcher;
use crate::docker::{Docker, DockerError, discovery};
use crate::execute::retention::RetentionSettings;
use crate::execute::{DockerRunner, RunnerSettings, lease, prefetch, reaper};
use crate::metrics::{self, Health, Metrics, ReconnectReason, Resource, WorkerInfo};
use crate::signals::Signal;
use crate::task_network::{self, TASK_NETWORK};
use crate::telemetry::{self, TaskTelemetry, Telemetry};
use crate::{archives, build_info, logging, preflight, signals};

mod docker_watch;

/// Objects younger than this are spared by the reaper where a live process
/// may still be making them.
const REAP_GRACE: Duration = Duration::from_secs(120);

/// Why `run` could not start. Each variant's cause is printed in its
/// `Display` (it is the one line the operator reads), so none is a `source()`.
#[derive(Debug)]
enum RunError {
    Docker(DockerError),
    Lease(DockerError),
    /// The Prometheus variables are unusable.
    MetricsEnv(metrics::EnvError),
    /// `/metrics` cannot listen on the address asked for.
    MetricsListen {
        addr: metrics::ListenAddr,
        error: std::io::Error,
    },
    Preflight(preflight::Problem),
    /// The OTLP variables are unusable.
    TelemetryConfig(telemetry::TelemetryConfigError),
    /// An OTLP exporter cannot start.
    TelemetryStart(telemetry::StartError),
    TaskNetwork(task_network::TaskNetworkError),
    Startup(StartupError),
}

impl fmt::Display for RunError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Docker(e) => write!(f, "{e}"),
            Self::Lease(e) => write!(
                f,
                "cannot create this worker's lease volume on the Docker daemon: {e}"
            ),
            Self::MetricsEnv(e) => write!(f, "metrics: {e}"),
            Self::MetricsListen { addr, error } => {
                write!(f, "metrics: cannot listen on {addr}: {error}")
            }
            Self::Preflight(e) => write!(f, "{e}"),
            Self::TelemetryConfig(e) => write!(f, "telemetry: {e}"),
            Self::TelemetryStart(e) => write!(f, "telemetry: {e}"),
            Self::TaskNetwork(e) => write!(f, "{e}"),
            Self::Startup(e) => write!(f, "{e}"),
        }
    }
}

/// Runs the worker until a shutdown signal; returns the process exit code.
pub fn run(config: Config) -> i32 {
    logging::init(config.log_level, config.log_format);
    logging::set_worker_id(&config.worker_id);
    info!("starting oz-agent-worker {}", build_info::this().describe());
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

/// Starts the worker in its phases, waits for a stop signal and stops it.
/// The bindings live here, in start-up order, so that on an early return
/// (and at the end) they are dropped in the reverse of it: the metrics
/// server outlives the final telemetry flush, the lease outlives the daemon.
fn start_and_wait(config: &Config) -> Result<(), RunError> {
    let env = |k: &str| std::env::var(k).ok();
    // Before anything could log them: OTLP headers usually carry an API key.
    register_otlp_secrets(&env);
    let telemetry_config = telemetry::config::from_env(&env).map_err(RunError::TelemetryConfig)?;
    let (docker, platform) = connect_docker()?;
    let config = daemon_side_config(&docker, config, &env)?;
    let config = &config;
    let health = Health::default();
    health.docker_ok();
    let (runner, lease) = start_runner(&docker, config, platform)?;

    let info = WorkerInfo {
        version: build_info::this().full_version(),
        backend: "docker".into(),
        worker_id: config.worker_id.clone(),
    };
    let metrics = new_metrics(&info, config, &env);
    for line in &telemetry_config.warnings {
        warn!("{line}");
    }
    let telemetry = Telemetry::start(&telemetry_config, &metrics, &info, &env)
        .map_err(RunError::TelemetryStart)?;
    for line in &telemetry.described {
        info!("{line}");
    }
    let tracer = telemetry.tracer().cloned();
    telemetry::install(metrics.clone(), tracer.clone());
    let _server = serve_metrics(&env, &metrics, &health)?;

    // Before the first claim, with /healthz already answering: a load of
    // gigabytes takes a while (see archives.rs; failures are logged, never fatal).
    if let Some(dir) = &config.docker.image_archives {
        let _ = archives::load_dir(&docker, dir);
    }

    let hooks = daemon_hooks(&metrics, &health, tracer, &runner);
    let prefetching = start_prefetch(&runner, &metrics, config);
    let daemon = Daemon::start(config, runner.clone(), &env, Timings::default(), hooks)
        .map_err(RunError::Startup)?;
    let outbox = daemon.outbox().clone();
    metrics.set_unacknowledged_source(Arc::new(move || outbox.len()));
    let dispatcher = daemon.dispatcher().clone();
    let adopt: reaper::AdoptSink = Arc::new(move |t| dispatcher.adopt(t));
    let reaper = runner.spawn_reaper(adopt, config.upkeep.reap_interval, REAP_GRACE);
    docker_watch::spawn(
        docker,
        runner.clone(),
        health,
        daemon.dispatcher().clone(),
        metrics.clone(),
    );

    let mode = wait_for_stop(config);
    // No adoption while stopping: what is left goes to the next process.
    drop(reaper);
    drop(prefetching);
    stop(daemon, mode, lease, telemetry);
    Ok(())
}

/// Start-up: the Docker daemon this process talks to, and its platform.
fn connect_docker() -> Result<(Docker, String), RunError> {
    let target = discovery::from_process_env().map_err(RunError::Docker)?;
    let docker = Docker::connect(&target).map_err(RunError::Docker)?;
    let platform = docker.platform().map_err(RunError::Docker)?;
    info!(
        "Docker at {} answers (API {}, {platform})",
        docker.endpoint(),
        docker.api_version()
    );
    Ok((docker, platform))
}

/// Start-up: the configuration checked against the daemon, with the task
/// network filled in.
fn daemon_side_config(
    docker: &Docker,
    config: &Config,
    env: &dyn Fn(&str) -> Option<String>,
) -> Result<Config, RunError> {
    // The daemon's side of the configuration (runtime, network, profiles,
    // proxy, mirrors): refuse what would fail every task. See preflight.rs.
    let mut config = preflight::at_start(docker, config, env).map_err(RunError::Preflight)?;
    // Tasks are kept apart on the worker's own network unless the
    // operator named one (see task_network.rs).
    if config.docker.hardening.network.is_none() {
        match task_network::ensure(docker).map_err(RunError::TaskNetwork)? {
            task_network::Ensured::Created => info!(
                "created the task network {TASK_NETWORK}: task containers reach the outside but not each other"
            ),
            task_network::Ensured::Reused => {
                debug!("task containers join the network {TASK_NETWORK}")
            }
        }
        config.docker.hardening.network = Some(TASK_NETWORK.to_owned());
    }
    Ok(config)
}

/// Start-up: the task runner, under a new instance id, and its lease.
fn start_runner(
    docker: &Docker,
    config: &Config,
    platform: String,
) -> Result<(Arc<DockerRunner>, lease::LeaseHandle), RunError> {
    let instance = lease::new_instance_id();
    let runner = Arc::new(DockerRunner::new(
        docker.clone(),
        RunnerSettings::from_config(config, platform, instance.clone()),
    ));
    runner.set_retention(RetentionSettings::from_config(config));
    runner.clock().sync(docker).map_err(RunError::Lease)?;
    let lease = lease::acquire(runner.ownership()).map_err(RunError::Lease)?;
    info!(
        "this is worker process {instance} (lease renewed every {}s, expiring {}s after the last renewal)",
        (config.upkeep.lease_ttl / 3).as_secs(),
        config.upkeep.lease_ttl.as_secs()
    );
    Ok((runner, lease))
}

/// Start-up: the metrics, with the resource that describes this process.
fn new_metrics(
    info: &WorkerInfo,
    config: &Config,
    env: &dyn Fn(&str) -> Option<String>,
) -> Metrics {
    let (resource, problems) = Resource::build(info, build_info::VERSION, env);
    if let Some(line) = problems.warning() {
        warn!("{line}");
    }
    let metrics = Metrics::new(info.clone(), config.max_concurrent_tasks).with_resource(resource);
    metrics.set_docker_up(true);
    metrics
}

/// Start-up: `/metrics`, `/healthz` and `/readyz`, when configured.
fn serve_metrics(
    env: &dyn Fn(&str) -> Option<String>,
    metrics: &Metrics,
    health: &Health,
) -> Result<Option<metrics::ServerHandle>, RunError> {
    let Some(addr) = metrics::config_from_env(env).map_err(RunError::MetricsEnv)? else {
        return Ok(None);
    };
    let server = metrics::serve(addr.to_string(), metrics.clone(), health.clone())
        .map_err(|error| RunError::MetricsListen { addr, error })?;
    info!(
        "serving /metrics, /healthz and /readyz on {}",
        server.local_addr()
    );
    Ok(Some(server))
}

/// Start-up: what the daemon tells the rest of the worker — task
/// telemetry, the connection's state, and the first reaper pass.
fn daemon_hooks(
    metrics: &Metrics,
    health: &Health,
    tracer: Option<telemetry::Tracer>,
    runner: &Arc<DockerRunner>,
) -> Hooks {
    let (m, h) = (metrics.clone(), health.clone());
    let first_pass = runner.clone();
    Hooks {
        observer: Some(Arc::new(TaskTelemetry {
            metrics: metrics.clone(),
            tracer,
        })),
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
        // Before the first assignment can arrive, so one the orchestrator
        // sends again for an adopted task is recognised as running here.
        before_connect: Some(Box::new(move |dispatcher: &Dispatcher| {
            let d = dispatcher.clone();
            match reaper::pass(&first_pass, &move |t| d.adopt(t), REAP_GRACE) {
                Ok(r) if r.adopted + r.containers + r.volumes > 0 => info!(
                    "start-up: adopted {} task(s) left running by an earlier worker process; removed {} leftover container(s) and {} volume(s)",
                    r.adopted, r.containers, r.volumes
                ),
                Ok(_) => {}
                Err(e) => warn!("could not look for what an earlier run left: {e}"),
            }
        })),
    }
}

/// Start-up: the image prefetch, in the background while the worker
/// connects and claims (a task that needs an image being prefetched waits
/// for that pull).
fn start_prefetch(
    runner: &Arc<DockerRunner>,
    metrics: &Metrics,
    config: &Config,
) -> prefetch::PrefetchHandle {
    let warmth = prefetch::Warmth::default();
    let w = warmth.clone();
    metrics.set_prefetch_source(Arc::new(move || w.gauge()));
    prefetch::spawn(runner.clone(), prefetch::targets(&config.docker), warmth)
}

/// Waits for a stop signal; the shutdown mode it asks for.
fn wait_for_stop(config: &Config) -> ShutdownMode {
    let (tx, rx) = crossbeam_channel::bounded(1);
    signals::watch(move |signal| {
        let _ = tx.send(signal);
    });
    let signal = rx.recv().unwrap_or(Signal::Term);
    match signal {
        Signal::Quit => ShutdownMode::Drain,
        _ => config.on_shutdown,
    }
}

/// Shutdown: the daemon in `mode`, then the lease, then the last telemetry.
fn stop(daemon: Daemon, mode: ShutdownMode, lease: lease::LeaseHandle, telemetry: Telemetry) {
    let report = daemon.shutdown_in(mode);
    // Last: from here another process may take over what this one left.
    lease.release();
    if report.tasks_left > 0 || report.unacknowledged > 0 {
        warn!(
            "exiting with {} task(s) still cleaning up and {} undelivered status message(s)",
            report.tasks_left, report.unacknowledged
        );
    }
    // Last: the final metric values and queued spans go out once nothing
    // records any more (bounded by telemetry::FINAL_FLUSH).
    telemetry.flush_and_stop();
}

/// Masks every value of the OTLP header variables in log lines, decoded or
/// not, valid entry or not.
fn register_otlp_secrets(env: &dyn Fn(&str) -> Option<String>) {
    for var in [
        "OTEL_EXPORTER_OTLP_HEADERS",
        "OTEL_EXPORTER_OTLP_METRICS_HEADERS",
        "OTEL_EXPORTER_OTLP_TRACES_HEADERS",
    ] {
        for entry in env(var).unwrap_or_default().split(',') {
            if let Some((_, value)) = entry.split_once('=') {
                logging::register_secret_forever(value.trim());
                if let Some(decoded) = metrics::resource::percent_decode(value.trim()) {
                    logging::register_secret_forever(decoded.trim());
                }
            }
        }
    }
}
