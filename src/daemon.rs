//! The dispatcher and the connection, wired together, and the shutdown
//! sequence of PROTOCOL.md in the mode asked for: the part of the running
//! worker that knows neither Docker nor the process around it. The whole
//! process (start-up order, Docker, lease, reaper, metrics, signals) is
//! [`crate::worker`]'s, whose module doc also lists every thread the
//! process starts.
//!
//! A stop fits a time budget (`shutdown_timeout`, 9 s by default, inside
//! the 10 s `docker stop` gives): after any drain, every task's
//! `graceful_shutdown` is sent and acknowledged first, then the containers'
//! stops share what is left, so no container's stop grace outlives the
//! worker. A detach sends nothing for running tasks and leaves their
//! containers to the next worker process.
//!
//! Owns the order of start-up and shutdown and nothing else: it does not know
//! how a task runs (a [`TaskRunner`] is handed in) nor how the socket works.
//! [`crate::worker::run`] builds the Docker runner, starts a [`Daemon`],
//! waits for a signal and calls [`Daemon::shutdown_in`]; tests start one
//! in-process with a fake runner against the stand-in orchestrator.

use std::fmt;
use std::sync::Arc;
use std::time::{Duration, Instant};

use log::{info, warn};

use crate::config::{Config, ShutdownMode};
use crate::connection::{self, ConnectionHandle, InboundHandler, Settings};
use crate::dispatch::{DispatchSettings, Dispatcher};
use crate::events::DispatchObserver;
use crate::outbox::Outbox;
use crate::task::{CancelCause, TaskOutcome, TaskRunner};
use crate::wire::Inbound;

/// Longest a shutdown waits for the orchestrator to acknowledge the tasks'
/// terminal messages before stopping their containers anyway.
const REPORT_WINDOW: Duration = Duration::from_secs(2);
/// Kept at the end of the budget, after the containers' stops, for removing
/// them and closing the connection.
const AFTER_STOPS: Duration = Duration::from_secs(2);
/// Kept at the very end of the budget for the Close handshake.
const CLOSE_WINDOW: Duration = Duration::from_millis(500);

/// Why the worker could not start.
#[derive(Debug)]
pub enum StartupError {
    /// `--web-socket-url` is not a ws:// or wss:// URL.
    Url(connection::UrlError),
    /// The connection thread could not start.
    Connection(connection::SpawnError),
}

impl fmt::Display for StartupError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Url(e) => write!(f, "invalid --web-socket-url: {e}"),
            Self::Connection(e) => write!(f, "{e}"),
        }
    }
}

impl std::error::Error for StartupError {}

/// Timings that tests shrink; production uses [`Timings::default`].
#[derive(Debug, Clone)]
pub struct Timings {
    /// Adjusts the connection settings (ping interval, backoff…).
    pub connection: fn(&mut Settings),
}

impl Default for Timings {
    fn default() -> Self {
        Self { connection: |_| {} }
    }
}

/// What shutdown achieved.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ShutdownReport {
    /// Tasks still active when shutdown gave up waiting for them.
    pub tasks_left: usize,
    /// Status messages the orchestrator never acknowledged.
    pub unacknowledged: usize,
    /// Close 1000 was sent and answered.
    pub closed_cleanly: bool,
}

/// A started worker.
pub struct Daemon {
    dispatcher: Dispatcher,
    connection: ConnectionHandle,
    outbox: Outbox,
    runner: Arc<dyn TaskRunner>,
    drain_timeout: Duration,
    shutdown_timeout: Duration,
    on_shutdown: ShutdownMode,
}

struct Handler {
    dispatcher: Dispatcher,
    on_connection: Option<Box<dyn Fn(ConnectionEvent) + Send>>,
}

/// What happened to the connection, for metrics and health.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ConnectionEvent {
    /// A WebSocket to the orchestrator is open.
    Connected,
    /// The open connection was lost (a reconnect follows).
    Lost,
    /// A dial failed (a retry follows).
    DialFailed,
}

impl InboundHandler for Handler {
    fn on_message(&mut self, msg: Inbound) {
        self.dispatcher.handle(msg);
    }
    fn on_connection_change(&mut self, connected: bool) {
        if let Some(f) = &self.on_connection {
            f(if connected {
                ConnectionEvent::Connected
            } else {
                ConnectionEvent::Lost
            });
        }
    }
    fn on_dial_failed(&mut self) {
        if let Some(f) = &self.on_connection {
            f(ConnectionEvent::DialFailed);
        }
    }
}

/// Optional hooks for metrics and health.
#[derive(Default)]
pub struct Hooks {
    /// Sees every task lifecycle event.
    pub observer: Option<Arc<dyn DispatchObserver>>,
    /// Called when the connection comes up, goes down, or a dial fails.
    pub on_connection: Option<Box<dyn Fn(ConnectionEvent) + Send>>,
    /// Runs once the dispatcher exists, before the first connection (the
    /// start-up adoption of tasks left by an earlier worker process).
    pub before_connect: Option<BeforeConnect>,
}

/// See [`Hooks::before_connect`].
pub type BeforeConnect = Box<dyn FnOnce(&Dispatcher) + Send>;

impl Daemon {
    /// Starts the dispatcher and the connection thread.
    pub fn start(
        config: &Config,
        runner: Arc<dyn TaskRunner>,
        env: &dyn Fn(&str) -> Option<String>,
        timings: Timings,
        hooks: Hooks,
    ) -> Result<Self, StartupError> {
        let mut settings = Settings::new(
            &config.websocket_url,
            config.worker_id.clone(),
            config.api_key.clone(),
            env,
        )
        .map_err(StartupError::Url)?;
        (timings.connection)(&mut settings);
        let outbox = Outbox::new();
        let settings_for_dispatch = DispatchSettings {
            worker_id: config.worker_id.clone(),
            max_concurrent_tasks: config.max_concurrent_tasks,
            max_in_flight_bytes: config.max_in_flight_bytes,
            task_timeout: config.docker.task_timeout,
        };
        let dispatcher = match hooks.observer {
            Some(observer) => Dispatcher::start_observed(
                settings_for_dispatch,
                outbox.clone(),
                runner.clone(),
                observer,
            ),
            None => Dispatcher::start(settings_for_dispatch, outbox.clone(), runner.clone()),
        };
        if let Some(f) = hooks.before_connect {
            f(&dispatcher);
        }
        let handler = Handler {
            dispatcher: dispatcher.clone(),
            on_connection: hooks.on_connection,
        };
        let connection = connection::spawn(settings, outbox.clone(), handler)
            .map_err(StartupError::Connection)?;
        info!(
            "worker {} started: up to {} task(s) at once",
            config.worker_id,
            match config.max_concurrent_tasks {
                0 => "unlimited".to_owned(),
                n => n.to_string(),
            }
        );
        Ok(Self {
            dispatcher,
            connection,
            outbox,
            runner,
            drain_timeout: config.drain_timeout,
            shutdown_timeout: config.shutdown_timeout,
            on_shutdown: config.on_shutdown,
        })
    }

    /// The dispatcher (for tests and metrics).
    pub fn dispatcher(&self) -> &Dispatcher {
        &self.dispatcher
    }

    /// The status messages not yet acknowledged (for the metric of that name).
    pub fn outbox(&self) -> &Outbox {
        &self.outbox
    }

    /// True while connected to the orchestrator.
    pub fn is_connected(&self) -> bool {
        self.connection.is_connected()
    }

    /// The shutdown `--on-shutdown` asks for (see [`Daemon::shutdown_in`]).
    pub fn shutdown(self) -> ShutdownReport {
        let mode = self.on_shutdown;
        self.shutdown_in(mode)
    }

    /// PROTOCOL.md's shutdown in `mode`: reject new work; wait for running
    /// tasks when draining; then either report every task `graceful_shutdown`
    /// (acknowledged first) and stop its container within what is left of
    /// the budget, or detach (leave the containers running, report nothing
    /// for them); deliver every status message; Close 1000.
    pub fn shutdown_in(self, mode: ShutdownMode) -> ShutdownReport {
        self.dispatcher.stop_accepting();
        self.drain(mode);
        let end = Instant::now() + self.shutdown_timeout;
        let before_close = end.checked_sub(CLOSE_WINDOW).unwrap_or(end);
        let active = self.dispatcher.active_count();
        if mode == ShutdownMode::Detach {
            if active > 0 {
                info!("detaching: leaving {active} running task(s) to the next worker process");
            }
            // Tasks whose container has not started yet cannot be left
            // behind: they end as in a cancel, reported `graceful_shutdown`.
            self.dispatcher
                .cancel_all_by(CancelCause::Detach, before_close);
        } else if active > 0 {
            let reported = self
                .dispatcher
                .report_all_now(&TaskOutcome::Cancelled(CancelCause::Shutdown));
            info!("stopping {active} running task(s); {reported} reported first");
            let window = REPORT_WINDOW.min(end.saturating_duration_since(Instant::now()));
            if !self.outbox.wait_empty(window) {
                warn!(
                    "the orchestrator has not acknowledged every status message within {}s; stopping the containers anyway",
                    window.as_secs()
                );
            }
            let stop_by = end.checked_sub(AFTER_STOPS).unwrap_or(end);
            self.dispatcher
                .cancel_all_by(CancelCause::Shutdown, stop_by);
        }
        let left = before_close.saturating_duration_since(Instant::now());
        let tasks_left = if self.dispatcher.wait_idle(left) {
            0
        } else {
            let left = self.dispatcher.active_count();
            warn!("{left} task(s) did not finish cleaning up in time");
            left
        };
        let report = self
            .connection
            .finish(before_close.max(Instant::now() + CLOSE_WINDOW));
        // Messages read during the flush free their tasks' containers now.
        self.runner.settle(end.max(Instant::now() + CLOSE_WINDOW));
        if report.unacknowledged > 0 {
            warn!(
                "{} status message(s) could not be delivered before exit",
                report.unacknowledged
            );
        }
        info!("shutdown complete");
        ShutdownReport {
            tasks_left,
            unacknowledged: report.unacknowledged,
            closed_cleanly: report.closed_cleanly,
        }
    }

    /// Waits for running tasks to finish: up to `drain_timeout` when it is
    /// set, and in [`ShutdownMode::Drain`] without limit when it is not.
    fn drain(&self, mode: ShutdownMode) {
        let active = self.dispatcher.active_count();
        let limit = match (mode, self.drain_timeout.is_zero()) {
            (_, false) => Some(self.drain_timeout),
            (ShutdownMode::Drain, true) => None,
            _ => return,
        };
        if active == 0 {
            return;
        }
        match limit {
            Some(d) => info!("draining: waiting up to {d:?} for {active} running task(s)"),
            None => info!("draining: waiting for {active} running task(s) to finish"),
        }
        self.dispatcher.wait_idle(limit.unwrap_or(Duration::MAX));
    }
}
