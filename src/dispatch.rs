//! Claiming, rejecting and running tasks.
//!
//! Owns the registry of active tasks (task id → cancel token, execution id),
//! the capacity rule, and the pool of threads that run claimed tasks. It is
//! fed decoded messages by the connection thread ([`Dispatcher::handle`],
//! which never blocks), answers through the [`Outbox`], and hands each task
//! to the [`TaskRunner`]. It must not touch sockets or Docker.
//!
//! Threads: with `max_concurrent_tasks = N > 0` there are exactly N pool
//! threads fed by a bounded channel of N jobs; a job is only sent after a slot
//! was reserved in the registry, so a claimed task never waits for a thread.
//! With `0` (unlimited) each claimed task gets its own thread, which ends with
//! the task: the pool grows with the load and shrinks back to nothing.

use std::collections::HashMap;
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::thread;
use std::time::{Duration, Instant};

use crossbeam_channel::{Receiver, Sender};
use log::{error, info, warn};

use crate::deadline::Deadlines;
use crate::logging::{self, SecretGuard, TaskScope};
use crate::outbox::Outbox;
use crate::task::{CancelCause, CancelToken, TaskOutcome, TaskRunner};
use crate::wire::{self, FailureReason, Inbound, Outbound, TaskAssignment};

/// `task_rejected` reason while the worker shuts down.
pub const REJECT_SHUTTING_DOWN: &str = "worker is shutting down";

/// What the dispatcher needs to know.
#[derive(Debug, Clone)]
pub struct DispatchSettings {
    /// Sent in `task_claimed`.
    pub worker_id: String,
    /// Most tasks at once; 0 = unlimited.
    pub max_concurrent_tasks: usize,
    /// A task still running after this long is cancelled with [`CancelCause::Timeout`].
    pub task_timeout: Option<Duration>,
}

/// Observes task lifecycle events (metrics hook); every method defaults to nothing.
pub trait DispatchObserver: Send + Sync + 'static {
    /// A task was claimed.
    fn claimed(&self) {}
    /// A task was rejected for `reason`.
    fn rejected(&self, _reason: &str) {}
    /// A task ended with `message` after `elapsed`.
    fn finished(&self, _message: &Outbound, _elapsed: Duration) {}
    /// The number of active tasks changed.
    fn active(&self, _count: usize) {}
}

struct NoObserver;
impl DispatchObserver for NoObserver {}

struct Active {
    execution_id: String,
    cancel: CancelToken,
    /// The task has ended and its terminal message is on its way: it no
    /// longer holds a slot, but stays registered so a duplicate assignment
    /// arriving meanwhile is not run a second time.
    finishing: bool,
}

/// Tasks that hold a slot (claimed and not yet ended).
fn running(active: &HashMap<String, Active>) -> usize {
    active.values().filter(|a| !a.finishing).count()
}

struct Job {
    assignment: Box<TaskAssignment>,
    cancel: CancelToken,
}

struct Shared {
    settings: DispatchSettings,
    outbox: Outbox,
    runner: Arc<dyn TaskRunner>,
    observer: Arc<dyn DispatchObserver>,
    active: Mutex<HashMap<String, Active>>,
    idle: Condvar,
    accepting: AtomicBool,
    deadlines: Deadlines,
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
        let shared = Arc::new(Shared {
            settings,
            outbox,
            runner,
            observer,
            active: Mutex::new(HashMap::new()),
            idle: Condvar::new(),
            accepting: AtomicBool::new(true),
            deadlines: Deadlines::start(),
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
                            run_job(&shared, job);
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
                error!("task {task_id}: invalid task assignment: {problem}");
                self.shared.outbox.push(Outbound::TaskFailed {
                    task_id,
                    message: format!("Failed to execute task: invalid task assignment: {problem}"),
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
        if !shared.accepting.load(Ordering::SeqCst) {
            warn!("rejecting task {task_id}: the worker is shutting down");
            self.reject(task_id, REJECT_SHUTTING_DOWN);
            return;
        }
        let mut active = shared.lock_active();
        if let Some(existing) = active.get(&task_id) {
            info!(
                "task {task_id} is already running here (execution {:?}); claiming it again without a second run",
                existing.execution_id
            );
            drop(active);
            self.claim(task_id);
            return;
        }
        let max = shared.settings.max_concurrent_tasks;
        if max > 0 && running(&active) >= max {
            drop(active);
            warn!("rejecting task {task_id}: worker at maximum concurrency ({max})");
            self.reject(task_id, wire::REJECT_AT_CAPACITY);
            return;
        }
        let cancel = CancelToken::new();
        active.insert(
            task_id.clone(),
            Active {
                execution_id: assignment.execution_id.clone(),
                cancel: cancel.clone(),
                finishing: false,
            },
        );
        let count = running(&active);
        drop(active);
        info!(
            "claimed task {task_id} ({:?}), {count} active",
            assignment.task.title
        );
        self.claim(task_id);
        shared.observer.active(count);
        if let Some(limit) = shared.settings.task_timeout {
            shared.deadlines.add(Instant::now() + limit, cancel.clone());
        }
        let job = Job { assignment, cancel };
        match &self.jobs {
            // Never blocks: a slot was reserved above, so the channel has room.
            Some(jobs) => {
                if let Err(e) = jobs.try_send(job) {
                    let job = e.into_inner();
                    error!("no pool thread took task {}", job.assignment.task_id);
                    let shared = shared.clone();
                    thread::spawn(move || run_job(&shared, job));
                }
            }
            None => {
                let shared = shared.clone();
                let spawned = thread::Builder::new()
                    .name(format!("task-{}", job.assignment.task_id))
                    .spawn(move || run_job(&shared, job));
                if let Err(e) = spawned {
                    error!("could not start a thread for a task: {e}");
                }
            }
        }
    }

    fn claim(&self, task_id: String) {
        self.shared.observer.claimed();
        self.shared.outbox.push(Outbound::TaskClaimed {
            task_id,
            worker_id: self.shared.settings.worker_id.clone(),
        });
    }

    fn reject(&self, task_id: String, reason: &str) {
        self.shared.observer.rejected(reason);
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
                info!("cancelling task {task_id} at the orchestrator's request");
                token.cancel(CancelCause::User);
            }
            None => warn!("received a cancellation for task {task_id}, which is not active here"),
        }
    }

    /// Answers every later assignment with `task_rejected`.
    pub fn stop_accepting(&self) {
        self.shared.accepting.store(false, Ordering::SeqCst);
    }

    /// Cancels every active task with `cause`.
    pub fn cancel_all(&self, cause: CancelCause) {
        let tokens: Vec<_> = self
            .shared
            .lock_active()
            .values()
            .map(|a| a.cancel.clone())
            .collect();
        for token in tokens {
            token.cancel(cause);
        }
    }

    /// Number of tasks claimed and not yet ended.
    pub fn active_count(&self) -> usize {
        self.shared.lock_active().len()
    }

    /// Waits until no task is active; false if `timeout` passed first.
    pub fn wait_idle(&self, timeout: Duration) -> bool {
        self.wait_active_at_most(0, timeout)
    }

    /// Waits until at most `n` tasks are active; false if `timeout` passed first.
    pub fn wait_active_at_most(&self, n: usize, timeout: Duration) -> bool {
        let deadline = Instant::now() + timeout;
        let mut active = self.shared.lock_active();
        while active.len() > n {
            let now = Instant::now();
            if now >= deadline {
                return false;
            }
            active = self
                .shared
                .idle
                .wait_timeout(active, deadline - now)
                .unwrap_or_else(|e| e.into_inner())
                .0;
        }
        true
    }
}

impl Shared {
    fn lock_active(&self) -> MutexGuard<'_, HashMap<String, Active>> {
        self.active.lock().unwrap_or_else(|e| e.into_inner())
    }
}

fn run_job(shared: &Shared, job: Job) {
    let task_id = job.assignment.task_id.clone();
    let _scope = TaskScope::enter(&task_id);
    // env_vars values are secrets: from here on, any log line that would
    // carry one has it masked.
    let _secrets: Vec<SecretGuard> = job
        .assignment
        .env_vars
        .values()
        .map(|v| logging::register_secret(v))
        .collect();
    let started = Instant::now();
    let outcome = catch_unwind(AssertUnwindSafe(|| {
        shared.runner.run(&job.assignment, &job.cancel)
    }))
    .unwrap_or_else(|_| {
        error!("task {task_id}: the worker hit an internal error while running it");
        TaskOutcome::failed(
            FailureReason::Unknown,
            "the worker hit an internal error while running the task",
        )
    });
    let message = outcome.into_message(&task_id);
    match &message {
        Outbound::TaskFailed { message: m, .. } => {
            info!("task {task_id} failed after {:?}: {m}", started.elapsed())
        }
        _ => info!("task {task_id} ended after {:?}", started.elapsed()),
    }
    shared.observer.finished(&message, started.elapsed());
    shared.deadlines.remove(&job.cancel);
    // Free the slot before the orchestrator can learn the task ended, so the
    // next assignment it sends in answer is never rejected for capacity; keep
    // the entry until the message is queued, so a duplicate assignment
    // arriving in between is claimed again, never run twice.
    let count = {
        let mut active = shared.lock_active();
        if let Some(entry) = active.get_mut(&task_id) {
            entry.finishing = true;
        }
        running(&active)
    };
    shared.observer.active(count);
    shared.outbox.push(message);
    shared.lock_active().remove(&task_id);
    shared.idle.notify_all();
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::wire::Task;

    /// Runs until cancelled, or completes when its assignment names image "quick".
    struct FakeRunner;
    impl TaskRunner for FakeRunner {
        fn run(&self, task: &TaskAssignment, cancel: &CancelToken) -> TaskOutcome {
            if task.docker_image == "quick" {
                return TaskOutcome::Completed;
            }
            if task.docker_image == "panic" {
                panic!("runner bug");
            }
            match cancel.wait_timeout(Duration::from_secs(60)) {
                Some(cause) => TaskOutcome::Cancelled(cause),
                None => TaskOutcome::Completed,
            }
        }
    }

    fn assignment(id: &str, image: &str) -> Inbound {
        Inbound::Assignment(Box::new(TaskAssignment {
            task_id: id.into(),
            execution_id: format!("exec-{id}"),
            task: Task {
                id: id.into(),
                ..Task::default()
            },
            docker_image: image.into(),
            ..TaskAssignment::default()
        }))
    }

    fn dispatcher(max: usize, timeout: Option<Duration>) -> (Dispatcher, Outbox) {
        let outbox = Outbox::new();
        let d = Dispatcher::start(
            DispatchSettings {
                worker_id: "w".into(),
                max_concurrent_tasks: max,
                task_timeout: timeout,
            },
            outbox.clone(),
            Arc::new(FakeRunner),
        );
        (d, outbox)
    }

    fn kinds(outbox: &Outbox) -> Vec<(String, String)> {
        outbox
            .after(0)
            .into_iter()
            .map(|q| (q.message.kind().to_owned(), q.message.task_id().to_owned()))
            .collect()
    }

    fn pair(kind: &str, id: &str) -> (String, String) {
        (kind.to_owned(), id.to_owned())
    }

    #[test]
    fn rejects_beyond_capacity_at_once_and_accepts_after_a_slot_frees() {
        let (d, outbox) = dispatcher(2, None);
        d.handle(assignment("a", "slow"));
        d.handle(assignment("b", "slow"));
        d.handle(assignment("c", "slow"));
        assert_eq!(
            kinds(&outbox),
            vec![
                pair("task_claimed", "a"),
                pair("task_claimed", "b"),
                pair("task_rejected", "c")
            ]
        );
        d.handle(Inbound::Cancellation {
            task_id: "a".into(),
        });
        assert!(d.wait_active_at_most(1, Duration::from_secs(10)));
        d.handle(assignment("c", "slow"));
        let k = kinds(&outbox);
        assert_eq!(k[3], pair("task_completed", "a"));
        assert_eq!(k[4], pair("task_claimed", "c"));
        d.cancel_all(CancelCause::Shutdown);
        assert!(d.wait_idle(Duration::from_secs(10)));
    }

    #[test]
    fn duplicate_assignment_is_claimed_again_but_runs_once() {
        let (d, outbox) = dispatcher(0, None);
        d.handle(assignment("a", "slow"));
        d.handle(assignment("a", "slow"));
        assert_eq!(d.active_count(), 1);
        d.cancel_all(CancelCause::User);
        assert!(d.wait_idle(Duration::from_secs(10)));
        assert_eq!(
            kinds(&outbox),
            vec![
                pair("task_claimed", "a"),
                pair("task_claimed", "a"),
                pair("task_completed", "a")
            ]
        );
    }

    /// Records, each time the active count changes, whether the outbox
    /// already held a terminal message.
    struct OrderObserver {
        outbox: Outbox,
        seen: std::sync::Mutex<Vec<(usize, bool)>>,
    }
    impl DispatchObserver for OrderObserver {
        fn active(&self, count: usize) {
            let terminal = self.outbox.after(0).iter().any(|q| q.message.is_terminal());
            self.seen.lock().unwrap().push((count, terminal));
        }
    }

    #[test]
    fn the_slot_is_freed_before_the_terminal_message_is_queued() {
        // An orchestrator that assigns the next task the moment it reads a
        // terminal message must never be told "at maximum concurrency".
        let outbox = Outbox::new();
        let observer = Arc::new(OrderObserver {
            outbox: outbox.clone(),
            seen: Default::default(),
        });
        let d = Dispatcher::start_observed(
            DispatchSettings {
                worker_id: "w".into(),
                max_concurrent_tasks: 1,
                task_timeout: None,
            },
            outbox.clone(),
            Arc::new(FakeRunner),
            observer.clone(),
        );
        d.handle(assignment("a", "quick"));
        assert!(d.wait_idle(Duration::from_secs(10)));
        assert_eq!(*observer.seen.lock().unwrap(), vec![(1, false), (0, false)]);
        assert_eq!(
            kinds(&outbox),
            vec![pair("task_claimed", "a"), pair("task_completed", "a")]
        );
    }

    #[test]
    fn cancellation_of_unknown_task_sends_nothing() {
        let (d, outbox) = dispatcher(1, None);
        d.handle(Inbound::Cancellation {
            task_id: "nope".into(),
        });
        assert!(outbox.is_empty());
    }

    #[test]
    fn timeout_and_panic_and_invalid_end_visibly() {
        let (d, outbox) = dispatcher(0, Some(Duration::from_millis(50)));
        d.handle(assignment("slow", "slow"));
        d.handle(assignment("boom", "panic"));
        d.handle(Inbound::InvalidAssignment {
            task_id: "bad".into(),
            problem: "task is missing".into(),
        });
        assert!(d.wait_idle(Duration::from_secs(10)));
        let messages: Vec<Outbound> = outbox.after(0).into_iter().map(|q| q.message).collect();
        let terminal = |id: &str| {
            messages
                .iter()
                .find(|m| m.is_terminal() && m.task_id() == id)
                .cloned()
                .unwrap()
        };
        assert!(matches!(
            terminal("slow"),
            Outbound::TaskFailed {
                failure_reason: Some(FailureReason::TaskTimeout),
                ..
            }
        ));
        assert!(matches!(
            terminal("boom"),
            Outbound::TaskFailed {
                failure_reason: Some(FailureReason::Unknown),
                ..
            }
        ));
        assert_eq!(
            terminal("bad"),
            Outbound::TaskFailed {
                task_id: "bad".into(),
                message: "Failed to execute task: invalid task assignment: task is missing".into(),
                failure_reason: Some(FailureReason::Unknown),
                exit_code: 0
            }
        );
    }

    #[test]
    fn after_stop_accepting_assignments_are_rejected() {
        let (d, outbox) = dispatcher(4, None);
        d.stop_accepting();
        d.handle(assignment("a", "quick"));
        assert_eq!(kinds(&outbox), vec![pair("task_rejected", "a")]);
    }
}
