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

use std::fmt;
use std::sync::{Mutex, MutexGuard};
use std::time::Duration;

use super::DockerRunner;
use crate::config::Config;
use crate::docker::DockerError;

mod decide;
mod pass;
mod records;

pub use decide::{
    DaemonTimes, Keep, PulledImage, SidecarVolume, images_to_remove, repository_of,
    sidecar_volumes_to_remove, summary,
};
pub use pass::retention_pass;
pub use records::Retention;

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
    /// The daemon's error (in the message, not in `source()`).
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

/// The daemon's error is already in `Display` (the crate's rule: the cause
/// goes in one of `Display` and `source()`, never both).
impl std::error::Error for RetentionError {}

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

#[cfg(test)]
mod tests;
