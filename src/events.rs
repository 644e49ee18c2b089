//! What the dispatcher tells the rest of the worker about tasks: the
//! observer it calls ([`DispatchObserver`]), the events of a task's trace
//! span ([`TaskEvent`]) and why an assignment is rejected ([`RejectReason`]).
//!
//! A leaf between the dispatcher, which reports through these types, and
//! `metrics` and `telemetry`, which implement the observer: neither side
//! imports the other. Owns each rejection's two spellings, the words the
//! orchestrator reads and the bounded metric label, side by side so they
//! cannot drift apart. Holds no state and does no I/O.

use std::time::Duration;

use crate::wire::Outbound;

/// Why an assignment was answered `task_rejected`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum RejectReason {
    /// Every slot is busy, or the assignment's bytes would pass the cap on
    /// assignment bytes in flight.
    AtCapacity,
    /// The worker is shutting down.
    ShuttingDown,
    /// The Docker daemon does not answer: the orchestrator can route the
    /// task to a healthy worker instead of this one claiming it and failing
    /// it at once.
    DockerUnavailable,
    /// The Docker daemon's disk is full: every task would fail its pull or
    /// create.
    DiskFull,
}

impl RejectReason {
    /// Every reason.
    pub const ALL: [RejectReason; 4] = [
        Self::AtCapacity,
        Self::ShuttingDown,
        Self::DockerUnavailable,
        Self::DiskFull,
    ];

    /// The `reason` of `task_rejected`, as the orchestrator reads it (the
    /// capacity words are the Go worker's; the others are ours). Never
    /// changes: the orchestrator and its operators match on these words.
    pub fn wire_text(self) -> &'static str {
        match self {
            Self::AtCapacity => "worker at maximum concurrency",
            Self::ShuttingDown => "worker is shutting down",
            Self::DockerUnavailable => "worker cannot reach its Docker daemon",
            Self::DiskFull => "worker's Docker daemon has no disk space left",
        }
    }

    /// The `reason` label of `oz_worker_tasks_rejected_total` and of a
    /// rejected task's span. `at_capacity` is the Go worker's (primed at
    /// zero); the others only appear once they happen.
    pub fn metric_label(self) -> &'static str {
        match self {
            Self::AtCapacity => "at_capacity",
            Self::ShuttingDown => "shutting_down",
            Self::DockerUnavailable => "docker_unavailable",
            Self::DiskFull => "disk_full",
        }
    }
}

/// What happened to a task, for its span.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TaskEvent<'a> {
    /// The assignment arrived.
    Assigned {
        /// The task's title.
        title: &'a str,
    },
    /// It was claimed.
    Claimed,
    /// It was rejected (this ends its span).
    Rejected {
        /// Why.
        reason: RejectReason,
    },
    /// It starts running on the calling thread with this image.
    Started {
        /// The image the task names.
        image: &'a str,
    },
    /// A cancellation was asked for.
    CancelRequested {
        /// `server` (the orchestrator), `signal` (shutdown) or `timeout`.
        source: &'a str,
    },
}

/// Observes the dispatcher's tasks (metrics and traces); every method
/// defaults to nothing. Called on the dispatcher's and the tasks' threads:
/// an implementation must return quickly and never block on a task.
pub trait DispatchObserver: Send + Sync + 'static {
    /// A task was claimed.
    fn claimed(&self) {}
    /// A task left by an earlier worker process was adopted.
    fn adopted(&self) {}
    /// A task was rejected for `reason`.
    fn rejected(&self, _reason: RejectReason) {}
    /// A task ended with `message` after `elapsed`.
    fn finished(&self, _message: &Outbound, _elapsed: Duration) {}
    /// The number of active tasks changed.
    fn active(&self, _count: usize) {}
    /// Something happened to `task_id` (for its trace span).
    fn task_event(&self, _task_id: &str, _event: TaskEvent<'_>) {}
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_orchestrator_reads_the_same_words_as_before() {
        let words: Vec<&str> = RejectReason::ALL.iter().map(|r| r.wire_text()).collect();
        assert_eq!(
            words,
            [
                "worker at maximum concurrency",
                "worker is shutting down",
                "worker cannot reach its Docker daemon",
                "worker's Docker daemon has no disk space left",
            ]
        );
    }

    #[test]
    fn rejection_reasons_are_bounded() {
        let labels: Vec<&str> = RejectReason::ALL.iter().map(|r| r.metric_label()).collect();
        assert_eq!(
            labels,
            [
                "at_capacity",
                "shutting_down",
                "docker_unavailable",
                "disk_full"
            ]
        );
    }
}
