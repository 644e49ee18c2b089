//! A Docker daemon whose disk fills up: the real binary against a second,
//! real dockerd whose data root is a small tmpfs. The task that hits the
//! full disk fails with a message that says so and what to do; the worker
//! then rejects new tasks (as while Docker is away) until space is freed
//! and its probe succeeds, and then runs tasks again.

mod support;

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use oz_standin::{Options, Orchestrator};
use serde_json::json;
use support::process::WorkerProcess;
use support::tasks::{self, terminal};
use support::{BUSYBOX, SIDECAR, docker_cli};

const WAIT: Duration = Duration::from_secs(90);

/// A second dockerd on a tmpfs data root, stopped and unmounted on drop.
/// It has a bridge of its own: `--bridge=none` would make dockerd delete
/// the host's `docker0`, which the host's daemon (and every other test)
/// uses.
struct SmallDaemon {
    dir: PathBuf,
    root: PathBuf,
    sock: String,
    bridge: String,
    child: std::process::Child,
}

fn ip(args: &[&str]) {
    let status = Command::new("ip").args(args).status().unwrap();
    assert!(status.success(), "ip {args:?}");
}

impl SmallDaemon {
    fn start(mb: u32) -> SmallDaemon {
        let dir = PathBuf::from(format!("/tmp/oz-df-{}", std::process::id()));
        let root = dir.join("root");
        std::fs::create_dir_all(&root).unwrap();
        let mounted = Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={mb}m"), "tmpfs"])
            .arg(&root)
            .status()
            .unwrap();
        assert!(mounted.success(), "mounting a tmpfs needs root");
        let sock = format!("unix://{}", dir.join("docker.sock").display());
        let bridge = format!("ozdf{}", std::process::id() % 100_000);
        let _ = Command::new("ip").args(["link", "del", &bridge]).status();
        ip(&["link", "add", &bridge, "type", "bridge"]);
        ip(&["addr", "add", "10.213.77.1/24", "dev", &bridge]);
        ip(&["link", "set", &bridge, "up"]);
        // Not the host's /etc/docker/daemon.json.
        let config = dir.join("daemon.json");
        std::fs::write(&config, "{}").unwrap();
        let log = std::fs::File::create(dir.join("dockerd.log")).unwrap();
        let child = Command::new("dockerd")
            .arg("--data-root")
            .arg(&root)
            .arg("--exec-root")
            .arg(dir.join("exec"))
            .arg("--pidfile")
            .arg(dir.join("docker.pid"))
            .args(["-H", &sock])
            .arg("--config-file")
            .arg(&config)
            .arg(format!("--bridge={bridge}"))
            .args([
                "--iptables=false",
                "--ip-masq=false",
                "--storage-driver=vfs",
            ])
            .stdin(Stdio::null())
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .spawn()
            .expect("start a second dockerd");
        let daemon = SmallDaemon {
            dir,
            root,
            sock,
            bridge,
            child,
        };
        let deadline = Instant::now() + Duration::from_secs(60);
        // No event says a daemon is ready; asking it is the only way.
        while !daemon.cli(&["info"]).status.success() {
            assert!(
                Instant::now() < deadline,
                "the second dockerd did not answer; see {}",
                daemon.dir.join("dockerd.log").display()
            );
            std::thread::sleep(Duration::from_millis(200));
        }
        daemon
    }

    fn cli(&self, args: &[&str]) -> std::process::Output {
        Command::new("docker")
            .args(["-H", &self.sock])
            .args(args)
            .output()
            .unwrap()
    }

    /// Copies `images` from the host's daemon into this one.
    fn load(&self, images: &[&str]) {
        let tar = self.dir.join("images.tar");
        let mut args = vec!["save", "-o", tar.to_str().unwrap()];
        args.extend_from_slice(images);
        docker_cli(&args);
        let out = self.cli(&["load", "-i", tar.to_str().unwrap()]);
        assert!(out.status.success(), "{out:?}");
        std::fs::remove_file(tar).unwrap();
    }

    /// Fills the data root until a write fails, then frees `leave` bytes.
    fn fill(&self, leave: usize) -> PathBuf {
        let filler = self.root.join("filler");
        let mut f = std::fs::File::create(&filler).unwrap();
        let chunk = vec![0x5au8; 1 << 20];
        while f.write_all(&chunk).is_ok() {}
        let _ = f.sync_all();
        let len = f.metadata().unwrap().len();
        f.set_len(len.saturating_sub(leave as u64)).unwrap();
        filler
    }
}

impl Drop for SmallDaemon {
    fn drop(&mut self) {
        // SAFETY: a signal to our own child.
        unsafe {
            libc::kill(self.child.id() as i32, libc::SIGTERM);
        }
        let _ = self.child.wait();
        let _ = Command::new("umount").arg(&self.root).status();
        let _ = Command::new("ip")
            .args(["link", "del", &self.bridge])
            .status();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// An image whose container needs room on the daemon's disk: `vfs` copies
/// its whole file system (8 MB of noise over busybox) at create.
fn big_image(dir: &Path) -> String {
    let ctx = dir.join("big");
    std::fs::create_dir_all(&ctx).unwrap();
    let mut noise = vec![0u8; 8 << 20];
    let mut x: u64 = 0x2545_f491_4f6c_dd1d ^ u64::from(std::process::id());
    for b in noise.iter_mut() {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        *b = x as u8;
    }
    std::fs::write(ctx.join("noise"), &noise).unwrap();
    std::fs::write(
        ctx.join("Dockerfile"),
        format!("FROM {BUSYBOX}\nCOPY noise /noise\n"),
    )
    .unwrap();
    let tag = format!("oz-test/diskfull-{}:1", std::process::id());
    docker_cli(&["build", "-q", "-t", &tag, &ctx.display().to_string()]);
    tag
}

#[test]
fn a_full_disk_fails_one_task_plainly_then_tasks_are_rejected_until_space_is_back() {
    let daemon = SmallDaemon::start(96);
    let big = big_image(&daemon.dir);
    daemon.load(&[BUSYBOX, SIDECAR, &big]);
    docker_cli(&["rmi", &big]);

    let out = daemon.dir.join("out");
    std::fs::create_dir_all(&out).unwrap();
    let config = daemon.dir.join("config.yaml");
    // No task network of its own on this small daemon.
    std::fs::write(&config, "backend:\n  docker:\n    network: none\n").unwrap();
    let orch = Orchestrator::start(Options::default());
    let worker_id = format!("oz-diskfull-{}", std::process::id());
    let url = orch.url();
    let args = [
        "--worker-id",
        &worker_id,
        "--web-socket-url",
        &url,
        "--image-pull-policy",
        "Never",
        "--config-file",
        config.to_str().unwrap(),
        "-v",
        &format!("{}:/out", out.display()),
    ];
    let mut worker = WorkerProcess::start(
        &args,
        &[
            ("WARP_API_KEY", "oz-diskfull-test-key"),
            ("DOCKER_HOST", &daemon.sock),
        ],
    );
    assert!(orch.wait_until(|r| r.connected, WAIT), "{}", worker.text());
    let filler = daemon.fill(3 << 20);

    // The task that meets the full disk says so, and what to do.
    assert!(tasks::send_assignment(
        &orch,
        "T-full",
        &big,
        SIDECAR,
        json!({})
    ));
    let frames = orch.wait_for(|f| !terminal(f, "T-full").is_empty(), WAIT);
    let failed = terminal(&frames, "T-full")[0].clone();
    assert_eq!(failed["type"], "task_failed", "{failed}\n{}", worker.text());
    let message = failed["data"]["message"]
        .as_str()
        .unwrap_or_default()
        .to_owned();
    let message = if message.is_empty() {
        failed.to_string()
    } else {
        message
    };
    assert!(
        message.contains("no space left on device")
            && message.contains("the Docker daemon's disk is full")
            && message.contains("docker system df"),
        "{failed}"
    );

    // Then new tasks are rejected, as while Docker is away.
    assert!(worker.wait_count("rejecting new tasks until Docker can write again", 1, WAIT));
    let answer_to = |id: &str| {
        let answered = |f: &serde_json::Value| {
            f["data"]["task_id"] == id && (f["type"] == "task_rejected" || tasks::is_terminal(f))
        };
        let found = orch.wait_until(|r| r.received.iter().any(answered), WAIT);
        assert!(found, "no answer to {id}:\n{}", worker.text());
        let frames = orch.wait_for(|fs| fs.iter().any(answered), WAIT);
        frames.into_iter().find(answered).unwrap()
    };
    let mut attempt = 0;
    let rejected = loop {
        attempt += 1;
        let id = format!("T-while-{attempt}");
        assert!(tasks::send_assignment(
            &orch,
            &id,
            BUSYBOX,
            SIDECAR,
            json!({})
        ));
        let answer = answer_to(&id);
        if answer["type"] == "task_rejected" {
            break answer;
        }
        // The watch marks the disk full on its next look (every 5 s); a
        // task claimed before then fails on the disk the same way.
        assert!(attempt < 10, "never rejected: {answer}");
    };
    assert_eq!(
        rejected["data"]["reason"], "worker's Docker daemon has no disk space left",
        "{rejected}"
    );

    // Space back: the probe sees it and tasks run again.
    std::fs::remove_file(filler).unwrap();
    assert!(
        worker.wait_count("Docker can write again (its disk was full for", 1, WAIT),
        "{}",
        worker.text()
    );
    assert!(tasks::send_assignment(
        &orch,
        "T-after",
        &big,
        SIDECAR,
        json!({})
    ));
    let frames = orch
        .try_wait_for(|f| !terminal(f, "T-after").is_empty(), WAIT)
        .unwrap_or_else(|| panic!("T-after never ended:\n{}", worker.text()));
    assert_eq!(
        terminal(&frames, "T-after")[0]["type"],
        "task_completed",
        "{}",
        worker.text()
    );
    worker.signal(libc::SIGTERM);
    assert_eq!(worker.wait_exit(WAIT).and_then(|s| s.code()), Some(0));
}
