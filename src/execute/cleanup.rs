//! What happens to a task container once its task has ended: it stays until
//! the orchestrator has read the task's terminal message, then it is removed
//! (or, when cleanup is off, recorded as reported and kept).
//!
//! Keeping it until then is what makes a crash harmless: a worker process
//! that dies with a terminal message unread leaves the container, and the
//! next process reports the task again from the daemon's record — at least
//! once, never zero times. Owns the tasks waiting for that moment and the
//! one thread that removes their containers (off the connection thread,
//! which only says "delivered"); it must not decide how a task ended.

use std::collections::HashMap;
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use crossbeam_channel::{Sender, unbounded};

use super::claims;
use crate::docker::{Docker, DockerError};

/// A task container whose task has ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Leftover {
    /// Its id.
    pub id: String,
    /// Cleanup is off: keep it, recorded as reported.
    pub keep: bool,
    /// The generation of its current owner (this process's claim, or 0).
    pub generation: u64,
    /// Claim volumes exist for it and go with it.
    pub has_claims: bool,
    /// Its task's private sidecar volumes, removed after it (last made first).
    pub volumes: Vec<String>,
}

enum Slot {
    /// Ended; waiting for its terminal message to be read.
    Waiting(Leftover),
    /// The message was read before the task had finished cleaning up.
    Delivered,
}

#[derive(Default)]
struct Queue {
    slots: HashMap<String, Slot>,
    /// Leftovers handed to the thread and not yet done.
    in_flight: usize,
}

/// The leftovers of ended tasks of one runner.
pub struct Cleanups {
    docker: Docker,
    worker_id: String,
    instance: String,
    /// Wait for delivery (a worker with a dispatcher); false = clean at once
    /// (a runner driven directly, as in tests).
    defer: bool,
    queue: Arc<(Mutex<Queue>, Condvar)>,
    work: Sender<Leftover>,
}

impl Cleanups {
    /// Cleanups for `instance` of `worker_id` on `docker`.
    pub fn new(docker: Docker, worker_id: String, instance: String, defer: bool) -> Self {
        let (work, todo) = unbounded::<Leftover>();
        let queue: Arc<(Mutex<Queue>, Condvar)> = Arc::default();
        let (d, w, i, q) = (
            docker.clone(),
            worker_id.clone(),
            instance.clone(),
            queue.clone(),
        );
        // Ends when the runner (the only sender) goes.
        let _ = std::thread::Builder::new()
            .name("cleanup".into())
            .spawn(move || {
                for leftover in todo {
                    clean(&d, &w, &i, &leftover);
                    lock(&q).in_flight -= 1;
                    q.1.notify_all();
                }
            });
        Self {
            docker,
            worker_id,
            instance,
            defer,
            queue,
            work,
        }
    }

    /// `task_id` has ended and `leftover` is its container: removes it now
    /// if its message was already read (or nothing waits for delivery),
    /// else keeps it until [`Cleanups::delivered`].
    pub fn hold(&self, task_id: &str, leftover: Leftover) {
        if !self.defer {
            return clean(&self.docker, &self.worker_id, &self.instance, &leftover);
        }
        let mut q = lock(&self.queue);
        match q.slots.remove(task_id) {
            Some(Slot::Delivered) => {
                drop(q);
                clean(&self.docker, &self.worker_id, &self.instance, &leftover);
            }
            _ => {
                q.slots.insert(task_id.to_owned(), Slot::Waiting(leftover));
            }
        }
    }

    /// The terminal message of `task_id` was read; `running` says whether
    /// its task is still cleaning up (a shutdown reports before it stops).
    pub fn delivered(&self, task_id: &str, running: bool) {
        let mut q = lock(&self.queue);
        match q.slots.remove(task_id) {
            Some(Slot::Waiting(leftover)) => {
                q.in_flight += 1;
                drop(q);
                if self.work.send(leftover.clone()).is_err() {
                    clean(&self.docker, &self.worker_id, &self.instance, &leftover);
                    lock(&self.queue).in_flight -= 1;
                }
            }
            _ if running => {
                q.slots.insert(task_id.to_owned(), Slot::Delivered);
            }
            _ => {}
        }
    }

    /// Forgets a delivery noted for `task_id` whose task made no container.
    pub fn forget_delivery(&self, task_id: &str) {
        let mut q = lock(&self.queue);
        if matches!(q.slots.get(task_id), Some(Slot::Delivered)) {
            q.slots.remove(task_id);
        }
    }

    /// Whether `task_id`'s container waits for its message to be read.
    pub fn is_waiting(&self, task_id: &str) -> bool {
        matches!(lock(&self.queue).slots.get(task_id), Some(Slot::Waiting(_)))
    }

    /// Waits until every delivered leftover is done, or `until`.
    pub fn settle(&self, until: Instant) {
        let (m, cv) = &*self.queue;
        let mut q = m.lock().unwrap_or_else(|e| e.into_inner());
        while q.in_flight > 0 {
            let now = Instant::now();
            if now >= until {
                return;
            }
            q = cv
                .wait_timeout(q, until - now)
                .unwrap_or_else(|e| e.into_inner())
                .0;
        }
    }
}

fn lock(q: &(Mutex<Queue>, Condvar)) -> MutexGuard<'_, Queue> {
    q.0.lock().unwrap_or_else(|e| e.into_inner())
}

/// Removes a leftover (with its claims), or records a kept one as reported.
fn clean(docker: &Docker, worker_id: &str, instance: &str, leftover: &Leftover) {
    let id = &leftover.id;
    if leftover.keep {
        log::info!("keeping container {id} (cleanup is off)");
        let next = leftover.generation + 1;
        if let Err(e) = claims::mark_reported(docker, worker_id, instance, id, next) {
            log::warn!(
                "recording that container {id} was reported: {e}; a later worker process may report it again"
            );
        }
        return;
    }
    match docker.remove(id) {
        Ok(()) => {
            log::debug!("removed container {id}");
            for volume in leftover.volumes.iter().rev() {
                if let Err(e) = docker.volume_remove(volume) {
                    log::warn!("removing sidecar volume {volume} of container {id}: {e}");
                }
            }
            if leftover.has_claims
                && let Err(e) = claims::remove_all(docker, worker_id, id)
            {
                log::warn!(
                    "removing the claims on container {id}: {e}; the reaper removes them later"
                );
            }
        }
        Err(e) if daemon_unreachable(&e) => {
            log::warn!(
                "removing container {id}: {e}; retrying in the background until the daemon answers"
            );
            remove_when_back(docker.clone(), id.clone());
        }
        Err(e) => log::warn!("removing container {id}: {e}"),
    }
}

/// How often a removal is retried while the daemon is away.
const REMOVE_RETRY_EVERY: Duration = Duration::from_secs(2);
/// How long a removal is retried before the periodic reaper is left to it.
const REMOVE_RETRY_FOR: Duration = Duration::from_secs(600);

/// The call never got an answer: the daemon is down or restarting.
pub fn daemon_unreachable(e: &DockerError) -> bool {
    matches!(
        e,
        DockerError::NoDaemon { .. }
            | DockerError::Connect { .. }
            | DockerError::Io { .. }
            | DockerError::Timeout { .. }
    )
}

/// A daemon restart (live-restore off) leaves the stopped task container
/// behind; remove it as soon as the daemon answers again, off the task
/// thread so the task's end is reported at once.
fn remove_when_back(docker: Docker, id: String) {
    let shown = id.clone();
    let spawned = std::thread::Builder::new()
        .name("remove-later".into())
        .spawn(move || {
            let deadline = Instant::now() + REMOVE_RETRY_FOR;
            while Instant::now() < deadline {
                // No event announces the daemon's return; asking is the only way.
                std::thread::sleep(REMOVE_RETRY_EVERY);
                match docker.remove(&id) {
                    Ok(()) => {
                        log::info!("removed container {id} once the Docker daemon answered again");
                        return;
                    }
                    Err(e) if daemon_unreachable(&e) => {}
                    Err(e) => {
                        log::warn!("removing container {id}: {e}");
                        return;
                    }
                }
            }
            log::warn!(
                "container {id} is left for the reaper: the Docker daemon did not come back"
            );
        });
    if let Err(e) = spawned {
        log::warn!("container {shown} is left for the reaper: cannot start a thread: {e}");
    }
}
