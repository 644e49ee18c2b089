//! The first stages of an assigned (or abandoned) task: claim its
//! execution on the daemon (first creator wins), take over one whose
//! holder is gone, look for a container it already has, prepare, and
//! create the container behind a fence on the execution claim.

use super::adopt::settled;
use super::observe::leaving;
use super::protocol::{Env, Outcome, Reply, Silence, Step};
use super::state::{Action, Phase, Takeover, TaskMachine};

/// How many refusals of an execution claim end the task.
const REFUSALS: u32 = 3;

impl TaskMachine {
    /// The reply to the execution claim at `generation` (a takeover's, when
    /// `takeover` is set).
    pub(super) fn on_claim_exec(
        &mut self,
        generation: u64,
        takeover: Option<Takeover>,
        reply: Reply,
        env: &mut Env<'_>,
    ) -> Step {
        match reply {
            Reply::Holder(h) if h == env.me => {
                self.held_generation = generation;
                match takeover {
                    Some(takeover) => {
                        self.phase = Phase::ExecRecheck { takeover };
                        self.enter(env)
                    }
                    None => self.goto(
                        Phase::FindExisting {
                            interrupted_only: false,
                        },
                        env,
                    ),
                }
            }
            // Another process won it: follow it until it reports.
            Reply::Holder(_) => self.goto(Phase::Follow, env),
            // The daemon refuses to record the claim (its disk is full,
            // say): nothing was made, so after a few tries the task
            // fails plainly — a takeover leaves it to a later pass.
            Reply::Failed => {
                self.refusals += 1;
                if self.refusals < REFUSALS {
                    return self.pause_and_retry(Phase::ClaimExec {
                        generation,
                        takeover,
                    });
                }
                match takeover {
                    None => self.report(Outcome::Failed, None),
                    Some(_) => self.silent(Silence::Lost),
                }
            }
            _ => self.goto(
                Phase::ClaimExec {
                    generation,
                    takeover,
                },
                env,
            ),
        }
    }

    /// The previous holder's lease, read again once its execution was claimed.
    pub(super) fn on_exec_recheck(
        &mut self,
        takeover: Takeover,
        reply: Reply,
        env: &mut Env<'_>,
    ) -> Step {
        match reply {
            Reply::Lease(now_seen, pinged) => {
                if settled(&takeover, now_seen.as_deref(), pinged) {
                    let interrupted_only = takeover.interrupted_only;
                    self.goto(Phase::FindExisting { interrupted_only }, env)
                } else {
                    self.goto(Phase::ExecSettle { takeover }, env)
                }
            }
            _ => self.goto(Phase::ExecRecheck { takeover }, env),
        }
    }

    /// The execution's record, read for a container it already has.
    pub(super) fn on_find_existing(
        &mut self,
        interrupted_only: bool,
        reply: Reply,
        env: &mut Env<'_>,
    ) -> Step {
        match reply {
            Reply::Execution(view) => match view.container {
                Some(_) => {
                    self.phase = Phase::Follow;
                    self.on_exec(view, env)
                }
                None if interrupted_only => self.exec_report(Outcome::Interrupted, env),
                None => self.goto(Phase::Prepare, env),
            },
            _ => self.goto(Phase::FindExisting { interrupted_only }, env),
        }
    }

    /// Images pulled and sidecars prepared, or not.
    pub(super) fn on_prepare(&mut self, reply: Reply, env: &mut Env<'_>) -> Step {
        match reply {
            Reply::Done if self.dedupe => self.goto(Phase::CreateGuard { renewing: false }, env),
            Reply::Done => self.goto(Phase::Create, env),
            _ => self.exec_report(Outcome::Failed, env),
        }
    }

    /// The execution's record, read just before create (the fence).
    pub(super) fn on_create_guard(
        &mut self,
        renewing: bool,
        reply: Reply,
        env: &mut Env<'_>,
    ) -> Step {
        match reply {
            Reply::Execution(view) => {
                if view.container.is_some() || view.done {
                    self.phase = Phase::Follow;
                    return self.on_exec(view, env);
                }
                match &view.holder {
                    Some((h, _)) if h == env.me && env.lease.safe(env.now) => {
                        self.goto(Phase::Create, env)
                    }
                    Some((h, _)) if h == env.me => {
                        self.goto(Phase::CreateGuard { renewing: false }, env)
                    }
                    // This process's claim vanished (a prune): make it
                    // again; whoever creates it first holds it.
                    None => self.goto(Phase::CreateReclaim, env),
                    // Another process holds it now: follow it (it runs
                    // and reports, or is judged gone and taken over).
                    Some(_) if leaving(env) => self.silent(Silence::NotMine),
                    Some(_) => self.goto(Phase::Follow, env),
                }
            }
            _ if renewing => {
                if env.lease.safe(env.now) {
                    self.goto(Phase::CreateGuard { renewing: false }, env)
                } else {
                    self.pause_and_retry(Phase::CreateGuard { renewing: false })
                }
            }
            _ => self.goto(Phase::CreateGuard { renewing: false }, env),
        }
    }

    /// This process's vanished execution claim, made again.
    pub(super) fn on_create_reclaim(&mut self, reply: Reply, env: &mut Env<'_>) -> Step {
        match reply {
            Reply::Holder(h) if h == env.me => {
                self.goto(Phase::CreateGuard { renewing: false }, env)
            }
            _ => self.goto(Phase::Follow, env),
        }
    }

    /// The create.
    pub(super) fn on_create(&mut self, reply: Reply, env: &mut Env<'_>) -> Step {
        match reply {
            Reply::Lapsed if self.dedupe => self.goto(Phase::CreateGuard { renewing: false }, env),
            Reply::Lapsed => self.pause_and_retry(Phase::Create),
            Reply::Created(id) => self.goto(Phase::Check { id }, env),
            Reply::NameTaken => self.goto(Phase::Follow, env),
            _ => self.exec_report(Outcome::Failed, env),
        }
    }

    /// The checks on the created container.
    pub(super) fn on_check(&mut self, id: String, reply: Reply, env: &mut Env<'_>) -> Step {
        match reply {
            Reply::Done if env.cancel.is_none() => self.guard(id, 0, Action::Start, env),
            Reply::Done => self.guard(id, 0, Action::Report(Outcome::Cancelled), env),
            _ => self.guard(id, 0, Action::Report(Outcome::Failed), env),
        }
    }
}
