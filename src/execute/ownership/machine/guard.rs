//! The guard before every fenced action (start, stop, remove, report):
//! renew the own lease if it is no longer safe, settle after a lapse, read
//! the container's owner record, make a vanished claim again, then act only
//! if this process still holds the container. [`Trust`](super::state::Trust)
//! says when an owner record may be believed.

use super::super::liveness::FRESH;
use super::observe::observe_owner;
use super::protocol::{Call, Env, Outcome, OwnerView, Reply, Silence, Stage, Step};
use super::state::{Action, GuardStage, Phase, TaskMachine, settle_after_lapse};

impl TaskMachine {
    pub(super) fn guard(
        &mut self,
        id: String,
        generation: u64,
        action: Action,
        env: &mut Env<'_>,
    ) -> Step {
        let action = match action {
            Action::Start if env.cancel.is_some() => Action::Report(Outcome::Cancelled),
            other => other,
        };
        self.phase = Phase::Guard {
            id,
            generation,
            action,
            stage: GuardStage::Renew,
        };
        self.guard_next(env)
    }

    /// The next call of a guard in its current stage.
    pub(super) fn guard_next(&mut self, env: &mut Env<'_>) -> Step {
        let Phase::Guard { id, stage, .. } = &mut self.phase else {
            return self.silent(Silence::Lost);
        };
        let call = match *stage {
            GuardStage::Renew if !env.lease.safe(env.now) => Call::Renew,
            GuardStage::Renew if self.trust.must_settle(env.lease) => {
                *stage = GuardStage::Settle;
                Call::Pause(settle_after_lapse(env.lease))
            }
            GuardStage::Settle => Call::Pause(settle_after_lapse(env.lease)),
            GuardStage::Fresh => Call::Pause(FRESH),
            _ => {
                *stage = GuardStage::Read;
                Call::ReadOwner { id: id.clone() }
            }
        };
        Step::Call(call)
    }

    pub(super) fn on_guard(
        &mut self,
        id: String,
        generation: u64,
        action: Action,
        stage: GuardStage,
        reply: Reply,
        env: &mut Env<'_>,
    ) -> Step {
        let phase = |stage| Phase::Guard {
            id: id.clone(),
            generation,
            action: action.clone(),
            stage,
        };
        if let Some(step) = self.on_lease_stage(stage, &phase, env) {
            return step;
        }
        match (stage, reply) {
            (GuardStage::Read, Reply::Owner(view))
                if !self.trust.confirm(
                    env.lease,
                    env.now,
                    view.instance == env.me && view.lease.is_none(),
                ) =>
            {
                self.goto(phase(GuardStage::Renew), env)
            }
            (GuardStage::Read, Reply::Owner(view)) => {
                self.on_guard_owner(id, generation, action, view, env)
            }
            // Gone: reported and removed by whoever held it last (its
            // execution is done then), or removed by hand.
            (GuardStage::Read, Reply::Gone) => match action {
                Action::Report(outcome) => self.exec_report(outcome, env),
                Action::Stop => self.exec_report(Outcome::Cancelled, env),
                Action::RemoveUnstarted => self.exec_report(Outcome::Interrupted, env),
                Action::Start => self.exec_report(Outcome::Vanished, env),
            },
            (GuardStage::Reclaim, Reply::Holder(h)) if h == env.me => {
                self.claim_epoch = Some(env.lease.epoch());
                self.goto(phase(GuardStage::Fresh), env)
            }
            (GuardStage::Fresh, _) => self.goto(phase(GuardStage::Read), env),
            (GuardStage::Reclaim, Reply::Holder(_)) => self.silent(Silence::Lost),
            (GuardStage::Act, Reply::Lapsed) => self.goto(phase(GuardStage::Renew), env),
            (GuardStage::Act, reply) => self.acted(id, generation, action, reply, env),
            // Refused (not unanswered): try again after a pause, never in a loop.
            (stage, Reply::Failed) => self.pause_and_retry(phase(stage)),
            (stage, _) => self.goto(phase(stage), env),
        }
    }

    /// The stages that keep the own lease, shared by a container's guard
    /// and a report without a container; `None` when the reply is the
    /// caller's to read.
    pub(super) fn on_lease_stage(
        &mut self,
        stage: GuardStage,
        phase: &impl Fn(GuardStage) -> Phase,
        env: &mut Env<'_>,
    ) -> Option<Step> {
        let step = match stage {
            // Renewed: the lease had lapsed, so the guard settles first (a
            // live holder of a claim that a prune removed makes it again
            // within a renewal period; a taker's claim lands meanwhile).
            GuardStage::Renew if env.lease.safe(env.now) => {
                self.goto(phase(GuardStage::Renew), env)
            }
            GuardStage::Renew => self.pause_and_retry(phase(GuardStage::Renew)),
            GuardStage::Settle => {
                self.trust.settled(env.lease);
                self.goto(phase(GuardStage::Renew), env)
            }
            // Read before a lapse this process only now learns of: settle
            // and read again.
            GuardStage::Read if self.trust.must_settle(env.lease) => {
                self.goto(phase(GuardStage::Renew), env)
            }
            _ => return None,
        };
        Some(step)
    }

    /// The owner record, read and trusted: act if this process still holds
    /// the container, make its vanished claim again, or give it up.
    fn on_guard_owner(
        &mut self,
        id: String,
        generation: u64,
        action: Action,
        view: OwnerView,
        env: &mut Env<'_>,
    ) -> Step {
        let phase = |stage| Phase::Guard {
            id: id.clone(),
            generation,
            action: action.clone(),
            stage,
        };
        observe_owner(env.live, &id, &view, env.now);
        if view.instance == env.me && view.generation >= generation {
            self.claim_epoch = Some(env.lease.epoch());
            if !env.lease.safe(env.now) {
                return self.goto(phase(GuardStage::Renew), env);
            }
            if view.reported && action != Action::Stop {
                // Its execution was reported already (by a process
                // that took it over while this one was away): never
                // start it or report it again; just remove it.
                self.phase = Phase::Ended;
                return Step::Cleanup {
                    container: id,
                    generation: view.generation,
                };
            }
            let generation = view.generation;
            self.phase = Phase::Guard {
                id: id.clone(),
                generation,
                action: action.clone(),
                stage: GuardStage::Act,
            };
            return self.act(id, generation, action, view.stage, env);
        }
        if view.generation < generation && self.claim_epoch == Some(env.lease.epoch()) {
            // This process's claim vanished (a volume prune) while
            // its lease held: make it again; whoever creates it
            // first holds it.
            self.phase = phase(GuardStage::Reclaim);
            return Step::Call(Call::Claim { id, generation });
        }
        self.silent(Silence::Lost)
    }

    pub(super) fn act(
        &mut self,
        id: String,
        generation: u64,
        action: Action,
        stage: Stage,
        env: &mut Env<'_>,
    ) -> Step {
        match (action, stage) {
            (Action::Start, Stage::Created) => Step::Call(Call::Start { id }),
            (Action::Start, Stage::Running) => {
                self.started = true;
                self.goto(Phase::Watch { id, generation }, env)
            }
            (Action::Start, Stage::Exited(code)) | (Action::Stop, Stage::Exited(code)) => {
                self.guard(id, generation, Action::Report(Outcome::Exited(code)), env)
            }
            (Action::Stop, _) => Step::Call(Call::Stop { id }),
            // Removed by the cleanup once the report was read: a crash in
            // between leaves it for the next process to report again.
            (Action::RemoveUnstarted, Stage::Created) => {
                self.report(Outcome::Interrupted, Some((id, generation)))
            }
            (Action::RemoveUnstarted, Stage::Running) => {
                self.started = true;
                self.goto(Phase::Watch { id, generation }, env)
            }
            (Action::RemoveUnstarted, Stage::Exited(code)) => {
                self.report(Outcome::Exited(code), Some((id, generation)))
            }
            (Action::Report(outcome), _) => self.report(outcome, Some((id, generation))),
        }
    }

    pub(super) fn acted(
        &mut self,
        id: String,
        generation: u64,
        action: Action,
        reply: Reply,
        env: &mut Env<'_>,
    ) -> Step {
        match (action, reply) {
            (Action::Start, Reply::Done) => {
                self.started = true;
                self.goto(Phase::Watch { id, generation }, env)
            }
            (Action::Start, Reply::Gone) => self.exec_report(Outcome::Vanished, env),
            (Action::Start, _) => self.guard(id, generation, Action::Report(Outcome::Failed), env),
            (Action::Stop, Reply::Gone) => self.exec_report(Outcome::Cancelled, env),
            (Action::Stop, _) => {
                self.guard(id, generation, Action::Report(Outcome::Cancelled), env)
            }
            (Action::RemoveUnstarted, _) | (Action::Report(_), _) => {
                // Neither makes a call of its own.
                self.guard(id, generation, action_again(), env)
            }
        }
    }
}

pub(super) fn action_again() -> Action {
    Action::Report(Outcome::Failed)
}
