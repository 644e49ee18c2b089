//! The pass: looks at the daemon (containers, sidecar volumes, use
//! records, overlays, the kept images), asks the decision, removes what it
//! chose after a last look, and tidies the records of objects that are gone.
//! Only objects of this worker id are removed.

use std::collections::{HashMap, HashSet};
use std::time::Instant;

use super::super::DockerRunner;
use super::super::image;
use super::super::names::{
    self, LABEL_FILLED_FROM, LABEL_IMAGE, LABEL_IMAGE_ID, LABEL_ROLE, LABEL_SIDECAR_IMAGE,
    LABEL_VOLUME, ROLE_IMAGE_PULL, ROLE_SIDECAR_USE, ROLE_TASK_SIDECAR,
};
use super::decide::{
    DaemonTimes, Keep, PulledImage, SidecarVolume, images_to_remove, sidecar_volumes_to_remove,
    summary,
};
use super::records::{Kind, Retention};
use super::{RetentionError, RetentionReport, RetentionSettings, lock, step};
use crate::calendar::parse_rfc3339;
use crate::container_spec::{LABEL_MANAGED, LABEL_WORKER_ID};
use crate::docker::disk::{ContainerUsage, DiskUsage, ImageRemoval};
use crate::docker::{Docker, DockerError, VolumeInfo};
use crate::telemetry;

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
    let started = Instant::now();
    let look = look(runner, &settings)?;
    let sizes = sizes_of(&runner.docker, &look);
    let mut report = RetentionReport::default();
    let removed_volumes = remove_volumes(runner, &look, started, &sizes, &mut report);
    let removed_images = remove_images(runner, &look, started, &sizes, &mut report);
    tidy_records(
        runner,
        &look.me,
        &look.volumes.records,
        &look.volumes.names,
        &removed_volumes,
        &look.images.records,
        &removed_images,
    );
    if report.volumes + report.images > 0 {
        log::info!("{}", summary(&report, &settings));
        telemetry::retention_removed(report.volumes, report.images, report.bytes);
    }
    drop(last_pass);
    Ok(report)
}

/// What the pass saw and decided, before it removes anything.
struct Look {
    /// The daemon's time at the pass's start.
    now: u64,
    /// This worker id as a label filter (`key=value`).
    me: String,
    volumes: VolumeLook,
    images: ImageLook,
}

/// The sidecar volumes' side of a look (empty when their retention is off).
#[derive(Default)]
struct VolumeLook {
    /// The volumes to remove.
    doomed: Vec<String>,
    /// Every `sidecar-use` record (of any worker id).
    records: Vec<VolumeInfo>,
    /// Every sidecar volume's name (of any worker id).
    names: HashSet<String>,
}

/// The images' side of a look (empty when their retention is off).
#[derive(Default)]
struct ImageLook {
    /// The image ids to remove.
    doomed: Vec<String>,
    /// Every `image-pull` record (of any worker id).
    records: Vec<VolumeInfo>,
}

/// Looks at the daemon and decides; removes nothing.
fn look(runner: &DockerRunner, settings: &RetentionSettings) -> Result<Look, RetentionError> {
    let r = &runner.retention;
    let docker = &runner.docker;
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
    let keep = kept_images(runner, settings)?;
    let me = names::label(LABEL_WORKER_ID, &runner.settings.spec.worker_id);
    let volumes = if settings.sidecar_volumes.is_some() {
        look_at_volumes(runner, settings, &containers, &keep, times)?
    } else {
        VolumeLook::default()
    };
    let images = if settings.images.is_some() {
        look_at_images(runner, settings, &containers, &keep, now, &me)?
    } else {
        ImageLook::default()
    };
    Ok(Look {
        now,
        me,
        volumes,
        images,
    })
}

/// The sidecar volumes' records and facts, and the decision on them.
fn look_at_volumes(
    runner: &DockerRunner,
    settings: &RetentionSettings,
    containers: &[ContainerUsage],
    keep: &Keep,
    times: DaemonTimes,
) -> Result<VolumeLook, RetentionError> {
    let r = &runner.retention;
    let docker = &runner.docker;
    // Records first: a record is made after its volume, so a record
    // whose volume is missing from the later listing is of a gone one.
    let records = docker
        .volume_list_by_label(&[&names::label(LABEL_ROLE, ROLE_SIDECAR_USE)])
        .map_err(step("listing sidecar volume use records"))?;
    let all = docker
        .volume_list_by_label(&[LABEL_SIDECAR_IMAGE])
        .map_err(step("listing sidecar volumes"))?;
    let names = all.iter().map(|v| v.name.clone()).collect();
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
    let recorded = latest_by_target(&records, LABEL_VOLUME);
    let facts: Vec<SidecarVolume> = ours
        .iter()
        .filter_map(|v| {
            let created = parse_rfc3339(&v.created_at)?;
            let last_use = recorded.get(v.name.as_str()).copied().max(r.used_at(
                Kind::SidecarVolume,
                &v.name,
                times.now,
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
    let doomed = sidecar_volumes_to_remove(&facts, &in_use, keep, times, settings.sidecar_volumes);
    Ok(VolumeLook {
        doomed,
        records,
        names,
    })
}

/// The images this worker pulled (by their records), and the decision on them.
fn look_at_images(
    runner: &DockerRunner,
    settings: &RetentionSettings,
    containers: &[ContainerUsage],
    keep: &Keep,
    now: u64,
    me: &str,
) -> Result<ImageLook, RetentionError> {
    let r = &runner.retention;
    let records = runner
        .docker
        .volume_list_by_label(&[&names::label(LABEL_ROLE, ROLE_IMAGE_PULL)])
        .map_err(step("listing image pull records"))?;
    let mut pulled: HashMap<String, PulledImage> = HashMap::new();
    let recorded = latest_by_target(&records, LABEL_IMAGE_ID);
    for rec in records.iter().filter(|v| is_ours(v, me)) {
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
    let doomed = images_to_remove(&images, &in_use, keep, now, settings.images);
    Ok(ImageLook { doomed, records })
}

/// The sizes of what may go (`GET /system/df`), read only when something
/// may; unknown (empty) when the daemon does not answer.
fn sizes_of(docker: &Docker, look: &Look) -> DiskUsage {
    if look.volumes.doomed.is_empty() && look.images.doomed.is_empty() {
        return DiskUsage::default();
    }
    docker.disk_usage().unwrap_or_else(|e| {
        log::warn!("retention: reading sizes (GET /system/df): {e}; the sizes freed are not known");
        DiskUsage::default()
    })
}

/// Removes the doomed sidecar volumes still unused after a last look;
/// returns the names removed.
fn remove_volumes(
    runner: &DockerRunner,
    look: &Look,
    started: Instant,
    sizes: &DiskUsage,
    report: &mut RetentionReport,
) -> HashSet<String> {
    let r = &runner.retention;
    let mut removed = HashSet::new();
    for name in &look.volumes.doomed {
        // A last look: a task (here, or of another process) may have
        // taken it up since the decision.
        if runner.volumes.in_use_here(name)
            || r.used_since(Kind::SidecarVolume, name, started)
            || used_during_pass(r, ROLE_SIDECAR_USE, (LABEL_VOLUME, name), look.now)
        {
            continue;
        }
        match runner.docker.volume_remove_existing(name) {
            Ok(true) => {
                log::debug!("retention: removed sidecar volume {name}");
                report.add_size(sizes.volumes.get(name));
                removed.insert(name.clone());
            }
            Ok(false) => {}
            Err(DockerError::Api { status: 409, .. }) => {}
            // One failure is not the pass's end: what was removed is still
            // reported, and the next pass tries again.
            Err(e) => log::warn!("retention: removing sidecar volume {name}: {e}"),
        }
    }
    report.volumes = removed.len();
    removed
}

/// Removes the doomed images still unused after a last look; returns the
/// ids gone (removed by this pass, or already missing).
fn remove_images(
    runner: &DockerRunner,
    look: &Look,
    started: Instant,
    sizes: &DiskUsage,
    report: &mut RetentionReport,
) -> HashSet<String> {
    let r = &runner.retention;
    let mut removed = HashSet::new();
    for id in &look.images.doomed {
        if r.used_since(Kind::Image, id, started)
            || used_during_pass(r, ROLE_IMAGE_PULL, (LABEL_IMAGE_ID, id), look.now)
        {
            continue;
        }
        match runner.docker.image_remove_unused(id) {
            Err(e) => log::warn!("retention: removing image {id}: {e}"),
            Ok(ImageRemoval::Removed) => {
                log::debug!("retention: removed image {id}");
                report.add_size(sizes.images.get(id));
                report.images += 1;
                removed.insert(id.clone());
            }
            // Gone already: not this pass's doing, but its records go.
            Ok(ImageRemoval::Missing) => {
                removed.insert(id.clone());
            }
            Ok(ImageRemoval::Refused) => {
                log::debug!("retention: the daemon keeps image {id} (in use, or tagged elsewhere)");
            }
        }
    }
    removed
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
