//! The thin executor of the ownership protocol: performs each call a
//! [`TaskMachine`] or [`CleanupMachine`] asks for against the Engine API
//! and feeds the answer back. Every decision is the machine's
//! (`ownership::machine`); this module only maps calls to requests and
//! errors to replies: no answer → [`Reply::Unreachable`], 404 →
//! [`Reply::Gone`], any other error → [`Reply::Failed`].
//!
//! Owns [`Executor`] and the [`TaskWork`] seam through which an assigned
//! task pulls, creates and checks its container; it must not choose what
//! to do next. Its child `reads` performs the calls that only read the
//! daemon's records.

mod reads;

use std::sync::Arc;
use std::time::Duration;

use super::claims;
use super::lease::Ownership;
use super::ownership::liveness::{FRESH, Mono};
use super::ownership::machine::{
    Call, Cancel, CleanupMachine, CleanupStep, Env, FOLLOW_POLL, Reply, Step, TaskMachine,
};
use crate::docker::{AbortSlot, Docker, DockerError};
use crate::task::{CancelCause, CancelToken, TaskOutcome};
use crate::wire::FailureReason;

/// Why a create did not make a container.
pub(super) enum CreateFailure {
    /// A container of this execution exists already (409).
    NameTaken,
    /// The daemon did not answer.
    Unreachable,
    /// Anything else: the task fails with this.
    Failed(TaskOutcome),
}

/// What only a task with its assignment can do.
pub(super) trait TaskWork {
    /// Pulls images and prepares sidecar volumes.
    fn prepare(&mut self, cancel: &CancelToken) -> Result<(), TaskOutcome>;
    /// Creates the task container; returns its id.
    fn create(&mut self) -> Result<String, CreateFailure>;
    /// Checks the created container before it starts (the musl probe).
    fn check(&mut self, id: &str) -> Result<(), TaskOutcome>;
    /// Remembers why the task failed, for its terminal message.
    fn fail(&mut self, outcome: TaskOutcome);
    /// The container was started (its run's trace span begins).
    fn started(&mut self, _id: &str) {}
}

/// A task that has no assignment (adopted): it never prepares or creates.
pub(super) struct NoWork;

impl TaskWork for NoWork {
    fn prepare(&mut self, _: &CancelToken) -> Result<(), TaskOutcome> {
        Err(TaskOutcome::Interrupted)
    }
    fn create(&mut self) -> Result<String, CreateFailure> {
        Err(CreateFailure::Failed(TaskOutcome::Interrupted))
    }
    fn check(&mut self, _: &str) -> Result<(), TaskOutcome> {
        Ok(())
    }
    fn fail(&mut self, _: TaskOutcome) {}
}

/// The Engine API side of the protocol.
#[derive(Clone)]
pub struct Executor {
    docker: Docker,
    ownership: Arc<Ownership>,
    stop_grace: Duration,
}

/// The calls of one task: its execution key and ids.
pub(super) struct TaskIds<'a> {
    /// The execution key.
    pub key: &'a str,
    /// The task id.
    pub task_id: &'a str,
    /// The execution id.
    pub execution_id: &'a str,
}

/// Whether `e` means the daemon gave no answer (down, restarting, cut off).
pub fn no_answer(e: &DockerError) -> bool {
    !matches!(
        e,
        DockerError::Api { .. }
            | DockerError::Decode { .. }
            | DockerError::PullFailed { .. }
            | DockerError::PermissionDenied { .. }
    )
}

fn reply_of(e: &DockerError) -> Reply {
    match e {
        DockerError::Api { status: 404, .. } => Reply::Gone,
        e if no_answer(e) => Reply::Unreachable,
        _ => Reply::Failed,
    }
}

fn cancel_of(cancel: &CancelToken) -> Option<Cancel> {
    match cancel.cause()? {
        CancelCause::Detach => Some(Cancel::Detach),
        CancelCause::Shutdown => Some(Cancel::Shutdown),
        _ => Some(Cancel::Stop),
    }
}

/// The reply to a call a task's own work made (`prepare`, `check`): a
/// failure is kept for its terminal message.
fn work_reply(result: Result<(), TaskOutcome>, work: &mut dyn TaskWork) -> Reply {
    match result {
        Ok(()) => Reply::Done,
        Err(outcome) => {
            work.fail(outcome);
            Reply::Failed
        }
    }
}

impl Executor {
    /// An executor on `docker` for `ownership`; stops give `stop_grace`.
    pub fn new(docker: Docker, ownership: Arc<Ownership>, stop_grace: Duration) -> Self {
        Self {
            docker,
            ownership,
            stop_grace,
        }
    }

    /// This process's ownership state.
    pub fn ownership(&self) -> &Arc<Ownership> {
        &self.ownership
    }

    /// Runs `f` with the machine's environment.
    fn env<R>(&self, cancel: Option<Cancel>, f: impl FnOnce(&mut Env<'_>) -> R) -> R {
        let o = &self.ownership;
        let now = o.now();
        let me = o.instance().to_owned();
        o.with(|s| {
            let mut env = Env {
                me: &me,
                now,
                lease: &s.own,
                live: &mut s.live,
                cancel,
            };
            f(&mut env)
        })
    }

    /// Drives `machine` until it reports, goes silent or hands a container
    /// to cleanup.
    pub(super) fn drive(
        &self,
        machine: &mut TaskMachine,
        ids: &TaskIds<'_>,
        work: &mut dyn TaskWork,
        cancel: &CancelToken,
        holds: &dyn Fn(bool),
    ) -> Step {
        let mut step = self.env(cancel_of(cancel), |env| machine.start(env));
        // One line per outage, not one per retry.
        let mut away = false;
        loop {
            holds(machine.holds());
            let Step::Call(call) = step else {
                return step;
            };
            let decided = self.ownership.epoch();
            let chosen = self.ownership.now();
            let reply = self.fenced_at(&call, decided, chosen, || {
                self.perform(&call, ids, work, cancel)
            });
            match (&call, &reply) {
                (Call::Pause(_), _) => {}
                (Call::Wait { id, .. }, Reply::Unreachable) if !away => {
                    away = true;
                    log::warn!(
                        "lost the Docker daemon while waiting for container {id}; waiting again once it answers"
                    );
                }
                (_, Reply::Unreachable) => away = true,
                _ if away => {
                    away = false;
                    log::info!("the Docker daemon answers again");
                }
                _ => {}
            }
            step = self.env(cancel_of(cancel), |env| machine.step(reply, env));
        }
    }

    /// Drives a cleanup to its end.
    pub(super) fn clean(
        &self,
        machine: &mut CleanupMachine,
        mut done: impl FnMut(&CleanupStep) -> Reply,
    ) {
        let never = CancelToken::new();
        let ids = TaskIds {
            key: "",
            task_id: "",
            execution_id: "",
        };
        let mut step = self.env(None, |env| machine.start(env));
        loop {
            let reply = match &step {
                CleanupStep::Finished => return,
                CleanupStep::Call(call) => {
                    let decided = self.ownership.epoch();
                    self.fenced(call, decided, || {
                        self.perform(call, &ids, &mut NoWork, &never)
                    })
                }
                other => {
                    let reply = done(other);
                    if !matches!(other, CleanupStep::MarkDone { .. }) {
                        return;
                    }
                    reply
                }
            };
            step = self.env(None, |env| machine.step(reply, env));
        }
    }

    /// A fenced call is made only while the lease is safe and has not
    /// lapsed since the machine chose it.
    fn fenced(&self, call: &Call, decided: u64, perform: impl FnOnce() -> Reply) -> Reply {
        self.fenced_at(call, decided, self.ownership.now(), perform)
    }

    /// [`Executor::fenced`] for a call chosen at `chosen` (own clock).
    fn fenced_at(
        &self,
        call: &Call,
        decided: u64,
        chosen: Mono,
        perform: impl FnOnce() -> Reply,
    ) -> Reply {
        let o = &self.ownership;
        if call.is_fenced() && (!o.safe() || o.epoch() != decided) {
            return Reply::Lapsed;
        }
        if call.needs_fresh() && o.now().saturating_sub(chosen) > FRESH {
            return Reply::Lapsed;
        }
        let reply = perform();
        if !matches!(reply, Reply::Unreachable) && !matches!(call, Call::Pause(_) | Call::Prepare) {
            o.reached();
        }
        reply
    }

    /// Performs `call`; the machine decided it.
    fn perform(
        &self,
        call: &Call,
        ids: &TaskIds<'_>,
        work: &mut dyn TaskWork,
        cancel: &CancelToken,
    ) -> Reply {
        let o = &self.ownership;
        let d = &self.docker;
        match call {
            Call::ClaimExecution { generation } => self.claim_execution(*generation, ids, work),
            Call::ReadExecution => self.read_execution(ids),
            Call::Prepare => work_reply(work.prepare(cancel), work),
            Call::Create => match work.create() {
                Ok(id) => {
                    o.hold(&id, 0);
                    Reply::Created(id)
                }
                Err(CreateFailure::NameTaken) => Reply::NameTaken,
                Err(CreateFailure::Unreachable) => Reply::Unreachable,
                Err(CreateFailure::Failed(outcome)) => work_reply(Err(outcome), work),
            },
            Call::Check { id } => work_reply(work.check(id), work),
            Call::Renew => match o.renew() {
                Ok(()) => Reply::Done,
                Err(e) => reply_of(&e),
            },
            Call::ReadOwner { id } => self.read_owner(id),
            Call::Claim { id, generation } => {
                match claims::try_claim(d, o.worker_id(), o.instance(), id, *generation) {
                    Ok(true) => {
                        o.hold(id, *generation);
                        Reply::Holder(o.instance().to_owned())
                    }
                    Ok(false) => Reply::Holder(String::new()),
                    Err(e) => reply_of(&e),
                }
            }
            Call::ReadLease { instance } => self.read_lease(instance),
            Call::Start { id } => self.start(id, work),
            Call::Wait { id, poll: true } => self.poll(id, cancel),
            Call::Wait { id, poll: false } => self.wait(id, cancel),
            Call::Stop { id } => self.stop(id, cancel),
            Call::Remove { id } => match d.remove(id) {
                Ok(()) => Reply::Done,
                Err(e) => reply_of(&e),
            },
            Call::Pause(ms) => {
                let _ = cancel.wait_timeout(Duration::from_millis(*ms));
                Reply::Done
            }
        }
    }

    fn claim_execution(
        &self,
        generation: u64,
        ids: &TaskIds<'_>,
        work: &mut dyn TaskWork,
    ) -> Reply {
        let claimed =
            self.ownership
                .claim_exec(ids.key, generation, Some((ids.task_id, ids.execution_id)));
        match claimed {
            Ok(holder) => Reply::Holder(holder),
            Err(e) => {
                // Kept for the terminal message, should the daemon
                // go on refusing.
                work.fail(TaskOutcome::failed(
                    FailureReason::ContainerCreate,
                    format!("could not record the task on the Docker daemon: {e}"),
                ));
                reply_of(&e)
            }
        }
    }

    fn start(&self, id: &str, work: &mut dyn TaskWork) -> Reply {
        match self.docker.start(id) {
            Ok(()) => {
                log::info!("started container {id}");
                work.started(id);
                Reply::Done
            }
            Err(e) => {
                if !no_answer(&e) {
                    work.fail(TaskOutcome::failed(
                        crate::wire::FailureReason::ContainerStart,
                        format!("failed to start container: {e}"),
                    ));
                }
                reply_of(&e)
            }
        }
    }

    /// One look at a container a task follows (it polls rather than waits).
    fn poll(&self, id: &str, cancel: &CancelToken) -> Reply {
        match self.docker.inspect(id) {
            Ok(state) if !state.running && state.status != "created" => {
                Reply::Exited(state.exit_code)
            }
            Ok(_) => match cancel.wait_timeout(Duration::from_millis(FOLLOW_POLL)) {
                Some(_) => Reply::Cancelled,
                None => Reply::StillRunning,
            },
            Err(e) => reply_of(&e),
        }
    }

    fn stop(&self, id: &str, cancel: &CancelToken) -> Reply {
        let grace = match cancel.stop_by() {
            Some(by) => self
                .stop_grace
                .min(by.saturating_duration_since(std::time::Instant::now())),
            None => self.stop_grace,
        };
        log::info!(
            "stopping container {id} ({}s before SIGKILL)",
            grace.as_secs()
        );
        match self.docker.stop(id, grace) {
            Ok(()) => Reply::Done,
            Err(e) => reply_of(&e),
        }
    }

    /// Waits for a started container to end (a cancel cuts the wait short).
    fn wait(&self, id: &str, cancel: &CancelToken) -> Reply {
        if cancel.is_cancelled() {
            return Reply::Cancelled;
        }
        let slot = AbortSlot::new();
        let hook_slot = slot.clone();
        let hook = cancel.on_cancel(move |_| hook_slot.abort());
        let waited = self.docker.wait(id, &slot);
        drop(hook);
        match waited {
            Ok(result) => {
                if let Some(error) = result.error {
                    log::warn!("waiting for container {id}: {error}");
                }
                Reply::Exited(result.status_code)
            }
            Err(_) if cancel.is_cancelled() => Reply::Cancelled,
            Err(e) => {
                let reply = reply_of(&e);
                if reply == Reply::Unreachable {
                    log::debug!("waiting for container {id}: {e}");
                }
                reply
            }
        }
    }
}
