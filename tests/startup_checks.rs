//! The worker's start-up refusals and error lines, on the real binary
//! against the real Docker daemon: what the daemon lacks for the
//! configuration (runtime, network, seccomp profile), an unusable proxy, a
//! refused `tcp://` daemon, a missing docker context, and the config file's
//! tab and unit-less duration messages. Each refusal is one line, and the
//! worker never dials the orchestrator.

mod support;

use std::net::TcpListener;
use std::process::{Command, Output};
use std::time::Duration;

use oz_standin::{Options, Orchestrator};
use serde_json::json;
use support::process::WorkerProcess;
use support::tasks::{assign, strs, terminal, worker_args};
use support::{Fixture, docker_cli};

const WAIT: Duration = Duration::from_secs(60);
const KEY: &str = "startup-checks-KEY-7c1e";

/// Starts the worker with a config file holding `yaml` and waits for it to
/// exit; returns its exit code and its ERROR lines.
fn refused_with_config(
    fx: &Fixture,
    yaml: &str,
    env: &[(&str, &str)],
) -> (Option<i32>, Vec<String>) {
    let orch = Orchestrator::start(Options::default());
    let file = fx.out.join("config.yaml");
    std::fs::write(&file, yaml).unwrap();
    let file = file.display().to_string();
    let args = worker_args(fx, &orch.url(), &["--config-file", &file]);
    let mut env = env.to_vec();
    env.push(("WARP_API_KEY", KEY));
    let mut worker = WorkerProcess::start(&strs(&args), &env);
    let status = worker.wait_exit(WAIT).expect("the worker exits");
    assert!(
        orch.snapshot().handshakes.is_empty(),
        "a refused worker dialled the orchestrator"
    );
    let errors = worker
        .lines()
        .into_iter()
        .filter(|l| l.contains(" ERROR "))
        .collect();
    (status.code(), errors)
}

/// The one ERROR line's message (after the level).
fn one_error(errors: &[String]) -> &str {
    assert_eq!(errors.len(), 1, "expected one ERROR line: {errors:#?}");
    let line = &errors[0];
    line.split_once(" ERROR ")
        .map(|(_, m)| m.trim_start())
        .unwrap()
}

#[test]
fn a_runtime_the_daemon_lacks_is_refused_at_start() {
    let fx = Fixture::new("no-runtime");
    let (code, errors) = refused_with_config(
        &fx,
        "backend:\n  docker:\n    runtime: oz-no-such-runtime\n",
        &[],
    );
    assert_eq!(code, Some(1));
    let message = one_error(&errors);
    assert!(
        message.starts_with(
            "backend.docker.runtime \"oz-no-such-runtime\" is not a runtime of this Docker daemon (it has: "
        ),
        "{message}"
    );
    assert!(message.contains("runc"), "{message}");
    assert!(
        message.ends_with("or remove backend.docker.runtime"),
        "{message}"
    );
}

#[test]
fn a_network_the_daemon_lacks_is_refused_at_start() {
    let fx = Fixture::new("no-network");
    let (code, errors) = refused_with_config(
        &fx,
        "backend:\n  docker:\n    network: oz-no-such-network-4e1\n",
        &[],
    );
    assert_eq!(code, Some(1));
    assert_eq!(
        one_error(&errors),
        "backend.docker.network \"oz-no-such-network-4e1\" does not exist on this Docker daemon; create it (docker network create oz-no-such-network-4e1) or correct backend.docker.network"
    );
}

#[test]
fn a_missing_seccomp_profile_is_refused_at_start() {
    let fx = Fixture::new("no-profile");
    let (code, errors) = refused_with_config(
        &fx,
        "backend:\n  docker:\n    security_opt: [\"seccomp=/nonexistent/oz-tight.json\"]\n",
        &[],
    );
    assert_eq!(code, Some(1));
    assert_eq!(
        one_error(&errors),
        "backend.docker.security_opt: seccomp profile /nonexistent/oz-tight.json: No such file or directory (os error 2); give the absolute path of a readable seccomp profile (JSON) on the worker's host"
    );
}

/// The Engine API wants the profile's JSON, not its path (the daemon
/// refuses a path with "Decoding seccomp profile failed"): the worker reads
/// the file as the docker CLI does, and the task runs under it.
#[test]
fn a_seccomp_profile_file_is_sent_as_json_and_the_task_runs_under_it() {
    let mut fx = Fixture::new("profile");
    let sidecar = fx.sidecar("profile");
    let profile = fx.out.join("profile.json");
    std::fs::write(
        &profile,
        "{\n  \"defaultAction\": \"SCMP_ACT_ALLOW\",\n  \"syscalls\": [\n    {\"names\": [\"acct\"], \"action\": \"SCMP_ACT_ERRNO\"}\n  ]\n}\n",
    )
    .unwrap();
    let file = fx.out.join("config.yaml");
    std::fs::write(
        &file,
        format!(
            "backend:\n  docker:\n    security_opt: [\"seccomp={}\", \"no-new-privileges\"]\n",
            profile.display()
        ),
    )
    .unwrap();
    let orch = Orchestrator::start(Options::default());
    let file = file.display().to_string();
    let args = worker_args(&fx, &orch.url(), &["--config-file", &file, "--no-cleanup"]);
    let mut worker = WorkerProcess::start(&strs(&args), &[("WARP_API_KEY", KEY)]);
    assert!(orch.wait_until(|r| r.connected, WAIT), "{}", worker.text());
    assign(&orch, "seccomp-1", &sidecar, json!({}));
    let frames = orch.wait_for(|f| !terminal(f, "seccomp-1").is_empty(), WAIT);
    let done = terminal(&frames, "seccomp-1");
    assert_eq!(
        done[0]["type"],
        "task_completed",
        "{frames:?}\n{}",
        worker.text()
    );
    let kept = docker_cli(&[
        "ps",
        "-aq",
        "--filter",
        "label=dev.warp.oz-agent-worker.task-id=seccomp-1",
        "--filter",
        &format!("label={}", fx.worker_label()),
    ]);
    let opts = docker_cli(&["inspect", "-f", "{{json .HostConfig.SecurityOpt}}", &kept]);
    let opts: Vec<String> = serde_json::from_str(&opts).unwrap();
    assert_eq!(
        opts,
        [
            r#"seccomp={"defaultAction":"SCMP_ACT_ALLOW","syscalls":[{"action":"SCMP_ACT_ERRNO","names":["acct"]}]}"#,
            "no-new-privileges"
        ]
    );
    worker.signal(libc::SIGTERM);
    assert_eq!(worker.wait_exit(WAIT).and_then(|s| s.code()), Some(0));
}

#[test]
fn an_unusable_proxy_scheme_is_refused_at_start_naming_the_variable() {
    let fx = Fixture::new("socks");
    let args = [
        "--worker-id",
        &fx.worker_id,
        "--web-socket-url",
        "wss://oz.example.test/api/v1/selfhosted/worker/ws",
    ];
    let mut worker = WorkerProcess::start(
        &args,
        &[
            ("WARP_API_KEY", KEY),
            ("HTTPS_PROXY", "socks5://user:proxy-SECRET@127.0.0.1:1080"),
        ],
    );
    let status = worker.wait_exit(WAIT).expect("refused, not retried");
    assert_eq!(status.code(), Some(1));
    let text = worker.text();
    assert!(!text.contains("proxy-SECRET"), "{text}");
    let errors: Vec<String> = worker
        .lines()
        .into_iter()
        .filter(|l| l.contains(" ERROR "))
        .collect();
    assert_eq!(
        one_error(&errors),
        "cannot use the proxy for wss://oz.example.test/api/v1/selfhosted/worker/ws: HTTPS_PROXY: proxy scheme \"socks5\" is not supported (the worker tunnels through an http:// proxy with CONNECT); set it to http://host:port or unset it; only http:// CONNECT proxies are supported; list hosts reached directly in NO_PROXY"
    );
    assert!(!text.contains("retrying"), "{text}");
}

#[test]
fn a_refused_tcp_daemon_names_docker_host() {
    // A port that was just free: nothing listens on it.
    let port = TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let host = format!("tcp://127.0.0.1:{port}");
    let mut worker = WorkerProcess::start(
        &[
            "--worker-id",
            "tcp-refused",
            "--web-socket-url",
            "ws://127.0.0.1:9/ws",
        ],
        &[("WARP_API_KEY", KEY), ("DOCKER_HOST", &host)],
    );
    assert_eq!(worker.wait_exit(WAIT).and_then(|s| s.code()), Some(1));
    let errors: Vec<String> = worker
        .lines()
        .into_iter()
        .filter(|l| l.contains(" ERROR "))
        .collect();
    assert_eq!(
        one_error(&errors),
        format!(
            "cannot connect to the Docker daemon at 127.0.0.1:{port} (from DOCKER_HOST): Connection refused (os error 111); is a daemon listening there? correct DOCKER_HOST, or unset it to use the local socket"
        )
    );
}

#[test]
fn a_missing_docker_context_is_named_not_its_storage_path() {
    let fx = Fixture::new("context");
    let config_dir = fx.out.join("docker-config");
    std::fs::create_dir_all(config_dir.join("contexts/meta")).unwrap();
    let config_dir = config_dir.display().to_string();
    let mut worker = WorkerProcess::start(
        &[
            "--worker-id",
            &fx.worker_id,
            "--web-socket-url",
            "ws://127.0.0.1:9/ws",
        ],
        &[
            ("WARP_API_KEY", KEY),
            ("DOCKER_CONFIG", &config_dir),
            ("DOCKER_CONTEXT", "prod-east"),
        ],
    );
    assert_eq!(worker.wait_exit(WAIT).and_then(|s| s.code()), Some(1));
    let errors: Vec<String> = worker
        .lines()
        .into_iter()
        .filter(|l| l.contains(" ERROR "))
        .collect();
    assert_eq!(
        one_error(&errors),
        format!(
            "docker context \"prod-east\" (from DOCKER_CONTEXT) does not exist under {config_dir}/contexts; unset DOCKER_CONTEXT or set it to one that `docker context ls` lists"
        )
    );
}

/// The binary with `yaml` as its config file (refused before Docker is asked).
fn worker_with_file(case: &str, yaml: &str) -> Output {
    let file = std::env::temp_dir().join(format!("oz-startup-{case}-{}.yaml", std::process::id()));
    std::fs::write(&file, yaml).unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_oz-agent-worker"))
        .args(["--api-key", "k", "--config-file", file.to_str().unwrap()])
        .output()
        .unwrap();
    let _ = std::fs::remove_file(&file);
    out
}

#[test]
fn a_tab_in_the_config_file_says_tabs_are_not_allowed() {
    let out = worker_with_file("tab", "worker_id: w\nbackend:\n\tdocker:\n");
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.ends_with(": line 3: tabs are not allowed for indentation; use spaces\n"),
        "{stderr}"
    );
    assert_eq!(stderr.lines().count(), 1, "{stderr}");
}

#[test]
fn a_duration_without_a_unit_gets_an_example() {
    let out = worker_with_file(
        "unit",
        "worker_id: w\nbackend:\n  docker:\n    stop_grace: 30\n",
    );
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains(
            r#"backend.docker.stop_grace: time: missing unit in duration "30" (did you mean "30s" or "30m"? units are ns, us, ms, s, m, h) at line 4"#
        ),
        "{stderr}"
    );
}

/// A mirror that does not answer is a warning, not a refusal: a registry
/// down for a minute must not keep the worker from starting.
#[test]
fn a_silent_mirror_registry_warns_and_the_worker_still_starts() {
    let fx = Fixture::new("mirror");
    let closed = TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap();
    let file = fx.out.join("config.yaml");
    std::fs::write(
        &file,
        format!("backend:\n  docker:\n    registry_mirrors:\n      docker.io: {closed}/hub\n"),
    )
    .unwrap();
    let orch = Orchestrator::start(Options::default());
    let file = file.display().to_string();
    let args = worker_args(&fx, &orch.url(), &["--config-file", &file]);
    let mut worker = WorkerProcess::start(&strs(&args), &[("WARP_API_KEY", KEY)]);
    assert!(orch.wait_until(|r| r.connected, WAIT), "{}", worker.text());
    let warning = format!(
        "WARN  mirror registry {closed} does not answer: Connection refused (os error 111); pulls through it will fail until it answers"
    );
    assert!(
        worker.wait_log(|lines| lines.iter().any(|l| l.ends_with(&warning)), WAIT),
        "{}",
        worker.text()
    );
    worker.signal(libc::SIGTERM);
    assert_eq!(worker.wait_exit(WAIT).and_then(|s| s.code()), Some(0));
}

#[test]
fn a_line_break_in_a_url_or_a_proxy_stops_the_start_with_one_line() {
    let fx = Fixture::new("crlf");
    let out = Command::new(env!("CARGO_BIN_EXE_oz-agent-worker"))
        .args([
            "--worker-id",
            &fx.worker_id,
            "--web-socket-url",
            "ws://127.0.0.1:9/ws\r\nX-Injected: 1",
        ])
        .env("WARP_API_KEY", KEY)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    assert_eq!(
        String::from_utf8_lossy(&out.stderr),
        "oz-agent-worker: invalid --web-socket-url: it holds a CR, LF or NUL character, which would split the HTTP request or label it goes into; remove it\n"
    );
    let args = [
        "--worker-id",
        &fx.worker_id,
        "--web-socket-url",
        "wss://oz.example.test/api/v1/selfhosted/worker/ws",
    ];
    let mut worker = WorkerProcess::start(
        &args,
        &[
            ("WARP_API_KEY", KEY),
            ("HTTPS_PROXY", "http://127.0.0.1:3128\r\nX-Injected: 1"),
        ],
    );
    let status = worker.wait_exit(WAIT).expect("refused, not retried");
    assert_eq!(status.code(), Some(1));
    let errors: Vec<String> = worker
        .lines()
        .into_iter()
        .filter(|l| l.contains(" ERROR "))
        .collect();
    let error = one_error(&errors);
    assert!(
        error.starts_with("cannot use the proxy for wss://oz.example.test/api/v1/selfhosted/worker/ws: HTTPS_PROXY: the proxy URL holds a control character (CR, LF, NUL, …), which would split the CONNECT request"),
        "{error}"
    );
    assert!(!worker.text().contains("X-Injected"), "{}", worker.text());
}

#[test]
fn plain_ws_to_another_host_warns_once_that_the_key_travels_in_clear() {
    let fx = Fixture::new("cleartext");
    let args = [
        "--worker-id",
        &fx.worker_id,
        "--web-socket-url",
        "ws://oz-cleartext.invalid:9/api/v1/selfhosted/worker/ws",
    ];
    let mut worker = WorkerProcess::start(&args, &[("WARP_API_KEY", KEY)]);
    // Two failed dials: the warning is said once, at start, not per dial.
    assert!(
        worker.wait_count("could not connect to ws://oz-cleartext.invalid", 2, WAIT),
        "{}",
        worker.text()
    );
    worker.signal(libc::SIGTERM);
    assert_eq!(worker.wait_exit(WAIT).and_then(|s| s.code()), Some(0));
    let warnings: Vec<String> = worker
        .lines()
        .into_iter()
        .filter(|l| l.contains("travels in clear"))
        .collect();
    assert_eq!(warnings.len(), 1, "{}", worker.text());
    assert!(
        warnings[0].ends_with(" WARN  ws://oz-cleartext.invalid:9/api/v1/selfhosted/worker/ws is plain ws:// to a host other than this one: the API key travels in clear on every connection; use wss://"),
        "{}",
        warnings[0]
    );
    assert!(!worker.text().contains(KEY));

    // To this host: no warning.
    let orch = Orchestrator::start(Options::default());
    let args = worker_args(&fx, &orch.url(), &[]);
    let mut worker = WorkerProcess::start(&strs(&args), &[("WARP_API_KEY", KEY)]);
    assert!(orch.wait_until(|r| r.connected, WAIT), "{}", worker.text());
    worker.signal(libc::SIGTERM);
    assert_eq!(worker.wait_exit(WAIT).and_then(|s| s.code()), Some(0));
    assert!(orch.url().starts_with("ws://127."), "{}", orch.url());
    assert!(
        !worker.text().contains("travels in clear"),
        "{}",
        worker.text()
    );
}
