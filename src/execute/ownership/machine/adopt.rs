//! Taking over a container whose owner is gone (found by the reaper, or
//! by a follower): claim it at the next generation, make sure the previous
//! owner can no longer act on it, then inspect it and carry on from its
//! stage.

use super::super::liveness::{FRESH, owner_subject};
use super::RELEASED;
use super::observe::{gone, observe_owner};
use super::protocol::{Call, Env, Outcome, Reply, Silence, Stage, Step};
use super::state::{Action, AdoptStage, Phase, Takeover, TaskMachine};

impl TaskMachine {
    /// The call of a takeover in `stage`; `None` when the judgement that
    /// the owner is gone went stale before the claim (look again).
    pub(super) fn adopt_call(
        &self,
        id: &str,
        generation: u64,
        takeover: &Takeover,
        stage: AdoptStage,
        env: &Env<'_>,
    ) -> Option<Call> {
        Some(match stage {
            AdoptStage::Claim
                if takeover.previous != env.me
                    && !gone(env.live, &takeover.previous, &owner_subject(id), env.now) =>
            {
                return None;
            }
            AdoptStage::Claim => Call::Claim {
                id: id.to_owned(),
                generation,
            },
            AdoptStage::Fresh => Call::Pause(FRESH),
            AdoptStage::Recheck => Call::ReadLease {
                instance: takeover.previous.clone(),
            },
            AdoptStage::Settle => Call::Pause(env.lease.ttl()),
            AdoptStage::Inspect => Call::ReadOwner { id: id.to_owned() },
        })
    }

    pub(super) fn on_adopt(
        &mut self,
        id: String,
        generation: u64,
        takeover: Takeover,
        stage: AdoptStage,
        reply: Reply,
        env: &mut Env<'_>,
    ) -> Step {
        let phase = |stage| Phase::Adopt {
            id: id.clone(),
            generation,
            takeover: takeover.clone(),
            stage,
        };
        match (stage, reply) {
            (AdoptStage::Claim, Reply::Holder(h)) if h == env.me => {
                self.claim_epoch = Some(env.lease.epoch());
                self.goto(phase(AdoptStage::Fresh), env)
            }
            (AdoptStage::Fresh, _) if from_self(&takeover, env.me) => {
                self.goto(phase(AdoptStage::Inspect), env)
            }
            (AdoptStage::Fresh, _) => self.goto(phase(AdoptStage::Recheck), env),
            // Another process won: follow it like any live owner.
            (AdoptStage::Claim, Reply::Holder(_)) => self.goto(Phase::Follow, env),
            (AdoptStage::Recheck, Reply::Lease(now_seen, pinged)) => {
                if settled(&takeover, now_seen.as_deref(), pinged) {
                    self.goto(phase(AdoptStage::Inspect), env)
                } else {
                    self.goto(phase(AdoptStage::Settle), env)
                }
            }
            (AdoptStage::Settle, _) => self.goto(phase(AdoptStage::Inspect), env),
            (AdoptStage::Inspect, Reply::Owner(view)) => {
                observe_owner(env.live, &id, &view, env.now);
                if view.reported && view.instance == env.me {
                    self.phase = Phase::Ended;
                    return Step::Cleanup {
                        container: id,
                        generation,
                    };
                }
                if view.instance != env.me || view.generation < generation {
                    // Lost it, or a prune took the claim: the guard of the
                    // next action sorts out which.
                    if view.generation < generation {
                        return self.guard(id, generation, Action::RemoveUnstarted, env);
                    }
                    return self.goto(Phase::Follow, env);
                }
                match view.stage {
                    Stage::Running => {
                        self.started = true;
                        self.goto(Phase::Watch { id, generation }, env)
                    }
                    Stage::Exited(code) => {
                        self.guard(id, generation, Action::Report(Outcome::Exited(code)), env)
                    }
                    Stage::Created => self.guard(id, generation, Action::RemoveUnstarted, env),
                }
            }
            (AdoptStage::Inspect, Reply::Gone) => self.silent(Silence::AlreadyDone),
            (stage, _) => self.goto(phase(stage), env),
        }
    }
}

/// Whether a takeover may act at once: the taker's ping to the previous
/// holder is still unanswered (it has not renewed since it was judged
/// gone, so any check it makes from now on sees the new claim), or it
/// released its lease. Otherwise it may have checked before the
/// claim existed: the taker waits one ttl, by when whatever it did on that
/// check is over.
pub(super) fn settled(takeover: &Takeover, now_seen: Option<&str>, pinged: bool) -> bool {
    let _ = &takeover.seen;
    pinged || now_seen == Some(RELEASED)
}

/// A takeover from this very process (a container it gave up, handed back
/// to it by a prune) has nobody to wait for.
pub(super) fn from_self(takeover: &Takeover, me: &str) -> bool {
    takeover.previous == me
}
