//! Claiming, rejecting and running tasks.
//!
//! Owns the registry of active tasks (task id → cancel token, execution id),
//! the capacity rule, whether new work is taken at all (not while shutting
//! down, nor while Docker does not answer), and the pool of threads that run
//! claimed tasks. It is fed decoded messages by the connection thread
//! ([`Dispatcher::handle`], which never blocks), answers through the
//! [`Outbox`], and hands each task to the [`TaskRunner`]. Tasks adopted from
//! an earlier worker process arrive through [`Dispatcher::adopt`] with their
//! work ready to run. It reports what happens through the
//! [`DispatchObserver`] of [`crate::events`], never to metrics or telemetry
//! directly. It must not touch sockets or Docker.
//!
//! Threads: with `max_concurrent_tasks = N > 0` there are exactly N pool
//! threads fed by a bounded channel of N jobs; a job is only sent after a slot
//! was reserved in the registry, so a claimed task never waits for a thread.
//! With `0` (unlimited) each claimed task gets its own thread, which ends with
//! the task: the pool grows with the load and shrinks back to nothing. An
//! adopted task always gets its own thread: it holds a slot in the registry
//! like any task, so the pool's threads never wait for one. A panic in a
//! task's thread ends that task with one `task_failed` and frees its slot;
//! a pool thread lives on. Thread names never carry outside text.
//!
//! Read in this order: this file (the handle and what it shares),
//! [`admission`] (claim or reject: the five reject rules, adoption),
//! [`registry`] (active tasks: cancelling, reporting, waiting), [`pool`]
//! (the threads), [`run`] (one task from start to its terminal message).

mod admission;
mod pool;
mod registry;
mod run;

use std::sync::Arc;
use std::sync::atomic::AtomicBool;
use std::time::{Duration, SystemTime};

use crossbeam_channel::Sender;

use crate::deadline::Deadlines;
use crate::events::DispatchObserver;
use crate::inflight::InFlight;
use crate::outbox::Outbox;
use crate::task::{CancelToken, TaskOutcome, TaskRunner};
use crate::wire::Outbound;

use registry::Registry;
use run::Job;

/// What the dispatcher needs to know.
#[derive(Debug, Clone)]
pub struct DispatchSettings {
    /// Sent in `task_claimed`.
    pub worker_id: String,
    /// Most tasks at once; 0 = unlimited.
    pub max_concurrent_tasks: usize,
    /// A task still running after this long is cancelled with
    /// [`CancelCause::Timeout`](crate::task::CancelCause::Timeout).
    pub task_timeout: Option<Duration>,
    /// Most bytes of assignment frames held by claimed tasks; 0 = no cap.
    pub max_in_flight_bytes: usize,
}

/// A task whose container an earlier worker process started: the work that
/// watches it to its end, ready to run.
pub struct AdoptedTask {
    /// Its task id.
    pub task_id: String,
    /// Its execution id.
    pub execution_id: String,
    /// When it times out (its original deadline), if it has one.
    pub deadline: Option<SystemTime>,
    /// How long it has run already (for the duration metric).
    pub running_for: Duration,
    /// The image its container runs (for its trace span).
    pub image: String,
    /// Watches the container until it ends or the token fires.
    pub work: Box<dyn FnOnce(&CancelToken) -> TaskOutcome + Send>,
}

struct NoObserver;
impl DispatchObserver for NoObserver {}

/// What the handle, the pool threads and the task threads share.
struct Shared {
    settings: DispatchSettings,
    outbox: Outbox,
    runner: Arc<dyn TaskRunner>,
    observer: Arc<dyn DispatchObserver>,
    registry: Registry,
    accepting: AtomicBool,
    docker_available: AtomicBool,
    disk_full: AtomicBool,
    deadlines: Deadlines,
    in_flight: InFlight,
}

/// Cheap-to-clone handle to the dispatcher.
#[derive(Clone)]
pub struct Dispatcher {
    shared: Arc<Shared>,
    /// The pool's channel; `None` with no limit (a thread per task).
    jobs: Option<Sender<Job>>,
}

impl Dispatcher {
    /// Starts the pool.
    pub fn start(settings: DispatchSettings, outbox: Outbox, runner: Arc<dyn TaskRunner>) -> Self {
        Self::start_observed(settings, outbox, runner, Arc::new(NoObserver))
    }

    /// Starts the pool, reporting lifecycle events to `observer`.
    pub fn start_observed(
        settings: DispatchSettings,
        outbox: Outbox,
        runner: Arc<dyn TaskRunner>,
        observer: Arc<dyn DispatchObserver>,
    ) -> Self {
        let slots = settings.max_concurrent_tasks;
        let in_flight = InFlight::new(settings.max_in_flight_bytes);
        let shared = Arc::new(Shared {
            settings,
            outbox,
            runner,
            observer,
            registry: Registry::default(),
            accepting: AtomicBool::new(true),
            docker_available: AtomicBool::new(true),
            disk_full: AtomicBool::new(false),
            deadlines: Deadlines::start(),
            in_flight,
        });
        let jobs = pool::start(&shared, slots);
        Self { shared, jobs }
    }
}

impl Shared {
    /// Queues a terminal message; once the orchestrator has read it, the
    /// runner may drop what it kept for a later process to report from.
    fn push_terminal(&self, task_id: &str, message: Outbound) {
        let runner = Arc::clone(&self.runner);
        let id = task_id.to_owned();
        self.outbox
            .push_then(message, Box::new(move || runner.delivered(&id)));
    }
}

#[cfg(test)]
mod tests;
