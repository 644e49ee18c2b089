//! A task's private copy of a `read_write` sidecar: a volume of its own,
//! labelled with the task (`dev.warp.oz-agent-worker.role=task-sidecar`,
//! task id, execution id), mounted `:rw` into that task's container only,
//! and removed after it ([`TaskVolumes`] until the container exists, then
//! the container's cleanup; kept with it under `--no-cleanup`, left with it
//! when it runs on under the next worker process). The shared volume it
//! starts from is never written.
//!
//! What it costs: on a daemon whose `local` volume driver can mount
//! overlayfs (checked once per worker), nothing is copied. The private
//! volume is an overlay whose lower layer is the shared volume's directory
//! and whose upper and work directories are two more fresh volumes of the
//! task; the task's writes land in its upper volume, and its view starts as
//! the shared content (three volume creates and removes, a few ms). Where
//! overlay cannot be mounted (rootless Docker on an old kernel, a data root
//! on overlayfs, host paths overlay cannot name), the sidecar image is copied
//! into a fresh volume as on a first fill, without the completeness marker:
//! two helper containers and the image's bytes through the daemon. `bench/`
//! measures both.

use std::collections::BTreeMap;
use std::sync::Arc;

use super::{SidecarError, SidecarVolumes, docker_err};
use crate::docker::{DockerError, VolumeInfo};
use crate::execute::names::{self, FILL_PATH};
use crate::task::CancelToken;

/// The task a private copy is for.
#[derive(Debug, Clone, Copy)]
pub struct TaskRef<'a> {
    /// `task_id`.
    pub task_id: &'a str,
    /// `execution_id`.
    pub execution_id: &'a str,
}

impl SidecarVolumes {
    /// A volume for `task` alone that starts as the complete shared volume
    /// `shared` (of image `reference`). Every volume made is handed to
    /// `keep` at once, so whatever happens they go with the task.
    pub fn task_copy(
        self: &Arc<Self>,
        shared: &str,
        reference: &str,
        task: TaskRef<'_>,
        keep: &mut TaskVolumes,
        cancel: &CancelToken,
    ) -> Result<String, SidecarError> {
        let volume = names::task_sidecar_volume_name(task.task_id, names::nonce());
        let labels = names::task_sidecar_labels(
            &self.worker_id,
            &self.instance,
            task.task_id,
            task.execution_id,
        );
        if self.overlay_usable() != Some(false) {
            let mark = keep.mark();
            match self.overlay(shared, &volume, &labels, keep)? {
                Some(()) if self.overlay_usable() == Some(true) => return Ok(volume),
                Some(()) => {
                    if self.overlay_mounts(&volume, reference) {
                        self.set_overlay_usable(true);
                        return Ok(volume);
                    }
                    self.set_overlay_usable(false);
                    keep.remove_since(mark);
                }
                None => keep.remove_since(mark),
            }
        }
        log::info!("copying sidecar image {reference} into this task's own volume {volume}");
        keep.push(volume.clone());
        // A private volume's name is the task's own: nobody else makes it.
        self.copy_image(&volume, reference, &labels, false, cancel)?;
        Ok(volume)
    }

    /// Makes `volume` an overlay on `shared`; `None` when the shared
    /// volume's host path cannot be named in overlay options.
    fn overlay(
        self: &Arc<Self>,
        shared: &str,
        volume: &str,
        labels: &BTreeMap<String, String>,
        keep: &mut TaskVolumes,
    ) -> Result<Option<()>, SidecarError> {
        let lower = self
            .docker
            .volume_inspect(shared)
            .map_err(|source| docker_err(shared, "inspecting it", source))?
            .map(|v| v.mountpoint)
            .unwrap_or_default();
        if !nameable(&lower) {
            return Ok(None);
        }
        let mut part = |suffix: &str| -> Result<VolumeInfo, SidecarError> {
            let name = format!("{volume}-{suffix}");
            let info = self
                .docker
                .volume_create(&name, labels)
                .map_err(|source| docker_err(&name, "creating it", source))?;
            keep.push(name);
            Ok(info)
        };
        let (upper, work) = (part("upper")?, part("work")?);
        if !nameable(&upper.mountpoint) || !nameable(&work.mountpoint) {
            return Ok(None);
        }
        let options = BTreeMap::from([
            ("type", "overlay".to_owned()),
            ("device", "overlay".to_owned()),
            (
                "o",
                format!(
                    "lowerdir={lower},upperdir={},workdir={}",
                    upper.mountpoint, work.mountpoint
                ),
            ),
        ]);
        // Pushed last, removed first: it is the one mounted.
        keep.push(volume.to_owned());
        self.docker
            .volume_create_local(volume, labels, &options)
            .map_err(|source| docker_err(volume, "creating it", source))?;
        keep.hold_lower(self, shared);
        Ok(Some(()))
    }

    /// Whether the daemon can mount the overlay `volume`: a created, never
    /// started container of `reference` that binds it makes the daemon
    /// mount it for one archive call.
    fn overlay_mounts(&self, volume: &str, reference: &str) -> bool {
        let result = self
            .helper(volume, reference, "ovl", true)
            .and_then(|probe| self.docker.head_archive(&probe.id, FILL_PATH));
        match result {
            Ok(_) => true,
            Err(e) => {
                log::info!(
                    "this Docker daemon cannot mount overlay volumes ({e}); read_write sidecars are copied for each task"
                );
                false
            }
        }
    }
}

/// A host path overlay options can name (`,` and `:` separate them).
fn nameable(path: &str) -> bool {
    path.starts_with('/') && !path.contains([',', ':'])
}

/// A task's private sidecar volumes until its container takes them over
/// ([`TaskVolumes::hand_over`]): removed when dropped before that, last made
/// first. The shared volumes under its overlays stay held until it drops
/// (the end of the task's run).
pub struct TaskVolumes {
    sidecars: Arc<SidecarVolumes>,
    names: Vec<String>,
    lowers: Vec<String>,
}

impl TaskVolumes {
    /// None yet.
    pub fn new(sidecars: Arc<SidecarVolumes>) -> Self {
        Self {
            sidecars,
            names: Vec::new(),
            lowers: Vec::new(),
        }
    }

    /// Removes `volume` with the others.
    pub fn push(&mut self, volume: String) {
        self.names.push(volume);
    }

    fn mark(&self) -> (usize, usize) {
        (self.names.len(), self.lowers.len())
    }

    /// While this task lives, the shared volume under its overlay is not
    /// refilled by this worker (it is not "in use" to the daemon).
    fn hold_lower(&mut self, sidecars: &SidecarVolumes, shared: &str) {
        sidecars.hold_lower(shared);
        self.lowers.push(shared.to_owned());
    }

    /// Removes what was added since `mark`, last first.
    fn remove_since(&mut self, (names, lowers): (usize, usize)) {
        for volume in self.names.split_off(names).iter().rev() {
            remove(&self.sidecars, volume);
        }
        for lower in self.lowers.split_off(lowers) {
            self.sidecars.release_lower(&lower);
        }
    }

    /// The volumes, for the task container that now mounts them to remove
    /// after itself (last made first).
    pub fn hand_over(&mut self) -> Vec<String> {
        std::mem::take(&mut self.names)
    }
}

fn remove(sidecars: &SidecarVolumes, volume: &str) {
    match sidecars.docker.volume_remove(volume) {
        Ok(()) => {}
        Err(e @ DockerError::Api { status: 409, .. }) => log::warn!(
            "removing this task's sidecar volume {volume}: {e}; the reaper removes it once no container uses it"
        ),
        Err(e) => log::warn!("removing this task's sidecar volume {volume}: {e}"),
    }
}

impl Drop for TaskVolumes {
    fn drop(&mut self) {
        self.remove_since((0, 0));
    }
}
