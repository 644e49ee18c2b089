//! Prefetch at start (`prefetch_images`, the configured sidecar and default
//! images) on the real daemon and a real registry: a task that needs an
//! image being prefetched waits for that pull instead of starting a second;
//! the sidecar volume is filled before the first task; a failure is one
//! WARN naming the image, and the worker serves tasks all the same.

mod support;

use std::io::{Read, Write};
use std::net::TcpStream;
use std::sync::Arc;
use std::time::{Duration, Instant};

use oz_agent_worker::config::PullPolicy;
use oz_agent_worker::execute::prefetch::{self, State, Target, Warmth};
use oz_agent_worker::task::{CancelToken, TaskOutcome, TaskRunner};
use oz_standin::registry::{Registry, RegistryOpts};
use oz_standin::{Options, Orchestrator};
use serde_json::json;
use support::process::WorkerProcess;
use support::stall_proxy::StallProxy;
use support::tasks::{self, terminal, worker_args};
use support::{Fixture, docker_cli};

const WAIT: Duration = Duration::from_secs(60);

/// Pushes a fresh image of ~2 MB of noise (so a throttled pull takes a
/// few seconds) and removes it from the daemon: a pull must download it.
fn push_noise(fx: &mut Fixture, registry: &Registry) -> String {
    let dir = fx.out.join("noise-image");
    std::fs::create_dir_all(&dir).unwrap();
    let mut noise = vec![0u8; 2 * 1024 * 1024];
    let mut x: u64 = 0x9e37_79b9_7f4a_7c15 ^ u64::from(std::process::id());
    for b in noise.iter_mut() {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        *b = x as u8;
    }
    std::fs::write(dir.join("noise"), &noise).unwrap();
    std::fs::write(
        dir.join("Dockerfile"),
        format!("FROM {}\nCOPY noise /noise\n", support::BUSYBOX),
    )
    .unwrap();
    let local = format!("oz-test/prefetch-{}:1", fx.worker_id.to_lowercase());
    fx.forget_tag(&local);
    docker_cli(&["build", "-q", "-t", &local, &dir.display().to_string()]);
    let pushed = registry.push(&local, "oz-prefetch/noise:1").unwrap();
    fx.docker.image_remove(&local).unwrap();
    pushed
}

/// Polls `cond` until it holds (bounded).
fn until(what: &str, cond: impl Fn() -> bool) {
    let deadline = Instant::now() + WAIT;
    while !cond() {
        assert!(Instant::now() < deadline, "never: {what}");
        std::thread::sleep(Duration::from_millis(5));
    }
}

#[test]
fn a_task_waits_for_the_prefetch_pull_instead_of_pulling_a_second_time() {
    let mut fx = Fixture::new("prefetchwait");
    let registry = Registry::start(RegistryOpts::default());
    let pushed = push_noise(&mut fx, &registry);
    fx.forget_tag(&pushed);
    // ~2 MB at 400 kB/s: the task arrives while the prefetch pulls.
    let proxy = StallProxy::throttled(registry.addr(), 400_000);
    let image = format!("{}/oz-prefetch/noise:1", proxy.addr());
    fx.forget_tag(&image);
    let mut settings = fx.settings();
    settings.images.policy = PullPolicy::IfNotPresent;
    let runner = Arc::new(fx.runner(settings));

    let warmth = Warmth::default();
    let prefetching = prefetch::spawn(
        runner.clone(),
        vec![Target {
            image: image.clone(),
            sidecar: false,
        }],
        warmth.clone(),
    );
    until("the prefetch pulls", || runner.pulls().is_pulling(&image));
    let sidecar = fx.sidecar("prefetchwait");
    let task = fx.assignment("T-wait", &sidecar, json!({"docker_image": image}));
    let r = runner.clone();
    let running = std::thread::spawn(move || r.run(&task, &CancelToken::new()));
    until("the task waits for that pull", || {
        runner.pulls().waiting() == 1
    });
    assert!(
        runner.pulls().is_pulling(&image),
        "the prefetch pull ended before the task came to wait"
    );
    prefetching.join();
    assert_eq!(running.join().unwrap(), TaskOutcome::Completed);
    assert_eq!(runner.pulls().pulls_started(), 1, "the task pulled again");
    assert_eq!(warmth.states().get(&image), Some(&State::Warm));
    fx.assert_no_containers();
}

fn http_get(addr: &str, path: &str) -> String {
    let mut s = TcpStream::connect(addr).unwrap();
    s.set_read_timeout(Some(WAIT)).unwrap();
    write!(s, "GET {path} HTTP/1.0\r\nHost: {addr}\r\n\r\n").unwrap();
    let mut reply = String::new();
    s.read_to_string(&mut reply).unwrap();
    reply.split_once("\r\n\r\n").unwrap().1.to_owned()
}

fn metrics_addr(worker: &WorkerProcess) -> String {
    let needle = "/readyz on ";
    assert!(worker.wait_count(needle, 1, WAIT), "{}", worker.text());
    let text = worker.text();
    let rest = &text[text.find(needle).unwrap() + needle.len()..];
    rest.split(|c: char| c.is_whitespace() || c == '"')
        .next()
        .unwrap()
        .to_owned()
}

/// The real binary: the configured sidecar image's volume is filled at
/// start, so the first task copies nothing; an image that cannot be pulled
/// is one WARN naming it and the worker serves tasks all the same; the
/// metrics say what is warm.
#[test]
fn the_worker_warms_its_sidecar_at_start_and_a_failure_is_one_warning() {
    let mut fx = Fixture::new("prefetchproc");
    let sidecar = fx.sidecar("prefetchproc");
    let missing = format!("oz-test/never-{}:1", fx.worker_id.to_lowercase());
    let orch = Orchestrator::start(Options::default());
    let args = worker_args(
        &fx,
        &orch.url(),
        &[
            "--sidecar-image",
            &sidecar,
            "--prefetch-image",
            &missing,
            "--image-pull-policy",
            "Never",
        ],
    );
    let worker = WorkerProcess::start(
        &tasks::strs(&args),
        &[
            ("WARP_API_KEY", "oz-prefetch-test-key"),
            ("OTEL_METRICS_EXPORTER", "prometheus"),
            ("OTEL_EXPORTER_PROMETHEUS_HOST", "127.0.0.1"),
            ("OTEL_EXPORTER_PROMETHEUS_PORT", "0"),
        ],
    );
    assert!(
        worker.wait_count("prefetch: 1 of 2 image(s) ready", 1, WAIT),
        "{}",
        worker.text()
    );
    let text = worker.text();
    let warned: Vec<&str> = text
        .lines()
        .filter(|l| l.contains("WARN") && l.contains(&missing))
        .collect();
    assert_eq!(warned.len(), 1, "{text}");
    assert!(
        warned[0].contains("could not be made ready")
            && warned[0].contains("tasks that need it will pull it themselves"),
        "{}",
        warned[0]
    );
    assert!(
        text.contains(&format!(
            "prefetch: sidecar image {sidecar} is ready in volume"
        )),
        "{text}"
    );
    let scrape = http_get(&metrics_addr(&worker), "/metrics");
    for (state, n) in [("warm", 1), ("failed", 1), ("pending", 0)] {
        let found = scrape.lines().any(|l| {
            l.starts_with("oz_worker_prefetch_images{")
                && l.contains(&format!("state=\"{state}\""))
                && l.ends_with(&format!("}} {n}"))
        });
        assert!(found, "no {state} = {n} in\n{scrape}");
    }

    // The first task finds the volume ready: no copy.
    assert!(orch.wait_until(|r| r.connected, WAIT), "{}", worker.text());
    assert!(tasks::send_assignment(
        &orch,
        "T-first",
        support::BUSYBOX,
        "oz-ignored/agent:1",
        json!({}),
    ));
    let frames = orch.wait_for(|f| !terminal(f, "T-first").is_empty(), WAIT);
    let ended = terminal(&frames, "T-first");
    assert_eq!(ended[0]["type"], "task_completed", "{}", worker.text());
    assert_eq!(
        worker.text().matches("copying sidecar image").count(),
        1,
        "{}",
        worker.text()
    );
    let mut worker = worker;
    worker.signal(libc::SIGTERM);
    assert_eq!(worker.wait_exit(WAIT).and_then(|s| s.code()), Some(0));
    fx.wait_no_containers(WAIT);
}
