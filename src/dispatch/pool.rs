//! The threads that run claimed tasks: a fixed pool fed by a bounded channel
//! when `max_concurrent_tasks` is set, else (and for every adopted task) a
//! thread of its own per task.
//!
//! Owns the threads and handing jobs to them; must not decide whether a task
//! is taken (a job only exists once [`super::admission`] reserved its slot)
//! nor what running one means (that is [`super::run`]).

use std::panic::{AssertUnwindSafe, catch_unwind};
use std::sync::{Arc, Mutex};
use std::thread;

use crossbeam_channel::{Receiver, Sender};
use log::error;

use super::run::{Job, Work, run_job};
use super::{Dispatcher, Shared};

/// Starts `slots` pool threads and returns their channel; `None` for 0
/// slots (no limit: a thread per task).
pub(super) fn start(shared: &Arc<Shared>, slots: usize) -> Option<Sender<Job>> {
    if slots == 0 {
        return None;
    }
    let (tx, rx) = crossbeam_channel::bounded::<Job>(slots);
    for n in 0..slots {
        let shared = shared.clone();
        let rx: Receiver<Job> = rx.clone();
        thread::Builder::new()
            .name(format!("task-slot-{n}"))
            .spawn(move || {
                for job in rx {
                    // A panic outside the runner (which is caught
                    // inside) ends that task, not the slot's thread.
                    let _ = catch_unwind(AssertUnwindSafe(|| run_job(&shared, job)));
                }
            })
            .expect("spawning a pool thread at startup");
    }
    Some(tx)
}

impl Dispatcher {
    /// Hands `job` to a pool thread, or to a thread of its own when there is
    /// no pool. Never blocks: a slot was reserved, so the channel has room.
    pub(super) fn send(&self, job: Job) {
        match &self.jobs {
            Some(jobs) => {
                if let Err(e) = jobs.try_send(job) {
                    let job = e.into_inner();
                    error!("no pool thread took task {}", job.task_id);
                    self.spawn(job);
                }
            }
            None => self.spawn(job),
        }
    }

    /// Runs `job` on a thread of its own.
    pub(super) fn spawn(&self, job: Job) {
        let shared = self.shared.clone();
        // No outside text in a thread name: a NUL byte there panics the
        // spawning thread, and the name shows up in `ps` and panic lines.
        // The job is kept here too, so a thread that cannot start still
        // ends its task: one terminal message, the slot freed.
        let slot = Arc::new(Mutex::new(Some(job)));
        let taken = Arc::clone(&slot);
        let spawned = thread::Builder::new().name("task".into()).spawn(move || {
            let job = taken.lock().unwrap_or_else(|e| e.into_inner()).take();
            if let Some(job) = job {
                run_job(&shared, job);
            }
        });
        if let Err(e) = spawned {
            error!("could not start a thread for a task: {e}");
            let job = slot.lock().unwrap_or_else(|e| e.into_inner()).take();
            if let Some(mut job) = job {
                job.work = Work::Failed(format!(
                    "the worker could not start a thread for the task: {e}"
                ));
                run_job(&self.shared, job);
            }
        }
    }
}
