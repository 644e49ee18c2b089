//! Claim or reject: what the dispatcher does with each message from the
//! orchestrator, and with each task an earlier worker process left running.
//!
//! Owns the five reasons an assignment is rejected, checked in this order:
//! the worker shuts down, Docker does not answer, Docker's disk is full,
//! every slot is busy, the assignment's bytes would pass the cap on bytes in
//! flight. A duplicate of an active task is claimed again, never run twice.
//! Must not run a task: an admitted one goes to [`super::pool`] as a
//! [`super::run`] job.

use std::sync::atomic::Ordering;
use std::time::{Instant, SystemTime};

use log::{error, info, warn};

use super::registry::{Active, running};
use super::run::{Job, Work};
use super::{AdoptedTask, Dispatcher};
use crate::events::{RejectReason, TaskEvent};
use crate::inflight::Permit;
use crate::logging;
use crate::task::CancelToken;
use crate::untrusted::Escaped;
use crate::wire::{self, FailureReason, Inbound, Outbound, TaskAssignment};

/// What admission decided for an assignment.
enum Verdict {
    /// The task is active here already: claim it again, run nothing.
    Again,
    /// Answer `task_rejected`.
    Reject(RejectReason),
    /// Registered: run it.
    Take {
        /// Its share of the in-flight bytes.
        bytes: Permit,
        cancel: CancelToken,
        started: Instant,
        /// Tasks holding a slot, this one included.
        count: usize,
    },
}

impl Dispatcher {
    /// Acts on one message from the orchestrator. Never blocks on a task.
    pub fn handle(&self, message: Inbound) {
        match message {
            Inbound::Assignment(assignment) => self.assign(assignment),
            Inbound::InvalidAssignment { task_id, problem } => {
                self.refuse_invalid(task_id, problem)
            }
            Inbound::Cancellation { task_id } => self.cancel(&task_id),
            Inbound::Unknown { kind } => {
                warn!("ignoring a message of unknown type {kind:?} from the orchestrator")
            }
        }
    }

    /// Fails an assignment that did not decode, unless the task runs here.
    fn refuse_invalid(&self, task_id: String, problem: String) {
        // An id refused at the door is shown escaped and cut in the
        // message, never as the (unbounded) `task_id` field.
        if wire::check_id("task_id", &task_id).is_ok() {
            error!(
                task_id = task_id.as_str();
                "task {}: invalid task assignment: {problem}",
                Escaped(&task_id)
            );
        } else {
            error!(
                "task {}: invalid task assignment: {problem}",
                Escaped(&task_id)
            );
        }
        if self.shared.registry.lock().contains_key(&task_id) {
            // Its one terminal message comes from the run already here.
            warn!(
                "task {} is running here; the invalid copy is ignored",
                Escaped(&task_id)
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

    fn assign(&self, assignment: Box<TaskAssignment>) {
        let task_id = assignment.task_id.clone();
        let shared = &self.shared;
        shared.observer.task_event(
            &task_id,
            TaskEvent::Assigned {
                title: &assignment.task.title,
            },
        );
        let (bytes, cancel, started, count) = match self.admit(&assignment) {
            Verdict::Again => {
                self.claim(task_id);
                return;
            }
            Verdict::Reject(reason) => {
                self.reject(task_id, reason);
                return;
            }
            Verdict::Take {
                bytes,
                cancel,
                started,
                count,
            } => (bytes, cancel, started, count),
        };
        info!(
            task_id = task_id.as_str(), worker_id = shared.settings.worker_id.as_str();
            "claimed task {task_id} ({:?}), {count} active",
            Escaped(&assignment.task.title)
        );
        self.claim(task_id.clone());
        shared.observer.active(count);
        if let Some(limit) = shared.settings.task_timeout {
            cancel.set_deadline(SystemTime::now() + limit);
            shared.deadlines.add(Instant::now() + limit, cancel.clone());
        }
        self.send(Job {
            task_id,
            work: Work::Assignment(assignment),
            cancel,
            started,
            bytes: Some(bytes),
        });
    }

    /// The five reject rules, then the task's registration. Each rejection
    /// is logged with its own words.
    fn admit(&self, assignment: &TaskAssignment) -> Verdict {
        let shared = &self.shared;
        let task_id = assignment.task_id.as_str();
        if !shared.accepting.load(Ordering::SeqCst) {
            warn!(task_id = task_id; "rejecting task {task_id}: the worker is shutting down");
            return Verdict::Reject(RejectReason::ShuttingDown);
        }
        let mut active = shared.registry.lock();
        if let Some(existing) = active.get(task_id) {
            info!(
                task_id = task_id;
                "task {task_id} is already running here (execution {:?}); claiming it again without a second run",
                existing.execution_id
            );
            return Verdict::Again;
        }
        if !shared.docker_available.load(Ordering::SeqCst) {
            drop(active);
            warn!(task_id = task_id; "rejecting task {task_id}: the Docker daemon does not answer");
            return Verdict::Reject(RejectReason::DockerUnavailable);
        }
        if shared.disk_full.load(Ordering::SeqCst) {
            drop(active);
            warn!(task_id = task_id; "rejecting task {task_id}: the Docker daemon's disk is full");
            return Verdict::Reject(RejectReason::DiskFull);
        }
        let max = shared.settings.max_concurrent_tasks;
        if max > 0 && running(&active) >= max {
            drop(active);
            warn!(task_id = task_id; "rejecting task {task_id}: worker at maximum concurrency ({max})");
            return Verdict::Reject(RejectReason::AtCapacity);
        }
        let Some(bytes) = shared.in_flight.take(assignment.frame_bytes) else {
            drop(active);
            warn!(
                task_id = task_id;
                "rejecting task {task_id}: its {} bytes would pass the cap on assignments in flight ({} of {} bytes held)",
                assignment.frame_bytes,
                shared.in_flight.used(),
                shared.in_flight.cap()
            );
            return Verdict::Reject(RejectReason::AtCapacity);
        };
        let cancel = CancelToken::new();
        let started = Instant::now();
        active.insert(
            task_id.to_owned(),
            Active::new(&assignment.execution_id, &cancel, started),
        );
        Verdict::Take {
            bytes,
            cancel,
            started,
            count: running(&active),
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
        let mut active = shared.registry.lock();
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

    fn reject(&self, task_id: String, reason: RejectReason) {
        self.shared.observer.rejected(reason);
        self.shared
            .observer
            .task_event(&task_id, TaskEvent::Rejected { reason });
        self.shared.outbox.push(Outbound::TaskRejected {
            task_id,
            reason: reason.wire_text().into(),
        });
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
}
