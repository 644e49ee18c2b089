//! `DockerRunner` end to end on the real daemon: the stub agent records its
//! argv and environment; exit codes, OOM, limits, platform and musl checks,
//! cancellation and timeout (the reaper and adoption are in
//! `adoption.rs`).

mod support;

use std::time::Duration;

use oz_agent_worker::container_spec::Limits;
use oz_agent_worker::execute::reaper;
use oz_agent_worker::task::{CancelCause, CancelToken, TaskOutcome, TaskRunner};
use oz_agent_worker::wire::FailureReason;
use serde_json::json;
use support::{Fixture, docker_cli};

fn failed(reason: FailureReason, detail: &str, exit_code: i64) -> TaskOutcome {
    TaskOutcome::Failed {
        reason,
        detail: detail.into(),
        exit_code,
    }
}

#[test]
fn argv_and_env_follow_task_md() {
    let mut fx = Fixture::new("argv");
    let sidecar = fx.sidecar("argv");
    let mut settings = fx.settings();
    settings.spec.operator_env = [("OVERRIDE".to_string(), "operator".to_string())].into();
    let runner = fx.runner(settings);
    let task = fx.assignment(
        "T-argv",
        &sidecar,
        json!({"env_vars": {"OZ_TEST_OUT": "/out", "OVERRIDE": "orchestrator", "GITHUB_ACCESS_TOKEN": "ghp_secretvalue"}}),
    );
    assert_eq!(
        runner.run(&task, &CancelToken::new()),
        TaskOutcome::Completed
    );
    assert_eq!(
        fx.read_out("argv"),
        "agent\nrun\n--share\nteam:edit\n--task-id\nT-argv\n--sandboxed\n--server-root-url\nhttps://app.example.test\n--idle-on-complete\n"
    );
    let env = fx.read_out("env");
    for line in [
        "TASK_ID=T-argv",
        "GIT_TERMINAL_PROMPT=0",
        "GH_PROMPT_DISABLED=1",
        "WARP_SERVER_ROOT_URL=https://app.example.test",
        "GITHUB_ACCESS_TOKEN=ghp_secretvalue",
        "OVERRIDE=operator",
        "OZ_TEST_OUT=/out",
    ] {
        assert!(
            env.lines().any(|l| l == line),
            "{line} missing from:\n{env}"
        );
    }
    assert_eq!(env.matches("OVERRIDE=").count(), 1);

    let user = fx.assignment(
        "T-user",
        &sidecar,
        json!({"task": {"id": "T-user", "owner": {"Type": "USER", "Id": 2}}}),
    );
    assert_eq!(
        runner.run(&user, &CancelToken::new()),
        TaskOutcome::Completed
    );
    assert_eq!(
        fx.read_out("argv"),
        "agent\nrun\n--task-id\nT-user\n--sandboxed\n--server-root-url\nhttps://app.example.test\n--idle-on-complete\n"
    );
    fx.assert_no_containers();
}

#[test]
fn non_zero_exit_is_container_exit() {
    let mut fx = Fixture::new("exit");
    let sidecar = fx.sidecar("exit");
    let runner = fx.runner(fx.settings());
    let task = fx.assignment(
        "T-exit",
        &sidecar,
        json!({"env_vars": {"OZ_TEST_EXIT": "3"}}),
    );
    assert_eq!(
        runner.run(&task, &CancelToken::new()),
        failed(
            FailureReason::ContainerExit,
            "container exited with non-zero status: 3",
            3
        )
    );
    fx.assert_no_containers();
}

#[test]
fn with_cleanup_off_the_container_is_kept_and_the_reaper_leaves_it() {
    let mut fx = Fixture::new("keep");
    let sidecar = fx.sidecar("keep");
    let mut settings = fx.settings();
    settings.cleanup = false;
    let runner = fx.runner(settings);
    let task = fx.assignment(
        "T-keep",
        &sidecar,
        json!({"env_vars": {"OZ_TEST_EXIT": "3"}}),
    );
    assert!(matches!(
        runner.run(&task, &CancelToken::new()),
        TaskOutcome::Failed { exit_code: 3, .. }
    ));
    assert_eq!(fx.leftovers().0.len(), 1, "kept for debugging");
    // Neither this process's reaper nor a later process's undoes
    // --no-cleanup, and the later one does not report the task again.
    let runner = std::sync::Arc::new(runner);
    reaper::pass(&runner, &|_| panic!("nothing to adopt"), Duration::ZERO).unwrap();
    let mut later = fx.settings();
    later.instance = "a-later-process".into();
    let later = std::sync::Arc::new(fx.runner(later));
    let report = reaper::pass(&later, &|_| panic!("nothing to adopt"), Duration::ZERO).unwrap();
    assert_eq!(report.adopted, 0);
    assert_eq!(
        fx.leftovers().0.len(),
        1,
        "the reaper must not undo --no-cleanup"
    );
}

#[test]
fn memory_limit_oom_is_container_oom() {
    let mut fx = Fixture::new("oom");
    let sidecar = fx.sidecar("oom");
    let mut settings = fx.settings();
    // instance_shape speaks whole GiB; the override keeps the test small.
    settings.limits_override = Some(Limits {
        nano_cpus: None,
        memory_bytes: Some(16 << 20),
    });
    let runner = fx.runner(settings);
    let task = fx.assignment(
        "T-oom",
        &sidecar,
        json!({"env_vars": {"OZ_TEST_ALLOC_MB": "64"}}),
    );
    assert_eq!(
        runner.run(&task, &CancelToken::new()),
        failed(
            FailureReason::ContainerOom,
            "container exited with non-zero status: 137",
            137
        )
    );
    fx.assert_no_containers();
}

#[test]
fn instance_shape_sets_cpu_and_memory_without_swap() {
    let mut fx = Fixture::new("shape");
    let sidecar = fx.sidecar("shape");
    let mut settings = fx.settings();
    settings.cleanup = false;
    let runner = fx.runner(settings);
    let task = fx.assignment(
        "T-shape",
        &sidecar,
        json!({"instance_shape": {"vcpus": 1, "memory_gb": 1}}),
    );
    assert_eq!(
        runner.run(&task, &CancelToken::new()),
        TaskOutcome::Completed
    );
    let kept = fx.docker.list_by_label(&[&fx.worker_label()]).unwrap();
    assert_eq!(kept.len(), 1, "cleanup=false keeps the container");
    let limits = docker_cli(&[
        "inspect",
        "-f",
        "{{.HostConfig.NanoCpus}} {{.HostConfig.Memory}} {{.HostConfig.MemorySwap}}",
        &kept[0].id,
    ]);
    assert_eq!(limits, "1000000000 1073741824 1073741824");
}

#[test]
fn foreign_platform_and_musl_images_are_refused() {
    let fx = Fixture::new("platform");
    let runner = fx.runner(fx.settings());
    let task = fx.assignment("T-arm", "", json!({"docker_image": "oz-test/arm64:latest"}));
    assert_eq!(
        runner.run(&task, &CancelToken::new()),
        TaskOutcome::failed(
            FailureReason::ImagePull,
            format!(
                "image docker.io/oz-test/arm64:latest is for platform linux/arm64, but this worker requires {}",
                fx.platform
            )
        )
    );
    let task = fx.assignment("T-musl", "", json!({"docker_image": "oz-test/musl:latest"}));
    assert_eq!(
        runner.run(&task, &CancelToken::new()),
        TaskOutcome::failed(
            FailureReason::ImagePull,
            "image oz-test/musl:latest uses musl libc (for example Alpine Linux); the Warp agent needs a glibc-based image such as Debian or Ubuntu"
        )
    );
    assert!(!fx.out.join("argv").exists(), "nothing ran");
    fx.assert_nothing_left();
}

/// Runs a sleeping task and fires `cause` once its container runs.
fn cancel_running(case: &str, cause: CancelCause) {
    let mut fx = Fixture::new(case);
    let sidecar = fx.sidecar(case);
    let runner = fx.runner(fx.settings());
    let task = fx.assignment(
        &format!("T-{case}"),
        &sidecar,
        json!({"env_vars": {"OZ_TEST_OUT": "/out", "OZ_TEST_SLEEP": "60"}}),
    );
    let token = CancelToken::new();
    let outcome = std::thread::scope(|s| {
        let run = s.spawn(|| runner.run(&task, &token));
        // The stub writes argv before it sleeps: then the container runs.
        while !fx.out.join("env").exists() {
            assert!(!run.is_finished(), "task ended early");
            std::thread::sleep(Duration::from_millis(10));
        }
        token.cancel(cause);
        run.join().unwrap()
    });
    assert_eq!(outcome, TaskOutcome::Cancelled(cause));
    fx.assert_no_containers();
}

#[test]
fn cancel_during_run_stops_and_removes() {
    cancel_running("cancel", CancelCause::User);
}

#[test]
fn timeout_goes_through_the_same_path() {
    cancel_running("timeout", CancelCause::Timeout);
}

/// A task run through `DOCKER_HOST=tcp://…` (socat to the socket) and through
/// the same with TLS and client certificates (stunnel), found by discovery
/// exactly as the worker finds them at start.
#[test]
fn tasks_run_over_tcp_and_tls_daemon_endpoints() {
    use oz_agent_worker::docker::{Docker, discovery};
    use oz_standin::relay::{TcpRelay, TlsRelay};
    use std::collections::HashMap;
    use std::path::Path;

    let tcp = TcpRelay::start("/var/run/docker.sock");
    let tls = TlsRelay::start("/var/run/docker.sock");
    let cert_path = tls.cert_path().display().to_string();
    let cases: Vec<(&str, HashMap<&str, String>)> = vec![
        ("tcp", HashMap::from([("DOCKER_HOST", tcp.docker_host())])),
        (
            "tls",
            HashMap::from([
                ("DOCKER_HOST", tls.docker_host()),
                ("DOCKER_TLS_VERIFY", "1".to_owned()),
                ("DOCKER_CERT_PATH", cert_path.clone()),
            ]),
        ),
    ];
    for (case, env) in cases {
        let mut fx = Fixture::new(case);
        let sidecar = fx.sidecar(case);
        let target = discovery::discover(&|k| env.get(k).cloned(), Path::new("/")).unwrap();
        let docker = Docker::connect(&target).unwrap_or_else(|e| panic!("{case}: {e}"));
        let runner = oz_agent_worker::execute::DockerRunner::new(docker, fx.settings());
        let lease = oz_agent_worker::execute::lease::acquire(runner.ownership()).unwrap();
        let env = json!({"env_vars": {"OZ_TEST_OUT": "/out", "OZ_TEST_EXIT": "3"}});
        let task = fx.assignment(&format!("T-{case}"), &sidecar, env);
        assert_eq!(
            runner.run(&task, &CancelToken::new()),
            failed(
                FailureReason::ContainerExit,
                "container exited with non-zero status: 3",
                3
            ),
            "{case}"
        );
        assert!(
            fx.read_out("argv")
                .contains(&format!("--task-id\nT-{case}\n")),
            "{case}"
        );
        fx.assert_no_containers();
        lease.release();
    }
    // A client certificate the daemon's CA did not sign is refused.
    let untrusted = HashMap::from([
        ("DOCKER_HOST", tls.docker_host()),
        ("DOCKER_TLS_VERIFY", "1".to_owned()),
        (
            "DOCKER_CERT_PATH",
            tls.untrusted_cert_path().display().to_string(),
        ),
    ]);
    let target = discovery::discover(&|k| untrusted.get(k).cloned(), Path::new("/")).unwrap();
    assert!(Docker::connect(&target).is_err());
}

#[test]
fn create_and_start_failures_keep_the_daemons_words() {
    let mut fx = Fixture::new("createstart");
    let sidecar = fx.sidecar("createstart");
    let runner = fx.runner(fx.settings());
    // More CPUs than the host has: the daemon refuses the create.
    let task = fx.assignment(
        "T-create",
        &sidecar,
        json!({"instance_shape": {"vcpus": 4096}}),
    );
    match runner.run(&task, &CancelToken::new()) {
        TaskOutcome::Failed {
            reason,
            detail,
            exit_code,
        } => {
            assert_eq!(reason, FailureReason::ContainerCreate);
            assert!(
                detail.starts_with("failed to create container: "),
                "{detail}"
            );
            assert!(detail.contains("CPUs"), "{detail}");
            assert_eq!(exit_code, 0);
        }
        other => panic!("{other:?}"),
    }
    // No agent sidecar: /agent/entrypoint.sh does not exist, so start fails.
    let mut task = fx.assignment("T-start", &sidecar, json!({}));
    task.sidecar_image.clear();
    match runner.run(&task, &CancelToken::new()) {
        TaskOutcome::Failed { reason, detail, .. } => {
            assert_eq!(reason, FailureReason::ContainerStart);
            assert!(
                detail.starts_with("failed to start container: "),
                "{detail}"
            );
            assert!(detail.contains("/agent/entrypoint.sh"), "{detail}");
        }
        other => panic!("{other:?}"),
    }
    fx.assert_no_containers();
}

#[test]
fn sidecar_problems_are_sidecar_prep() {
    let mut fx = Fixture::new("scprep");
    let sidecar = fx.sidecar("scprep");
    let mut settings = fx.settings();
    settings.images.policy = oz_agent_worker::config::PullPolicy::Never;
    let runner = fx.runner(settings);
    let absent = json!({"additional_sidecars": [{"image": "oz-test/absent-sidecar:latest", "mount_path": "/mnt/x"}]});
    let task = fx.assignment("T-absent", &sidecar, absent);
    match runner.run(&task, &CancelToken::new()) {
        TaskOutcome::Failed { reason, detail, .. } => {
            assert_eq!(reason, FailureReason::SidecarPrep);
            assert!(detail.contains("oz-test/absent-sidecar"), "{detail}");
            assert!(detail.contains("Never"), "{detail}");
        }
        other => panic!("{other:?}"),
    }
    let twice = json!({"additional_sidecars": [{"image": sidecar, "mount_path": "/agent"}]});
    let task = fx.assignment("T-twice", &sidecar, twice);
    assert!(matches!(
        runner.run(&task, &CancelToken::new()),
        TaskOutcome::Failed {
            reason: FailureReason::SidecarPrep,
            ..
        }
    ));
    fx.assert_no_containers();
}
