//! Messages from the worker to the orchestrator: [`Outbound`], its
//! `failure_reason` values and the fixed texts the Go worker sent, each
//! encoded as one text frame.

use std::fmt;

use serde::Serialize;

/// `task_completed` message for a container that exited 0.
pub const COMPLETED_MESSAGE: &str = "Task completed successfully";
/// `task_completed` message for a task ended by `task_cancellation`.
pub const CANCELLED_MESSAGE: &str = "Task cancelled by user request.";
/// `task_state` that marks a cancelled task.
pub const CANCELLED_STATE: &str = "CANCELLED";
/// `task_failed` message for a task ended by shutdown or another interruption.
pub const INTERRUPTED_MESSAGE: &str = "The task was interrupted due to an infrastructure issue (context canceled). This is typically transient — please try again.";
/// `task_failed` message for a task that ran past its time limit.
pub const TIMEOUT_MESSAGE: &str = "The task exceeded its maximum allowed execution time and was terminated. Consider breaking the task into smaller steps or increasing the timeout.";

/// `failure_reason` values of `task_failed` (the orchestrator mirrors this list).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "snake_case")]
#[allow(missing_docs)]
pub enum FailureReason {
    ImagePull,
    SidecarPrep,
    ContainerCreate,
    ContainerStart,
    ContainerWait,
    ContainerExit,
    ContainerOom,
    TaskTimeout,
    TaskCancelled,
    GracefulShutdown,
    Unknown,
}

impl FailureReason {
    /// Every value, in the spec's order.
    pub const ALL: [FailureReason; 11] = [
        Self::ImagePull,
        Self::SidecarPrep,
        Self::ContainerCreate,
        Self::ContainerStart,
        Self::ContainerWait,
        Self::ContainerExit,
        Self::ContainerOom,
        Self::TaskTimeout,
        Self::TaskCancelled,
        Self::GracefulShutdown,
        Self::Unknown,
    ];

    /// The wire spelling.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::ImagePull => "image_pull",
            Self::SidecarPrep => "sidecar_prep",
            Self::ContainerCreate => "container_create",
            Self::ContainerStart => "container_start",
            Self::ContainerWait => "container_wait",
            Self::ContainerExit => "container_exit",
            Self::ContainerOom => "container_oom",
            Self::TaskTimeout => "task_timeout",
            Self::TaskCancelled => "task_cancelled",
            Self::GracefulShutdown => "graceful_shutdown",
            Self::Unknown => "unknown",
        }
    }
}

impl fmt::Display for FailureReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A message from the worker to the orchestrator.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(tag = "type", content = "data", rename_all = "snake_case")]
pub enum Outbound {
    /// The worker accepted the assignment.
    TaskClaimed {
        /// Task.
        task_id: String,
        /// This worker's id.
        worker_id: String,
    },
    /// Every slot is busy.
    TaskRejected {
        /// Task.
        task_id: String,
        /// Why.
        reason: String,
    },
    /// The task ended well, or was cancelled by the user.
    TaskCompleted {
        /// Task.
        task_id: String,
        /// For the dashboard.
        message: String,
        /// `CANCELLED` for a user cancellation.
        #[serde(skip_serializing_if = "Option::is_none")]
        task_state: Option<String>,
    },
    /// Anything else ended the task.
    TaskFailed {
        /// Task.
        task_id: String,
        /// For the dashboard.
        message: String,
        /// Where it failed.
        #[serde(skip_serializing_if = "Option::is_none")]
        failure_reason: Option<FailureReason>,
        /// Container exit status (128+signal for a signal death); omitted when 0.
        #[serde(skip_serializing_if = "is_zero")]
        exit_code: i64,
    },
}

fn is_zero(n: &i64) -> bool {
    *n == 0
}

impl Outbound {
    /// The task this message is about.
    pub fn task_id(&self) -> &str {
        match self {
            Self::TaskClaimed { task_id, .. }
            | Self::TaskRejected { task_id, .. }
            | Self::TaskCompleted { task_id, .. }
            | Self::TaskFailed { task_id, .. } => task_id,
        }
    }

    /// True for `task_completed` and `task_failed`.
    pub fn is_terminal(&self) -> bool {
        matches!(self, Self::TaskCompleted { .. } | Self::TaskFailed { .. })
    }

    /// The message type as sent on the wire.
    pub fn kind(&self) -> &'static str {
        match self {
            Self::TaskClaimed { .. } => "task_claimed",
            Self::TaskRejected { .. } => "task_rejected",
            Self::TaskCompleted { .. } => "task_completed",
            Self::TaskFailed { .. } => "task_failed",
        }
    }

    /// The text frame for this message.
    pub fn encode(&self) -> String {
        // Serialising these plain structs cannot fail.
        serde_json::to_string(self).expect("outbound messages always serialise")
    }
}
