//! Reporting a task that has no container (it failed or was cancelled
//! before one was made, or was interrupted): fenced on the execution
//! claim as a container's report is on the container's owner record.

use super::super::liveness::FRESH;
use super::observe::leaving;
use super::protocol::{Call, Env, Outcome, Reply, Silence, Step};
use super::state::{GuardStage, Phase, TaskMachine, settle_after_lapse};

impl TaskMachine {
    /// Reports `outcome` of a task that has no container, once this
    /// process is seen to hold its execution (without dedupe: at once).
    pub(super) fn exec_report(&mut self, outcome: Outcome, env: &mut Env<'_>) -> Step {
        self.goto(
            Phase::ExecReport {
                outcome,
                stage: GuardStage::Renew,
            },
            env,
        )
    }

    pub(super) fn on_exec_report(
        &mut self,
        outcome: Outcome,
        stage: GuardStage,
        reply: Reply,
        env: &mut Env<'_>,
    ) -> Step {
        let phase = |stage| Phase::ExecReport { outcome, stage };
        if let Some(step) = self.on_lease_stage(stage, &phase, env) {
            return step;
        }
        match (stage, reply) {
            (GuardStage::Read, Reply::Execution(view))
                if self.dedupe
                    && !view.done
                    && !self.trust.confirm(
                        env.lease,
                        env.now,
                        view.holder.as_ref().is_some_and(|(h, _)| h == env.me)
                            && view.holder_lease.is_none(),
                    ) =>
            {
                self.goto(phase(GuardStage::Renew), env)
            }
            (GuardStage::Read, Reply::Execution(view)) => {
                if view.done {
                    return self.silent(Silence::AlreadyDone);
                }
                if view.container.is_some() {
                    // A container appeared (this process's own create went
                    // through after all, or another's): follow the record.
                    self.phase = Phase::Follow;
                    return self.on_exec(view, env);
                }
                if !self.dedupe {
                    return self.report(outcome, None);
                }
                match view.holder {
                    Some((h, _)) if h == env.me && env.lease.safe(env.now) => {
                        self.report(outcome, None)
                    }
                    Some((h, _)) if h == env.me => self.goto(phase(GuardStage::Renew), env),
                    // Another process holds it: follow it until it reports
                    // or is judged gone (then this one takes it over) —
                    // its record alone may not outlive a prune.
                    Some(_) if leaving(env) => self.silent(Silence::NotMine),
                    Some(_) => self.goto(Phase::Follow, env),
                    // A prune took the claim: make it again (first creator wins).
                    None => self.goto(phase(GuardStage::Reclaim), env),
                }
            }
            (GuardStage::Reclaim, Reply::Holder(h)) if h == env.me => {
                self.goto(phase(GuardStage::Fresh), env)
            }
            (GuardStage::Reclaim, Reply::Holder(_)) => self.silent(Silence::Lost),
            (GuardStage::Fresh, _) => self.goto(phase(GuardStage::Read), env),
            // Refused (not unanswered): try again after a pause, never in a loop.
            (stage, Reply::Failed) => self.pause_and_retry(phase(stage)),
            (stage, _) => self.goto(phase(stage), env),
        }
    }

    /// The call of a report without a container in `stage` (the guard's
    /// stages, on the execution's record).
    pub(super) fn exec_report_call(&mut self, stage: GuardStage, env: &Env<'_>) -> Call {
        match stage {
            GuardStage::Renew if !env.lease.safe(env.now) => Call::Renew,
            GuardStage::Renew if self.trust.must_settle(env.lease) => {
                self.set_exec_stage(GuardStage::Settle);
                Call::Pause(settle_after_lapse(env.lease))
            }
            GuardStage::Renew => {
                self.set_exec_stage(GuardStage::Read);
                Call::ReadExecution
            }
            GuardStage::Settle => Call::Pause(settle_after_lapse(env.lease)),
            GuardStage::Reclaim => Call::ClaimExecution {
                generation: self.held_generation,
            },
            GuardStage::Fresh => Call::Pause(FRESH),
            GuardStage::Read | GuardStage::Act => Call::ReadExecution,
        }
    }

    pub(super) fn set_exec_stage(&mut self, to: GuardStage) {
        if let Phase::ExecReport { stage, .. } = &mut self.phase {
            *stage = to;
        }
    }
}
