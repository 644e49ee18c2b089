//! Leftovers and orphans: one pass over everything on the daemon labelled
//! with this worker id, acting on [`super::ownership`]'s verdicts. Task
//! containers of gone worker processes are adopted (handed to the
//! dispatcher to watch to their end and report); leftovers are removed:
//! reported containers their owner did not live to remove, helper
//! containers of interrupted sidecar fills and the volumes they were
//! filling, sidecar volumes that never got their completeness marker,
//! private (read-write) sidecar volumes of tasks whose container is gone,
//! expired leases and claims of containers that are gone. Its thread also
//! runs the retention passes ([`super::retention`]).
//!
//! Owns [`pass`] (at start-up and then periodically, see
//! [`spawn_periodic`]). It only touches objects labelled with this worker
//! id, never those of a live instance, and nothing of this process's own
//! but stray task containers no task of it runs or waits on.

use std::collections::{BTreeMap, HashSet};
use std::sync::Arc;
use std::time::Duration;

use crossbeam_channel::{Sender, bounded};
use serde_json::json;

use super::DockerRunner;
use super::names::{
    self, FILL_PATH, LABEL_INSTANCE, LABEL_ROLE, LABEL_SIDECAR_IMAGE, LABEL_TARGET, LABEL_VOLUME,
    MARKER, ROLE_PING, ROLE_TASK_SIDECAR,
};
use super::ownership::liveness;
use super::ownership::{self, Plan, Snapshot, label};
use crate::calendar::parse_rfc3339;
use crate::container_spec::{LABEL_EXECUTION_ID, LABEL_MANAGED, LABEL_TASK_ID, LABEL_WORKER_ID};
use crate::dispatch::AdoptedTask;
use crate::docker::{ContainerSummary, Docker, DockerError, VolumeInfo};

/// Where adopted tasks go (the dispatcher); false = not taken.
pub type AdoptSink = Arc<dyn Fn(AdoptedTask) -> bool + Send + Sync>;

/// What one pass did.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct ReapReport {
    /// Containers removed (task and helper containers).
    pub containers: usize,
    /// Volumes removed (sidecar volumes, expired leases, stale claims).
    pub volumes: usize,
    /// Tasks adopted from gone worker processes.
    pub adopted: usize,
    /// When another process's lease runs out while it owns a task here:
    /// look again then.
    pub look_again_in: Option<Duration>,
}

/// One pass. Objects younger than `grace` are spared where a live process
/// may be in the middle of making them (its own stray task containers,
/// sidecar volumes without their marker yet).
pub fn pass(
    runner: &Arc<DockerRunner>,
    adopt: &dyn Fn(AdoptedTask) -> bool,
    grace: Duration,
) -> Result<ReapReport, DockerError> {
    let docker = &runner.docker;
    let ownership = runner.executor.ownership().clone();
    let me = runner.settings.instance.as_str();
    let daemon_now = runner.clock.now_synced(docker)?;
    let worker = names::label(LABEL_WORKER_ID, &runner.settings.spec.worker_id);
    let containers = docker.list_by_label(&[&worker])?;
    let volumes = docker.volume_list_by_label(&[&worker])?;
    let snap = Snapshot::from_daemon(&containers, &volumes);
    let now = ownership.now();
    let ttl = liveness::millis(ownership.ttl());
    let plans = ownership.with(|s| {
        ownership::observe(&snap, &mut s.live, me, now);
        ownership::plan(&snap, &s.live, me, now, ttl, &|k| runner.is_busy(k))
    });
    let mut pass = Pass {
        runner,
        me,
        now,
        daemon_now,
        grace,
        report: ReapReport::default(),
    };
    let (doomed_volumes, filling) = pass.helper_containers(&containers)?;
    for p in plans {
        pass.carry_out(p, &snap, adopt)?;
    }
    pass.sidecar_volumes(&volumes, &doomed_volumes, &filling)?;
    pass.private_volumes(&volumes, &containers)?;
    // Look again soon while another process's task containers are here:
    // a judgement needs observations all along its window.
    let others = snap.tasks.iter().any(|t| t.owner.instance != me);
    pass.report.look_again_in = others.then(|| ownership.ttl() / 3);
    Ok(pass.report)
}

/// One pass in progress: what it judges by, and what it did so far.
struct Pass<'a> {
    runner: &'a Arc<DockerRunner>,
    me: &'a str,
    /// This process's monotonic clock when the pass read the daemon.
    now: liveness::Mono,
    /// The daemon's clock (seconds since the epoch).
    daemon_now: u64,
    grace: Duration,
    report: ReapReport,
}

impl Pass<'_> {
    /// Whether an object created at `created` (daemon clock) is within the
    /// grace period.
    fn young(&self, created: u64) -> bool {
        self.daemon_now.saturating_sub(created) < self.grace.as_secs()
    }

    /// Whether `instance` is a live worker process.
    fn live(&self, instance: Option<&str>) -> bool {
        self.runner
            .executor
            .ownership()
            .with(|s| ownership::instance_is_live(&s.live, instance, self.me, self.now))
    }

    /// Removes helper containers of interrupted sidecar fills; returns the
    /// volumes they were filling, and the volumes fills still in progress
    /// (by this process, or a live one) are filling.
    fn helper_containers<'c>(
        &mut self,
        containers: &'c [ContainerSummary],
    ) -> Result<(Vec<String>, HashSet<&'c str>), DockerError> {
        let mut doomed_volumes = Vec::new();
        let mut filling: HashSet<&str> = HashSet::new();
        for c in containers.iter().filter(|c| ownership::is_helper(c)) {
            let volume = label(&c.labels, LABEL_VOLUME).unwrap_or("");
            let owner = label(&c.labels, LABEL_INSTANCE);
            let mine = owner == Some(self.me);
            if self.runner.volumes.is_busy(volume)
                || (self.live(owner) && (!mine || self.young(c.created as u64)))
            {
                filling.insert(volume);
                continue;
            }
            log::info!("removing leftover container {} ({:?})", c.id, c.names);
            self.runner.docker.remove(&c.id)?;
            self.report.containers += 1;
            doomed_volumes.push(volume.to_owned());
        }
        Ok((doomed_volumes, filling))
    }

    /// Carries out one of the protocol's plans.
    fn carry_out(
        &mut self,
        plan: Plan,
        snap: &Snapshot,
        adopt: &dyn Fn(AdoptedTask) -> bool,
    ) -> Result<(), DockerError> {
        let runner = self.runner;
        match plan {
            Plan::Adopt {
                id,
                key,
                generation,
                previous,
                seen,
            } => match runner.adopt(&id, &key, generation, &previous, seen) {
                Ok(task) => {
                    if adopt(task) {
                        self.report.adopted += 1;
                    }
                }
                Err(e) => log::warn!("could not adopt the task in container {id}: {e}"),
            },
            Plan::Abandoned {
                key,
                generation,
                previous,
                seen,
            } => {
                let ids = snap
                    .execs
                    .iter()
                    .find(|e| e.key == key)
                    .map(|e| (e.task_id.clone(), e.execution_id.clone()))
                    .unwrap_or_default();
                let task = runner.abandoned(&key, (&ids.0, &ids.1), generation, &previous, seen);
                if adopt(task) {
                    self.report.adopted += 1;
                }
            }
            Plan::RemoveVolume(name) => {
                if remove_volume(&runner.docker, &name)? {
                    self.report.volumes += 1;
                }
            }
            Plan::Ping(to) => self.ping(&to)?,
        }
        Ok(())
    }

    /// Asks `to` to show it is alive (answered at its next renewal).
    fn ping(&self, to: &str) -> Result<(), DockerError> {
        let me = self.me;
        let labels = BTreeMap::from([
            (LABEL_MANAGED.to_owned(), "true".to_owned()),
            (
                LABEL_WORKER_ID.to_owned(),
                self.runner.settings.spec.worker_id.clone(),
            ),
            (LABEL_ROLE.to_owned(), ROLE_PING.to_owned()),
            (LABEL_INSTANCE.to_owned(), me.to_owned()),
            (LABEL_TARGET.to_owned(), to.to_owned()),
        ]);
        self.runner
            .docker
            .volume_create(&names::ping_name(me, to), &labels)?;
        Ok(())
    }

    /// Removes shared sidecar volumes that never got their completeness
    /// marker (and those whose fill's helper was just removed).
    fn sidecar_volumes(
        &mut self,
        volumes: &[VolumeInfo],
        doomed_volumes: &[String],
        filling: &HashSet<&str>,
    ) -> Result<(), DockerError> {
        let record = &self.runner.volumes;
        for v in volumes
            .iter()
            .filter(|v| v.labels.contains_key(LABEL_SIDECAR_IMAGE))
        {
            let filler = label(&v.labels, LABEL_INSTANCE);
            if record.is_busy(&v.name)
                || record.is_known_complete(&v.name)
                || filling.contains(v.name.as_str())
                || parse_rfc3339(&v.created_at).is_some_and(|t| self.young(t))
                // Another live process's first fill, however long it takes.
                || (filler != Some(self.me) && self.live(filler))
            {
                continue;
            }
            let image = v.labels.get(LABEL_SIDECAR_IMAGE).map_or("", String::as_str);
            if doomed_volumes.contains(&v.name) || !has_marker(self.runner, &v.name, image) {
                log::info!("removing incomplete sidecar volume {}", v.name);
                if remove_volume(&self.runner.docker, &v.name)? {
                    self.report.volumes += 1;
                }
            }
        }
        Ok(())
    }

    /// Removes private sidecar volumes of tasks whose container is gone.
    fn private_volumes(
        &mut self,
        volumes: &[VolumeInfo],
        containers: &[ContainerSummary],
    ) -> Result<(), DockerError> {
        for v in volumes {
            if label(&v.labels, LABEL_ROLE) == Some(ROLE_TASK_SIDECAR)
                && !parse_rfc3339(&v.created_at).is_some_and(|t| self.young(t))
                && !self.live(label(&v.labels, LABEL_INSTANCE))
                && !has_task_container(containers, &v.labels)
            {
                log::info!("removing sidecar volume {} of a task that is gone", v.name);
                if remove_volume(&self.runner.docker, &v.name)? {
                    self.report.volumes += 1;
                }
            }
        }
        Ok(())
    }
}

/// Whether a task container of the same task and execution as a private
/// sidecar volume's `labels` still exists (then the volume goes with it).
fn has_task_container(
    containers: &[crate::docker::ContainerSummary],
    labels: &std::collections::BTreeMap<String, String>,
) -> bool {
    let same =
        |c: &crate::docker::ContainerSummary, key: &str| c.labels.get(key) == labels.get(key);
    containers
        .iter()
        .any(|c| ownership::is_task(c) && same(c, LABEL_TASK_ID) && same(c, LABEL_EXECUTION_ID))
}

/// Removes a volume; false when a container still uses it (then it is not
/// ours to judge yet).
fn remove_volume(docker: &Docker, name: &str) -> Result<bool, DockerError> {
    match docker.volume_remove(name) {
        Ok(()) => Ok(true),
        Err(DockerError::Api { status: 409, .. }) => Ok(false),
        Err(e) => Err(e),
    }
}

/// Whether `volume` holds the marker; false when it cannot be checked (the
/// image is gone), since an unverifiable volume is refilled on next use.
fn has_marker(runner: &DockerRunner, volume: &str, image: &str) -> bool {
    let docker = &runner.docker;
    let body = json!({
        "Image": image,
        "Cmd": ["true"],
        "Labels": names::helper_labels(&runner.settings.spec.worker_id, &runner.settings.instance, volume),
        "HostConfig": { "Binds": [format!("{volume}:{FILL_PATH}:nocopy")] },
    });
    let Ok(id) = docker.create(&names::helper_name(volume, "reap", names::nonce()), &body) else {
        return false;
    };
    let found = docker
        .head_archive(&id, &format!("{FILL_PATH}/{MARKER}"))
        .unwrap_or(false);
    if let Err(e) = docker.remove(&id) {
        log::warn!("removing probe container {id}: {e}");
    }
    found
}

/// Stops the periodic reaper when dropped.
pub struct ReaperHandle {
    stop: Option<Sender<()>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Drop for ReaperHandle {
    fn drop(&mut self) {
        drop(self.stop.take());
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// Passes every `interval` on its own thread (sooner when an owner's lease
/// is about to run out), handing adopted tasks to `adopt`.
pub fn spawn_periodic(
    runner: Arc<DockerRunner>,
    adopt: AdoptSink,
    interval: Duration,
    grace: Duration,
) -> ReaperHandle {
    let (stop, stopped) = bounded::<()>(0);
    let thread = std::thread::Builder::new()
        .name("reaper".into())
        .spawn(move || {
            // The first pass at once: it learns when the leases of other
            // processes that own tasks here run out.
            let mut wait = Duration::ZERO;
            // Disconnection (the handle dropped) ends the loop.
            while let Err(crossbeam_channel::RecvTimeoutError::Timeout) = stopped.recv_timeout(wait)
            {
                wait = interval;
                match pass(&runner, &*adopt, grace) {
                    Ok(r) => {
                        log::debug!(
                            "reaper pass: adopted {}, removed {} container(s) and {} volume(s)",
                            r.adopted,
                            r.containers,
                            r.volumes
                        );
                        if r.containers + r.volumes > 0 {
                            log::info!(
                                "reaper removed {} container(s) and {} volume(s)",
                                r.containers,
                                r.volumes
                            );
                        }
                        if let Some(soon) = r.look_again_in {
                            wait = wait.min(soon);
                        }
                    }
                    Err(e) => log::warn!("reaper: {e}"),
                }
                // Unused sidecar volumes and images: at start, then at most
                // every few minutes (see retention.rs).
                super::retention::pass_if_due(&runner);
            }
        })
        .ok();
    ReaperHandle {
        stop: Some(stop),
        thread,
    }
}
