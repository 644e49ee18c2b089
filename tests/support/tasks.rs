//! Orchestrator-side helpers shared by the fault and secret tests: sending
//! an assignment that runs the stub agent, picking frames out of what the
//! stand-in received, and the worker command line every real-process test
//! starts from.

use oz_standin::Orchestrator;
use serde_json::{Value, json};

use super::{BUSYBOX, Fixture};

/// Sends a `task_assignment` for `id` running `image` with the stub agent
/// from `sidecar`; `env` is added to `OZ_TEST_OUT=/out`. False when no
/// worker is connected.
pub fn send_assignment(
    orch: &Orchestrator,
    id: &str,
    image: &str,
    sidecar: &str,
    env: Value,
) -> bool {
    let mut env_vars = json!({"OZ_TEST_OUT": "/out"});
    if let (Value::Object(base), Value::Object(extra)) = (&mut env_vars, env) {
        base.extend(extra);
    }
    orch.send(&json!({"type": "task_assignment", "data": {
        "task_id": id, "execution_id": format!("e-{id}"),
        "task": {"id": id, "title": "fault test", "owner": {"Type": "USER", "Id": 7}},
        "docker_image": image, "sidecar_image": sidecar, "env_vars": env_vars}}))
}

/// [`send_assignment`] with busybox, asserting a worker is connected.
pub fn assign(orch: &Orchestrator, id: &str, sidecar: &str, env: Value) {
    assert!(
        send_assignment(orch, id, BUSYBOX, sidecar, env),
        "no worker connected to take {id}"
    );
}

/// `env_vars` for the stub agent to wait until the test calls
/// [`super::Fixture::release`] for `id`, then exit `exit`.
pub fn held(id: &str, exit: usize) -> Value {
    json!({"OZ_TEST_UNTIL": format!("/out/release-{id}"), "OZ_TEST_EXIT": exit.to_string()})
}

/// Whether `f` is a terminal message (`task_completed` / `task_failed`).
pub fn is_terminal(f: &Value) -> bool {
    f["type"] == "task_completed" || f["type"] == "task_failed"
}

/// The terminal messages of task `id`.
pub fn terminal<'a>(frames: &'a [Value], id: &str) -> Vec<&'a Value> {
    frames
        .iter()
        .filter(|f| is_terminal(f) && f["data"]["task_id"] == id)
        .collect()
}

/// How many frames of `kind` concern task `id`.
pub fn count(frames: &[Value], kind: &str, id: &str) -> usize {
    frames
        .iter()
        .filter(|f| f["type"] == kind && f["data"]["task_id"] == id)
        .count()
}

/// `--worker-id <fixture's> --web-socket-url <url> --image-pull-policy
/// IfNotPresent --stop-grace 2s -v <out>:/out`, plus `extra`.
pub fn worker_args(fx: &Fixture, url: &str, extra: &[&str]) -> Vec<String> {
    let mut args: Vec<String> = [
        "--worker-id",
        &fx.worker_id,
        "--web-socket-url",
        url,
        "--image-pull-policy",
        "IfNotPresent",
        "--stop-grace",
        "2s",
        "-v",
        &format!("{}:/out", fx.out.display()),
    ]
    .iter()
    .map(|s| s.to_string())
    .collect();
    args.extend(extra.iter().map(|s| s.to_string()));
    args
}

/// `&[String]` as `Vec<&str>`, for [`super::process::WorkerProcess::start`].
pub fn strs(args: &[String]) -> Vec<&str> {
    args.iter().map(String::as_str).collect()
}
