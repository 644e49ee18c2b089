//! The worker binary as a child process, with its stderr (the log) captured
//! line by line, for tests that need the real process: signals, exit codes,
//! log content and format.

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::{Arc, Condvar, Mutex};
use std::time::{Duration, Instant};

#[derive(Default)]
struct Log {
    lines: Mutex<Vec<String>>,
    changed: Condvar,
    closed: Mutex<bool>,
}

/// A running worker process; killed (SIGKILL) on drop if still alive.
pub struct WorkerProcess {
    child: Child,
    log: Arc<Log>,
}

impl WorkerProcess {
    /// Starts `oz-agent-worker ARGS` with `env` added to a clean environment
    /// (PATH and HOME kept), stderr captured.
    pub fn start(args: &[&str], env: &[(&str, &str)]) -> WorkerProcess {
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_oz-agent-worker"));
        cmd.args(args)
            .env_clear()
            .envs(
                ["PATH", "HOME"]
                    .iter()
                    .filter_map(|k| std::env::var(k).ok().map(|v| (*k, v))),
            )
            .envs(env.iter().copied())
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped());
        let mut child = cmd.spawn().expect("start the worker binary");
        let log = Arc::new(Log::default());
        let stderr = child.stderr.take().unwrap();
        let sink = log.clone();
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines() {
                let Ok(line) = line else { break };
                sink.lines.lock().unwrap().push(line);
                sink.changed.notify_all();
            }
            *sink.closed.lock().unwrap() = true;
            let _guard = sink.lines.lock().unwrap();
            sink.changed.notify_all();
        });
        WorkerProcess { child, log }
    }

    /// Every log line so far.
    pub fn lines(&self) -> Vec<String> {
        self.log.lines.lock().unwrap().clone()
    }

    /// The whole log so far, one string.
    pub fn text(&self) -> String {
        self.lines().join("\n")
    }

    /// Waits until `pred` holds for the lines logged so far.
    pub fn wait_log(&self, pred: impl Fn(&[String]) -> bool, timeout: Duration) -> bool {
        let deadline = Instant::now() + timeout;
        let mut lines = self.log.lines.lock().unwrap();
        loop {
            if pred(&lines) {
                return true;
            }
            let now = Instant::now();
            if now >= deadline || *self.log.closed.lock().unwrap() {
                return pred(&lines);
            }
            lines = self
                .log
                .changed
                .wait_timeout(lines, deadline - now)
                .unwrap()
                .0;
        }
    }

    /// Waits until `n` lines contain `needle`.
    pub fn wait_count(&self, needle: &str, n: usize, timeout: Duration) -> bool {
        self.wait_log(
            |lines| lines.iter().filter(|l| l.contains(needle)).count() >= n,
            timeout,
        )
    }

    /// Sends `signal` (e.g. `libc::SIGTERM`).
    pub fn signal(&self, signal: i32) {
        // SAFETY: kill(2) on our own child.
        unsafe {
            libc::kill(self.child.id() as i32, signal);
        }
    }

    /// The process id.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Waits for the process to exit (its stderr closes first).
    pub fn wait_exit(&mut self, timeout: Duration) -> Option<ExitStatus> {
        self.wait_log(|_| false, timeout);
        if !*self.log.closed.lock().unwrap() {
            return None;
        }
        self.child.wait().ok()
    }
}

impl Drop for WorkerProcess {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
