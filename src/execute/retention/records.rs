//! The use records: what this process saw tasks use (in memory), and the
//! small volumes on the daemon (roles `sidecar-use`, `image-pull`) whose
//! creation time is an object's last use. Writes and reads records; never
//! removes a sidecar volume or an image (that is the pass's).

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant, SystemTime};

use super::super::image::PreparedImage;
use super::super::names::{
    self, LABEL_IMAGE, LABEL_IMAGE_ID, LABEL_ROLE, LABEL_VOLUME, ROLE_IMAGE_PULL, ROLE_SIDECAR_USE,
};
use super::{RECORD_EVERY, RetentionSettings, lock};
use crate::container_spec::{LABEL_MANAGED, LABEL_WORKER_ID};
use crate::docker::{Docker, DockerError, VolumeInfo};

/// How often a record is written again for objects kept `retention`.
pub(super) fn record_every(retention: Duration) -> Duration {
    RECORD_EVERY.min(retention / 4)
}

/// What a use is noted for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub(super) enum Kind {
    /// A shared sidecar volume, by name.
    SidecarVolume,
    /// An image, by id.
    Image,
}

#[derive(Default)]
struct Uses {
    /// When a task of this process last used each object.
    last: HashMap<(Kind, String), Instant>,
    /// When this process last wrote (or looked for) each object's record.
    recorded: HashMap<(Kind, String), Instant>,
}

/// This process's part of retention: its settings, the uses it saw, and
/// the lock that runs one pass at a time. One per runner.
pub struct Retention {
    docker: Docker,
    worker_id: String,
    pub(super) started: SystemTime,
    settings: Mutex<RetentionSettings>,
    uses: Mutex<Uses>,
    /// Held through a pass; when the last one started.
    pub(super) passes: Mutex<Option<Instant>>,
}

impl Retention {
    /// Retention of objects of `worker_id` on `docker`; off until [`Retention::set`].
    pub fn new(docker: Docker, worker_id: String) -> Self {
        Self {
            docker,
            worker_id,
            started: SystemTime::now(),
            settings: Mutex::default(),
            uses: Mutex::default(),
            passes: Mutex::default(),
        }
    }

    /// Replaces the settings.
    pub fn set(&self, settings: RetentionSettings) {
        *lock(&self.settings) = settings;
    }

    /// The settings now.
    pub fn settings(&self) -> RetentionSettings {
        lock(&self.settings).clone()
    }

    /// A task mounts shared sidecar volume `volume`: remembered, and its use
    /// record written again when due. Never fails the task.
    pub fn sidecar_used(&self, volume: &str) {
        let Some(retention) = self.settings().sidecar_volumes else {
            return;
        };
        if !self.note_use(Kind::SidecarVolume, volume, record_every(retention), false) {
            return;
        }
        let labels = record_labels(&[
            (LABEL_MANAGED, "true"),
            (LABEL_WORKER_ID, &self.worker_id),
            (LABEL_ROLE, ROLE_SIDECAR_USE),
            (LABEL_VOLUME, volume),
        ]);
        let name = names::sidecar_use_name(volume, names::nonce());
        let written = self.write_record(
            ROLE_SIDECAR_USE,
            (LABEL_VOLUME, volume),
            &name,
            &labels,
            true,
        );
        if let Err(e) = written {
            log::warn!("recording the use of sidecar volume {volume}: {e}");
            self.forget_record(Kind::SidecarVolume, volume);
        }
    }

    /// A task uses `image`: remembered; a pull of it (the host lacked it)
    /// is recorded, and an existing record written again when due. Never
    /// fails the task.
    pub fn image_used(&self, image: &PreparedImage) {
        let Some(retention) = self.settings().images else {
            return;
        };
        let id = image.info.id.as_str();
        if id.is_empty() || !self.note_use(Kind::Image, id, record_every(retention), image.pulled) {
            return;
        }
        let labels = record_labels(&[
            (LABEL_MANAGED, "true"),
            (LABEL_WORKER_ID, &self.worker_id),
            (LABEL_ROLE, ROLE_IMAGE_PULL),
            (LABEL_IMAGE_ID, id),
            (LABEL_IMAGE, &image.reference),
        ]);
        let name = names::image_pull_name(id, names::nonce());
        let written = self.write_record(
            ROLE_IMAGE_PULL,
            (LABEL_IMAGE_ID, id),
            &name,
            &labels,
            image.pulled,
        );
        if let Err(e) = written {
            log::warn!("recording the use of image {}: {e}", image.reference);
            self.forget_record(Kind::Image, id);
        }
    }

    /// Notes a use now; true when the object's record is due (`force`, or
    /// not written by this process within `every`), marked written.
    fn note_use(&self, kind: Kind, key: &str, every: Duration, force: bool) -> bool {
        let now = Instant::now();
        let mut uses = lock(&self.uses);
        let key = (kind, key.to_owned());
        uses.last.insert(key.clone(), now);
        let due = force
            || uses
                .recorded
                .get(&key)
                .is_none_or(|at| now.duration_since(*at) >= every);
        if due {
            uses.recorded.insert(key, now);
        }
        due
    }

    fn forget_record(&self, kind: Kind, key: &str) {
        lock(&self.uses).recorded.remove(&(kind, key.to_owned()));
    }

    /// When a task of this process last used the object, in daemon seconds
    /// (`now` is the daemon's time now).
    pub(super) fn used_at(&self, kind: Kind, key: &str, now: u64) -> Option<u64> {
        lock(&self.uses)
            .last
            .get(&(kind, key.to_owned()))
            .map(|at| now.saturating_sub(at.elapsed().as_secs()))
    }

    /// Whether a task of this process used the object since `since`.
    pub(super) fn used_since(&self, kind: Kind, key: &str, since: Instant) -> bool {
        lock(&self.uses)
            .last
            .get(&(kind, key.to_owned()))
            .is_some_and(|at| *at >= since)
    }

    /// Makes a new record `name` for the object `target` names, then
    /// removes its older records (so one always exists for a reader
    /// in between). Without `create_if_missing`, nothing is made where no
    /// record exists.
    fn write_record(
        &self,
        role: &str,
        target: (&str, &str),
        name: &str,
        labels: &std::collections::BTreeMap<String, String>,
        create_if_missing: bool,
    ) -> Result<(), DockerError> {
        let older = self.records_of(role, target)?;
        if older.is_empty() && !create_if_missing {
            return Ok(());
        }
        self.docker.volume_create(name, labels)?;
        for v in older.iter().filter(|v| v.name != name) {
            if let Err(e) = self.docker.volume_remove(&v.name) {
                log::debug!("removing the older record {}: {e}", v.name);
            }
        }
        Ok(())
    }

    pub(super) fn records_of(
        &self,
        role: &str,
        (key, value): (&str, &str),
    ) -> Result<Vec<VolumeInfo>, DockerError> {
        let filter = [names::label(LABEL_ROLE, role), names::label(key, value)];
        self.docker.volume_list_by_label(&[&filter[0], &filter[1]])
    }
}

fn record_labels(pairs: &[(&str, &str)]) -> std::collections::BTreeMap<String, String> {
    pairs
        .iter()
        .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
        .collect()
}
