//! Hostile ids against the real worker binary, the real daemon and the
//! stand-in orchestrator: every control character in `task_id` and
//! `execution_id`, at unlimited concurrency and with a pool, and megabyte
//! ids. Each bad assignment is answered `task_failed` naming the field with
//! one escaped log line, nothing is created with it, the connection stays
//! up, the next task runs, the reaper keeps working, and after a SIGKILL
//! the successor starts and runs tasks.

mod support;

use std::time::Duration;

use oz_standin::{Options, Orchestrator};
use serde_json::{Value, json};
use support::Fixture;
use support::process::WorkerProcess;
use support::tasks::{count, strs, terminal, worker_args};

const WAIT: Duration = Duration::from_secs(60);
const KEY: &str = "oz-api-key-hostile-ids-3b9d";

fn start(fx: &Fixture, orch: &Orchestrator, extra: &[&str]) -> WorkerProcess {
    let args = worker_args(fx, &orch.url(), extra);
    let worker = WorkerProcess::start(&strs(&args), &[("WARP_API_KEY", KEY)]);
    assert!(orch.wait_until(|r| r.connected, WAIT), "{}", worker.text());
    worker
}

fn assignment(task_id: &str, execution_id: &str, sidecar: &str) -> Value {
    json!({"type": "task_assignment", "data": {
        "task_id": task_id, "execution_id": execution_id,
        "task": {"id": task_id, "title": "ids"},
        "docker_image": support::BUSYBOX, "sidecar_image": sidecar,
        "env_vars": {"OZ_TEST_OUT": "/out"}}})
}

/// Every control character the door refuses: C0 (NUL included), DEL, a C1
/// control and the line separator.
fn controls() -> Vec<char> {
    (0u32..0x20)
        .chain([0x7f, 0x85, 0x2028])
        .map(|c| char::from_u32(c).unwrap())
        .collect()
}

fn problem(field: &str, c: char) -> String {
    format!(
        "Failed to execute task: invalid task assignment: {field} holds a control character (U+{:04X}), which is not accepted",
        c as u32
    )
}

/// Sends one assignment per control character in `task_id` and one in
/// `execution_id`, then a good task; checks every answer and the log.
fn control_characters_case(extra: &[&str], tag: &str) {
    let mut fx = Fixture::new(tag);
    let sidecar = fx.sidecar(tag);
    let orch = Orchestrator::start(Options::default());
    let mut worker = start(&fx, &orch, extra);
    let mut expected: Vec<(String, String)> = Vec::new();
    for (n, c) in controls().into_iter().enumerate() {
        let bad_task = format!("bad{c}task-{n}");
        assert!(orch.send(&assignment(&bad_task, "e", &sidecar)));
        expected.push((bad_task, problem("task_id", c)));
        let good_id = format!("bad-exec-{n}");
        assert!(orch.send(&assignment(&good_id, &format!("e{c}x"), &sidecar)));
        expected.push((good_id, problem("execution_id", c)));
    }
    // A cancellation for a bad id: logged and dropped.
    assert!(orch.send(&json!({"type": "task_cancellation", "data": {"task_id": "x\u{0}y"}})));
    assert!(orch.send(&assignment("good-after", "e-good", &sidecar)));
    let frames = orch.wait_for(
        |f| {
            expected.iter().all(|(id, _)| !terminal(f, id).is_empty())
                && !terminal(f, "good-after").is_empty()
        },
        WAIT,
    );
    for (id, message) in &expected {
        let t = terminal(&frames, id);
        assert_eq!(t.len(), 1, "{id:?}: {frames:?}\n{}", worker.text());
        assert_eq!(
            t[0],
            &json!({"type": "task_failed", "data": {"task_id": id,
                "failure_reason": "unknown", "message": message}}),
        );
        assert_eq!(count(&frames, "task_claimed", id), 0, "{id:?}");
    }
    assert_eq!(
        terminal(&frames, "good-after")[0]["type"],
        "task_completed",
        "{}",
        worker.text()
    );
    assert_eq!(orch.handshakes().len(), 1, "the connection was dropped");
    // One escaped ERROR line per bad assignment, and nothing but records.
    let errors: Vec<String> = worker
        .lines()
        .into_iter()
        .filter(|l| l.contains(" ERROR "))
        .collect();
    assert_eq!(errors.len(), expected.len() + 1, "{}", errors.join("\n"));
    assert!(
        errors
            .iter()
            .any(|l| l.ends_with("ERROR task bad\\u{0}task-0: invalid task assignment: task_id holds a control character (U+0000), which is not accepted")),
        "{errors:#?}"
    );
    assert!(
        errors.iter().any(|l| l.ends_with(
            "ERROR ignoring a frame: malformed message from the orchestrator: task_cancellation: task_id holds a control character (U+0000), which is not accepted"
        )),
        "{errors:#?}"
    );
    for line in worker.lines() {
        assert!(
            !line.contains(['\0', '\u{1b}', '\r', '\u{2028}']),
            "an unescaped control character: {line:?}"
        );
    }
    assert!(!worker.text().contains("panicked"), "{}", worker.text());

    // SIGKILL and restart: the successor starts and runs tasks. (Once the
    // first worker removed what it reported: a kill before that leaves the
    // container for the successor to report again after a ttl, which the
    // fault tests cover.)
    fx.wait_no_containers(WAIT);
    worker.signal(libc::SIGKILL);
    worker.wait_exit(WAIT).expect("killed");
    let mut successor = start(&fx, &orch, extra);
    // The successor's own connection, not the dead one the stand-in may
    // not have noticed yet.
    assert!(
        orch.wait_until(|r| r.connected && r.handshakes.len() == 2, WAIT),
        "{}",
        successor.text()
    );
    assert!(orch.send(&assignment("after-restart", "e-r", &sidecar)));
    let frames = orch.wait_for(|f| !terminal(f, "after-restart").is_empty(), WAIT);
    assert_eq!(
        terminal(&frames, "after-restart")[0]["type"],
        "task_completed",
        "{}",
        successor.text()
    );
    successor.signal(libc::SIGTERM);
    assert_eq!(successor.wait_exit(WAIT).and_then(|s| s.code()), Some(0));
    fx.wait_no_containers(WAIT);
}

#[test]
fn control_characters_in_ids_are_answered_at_unlimited_concurrency() {
    control_characters_case(&[], "ids-unlimited");
}

#[test]
fn control_characters_in_ids_are_answered_with_a_pool() {
    control_characters_case(&["--max-concurrent-tasks", "2"], "ids-pool");
}

#[test]
fn megabyte_ids_are_answered_nothing_is_made_and_the_reaper_keeps_working() {
    let mut fx = Fixture::new("ids-huge");
    let sidecar = fx.sidecar("ids-huge");
    let orch = Orchestrator::start(Options::default());
    let mut worker = start(
        &fx,
        &orch,
        &["--log-level", "debug", "--reap-interval", "1s"],
    );
    let huge_task = "t".repeat(1 << 20);
    let huge_exec = "e".repeat(1 << 20);
    assert!(orch.send(&assignment(&huge_task, &huge_exec, &sidecar)));
    assert!(orch.send(&assignment("huge-exec", &huge_exec, &sidecar)));
    let frames = orch.wait_for(
        |f| !terminal(f, &huge_task).is_empty() && !terminal(f, "huge-exec").is_empty(),
        WAIT,
    );
    assert_eq!(
        terminal(&frames, &huge_task)[0]["data"]["message"],
        "Failed to execute task: invalid task assignment: task_id is 1048576 bytes long; at most 256 are accepted"
    );
    assert_eq!(
        terminal(&frames, "huge-exec")[0]["data"]["message"],
        "Failed to execute task: invalid task assignment: execution_id is 1048576 bytes long; at most 256 are accepted"
    );
    // Nothing made with them: no container, no volume of this worker.
    assert_eq!(fx.leftovers(), (vec![], vec![]));
    // The next task runs, and reaper passes go on succeeding after it.
    assert!(orch.send(&assignment("after-huge", "e-after", &sidecar)));
    let frames = orch.wait_for(|f| !terminal(f, "after-huge").is_empty(), WAIT);
    assert_eq!(
        terminal(&frames, "after-huge")[0]["type"],
        "task_completed",
        "{}",
        worker.text()
    );
    let passes_before = worker
        .lines()
        .iter()
        .filter(|l| l.contains("reaper pass: adopted"))
        .count();
    assert!(
        worker.wait_count("reaper pass: adopted", passes_before + 2, WAIT),
        "{}",
        worker.text()
    );
    worker.signal(libc::SIGTERM);
    assert_eq!(worker.wait_exit(WAIT).and_then(|s| s.code()), Some(0));
    let text = worker.text();
    assert!(!text.contains(" reaper: "), "{text}");
    for line in worker.lines() {
        assert!(line.len() < 9000, "{} bytes in one line", line.len());
    }
    assert_eq!(orch.handshakes().len(), 1);
    fx.wait_no_containers(WAIT);
}

#[test]
fn json_log_lines_stay_bounded_whatever_the_ids() {
    let mut fx = Fixture::new("ids-json");
    let sidecar = fx.sidecar("ids-json");
    let orch = Orchestrator::start(Options::default());
    let mut worker = start(
        &fx,
        &orch,
        &["--log-format", "json", "--log-level", "debug"],
    );
    let huge = "h".repeat(1 << 20);
    let nul = "n\u{0}ul";
    assert!(orch.send(&assignment(&huge, "e", &sidecar)));
    assert!(orch.send(&assignment(nul, "e", &sidecar)));
    assert!(orch.send(&json!({"type": "task_cancellation", "data": {"task_id": huge}})));
    assert!(orch.send(&assignment("json-ok", "e-ok", &sidecar)));
    let frames = orch.wait_for(
        |f| {
            [huge.as_str(), nul, "json-ok"]
                .iter()
                .all(|id| !terminal(f, id).is_empty())
        },
        WAIT,
    );
    assert_eq!(terminal(&frames, "json-ok")[0]["type"], "task_completed");
    worker.signal(libc::SIGTERM);
    assert_eq!(worker.wait_exit(WAIT).and_then(|s| s.code()), Some(0));
    for line in worker.lines() {
        assert!(line.len() < 9000, "{} bytes in one line", line.len());
        let v: Value =
            serde_json::from_str(&line).unwrap_or_else(|e| panic!("not JSON ({e}): {line}"));
        if let Some(id) = v["task_id"].as_str() {
            assert!(
                id.len() <= 256 && !id.contains('\0'),
                "task_id field {id:?}"
            );
        }
    }
    fx.wait_no_containers(WAIT);
}
