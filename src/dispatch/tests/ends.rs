//! Dispatcher tests of adopted tasks, shutdown reports, thread names,
//! masking and panics: how a task ends.

use super::*;

fn adopted(id: &str, outcome: TaskOutcome) -> AdoptedTask {
    AdoptedTask {
        task_id: id.into(),
        execution_id: format!("exec-{id}"),
        deadline: None,
        running_for: Duration::from_secs(5),
        image: "img".into(),
        work: Box::new(move |cancel: &CancelToken| match outcome {
            TaskOutcome::Completed => match cancel.wait_timeout(Duration::from_secs(60)) {
                Some(cause) => TaskOutcome::Cancelled(cause),
                None => TaskOutcome::Completed,
            },
            other => other,
        }),
    }
}

#[test]
fn an_adopted_task_holds_a_slot_reports_once_and_is_not_run_twice() {
    let (d, outbox) = dispatcher(1, None);
    assert!(d.adopt(adopted("a", TaskOutcome::Completed)));
    assert!(
        !d.adopt(adopted("a", TaskOutcome::Completed)),
        "already here"
    );
    // It holds the one slot; its duplicate assignment is claimed, not run.
    d.handle(assignment("b", "slow"));
    d.handle(assignment("a", "slow"));
    assert_eq!(d.active_count(), 1);
    d.handle(Inbound::Cancellation {
        task_id: "a".into(),
    });
    assert!(d.wait_idle(Duration::from_secs(10)));
    assert_eq!(
        kinds(&outbox),
        vec![
            pair("task_rejected", "b"),
            pair("task_claimed", "a"),
            pair("task_completed", "a")
        ]
    );
    // A task whose record says it ended is reported without a claim.
    assert!(d.adopt(adopted(
        "c",
        TaskOutcome::Failed {
            reason: FailureReason::ContainerExit,
            detail: "container exited with non-zero status: 5".into(),
            exit_code: 5
        }
    )));
    assert!(d.wait_idle(Duration::from_secs(10)));
    assert_eq!(
        outbox.after(0).last().unwrap().message,
        Outbound::TaskFailed {
            task_id: "c".into(),
            message: "Failed to execute task: container exited with non-zero status: 5".into(),
            failure_reason: Some(FailureReason::ContainerExit),
            exit_code: 5
        }
    );
    d.stop_accepting();
    assert!(
        !d.adopt(adopted("d", TaskOutcome::Completed)),
        "not while stopping"
    );
}

#[test]
fn a_shutdown_reports_first_and_a_detach_reports_nothing() {
    let (d, outbox) = dispatcher(0, None);
    d.handle(assignment("a", "slow"));
    d.handle(assignment("b", "slow"));
    d.stop_accepting();
    assert_eq!(
        d.report_all_now(&TaskOutcome::Cancelled(CancelCause::Shutdown)),
        2
    );
    assert_eq!(
        d.report_all_now(&TaskOutcome::Cancelled(CancelCause::Shutdown)),
        0
    );
    let shutdowns = |o: &Outbox| {
        o.after(0)
            .iter()
            .filter(|q| {
                matches!(
                    q.message,
                    Outbound::TaskFailed {
                        failure_reason: Some(FailureReason::GracefulShutdown),
                        ..
                    }
                )
            })
            .count()
    };
    assert_eq!(shutdowns(&outbox), 2, "sent while the tasks still run");
    assert_eq!(d.active_count(), 2);
    d.cancel_all(CancelCause::Shutdown);
    assert!(d.wait_idle(Duration::from_secs(10)));
    assert_eq!(shutdowns(&outbox), 2, "and not again when they end");

    let (d, outbox) = dispatcher(0, None);
    assert!(d.adopt(adopted("x", TaskOutcome::Detached)));
    assert!(d.wait_idle(Duration::from_secs(10)));
    assert!(outbox.is_empty(), "a detached task reports nothing");
}

#[test]
fn outside_text_never_reaches_a_thread_name_at_any_concurrency() {
    for max in [0, 2] {
        let (d, outbox) = dispatcher(max, None);
        d.handle(assignment("a\0b", "quick"));
        assert!(d.wait_idle(Duration::from_secs(10)));
        assert_eq!(
            kinds(&outbox),
            vec![pair("task_claimed", "a\0b"), pair("task_completed", "a\0b")],
            "max {max}"
        );
    }
}

#[test]
fn task_failed_messages_are_masked_like_the_tasks_log_lines() {
    let (d, outbox) = dispatcher(0, None);
    let Inbound::Assignment(mut a) = assignment("m", "echo") else {
        unreachable!()
    };
    a.env_vars.insert(
        "KEY".into(),
        "-----BEGIN KEY-----\nline-two-of-key\n".into(),
    );
    a.env_vars.insert("SHORT".into(), "abc".into());
    d.handle(Inbound::Assignment(a));
    assert!(d.wait_idle(Duration::from_secs(10)));
    let messages: Vec<String> = outbox
        .after(0)
        .into_iter()
        .filter_map(|q| match q.message {
            Outbound::TaskFailed { message, .. } => Some(message),
            _ => None,
        })
        .collect();
    assert_eq!(
        messages,
        ["Failed to execute task: it printed [REDACTED] and abc"]
    );
}

/// Panics when task `boom` starts: a bug outside the runner.
struct PanicsOnStart;
impl DispatchObserver for PanicsOnStart {
    fn task_event(&self, task_id: &str, event: TaskEvent<'_>) {
        if task_id == "boom" && matches!(event, TaskEvent::Started { .. }) {
            panic!("observer bug");
        }
    }
}

#[test]
fn a_panic_outside_the_runner_ends_the_task_once_and_keeps_the_slot_thread() {
    for max in [0, 1] {
        let outbox = Outbox::new();
        let d = Dispatcher::start_observed(
            DispatchSettings {
                worker_id: "w".into(),
                max_concurrent_tasks: max,
                task_timeout: None,
                max_in_flight_bytes: 0,
            },
            outbox.clone(),
            Arc::new(FakeRunner),
            Arc::new(PanicsOnStart),
        );
        d.handle(assignment("boom", "quick"));
        assert!(d.wait_idle(Duration::from_secs(10)), "max {max}");
        // The one pool thread is still there to run the next task.
        d.handle(assignment("next", "quick"));
        assert!(d.wait_idle(Duration::from_secs(10)), "max {max}");
        let messages: Vec<Outbound> = outbox.after(0).into_iter().map(|q| q.message).collect();
        assert_eq!(
            messages,
            [
                Outbound::TaskClaimed {
                    task_id: "boom".into(),
                    worker_id: "w".into()
                },
                Outbound::TaskFailed {
                    task_id: "boom".into(),
                    message: "Failed to execute task: the worker hit an internal error while running the task".into(),
                    failure_reason: Some(FailureReason::Unknown),
                    exit_code: 0
                },
                Outbound::TaskClaimed {
                    task_id: "next".into(),
                    worker_id: "w".into()
                },
                Outbound::TaskCompleted {
                    task_id: "next".into(),
                    message: wire::COMPLETED_MESSAGE.into(),
                    task_state: None
                },
            ],
            "max {max}"
        );
    }
}
