//! The ownership protocol on the real binary, the real daemon and the
//! stand-in orchestrator, under the faults that broke it before: a task
//! image that carries the worker's own labels, a second replica that
//! follows another's task and is then stopped, and `docker volume prune`
//! under the running tasks of two replicas. Each test asserts what the
//! orchestrator saw (one terminal message per task, from its owner, with
//! its real exit code) and that nothing is left.

mod support;

use std::time::Duration;

use oz_standin::{Options, Orchestrator};
use serde_json::{Value, json};
use support::process::WorkerProcess;
use support::tasks::{self, assign, held, send_assignment, terminal, worker_args};
use support::{BUSYBOX, Fixture, docker_cli};

const WAIT: Duration = Duration::from_secs(90);
const API_KEY: &str = "oz-ownership-test-key";

fn ended_with(id: &str, exit: usize) -> Value {
    if exit == 0 {
        json!({"type": "task_completed", "data": {"task_id": id, "message": "Task completed successfully"}})
    } else {
        json!({"type": "task_failed", "data": {"task_id": id,
            "message": format!("Failed to execute task: container exited with non-zero status: {exit}"),
            "failure_reason": "container_exit", "exit_code": exit}})
    }
}

/// Short leases, a reaper that looks often, debug logs.
const FAST: [&str; 6] = [
    "--lease-ttl",
    "6s",
    "--reap-interval",
    "200ms",
    "--log-level",
    "debug",
];

fn start(fx: &Fixture, orch: &Orchestrator, extra: &[&str]) -> WorkerProcess {
    let mut args: Vec<&str> = FAST.to_vec();
    args.extend_from_slice(extra);
    let w = WorkerProcess::start(
        &tasks::strs(&worker_args(fx, &orch.url(), &args)),
        &[("WARP_API_KEY", API_KEY)],
    );
    assert!(orch.wait_until(|r| r.connected, WAIT), "{}", w.text());
    w
}

/// A task image carrying every label the worker reads, with values meant to
/// mislead it: a helper's role, a shared volume, a far deadline, another
/// owner, a key of another execution.
fn forged_image(fx: &mut Fixture) -> String {
    let tag = format!("oz-test/forged-{}:latest", fx.worker_id.to_lowercase());
    let dir = fx.out.join("forged-image");
    std::fs::create_dir_all(&dir).unwrap();
    let p = "dev.warp.oz-agent-worker";
    std::fs::write(
        dir.join("Dockerfile"),
        format!(
            "FROM {BUSYBOX}\nLABEL {p}.role=task-sidecar {p}.volume=oz-victim-volume \
             {p}.deadline=18446744073709551615 {p}.instance=someone-else {p}.keep=true \
             {p}.exec-key=0000 {p}.generation=99 {p}.reported=true {p}.container=x \
             {p}.lease-ttl=1 {p}.sidecar-image=x {p}.fill-id=x\n"
        ),
    )
    .unwrap();
    docker_cli(&["build", "-q", "-t", &tag, dir.to_str().unwrap()]);
    fx.forget_tag(&tag);
    tag
}

#[test]
fn a_task_image_labelled_as_the_worker_is_adopted_reported_and_removed_as_if_unlabelled() {
    let mut fx = Fixture::new("forged");
    let sidecar = fx.sidecar("forged");
    let image = forged_image(&mut fx);
    let orch = Orchestrator::start(Options::default());
    let worker = start(&fx, &orch, &["--task-timeout", "0s"]);
    assert!(send_assignment(
        &orch,
        "forged",
        &image,
        &sidecar,
        held("forged", 7)
    ));
    assert!(
        worker.wait_count("started container", 1, WAIT),
        "{}",
        worker.text()
    );
    // The worker's labels are the worker's: written empty where unset.
    let c = &fx.docker.list_by_label(&[&fx.worker_label()]).unwrap()[0];
    let l = |k: &str| {
        c.labels
            .get(&format!("dev.warp.oz-agent-worker.{k}"))
            .cloned()
    };
    assert_eq!(l("role").as_deref(), Some(""));
    assert_eq!(l("volume").as_deref(), Some(""));
    assert_eq!(l("deadline").as_deref(), Some(""));
    assert_eq!(l("keep").as_deref(), Some("false"));
    assert_eq!(l("reported").as_deref(), Some(""));
    assert_ne!(l("instance").as_deref(), Some("someone-else"));
    assert_ne!(l("exec-key").as_deref(), Some("0000"));

    // Killed mid-task: the next process adopts the task once the old lease
    // has been seen unchanged for a whole ttl, and reports it once.
    worker.signal(libc::SIGKILL);
    let mut next = start(&fx, &orch, &["--task-timeout", "0s"]);
    assert!(next.wait_count("adopted task", 1, WAIT), "{}", next.text());
    fx.release("forged");
    let frames = orch.wait_for(|f| !terminal(f, "forged").is_empty(), WAIT);
    assert_eq!(terminal(&frames, "forged"), vec![&ended_with("forged", 7)]);
    fx.wait_no_containers(WAIT);
    assert!(!next.text().contains("panicked"), "{}", next.text());
    next.signal(libc::SIGTERM);
    assert_eq!(next.wait_exit(WAIT).and_then(|s| s.code()), Some(0));
    let (_, volumes) = fx.leftovers();
    assert!(volumes.len() <= 1, "volumes left: {volumes:?}");
}

#[test]
fn a_replica_that_follows_another_ones_task_and_is_stopped_leaves_it_running() {
    let mut fx = Fixture::new("follower");
    let sidecar = fx.sidecar("follower");
    let (orch_a, orch_b) = (
        Orchestrator::start(Options::default()),
        Orchestrator::start(Options::default()),
    );
    let a = start(&fx, &orch_a, &[]);
    let mut b = start(&fx, &orch_b, &[]);
    assign(&orch_a, "shared", &sidecar, held("shared", 3));
    assert!(a.wait_count("started container", 1, WAIT), "{}", a.text());
    // Oz sends the same execution to the second replica: it follows.
    assign(&orch_b, "shared", &sidecar, held("shared", 3));
    let claimed = orch_b.wait_for(|f| tasks::count(f, "task_claimed", "shared") == 1, WAIT);
    assert_eq!(tasks::count(&claimed, "task_claimed", "shared"), 1);
    // Stopped in the default (cancel) mode, it stops nothing it does not own.
    b.signal(libc::SIGTERM);
    assert_eq!(b.wait_exit(WAIT).and_then(|s| s.code()), Some(0));
    assert!(
        b.text()
            .contains("its container belongs to another live worker process"),
        "{}",
        b.text()
    );
    let list = fx.docker.list_by_label(&[&fx.worker_label()]).unwrap();
    assert_eq!(
        list.iter().filter(|c| c.state == "running").count(),
        1,
        "the owner's container runs on"
    );
    fx.release("shared");
    let frames = orch_a.wait_for(|f| !terminal(f, "shared").is_empty(), WAIT);
    assert_eq!(terminal(&frames, "shared"), vec![&ended_with("shared", 3)]);
    let sent_by_b = orch_b.received();
    assert!(
        terminal(&sent_by_b, "shared").is_empty(),
        "the follower reports nothing: {sent_by_b:?}\n{}",
        b.text()
    );
    fx.wait_no_containers(WAIT);
}

#[test]
fn a_volume_prune_under_two_replicas_adopts_nothing_and_the_leases_come_back() {
    let mut fx = Fixture::new("prune");
    let sidecar = fx.sidecar("prune");
    let (orch_a, orch_b) = (
        Orchestrator::start(Options::default()),
        Orchestrator::start(Options::default()),
    );
    let mut a = start(&fx, &orch_a, &[]);
    let mut b = start(&fx, &orch_b, &[]);
    assign(&orch_a, "pa", &sidecar, held("pa", 4));
    assign(&orch_b, "pb", &sidecar, held("pb", 5));
    assert!(a.wait_count("started container", 1, WAIT), "{}", a.text());
    assert!(b.wait_count("started container", 1, WAIT), "{}", b.text());
    // Engine 20.10 removes every volume no container uses: leases, claims.
    docker_cli(&["volume", "prune", "-f"]);
    // Three ttls of reaper passes on both sides after the prune.
    let passes = |w: &WorkerProcess| {
        w.lines()
            .iter()
            .filter(|l| l.contains("reaper pass"))
            .count()
    };
    let (pa, pb) = (passes(&a), passes(&b));
    assert!(a.wait_count("reaper pass", pa + 90, WAIT), "{}", a.text());
    assert!(b.wait_count("reaper pass", pb + 90, WAIT), "{}", b.text());
    for w in [&a, &b] {
        assert!(!w.text().contains("adopted task"), "{}", w.text());
        assert!(!w.text().contains("removing leftover"), "{}", w.text());
    }
    assert_eq!(fx.leases().len(), 2, "each replica made its lease again");
    fx.release("pa");
    fx.release("pb");
    let frames_a = orch_a.wait_for(|f| !terminal(f, "pa").is_empty(), WAIT);
    let frames_b = orch_b.wait_for(|f| !terminal(f, "pb").is_empty(), WAIT);
    assert_eq!(terminal(&frames_a, "pa"), vec![&ended_with("pa", 4)]);
    assert_eq!(terminal(&frames_b, "pb"), vec![&ended_with("pb", 5)]);
    fx.wait_no_containers(WAIT);
    for w in [&mut a, &mut b] {
        w.signal(libc::SIGTERM);
        assert_eq!(w.wait_exit(WAIT).and_then(|s| s.code()), Some(0));
    }
}

/// A socat relay from a socket path of the test's to the daemon's, in its
/// own process group: the workers reach Docker only through it.
struct Relay {
    path: std::path::PathBuf,
    child: Option<std::process::Child>,
}

impl Relay {
    fn start(path: &std::path::Path) -> Relay {
        let _ = std::fs::remove_file(path);
        let child = std::process::Command::new("setsid")
            .args([
                "socat",
                &format!("UNIX-LISTEN:{},fork,unlink-early", path.display()),
                "UNIX-CONNECT:/var/run/docker.sock",
            ])
            .stdin(std::process::Stdio::null())
            .spawn()
            .expect("socat (installed by .ci/setup-host)");
        // No event says the listener is ready: the socket file appears.
        let deadline = std::time::Instant::now() + WAIT;
        while !path.exists() {
            assert!(std::time::Instant::now() < deadline, "socat never listened");
            std::thread::sleep(Duration::from_millis(20));
        }
        Relay {
            path: path.to_owned(),
            child: Some(child),
        }
    }

    /// Stops accepting: connections already open go on (their forked
    /// children live), new ones are refused.
    fn refuse_new(&mut self) {
        if let Some(mut c) = self.child.take() {
            // SAFETY: a plain signal to the listener alone.
            unsafe { libc::kill(c.id() as i32, libc::SIGKILL) };
            let _ = c.wait();
        }
    }

    /// Cuts everything: the listener and every open connection.
    fn cut(&mut self) {
        if let Some(mut c) = self.child.take() {
            // SAFETY: a plain signal to the relay's own process group.
            unsafe { libc::kill(-(c.id() as i32), libc::SIGKILL) };
            let _ = c.wait();
        }
        self.kill_children();
    }

    fn kill_children(&self) {
        let _ = std::process::Command::new("pkill")
            .args([
                "-KILL",
                "-f",
                &format!("UNIX-LISTEN:{}", self.path.display()),
            ])
            .status();
    }
}

impl Drop for Relay {
    fn drop(&mut self) {
        self.cut();
        let _ = std::fs::remove_file(&self.path);
    }
}

/// Two workers with one id reach Docker only through `relay`, each with a
/// held task; `outage` happens to the relay for 45 s; afterwards each task
/// is reported once, by its own worker, with its own exit code, and nobody
/// adopted anything.
fn two_workers_through_an_outage(case: &str, outage: impl FnOnce(&mut Relay)) {
    let mut fx = Fixture::new(case);
    let sidecar = fx.sidecar(case);
    let path = fx.out.join("docker.sock");
    let mut relay = Relay::start(&path);
    let host = format!("unix://{}", path.display());
    let (orch_a, orch_b) = (
        Orchestrator::start(Options::default()),
        Orchestrator::start(Options::default()),
    );
    let start_via_relay = |orch: &Orchestrator| {
        let w = WorkerProcess::start(
            &tasks::strs(&worker_args(&fx, &orch.url(), &FAST)),
            &[("WARP_API_KEY", API_KEY), ("DOCKER_HOST", host.as_str())],
        );
        assert!(orch.wait_until(|r| r.connected, WAIT), "{}", w.text());
        w
    };
    let mut a = start_via_relay(&orch_a);
    let mut b = start_via_relay(&orch_b);
    let (ia, ib) = (format!("{case}-a"), format!("{case}-b"));
    assign(&orch_a, &ia, &sidecar, held(&ia, 6));
    assign(&orch_b, &ib, &sidecar, held(&ib, 7));
    assert!(a.wait_count("started container", 1, WAIT), "{}", a.text());
    assert!(b.wait_count("started container", 1, WAIT), "{}", b.text());

    outage(&mut relay);
    // The outage itself is what is tested: 45 s, longer than the 6 s lease.
    std::thread::sleep(Duration::from_secs(45));
    drop(relay);
    let _relay = Relay::start(&path);
    fx.release(&ia);
    fx.release(&ib);
    let frames_a = orch_a.wait_for(|f| !terminal(f, &ia).is_empty(), WAIT);
    let frames_b = orch_b.wait_for(|f| !terminal(f, &ib).is_empty(), WAIT);
    assert_eq!(
        terminal(&frames_a, &ia),
        vec![&ended_with(&ia, 6)],
        "{}",
        a.text()
    );
    assert_eq!(
        terminal(&frames_b, &ib),
        vec![&ended_with(&ib, 7)],
        "{}",
        b.text()
    );
    assert!(terminal(&orch_a.received(), &ib).is_empty());
    assert!(terminal(&orch_b.received(), &ia).is_empty());
    for w in [&a, &b] {
        assert!(!w.text().contains("adopted task"), "{}", w.text());
    }
    fx.wait_no_containers(WAIT);
    for w in [&mut a, &mut b] {
        w.signal(libc::SIGTERM);
        assert_eq!(w.wait_exit(WAIT).and_then(|s| s.code()), Some(0));
    }
}

#[test]
fn the_docker_socket_cut_for_45_s_under_two_workers_fails_and_moves_nothing() {
    two_workers_through_an_outage("sockcut", Relay::cut);
}

#[test]
fn new_docker_connections_refused_for_45_s_under_two_workers_fail_and_move_nothing() {
    two_workers_through_an_outage("refused", Relay::refuse_new);
}
