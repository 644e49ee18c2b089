//! The Docker daemon restarted under three running tasks with
//! `live-restore` on (what operators turn on so containers survive a
//! daemon upgrade): the containers run on, the worker's waits, cut off,
//! are retried until the daemon answers, and each task is reported once
//! with its own exit code — none as a `container_wait` failure.
//!
//! Its own test binary: it stops the daemon every other test needs (cargo
//! runs test binaries one after another). A guard starts the daemon again
//! as `.ci/setup-host` does (without live-restore), however the test ends.

mod support;

use std::time::Duration;

use oz_standin::{Options, Orchestrator};
use serde_json::json;
use support::Fixture;
use support::dockerd::{DaemonBack, start_dockerd, stop_dockerd};
use support::process::WorkerProcess;
use support::tasks::{self, assign, held, terminal, worker_args};

const WAIT: Duration = Duration::from_secs(90);

/// Puts the daemon back as the rest of the suite expects it.
struct PlainDaemon;

impl Drop for PlainDaemon {
    fn drop(&mut self) {
        if support::dockerd::docker_answers() {
            stop_dockerd();
        }
        start_dockerd(&[]);
    }
}

#[test]
fn dockerd_restarted_with_live_restore_under_three_tasks_fails_none_of_them() {
    let _back = DaemonBack;
    let _plain = PlainDaemon;
    stop_dockerd();
    start_dockerd(&["--live-restore"]);

    let mut fx = Fixture::new("liverestore");
    let sidecar = fx.sidecar("liverestore");
    let orch = Orchestrator::start(Options::default());
    let args = worker_args(&fx, &orch.url(), &["--log-level", "debug"]);
    let mut worker = WorkerProcess::start(
        &tasks::strs(&args),
        &[("WARP_API_KEY", "oz-live-restore-test-key")],
    );
    assert!(orch.wait_until(|r| r.connected, WAIT), "{}", worker.text());
    let ids = [("lr0", 0), ("lr3", 3), ("lr5", 5)];
    for (id, exit) in ids {
        assign(&orch, id, &sidecar, held(id, exit));
    }
    assert!(
        worker.wait_count("started container", 3, WAIT),
        "{}",
        worker.text()
    );

    stop_dockerd();
    let running = std::process::Command::new("pgrep")
        .args(["-f", "containerd-shim"])
        .output()
        .map(|o| !o.stdout.is_empty())
        .unwrap_or(false);
    assert!(running, "with live-restore the containers outlive dockerd");
    start_dockerd(&["--live-restore"]);
    assert!(
        worker.wait_count("waiting again once it answers", 3, WAIT),
        "{}",
        worker.text()
    );
    for (id, _) in ids {
        fx.release(id);
    }
    let frames = orch.wait_for(
        |f| ids.iter().all(|(id, _)| !terminal(f, id).is_empty()),
        WAIT,
    );
    for (id, exit) in ids {
        let expected = if exit == 0 {
            json!({"type": "task_completed", "data": {"task_id": id, "message": "Task completed successfully"}})
        } else {
            json!({"type": "task_failed", "data": {"task_id": id,
                "message": format!("Failed to execute task: container exited with non-zero status: {exit}"),
                "failure_reason": "container_exit", "exit_code": exit}})
        };
        assert_eq!(terminal(&frames, id), vec![&expected], "{}", worker.text());
    }
    assert!(
        !worker.text().contains("container_wait"),
        "{}",
        worker.text()
    );
    fx.wait_no_containers(WAIT);
    worker.signal(libc::SIGTERM);
    assert_eq!(worker.wait_exit(WAIT).and_then(|s| s.code()), Some(0));
}
