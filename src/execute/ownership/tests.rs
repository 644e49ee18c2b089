use super::machine::Stage;
use super::*;
use crate::container_spec::LABEL_WORKER_ID;
use crate::docker::VolumeInfo;
use crate::execute::names::{
    LABEL_CONTAINER, LABEL_EXEC_KEY, LABEL_GENERATION, LABEL_INSTANCE, LABEL_KEEP, LABEL_LEASE_SEQ,
    LABEL_REPORTED, LABEL_TARGET, ROLE_CLAIM, ROLE_EXEC, ROLE_EXEC_DONE, ROLE_LEASE, ROLE_PING,
    ROLE_RELEASED,
};
use std::time::Duration;

fn labels(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
    pairs
        .iter()
        .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
        .collect()
}

fn task(id: &str, state: &str, key: &str, instance: &str) -> ContainerSummary {
    ContainerSummary {
        id: id.into(),
        names: vec![format!("/oz-task-{id}")],
        image: "img".into(),
        state: state.into(),
        labels: labels(&[
            (LABEL_WORKER_ID, "w"),
            (LABEL_TASK_ID, "T"),
            (LABEL_EXEC_KEY, key),
            (LABEL_INSTANCE, instance),
            (LABEL_ROLE, ""),
            (LABEL_KEEP, "false"),
        ]),
        created: 0,
    }
}

fn volume(name: &str, pairs: &[(&str, &str)]) -> VolumeInfo {
    VolumeInfo {
        name: name.into(),
        labels: labels(pairs),
        created_at: String::new(),
        mountpoint: String::new(),
    }
}

fn lease(instance: &str, seq: &str) -> VolumeInfo {
    volume(
        &format!("oz-lease-{instance}-{seq}"),
        &[
            (LABEL_ROLE, ROLE_LEASE),
            (LABEL_INSTANCE, instance),
            (LABEL_LEASE_SEQ, seq),
        ],
    )
}

fn claim(container: &str, generation: &str, instance: &str, reported: bool) -> VolumeInfo {
    volume(
        &format!("oz-claim-{container}-{generation}"),
        &[
            (LABEL_ROLE, ROLE_CLAIM),
            (LABEL_CONTAINER, container),
            (LABEL_GENERATION, generation),
            (LABEL_INSTANCE, instance),
            (LABEL_REPORTED, if reported { "true" } else { "" }),
        ],
    )
}

fn exec(key: &str, generation: &str, instance: &str) -> VolumeInfo {
    volume(
        &format!("oz-exec-{key}-{generation}"),
        &[
            (LABEL_ROLE, ROLE_EXEC),
            (LABEL_EXEC_KEY, key),
            (LABEL_GENERATION, generation),
            (LABEL_INSTANCE, instance),
            (LABEL_TASK_ID, "T"),
            (LABEL_EXECUTION_ID, "E"),
        ],
    )
}

#[test]
fn empty_labels_are_no_labels() {
    let l = labels(&[("a", ""), ("b", "x")]);
    assert_eq!(label(&l, "a"), None);
    assert_eq!(label(&l, "b"), Some("x"));
    assert_eq!(label(&l, "c"), None);
}

#[test]
fn the_owner_is_the_highest_claim_and_reported_sticks() {
    let snap = Snapshot::from_daemon(
        &[task("c1", "running", "k1", "a")],
        &[
            lease("a", "3"),
            lease("a", "4"),
            lease("b", "9"),
            claim("c1", "1", "b", false),
            claim("c1", "2", "a", true),
            claim("c1", "x", "z", false),
        ],
    );
    let view = snap.owner_view("c1", "me").unwrap();
    assert_eq!(view.instance, "a");
    assert_eq!(view.generation, 2);
    assert!(view.reported);
    assert_eq!(view.stage, Stage::Running);
    assert_eq!(view.lease.as_deref(), Some("4"));
    assert_eq!(snap.lease("b").as_deref(), Some("9"));
}

#[test]
fn an_executions_record_names_its_holder_container_and_done() {
    let containers = [task("c1", "exited", "k1", "a")];
    let volumes = [
        lease("a", "2"),
        exec("k1", "1", "a"),
        exec("k1", "2", "b"),
        exec("k2", "1", "a"),
        volume(
            "oz-exec-k2-done",
            &[
                (LABEL_ROLE, ROLE_EXEC_DONE),
                (LABEL_EXEC_KEY, "k2"),
                (LABEL_INSTANCE, "a"),
            ],
        ),
    ];
    let snap = Snapshot::from_daemon(&containers, &volumes);
    let v = snap.exec_view("k1", "me");
    assert_eq!(v.holder, Some(("b".to_owned(), 2)));
    assert_eq!(v.holder_lease, None);
    assert!(!v.done);
    assert_eq!(v.container.as_ref().map(|c| c.0.as_str()), Some("c1"));
    assert!(snap.exec_view("k2", "me").done);
    let none = snap.exec_view("k3", "me");
    assert_eq!(
        (none.holder, none.done, none.container),
        (None, false, None)
    );
}

#[test]
fn a_label_baked_into_an_image_cannot_make_a_task_a_helper_or_hide_it() {
    let mut c = task("c1", "running", "k1", "a");
    c.labels.insert(LABEL_ROLE.into(), String::new());
    assert!(is_task(&c));
    c.labels.insert(LABEL_ROLE.into(), ROLE_FILL.into());
    assert!(!is_task(&c));
    assert!(is_helper(&c));
}

fn ping(from: &str, to: &str) -> VolumeInfo {
    volume(
        &format!("oz-ping-{from}-{to}"),
        &[
            (LABEL_ROLE, ROLE_PING),
            (LABEL_INSTANCE, from),
            (LABEL_TARGET, to),
        ],
    )
}

#[test]
fn an_instance_named_by_a_record_is_pinged_and_pings_to_nobody_go() {
    let snap = Snapshot::from_daemon(
        &[task("c1", "running", "k1", "other")],
        &[lease("other", "1")],
    );
    assert_eq!(plan_after(&snap, 0), vec![Plan::Ping("other".into())]);
    let stale = Snapshot::from_daemon(&[], &[ping("me", "nobody")]);
    assert_eq!(
        plan_after(&stale, 0),
        vec![Plan::RemoveVolume("oz-ping-me-nobody".into())]
    );
    // Without a ping of this process, a record is never judged, however long.
    let unpinged = Snapshot::from_daemon(
        &[task("c1", "running", "k1", "gone")],
        &[lease("gone", "7")],
    );
    assert!(
        !plan_after(&unpinged, 90_000)
            .iter()
            .any(|p| matches!(p, Plan::Adopt { .. }))
    );
}

/// Observes `snap` every 5 s from 0 to `until` and plans at the end.
fn plan_after(snap: &Snapshot, until: Mono) -> Vec<Plan> {
    let mut live = Liveness::new(Duration::from_secs(30));
    let mut t = 0;
    while t <= until {
        observe(snap, &mut live, "me", t);
        t += 5_000;
    }
    plan(snap, &live, "me", until, 30_000, &|_| false)
}

#[test]
fn a_container_is_adopted_only_after_its_owner_left_a_ping_unanswered_for_a_ttl() {
    let snap = Snapshot::from_daemon(
        &[task("c1", "running", "k1", "gone")],
        &[
            lease("gone", "7"),
            exec("k1", "1", "gone"),
            ping("me", "gone"),
        ],
    );
    assert_eq!(plan_after(&snap, 25_000), vec![]);
    let plans = plan_after(&snap, 30_000);
    assert!(plans.contains(&Plan::Adopt {
        id: "c1".into(),
        key: "k1".into(),
        generation: 1,
        previous: "gone".into(),
        seen: Some("7".into()),
    }));
}

#[test]
fn a_released_instance_is_taken_over_after_half_a_ttl_and_its_marker_goes_last() {
    let released = volume(
        "oz-lease-r-released",
        &[(LABEL_ROLE, ROLE_RELEASED), (LABEL_INSTANCE, "r")],
    );
    let snap = Snapshot::from_daemon(
        &[task("c1", "running", "k1", "r")],
        std::slice::from_ref(&released),
    );
    assert_eq!(plan_after(&snap, 10_000), vec![]);
    let plans = plan_after(&snap, 15_000);
    assert!(matches!(
        plans.as_slice(),
        [Plan::Adopt { generation: 1, .. }]
    ));
    // Nothing names it any more: the marker goes.
    let empty = Snapshot::from_daemon(&[], &[released]);
    assert_eq!(
        plan_after(&empty, 0),
        vec![Plan::RemoveVolume("oz-lease-r-released".into())]
    );
}

#[test]
fn an_execution_whose_holder_is_gone_without_a_container_is_abandoned() {
    let snap = Snapshot::from_daemon(
        &[],
        &[
            lease("gone", "3"),
            exec("k1", "1", "gone"),
            ping("me", "gone"),
        ],
    );
    let plans = plan_after(&snap, 30_000);
    assert!(plans.contains(&Plan::Abandoned {
        key: "k1".into(),
        generation: 2,
        previous: "gone".into(),
        seen: Some("3".into()),
    }));
    assert_eq!(snap.execs[0].task_id, "T");
}

#[test]
fn busy_containers_are_left_alone_and_own_unwatched_ones_taken_up_again() {
    let snap = Snapshot::from_daemon(
        &[
            task("c1", "running", "k1", "me"),
            task("c2", "running", "k2", "gone"),
        ],
        &[lease("gone", "1"), ping("me", "gone")],
    );
    let mut live = Liveness::new(Duration::from_secs(30));
    for t in (0..=30_000).step_by(5_000) {
        observe(&snap, &mut live, "me", t);
    }
    let busy = plan(&snap, &live, "me", 30_000, 30_000, &|k| {
        k == "k1" || k == "k2"
    });
    assert!(!busy.iter().any(|p| matches!(p, Plan::Adopt { .. })));
    // A container of this process that no task of it watches (it gave it
    // up, then a prune handed it back) is taken up again.
    let plans = plan(&snap, &live, "me", 30_000, 30_000, &|k| k == "k2");
    let adopted: Vec<&Plan> = plans
        .iter()
        .filter(|p| matches!(p, Plan::Adopt { .. }))
        .collect();
    assert!(
        matches!(adopted.as_slice(), [Plan::Adopt { id, previous, .. }] if id == "c1" && previous == "me"),
        "{plans:?}"
    );
}

/// A cleanup whose lease lapsed waits a ttl after renewing before it trusts
/// the owner record; a prune seen during that wait (a renewal found its
/// previous lease volume gone), or its own lease missing from the record,
/// starts the wait over: a holder whose claim the prune erased may not
/// have made it again yet.
#[test]
fn a_prune_during_the_wait_after_a_lapse_starts_the_wait_over() {
    use super::machine::{Call, CleanupMachine, CleanupStep, Env, OwnerView, Reply};
    let ttl = Duration::from_secs(30);
    let mut own = liveness::OwnLease::new(ttl, Duration::from_secs(5));
    own.renewed(0);
    let mut live = Liveness::new(ttl);
    let mut m = CleanupMachine::new("c1".into(), 1, false, own.epoch());
    let mine = |lease: Option<&str>| {
        Reply::Owner(OwnerView {
            instance: "me".into(),
            generation: 1,
            reported: false,
            stage: Stage::Exited(0),
            lease: lease.map(str::to_owned),
            pinged: false,
        })
    };
    macro_rules! step {
        ($now:expr, $reply:expr) => {{
            let mut env = Env {
                me: "me",
                now: $now,
                lease: &own,
                live: &mut live,
                cancel: None,
            };
            m.step($reply, &mut env)
        }};
    }
    // Frozen past the safe window: renew first.
    let first = {
        let mut env = Env {
            me: "me",
            now: 40_000,
            lease: &own,
            live: &mut live,
            cancel: None,
        };
        m.start(&mut env)
    };
    assert_eq!(first, CleanupStep::Call(Call::Renew));
    own.renewed(40_000);
    assert_eq!(
        step!(40_100, Reply::Done),
        CleanupStep::Call(Call::Pause(30_000))
    );
    // A renewal during the wait finds its previous lease volume gone.
    own.erased(50_000);
    own.renewed(50_000);
    assert_eq!(
        step!(70_100, Reply::Done),
        CleanupStep::Call(Call::ReadOwner { id: "c1".into() })
    );
    assert_eq!(
        step!(70_200, mine(Some("9"))),
        CleanupStep::Call(Call::Pause(30_000)),
        "the record read after a prune during the wait is not trusted"
    );
    own.renewed(60_000);
    own.renewed(70_000);
    own.renewed(80_000);
    assert_eq!(
        step!(100_300, Reply::Done),
        CleanupStep::Call(Call::ReadOwner { id: "c1".into() })
    );
    assert_eq!(
        step!(100_400, mine(Some("12"))),
        CleanupStep::MarkDone { id: "c1".into() }
    );
}

/// The same when the prune came with no renewal since: the record shows
/// this process's own lease missing.
#[test]
fn an_own_lease_missing_after_the_wait_starts_it_over() {
    use super::machine::{Call, CleanupMachine, CleanupStep, Env, OwnerView, Reply};
    let ttl = Duration::from_secs(30);
    let mut own = liveness::OwnLease::new(ttl, Duration::from_secs(5));
    own.renewed(0);
    let mut live = Liveness::new(ttl);
    let mut m = CleanupMachine::new("c1".into(), 1, false, own.epoch());
    let mut env = Env {
        me: "me",
        now: 40_000,
        lease: &own,
        live: &mut live,
        cancel: None,
    };
    assert_eq!(m.start(&mut env), CleanupStep::Call(Call::Renew));
    own.renewed(40_000);
    let mut at = |now: Mono, reply: Reply, own: &liveness::OwnLease| {
        let mut env = Env {
            me: "me",
            now,
            lease: own,
            live: &mut live,
            cancel: None,
        };
        m.step(reply, &mut env)
    };
    assert_eq!(
        at(40_100, Reply::Done, &own),
        CleanupStep::Call(Call::Pause(30_000))
    );
    own.renewed(60_000);
    assert_eq!(
        at(70_100, Reply::Done, &own),
        CleanupStep::Call(Call::ReadOwner { id: "c1".into() })
    );
    let lease_gone = Reply::Owner(OwnerView {
        instance: "me".into(),
        generation: 1,
        reported: false,
        stage: Stage::Exited(0),
        lease: None,
        pinged: false,
    });
    assert_eq!(
        at(70_200, lease_gone, &own),
        CleanupStep::Call(Call::Pause(30_000))
    );
}
