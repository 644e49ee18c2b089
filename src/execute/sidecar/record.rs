//! What this process knows about its sidecar volumes: which are verified
//! complete (and the identity they had then), which are busy or suspect,
//! which shared volumes sit under a running task's overlay, and whether the
//! daemon mounts overlays. In memory only; asking the daemon is
//! `resolve`'s and `fill`'s.

use std::collections::{HashMap, HashSet};
use std::sync::MutexGuard;

use super::SidecarVolumes;
use crate::docker::{DockerError, VolumeInfo};
use crate::execute::names::{self, FOREIGN_ALTERNATE_SUFFIX, LABEL_FILLED_FROM};

/// A volume this process verified complete.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct Known {
    /// The volume holding the files: the plain name, or its alternate.
    pub(super) volume: String,
    /// Its identity when verified: creation time and fill id.
    pub(super) identity: Identity,
}

/// What tells one volume from another made under the same name.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct Identity {
    pub(super) created_at: String,
    pub(super) fill_id: Option<String>,
    pub(super) filled_from: Option<String>,
}

impl Identity {
    pub(super) fn of(info: &VolumeInfo) -> Self {
        Self {
            created_at: info.created_at.clone(),
            fill_id: info.labels.get(names::LABEL_FILL_ID).cloned(),
            filled_from: info.labels.get(LABEL_FILLED_FROM).cloned(),
        }
    }
}

/// Whether `info` records that it was filled from image `image_id`.
pub(super) fn filled_from(info: &VolumeInfo, image_id: &str) -> bool {
    !image_id.is_empty() && info.labels.get(LABEL_FILLED_FROM).map(String::as_str) == Some(image_id)
}

#[derive(Default)]
pub(super) struct State {
    /// Plain volume name → the complete volume serving it.
    pub(super) complete: HashMap<String, Known>,
    /// Plain names being checked or filled by some task right now, with
    /// the volumes that work touches.
    pub(super) busy: HashSet<String>,
    /// Volumes a task could not start with: refilled before the next use,
    /// whatever their marker says.
    pub(super) suspect: HashSet<String>,
    /// Shared volumes under a running task's overlay, with how many: the
    /// daemon does not know they are in use, so this worker never removes
    /// them meanwhile.
    pub(super) lowers: HashMap<String, usize>,
    /// Whether the daemon mounts overlay volumes (`None`: not tried yet).
    pub(super) overlay: Option<bool>,
}

impl SidecarVolumes {
    /// True while some task checks or fills `volume` (the reaper leaves it alone).
    pub fn is_busy(&self, volume: &str) -> bool {
        let busy = &self.lock().busy;
        busy.contains(volume)
            || volume
                .strip_suffix(FOREIGN_ALTERNATE_SUFFIX)
                .is_some_and(|plain| busy.contains(plain))
    }

    /// True while this process checks or fills `volume`, or a running task
    /// of it has an overlay on it (the daemon does not see that use):
    /// retention leaves it alone.
    pub fn in_use_here(&self, volume: &str) -> bool {
        self.is_busy(volume) || self.lock().lowers.contains_key(volume)
    }

    /// True when this process has verified `volume` complete.
    pub fn is_known_complete(&self, volume: &str) -> bool {
        self.lock().complete.values().any(|k| k.volume == volume)
    }

    /// Forgets what this process verified about `volumes` (the volumes a
    /// task that could not start was given) and distrusts them: the next
    /// task that needs one gets it copied again (or, while another container
    /// still uses it, a fresh copy under the alternate name).
    pub fn forget(&self, volumes: &[String]) {
        let mut state = self.lock();
        state.complete.retain(|_, k| !volumes.contains(&k.volume));
        state.suspect.extend(volumes.iter().cloned());
    }

    pub(super) fn is_suspect(&self, volume: &str) -> bool {
        self.lock().suspect.contains(volume)
    }

    pub(super) fn hold_lower(&self, volume: &str) {
        *self.lock().lowers.entry(volume.to_owned()).or_default() += 1;
    }

    pub(super) fn release_lower(&self, volume: &str) {
        let mut state = self.lock();
        if let Some(n) = state.lowers.get_mut(volume) {
            *n -= 1;
            if *n == 0 {
                state.lowers.remove(volume);
            }
        }
    }

    /// Forces how `read_write` sidecars get their private volume: `Some(false)`
    /// copies the image for each task, `Some(true)` mounts an overlay without
    /// checking first, `None` checks on the next one (the default).
    pub fn set_overlay(&self, usable: Option<bool>) {
        self.lock().overlay = usable;
    }

    pub(super) fn overlay_usable(&self) -> Option<bool> {
        self.lock().overlay
    }

    pub(super) fn set_overlay_usable(&self, usable: bool) {
        self.lock().overlay = Some(usable);
    }

    /// Removes `volume` unless a container (or an overlay of this worker's)
    /// uses it.
    pub(super) fn remove_unused(&self, volume: &str) -> Result<(), DockerError> {
        if self.lock().lowers.contains_key(volume) {
            return Err(DockerError::Api {
                call: format!("DELETE /volumes/{volume}"),
                status: 409,
                message: "under a running task's read_write overlay".into(),
            });
        }
        self.docker.volume_remove(volume)
    }

    pub(super) fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }
}
