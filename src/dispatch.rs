//! Claiming, rejecting and running tasks.
//!
//! Owns the registry of active tasks (task id → cancel token, execution id),
//! the capacity rule, whether new work is taken at all (not while shutting
//! down, nor while Docker does not answer), and the pool of threads that run
//! claimed tasks. It is fed decoded messages by the connection thread
//! ([`Dispatcher::handle`], which never blocks), answers through the
//! [`Outbox`], and hands each task to the [`TaskRunner`]. Tasks adopted from
//! an earlier worker process arrive through [`Dispatcher::adopt`] with their
//! work ready to run. It must not touch sockets or Docker.
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

use std::collections::HashMap;
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::thread;
use std::time::{Duration, Instant, SystemTime};

use crossbeam_channel::{Receiver, Sender};
use log::{error, info, warn};

use crate::deadline::Deadlines;
use crate::inflight::{InFlight, Permit};
use crate::logging::{self, TaskScope, TaskSecrets};
use crate::outbox::Outbox;
use crate::outside::Shown;
use crate::task::{CancelCause, CancelToken, TaskOutcome, TaskRunner};
use crate::telemetry::TaskEvent;
use crate::wire::{self, FailureReason, Inbound, Outbound, TaskAssignment};

/// `task_rejected` reason while the worker shuts down.
pub const REJECT_SHUTTING_DOWN: &str = "worker is shutting down";
/// `task_rejected` reason while the Docker daemon does not answer: the
/// orchestrator can route the task to a healthy worker instead of this one
/// claiming it and failing it at once.
pub const REJECT_DOCKER_UNAVAILABLE: &str = "worker cannot reach its Docker daemon";
/// `task_rejected` reason while the Docker daemon's disk is full: every
/// task would fail its pull or create.
pub const REJECT_DISK_FULL: &str = "worker's Docker daemon has no disk space left";

/// What the dispatcher needs to know.
#[derive(Debug, Clone)]
pub struct DispatchSettings {
    /// Sent in `task_claimed`.
    pub worker_id: String,
    /// Most tasks at once; 0 = unlimited.
    pub max_concurrent_tasks: usize,
    /// A task still running after this long is cancelled with [`CancelCause::Timeout`].
    pub task_timeout: Option<Duration>,
    /// Most bytes of assignment frames held by claimed tasks; 0 = no cap.
    pub max_in_flight_bytes: usize,
}

/// Observes task lifecycle events (metrics hook); every method defaults to nothing.
pub trait DispatchObserver: Send + Sync + 'static {
    /// A task was claimed.
    fn claimed(&self) {}
    /// A task left by an earlier worker process was adopted.
    fn adopted(&self) {}
    /// A task was rejected for `reason`.
    fn rejected(&self, _reason: &str) {}
    /// A task ended with `message` after `elapsed`.
    fn finished(&self, _message: &Outbound, _elapsed: Duration) {}
    /// The number of active tasks changed.
    fn active(&self, _count: usize) {}
    /// Something happened to `task_id` (for its trace span).
    fn task_event(&self, _task_id: &str, _event: TaskEvent<'_>) {}
}

struct NoObserver;
impl DispatchObserver for NoObserver {}

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

struct Active {
    execution_id: String,
    cancel: CancelToken,
    /// The task has ended and its terminal message is on its way: it no
    /// longer holds a slot, but stays registered so a duplicate assignment
    /// arriving meanwhile is not run a second time.
    finishing: bool,
    /// Its terminal message was sent ahead of its end (a shutdown reports
    /// first and stops containers after); whatever the runner returns later
    /// is not sent again.
    reported: bool,
    /// When it began (for an adopted task, before this process started).
    started: Instant,
}

/// Tasks that hold a slot (claimed and not yet ended).
fn running(active: &HashMap<String, Active>) -> usize {
    active.values().filter(|a| !a.finishing).count()
}

enum Work {
    /// Nothing to run: the task fails with these words (a thread for it
    /// could not be started).
    Failed(String),
    Assignment(Box<TaskAssignment>),
    Adopted {
        image: String,
        watch: Box<dyn FnOnce(&CancelToken) -> TaskOutcome + Send>,
    },
}

struct Job {
    task_id: String,
    work: Work,
    cancel: CancelToken,
    /// When the task began (for an adopted one, before this process started).
    started: Instant,
    /// Its share of the in-flight bytes (an adopted task holds none).
    bytes: Option<Permit>,
}

struct Shared {
    settings: DispatchSettings,
    outbox: Outbox,
    runner: Arc<dyn TaskRunner>,
    observer: Arc<dyn DispatchObserver>,
    active: Mutex<HashMap<String, Active>>,
    idle: Condvar,
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
            active: Mutex::new(HashMap::new()),
            idle: Condvar::new(),
            accepting: AtomicBool::new(true),
            docker_available: AtomicBool::new(true),
            disk_full: AtomicBool::new(false),
            deadlines: Deadlines::start(),
            in_flight,
        });
        let jobs = (slots > 0).then(|| {
            let (tx, rx) = crossbeam_channel::bounded::<Job>(slots);
            for n in 0..slots {
                let shared = shared.clone();
                let rx: Receiver<Job> = rx.clone();
                thread::Builder::new()
                    .name(format!("task-slot-{n}"))
                    .spawn(move || {
                        for job in rx {
                            // A panic outside the runner (which is caught
                            // inside) ends that task, not the slot's thread.
                            let _ = catch_unwind(AssertUnwindSafe(|| run_job(&shared, job)));
                        }
                    })
                    .expect("spawning a pool thread at startup");
            }
            tx
        });
        Self { shared, jobs }
    }

    /// Acts on one message from the orchestrator. Never blocks on a task.
    pub fn handle(&self, message: Inbound) {
        match message {
            Inbound::Assignment(assignment) => self.assign(assignment),
            Inbound::InvalidAssignment { task_id, problem } => {
                // An id refused at the door is shown escaped and cut in the
                // message, never as the (unbounded) `task_id` field.
                if wire::check_id("task_id", &task_id).is_ok() {
                    error!(
                        task_id = task_id.as_str();
                        "task {}: invalid task assignment: {problem}",
                        Shown(&task_id)
                    );
                } else {
                    error!(
                        "task {}: invalid task assignment: {problem}",
                        Shown(&task_id)
                    );
                }
                if self.shared.lock_active().contains_key(&task_id) {
                    // Its one terminal message comes from the run already here.
                    warn!(
                        "task {} is running here; the invalid copy is ignored",
                        Shown(&task_id)
                    );
                    return;
                }
                self.shared.outbox.push(Outbound::TaskFailed {
                    task_id,
                    message: logging::redact(&format!(
                        "Failed to execute task: invalid task assignment: {problem}"
                    )),
                    failure_reason: Some(FailureReason::Unknown),
                    exit_code: 0,
                });
            }
            Inbound::Cancellation { task_id } => self.cancel(&task_id),
            Inbound::Unknown { kind } => {
                warn!("ignoring a message of unknown type {kind:?} from the orchestrator")
            }
        }
    }

    fn assign(&self, assignment: Box<TaskAssignment>) {
        let task_id = assignment.task_id.clone();
        let shared = &self.shared;
        shared.observer.task_event(
            &task_id,
            TaskEvent::Assigned {
                title: &assignment.task.title,
            },
        );
        if !shared.accepting.load(Ordering::SeqCst) {
            warn!(task_id = task_id.as_str(); "rejecting task {task_id}: the worker is shutting down");
            self.reject(task_id, REJECT_SHUTTING_DOWN);
            return;
        }
        let mut active = shared.lock_active();
        if let Some(existing) = active.get(&task_id) {
            info!(
                task_id = task_id.as_str();
                "task {task_id} is already running here (execution {:?}); claiming it again without a second run",
                existing.execution_id
            );
            drop(active);
            self.claim(task_id);
            return;
        }
        if !shared.docker_available.load(Ordering::SeqCst) {
            drop(active);
            warn!(task_id = task_id.as_str(); "rejecting task {task_id}: the Docker daemon does not answer");
            self.reject(task_id, REJECT_DOCKER_UNAVAILABLE);
            return;
        }
        if shared.disk_full.load(Ordering::SeqCst) {
            drop(active);
            warn!(task_id = task_id.as_str(); "rejecting task {task_id}: the Docker daemon's disk is full");
            self.reject(task_id, REJECT_DISK_FULL);
            return;
        }
        let max = shared.settings.max_concurrent_tasks;
        if max > 0 && running(&active) >= max {
            drop(active);
            warn!(task_id = task_id.as_str(); "rejecting task {task_id}: worker at maximum concurrency ({max})");
            self.reject(task_id, wire::REJECT_AT_CAPACITY);
            return;
        }
        let Some(bytes) = shared.in_flight.take(assignment.frame_bytes) else {
            drop(active);
            warn!(
                task_id = task_id.as_str();
                "rejecting task {task_id}: its {} bytes would pass the cap on assignments in flight ({} of {} bytes held)",
                assignment.frame_bytes,
                shared.in_flight.used(),
                shared.in_flight.cap()
            );
            self.reject(task_id, wire::REJECT_AT_CAPACITY);
            return;
        };
        let cancel = CancelToken::new();
        let started = Instant::now();
        active.insert(
            task_id.clone(),
            Active::new(&assignment.execution_id, &cancel, started),
        );
        let count = running(&active);
        drop(active);
        info!(
            task_id = task_id.as_str(), worker_id = shared.settings.worker_id.as_str();
            "claimed task {task_id} ({:?}), {count} active",
            Shown(&assignment.task.title)
        );
        self.claim(task_id.clone());
        shared.observer.active(count);
        if let Some(limit) = shared.settings.task_timeout {
            cancel.set_deadline(SystemTime::now() + limit);
            shared.deadlines.add(Instant::now() + limit, cancel.clone());
        }
        let job = Job {
            task_id,
            work: Work::Assignment(assignment),
            cancel,
            started,
            bytes: Some(bytes),
        };
        match &self.jobs {
            // Never blocks: a slot was reserved above, so the channel has room.
            Some(jobs) => {
                if let Err(e) = jobs.try_send(job) {
                    let job = e.into_inner();
                    error!("no pool thread took task {}", job.task_id);
                    self.spawn(job);
                }
            }
            None => self.spawn(job),
        }
    }

    /// Takes over a task an earlier worker process left running. It holds a
    /// slot like any task, even beyond `max_concurrent_tasks` (adopting it
    /// costs nothing a refusal would save: its container runs anyway), and
    /// ends with exactly one terminal message. False, and `task` dropped
    /// unrun, when the task is already active here or the worker is
    /// shutting down (the next worker process adopts it then).
    pub fn adopt(&self, task: AdoptedTask) -> bool {
        let shared = &self.shared;
        if !shared.accepting.load(Ordering::SeqCst) {
            return false;
        }
        let mut active = shared.lock_active();
        if active.contains_key(&task.task_id) {
            return false;
        }
        let cancel = CancelToken::new();
        let started = Instant::now()
            .checked_sub(task.running_for)
            .unwrap_or_else(Instant::now);
        active.insert(
            task.task_id.clone(),
            Active::new(&task.execution_id, &cancel, started),
        );
        let count = running(&active);
        drop(active);
        let max = shared.settings.max_concurrent_tasks;
        if max > 0 && count > max {
            warn!(
                "adopting task {} puts {count} tasks on this worker, above its maximum of {max}; new tasks are rejected until some end",
                task.task_id
            );
        }
        shared.observer.adopted();
        shared.observer.active(count);
        // Its span starts here: the earlier process's span ended with it.
        shared
            .observer
            .task_event(&task.task_id, TaskEvent::Assigned { title: "" });
        if let Some(at) = task.deadline {
            cancel.set_deadline(at);
            let left = at.duration_since(SystemTime::now()).unwrap_or_default();
            shared.deadlines.add(Instant::now() + left, cancel.clone());
        }
        self.spawn(Job {
            task_id: task.task_id,
            work: Work::Adopted {
                image: task.image,
                watch: task.work,
            },
            cancel,
            started,
            bytes: None,
        });
        true
    }

    fn spawn(&self, job: Job) {
        let shared = self.shared.clone();
        // No outside text in a thread name: a NUL byte there panics the
        // spawning thread, and the name shows up in `ps` and panic lines.
        // The job is kept here too, so a thread that cannot start still
        // ends its task: one terminal message, the slot freed.
        let slot = Arc::new(std::sync::Mutex::new(Some(job)));
        let taken = Arc::clone(&slot);
        let spawned = thread::Builder::new().name("task".into()).spawn(move || {
            let job = taken.lock().unwrap_or_else(|e| e.into_inner()).take();
            if let Some(job) = job {
                run_job(&shared, job);
            }
        });
        if let Err(e) = spawned {
            error!("could not start a thread for a task: {e}");
            let job = slot.lock().unwrap_or_else(|e| e.into_inner()).take();
            if let Some(mut job) = job {
                job.work = Work::Failed(format!(
                    "the worker could not start a thread for the task: {e}"
                ));
                run_job(&self.shared, job);
            }
        }
    }

    fn claim(&self, task_id: String) {
        self.shared.observer.claimed();
        self.shared
            .observer
            .task_event(&task_id, TaskEvent::Claimed);
        self.shared.outbox.push(Outbound::TaskClaimed {
            task_id,
            worker_id: self.shared.settings.worker_id.clone(),
        });
    }

    fn reject(&self, task_id: String, reason: &str) {
        self.shared.observer.rejected(reason);
        let label = crate::metrics::labels::reject_label(reason);
        self.shared
            .observer
            .task_event(&task_id, TaskEvent::Rejected { reason: label });
        self.shared.outbox.push(Outbound::TaskRejected {
            task_id,
            reason: reason.into(),
        });
    }

    fn cancel(&self, task_id: &str) {
        let token = self
            .shared
            .lock_active()
            .get(task_id)
            .map(|a| a.cancel.clone());
        match token {
            Some(token) => {
                info!(task_id = task_id; "cancelling task {task_id} at the orchestrator's request");
                self.shared
                    .observer
                    .task_event(task_id, TaskEvent::CancelRequested { source: "server" });
                token.cancel(CancelCause::User);
            }
            None => warn!(
                task_id = task_id;
                "received a cancellation for task {task_id}, which is not active here"
            ),
        }
    }

    /// Answers every later assignment with `task_rejected`.
    pub fn stop_accepting(&self) {
        self.shared.accepting.store(false, Ordering::SeqCst);
    }

    /// Whether the Docker daemon answers; while it does not, new
    /// assignments are rejected instead of claimed and failed.
    pub fn set_docker_available(&self, available: bool) {
        self.shared
            .docker_available
            .store(available, Ordering::SeqCst);
    }

    /// Whether the Docker daemon's disk is full; while it is, new
    /// assignments are rejected instead of claimed and failed.
    pub fn set_disk_full(&self, full: bool) {
        self.shared.disk_full.store(full, Ordering::SeqCst);
    }

    /// Cancels every active task with `cause`.
    pub fn cancel_all(&self, cause: CancelCause) {
        for token in self.tokens(cause) {
            token.cancel(cause);
        }
    }

    /// Cancels every active task with `cause`, asking that each container
    /// be stopped by `stop_by`.
    pub fn cancel_all_by(&self, cause: CancelCause, stop_by: Instant) {
        for token in self.tokens(cause) {
            token.cancel_by(cause, stop_by);
        }
    }

    /// Every active task's token; each one not cancelled yet gets its
    /// span's `task.cancellation_requested` (source from `cause`).
    fn tokens(&self, cause: CancelCause) -> Vec<CancelToken> {
        let pairs: Vec<(String, CancelToken)> = self
            .shared
            .lock_active()
            .iter()
            .map(|(id, a)| (id.clone(), a.cancel.clone()))
            .collect();
        let source = match cause {
            CancelCause::User => "server",
            CancelCause::Shutdown | CancelCause::Detach => "signal",
            CancelCause::Timeout => "timeout",
        };
        pairs
            .into_iter()
            .map(|(task_id, token)| {
                if !token.is_cancelled() {
                    self.shared
                        .observer
                        .task_event(&task_id, TaskEvent::CancelRequested { source });
                }
                token
            })
            .collect()
    }

    /// Sends, now, the terminal message `outcome` gives for every task still
    /// running, ahead of stopping them: a shutdown reports first so no report
    /// waits on a container's stop. Returns how many were reported.
    pub fn report_all_now(&self, outcome: &TaskOutcome) -> usize {
        let ids: Vec<(String, Instant)> = {
            let mut active = self.shared.lock_active();
            let runner = &self.shared.runner;
            active
                .iter_mut()
                .filter(|(id, a)| !a.finishing && !a.reported && runner.reports(id))
                .map(|(id, a)| {
                    a.reported = true;
                    (id.clone(), a.started)
                })
                .collect()
        };
        for (id, started) in &ids {
            if let Some(message) = outcome.clone().into_message(id) {
                self.shared.observer.finished(&message, started.elapsed());
                self.shared.push_terminal(id, message);
            }
        }
        ids.len()
    }

    /// Number of tasks claimed and not yet ended.
    pub fn active_count(&self) -> usize {
        self.shared.lock_active().len()
    }

    /// Whether `task_id` is active here.
    pub fn is_active(&self, task_id: &str) -> bool {
        self.shared.lock_active().contains_key(task_id)
    }

    /// Waits until no task is active; false if `timeout` passed first.
    pub fn wait_idle(&self, timeout: Duration) -> bool {
        self.wait_active_at_most(0, timeout)
    }

    /// Waits until at most `n` tasks are active; false if `timeout` passed first.
    pub fn wait_active_at_most(&self, n: usize, timeout: Duration) -> bool {
        let deadline = Instant::now().checked_add(timeout);
        let mut active = self.shared.lock_active();
        while active.len() > n {
            let now = Instant::now();
            let wait = match deadline {
                Some(d) if now >= d => return false,
                Some(d) => d - now,
                None => Duration::from_secs(3600),
            };
            active = self
                .shared
                .idle
                .wait_timeout(active, wait)
                .unwrap_or_else(|e| e.into_inner())
                .0;
        }
        true
    }
}

impl Active {
    fn new(execution_id: &str, cancel: &CancelToken, started: Instant) -> Self {
        Self {
            execution_id: execution_id.to_owned(),
            cancel: cancel.clone(),
            finishing: false,
            reported: false,
            started,
        }
    }
}

impl Shared {
    fn lock_active(&self) -> MutexGuard<'_, HashMap<String, Active>> {
        self.active.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Queues a terminal message; once the orchestrator has read it, the
    /// runner may drop what it kept for a later process to report from.
    fn push_terminal(&self, task_id: &str, message: Outbound) {
        let runner = Arc::clone(&self.runner);
        let id = task_id.to_owned();
        self.outbox
            .push_then(message, Box::new(move || runner.delivered(&id)));
    }
}

/// A task's `env_vars` values mask its own log lines, read in place.
impl TaskSecrets for TaskAssignment {
    fn each_secret<'s>(&'s self, f: &mut dyn FnMut(&'s str)) {
        self.env_vars.values().for_each(|v| f(v));
    }
}

/// `message` with every secret the current thread masks in its log lines
/// masked in its text too (a `task_failed` message quotes outside text).
fn masked(message: Outbound) -> Outbound {
    match message {
        Outbound::TaskFailed {
            task_id,
            message,
            failure_reason,
            exit_code,
        } => Outbound::TaskFailed {
            task_id,
            message: logging::redact(&message),
            failure_reason,
            exit_code,
        },
        other => other,
    }
}

/// Ends a task whose thread panics outside its runner: frees its slot and
/// sends the one terminal message it would otherwise never get.
struct Unfinished<'a> {
    shared: &'a Shared,
    task_id: String,
    armed: bool,
}

impl Drop for Unfinished<'_> {
    fn drop(&mut self) {
        if !self.armed {
            return;
        }
        let reported = self
            .shared
            .lock_active()
            .remove(&self.task_id)
            .is_some_and(|a| a.reported);
        if !reported {
            self.shared.push_terminal(
                &self.task_id,
                Outbound::TaskFailed {
                    task_id: self.task_id.clone(),
                    message: format!("Failed to execute task: {INTERNAL_ERROR}"),
                    failure_reason: Some(FailureReason::Unknown),
                    exit_code: 0,
                },
            );
        }
        self.shared.idle.notify_all();
    }
}

/// What a task is told when the worker, not the task, failed it.
const INTERNAL_ERROR: &str = "the worker hit an internal error while running the task";

fn run_job(shared: &Shared, job: Job) {
    let Job {
        task_id,
        work,
        cancel,
        started,
        bytes,
    } = job;
    let mut failed = None;
    let mut unfinished = Unfinished {
        shared,
        task_id: task_id.clone(),
        armed: true,
    };
    let (assignment, adopted) = match work {
        Work::Assignment(a) => (Some(Arc::<TaskAssignment>::from(a)), None),
        Work::Adopted { image, watch } => (None, Some((image, watch))),
        Work::Failed(words) => {
            failed = Some(words);
            (None, None)
        }
    };
    // env_vars values are secrets: from here on, any line this task logs
    // that would carry one has it masked.
    let scope = match &assignment {
        Some(a) => TaskScope::with_secrets(&task_id, a.clone()),
        None => TaskScope::enter(&task_id),
    };
    let image = match (&assignment, &adopted) {
        (Some(a), _) => a.docker_image.as_str(),
        (None, Some((image, _))) => image.as_str(),
        (None, None) => "",
    };
    shared
        .observer
        .task_event(&task_id, TaskEvent::Started { image });
    let outcome = catch_unwind(AssertUnwindSafe(|| match (adopted, &assignment) {
        (Some((_, watch)), _) => watch(&cancel),
        (None, Some(a)) => shared.runner.run(a, &cancel),
        (None, None) => TaskOutcome::failed(
            FailureReason::Unknown,
            failed
                .take()
                .unwrap_or_else(|| "the task has nothing to run".into()),
        ),
    }))
    .unwrap_or_else(|_| {
        error!("task {task_id}: the worker hit an internal error while running it");
        TaskOutcome::failed(FailureReason::Unknown, INTERNAL_ERROR)
    });
    shared.deadlines.remove(&cancel);
    // Masked as this task's log lines are (its scope is still on): the
    // message quotes outside text, which may echo a secret.
    let message = outcome.into_message(&task_id).map(masked);
    let took = started.elapsed();
    let seconds = (took.as_secs_f64() * 1000.0).round() / 1000.0;
    match &message {
        None => info!(
            task_id = task_id.as_str();
            "task {task_id} left running for the next worker process (detached)"
        ),
        Some(Outbound::TaskFailed {
            message: m,
            failure_reason,
            exit_code,
            ..
        }) => warn!(
            task_id = task_id.as_str(),
            exit_code = *exit_code,
            duration_seconds = seconds,
            failure_reason = failure_reason.map_or("unknown", |r| r.as_str());
            "task {task_id} failed after {took:?}: {m}"
        ),
        Some(_) => info!(
            task_id = task_id.as_str(), duration_seconds = seconds;
            "task {task_id} ended after {took:?}"
        ),
    }
    drop(scope);
    // The assignment's memory goes before its bytes are counted free.
    drop(assignment);
    drop(bytes);
    // Free the slot before the orchestrator can learn the task ended, so the
    // next assignment it sends in answer is never rejected for capacity; keep
    // the entry until the message is queued, so a duplicate assignment
    // arriving in between is claimed again, never run twice.
    let (count, reported) = {
        let mut active = shared.lock_active();
        let reported = match active.get_mut(&task_id) {
            Some(entry) => {
                entry.finishing = true;
                entry.reported
            }
            None => false,
        };
        (running(&active), reported)
    };
    shared.observer.active(count);
    if let Some(message) = message
        && !reported
    {
        shared.observer.finished(&message, started.elapsed());
        shared.push_terminal(&task_id, message);
    }
    unfinished.armed = false;
    shared.lock_active().remove(&task_id);
    shared.idle.notify_all();
}

#[cfg(test)]
mod tests;
