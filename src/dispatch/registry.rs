//! The registry of active tasks: task id → its cancel token and execution
//! id, from its claim (or adoption) until its terminal message is queued.
//!
//! Owns who holds a slot ([`running`]), cancelling tasks (one at the
//! orchestrator's request, or all at shutdown), reporting every running task
//! ahead of its end, and waiting until few enough are left. Must not decide
//! whether a task is taken (that is [`super::admission`]) nor run one.

use std::collections::HashMap;
use std::sync::{Condvar, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use log::{info, warn};

use super::Dispatcher;
use crate::events::TaskEvent;
use crate::task::{CancelCause, CancelToken, TaskOutcome};

/// One active task.
pub(super) struct Active {
    pub(super) execution_id: String,
    pub(super) cancel: CancelToken,
    /// The task has ended and its terminal message is on its way: it no
    /// longer holds a slot, but stays registered so a duplicate assignment
    /// arriving meanwhile is not run a second time.
    pub(super) finishing: bool,
    /// Its terminal message was sent ahead of its end (a shutdown reports
    /// first and stops containers after); whatever the runner returns later
    /// is not sent again.
    pub(super) reported: bool,
    /// When it began (for an adopted task, before this process started).
    pub(super) started: Instant,
}

impl Active {
    pub(super) fn new(execution_id: &str, cancel: &CancelToken, started: Instant) -> Self {
        Self {
            execution_id: execution_id.to_owned(),
            cancel: cancel.clone(),
            finishing: false,
            reported: false,
            started,
        }
    }
}

/// The active tasks, and a signal for each one that leaves.
#[derive(Default)]
pub(super) struct Registry {
    active: Mutex<HashMap<String, Active>>,
    idle: Condvar,
}

impl Registry {
    pub(super) fn lock(&self) -> MutexGuard<'_, HashMap<String, Active>> {
        self.active.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Wakes whoever waits for tasks to leave.
    pub(super) fn left(&self) {
        self.idle.notify_all();
    }
}

/// Tasks that hold a slot (claimed and not yet ended).
pub(super) fn running(active: &HashMap<String, Active>) -> usize {
    active.values().filter(|a| !a.finishing).count()
}

impl Dispatcher {
    /// Cancels `task_id` at the orchestrator's request.
    pub(super) fn cancel(&self, task_id: &str) {
        let token = self
            .shared
            .registry
            .lock()
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
            .registry
            .lock()
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
            let mut active = self.shared.registry.lock();
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
        self.shared.registry.lock().len()
    }

    /// Whether `task_id` is active here.
    pub fn is_active(&self, task_id: &str) -> bool {
        self.shared.registry.lock().contains_key(task_id)
    }

    /// Waits until no task is active; false if `timeout` passed first.
    pub fn wait_idle(&self, timeout: Duration) -> bool {
        self.wait_active_at_most(0, timeout)
    }

    /// Waits until at most `n` tasks are active; false if `timeout` passed first.
    pub fn wait_active_at_most(&self, n: usize, timeout: Duration) -> bool {
        let registry = &self.shared.registry;
        let deadline = Instant::now().checked_add(timeout);
        let mut active = registry.lock();
        while active.len() > n {
            let now = Instant::now();
            let wait = match deadline {
                Some(d) if now >= d => return false,
                Some(d) => d - now,
                None => Duration::from_secs(3600),
            };
            active = registry
                .idle
                .wait_timeout(active, wait)
                .unwrap_or_else(|e| e.into_inner())
                .0;
        }
        true
    }
}
