//! Sidecar volumes (`shared/spec/TASK.md` §3, ENGINE.md "Filling a volume"):
//! each sidecar image's filesystem copied once into a named volume, reused
//! by every later task.
//!
//! Owns [`SidecarVolumes`]: the process-wide record of volumes known to be
//! complete, the single-flight of fills (two tasks needing the same new
//! volume copy it once), the fill itself (export → archive, streamed, then
//! the completeness marker) and the check of an unknown existing volume. It
//! must not pull images (the caller passes a prepared one) nor touch task
//! containers. A fill that fails or is cancelled leaves no volume and no
//! helper container behind.

use std::collections::HashSet;
use std::fmt;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use serde_json::json;

use super::names::{self, FILL_PATH, LABEL_ROLE, LABEL_VOLUME, MARKER, ROLE_FILL};
use crate::docker::reference::sidecar_volume_name;
use crate::docker::{AbortSlot, Docker, DockerError};
use crate::task::CancelToken;

/// How often a fill by another worker process is looked at.
const OTHER_FILL_POLL: Duration = Duration::from_millis(500);
/// Longest wait for another worker process's fill.
const OTHER_FILL_WAIT: Duration = Duration::from_secs(600);

/// Why a sidecar volume could not be prepared.
#[derive(Debug)]
pub enum SidecarError {
    /// The image has neither a digest nor an id to name the volume after.
    NoDigest {
        /// The sidecar image.
        image: String,
    },
    /// A Docker call failed while checking or filling the volume.
    Docker {
        /// The volume.
        volume: String,
        /// What the worker was doing, e.g. `copying image … into it`.
        step: &'static str,
        /// The daemon's error.
        source: DockerError,
    },
    /// The task was cancelled while waiting for or doing the copy.
    Cancelled,
}

impl fmt::Display for SidecarError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::NoDigest { image } => {
                write!(
                    f,
                    "sidecar image {image} has no digest or id to name its volume"
                )
            }
            Self::Docker {
                volume,
                step,
                source,
            } => write!(f, "preparing sidecar volume {volume}: {step}: {source}"),
            Self::Cancelled => f.write_str("cancelled while preparing a sidecar volume"),
        }
    }
}

impl std::error::Error for SidecarError {}

#[derive(Default)]
struct State {
    /// Volumes verified complete by this process.
    complete: HashSet<String>,
    /// Volumes being checked or filled by some task right now.
    busy: HashSet<String>,
}

/// The worker's sidecar volumes. One per runner, shared by all its tasks.
pub struct SidecarVolumes {
    docker: Docker,
    worker_id: String,
    instance: String,
    state: Mutex<State>,
    changed: Condvar,
    fills: AtomicUsize,
    observer: Mutex<Option<FillObserver>>,
}

/// Called on the task thread when a copy starts streaming (tests, metrics).
pub type FillObserver = Arc<dyn Fn(&str) + Send + Sync>;

impl SidecarVolumes {
    /// Volumes made on `docker`, labelled with `worker_id`; helper
    /// containers also name `instance`, so another live process leaves them be.
    pub fn new(docker: Docker, worker_id: String, instance: String) -> Arc<Self> {
        Arc::new(Self {
            docker,
            worker_id,
            instance,
            state: Mutex::new(State::default()),
            changed: Condvar::new(),
            fills: AtomicUsize::new(0),
            observer: Mutex::new(None),
        })
    }

    /// How many copies this process has started (each costs two helper containers).
    pub fn fills_started(&self) -> usize {
        self.fills.load(Ordering::SeqCst)
    }

    /// Calls `observer` with the volume name whenever a copy starts streaming.
    pub fn set_fill_observer(&self, observer: Option<FillObserver>) {
        *self.observer.lock().unwrap_or_else(|e| e.into_inner()) = observer;
    }

    /// True while some task checks or fills `volume` (the reaper leaves it alone).
    pub fn is_busy(&self, volume: &str) -> bool {
        self.lock().busy.contains(volume)
    }

    /// True when this process has verified `volume` complete.
    pub fn is_known_complete(&self, volume: &str) -> bool {
        self.lock().complete.contains(volume)
    }

    /// The complete volume holding `image`'s filesystem (`reference` is what
    /// to create helpers from, `named` the image as the task named it, which
    /// names the volume). Copies it when missing or incomplete, once even if
    /// several tasks ask at the same time.
    pub fn ensure(
        self: &Arc<Self>,
        named: &str,
        reference: &str,
        repo_digests: &[String],
        image_id: &str,
        cancel: &CancelToken,
    ) -> Result<String, SidecarError> {
        let volume = sidecar_volume_name(named, repo_digests, image_id).ok_or_else(|| {
            SidecarError::NoDigest {
                image: named.to_owned(),
            }
        })?;
        // Wake our wait below when the task is cancelled.
        let me = Arc::clone(self);
        let _hook = cancel.on_cancel(move |_| {
            drop(me.lock());
            me.changed.notify_all();
        });
        let mut state = self.lock();
        loop {
            if cancel.is_cancelled() {
                return Err(SidecarError::Cancelled);
            }
            if state.busy.contains(&volume) {
                state = self.changed.wait(state).unwrap_or_else(|e| e.into_inner());
                continue;
            }
            let known = state.complete.contains(&volume);
            state.busy.insert(volume.clone());
            drop(state);
            let result = self.check_or_fill(&volume, reference, known, cancel);
            state = self.lock();
            state.busy.remove(&volume);
            match &result {
                Ok(()) => {
                    state.complete.insert(volume.clone());
                }
                Err(_) => {
                    state.complete.remove(&volume);
                }
            }
            drop(state);
            self.changed.notify_all();
            return result.map(|()| volume);
        }
    }

    fn check_or_fill(
        &self,
        volume: &str,
        reference: &str,
        known: bool,
        cancel: &CancelToken,
    ) -> Result<(), SidecarError> {
        let exists = self
            .docker
            .volume_inspect(volume)
            .map_err(|source| docker_err(volume, "inspecting it", source))?
            .is_some();
        if exists && known {
            return Ok(());
        }
        if exists {
            if self.has_marker(volume, reference)? {
                log::debug!("sidecar volume {volume} is complete; reusing it");
                return Ok(());
            }
            if self.filled_elsewhere(volume, reference, cancel)? {
                return Ok(());
            }
            log::warn!("sidecar volume {volume} was never completed; removing and copying again");
            self.docker
                .volume_remove(volume)
                .map_err(|source| docker_err(volume, "removing the incomplete volume", source))?;
        }
        self.fill(volume, reference, cancel)
    }

    /// Whether another worker process (sharing this worker id and daemon) is
    /// filling `volume` right now, waited for until its marker appears:
    /// true once the volume is complete, false when nobody fills it (then
    /// it is a leftover to replace).
    fn filled_elsewhere(
        &self,
        volume: &str,
        reference: &str,
        cancel: &CancelToken,
    ) -> Result<bool, SidecarError> {
        let filling = [
            names::label(LABEL_ROLE, ROLE_FILL),
            names::label(LABEL_VOLUME, volume),
        ];
        let deadline = Instant::now() + OTHER_FILL_WAIT;
        let mut logged = false;
        loop {
            let helpers = self
                .docker
                .list_by_label(&[&filling[0], &filling[1]])
                .map_err(|source| docker_err(volume, "looking for a fill in progress", source))?;
            if helpers.is_empty() {
                // The fill may have finished just now.
                return Ok(logged && self.has_marker(volume, reference)?);
            }
            if !logged {
                log::info!(
                    "another worker process is filling sidecar volume {volume}; waiting for it"
                );
                logged = true;
            }
            // No event announces another process's fill ending: look again soon.
            if cancel.wait_timeout(OTHER_FILL_POLL).is_some() {
                return Err(SidecarError::Cancelled);
            }
            if Instant::now() >= deadline {
                return Ok(false);
            }
            if self.has_marker(volume, reference)? {
                return Ok(true);
            }
        }
    }

    /// Whether `volume` holds the marker, seen through a created-never-started container.
    fn has_marker(&self, volume: &str, reference: &str) -> Result<bool, SidecarError> {
        let probe = self
            .helper(volume, reference, "probe", true)
            .map_err(|source| docker_err(volume, "creating a probe container", source))?;
        let found = self
            .docker
            .head_archive(&probe.id, &format!("{FILL_PATH}/{MARKER}"))
            .map_err(|source| docker_err(volume, "looking for its completeness marker", source));
        drop(probe);
        found
    }

    fn fill(
        &self,
        volume: &str,
        reference: &str,
        cancel: &CancelToken,
    ) -> Result<(), SidecarError> {
        self.fills.fetch_add(1, Ordering::SeqCst);
        log::info!("copying sidecar image {reference} into volume {volume}");
        let labels = names::volume_labels(&self.worker_id, reference);
        let mut partial = PartialVolume {
            docker: &self.docker,
            volume,
            done: false,
        };
        self.docker
            .volume_create(volume, &labels)
            .map_err(|source| docker_err(volume, "creating it", source))?;
        let source = self
            .helper(volume, reference, "src", false)
            .map_err(|source| docker_err(volume, "creating the source container", source))?;
        let target = self
            .helper(volume, reference, "dst", true)
            .map_err(|source| docker_err(volume, "creating the target container", source))?;
        // One slot per concurrent call: a slot cuts only the call that armed it last.
        let (export_slot, put_slot) = (AbortSlot::new(), AbortSlot::new());
        let hook_slots = (export_slot.clone(), put_slot.clone());
        let _hook = cancel.on_cancel(move |_| {
            hook_slots.0.abort();
            hook_slots.1.abort();
        });
        let copy_err = |source| {
            if cancel.is_cancelled() {
                SidecarError::Cancelled
            } else {
                docker_err(volume, "copying the image into it", source)
            }
        };
        let mut export = self
            .docker
            .export(&source.id, &export_slot)
            .map_err(copy_err)?;
        let observer = self
            .observer
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone();
        if let Some(observer) = observer {
            observer(volume);
        }
        self.docker
            .put_archive(&target.id, FILL_PATH, &mut export, &put_slot)
            .map_err(copy_err)?;
        drop(export);
        self.docker
            .put_archive(
                &target.id,
                FILL_PATH,
                &mut names::marker_tar().as_slice(),
                &put_slot,
            )
            .map_err(copy_err)?;
        partial.done = true;
        log::info!("sidecar volume {volume} is ready");
        Ok(())
    }

    /// A created, never started container of `reference`, mounting `volume` when asked.
    fn helper(
        &self,
        volume: &str,
        reference: &str,
        what: &str,
        mount: bool,
    ) -> Result<Helper<'_>, DockerError> {
        let mut body = json!({
            "Image": reference,
            "Cmd": ["true"],
            "Labels": names::helper_labels(&self.worker_id, &self.instance, volume),
        });
        if mount {
            body["HostConfig"] = json!({ "Binds": [format!("{volume}:{FILL_PATH}:nocopy")] });
        }
        let name = names::helper_name(volume, what, names::nonce());
        let id = self.docker.create(&name, &body)?;
        Ok(Helper {
            docker: &self.docker,
            id,
        })
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }
}

fn docker_err(volume: &str, step: &'static str, source: DockerError) -> SidecarError {
    SidecarError::Docker {
        volume: volume.to_owned(),
        step,
        source,
    }
}

/// A helper container, removed when dropped.
struct Helper<'a> {
    docker: &'a Docker,
    id: String,
}

impl Drop for Helper<'_> {
    fn drop(&mut self) {
        if let Err(e) = self.docker.remove(&self.id) {
            log::warn!("removing helper container {}: {e}", self.id);
        }
    }
}

/// A volume being filled: removed when dropped before `done`.
struct PartialVolume<'a> {
    docker: &'a Docker,
    volume: &'a str,
    done: bool,
}

impl Drop for PartialVolume<'_> {
    fn drop(&mut self) {
        if !self.done
            && let Err(e) = self.docker.volume_remove(self.volume)
        {
            log::warn!("removing incomplete sidecar volume {}: {e}", self.volume);
        }
    }
}
