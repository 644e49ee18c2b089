//! The README's first command on a real host touches nothing it should not:
//! `.ci/docker-up` (which `bash demo/run` runs) uses a Docker that answers,
//! starts an installed one (docker-ce here) without installing Debian's
//! docker.io over it, installs docker.io only when no Docker exists (never
//! removing a package), and stops with one line when Docker runs but may
//! not be used; `demo/run` without cargo stops at once with one line.
//!
//! The answering case runs against the real daemon. The others cannot be
//! staged on a shared CI host (no test may stop or uninstall its Docker), so
//! there the package tools and the docker CLI are stand-in scripts on PATH
//! that record every call; what is asserted is which calls the scripts make.

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::atomic::{AtomicUsize, Ordering};

const ROOT: &str = env!("CARGO_MANIFEST_DIR");

/// A PATH of its own: links to the real basic tools, stand-ins that log
/// their arguments to `calls`, and a `started` marker the stand-in
/// daemon starters create.
struct Host {
    dir: PathBuf,
}

impl Host {
    fn new() -> Host {
        static N: AtomicUsize = AtomicUsize::new(0);
        let dir = std::env::temp_dir().join(format!(
            "oz-first-run-{}-{}",
            std::process::id(),
            N.fetch_add(1, Ordering::SeqCst)
        ));
        std::fs::create_dir_all(dir.join("bin")).unwrap();
        let host = Host { dir };
        for tool in [
            "bash", "sh", "grep", "seq", "sleep", "id", "tail", "cat", "sed", "awk", "sort",
            "dirname", "mkdir", "rm", "touch", "env",
        ] {
            let real = which(tool);
            std::os::unix::fs::symlink(real, host.bin().join(tool)).unwrap();
        }
        // Every package and service tool records its call and fails, unless a
        // scenario gives it a script.
        for tool in [
            "apt-get",
            "dpkg",
            "systemctl",
            "sudo",
            "setsid",
            "dockerd",
            "cargo",
        ] {
            host.stub(tool, "exit 1");
        }
        host.stub("dpkg-query", "exit 1");
        host
    }

    fn bin(&self) -> PathBuf {
        self.dir.join("bin")
    }

    /// A stand-in `name` that logs `name args` and then runs `body`.
    fn stub(&self, name: &str, body: &str) {
        let path = self.bin().join(name);
        let calls = self.dir.join("calls");
        let marker = self.dir.join("started");
        std::fs::write(
            &path,
            format!(
                "#!/bin/bash\nCALLS='{}'\nSTARTED='{}'\necho \"{name} $*\" >> \"$CALLS\"\n{body}\n",
                calls.display(),
                marker.display()
            ),
        )
        .unwrap();
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755)).unwrap();
    }

    /// A docker CLI whose `info` fails with `error` until a starter ran.
    fn docker_failing_with(&self, error: &str) {
        self.stub(
            "docker",
            &format!(
                "case $1 in\n  info) [ -e \"$STARTED\" ] && exit 0; echo '{error}' >&2; exit 1 ;;\n  version) echo 'client 1, server 1 (API 1.41)' ;;\nesac"
            ),
        );
    }

    fn calls(&self) -> Vec<String> {
        std::fs::read_to_string(self.dir.join("calls"))
            .unwrap_or_default()
            .lines()
            .map(str::to_owned)
            .collect()
    }

    /// Runs `bash script` with only this host's PATH (plus `extra_path`).
    fn run(&self, script: &str, extra_path: Option<&str>, env: &[(&str, &str)]) -> Output {
        let path = match extra_path {
            Some(extra) => format!("{}:{extra}", self.bin().display()),
            None => self.bin().display().to_string(),
        };
        Command::new(which("bash"))
            .arg(Path::new(ROOT).join(script))
            .env_clear()
            .env("PATH", path)
            .env("HOME", &self.dir)
            .env("OZ_CI_DOCKERD_LOG", self.dir.join("dockerd.log"))
            .envs(env.iter().copied())
            .output()
            .unwrap()
    }
}

impl Drop for Host {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

fn which(tool: &str) -> PathBuf {
    let path = std::env::var("PATH").unwrap();
    std::env::split_paths(&path)
        .map(|d| d.join(tool))
        .find(|p| p.is_file())
        .unwrap_or_else(|| panic!("{tool} is not on PATH"))
}

fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

#[test]
fn an_answering_docker_is_used_and_nothing_is_installed() {
    let host = Host::new();
    // The real docker CLI and daemon; every package tool is a stand-in.
    let docker_dir = which("docker").parent().unwrap().display().to_string();
    let out = host.run(".ci/docker-up", Some(&docker_dir), &[]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert!(
        text(&out.stdout).starts_with("a Docker daemon answers; installing nothing\n"),
        "{}",
        text(&out.stdout)
    );
    assert_eq!(host.calls(), Vec::<String>::new());
}

#[test]
fn an_installed_docker_ce_is_started_never_replaced() {
    let host = Host::new();
    host.docker_failing_with(
        "Cannot connect to the Docker daemon at unix:///var/run/docker.sock. Is the docker daemon running?",
    );
    host.stub(
        "dpkg-query",
        "[ \"${@: -1}\" = docker-ce ] && { echo 'install ok installed'; exit 0; }; exit 1",
    );
    // Either starter (systemd or not) marks the daemon started.
    for starter in ["setsid", "systemctl"] {
        host.stub(starter, "touch \"$STARTED\"; sleep 2");
    }
    host.stub("sudo", "exec \"$@\"");
    let out = host.run(".ci/docker-up", None, &[]);
    assert!(
        out.status.success(),
        "{}{}",
        text(&out.stdout),
        text(&out.stderr)
    );
    assert!(
        text(&out.stdout).contains(
            "Docker is installed (docker-ce) but does not answer: starting it, installing nothing"
        ),
        "{}",
        text(&out.stdout)
    );
    let calls = host.calls();
    assert!(
        calls
            .iter()
            .any(|c| c == "setsid -w dockerd" || c == "systemctl start docker"),
        "{calls:?}"
    );
    assert!(
        !calls
            .iter()
            .any(|c| c.starts_with("apt-get") || c.starts_with("dpkg ")),
        "{calls:?}"
    );
}

#[test]
fn with_no_docker_at_all_docker_io_is_installed_without_removing_anything() {
    let host = Host::new();
    host.docker_failing_with("Cannot connect to the Docker daemon at unix:///var/run/docker.sock.");
    host.stub("apt-get", "exit 0");
    for starter in ["setsid", "systemctl"] {
        host.stub(starter, "touch \"$STARTED\"; sleep 2");
    }
    host.stub("sudo", "exec \"$@\"");
    // No dockerd on this PATH: the stand-in is removed.
    std::fs::remove_file(host.bin().join("dockerd")).unwrap();
    let out = host.run(".ci/docker-up", None, &[]);
    assert!(
        out.status.success(),
        "{}{}",
        text(&out.stdout),
        text(&out.stderr)
    );
    let installs: Vec<String> = host
        .calls()
        .into_iter()
        .filter(|c| c.starts_with("apt-get") && c.contains(" install "))
        .collect();
    assert_eq!(
        installs,
        ["apt-get -o DPkg::Lock::Timeout=600 install -y -q --no-remove docker.io"]
    );
}

#[test]
fn a_docker_this_user_may_not_use_is_one_line_and_nothing_else() {
    let host = Host::new();
    host.docker_failing_with(
        "permission denied while trying to connect to the Docker daemon socket at unix:///var/run/docker.sock",
    );
    let out = host.run(".ci/docker-up", None, &[]);
    assert!(!out.status.success());
    let stderr = text(&out.stderr);
    assert!(
        stderr.contains("Docker runs, but") && stderr.contains("add this user to the docker group"),
        "{stderr}"
    );
    assert_eq!(host.calls(), ["docker info"]);
}

#[test]
fn a_silent_docker_host_elsewhere_is_not_replaced_by_a_local_daemon() {
    let host = Host::new();
    host.docker_failing_with("Cannot connect to the Docker daemon at tcp://10.9.9.9:2375.");
    let out = host.run(
        ".ci/docker-up",
        None,
        &[("DOCKER_HOST", "tcp://10.9.9.9:2375")],
    );
    assert!(!out.status.success());
    assert!(
        text(&out.stderr).contains("no Docker daemon answers at DOCKER_HOST=tcp://10.9.9.9:2375"),
        "{}",
        text(&out.stderr)
    );
    assert_eq!(host.calls(), ["docker info"]);
}

#[test]
fn demo_run_without_cargo_says_how_to_get_it_in_one_line() {
    let host = Host::new();
    std::fs::remove_file(host.bin().join("cargo")).unwrap();
    let out = host.run("demo/run", None, &[]);
    assert_eq!(out.status.code(), Some(1));
    assert_eq!(text(&out.stdout), "");
    assert_eq!(
        text(&out.stderr),
        "demo/run: cargo is not on PATH: install Rust 1.85 or newer from https://rustup.rs (then open a new shell) and run bash demo/run again\n"
    );
    assert_eq!(host.calls(), Vec::<String>::new());
}
