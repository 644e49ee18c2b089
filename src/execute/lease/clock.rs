//! The daemon's clock as this process sees it: an offset from the local
//! clock learnt from the daemon's `Date` headers, so deadlines written on
//! containers (in daemon time) read the same from any host.

use std::sync::Arc;
use std::sync::atomic::{AtomicI64, Ordering};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use crate::docker::{Docker, DockerError};

fn unix_secs(t: SystemTime) -> i64 {
    t.duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs() as i64)
}

/// The daemon's clock, as an offset from ours learnt from its `Date`
/// headers: deadlines written on containers are in daemon time, so a
/// successor on a host with another clock reads them right.
#[derive(Debug, Default)]
pub struct DaemonClock {
    offset_secs: AtomicI64,
    /// When the offset was last learnt (None: never).
    synced_at: std::sync::Mutex<Option<Instant>>,
}

/// An offset this recent is good enough: clocks do not drift seconds a minute.
const SYNC_FRESH_FOR: Duration = Duration::from_secs(30);

impl DaemonClock {
    /// A clock that assumes no offset until [`DaemonClock::sync`].
    pub fn new() -> Arc<Self> {
        Arc::default()
    }

    /// Asks the daemon the time; returns it and remembers the offset.
    pub fn sync(&self, docker: &Docker) -> Result<u64, DockerError> {
        let daemon = docker.daemon_now()?;
        // The Date header truncates to the second: the daemon's time was
        // somewhere in [daemon, daemon + 1); take the middle.
        let local = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0.0, |d| d.as_secs_f64());
        let offset = (daemon as f64 + 0.5 - local).round() as i64;
        self.offset_secs.store(offset, Ordering::Relaxed);
        *self.synced_at.lock().unwrap_or_else(|e| e.into_inner()) = Some(Instant::now());
        Ok(daemon)
    }

    /// The daemon's time now, asking it only when the offset is not fresh
    /// (the lease renewals keep it fresh in a running worker).
    pub fn now_synced(&self, docker: &Docker) -> Result<u64, DockerError> {
        let fresh = self
            .synced_at
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .is_some_and(|at| at.elapsed() < SYNC_FRESH_FOR);
        if fresh {
            Ok(self.now())
        } else {
            self.sync(docker)
        }
    }

    /// The daemon's time now, Unix seconds.
    pub fn now(&self) -> u64 {
        self.to_daemon(SystemTime::now())
    }

    /// A local instant as daemon Unix seconds.
    pub fn to_daemon(&self, t: SystemTime) -> u64 {
        (unix_secs(t) + self.offset_secs.load(Ordering::Relaxed)).max(0) as u64
    }

    /// How long until daemon time `at`, from now (zero when past).
    pub fn until(&self, at: u64) -> Duration {
        Duration::from_secs(at.saturating_sub(self.now()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_daemon_clock_applies_its_offset() {
        let clock = DaemonClock::default();
        clock.offset_secs.store(-100, Ordering::Relaxed);
        let t = UNIX_EPOCH + Duration::from_secs(1_000);
        assert_eq!(clock.to_daemon(t), 900);
        assert_eq!(clock.until(clock.now() + 5), Duration::from_secs(5));
        assert_eq!(clock.until(0), Duration::ZERO);
    }
}
