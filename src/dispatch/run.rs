//! One task on its thread, from its start to its one terminal message: what
//! a job is, running it under the task's log scope (its secrets masked),
//! turning a panic into `task_failed`, and freeing its slot before the
//! orchestrator can learn it ended.
//!
//! Owns the order of a task's last steps; must not choose threads (that is
//! [`super::pool`]) nor decide whether a task runs (that is
//! [`super::admission`]).

use std::panic::{AssertUnwindSafe, catch_unwind};
use std::sync::Arc;
use std::time::Instant;

use log::{error, info, warn};

use super::Shared;
use super::registry::running;
use crate::events::TaskEvent;
use crate::inflight::Permit;
use crate::logging::{self, TaskScope, TaskSecrets};
use crate::task::{CancelToken, TaskOutcome};
use crate::wire::{FailureReason, Outbound, TaskAssignment};

/// What a job runs.
pub(super) enum Work {
    /// Nothing to run: the task fails with these words (a thread for it
    /// could not be started).
    Failed(String),
    /// A claimed assignment, for the runner.
    Assignment(Box<TaskAssignment>),
    /// An adopted task: the watch over its container.
    Adopted {
        /// The image its container runs (for its trace span).
        image: String,
        /// Watches the container until it ends or the token fires.
        watch: Box<dyn FnOnce(&CancelToken) -> TaskOutcome + Send>,
    },
}

/// One task, registered and ready to run.
pub(super) struct Job {
    pub(super) task_id: String,
    pub(super) work: Work,
    pub(super) cancel: CancelToken,
    /// When the task began (for an adopted one, before this process started).
    pub(super) started: Instant,
    /// Its share of the in-flight bytes (an adopted task holds none).
    pub(super) bytes: Option<Permit>,
}

/// What a task is told when the worker, not the task, failed it.
const INTERNAL_ERROR: &str = "the worker hit an internal error while running the task";

/// Runs `job` on the calling thread and ends it: exactly one terminal
/// message (unless it was reported ahead or is left detached), its slot freed.
pub(super) fn run_job(shared: &Shared, job: Job) {
    let Job {
        task_id,
        work,
        cancel,
        started,
        bytes,
    } = job;
    let mut unfinished = Unfinished {
        shared,
        task_id: task_id.clone(),
        armed: true,
    };
    // Each arm's log scope ends with its block, then its assignment's
    // memory goes, before the assignment's bytes are counted free below.
    let message = match work {
        Work::Assignment(assignment) => {
            let assignment = Arc::<TaskAssignment>::from(assignment);
            // env_vars values are secrets: from here on, any line this task
            // logs that would carry one has it masked.
            let _scope = TaskScope::with_secrets(&task_id, assignment.clone());
            let image = assignment.docker_image.as_str();
            attempt(shared, &task_id, image, &cancel, started, || {
                shared.runner.run(&assignment, &cancel)
            })
        }
        Work::Adopted { image, watch } => {
            let _scope = TaskScope::enter(&task_id);
            attempt(shared, &task_id, &image, &cancel, started, || {
                watch(&cancel)
            })
        }
        Work::Failed(words) => {
            let _scope = TaskScope::enter(&task_id);
            attempt(shared, &task_id, "", &cancel, started, || {
                TaskOutcome::failed(FailureReason::Unknown, words)
            })
        }
    };
    drop(bytes);
    finish(shared, &task_id, message, started);
    unfinished.armed = false;
    shared.registry.lock().remove(&task_id);
    shared.registry.left();
}

/// Runs `work` (a panic in it fails the task), then logs how the task ended
/// and returns its terminal message, masked like its log lines. Called
/// inside the task's log scope.
fn attempt(
    shared: &Shared,
    task_id: &str,
    image: &str,
    cancel: &CancelToken,
    started: Instant,
    work: impl FnOnce() -> TaskOutcome,
) -> Option<Outbound> {
    shared
        .observer
        .task_event(task_id, TaskEvent::Started { image });
    let outcome = catch_unwind(AssertUnwindSafe(work)).unwrap_or_else(|_| {
        error!("task {task_id}: the worker hit an internal error while running it");
        TaskOutcome::failed(FailureReason::Unknown, INTERNAL_ERROR)
    });
    shared.deadlines.remove(cancel);
    // Masked as this task's log lines are (its scope is still on): the
    // message quotes outside text, which may echo a secret.
    let message = outcome.into_message(task_id).map(masked);
    let took = started.elapsed();
    let seconds = (took.as_secs_f64() * 1000.0).round() / 1000.0;
    match &message {
        None => info!(
            task_id = task_id;
            "task {task_id} left running for the next worker process (detached)"
        ),
        Some(Outbound::TaskFailed {
            message: m,
            failure_reason,
            exit_code,
            ..
        }) => warn!(
            task_id = task_id,
            exit_code = *exit_code,
            duration_seconds = seconds,
            failure_reason = failure_reason.map_or("unknown", |r| r.as_str());
            "task {task_id} failed after {took:?}: {m}"
        ),
        Some(_) => info!(
            task_id = task_id, duration_seconds = seconds;
            "task {task_id} ended after {took:?}"
        ),
    }
    message
}

/// Frees the task's slot, then queues its terminal message unless it was
/// reported ahead. The slot goes first so the next assignment the
/// orchestrator sends in answer is never rejected for capacity; the entry
/// stays until the message is queued, so a duplicate assignment arriving in
/// between is claimed again, never run twice.
fn finish(shared: &Shared, task_id: &str, message: Option<Outbound>, started: Instant) {
    let (count, reported) = {
        let mut active = shared.registry.lock();
        let reported = match active.get_mut(task_id) {
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
        shared.push_terminal(task_id, message);
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
            .registry
            .lock()
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
        self.shared.registry.left();
    }
}
