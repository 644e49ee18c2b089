//! `deploy/compose.yaml` brought up for real with the Compose the package
//! registries ship (Debian's `docker-compose` 1.29, installed by
//! `.ci/setup-host`), on the FROM-scratch image `.ci/build-image` builds
//! (`oz-agent-worker:ci`): the worker connects, runs a task, and
//! `docker-compose stop` with a task still running ends with exit 0 inside
//! `stop_grace_period` (137 would mean Compose had to kill it).
//! `OZ_TEST_WORKER_IMAGE` runs it on another build of the image. The test
//! only adds, in an override file, what reaching the stand-in orchestrator
//! on loopback needs.

mod support;

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use oz_standin::{Options, Orchestrator};
use serde_json::json;
use support::tasks::{assign, terminal};
use support::{Fixture, docker_cli};

/// `.ci/build-image`'s tag; `OZ_TEST_WORKER_IMAGE` names another build.
fn image() -> String {
    std::env::var("OZ_TEST_WORKER_IMAGE").unwrap_or_else(|_| "oz-agent-worker:ci".into())
}
const WAIT: Duration = Duration::from_secs(60);
const COMPOSE_FILE: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/deploy/compose.yaml");

/// One Compose project; `down` (and a forced removal by its label) on drop.
struct Project {
    name: String,
    override_file: PathBuf,
    env: Vec<(String, String)>,
}

impl Project {
    fn compose(&self, args: &[&str]) -> std::process::Output {
        Command::new("docker-compose")
            .args(["-p", &self.name, "-f", COMPOSE_FILE, "-f"])
            .arg(&self.override_file)
            .args(args)
            .envs(self.env.iter().map(|(k, v)| (k.as_str(), v.as_str())))
            .output()
            .expect("docker-compose is installed (bash .ci/setup-host installs it)")
    }

    fn run(&self, args: &[&str]) -> String {
        let out = self.compose(args);
        assert!(
            out.status.success(),
            "docker-compose {args:?}: {}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).trim().to_owned()
    }
}

impl Drop for Project {
    fn drop(&mut self) {
        let _ = self.compose(&["down", "--remove-orphans"]);
        let label = format!("label=com.docker.compose.project={}", self.name);
        if let Ok(out) = Command::new("docker")
            .args(["ps", "-aq", "--filter", &label])
            .output()
        {
            for id in String::from_utf8_lossy(&out.stdout).split_whitespace() {
                let _ = Command::new("docker").args(["rm", "-f", id]).output();
            }
        }
    }
}

fn write(path: &Path, text: &str) {
    std::fs::write(path, text).unwrap();
}

#[test]
fn the_compose_file_runs_the_worker_and_stops_it_within_its_grace_period() {
    let mut fx = Fixture::new("compose");
    let image = image();
    let present = Command::new("docker")
        .args(["image", "inspect", &image])
        .output()
        .unwrap();
    assert!(
        present.status.success(),
        "{image} is missing: build it with `bash .ci/build-image` (.ci/run does)"
    );
    let sidecar = fx.sidecar("compose");
    let orch = Orchestrator::start(Options::default());
    let config = fx.out.join("config.yaml");
    write(&config, &format!("worker_id: {}\n", fx.worker_id));
    let override_file = fx.out.join("compose.test.yaml");
    let command = json!([
        "--config-file",
        "/etc/oz-agent-worker/config.yaml",
        "--web-socket-url",
        orch.url(),
        "--image-pull-policy",
        "IfNotPresent",
        "--stop-grace",
        "2s",
        "-v",
        format!("{}:/out", fx.out.display()),
    ]);
    // JSON is YAML: the stand-in listens on the host's loopback.
    write(
        &override_file,
        &json!({"services": {"oz-agent-worker": {
            "network_mode": "host",
            "labels": {"oz-agent-worker.test": "1"},
            "command": command,
        }}})
        .to_string(),
    );
    let project = Project {
        name: format!("ozcompose{}", std::process::id()),
        override_file,
        env: vec![
            ("OZ_WORKER_IMAGE".into(), image),
            ("OZ_WORKER_CONFIG".into(), config.display().to_string()),
            ("WARP_API_KEY".into(), "compose-test-key".into()),
        ],
    };
    project.run(&["up", "-d"]);
    let id = project.run(&["ps", "-q", "oz-agent-worker"]);
    assert!(!id.is_empty(), "no container for the service");
    assert!(
        orch.wait_until(|r| r.connected, WAIT),
        "not connected; logs:\n{}",
        docker_cli(&["logs", &id])
    );

    // What the compose file sets: the socket, the config read-only, the
    // key from the environment, SIGTERM, log rotation, the restart policy.
    let inspect = |format: &str| docker_cli(&["inspect", "-f", format, &id]);
    assert_eq!(inspect("{{.Config.StopSignal}}"), "SIGTERM");
    assert_eq!(
        inspect("{{.HostConfig.RestartPolicy.Name}}"),
        "unless-stopped"
    );
    assert_eq!(
        inspect(
            "{{.HostConfig.LogConfig.Type}} {{index .HostConfig.LogConfig.Config \"max-size\"}} {{index .HostConfig.LogConfig.Config \"max-file\"}}"
        ),
        "json-file 10m 5"
    );
    let mounts = inspect("{{range .Mounts}}{{.Destination}}={{.RW}} {{end}}");
    assert!(mounts.contains("/var/run/docker.sock=true"), "{mounts}");
    assert!(
        mounts.contains("/etc/oz-agent-worker/config.yaml=false"),
        "{mounts}"
    );
    assert!(
        inspect("{{json .Config.Env}}").contains("\"WARP_API_KEY=compose-test-key\""),
        "the key came from the environment"
    );

    assign(&orch, "compose-1", &sidecar, json!({}));
    let frames = orch.wait_for(|f| !terminal(f, "compose-1").is_empty(), WAIT);
    assert_eq!(
        terminal(&frames, "compose-1")[0]["type"],
        "task_completed",
        "{frames:?}"
    );

    // Stop with a task running: the worker cancels it, reports it and
    // exits 0 before Compose's stop_grace_period runs out.
    assign(
        &orch,
        "compose-2",
        &sidecar,
        json!({"OZ_TEST_SLEEP": "300"}),
    );
    assert!(
        orch.wait_until(
            |r| r
                .received
                .iter()
                .any(|f| f["type"] == "task_claimed" && f["data"]["task_id"] == "compose-2"),
            WAIT
        ),
        "compose-2 not claimed"
    );
    project.run(&["stop"]);
    assert_eq!(
        inspect("{{.State.ExitCode}}"),
        "0",
        "logs:\n{}",
        docker_cli(&["logs", &id])
    );
    let frames = orch.received();
    let ended = terminal(&frames, "compose-2");
    assert_eq!(ended.len(), 1, "{frames:?}");
    assert_eq!(ended[0]["type"], "task_failed");
    assert_eq!(orch.close_code(), Some(1000));
    project.run(&["down"]);
    fx.assert_no_containers();
}
