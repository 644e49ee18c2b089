//! This process's identity on the Docker daemon: its random instance id,
//! the daemon's clock as this process sees it (for task deadlines), the
//! liveness lease other processes read, and the shared [`Ownership`] state
//! (own lease, what it has seen of others, the claims it holds) that the
//! protocol in [`super::ownership`] runs on.
//!
//! Owns the lease volumes of this instance, its released marker and the
//! thread that renews them; it must not decide who owns what.

mod clock;
mod handle;

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use super::claims;
use super::names::{
    self, LABEL_INSTANCE, LABEL_LEASE_SEQ, LABEL_LEASE_TTL, LABEL_ROLE, LABEL_TARGET, ROLE_LEASE,
    ROLE_PING,
};
use super::ownership::liveness::{self, Liveness, Mono, OwnLease};
use crate::container_spec::{LABEL_MANAGED, LABEL_WORKER_ID};
use crate::docker::{Docker, DockerError};

pub use clock::DaemonClock;
pub use handle::{LeaseHandle, acquire};

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

/// How close to its end the own lease is no longer acted on: a request
/// takes this long at most to reach the daemon.
pub const LEASE_MARGIN: Duration = Duration::from_secs(5);

/// A reading of `CLOCK_BOOTTIME` in milliseconds: monotonic, and unlike
/// `Instant` it goes on while the host is suspended (a paused VM must not
/// think its lease still safe).
pub fn boottime_ms() -> Mono {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: clock_gettime writes one timespec into our local.
    let rc = unsafe { libc::clock_gettime(libc::CLOCK_BOOTTIME, &mut ts) };
    if rc != 0 {
        return liveness::millis(START.elapsed());
    }
    (ts.tv_sec as u64).saturating_mul(1000) + (ts.tv_nsec as u64) / 1_000_000
}

static START: std::sync::LazyLock<Instant> = std::sync::LazyLock::new(Instant::now);

/// What this process knows and holds on the daemon, shared by the lease
/// renewer, the reaper and every task's machine.
pub struct OwnState {
    /// This process's lease.
    pub own: OwnLease,
    /// What it has seen of others.
    pub live: Liveness,
    /// Container claims held: generation, and the lease epoch they were
    /// last seen held in (only those of the current epoch are made again).
    held: HashMap<String, (u64, u64)>,
    /// Execution claims held, likewise.
    held_execs: HashMap<String, (u64, u64)>,
    /// The task and execution ids of each execution claimed (its claims carry them).
    exec_ids: HashMap<String, ExecIds>,
}

/// A task id and an execution id.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ExecIds(pub String, pub String);

impl ExecIds {
    /// Both as `&str`.
    pub fn as_refs(&self) -> (&str, &str) {
        (&self.0, &self.1)
    }
}

/// This process's identity and liveness on the daemon.
pub struct Ownership {
    docker: Docker,
    worker_id: String,
    instance: String,
    ttl: Duration,
    state: Mutex<OwnState>,
    /// The last lease sequence number made (renewals are serialised by this lock).
    seq: Mutex<u64>,
}

impl Ownership {
    /// The ownership of `instance` of `worker_id` with a lease of `ttl`
    /// (nothing is made on the daemon until [`acquire`]).
    pub fn new(docker: Docker, worker_id: &str, instance: &str, ttl: Duration) -> Arc<Self> {
        Arc::new(Self {
            docker,
            worker_id: worker_id.to_owned(),
            instance: instance.to_owned(),
            ttl,
            state: Mutex::new(OwnState {
                own: OwnLease::new(ttl, LEASE_MARGIN.min(ttl / 3)),
                live: Liveness::new(ttl),
                held: HashMap::new(),
                held_execs: HashMap::new(),
                exec_ids: HashMap::new(),
            }),
            seq: Mutex::new(0),
        })
    }

    /// This process's instance id.
    pub fn instance(&self) -> &str {
        &self.instance
    }

    /// The lease ttl.
    pub fn ttl(&self) -> Duration {
        self.ttl
    }

    /// Now on this process's clock.
    pub fn now(&self) -> Mono {
        boottime_ms()
    }

    /// Runs `f` on the shared state.
    pub fn with<R>(&self, f: impl FnOnce(&mut OwnState) -> R) -> R {
        f(&mut self.state.lock().unwrap_or_else(|e| e.into_inner()))
    }

    /// The lease epoch (see [`OwnLease::epoch`]).
    pub fn epoch(&self) -> u64 {
        self.with(|s| s.own.epoch())
    }

    /// Whether this process may act now on what it holds.
    pub fn safe(&self) -> bool {
        let now = self.now();
        self.with(|s| s.own.safe(now))
    }

    /// A daemon call succeeded just now.
    pub fn reached(&self) {
        let now = self.now();
        self.with(|s| s.live.reached(now));
    }

    /// Records that this process holds container `id` at `generation`.
    pub fn hold(&self, id: &str, generation: u64) {
        self.with(|s| {
            let epoch = s.own.epoch();
            s.held.insert(id.to_owned(), (generation, epoch));
        });
    }

    /// Records that this process holds execution `key` at `generation`.
    pub fn hold_exec(&self, key: &str, generation: u64, ids: (&str, &str)) {
        self.with(|s| {
            let epoch = s.own.epoch();
            s.held_execs.insert(key.to_owned(), (generation, epoch));
            s.exec_ids
                .insert(key.to_owned(), ExecIds(ids.0.to_owned(), ids.1.to_owned()));
        });
    }

    /// The ids recorded for execution `key` (empty when none).
    pub fn exec_ids(&self, key: &str) -> ExecIds {
        self.with(|s| s.exec_ids.get(key).cloned().unwrap_or_default())
    }

    /// Records the ids of execution `key` without holding it.
    pub fn note_exec_ids(&self, key: &str, ids: (&str, &str)) {
        self.with(|s| {
            s.exec_ids
                .insert(key.to_owned(), ExecIds(ids.0.to_owned(), ids.1.to_owned()));
        });
    }

    /// Forgets everything recorded about execution `key`.
    pub fn forget_exec(&self, key: &str) {
        self.with(|s| {
            s.held_execs.remove(key);
            s.exec_ids.remove(key);
        });
    }

    /// Container `id` is no longer held (gone, or lost).
    pub fn release_container(&self, id: &str) {
        self.with(|s| s.held.remove(id));
    }

    /// Execution `key` is no longer held.
    pub fn release_exec(&self, key: &str) {
        self.with(|s| s.held_execs.remove(key));
    }

    /// Renews the lease once: makes the next lease volume, removes the one
    /// before, and — when the lease had not lapsed — makes again every
    /// claim held in this epoch that a prune may have removed.
    pub fn renew(&self) -> Result<(), DockerError> {
        let mut seq = self.seq.lock().unwrap_or_else(|e| e.into_inner());
        let started = self.now();
        let was_safe = self.with(|s| s.own.safe(started));
        let next = *seq + 1;
        let mut labels = lease_labels(&self.worker_id, &self.instance, self.ttl);
        labels.insert(LABEL_LEASE_SEQ.to_owned(), next.to_string());
        if let Err(e) = self
            .docker
            .volume_create(&names::lease_volume_name(&self.instance, next), &labels)
        {
            self.with(|s| s.live.cut_off());
            return Err(e);
        }
        if *seq > 0
            && let Ok(false) = self
                .docker
                .volume_remove_existing(&names::lease_volume_name(&self.instance, *seq))
        {
            // Gone since the last renewal: a prune (or a hand) erased
            // records meanwhile; a task that waits out a lapse waits again.
            let now = self.now();
            self.with(|s| s.own.erased(now));
            log::info!(
                "this worker's lease volume was removed from outside (a docker volume prune?); its records are made again"
            );
        }
        *seq = next;
        // Answer every ping: this process is alive.
        let pings = [
            names::label(LABEL_WORKER_ID, &self.worker_id),
            names::label(LABEL_ROLE, ROLE_PING),
            names::label(LABEL_TARGET, &self.instance),
        ];
        let refs: Vec<&str> = pings.iter().map(String::as_str).collect();
        if let Ok(list) = self.docker.volume_list_by_label(&refs) {
            for v in list {
                let _ = self.docker.volume_remove(&v.name);
            }
        }
        let (claims, execs) = self.with(|s| {
            s.own.renewed(started);
            s.live.reached(boottime_ms());
            let epoch = s.own.epoch();
            let current = |m: &HashMap<String, (u64, u64)>| -> Vec<(String, u64)> {
                m.iter()
                    .filter(|(_, (_, e))| *e == epoch)
                    .map(|(k, (g, _))| (k.clone(), *g))
                    .collect()
            };
            (current(&s.held), current(&s.held_execs))
        });
        drop(seq);
        if was_safe {
            for (id, generation) in claims.into_iter().filter(|(_, g)| *g > 0) {
                let labels =
                    claims::claim_labels(&self.worker_id, &self.instance, &id, generation, false);
                let _ = self
                    .docker
                    .volume_create(&names::claim_volume_name(&id, generation), &labels);
            }
            for (key, generation) in execs {
                let _ = self.renew_exec(&key, generation);
            }
        }
        Ok(())
    }

    /// Tries to take execution `key` at `generation` for this process, and
    /// holds it when it won; returns the holder (this instance when it won,
    /// [`claims::DONE_HOLDER`] when the execution was reported already).
    /// `ids` (task id, execution id) are recorded on the claim; `None` reuses
    /// what this process recorded.
    pub fn claim_exec(
        &self,
        key: &str,
        generation: u64,
        ids: Option<(&str, &str)>,
    ) -> Result<String, DockerError> {
        let recorded = self.exec_ids(key);
        let ids = ids.unwrap_or(recorded.as_refs());
        let (worker_id, instance) = (&self.worker_id, &self.instance);
        let holder = claims::claim_exec(&self.docker, worker_id, instance, key, generation, ids)?;
        if holder == self.instance {
            self.hold_exec(key, generation, ids);
        }
        Ok(holder)
    }

    /// Marks execution `key` done (its tombstone) and removes its claims.
    pub fn mark_exec_done(&self, key: &str) -> Result<(), DockerError> {
        let ids = self.exec_ids(key);
        // No renewal makes the claim again from here on (one already under way
        // checks the tombstone after making it, see `renew_exec`).
        self.release_exec(key);
        let (worker_id, instance) = (&self.worker_id, &self.instance);
        claims::mark_done(&self.docker, worker_id, instance, key, ids.as_refs())
    }

    /// Makes this process's claim on execution `key` at `generation` again (a
    /// renewal, after a prune), unless the execution was marked done
    /// meanwhile: then the claim just made goes again.
    fn renew_exec(&self, key: &str, generation: u64) -> Result<(), DockerError> {
        if self.claim_exec(key, generation, None)? != self.instance {
            return Ok(());
        }
        if self
            .docker
            .volume_inspect(&names::exec_done_name(key))?
            .is_some()
        {
            self.release_exec(key);
            self.docker
                .volume_remove(&names::exec_claim_name(key, generation))?;
        }
        Ok(())
    }

    /// The docker client.
    pub fn docker(&self) -> &Docker {
        &self.docker
    }

    /// The worker id.
    pub fn worker_id(&self) -> &str {
        &self.worker_id
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
}
