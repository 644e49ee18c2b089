//! This process's identity on the Docker daemon: its random instance id,
//! the daemon's clock as this process sees it, and the liveness lease other
//! processes read (the design, expiry and races are in [`super::ownership`]).
//!
//! Owns the lease volumes of this instance and the thread that renews them;
//! it must not look at any other object on the daemon.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicI64, Ordering};
use std::thread::JoinHandle;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use crossbeam_channel::{RecvTimeoutError, Sender, bounded};

use super::names::{self, LABEL_INSTANCE, LABEL_LEASE_TTL, LABEL_ROLE, ROLE_LEASE};
use crate::container_spec::{LABEL_MANAGED, LABEL_WORKER_ID};
use crate::docker::{Docker, DockerError};

/// How soon a failed renewal is tried again.
const RETRY_AFTER_FAILURE: Duration = Duration::from_secs(1);

/// A new random instance id: 16 hex digits from the kernel's generator.
pub fn new_instance_id() -> String {
    let mut bytes = [0u8; 8];
    // SAFETY: getrandom writes at most `bytes.len()` bytes into our buffer.
    let n = unsafe { libc::getrandom(bytes.as_mut_ptr().cast(), bytes.len(), 0) };
    if n != bytes.len() as isize {
        // No getrandom (very old kernel): a hash of the time and pid still
        // tells processes apart, which is all an instance id is for.
        use std::hash::{BuildHasher, Hasher};
        let mut h = std::collections::hash_map::RandomState::new().build_hasher();
        h.write_u32(std::process::id());
        h.write_u128(unix_nanos(SystemTime::now()));
        bytes = h.finish().to_le_bytes();
    }
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

fn unix_nanos(t: SystemTime) -> u128 {
    t.duration_since(UNIX_EPOCH).map_or(0, |d| d.as_nanos())
}

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

/// Labels of one of `instance`'s lease volumes.
pub fn lease_labels(worker_id: &str, instance: &str, ttl: Duration) -> BTreeMap<String, String> {
    BTreeMap::from([
        (LABEL_MANAGED.to_owned(), "true".to_owned()),
        (LABEL_WORKER_ID.to_owned(), worker_id.to_owned()),
        (LABEL_ROLE.to_owned(), ROLE_LEASE.to_owned()),
        (LABEL_INSTANCE.to_owned(), instance.to_owned()),
        (LABEL_LEASE_TTL.to_owned(), ttl.as_secs().to_string()),
    ])
}

/// The held lease: renewed on its own thread every `ttl / 3` until
/// [`LeaseHandle::release`] (a clean stop) or the process ends (then it
/// simply runs out).
pub struct LeaseHandle {
    docker: Docker,
    worker_id: String,
    instance: String,
    stop: Option<Sender<()>>,
    thread: Option<JoinHandle<()>>,
}

/// Takes the lease for `instance`: creates its first lease volume now (so an
/// error is a start-up error) and starts the renewing thread.
pub fn acquire(
    docker: &Docker,
    worker_id: &str,
    instance: &str,
    ttl: Duration,
    clock: Arc<DaemonClock>,
) -> Result<LeaseHandle, DockerError> {
    let labels = lease_labels(worker_id, instance, ttl);
    clock.sync(docker)?;
    docker.volume_create(&names::lease_volume_name(instance, 1), &labels)?;
    let (stop, stopped) = bounded::<()>(0);
    let renewer = Renewer {
        docker: docker.clone(),
        instance: instance.to_owned(),
        labels,
        ttl,
        clock,
    };
    let thread = std::thread::Builder::new()
        .name("lease".into())
        .spawn(move || renewer.run(&stopped))
        .ok();
    Ok(LeaseHandle {
        docker: docker.clone(),
        worker_id: worker_id.to_owned(),
        instance: instance.to_owned(),
        stop: Some(stop),
        thread,
    })
}

impl LeaseHandle {
    /// This process's instance id.
    pub fn instance(&self) -> &str {
        &self.instance
    }

    /// Stops renewing and removes every lease volume of this instance, so
    /// another process may take over what it leaves at once.
    pub fn release(mut self) {
        self.stop_renewing();
        let labels = [
            names::label(LABEL_WORKER_ID, &self.worker_id),
            names::label(LABEL_ROLE, ROLE_LEASE),
            names::label(LABEL_INSTANCE, &self.instance),
        ];
        let refs: Vec<&str> = labels.iter().map(String::as_str).collect();
        match self.docker.volume_list_by_label(&refs) {
            Ok(list) => {
                for v in list {
                    if let Err(e) = self.docker.volume_remove(&v.name) {
                        log::warn!("releasing lease volume {}: {e}", v.name);
                    }
                }
            }
            Err(e) => log::warn!("releasing this worker's lease: {e}; it runs out by itself"),
        }
    }

    fn stop_renewing(&mut self) {
        drop(self.stop.take());
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

impl Drop for LeaseHandle {
    fn drop(&mut self) {
        self.stop_renewing();
    }
}

struct Renewer {
    docker: Docker,
    instance: String,
    labels: BTreeMap<String, String>,
    ttl: Duration,
    clock: Arc<DaemonClock>,
}

impl Renewer {
    fn run(&self, stopped: &crossbeam_channel::Receiver<()>) {
        let every = self.ttl / 3;
        let mut sequence = 1u64;
        let mut renewed = Instant::now();
        let mut failing: Option<String> = None;
        let mut wait = every;
        loop {
            match stopped.recv_timeout(wait) {
                Err(RecvTimeoutError::Timeout) => {}
                _ => return,
            }
            match self.renew(sequence + 1) {
                Ok(()) => {
                    let _ = self
                        .docker
                        .volume_remove(&names::lease_volume_name(&self.instance, sequence));
                    sequence += 1;
                    if failing.take().is_some() {
                        let gap = renewed.elapsed();
                        if gap >= self.ttl {
                            log::warn!(
                                "this worker's lease was not renewed for {}s (longer than its {}s expiry): another worker with this worker id may have adopted its tasks",
                                gap.as_secs(),
                                self.ttl.as_secs()
                            );
                        } else {
                            log::info!("renewed this worker's lease again");
                        }
                    }
                    renewed = Instant::now();
                    wait = every;
                }
                Err(e) => {
                    let text = e.to_string();
                    if failing.as_deref() != Some(text.as_str()) {
                        log::warn!("could not renew this worker's lease: {text}");
                        failing = Some(text);
                    }
                    wait = RETRY_AFTER_FAILURE.min(every);
                }
            }
        }
    }

    fn renew(&self, sequence: u64) -> Result<(), DockerError> {
        self.clock.now_synced(&self.docker)?;
        self.docker
            .volume_create(
                &names::lease_volume_name(&self.instance, sequence),
                &self.labels,
            )
            .map(drop)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn instance_ids_are_sixteen_hex_digits_and_differ() {
        let a = new_instance_id();
        let b = new_instance_id();
        assert_eq!(a.len(), 16);
        assert!(
            a.bytes()
                .all(|c| c.is_ascii_hexdigit() && !c.is_ascii_uppercase())
        );
        assert_ne!(a, b);
    }

    #[test]
    fn lease_labels_name_the_instance_and_ttl() {
        let l = lease_labels("w", "abc", Duration::from_secs(30));
        assert_eq!(l.get(LABEL_ROLE).map(String::as_str), Some("lease"));
        assert_eq!(l.get(LABEL_INSTANCE).map(String::as_str), Some("abc"));
        assert_eq!(l.get(LABEL_LEASE_TTL).map(String::as_str), Some("30"));
        assert_eq!(l.get(LABEL_WORKER_ID).map(String::as_str), Some("w"));
    }

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
