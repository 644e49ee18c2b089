//! Stopping and starting the test host's Docker daemon, as a host
//! restarting its Docker service would (`.ci/setup-host` starts it as
//! `setsid -w dockerd`). Only for test binaries of their own: every other
//! test needs the daemon, and cargo runs test binaries one after another.

use std::fs::OpenOptions;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

const PID_FILE: &str = "/var/run/docker.pid";

pub fn docker_answers() -> bool {
    Command::new("docker")
        .arg("info")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
}

/// Starts dockerd as `.ci/setup-host` does (`setsid -w dockerd`, output
/// appended to its log) and waits until `docker info` answers.
// The daemon outlives this test by design: `setsid -w` is only watched for
// an early exit, never waited for.
#[allow(clippy::zombie_processes)]
pub fn start_dockerd(extra: &[&str]) {
    let log_path = std::env::var("OZ_CI_DOCKERD_LOG")
        .unwrap_or_else(|_| "/var/log/oz-ci-dockerd.log".to_owned());
    let log = OpenOptions::new()
        .create(true)
        .append(true)
        .open(&log_path)
        .unwrap_or_else(|e| panic!("opening {log_path}: {e}"));
    let mut child = Command::new("setsid")
        .args(["-w", "dockerd"])
        .args(extra)
        .stdin(Stdio::null())
        .stdout(log.try_clone().unwrap())
        .stderr(log)
        .spawn()
        .expect("start dockerd");
    let deadline = Instant::now() + Duration::from_secs(120);
    // No event tells us the daemon is ready; asking it is the only way.
    while !docker_answers() {
        if let Ok(Some(status)) = child.try_wait() {
            panic!("dockerd exited ({status}) while starting; see {log_path}");
        }
        assert!(
            Instant::now() < deadline,
            "dockerd did not answer within 120 s; see {log_path}"
        );
        std::thread::sleep(Duration::from_millis(200));
    }
}

/// Stops dockerd the way the host would (SIGTERM to the pid in its pid file)
/// and waits for the process to be gone (a pidfd becomes readable on exit).
pub fn stop_dockerd() {
    let pid: i32 = std::fs::read_to_string(PID_FILE)
        .unwrap_or_else(|e| panic!("reading {PID_FILE}: {e}"))
        .trim()
        .parse()
        .unwrap();
    // SAFETY: plain syscalls on a pid; the fd is closed below.
    unsafe {
        let fd = libc::syscall(libc::SYS_pidfd_open, pid, 0) as i32;
        assert!(fd >= 0, "pidfd_open({pid}) failed");
        assert_eq!(libc::kill(pid, libc::SIGTERM), 0, "kill -TERM {pid}");
        let mut pfd = libc::pollfd {
            fd,
            events: libc::POLLIN,
            revents: 0,
        };
        let ready = libc::poll(&mut pfd, 1, 90_000);
        libc::close(fd);
        assert_eq!(ready, 1, "dockerd ({pid}) did not exit within 90 s");
    }
}

/// Makes sure the daemon answers again when the test ends, pass or fail.
pub struct DaemonBack;

impl Drop for DaemonBack {
    fn drop(&mut self) {
        if !docker_answers() {
            start_dockerd(&[]);
        }
    }
}
