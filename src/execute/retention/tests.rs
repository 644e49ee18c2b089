//! The retention decision with exact expected values: what goes and what
//! stays, and why.

use std::collections::{HashMap, HashSet};
use std::time::Duration;

use super::decide::short_duration;
use super::records::record_every;
use super::*;

const WEEK: Duration = Duration::from_secs(7 * 24 * 3600);
const NOW: u64 = 10_000_000;
const LONG_AGO: u64 = NOW - 8 * 24 * 3600;
const TIMES: DaemonTimes = DaemonTimes {
    now: NOW,
    process_start: NOW - 60,
};

fn volume(name: &str, image: &str, created: u64, last_use: Option<u64>) -> SidecarVolume {
    SidecarVolume {
        name: name.into(),
        image: image.into(),
        filled_from: Some(format!("sha256:{name}")),
        created,
        last_use,
    }
}

/// Three versions of the agent, all last used long ago, and one of another sidecar.
fn agents() -> Vec<SidecarVolume> {
    vec![
        volume(
            "agent-v1",
            "docker.io/warpdotdev/warp-agent:v1",
            LONG_AGO,
            Some(LONG_AGO),
        ),
        volume(
            "agent-v2",
            "docker.io/warpdotdev/warp-agent:v2",
            LONG_AGO + 10,
            Some(LONG_AGO + 10),
        ),
        volume(
            "agent-v3",
            "docker.io/warpdotdev/warp-agent:v3",
            LONG_AGO + 20,
            Some(LONG_AGO + 20),
        ),
        volume("tools-v1", "ghcr.io/acme/tools:1", LONG_AGO, Some(LONG_AGO)),
    ]
}

fn none() -> HashSet<String> {
    HashSet::new()
}

fn decide(volumes: &[SidecarVolume], in_use: &HashSet<String>, keep: &Keep) -> Vec<String> {
    sidecar_volumes_to_remove(volumes, in_use, keep, TIMES, Some(WEEK))
}

#[test]
fn old_versions_go_and_the_newest_of_each_repository_stays() {
    assert_eq!(
        decide(&agents(), &none(), &Keep::default()),
        vec!["agent-v1".to_owned(), "agent-v2".to_owned()]
    );
}

#[test]
fn volumes_sharing_the_newest_second_all_stay() {
    let mut v = agents();
    v[1].created = v[2].created;
    assert_eq!(
        decide(&v, &none(), &Keep::default()),
        vec!["agent-v1".to_owned()]
    );
}

#[test]
fn a_volume_in_use_or_busy_stays() {
    let in_use = HashSet::from(["agent-v1".to_owned()]);
    assert_eq!(
        decide(&agents(), &in_use, &Keep::default()),
        vec!["agent-v2".to_owned()]
    );
}

#[test]
fn a_recent_use_keeps_a_volume() {
    let mut v = agents();
    v[0].last_use = Some(NOW - 3600);
    assert_eq!(
        decide(&v, &none(), &Keep::default()),
        vec!["agent-v2".to_owned()]
    );
    // Exactly the retention is not yet more than it.
    v[1].last_use = Some(NOW - WEEK.as_secs());
    assert_eq!(decide(&v, &none(), &Keep::default()), Vec::<String>::new());
    v[1].last_use = Some(NOW - WEEK.as_secs() - 1);
    assert_eq!(
        decide(&v, &none(), &Keep::default()),
        vec!["agent-v2".to_owned()]
    );
}

#[test]
fn without_a_record_the_process_start_counts_as_the_last_use() {
    let mut v = agents();
    v[0].last_use = None;
    // Started a minute ago: v1 might have been used just before.
    assert_eq!(
        decide(&v, &none(), &Keep::default()),
        vec!["agent-v2".to_owned()]
    );
    // Started long ago: the volume's own creation is what counts.
    let old_process = DaemonTimes {
        now: NOW,
        process_start: 1,
    };
    assert_eq!(
        sidecar_volumes_to_remove(&v, &none(), &Keep::default(), old_process, Some(WEEK)),
        vec!["agent-v1".to_owned(), "agent-v2".to_owned()]
    );
    // A volume made after its record (made again) counts from its creation.
    v[0].created = NOW - 10;
    v[0].last_use = Some(LONG_AGO);
    v[0].image = "docker.io/warpdotdev/warp-agent:v0".into();
    v[2].created = NOW - 5;
    assert_eq!(
        decide(&v, &none(), &Keep::default()),
        vec!["agent-v2".to_owned()]
    );
}

#[test]
fn the_configured_and_prefetched_images_keep_their_volumes() {
    // By id: v1 is the configured sidecar image.
    let keep = Keep {
        ids: HashSet::from(["sha256:agent-v1".to_owned()]),
        references: HashMap::from([(
            "docker.io/warpdotdev/warp-agent:v1".to_owned(),
            Some("sha256:agent-v1".to_owned()),
        )]),
    };
    assert_eq!(
        decide(&agents(), &none(), &keep),
        vec!["agent-v2".to_owned()]
    );
    // By name when the image is not on the daemon now (a prefetch to come).
    let keep = Keep {
        ids: HashSet::new(),
        references: HashMap::from([("docker.io/warpdotdev/warp-agent:v2".to_owned(), None)]),
    };
    assert_eq!(
        decide(&agents(), &none(), &keep),
        vec!["agent-v1".to_owned()]
    );
    // A tag that moved: the volume of its old image goes ...
    let keep = Keep {
        ids: HashSet::from(["sha256:newer".to_owned()]),
        references: HashMap::from([(
            "docker.io/warpdotdev/warp-agent:v1".to_owned(),
            Some("sha256:newer".to_owned()),
        )]),
    };
    assert_eq!(
        decide(&agents(), &none(), &keep),
        vec!["agent-v1".to_owned(), "agent-v2".to_owned()]
    );
    // ... unless the volume does not say what it was filled from.
    let mut v = agents();
    v[0].filled_from = None;
    assert_eq!(decide(&v, &none(), &keep), vec!["agent-v2".to_owned()]);
}

#[test]
fn no_retention_keeps_everything() {
    assert_eq!(
        sidecar_volumes_to_remove(&agents(), &none(), &Keep::default(), TIMES, None),
        Vec::<String>::new()
    );
    let images = [PulledImage {
        id: "sha256:a".into(),
        reference: "docker.io/library/app:1".into(),
        last_use: LONG_AGO,
    }];
    assert_eq!(
        images_to_remove(&images, &none(), &Keep::default(), NOW, None),
        Vec::<String>::new()
    );
}

#[test]
fn images_go_when_unused_and_not_kept() {
    let image = |id: &str, reference: &str, last_use| PulledImage {
        id: id.into(),
        reference: reference.into(),
        last_use,
    };
    let images = [
        image("sha256:old", "docker.io/library/app:1", LONG_AGO),
        image("sha256:recent", "docker.io/library/app:2", NOW - 60),
        image("sha256:running", "docker.io/library/app:3", LONG_AGO),
        image("sha256:default", "docker.io/library/ubuntu:22.04", LONG_AGO),
        image(
            "sha256:prefetched-gone",
            "docker.io/library/tools:1",
            LONG_AGO,
        ),
    ];
    let in_use = HashSet::from(["sha256:running".to_owned()]);
    let keep = Keep {
        ids: HashSet::from(["sha256:default".to_owned()]),
        references: HashMap::from([
            (
                "docker.io/library/ubuntu:22.04".to_owned(),
                Some("sha256:default".to_owned()),
            ),
            ("docker.io/library/tools:1".to_owned(), None),
        ]),
    };
    assert_eq!(
        images_to_remove(&images, &in_use, &keep, NOW, Some(WEEK)),
        vec!["sha256:old".to_owned()]
    );
}

#[test]
fn repositories_are_the_reference_without_its_tag_or_digest() {
    assert_eq!(
        repository_of("warpdotdev/warp-agent:v1"),
        "docker.io/warpdotdev/warp-agent"
    );
    assert_eq!(
        repository_of("docker.io/warpdotdev/warp-agent:v2"),
        "docker.io/warpdotdev/warp-agent"
    );
    assert_eq!(
        repository_of(
            "localhost:5000/agent@sha256:0123456789012345678901234567890123456789012345678901234567890123"
        ),
        "localhost:5000/agent"
    );
    assert_eq!(repository_of("Not A Reference:1"), "Not A Reference");
    assert_eq!(repository_of("host:5000/Bad"), "host:5000/Bad");
}

#[test]
fn the_report_line_says_what_went_and_what_came_back() {
    let settings = RetentionSettings {
        sidecar_volumes: Some(WEEK),
        images: Some(Duration::from_secs(90 * 60)),
        prefetch_images: Vec::new(),
    };
    let report = RetentionReport {
        volumes: 2,
        images: 1,
        bytes: 1_234_000_000,
        unknown_sizes: 0,
    };
    assert_eq!(
        summary(&report, &settings),
        "retention: removed 2 sidecar volumes unused for 168h and 1 image unused for 1h30m, 1.2 GB freed"
    );
    let report = RetentionReport {
        volumes: 1,
        images: 0,
        bytes: 0,
        unknown_sizes: 1,
    };
    assert_eq!(
        summary(&report, &settings),
        "retention: removed 1 sidecar volume unused for 168h, 0 B freed (and 1 object of unknown size)"
    );
    assert_eq!(short_duration(Some(Duration::from_secs(1))), "1s");
    assert_eq!(short_duration(Some(Duration::from_secs(600))), "10m");
}

#[test]
fn records_are_written_again_at_most_hourly_or_at_a_quarter_of_the_retention() {
    assert_eq!(record_every(WEEK), RECORD_EVERY);
    assert_eq!(
        record_every(Duration::from_secs(1)),
        Duration::from_millis(250)
    );
}

#[test]
fn the_error_says_what_the_pass_was_doing() {
    let e = RetentionError {
        step: "listing containers",
        source: DockerError::Api {
            call: "GET /containers/json".into(),
            status: 500,
            message: "boom".into(),
        },
    };
    assert!(
        e.to_string()
            .starts_with("removing unused sidecar volumes and images: listing containers: "),
        "{e}"
    );
}
