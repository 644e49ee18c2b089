//! Sidecar volumes on the real daemon: a shell-less sidecar appears at
//! /agent, complete volumes are reused without a copy, concurrent first uses
//! copy once, and a copy cut short or left without its marker is never reused.

mod support;

use std::sync::Arc;
use std::time::{Duration, Instant};

use oz_agent_worker::task::{CancelCause, CancelToken, TaskOutcome, TaskRunner};
use serde_json::json;
use support::Fixture;

/// The volume the runner made for this fixture's sidecar.
fn sidecar_volumes(fx: &Fixture) -> Vec<String> {
    fx.leftovers().1
}

#[test]
fn scratch_sidecar_is_mounted_and_reused_without_copy() {
    let mut fx = Fixture::new("reuse");
    let sidecar = fx.sidecar("reuse");
    let runner = fx.runner(fx.settings());
    let task = fx.assignment("T-reuse", &sidecar, json!({}));
    assert_eq!(
        runner.run(&support::fresh(&task), &CancelToken::new()),
        TaskOutcome::Completed
    );
    // The stub ran as /agent/entrypoint.sh, so the copy worked.
    assert!(fx.read_out("argv").starts_with("agent\nrun\n"));
    assert_eq!(runner.volumes().fills_started(), 1);
    let volumes = sidecar_volumes(&fx);
    assert_eq!(volumes.len(), 1);
    assert!(volumes[0].starts_with("oz-test-sc-oz-exec-test-reuse-"));

    std::fs::remove_file(fx.out.join("argv")).unwrap();
    assert_eq!(
        runner.run(&support::fresh(&task), &CancelToken::new()),
        TaskOutcome::Completed
    );
    assert!(fx.read_out("argv").starts_with("agent\nrun\n"));
    assert_eq!(
        runner.volumes().fills_started(),
        1,
        "second task copied again"
    );

    // A fresh runner (a restarted worker) verifies the marker, still no copy.
    let restarted = fx.runner(fx.settings());
    assert_eq!(
        restarted.run(&support::fresh(&task), &CancelToken::new()),
        TaskOutcome::Completed
    );
    assert_eq!(restarted.volumes().fills_started(), 0);

    // A known-complete volume costs about one inspect.
    let prepared = (
        fx.docker.image_inspect(&sidecar).unwrap().unwrap(),
        CancelToken::new(),
    );
    let started = Instant::now();
    let hit = runner
        .volumes()
        .ensure(
            &sidecar,
            &sidecar,
            &prepared.0.repo_digests,
            &prepared.0.id,
            &prepared.1,
        )
        .unwrap();
    let took = started.elapsed();
    assert_eq!(hit, volumes[0]);
    assert!(took < Duration::from_millis(50), "cache hit took {took:?}");
    fx.assert_no_containers();
}

#[test]
fn concurrent_first_uses_copy_once() {
    let mut fx = Fixture::new("single");
    let sidecar = fx.sidecar("single");
    let runner = fx.runner(fx.settings());
    let a = fx.assignment("T-a", &sidecar, json!({}));
    let b = fx.assignment("T-b", &sidecar, json!({}));
    let (ra, rb) = std::thread::scope(|s| {
        let ha = s.spawn(|| runner.run(&a, &CancelToken::new()));
        let hb = s.spawn(|| runner.run(&b, &CancelToken::new()));
        (ha.join().unwrap(), hb.join().unwrap())
    });
    assert_eq!((ra, rb), (TaskOutcome::Completed, TaskOutcome::Completed));
    assert_eq!(runner.volumes().fills_started(), 1);
    assert_eq!(sidecar_volumes(&fx).len(), 1);
    fx.assert_no_containers();
}

#[test]
fn copy_cancelled_halfway_leaves_nothing_and_is_redone() {
    let mut fx = Fixture::new("cutfill");
    let sidecar = fx.sidecar("cutfill");
    let runner = fx.runner(fx.settings());
    let task = fx.assignment("T-cut", &sidecar, json!({}));
    let token = CancelToken::new();
    let t = token.clone();
    // Fires while the export stream is open and the upload has not finished.
    runner
        .volumes()
        .set_fill_observer(Some(Arc::new(move |_| t.cancel(CancelCause::User))));
    assert_eq!(
        runner.run(&support::fresh(&task), &token),
        TaskOutcome::Cancelled(CancelCause::User)
    );
    fx.assert_nothing_left();
    assert_eq!(runner.volumes().fills_started(), 1);

    // A released process never acts again: the copy is redone by a new one.
    let mut after = fx.settings();
    after.instance = format!("{}-after", after.instance);
    let runner = fx.runner(after);
    assert_eq!(
        runner.run(&support::fresh(&task), &CancelToken::new()),
        TaskOutcome::Completed
    );
    assert_eq!(runner.volumes().fills_started(), 1);
    assert!(fx.read_out("argv").starts_with("agent\nrun\n"));
    fx.assert_no_containers();
}

#[test]
fn volume_without_marker_is_refilled() {
    let mut fx = Fixture::new("nomark");
    let sidecar = fx.sidecar("nomark");
    let runner = fx.runner(fx.settings());
    let task = fx.assignment("T-nomark", &sidecar, json!({}));
    assert_eq!(
        runner.run(&support::fresh(&task), &CancelToken::new()),
        TaskOutcome::Completed
    );
    let volume = sidecar_volumes(&fx).remove(0);
    // Simulate a crash mid-copy: the same volume name, labelled, holding
    // something but no marker (and no entrypoint).
    fx.docker.volume_remove(&volume).unwrap();
    let labels = [(
        "dev.warp.oz-agent-worker.worker-id".to_string(),
        fx.worker_id.clone(),
    )]
    .into();
    fx.docker.volume_create(&volume, &labels).unwrap();
    let restarted = fx.runner(fx.settings());
    std::fs::remove_file(fx.out.join("argv")).unwrap();
    assert_eq!(
        restarted.run(&support::fresh(&task), &CancelToken::new()),
        TaskOutcome::Completed
    );
    assert_eq!(restarted.volumes().fills_started(), 1);
    assert!(fx.read_out("argv").starts_with("agent\nrun\n"));
    fx.assert_no_containers();
}

/// Two worker processes (one worker id, one daemon) that need a new sidecar
/// volume at the same moment: one copies, the other waits for that copy,
/// and both use the one complete volume.
#[test]
fn two_processes_first_fills_end_in_one_volume_both_use() {
    let mut fx = Fixture::new("twofill");
    let sidecar = fx.sidecar("twofill");
    let settings = |instance: &str| {
        let mut s = fx.settings();
        s.instance = format!("test-{}-{instance}", fx.worker_id);
        s
    };
    let (a, b) = (fx.runner(settings("a")), fx.runner(settings("b")));
    let image = fx.docker.image_inspect(&sidecar).unwrap().unwrap();
    let both = std::sync::Barrier::new(2);
    let ensure = |runner: &oz_agent_worker::execute::DockerRunner| {
        both.wait();
        runner
            .volumes()
            .ensure(
                &sidecar,
                &sidecar,
                &image.repo_digests,
                &image.id,
                &CancelToken::new(),
            )
            .unwrap()
    };
    let (va, vb) = std::thread::scope(|s| {
        let ha = s.spawn(|| ensure(&a));
        let hb = s.spawn(|| ensure(&b));
        (ha.join().unwrap(), hb.join().unwrap())
    });
    assert_eq!(va, vb);
    assert_eq!(
        a.volumes().fills_started() + b.volumes().fills_started(),
        1,
        "the volume was copied twice"
    );
    assert_eq!(sidecar_volumes(&fx), vec![va.clone()]);
    let labels = fx.docker.volume_inspect(&va).unwrap().unwrap().labels;
    assert_eq!(
        labels.get("dev.warp.oz-agent-worker.filled-from"),
        Some(&image.id)
    );
    // Both run tasks from it, with no further copy.
    for (runner, id) in [(&a, "T-a"), (&b, "T-b")] {
        let task = fx.assignment(id, &sidecar, json!({}));
        assert_eq!(
            runner.run(&task, &CancelToken::new()),
            TaskOutcome::Completed
        );
        assert!(fx.read_out("argv").starts_with("agent\nrun\n"));
    }
    assert_eq!(a.volumes().fills_started() + b.volumes().fills_started(), 1);
    fx.assert_no_containers();
}

/// A volume is named after 48 bits of its image's digest; one with that
/// name, complete and labelled as the worker's own, but filled from another
/// image, is never reused for this one: it is copied again.
#[test]
fn a_volume_filled_from_another_image_is_copied_again() {
    let mut fx = Fixture::new("otherimg");
    let sidecar = fx.sidecar("otherimg");
    let runner = fx.runner(fx.settings());
    let task = fx.assignment("T-1", &sidecar, json!({}));
    assert_eq!(
        runner.run(&support::fresh(&task), &CancelToken::new()),
        TaskOutcome::Completed
    );
    let volume = sidecar_volumes(&fx).remove(0);
    let info = fx.docker.volume_inspect(&volume).unwrap().unwrap();
    // The same name, the worker's labels and a complete content (marker
    // included) — but recorded as filled from another image.
    let saved = fx.out.join("saved-volume");
    copy_tree(std::path::Path::new(&info.mountpoint), &saved);
    fx.docker.volume_remove(&volume).unwrap();
    let mut labels = info.labels.clone();
    labels.insert(
        "dev.warp.oz-agent-worker.filled-from".into(),
        format!("sha256:{}", "0".repeat(64)),
    );
    let lookalike = fx.docker.volume_create(&volume, &labels).unwrap();
    copy_tree(&saved, std::path::Path::new(&lookalike.mountpoint));

    let restarted = fx.runner(fx.settings());
    std::fs::remove_file(fx.out.join("argv")).unwrap();
    assert_eq!(
        restarted.run(&support::fresh(&task), &CancelToken::new()),
        TaskOutcome::Completed
    );
    assert_eq!(
        restarted.volumes().fills_started(),
        1,
        "the lookalike was reused"
    );
    let image = fx.docker.image_inspect(&sidecar).unwrap().unwrap();
    let now = fx.docker.volume_inspect(&volume).unwrap().unwrap().labels;
    assert_eq!(
        now.get("dev.warp.oz-agent-worker.filled-from"),
        Some(&image.id)
    );
    assert!(fx.read_out("argv").starts_with("agent\nrun\n"));
    fx.assert_no_containers();
}

/// Copies a directory tree (files and directories, modes kept).
fn copy_tree(from: &std::path::Path, to: &std::path::Path) {
    std::fs::create_dir_all(to).unwrap();
    for entry in std::fs::read_dir(from).unwrap() {
        let entry = entry.unwrap();
        let target = to.join(entry.file_name());
        if entry.file_type().unwrap().is_dir() {
            copy_tree(&entry.path(), &target);
        } else {
            std::fs::copy(entry.path(), &target).unwrap();
        }
    }
}
