//! The Docker client against the real daemon at /var/run/docker.sock.
//!
//! Every container and volume is labelled `oz-agent-worker.test=1` plus a
//! per-test label, and a Drop guard removes them by that label.

use std::io::{BufRead, BufReader};
use std::os::unix::fs::PermissionsExt;
use std::os::unix::process::CommandExt;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use oz_agent_worker::docker::discovery::{Source, Target};
use oz_agent_worker::docker::{AbortSlot, Docker, DockerError, Endpoint};
use serde_json::json;

const IMAGE: &str = "oz-test/busybox:latest";
const SOCKET: &str = "/var/run/docker.sock";

fn target(endpoint: Endpoint) -> Target {
    Target {
        endpoint,
        api_version: None,
        source: Source::Default,
    }
}

fn docker() -> Docker {
    let d = Docker::connect(&target(Endpoint::Unix(SOCKET.into()))).expect("connect to the daemon");
    assert!(
        d.image_inspect(IMAGE).unwrap().is_some(),
        "{IMAGE} missing: run bash .ci/test-images.sh"
    );
    d
}

/// Removes the test's containers, then its volumes, by its own label.
struct Cleanup {
    docker: Docker,
    label: String,
}

impl Cleanup {
    fn new(docker: &Docker, case: &str) -> Cleanup {
        Cleanup {
            docker: docker.clone(),
            label: format!("oz-agent-worker.test-case={case}"),
        }
    }

    fn labels(&self) -> serde_json::Value {
        let (k, v) = self.label.split_once('=').unwrap();
        json!({ "oz-agent-worker.test": "1", k: v })
    }

    fn create(&self, name: &str, cmd: &[&str], binds: &[String]) -> String {
        let body = json!({
            "Image": IMAGE,
            "Cmd": cmd,
            "Labels": self.labels(),
            "HostConfig": { "Binds": binds },
        });
        self.docker.create(name, &body).unwrap()
    }
}

impl Drop for Cleanup {
    fn drop(&mut self) {
        if let Ok(list) = self.docker.list_by_label(&[&self.label]) {
            for c in list {
                let _ = self.docker.remove(&c.id);
            }
        }
        if let Ok(list) = self.docker.volume_list_by_label(&[&self.label]) {
            for v in list {
                let _ = self.docker.volume_remove(&v.name);
            }
        }
    }
}

fn unique(case: &str) -> String {
    format!("oz-test-{case}-{}", std::process::id())
}

#[test]
fn ping_negotiates_and_reports_platform() {
    let d = docker();
    let version = d.version().unwrap();
    // Engine 20.10 offers 1.41, below the 1.51 we cap at.
    assert_eq!(version.api_version, "1.41");
    assert_eq!(d.api_version(), "1.41");
    let arch = match std::env::consts::ARCH {
        "x86_64" => "amd64",
        "aarch64" => "arm64",
        other => other,
    };
    assert_eq!(d.platform().unwrap(), format!("linux/{arch}"));

    let mut pinned = target(Endpoint::Unix(SOCKET.into()));
    pinned.api_version = Some("1.40".into());
    let err = Docker::connect(&pinned).err().unwrap();
    assert_eq!(
        err.to_string(),
        format!(
            "Docker Engine {} (API 1.40) is too old: this worker needs API 1.41 (Engine 20.10) or newer",
            version.version
        )
    );
}

#[test]
fn container_lifecycle() {
    let d = docker();
    let guard = Cleanup::new(&d, "lifecycle");
    let id = guard.create(
        &unique("lifecycle"),
        &["sh", "-c", "echo one; echo two; echo three >&2; exit 3"],
        &[],
    );
    d.start(&id).unwrap();
    let waited = d.wait(&id, &AbortSlot::new()).unwrap();
    assert_eq!(waited.status_code, 3);
    assert_eq!(waited.error, None);
    let state = d.inspect(&id).unwrap();
    assert_eq!(
        (state.running, state.exit_code, state.oom_killed),
        (false, 3, false)
    );
    assert_eq!(state.status, "exited");

    let logs = d.logs_tail(&id, 100, 4096).unwrap();
    // stdout and stderr are copied by separate daemon goroutines: order across them varies.
    let mut lines: Vec<&str> = logs.lines().collect();
    lines.sort();
    assert_eq!(lines, ["one", "three", "two"]);
    assert_eq!(logs.len(), 14);
    assert_eq!(d.logs_tail(&id, 100, 5).unwrap().len(), 5);

    d.remove(&id).unwrap();
    let err = d.inspect(&id).unwrap_err();
    assert!(err.is_not_found(), "{err}");
    assert_eq!(
        err.to_string(),
        format!("Docker GET /v1.41/containers/{id}/json failed (404): No such container: {id}")
    );
    d.remove(&id).unwrap(); // already gone = done
}

#[test]
fn errors_keep_the_daemon_message() {
    let d = docker();
    let guard = Cleanup::new(&d, "errors");
    let err = d
        .create(
            &unique("errors-noimage"),
            &json!({ "Image": "oz-test/absent:latest", "Labels": guard.labels() }),
        )
        .unwrap_err();
    assert_eq!(err.status(), Some(404));
    assert!(
        err.to_string()
            .ends_with("No such image: oz-test/absent:latest"),
        "{err}"
    );
    assert_eq!(d.image_inspect("oz-test/absent:latest").unwrap(), None);
    assert_eq!(d.volume_inspect("oz-test-absent-volume").unwrap(), None);

    let name = unique("errors-dup");
    guard.create(&name, &["true"], &[]);
    let err = d
        .create(&name, &json!({ "Image": IMAGE, "Labels": guard.labels() }))
        .unwrap_err();
    assert_eq!(err.status(), Some(409));
    assert!(err.to_string().contains("is already in use"), "{err}");

    let err = d.kill("oz-test-absent-container", "SIGKILL").unwrap_err();
    assert!(
        err.to_string()
            .ends_with("No such container: oz-test-absent-container"),
        "{err}"
    );
    assert!(
        d.head_archive("oz-test-absent-container", "/")
            .unwrap_err()
            .is_not_found()
    );
}

#[test]
fn export_into_a_volume_then_head_archive() {
    let d = docker();
    let guard = Cleanup::new(&d, "export");
    let volume = unique("export-vol");
    let labels = guard.labels();
    let labels = labels
        .as_object()
        .unwrap()
        .iter()
        .map(|(k, v)| (k.clone(), v.as_str().unwrap().to_string()))
        .collect();
    assert_eq!(d.volume_create(&volume, &labels).unwrap().name, volume);
    assert_eq!(d.volume_inspect(&volume).unwrap().unwrap().labels, labels);

    let src = guard.create(&unique("export-src"), &["true"], &[]);
    let dst = guard.create(
        &unique("export-dst"),
        &["true"],
        &[format!("{volume}:/oz-fill:nocopy")],
    );
    let slot = AbortSlot::new();
    let mut tar = d.export(&src, &slot).unwrap();
    d.put_archive(&dst, "/oz-fill", &mut tar, &slot).unwrap();
    drop(tar);
    assert!(d.head_archive(&dst, "/oz-fill/bin/busybox").unwrap());
    assert!(!d.head_archive(&dst, "/oz-fill/no/such/file").unwrap());

    // The volume really holds the image's files.
    let check = guard.create(
        &unique("export-check"),
        &["sh", "-c", "test -x /v/bin/busybox && exit 7"],
        &[format!("{volume}:/v:ro")],
    );
    d.start(&check).unwrap();
    assert_eq!(d.wait(&check, &AbortSlot::new()).unwrap().status_code, 7);
    let found = d.list_by_label(&[&guard.label]).unwrap();
    assert_eq!(found.len(), 3);
    assert_eq!(d.volume_list_by_label(&[&guard.label]).unwrap().len(), 1);
}

#[test]
fn abort_a_long_wait_from_another_thread() {
    let d = docker();
    let guard = Cleanup::new(&d, "abort");
    let id = guard.create(&unique("abort"), &["sleep", "60"], &[]);
    d.start(&id).unwrap();
    let slot = AbortSlot::new();
    let started = Instant::now();
    let waiter = {
        let (d, id, slot) = (d.clone(), id.clone(), slot.clone());
        std::thread::spawn(move || d.wait(&id, &slot))
    };
    slot.abort();
    let result = waiter.join().unwrap();
    assert!(
        matches!(result, Err(DockerError::Aborted { .. })),
        "{result:?}"
    );
    assert!(started.elapsed() < Duration::from_secs(30));
    // The aborted slot refuses later calls at once; the container is untouched.
    assert!(matches!(
        d.wait(&id, &slot),
        Err(DockerError::Aborted { .. })
    ));
    assert!(d.inspect(&id).unwrap().running);
}

/// A socat relay from a local TCP port to the daemon socket; killed on drop.
struct Relay {
    child: Child,
    port: u16,
    log: Option<BufReader<std::process::ChildStderr>>,
}

impl Relay {
    fn start() -> Relay {
        let mut child = Command::new("socat")
            .args([
                "-d",
                "-d",
                "TCP-LISTEN:0,bind=127.0.0.1,reuseaddr,fork",
                &format!("UNIX-CONNECT:{SOCKET}"),
            ])
            .stderr(Stdio::piped())
            .spawn()
            .expect("socat");
        let mut log = BufReader::new(child.stderr.take().unwrap());
        let mut line = String::new();
        let port = loop {
            line.clear();
            assert!(log.read_line(&mut line).unwrap() > 0, "socat exited");
            if let Some(addr) = line.trim().split("listening on AF=2 ").nth(1) {
                break addr.rsplit(':').next().unwrap().parse().unwrap();
            }
        };
        Relay {
            child,
            port,
            log: Some(log),
        }
    }

    /// Stops socat and counts the connections it accepted.
    fn stop_and_count_connections(&mut self) -> usize {
        self.child.kill().unwrap();
        self.child.wait().unwrap();
        let log = self.log.take().unwrap();
        log.lines()
            .map_while(Result::ok)
            .filter(|l| l.contains("accepting connection"))
            .count()
    }
}

impl Drop for Relay {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

#[test]
fn tcp_endpoint_and_keep_alive_reuse() {
    let mut relay = Relay::start();
    let d = Docker::connect(&target(Endpoint::Tcp {
        host: "127.0.0.1".into(),
        port: relay.port,
        tls: None,
    }))
    .unwrap();
    for _ in 0..25 {
        assert_eq!(d.version().unwrap().api_version, "1.41");
        assert!(d.image_inspect(IMAGE).unwrap().is_some());
        assert_eq!(d.image_inspect("oz-test/absent:latest").unwrap(), None);
    }
    drop(d);
    // The ping and 75 calls all went over one kept-alive connection.
    assert_eq!(relay.stop_and_count_connections(), 1);
}

#[test]
fn missing_socket_is_one_plain_line() {
    let path = std::env::temp_dir().join(format!("oz-missing-{}/docker.sock", std::process::id()));
    let err = Docker::connect(&target(Endpoint::Unix(path.clone())))
        .err()
        .unwrap();
    assert_eq!(
        err.to_string(),
        format!(
            "no Docker daemon at {}: No such file or directory (os error 2); is it running? set DOCKER_HOST to use another daemon",
            path.display()
        )
    );
}

#[test]
fn socket_of_another_user_names_the_group() {
    // Child mode: run as `nobody` by the parent below; report the message.
    if let Ok(socket) = std::env::var("OZ_TEST_EACCES_SOCKET") {
        let err = Docker::connect(&target(Endpoint::Unix(socket.into())))
            .err()
            .unwrap();
        println!("MESSAGE: {err}");
        return;
    }
    let dir = std::env::temp_dir().join(format!("oz-eacces-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    struct RmDir(PathBuf);
    impl Drop for RmDir {
        fn drop(&mut self) {
            let _ = std::fs::remove_dir_all(&self.0);
        }
    }
    let _rm = RmDir(dir.clone());
    std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o755)).unwrap();
    let socket = dir.join("docker.sock");
    let _listener = std::os::unix::net::UnixListener::bind(&socket).unwrap();
    std::fs::set_permissions(&socket, std::fs::Permissions::from_mode(0o600)).unwrap();
    std::os::unix::fs::chown(&socket, Some(1), Some(4242)).unwrap();

    let out = Command::new(std::env::current_exe().unwrap())
        .args([
            "socket_of_another_user_names_the_group",
            "--exact",
            "--nocapture",
            "--test-threads=1",
        ])
        .env("OZ_TEST_EACCES_SOCKET", &socket)
        .uid(65534)
        .gid(65534)
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    let expected = format!(
        "MESSAGE: permission denied on the Docker socket {} for uid 65534: add this user to the socket's group (gid 4242), or run the worker container with --group-add 4242",
        socket.display()
    );
    assert!(
        stdout.contains(&format!("{expected}\n")),
        "child said:\n{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// A throwaway `docker-registry` on a free local port; killed on drop, with
/// the images the test pulled from it.
struct Registry {
    child: Child,
    port: u16,
    dir: PathBuf,
    docker: Docker,
}

impl Registry {
    fn start(docker: &Docker) -> Registry {
        let dir = std::env::temp_dir().join(format!("oz-registry-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let config = dir.join("config.yml");
        std::fs::write(
            &config,
            format!(
                "version: 0.1\nlog:\n  level: info\nstorage:\n  filesystem:\n    rootdirectory: {}\nhttp:\n  addr: 127.0.0.1:{port}\n",
                dir.join("data").display()
            ),
        )
        .unwrap();
        let mut child = Command::new("docker-registry")
            .args(["serve", config.to_str().unwrap()])
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("docker-registry");
        let mut log = BufReader::new(child.stderr.take().unwrap());
        let mut line = String::new();
        loop {
            line.clear();
            assert!(log.read_line(&mut line).unwrap() > 0, "registry exited");
            if line.contains("listening on") {
                break;
            }
        }
        // Keep draining its log so it never blocks on a full pipe.
        std::thread::spawn(move || for _ in log.lines() {});
        Registry {
            child,
            port,
            dir,
            docker: docker.clone(),
        }
    }

    fn image(&self, tag: &str) -> String {
        format!("localhost:{}/oz-test/pulled:{tag}", self.port)
    }
}

impl Drop for Registry {
    fn drop(&mut self) {
        let _ = self.docker.image_remove(&self.image("v1"));
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

fn docker_cli(args: &[&str]) {
    let out = Command::new("docker").args(args).output().unwrap();
    assert!(
        out.status.success(),
        "docker {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
fn pull_from_a_local_registry() {
    let d = docker();
    let registry = Registry::start(&d);
    let image = registry.image("v1");
    docker_cli(&["tag", IMAGE, &image]);
    docker_cli(&["push", &image]);
    d.image_remove(&image).unwrap();
    assert_eq!(d.image_inspect(&image).unwrap(), None);

    let repo = image.rsplit_once(':').unwrap().0;
    let platform = d.platform().unwrap();
    let mut statuses = Vec::new();
    d.image_pull(
        repo,
        "v1",
        &platform,
        None,
        &mut |p| statuses.push(p.status.clone()),
        &AbortSlot::new(),
    )
    .unwrap();
    assert!(
        statuses
            .iter()
            .any(|s| s.starts_with("Status: Downloaded newer image")),
        "{statuses:?}"
    );
    let info = d.image_inspect(&image).unwrap().unwrap();
    assert_eq!(format!("{}/{}", info.os, info.architecture), platform);
    assert_eq!(info.repo_digests.len(), 1);

    let err = d
        .image_pull(
            repo,
            "absent",
            &platform,
            None,
            &mut |_| {},
            &AbortSlot::new(),
        )
        .unwrap_err();
    // Refused before streaming: the status and the daemon's `message` survive.
    assert_eq!(err.status(), Some(404), "{err:?}");
    assert!(err.to_string().contains("manifest for"), "{err:?}");

    // A layer lost from the registry fails mid-stream, after the 200. The
    // layer must be new to the daemon, so build one of random bytes.
    d.image_remove(&image).unwrap();
    let ctx = registry.dir.join("ctx");
    std::fs::create_dir_all(&ctx).unwrap();
    // Larger than the busybox layer pushed above, so it is the largest blob.
    let mut noise = vec![0u8; 4 * 1024 * 1024];
    std::io::Read::read_exact(
        &mut std::fs::File::open("/dev/urandom").unwrap(),
        &mut noise,
    )
    .unwrap();
    std::fs::write(ctx.join("noise"), noise).unwrap();
    std::fs::write(
        ctx.join("Dockerfile"),
        "FROM scratch\nCOPY noise /noise\nLABEL oz-agent-worker.test=1\n",
    )
    .unwrap();
    docker_cli(&["build", "-q", "-t", &image, ctx.to_str().unwrap()]);
    docker_cli(&["push", &image]);
    d.image_remove(&image).unwrap();
    let blobs = registry.dir.join("data/docker/registry/v2/blobs/sha256");
    let largest = walk(&blobs)
        .into_iter()
        .max_by_key(|p| p.metadata().unwrap().len())
        .unwrap();
    std::fs::remove_file(largest).unwrap();
    let err = d
        .image_pull(repo, "v1", &platform, None, &mut |_| {}, &AbortSlot::new())
        .unwrap_err();
    assert!(matches!(err, DockerError::PullFailed { .. }), "{err:?}");
}

fn walk(dir: &std::path::Path) -> Vec<PathBuf> {
    let mut files = Vec::new();
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            files.extend(walk(&path));
        } else {
            files.push(path);
        }
    }
    files
}
