//! Helper-process plumbing shared by the relays and [`crate::registry`]: the
//! fixture error type, private temp dirs, free loopback ports, one-shot
//! commands, and long-running helpers whose output is teed to a log file and
//! whose whole process group is killed on drop.
//!
//! Knows nothing about what the helpers are; never touches Docker.

use std::fmt;
use std::fs::{self, File};
use std::io::{self, BufRead, BufReader, Write};
use std::net::{SocketAddr, TcpListener};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::mpsc::{self, Receiver, RecvTimeoutError};
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

/// How long a helper may take to start listening.
const READY_WITHIN: Duration = Duration::from_secs(20);
/// Upper bound on one wait for the helper's next output line between probes.
const PROBE_TICK: Duration = Duration::from_millis(50);
/// How much of a helper's log an error quotes.
const LOG_TAIL_LINES: usize = 20;

/// Why a fixture could not be set up.
#[derive(Debug)]
pub enum FixtureError {
    /// A helper program could not be started at all (usually: not installed).
    Spawn {
        /// The program that was run.
        program: String,
        /// The OS error.
        source: io::Error,
    },
    /// A helper program ran but failed; `output` is its own words.
    Failed {
        /// The command line, secrets left out.
        command: String,
        /// Its exit status.
        status: ExitStatus,
        /// Its stdout and stderr.
        output: String,
    },
    /// A long-running helper exited before it was listening.
    Exited {
        /// Which helper.
        name: String,
        /// Its exit status.
        status: ExitStatus,
        /// The end of its log.
        log_tail: String,
    },
    /// A long-running helper did not start listening in time.
    NotReady {
        /// Which helper.
        name: String,
        /// Where it should have been listening.
        addr: SocketAddr,
        /// The end of its log.
        log_tail: String,
    },
    /// A local file or socket operation failed.
    Io {
        /// What was being done.
        what: String,
        /// The OS error.
        source: io::Error,
    },
}

impl fmt::Display for FixtureError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Spawn { program, source } => write!(
                f,
                "could not run `{program}`: {source} (is it installed? `bash .ci/run` installs every fixture tool)"
            ),
            Self::Failed {
                command,
                status,
                output,
            } => write!(f, "`{command}` failed ({status}): {}", output.trim()),
            Self::Exited {
                name,
                status,
                log_tail,
            } => write!(
                f,
                "{name} exited ({status}) before it was listening; its log ends:\n{log_tail}"
            ),
            Self::NotReady {
                name,
                addr,
                log_tail,
            } => write!(
                f,
                "{name} was not answering on {addr} after {}s; its log ends:\n{log_tail}",
                READY_WITHIN.as_secs()
            ),
            Self::Io { what, source } => write!(f, "{what}: {source}"),
        }
    }
}

impl std::error::Error for FixtureError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            Self::Spawn { source, .. } | Self::Io { source, .. } => Some(source),
            _ => None,
        }
    }
}

pub(crate) fn io_err(what: impl Into<String>) -> impl FnOnce(io::Error) -> FixtureError {
    let what = what.into();
    move |source| FixtureError::Io { what, source }
}

/// A fresh, private temp directory, removed on drop.
#[derive(Debug)]
pub struct TempDir(PathBuf);

impl TempDir {
    /// Creates `$TMPDIR/oz-standin-<kind>-<pid>-<n>-<nanos>`.
    pub fn new(kind: &str) -> Result<TempDir, FixtureError> {
        static SEQ: AtomicU32 = AtomicU32::new(0);
        let nanos = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|d| d.subsec_nanos())
            .unwrap_or(0);
        let name = format!(
            "oz-standin-{kind}-{}-{}-{nanos}",
            std::process::id(),
            SEQ.fetch_add(1, Ordering::Relaxed)
        );
        let path = std::env::temp_dir().join(name);
        fs::create_dir(&path).map_err(io_err(format!("creating {}", path.display())))?;
        Ok(TempDir(path))
    }

    /// The directory.
    pub fn path(&self) -> &Path {
        &self.0
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = fs::remove_dir_all(&self.0);
    }
}

/// A loopback address with a port nothing listens on right now. Another
/// process could take it before the helper binds; the helper then exits and
/// [`Helper::wait_ready`] says so.
pub fn free_loopback_addr() -> Result<SocketAddr, FixtureError> {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map_err(io_err("picking a free loopback port"))
}

/// Runs a short-lived command to completion, feeding it `input` on stdin;
/// its output becomes the error. `shown_as` is the command line to report,
/// with any secret left out.
pub(crate) fn run(
    cmd: &mut Command,
    shown_as: &str,
    input: Option<&str>,
) -> Result<String, FixtureError> {
    let program = cmd.get_program().to_string_lossy().into_owned();
    let spawn_err = |source| FixtureError::Spawn {
        program: program.clone(),
        source,
    };
    let mut child = cmd
        .stdin(if input.is_some() {
            Stdio::piped()
        } else {
            Stdio::null()
        })
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(spawn_err)?;
    if let (Some(text), Some(mut stdin)) = (input, child.stdin.take()) {
        // Dropping stdin after the write gives the command its EOF.
        stdin
            .write_all(text.as_bytes())
            .map_err(io_err(format!("writing to {shown_as}")))?;
    }
    let out = child
        .wait_with_output()
        .map_err(io_err(format!("waiting for {shown_as}")))?;
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    if out.status.success() {
        Ok(text)
    } else {
        Err(FixtureError::Failed {
            command: shown_as.to_string(),
            status: out.status,
            output: text,
        })
    }
}

/// A long-running helper process in its own process group, its stdout and
/// stderr copied line by line into a log file. Drop kills the whole group
/// (socat forks one child per connection) and reaps it.
#[derive(Debug)]
pub struct Helper {
    name: String,
    child: Child,
    log_path: PathBuf,
    lines: Receiver<()>,
    tee: Option<JoinHandle<()>>,
}

impl Helper {
    /// Starts `cmd` (consumed so the parent's copies of the pipe close and the
    /// log copier sees EOF when the helper dies), logging to `log_path`.
    pub fn spawn(name: &str, mut cmd: Command, log_path: PathBuf) -> Result<Helper, FixtureError> {
        let program = cmd.get_program().to_string_lossy().into_owned();
        let (reader, writer) = io::pipe().map_err(io_err("creating a pipe"))?;
        let writer2 = writer.try_clone().map_err(io_err("cloning a pipe"))?;
        let mut log =
            File::create(&log_path).map_err(io_err(format!("creating {}", log_path.display())))?;
        cmd.stdin(Stdio::null())
            .stdout(writer)
            .stderr(writer2)
            .process_group(0);
        let child = cmd
            .spawn()
            .map_err(|source| FixtureError::Spawn { program, source })?;
        drop(cmd);
        let (tx, lines) = mpsc::channel();
        let tee = thread::spawn(move || {
            for line in BufReader::new(reader).split(b'\n').map_while(Result::ok) {
                let _ = log.write_all(&line);
                let _ = log.write_all(b"\n");
                let _ = log.flush();
                let _ = tx.send(());
            }
        });
        Ok(Helper {
            name: name.to_string(),
            child,
            log_path,
            lines,
            tee: Some(tee),
        })
    }

    /// Returns once `probe` succeeds against `addr`. Between probes it waits
    /// for the helper's next log line (they announce "listening" when they
    /// bind), bounded by a short tick for helpers that stay silent.
    pub fn wait_ready(
        &mut self,
        addr: SocketAddr,
        mut probe: impl FnMut(SocketAddr) -> bool,
    ) -> Result<(), FixtureError> {
        let deadline = Instant::now() + READY_WITHIN;
        loop {
            if probe(addr) {
                return Ok(());
            }
            let status = self
                .child
                .try_wait()
                .map_err(io_err(format!("checking on {}", self.name)))?;
            if let Some(status) = status {
                self.join_tee();
                return Err(FixtureError::Exited {
                    name: self.name.clone(),
                    status,
                    log_tail: self.log_tail(),
                });
            }
            let now = Instant::now();
            if now >= deadline {
                return Err(FixtureError::NotReady {
                    name: self.name.clone(),
                    addr,
                    log_tail: self.log_tail(),
                });
            }
            let wait = PROBE_TICK.min(deadline - now);
            if let Err(RecvTimeoutError::Disconnected) = self.lines.recv_timeout(wait) {
                // Output closed: the helper is exiting; give try_wait a moment.
                thread::sleep(wait);
            }
        }
    }

    /// Everything the helper has written so far.
    pub fn log(&self) -> String {
        fs::read(&self.log_path)
            .map(|b| String::from_utf8_lossy(&b).into_owned())
            .unwrap_or_default()
    }

    fn log_tail(&self) -> String {
        tail_lines(&self.log(), LOG_TAIL_LINES)
    }

    fn join_tee(&mut self) {
        if let Some(tee) = self.tee.take() {
            let _ = tee.join();
        }
    }
}

impl Drop for Helper {
    fn drop(&mut self) {
        // The group id is the leader's pid (process_group(0)); std has no
        // killpg, and the main crate's libc is not a standin dependency.
        let _ = Command::new("kill")
            .args(["-s", "KILL", "--", &format!("-{}", self.child.id())])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status();
        let _ = self.child.kill();
        let _ = self.child.wait();
        self.join_tee();
    }
}

/// The last `n` lines of `text`, in order.
pub fn tail_lines(text: &str, n: usize) -> String {
    let lines: Vec<&str> = text.lines().collect();
    lines[lines.len().saturating_sub(n)..].join("\n")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tail_lines_keeps_the_last_lines_in_order() {
        assert_eq!(tail_lines("a\nb\nc\n", 2), "b\nc");
        assert_eq!(tail_lines("a", 5), "a");
        assert_eq!(tail_lines("", 3), "");
    }
}
