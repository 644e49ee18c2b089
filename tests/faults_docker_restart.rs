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

use std::fs::OpenOptions;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use oz_standin::{Options, Orchestrator};
use serde_json::json;
use support::Fixture;
use support::process::WorkerProcess;
use support::tasks::{self, assign, count, terminal, worker_args};

const WAIT: Duration = Duration::from_secs(60);
const PID_FILE: &str = "/var/run/docker.pid";

fn docker_answers() -> bool {
    Command::new("docker")
        .arg("info")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
}

/// Starts dockerd as `.ci/setup-host` does (`setsid -w dockerd`, output
/// appended to its log) and waits until `docker info` answers.
// The daemon outlives this test by design: `setsid -w` is only watched for
// an early exit, never waited for.
#[allow(clippy::zombie_processes)]
fn start_dockerd() {
    let log_path = std::env::var("OZ_CI_DOCKERD_LOG")
        .unwrap_or_else(|_| "/var/log/oz-ci-dockerd.log".to_owned());
    let log = OpenOptions::new()
        .create(true)
        .append(true)
        .open(&log_path)
        .unwrap_or_else(|e| panic!("opening {log_path}: {e}"));
    let mut child = Command::new("setsid")
        .args(["-w", "dockerd"])
        .stdin(Stdio::null())
        .stdout(log.try_clone().unwrap())
        .stderr(log)
        .spawn()
        .expect("start dockerd");
    let deadline = Instant::now() + Duration::from_secs(120);
    // No event tells us the daemon is ready; asking it is the only way.
    while !docker_answers() {
        if let Ok(Some(status)) = child.try_wait() {
            panic!("dockerd exited ({status}) while starting; see {log_path}");
        }
        assert!(
            Instant::now() < deadline,
            "dockerd did not answer within 120 s; see {log_path}"
        );
        std::thread::sleep(Duration::from_millis(200));
    }
}

/// Stops dockerd the way the host would (SIGTERM to the pid in its pid file)
/// and waits for the process to be gone (a pidfd becomes readable on exit).
fn stop_dockerd() {
    let pid: i32 = std::fs::read_to_string(PID_FILE)
        .unwrap_or_else(|e| panic!("reading {PID_FILE}: {e}"))
        .trim()
        .parse()
        .unwrap();
    // SAFETY: plain syscalls on a pid; the fd is closed below.
    unsafe {
        let fd = libc::syscall(libc::SYS_pidfd_open, pid, 0) as i32;
        assert!(fd >= 0, "pidfd_open({pid}) failed");
        assert_eq!(libc::kill(pid, libc::SIGTERM), 0, "kill -TERM {pid}");
        let mut pfd = libc::pollfd {
            fd,
            events: libc::POLLIN,
            revents: 0,
        };
        let ready = libc::poll(&mut pfd, 1, 90_000);
        libc::close(fd);
        assert_eq!(ready, 1, "dockerd ({pid}) did not exit within 90 s");
    }
}

/// Makes sure the daemon answers again when the test ends, pass or fail.
struct DaemonBack;

impl Drop for DaemonBack {
    fn drop(&mut self) {
        if !docker_answers() {
            start_dockerd();
        }
    }
}

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
    let frames = orch.wait_for(|f| !terminal(f, "during").is_empty(), WAIT);
    let end = terminal(&frames, "during")[0].clone();
    eprintln!("task ended as: {end}");

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
    start_dockerd();
    assert!(
        worker.wait_count("taking new tasks again", 1, WAIT),
        "{}",
        worker.text()
    );

    // With live-restore off, dockerd stops its containers before it closes
    // its API: the stub ends on that SIGTERM and the wait delivers 143, which
    // the worker reports as the Go worker does. Had the daemon died first,
    // the wait itself would fail: container_wait.
    let message = end["data"]["message"].as_str().unwrap_or_default();
    match end["data"]["failure_reason"].as_str() {
        Some("container_exit") => assert_eq!(
            end,
            json!({"type": "task_failed", "data": {"task_id": "during",
                "message": "Failed to execute task: container exited with non-zero status: 143",
                "failure_reason": "container_exit", "exit_code": 143}})
        ),
        Some("container_wait") => assert!(
            message.starts_with("Failed to execute task: error waiting for container: "),
            "{end}"
        ),
        _ => panic!("unexpected end: {end}"),
    }

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
    // If the daemon was already gone when the first task ended, its
    // container is removed as soon as the daemon is back.
    if worker
        .text()
        .contains("retrying in the background until the daemon answers")
    {
        assert!(
            worker.wait_count("once the Docker daemon answered again", 1, WAIT),
            "{}",
            worker.text()
        );
    }
    worker.signal(libc::SIGTERM);
    assert_eq!(
        worker.wait_exit(WAIT).and_then(|s| s.code()),
        Some(0),
        "{}",
        worker.text()
    );
    let (containers, volumes) = fx.leftovers();
    assert_eq!(containers, Vec::<String>::new(), "{}", worker.text());
    assert!(volumes.len() <= 1, "{volumes:?}");
}
