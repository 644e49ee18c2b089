//! Upgrades and restarts with the real binary, the stand-in orchestrator and
//! the real daemon: a detach leaves running tasks to the next process, which
//! adopts and reports each exactly once; SIGHUP is ignored; a repeated
//! SIGTERM is one request and a late one forces; SIGQUIT drains.

mod support;

use std::time::{Duration, Instant};

use oz_standin::{Options, Orchestrator};
use serde_json::json;
use support::Fixture;
use support::process::WorkerProcess;
use support::tasks::{assign, count, held, strs, terminal, worker_args};

const WAIT: Duration = Duration::from_secs(60);
const API_KEY: &str = "oz-lifecycle-test-key";

fn running(fx: &Fixture) -> usize {
    fx.docker
        .list_by_label(&[&fx.worker_label()])
        .unwrap()
        .iter()
        .filter(|c| c.state == "running")
        .count()
}

/// Containers gone, the sidecar volume at most, no lease.
fn assert_only_the_sidecar_volume_left(fx: &Fixture) {
    fx.wait_no_containers(WAIT);
    let (_, volumes) = fx.leftovers();
    assert!(volumes.len() <= 1, "volumes left: {volumes:?}");
    assert_eq!(fx.leases(), Vec::<String>::new(), "leases left");
}

#[test]
fn a_detach_leaves_running_tasks_that_the_next_process_adopts_and_reports_once() {
    let mut fx = Fixture::new("detach");
    let sidecar = fx.sidecar("detach");
    let orch = Orchestrator::start(Options::default());
    let args = worker_args(
        &fx,
        &orch.url(),
        &["--on-shutdown", "detach", "--reap-interval", "200ms"],
    );
    let env = [("WARP_API_KEY", API_KEY)];
    let mut first = WorkerProcess::start(&strs(&args), &env);
    assert!(orch.wait_until(|r| r.connected, WAIT), "{}", first.text());
    let ids = ["d0", "d1", "d2", "d3"];
    for (n, id) in ids.iter().enumerate() {
        assign(&orch, id, &sidecar, held(id, n));
    }
    assert!(
        first.wait_count("started container", ids.len(), WAIT),
        "{}",
        first.text()
    );

    let stopping = Instant::now();
    first.signal(libc::SIGTERM);
    let status = first.wait_exit(WAIT).expect("the worker exits");
    eprintln!("detach stop took {:?}", stopping.elapsed());
    assert_eq!(status.code(), Some(0), "{}", first.text());
    assert_eq!(orch.close_code(), Some(1000));
    let frames = orch.received();
    for id in ids {
        assert!(
            terminal(&frames, id).is_empty(),
            "{id} reported: {frames:?}"
        );
    }
    assert_eq!(running(&fx), ids.len(), "the containers outlive the worker");
    assert_eq!(fx.leases(), Vec::<String>::new(), "the lease is released");

    let mut second = WorkerProcess::start(&strs(&args), &env);
    assert!(
        second.wait_count("adopted task", ids.len(), WAIT),
        "{}",
        second.text()
    );
    assert!(orch.wait_until(|r| r.connected && r.handshakes.len() == 2, WAIT));
    for id in ids {
        fx.release(id);
    }
    let frames = orch.wait_for(|f| ids.iter().all(|id| !terminal(f, id).is_empty()), WAIT);
    for (n, id) in ids.iter().enumerate() {
        assert_eq!(
            count(&frames, "task_claimed", id),
            1,
            "claimed once, by the first"
        );
        let ends = terminal(&frames, id);
        assert_eq!(ends.len(), 1, "{id}: {frames:?}");
        let expected = if n == 0 {
            json!({"type": "task_completed", "data": {"task_id": id, "message": "Task completed successfully"}})
        } else {
            json!({"type": "task_failed", "data": {"task_id": id,
                "message": format!("Failed to execute task: container exited with non-zero status: {n}"),
                "failure_reason": "container_exit", "exit_code": n}})
        };
        assert_eq!(*ends[0], expected);
    }
    fx.wait_no_containers(WAIT);
    second.signal(libc::SIGTERM);
    assert_eq!(second.wait_exit(WAIT).and_then(|s| s.code()), Some(0));
    assert_only_the_sidecar_volume_left(&fx);
}

#[test]
fn sighup_is_logged_and_ignored() {
    let mut fx = Fixture::new("hup");
    let sidecar = fx.sidecar("hup");
    let orch = Orchestrator::start(Options::default());
    let args = worker_args(&fx, &orch.url(), &[]);
    let mut worker = WorkerProcess::start(&strs(&args), &[("WARP_API_KEY", API_KEY)]);
    assert!(orch.wait_until(|r| r.connected, WAIT), "{}", worker.text());
    assign(&orch, "h1", &sidecar, held("h1", 0));
    assert!(worker.wait_count("started container", 1, WAIT));
    worker.signal(libc::SIGHUP);
    assert!(
        worker.wait_count("received SIGHUP: ignored", 1, WAIT),
        "{}",
        worker.text()
    );
    fx.release("h1");
    let frames = orch.wait_for(|f| !terminal(f, "h1").is_empty(), WAIT);
    assert_eq!(terminal(&frames, "h1")[0]["type"], "task_completed");
    assert_eq!(orch.handshakes().len(), 1, "the connection never dropped");
    worker.signal(libc::SIGTERM);
    assert_eq!(worker.wait_exit(WAIT).and_then(|s| s.code()), Some(0));
    assert_eq!(orch.close_code(), Some(1000));
    assert_only_the_sidecar_volume_left(&fx);
}

#[test]
fn a_second_sigterm_at_once_is_the_same_request_and_a_late_one_forces() {
    let mut fx = Fixture::new("term2");
    let sidecar = fx.sidecar("term2");
    let orch = Orchestrator::start(Options::default());
    // The agent ignores SIGTERM, so the stop takes its whole (3 s) grace.
    let args = worker_args(&fx, &orch.url(), &["--stop-grace", "3s"]);
    let mut worker = WorkerProcess::start(&strs(&args), &[("WARP_API_KEY", API_KEY)]);
    assert!(orch.wait_until(|r| r.connected, WAIT), "{}", worker.text());
    assign(
        &orch,
        "s1",
        &sidecar,
        json!({"OZ_TEST_SLEEP": "300", "OZ_TEST_IGNORE_TERM": "1"}),
    );
    assert!(worker.wait_count("started container", 1, WAIT));
    worker.signal(libc::SIGTERM);
    // Once the first is taken (two pending SIGTERMs are one to the kernel).
    assert!(worker.wait_count("received SIGTERM", 1, WAIT));
    worker.signal(libc::SIGTERM);
    assert_eq!(
        worker.wait_exit(WAIT).and_then(|s| s.code()),
        Some(0),
        "{}",
        worker.text()
    );
    assert!(
        worker.text().contains("the same stop request"),
        "{}",
        worker.text()
    );
    let frames = orch.received();
    assert_eq!(
        terminal(&frames, "s1")[0]["data"]["failure_reason"],
        "graceful_shutdown"
    );
    assert_eq!(orch.close_code(), Some(1000));
    fx.wait_no_containers(WAIT);

    let orch = Orchestrator::start(Options::default());
    let args = worker_args(&fx, &orch.url(), &["--drain-timeout", "10m"]);
    let mut worker = WorkerProcess::start(&strs(&args), &[("WARP_API_KEY", API_KEY)]);
    assert!(orch.wait_until(|r| r.connected, WAIT), "{}", worker.text());
    assign(&orch, "s2", &sidecar, held("s2", 0));
    assert!(worker.wait_count("started container", 1, WAIT));
    worker.signal(libc::SIGTERM);
    assert!(worker.wait_count("draining:", 1, WAIT), "{}", worker.text());
    // The rule under test is about time: a signal after the window forces.
    std::thread::sleep(oz_agent_worker::signals::REPEAT_WINDOW + Duration::from_millis(200));
    worker.signal(libc::SIGTERM);
    assert_eq!(
        worker.wait_exit(WAIT).and_then(|s| s.code()),
        Some(130),
        "{}",
        worker.text()
    );
    assert_eq!(
        running(&fx),
        1,
        "a forced exit leaves the container to the next process"
    );
}

#[test]
fn sigquit_drains_running_tasks_then_exits() {
    let mut fx = Fixture::new("quit");
    let sidecar = fx.sidecar("quit");
    let orch = Orchestrator::start(Options::default());
    let args = worker_args(&fx, &orch.url(), &[]);
    let mut worker = WorkerProcess::start(&strs(&args), &[("WARP_API_KEY", API_KEY)]);
    assert!(orch.wait_until(|r| r.connected, WAIT), "{}", worker.text());
    assign(&orch, "q1", &sidecar, held("q1", 0));
    assert!(worker.wait_count("started container", 1, WAIT));
    worker.signal(libc::SIGQUIT);
    assert!(
        worker.wait_count("draining: waiting for 1 running task(s) to finish", 1, WAIT),
        "{}",
        worker.text()
    );
    assign(&orch, "q2", &sidecar, json!({}));
    let frames = orch.wait_for(|f| count(f, "task_rejected", "q2") == 1, WAIT);
    assert_eq!(
        frames
            .iter()
            .find(|f| f["type"] == "task_rejected")
            .unwrap()["data"]["reason"],
        "worker is shutting down"
    );
    fx.release("q1");
    assert_eq!(
        worker.wait_exit(WAIT).and_then(|s| s.code()),
        Some(0),
        "{}",
        worker.text()
    );
    let frames = orch.received();
    assert_eq!(
        *terminal(&frames, "q1")[0],
        json!({"type": "task_completed", "data": {"task_id": "q1", "message": "Task completed successfully"}})
    );
    assert_eq!(orch.close_code(), Some(1000));
    assert_only_the_sidecar_volume_left(&fx);
}
