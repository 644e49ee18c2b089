//! Leftovers of earlier runs (a crash, a killed worker): this worker's task
//! containers whose task is not running, sidecar fill/probe containers, and
//! sidecar volumes that never got their completeness marker.
//!
//! Owns [`reap`] (called once at startup, when nothing of this worker can be
//! running) and [`spawn_periodic`]. It only touches objects labelled with
//! this worker's id; it must not decide anything about running tasks beyond
//! the `active` predicate it is given.

use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use crossbeam_channel::{Sender, bounded};
use serde_json::json;

use super::names::{
    self, FILL_PATH, LABEL_KEEP, LABEL_ROLE, LABEL_SIDECAR_IMAGE, LABEL_VOLUME, MARKER,
};
use super::sidecar::SidecarVolumes;
use crate::container_spec::{LABEL_TASK_ID, LABEL_WORKER_ID};
use crate::docker::{Docker, DockerError};

/// What one pass removed.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct ReapReport {
    /// Containers removed (task and helper containers).
    pub containers: usize,
    /// Volumes removed.
    pub volumes: usize,
}

/// Removes every leftover of `worker_id`: task containers whose task is not
/// `active`, all helper containers and the volumes they were filling, and
/// sidecar volumes without the completeness marker. For startup.
pub fn reap(
    docker: &Docker,
    worker_id: &str,
    active: &dyn Fn(&str) -> bool,
) -> Result<ReapReport, DockerError> {
    reap_pass(docker, worker_id, active, None, Duration::ZERO)
}

/// One pass; `volumes` (when given) spares volumes being filled or known
/// complete, `grace` spares containers younger than it.
fn reap_pass(
    docker: &Docker,
    worker_id: &str,
    active: &dyn Fn(&str) -> bool,
    volumes: Option<&SidecarVolumes>,
    grace: Duration,
) -> Result<ReapReport, DockerError> {
    let mut report = ReapReport::default();
    let busy = |v: &str| volumes.is_some_and(|s| s.is_busy(v));
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs() as i64);
    let worker = names::label(LABEL_WORKER_ID, worker_id);
    let mut doomed_volumes = Vec::new();
    for c in docker.list_by_label(&[&worker])? {
        if now - c.created < grace.as_secs() as i64 {
            continue;
        }
        let is_helper = c.labels.contains_key(LABEL_ROLE);
        if is_helper {
            let volume = c.labels.get(LABEL_VOLUME).cloned().unwrap_or_default();
            if busy(&volume) {
                continue;
            }
            doomed_volumes.push(volume);
        } else if c.labels.get(LABEL_TASK_ID).is_some_and(|task| active(task))
            || (c.labels.get(LABEL_KEEP).is_some_and(|v| v == "true") && c.state != "running")
        {
            continue;
        }
        log::info!("removing leftover container {} ({:?})", c.id, c.names);
        docker.remove(&c.id)?;
        report.containers += 1;
    }
    let sidecar_volumes = docker.volume_list_by_label(&[&worker, LABEL_SIDECAR_IMAGE])?;
    for v in sidecar_volumes {
        if busy(&v.name) || volumes.is_some_and(|s| s.is_known_complete(&v.name)) {
            continue;
        }
        let image = v
            .labels
            .get(LABEL_SIDECAR_IMAGE)
            .cloned()
            .unwrap_or_default();
        if doomed_volumes.contains(&v.name) || !has_marker(docker, worker_id, &v.name, &image) {
            log::info!("removing incomplete sidecar volume {}", v.name);
            match docker.volume_remove(&v.name) {
                Ok(()) => report.volumes += 1,
                // In use by a task container: then it is not ours to judge.
                Err(DockerError::Api { status: 409, .. }) => {}
                Err(e) => return Err(e),
            }
        }
    }
    Ok(report)
}

/// Whether `volume` holds the marker; false when it cannot be checked (the
/// image is gone), since an unverifiable volume is refilled on next use.
fn has_marker(docker: &Docker, worker_id: &str, volume: &str, image: &str) -> bool {
    let body = json!({
        "Image": image,
        "Cmd": ["true"],
        "Labels": names::helper_labels(worker_id, volume),
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

/// Reaps every `interval` on its own thread, sparing `active` tasks, busy or
/// known-complete volumes and containers younger than `grace`.
pub fn spawn_periodic(
    docker: Docker,
    worker_id: String,
    volumes: Arc<SidecarVolumes>,
    active: Arc<dyn Fn(&str) -> bool + Send + Sync>,
    interval: Duration,
    grace: Duration,
) -> ReaperHandle {
    let (stop, stopped) = bounded::<()>(0);
    let thread = std::thread::Builder::new()
        .name("reaper".into())
        .spawn(move || {
            // Disconnection (the handle dropped) ends the loop.
            while let Err(crossbeam_channel::RecvTimeoutError::Timeout) =
                stopped.recv_timeout(interval)
            {
                match reap_pass(&docker, &worker_id, &*active, Some(&volumes), grace) {
                    Ok(r) if r != ReapReport::default() => log::info!("reaper removed {r:?}"),
                    Ok(_) => {}
                    Err(e) => log::warn!("reaper: {e}"),
                }
            }
        })
        .ok();
    ReaperHandle {
        stop: Some(stop),
        thread,
    }
}
