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
use super::drive::{Executor, no_answer};
use super::ownership::machine::{CleanupMachine, CleanupStep, Reply};

/// What a task left when it ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Leftover {
    /// Its container, if it had one this process holds, with the
    /// generation it holds it at.
    pub container: Option<(String, u64)>,
    /// Its execution key (its records are marked done).
    pub key: String,
    /// Cleanup is off: keep the container, recorded as reported.
    pub keep: bool,
    /// Its task's private sidecar volumes, removed after it (last made first).
    pub volumes: Vec<String>,
    /// The lease epoch in which its task was reported (the cleanup gives
    /// up a vanished claim after a lapse since).
    pub epoch: u64,
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
    /// Execution keys being cleaned up (the reaper leaves them alone).
    busy: HashMap<String, usize>,
}

/// The leftovers of ended tasks of one runner.
pub struct Cleanups {
    executor: Executor,
    /// Wait for delivery (a worker with a dispatcher); false = clean at once
    /// (a runner driven directly, as in tests).
    defer: bool,
    queue: Arc<(Mutex<Queue>, Condvar)>,
    work: Sender<Leftover>,
}

impl Cleanups {
    /// Cleanups performed through `executor`.
    pub fn new(executor: Executor, defer: bool) -> Self {
        let (work, todo) = unbounded::<Leftover>();
        let queue: Arc<(Mutex<Queue>, Condvar)> = Arc::default();
        let (e, q) = (executor.clone(), queue.clone());
        // Ends when the runner (the only sender) goes.
        let _ = std::thread::Builder::new()
            .name("cleanup".into())
            .spawn(move || {
                for leftover in todo {
                    clean(&e, &leftover);
                    let mut g = lock(&q);
                    g.in_flight -= 1;
                    unbusy(&mut g, &leftover.key);
                    drop(g);
                    q.1.notify_all();
                }
            });
        Self {
            executor,
            defer,
            queue,
            work,
        }
    }

    /// `task_id` has ended and left `leftover`: cleans it now if its
    /// message was already read (or nothing waits for delivery), else keeps
    /// it until [`Cleanups::delivered`].
    pub fn hold(&self, task_id: &str, leftover: Leftover) {
        if !self.defer {
            return clean(&self.executor, &leftover);
        }
        let mut q = lock(&self.queue);
        *q.busy.entry(leftover.key.clone()).or_default() += 1;
        match q.slots.remove(task_id) {
            Some(Slot::Delivered) => {
                q.in_flight += 1;
                drop(q);
                self.send(leftover);
            }
            _ => {
                q.slots.insert(task_id.to_owned(), Slot::Waiting(leftover));
            }
        }
    }

    /// Cleans `leftover` now, without waiting for any delivery (its task
    /// sends no message).
    pub fn now(&self, leftover: Leftover) {
        if !self.defer {
            return clean(&self.executor, &leftover);
        }
        let mut q = lock(&self.queue);
        *q.busy.entry(leftover.key.clone()).or_default() += 1;
        q.in_flight += 1;
        drop(q);
        self.send(leftover);
    }

    fn send(&self, leftover: Leftover) {
        if let Err(e) = self.work.send(leftover) {
            let leftover = e.into_inner();
            clean(&self.executor, &leftover);
            let mut q = lock(&self.queue);
            q.in_flight -= 1;
            unbusy(&mut q, &leftover.key);
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
                self.send(leftover);
            }
            _ if running => {
                q.slots.insert(task_id.to_owned(), Slot::Delivered);
            }
            _ => {}
        }
    }

    /// Forgets a delivery noted for `task_id` whose task left nothing.
    pub fn forget_delivery(&self, task_id: &str) {
        let mut q = lock(&self.queue);
        if matches!(q.slots.get(task_id), Some(Slot::Delivered)) {
            q.slots.remove(task_id);
        }
    }

    /// Whether `task_id`'s leftover waits for its message to be read.
    pub fn is_waiting(&self, task_id: &str) -> bool {
        matches!(lock(&self.queue).slots.get(task_id), Some(Slot::Waiting(_)))
    }

    /// Whether execution `key` waits for, or is in, its cleanup.
    pub fn is_busy(&self, key: &str) -> bool {
        lock(&self.queue).busy.contains_key(key)
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

fn unbusy(q: &mut Queue, key: &str) {
    if let Some(n) = q.busy.get_mut(key) {
        *n -= 1;
        if *n == 0 {
            q.busy.remove(key);
        }
    }
}

/// How many times an execution is marked done again after an error answer.
const MARK_ATTEMPTS: u32 = 60;

/// How often the execution's records are tried again while the daemon is away.
const RETRY_EVERY: Duration = Duration::from_secs(1);
/// How long they are tried before the reaper is left to it.
const RETRY_FOR: Duration = Duration::from_secs(600);

/// Cleans one leftover: the container through the cleanup machine
/// (fenced: only while this process holds it), then its records.
fn clean(executor: &Executor, leftover: &Leftover) {
    let o = executor.ownership().clone();
    let docker = o.docker().clone();
    let key = leftover.key.as_str();
    let Some((id, generation)) = &leftover.container else {
        // A task without a container: its execution is marked done.
        let deadline = Instant::now() + RETRY_FOR;
        loop {
            match o.mark_exec_done(key) {
                Ok(()) => break,
                // Away, or answering errors while it shuts down: again.
                Err(_) if Instant::now() < deadline => {
                    std::thread::sleep(RETRY_EVERY);
                }
                Err(e) => {
                    log::warn!("marking execution {key} done: {e}; the reaper tidies it later");
                    break;
                }
            }
        }
        o.forget_exec(key);
        remove_volumes(&docker, &leftover.volumes, None);
        return;
    };
    let mut machine = CleanupMachine::new(id.clone(), *generation, leftover.keep, leftover.epoch);
    // A daemon that is shutting down answers errors ("database not open")
    // for a while: the mark is tried again, a bounded number of times.
    let mut attempts = 0u32;
    executor.clean(&mut machine, |step| match step {
        CleanupStep::MarkDone { .. } => match o.mark_exec_done(key) {
            Ok(()) => Reply::Done,
            Err(e) if no_answer(&e) => Reply::Unreachable,
            Err(e) if attempts < MARK_ATTEMPTS => {
                attempts += 1;
                log::debug!("marking execution {key} done: {e}; trying again");
                Reply::Unreachable
            }
            Err(e) => {
                log::warn!("marking execution {key} done: {e}");
                Reply::Done
            }
        },
        CleanupStep::MarkReported { id, generation } => {
            log::info!("keeping container {id} (cleanup is off)");
            if let Err(e) =
                claims::mark_reported(&docker, o.worker_id(), o.instance(), id, generation + 1)
            {
                log::warn!(
                    "recording that container {id} was reported: {e}; a later worker process may report it again"
                );
            }
            Reply::Done
        }
        CleanupStep::RemoveRecords { id } => {
            log::debug!("removed container {id}");
            remove_volumes(&docker, &leftover.volumes, Some(id));
            if let Err(e) = claims::remove_all(&docker, o.worker_id(), id) {
                log::warn!("removing the claims on container {id}: {e}; the reaper removes them later");
            }
            if let Err(e) = o.mark_exec_done(key) {
                log::warn!("marking execution {key} done: {e}; the reaper tidies it later");
            }
            o.release_container(id);
            Reply::Done
        }
        _ => Reply::Done,
    });
    o.forget_exec(key);
}

fn remove_volumes(docker: &crate::docker::Docker, volumes: &[String], of: Option<&str>) {
    for volume in volumes.iter().rev() {
        if let Err(e) = docker.volume_remove(volume) {
            match of {
                Some(id) => log::warn!("removing sidecar volume {volume} of container {id}: {e}"),
                None => log::warn!("removing sidecar volume {volume}: {e}"),
            }
        }
    }
}
