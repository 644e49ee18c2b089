use super::*;
use crate::container_spec::LABEL_WORKER_ID;

const NOW: u64 = 1_796_217_143; // 2026-12-02T13:12:23Z

fn labels(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
    pairs
        .iter()
        .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
        .collect()
}

fn task(id: &str, state: &str, instance: Option<&str>, keep: bool) -> ContainerSummary {
    let mut l = labels(&[
        (LABEL_WORKER_ID, "w"),
        (LABEL_TASK_ID, "T"),
        (LABEL_KEEP, if keep { "true" } else { "false" }),
    ]);
    if let Some(i) = instance {
        l.insert(LABEL_INSTANCE.into(), i.into());
    }
    ContainerSummary {
        id: id.into(),
        names: vec![format!("/oz-task-{id}")],
        image: "img".into(),
        state: state.into(),
        labels: l,
        created: 0,
    }
}

fn volume(name: &str, created_at: &str, pairs: &[(&str, &str)]) -> VolumeInfo {
    VolumeInfo {
        name: name.into(),
        labels: labels(pairs),
        created_at: created_at.into(),
        mountpoint: String::new(),
    }
}

fn lease(instance: &str, created_at: &str, ttl: &str) -> VolumeInfo {
    volume(
        &format!("oz-lease-{instance}"),
        created_at,
        &[
            (LABEL_ROLE, ROLE_LEASE),
            (LABEL_INSTANCE, instance),
            (LABEL_LEASE_TTL, ttl),
        ],
    )
}

fn claim(container: &str, generation: &str, instance: &str, reported: bool) -> VolumeInfo {
    let mut pairs = vec![
        (LABEL_ROLE, ROLE_CLAIM),
        (LABEL_CONTAINER, container),
        (LABEL_GENERATION, generation),
        (LABEL_INSTANCE, instance),
    ];
    if reported {
        pairs.push((LABEL_REPORTED, "true"));
    }
    volume(
        &format!("oz-claim-{container}-{generation}"),
        "2026-12-02T13:00:00Z",
        &pairs,
    )
}

#[test]
fn a_lease_lives_ttl_seconds_after_its_newest_volume() {
    let leases = Leases::from_volumes(&[
        lease("a", "2026-12-02T13:12:00Z", "30"), // until 13:12:30
        lease("a", "2026-12-02T13:11:00Z", "30"), // older renewal, superseded
        lease("b", "2026-12-02T13:11:50Z", "30"), // until 13:12:20: expired
        lease("c", "not a time", "30"),
        lease("d", "2026-12-02T13:12:20Z", "ttl?"),
        volume("x", "2026-12-02T13:12:20Z", &[(LABEL_ROLE, ROLE_LEASE)]),
    ]);
    assert!(leases.is_alive("a", NOW));
    assert_eq!(leases.expiry("a"), Some(NOW + 7));
    assert!(
        !leases.is_alive("a", NOW + 7),
        "the expiry instant itself is past"
    );
    assert!(!leases.is_alive("b", NOW));
    assert!(!leases.is_alive("c", NOW));
    assert!(!leases.is_alive("d", NOW));
    assert!(!leases.is_alive("never-seen", NOW));
    assert!(!leases.is_alive("", NOW));
}

#[test]
fn the_highest_claim_owns_the_container() {
    let c = task("c1", "running", Some("a"), false);
    let none: Vec<VolumeInfo> = vec![claim("other", "5", "z", false)];
    assert_eq!(
        owner(&c, &none),
        Owner {
            instance: "a".into(),
            generation: 0,
            reported: false
        }
    );
    let claims = vec![
        claim("c1", "1", "b", false),
        claim("c1", "3", "d", true),
        claim("c1", "2", "c", false),
        claim("c1", "junk", "e", false),
    ];
    assert_eq!(
        owner(&c, &claims),
        Owner {
            instance: "d".into(),
            generation: 3,
            reported: true
        }
    );
    let legacy = task("c2", "running", None, false);
    assert_eq!(owner(&legacy, &[]).instance, "");
}

#[test]
fn verdicts_for_every_owner_and_state() {
    let leases = Leases::from_volumes(&[lease("alive", "2026-12-02T13:12:20Z", "30")]);
    let verdict = |c: &ContainerSummary, claims: &[VolumeInfo]| {
        task_verdict(c, &owner(c, claims), &leases, "me", NOW)
    };
    assert_eq!(
        verdict(&task("1", "running", Some("me"), false), &[]),
        TaskVerdict::Mine
    );
    assert_eq!(
        verdict(&task("1", "exited", Some("me"), false), &[]),
        TaskVerdict::Mine
    );
    assert_eq!(
        verdict(&task("1", "running", Some("alive"), false), &[]),
        TaskVerdict::Theirs
    );
    let orphan = |generation, state, previous: &str| TaskVerdict::Orphan {
        generation,
        state,
        previous: previous.into(),
    };
    assert_eq!(
        verdict(&task("1", "running", Some("dead"), false), &[]),
        orphan(1, OrphanState::Running, "dead")
    );
    assert_eq!(
        verdict(&task("1", "paused", Some("dead"), false), &[]),
        orphan(1, OrphanState::Running, "dead")
    );
    assert_eq!(
        verdict(&task("1", "exited", Some("dead"), false), &[]),
        orphan(1, OrphanState::Exited, "dead")
    );
    assert_eq!(
        verdict(&task("1", "dead", Some("dead"), false), &[]),
        orphan(1, OrphanState::Exited, "dead")
    );
    assert_eq!(
        verdict(&task("1", "created", None, false), &[]),
        orphan(1, OrphanState::NeverStarted, "")
    );
    assert_eq!(
        verdict(&task("1", "removing", Some("dead"), false), &[]),
        TaskVerdict::Gone
    );
    // A live adopter keeps what it claimed; a dead one passes it on.
    let adopted = [claim("1", "1", "alive", false)];
    assert_eq!(
        verdict(&task("1", "running", Some("dead"), false), &adopted),
        TaskVerdict::Theirs
    );
    let mine = [claim("1", "1", "me", false)];
    assert_eq!(
        verdict(&task("1", "running", Some("dead"), false), &mine),
        TaskVerdict::Mine
    );
    let chain = [claim("1", "1", "dead2", false)];
    assert_eq!(
        verdict(&task("1", "running", Some("dead"), false), &chain),
        orphan(2, OrphanState::Running, "dead2")
    );
    // Reported: kept ones stay, others are removed once their owner is gone.
    let reported = [claim("1", "1", "dead", true)];
    assert_eq!(
        verdict(&task("1", "exited", Some("dead"), true), &reported),
        TaskVerdict::Kept
    );
    assert_eq!(
        verdict(&task("1", "exited", Some("dead"), false), &reported),
        TaskVerdict::RemoveReported
    );
    assert_eq!(
        verdict(&task("1", "running", Some("dead"), true), &reported),
        TaskVerdict::RemoveReported
    );
    let reported_alive = [claim("1", "1", "alive", true)];
    assert_eq!(
        verdict(&task("1", "running", Some("alive"), false), &reported_alive),
        TaskVerdict::Theirs
    );
}

#[test]
fn helpers_live_with_their_instance() {
    let leases = Leases::from_volumes(&[lease("alive", "2026-12-02T13:12:20Z", "30")]);
    let helper = |instance: Option<&str>| {
        let mut c = task("h", "created", instance, false);
        c.labels.remove(LABEL_TASK_ID);
        c.labels.insert(LABEL_ROLE.into(), ROLE_FILL.into());
        c
    };
    assert!(is_helper(&helper(None)) && !is_task(&helper(None)));
    assert!(helper_is_live(&helper(Some("me")), &leases, "me", NOW));
    assert!(helper_is_live(&helper(Some("alive")), &leases, "me", NOW));
    assert!(!helper_is_live(&helper(Some("dead")), &leases, "me", NOW));
    assert!(!helper_is_live(&helper(None), &leases, "me", NOW));
}

#[test]
fn stale_leases_and_claims_are_listed_for_removal() {
    let volumes = vec![
        lease("alive", "2026-12-02T13:12:20Z", "30"),
        lease("dead", "2026-12-02T13:00:00Z", "30"),
        lease("me", "2026-12-02T13:00:00Z", "30"),
        claim("present", "1", "x", false),
        claim("gone", "1", "x", false),
        volume("sidecar", "2026-12-02T13:00:00Z", &[]),
    ];
    let containers = vec![task("present", "running", Some("dead"), false)];
    let leases = Leases::from_volumes(&volumes);
    assert_eq!(
        stale_records(&containers, &volumes, &leases, "me", NOW),
        vec!["oz-lease-dead", "oz-claim-gone-1"]
    );
}

#[test]
fn the_next_look_is_when_an_owner_of_a_task_expires() {
    let volumes = vec![
        lease("soon", "2026-12-02T13:12:20Z", "10"),  // NOW + 7
        lease("later", "2026-12-02T13:12:20Z", "30"), // NOW + 27
        lease("me", "2026-12-02T13:12:20Z", "1"),
    ];
    let leases = Leases::from_volumes(&volumes);
    let containers = vec![
        task("1", "running", Some("later"), false),
        task("2", "running", Some("soon"), false),
        task("3", "running", Some("me"), false),
    ];
    assert_eq!(
        next_expiry(&containers, &volumes, &leases, "me", NOW),
        Some(NOW + 7)
    );
    assert_eq!(
        next_expiry(&containers[..1], &volumes, &leases, "me", NOW),
        Some(NOW + 27)
    );
    assert_eq!(
        next_expiry(&containers[2..], &volumes, &leases, "me", NOW),
        None
    );
}
