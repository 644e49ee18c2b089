//! Which complete volume serves a sidecar image: the single-flight entry
//! [`SidecarVolumes::ensure`], the judgement of a volume already on the
//! daemon (reuse, wait for another worker process's fill, replace, or use
//! the alternate name), and the marker check through a probe container.
//! Copying is `fill`'s; the bookkeeping `record`'s.

use std::sync::Arc;
use std::time::{Duration, Instant};

use super::record::{Identity, Known, filled_from};
use super::{SidecarError, SidecarVolumes, docker_err, is_ours};
use crate::docker::reference::sidecar_volume_name;
use crate::docker::{DockerError, VolumeInfo};
use crate::execute::names::{
    self, FILL_PATH, FOREIGN_ALTERNATE_SUFFIX, LABEL_ROLE, LABEL_VOLUME, MARKER, ROLE_FILL,
};
use crate::task::CancelToken;

/// How often a fill by another worker process is looked at.
const OTHER_FILL_POLL: Duration = Duration::from_millis(500);
/// Longest wait for another worker process's fill.
const OTHER_FILL_WAIT: Duration = Duration::from_secs(600);
/// How long a volume another process just made may show no fill helper
/// yet (it makes them right after the volume).
const FIRST_FILL_GRACE: Duration = Duration::from_secs(30);
/// How often a first fill is tried when other processes' fills keep
/// vanishing unfinished.
pub(super) const FILL_ATTEMPTS: usize = 3;

impl SidecarVolumes {
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
                crate::untrusted::Escaped(image_id)
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

    pub(super) fn inspect(&self, volume: &str) -> Result<Option<VolumeInfo>, SidecarError> {
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
}
