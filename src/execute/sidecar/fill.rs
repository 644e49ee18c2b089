//! Filling a volume: create it, stream the image's export into it through
//! two created-never-started helper containers, then the completeness
//! marker. A fill that fails or is cancelled removes its volume and its
//! helpers again ([`PartialVolume`], [`Helper`]).

use std::collections::BTreeMap;
use std::io::Read;
use std::sync::atomic::Ordering;
use std::time::Instant;

use serde_json::json;

use super::record::{Identity, Known};
use super::{SidecarError, SidecarVolumes, docker_err};
use crate::docker::{AbortSlot, Docker, DockerError};
use crate::execute::names::{self, FILL_PATH};
use crate::execute::progress::{self, CopyTally, Throttle};
use crate::metrics::WorkResult;
use crate::task::CancelToken;
use crate::telemetry;

impl SidecarVolumes {
    /// Fills a new shared volume, marker last; `None` when another worker
    /// process made the volume first (it fills it).
    pub(super) fn fill(
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
    pub(super) fn copy_image(
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
        if !self.create_first(volume, labels)? {
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
        self.observe(volume);
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

    /// Creates `volume` with `labels`; false when `labels` name a fill id
    /// and the daemon already had the volume with another one (its first
    /// maker fills it).
    fn create_first(
        &self,
        volume: &str,
        labels: &BTreeMap<String, String>,
    ) -> Result<bool, SidecarError> {
        let made = self
            .docker
            .volume_create(volume, labels)
            .map_err(|source| docker_err(volume, "creating it", source))?;
        Ok(match labels.get(names::LABEL_FILL_ID) {
            Some(mine) => made.labels.get(names::LABEL_FILL_ID) == Some(mine),
            None => true,
        })
    }

    /// Tells the fill observer, if any, that a copy into `volume` starts.
    fn observe(&self, volume: &str) {
        let observer = self
            .observer
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone();
        if let Some(observer) = observer {
            observer(volume);
        }
    }

    /// A created, never started container of `reference`, mounting `volume` when asked.
    pub(super) fn helper(
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
pub(super) struct Helper<'a> {
    docker: &'a Docker,
    /// The container's id.
    pub(super) id: String,
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
