//! Operator volumes on the real daemon, one task container per option
//! family: what `docker inspect` shows for a bind with `z`, a propagation
//! mode, a named volume with `nocopy`, and an anonymous volume; and that the
//! volumes Docker creates for them are gone when the test ends.

mod support;

use oz_agent_worker::config::parse_volume;
use oz_agent_worker::docker::Docker;
use oz_agent_worker::task::{CancelToken, TaskOutcome, TaskRunner};
use serde_json::{Value, json};
use support::{Fixture, docker_cli};

/// Removes a named volume the daemon created for a test's entry, pass or
/// fail (it carries no label of ours, so the fixture cannot find it).
struct NamedVolume {
    docker: Docker,
    worker_label: String,
    name: String,
}

impl Drop for NamedVolume {
    fn drop(&mut self) {
        // The container first: a volume in use cannot be removed.
        if let Ok(list) = self.docker.list_by_label(&[&self.worker_label]) {
            for c in list {
                let _ = self.docker.remove(&c.id);
            }
        }
        let _ = self.docker.volume_remove(&self.name);
    }
}

/// Runs one task with `entries` added to the fixture's `/out` bind and the
/// container kept, and returns the kept container's id and its mounts by
/// destination.
fn run_with(fx: &mut Fixture, case: &str, entries: &[&str]) -> (String, Vec<Value>) {
    let sidecar = fx.sidecar(case);
    let mut settings = fx.settings();
    settings.cleanup = false;
    settings
        .spec
        .volumes
        .extend(entries.iter().map(|e| parse_volume(e).unwrap()));
    let runner = fx.runner(settings);
    let task = fx.assignment(&format!("T-{case}"), &sidecar, json!({}));
    assert_eq!(
        runner.run(&task, &CancelToken::new()),
        TaskOutcome::Completed
    );
    let kept = fx.docker.list_by_label(&[&fx.worker_label()]).unwrap();
    assert_eq!(kept.len(), 1, "cleanup off keeps the task container");
    let id = kept[0].id.clone();
    let binds: Value = serde_json::from_str(&docker_cli(&[
        "inspect",
        "-f",
        "{{json .HostConfig.Binds}}",
        &id,
    ]))
    .unwrap();
    for entry in entries {
        assert!(
            binds.as_array().unwrap().iter().any(|b| b == entry),
            "{entry} not passed verbatim: {binds}"
        );
    }
    let mounts: Value =
        serde_json::from_str(&docker_cli(&["inspect", "-f", "{{json .Mounts}}", &id])).unwrap();
    (id, mounts.as_array().unwrap().clone())
}

fn mount_at<'a>(mounts: &'a [Value], destination: &str) -> &'a Value {
    mounts
        .iter()
        .find(|m| m["Destination"] == destination)
        .unwrap_or_else(|| panic!("no mount at {destination}: {mounts:?}"))
}

/// The fields `docker inspect` shows that the entry decides.
fn shown(m: &Value, fields: &[&str]) -> Value {
    Value::Object(
        fields
            .iter()
            .map(|f| ((*f).to_owned(), m[*f].clone()))
            .collect(),
    )
}

#[test]
fn bind_with_selinux_label_and_read_only() {
    let mut fx = Fixture::new("vol-z");
    let dir = fx.out.join("z-src");
    std::fs::create_dir_all(&dir).unwrap();
    let entry = format!("{}:/zbind:ro,z", dir.display());
    let (_, mounts) = run_with(&mut fx, "vol-z", &[&entry]);
    assert_eq!(
        shown(
            mount_at(&mounts, "/zbind"),
            &["Type", "Source", "Mode", "RW", "Propagation"]
        ),
        json!({"Type": "bind", "Source": dir.display().to_string(), "Mode": "ro,z", "RW": false, "Propagation": "rprivate"})
    );
}

#[test]
fn bind_with_propagation_mode() {
    let mut fx = Fixture::new("vol-prop");
    let dir = fx.out.join("prop-src");
    std::fs::create_dir_all(&dir).unwrap();
    // `private` rather than `rshared`/`rslave`, which need the host path on a
    // shared mount; any non-default mode shows it reached the daemon.
    let entry = format!("{}:/prop:rw,private", dir.display());
    let (_, mounts) = run_with(&mut fx, "vol-prop", &[&entry]);
    assert_eq!(
        shown(
            mount_at(&mounts, "/prop"),
            &["Type", "Source", "Mode", "RW", "Propagation"]
        ),
        json!({"Type": "bind", "Source": dir.display().to_string(), "Mode": "rw,private", "RW": true, "Propagation": "private"})
    );
}

#[test]
fn named_volume_with_nocopy() {
    let mut fx = Fixture::new("vol-named");
    let name = format!("oz-test-named-{}", std::process::id());
    let _guard = NamedVolume {
        docker: fx.docker.clone(),
        worker_label: fx.worker_label(),
        name: name.clone(),
    };
    let entry = format!("{name}:/named:nocopy");
    let (id, mounts) = run_with(&mut fx, "vol-named", &[&entry]);
    assert_eq!(
        shown(
            mount_at(&mounts, "/named"),
            &["Type", "Name", "Driver", "Mode", "RW"]
        ),
        json!({"Type": "volume", "Name": name, "Driver": "local", "Mode": "nocopy", "RW": true})
    );
    // A named volume outlives the container: that is why it warns at start.
    fx.docker.remove(&id).unwrap();
    assert!(fx.docker.volume_inspect(&name).unwrap().is_some());
}

#[test]
fn anonymous_volume_goes_with_its_container() {
    let mut fx = Fixture::new("vol-anon");
    let (id, mounts) = run_with(&mut fx, "vol-anon", &["/anon"]);
    let m = mount_at(&mounts, "/anon");
    assert_eq!(
        shown(m, &["Type", "Driver", "RW"]),
        json!({"Type": "volume", "Driver": "local", "RW": true})
    );
    let name = m["Name"].as_str().unwrap().to_owned();
    assert_eq!(name.len(), 64, "a generated name: {name}");
    assert!(fx.docker.volume_inspect(&name).unwrap().is_some());
    // The worker removes task containers with their anonymous volumes.
    fx.docker.remove(&id).unwrap();
    assert_eq!(fx.docker.volume_inspect(&name).unwrap(), None);
}
