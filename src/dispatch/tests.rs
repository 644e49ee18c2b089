use std::sync::Arc;
use std::time::Duration;

use super::*;
use crate::events::{DispatchObserver, RejectReason, TaskEvent};
use crate::task::{CancelCause, CancelToken, TaskOutcome, TaskRunner};
use crate::wire::{self, FailureReason, Inbound, Outbound, Task, TaskAssignment};

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
        if task.docker_image == "echo" {
            let values: Vec<&str> = task.env_vars.values().map(String::as_str).collect();
            return TaskOutcome::failed(
                FailureReason::ContainerExit,
                format!("it printed {}", values.join(" and ")),
            );
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
            max_in_flight_bytes: 0,
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
            max_in_flight_bytes: 0,
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

#[test]
fn while_docker_does_not_answer_new_tasks_are_rejected_not_claimed() {
    let (d, outbox) = dispatcher(0, None);
    d.handle(assignment("running", "slow"));
    d.set_docker_available(false);
    d.handle(assignment("new", "quick"));
    // A duplicate of a task already here is still claimed: nothing new runs.
    d.handle(assignment("running", "slow"));
    d.set_docker_available(true);
    d.handle(assignment("later", "quick"));
    assert!(d.wait_active_at_most(1, Duration::from_secs(10)));
    let k = kinds(&outbox);
    assert_eq!(
        &k[..4],
        &[
            pair("task_claimed", "running"),
            pair("task_rejected", "new"),
            pair("task_claimed", "running"),
            pair("task_claimed", "later"),
        ]
    );
    let rejected = outbox
        .after(0)
        .into_iter()
        .find(|q| q.message.kind() == "task_rejected")
        .unwrap()
        .message;
    assert_eq!(
        rejected,
        Outbound::TaskRejected {
            task_id: "new".into(),
            reason: "worker cannot reach its Docker daemon".into()
        }
    );
    d.cancel_all(CancelCause::Shutdown);
    assert!(d.wait_idle(Duration::from_secs(10)));
}

#[test]
fn while_dockers_disk_is_full_new_tasks_are_rejected_with_that_reason() {
    let (d, outbox) = dispatcher(0, None);
    d.set_disk_full(true);
    d.handle(assignment("new", "quick"));
    d.set_disk_full(false);
    d.handle(assignment("later", "quick"));
    assert!(d.wait_active_at_most(0, Duration::from_secs(10)));
    let k = kinds(&outbox);
    assert_eq!(
        &k[..2],
        &[pair("task_rejected", "new"), pair("task_claimed", "later")]
    );
    let rejected = outbox
        .after(0)
        .into_iter()
        .find(|q| q.message.kind() == "task_rejected")
        .unwrap()
        .message;
    assert_eq!(
        rejected,
        Outbound::TaskRejected {
            task_id: "new".into(),
            reason: "worker's Docker daemon has no disk space left".into()
        }
    );
    assert_eq!(RejectReason::DiskFull.metric_label(), "disk_full");
    d.cancel_all(CancelCause::Shutdown);
    assert!(d.wait_idle(Duration::from_secs(10)));
}

// Adoption, shutdown and how a task ends: in `tests/ends.rs`.
mod ends;
