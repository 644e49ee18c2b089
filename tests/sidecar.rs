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

    runner.volumes().set_fill_observer(None);
    assert_eq!(
        runner.run(&support::fresh(&task), &CancelToken::new()),
        TaskOutcome::Completed
    );
    assert_eq!(runner.volumes().fills_started(), 2);
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
