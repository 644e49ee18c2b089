//! Image archives loaded at start (`--image-archives DIR`) on the real
//! daemon: `docker save` files (plain and gzip) of images made for each test
//! are loaded once, skipped on the next start, and a corrupt archive is one
//! error naming its file while the others load and the worker starts.

mod support;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use oz_agent_worker::archives::{self, ArchiveError, Outcome};
use oz_standin::{Options, Orchestrator};
use support::process::WorkerProcess;
use support::tasks::{strs, worker_args};
use support::{Fixture, docker_cli};

const WAIT: Duration = Duration::from_secs(60);

/// Removes images by id when the test ends, pass or fail (a retagged image
/// keeps no tag the fixture knows).
struct Ids(Vec<String>);

impl Drop for Ids {
    fn drop(&mut self) {
        for id in &self.0 {
            let _ = Command::new("docker").args(["rmi", "-f", id]).output();
        }
    }
}

fn save(tag: &str, path: &Path) {
    docker_cli(&["save", "-o", path.to_str().unwrap(), tag]);
}

/// `docker save TAG | gzip > PATH`.
fn save_gzip(tag: &str, path: &Path) {
    let status = Command::new("bash")
        .args(["-o", "pipefail", "-c", "docker save \"$1\" | gzip > \"$2\""])
        .args(["_", tag, path.to_str().unwrap()])
        .status()
        .unwrap();
    assert!(status.success(), "docker save | gzip failed");
}

fn id_of(fx: &Fixture, name: &str) -> Option<String> {
    fx.docker.image_inspect(name).unwrap().map(|i| i.id)
}

fn archive_dir(fx: &Fixture) -> PathBuf {
    let dir = fx.out.join("images");
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

/// What became of each archive, by file name, in short.
fn outcomes(results: &[archives::ArchiveResult]) -> BTreeMap<String, String> {
    results
        .iter()
        .map(|r| {
            let name = r.path.file_name().unwrap().to_string_lossy().into_owned();
            let outcome = match &r.outcome {
                Outcome::Loaded(report, bytes, _) => {
                    assert!(*bytes > 0);
                    format!("loaded {}", report.loaded.join(" "))
                }
                Outcome::Skipped(names) => format!("skipped {}", names.join(" ")),
                Outcome::Failed(e) => {
                    assert!(matches!(e, ArchiveError::Load { .. }), "{e}");
                    let text = e.to_string();
                    assert!(text.contains(&name), "{text}");
                    "failed".to_owned()
                }
            };
            (name, outcome)
        })
        .collect()
}

#[test]
fn archives_are_loaded_once_and_a_corrupt_one_fails_alone() {
    let mut fx = Fixture::new("archives");
    let (tag_a, id_a) = fx.unique_image("a");
    let (tag_b, id_b) = fx.unique_image("b");
    let _ids = Ids(vec![id_a.clone(), id_b.clone()]);
    let dir = archive_dir(&fx);
    save(&tag_a, &dir.join("a.tar"));
    save_gzip(&tag_b, &dir.join("b.tar.gz"));
    let gz = std::fs::read(dir.join("b.tar.gz")).unwrap();
    std::fs::write(dir.join("c-truncated.tar.gz"), &gz[..gz.len() / 2]).unwrap();
    std::fs::write(dir.join("d-garbage.tar"), b"not an archive\n".repeat(500)).unwrap();
    std::fs::write(dir.join("notes.txt"), b"not an archive either").unwrap();
    docker_cli(&["rmi", &tag_a, &tag_b]);
    assert_eq!(id_of(&fx, &tag_a), None);

    let first = archives::load_dir(&fx.docker, &dir).unwrap();
    let expected = |a: &str, b: &str| {
        BTreeMap::from([
            ("a.tar".to_owned(), format!("{a} {tag_a}")),
            ("b.tar.gz".to_owned(), format!("{b} {tag_b}")),
            ("c-truncated.tar.gz".to_owned(), "failed".to_owned()),
            ("d-garbage.tar".to_owned(), "failed".to_owned()),
        ])
    };
    assert_eq!(outcomes(&first), expected("loaded", "loaded"));
    assert_eq!(id_of(&fx, &tag_a).as_deref(), Some(id_a.as_str()));
    assert_eq!(id_of(&fx, &tag_b).as_deref(), Some(id_b.as_str()));

    // The next start loads nothing it already has.
    let second = archives::load_dir(&fx.docker, &dir).unwrap();
    assert_eq!(outcomes(&second), expected("skipped", "skipped"));

    // A tag that now names another image is put back by loading again.
    docker_cli(&["tag", &tag_b, &tag_a]);
    let third = archives::load_dir(&fx.docker, &dir).unwrap();
    assert_eq!(outcomes(&third), expected("loaded", "skipped"));
    assert_eq!(id_of(&fx, &tag_a).as_deref(), Some(id_a.as_str()));
}

#[test]
fn a_missing_directory_is_one_error() {
    let fx = Fixture::new("archives-missing");
    let dir = fx.out.join("no-such-dir");
    let err = archives::load_dir(&fx.docker, &dir).unwrap_err();
    assert_eq!(
        err.to_string(),
        format!(
            "cannot read the image archive directory {}: No such file or directory (os error 2); starting without loading any",
            dir.display()
        )
    );
}

#[test]
fn the_worker_loads_archives_before_its_first_claim_and_starts_despite_a_bad_one() {
    let mut fx = Fixture::new("archives-process");
    let (tag, id) = fx.unique_image("p");
    let _ids = Ids(vec![id.clone()]);
    let dir = archive_dir(&fx);
    save_gzip(&tag, &dir.join("good.tar.gz"));
    std::fs::write(dir.join("bad.tar"), b"garbage\n".repeat(100)).unwrap();
    docker_cli(&["rmi", &tag]);
    let dir_arg = dir.to_str().unwrap();

    let run = || {
        let orch = Orchestrator::start(Options::default());
        let args = worker_args(&fx, &orch.url(), &["--image-archives", dir_arg]);
        let mut worker = WorkerProcess::start(&strs(&args), &[("WARP_API_KEY", "archives-key")]);
        assert!(orch.wait_until(|r| r.connected, WAIT), "{}", worker.text());
        worker.signal(libc::SIGTERM);
        assert_eq!(
            worker.wait_exit(WAIT).and_then(|s| s.code()),
            Some(0),
            "{}",
            worker.text()
        );
        worker.lines()
    };
    let position = |lines: &[String], needles: &[&str]| {
        lines
            .iter()
            .position(|l| needles.iter().all(|n| l.contains(n)))
    };
    let good = format!("{dir_arg}/good.tar.gz");
    let bad = format!("{dir_arg}/bad.tar");

    let lines = run();
    let text = lines.join("\n");
    let loaded = position(&lines, &["INFO", "loaded image archive", &good, &tag]);
    let started = position(&lines, &["started: up to"]);
    assert!(loaded.is_some() && loaded < started, "{text}");
    let errors: Vec<&String> = lines.iter().filter(|l| l.contains("ERROR")).collect();
    assert_eq!(errors.len(), 1, "{text}");
    assert!(
        errors[0].contains(&bad) && errors[0].contains("was not loaded"),
        "{text}"
    );
    assert_eq!(id_of(&fx, &tag).as_deref(), Some(id.as_str()));

    let lines = run();
    let text = lines.join("\n");
    assert!(
        position(&lines, &["INFO", &good, "already has its images", &tag]).is_some(),
        "{text}"
    );
    assert_eq!(position(&lines, &["loaded image archive"]), None, "{text}");
}
