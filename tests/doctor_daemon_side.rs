//! `oz-agent-worker doctor`'s checks of the daemon's side of the
//! configuration, against the real Docker daemon and real registries: the
//! `runtime` against `GET /info`, the `network` against the daemon's
//! networks, `security_opt` profile files, each mirror registry answering
//! `GET /v2/` (Debian's registry, a closed port, a server that is not a
//! registry), and `--format json`. The doctor only reads from Docker, so
//! nothing needs removing there.

use std::ffi::OsString;
use std::io::{Read, Write};
use std::net::TcpListener;
use std::path::PathBuf;
use std::process::Command;
use std::sync::atomic::{AtomicUsize, Ordering};

use oz_agent_worker::config::{self, Command as Parsed};
use oz_agent_worker::doctor;
use oz_standin::registry::{Registry, RegistryOpts};
use oz_standin::{Options, Orchestrator};
use serde_json::Value;

const KEY: &str = "sk-doctor-daemon-SECRET";

/// A temp directory removed on drop, even when the test fails.
struct TempDir(PathBuf);

impl TempDir {
    fn new() -> Self {
        static N: AtomicUsize = AtomicUsize::new(0);
        let n = N.fetch_add(1, Ordering::Relaxed);
        let path =
            std::env::temp_dir().join(format!("oz-doctor-daemon-{}-{n}", std::process::id()));
        std::fs::create_dir_all(&path).unwrap();
        Self(path)
    }
    fn file(&self, name: &str, text: &str) -> String {
        let path = self.0.join(name);
        std::fs::write(&path, text).unwrap();
        path.to_str().unwrap().to_owned()
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// Runs the doctor in-process with `yaml` as its config file, against the
/// stand-in orchestrator; returns the exit code and the report.
fn doctor_with(yaml: &str, extra: &[&str]) -> (i32, String) {
    let dir = TempDir::new();
    let orch = Orchestrator::start(Options::default());
    let file = dir.file("config.yaml", yaml);
    let url = orch.url();
    let mut args: Vec<OsString> = [
        "doctor",
        "--worker-id",
        "w-doctor-daemon",
        "--web-socket-url",
        &url,
        "--config-file",
        &file,
    ]
    .iter()
    .map(OsString::from)
    .collect();
    args.extend(extra.iter().map(OsString::from));
    let path = std::env::var("PATH").ok();
    let docker_config = dir.0.to_str().unwrap().to_owned();
    let lookup = |name: &str| match name {
        "WARP_API_KEY" => Some(KEY.to_owned()),
        "PATH" => path.clone(),
        "DOCKER_CONFIG" => Some(docker_config.clone()),
        _ => None,
    };
    let input = match config::parse(args, &lookup) {
        Ok(Parsed::Doctor(input)) => input,
        other => panic!("expected the doctor, got {other:?}"),
    };
    let mut out = Vec::new();
    let code = doctor::run(input, &mut out);
    let text = String::from_utf8(out).unwrap();
    assert!(!text.contains("SECRET"), "the API key leaked:\n{text}");
    (code, text)
}

/// A plain web server on loopback answering every request with 404.
struct NotARegistry(std::net::SocketAddr);

impl NotARegistry {
    fn start() -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        std::thread::spawn(move || {
            for conn in listener.incoming() {
                let Ok(mut conn) = conn else { break };
                let mut buf = [0u8; 1024];
                let _ = conn.read(&mut buf);
                let _ = conn.write_all(
                    b"HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\nConnection: close\r\n\r\n",
                );
            }
        });
        Self(addr)
    }
    fn addr(&self) -> std::net::SocketAddr {
        self.0
    }
}

/// The lines of check `name` (its status line and, for a failure, its fix).
fn check(report: &str, name: &str) -> String {
    let lines: Vec<&str> = report.lines().collect();
    let at = lines
        .iter()
        .position(|l| {
            l.get(5..)
                .is_some_and(|rest| rest.starts_with(&format!("{name}: ")))
        })
        .unwrap_or_else(|| panic!("check `{name}` missing in:\n{report}"));
    match lines.get(at + 1) {
        Some(fix) if fix.starts_with("  fix: ") => format!("{}\n{fix}", lines[at]),
        _ => lines[at].to_owned(),
    }
}

#[test]
fn runtime_and_network_are_checked_against_the_daemon() {
    let (code, report) = doctor_with(
        "backend:\n  docker:\n    runtime: oz-no-such-runtime\n    network: oz-no-such-network-77\n",
        &[],
    );
    assert_eq!(code, 1, "{report}");
    let runtime = check(&report, "runtime");
    assert!(
        runtime.starts_with(
            "FAIL runtime: backend.docker.runtime \"oz-no-such-runtime\" is not a runtime of this Docker daemon (it has: "
        ),
        "{runtime}"
    );
    assert!(
        runtime.ends_with(
            "\n  fix: install oz-no-such-runtime and register it under \"runtimes\" in the daemon's daemon.json (then restart dockerd), or remove backend.docker.runtime"
        ),
        "{runtime}"
    );
    assert_eq!(
        check(&report, "network"),
        "FAIL network: backend.docker.network \"oz-no-such-network-77\" does not exist on this Docker daemon\n  fix: create it (docker network create oz-no-such-network-77) or correct backend.docker.network"
    );

    let (code, report) = doctor_with(
        "backend:\n  docker:\n    runtime: runc\n    network: bridge\n",
        &[],
    );
    assert_eq!(
        check(&report, "runtime"),
        "PASS runtime: runc is registered with the daemon"
    );
    assert_eq!(
        check(&report, "network"),
        "PASS network: bridge exists (driver bridge)"
    );
    // The images are not local in this config, which warns; nothing fails.
    assert_eq!(code, 0, "{report}");
}

#[test]
fn seccomp_profile_files_must_exist_and_be_json() {
    let dir = TempDir::new();
    let good = dir.file("good.json", r#"{"defaultAction":"SCMP_ACT_ALLOW"}"#);
    let bad = dir.file("bad.json", "defaultAction: SCMP_ACT_ALLOW\n");
    let (code, report) = doctor_with(
        &format!(
            "backend:\n  docker:\n    security_opt:\n      - seccomp={good}\n      - seccomp={bad}\n      - seccomp=/nonexistent/p.json\n      - no-new-privileges\n"
        ),
        &[],
    );
    assert_eq!(code, 1, "{report}");
    assert_eq!(
        check(&report, &format!("security_opt seccomp={good}")),
        format!(
            "PASS security_opt seccomp={good}: profile read (34 bytes of JSON sent with each task)"
        )
    );
    assert!(
        check(&report, &format!("security_opt seccomp={bad}")).starts_with(&format!(
            "FAIL security_opt seccomp={bad}: backend.docker.security_opt: seccomp profile {bad}: is not valid JSON: "
        )),
        "{report}"
    );
    assert_eq!(
        check(&report, "security_opt seccomp=/nonexistent/p.json"),
        "FAIL security_opt seccomp=/nonexistent/p.json: backend.docker.security_opt: seccomp profile /nonexistent/p.json: No such file or directory (os error 2)\n  fix: give the absolute path of a readable seccomp profile (JSON) on the worker's host"
    );
    assert_eq!(
        check(&report, "security_opt no-new-privileges"),
        "PASS security_opt no-new-privileges: passed to the daemon as written"
    );
}

#[test]
fn each_mirror_registry_must_answer_v2() {
    let registry = Registry::start(RegistryOpts::default());
    let closed = TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap();
    // A server that answers HTTP, but not as a registry.
    let not_registry = NotARegistry::start();
    let (code, report) = doctor_with(
        &format!(
            "backend:\n  docker:\n    registry_mirrors:\n      docker.io: {}/hub\n      ghcr.io: {closed}/ghcr\n      quay.io: {}/quay\n      docker.io/warpdotdev: myorg/agents\n",
            registry.addr(),
            not_registry.addr()
        ),
        &[],
    );
    assert_eq!(code, 1, "{report}");
    assert_eq!(
        check(&report, &format!("mirror {}", registry.addr())),
        format!(
            "PASS mirror {}: answers http GET /v2/ (200)",
            registry.addr()
        )
    );
    let closed_line = check(&report, &format!("mirror {closed}"));
    assert!(
        closed_line.starts_with(&format!(
            "FAIL mirror {closed}: does not answer: Connection refused (os error 111) (checked from this host"
        )),
        "{closed_line}"
    );
    let not = check(&report, &format!("mirror {}", not_registry.addr()));
    assert!(
        not.starts_with(&format!(
            "FAIL mirror {}: answered http GET /v2/ with \"HTTP/1.1 404 Not Found\", not as a registry (checked from this host",
            not_registry.addr()
        )),
        "{not}"
    );
    // A Docker Hub path is not a private mirror: nothing probed.
    assert!(!report.contains("mirror myorg"), "{report}");
    assert!(registry.requests("GET", "/v2/") >= 1);
}

#[test]
fn format_json_is_one_document_with_the_same_checks() {
    let yaml = "backend:\n  docker:\n    runtime: oz-no-such-runtime\n";
    let (text_code, text) = doctor_with(yaml, &[]);
    let (code, json) = doctor_with(yaml, &["--format", "json"]);
    assert_eq!((code, text_code), (1, 1));
    assert_eq!(json.lines().count(), 1, "{json}");
    let doc: Value = serde_json::from_str(&json).unwrap();
    assert_eq!(doc["ok"], false);
    let checks = doc["checks"].as_array().unwrap();
    assert_eq!(
        checks.len(),
        text.lines().filter(|l| !l.starts_with("  fix: ")).count() - 1,
        "{text}\n{json}"
    );
    let runtime = checks.iter().find(|c| c["name"] == "runtime").unwrap();
    assert_eq!(runtime["status"], "fail");
    assert!(
        runtime["fix"]
            .as_str()
            .unwrap()
            .starts_with("install oz-no-such-runtime")
    );
    let config = checks.iter().find(|c| c["name"] == "config").unwrap();
    assert_eq!(config["status"], "pass");
    assert_eq!(config["fix"], Value::Null);
    for key in ["passed", "warnings", "failed"] {
        assert!(doc[key].is_u64(), "{key} in {doc}");
    }
    assert_eq!(doc["failed"], 1);
}

/// The binary's own wiring: `doctor --format json` on stdout, exit 1 on a failure.
#[test]
fn the_binary_prints_json_and_exits_1_on_failure() {
    let dir = TempDir::new();
    let file = dir.file(
        "c.yaml",
        "worker_id: w\nbackend:\n  docker:\n    runtime: oz-none\n",
    );
    let out = Command::new(env!("CARGO_BIN_EXE_oz-agent-worker"))
        .args([
            "doctor",
            "--format",
            "json",
            "--config-file",
            &file,
            "--web-socket-url",
            "ws://127.0.0.1:9/ws",
        ])
        .env("WARP_API_KEY", KEY)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    let doc: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(doc["ok"], false);
    assert!(
        doc["checks"]
            .as_array()
            .unwrap()
            .iter()
            .any(|c| c["name"] == "runtime" && c["status"] == "fail")
    );
}

#[test]
fn the_task_network_is_checked_when_no_network_is_named() {
    let (_, report) = doctor_with("worker_id: w-doctor-daemon\n", &[]);
    let line = check(&report, "task network");
    // Made by a worker earlier on this daemon, or not yet: either passes.
    assert!(
        line == "PASS task network: oz-agent-worker-tasks keeps task containers apart (com.docker.network.bridge.enable_icc=false)"
            || line
                == "PASS task network: oz-agent-worker-tasks does not exist yet; the worker makes it at start (containers on it cannot reach each other)",
        "{line}"
    );
    // A named network replaces it: no such check then.
    let (_, report) = doctor_with("backend:\n  docker:\n    network_mode: bridge\n", &[]);
    assert!(!report.contains("task network"), "{report}");
    assert!(
        check(&report, "network").starts_with("PASS network: bridge exists (driver bridge)"),
        "{report}"
    );
}
