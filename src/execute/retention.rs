//! Retention ("disks that never fill"): shared sidecar volumes and task
//! images that no task has used for a while are removed, so a host that
//! sees a new agent release every week does not keep every old one forever.
//!
//! Owns the use records on the daemon (a small volume per sidecar volume,
//! role `sidecar-use`, and per image this worker pulled, role
//! `image-pull`, whose creation time on the daemon's clock is the last use;
//! written when a task uses the object, at most every [`RECORD_EVERY`] per
//! process), the decision ([`sidecar_volumes_to_remove`],
//! [`images_to_remove`]: pure functions of what was seen), and the pass that
//! looks, decides and removes ([`retention_pass`], run by the reaper at most
//! every [`PASS_EVERY`] and callable by anyone who needs space now).
//!
//! It must not touch anything it cannot prove unused: a volume or image
//! used by any container (running or not; the daemon refuses those anyway),
//! a volume being checked or filled or under a running task's overlay, the
//! newest sidecar volume of each repository, the configured default and
//! sidecar images and the prefetched ones (and their volumes), an image
//! this worker did not pull. Incomplete volumes and leftovers are the
//! reaper's; objects of other worker ids are theirs (their uses still count).

use std::collections::{HashMap, HashSet};
use std::fmt;
use std::sync::{Mutex, MutexGuard};
use std::time::{Duration, Instant, SystemTime};

use super::DockerRunner;
use super::image::{self, PreparedImage};
use super::names::{
    self, LABEL_FILLED_FROM, LABEL_IMAGE, LABEL_IMAGE_ID, LABEL_ROLE, LABEL_SIDECAR_IMAGE,
    LABEL_VOLUME, ROLE_IMAGE_PULL, ROLE_SIDECAR_USE, ROLE_TASK_SIDECAR,
};
use super::progress;
use crate::calendar::parse_rfc3339;
use crate::config::Config;
use crate::container_spec::{LABEL_MANAGED, LABEL_WORKER_ID};
use crate::docker::disk::{DiskUsage, ImageRemoval};
use crate::docker::reference::ImageRef;
use crate::docker::{Docker, DockerError, VolumeInfo};
use crate::telemetry;

/// Regular passes (from the reaper) run at most this often.
pub const PASS_EVERY: Duration = Duration::from_secs(600);
/// A use record is written again at most this often per object and
/// process (or a quarter of the retention, when that is shorter).
pub const RECORD_EVERY: Duration = Duration::from_secs(3600);

/// How long unused objects are kept.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RetentionSettings {
    /// Shared sidecar volumes (`sidecar_retention`); `None` = forever.
    pub sidecar_volumes: Option<Duration>,
    /// Task images this worker pulled (`image_retention`); `None` = forever.
    pub images: Option<Duration>,
    /// Images kept whatever their use (`prefetch_images`), with their volumes.
    pub prefetch_images: Vec<String>,
}

impl RetentionSettings {
    /// From a validated configuration.
    pub fn from_config(cfg: &Config) -> Self {
        Self {
            sidecar_volumes: cfg.docker.sidecar_retention,
            images: cfg.docker.image_retention,
            prefetch_images: cfg.docker.prefetch_images.clone(),
        }
    }

    fn is_off(&self) -> bool {
        self.sidecar_volumes.is_none() && self.images.is_none()
    }
}

/// What one pass removed.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct RetentionReport {
    /// Sidecar volumes removed.
    pub volumes: usize,
    /// Images removed.
    pub images: usize,
    /// Bytes those held, as `GET /system/df` counted them (an image's own
    /// layers only: shared ones stay).
    pub bytes: u64,
    /// Removed objects whose size the daemon did not know (not in `bytes`).
    pub unknown_sizes: usize,
}

/// Why a retention pass stopped.
#[derive(Debug)]
pub struct RetentionError {
    /// What the pass was doing, e.g. `listing containers`.
    pub step: &'static str,
    /// The daemon's error.
    pub source: DockerError,
}

impl fmt::Display for RetentionError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "removing unused sidecar volumes and images: {}: {}",
            self.step, self.source
        )
    }
}

impl std::error::Error for RetentionError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        Some(&self.source)
    }
}

impl RetentionReport {
    /// Counts a removed object's size (`GET /system/df`'s, when it had one).
    fn add_size(&mut self, size: Option<&Option<u64>>) {
        match size.copied().flatten() {
            Some(bytes) => self.bytes += bytes,
            None => self.unknown_sizes += 1,
        }
    }
}

fn step(step: &'static str) -> impl FnOnce(DockerError) -> RetentionError {
    move |source| RetentionError { step, source }
}

/// A shared sidecar volume as the decision sees it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SidecarVolume {
    /// Its name.
    pub name: String,
    /// The image it holds (its `…sidecar-image` label).
    pub image: String,
    /// The id of the image it was filled from (`…filled-from`), when recorded.
    pub filled_from: Option<String>,
    /// Its creation time, daemon Unix seconds.
    pub created: u64,
    /// Its last recorded use, daemon Unix seconds (`None`: no record).
    pub last_use: Option<u64>,
}

/// An image this worker pulled, as the decision sees it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PulledImage {
    /// Its id.
    pub id: String,
    /// The reference it was pulled as.
    pub reference: String,
    /// Its last recorded use (or pull), daemon Unix seconds.
    pub last_use: u64,
}

/// The images kept whatever their use: the configured default and sidecar
/// images and the prefetched ones.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Keep {
    /// Their ids, for those on the daemon.
    pub ids: HashSet<String>,
    /// Their references (as pulled, mirrors applied) → their id on the
    /// daemon (`None`: not there now).
    pub references: HashMap<String, Option<String>>,
}

impl Keep {
    /// Whether an object of image `id` (when known) and `reference` is kept.
    /// By id where it tells (a tag that moved leaves its old image to
    /// retention); by name where it does not (no id recorded, or the kept
    /// image is not on the daemon now).
    pub fn keeps(&self, id: Option<&str>, reference: &str) -> bool {
        if id.is_some_and(|id| self.ids.contains(id)) {
            return true;
        }
        match self.references.get(reference) {
            Some(None) => true,
            Some(Some(_)) => id.is_none(),
            None => false,
        }
    }
}

/// The daemon's clock for one decision.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DaemonTimes {
    /// Now, daemon Unix seconds.
    pub now: u64,
    /// When this process started, daemon Unix seconds: the last use of a
    /// volume without a record (a prune erased it, or an older version made
    /// the volume) is taken to be no earlier, so nothing recently used is
    /// removed by mistake.
    pub process_start: u64,
}

/// The repository an image reference belongs to (`docker.io/warpdotdev/warp-agent`
/// for `warpdotdev/warp-agent:v1`): old versions of one sidecar are grouped by it.
pub fn repository_of(reference: &str) -> String {
    if let Ok(r) = ImageRef::parse(reference) {
        return r.name();
    }
    let name = reference.split_once('@').map_or(reference, |(n, _)| n);
    match name.rsplit_once(':') {
        Some((repo, tag)) if !tag.contains('/') => repo.to_owned(),
        _ => name.to_owned(),
    }
}

/// The sidecar volumes to remove: not used for more than `retention`
/// (never when `None`), by no container nor task (`in_use`), not of a kept
/// image, and not the newest of their repository (every volume sharing the
/// newest creation second stays).
pub fn sidecar_volumes_to_remove(
    volumes: &[SidecarVolume],
    in_use: &HashSet<String>,
    keep: &Keep,
    times: DaemonTimes,
    retention: Option<Duration>,
) -> Vec<String> {
    let Some(retention) = retention else {
        return Vec::new();
    };
    let mut newest: HashMap<String, u64> = HashMap::new();
    for v in volumes {
        let n = newest.entry(repository_of(&v.image)).or_default();
        *n = (*n).max(v.created);
    }
    volumes
        .iter()
        .filter(|v| newest.get(&repository_of(&v.image)) != Some(&v.created))
        .filter(|v| !in_use.contains(&v.name))
        .filter(|v| !keep.keeps(v.filled_from.as_deref(), &v.image))
        .filter(|v| {
            let last = v.created.max(v.last_use.unwrap_or(times.process_start));
            unused_longer_than(times.now, last, retention)
        })
        .map(|v| v.name.clone())
        .collect()
}

/// The images to remove: pulled by this worker, not used for more than
/// `retention` (never when `None`), by no container (`in_use`: image ids),
/// and not kept.
pub fn images_to_remove(
    images: &[PulledImage],
    in_use: &HashSet<String>,
    keep: &Keep,
    now: u64,
    retention: Option<Duration>,
) -> Vec<String> {
    let Some(retention) = retention else {
        return Vec::new();
    };
    images
        .iter()
        .filter(|i| !in_use.contains(&i.id))
        .filter(|i| !keep.keeps(Some(&i.id), &i.reference))
        .filter(|i| unused_longer_than(now, i.last_use, retention))
        .map(|i| i.id.clone())
        .collect()
}

/// Strictly more than `retention` between `last` and `now`: times are whole
/// seconds, so this is at least `retention` in fact.
fn unused_longer_than(now: u64, last: u64, retention: Duration) -> bool {
    now.saturating_sub(last) > retention.as_secs()
}

/// The pass's INFO line: what went, after how long, and what came back.
pub fn summary(report: &RetentionReport, settings: &RetentionSettings) -> String {
    let plural =
        |n: usize, one: &str, many: &str| format!("{n} {}", if n == 1 { one } else { many });
    let mut parts = Vec::new();
    if report.volumes > 0 {
        parts.push(format!(
            "{} unused for {}",
            plural(report.volumes, "sidecar volume", "sidecar volumes"),
            short_duration(settings.sidecar_volumes)
        ));
    }
    if report.images > 0 {
        parts.push(format!(
            "{} unused for {}",
            plural(report.images, "image", "images"),
            short_duration(settings.images)
        ));
    }
    let mut line = format!(
        "retention: removed {}, {} freed",
        parts.join(" and "),
        progress::size(report.bytes)
    );
    if report.unknown_sizes > 0 {
        line.push_str(&format!(
            " (and {} of unknown size)",
            plural(report.unknown_sizes, "object", "objects")
        ));
    }
    line
}

/// `168h`, `1h30m`, `45s`: Go's form without its trailing zero units.
fn short_duration(d: Option<Duration>) -> String {
    let Some(d) = d else {
        return "ever".to_owned();
    };
    let text = crate::duration::format(d);
    if let Some(hours) = text.strip_suffix("h0m0s") {
        format!("{hours}h")
    } else if let Some(minutes) = text.strip_suffix("m0s") {
        format!("{minutes}m")
    } else {
        text
    }
}

/// How often a record is written again for objects kept `retention`.
fn record_every(retention: Duration) -> Duration {
    RECORD_EVERY.min(retention / 4)
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
enum Kind {
    SidecarVolume,
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
    started: SystemTime,
    settings: Mutex<RetentionSettings>,
    uses: Mutex<Uses>,
    /// Held through a pass; when the last one started.
    passes: Mutex<Option<Instant>>,
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
    fn used_at(&self, kind: Kind, key: &str, now: u64) -> Option<u64> {
        lock(&self.uses)
            .last
            .get(&(kind, key.to_owned()))
            .map(|at| now.saturating_sub(at.elapsed().as_secs()))
    }

    /// Whether a task of this process used the object since `since`.
    fn used_since(&self, kind: Kind, key: &str, since: Instant) -> bool {
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

    fn records_of(
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

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

/// Runs a regular pass when none ran for [`PASS_EVERY`] (and retention is
/// on); a failure is one WARN line.
pub fn pass_if_due(runner: &DockerRunner) {
    let r = &runner.retention;
    if r.settings().is_off() {
        return;
    }
    let due = lock(&r.passes).is_none_or(|at| at.elapsed() >= PASS_EVERY);
    if due && let Err(e) = retention_pass(runner) {
        log::warn!("{e}");
    }
}

/// One retention pass now: removes the sidecar volumes and images unused
/// for longer than their retention, and the records of objects that are
/// gone; logs one INFO line and counts the metrics when it removed
/// something. Passes run one at a time; this waits for one in progress.
/// An error is a look that failed (nothing was removed); a removal that
/// fails is a WARN line, and the report counts what did go.
pub fn retention_pass(runner: &DockerRunner) -> Result<RetentionReport, RetentionError> {
    let r = &runner.retention;
    let mut last_pass = lock(&r.passes);
    *last_pass = Some(Instant::now());
    let settings = r.settings();
    if settings.is_off() {
        return Ok(RetentionReport::default());
    }
    let docker = &runner.docker;
    let started = Instant::now();
    let now = runner
        .clock
        .now_synced(docker)
        .map_err(step("reading the daemon's clock"))?;
    let times = DaemonTimes {
        now,
        process_start: runner.clock.to_daemon(r.started),
    };
    let containers = docker
        .container_usage()
        .map_err(step("listing containers"))?;
    let keep = kept_images(runner, &settings)?;
    let me = names::label(LABEL_WORKER_ID, &runner.settings.spec.worker_id);

    let mut volumes_doomed = Vec::new();
    let mut volume_records = Vec::new();
    let mut sidecar_names = HashSet::new();
    if settings.sidecar_volumes.is_some() {
        // Records first: a record is made after its volume, so a record
        // whose volume is missing from the later listing is of a gone one.
        volume_records = docker
            .volume_list_by_label(&[&names::label(LABEL_ROLE, ROLE_SIDECAR_USE)])
            .map_err(step("listing sidecar volume use records"))?;
        let all = docker
            .volume_list_by_label(&[LABEL_SIDECAR_IMAGE])
            .map_err(step("listing sidecar volumes"))?;
        sidecar_names = all.iter().map(|v| v.name.clone()).collect();
        let ours: Vec<&VolumeInfo> = all
            .iter()
            .filter(|v| v.labels.get(LABEL_WORKER_ID) == Some(&runner.settings.spec.worker_id))
            .filter(|v| v.labels.get(LABEL_MANAGED).is_some_and(|m| m == "true"))
            .collect();
        let lowers = overlay_lowers(docker)?;
        let mut in_use: HashSet<String> = containers
            .iter()
            .flat_map(|c| c.volumes.iter().cloned())
            .collect();
        for v in &ours {
            if runner.volumes.in_use_here(&v.name) || lowers.contains(v.mountpoint.as_str()) {
                in_use.insert(v.name.clone());
            }
        }
        let recorded = latest_by_target(&volume_records, LABEL_VOLUME);
        let facts: Vec<SidecarVolume> = ours
            .iter()
            .filter_map(|v| {
                let created = parse_rfc3339(&v.created_at)?;
                let last_use = recorded.get(v.name.as_str()).copied().max(r.used_at(
                    Kind::SidecarVolume,
                    &v.name,
                    now,
                ));
                Some(SidecarVolume {
                    name: v.name.clone(),
                    image: v
                        .labels
                        .get(LABEL_SIDECAR_IMAGE)
                        .cloned()
                        .unwrap_or_default(),
                    filled_from: v.labels.get(LABEL_FILLED_FROM).cloned(),
                    created,
                    last_use,
                })
            })
            .collect();
        volumes_doomed =
            sidecar_volumes_to_remove(&facts, &in_use, &keep, times, settings.sidecar_volumes);
    }

    let mut images_doomed = Vec::new();
    let mut image_records = Vec::new();
    if settings.images.is_some() {
        image_records = docker
            .volume_list_by_label(&[&names::label(LABEL_ROLE, ROLE_IMAGE_PULL)])
            .map_err(step("listing image pull records"))?;
        let mut pulled: HashMap<String, PulledImage> = HashMap::new();
        let recorded = latest_by_target(&image_records, LABEL_IMAGE_ID);
        for rec in image_records.iter().filter(|v| is_ours(v, &me)) {
            let Some(id) = rec.labels.get(LABEL_IMAGE_ID).filter(|i| !i.is_empty()) else {
                continue;
            };
            let Some(&last) = recorded.get(id.as_str()) else {
                continue;
            };
            let last = r
                .used_at(Kind::Image, id, now)
                .map_or(last, |u| u.max(last));
            pulled.entry(id.clone()).or_insert_with(|| PulledImage {
                id: id.clone(),
                reference: rec.labels.get(LABEL_IMAGE).cloned().unwrap_or_default(),
                last_use: last,
            });
        }
        let in_use: HashSet<String> = containers.iter().map(|c| c.image_id.clone()).collect();
        let mut images: Vec<PulledImage> = pulled.into_values().collect();
        images.sort_by(|a, b| a.id.cmp(&b.id));
        images_doomed = images_to_remove(&images, &in_use, &keep, now, settings.images);
    }

    let sizes = if volumes_doomed.is_empty() && images_doomed.is_empty() {
        DiskUsage::default()
    } else {
        docker.disk_usage().unwrap_or_else(|e| {
            log::warn!(
                "retention: reading sizes (GET /system/df): {e}; the sizes freed are not known"
            );
            DiskUsage::default()
        })
    };
    let mut report = RetentionReport::default();
    let mut removed_volumes = HashSet::new();
    for name in &volumes_doomed {
        // A last look: a task (here, or of another process) may have
        // taken it up since the decision.
        if runner.volumes.in_use_here(name)
            || r.used_since(Kind::SidecarVolume, name, started)
            || used_during_pass(r, ROLE_SIDECAR_USE, (LABEL_VOLUME, name), now)
        {
            continue;
        }
        match docker.volume_remove_existing(name) {
            Ok(true) => {
                log::debug!("retention: removed sidecar volume {name}");
                report.add_size(sizes.volumes.get(name));
                removed_volumes.insert(name.clone());
            }
            Ok(false) => {}
            Err(DockerError::Api { status: 409, .. }) => {}
            // One failure is not the pass's end: what was removed is still
            // reported, and the next pass tries again.
            Err(e) => log::warn!("retention: removing sidecar volume {name}: {e}"),
        }
    }
    report.volumes = removed_volumes.len();
    let mut removed_images = HashSet::new();
    for id in &images_doomed {
        if r.used_since(Kind::Image, id, started)
            || used_during_pass(r, ROLE_IMAGE_PULL, (LABEL_IMAGE_ID, id), now)
        {
            continue;
        }
        match docker.image_remove_unused(id) {
            Err(e) => log::warn!("retention: removing image {id}: {e}"),
            Ok(ImageRemoval::Removed) => {
                log::debug!("retention: removed image {id}");
                report.add_size(sizes.images.get(id));
                report.images += 1;
                removed_images.insert(id.clone());
            }
            // Gone already: not this pass's doing, but its records go.
            Ok(ImageRemoval::Missing) => {
                removed_images.insert(id.clone());
            }
            Ok(ImageRemoval::Refused) => {
                log::debug!("retention: the daemon keeps image {id} (in use, or tagged elsewhere)");
            }
        }
    }
    tidy_records(
        runner,
        &me,
        &volume_records,
        &sidecar_names,
        &removed_volumes,
        &image_records,
        &removed_images,
    );
    if report.volumes + report.images > 0 {
        log::info!("{}", summary(&report, &settings));
        telemetry::retention_removed(report.volumes, report.images, report.bytes);
    }
    drop(last_pass);
    Ok(report)
}

/// Whether a record of the object was written at or after `now` (the
/// pass's start): a task took it up meanwhile. When the records cannot be
/// read, it may have been: true.
fn used_during_pass(r: &Retention, role: &str, target: (&str, &str), now: u64) -> bool {
    match r.records_of(role, target) {
        Ok(records) => records
            .iter()
            .filter_map(|v| parse_rfc3339(&v.created_at))
            .any(|t| t >= now),
        Err(e) => {
            log::warn!(
                "retention: looking at the use records of {} again: {e}; keeping it",
                target.1
            );
            true
        }
    }
}

/// Whether a record carries this worker id (`me` is `key=value`).
fn is_ours(v: &VolumeInfo, me: &str) -> bool {
    me.split_once('=')
        .is_some_and(|(k, val)| v.labels.get(k).is_some_and(|x| x == val))
}

/// The latest record time of each target (`label`'s value), daemon seconds.
fn latest_by_target<'a>(records: &'a [VolumeInfo], label: &str) -> HashMap<&'a str, u64> {
    let mut latest: HashMap<&str, u64> = HashMap::new();
    for rec in records {
        let (Some(target), Some(at)) = (rec.labels.get(label), parse_rfc3339(&rec.created_at))
        else {
            continue;
        };
        let t = latest.entry(target.as_str()).or_default();
        *t = (*t).max(at);
    }
    latest
}

/// The host directories that overlays of `read_write` sidecars (of any
/// worker process) use as their lower layer: the shared volumes under them
/// are in use although no container mounts them.
fn overlay_lowers(docker: &Docker) -> Result<HashSet<String>, RetentionError> {
    let overlays = docker
        .volume_details_by_label(&[&names::label(LABEL_ROLE, ROLE_TASK_SIDECAR)])
        .map_err(step("listing task sidecar volumes"))?;
    Ok(overlays
        .iter()
        .filter_map(|v| v.options.get("o"))
        .flat_map(|o| o.split(','))
        .filter_map(|part| part.strip_prefix("lowerdir="))
        .flat_map(|dirs| dirs.split(':'))
        .map(str::to_owned)
        .collect())
}

/// The configured default and sidecar images and the prefetched ones, as
/// pulled (mirrors applied), with their ids where the daemon has them.
fn kept_images(
    runner: &DockerRunner,
    settings: &RetentionSettings,
) -> Result<Keep, RetentionError> {
    let spec = &runner.settings.spec;
    let mirrors = &runner.settings.images.mirrors;
    let configured = (!spec.default_image.is_empty())
        .then_some(&spec.default_image)
        .into_iter()
        .chain(spec.sidecar_image.as_ref())
        .chain(&settings.prefetch_images);
    let mut keep = Keep::default();
    for name in configured {
        let reference =
            image::resolve(name, mirrors).map_or_else(|_| name.clone(), |r| r.to_string());
        let id = runner
            .docker
            .image_inspect(&reference)
            .map_err(step("inspecting a configured image"))?
            .map(|i| i.id);
        keep.ids.extend(id.clone());
        keep.references.insert(reference, id);
    }
    Ok(keep)
}

/// Removes this worker's records of objects that are gone (or removed by
/// this pass). A failure here is only logged: the next pass tries again.
fn tidy_records(
    runner: &DockerRunner,
    me: &str,
    volume_records: &[VolumeInfo],
    sidecar_names: &HashSet<String>,
    removed_volumes: &HashSet<String>,
    image_records: &[VolumeInfo],
    removed_images: &HashSet<String>,
) {
    let docker = &runner.docker;
    let mut gone: Vec<&str> = Vec::new();
    for rec in volume_records.iter().filter(|v| is_ours(v, me)) {
        let target = rec.labels.get(LABEL_VOLUME).map_or("", String::as_str);
        if !sidecar_names.contains(target) || removed_volumes.contains(target) {
            gone.push(&rec.name);
        }
    }
    let mut present: HashMap<&str, bool> = HashMap::new();
    for rec in image_records.iter().filter(|v| is_ours(v, me)) {
        let id = rec.labels.get(LABEL_IMAGE_ID).map_or("", String::as_str);
        let exists = match present.get(id) {
            Some(&e) => e,
            None => {
                let e = !removed_images.contains(id)
                    && !id.is_empty()
                    && !matches!(docker.image_inspect(id), Ok(None));
                present.insert(id, e);
                e
            }
        };
        if !exists {
            gone.push(&rec.name);
        }
    }
    for name in gone {
        if let Err(e) = docker.volume_remove(name) {
            log::debug!("retention: removing record {name}: {e}");
        }
    }
}

#[cfg(test)]
mod tests;
