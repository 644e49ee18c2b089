//! Pulls through the runner from a real private registry (the standin's
//! `docker-registry` with htpasswd): credentials from `auths` and from a
//! credential helper, the registry's refusal without them, mirrors, pull
//! policies (asserted on the registry's access log) and a cancelled pull.

mod support;

use std::net::TcpListener;
use std::os::unix::fs::PermissionsExt;

use oz_agent_worker::config::PullPolicy;
use oz_agent_worker::execute::RunnerSettings;
use oz_agent_worker::task::{CancelCause, CancelToken, TaskOutcome, TaskRunner};
use oz_agent_worker::wire::FailureReason;
use oz_standin::registry::{Credentials, Registry, RegistryOpts};
use serde_json::json;
use support::{BUSYBOX, Fixture, SIDECAR};

struct Pushed {
    registry: Registry,
    image: String,
    sidecar: String,
}

/// A registry with a user, holding busybox and the stub sidecar under `case` tags.
fn registry_with_images(fx: &mut Fixture, case: &str) -> Pushed {
    let registry = Registry::start(RegistryOpts {
        auth: Some(Credentials::new("oz-user", "oz-pass-not-secret")),
    });
    let image = registry
        .push(BUSYBOX, &format!("oz-reg/busybox:{case}"))
        .unwrap();
    let sidecar = registry
        .push(SIDECAR, &format!("oz-reg/agent:{case}"))
        .unwrap();
    fx.forget_tag(&image);
    fx.forget_tag(&sidecar);
    Pushed {
        registry,
        image,
        sidecar,
    }
}

fn always(fx: &Fixture) -> RunnerSettings {
    let mut s = fx.settings();
    s.images.policy = PullPolicy::Always;
    s
}

#[test]
fn auths_in_docker_config_pull_and_none_is_refused() {
    let mut fx = Fixture::new("auths");
    let p = registry_with_images(&mut fx, "auths");
    let task = fx.assignment("T-auths", &p.sidecar, json!({"docker_image": p.image}));

    let anonymous = fx.runner(always(&fx));
    match anonymous.run(&support::fresh(&task), &CancelToken::new()) {
        TaskOutcome::Failed {
            reason: FailureReason::ImagePull,
            detail,
            ..
        } => {
            let prefix = format!("failed to pull image {}: ", p.image);
            assert!(detail.starts_with(&prefix), "{detail}");
            assert!(detail.contains("no basic auth credentials"), "{detail}");
        }
        other => panic!("expected image_pull, got {other:?}"),
    }

    let mut settings = always(&fx);
    settings.images.credentials.docker_config = Some(p.registry.docker_config());
    let runner = fx.runner(settings);
    assert_eq!(
        runner.run(&support::fresh(&task), &CancelToken::new()),
        TaskOutcome::Completed
    );
    assert!(fx.read_out("argv").starts_with("agent\nrun\n"));
    fx.assert_no_containers();
}

#[test]
fn credential_helper_on_path_is_used() {
    let mut fx = Fixture::new("helper");
    let p = registry_with_images(&mut fx, "helper");
    let config = fx.out.join("helper-config");
    let bin = fx.out.join("bin");
    std::fs::create_dir_all(&config).unwrap();
    std::fs::create_dir_all(&bin).unwrap();
    let addr = p.registry.addr().to_string();
    std::fs::write(
        config.join("config.json"),
        json!({"credHelpers": {addr.clone(): "test"}}).to_string(),
    )
    .unwrap();
    let helper = bin.join("docker-credential-test");
    std::fs::write(
        &helper,
        format!(
            "#!/bin/sh\nread key\n[ \"$key\" = \"{addr}\" ] || exit 1\necho '{{\"ServerURL\":\"{addr}\",\"Username\":\"oz-user\",\"Secret\":\"oz-pass-not-secret\"}}'\n"
        ),
    )
    .unwrap();
    std::fs::set_permissions(&helper, std::fs::Permissions::from_mode(0o755)).unwrap();
    let mut settings = always(&fx);
    settings.images.credentials.docker_config = Some(config);
    settings.images.credentials.path = Some(format!("{}:/usr/bin:/bin", bin.display()).into());
    let runner = fx.runner(settings);
    let task = fx.assignment("T-helper", &p.sidecar, json!({"docker_image": p.image}));
    assert_eq!(
        runner.run(&support::fresh(&task), &CancelToken::new()),
        TaskOutcome::Completed
    );
    fx.assert_no_containers();
}

#[test]
fn mirrors_and_pull_policies() {
    let mut fx = Fixture::new("mirror");
    let p = registry_with_images(&mut fx, "mirror");
    let addr = p.registry.addr().to_string();
    let mut settings = always(&fx);
    settings.images.credentials.docker_config = Some(p.registry.docker_config());
    settings.images.mirrors = [("docker.io".to_string(), addr.clone())].into();
    // Named as a Docker Hub image; the mirror sends it to the registry.
    let hub_name = "oz-reg/busybox:mirror";
    let task = fx.assignment("T-mirror", &p.sidecar, json!({"docker_image": hub_name}));
    // The daemon HEADs a manifest it already holds, and GETs a new one.
    let manifests = |r: &Registry| {
        ["GET", "HEAD"]
            .iter()
            .map(|m| r.requests(m, "/v2/oz-reg/busybox/manifests/"))
            .sum::<usize>()
    };
    let before = manifests(&p.registry);
    assert_eq!(
        fx.runner(settings.clone())
            .run(&support::fresh(&task), &CancelToken::new()),
        TaskOutcome::Completed
    );
    let after_always = manifests(&p.registry);
    assert!(
        after_always > before,
        "the mirror was not asked:\n{}",
        p.registry.log()
    );

    for policy in [PullPolicy::IfNotPresent, PullPolicy::Never] {
        let mut s = settings.clone();
        s.images.policy = policy;
        assert_eq!(
            fx.runner(s)
                .run(&support::fresh(&task), &CancelToken::new()),
            TaskOutcome::Completed
        );
        assert_eq!(manifests(&p.registry), after_always, "{policy:?} pulled");
    }

    fx.docker.image_remove(&p.image).unwrap();
    let mut never = settings;
    never.images.policy = PullPolicy::Never;
    assert_eq!(
        fx.runner(never)
            .run(&support::fresh(&task), &CancelToken::new()),
        TaskOutcome::failed(
            FailureReason::ImagePull,
            format!(
                "image {addr}/oz-reg/busybox:mirror is not on this host and image_pull_policy is Never; load it first (docker load / docker pull) or use IfNotPresent"
            )
        )
    );
    fx.assert_no_containers();
}

#[test]
fn cancel_during_a_stalled_pull() {
    let fx = Fixture::new("stall");
    // A "registry" that accepts and never answers: the pull hangs until cancelled.
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let image = format!("{}/stall/never:1", listener.local_addr().unwrap());
    let runner = fx.runner(always(&fx));
    let task = fx.assignment("T-stall", "", json!({"docker_image": image}));
    let token = CancelToken::new();
    let outcome = std::thread::scope(|s| {
        let run = s.spawn(|| runner.run(&support::fresh(&task), &token));
        let (_held, _) = listener.accept().unwrap();
        token.cancel(CancelCause::User);
        run.join().unwrap()
    });
    assert_eq!(outcome, TaskOutcome::Cancelled(CancelCause::User));
    fx.assert_nothing_left();
}
