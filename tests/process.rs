//! The real worker process end to end: the binary against the stand-in
//! orchestrator and the real Docker daemon. Signals, exit codes, a task
//! adopted after a crash, start-up errors, and what reaches the log.

mod support;

use std::time::Duration;

use oz_standin::{Options, Orchestrator};
use serde_json::{Value, json};
use support::Fixture;
use support::process::WorkerProcess;
use support::tasks::{assign, strs, terminal, worker_args};

const WAIT: Duration = Duration::from_secs(60);
const API_KEY: &str = "oz-api-key-MARKER-5f1d";
const ENV_SECRET: &str = "env-vars-MARKER-93ab";
const OPERATOR_SECRET: &str = "operator-env-MARKER-c0de";

#[test]
fn sigterm_with_running_tasks_reports_each_closes_1000_and_exits_0() {
    let mut fx = Fixture::new("sigterm");
    let sidecar = fx.sidecar("sigterm");
    let orch = Orchestrator::start(Options::default());
    let args = worker_args(&fx, &orch.url(), &[]);
    let mut worker = WorkerProcess::start(&strs(&args), &[("WARP_API_KEY", API_KEY)]);
    assert!(orch.wait_until(|r| r.connected, WAIT), "{}", worker.text());
    let ids = ["t1", "t2", "t3"];
    for id in ids {
        assign(&orch, id, &sidecar, json!({"OZ_TEST_SLEEP": "300"}));
    }
    assert!(
        worker.wait_count("started container", ids.len(), WAIT),
        "{}",
        worker.text()
    );
    worker.signal(libc::SIGTERM);
    let status = worker.wait_exit(WAIT).expect("the worker exits");
    assert_eq!(status.code(), Some(0), "{}", worker.text());
    let frames = orch.received();
    for id in ids {
        let t = terminal(&frames, id);
        assert_eq!(t.len(), 1, "{id}: {frames:?}");
        assert_eq!(t[0]["type"], "task_failed");
        assert_eq!(t[0]["data"]["failure_reason"], "graceful_shutdown");
    }
    assert_eq!(orch.close_code(), Some(1000));
    fx.assert_no_containers();
}

#[test]
fn no_secret_reaches_the_debug_log_in_either_format() {
    for format in ["text", "json"] {
        let mut fx = Fixture::new(&format!("secrets-{format}"));
        let sidecar = fx.sidecar("secrets");
        let orch = Orchestrator::start(Options::default());
        let operator_env = format!("OPERATOR_TOKEN={OPERATOR_SECRET}");
        let extra = [
            "--log-level",
            "debug",
            "--log-format",
            format,
            "-e",
            &operator_env,
        ];
        let args = worker_args(&fx, &orch.url(), &extra);
        let mut worker = WorkerProcess::start(&strs(&args), &[("WARP_API_KEY", API_KEY)]);
        assert!(orch.wait_until(|r| r.connected, WAIT), "{}", worker.text());
        // The stub exits 3, so the worker logs the container's output, which
        // prints every env value (see the stub's OZ_TEST_PRINT_ENV).
        assign(
            &orch,
            "sec",
            &sidecar,
            json!({"SECRET_TOKEN": ENV_SECRET, "OZ_TEST_EXIT": "3", "OZ_TEST_PRINT_ENV": "1"}),
        );
        orch.wait_for(|f| !terminal(f, "sec").is_empty(), WAIT);
        worker.signal(libc::SIGTERM);
        assert_eq!(worker.wait_exit(WAIT).and_then(|s| s.code()), Some(0));
        let text = worker.text();
        assert!(
            text.contains("SECRET_TOKEN=[REDACTED]"),
            "the container output should be logged, masked:\n{text}"
        );
        for marker in [API_KEY, ENV_SECRET, OPERATOR_SECRET, "MARKER"] {
            assert!(
                !text.contains(marker),
                "{marker} leaked ({format}):\n{text}"
            );
        }
        if format == "json" {
            for line in worker.lines() {
                let v: Value = serde_json::from_str(&line)
                    .unwrap_or_else(|e| panic!("not JSON ({e}): {line}"));
                for key in ["timestamp", "level", "message"] {
                    assert!(v[key].is_string(), "{key} missing: {line}");
                }
            }
            assert!(
                worker
                    .lines()
                    .iter()
                    .any(|l| l.contains(r#""task_id":"sec""#)),
                "task lines carry the task id"
            );
        }
        fx.wait_no_containers(WAIT);
    }
}

#[test]
fn a_task_running_when_its_worker_is_killed_is_adopted_and_reported_by_the_next_start() {
    let mut fx = Fixture::new("orphan");
    let sidecar = fx.sidecar("orphan");
    let orch = Orchestrator::start(Options::default());
    let args = worker_args(
        &fx,
        &orch.url(),
        &["--lease-ttl", "3s", "--reap-interval", "200ms"],
    );
    let mut worker = WorkerProcess::start(&strs(&args), &[("WARP_API_KEY", API_KEY)]);
    assert!(orch.wait_until(|r| r.connected, WAIT));
    assign(
        &orch,
        "orphan",
        &sidecar,
        json!({"OZ_TEST_UNTIL": "/out/release", "OZ_TEST_EXIT": "7"}),
    );
    assert!(
        worker.wait_count("started container", 1, WAIT),
        "{}",
        worker.text()
    );
    worker.signal(libc::SIGKILL);
    worker.wait_exit(WAIT).expect("killed");
    assert_eq!(
        fx.leftovers().0.len(),
        1,
        "the task container outlives a SIGKILLed worker"
    );

    let mut again = WorkerProcess::start(&strs(&args), &[("WARP_API_KEY", API_KEY)]);
    // Adopted once the killed process's lease has run out (3 s here).
    assert!(
        again.wait_count("adopted task orphan", 1, WAIT),
        "{}",
        again.text()
    );
    std::fs::write(fx.out.join("release"), b"").unwrap();
    let frames = orch.wait_for(|f| !terminal(f, "orphan").is_empty(), WAIT);
    assert_eq!(
        terminal(&frames, "orphan"),
        vec![&json!({"type": "task_failed", "data": {"task_id": "orphan",
            "message": "Failed to execute task: container exited with non-zero status: 7",
            "failure_reason": "container_exit", "exit_code": 7}})]
    );
    fx.wait_no_containers(WAIT);
    again.signal(libc::SIGTERM);
    assert_eq!(again.wait_exit(WAIT).and_then(|s| s.code()), Some(0));
    assert_eq!(fx.leases(), Vec::<String>::new(), "{}", again.text());
}

#[test]
fn an_unreachable_docker_daemon_is_one_plain_line_and_exit_1() {
    let orch = Orchestrator::start(Options::default());
    let mut worker = WorkerProcess::start(
        &["--worker-id", "no-docker", "--web-socket-url", &orch.url()],
        &[
            ("WARP_API_KEY", API_KEY),
            ("DOCKER_HOST", "unix:///nonexistent/docker.sock"),
        ],
    );
    let status = worker.wait_exit(WAIT).expect("exits");
    assert_eq!(status.code(), Some(1));
    let errors: Vec<String> = worker
        .lines()
        .into_iter()
        .filter(|l| l.contains("ERROR"))
        .collect();
    assert_eq!(errors.len(), 1, "{errors:?}");
    assert!(
        errors[0].contains("/nonexistent/docker.sock"),
        "{}",
        errors[0]
    );
    assert!(!orch.wait_until(|r| !r.handshakes.is_empty(), Duration::from_millis(1)));
}

/// `GET path` on 127.0.0.1:port; (status, body).
fn http_get(port: u16, path: &str) -> (u16, String) {
    use std::io::{Read, Write};
    let mut s = std::net::TcpStream::connect(("127.0.0.1", port)).unwrap();
    write!(
        s,
        "GET {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"
    )
    .unwrap();
    let mut text = String::new();
    s.read_to_string(&mut text).unwrap();
    let status = text[9..12].parse().unwrap();
    let body = text
        .split_once("\r\n\r\n")
        .map(|(_, b)| b.to_owned())
        .unwrap_or_default();
    (status, body)
}

/// The value of the one series of `name` whose labels include every `labels` pair.
fn series(scrape: &str, name: &str, labels: &[&str]) -> f64 {
    let found: Vec<f64> = scrape
        .lines()
        .filter(|l| l.starts_with(&format!("{name}{{")) || l.starts_with(&format!("{name} ")))
        .filter(|l| labels.iter().all(|p| l.contains(p)))
        .map(|l| l.rsplit(' ').next().unwrap().parse().unwrap())
        .collect();
    assert_eq!(found.len(), 1, "{name} {labels:?} in:\n{scrape}");
    found[0]
}

#[test]
fn metrics_and_health_count_real_tasks() {
    let mut fx = Fixture::new("metrics");
    let sidecar = fx.sidecar("metrics");
    let orch = Orchestrator::start(Options::default());
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
        .to_string();
    let args = worker_args(&fx, &orch.url(), &["--max-concurrent-tasks", "1"]);
    let mut worker = WorkerProcess::start(
        &strs(&args),
        &[
            ("WARP_API_KEY", API_KEY),
            ("OTEL_METRICS_EXPORTER", "prometheus"),
            ("OTEL_EXPORTER_PROMETHEUS_HOST", "127.0.0.1"),
            ("OTEL_EXPORTER_PROMETHEUS_PORT", &port),
        ],
    );
    let port: u16 = port.parse().unwrap();
    assert!(orch.wait_until(|r| r.connected, WAIT), "{}", worker.text());
    assert!(worker.wait_count("serving /metrics", 1, WAIT));
    assert_eq!(http_get(port, "/healthz").0, 200);

    assign(&orch, "ok", &sidecar, json!({}));
    orch.wait_for(|f| !terminal(f, "ok").is_empty(), WAIT);
    assign(&orch, "bad", &sidecar, json!({"OZ_TEST_EXIT": "3"}));
    orch.wait_for(|f| !terminal(f, "bad").is_empty(), WAIT);
    assign(&orch, "slow", &sidecar, json!({"OZ_TEST_SLEEP": "300"}));
    assert!(worker.wait_count("started container", 3, WAIT));
    assign(&orch, "rej", &sidecar, json!({}));
    orch.wait_for(|f| f.iter().any(|f| f["type"] == "task_rejected"), WAIT);
    let (status, during) = http_get(port, "/metrics");
    assert_eq!(status, 200);
    assert_eq!(series(&during, "oz_worker_tasks_active", &[]), 1.0);
    orch.send(&json!({"type": "task_cancellation", "data": {"task_id": "slow"}}));
    orch.wait_for(|f| !terminal(f, "slow").is_empty(), WAIT);

    let (_, scrape) = http_get(port, "/metrics");
    let result = |r: &str| format!("result=\"{r}\"");
    assert_eq!(series(&scrape, "oz_worker_connected", &[]), 1.0);
    assert_eq!(series(&scrape, "oz_worker_tasks_active", &[]), 0.0);
    assert_eq!(series(&scrape, "oz_worker_tasks_max_concurrent", &[]), 1.0);
    assert_eq!(series(&scrape, "oz_worker_tasks_claimed_total", &[]), 3.0);
    assert_eq!(
        series(
            &scrape,
            "oz_worker_tasks_rejected_total",
            &["reason=\"at_capacity\""]
        ),
        1.0
    );
    for (r, n) in [("succeeded", 1.0), ("failed", 1.0), ("cancelled", 1.0)] {
        assert_eq!(
            series(&scrape, "oz_worker_tasks_completed_total", &[&result(r)]),
            n,
            "{r}"
        );
        assert_eq!(
            series(
                &scrape,
                "oz_worker_task_duration_seconds_count",
                &[&result(r)]
            ),
            n,
            "{r}"
        );
    }
    assert_eq!(
        series(
            &scrape,
            "oz_worker_task_failures_total",
            &["phase=\"backend\"", "reason=\"container_exit\""]
        ),
        1.0
    );
    let worker_id = format!("worker_id=\"{}\"", fx.worker_id);
    assert_eq!(
        series(
            &scrape,
            "oz_worker_info",
            &[&worker_id, "backend=\"docker\""]
        ),
        1.0
    );
    let (status, body) = http_get(port, "/readyz");
    assert_eq!(status, 200, "{body}");

    orch.drop_connection();
    orch.reject_handshakes(503, 1000);
    assert!(worker.wait_count("connection lost", 1, WAIT));
    let (status, body) = http_get(port, "/readyz");
    assert_eq!(status, 503, "{body}");
    assert!(body.contains("not connected to Oz"), "{body}");
    let (_, scrape) = http_get(port, "/metrics");
    assert_eq!(series(&scrape, "oz_worker_connected", &[]), 0.0);
    assert!(
        series(
            &scrape,
            "oz_worker_websocket_reconnects_total",
            &["reason=\"remote_close\""]
        ) >= 1.0
    );
    assert!(!scrape.contains("MARKER"));
    worker.signal(libc::SIGTERM);
    assert_eq!(worker.wait_exit(WAIT).and_then(|s| s.code()), Some(0));
    fx.assert_no_containers();
}
