//! The FROM-scratch image (built by `.ci/build-image` as `oz-agent-worker:ci`)
//! run exactly as operators run it: the Docker socket mounted, the API key in
//! the environment, `--worker-id` as the only required flag (plus the
//! stand-in's URL and local-image settings), completing a real task.

mod support;

use std::process::Command;
use std::time::Duration;

use oz_standin::{Options, Orchestrator};
use serde_json::json;
use support::{BUSYBOX, Fixture, docker_cli};

/// The image under test: `.ci/build-image`'s default tag, or another one
/// named by `OZ_TEST_WORKER_IMAGE` (to test a build without replacing it).
fn image() -> String {
    std::env::var("OZ_TEST_WORKER_IMAGE").unwrap_or_else(|_| "oz-agent-worker:ci".into())
}
const WAIT: Duration = Duration::from_secs(60);

/// Removes the worker's own container, pass or fail.
struct WorkerContainer(String);

impl Drop for WorkerContainer {
    fn drop(&mut self) {
        let _ = Command::new("docker").args(["rm", "-f", &self.0]).output();
    }
}

/// Runs the image as operators do (socket mounted, key in the environment)
/// against `orch`, and waits until it is connected.
fn start_worker_container(fx: &Fixture, orch: &Orchestrator) -> WorkerContainer {
    start_worker_container_with(fx, orch, &[], &[])
}

/// [`start_worker_container`] with more `docker run` options (before the
/// image) and more worker flags.
fn start_worker_container_with(
    fx: &Fixture,
    orch: &Orchestrator,
    run_options: &[&str],
    worker_flags: &[&str],
) -> WorkerContainer {
    let image = image();
    let present = Command::new("docker")
        .args(["image", "inspect", &image])
        .output()
        .unwrap();
    assert!(
        present.status.success(),
        "{image} is missing: build it with `bash .ci/build-image` (.ci/run does)"
    );
    let name = format!("{}-worker", fx.worker_id);
    let out = format!("{}:/out", fx.out.display());
    let mut args = vec![
        "run",
        "-d",
        "--name",
        &name,
        "--label",
        "oz-agent-worker.test=1",
        "--network",
        "host",
        "-v",
        "/var/run/docker.sock:/var/run/docker.sock",
        "-e",
        "WARP_API_KEY=scratch-test-key",
    ];
    args.extend_from_slice(run_options);
    let url = orch.url();
    args.extend_from_slice(&[
        &image,
        "--worker-id",
        &fx.worker_id,
        "--web-socket-url",
        &url,
        "--image-pull-policy",
        "IfNotPresent",
        "-v",
        &out,
    ]);
    args.extend_from_slice(worker_flags);
    let id = docker_cli(&args);
    let worker = WorkerContainer(id);
    assert!(
        orch.wait_until(|r| r.connected, WAIT),
        "not connected; logs:\n{}",
        docker_cli(&["logs", &worker.0])
    );
    worker
}

#[test]
fn the_scratch_image_runs_a_task_with_the_socket_mounted() {
    let mut fx = Fixture::new("scratch");
    let sidecar = fx.sidecar("scratch");
    let orch = Orchestrator::start(Options::default());
    let worker = start_worker_container(&fx, &orch);
    let id = worker.0.clone();
    assert!(orch.send(&json!({"type": "task_assignment", "data": {
        "task_id": "img", "task": {"id": "img"},
        "docker_image": BUSYBOX, "sidecar_image": sidecar,
        "env_vars": {"OZ_TEST_OUT": "/out"}}})));
    let frames = orch.wait_for(
        |f| {
            f.iter()
                .any(|f| f["type"] == "task_completed" || f["type"] == "task_failed")
        },
        WAIT,
    );
    let done = frames
        .iter()
        .find(|f| f["data"]["task_id"] == "img" && f["type"] != "task_claimed")
        .unwrap();
    assert_eq!(done["type"], "task_completed", "{frames:?}");
    assert!(fx.read_out("argv").contains("--task-id\nimg\n"));

    docker_cli(&["stop", "-t", "30", &id]);
    let code = docker_cli(&["inspect", "-f", "{{.State.ExitCode}}", &id]);
    assert_eq!(code, "0", "logs:\n{}", docker_cli(&["logs", &id]));
    assert_eq!(orch.close_code(), Some(1000));
    fx.assert_no_containers();
}

/// `docker stop` as operators type it (Docker's default 10 s before
/// SIGKILL) with three tasks running whose agent ignores SIGTERM, in the
/// default mode and with the default stop grace (10 s): the worker reports
/// every task and gets acknowledged first, then the containers' stops share
/// what is left of its budget, so it exits 0 with Close 1000 before Docker
/// kills it, and leaves no container.
#[test]
fn a_plain_docker_stop_with_three_running_tasks_ends_cleanly_inside_ten_seconds() {
    let mut fx = Fixture::new("scratch-stop");
    let sidecar = fx.sidecar("scratch-stop");
    let orch = Orchestrator::start(Options::default());
    let worker = start_worker_container(&fx, &orch);
    let id = worker.0.clone();
    let ids = ["s1", "s2", "s3"];
    for task in ids {
        assert!(orch.send(&json!({"type": "task_assignment", "data": {
            "task_id": task, "task": {"id": task},
            "docker_image": BUSYBOX, "sidecar_image": sidecar,
            "env_vars": {"OZ_TEST_SLEEP": "300", "OZ_TEST_IGNORE_TERM": "1"}}})));
    }
    let task_label = "dev.warp.oz-agent-worker.task-id";
    let running = || {
        fx.docker
            .list_by_label(&[&fx.worker_label(), task_label])
            .unwrap()
            .iter()
            .filter(|c| c.state == "running")
            .count()
    };
    let deadline = std::time::Instant::now() + WAIT;
    while running() < ids.len() {
        // The worker runs in a container: the daemon is the only place to look.
        assert!(std::time::Instant::now() < deadline, "tasks never started");
        std::thread::sleep(Duration::from_millis(100));
    }

    let stopping = std::time::Instant::now();
    docker_cli(&["stop", &id]);
    eprintln!("docker stop took {:?}", stopping.elapsed());
    let code = docker_cli(&["inspect", "-f", "{{.State.ExitCode}}", &id]);
    assert_eq!(code, "0", "logs:\n{}", docker_cli(&["logs", &id]));
    let frames = orch.received();
    for task in ids {
        let ends: Vec<_> = frames
            .iter()
            .filter(|f| f["data"]["task_id"] == task && f["type"] == "task_failed")
            .collect();
        assert_eq!(ends.len(), 1, "{task}: {frames:?}");
        assert_eq!(ends[0]["data"]["failure_reason"], "graceful_shutdown");
    }
    assert_eq!(orch.close_code(), Some(1000));
    fx.assert_no_containers();
}

/// Air-gapped: the image loads `docker save | gzip` archives from a mounted
/// directory through the socket (no Docker CLI inside), before it connects.
#[test]
fn the_scratch_image_loads_image_archives_from_a_mounted_directory() {
    let mut fx = Fixture::new("scratch-archives");
    let (tag, image_id) = fx.unique_image("scratch");
    let dir = fx.out.join("images");
    std::fs::create_dir_all(&dir).unwrap();
    let archive = dir.join("app.tar.gz");
    let saved = Command::new("bash")
        .args(["-o", "pipefail", "-c", "docker save \"$1\" | gzip > \"$2\""])
        .args(["_", &tag, archive.to_str().unwrap()])
        .status()
        .unwrap();
    assert!(saved.success());
    docker_cli(&["rmi", &tag]);
    let orch = Orchestrator::start(Options::default());
    let mount = format!("{}:/images:ro", dir.display());
    let worker = start_worker_container_with(
        &fx,
        &orch,
        &["-v", &mount],
        &["--image-archives", "/images"],
    );
    // The worker logs to stderr, which `docker logs` gives on its stderr.
    let out = Command::new("docker")
        .args(["logs", &worker.0])
        .output()
        .unwrap();
    let logs = String::from_utf8_lossy(&out.stderr);
    assert!(
        logs.lines()
            .any(|l| l.contains("loaded image archive /images/app.tar.gz") && l.contains(&tag)),
        "{logs}"
    );
    let present = docker_cli(&["image", "inspect", "-f", "{{.Id}}", &tag]);
    assert_eq!(present, image_id);
}
