//! The metrics endpoint over a real TCP socket, fed by a real dispatcher.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::sync::Arc;
use std::time::Duration;

use oz_agent_worker::dispatch::{DispatchSettings, Dispatcher};
use oz_agent_worker::metrics::{
    Health, Metrics, ReconnectReason, WorkerInfo, config_from_env, serve,
};
use oz_agent_worker::outbox::Outbox;
use oz_agent_worker::task::{CancelToken, TaskOutcome, TaskRunner};
use oz_agent_worker::wire::{FailureReason, Inbound, Task, TaskAssignment};

const SCOPE: &str = "otel_scope_name=\"github.com/warpdotdev/oz-agent-worker\",otel_scope_schema_url=\"\",otel_scope_version=\"\"";

/// Ends a task by its image name: "ok" completes, "oom" fails, anything else
/// runs until cancelled.
struct ByImage;
impl TaskRunner for ByImage {
    fn run(&self, task: &TaskAssignment, cancel: &CancelToken) -> TaskOutcome {
        match task.docker_image.as_str() {
            "ok" => TaskOutcome::Completed,
            "oom" => TaskOutcome::Failed {
                reason: FailureReason::ContainerOom,
                detail: "container exited with non-zero status: 137".into(),
                exit_code: 137,
            },
            _ => match cancel.wait_timeout(Duration::from_secs(30)) {
                Some(cause) => TaskOutcome::Cancelled(cause),
                None => TaskOutcome::Completed,
            },
        }
    }
}

fn assignment(id: &str, image: &str) -> Inbound {
    Inbound::Assignment(Box::new(TaskAssignment {
        task_id: id.into(),
        execution_id: format!("exec-{id}"),
        task: Task {
            id: id.into(),
            ..Task::default()
        },
        docker_image: image.into(),
        ..TaskAssignment::default()
    }))
}

fn metrics() -> Metrics {
    Metrics::new(
        WorkerInfo {
            version: "9.9.9".into(),
            backend: "docker".into(),
            worker_id: "itest".into(),
        },
        2,
    )
}

struct Reply {
    status: u16,
    headers: String,
    body: String,
}

fn get(addr: SocketAddr, method: &str, path: &str) -> Reply {
    let mut s = TcpStream::connect(addr).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    write!(s, "{method} {path} HTTP/1.1\r\nHost: test\r\n\r\n").unwrap();
    let mut raw = String::new();
    s.read_to_string(&mut raw).unwrap();
    let (head, body) = raw.split_once("\r\n\r\n").unwrap();
    let status = head[9..12].parse().unwrap();
    Reply {
        status,
        headers: format!("{head}\r\n"),
        body: body.to_owned(),
    }
}

/// The value of the one sample line that starts with `series ` in `scrape`.
fn value(scrape: &str, series: &str) -> f64 {
    let prefix = format!("{series} ");
    let lines: Vec<&str> = scrape.lines().filter(|l| l.starts_with(&prefix)).collect();
    assert_eq!(lines.len(), 1, "{series} in\n{scrape}");
    lines[0][prefix.len()..].parse().unwrap()
}

#[test]
fn scrape_counts_what_the_dispatcher_did() {
    let m = metrics();
    let server = serve("127.0.0.1:0", m.clone(), Health::default()).unwrap();
    let addr = server.local_addr();

    let fresh = get(addr, "GET", "/metrics");
    assert_eq!(fresh.status, 200);
    assert!(
        fresh.headers.contains(
            "Content-Type: text/plain; version=0.0.4; charset=utf-8; escaping=underscores\r\n"
        ),
        "{}",
        fresh.headers
    );
    assert!(fresh.headers.contains("Connection: close\r\n"));
    assert_eq!(fresh.body, m.render());
    assert!(!fresh.body.contains("oz_worker_task_duration_seconds"));
    assert_eq!(
        value(
            &fresh.body,
            &format!("oz_worker_tasks_rejected_total{{{SCOPE},reason=\"at_capacity\"}}")
        ),
        0.0
    );

    let outbox = Outbox::new();
    let d = Dispatcher::start_observed(
        DispatchSettings {
            worker_id: "itest".into(),
            max_concurrent_tasks: 2,
            task_timeout: None,
            max_in_flight_bytes: 0,
        },
        outbox,
        Arc::new(ByImage),
        Arc::new(m.clone()),
    );
    m.set_connected(true);
    m.reconnect(ReconnectReason::DialFailed);
    d.handle(assignment("ok", "ok"));
    d.handle(assignment("oom", "oom"));
    assert!(d.wait_idle(Duration::from_secs(10)));
    d.handle(assignment("slow-1", "slow"));
    d.handle(assignment("slow-2", "slow"));
    d.handle(assignment("extra", "ok")); // both slots busy: rejected
    assert_eq!(
        value(
            &get(addr, "GET", "/metrics").body,
            &format!("oz_worker_tasks_active{{{SCOPE}}}")
        ),
        2.0
    );
    d.handle(Inbound::Cancellation {
        task_id: "slow-1".into(),
    });
    d.handle(Inbound::Cancellation {
        task_id: "slow-2".into(),
    });
    assert!(d.wait_idle(Duration::from_secs(10)));

    let scrape = get(addr, "GET", "/metrics").body;
    let v = |series: &str| value(&scrape, series);
    assert_eq!(v(&format!("oz_worker_connected{{{SCOPE}}}")), 1.0);
    assert_eq!(v(&format!("oz_worker_tasks_claimed_total{{{SCOPE}}}")), 4.0);
    assert_eq!(v(&format!("oz_worker_tasks_active{{{SCOPE}}}")), 0.0);
    assert_eq!(
        v(&format!("oz_worker_tasks_max_concurrent{{{SCOPE}}}")),
        2.0
    );
    assert_eq!(
        v(&format!(
            "oz_worker_tasks_rejected_total{{{SCOPE},reason=\"at_capacity\"}}"
        )),
        1.0
    );
    for (result, n) in [
        ("succeeded", 1.0),
        ("failed", 1.0),
        ("cancelled", 2.0),
        ("dispatched", 0.0),
    ] {
        assert_eq!(
            v(&format!(
                "oz_worker_tasks_completed_total{{{SCOPE},result=\"{result}\"}}"
            )),
            n,
            "{result}"
        );
    }
    assert_eq!(
        v(&format!(
            "oz_worker_task_failures_total{{{SCOPE},phase=\"backend\",reason=\"container_oom\"}}"
        )),
        1.0
    );
    assert_eq!(
        v(&format!(
            "oz_worker_task_duration_seconds_count{{{SCOPE},result=\"cancelled\"}}"
        )),
        2.0
    );
    assert_eq!(
        v(&format!(
            "oz_worker_task_duration_seconds_bucket{{{SCOPE},result=\"cancelled\",le=\"+Inf\"}}"
        )),
        2.0
    );
    assert_eq!(
        v(&format!(
            "oz_worker_websocket_reconnects_total{{{SCOPE},reason=\"dial_failed\"}}"
        )),
        1.0
    );
    assert_eq!(
        v(
            "oz_worker_info{backend=\"docker\",otel_scope_name=\"github.com/warpdotdev/oz-agent-worker\",otel_scope_schema_url=\"\",otel_scope_version=\"\",version=\"9.9.9\",worker_id=\"itest\"}"
        ),
        1.0
    );
    server.stop();
    assert!(
        TcpStream::connect(addr).is_err(),
        "still listening after stop"
    );
}

#[test]
fn healthz_and_readyz_follow_health() {
    let health = Health::default();
    let server = serve("127.0.0.1:0", metrics(), health.clone()).unwrap();
    let addr = server.local_addr();

    let r = get(addr, "GET", "/healthz");
    assert_eq!((r.status, r.body.as_str()), (200, "ok\n"));

    let r = get(addr, "GET", "/readyz");
    assert_eq!((r.status, r.body.as_str()), (503, "not connected to Oz\n"));
    health.set_connected(true);
    let r = get(addr, "GET", "/readyz");
    assert_eq!(
        (r.status, r.body.as_str()),
        (503, "Docker has not answered a ping in 60s\n")
    );
    health.docker_ok();
    let r = get(addr, "GET", "/readyz");
    assert_eq!((r.status, r.body.as_str()), (200, "ready\n"));
    health.set_connected(false);
    let r = get(addr, "GET", "/readyz");
    assert_eq!((r.status, r.body.as_str()), (503, "not connected to Oz\n"));

    let r = get(addr, "GET", "/nope");
    assert_eq!(r.status, 404);
    let r = get(addr, "HEAD", "/healthz");
    assert_eq!((r.status, r.body.as_str()), (200, ""));
    assert!(r.headers.contains("Content-Length: 3\r\n"));
    let r = get(addr, "DELETE", "/metrics");
    assert_eq!(r.status, 405);
}

#[test]
fn garbage_gets_400_and_the_server_keeps_serving() {
    let server = serve("127.0.0.1:0", metrics(), Health::default()).unwrap();
    let addr = server.local_addr();
    let mut s = TcpStream::connect(addr).unwrap();
    s.write_all(b"\x16\x03\x01\x02\x00\r\n\r\n").unwrap();
    let mut raw = String::new();
    s.read_to_string(&mut raw).unwrap();
    assert!(raw.starts_with("HTTP/1.1 400 Bad Request\r\n"), "{raw}");
    // A client that connects and hangs up without a word changes nothing.
    drop(TcpStream::connect(addr).unwrap());
    assert_eq!(get(addr, "GET", "/healthz").status, 200);
}

#[test]
fn env_config_binds_where_it_says() {
    let env = |k: &str| match k {
        "OTEL_METRICS_EXPORTER" => Some("prometheus".to_owned()),
        "OTEL_EXPORTER_PROMETHEUS_HOST" => Some("127.0.0.1".to_owned()),
        "OTEL_EXPORTER_PROMETHEUS_PORT" => Some("0".to_owned()),
        _ => None,
    };
    let addr = config_from_env(&env).unwrap().unwrap();
    let server = serve(addr.to_string().as_str(), metrics(), Health::default()).unwrap();
    assert_eq!(server.local_addr().ip().to_string(), "127.0.0.1");
    assert_ne!(server.local_addr().port(), 0);
    assert_eq!(get(server.local_addr(), "GET", "/healthz").status, 200);
}

/// A client that sends a request head one byte at a time, every `every`,
/// never finishing it, until `stop`; it reconnects when the server drops it.
fn trickle(
    addr: SocketAddr,
    every: Duration,
    started: std::sync::mpsc::Sender<()>,
    stop: Arc<std::sync::atomic::AtomicBool>,
) -> std::thread::JoinHandle<usize> {
    std::thread::spawn(move || {
        let mut sent = 0;
        let mut started = Some(started);
        while !stop.load(std::sync::atomic::Ordering::SeqCst) {
            let Ok(mut s) = TcpStream::connect(addr) else {
                continue;
            };
            for b in b"GET /metrics HTTP/1.1\r\nX-Slow: "
                .iter()
                .chain(std::iter::repeat(&b'a'))
            {
                if stop.load(std::sync::atomic::Ordering::SeqCst) || s.write_all(&[*b]).is_err() {
                    break;
                }
                sent += 1;
                if let Some(tx) = started.take() {
                    let _ = tx.send(());
                }
                std::thread::sleep(every);
            }
        }
        sent
    })
}

#[test]
fn slow_and_silent_clients_delay_no_one_elses_healthz() {
    let server = serve("127.0.0.1:0", metrics(), Health::default()).unwrap();
    let addr = server.local_addr();
    let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let (tx, started) = std::sync::mpsc::channel();
    let slow: Vec<_> = (0..4)
        .map(|_| trickle(addr, Duration::from_millis(200), tx.clone(), stop.clone()))
        .collect();
    for _ in 0..4 {
        started.recv_timeout(Duration::from_secs(10)).unwrap();
    }
    // Silent ones too: connected, never a byte.
    let _silent: Vec<TcpStream> = (0..4).map(|_| TcpStream::connect(addr).unwrap()).collect();
    // One serial server would sit on the first slow client (each byte
    // arrives well within a per-read timeout) and never answer these.
    for _ in 0..30 {
        let mut s = TcpStream::connect(addr).unwrap();
        s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
        s.write_all(b"GET /healthz HTTP/1.1\r\nHost: t\r\n\r\n")
            .unwrap();
        let mut raw = String::new();
        s.read_to_string(&mut raw)
            .expect("/healthz answered within 5 s while slow clients are connected");
        assert!(raw.starts_with("HTTP/1.1 200 OK\r\n"), "{raw}");
        assert!(raw.ends_with("\r\n\r\nok\n"), "{raw}");
    }
    stop.store(true, std::sync::atomic::Ordering::SeqCst);
    for t in slow {
        assert!(t.join().unwrap() > 0);
    }
}
