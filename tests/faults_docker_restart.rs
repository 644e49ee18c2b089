//! The Docker daemon stopped under a running task and started again, as a
//! host restarting its Docker service would: the task ends with a failure
//! naming what happened, assignments that arrive meanwhile are rejected (not
//! claimed and failed), and the worker survives and runs the next task.
//!
//! Its own test binary with this one test: it stops the daemon every other
//! test needs, and cargo runs test binaries one after another (`.ci/test`
//! runs plain `cargo test`, never binaries in parallel). A guard starts the
//! daemon again, exactly as `.ci/setup-host` does, however the test ends.

mod support;

use std::time::Duration;

use oz_standin::{Options, Orchestrator};
use serde_json::json;
use support::Fixture;
use support::dockerd::{DaemonBack, start_dockerd, stop_dockerd};
use support::process::WorkerProcess;
use support::tasks::{self, assign, count, terminal, worker_args};

const WAIT: Duration = Duration::from_secs(60);

#[test]
fn the_docker_daemon_restarting_under_a_task_fails_it_and_the_worker_carries_on() {
    let _back = DaemonBack;
    let mut fx = Fixture::new("dockerd");
    let sidecar = fx.sidecar("dockerd");
    let orch = Orchestrator::start(Options::default());
    let args = worker_args(&fx, &orch.url(), &[]);
    let mut worker = WorkerProcess::start(
        &tasks::strs(&args),
        &[("WARP_API_KEY", "oz-restart-test-key")],
    );
    assert!(orch.wait_until(|r| r.connected, WAIT), "{}", worker.text());
    assign(&orch, "during", &sidecar, json!({"OZ_TEST_SLEEP": "300"}));
    assert!(
        worker.wait_count("started container", 1, WAIT),
        "{}",
        worker.text()
    );

    stop_dockerd();

    // While Docker does not answer, new work is turned away (so the
    // orchestrator can route it to a healthy worker), never claimed and failed.
    assert!(
        worker.wait_count("rejecting new tasks until it does", 1, WAIT),
        "{}",
        worker.text()
    );
    assign(&orch, "while-down", &sidecar, json!({}));
    let frames = orch.wait_for(|f| count(f, "task_rejected", "while-down") == 1, WAIT);
    assert_eq!(count(&frames, "task_claimed", "while-down"), 0);
    assert_eq!(
        *frames
            .iter()
            .find(|f| f["type"] == "task_rejected")
            .unwrap(),
        json!({"type": "task_rejected", "data": {"task_id": "while-down",
            "reason": "worker cannot reach its Docker daemon"}})
    );
    start_dockerd(&[]);
    assert!(
        worker.wait_count("taking new tasks again", 1, WAIT),
        "{}",
        worker.text()
    );

    // With live-restore off, dockerd stops its containers before it goes;
    // the worker's wait either sees that exit before the daemon closes its
    // socket, or, cut off, is retried once the daemon is back and reads the
    // stop's exit code (which comes first is dockerd's race, not ours):
    // either way the task fails once, plainly.
    let frames = orch.wait_for(|f| !terminal(f, "during").is_empty(), WAIT);
    let ends = terminal(&frames, "during");
    assert_eq!(ends.len(), 1, "{ends:?}");
    let end = ends[0].clone();
    eprintln!("task ended as: {end}");
    assert_eq!(
        end,
        json!({"type": "task_failed", "data": {"task_id": "during",
            "message": "Failed to execute task: container exited with non-zero status: 143",
            "failure_reason": "container_exit", "exit_code": 143}})
    );

    assign(&orch, "after", &sidecar, json!({}));
    let frames = orch.wait_for(|f| !terminal(f, "after").is_empty(), WAIT);
    assert_eq!(
        *terminal(&frames, "after")[0],
        json!({"type": "task_completed",
            "data": {"task_id": "after", "message": "Task completed successfully"}}),
        "{}",
        worker.text()
    );
    assert_eq!(
        orch.handshakes().len(),
        1,
        "the orchestrator connection should not notice Docker going away"
    );
    worker.signal(libc::SIGTERM);
    assert_eq!(
        worker.wait_exit(WAIT).and_then(|s| s.code()),
        Some(0),
        "{}",
        worker.text()
    );
    let (containers, volumes) = fx.leftovers();
    assert_eq!(containers, Vec::<String>::new(), "{}", worker.text());
    assert!(volumes.len() <= 1, "{volumes:?}\n{}", worker.text());
}
