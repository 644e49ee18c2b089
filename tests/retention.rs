//! Retention on the real daemon: an old, unused sidecar volume of a
//! repository with a newer one goes (counted, its bytes freed) while the
//! newest, one in use by a stopped container and the configured sidecar
//! image's stay; image retention removes an image the worker pulled from a
//! real registry and nothing else. Retention is one second, and the clock
//! passes by waiting (bounded) until the daemon's own clock is past the
//! last use.

mod support;

use std::path::Path;
use std::time::{Duration, Instant};

use oz_agent_worker::calendar::parse_rfc3339;
use oz_agent_worker::docker::reference::sidecar_volume_name;
use oz_agent_worker::execute::DockerRunner;
use oz_agent_worker::execute::names::{
    LABEL_IMAGE_ID, LABEL_ROLE, LABEL_VOLUME, ROLE_IMAGE_PULL, ROLE_SIDECAR_USE,
};
use oz_agent_worker::execute::retention::{RetentionReport, RetentionSettings};
use oz_agent_worker::task::{CancelToken, TaskOutcome, TaskRunner};
use oz_standin::registry::{Registry, RegistryOpts};
use serde_json::json;
use support::{BUSYBOX, Fixture, docker_cli};

const ONE_SECOND: Option<Duration> = Some(Duration::from_secs(1));

fn retention(sidecar_volumes: Option<Duration>, images: Option<Duration>) -> RetentionSettings {
    RetentionSettings {
        sidecar_volumes,
        images,
        prefetch_images: Vec::new(),
    }
}

/// Runs `task` (a fresh execution of it) to completion.
fn run_ok(runner: &DockerRunner, task: &oz_agent_worker::wire::TaskAssignment) {
    assert_eq!(
        runner.run(&support::fresh(task), &CancelToken::new()),
        TaskOutcome::Completed
    );
}

/// Records of `role` whose `label` is `value`.
fn records(fx: &Fixture, role: &str, label: &str, value: &str) -> Vec<String> {
    let filter = [format!("{LABEL_ROLE}={role}"), format!("{label}={value}")];
    fx.docker
        .volume_list_by_label(&[&filter[0], &filter[1]])
        .unwrap()
        .into_iter()
        .map(|v| v.name)
        .collect()
}

/// The latest creation time (daemon seconds) of this worker's volumes.
fn latest_volume_time(fx: &Fixture) -> u64 {
    fx.docker
        .volume_list_by_label(&[&fx.worker_label()])
        .unwrap()
        .iter()
        .filter_map(|v| parse_rfc3339(&v.created_at))
        .max()
        .expect("volumes of this worker")
}

/// Waits until the daemon's clock reads more than `t` (bounded: the clock
/// moves by itself, so there is no event to wait for).
fn wait_daemon_past(fx: &Fixture, t: u64) {
    let deadline = Instant::now() + Duration::from_secs(15);
    while fx.docker.daemon_now().unwrap() <= t {
        assert!(
            Instant::now() < deadline,
            "the daemon's clock did not pass {t}"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

fn exists(fx: &Fixture, volume: &str) -> bool {
    fx.docker.volume_inspect(volume).unwrap().is_some()
}

/// `image`'s sidecar volume name, as the runner names it.
fn volume_of(fx: &Fixture, image: &str) -> String {
    let info = fx.docker.image_inspect(image).unwrap().unwrap();
    sidecar_volume_name(image, &info.repo_digests, &info.id).unwrap()
}

#[test]
fn old_sidecar_volumes_go_and_the_newest_in_use_and_configured_stay() {
    let mut fx = Fixture::new("retain-sidecar");
    // Four versions of one sidecar repository, each a distinct image.
    let repo = format!("oz-test/ret-{}", fx.worker_id.to_lowercase());
    let mut version = |n: u32| {
        let built = fx.script_sidecar(&format!("exit 0 # version {n}"));
        let tag = format!("{repo}:{n}");
        docker_cli(&["tag", &built, &tag]);
        fx.forget_tag(&tag);
        tag
    };
    let (configured, unused, kept_by_container, newest) =
        (version(0), version(1), version(2), version(3));

    // The pass runs on a runner whose operator configured `configured`.
    let mut settings = fx.settings();
    settings.spec.sidecar_image = Some(configured.clone());
    let with_config = fx.runner(settings);
    with_config.set_retention(retention(ONE_SECOND, None));
    let runner = fx.runner(fx.settings());
    runner.set_retention(retention(ONE_SECOND, None));
    let mut keep_settings = fx.settings();
    keep_settings.cleanup = false;
    let keeper = fx.runner(keep_settings);
    keeper.set_retention(retention(ONE_SECOND, None));

    run_ok(&with_config, &fx.assignment("T-cfg", &newest, json!({})));
    run_ok(&runner, &fx.assignment("T-unused", &unused, json!({})));
    run_ok(
        &keeper,
        &fx.assignment("T-kept", &kept_by_container, json!({})),
    );
    let names = [&configured, &unused, &kept_by_container].map(|i| volume_of(&fx, i));
    for name in &names {
        assert!(exists(&fx, name), "{name} was not made");
        assert_eq!(
            records(&fx, ROLE_SIDECAR_USE, LABEL_VOLUME, name).len(),
            1,
            "{name} has no use record"
        );
    }
    // The newest is made a second later than all others.
    wait_daemon_past(&fx, latest_volume_time(&fx));
    run_ok(&runner, &fx.assignment("T-newest", &newest, json!({})));
    let newest_volume = volume_of(&fx, &newest);
    // Every use is more than the retention ago.
    wait_daemon_past(&fx, latest_volume_time(&fx) + 1);

    let report = with_config.retention_pass().unwrap();
    assert_eq!((report.volumes, report.images), (1, 0), "{report:?}");
    assert!(report.bytes > 0, "no bytes counted: {report:?}");
    assert_eq!(report.unknown_sizes, 0);
    let [configured_volume, unused_volume, kept_volume] = &names;
    assert!(!exists(&fx, unused_volume), "the unused old volume stayed");
    assert!(
        exists(&fx, configured_volume),
        "the configured image's volume went"
    );
    assert!(
        exists(&fx, kept_volume),
        "a volume in use by a container went"
    );
    assert!(exists(&fx, &newest_volume), "the newest volume went");
    // Its use record went with it; the others' stay.
    assert!(records(&fx, ROLE_SIDECAR_USE, LABEL_VOLUME, unused_volume).is_empty());
    assert_eq!(
        records(&fx, ROLE_SIDECAR_USE, LABEL_VOLUME, &newest_volume).len(),
        1
    );
    // The container that keeps its volume is a stopped one, kept by --no-cleanup.
    let kept = fx.docker.list_by_label(&[&fx.worker_label()]).unwrap();
    assert_eq!(kept.len(), 1, "{kept:?}");
    assert_eq!(kept[0].state, "exited");

    // Nothing more to do.
    assert_eq!(
        with_config.retention_pass().unwrap(),
        RetentionReport::default()
    );
}

#[test]
fn a_volume_without_a_use_record_counts_from_the_process_start() {
    let mut fx = Fixture::new("retain-norecord");
    let repo = format!("oz-test/ret-{}", fx.worker_id.to_lowercase());
    let mut version = |n: u32| {
        let built = fx.script_sidecar(&format!("exit 0 # version {n}"));
        let tag = format!("{repo}:{n}");
        docker_cli(&["tag", &built, &tag]);
        fx.forget_tag(&tag);
        tag
    };
    let (old, newest) = (version(1), version(2));
    // Made by a worker with retention off: no records.
    let earlier = fx.runner(fx.settings());
    run_ok(&earlier, &fx.assignment("T-old", &old, json!({})));
    wait_daemon_past(&fx, latest_volume_time(&fx));
    run_ok(&earlier, &fx.assignment("T-new", &newest, json!({})));
    let old_volume = volume_of(&fx, &old);
    assert!(records(&fx, ROLE_SIDECAR_USE, LABEL_VOLUME, &old_volume).is_empty());
    wait_daemon_past(&fx, latest_volume_time(&fx) + 1);

    // A process started now does not know when it was last used: not yet
    // (three seconds of retention, so a loaded machine passes this too).
    let restarted = fx.runner(fx.settings());
    let three_seconds = Some(Duration::from_secs(3));
    restarted.set_retention(retention(three_seconds, None));
    let started = fx.docker.daemon_now().unwrap();
    assert_eq!(
        restarted.retention_pass().unwrap(),
        RetentionReport::default()
    );
    assert!(exists(&fx, &old_volume));
    // Once it has been up for longer than the retention, it goes.
    wait_daemon_past(&fx, started + 3);
    let report = restarted.retention_pass().unwrap();
    assert_eq!((report.volumes, report.images), (1, 0), "{report:?}");
    assert!(!exists(&fx, &old_volume));
    assert!(exists(&fx, &volume_of(&fx, &newest)));
}

/// A unique image (busybox plus a label), pushed to `registry` and removed
/// locally, so only a pull brings it back. Returns its reference there.
fn pushed_only(fx: &mut Fixture, registry: &Registry, name: &str) -> String {
    let local = local_image(fx, name);
    let reference = registry
        .push(
            &local,
            &format!("oz-ret/{name}:{}", fx.worker_id.to_lowercase()),
        )
        .unwrap();
    docker_cli(&["image", "rm", &local]);
    fx.forget_tag(&reference);
    assert!(fx.docker.image_inspect(&reference).unwrap().is_none());
    reference
}

/// A unique local image: busybox plus a label (its layers are busybox's,
/// which is never touched).
fn local_image(fx: &mut Fixture, name: &str) -> String {
    let tag = format!("oz-test/ret-{name}-{}:latest", fx.worker_id.to_lowercase());
    let dir = fx.out.join(format!("image-{name}"));
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(
        dir.join("Dockerfile"),
        format!(
            "FROM {BUSYBOX}\nLABEL oz-agent-worker.test=1 oz-retention={}-{name}\n",
            fx.worker_id
        ),
    )
    .unwrap();
    docker_cli(&["build", "-q", "-t", &tag, path(&dir)]);
    std::fs::remove_dir_all(&dir).unwrap();
    fx.forget_tag(&tag);
    tag
}

fn path(p: &Path) -> &str {
    p.to_str().unwrap()
}

fn image_id(fx: &Fixture, reference: &str) -> String {
    fx.docker.image_inspect(reference).unwrap().unwrap().id
}

#[test]
fn image_retention_removes_an_image_the_worker_pulled_and_nothing_else() {
    let mut fx = Fixture::new("retain-image");
    let registry = Registry::start(RegistryOpts { auth: None });
    let unused = pushed_only(&mut fx, &registry, "unused");
    let default = pushed_only(&mut fx, &registry, "default");
    let in_use = pushed_only(&mut fx, &registry, "inuse");
    let local = local_image(&mut fx, "local");
    let sidecar = fx.sidecar("retain-image");

    // IfNotPresent: the three registry images are pulled, the local one is not.
    let mut settings = fx.settings();
    settings.spec.default_image = default.clone();
    let runner = fx.runner(settings);
    runner.set_retention(retention(None, ONE_SECOND));
    let mut keep_settings = fx.settings();
    keep_settings.cleanup = false;
    let keeper = fx.runner(keep_settings);
    keeper.set_retention(retention(None, ONE_SECOND));
    let task = |id: &str, image: &str| fx.assignment(id, &sidecar, json!({"docker_image": image}));
    run_ok(&runner, &task("T-unused", &unused));
    run_ok(&runner, &task("T-default", &default));
    run_ok(&keeper, &task("T-inuse", &in_use));
    run_ok(&runner, &task("T-local", &local));
    let ids = [&unused, &default, &in_use, &local].map(|i| image_id(&fx, i));
    let [unused_id, default_id, in_use_id, local_id] = &ids;
    for id in [unused_id, default_id, in_use_id] {
        assert_eq!(records(&fx, ROLE_IMAGE_PULL, LABEL_IMAGE_ID, id).len(), 1);
    }
    assert!(
        records(&fx, ROLE_IMAGE_PULL, LABEL_IMAGE_ID, local_id).is_empty(),
        "an image the worker did not pull was recorded as pulled"
    );
    let busybox = image_id(&fx, BUSYBOX);
    wait_daemon_past(&fx, latest_volume_time(&fx) + 1);

    let report = runner.retention_pass().unwrap();
    assert_eq!((report.volumes, report.images), (0, 1), "{report:?}");
    assert_eq!(report.unknown_sizes, 0);
    let present = |id: &str| fx.docker.image_inspect(id).unwrap().is_some();
    assert!(!present(unused_id), "the unused pulled image stayed");
    assert!(present(default_id), "the default image went");
    assert!(present(in_use_id), "an image a container uses went");
    assert!(present(local_id), "an image the worker did not pull went");
    assert!(present(&busybox));
    assert!(records(&fx, ROLE_IMAGE_PULL, LABEL_IMAGE_ID, unused_id).is_empty());
    assert_eq!(
        records(&fx, ROLE_IMAGE_PULL, LABEL_IMAGE_ID, default_id).len(),
        1
    );
    // The sidecar volume is not image retention's (sidecar retention is off).
    assert!(exists(&fx, &volume_of(&fx, &sidecar)));
    assert_eq!(runner.retention_pass().unwrap(), RetentionReport::default());
}
