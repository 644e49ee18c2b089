//! Talking tasks with a connected worker: assignment frames, timing one
//! task from the send to its terminal frame, and a worker session (server +
//! process, connected) with an orderly shutdown.

use std::time::{Duration, Instant};

use serde_json::{Value, json};

use crate::error::{BenchError, Result};
use crate::server::BenchServer;
use crate::worker::WorkerProc;

/// How long any single task may take before the bench gives up.
pub const TASK_TIMEOUT: Duration = Duration::from_secs(300);

/// A `task_assignment` frame for the stub agent: `image` with `sidecar` at
/// /agent, `extra_sidecar` (if any) at /mnt/extra, `env` as env_vars.
pub fn assignment(
    id: &str,
    image: &str,
    sidecar: &str,
    extra_sidecar: Option<&str>,
    env: Value,
) -> Value {
    let mut data = json!({
        "task_id": id,
        "execution_id": format!("x-{id}"),
        "task": {"id": id, "title": "oz-bench", "owner": {"Type": "TEAM", "Id": 1}},
        "docker_image": image,
        "sidecar_image": sidecar,
        "env_vars": env,
    });
    if let Some(extra) = extra_sidecar {
        data["additional_sidecars"] = json!([{"image": extra, "mount_path": "/mnt/extra"}]);
    }
    json!({"type": "task_assignment", "data": data})
}

/// The frame's type and task id, when it has both.
pub fn kind_and_task(frame: &Value) -> Option<(&str, &str)> {
    Some((frame["type"].as_str()?, frame["data"]["task_id"].as_str()?))
}

/// Whether `kind` ends a task.
pub fn is_terminal(kind: &str) -> bool {
    kind == "task_completed" || kind == "task_failed"
}

/// A connected worker and the server it is connected to.
pub struct Session {
    /// The bench's end of the WebSocket.
    pub server: BenchServer,
    /// The worker process.
    pub worker: WorkerProc,
}

impl Session {
    /// Starts `bin` as `worker_id` with `extra` flags and waits until it is connected.
    pub fn connect(bin: &str, worker_id: &str, extra: &[&str]) -> Result<Self> {
        let mut server = BenchServer::bind()?;
        let worker = WorkerProc::start(bin, worker_id, &server.url()?, extra)?;
        server.accept(Duration::from_secs(60))?;
        worker.wait_log("connected to", 1, Duration::from_secs(30))?;
        Ok(Self { server, worker })
    }

    /// Sends `frame` (an assignment for `id`) and returns the ms from the
    /// send to its terminal frame, and that frame.
    pub fn run_task(&mut self, id: &str, frame: &Value) -> Result<(f64, Value)> {
        let sent = self.server.send(frame)?;
        let deadline = sent + TASK_TIMEOUT;
        loop {
            let Some((at, v)) = self.server.recv(deadline)? else {
                return Err(BenchError::Timeout {
                    what: format!("task {id} to end"),
                });
            };
            match kind_and_task(&v) {
                Some((kind, task)) if task == id && is_terminal(kind) => {
                    return Ok((ms(at - sent), v));
                }
                Some(("task_rejected", task)) if task == id => {
                    return Err(BenchError::Unexpected {
                        what: format!("task {id} rejected: {v}"),
                    });
                }
                _ => {}
            }
        }
    }

    /// Like [`Self::run_task`] for the stub agent, failing unless it completed.
    pub fn run_ok(&mut self, id: &str, frame: &Value) -> Result<f64> {
        let (took, end) = self.run_task(id, frame)?;
        if end["type"] != "task_completed" {
            return Err(BenchError::Unexpected {
                what: format!("task {id} did not complete: {end}"),
            });
        }
        Ok(took)
    }

    /// Reads frames (answering pings) until the worker logged `needle`
    /// `count` times.
    pub fn pump_until_logged(
        &mut self,
        needle: &str,
        count: usize,
        timeout: Duration,
    ) -> Result<()> {
        let deadline = Instant::now() + timeout;
        while self.worker.log_count(needle) < count {
            if Instant::now() >= deadline {
                return self.worker.wait_log(needle, count, Duration::ZERO);
            }
            // Short reads: log lines have no socket to wait on, frames do.
            self.server
                .idle_until((Instant::now() + Duration::from_millis(50)).min(deadline))?;
        }
        Ok(())
    }

    /// SIGTERM, read until the worker closes, wait for its exit.
    pub fn shutdown(mut self) -> Result<()> {
        self.worker.sigterm();
        let deadline = Instant::now() + Duration::from_secs(60);
        while let Ok(Some(_)) = self.server.recv(deadline) {}
        self.server.hang_up();
        self.worker.wait_exit(Duration::from_secs(30))
    }
}

/// A duration in milliseconds.
pub fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn builds_assignments_with_and_without_an_extra_sidecar() {
        let a = assignment("t1", "img", "sc", None, json!({"K": "V"}));
        assert_eq!(
            a,
            json!({"type": "task_assignment", "data": {
                "task_id": "t1", "execution_id": "x-t1",
                "task": {"id": "t1", "title": "oz-bench", "owner": {"Type": "TEAM", "Id": 1}},
                "docker_image": "img", "sidecar_image": "sc", "env_vars": {"K": "V"}}})
        );
        let b = assignment("t2", "img", "sc", Some("sc2"), json!({}));
        assert_eq!(
            b["data"]["additional_sidecars"],
            json!([{"image": "sc2", "mount_path": "/mnt/extra"}])
        );
    }

    #[test]
    fn classifies_frames() {
        let f = json!({"type": "task_failed", "data": {"task_id": "t"}});
        assert_eq!(kind_and_task(&f), Some(("task_failed", "t")));
        assert_eq!(kind_and_task(&json!({"type": "x"})), None);
        assert!(is_terminal("task_completed"));
        assert!(!is_terminal("task_claimed"));
    }
}
