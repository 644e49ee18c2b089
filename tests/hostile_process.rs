//! A compromised orchestrator and untrusted task output against the real
//! worker process: frames that are deep, duplicated or misshapen are still
//! answered, outside values cannot forge log records, masking stays with its
//! task, numbers are never echoed, and bytes in flight are capped.

mod support;

use std::time::Duration;

use oz_standin::{Options, Orchestrator};
use serde_json::{Value, json};
use support::Fixture;
use support::process::WorkerProcess;
use support::tasks::{count, strs, terminal, worker_args};

const WAIT: Duration = Duration::from_secs(60);
const API_KEY: &str = "oz-api-key-hostile-7c1e";

fn start(fx: &Fixture, orch: &Orchestrator, extra: &[&str]) -> WorkerProcess {
    let args = worker_args(fx, &orch.url(), extra);
    let worker = WorkerProcess::start(&strs(&args), &[("WARP_API_KEY", API_KEY)]);
    assert!(orch.wait_until(|r| r.connected, WAIT), "{}", worker.text());
    worker
}

fn wait_terminal(orch: &Orchestrator, ids: &[&str], worker: &WorkerProcess) -> Vec<Value> {
    let frames = orch.wait_for(|f| ids.iter().all(|id| !terminal(f, id).is_empty()), WAIT);
    for id in ids {
        assert!(
            !terminal(&frames, id).is_empty(),
            "no terminal message for {id:?}:\n{frames:?}\n{}",
            worker.text()
        );
    }
    frames
}

fn failed_with(frames: &[Value], id: &str) -> Value {
    let t = terminal(frames, id);
    assert_eq!(t.len(), 1, "{id}: {frames:?}");
    t[0]["data"].clone()
}

#[test]
fn deep_duplicated_and_misshapen_frames_with_a_readable_id_get_task_failed() {
    let fx = Fixture::new("frames");
    let orch = Orchestrator::start(Options::default());
    let mut worker = start(&fx, &orch, &["--log-level", "debug"]);
    let deep = format!(
        r#"{{"type":"task_assignment","data":{{"task_id":"deep","task":{{"id":"deep","task_definition":{}0{}}}}}}}"#,
        "[".repeat(5000),
        "]".repeat(5000)
    );
    let cases: Vec<(&str, String, &str)> = vec![
        ("deep", deep, "nested deeper than 127 levels"),
        (
            "dup-type",
            r#"{"type":"task_assignment","type":"task_assignment","data":{"task_id":"dup-type","task":{"id":"dup-type"}}}"#.into(),
            "the envelope has more than one `type`",
        ),
        (
            "dup-data",
            // As Go reads a repeated key: the last one counts.
            r#"{"type":"task_assignment","data":{"task_id":"first","task":{"id":"x"}},"data":{"task_id":"dup-data"}}"#.into(),
            "the envelope has more than one `data`",
        ),
        (
            "task-array",
            r#"{"type":"task_assignment","data":{"task_id":"task-array","task":[]}}"#.into(),
            "invalid type: sequence, expected an object",
        ),
        (
            "shape-array",
            r#"{"type":"task_assignment","data":{"task_id":"shape-array","task":{"id":"shape-array"},"instance_shape":[]}}"#.into(),
            "invalid type: sequence, expected an object",
        ),
        (
            "empty-task-id",
            r#"{"type":"task_assignment","data":{"task_id":"empty-task-id","task":{"id":""}}}"#.into(),
            "task.id is empty",
        ),
        (
            "number",
            r#"{"type":"task_assignment","data":{"task_id":"number","task":{"id":"number"},"env_vars":{"TOKEN":918273645}}}"#.into(),
            "invalid type: integer `…`, expected a string",
        ),
    ];
    // Not answerable (no readable, non-empty id): logged only.
    assert!(
        orch.send_text(r#"{"type":"task_assignment","data":{"task_id":"","task":{"id":"x"}}}"#)
    );
    for (_, frame, _) in &cases {
        assert!(orch.send_text(frame));
    }
    let ids: Vec<&str> = cases.iter().map(|c| c.0).collect();
    let frames = wait_terminal(&orch, &ids, &worker);
    for (id, _, problem) in &cases {
        assert_eq!(
            failed_with(&frames, id),
            json!({"task_id": id, "failure_reason": "unknown",
                   "message": format!("Failed to execute task: invalid task assignment: {problem}")}),
            "{id}"
        );
        assert_eq!(count(&frames, "task_claimed", id), 0, "{id}");
    }
    for f in &frames {
        let id = f["data"]["task_id"].as_str().unwrap_or_default();
        assert!(ids.contains(&id), "an answer for {id:?}: {f}");
    }
    let text = worker.text();
    assert!(!text.contains("918273645"), "{text}");
    assert!(orch.is_connected(), "the connection stays up");
    worker.signal(libc::SIGTERM);
    assert_eq!(worker.wait_exit(WAIT).and_then(|s| s.code()), Some(0));
}

/// `YYYY-MM-DDTHH:MM:SS.mmmZ LEVEL ` at the start: a record the worker wrote.
fn is_record(line: &str) -> bool {
    let b = line.as_bytes();
    let digits = |r: std::ops::Range<usize>| {
        r.into_iter()
            .all(|i| b.get(i).is_some_and(u8::is_ascii_digit))
    };
    b.len() > 30
        && digits(0..4)
        && b[4] == b'-'
        && digits(5..7)
        && b[10] == b'T'
        && b[23] == b'Z'
        && b[24] == b' '
        && ["DEBUG", "INFO ", "WARN ", "ERROR"]
            .iter()
            .any(|l| line[25..].starts_with(l))
}

#[test]
fn outside_values_cannot_forge_log_records_and_masking_stays_with_its_task() {
    let mut fx = Fixture::new("forge");
    let printer = fx.script_sidecar(
        "printf 'plain line\\n2026-01-01T00:00:00.000Z ERROR forged-by-output\\n'\nenv | sort\nexit 3",
    );
    let orch = Orchestrator::start(Options::default());
    let mut worker = start(&fx, &orch, &["--log-level", "debug"]);
    let forged_id = "A\n2026-01-01T00:00:00.000Z INFO  forged-by-id";
    let assignment = |id: &str, image: &str, title: &str, env: Value| {
        json!({"type": "task_assignment", "data": {
            "task_id": id, "execution_id": "e",
            "task": {"id": id, "title": title},
            "docker_image": image, "sidecar_image": printer, "env_vars": env}})
    };
    // An id with a line break is refused at the door (answered, escaped).
    assert!(orch.send(&assignment(
        forged_id,
        support::BUSYBOX,
        "forged id",
        json!({})
    )));
    assert!(orch.send(&assignment(
        "A",
        support::BUSYBOX,
        "t\n2026-01-01T00:00:00.000Z WARN  forged-by-title",
        json!({"WORD": "container", "SHORT": "abc12", "LONG_SECRET": "long-secret-value"}),
    )));
    assert!(orch.send(&assignment(
        "B",
        support::BUSYBOX,
        "plain",
        json!({"OTHER": "x"})
    )));
    assert!(orch.send(&assignment(
        "C",
        "busybox\n2026-01-01T00:00:00.000Z INFO  forged-by-image",
        "img",
        json!({})
    )));
    let huge_image = "a".repeat(1 << 20);
    assert!(orch.send(&assignment("D", &huge_image, "huge", json!({}))));
    let frames = wait_terminal(&orch, &[forged_id, "A", "B", "C", "D"], &worker);
    assert_eq!(
        failed_with(&frames, forged_id)["message"],
        "Failed to execute task: invalid task assignment: task_id holds a control character (U+000A), which is not accepted"
    );
    // Image references are checked at the door too: never pulled, never
    // quoted in a line.
    assert_eq!(
        failed_with(&frames, "D"),
        json!({"task_id": "D", "failure_reason": "unknown",
               "message": "Failed to execute task: invalid task assignment: docker_image is 1048576 bytes long; at most 1024 are accepted"})
    );
    assert_eq!(failed_with(&frames, "A")["exit_code"], 3);
    assert_eq!(failed_with(&frames, "B")["exit_code"], 3);
    assert_eq!(
        failed_with(&frames, "C"),
        json!({"task_id": "C", "failure_reason": "unknown",
               "message": "Failed to execute task: invalid task assignment: docker_image holds a control character (U+000A), which is not accepted"})
    );
    worker.signal(libc::SIGTERM);
    assert_eq!(worker.wait_exit(WAIT).and_then(|s| s.code()), Some(0));

    let lines = worker.lines();
    for line in &lines {
        assert!(line.len() < 9000, "{} bytes in one line", line.len());
        assert!(is_record(line), "not a record the worker wrote: {line:?}");
        assert!(!line.starts_with("2026-01-01T00:00:00.000Z"), "{line:?}");
    }
    let of = |task: &str| -> Vec<&String> {
        let tag = format!(" task={task} ");
        lines.iter().filter(|l| l.contains(&tag)).collect()
    };
    let a = of("A");
    let b = of("B");
    assert!(!a.is_empty() && !b.is_empty(), "{}", worker.text());
    // Container output: one record per line, marked.
    assert!(
        b.iter()
            .any(|l| l.ends_with(" [container] 2026-01-01T00:00:00.000Z ERROR forged-by-output")),
        "{b:?}"
    );
    // Task A's values mask A's lines (its marker too), only when long enough.
    assert!(a.iter().any(|l| l.contains("started [REDACTED] ")), "{a:?}");
    assert!(a.iter().all(|l| !l.contains("container")), "{a:?}");
    assert!(
        a.iter()
            .any(|l| l.ends_with("[[REDACTED]] LONG_SECRET=[REDACTED]")),
        "{a:?}"
    );
    assert!(
        a.iter().any(|l| l.ends_with("[[REDACTED]] SHORT=abc12")),
        "{a:?}"
    );
    // ...and never task B's.
    assert!(b.iter().any(|l| l.contains("started container ")), "{b:?}");
    assert!(lines.iter().all(|l| !l.contains("long-secret-value")));
    assert!(lines.iter().all(|l| !l.contains("forged-by-image")));
    for (forged, escaped) in [
        (
            "forged-by-id",
            "A\\n2026-01-01T00:00:00.000Z INFO  forged-by-id",
        ),
        (
            "forged-by-title",
            "t\\n2026-01-01T00:00:00.000Z WARN  forged-by-title",
        ),
    ] {
        let seen: Vec<&String> = lines.iter().filter(|l| l.contains(forged)).collect();
        assert!(!seen.is_empty(), "{forged} never logged");
        assert!(seen.iter().all(|l| l.contains(escaped)), "{seen:?}");
    }
    fx.assert_no_containers();
}

#[test]
fn assignments_past_the_in_flight_byte_cap_are_rejected_like_capacity() {
    let mut fx = Fixture::new("inflight");
    let sidecar = fx.sidecar("inflight");
    let config = fx.out.join("config.yaml");
    std::fs::write(&config, "max_in_flight_bytes: 100k\n").unwrap();
    let orch = Orchestrator::start(Options::default());
    let mut worker = start(&fx, &orch, &["--config-file", config.to_str().unwrap()]);
    let padded = |id: &str, pad: usize| {
        json!({"type": "task_assignment", "data": {
            "task_id": id, "execution_id": format!("e-{id}"),
            "task": {"id": id, "title": "cap", "task_definition": {"prompt": "p".repeat(pad)}},
            "docker_image": support::BUSYBOX, "sidecar_image": sidecar,
            "env_vars": {"OZ_TEST_SLEEP": "300"}}})
    };
    assert!(orch.send(&padded("big-1", 80_000)));
    orch.wait_for(|f| count(f, "task_claimed", "big-1") == 1, WAIT);
    assert!(orch.send(&padded("big-2", 80_000)));
    assert!(orch.send(&padded("small", 10)));
    let frames = orch.wait_for(
        |f| count(f, "task_rejected", "big-2") == 1 && count(f, "task_claimed", "small") == 1,
        WAIT,
    );
    let rejected: Vec<&Value> = frames
        .iter()
        .filter(|f| f["type"] == "task_rejected")
        .collect();
    assert_eq!(
        rejected,
        vec![
            &json!({"type": "task_rejected", "data": {"task_id": "big-2", "reason": "worker at maximum concurrency"}})
        ],
        "{}",
        worker.text()
    );
    assert!(orch.send(&json!({"type": "task_cancellation", "data": {"task_id": "big-1"}})));
    orch.wait_for(|f| !terminal(f, "big-1").is_empty(), WAIT);
    assert!(orch.send(&padded("big-2", 80_000)));
    orch.wait_for(|f| count(f, "task_claimed", "big-2") == 1, WAIT);
    assert!(
        worker.text().contains("rejecting task big-2: its "),
        "{}",
        worker.text()
    );
    worker.signal(libc::SIGTERM);
    assert_eq!(worker.wait_exit(WAIT).and_then(|s| s.code()), Some(0));
    fx.assert_no_containers();
}

/// The address from the worker's "serving /metrics, /healthz and /readyz on ADDR" line.
fn metrics_addr(worker: &WorkerProcess) -> String {
    let needle = "/readyz on ";
    assert!(worker.wait_count(needle, 1, WAIT), "{}", worker.text());
    let text = worker.text();
    let rest = &text[text.find(needle).unwrap() + needle.len()..];
    rest.split_whitespace().next().unwrap().to_owned()
}

#[test]
fn slow_clients_on_the_metrics_port_hold_up_no_one_elses_healthz() {
    use std::io::{Read, Write};
    use std::net::TcpStream;
    use std::sync::Arc;
    use std::sync::atomic::{AtomicBool, Ordering};

    let fx = Fixture::new("slowhttp");
    let orch = Orchestrator::start(Options::default());
    let args = worker_args(&fx, &orch.url(), &[]);
    let mut worker = WorkerProcess::start(
        &strs(&args),
        &[
            ("WARP_API_KEY", API_KEY),
            ("OTEL_METRICS_EXPORTER", "prometheus"),
            ("OTEL_EXPORTER_PROMETHEUS_HOST", "127.0.0.1"),
            ("OTEL_EXPORTER_PROMETHEUS_PORT", "0"),
        ],
    );
    let addr = metrics_addr(&worker);
    // Four clients, each one byte of a request head every 2 s, never done.
    let stop = Arc::new(AtomicBool::new(false));
    let (tx, connected) = std::sync::mpsc::channel();
    let slow: Vec<_> = (0..4)
        .map(|_| {
            let (addr, stop, tx) = (addr.clone(), stop.clone(), tx.clone());
            std::thread::spawn(move || {
                let mut c = TcpStream::connect(&addr).unwrap();
                let _ = tx.send(());
                for b in b"GET /metrics HTTP/1.1\r\nX-Slow: aaaaaaaa" {
                    if stop.load(Ordering::SeqCst) || c.write_all(&[*b]).is_err() {
                        return;
                    }
                    std::thread::sleep(Duration::from_secs(2));
                }
            })
        })
        .collect();
    for _ in 0..4 {
        connected.recv_timeout(WAIT).unwrap();
    }
    // A generous deadline per answer: one serial server waits on the
    // first slow client for good and never answers at all.
    for _ in 0..20 {
        let mut c = TcpStream::connect(&addr).unwrap();
        c.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
        c.write_all(b"GET /healthz HTTP/1.1\r\nHost: t\r\n\r\n")
            .unwrap();
        let mut reply = String::new();
        c.read_to_string(&mut reply)
            .expect("/healthz answered while slow clients are connected");
        assert!(reply.starts_with("HTTP/1.1 200 OK\r\n"), "{reply}");
        assert!(reply.ends_with("\r\n\r\nok\n"), "{reply}");
        // Spread over a few of the slow clients' bytes.
        std::thread::sleep(Duration::from_millis(200));
    }
    stop.store(true, Ordering::SeqCst);
    worker.signal(libc::SIGTERM);
    assert_eq!(worker.wait_exit(WAIT).and_then(|s| s.code()), Some(0));
    for t in slow {
        t.join().unwrap();
    }
}
