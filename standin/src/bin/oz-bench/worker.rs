//! The worker under test as a child process: started with the bench's
//! flags, its log lines collected (to await events such as "started
//! container"), its memory and CPU read from /proc, and on drop killed and
//! its containers and volumes removed by its worker-id label.

use std::io::{BufRead, BufReader, Read};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Condvar, Mutex};
use std::time::{Duration, Instant};

use crate::docker;
use crate::error::{BenchError, Result, io};

/// A placeholder key: the stand-in accepts anything, and it is never logged.
const API_KEY: &str = "oz-bench-not-a-real-key";

type Log = Arc<(Mutex<Vec<String>>, Condvar)>;

/// A running worker process.
pub struct WorkerProc {
    child: Child,
    log: Log,
    /// Its `--worker-id`, which labels everything it creates.
    pub worker_id: String,
}

impl WorkerProc {
    /// Starts `bin` as `worker_id` against `url` with `extra` flags. The
    /// host's SSL_CERT_FILE/DIR are removed: the shipped image has none, and
    /// loading a full CA bundle would add its size to every RSS figure.
    pub fn start(bin: &str, worker_id: &str, url: &str, extra: &[&str]) -> Result<Self> {
        Self::start_with_env(bin, worker_id, url, extra, &[])
    }

    /// [`WorkerProc::start`] with `env` added to the worker's environment.
    pub fn start_with_env(
        bin: &str,
        worker_id: &str,
        url: &str,
        extra: &[&str],
        env: &[(&str, &str)],
    ) -> Result<Self> {
        let mut child = Command::new(bin)
            .args(["--worker-id", worker_id, "--web-socket-url", url])
            .args(["--stop-grace", "2s"])
            .args(extra)
            .envs(env.iter().copied())
            .env("WARP_API_KEY", API_KEY)
            .env_remove("SSL_CERT_FILE")
            .env_remove("SSL_CERT_DIR")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .map_err(io(format!("starting the worker {bin}")))?;
        let log: Log = Arc::default();
        if let Some(out) = child.stdout.take() {
            collect(out, Arc::clone(&log));
        }
        if let Some(err) = child.stderr.take() {
            collect(err, Arc::clone(&log));
        }
        Ok(Self {
            child,
            log,
            worker_id: worker_id.to_owned(),
        })
    }

    /// Waits until at least `count` log lines contain `needle`.
    pub fn wait_log(&self, needle: &str, count: usize, timeout: Duration) -> Result<()> {
        let deadline = Instant::now() + timeout;
        let (lines, changed) = &*self.log;
        let mut guard = lines.lock().unwrap_or_else(|e| e.into_inner());
        loop {
            if guard.iter().filter(|l| l.contains(needle)).count() >= count {
                return Ok(());
            }
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                let tail: Vec<_> = guard.iter().rev().take(5).rev().cloned().collect();
                return Err(BenchError::Timeout {
                    what: format!(
                        "{count} worker log line(s) with {needle:?}; last lines: {tail:?}"
                    ),
                });
            }
            guard = changed
                .wait_timeout(guard, left)
                .unwrap_or_else(|e| e.into_inner())
                .0;
        }
    }

    /// Reads every log line so far, also after the process is gone.
    pub fn log_handle(&self) -> impl Fn() -> Vec<String> + use<> {
        let log = Arc::clone(&self.log);
        move || log.0.lock().unwrap_or_else(|e| e.into_inner()).clone()
    }

    /// How many log lines so far contain `needle`.
    pub fn log_count(&self, needle: &str) -> usize {
        let lines = self.log.0.lock().unwrap_or_else(|e| e.into_inner());
        lines.iter().filter(|l| l.contains(needle)).count()
    }

    /// Resident memory now, in KiB (VmRSS).
    pub fn rss_kib(&self) -> Result<u64> {
        let path = format!("/proc/{}/status", self.child.id());
        let text = std::fs::read_to_string(&path).map_err(io(format!("reading {path}")))?;
        parse_vmrss(&text).ok_or_else(|| BenchError::Unexpected {
            what: format!("no VmRSS line in {path}"),
        })
    }

    /// Peak resident set size so far (`VmHWM` of /proc/<pid>/status), in KiB.
    pub fn hwm_kib(&self) -> Result<u64> {
        let path = format!("/proc/{}/status", self.child.id());
        let text = std::fs::read_to_string(&path).map_err(io(format!("reading {path}")))?;
        text.lines()
            .find_map(|l| l.strip_prefix("VmHWM:"))
            .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
            .ok_or_else(|| BenchError::Unexpected {
                what: format!("no VmHWM line in {path}"),
            })
    }

    /// CPU time used so far (utime + stime from /proc/<pid>/stat), in ms.
    pub fn cpu_ms(&self) -> Result<f64> {
        let path = format!("/proc/{}/stat", self.child.id());
        let text = std::fs::read_to_string(&path).map_err(io(format!("reading {path}")))?;
        let ticks = parse_stat_cpu_ticks(&text).ok_or_else(|| BenchError::Unexpected {
            what: format!("cannot parse {path}"),
        })?;
        // SAFETY: sysconf has no preconditions.
        let hz = unsafe { libc::sysconf(libc::_SC_CLK_TCK) }.max(1) as f64;
        Ok(ticks as f64 * 1000.0 / hz)
    }

    /// CPU time of the live threads in ns (sum of /proc/<pid>/task/*/schedstat):
    /// finer than the 10 ms ticks of `stat`, but forgets exited threads.
    pub fn cpu_ns_live_threads(&self) -> Result<u64> {
        let dir = format!("/proc/{}/task", self.child.id());
        let mut total = 0;
        for entry in std::fs::read_dir(&dir).map_err(io(format!("listing {dir}")))? {
            let path = entry.map_err(io(format!("listing {dir}")))?.path();
            if let Ok(text) = std::fs::read_to_string(path.join("schedstat")) {
                total += parse_schedstat_ns(&text).unwrap_or(0);
            }
        }
        Ok(total)
    }

    /// Sends SIGTERM (the operator's stop).
    pub fn sigterm(&self) {
        // SAFETY: kill(2) on our own child's pid.
        unsafe {
            libc::kill(self.child.id() as libc::pid_t, libc::SIGTERM);
        }
    }

    /// Waits for the exit; SIGKILL and an error after `timeout`.
    pub fn wait_exit(&mut self, timeout: Duration) -> Result<()> {
        if !exited_within(self.child.id(), timeout) {
            let _ = self.child.kill();
            let _ = self.child.wait();
            return Err(BenchError::Timeout {
                what: "the worker to exit after SIGTERM".into(),
            });
        }
        self.child.wait().map_err(io("waiting for the worker"))?;
        Ok(())
    }
}

/// Whether process `pid` (our child) exits within `timeout`, awaited on a
/// pidfd; when pidfds are unavailable, reports true and the caller's
/// blocking wait takes over.
fn exited_within(pid: u32, timeout: Duration) -> bool {
    // SAFETY: pidfd_open takes a pid and flags and returns a new fd or -1.
    let fd = unsafe { libc::syscall(libc::SYS_pidfd_open, pid as libc::pid_t, 0) };
    if fd < 0 {
        return true;
    }
    let mut pfd = libc::pollfd {
        fd: fd as libc::c_int,
        events: libc::POLLIN,
        revents: 0,
    };
    let ms = timeout.as_millis().min(i32::MAX as u128) as i32;
    // SAFETY: one valid pollfd; the fd is ours and closed right after.
    let ready = unsafe {
        let n = libc::poll(&mut pfd, 1, ms);
        libc::close(fd as libc::c_int);
        n
    };
    ready > 0
}

impl Drop for WorkerProc {
    fn drop(&mut self) {
        if let Ok(None) = self.child.try_wait() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
        docker::remove_worker_leftovers(&self.worker_id);
    }
}

fn collect(stream: impl Read + Send + 'static, log: Log) {
    std::thread::spawn(move || {
        for line in BufReader::new(stream).lines() {
            let Ok(line) = line else { break };
            let (lines, changed) = &*log;
            lines.lock().unwrap_or_else(|e| e.into_inner()).push(line);
            changed.notify_all();
        }
    });
}

/// VmRSS in KiB from the text of /proc/<pid>/status.
pub fn parse_vmrss(status: &str) -> Option<u64> {
    let line = status.lines().find(|l| l.starts_with("VmRSS:"))?;
    line.split_whitespace().nth(1)?.parse().ok()
}

/// utime + stime (clock ticks) from the text of /proc/<pid>/stat. The
/// command name may hold spaces and parentheses, so count from the last `)`.
pub fn parse_stat_cpu_ticks(stat: &str) -> Option<u64> {
    let rest = &stat[stat.rfind(')')? + 1..];
    let fields: Vec<&str> = rest.split_whitespace().collect();
    // After ")" come fields 3.. of proc(5): utime is field 14, stime 15.
    let utime: u64 = fields.get(11)?.parse().ok()?;
    let stime: u64 = fields.get(12)?.parse().ok()?;
    Some(utime + stime)
}

/// Time on CPU in ns: the first field of /proc/<pid>/task/<tid>/schedstat.
pub fn parse_schedstat_ns(text: &str) -> Option<u64> {
    text.split_whitespace().next()?.parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_vmrss() {
        let status =
            "Name:\toz-agent-worker\nVmPeak:\t  9000 kB\nVmRSS:\t    3124 kB\nRssAnon:\t 1000 kB\n";
        assert_eq!(parse_vmrss(status), Some(3124));
        assert_eq!(parse_vmrss("Name:\tx\n"), None);
    }

    #[test]
    fn reads_utime_plus_stime_past_a_tricky_comm() {
        let stat =
            "4242 (oz (a) b) S 1 4242 4242 0 -1 4194560 120 0 0 0 17 5 0 0 20 0 3 0 100 1000 300";
        assert_eq!(parse_stat_cpu_ticks(stat), Some(22));
        assert_eq!(parse_stat_cpu_ticks("4242 (x) S 1"), None);
    }

    #[test]
    fn reads_schedstat() {
        assert_eq!(parse_schedstat_ns("123456789 2000 12\n"), Some(123_456_789));
        assert_eq!(parse_schedstat_ns(""), None);
    }
}
