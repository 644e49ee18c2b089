//! Tasks outliving their worker process, on the real daemon and in process:
//! a runner detaches from a running container and releases its lease (a
//! clean stop), another instance's reaper pass adopts it (or reports it
//! from the daemon's record when it ended while nobody watched, or removes
//! it when it never started); a live instance's containers are never
//! touched; an instance without a lease is judged gone only after a whole
//! ttl of observation; claims have one winner; the reaper removes only
//! what gone instances left.

mod support;

use std::sync::{Arc, Mutex};
use std::thread;
use std::time::{Duration, SystemTime};

use oz_agent_worker::dispatch::AdoptedTask;
use oz_agent_worker::execute::names::{LABEL_INSTANCE, LABEL_ROLE};
use oz_agent_worker::execute::{DockerRunner, claims, reaper};
use oz_agent_worker::task::{CancelCause, CancelToken, TaskOutcome, TaskRunner};
use oz_agent_worker::wire::FailureReason;
use serde_json::json;
use support::{BUSYBOX, Fixture};

const WAIT: Duration = Duration::from_secs(60);
/// The task timeout of the tasks started here.
const TIMEOUT: Duration = Duration::from_secs(3600);

fn runner(fx: &Fixture, instance: &str) -> Arc<DockerRunner> {
    let mut settings = fx.settings();
    settings.instance = instance.into();
    Arc::new(fx.runner(settings))
}

/// The ttl of runners that must judge another process gone in a test.
const SHORT_TTL: Duration = Duration::from_secs(3);

/// A runner judging others with [`SHORT_TTL`].
fn short_runner(fx: &Fixture, instance: &str) -> Arc<DockerRunner> {
    let mut settings = fx.settings();
    settings.instance = instance.into();
    settings.lease_ttl = SHORT_TTL;
    Arc::new(fx.runner(settings))
}

/// Reaper passes every 200 ms (a judgement needs observations all along
/// its window; no event marks the end of a ttl) until `done` holds for
/// what they did together, or a minute is up.
fn passes_until(
    sink: &Sink,
    runner: &Arc<DockerRunner>,
    done: impl Fn(&reaper::ReapReport) -> bool,
) -> reaper::ReapReport {
    let mut total = reaper::ReapReport::default();
    let deadline = std::time::Instant::now() + WAIT;
    loop {
        let r = sink.pass(runner);
        total.adopted += r.adopted;
        total.containers += r.containers;
        total.volumes += r.volumes;
        if done(&total) || std::time::Instant::now() > deadline {
            return total;
        }
        thread::sleep(Duration::from_millis(200));
    }
}

/// Waits until `n` claim volumes exist (an adopted task claims on its own thread).
fn wait_claims(fx: &Fixture, n: usize) {
    let deadline = std::time::Instant::now() + WAIT;
    while records(fx, "claim").len() < n {
        assert!(std::time::Instant::now() < deadline, "no claim made");
        thread::sleep(Duration::from_millis(20));
    }
}

/// Adopted tasks, collected instead of handed to a dispatcher.
#[derive(Default, Clone)]
struct Sink(Arc<Mutex<Vec<AdoptedTask>>>);

impl Sink {
    fn take(&self) -> Vec<AdoptedTask> {
        std::mem::take(&mut *self.0.lock().unwrap())
    }
    fn pass(&self, runner: &Arc<DockerRunner>) -> reaper::ReapReport {
        let sink = self.clone();
        reaper::pass(
            runner,
            &move |t| {
                sink.0.lock().unwrap().push(t);
                true
            },
            Duration::ZERO,
        )
        .unwrap()
    }
}

/// Runs `task_id` on `runner` in a thread until its container has started,
/// then detaches it (as a worker stopping in detach mode does).
fn start_and_detach(
    fx: &Fixture,
    runner: &Arc<DockerRunner>,
    sidecar: &str,
    task_id: &str,
    exit: u8,
) {
    let task = fx.assignment(
        task_id,
        sidecar,
        json!({"env_vars": {"OZ_TEST_OUT": "/out", "OZ_TEST_UNTIL": format!("/out/release-{task_id}"), "OZ_TEST_EXIT": exit.to_string()}}),
    );
    let cancel = CancelToken::new();
    // As the dispatcher sets it at claim time: the label carries it on.
    cancel.set_deadline(SystemTime::now() + TIMEOUT);
    let (r, c) = (runner.clone(), cancel.clone());
    let worker = thread::spawn(move || r.run(&task, &c));
    wait_running(fx, task_id);
    cancel.cancel(CancelCause::Detach);
    assert_eq!(worker.join().unwrap(), TaskOutcome::Detached);
}

/// Waits (on the daemon's own `wait`-free state) until `task_id`'s container runs.
fn wait_running(fx: &Fixture, task_id: &str) {
    let label = format!("dev.warp.oz-agent-worker.task-id={task_id}");
    let deadline = std::time::Instant::now() + WAIT;
    loop {
        let list = fx
            .docker
            .list_by_label(&[&fx.worker_label(), &label])
            .unwrap();
        if list.iter().any(|c| c.state == "running") {
            return;
        }
        // No event says "this container started" to a test outside the runner.
        assert!(
            std::time::Instant::now() < deadline,
            "{task_id} never started"
        );
        thread::sleep(Duration::from_millis(50));
    }
}

fn release(fx: &Fixture, task_id: &str) {
    std::fs::write(fx.out.join(format!("release-{task_id}")), b"").unwrap();
}

fn running_containers(fx: &Fixture) -> usize {
    let list = fx.docker.list_by_label(&[&fx.worker_label()]).unwrap();
    list.iter().filter(|c| c.state == "running").count()
}

/// Volumes of a role (leases, claims) still on the daemon.
fn records(fx: &Fixture, role: &str) -> Vec<String> {
    let role = format!("{LABEL_ROLE}={role}");
    fx.docker
        .volume_list_by_label(&[&fx.worker_label(), &role])
        .unwrap()
        .into_iter()
        .map(|v| v.name)
        .collect()
}

#[test]
fn a_detached_container_is_adopted_by_the_next_process_and_reported_once() {
    let mut fx = Fixture::new("adopt");
    let sidecar = fx.sidecar("adopt");
    let first = short_runner(&fx, "first");
    start_and_detach(&fx, &first, &sidecar, "T-adopt", 3);
    assert_eq!(
        running_containers(&fx),
        1,
        "a detach leaves the container running"
    );

    // A clean stop in detach mode releases the lease: the successor may
    // take over at once.
    fx.release_lease("first");
    let next = short_runner(&fx, "next");
    let sink = Sink::default();
    let report = passes_until(&sink, &next, |r| r.adopted >= 1);
    assert_eq!(report.adopted, 1);
    let mut adopted = sink.take();
    let task = adopted.pop().unwrap();
    assert_eq!(
        (task.task_id.as_str(), task.execution_id.as_str()),
        ("T-adopt", "exec-T-adopt")
    );
    // The original deadline, read back from the container's label (whole
    // seconds of the daemon's clock).
    let left = task
        .deadline
        .expect("a deadline")
        .duration_since(SystemTime::now())
        .unwrap();
    assert!(
        left <= TIMEOUT && left >= TIMEOUT - Duration::from_secs(30),
        "{left:?}"
    );
    let cancel = CancelToken::new();
    let watching = thread::spawn(move || (task.work)(&cancel));
    wait_claims(&fx, 1);
    // A second pass, and a third process, leave the claimed container alone.
    assert_eq!(sink.pass(&next).adopted, 0);
    assert_eq!(sink.pass(&runner(&fx, "third")).adopted, 0);
    assert_eq!(records(&fx, "claim").len(), 1);
    release(&fx, "T-adopt");
    assert_eq!(
        watching.join().unwrap(),
        TaskOutcome::Failed {
            reason: FailureReason::ContainerExit,
            detail: "container exited with non-zero status: 3".into(),
            exit_code: 3
        }
    );
    fx.release_leases();
    assert_only_the_sidecar_volume_left(&fx);
}

/// Containers, claims and leases are all gone; the one sidecar volume stays
/// for the next task (it is reused by design).
fn assert_only_the_sidecar_volume_left(fx: &Fixture) {
    let (containers, volumes) = fx.leftovers();
    assert_eq!(containers, Vec::<String>::new(), "containers left");
    assert!(volumes.len() <= 1, "volumes left: {volumes:?}");
    assert_eq!(fx.leases(), Vec::<String>::new(), "leases left");
}

#[test]
fn orphans_that_ended_or_never_started_are_reported_from_the_daemons_record() {
    let fx = Fixture::new("record");
    let labels = |task: &str| {
        json!({
            "dev.warp.oz-agent-worker.managed": "true",
            "dev.warp.oz-agent-worker.worker-id": fx.worker_id,
            "dev.warp.oz-agent-worker.task-id": task,
            "dev.warp.oz-agent-worker.execution-id": format!("e-{task}"),
            "dev.warp.oz-agent-worker.instance": "gone",
            "dev.warp.oz-agent-worker.keep": "false",
        })
    };
    let create = |task: &str, cmd: &str| {
        let body = json!({"Image": BUSYBOX, "Cmd": ["sh", "-c", cmd], "Labels": labels(task)});
        fx.docker
            .create(&format!("{task}-{}", fx.worker_id), &body)
            .unwrap()
    };
    let ended = create("ended", "exit 5");
    fx.docker.start(&ended).unwrap();
    let waited = fx
        .docker
        .wait(&ended, &oz_agent_worker::docker::AbortSlot::new())
        .unwrap();
    assert_eq!(waited.status_code, 5);
    create("never", "true");

    // Nothing ever showed a lease of "gone": it is judged gone once a whole
    // ttl of observation saw nothing change.
    let next = short_runner(&fx, "next");
    let sink = Sink::default();
    let first = sink.pass(&next);
    assert_eq!(first.adopted, 0, "judged before a whole ttl");
    let report = passes_until(&sink, &next, |r| r.adopted >= 2);
    assert_eq!(report.adopted, 2);
    let mut outcomes: Vec<(String, TaskOutcome)> = sink
        .take()
        .into_iter()
        .map(|t| (t.task_id.clone(), (t.work)(&CancelToken::new())))
        .collect();
    outcomes.sort_by(|a, b| a.0.cmp(&b.0));
    assert_eq!(
        outcomes,
        vec![
            (
                "ended".to_owned(),
                TaskOutcome::Failed {
                    reason: FailureReason::ContainerExit,
                    detail: "container exited with non-zero status: 5".into(),
                    exit_code: 5
                }
            ),
            ("never".to_owned(), TaskOutcome::Interrupted),
        ]
    );
    fx.assert_nothing_left();
}

#[test]
fn a_live_instance_keeps_its_containers_until_its_lease_is_released() {
    let mut fx = Fixture::new("live");
    let sidecar = fx.sidecar("live");
    let owner = short_runner(&fx, "owner-instance");
    start_and_detach(&fx, &owner, &sidecar, "T-live", 0);

    let other = short_runner(&fx, "other-instance");
    let sink = Sink::default();
    // Passes across two of the owner's ttls: it answers every ping.
    let until = std::time::Instant::now() + 2 * SHORT_TTL;
    while std::time::Instant::now() < until {
        let report = sink.pass(&other);
        assert_eq!((report.adopted, report.containers), (0, 0));
        thread::sleep(Duration::from_millis(200));
    }
    assert_eq!(
        running_containers(&fx),
        1,
        "nobody touched the live owner's task"
    );
    assert_eq!(records(&fx, "lease").len(), 2, "both processes' leases");

    fx.release_lease("owner-instance");
    assert_eq!(records(&fx, "lease").len(), 1, "only the other's lease");
    assert_eq!(records(&fx, "released").len(), 1, "the owner's marker");
    assert_eq!(passes_until(&sink, &other, |r| r.adopted >= 1).adopted, 1);
    let task = sink.take().pop().unwrap();
    release(&fx, "T-live");
    assert_eq!((task.work)(&CancelToken::new()), TaskOutcome::Completed);
    fx.release_leases();
    assert_only_the_sidecar_volume_left(&fx);
}

#[test]
fn a_claim_race_has_exactly_one_winner() {
    let fx = Fixture::new("race");
    let wid = fx.worker_id.clone();
    let winners: Vec<bool> = (0..6)
        .map(|n| {
            let (docker, wid) = (fx.docker.clone(), wid.clone());
            thread::spawn(move || {
                claims::try_claim(&docker, &wid, &format!("racer-{n}"), "c0ffee0123456789", 1)
                    .unwrap()
            })
        })
        .collect::<Vec<_>>()
        .into_iter()
        .map(|t| t.join().unwrap())
        .collect();
    assert_eq!(winners.iter().filter(|w| **w).count(), 1, "{winners:?}");
    let claims = records(&fx, "claim");
    assert_eq!(claims, vec!["oz-claim-c0ffee0123456789-1".to_owned()]);
    // A claim whose container does not exist is stale: the reaper removes it.
    let report = Sink::default().pass(&runner(&fx, "sweeper"));
    assert_eq!(report.volumes, 1);
    fx.assert_nothing_left();
}

#[test]
fn the_same_execution_sent_again_follows_its_container_instead_of_running_twice() {
    let mut fx = Fixture::new("again");
    let sidecar = fx.sidecar("again");
    let first = short_runner(&fx, "first");
    start_and_detach(&fx, &first, &sidecar, "T-again", 4);
    let first_id = fx.docker.list_by_label(&[&fx.worker_label()]).unwrap()[0]
        .id
        .clone();

    fx.release_lease("first");
    let next = short_runner(&fx, "next");
    let task = fx.assignment("T-again", &sidecar, json!({}));
    let cancel = CancelToken::new();
    let (r, c) = (next.clone(), cancel.clone());
    let watching = thread::spawn(move || r.run(&task, &c));
    release(&fx, "T-again");
    assert!(matches!(
        watching.join().unwrap(),
        TaskOutcome::Failed { exit_code: 4, .. }
    ));
    assert!(!fx.read_out("argv").is_empty());
    let until = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs()
        + 1;
    let events = support::docker_cli(&[
        "events",
        "--since",
        "10m",
        "--until",
        &until.to_string(),
        "--format",
        "{{.Actor.ID}}",
        "--filter",
        "type=container",
        "--filter",
        "event=create",
        "--filter",
        &format!("label={}", fx.worker_label()),
        "--filter",
        "label=dev.warp.oz-agent-worker.task-id=T-again",
    ]);
    let created: Vec<&str> = events.lines().collect();
    assert_eq!(
        created,
        vec![first_id.as_str()],
        "one container for the one execution"
    );
    fx.release_leases();
    assert_only_the_sidecar_volume_left(&fx);
}

#[test]
fn leftovers_of_gone_instances_go_and_a_live_ones_stay() {
    let fx = Fixture::new("leftover");
    let wid = &fx.worker_id;
    let _live = short_runner(&fx, "live-instance");
    let volume = |name: &str, extra: serde_json::Value| {
        let mut labels = serde_json::Map::new();
        labels.insert("dev.warp.oz-agent-worker.worker-id".into(), json!(wid));
        labels.extend(extra.as_object().unwrap().clone());
        let labels = labels
            .into_iter()
            .map(|(k, v)| (k, v.as_str().unwrap().to_owned()))
            .collect();
        fx.docker
            .volume_create(&format!("{name}-{wid}"), &labels)
            .unwrap();
    };
    let helper = |instance: &str, vol: &str| {
        let body = json!({"Image": BUSYBOX, "Cmd": ["true"], "Labels": {
            "dev.warp.oz-agent-worker.worker-id": wid,
            "dev.warp.oz-agent-worker.role": "sidecar-fill",
            "dev.warp.oz-agent-worker.volume": format!("{vol}-{wid}"),
            LABEL_INSTANCE: instance,
        }, "HostConfig": {"Binds": [format!("{vol}-{wid}:/oz-fill:nocopy")]}});
        fx.docker
            .create(&format!("fill-{vol}-{wid}"), &body)
            .unwrap();
    };
    let sidecar = json!({"dev.warp.oz-agent-worker.sidecar-image": BUSYBOX});
    volume("half-dead", sidecar.clone());
    volume("half-live", sidecar);
    helper("gone-instance", "half-dead");
    helper("live-instance", "half-live");
    volume(
        "lease-old",
        json!({LABEL_ROLE: "lease", LABEL_INSTANCE: "gone-instance", "dev.warp.oz-agent-worker.lease-seq": "4"}),
    );
    // A read-write sidecar's private volumes: one of a task whose container
    // is gone, one of a task whose (live process's) container runs on.
    let private = |task: &str| {
        json!({LABEL_ROLE: "task-sidecar", "dev.warp.oz-agent-worker.task-id": task,
            "dev.warp.oz-agent-worker.execution-id": format!("e-{task}")})
    };
    volume("private-gone", private("gone"));
    volume("private-live", private("live"));
    let body = json!({"Image": BUSYBOX, "Cmd": ["true"], "Labels": {
        "dev.warp.oz-agent-worker.worker-id": wid,
        "dev.warp.oz-agent-worker.task-id": "live",
        "dev.warp.oz-agent-worker.execution-id": "e-live",
        LABEL_INSTANCE: "live-instance",
    }});
    fx.docker
        .create(&format!("task-live-{wid}"), &body)
        .unwrap();

    // Private volumes without an owner go at once; what "gone-instance"
    // left goes once a whole ttl saw its lease unchanged.
    let sweeper = short_runner(&fx, "sweeper");
    let report = passes_until(&Sink::default(), &sweeper, |r| r.volumes >= 3);
    assert_eq!(
        (report.containers, report.volumes, report.adopted),
        (1, 3, 0)
    );
    let (mut containers, mut volumes) = fx.leftovers();
    containers.sort();
    assert_eq!(
        containers,
        vec![
            format!("/fill-half-live-{wid}"),
            format!("/task-live-{wid}")
        ]
    );
    volumes.sort();
    assert_eq!(
        volumes,
        vec![format!("half-live-{wid}"), format!("private-live-{wid}")]
    );
    fx.release_lease("live-instance");
    let sink = Sink::default();
    let report = passes_until(&sink, &sweeper, |r| {
        r.adopted >= 1 && r.containers >= 1 && r.volumes >= 1
    });
    // The helper and its half-filled volume (and the pings to a process
    // that released its lease); the task container is adopted.
    assert_eq!((report.containers, report.adopted), (1, 1));
    assert!(report.volumes >= 1);
    // The adopted task never started: removing it takes its private volume too
    // (on the next pass, once its container is gone).
    for task in sink.take() {
        assert_eq!((task.work)(&CancelToken::new()), TaskOutcome::Interrupted);
    }
    Sink::default().pass(&runner(&fx, "sweeper"));
    fx.assert_nothing_left();
}
