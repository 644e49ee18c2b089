//! What running one task means to the rest of the worker.
//!
//! Owns the [`TaskRunner`] trait (the Docker backend implements it; tests use
//! small fakes), the [`CancelToken`] a running task watches, and the
//! [`TaskOutcome`] it returns, with the one function that turns an outcome into
//! the terminal wire message. It must not know about sockets or Docker.

use std::sync::{Arc, Condvar, Mutex};
use std::time::{Duration, Instant, SystemTime};

use crate::untrusted;
use crate::wire::{self, FailureReason, Outbound, TaskAssignment};

/// Runs one task to its end. Called on a pool thread; may block for hours.
///
/// Implementations watch `cancel`: when it fires they stop what they are
/// doing (kill the container, abort the pull), clean up, and return promptly;
/// for [`CancelCause::Detach`] they leave a started container running and
/// return [`TaskOutcome::Detached`]. [`CancelToken::deadline`] says when the
/// task times out, [`CancelToken::stop_by`] how soon a stop must be done.
pub trait TaskRunner: Send + Sync + 'static {
    /// Runs `task` and says how it ended.
    fn run(&self, task: &TaskAssignment, cancel: &CancelToken) -> TaskOutcome;

    /// The orchestrator has read the terminal message of `task_id`: what
    /// was kept so a later process could report the task again (its
    /// container) may go now.
    fn delivered(&self, _task_id: &str) {}

    /// Finishes, until `until` at the latest, what [`TaskRunner::delivered`]
    /// set in motion; called once at the end of a shutdown.
    fn settle(&self, _until: Instant) {}

    /// Whether this process holds `task_id` now, so a shutdown may report
    /// it ahead of its end: false while it only follows a task another live
    /// process owns, or has not yet claimed it (it then reports, or not,
    /// when it ends).
    fn reports(&self, _task_id: &str) -> bool {
        true
    }
}

/// How a task ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TaskOutcome {
    /// The container exited 0.
    Completed,
    /// The task was stopped because of `cause`; the runner cleaned up.
    Cancelled(CancelCause),
    /// The worker stopped watching a running container and left it for the
    /// next worker process to adopt; nothing is reported.
    Detached,
    /// The task was interrupted before its container ever started (its
    /// worker died); reported `task_cancelled` so the user can retry.
    Interrupted,
    /// Anything else ended the task.
    Failed {
        /// Where it failed.
        reason: FailureReason,
        /// Plain words for the dashboard, without the "Failed to execute task: " prefix.
        detail: String,
        /// Container exit status, 0 when there is none.
        exit_code: i64,
    },
}

impl TaskOutcome {
    /// A failure with no exit code.
    pub fn failed(reason: FailureReason, detail: impl Into<String>) -> Self {
        Self::Failed {
            reason,
            detail: detail.into(),
            exit_code: 0,
        }
    }

    /// The terminal message the orchestrator gets for this outcome; none
    /// for [`TaskOutcome::Detached`] (the task goes on under another worker).
    pub fn into_message(self, task_id: &str) -> Option<Outbound> {
        let task_id = task_id.to_owned();
        Some(match self {
            Self::Detached => return None,
            Self::Interrupted => Outbound::TaskFailed {
                task_id,
                message: wire::INTERRUPTED_MESSAGE.into(),
                failure_reason: Some(FailureReason::TaskCancelled),
                exit_code: 0,
            },
            Self::Completed => Outbound::TaskCompleted {
                task_id,
                message: wire::COMPLETED_MESSAGE.into(),
                task_state: None,
            },
            Self::Cancelled(CancelCause::User) => Outbound::TaskCompleted {
                task_id,
                message: wire::CANCELLED_MESSAGE.into(),
                task_state: Some(wire::CANCELLED_STATE.into()),
            },
            Self::Cancelled(CancelCause::Shutdown | CancelCause::Detach) => Outbound::TaskFailed {
                task_id,
                message: wire::INTERRUPTED_MESSAGE.into(),
                failure_reason: Some(FailureReason::GracefulShutdown),
                exit_code: 0,
            },
            Self::Cancelled(CancelCause::Timeout) => Outbound::TaskFailed {
                task_id,
                message: wire::TIMEOUT_MESSAGE.into(),
                failure_reason: Some(FailureReason::TaskTimeout),
                exit_code: 0,
            },
            Self::Failed {
                reason,
                detail,
                exit_code,
            } => Outbound::TaskFailed {
                task_id,
                // Details quote outside values (the daemon's words, image
                // names): the dashboard gets a bounded message whatever they hold.
                message: format!(
                    "Failed to execute task: {}",
                    untrusted::truncate_message(&detail, untrusted::MESSAGE_MAX_BYTES)
                ),
                failure_reason: Some(reason),
                exit_code,
            },
        })
    }
}

/// Why a task was asked to stop.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CancelCause {
    /// The orchestrator sent `task_cancellation`.
    User,
    /// The worker is shutting down.
    Shutdown,
    /// The task ran past `task_timeout`.
    Timeout,
    /// The worker is stopping and leaves running containers to its successor.
    Detach,
}

type Hook = Box<dyn FnOnce(CancelCause) + Send>;

#[derive(Default)]
struct CancelState {
    cause: Option<CancelCause>,
    stop_by: Option<Instant>,
    deadline: Option<SystemTime>,
    next_hook: u64,
    hooks: Vec<(u64, Hook)>,
}

/// A one-shot cancellation signal shared between a task and whoever may stop it.
///
/// Blocking calls cannot watch a flag, so a runner registers a hook with
/// [`CancelToken::on_cancel`] ("kill this container", "shut this socket") for
/// as long as it is blocked; [`CancelToken::cancel`] runs the hooks on the
/// cancelling thread, which unblocks the runner. The first cause wins.
#[derive(Clone, Default)]
pub struct CancelToken {
    inner: Arc<(Mutex<CancelState>, Condvar)>,
}

impl CancelToken {
    /// A token that has not fired.
    pub fn new() -> Self {
        Self::default()
    }

    /// Fires the token (once; later calls are ignored) and runs every hook.
    pub fn cancel(&self, cause: CancelCause) {
        self.fire(cause, None);
    }

    /// Fires the token like [`CancelToken::cancel`], asking that the task's
    /// container be stopped by `stop_by` (a shutdown shares its time budget).
    pub fn cancel_by(&self, cause: CancelCause, stop_by: Instant) {
        self.fire(cause, Some(stop_by));
    }

    fn fire(&self, cause: CancelCause, stop_by: Option<Instant>) {
        let hooks = {
            let mut state = self.lock();
            if state.cause.is_some() {
                return;
            }
            state.cause = Some(cause);
            state.stop_by = stop_by;
            std::mem::take(&mut state.hooks)
        };
        self.inner.1.notify_all();
        for (_, hook) in hooks {
            hook(cause);
        }
    }

    /// Why the token fired, if it has.
    pub fn cause(&self) -> Option<CancelCause> {
        self.lock().cause
    }

    /// True once the token has fired.
    pub fn is_cancelled(&self) -> bool {
        self.cause().is_some()
    }

    /// The moment a stop asked for by the canceller must be done, if it set one.
    pub fn stop_by(&self) -> Option<Instant> {
        self.lock().stop_by
    }

    /// Records when the task times out (the dispatcher sets it at claim).
    pub fn set_deadline(&self, at: SystemTime) {
        self.lock().deadline = Some(at);
    }

    /// When the task times out, on the wall clock; `None` = no limit.
    pub fn deadline(&self) -> Option<SystemTime> {
        self.lock().deadline
    }

    /// Runs `hook` when the token fires while the returned guard lives; at
    /// once (on this thread) when it has already fired. Dropping the guard
    /// removes the hook.
    pub fn on_cancel(&self, hook: impl FnOnce(CancelCause) + Send + 'static) -> HookGuard {
        let mut state = self.lock();
        if let Some(cause) = state.cause {
            drop(state);
            hook(cause);
            return HookGuard { token: None, id: 0 };
        }
        let id = state.next_hook;
        state.next_hook += 1;
        state.hooks.push((id, Box::new(hook)));
        HookGuard {
            token: Some(self.clone()),
            id,
        }
    }

    /// Sleeps until the token fires or `timeout` passes; returns the cause if it fired.
    pub fn wait_timeout(&self, timeout: Duration) -> Option<CancelCause> {
        let deadline = Instant::now() + timeout;
        let mut state = self.lock();
        loop {
            if state.cause.is_some() {
                return state.cause;
            }
            let now = Instant::now();
            if now >= deadline {
                return None;
            }
            state = self
                .inner
                .1
                .wait_timeout(state, deadline - now)
                .unwrap_or_else(|e| e.into_inner())
                .0;
        }
    }

    /// True when both handles are the same token.
    pub fn same_as(&self, other: &CancelToken) -> bool {
        Arc::ptr_eq(&self.inner, &other.inner)
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, CancelState> {
        self.inner.0.lock().unwrap_or_else(|e| e.into_inner())
    }
}

impl std::fmt::Debug for CancelToken {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CancelToken")
            .field("cause", &self.cause())
            .finish()
    }
}

/// Keeps a cancel hook registered; dropping it removes the hook.
#[must_use = "the hook is removed as soon as the guard is dropped"]
pub struct HookGuard {
    token: Option<CancelToken>,
    id: u64,
}

impl Drop for HookGuard {
    fn drop(&mut self) {
        if let Some(token) = &self.token {
            token.lock().hooks.retain(|(id, _)| *id != self.id);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicUsize, Ordering};

    #[test]
    fn hooks_run_once_and_only_while_guarded() {
        let token = CancelToken::new();
        let hits = Arc::new(AtomicUsize::new(0));
        let h = hits.clone();
        let kept = token.on_cancel(move |_| {
            h.fetch_add(1, Ordering::SeqCst);
        });
        let h = hits.clone();
        drop(token.on_cancel(move |_| {
            h.fetch_add(100, Ordering::SeqCst);
        }));
        token.cancel(CancelCause::User);
        token.cancel(CancelCause::Shutdown);
        assert_eq!(hits.load(Ordering::SeqCst), 1);
        assert_eq!(token.cause(), Some(CancelCause::User));
        drop(kept);
        let h = hits.clone();
        let _late = token.on_cancel(move |c| {
            assert_eq!(c, CancelCause::User);
            h.fetch_add(10, Ordering::SeqCst);
        });
        assert_eq!(hits.load(Ordering::SeqCst), 11);
    }

    #[test]
    fn wait_timeout_wakes_on_cancel() {
        let token = CancelToken::new();
        let t = token.clone();
        let waiter = std::thread::spawn(move || t.wait_timeout(Duration::from_secs(30)));
        token.cancel(CancelCause::Timeout);
        assert_eq!(waiter.join().unwrap(), Some(CancelCause::Timeout));
        assert_eq!(
            CancelToken::new().wait_timeout(Duration::from_millis(1)),
            None
        );
    }

    #[test]
    fn outcomes_become_the_spec_messages() {
        let m = TaskOutcome::Failed {
            reason: FailureReason::ContainerExit,
            detail: "container exited with code 3".into(),
            exit_code: 3,
        }
        .into_message("T");
        assert_eq!(
            m,
            Some(Outbound::TaskFailed {
                task_id: "T".into(),
                message: "Failed to execute task: container exited with code 3".into(),
                failure_reason: Some(FailureReason::ContainerExit),
                exit_code: 3
            })
        );
        let long =
            TaskOutcome::failed(FailureReason::ImagePull, "x".repeat(1 << 20)).into_message("T");
        let Some(Outbound::TaskFailed { message, .. }) = long else {
            panic!("not failed")
        };
        assert_eq!(
            message.len(),
            24 + 8192 + "…(message cut: 1040384 more bytes)".len()
        );
        let m = TaskOutcome::Cancelled(CancelCause::Shutdown).into_message("T");
        assert!(
            matches!(m, Some(Outbound::TaskFailed { failure_reason: Some(FailureReason::GracefulShutdown), ref message, .. }) if message == wire::INTERRUPTED_MESSAGE)
        );
        assert_eq!(TaskOutcome::Detached.into_message("T"), None);
        assert_eq!(
            TaskOutcome::Interrupted.into_message("T"),
            Some(Outbound::TaskFailed {
                task_id: "T".into(),
                message: wire::INTERRUPTED_MESSAGE.into(),
                failure_reason: Some(FailureReason::TaskCancelled),
                exit_code: 0
            })
        );
    }

    #[test]
    fn a_shutdown_cancel_carries_its_stop_deadline() {
        let token = CancelToken::new();
        assert_eq!(token.stop_by(), None);
        let by = Instant::now() + Duration::from_secs(3);
        token.cancel_by(CancelCause::Shutdown, by);
        token.cancel_by(CancelCause::Timeout, by + Duration::from_secs(9));
        assert_eq!(token.stop_by(), Some(by));
        assert_eq!(token.cause(), Some(CancelCause::Shutdown));
        let at = SystemTime::UNIX_EPOCH + Duration::from_secs(5);
        token.set_deadline(at);
        assert_eq!(token.deadline(), Some(at));
    }
}
