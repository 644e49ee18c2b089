//! Following an execution another process holds: what its record on the
//! daemon means — done, this process's own container, an owner that is
//! live (wait), gone (take over) or missing (a prune, or nobody).

use super::super::liveness::owner_subject;
use super::observe::{gone, leaving, observe_lease, observe_owner};
use super::protocol::{Env, ExecView, Outcome, OwnerView, Silence, Stage, Step};
use super::state::{Action, AdoptStage, Phase, Takeover, TaskMachine};

impl TaskMachine {
    /// The execution's record, read while following it (or found holding
    /// a container when this process looked for one).
    pub(super) fn on_exec(&mut self, mut view: ExecView, env: &mut Env<'_>) -> Step {
        if view.done {
            return self.silent(Silence::AlreadyDone);
        }
        match view.container.take() {
            Some((id, owner)) => self.on_exec_container(id, owner, env),
            None => self.on_exec_claim(view, env),
        }
    }

    /// The execution has container `id`, owned as `owner` says.
    fn on_exec_container(&mut self, id: String, owner: OwnerView, env: &mut Env<'_>) -> Step {
        if owner.instance == env.me {
            // This very process holds it (a claim it won earlier).
            let generation = owner.generation;
            return match owner.stage {
                Stage::Running => {
                    self.started = true;
                    self.goto(Phase::Watch { id, generation }, env)
                }
                Stage::Created => self.guard(id, generation, Action::Start, env),
                Stage::Exited(code) => {
                    self.guard(id, generation, Action::Report(Outcome::Exited(code)), env)
                }
            };
        }
        if owner.reported {
            return self.silent(Silence::AlreadyDone);
        }
        observe_owner(env.live, &id, &owner, env.now);
        if gone(env.live, &owner.instance, &owner_subject(&id), env.now) {
            let takeover = Takeover {
                previous: owner.instance,
                seen: owner.lease,
                interrupted_only: false,
            };
            return self.goto(
                Phase::Adopt {
                    id,
                    generation: owner.generation + 1,
                    takeover,
                    stage: AdoptStage::Claim,
                },
                env,
            );
        }
        if leaving(env) {
            return self.silent(Silence::NotMine);
        }
        match owner.stage {
            Stage::Exited(_) => self.silent(Silence::OwnerReports),
            Stage::Running | Stage::Created => self.goto(Phase::FollowWait { id }, env),
        }
    }

    /// The execution has no container: who holds its claim, if anyone.
    fn on_exec_claim(&mut self, view: ExecView, env: &mut Env<'_>) -> Step {
        let subject = self.exec_subject();
        match view.holder {
            None => {
                // No claim, no container, no tombstone: a prune removed
                // the records (a live holder makes its claim again within
                // a renewal period). Absent for a whole ttl, nobody holds
                // it: whether it ended or its holder died, the daemon no
                // longer knows, so it is reported interrupted — never run.
                env.live.observe(&subject, "absent", env.now);
                if env.cancel.is_some() {
                    // Cancelled, and nobody holds it: this process does.
                    return self.exec_report(Outcome::Cancelled, env);
                }
                if env.live.unchanged_for_ttl(&subject, env.now) {
                    return self.exec_report(Outcome::Interrupted, env);
                }
                self.goto(Phase::FollowPause, env)
            }
            Some((holder, generation)) => {
                env.live
                    .observe(&subject, &format!("{holder}/{generation}"), env.now);
                observe_lease(
                    env.live,
                    &holder,
                    view.holder_lease.as_deref(),
                    Some(view.holder_pinged),
                    env.now,
                );
                if holder != env.me && gone(env.live, &holder, &subject, env.now) {
                    // Its holder is gone before it made a container. It
                    // may have reported the task and died before marking
                    // it done: the daemon cannot tell, so the execution
                    // is reported interrupted, never run a second time.
                    let takeover = Takeover {
                        previous: holder,
                        seen: view.holder_lease,
                        interrupted_only: true,
                    };
                    return self.goto(
                        Phase::ClaimExec {
                            generation: generation + 1,
                            takeover: Some(takeover),
                        },
                        env,
                    );
                }
                if holder == env.me {
                    // This process holds the execution but made no
                    // container yet (a prune made it look elsewhere).
                    if !self.dedupe_can_run || self.lapsed_since_start(env) {
                        return self.exec_report(Outcome::Interrupted, env);
                    }
                    return self.goto(Phase::Prepare, env);
                }
                if leaving(env) {
                    return self.silent(Silence::NotMine);
                }
                self.goto(Phase::FollowPause, env)
            }
        }
    }
}
