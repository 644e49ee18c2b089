//! The worker core end to end over real sockets: the stand-in orchestrator
//! on one side, a started [`Daemon`] with a scripted in-process runner on the
//! other (the Docker runner has its own tests). Covers claim/terminal JSON,
//! capacity, duplicates, cancellation, reconnects while tasks run, and the
//! shutdown sequence.

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Condvar, Mutex};
use std::time::Duration;

use oz_agent_worker::config::{self, Command, Config};
use oz_agent_worker::connection::BackoffPolicy;
use oz_agent_worker::daemon::{Daemon, Hooks, Timings};
use oz_agent_worker::task::{CancelToken, TaskOutcome, TaskRunner};
use oz_agent_worker::wire::{FailureReason, TaskAssignment};
use oz_standin::{Options, Orchestrator};
use serde_json::{Value, json};

const WAIT: Duration = Duration::from_secs(20);

/// Runs a task according to its `docker_image`: `quick` completes, `exit:N`
/// fails with exit code N, `held` runs until released or cancelled.
#[derive(Default)]
struct ScriptedRunner {
    released: Arc<(Mutex<HashSet<String>>, Condvar)>,
    runs: Mutex<HashMap<String, usize>>,
}

impl ScriptedRunner {
    fn release(&self, task_id: &str) {
        self.released.0.lock().unwrap().insert(task_id.to_owned());
        self.released.1.notify_all();
    }
    fn runs(&self, task_id: &str) -> usize {
        self.runs.lock().unwrap().get(task_id).copied().unwrap_or(0)
    }
}

impl TaskRunner for ScriptedRunner {
    fn run(&self, task: &TaskAssignment, cancel: &CancelToken) -> TaskOutcome {
        *self
            .runs
            .lock()
            .unwrap()
            .entry(task.task_id.clone())
            .or_default() += 1;
        if let Some(code) = task.docker_image.strip_prefix("exit:") {
            return TaskOutcome::Failed {
                reason: FailureReason::ContainerExit,
                detail: format!("container exited with non-zero status: {code}"),
                exit_code: code.parse().unwrap(),
            };
        }
        if task.docker_image == "held" {
            // The cancel hook wakes this wait, as a real runner's hook aborts its I/O.
            let wake = self.released.clone();
            let _hook = cancel.on_cancel(move |_| {
                let _guard = wake.0.lock().unwrap();
                wake.1.notify_all();
            });
            let mut released = self.released.0.lock().unwrap();
            while !released.contains(&task.task_id) {
                if let Some(cause) = cancel.cause() {
                    return TaskOutcome::Cancelled(cause);
                }
                released = self.released.1.wait(released).unwrap();
            }
        }
        TaskOutcome::Completed
    }
}

fn config(url: &str, extra: &[&str]) -> Config {
    let mut args: Vec<std::ffi::OsString> = vec![
        "--worker-id".into(),
        "core-test".into(),
        "--web-socket-url".into(),
        url.into(),
    ];
    args.extend(extra.iter().map(Into::into));
    match config::parse(args, &|k| (k == "WARP_API_KEY").then(|| "test-key".into())).unwrap() {
        Command::Run(c) => c,
        _ => unreachable!(),
    }
}

fn fast(s: &mut oz_agent_worker::connection::Settings) {
    s.backoff = BackoffPolicy {
        initial: Duration::from_millis(10),
        factor: 2,
        max: Duration::from_millis(50),
        jitter: 0.0,
    };
}

fn start(extra: &[&str]) -> (Orchestrator, Daemon, Arc<ScriptedRunner>) {
    let orch = Orchestrator::start(Options::default());
    let runner = Arc::new(ScriptedRunner::default());
    let daemon = Daemon::start(
        &config(&orch.url(), extra),
        runner.clone(),
        &|_| None,
        Timings { connection: fast },
        Hooks::default(),
    )
    .unwrap();
    assert!(orch.wait_until(|r| r.connected, WAIT));
    (orch, daemon, runner)
}

fn assign(orch: &Orchestrator, id: &str, image: &str) {
    assert!(orch.send(&json!({"type": "task_assignment", "data": {
        "task_id": id, "execution_id": format!("e-{id}"),
        "task": {"id": id, "title": "t"}, "docker_image": image}})));
}

fn of<'a>(frames: &'a [Value], kind: &str, id: &str) -> Vec<&'a Value> {
    frames
        .iter()
        .filter(|f| f["type"] == kind && f["data"]["task_id"] == id)
        .collect()
}

fn count(frames: &[Value], kind: &str, id: &str) -> usize {
    of(frames, kind, id).len()
}

fn is_terminal(f: &Value) -> bool {
    f["type"] == "task_completed" || f["type"] == "task_failed"
}

#[test]
fn claim_then_terminal_messages_are_exact() {
    let (orch, daemon, _) = start(&[]);
    assign(&orch, "ok", "quick");
    assign(&orch, "bad", "exit:3");
    let frames = orch.wait_for(|f| f.iter().filter(|f| is_terminal(f)).count() == 2, WAIT);
    assert_eq!(
        *of(&frames, "task_claimed", "ok")[0],
        json!({"type": "task_claimed", "data": {"task_id": "ok", "worker_id": "core-test"}})
    );
    assert_eq!(
        *of(&frames, "task_completed", "ok")[0],
        json!({"type": "task_completed", "data": {"task_id": "ok", "message": "Task completed successfully"}})
    );
    assert_eq!(
        *of(&frames, "task_failed", "bad")[0],
        json!({"type": "task_failed", "data": {"task_id": "bad",
            "message": "Failed to execute task: container exited with non-zero status: 3",
            "failure_reason": "container_exit", "exit_code": 3}})
    );
    let pos = |kind: &str, id: &str| {
        frames
            .iter()
            .position(|f| f["type"] == kind && f["data"]["task_id"] == id)
            .unwrap()
    };
    assert!(pos("task_claimed", "ok") < pos("task_completed", "ok"));
    assert!(pos("task_claimed", "bad") < pos("task_failed", "bad"));
    daemon.shutdown();
}

#[test]
fn a_third_task_is_rejected_at_once_and_a_freed_slot_accepts_again() {
    let (orch, daemon, runner) = start(&["--max-concurrent-tasks", "2"]);
    assign(&orch, "a", "held");
    assign(&orch, "b", "held");
    assign(&orch, "c", "held");
    let frames = orch.wait_for(|f| count(f, "task_rejected", "c") == 1, WAIT);
    assert_eq!(
        *of(&frames, "task_rejected", "c")[0],
        json!({"type": "task_rejected", "data": {"task_id": "c", "reason": "worker at maximum concurrency"}})
    );
    // Answered in the same read cycle: nothing else came between the claims and the rejection.
    let kinds: Vec<&Value> = frames.iter().map(|f| &f["type"]).collect();
    assert_eq!(kinds, ["task_claimed", "task_claimed", "task_rejected"]);
    assert_eq!(runner.runs("c"), 0);

    runner.release("a");
    orch.wait_for(|f| count(f, "task_completed", "a") == 1, WAIT);
    assert!(daemon.dispatcher().wait_active_at_most(1, WAIT));
    assign(&orch, "c", "held");
    orch.wait_for(|f| count(f, "task_claimed", "c") == 1, WAIT);
    runner.release("b");
    runner.release("c");
    orch.wait_for(|f| count(f, "task_completed", "c") == 1, WAIT);
    daemon.shutdown();
}

#[test]
fn a_duplicate_assignment_is_claimed_again_but_not_run_twice() {
    let (orch, daemon, runner) = start(&[]);
    assign(&orch, "dup", "held");
    orch.wait_for(|f| count(f, "task_claimed", "dup") == 1, WAIT);
    assign(&orch, "dup", "held");
    orch.wait_for(|f| count(f, "task_claimed", "dup") == 2, WAIT);
    runner.release("dup");
    let frames = orch.wait_for(|f| count(f, "task_completed", "dup") == 1, WAIT);
    assert_eq!(runner.runs("dup"), 1);
    assert_eq!(frames.iter().filter(|f| is_terminal(f)).count(), 1);
    daemon.shutdown();
}

#[test]
fn cancelling_an_active_task_reports_cancelled_and_an_unknown_one_sends_nothing() {
    let (orch, daemon, _) = start(&[]);
    assign(&orch, "x", "held");
    orch.wait_for(|f| count(f, "task_claimed", "x") == 1, WAIT);
    orch.send(&json!({"type": "task_cancellation", "data": {"task_id": "nobody"}}));
    orch.send(&json!({"type": "task_cancellation", "data": {"task_id": "x"}}));
    let frames = orch.wait_for(|f| count(f, "task_completed", "x") == 1, WAIT);
    assert_eq!(
        *of(&frames, "task_completed", "x")[0],
        json!({"type": "task_completed", "data": {"task_id": "x",
            "message": "Task cancelled by user request.", "task_state": "CANCELLED"}})
    );
    let report = daemon.shutdown();
    assert_eq!(report.unacknowledged, 0);
    let all = orch.received();
    assert!(
        all.iter().all(|f| f["data"]["task_id"] != "nobody"),
        "{all:?}"
    );
    assert_eq!(all.len(), 2, "{all:?}");
}

#[test]
fn terminal_messages_produced_while_disconnected_arrive_on_the_next_connection_once() {
    let (orch, daemon, runner) = start(&[]);
    let ids: Vec<String> = (0..6).map(|i| format!("r{i}")).collect();
    for id in &ids {
        assign(&orch, id, "held");
    }
    orch.wait_for(|f| f.len() == ids.len(), WAIT);
    // Keep the worker out while its tasks end.
    orch.reject_handshakes(503, 1000);
    orch.drop_connection();
    let before = orch.received().len();
    for id in &ids {
        runner.release(id);
    }
    assert!(daemon.dispatcher().wait_idle(WAIT));
    assert_eq!(orch.received().len(), before, "sent while disconnected?");
    orch.accept_handshakes();
    let frames = orch.wait_for(
        |f| f.iter().filter(|f| is_terminal(f)).count() >= ids.len(),
        WAIT,
    );
    for id in &ids {
        assert_eq!(count(&frames, "task_completed", id), 1, "{id}: {frames:?}");
    }
    assert!(
        orch.handshakes()
            .iter()
            .filter(|h| h.rejected_with.is_none())
            .count()
            >= 2
    );
    let report = daemon.shutdown();
    assert_eq!(report.unacknowledged, 0);
    let frames = orch.received();
    assert_eq!(frames.iter().filter(|f| is_terminal(f)).count(), ids.len());
}

#[test]
fn shutdown_fails_running_tasks_as_graceful_shutdown_and_closes_1000() {
    let (orch, daemon, runner) = start(&[]);
    for id in ["s1", "s2", "s3"] {
        assign(&orch, id, "held");
    }
    orch.wait_for(|f| f.len() == 3, WAIT);
    let report = daemon.shutdown();
    assert_eq!(report.tasks_left, 0);
    assert_eq!(report.unacknowledged, 0);
    assert!(report.closed_cleanly);
    let frames = orch.received();
    for id in ["s1", "s2", "s3"] {
        assert_eq!(
            *of(&frames, "task_failed", id)[0],
            json!({"type": "task_failed", "data": {"task_id": id,
                "message": "The task was interrupted due to an infrastructure issue (context canceled). This is typically transient — please try again.",
                "failure_reason": "graceful_shutdown"}})
        );
        assert_eq!(runner.runs(id), 1);
    }
    assert_eq!(orch.close_code(), Some(1000));
}

#[test]
fn an_assignment_with_a_null_task_fails_visibly() {
    let (orch, daemon, runner) = start(&[]);
    orch.send_text(r#"{"type":"task_assignment","data":{"task_id":"nul","task":null}}"#);
    orch.send_text("this is not json");
    orch.send_text(r#"{"type":"heartbeat","data":{}}"#);
    assign(&orch, "after", "quick");
    let frames = orch.wait_for(|f| count(f, "task_completed", "after") == 1, WAIT);
    assert_eq!(
        *of(&frames, "task_failed", "nul")[0],
        json!({"type": "task_failed", "data": {"task_id": "nul",
            "message": "Failed to execute task: invalid task assignment: task is missing",
            "failure_reason": "unknown"}})
    );
    assert_eq!(runner.runs("nul"), 0);
    assert_eq!(
        orch.handshakes().len(),
        1,
        "the bad frames must not cost the connection"
    );
    daemon.shutdown();
}

#[test]
fn a_drain_timeout_lets_running_tasks_finish_before_shutdown_cancels_them() {
    let (orch, daemon, runner) = start(&["--drain-timeout", "30s"]);
    assign(&orch, "d", "held");
    orch.wait_for(|f| count(f, "task_claimed", "d") == 1, WAIT);
    // Shutdown's first step, taken here so the assignment below cannot
    // arrive before it (the shutdown thread takes it again, harmlessly).
    daemon.dispatcher().stop_accepting();
    let shutdown = std::thread::spawn(move || daemon.shutdown());
    assign(&orch, "late", "quick");
    let frames = orch.wait_for(|f| count(f, "task_rejected", "late") == 1, WAIT);
    assert_eq!(
        of(&frames, "task_rejected", "late")[0]["data"]["reason"],
        "worker is shutting down"
    );
    runner.release("d");
    let report = shutdown.join().unwrap();
    assert_eq!(report.tasks_left, 0);
    let frames = orch.received();
    assert_eq!(
        *of(&frames, "task_completed", "d")[0],
        json!({"type": "task_completed", "data": {"task_id": "d", "message": "Task completed successfully"}})
    );
    assert_eq!(runner.runs("late"), 0);
    assert_eq!(orch.close_code(), Some(1000));
}
