//! The decision (pure): which sidecar volumes and images go, given what the
//! pass saw; and the pass's INFO line. No I/O here: the pass gathers the
//! facts and removes; this only chooses.

use std::collections::{HashMap, HashSet};
use std::time::Duration;

use super::super::progress;
use super::{RetentionReport, RetentionSettings};
use crate::docker::reference::ImageRef;

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
pub(super) fn short_duration(d: Option<Duration>) -> String {
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
