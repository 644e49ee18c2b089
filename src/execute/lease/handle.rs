//! The held lease: taken at start, renewed on its own thread, and on a
//! clean stop replaced by the released marker (with the records nobody
//! needs any more tidied). Writes only this instance's lease records.

use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use crossbeam_channel::{RecvTimeoutError, Sender, bounded};

use super::super::names::{self, LABEL_INSTANCE, LABEL_ROLE, ROLE_LEASE, ROLE_RELEASED};
use super::super::ownership::Snapshot;
use super::super::ownership::liveness::lease_subject;
use super::super::ownership::machine::{RELEASED, gone};
use super::{Ownership, lease_labels};
use crate::container_spec::LABEL_WORKER_ID;
use crate::docker::DockerError;

/// How soon a failed renewal is tried again.
const RETRY_AFTER_FAILURE: Duration = Duration::from_secs(1);

/// The held lease: renewed on its own thread every `ttl / 3` until
/// [`LeaseHandle::release`] (a clean stop) or the process ends (then it
/// simply stops changing, and others judge it gone).
pub struct LeaseHandle {
    ownership: Arc<Ownership>,
    stop: Option<Sender<()>>,
    thread: Option<JoinHandle<()>>,
}

/// Takes the lease: makes its first lease volume now (so an error is a
/// start-up error) and starts the renewing thread.
pub fn acquire(ownership: &Arc<Ownership>) -> Result<LeaseHandle, DockerError> {
    ownership.renew()?;
    let (stop, stopped) = bounded::<()>(0);
    let renewer = Arc::clone(ownership);
    let thread = std::thread::Builder::new()
        .name("lease".into())
        .spawn(move || renew_until_stopped(&renewer, &stopped))
        .ok();
    Ok(LeaseHandle {
        ownership: Arc::clone(ownership),
        stop: Some(stop),
        thread,
    })
}

impl LeaseHandle {
    /// This process's instance id.
    pub fn instance(&self) -> &str {
        self.ownership.instance()
    }

    /// Stops renewing and replaces every lease volume of this instance by
    /// its released marker: this process never acts again, so another may
    /// take over what it leaves at once.
    pub fn release(mut self) {
        self.stop_renewing();
        let o = &self.ownership;
        let mut labels = lease_labels(&o.worker_id, &o.instance, o.ttl);
        labels.insert(LABEL_ROLE.to_owned(), ROLE_RELEASED.to_owned());
        if let Err(e) = o
            .docker
            .volume_create(&names::released_name(&o.instance), &labels)
        {
            log::warn!("marking this worker's lease released: {e}; it runs out by itself");
            return;
        }
        let filter = [
            names::label(LABEL_WORKER_ID, &o.worker_id),
            names::label(LABEL_ROLE, ROLE_LEASE),
            names::label(LABEL_INSTANCE, &o.instance),
        ];
        let refs: Vec<&str> = filter.iter().map(String::as_str).collect();
        match o.docker.volume_list_by_label(&refs) {
            Ok(list) => {
                for v in list {
                    if let Err(e) = o.docker.volume_remove(&v.name) {
                        log::warn!("releasing lease volume {}: {e}", v.name);
                    }
                }
            }
            Err(e) => log::warn!("releasing this worker's lease: {e}"),
        }
        if let Err(e) = tidy_after_release(o) {
            log::warn!("tidying this worker's records: {e}; the next worker process does it");
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

/// After a clean stop: with no other live process of this worker id, the
/// tombstones of reported executions are kept for nobody, so they go; the
/// released marker goes too when nothing left on the daemon names this
/// process (it exists only so a successor may take over at once).
fn tidy_after_release(o: &Ownership) -> Result<(), DockerError> {
    let worker = names::label(LABEL_WORKER_ID, &o.worker_id);
    let containers = o.docker.list_by_label(&[&worker])?;
    let volumes = o.docker.volume_list_by_label(&[&worker])?;
    let snap = Snapshot::from_daemon(&containers, &volumes);
    // Its pings, and the pings to it (nobody needs an answer from a
    // process that released its lease).
    for (from, to, name) in &snap.pings {
        if from == &o.instance || to == &o.instance {
            o.docker.volume_remove(name)?;
        }
    }
    let now = o.now();
    // Another instance is live unless released, or seen unchanged for its
    // whole ttl by this process (then its lease goes too, if nothing names it).
    let mut others_live = false;
    for (instance, (value, lease_volumes)) in &snap.leases {
        if instance == &o.instance || value == RELEASED {
            continue;
        }
        let gone = o.with(|s| gone(&s.live, instance, &lease_subject(instance), now));
        if !gone {
            others_live = true;
        } else if !named(&snap, instance) {
            for v in lease_volumes {
                o.docker.volume_remove(v)?;
            }
        }
    }
    if !others_live {
        for e in snap.execs.iter().filter(|e| e.done) {
            for v in &e.volumes {
                o.docker.volume_remove(v)?;
            }
        }
    }
    for (instance, (value, markers)) in &snap.leases {
        if value == RELEASED && !named(&snap, instance) {
            for m in markers {
                o.docker.volume_remove(m)?;
            }
        }
    }
    Ok(())
}

/// Whether a task container or an open execution names `instance`.
fn named(snap: &Snapshot, instance: &str) -> bool {
    snap.tasks.iter().any(|t| t.owner.instance == instance)
        || snap
            .execs
            .iter()
            .any(|e| !e.done && e.holder.as_ref().is_some_and(|(h, _)| h == instance))
}

fn renew_until_stopped(ownership: &Ownership, stopped: &crossbeam_channel::Receiver<()>) {
    let every = ownership.ttl / 3;
    let mut failing: Option<String> = None;
    let mut renewed = Instant::now();
    let mut wait = every;
    loop {
        match stopped.recv_timeout(wait) {
            Err(RecvTimeoutError::Timeout) => {}
            _ => return,
        }
        match ownership.renew() {
            Ok(()) => {
                if failing.take().is_some() {
                    let gap = renewed.elapsed();
                    if gap >= ownership.ttl {
                        log::warn!(
                            "this worker's lease was not renewed for {}s (longer than its {}s expiry): it checks each task's claim again before acting on it",
                            gap.as_secs(),
                            ownership.ttl.as_secs()
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
