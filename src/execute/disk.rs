//! A full Docker disk (`no space left on device`): recognising it in what
//! the daemon says, the advice a failed task carries, the process-wide
//! record that Docker cannot write ([`DiskSpace`]), and the probe that says
//! when it can again.
//!
//! Owns the words and the flag; it must not decide what the dispatcher does
//! with the flag (the worker's Docker watch tells it) nor free space itself
//! (retention does).

use std::sync::Mutex;
use std::time::{Duration, Instant};

use serde_json::json;

use super::names;
use crate::docker::{Docker, DockerError, Endpoint};

/// What a task that failed on a full disk adds to its message.
pub const ADVICE: &str = "the Docker daemon's disk is full: free space in its data root (docker system df shows what uses it), or shorten sidecar_retention / set image_retention; this worker rejects new tasks until Docker can write again";

/// Whether the daemon's words say its disk is full.
pub fn is_full(text: &str) -> bool {
    let t = text.to_ascii_lowercase();
    t.contains("no space left on device") || t.contains("disk quota exceeded")
}

/// `detail` with [`ADVICE`] added, when it says the disk is full.
pub fn explain(detail: String) -> String {
    if is_full(&detail) && !detail.contains(ADVICE) {
        format!("{detail} ({ADVICE})")
    } else {
        detail
    }
}

/// Free and total bytes of the file system holding `path`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Space {
    /// Bytes an unprivileged writer may still use.
    pub free: u64,
    /// The file system's size.
    pub total: u64,
}

impl Space {
    /// Enough to take tasks again: at least 1 GiB, or a tenth of a smaller disk.
    pub fn is_enough(self) -> bool {
        self.free >= (1 << 30).min(self.total / 10)
    }
}

/// The data root's free space, when this process can see it: the daemon
/// answers on a local socket and `root` exists here (a worker on the host,
/// not one in a container with only the socket mounted).
pub fn data_root_space(docker: &Docker, root: &str) -> Option<Space> {
    if !matches!(docker.endpoint(), Endpoint::Unix(_)) || root.is_empty() {
        return None;
    }
    statvfs(root)
}

fn statvfs(path: &str) -> Option<Space> {
    let c = std::ffi::CString::new(path).ok()?;
    // SAFETY: `c` is a valid NUL-terminated path; `st` is written by the call.
    let mut st: libc::statvfs = unsafe { std::mem::zeroed() };
    if unsafe { libc::statvfs(c.as_ptr(), &mut st) } != 0 {
        return None;
    }
    let block = st.f_frsize as u64;
    Some(Space {
        free: (st.f_bavail as u64).saturating_mul(block),
        total: (st.f_blocks as u64).saturating_mul(block),
    })
}

/// Whether Docker could not write for lack of space, as last seen.
#[derive(Debug, Default)]
pub struct DiskSpace {
    full_since: Mutex<Option<Instant>>,
}

impl DiskSpace {
    fn lock(&self) -> std::sync::MutexGuard<'_, Option<Instant>> {
        self.full_since.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// A task failed on a full disk; `true` if it was not known before.
    pub fn mark_full(&self) -> bool {
        let mut since = self.lock();
        let new = since.is_none();
        since.get_or_insert_with(Instant::now);
        new
    }

    /// Since when Docker's disk is full, if it is.
    pub fn full_since(&self) -> Option<Instant> {
        *self.lock()
    }

    /// Docker wrote again.
    pub fn clear(&self) {
        *self.lock() = None;
    }
}

/// What a probe found.
#[derive(Debug)]
pub enum Probe {
    /// Docker writes again, and the data root (when visible) has room.
    Writable,
    /// The data root is visible and still short of room.
    Short(Space),
    /// Docker could not write (or answer).
    Failed(DockerError),
}

/// Whether Docker can write again: the data root's free space when this
/// process can see it ([`Space::is_enough`]), then a container of any image
/// the daemon has created (never started) and removed — what a task's
/// create does first on the disk — or, on a daemon without images, a
/// volume. Labelled as a helper of `instance`, so a crash in between leaves
/// nothing the reaper would not remove.
pub fn probe(docker: &Docker, worker_id: &str, instance: &str) -> Probe {
    match docker.info() {
        Ok(info) => {
            if let Some(space) = data_root_space(docker, &info.docker_root_dir)
                && !space.is_enough()
            {
                return Probe::Short(space);
            }
        }
        Err(e) => return Probe::Failed(e),
    }
    match write_something(docker, worker_id, instance) {
        Ok(()) => Probe::Writable,
        Err(e) => Probe::Failed(e),
    }
}

fn write_something(docker: &Docker, worker_id: &str, instance: &str) -> Result<(), DockerError> {
    let labels = names::helper_labels(worker_id, instance, "");
    let name = names::helper_name("disk", "probe", names::nonce());
    match docker.image_ids()?.into_iter().next() {
        Some(image) => {
            let body = json!({
                "Image": image,
                "Cmd": ["true"],
                "Labels": labels,
                "NetworkDisabled": true,
            });
            let id = docker.create(&name, &body)?;
            docker.remove(&id)
        }
        None => {
            docker.volume_create(&name, &labels)?;
            docker.volume_remove(&name)
        }
    }
}

/// First wait before a probe after the disk was found full.
pub const FIRST_PROBE: Duration = Duration::from_secs(10);
/// Longest wait between probes.
pub const MAX_PROBE: Duration = Duration::from_secs(300);
/// A disk found full again this soon after it was cleared means the probe
/// was too hopeful: the next waits grow instead of starting over.
const RELAPSE: Duration = Duration::from_secs(600);

/// When to reject tasks and when to probe, as an I/O-free machine: the
/// worker's Docker watch feeds it what it sees and does what it says.
#[derive(Debug)]
pub struct DiskWatch {
    rejecting: bool,
    next_probe: Instant,
    every: Duration,
    cleared_at: Option<Instant>,
}

/// What the watch does now.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DiskStep {
    /// Nothing.
    Idle,
    /// Start rejecting new tasks.
    Reject,
    /// Probe (then feed [`DiskWatch::probed`]).
    Probe,
}

impl DiskWatch {
    /// A watch that rejects nothing.
    pub fn new(now: Instant) -> Self {
        Self {
            rejecting: false,
            next_probe: now,
            every: FIRST_PROBE,
            cleared_at: None,
        }
    }

    /// `full`: whether a task found the disk full (and nothing cleared it).
    pub fn tick(&mut self, full: bool, now: Instant) -> DiskStep {
        match (full, self.rejecting) {
            (false, _) => DiskStep::Idle,
            (true, false) => {
                self.rejecting = true;
                let relapse = self
                    .cleared_at
                    .is_some_and(|t| now.duration_since(t) < RELAPSE);
                self.every = if relapse {
                    (self.every * 2).min(MAX_PROBE)
                } else {
                    FIRST_PROBE
                };
                self.next_probe = now + self.every;
                DiskStep::Reject
            }
            (true, true) if now >= self.next_probe => DiskStep::Probe,
            (true, true) => DiskStep::Idle,
        }
    }

    /// A probe's result; `true`: stop rejecting (the caller clears the
    /// record).
    pub fn probed(&mut self, writable: bool, now: Instant) -> bool {
        if writable {
            self.rejecting = false;
            self.cleared_at = Some(now);
            return true;
        }
        self.every = (self.every * 2).min(MAX_PROBE);
        self.next_probe = now + self.every;
        false
    }

    /// Space freed (a retention pass): probe at the next tick.
    pub fn freed(&mut self, now: Instant) {
        self.next_probe = now;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_daemons_words_for_a_full_disk_are_recognised() {
        for full in [
            "failed to pull image reg/a:1: write /var/lib/docker/tmp/GetImageBlob123: no space left on device",
            "Docker POST /v1.41/containers/create failed (500): mkdir /var/lib/docker/overlay2/abc-init: no space left on device",
            "failed to register layer: Error processing tar file(exit status 1): write /usr/lib/x: No Space Left On Device",
            "open /var/lib/docker/volumes/v/_data/x: disk quota exceeded",
        ] {
            assert!(is_full(full), "{full}");
        }
        for other in [
            "failed to pull image reg/a:1: manifest unknown",
            "Docker POST /containers/create failed (409): Conflict",
            "",
        ] {
            assert!(!is_full(other), "{other}");
        }
    }

    #[test]
    fn a_full_disk_failure_says_what_to_do_once() {
        let detail = "failed to pull image a:1: write /x: no space left on device".to_owned();
        let explained = explain(detail.clone());
        assert_eq!(explained, format!("{detail} ({ADVICE})"));
        assert_eq!(explain(explained.clone()), explained);
        assert_eq!(explain("manifest unknown".into()), "manifest unknown");
    }

    #[test]
    fn enough_is_a_gibibyte_or_a_tenth_of_a_small_disk() {
        let gib = 1u64 << 30;
        let space = |free, total| Space { free, total };
        assert!(space(gib, 500 * gib).is_enough());
        assert!(!space(gib - 1, 500 * gib).is_enough());
        assert!(space(gib / 2, 4 * gib).is_enough());
        assert!(!space(gib / 4, 4 * gib).is_enough());
        assert!(statvfs("/").is_some_and(|s| s.total > 0));
        assert_eq!(statvfs("/no/such/dir"), None);
    }

    #[test]
    fn the_watch_rejects_at_once_then_probes_with_growing_waits() {
        let t0 = Instant::now();
        let s = |n: u64| t0 + Duration::from_secs(n);
        let mut w = DiskWatch::new(t0);
        assert_eq!(w.tick(false, s(0)), DiskStep::Idle);
        assert_eq!(w.tick(true, s(1)), DiskStep::Reject);
        assert_eq!(w.tick(true, s(10)), DiskStep::Idle);
        assert_eq!(w.tick(true, s(11)), DiskStep::Probe);
        assert!(!w.probed(false, s(11)));
        // 20 s after a failed probe, then 40 s.
        assert_eq!(w.tick(true, s(30)), DiskStep::Idle);
        assert_eq!(w.tick(true, s(31)), DiskStep::Probe);
        assert!(!w.probed(false, s(31)));
        assert_eq!(w.tick(true, s(70)), DiskStep::Idle);
        // Space freed: probe now.
        w.freed(s(70));
        assert_eq!(w.tick(true, s(70)), DiskStep::Probe);
        assert!(w.probed(true, s(70)));
        assert_eq!(w.tick(false, s(71)), DiskStep::Idle);
        // Full again soon after: the waits go on growing (80 s, not 10 s).
        assert_eq!(w.tick(true, s(100)), DiskStep::Reject);
        assert_eq!(w.tick(true, s(179)), DiskStep::Idle);
        assert_eq!(w.tick(true, s(180)), DiskStep::Probe);
        assert!(w.probed(true, s(180)));
        // Full again long after: 10 s again.
        assert_eq!(w.tick(true, s(2000)), DiskStep::Reject);
        assert_eq!(w.tick(true, s(2010)), DiskStep::Probe);
        // Never longer than five minutes.
        for _ in 0..10 {
            w.probed(false, s(3000));
        }
        assert_eq!(w.tick(true, s(3299)), DiskStep::Idle);
        assert_eq!(w.tick(true, s(3300)), DiskStep::Probe);
    }

    #[test]
    fn the_record_says_since_when_until_cleared() {
        let d = DiskSpace::default();
        assert!(d.full_since().is_none());
        assert!(d.mark_full());
        let since = d.full_since().unwrap();
        assert!(!d.mark_full(), "a second failure is not news");
        assert_eq!(d.full_since(), Some(since));
        d.clear();
        assert!(d.full_since().is_none());
    }
}
