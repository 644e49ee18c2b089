//! Shared fixture of the Docker task runner tests: a unique worker id per
//! test, a runner on the real daemon, an output directory bind-mounted at
//! `/out`, and a Drop guard that removes everything labelled with the worker
//! id (task containers, helper containers, sidecar volumes) and the test's
//! image tags, pass or fail.

#![allow(dead_code)]

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::process::Command;
use std::sync::atomic::{AtomicU32, Ordering};

use oz_agent_worker::config::{PullPolicy, parse_volume};
use oz_agent_worker::container_spec::{LABEL_WORKER_ID, SpecInputs};
use oz_agent_worker::docker::auth::CredentialEnv;
use oz_agent_worker::docker::discovery::{Source, Target};
use oz_agent_worker::docker::{Docker, Endpoint};
use oz_agent_worker::execute::names::{
    LABEL_ROLE, ROLE_EXEC_DONE, ROLE_IMAGE_PULL, ROLE_LEASE, ROLE_PING, ROLE_SIDECAR_USE,
};
use oz_agent_worker::execute::{DockerRunner, ImageSettings, RunnerSettings};
use oz_agent_worker::wire::TaskAssignment;
use serde_json::{Value, json};

pub const BUSYBOX: &str = "oz-test/busybox:latest";
pub const SIDECAR: &str = "oz-test/agent-sidecar:latest";
pub const SERVER: &str = "https://app.example.test";

pub fn docker() -> Docker {
    let target = Target {
        endpoint: Endpoint::Unix("/var/run/docker.sock".into()),
        api_version: None,
        source: Source::Default,
    };
    let d = Docker::connect(&target).expect("connect to the daemon");
    assert!(
        d.image_inspect(BUSYBOX).unwrap().is_some(),
        "{BUSYBOX} missing: run bash .ci/test-images.sh"
    );
    d
}

/// One test's world; everything it made goes when it drops.
pub struct Fixture {
    pub docker: Docker,
    pub worker_id: String,
    pub out: PathBuf,
    pub platform: String,
    tags: Vec<String>,
    /// The leases of the runners made here (a runner acts only while its
    /// lease is safe, as in the worker).
    leases: std::sync::Mutex<Vec<oz_agent_worker::execute::lease::LeaseHandle>>,
}

static SEQ: AtomicU32 = AtomicU32::new(0);
static RUN: AtomicU32 = AtomicU32::new(0);

/// `task` as a new execution of it (a fresh execution id): for tests that
/// run one task's setup several times. The same execution is never run
/// twice: a second run of it finds its first.
pub fn fresh(task: &TaskAssignment) -> TaskAssignment {
    let mut t = task.clone();
    t.execution_id = format!(
        "{}-run{}",
        t.execution_id,
        RUN.fetch_add(1, Ordering::SeqCst)
    );
    t
}

impl Fixture {
    pub fn new(case: &str) -> Fixture {
        let docker = docker();
        let worker_id = format!(
            "oz-exec-test-{case}-{}-{}",
            std::process::id(),
            SEQ.fetch_add(1, Ordering::SeqCst)
        );
        let out = std::env::temp_dir().join(&worker_id);
        std::fs::create_dir_all(&out).unwrap();
        let platform = docker.platform().unwrap();
        Fixture {
            docker,
            worker_id,
            out,
            platform,
            tags: Vec::new(),
            leases: Default::default(),
        }
    }

    /// Settings: local images (IfNotPresent), `/out` bound, no credentials.
    pub fn settings(&self) -> RunnerSettings {
        RunnerSettings {
            spec: SpecInputs {
                worker_id: self.worker_id.clone(),
                server_root_url: SERVER.into(),
                volumes: vec![parse_volume(&format!("{}:/out", self.out.display())).unwrap()],
                ..SpecInputs::default()
            },
            images: ImageSettings {
                platform: self.platform.clone(),
                policy: PullPolicy::IfNotPresent,
                mirrors: BTreeMap::new(),
                credentials: self.no_credentials(),
                pull_stall_timeout: oz_agent_worker::execute::PULL_STALL_TIMEOUT,
            },
            cleanup: true,
            stop_grace: std::time::Duration::from_secs(2),
            limits_override: None,
            instance: format!("test-{}", self.worker_id),
            // Driven without a dispatcher: nothing would say "delivered".
            remove_after_delivery: false,
            container_logs: Default::default(),
            lease_ttl: std::time::Duration::from_secs(30),
        }
    }

    /// A credential environment that finds nothing.
    pub fn no_credentials(&self) -> CredentialEnv {
        CredentialEnv {
            docker_config: Some(self.out.join("no-docker-config")),
            home: None,
            auth_config: None,
            path: None,
            helper_timeout: std::time::Duration::from_secs(10),
        }
    }

    /// A runner with its lease taken, as the worker takes it at start.
    pub fn runner(&self, settings: RunnerSettings) -> DockerRunner {
        let runner = DockerRunner::new(self.docker.clone(), settings);
        let lease = oz_agent_worker::execute::lease::acquire(runner.ownership()).unwrap();
        self.leases.lock().unwrap().push(lease);
        runner
    }

    /// Releases the lease of the runner of `instance`, as its clean stop
    /// does: another process may take over what it left at once.
    pub fn release_lease(&self, instance: &str) {
        let mut leases = self.leases.lock().unwrap();
        if let Some(i) = leases.iter().position(|l| l.instance() == instance) {
            leases.remove(i).release();
        }
    }

    /// Releases every runner's lease as a clean stop does (a released
    /// marker, the records tidied).
    pub fn release_leases(&self) {
        for lease in self.leases.lock().unwrap().drain(..) {
            lease.release();
        }
    }

    /// A private tag of the agent sidecar, so parallel tests never share a volume.
    pub fn sidecar(&mut self, case: &str) -> String {
        let tag = format!("oz-test/sc-{}:latest", self.worker_id.to_lowercase());
        let _ = case;
        docker_cli(&["tag", SIDECAR, &tag]);
        self.tags.push(tag.clone());
        tag
    }

    /// A private sidecar image (FROM scratch) whose `/entrypoint.sh` is
    /// `script`, run by busybox `sh` in the task container; removed when the
    /// test ends. For tests that need the task to do something of its own.
    pub fn script_sidecar(&mut self, script: &str) -> String {
        let tag = format!(
            "oz-test/script-{}-{}:latest",
            self.worker_id.to_lowercase(),
            self.tags.len()
        );
        let dir = self.out.join(format!("script-image-{}", self.tags.len()));
        std::fs::create_dir_all(&dir).unwrap();
        let entrypoint = dir.join("entrypoint.sh");
        std::fs::write(&entrypoint, format!("#!/bin/sh\n{script}\n")).unwrap();
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&entrypoint, std::fs::Permissions::from_mode(0o755)).unwrap();
        std::fs::write(
            dir.join("Dockerfile"),
            "FROM scratch\nCOPY entrypoint.sh /entrypoint.sh\nLABEL oz-agent-worker.test=1\nCMD [\"/entrypoint.sh\"]\n",
        )
        .unwrap();
        docker_cli(&["build", "-q", "-t", &tag, dir.to_str().unwrap()]);
        std::fs::remove_dir_all(&dir).unwrap();
        self.tags.push(tag.clone());
        tag
    }

    /// An image of this test's own (FROM scratch, one file naming the test,
    /// labelled), so its id is unique; its tag is removed when the test
    /// ends. Returns the tag and the image id.
    pub fn unique_image(&mut self, name: &str) -> (String, String) {
        let tag = format!(
            "oz-test/unique-{}-{name}:latest",
            self.worker_id.to_lowercase()
        );
        let dir = self.out.join(format!("unique-image-{name}"));
        std::fs::create_dir_all(&dir).unwrap();
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_nanos();
        std::fs::write(dir.join("content"), format!("{tag} {nanos}\n")).unwrap();
        std::fs::write(
            dir.join("Dockerfile"),
            "FROM scratch\nCOPY content /content\nLABEL oz-agent-worker.test=1\n",
        )
        .unwrap();
        docker_cli(&["build", "-q", "-t", &tag, dir.to_str().unwrap()]);
        std::fs::remove_dir_all(&dir).unwrap();
        self.tags.push(tag.clone());
        let id = docker_cli(&["image", "inspect", "-f", "{{.Id}}", &tag]);
        (tag, id)
    }

    /// Removes `tag` when the test ends.
    pub fn forget_tag(&mut self, tag: &str) {
        self.tags.push(tag.to_owned());
    }

    /// An assignment running the stub agent in busybox with `OZ_TEST_OUT=/out`.
    pub fn assignment(&self, task_id: &str, sidecar: &str, extra: Value) -> TaskAssignment {
        let mut v = json!({
            "task_id": task_id,
            "execution_id": format!("exec-{task_id}"),
            "task": {"id": task_id, "owner": {"Type": "TEAM", "Id": 1}},
            "docker_image": BUSYBOX,
            "sidecar_image": sidecar,
            "env_vars": {"OZ_TEST_OUT": "/out"},
        });
        merge(&mut v, extra);
        serde_json::from_value(v).unwrap()
    }

    /// Lets the stub agent of task `id` (started with [`tasks::held`]) exit.
    pub fn release(&self, id: &str) {
        std::fs::write(self.out.join(format!("release-{id}")), b"").unwrap();
    }

    pub fn read_out(&self, file: &str) -> String {
        std::fs::read_to_string(self.out.join(file)).unwrap_or_default()
    }

    pub fn worker_label(&self) -> String {
        format!("{LABEL_WORKER_ID}={}", self.worker_id)
    }

    /// Names of this worker's containers and volumes still on the daemon,
    /// but for the lease volumes of worker processes (see [`Fixture::leases`])
    /// and retention's use records (the worker's own bookkeeping too).
    pub fn leftovers(&self) -> (Vec<String>, Vec<String>) {
        let label = self.worker_label();
        let containers = self.docker.list_by_label(&[&label]).unwrap();
        let volumes = self.docker.volume_list_by_label(&[&label]).unwrap();
        (
            containers.into_iter().flat_map(|c| c.names).collect(),
            volumes
                .into_iter()
                .filter(|v| {
                    !matches!(
                        v.labels.get(LABEL_ROLE).map(String::as_str),
                        Some(
                            ROLE_LEASE
                                | ROLE_EXEC_DONE
                                | ROLE_PING
                                | ROLE_SIDECAR_USE
                                | ROLE_IMAGE_PULL
                        )
                    )
                })
                .map(|v| v.name)
                .collect(),
        )
    }

    /// Names of the lease volumes of this worker id's processes (a running
    /// worker's own state, like the tombstones of reported executions,
    /// which [`Fixture::leftovers`] leaves out too).
    pub fn leases(&self) -> Vec<String> {
        let role = format!("{LABEL_ROLE}={ROLE_LEASE}");
        self.docker
            .volume_list_by_label(&[&self.worker_label(), &role])
            .unwrap()
            .into_iter()
            .map(|v| v.name)
            .collect()
    }

    /// Waits until none of this worker's containers is left: a worker
    /// process removes a task's container once the orchestrator has read its
    /// terminal message, a moment after the test saw that message. Follows
    /// the daemon's `destroy` events (from before the listing, so none is
    /// missed), then asserts nothing is left.
    pub fn wait_no_containers(&self, timeout: std::time::Duration) {
        use std::io::{BufRead, BufReader};
        let since = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_secs()
            - 1;
        let label = self.worker_label();
        let mut left: std::collections::HashSet<String> = self
            .docker
            .list_by_label(&[&label])
            .unwrap()
            .into_iter()
            .map(|c| c.id)
            .collect();
        if !left.is_empty() {
            let until = since + 1 + timeout.as_secs();
            let mut events = Command::new("docker")
                .args([
                    "events",
                    "--since",
                    &since.to_string(),
                    "--until",
                    &until.to_string(),
                ])
                .args(["--filter", "type=container", "--filter", "event=destroy"])
                .args([
                    "--filter",
                    &format!("label={label}"),
                    "--format",
                    "{{.Actor.ID}}",
                ])
                .stdout(std::process::Stdio::piped())
                .spawn()
                .expect("docker events");
            let out = BufReader::new(events.stdout.take().unwrap());
            for line in out.lines() {
                let Ok(id) = line else { break };
                left.remove(id.trim());
                if left.is_empty() {
                    break;
                }
            }
            let _ = events.kill();
            let _ = events.wait();
        }
        self.assert_no_containers();
    }

    pub fn assert_no_containers(&self) {
        assert_eq!(self.leftovers().0, Vec::<String>::new(), "containers left");
    }

    /// Releases the runners' leases (a clean stop), then asserts that no
    /// container or volume of this worker id is left.
    pub fn assert_nothing_left(&self) {
        self.release_leases();
        assert_eq!(self.leftovers(), (vec![], vec![]), "worker objects left");
        let tombstones = format!("{LABEL_ROLE}={ROLE_EXEC_DONE}");
        let left = self
            .docker
            .volume_list_by_label(&[&self.worker_label(), &tombstones])
            .unwrap();
        assert!(
            left.is_empty(),
            "tombstones left after a clean stop: {left:?}"
        );
        let pings = format!("{LABEL_ROLE}={ROLE_PING}");
        let left = self
            .docker
            .volume_list_by_label(&[&self.worker_label(), &pings])
            .unwrap();
        assert!(left.is_empty(), "pings left after a clean stop: {left:?}");
        assert_eq!(self.leases(), Vec::<String>::new(), "leases left");
    }
}

impl Drop for Fixture {
    fn drop(&mut self) {
        self.leases.lock().unwrap().clear();
        let label = self.worker_label();
        if let Ok(list) = self.docker.list_by_label(&[&label]) {
            for c in list {
                let _ = self.docker.remove(&c.id);
            }
        }
        if let Ok(list) = self.docker.volume_list_by_label(&[&label]) {
            for v in list {
                let _ = self.docker.volume_remove(&v.name);
            }
        }
        for tag in &self.tags {
            let _ = self.docker.image_remove(tag);
        }
        let _ = std::fs::remove_dir_all(&self.out);
    }
}

fn merge(base: &mut Value, extra: Value) {
    if let (Value::Object(b), Value::Object(e)) = (base, extra) {
        for (k, v) in e {
            b.insert(k, v);
        }
    }
}

pub fn docker_cli(args: &[&str]) -> String {
    let out = Command::new("docker").args(args).output().unwrap();
    assert!(
        out.status.success(),
        "docker {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).trim().to_string()
}
pub mod dockerd;
pub mod otlp;
pub mod process;
pub mod stall_proxy;
pub mod tasks;
