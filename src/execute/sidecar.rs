//! Sidecar volumes (`shared/spec/TASK.md` §3, ENGINE.md "Filling a volume"):
//! each sidecar image's filesystem copied once into a named volume, reused
//! by every later task.
//!
//! Owns [`SidecarVolumes`]: the process-wide record of volumes known to be
//! complete (each with the volume's identity, its creation time and a random
//! fill id label, so a volume replaced behind the worker's back is checked
//! again), the single-flight of
//! fills (two tasks needing the same new volume copy it once), the fill
//! itself (export → archive, streamed, then the completeness marker), the
//! check of an existing volume, and what to do with one another program made
//! (see [`SidecarVolumes::ensure`]). Across worker processes on one daemon
//! the first creator of a volume fills it (the daemon keeps the first
//! creator's labels) and the others wait for its marker; a volume is reused
//! only for the image it records being filled from. A task's private copy of a `read_write`
//! sidecar lives in [`task_copy`]. It must not pull images (the caller
//! passes a prepared one) nor touch task containers. A fill that fails or is
//! cancelled leaves no volume and no helper container behind.
//!
//! Shared volumes are only ever mounted read-only into task containers: a
//! task that asks for a sidecar `read_write` gets its own copy, so no task
//! can change what another runs, nor write the completeness marker.

pub mod task_copy;

use std::collections::{BTreeMap, HashMap, HashSet};
use std::fmt;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use std::io::Read;

use serde_json::json;

use super::names::{
    self, FILL_PATH, FOREIGN_ALTERNATE_SUFFIX, LABEL_FILLED_FROM, LABEL_ROLE, LABEL_SIDECAR_IMAGE,
    LABEL_VOLUME, MARKER, ROLE_FILL,
};
use super::progress::{self, CopyTally, Throttle};
use crate::container_spec::LABEL_MANAGED;
use crate::docker::reference::sidecar_volume_name;
use crate::docker::{AbortSlot, Docker, DockerError, VolumeInfo};
use crate::metrics::WorkResult;
use crate::task::CancelToken;
use crate::telemetry;

/// How often a fill by another worker process is looked at.
const OTHER_FILL_POLL: Duration = Duration::from_millis(500);
/// Longest wait for another worker process's fill.
const OTHER_FILL_WAIT: Duration = Duration::from_secs(600);
/// How long a volume another process just made may show no fill helper
/// yet (it makes them right after the volume).
const FIRST_FILL_GRACE: Duration = Duration::from_secs(30);
/// How often a first fill is tried when other processes' fills keep
/// vanishing unfinished.
const FILL_ATTEMPTS: usize = 3;

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
    /// Other worker processes kept starting the volume's first copy and
    /// never finished it.
    Contended {
        /// The volume.
        volume: String,
    },
}

impl fmt::Display for SidecarError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::NoDigest { image } => {
                write!(
                    f,
                    "sidecar image {} has no digest or id to name its volume",
                    crate::outside::Shown(image)
                )
            }
            Self::Docker {
                volume,
                step,
                source,
            } => write!(
                f,
                "preparing sidecar volume {}: {step}: {source}",
                crate::outside::Shown(volume)
            ),
            Self::Cancelled => f.write_str("cancelled while preparing a sidecar volume"),
            Self::Contended { volume } => write!(
                f,
                "preparing sidecar volume {}: other worker processes kept starting its copy and never finished it ({FILL_ATTEMPTS} tries)",
                crate::outside::Shown(volume)
            ),
        }
    }
}

impl std::error::Error for SidecarError {}

/// A volume this process verified complete.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Known {
    /// The volume holding the files: the plain name, or its alternate.
    volume: String,
    /// Its identity when verified: creation time and fill id.
    identity: Identity,
}

/// What tells one volume from another made under the same name.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Identity {
    created_at: String,
    fill_id: Option<String>,
    filled_from: Option<String>,
}

impl Identity {
    fn of(info: &VolumeInfo) -> Self {
        Self {
            created_at: info.created_at.clone(),
            fill_id: info.labels.get(names::LABEL_FILL_ID).cloned(),
            filled_from: info.labels.get(LABEL_FILLED_FROM).cloned(),
        }
    }
}

/// Whether `info` records that it was filled from image `image_id`.
fn filled_from(info: &VolumeInfo, image_id: &str) -> bool {
    !image_id.is_empty() && info.labels.get(LABEL_FILLED_FROM).map(String::as_str) == Some(image_id)
}

#[derive(Default)]
struct State {
    /// Plain volume name → the complete volume serving it.
    complete: HashMap<String, Known>,
    /// Plain names being checked or filled by some task right now, with
    /// the volumes that work touches.
    busy: HashSet<String>,
    /// Volumes a task could not start with: refilled before the next use,
    /// whatever their marker says.
    suspect: HashSet<String>,
    /// Shared volumes under a running task's overlay, with how many: the
    /// daemon does not know they are in use, so this worker never removes
    /// them meanwhile.
    lowers: HashMap<String, usize>,
    /// Whether the daemon mounts overlay volumes (`None`: not tried yet).
    overlay: Option<bool>,
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

    fn is_suspect(&self, volume: &str) -> bool {
        self.lock().suspect.contains(volume)
    }

    fn hold_lower(&self, volume: &str) {
        *self.lock().lowers.entry(volume.to_owned()).or_default() += 1;
    }

    fn release_lower(&self, volume: &str) {
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

    fn overlay_usable(&self) -> Option<bool> {
        self.lock().overlay
    }

    fn set_overlay_usable(&self, usable: bool) {
        self.lock().overlay = Some(usable);
    }

    /// Removes `volume` unless a container (or an overlay of this worker's)
    /// uses it.
    fn remove_unused(&self, volume: &str) -> Result<(), DockerError> {
        if self.lock().lowers.contains_key(volume) {
            return Err(DockerError::Api {
                call: format!("DELETE /volumes/{volume}"),
                status: 409,
                message: "under a running task's read_write overlay".into(),
            });
        }
        self.docker.volume_remove(volume)
    }

    /// The complete volume holding `image`'s filesystem (`reference` is what
    /// to create helpers from, `named` the image as the task named it, which
    /// names the volume). Copies it when missing or incomplete, once even if
    /// several tasks ask at the same time.
    ///
    /// A volume of that name that another program made (no
    /// `dev.warp.oz-agent-worker.managed` label: the Go worker names its
    /// sidecar volumes the same way, and Docker makes an empty one when a
    /// container names a missing volume) is never trusted, whatever it
    /// holds: when no container uses it, it is replaced by a complete one of
    /// the worker's own; when one does (a container the Go worker kept with
    /// `--no-cleanup`), it is left alone and the worker fills and uses its
    /// own volume under the name plus [`FOREIGN_ALTERNATE_SUFFIX`]. A task
    /// never fails because of such a volume.
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
            let known = state.complete.get(&volume).cloned();
            state.busy.insert(volume.clone());
            drop(state);
            let result = self.resolve(&volume, reference, image_id, known, cancel);
            state = self.lock();
            state.busy.remove(&volume);
            match &result {
                Ok(k) => {
                    state.complete.insert(volume.clone(), k.clone());
                }
                Err(_) => {
                    state.complete.remove(&volume);
                }
            }
            drop(state);
            self.changed.notify_all();
            return result.map(|k| k.volume);
        }
    }

    /// The complete volume serving the plain name `volume`.
    fn resolve(
        &self,
        volume: &str,
        reference: &str,
        image_id: &str,
        known: Option<Known>,
        cancel: &CancelToken,
    ) -> Result<Known, SidecarError> {
        if let Some(known) = known {
            // One inspect: the same volume as verified, or check again.
            match self.inspect(&known.volume)? {
                Some(info)
                    if Identity::of(&info) == known.identity && filled_from(&info, image_id) =>
                {
                    return Ok(known);
                }
                Some(_) => log::info!(
                    "sidecar volume {} was replaced since it was checked; checking it again",
                    known.volume
                ),
                None => {}
            }
        }
        for _ in 0..FILL_ATTEMPTS {
            if let Some(known) = self.resolve_once(volume, reference, image_id, cancel)? {
                return Ok(known);
            }
        }
        Err(SidecarError::Contended {
            volume: volume.to_owned(),
        })
    }

    /// One try of [`Self::resolve`]; `None` when another process began the
    /// first copy and went away without finishing it (try again).
    fn resolve_once(
        &self,
        volume: &str,
        reference: &str,
        image_id: &str,
        cancel: &CancelToken,
    ) -> Result<Option<Known>, SidecarError> {
        let Some(info) = self.inspect(volume)? else {
            return self.fill_or_wait(volume, reference, image_id, cancel);
        };
        if self.is_suspect(volume) {
            log::warn!(
                "sidecar volume {volume} was in use when a task could not start; copying it again"
            );
        } else if is_ours(&info) && !filled_from(&info, image_id) {
            log::warn!(
                "sidecar volume {volume} does not record being filled from image {}; copying that image again",
                crate::outside::Shown(image_id)
            );
        } else if is_ours(&info) {
            if self.has_marker(volume, reference)? {
                log::debug!("sidecar volume {volume} is complete; reusing it");
                return Ok(Some(Known {
                    volume: volume.to_owned(),
                    identity: Identity::of(&info),
                }));
            }
            if self.filled_elsewhere(volume, reference, cancel, Duration::ZERO)? {
                let info = self.inspect(volume)?.unwrap_or(info);
                return Ok(Some(Known {
                    volume: volume.to_owned(),
                    identity: Identity::of(&info),
                }));
            }
            log::warn!("sidecar volume {volume} was never completed; removing and copying again");
        } else {
            log::warn!(
                "a volume named {volume} exists that this worker did not make (another program, e.g. the Go worker, or Docker itself); not trusting its content"
            );
        }
        match self.remove_unused(volume) {
            Ok(()) => {
                let known = self.fill_or_wait(volume, reference, image_id, cancel)?;
                if known.is_some() {
                    self.drop_alternate(volume);
                }
                Ok(known)
            }
            Err(DockerError::Api { status: 409, .. }) => {
                let alternate = format!("{volume}{FOREIGN_ALTERNATE_SUFFIX}");
                log::info!(
                    "volume {volume} is in use by a container; using this worker's own copy {alternate}"
                );
                self.resolve_alternate(&alternate, reference, image_id, cancel)
            }
            Err(source) => Err(docker_err(volume, "removing it", source)),
        }
    }

    /// Fills `volume` — or, when another worker process made it first (the
    /// daemon keeps the first creator's labels), waits for that process's
    /// copy. `None`: that copy vanished unfinished.
    fn fill_or_wait(
        &self,
        volume: &str,
        reference: &str,
        image_id: &str,
        cancel: &CancelToken,
    ) -> Result<Option<Known>, SidecarError> {
        if let Some(known) = self.fill(volume, reference, image_id, cancel)? {
            return Ok(Some(known));
        }
        if self.filled_elsewhere(volume, reference, cancel, FIRST_FILL_GRACE)?
            && let Some(info) = self.inspect(volume)?
            && filled_from(&info, image_id)
        {
            return Ok(Some(Known {
                volume: volume.to_owned(),
                identity: Identity::of(&info),
            }));
        }
        Ok(None)
    }

    /// The worker's own volume under the alternate name: reused when
    /// complete, else (re)filled.
    fn resolve_alternate(
        &self,
        alternate: &str,
        reference: &str,
        image_id: &str,
        cancel: &CancelToken,
    ) -> Result<Option<Known>, SidecarError> {
        if let Some(info) = self.inspect(alternate)? {
            if is_ours(&info)
                && filled_from(&info, image_id)
                && !self.is_suspect(alternate)
                && self.has_marker(alternate, reference)?
            {
                return Ok(Some(Known {
                    volume: alternate.to_owned(),
                    identity: Identity::of(&info),
                }));
            }
            self.remove_unused(alternate).map_err(|source| {
                docker_err(alternate, "removing the incomplete volume", source)
            })?;
        }
        self.fill_or_wait(alternate, reference, image_id, cancel)
    }

    /// After the plain name is the worker's again, its alternate serves
    /// nothing: remove it unless a container still uses it.
    fn drop_alternate(&self, volume: &str) {
        let alternate = format!("{volume}{FOREIGN_ALTERNATE_SUFFIX}");
        if let Ok(Some(info)) = self.docker.volume_inspect(&alternate)
            && is_ours(&info)
        {
            match self.docker.volume_remove(&alternate) {
                Ok(()) | Err(DockerError::Api { status: 409, .. }) => {}
                Err(e) => log::warn!("removing sidecar volume {alternate}: {e}"),
            }
        }
    }

    fn inspect(&self, volume: &str) -> Result<Option<VolumeInfo>, SidecarError> {
        self.docker
            .volume_inspect(volume)
            .map_err(|source| docker_err(volume, "inspecting it", source))
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
        grace: Duration,
    ) -> Result<bool, SidecarError> {
        let started = Instant::now();
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
                if (logged || !grace.is_zero()) && self.has_marker(volume, reference)? {
                    return Ok(true);
                }
                if logged || started.elapsed() >= grace {
                    return Ok(false);
                }
                // Its maker has yet to make its helpers (within the grace).
                if cancel.wait_timeout(OTHER_FILL_POLL).is_some() {
                    return Err(SidecarError::Cancelled);
                }
                continue;
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

    /// Fills a new shared volume, marker last; `None` when another worker
    /// process made the volume first (it fills it).
    fn fill(
        &self,
        volume: &str,
        reference: &str,
        image_id: &str,
        cancel: &CancelToken,
    ) -> Result<Option<Known>, SidecarError> {
        let fill_id = names::fill_id();
        let fill = names::Fill {
            id: &fill_id,
            instance: &self.instance,
            image_id,
        };
        let labels = names::volume_labels(&self.worker_id, reference, &fill);
        log::info!("copying sidecar image {reference} into volume {volume}");
        if !self.copy_image(volume, reference, &labels, true, cancel)? {
            log::info!(
                "another worker process began copying sidecar volume {volume} first; waiting for it"
            );
            return Ok(None);
        }
        self.lock().suspect.remove(volume);
        // The creation time the daemon reports follows changes at the
        // volume's root, so it is read once the copy is in.
        let info = self.inspect(volume)?;
        log::info!("sidecar volume {volume} is ready");
        Ok(Some(Known {
            volume: volume.to_owned(),
            identity: info.as_ref().map_or(
                Identity {
                    created_at: String::new(),
                    fill_id: Some(fill_id.clone()),
                    filled_from: Some(image_id.to_owned()),
                },
                Identity::of,
            ),
        }))
    }

    /// [`Self::copy_counted`], timed and counted for the copy metrics and
    /// its closing line.
    fn copy_image(
        &self,
        volume: &str,
        reference: &str,
        labels: &BTreeMap<String, String>,
        marker: bool,
        cancel: &CancelToken,
    ) -> Result<bool, SidecarError> {
        let started = Instant::now();
        let mut tally = CopyTally::default();
        let result = self.copy_counted(volume, reference, labels, marker, cancel, &mut tally);
        let took = started.elapsed();
        let outcome = match &result {
            Ok(false) => return result,
            Ok(true) => {
                log::info!("{}", tally.summary(reference, volume, took));
                WorkResult::Succeeded
            }
            Err(_) => WorkResult::Failed,
        };
        telemetry::sidecar_copied(outcome, took, tally.bytes);
        result
    }

    /// Creates `volume` with `labels` and copies `reference`'s filesystem
    /// into it (then the marker, when asked). Removes the volume again
    /// unless the copy completes. `false` (nothing done): `labels` name a
    /// fill id and the daemon already had the volume with another one — its
    /// first maker fills it.
    fn copy_counted(
        &self,
        volume: &str,
        reference: &str,
        labels: &BTreeMap<String, String>,
        marker: bool,
        cancel: &CancelToken,
        tally: &mut CopyTally,
    ) -> Result<bool, SidecarError> {
        let started = Instant::now();
        let made = self
            .docker
            .volume_create(volume, labels)
            .map_err(|source| docker_err(volume, "creating it", source))?;
        if let Some(mine) = labels.get(names::LABEL_FILL_ID)
            && made.labels.get(names::LABEL_FILL_ID) != Some(mine)
        {
            return Ok(false);
        }
        if marker {
            self.fills.fetch_add(1, Ordering::SeqCst);
        }
        let mut partial = PartialVolume {
            docker: &self.docker,
            volume,
            done: false,
        };
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
        let mut counted = Counted {
            inner: &mut export,
            tally,
            throttle: Throttle::new(started, progress::EVERY),
            image: reference,
            volume,
        };
        self.docker
            .put_archive(&target.id, FILL_PATH, &mut counted, &put_slot)
            .map_err(copy_err)?;
        drop(export);
        if marker {
            self.docker
                .put_archive(
                    &target.id,
                    FILL_PATH,
                    &mut names::marker_tar().as_slice(),
                    &put_slot,
                )
                .map_err(copy_err)?;
        }
        partial.done = true;
        Ok(true)
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

/// Made by this worker (any worker id: the scheme is the same) as a shared
/// sidecar volume; anything else is another program's.
fn is_ours(info: &VolumeInfo) -> bool {
    info.labels.get(LABEL_MANAGED).is_some_and(|v| v == "true")
        && info.labels.contains_key(LABEL_SIDECAR_IMAGE)
}

fn docker_err(volume: &str, step: &'static str, source: DockerError) -> SidecarError {
    SidecarError::Docker {
        volume: volume.to_owned(),
        step,
        source,
    }
}

/// The export stream on its way into the volume: counts its bytes and logs
/// a progress line at most every [`progress::EVERY`].
struct Counted<'a, R> {
    inner: &'a mut R,
    tally: &'a mut CopyTally,
    throttle: Throttle,
    image: &'a str,
    volume: &'a str,
}

impl<R: Read> Read for Counted<'_, R> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.tally.add(n);
        if let Some(since) = self.throttle.due(Instant::now()) {
            log::info!("{}", self.tally.line(self.image, self.volume, since));
        }
        Ok(n)
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
