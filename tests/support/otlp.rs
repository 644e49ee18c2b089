//! A real OTLP/HTTP receiver for the telemetry tests: `tests/otlp/receiver.py`,
//! which decodes with the `opentelemetry-proto` package and Google's protobuf
//! runtime (installed by `.ci/setup-host`), never with the worker's code.
//! Each request it got is one JSON value; the process is killed on drop.

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Condvar, Mutex};
use std::time::{Duration, Instant};

use serde_json::Value;

#[derive(Default)]
struct Seen {
    requests: Mutex<Vec<(Instant, Value)>>,
    changed: Condvar,
}

/// The running receiver.
pub struct Receiver {
    child: Child,
    port: u16,
    seen: Arc<Seen>,
}

/// The interpreter with the OTLP packages: `OZ_TEST_PYTHON`, else the
/// virtualenv `.ci/setup-host` makes, else `python3`.
pub fn python() -> String {
    if let Ok(p) = std::env::var("OZ_TEST_PYTHON") {
        return p;
    }
    let venv = "/opt/oz-ci/otlp-venv/bin/python3";
    if std::path::Path::new(venv).exists() {
        return venv.into();
    }
    "python3".into()
}

impl Receiver {
    /// Starts it with `args` (`--status 503`, `--hang`, `--echo`).
    pub fn start(args: &[&str]) -> Receiver {
        let script = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/otlp/receiver.py");
        let mut child = Command::new(python())
            .arg(script)
            .args(args)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("start the OTLP receiver (python3 with opentelemetry-proto: .ci/setup-host)");
        let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
        let first = lines.next().and_then(Result::ok).unwrap_or_default();
        let port = first
            .strip_prefix("PORT ")
            .and_then(|p| p.trim().parse().ok())
            .unwrap_or_else(|| panic!("the OTLP receiver did not start: {first:?}"));
        let seen = Arc::new(Seen::default());
        let sink = seen.clone();
        std::thread::spawn(move || {
            for line in lines {
                let Ok(line) = line else { break };
                let v: Value = serde_json::from_str(&line).expect("receiver output is JSON");
                sink.requests.lock().unwrap().push((Instant::now(), v));
                sink.changed.notify_all();
            }
        });
        Receiver { child, port, seen }
    }

    /// `http://127.0.0.1:PORT`.
    pub fn base(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    /// Every request so far.
    pub fn requests(&self) -> Vec<Value> {
        self.seen
            .requests
            .lock()
            .unwrap()
            .iter()
            .map(|(_, v)| v.clone())
            .collect()
    }

    /// Waits until `pred` holds for the requests received after `since`;
    /// returns them (whatever they are at the timeout).
    pub fn wait_after(
        &self,
        since: Instant,
        pred: impl Fn(&[Value]) -> bool,
        timeout: Duration,
    ) -> Vec<Value> {
        let deadline = Instant::now() + timeout;
        let mut seen = self.seen.requests.lock().unwrap();
        loop {
            let after: Vec<Value> = seen
                .iter()
                .filter(|(t, _)| *t > since)
                .map(|(_, v)| v.clone())
                .collect();
            let now = Instant::now();
            if pred(&after) || now >= deadline {
                return after;
            }
            seen = self
                .seen
                .changed
                .wait_timeout(seen, deadline - now)
                .unwrap()
                .0;
        }
    }
}

impl Drop for Receiver {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
