//! How an assigned task ends (the last phase of [`DockerRunner`]'s run):
//! the outcome its state machine's last step means, the container's exit
//! status and output, what is handed to the cleanup that follows delivery,
//! and what an outcome says about the daemon (a full disk, sidecar volumes
//! a container could not start with). The outcome is settled against why
//! the task was cancelled before it is reported.

use crate::execute::assigned::Phase;
use crate::execute::cleanup::Leftover;
use crate::execute::drive::TaskIds;
use crate::execute::ownership::machine::{Outcome, Silence, Step};
use crate::execute::{CONTAINER_LINE, DockerRunner, disk};
use crate::task::{CancelCause, CancelToken, TaskOutcome};
use crate::untrusted::Escaped;
use crate::wire::FailureReason;

/// Lines of container output logged when a task ends.
const LOG_TAIL_LINES: u32 = 100;
/// Bytes of container output logged at most.
const LOG_TAIL_BYTES: usize = 64 * 1024;

impl DockerRunner {
    /// A task whose container could not start forgets its sidecar volumes:
    /// a volume replaced or emptied behind the worker's back shows here, so
    /// the next task checks them again rather than trusting the record.
    pub(super) fn on_failed_start(&self, outcome: &TaskOutcome, sidecars: &[String]) {
        if let TaskOutcome::Failed {
            reason: FailureReason::ContainerStart,
            ..
        } = outcome
        {
            self.volumes.forget(sidecars);
        }
    }

    /// A failure because Docker's disk is full says so and what to do,
    /// and is recorded so the worker rejects new tasks until Docker can
    /// write again.
    pub(super) fn on_full_disk(&self, outcome: TaskOutcome) -> TaskOutcome {
        match outcome {
            TaskOutcome::Failed {
                reason,
                detail,
                exit_code,
            } if disk::is_full(&detail) => {
                if self.disk.mark_full() {
                    log::error!(
                        "Docker's disk is full (no space left on device); rejecting new tasks until Docker can write again"
                    );
                }
                TaskOutcome::Failed {
                    reason,
                    detail: disk::explain(detail),
                    exit_code,
                }
            }
            other => other,
        }
    }

    /// Phase 3: the task outcome of a machine's last step; hands a held
    /// container (or the execution's records) to the cleanup that follows
    /// delivery.
    pub(super) fn finish(
        &self,
        step: Step,
        ids: &TaskIds<'_>,
        failure: Option<TaskOutcome>,
        volumes: Vec<String>,
        cancel: &CancelToken,
    ) -> TaskOutcome {
        match step {
            Step::Report { outcome, container } => {
                let (result, keep) =
                    self.reported(outcome, container.as_ref(), failure, cancel.is_cancelled());
                let epoch = self.executor.ownership().epoch();
                self.cleanups.hold(
                    ids.task_id,
                    Leftover {
                        container,
                        key: ids.key.to_owned(),
                        keep,
                        volumes,
                        epoch,
                    },
                );
                // The cleanup keeps the execution busy from here on.
                self.busy(ids.key, false);
                result
            }
            Step::Silent(why) => {
                log::info!("task {}: {}", Escaped(ids.task_id), silence_line(why));
                self.executor.ownership().forget_exec(ids.key);
                self.busy(ids.key, false);
                for v in volumes.iter().rev() {
                    let _ = self.docker.volume_remove(v);
                }
                TaskOutcome::Detached
            }
            Step::Cleanup {
                container,
                generation,
            } => {
                log::info!(
                    "task {}: removing container {container}, whose task was reported by a worker process that ended before removing it",
                    Escaped(ids.task_id)
                );
                self.cleanups.now(Leftover {
                    container: Some((container, generation)),
                    key: ids.key.to_owned(),
                    keep: false,
                    volumes,
                    epoch: self.executor.ownership().epoch(),
                });
                self.busy(ids.key, false);
                TaskOutcome::Detached
            }
            Step::Call(_) => TaskOutcome::Detached,
        }
    }

    /// What a reported machine outcome means for the task, and whether its
    /// container is kept after delivery (only an exit not caused by our own
    /// stop, with cleanup off).
    fn reported(
        &self,
        outcome: Outcome,
        container: Option<&(String, u64)>,
        failure: Option<TaskOutcome>,
        cancelled: bool,
    ) -> (TaskOutcome, bool) {
        match (outcome, container) {
            (Outcome::Exited(code), Some((id, _))) => {
                let stopped_by_us = code != 0 && cancelled;
                let keep = !(self.settings.cleanup || stopped_by_us);
                (self.exit_outcome(id, code), keep)
            }
            (Outcome::Exited(code), None) => (exited(code, false), false),
            (Outcome::Failed, _) => (
                failure.unwrap_or_else(|| {
                    TaskOutcome::failed(
                        FailureReason::ContainerWait,
                        "the Docker daemon did not answer",
                    )
                }),
                false,
            ),
            (Outcome::Cancelled, _) => (
                TaskOutcome::failed(FailureReason::ContainerWait, "cancelled"),
                false,
            ),
            (Outcome::Interrupted, _) => (TaskOutcome::Interrupted, false),
            (Outcome::Vanished, _) => (
                TaskOutcome::failed(
                    FailureReason::ContainerWait,
                    "the task's container disappeared (removed outside the worker)",
                ),
                false,
            ),
        }
    }

    /// The outcome of a container that exited with `status`, its output
    /// logged (at debug on success) and `OOMKilled` read for a failure.
    pub(super) fn exit_outcome(&self, id: &str, status: i64) -> TaskOutcome {
        self.log_tail(id, status);
        if status == 0 {
            log::info!("container {id} exited 0");
            return TaskOutcome::Completed;
        }
        let oom = match self.docker.inspect(id) {
            Ok(state) => state.oom_killed,
            Err(e) => {
                log::warn!("inspecting container {id}: {e}");
                false
            }
        };
        exited(status, oom)
    }

    fn log_tail(&self, id: &str, status: i64) {
        let level = if status == 0 {
            log::Level::Debug
        } else {
            log::Level::Info
        };
        if !log::log_enabled!(level) {
            return;
        }
        match self.docker.logs_tail(id, LOG_TAIL_LINES, LOG_TAIL_BYTES) {
            Ok(out) if !out.is_empty() => {
                // One record per line, each marked as the container's (the
                // logger escapes what a line holds), so no output line can
                // pass for one the worker wrote.
                log::log!(
                    level,
                    "container output (last {} lines):",
                    out.lines().count()
                );
                for line in out.lines() {
                    log::log!(level, "{CONTAINER_LINE}{line}");
                }
            }
            Ok(_) => {}
            Err(e) => log::warn!("reading the output of container {id}: {e}"),
        }
    }
}

/// Closes the container run's trace span with the task's outcome.
pub(super) fn close_run_span(span: Option<Phase>, outcome: &TaskOutcome) {
    if let Some(mut span) = span {
        match outcome {
            TaskOutcome::Completed => span.ok(),
            other => {
                span.fail(other.clone());
            }
        }
    }
}

/// The log line for a task this process ends without reporting.
fn silence_line(why: Silence) -> &'static str {
    match why {
        Silence::OwnerReports => {
            "another worker process with this worker id owns its container and reports it"
        }
        Silence::Lost => {
            "another worker process took it over while this one could not act on it; that process reports it"
        }
        Silence::Detached => "leaving its container running for the next worker process",
        Silence::AlreadyDone => "it was reported already",
        Silence::NotMine => {
            "stopping to follow it: its container belongs to another live worker process, which reports it"
        }
    }
}

/// The outcome of a non-zero exit.
fn exited(status: i64, oom: bool) -> TaskOutcome {
    let reason = if oom {
        FailureReason::ContainerOom
    } else {
        FailureReason::ContainerExit
    };
    TaskOutcome::Failed {
        reason,
        detail: format!("container exited with non-zero status: {status}"),
        exit_code: status,
    }
}

/// What a task reports, given how it ended and why it was cancelled (if
/// it was): a cancelled task reports its cancel, a detach that found no
/// started container to leave behind ends it as a shutdown does.
pub(super) fn settle(outcome: TaskOutcome, cause: Option<CancelCause>) -> TaskOutcome {
    match (outcome, cause) {
        (o @ (TaskOutcome::Completed | TaskOutcome::Detached), _) => o,
        (_, Some(CancelCause::Detach)) => TaskOutcome::Cancelled(CancelCause::Shutdown),
        (_, Some(cause)) => TaskOutcome::Cancelled(cause),
        (o, None) => o,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn outcomes_settle_against_the_cancel_cause() {
        let failed = || TaskOutcome::failed(FailureReason::ContainerWait, "cancelled");
        assert_eq!(
            settle(TaskOutcome::Completed, Some(CancelCause::User)),
            TaskOutcome::Completed
        );
        assert_eq!(
            settle(TaskOutcome::Detached, Some(CancelCause::Detach)),
            TaskOutcome::Detached
        );
        assert_eq!(
            settle(failed(), Some(CancelCause::Detach)),
            TaskOutcome::Cancelled(CancelCause::Shutdown)
        );
        assert_eq!(
            settle(failed(), Some(CancelCause::Timeout)),
            TaskOutcome::Cancelled(CancelCause::Timeout)
        );
        assert_eq!(settle(failed(), None), failed());
        assert_eq!(
            exited(137, true),
            TaskOutcome::Failed {
                reason: FailureReason::ContainerOom,
                detail: "container exited with non-zero status: 137".into(),
                exit_code: 137
            }
        );
    }
}
