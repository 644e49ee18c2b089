//! The running worker: wires the dispatcher to the connection thread and runs
//! the shutdown sequence of PROTOCOL.md.
//!
//! Owns the order of start-up and shutdown and nothing else: it does not know
//! how a task runs (a [`TaskRunner`] is handed in) nor how the socket works.
//! `main` builds the Docker runner, starts a [`Daemon`], waits for a signal
//! and calls [`Daemon::shutdown`]; tests start one in-process with a fake
//! runner against the stand-in orchestrator.

use std::fmt;
use std::sync::Arc;
use std::time::{Duration, Instant};

use log::{info, warn};

use crate::config::Config;
use crate::connection::{self, ConnectionHandle, InboundHandler, Settings};
use crate::dispatch::{DispatchObserver, DispatchSettings, Dispatcher};
use crate::outbox::Outbox;
use crate::task::{CancelCause, TaskRunner};
use crate::wire::Inbound;

/// How long shutdown waits, after cancelling, for tasks to clean up, beyond
/// the containers' stop grace period.
const CLEANUP_ALLOWANCE: Duration = Duration::from_secs(20);
/// How long shutdown keeps trying to deliver the last status messages.
const FLUSH_WINDOW: Duration = Duration::from_secs(10);

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
    drain_timeout: Duration,
    stop_grace: Duration,
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
}

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
            task_timeout: config.docker.task_timeout,
        };
        let dispatcher = match hooks.observer {
            Some(observer) => {
                Dispatcher::start_observed(settings_for_dispatch, outbox.clone(), runner, observer)
            }
            None => Dispatcher::start(settings_for_dispatch, outbox.clone(), runner),
        };
        let handler = Handler {
            dispatcher: dispatcher.clone(),
            on_connection: hooks.on_connection,
        };
        let connection =
            connection::spawn(settings, outbox, handler).map_err(StartupError::Connection)?;
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
            drain_timeout: config.drain_timeout,
            stop_grace: config.docker.stop_grace,
        })
    }

    /// The dispatcher (for tests and metrics).
    pub fn dispatcher(&self) -> &Dispatcher {
        &self.dispatcher
    }

    /// True while connected to the orchestrator.
    pub fn is_connected(&self) -> bool {
        self.connection.is_connected()
    }

    /// PROTOCOL.md's shutdown: reject new work, (optionally drain,) cancel
    /// and clean up every task, deliver every status message, Close 1000.
    pub fn shutdown(self) -> ShutdownReport {
        self.dispatcher.stop_accepting();
        let active = self.dispatcher.active_count();
        if !self.drain_timeout.is_zero() && active > 0 {
            info!(
                "draining: waiting up to {:?} for {active} running task(s)",
                self.drain_timeout
            );
            self.dispatcher.wait_idle(self.drain_timeout);
        }
        let active = self.dispatcher.active_count();
        if active > 0 {
            info!("stopping {active} running task(s)");
        }
        self.dispatcher.cancel_all(CancelCause::Shutdown);
        let tasks_left = if self
            .dispatcher
            .wait_idle(self.stop_grace + CLEANUP_ALLOWANCE)
        {
            0
        } else {
            let left = self.dispatcher.active_count();
            warn!("{left} task(s) did not finish cleaning up in time");
            left
        };
        let report = self.connection.finish(Instant::now() + FLUSH_WINDOW);
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
}
