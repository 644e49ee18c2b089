//! [`CleanupMachine`]: after a task's terminal message was read, remove
//! its container (or keep it, recorded as reported), guarded like every
//! fenced action.

use super::super::liveness::FRESH;
use super::RETRY;
use super::observe::observe_owner;
use super::protocol::{Call, Env, OwnerView, Reply};
use super::state::{GuardStage, Trust, settle_after_lapse};

/// After a task's terminal message was read: remove its container (or
/// keep it, recorded as reported), fenced like every action.
#[derive(Debug, Clone)]
pub struct CleanupMachine {
    id: String,
    generation: u64,
    keep: bool,
    stage: GuardStage,
    retrying: bool,
    /// The execution was marked done.
    marked: bool,
    /// The next reply is to the mark; the removal follows at once.
    removing: bool,
    /// When its guard may trust an owner record (see [`Trust`]).
    trust: Trust,
    /// The lease epoch in which the claim was last seen held (see
    /// [`TaskMachine`](super::TaskMachine)'s).
    claim_epoch: u64,
}

/// What a cleanup does next.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CleanupStep {
    /// Perform this call.
    Call(Call),
    /// Record the container as reported (it is kept), then finish.
    MarkReported {
        /// The container.
        id: String,
        /// The generation to record at.
        generation: u64,
    },
    /// Mark the container's execution done (a tombstone), then feed
    /// [`Reply::Done`] (or [`Reply::Unreachable`]).
    MarkDone {
        /// The container.
        id: String,
    },
    /// The container is gone: remove its claims (and mark its execution
    /// done, if that was not done yet), then finish.
    RemoveRecords {
        /// The container.
        id: String,
    },
    /// Nothing more to do (this process no longer holds it).
    Finished,
}

impl CleanupMachine {
    /// Cleans up `id`, held at `generation` as last seen in lease epoch
    /// `epoch` (when its report was guarded); `keep`: cleanup is off.
    pub fn new(id: String, generation: u64, keep: bool, epoch: u64) -> Self {
        Self {
            id,
            generation,
            keep,
            stage: GuardStage::Renew,
            retrying: false,
            marked: false,
            removing: false,
            trust: Trust::in_epoch(epoch),
            claim_epoch: epoch,
        }
    }

    /// The first step.
    pub fn start(&mut self, env: &mut Env<'_>) -> CleanupStep {
        self.next(env)
    }

    fn next(&mut self, env: &mut Env<'_>) -> CleanupStep {
        let call = match self.stage {
            GuardStage::Renew if !env.lease.safe(env.now) => Call::Renew,
            GuardStage::Renew if self.trust.must_settle(env.lease) => {
                self.stage = GuardStage::Settle;
                Call::Pause(settle_after_lapse(env.lease))
            }
            GuardStage::Settle => Call::Pause(settle_after_lapse(env.lease)),
            GuardStage::Fresh => Call::Pause(FRESH),
            _ => {
                self.stage = GuardStage::Read;
                Call::ReadOwner {
                    id: self.id.clone(),
                }
            }
        };
        CleanupStep::Call(call)
    }

    /// The owner record, read and trusted: keep, mark done or remove the
    /// container if this process still holds it.
    fn on_owner(&mut self, view: OwnerView, env: &mut Env<'_>) -> CleanupStep {
        observe_owner(env.live, &self.id, &view, env.now);
        if view.instance == env.me && view.generation >= self.generation {
            self.claim_epoch = env.lease.epoch();
            if !env.lease.safe(env.now) {
                self.stage = GuardStage::Renew;
                return self.next(env);
            }
            self.generation = view.generation;
            if self.keep {
                return CleanupStep::MarkReported {
                    id: self.id.clone(),
                    generation: self.generation,
                };
            }
            if self.marked {
                self.stage = GuardStage::Act;
                return CleanupStep::Call(Call::Remove {
                    id: self.id.clone(),
                });
            }
            // Done first: whoever finds the container gone, or still
            // there after a crash, knows its task was reported.
            self.stage = GuardStage::Reclaim;
            self.marked = true;
            self.removing = true;
            return CleanupStep::MarkDone {
                id: self.id.clone(),
            };
        }
        if view.generation < self.generation && self.claim_epoch == env.lease.epoch() {
            self.stage = GuardStage::Reclaim;
            return CleanupStep::Call(Call::Claim {
                id: self.id.clone(),
                generation: self.generation,
            });
        }
        // Lost it: whoever holds it now finishes it.
        CleanupStep::Finished
    }

    /// The step after `reply`.
    pub fn step(&mut self, reply: Reply, env: &mut Env<'_>) -> CleanupStep {
        if std::mem::take(&mut self.retrying) {
            return self.next(env);
        }
        if reply == Reply::Unreachable {
            env.live.cut_off();
            self.stage = GuardStage::Renew;
            self.retrying = true;
            return CleanupStep::Call(Call::Pause(RETRY));
        }
        match (self.stage, reply) {
            (GuardStage::Renew, _) if env.lease.safe(env.now) => self.next(env),
            (GuardStage::Renew, _) => {
                self.retrying = true;
                CleanupStep::Call(Call::Pause(RETRY))
            }
            // The execution was just marked done: read the owner record
            // again, so the removal rests on a fresh read (the mark took a
            // call of its own).
            (GuardStage::Reclaim, _) if self.marked && self.removing => {
                self.removing = false;
                self.stage = GuardStage::Renew;
                self.next(env)
            }
            (GuardStage::Settle, _) => {
                self.trust.settled(env.lease);
                self.stage = GuardStage::Renew;
                self.next(env)
            }
            (GuardStage::Read, _) if self.trust.must_settle(env.lease) => {
                self.stage = GuardStage::Renew;
                self.next(env)
            }
            (GuardStage::Read, Reply::Owner(view))
                if !self.trust.confirm(
                    env.lease,
                    env.now,
                    view.instance == env.me && view.lease.is_none(),
                ) =>
            {
                self.stage = GuardStage::Renew;
                self.next(env)
            }
            (GuardStage::Read, Reply::Owner(view)) => self.on_owner(view, env),
            (GuardStage::Act, Reply::Lapsed) => {
                // Decided before a lapse: the owner record is read again.
                self.stage = GuardStage::Renew;
                self.removing = false;
                self.next(env)
            }
            (GuardStage::Read, Reply::Gone) | (GuardStage::Act, _) => CleanupStep::RemoveRecords {
                id: self.id.clone(),
            },
            (GuardStage::Reclaim, Reply::Holder(h)) if h == env.me => {
                self.stage = GuardStage::Fresh;
                self.next(env)
            }
            (GuardStage::Fresh, _) => {
                self.stage = GuardStage::Read;
                self.next(env)
            }
            (GuardStage::Reclaim, Reply::Lapsed) => {
                self.stage = GuardStage::Renew;
                self.next(env)
            }
            (GuardStage::Reclaim, _) => CleanupStep::Finished,
            (_, Reply::Failed) => {
                self.retrying = true;
                CleanupStep::Call(Call::Pause(RETRY))
            }
            _ => self.next(env),
        }
    }
}
