//! Untrusted tasks and a compromised orchestrator against the real daemon:
//! a `read_write` sidecar cannot change what the next task runs, `env_vars`
//! cannot shadow the operator's environment, task output cannot fill the
//! host disk, the complete-volume record never outlives the volume, and
//! sidecar volumes another program made never fail a task.

mod support;

use oz_agent_worker::config::ContainerLogs;
use oz_agent_worker::docker::reference::sidecar_volume_name;
use oz_agent_worker::task::{CancelToken, TaskOutcome, TaskRunner};
use oz_agent_worker::wire::FailureReason;
use serde_json::{Value, json};
use support::{BUSYBOX, Fixture, docker_cli};

/// The stub agent for these tests: runs `$OZ_TEST_SH`, then records what
/// `/agent/entrypoint.sh` is and its own environment.
const AGENT: &str = r#"if [ -n "$OZ_TEST_SH" ]; then eval "$OZ_TEST_SH"; fi
cat /agent/entrypoint.sh > "/out/entrypoint.$TASK_ID"
env | sort > "/out/env.$TASK_ID""#;

fn entrypoint_of(script: &str) -> String {
    // What `Fixture::script_sidecar` puts in the image.
    format!("#!/bin/sh\n{script}\n")
}

fn inspect(name: &str) -> Value {
    let text = docker_cli(&["inspect", name]);
    serde_json::from_str::<Value>(&text).unwrap()[0].clone()
}

#[test]
fn a_read_write_sidecar_cannot_change_what_the_next_task_runs() {
    // Both ways a private volume is made: an overlay on the shared volume,
    // and a copy of the image.
    for overlay in [true, false] {
        read_write_cannot_poison(overlay);
    }
}

fn read_write_cannot_poison(overlay: bool) {
    let mut fx = Fixture::new(if overlay {
        "rwpoison-ovl"
    } else {
        "rwpoison-cp"
    });
    let sidecar = fx.script_sidecar(AGENT);
    let runner = fx.runner(fx.settings());
    if !overlay {
        runner.volumes().set_overlay(Some(false));
    }
    let attack = "echo 'echo pwned > /out/pwned' > /mnt/rw/entrypoint.sh; \
                  rm -f /mnt/rw/.oz-sidecar-complete; touch /mnt/rw/written; \
                  ls -a /mnt/rw > /out/rw-listing; \
                  rm -f /agent/.oz-sidecar-complete 2>/dev/null || echo refused > /out/agent-ro; \
                  echo 'echo pwned > /out/pwned' > /agent/entrypoint.sh 2>/dev/null || true";
    let evil = fx.assignment(
        "T-evil",
        &sidecar,
        json!({
            "env_vars": {"OZ_TEST_SH": attack},
            "additional_sidecars": [{"image": sidecar, "mount_path": "/mnt/rw", "read_write": true}],
        }),
    );
    assert_eq!(
        runner.run(&evil, &CancelToken::new()),
        TaskOutcome::Completed
    );
    // It wrote where it was allowed: its own volume.
    let listing = fx.read_out("rw-listing");
    assert!(listing.lines().any(|l| l == "written"), "{listing}");
    assert!(listing.lines().any(|l| l == "entrypoint.sh"), "{listing}");
    assert_eq!(fx.read_out("agent-ro"), "refused\n");
    // Its copy went with it; the shared volume stays.
    let volumes = fx.leftovers().1;
    assert_eq!(volumes.len(), 1, "{volumes:?}");
    assert!(volumes[0].starts_with("oz-test-script-"), "{volumes:?}");

    // A restarted worker (no record) checks the marker: still there, no copy.
    let restarted = fx.runner(fx.settings());
    let next = fx.assignment("T-next", &sidecar, json!({}));
    assert_eq!(
        restarted.run(&next, &CancelToken::new()),
        TaskOutcome::Completed
    );
    assert_eq!(restarted.volumes().fills_started(), 0);
    assert_eq!(fx.read_out("entrypoint.T-next"), entrypoint_of(AGENT));
    assert_eq!(fx.read_out("pwned"), "");
    fx.assert_no_containers();
}

#[test]
fn a_kept_read_write_task_keeps_its_labelled_copy_with_its_container() {
    let mut fx = Fixture::new("rwkeep");
    let sidecar = fx.script_sidecar(AGENT);
    let mut settings = fx.settings();
    settings.cleanup = false;
    let runner = fx.runner(settings);
    let task = fx.assignment(
        "T-keep",
        &sidecar,
        json!({"additional_sidecars": [{"image": sidecar, "mount_path": "/mnt/rw", "read_write": true}]}),
    );
    assert_eq!(
        runner.run(&task, &CancelToken::new()),
        TaskOutcome::Completed
    );
    let (containers, volumes) = fx.leftovers();
    assert_eq!(containers.len(), 1);
    let private: Vec<&String> = volumes
        .iter()
        .filter(|v| v.starts_with("oz-task-"))
        .collect();
    // The overlay and its upper and work volumes.
    assert_eq!(private.len(), 3, "{volumes:?}");
    for volume in &private {
        let info = fx.docker.volume_inspect(volume).unwrap().unwrap();
        let label = |k: &str| info.labels.get(k).cloned().unwrap_or_default();
        assert_eq!(label("dev.warp.oz-agent-worker.managed"), "true");
        assert_eq!(label("dev.warp.oz-agent-worker.worker-id"), fx.worker_id);
        assert_eq!(label("dev.warp.oz-agent-worker.task-id"), "T-keep");
        assert_eq!(
            label("dev.warp.oz-agent-worker.execution-id"),
            "exec-T-keep"
        );
        assert_eq!(label("dev.warp.oz-agent-worker.role"), "task-sidecar");
    }
    let private: Vec<&&String> = private
        .iter()
        .filter(|v| !v.ends_with("-upper") && !v.ends_with("-work"))
        .collect();
    // Nothing was copied: the private volume is an overlay on the shared one.
    let options = inspect(private[0])["Options"].clone();
    assert_eq!(options["type"], "overlay", "{options}");
    let shared = volumes
        .iter()
        .find(|v| v.starts_with("oz-test-script-"))
        .unwrap();
    let lower = format!(
        "lowerdir={}",
        inspect(shared)["Mountpoint"].as_str().unwrap()
    );
    assert!(
        options["o"].as_str().unwrap().starts_with(&lower),
        "{options}"
    );
    let mounts = inspect(containers[0].trim_start_matches('/'))["Mounts"].clone();
    let rw = mounts
        .as_array()
        .unwrap()
        .iter()
        .find(|m| m["Destination"] == "/mnt/rw")
        .unwrap();
    assert_eq!(rw["Name"], private[0].as_str());
    assert_eq!(rw["RW"], true);
    let agent = mounts
        .as_array()
        .unwrap()
        .iter()
        .find(|m| m["Destination"] == "/agent")
        .unwrap();
    assert_eq!(agent["RW"], false);
}

#[test]
fn env_vars_cannot_override_the_operator_and_a_bad_name_creates_nothing() {
    let mut fx = Fixture::new("envover");
    let sidecar = fx.sidecar("envover");
    let mut settings = fx.settings();
    settings.spec.operator_env = [("OPERATOR_VAR".to_string(), "operator".to_string())].into();
    let mut after = settings.clone();
    let runner = fx.runner(settings);
    let attack = fx.assignment(
        "T-attack",
        &sidecar,
        json!({"env_vars": {"OZ_TEST_OUT": "/out", "OPERATOR_VAR=evil": "x"}}),
    );
    let outcome = runner.run(&attack, &CancelToken::new());
    assert_eq!(
        outcome,
        TaskOutcome::Failed {
            reason: FailureReason::ContainerCreate,
            detail:
                "env_vars name \"OPERATOR_VAR=evil\" contains '=' (it would set another variable)"
                    .into(),
            exit_code: 0,
        }
    );
    assert_eq!(
        serde_json::from_str::<Value>(&outcome.into_message("T-attack").unwrap().encode()).unwrap(),
        json!({"type": "task_failed", "data": {"task_id": "T-attack",
            "message": "Failed to execute task: env_vars name \"OPERATOR_VAR=evil\" contains '=' (it would set another variable)",
            "failure_reason": "container_create"}})
    );
    fx.assert_nothing_left();

    // A released process never acts again: the rest runs in a new one.
    after.instance = format!("{}-after", after.instance);
    let runner = fx.runner(after);
    let plain = fx.assignment(
        "T-plain",
        &sidecar,
        json!({"env_vars": {"OZ_TEST_OUT": "/out", "OPERATOR_VAR": "evil"}}),
    );
    assert_eq!(
        runner.run(&plain, &CancelToken::new()),
        TaskOutcome::Completed
    );
    let env = fx.read_out("env");
    let seen: Vec<&str> = env
        .lines()
        .filter(|l| l.starts_with("OPERATOR_VAR"))
        .collect();
    assert_eq!(seen, vec!["OPERATOR_VAR=operator"], "{env}");
    fx.assert_no_containers();
}

/// Bytes of a kept container's json-file log on the host, rotated files included.
fn log_bytes(container: &str) -> u64 {
    let path = inspect(container)["LogPath"].as_str().unwrap().to_owned();
    let dir = std::path::Path::new(&path).parent().unwrap();
    let name = std::path::Path::new(&path)
        .file_name()
        .unwrap()
        .to_str()
        .unwrap();
    std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap())
        .filter(|e| e.file_name().to_str().unwrap().starts_with(name))
        .map(|e| e.metadata().unwrap().len())
        .sum()
}

#[test]
fn a_task_printing_a_gigabyte_leaves_a_bounded_log_on_the_host() {
    let daemon_driver = fx_driver();
    assert_eq!(
        daemon_driver, "json-file",
        "this test needs the daemon's default log driver to be json-file"
    );
    let mut fx = Fixture::new("bigsay");
    let printer = fx.script_sidecar(
        "head -c 1073741824 /dev/zero | tr '\\0' x | fold -w 8000\necho done > /out/printed",
    );
    let mut settings = fx.settings();
    settings.cleanup = false;
    settings.container_logs = ContainerLogs {
        limit: Some((1 << 20, 2)),
    };
    let runner = fx.runner(settings);
    let task = fx.assignment("T-say", &printer, json!({}));
    assert_eq!(
        runner.run(&task, &CancelToken::new()),
        TaskOutcome::Completed
    );
    assert_eq!(fx.read_out("printed"), "done\n");
    let container = fx.leftovers().0.remove(0);
    let container = container.trim_start_matches('/');
    let config = inspect(container)["HostConfig"]["LogConfig"].clone();
    assert_eq!(
        config,
        json!({"Type": "json-file", "Config": {"max-size": "1048576", "max-file": "2"}})
    );
    // Two files of at most 1 MiB each (json-file rotates after the line
    // that crosses the size, so allow one line over per file).
    let bytes = log_bytes(container);
    assert!(bytes <= 2 * ((1 << 20) + 16 * 1024), "{bytes} bytes of log");

    // The default bound, on a quick task.
    let mut fx2 = Fixture::new("logdefault");
    let sidecar = fx2.sidecar("logdefault");
    let mut settings = fx2.settings();
    settings.cleanup = false;
    let runner = fx2.runner(settings);
    assert_eq!(
        runner.run(
            &fx2.assignment("T-d", &sidecar, json!({})),
            &CancelToken::new()
        ),
        TaskOutcome::Completed
    );
    let container = fx2.leftovers().0.remove(0);
    assert_eq!(
        inspect(container.trim_start_matches('/'))["HostConfig"]["LogConfig"],
        json!({"Type": "json-file", "Config": {"max-size": "10485760", "max-file": "3"}})
    );
}

fn fx_driver() -> String {
    docker_cli(&["info", "-f", "{{.LoggingDriver}}"])
}

#[test]
fn the_complete_volume_record_never_outlives_the_volume() {
    let mut fx = Fixture::new("identity");
    let sidecar = fx.sidecar("identity");
    let runner = fx.runner(fx.settings());
    let task = |id: &str| fx.assignment(id, &sidecar, json!({}));
    assert_eq!(
        runner.run(&task("T-1"), &CancelToken::new()),
        TaskOutcome::Completed
    );
    let volume = fx.leftovers().1.remove(0);
    let labels = fx.docker.volume_inspect(&volume).unwrap().unwrap().labels;

    // Replaced behind the worker's back within the same second, labels
    // and all but the fill id: the record does not apply to it.
    fx.docker.volume_remove(&volume).unwrap();
    let mut lookalike = labels.clone();
    lookalike.remove("dev.warp.oz-agent-worker.fill-id");
    fx.docker.volume_create(&volume, &lookalike).unwrap();
    assert_eq!(
        runner.run(&task("T-2"), &CancelToken::new()),
        TaskOutcome::Completed
    );
    assert_eq!(runner.volumes().fills_started(), 2);

    // Broken in place without touching its root (so its identity holds):
    // the next task cannot start, and the one after it gets a fresh copy.
    let mountpoint = std::path::PathBuf::from(
        fx.docker
            .volume_inspect(&volume)
            .unwrap()
            .unwrap()
            .mountpoint,
    );
    let created = |v: &str| fx.docker.volume_inspect(v).unwrap().unwrap().created_at;
    let before = created(&volume);
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(
        mountpoint.join("entrypoint.sh"),
        std::fs::Permissions::from_mode(0o000),
    )
    .expect("this test reads the daemon's volumes on the host (local daemon, run as root)");
    assert_eq!(created(&volume), before);
    match runner.run(&task("T-3"), &CancelToken::new()) {
        TaskOutcome::Failed {
            reason: FailureReason::ContainerStart,
            detail,
            ..
        } => assert!(
            detail.starts_with("failed to start container: "),
            "{detail}"
        ),
        other => panic!("expected container_start, got {other:?}"),
    }
    std::fs::remove_file(fx.out.join("argv")).ok();
    assert_eq!(
        runner.run(&task("T-4"), &CancelToken::new()),
        TaskOutcome::Completed
    );
    assert_eq!(runner.volumes().fills_started(), 3);
    assert!(fx.read_out("argv").starts_with("agent\nrun\n"));
    fx.assert_no_containers();
}

/// A volume (and maybe a container using it) made outside the worker, as
/// the Go worker leaves them; removed when the test ends.
struct Foreign {
    volume: String,
    container: Option<String>,
}

impl Drop for Foreign {
    fn drop(&mut self) {
        if let Some(c) = &self.container {
            let _ = std::process::Command::new("docker")
                .args(["rm", "-f", c])
                .output();
        }
        for v in [self.volume.clone(), format!("{}-oz", self.volume)] {
            let _ = std::process::Command::new("docker")
                .args(["volume", "rm", "-f", &v])
                .output();
        }
    }
}

/// The plain volume name the worker uses for `image`, filled the way the Go
/// worker would (no labels) but with a poisoned entrypoint.
fn go_style_volume(fx: &Fixture, image: &str) -> Foreign {
    let info = fx.docker.image_inspect(image).unwrap().unwrap();
    let volume = sidecar_volume_name(image, &info.repo_digests, &info.id).unwrap();
    docker_cli(&["volume", "create", &volume]);
    docker_cli(&[
        "run",
        "--rm",
        "--label",
        "oz-agent-worker.test=1",
        "-v",
        &format!("{volume}:/v"),
        BUSYBOX,
        "sh",
        "-c",
        "printf '#!/bin/sh\\necho pwned > /out/pwned\\n' > /v/entrypoint.sh; chmod 755 /v/entrypoint.sh",
    ]);
    Foreign {
        volume,
        container: None,
    }
}

#[test]
fn an_unused_volume_another_program_made_is_replaced_by_the_workers_own() {
    let mut fx = Fixture::new("foreignfree");
    let sidecar = fx.sidecar("foreignfree");
    let foreign = go_style_volume(&fx, &sidecar);
    let runner = fx.runner(fx.settings());
    assert_eq!(
        runner.run(
            &fx.assignment("T-f", &sidecar, json!({})),
            &CancelToken::new()
        ),
        TaskOutcome::Completed
    );
    assert!(fx.read_out("argv").starts_with("agent\nrun\n"));
    assert_eq!(fx.read_out("pwned"), "");
    let now = fx.docker.volume_inspect(&foreign.volume).unwrap().unwrap();
    assert_eq!(now.labels["dev.warp.oz-agent-worker.managed"], "true");
    assert_eq!(runner.volumes().fills_started(), 1);
    fx.assert_no_containers();
}

#[test]
fn a_volume_another_program_made_and_still_uses_is_left_alone_and_never_fails_a_task() {
    let mut fx = Fixture::new("foreignbusy");
    let sidecar = fx.sidecar("foreignbusy");
    let mut foreign = go_style_volume(&fx, &sidecar);
    // A container the Go worker kept (--no-cleanup) still holds it.
    let kept = docker_cli(&[
        "create",
        "--label",
        "oz-agent-worker.test=1",
        "-v",
        &format!("{}:/agent:ro", foreign.volume),
        BUSYBOX,
        "true",
    ]);
    foreign.container = Some(kept);
    let runner = fx.runner(fx.settings());
    for id in ["T-b1", "T-b2"] {
        std::fs::remove_file(fx.out.join("argv")).ok();
        assert_eq!(
            runner.run(&fx.assignment(id, &sidecar, json!({})), &CancelToken::new()),
            TaskOutcome::Completed
        );
        assert!(fx.read_out("argv").starts_with("agent\nrun\n"));
    }
    assert_eq!(fx.read_out("pwned"), "");
    assert_eq!(runner.volumes().fills_started(), 1);
    // Untouched: still unlabelled, still the other program's content.
    let theirs = fx.docker.volume_inspect(&foreign.volume).unwrap().unwrap();
    assert!(theirs.labels.is_empty(), "{:?}", theirs.labels);
    let ours = fx
        .docker
        .volume_inspect(&format!("{}-oz", foreign.volume))
        .unwrap()
        .unwrap();
    assert_eq!(
        ours.labels["dev.warp.oz-agent-worker.worker-id"],
        fx.worker_id
    );
    // A restarted worker finds its own copy complete: no second copy.
    let restarted = fx.runner(fx.settings());
    assert_eq!(
        restarted.run(
            &fx.assignment("T-b3", &sidecar, json!({})),
            &CancelToken::new()
        ),
        TaskOutcome::Completed
    );
    assert_eq!(restarted.volumes().fills_started(), 0);
    fx.assert_no_containers();
}
