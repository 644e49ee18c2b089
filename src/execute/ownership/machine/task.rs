//! [`TaskMachine`]: one task from its assignment (or adoption) to its
//! terminal message. Holds the task's [`Phase`] and dispatches each reply
//! to the stage that owns it (`claim`, `follow`, `guard`, `adopt`,
//! `exec_report`); what to do when the daemon does not answer, and which
//! call each phase makes, are decided here.

use super::observe::gone;
use super::protocol::{Call, Cancel, Env, Outcome, Reply, Silence, Step};
use super::state::{Action, AdoptStage, GuardStage, Origin, Phase, Takeover, TaskMachine, Trust};
use super::{FOLLOW_POLL, RETRY};

impl TaskMachine {
    /// A machine for a task of `origin`; `tag` is unique to the task
    /// (its execution's key).
    pub fn new(origin: Origin, tag: &str) -> Self {
        let mut dedupe = true;
        let can_run = matches!(origin, Origin::Assigned { .. });
        let phase = match origin {
            Origin::Assigned { dedupe: true } => Phase::ClaimExec {
                generation: 1,
                takeover: None,
            },
            Origin::Assigned { dedupe: false } => {
                dedupe = false;
                Phase::Prepare
            }
            Origin::Adopted {
                id,
                generation,
                previous,
                seen,
            } => Phase::Adopt {
                id,
                generation,
                takeover: Takeover {
                    previous,
                    seen,
                    interrupted_only: false,
                },
                stage: AdoptStage::Claim,
            },
            Origin::Abandoned {
                generation,
                previous,
                seen,
            } => Phase::ClaimExec {
                generation,
                takeover: Some(Takeover {
                    previous,
                    seen,
                    interrupted_only: true,
                }),
            },
        };
        Self {
            phase,
            tag: tag.to_owned(),
            retrying: false,
            started: false,
            dedupe,
            dedupe_can_run: can_run,
            held_generation: 1,
            refusals: 0,
            epoch: None,
            trust: Trust::default(),
            claim_epoch: None,
        }
    }

    /// The first step.
    pub fn start(&mut self, env: &mut Env<'_>) -> Step {
        self.epoch = Some(env.lease.epoch());
        self.trust = Trust::in_epoch(env.lease.epoch());
        self.enter(env)
    }

    /// Whether the lease lapsed since the task began.
    pub(super) fn lapsed_since_start(&self, env: &Env<'_>) -> bool {
        !env.lease.safe(env.now) || self.epoch.is_some_and(|e| e != env.lease.epoch())
    }

    /// Whether the machine has ended.
    pub fn ended(&self) -> bool {
        self.phase == Phase::Ended
    }

    /// Whether this process holds the task now (it won the execution, or
    /// holds the container): only then may a shutdown report it ahead of
    /// its end. A task still claiming, following or taking over does not.
    pub fn holds(&self) -> bool {
        matches!(
            self.phase,
            Phase::FindExisting { .. }
                | Phase::Prepare
                | Phase::CreateGuard { .. }
                | Phase::CreateReclaim
                | Phase::Create
                | Phase::Check { .. }
                | Phase::Guard { .. }
                | Phase::Watch { .. }
        )
    }

    /// The container this process acts on or watches now, if any.
    pub fn container(&self) -> Option<&str> {
        match &self.phase {
            Phase::Check { id }
            | Phase::Guard { id, .. }
            | Phase::Watch { id, .. }
            | Phase::FollowWait { id }
            | Phase::Adopt { id, .. } => Some(id),
            _ => None,
        }
    }

    /// The step after `reply` to the last call.
    pub fn step(&mut self, reply: Reply, env: &mut Env<'_>) -> Step {
        if std::mem::take(&mut self.retrying) {
            return self.enter(env);
        }
        if reply == Reply::Unreachable {
            env.live.cut_off();
            return self.unreachable(env);
        }
        let phase = std::mem::replace(&mut self.phase, Phase::Ended);
        match phase {
            Phase::ClaimExec {
                generation,
                takeover,
            } => self.on_claim_exec(generation, takeover, reply, env),
            Phase::ExecRecheck { takeover } => self.on_exec_recheck(takeover, reply, env),
            Phase::ExecSettle { takeover } => {
                let interrupted_only = takeover.interrupted_only;
                self.goto(Phase::FindExisting { interrupted_only }, env)
            }
            Phase::FindExisting { interrupted_only } => {
                self.on_find_existing(interrupted_only, reply, env)
            }
            Phase::Prepare => self.on_prepare(reply, env),
            Phase::CreateGuard { renewing } => self.on_create_guard(renewing, reply, env),
            Phase::CreateReclaim => self.on_create_reclaim(reply, env),
            Phase::Create => self.on_create(reply, env),
            Phase::Check { id } => self.on_check(id, reply, env),
            Phase::Guard {
                id,
                generation,
                action,
                stage,
            } => self.on_guard(id, generation, action, stage, reply, env),
            Phase::Watch { id, generation } => match reply {
                Reply::Exited(code) => {
                    self.guard(id, generation, Action::Report(Outcome::Exited(code)), env)
                }
                Reply::Gone => self.exec_report(Outcome::Vanished, env),
                _ => self.goto(Phase::Watch { id, generation }, env),
            },
            Phase::Follow => match reply {
                Reply::Execution(view) => {
                    self.phase = Phase::Follow;
                    self.on_exec(view, env)
                }
                _ => self.goto(Phase::Follow, env),
            },
            Phase::FollowPause | Phase::FollowWait { .. } => self.goto(Phase::Follow, env),
            Phase::Adopt {
                id,
                generation,
                takeover,
                stage,
            } => self.on_adopt(id, generation, takeover, stage, reply, env),
            Phase::ExecReport { outcome, stage } => self.on_exec_report(outcome, stage, reply, env),
            Phase::Ended => Step::Silent(Silence::Lost),
        }
    }

    pub(super) fn goto(&mut self, phase: Phase, env: &mut Env<'_>) -> Step {
        self.phase = phase;
        self.enter(env)
    }

    pub(super) fn pause_and_retry(&mut self, phase: Phase) -> Step {
        debug_assert!(!matches!(phase, Phase::Ended));
        self.phase = phase;
        self.retrying = true;
        Step::Call(Call::Pause(RETRY))
    }

    /// The daemon did not answer the last call.
    pub(super) fn unreachable(&mut self, env: &mut Env<'_>) -> Step {
        match self.phase.clone() {
            // Before anything exists, an unreachable daemon fails the task
            // plainly (the worker rejects new tasks meanwhile).
            Phase::Prepare => self.exec_report(Outcome::Failed, env),
            Phase::ExecReport { outcome, .. } => self.pause_and_retry(Phase::ExecReport {
                outcome,
                stage: GuardStage::Renew,
            }),
            Phase::Watch { .. } if env.cancel == Some(Cancel::Detach) => {
                self.silent(Silence::Detached)
            }
            Phase::Guard {
                id,
                generation,
                action,
                ..
            } => {
                // A guard starts over: its lease may have lapsed meanwhile.
                self.pause_and_retry(Phase::Guard {
                    id,
                    generation,
                    action,
                    stage: GuardStage::Renew,
                })
            }
            // A create rests on the execution record read just before it:
            // read it again first (the process may have been away long
            // enough for the execution to be taken over and reported; found
            // by the simulator, seed 381050).
            Phase::Create if self.dedupe => {
                self.pause_and_retry(Phase::CreateGuard { renewing: false })
            }
            // Everything else is asked again until the daemon answers: a
            // daemon restart is not a task failure.
            phase => self.pause_and_retry(phase),
        }
    }

    /// The call the current phase makes.
    pub(super) fn enter(&mut self, env: &mut Env<'_>) -> Step {
        let call = match &self.phase {
            Phase::ClaimExec { takeover: None, .. }
            | Phase::FindExisting {
                interrupted_only: false,
            }
            | Phase::Prepare
            | Phase::CreateGuard { .. }
                if env.cancel.is_some() =>
            {
                return self.exec_report(Outcome::Cancelled, env);
            }
            Phase::ClaimExec {
                generation,
                takeover: Some(t),
            } if !gone(env.live, &t.previous, &self.exec_subject(), env.now) => {
                // The judgement went stale before the claim: look again,
                // following the record (the daemon's record alone may not
                // outlive a prune: whoever follows reports what it finds).
                let _ = generation;
                return self.goto(Phase::Follow, env);
            }
            Phase::ClaimExec { generation, .. } => Call::ClaimExecution {
                generation: *generation,
            },
            Phase::ExecRecheck { takeover } => Call::ReadLease {
                instance: takeover.previous.clone(),
            },
            Phase::ExecSettle { .. } => Call::Pause(env.lease.ttl()),
            Phase::FindExisting { .. } => Call::ReadExecution,
            Phase::Prepare => Call::Prepare,
            Phase::CreateGuard { .. } if self.lapsed_since_start(env) => {
                // The lease lapsed while the task was being prepared: the
                // execution may have been taken over, reported and its
                // records pruned meanwhile. Never run it then: report it
                // interrupted (once this process is seen to hold it).
                return self.exec_report(Outcome::Interrupted, env);
            }
            Phase::CreateGuard { .. } => Call::ReadExecution,
            Phase::CreateReclaim => Call::ClaimExecution {
                generation: self.held_generation,
            },
            Phase::Create if env.cancel.is_some() => {
                return self.exec_report(Outcome::Cancelled, env);
            }
            Phase::Create => Call::Create,
            Phase::Check { id } => Call::Check { id: id.clone() },
            Phase::Guard { .. } => return self.guard_next(env),
            Phase::Watch { id, generation } => match env.cancel {
                Some(Cancel::Detach) if self.started => return self.silent(Silence::Detached),
                Some(_) => {
                    let (id, generation) = (id.clone(), *generation);
                    return self.guard(id, generation, Action::Stop, env);
                }
                None => Call::Wait {
                    id: id.clone(),
                    poll: false,
                },
            },
            Phase::Follow => Call::ReadExecution,
            Phase::FollowPause => Call::Pause(FOLLOW_POLL),
            Phase::FollowWait { id } => Call::Wait {
                id: id.clone(),
                poll: true,
            },
            Phase::Adopt {
                id,
                generation,
                takeover,
                stage,
            } => match self.adopt_call(id, *generation, takeover, *stage, env) {
                Some(call) => call,
                // The judgement went stale before the claim: look again.
                None => return self.goto(Phase::Follow, env),
            },
            Phase::ExecReport { stage, .. } => self.exec_report_call(*stage, env),
            Phase::Ended => return Step::Silent(Silence::Lost),
        };
        Step::Call(call)
    }

    pub(super) fn report(&mut self, outcome: Outcome, container: Option<(String, u64)>) -> Step {
        self.phase = Phase::Ended;
        Step::Report { outcome, container }
    }

    pub(super) fn silent(&mut self, why: Silence) -> Step {
        self.phase = Phase::Ended;
        Step::Silent(why)
    }

    pub(super) fn exec_subject(&self) -> String {
        format!("exec:{}", self.tag)
    }
}
