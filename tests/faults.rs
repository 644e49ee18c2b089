//! Fault injection against the real worker: the real Docker runner on the
//! real daemon, the stand-in orchestrator over real sockets. A connection
//! cut fifty times under a load of two hundred tasks, the worker SIGKILLed
//! mid-task ten times (each task adopted and reported by the next process),
//! two processes sharing a worker id and a daemon (one killed, the other
//! adopting its tasks), SIGTERM with every slot busy, and a registry that
//! stalls mid-download. Each test asserts what the orchestrator saw and that
//! no container of its worker id is left (the sidecar volume is reused by
//! design; the fixture's guard removes it).

mod support;

use std::collections::{HashMap, HashSet, VecDeque};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use oz_agent_worker::config::{self, Command, Config, PullPolicy};
use oz_agent_worker::connection::BackoffPolicy;
use oz_agent_worker::daemon::{Daemon, Hooks, Timings};
use oz_agent_worker::execute::DockerRunner;
use oz_agent_worker::task::{CancelToken, TaskOutcome, TaskRunner};
use oz_agent_worker::wire::{FailureReason, TaskAssignment};
use oz_standin::registry::{Registry, RegistryOpts};
use oz_standin::{Options, Orchestrator};
use serde_json::{Value, json};
use support::process::WorkerProcess;
use support::stall_proxy::StallProxy;
use support::tasks::{self, assign, count, held, is_terminal, terminal, worker_args};
use support::{Fixture, docker_cli};

const WAIT: Duration = Duration::from_secs(60);
const API_KEY: &str = "oz-faults-test-key";

/// A small deterministic generator (xorshift64*): the cut points of a run
/// are reproducible from its seed.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }
    /// Uniform-enough in `0..n` (n > 0).
    fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }
}

/// The real runner, counting how often each task was run.
struct Counting {
    inner: DockerRunner,
    runs: Mutex<HashMap<String, usize>>,
}

impl TaskRunner for Counting {
    fn run(&self, task: &TaskAssignment, cancel: &CancelToken) -> TaskOutcome {
        *self
            .runs
            .lock()
            .unwrap()
            .entry(task.task_id.clone())
            .or_default() += 1;
        self.inner.run(task, cancel)
    }
    fn delivered(&self, task_id: &str) {
        self.inner.delivered(task_id);
    }
    fn settle(&self, until: Instant) {
        self.inner.settle(until);
    }
}

fn config(fx: &Fixture, url: &str, extra: &[&str]) -> Config {
    let mut args: Vec<std::ffi::OsString> = vec![
        "--worker-id".into(),
        fx.worker_id.clone().into(),
        "--web-socket-url".into(),
        url.into(),
    ];
    args.extend(extra.iter().map(Into::into));
    match config::parse(args, &|k| (k == "WARP_API_KEY").then(|| API_KEY.into())).unwrap() {
        Command::Run(c) => c,
        _ => unreachable!(),
    }
}

/// Reconnects within tens of milliseconds, so fifty cuts cost seconds, not minutes.
fn fast_reconnect(s: &mut oz_agent_worker::connection::Settings) {
    s.backoff = BackoffPolicy {
        initial: Duration::from_millis(10),
        factor: 2,
        max: Duration::from_millis(50),
        jitter: 0.0,
    };
}

/// Task and helper containers are all gone; at most the one sidecar volume
/// stays, complete, for the next task (it is reused by design); no lease.
fn assert_only_the_sidecar_volume_left(fx: &Fixture) {
    fx.wait_no_containers(WAIT);
    // An in-process runner's lease is the fixture's: a clean stop releases it.
    fx.release_leases();
    let (_, volumes) = fx.leftovers();
    assert!(volumes.len() <= 1, "volumes left: {volumes:?}");
    assert_eq!(fx.leases(), Vec::<String>::new(), "leases left");
}

/// The answer (claim or rejection) to the latest sending of `id`.
#[derive(Debug, PartialEq)]
enum Answer {
    Claimed,
    Rejected,
}

#[test]
fn two_hundred_tasks_through_fifty_connection_cuts_end_exactly_once_each() {
    const TASKS: usize = 200;
    const CUTS: usize = 50;
    const SEED: u64 = 0x0dd5_eed5_2026;
    let mut fx = Fixture::new("cuts");
    let sidecar = fx.sidecar("cuts");
    let orch = Orchestrator::start(Options::default());
    let runner = Arc::new(Counting {
        inner: fx.runner(fx.settings()),
        runs: Mutex::default(),
    });
    let daemon = Daemon::start(
        &config(&fx, &orch.url(), &["--max-concurrent-tasks", "8"]),
        runner.clone(),
        &|_| None,
        Timings {
            connection: fast_reconnect,
        },
        Hooks::default(),
    )
    .unwrap();
    assert!(orch.wait_until(|r| r.connected, WAIT));

    let started = Instant::now();
    let mut rng = Rng(SEED);
    let mut queue: VecDeque<String> = (0..TASKS).map(|i| format!("c{i:03}")).collect();
    let (mut cuts, mut sends, mut rejections) = (0, 0, 0);
    let finished = |frames: &[Value]| {
        frames
            .iter()
            .filter(|f| is_terminal(f))
            .map(|f| f["data"]["task_id"].clone())
            .collect::<HashSet<_>>()
            .len()
    };
    while let Some(id) = queue.pop_front() {
        let frames = orch.received();
        // A claim can reach us late (re-sent after a cut); a claimed task is
        // never sent again, as the orchestrator would not.
        if count(&frames, "task_claimed", &id) > 0 {
            continue;
        }
        // Spread the cuts over the run: the odds rise as the work left shrinks.
        if cuts < CUTS && rng.below(queue.len() + 1) < CUTS - cuts {
            orch.drop_connection();
            cuts += 1;
        }
        let answered = |f: &[Value]| count(f, "task_claimed", &id) + count(f, "task_rejected", &id);
        let before = answered(&frames);
        assert!(orch.wait_until(|r| r.connected, WAIT), "no reconnect");
        assert!(tasks::send_assignment(
            &orch,
            &id,
            support::BUSYBOX,
            &sidecar,
            json!({})
        ));
        sends += 1;
        let frames = orch.wait_for(|f| answered(f) > before, WAIT);
        let answer = if count(&frames, "task_claimed", &id) > 0 {
            Answer::Claimed
        } else {
            Answer::Rejected
        };
        if answer == Answer::Rejected {
            rejections += 1;
            queue.push_back(id);
            // The orchestrator keeps it queued: try again once a slot frees.
            let done = finished(&frames);
            orch.wait_for(|f| finished(f) > done, WAIT);
        }
    }
    orch.wait_for(|f| finished(f) == TASKS, Duration::from_secs(600));
    let elapsed = started.elapsed();

    let report = daemon.shutdown();
    assert_eq!(report.tasks_left, 0);
    assert_eq!(report.unacknowledged, 0);
    assert!(report.closed_cleanly);
    let frames = orch.received();
    let runs = runner.runs.lock().unwrap().clone();
    for i in 0..TASKS {
        let id = format!("c{i:03}");
        let ends = terminal(&frames, &id);
        let expected = json!({"type": "task_completed",
            "data": {"task_id": id, "message": "Task completed successfully"}});
        // Exactly once: none lost, none duplicated. (The stand-in, like a
        // server going down, answers what it already read before it closes,
        // so the pong that acknowledges those messages gets out.)
        assert_eq!(ends, vec![&expected], "{id}");
        assert_eq!(
            runs.get(&id),
            Some(&1),
            "{id} ran {:?} times",
            runs.get(&id)
        );
        let first = |kind: &str| {
            frames
                .iter()
                .position(|f| f["type"] == kind && f["data"]["task_id"] == id)
        };
        assert!(first("task_claimed") < first("task_completed"), "{id}");
    }
    assert_eq!(runs.len(), TASKS, "runs of unknown tasks: {runs:?}");
    assert_eq!(cuts, CUTS);
    assert!(
        rejections > 0,
        "no task was ever rejected: the test lost its point"
    );
    let accepted = orch
        .handshakes()
        .iter()
        .filter(|h| h.rejected_with.is_none())
        .count();
    assert_eq!(accepted, CUTS + 1, "one connection per cut, plus the first");
    eprintln!(
        "{TASKS} tasks, {sends} sends, {rejections} rejections, {cuts} cuts, \
         in {elapsed:?}"
    );
    assert_only_the_sidecar_volume_left(&fx);
}

/// The one task container of `id`.
fn container_of(fx: &Fixture, id: &str) -> String {
    let task = format!("dev.warp.oz-agent-worker.task-id={id}");
    let list = fx
        .docker
        .list_by_label(&[&fx.worker_label(), &task])
        .unwrap();
    assert_eq!(list.len(), 1, "{id}: {list:?}");
    list[0].id.clone()
}

/// The terminal message an exit status gives.
fn ended_with(id: &str, exit: usize) -> Value {
    if exit == 0 {
        json!({"type": "task_completed", "data": {"task_id": id, "message": "Task completed successfully"}})
    } else {
        json!({"type": "task_failed", "data": {"task_id": id,
            "message": format!("Failed to execute task: container exited with non-zero status: {exit}"),
            "failure_reason": "container_exit", "exit_code": exit}})
    }
}

#[test]
fn a_worker_sigkilled_mid_task_ten_times_loses_no_task() {
    const KILLS: usize = 10;
    let mut fx = Fixture::new("kill10");
    let sidecar = fx.sidecar("kill10");
    let orch = Orchestrator::start(Options::default());
    let args = worker_args(
        &fx,
        &orch.url(),
        &["--lease-ttl", "3s", "--reap-interval", "200ms"],
    );
    let env = [("WARP_API_KEY", API_KEY)];
    let mut worker = WorkerProcess::start(&tasks::strs(&args), &env);
    for round in 0..KILLS {
        assert!(
            orch.wait_until(|r| r.connected && r.handshakes.len() == round + 1, WAIT),
            "round {round}: no connection\n{}",
            worker.text()
        );
        let id = format!("k{round}");
        assign(&orch, &id, &sidecar, held(&id, round));
        assert!(
            worker.wait_count("started container", 1, WAIT),
            "round {round}:\n{}",
            worker.text()
        );
        worker.signal(libc::SIGKILL);
        worker.wait_exit(WAIT).expect("killed");
        // Odd rounds: the task ends while no worker process runs at all.
        let finished_alone = round % 2 == 1;
        if finished_alone {
            let container = container_of(&fx, &id);
            fx.release(&id);
            let status = fx
                .docker
                .wait(&container, &oz_agent_worker::docker::AbortSlot::new())
                .unwrap();
            assert_eq!(status.status_code, round as i64);
        }

        worker = WorkerProcess::start(&tasks::strs(&args), &env);
        assert!(
            worker.wait_count(&format!("adopted task {id} "), 1, WAIT),
            "round {round}:\n{}",
            worker.text()
        );
        if !finished_alone {
            fx.release(&id);
        }
        let frames = orch.wait_for(|f| !terminal(f, &id).is_empty(), WAIT);
        assert_eq!(
            terminal(&frames, &id),
            vec![&ended_with(&id, round)],
            "round {round}"
        );
        fx.wait_no_containers(WAIT);
    }
    assert!(orch.wait_until(|r| r.connected && r.handshakes.len() == KILLS + 1, WAIT));
    // The last incarnation still works, and nothing was reported twice.
    assign(&orch, "after", &sidecar, json!({}));
    let frames = orch.wait_for(|f| !terminal(f, "after").is_empty(), WAIT);
    assert_eq!(terminal(&frames, "after")[0]["type"], "task_completed");
    for round in 0..KILLS {
        assert_eq!(terminal(&frames, &format!("k{round}")).len(), 1, "k{round}");
    }
    worker.signal(libc::SIGTERM);
    assert_eq!(worker.wait_exit(WAIT).and_then(|s| s.code()), Some(0));
    assert_only_the_sidecar_volume_left(&fx);
}

#[test]
fn two_workers_sharing_an_id_and_a_daemon_keep_off_each_others_tasks_until_one_dies() {
    let mut fx = Fixture::new("pair");
    let sidecar = fx.sidecar("pair");
    let (orch_a, orch_b) = (
        Orchestrator::start(Options::default()),
        Orchestrator::start(Options::default()),
    );
    // Long enough that a renewal delayed by a loaded machine never lets a
    // live process look gone; short enough to keep the test quick.
    let extra = [
        "--lease-ttl",
        "6s",
        "--reap-interval",
        "200ms",
        "--log-level",
        "debug",
    ];
    let env = [("WARP_API_KEY", API_KEY)];
    let a = WorkerProcess::start(&tasks::strs(&worker_args(&fx, &orch_a.url(), &extra)), &env);
    let mut b = WorkerProcess::start(&tasks::strs(&worker_args(&fx, &orch_b.url(), &extra)), &env);
    assert!(orch_a.wait_until(|r| r.connected, WAIT), "{}", a.text());
    assert!(orch_b.wait_until(|r| r.connected, WAIT), "{}", b.text());
    let (ids_a, ids_b) = (["a1", "a2", "a3"], ["b1", "b2", "b3"]);
    for (n, id) in ids_a.iter().enumerate() {
        assign(&orch_a, id, &sidecar, held(id, n));
    }
    for (n, id) in ids_b.iter().enumerate() {
        assign(&orch_b, id, &sidecar, held(id, n + 3));
    }
    assert!(a.wait_count("started container", 3, WAIT), "{}", a.text());
    assert!(b.wait_count("started container", 3, WAIT), "{}", b.text());
    // Ten passes each, after every task started: nobody's task is touched.
    let passes = |w: &WorkerProcess| {
        w.lines()
            .iter()
            .filter(|l| l.contains("reaper pass"))
            .count()
    };
    let (pa, pb) = (passes(&a), passes(&b));
    assert!(a.wait_count("reaper pass", pa + 10, WAIT), "{}", a.text());
    assert!(b.wait_count("reaper pass", pb + 10, WAIT), "{}", b.text());
    let list = fx.docker.list_by_label(&[&fx.worker_label()]).unwrap();
    assert_eq!(list.iter().filter(|c| c.state == "running").count(), 6);
    for w in [&a, &b] {
        assert!(!w.text().contains("adopted task"), "{}", w.text());
        assert!(!w.text().contains("removing leftover"), "{}", w.text());
    }

    a.signal(libc::SIGKILL);
    assert!(b.wait_count("adopted task", 3, WAIT), "{}", b.text());
    for id in ids_a.iter().chain(&ids_b) {
        fx.release(id);
    }
    let all = |f: &[Value]| {
        ids_a
            .iter()
            .chain(&ids_b)
            .all(|id| !terminal(f, id).is_empty())
    };
    let frames = orch_b.wait_for(all, WAIT);
    for (n, id) in ids_a.iter().chain(&ids_b).enumerate() {
        assert_eq!(terminal(&frames, id), vec![&ended_with(id, n)], "{id}");
    }
    for id in ids_a {
        assert!(terminal(&orch_a.received(), id).is_empty());
    }
    fx.wait_no_containers(WAIT);
    b.signal(libc::SIGTERM);
    assert_eq!(b.wait_exit(WAIT).and_then(|s| s.code()), Some(0));
    // The killed process's lease ran out; the survivor's reaper removed it.
    assert_eq!(fx.leases(), Vec::<String>::new());
}

#[test]
fn sigterm_with_eight_running_tasks_reports_eight_graceful_shutdowns() {
    const SLOTS: usize = 8;
    let mut fx = Fixture::new("term8");
    let sidecar = fx.sidecar("term8");
    let orch = Orchestrator::start(Options::default());
    let args = worker_args(&fx, &orch.url(), &["--max-concurrent-tasks", "8"]);
    let mut worker = WorkerProcess::start(&tasks::strs(&args), &[("WARP_API_KEY", API_KEY)]);
    assert!(orch.wait_until(|r| r.connected, WAIT), "{}", worker.text());
    let ids: Vec<String> = (0..SLOTS).map(|i| format!("g{i}")).collect();
    for id in &ids {
        assign(&orch, id, &sidecar, json!({"OZ_TEST_SLEEP": "300"}));
    }
    assert!(
        worker.wait_count("started container", SLOTS, Duration::from_secs(120)),
        "{}",
        worker.text()
    );
    assert_eq!(fx.leftovers().0.len(), SLOTS);
    worker.signal(libc::SIGTERM);
    let status = worker.wait_exit(WAIT).expect("the worker exits");
    assert_eq!(status.code(), Some(0), "{}", worker.text());
    let frames = orch.received();
    for id in &ids {
        let ends = terminal(&frames, id);
        assert_eq!(ends.len(), 1, "{id}: {frames:?}");
        assert_eq!(
            *ends[0],
            json!({"type": "task_failed", "data": {"task_id": id,
                "message": "The task was interrupted due to an infrastructure issue (context canceled). This is typically transient — please try again.",
                "failure_reason": "graceful_shutdown"}})
        );
    }
    assert_eq!(frames.iter().filter(|f| is_terminal(f)).count(), SLOTS);
    assert_eq!(orch.close_code(), Some(1000));
    assert_only_the_sidecar_volume_left(&fx);
}

/// An image with one layer of incompressible bytes that this host has never
/// held, pushed to `registry` and then removed locally, so pulling it must
/// download the whole layer.
fn push_fresh_image(fx: &mut Fixture, registry: &Registry) -> String {
    let dir = fx.out.join("fresh-image");
    std::fs::create_dir_all(&dir).unwrap();
    let mut noise = vec![0u8; 1 << 20];
    let mut rng = Rng(std::process::id() as u64 | 1);
    for chunk in noise.chunks_mut(8) {
        let n = chunk.len();
        chunk.copy_from_slice(&rng.next().to_le_bytes()[..n]);
    }
    std::fs::write(dir.join("noise"), &noise).unwrap();
    std::fs::write(dir.join("Dockerfile"), "FROM scratch\nCOPY noise /noise\n").unwrap();
    let local = format!("oz-test/stall-{}:1", fx.worker_id.to_lowercase());
    fx.forget_tag(&local);
    docker_cli(&["build", "-q", "-t", &local, &dir.display().to_string()]);
    let pushed = registry.push(&local, "oz-stall/noise:1").unwrap();
    fx.docker.image_remove(&local).unwrap();
    pushed
}

#[test]
fn a_registry_that_stalls_mid_blob_fails_the_pull_with_a_plain_message() {
    let mut fx = Fixture::new("stallblob");
    let registry = Registry::start(RegistryOpts::default());
    let pushed = push_fresh_image(&mut fx, &registry);
    assert!(fx.docker.image_inspect(&pushed).unwrap().is_none());
    let proxy = StallProxy::start(registry.addr(), 16 * 1024);
    let image = format!("{}/oz-stall/noise:1", proxy.addr());
    fx.forget_tag(&image);
    let stall = Duration::from_secs(3);
    let mut settings = fx.settings();
    settings.images.policy = PullPolicy::Always;
    settings.images.pull_stall_timeout = stall;
    let runner = fx.runner(settings);
    let task = fx.assignment("T-stallblob", "", json!({"docker_image": image}));

    let began = Instant::now();
    let outcome = runner.run(&task, &CancelToken::new());
    let took = began.elapsed();
    assert!(proxy.stalled() >= 1, "the proxy never cut a blob");
    assert_eq!(
        outcome,
        TaskOutcome::failed(
            FailureReason::ImagePull,
            format!(
                "failed to pull image {image}: the pull stalled (no progress from the registry for 3s) and was aborted; check the registry and the network between it and the Docker daemon"
            )
        )
    );
    assert!(took >= stall && took < stall + WAIT, "{took:?}");
    assert!(fx.docker.image_inspect(&image).unwrap().is_none());
    fx.assert_nothing_left();
}
