//! The bounded label values of the worker's metrics.
//!
//! Owns every label value the Go worker exposes (and primes at zero), and the
//! mapping from a terminal [`Outbound`] message to those values. A
//! rejection's label is not here: it is
//! [`RejectReason::metric_label`](crate::events::RejectReason::metric_label),
//! beside the rejection's words. Pure: no state, no I/O, no rendering.

use crate::wire::{CANCELLED_STATE, FailureReason, Outbound};

/// `reason` of `oz_worker_websocket_reconnects_total`: the dial failed.
pub const RECONNECT_DIAL_FAILED: &str = "dial_failed";
/// `reason` of `oz_worker_websocket_reconnects_total`: an established connection ended.
pub const RECONNECT_REMOTE_CLOSE: &str = "remote_close";
/// Every reconnect reason, primed at zero.
pub const RECONNECT_REASONS: [&str; 2] = [RECONNECT_DIAL_FAILED, RECONNECT_REMOTE_CLOSE];

/// Why the connection thread reconnects.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ReconnectReason {
    /// Dialling (TCP, TLS or the WebSocket handshake) failed.
    DialFailed,
    /// A connection that was up went down.
    RemoteClose,
}

impl ReconnectReason {
    /// The label value.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::DialFailed => RECONNECT_DIAL_FAILED,
            Self::RemoteClose => RECONNECT_REMOTE_CLOSE,
        }
    }
}

/// `result` of `oz_worker_tasks_completed_total` and `oz_worker_task_duration_seconds`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum TaskResult {
    /// The task ended with `task_completed` (not a cancellation).
    Succeeded,
    /// The task ended with `task_failed`.
    Failed,
    /// The user cancelled the task.
    Cancelled,
    /// Handed to a remote runtime; never produced by the Docker backend, but
    /// primed like the Go worker does so dashboards see the same series.
    Dispatched,
}

impl TaskResult {
    /// Every result, primed at zero.
    pub const ALL: [TaskResult; 4] = [
        Self::Succeeded,
        Self::Failed,
        Self::Cancelled,
        Self::Dispatched,
    ];

    /// The label value.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Succeeded => "succeeded",
            Self::Failed => "failed",
            Self::Cancelled => "cancelled",
            Self::Dispatched => "dispatched",
        }
    }
}

/// `phase` of `oz_worker_task_failures_total`, primed at zero.
pub const FAILURE_PHASES: [&str; 3] = ["assignment", "backend", "cleanup"];
/// The phase every failure of a run task is counted under (as in the Go worker).
pub const PHASE_BACKEND: &str = "backend";

/// `reason` of `oz_worker_task_failures_total`, primed at zero: the Go
/// worker's whole list, including reasons only its other backends produce.
pub const FAILURE_REASONS: [&str; 29] = [
    "unknown",
    "task_timeout",
    "task_cancelled",
    "graceful_shutdown",
    "image_pull",
    "sidecar_prep",
    "container_create",
    "container_start",
    "container_wait",
    "container_exit",
    "container_oom",
    "workspace_setup",
    "setup_command",
    "agent_invocation",
    "teardown_command",
    "dispatch_command",
    "dispatch_timeout",
    "cancel_command",
    "job_create",
    "job_watch",
    "job_failed",
    "evicted",
    "pod_watch",
    "unschedulable",
    "volume_mount",
    "init_container",
    "invalid_image",
    "active_deadline",
    "cleanup",
];

/// How a terminal message is counted: its result, and for a failure the
/// failure reason (phase is always [`PHASE_BACKEND`]). `None` for a message
/// that does not end a task.
pub fn classify(message: &Outbound) -> Option<(TaskResult, Option<&'static str>)> {
    match message {
        Outbound::TaskCompleted { task_state, .. } => {
            if task_state.as_deref() == Some(CANCELLED_STATE) {
                Some((TaskResult::Cancelled, None))
            } else {
                Some((TaskResult::Succeeded, None))
            }
        }
        Outbound::TaskFailed { failure_reason, .. } => {
            let reason = failure_reason.unwrap_or(FailureReason::Unknown);
            Some((TaskResult::Failed, Some(reason.as_str())))
        }
        Outbound::TaskClaimed { .. } | Outbound::TaskRejected { .. } => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn failed(reason: Option<FailureReason>) -> Outbound {
        Outbound::TaskFailed {
            task_id: "t".into(),
            message: "m".into(),
            failure_reason: reason,
            exit_code: 1,
        }
    }

    fn completed(state: Option<&str>) -> Outbound {
        Outbound::TaskCompleted {
            task_id: "t".into(),
            message: "m".into(),
            task_state: state.map(str::to_owned),
        }
    }

    #[test]
    fn terminal_messages_map_to_go_results() {
        assert_eq!(
            classify(&completed(None)),
            Some((TaskResult::Succeeded, None))
        );
        assert_eq!(
            classify(&completed(Some("CANCELLED"))),
            Some((TaskResult::Cancelled, None))
        );
        assert_eq!(
            classify(&failed(Some(FailureReason::ContainerOom))),
            Some((TaskResult::Failed, Some("container_oom")))
        );
        assert_eq!(
            classify(&failed(None)),
            Some((TaskResult::Failed, Some("unknown")))
        );
        let claimed = Outbound::TaskClaimed {
            task_id: "t".into(),
            worker_id: "w".into(),
        };
        assert_eq!(classify(&claimed), None);
    }

    #[test]
    fn every_wire_failure_reason_is_a_primed_label() {
        for r in FailureReason::ALL {
            assert!(FAILURE_REASONS.contains(&r.as_str()), "{r}");
        }
    }
}
