//! The ownership protocol of one task, as an I/O-free state machine: which
//! daemon call comes next, and what each answer means. The executor
//! (`execute`, `follow`, `cleanup`) performs each [`Call`] and feeds back
//! its [`Reply`]; the simulator (`super::sim`) does the same against a
//! simulated daemon under faults. Neither decides anything this module
//! does not say.
//!
//! Owns [`TaskMachine`] (assigned, followed and adopted tasks, up to the
//! terminal message) and [`CleanupMachine`] (after the message was read:
//! remove or keep). It must not do I/O or read a clock: `now` comes in
//! through [`Env`].
//!
//! Fenced actions — start, stop, remove, report — are each preceded by a
//! *guard*: renew the own lease if it is no longer safe, then read the
//! container's owner record, then act only if this process still holds it
//! and the lease is still safe. A process that finds it lost a container
//! goes silent; one that only follows another live process's container
//! never acts on it.

use super::liveness::{FRESH, Liveness, Mono, OwnLease, lease_subject, owner_subject};

/// How often a follower looks at its owner again.
pub const FOLLOW_POLL: Mono = 2_000;
/// How long to wait before asking an unreachable daemon again.
pub const RETRY: Mono = 1_000;
/// How many refusals of an execution claim end the task.
const REFUSALS: u32 = 3;

/// Why a task is being cancelled.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Cancel {
    /// The orchestrator asked, or the task timed out: stop the container.
    /// A process that only follows the task cannot, so it keeps following
    /// until it can act (the owner reports, or is gone and it takes over).
    Stop,
    /// The worker stops in `cancel` mode: stop the containers it holds; a
    /// follower leaves the task to its owner.
    Shutdown,
    /// The worker stops in `detach` mode: leave the container running.
    Detach,
}

/// What the machine needs from its process at each step.
pub struct Env<'a> {
    /// This process's instance id.
    pub me: &'a str,
    /// Now, on this process's monotonic clock.
    pub now: Mono,
    /// This process's lease as it sees it.
    pub lease: &'a OwnLease,
    /// What this process has seen of others.
    pub live: &'a mut Liveness,
    /// Whether the task was cancelled, and how.
    pub cancel: Option<Cancel>,
}

/// A container's life stage as the daemon reports it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stage {
    /// Created, never started.
    Created,
    /// Running (or paused, restarting).
    Running,
    /// Ended with this exit code.
    Exited(i64),
}

/// A container's owner record, read in one call (claims, labels, state,
/// and the owner's lease).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OwnerView {
    /// The owning instance (the highest claim, else the creator's label).
    pub instance: String,
    /// Its generation (0: the creator).
    pub generation: u64,
    /// Its terminal message was sent (a kept container).
    pub reported: bool,
    /// The container's stage.
    pub stage: Stage,
    /// The owner's lease as seen in the same read (`None`: no lease volume;
    /// `Some("released")` after a clean stop).
    pub lease: Option<String>,
    /// The reader's ping to the owner is there (unanswered), as seen in the
    /// same read.
    pub pinged: bool,
}

/// An execution's record on the daemon, read in one call.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ExecView {
    /// The highest execution claim: holder and generation.
    pub holder: Option<(String, u64)>,
    /// The holder's lease as seen in the same read.
    pub holder_lease: Option<String>,
    /// The reader's ping to the holder is there (unanswered).
    pub holder_pinged: bool,
    /// The execution was reported and its container removed.
    pub done: bool,
    /// Its task container, with its owner record.
    pub container: Option<(String, OwnerView)>,
}

/// The lease value of a cleanly stopped instance.
pub const RELEASED: &str = "released";

/// The next daemon call (or pause) the machine wants.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Call {
    /// Create the execution claim at `generation` (first creator wins).
    /// Reply: [`Reply::Holder`].
    ClaimExecution {
        /// The generation to create.
        generation: u64,
    },
    /// Read the execution's record. Reply: [`Reply::Execution`].
    ReadExecution,
    /// Pull images and prepare sidecars. Reply: [`Reply::Done`] or [`Reply::Failed`].
    Prepare,
    /// Create the task container under the execution's own name.
    /// Reply: [`Reply::Created`], [`Reply::NameTaken`] or [`Reply::Failed`].
    Create,
    /// Checks on the created, unstarted container (the musl probe).
    /// Reply: [`Reply::Done`] or [`Reply::Failed`].
    Check {
        /// The container.
        id: String,
    },
    /// Renew this process's lease now. Reply: [`Reply::Done`] or [`Reply::Unreachable`].
    Renew,
    /// Read container `id`'s owner record. Reply: [`Reply::Owner`] or [`Reply::Gone`].
    ReadOwner {
        /// The container.
        id: String,
    },
    /// Create the claim on `id` at `generation` (first creator wins).
    /// Reply: [`Reply::Holder`].
    Claim {
        /// The container.
        id: String,
        /// The generation to create.
        generation: u64,
    },
    /// Read `instance`'s lease and the reader's ping to it. Reply: [`Reply::Lease`].
    ReadLease {
        /// Whose.
        instance: String,
    },
    /// Start the container (fenced). Reply: [`Reply::Done`], [`Reply::Gone`] or [`Reply::Failed`].
    Start {
        /// The container.
        id: String,
    },
    /// Wait for the container to end; a follower's wait returns after
    /// [`FOLLOW_POLL`] at most. Reply: [`Reply::Exited`],
    /// [`Reply::StillRunning`], [`Reply::Gone`], [`Reply::Cancelled`].
    Wait {
        /// The container.
        id: String,
        /// Return after [`FOLLOW_POLL`] even if it still runs.
        poll: bool,
    },
    /// Stop the container (fenced). Reply: [`Reply::Done`] or [`Reply::Gone`].
    Stop {
        /// The container.
        id: String,
    },
    /// Remove the container (fenced). Reply: [`Reply::Done`] or [`Reply::Gone`].
    Remove {
        /// The container.
        id: String,
    },
    /// Do nothing for this long (ends early on a cancel). Reply: [`Reply::Done`].
    Pause(Mono),
}

/// What a call came back with. Any call may also answer
/// [`Reply::Unreachable`] (no answer from the daemon).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Reply {
    /// It worked.
    Done,
    /// The daemon answered with an error (the executor keeps its words).
    Failed,
    /// The daemon did not answer.
    Unreachable,
    /// The holder of the claim just created (maybe another process).
    Holder(String),
    /// The execution's record.
    Execution(ExecView),
    /// The container's owner record.
    Owner(OwnerView),
    /// The container is gone.
    Gone,
    /// The container was created.
    Created(String),
    /// A container with the execution's name exists already.
    NameTaken,
    /// An instance's lease (`None`: none), and whether the reader's ping
    /// to it is still there (it has not renewed since the ping was seen).
    Lease(Option<String>, bool),
    /// The container ended with this code.
    Exited(i64),
    /// A follower's wait ran out; the container still runs.
    StillRunning,
    /// The wait was cut short by a cancel.
    Cancelled,
    /// Not performed: this process's lease was no longer safe when the
    /// executor came to make a fenced call (see [`Call::is_fenced`]).
    Lapsed,
}

impl Call {
    /// Whether the executor must check, just before making this call, that
    /// the own lease is still safe (and answer [`Reply::Lapsed`] if not).
    pub fn is_fenced(&self) -> bool {
        matches!(
            self,
            Call::Start { .. } | Call::Stop { .. } | Call::Remove { .. } | Call::Create
        )
    }

    /// Whether this call acts on a judgement that must still be fresh when
    /// it is made: the executor answers [`Reply::Lapsed`] instead when more
    /// than [`super::liveness::FRESH`] passed since the machine chose it (the
    /// process paused in between).
    pub fn needs_fresh(&self) -> bool {
        self.is_fenced() || matches!(self, Call::Claim { .. } | Call::ClaimExecution { .. })
    }
}

/// How a task ended, for its terminal message.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    /// The container exited with this code.
    Exited(i64),
    /// A step failed; the executor kept what failed.
    Failed,
    /// Cancelled (stopped by this process, or before it began).
    Cancelled,
    /// Created but never started by a process that is gone.
    Interrupted,
    /// Its container disappeared.
    Vanished,
}

/// Why a task ends without a terminal message from this process.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Silence {
    /// Another live process owns the container and reports it.
    OwnerReports,
    /// This process lost the container to another process.
    Lost,
    /// The worker stops in detach mode: the container runs on.
    Detached,
    /// The execution was reported already (by another process).
    AlreadyDone,
    /// This process only followed another live process's container and was
    /// stopped or cancelled: it leaves the container to that process.
    NotMine,
}

/// What the machine does next.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Step {
    /// Perform this call and feed back its reply.
    Call(Call),
    /// Send this outcome; this process holds `container` (id, generation)
    /// until its cleanup, if there is one.
    Report {
        /// How the task ended.
        outcome: Outcome,
        /// The container this process holds.
        container: Option<(String, u64)>,
    },
    /// Send nothing.
    Silent(Silence),
    /// Send nothing, but clean up `container` (held at `generation`) now:
    /// its task was reported by a process that did not live to remove it.
    Cleanup {
        /// The container.
        container: String,
        /// The generation this process holds it at.
        generation: u64,
    },
}

/// A fenced action waiting for its guard.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Action {
    Start,
    Stop,
    /// Remove a never-started container, then report `Interrupted`.
    RemoveUnstarted,
    Report(Outcome),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum GuardStage {
    /// Renewing the own lease (it was not safe).
    Renew,
    /// The lease had lapsed: waiting for every live holder to re-create
    /// a claim a prune may have removed, before reading.
    Settle,
    /// Reading the owner record.
    Read,
    /// Re-creating this process's vanished claim.
    Reclaim,
    /// A claim just won: waiting out [`FRESH`] before reading (see
    /// [`Call::needs_fresh`]).
    Fresh,
    /// The action's own call.
    Act,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum AdoptStage {
    Claim,
    /// Won: waiting out [`FRESH`] (see [`GuardStage::Fresh`]).
    Fresh,
    Recheck,
    Settle,
    Inspect,
}

/// Taking over an execution (or container) whose holder is gone.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Takeover {
    previous: String,
    seen: Option<String>,
    /// Only report it interrupted (the reaper's takeover); a follower's
    /// takeover runs the task.
    interrupted_only: bool,
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Phase {
    ClaimExec {
        generation: u64,
        takeover: Option<Takeover>,
    },
    ExecRecheck {
        takeover: Takeover,
    },
    ExecSettle {
        takeover: Takeover,
    },
    FindExisting {
        interrupted_only: bool,
    },
    Prepare,
    /// The fence before create: the execution must still be this process's.
    CreateGuard {
        renewing: bool,
    },
    /// Making this process's vanished execution claim again before create.
    CreateReclaim,
    Create,
    Check {
        id: String,
    },
    Guard {
        id: String,
        generation: u64,
        action: Action,
        stage: GuardStage,
    },
    Watch {
        id: String,
        generation: u64,
    },
    Follow,
    FollowPause,
    FollowWait {
        id: String,
    },
    Adopt {
        id: String,
        generation: u64,
        takeover: Takeover,
        stage: AdoptStage,
    },
    /// Reporting `outcome` of a task without a container: fenced on the
    /// execution claim as a container's report is on the container's.
    ExecReport {
        outcome: Outcome,
        stage: GuardStage,
    },
    Ended,
}

/// How a task reached this process.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Origin {
    /// Assigned by the orchestrator. `dedupe`: its execution id is not
    /// empty, so the execution is claimed on the daemon first.
    Assigned {
        /// Whether the execution is claimed on the daemon.
        dedupe: bool,
    },
    /// A container of a gone process, found by the reaper: claim it at
    /// `generation`; its owner's lease was `seen` when judged gone.
    Adopted {
        /// The container.
        id: String,
        /// The claim to create.
        generation: u64,
        /// The owner judged gone.
        previous: String,
        /// Its lease then.
        seen: Option<String>,
    },
    /// An execution whose holder is gone before it made a container:
    /// claim it at `generation` and report it interrupted.
    Abandoned {
        /// The execution claim to create.
        generation: u64,
        /// The holder judged gone.
        previous: String,
        /// Its lease then.
        seen: Option<String>,
    },
}

/// One task's ownership protocol.
#[derive(Debug, Clone)]
pub struct TaskMachine {
    phase: Phase,
    /// Names this task's subjects in the shared [`Liveness`].
    tag: String,
    /// The last call was a pause before retrying the current phase.
    retrying: bool,
    /// The container was started by this process (or found running).
    started: bool,
    /// The execution is claimed on the daemon.
    dedupe: bool,
    /// This process has the assignment, so it can run the task itself.
    dedupe_can_run: bool,
    /// The generation of the execution claim this process won.
    held_generation: u64,
    /// How many times the daemon refused the execution claim.
    refusals: u32,
    /// The lease epoch when the task began (see [`OwnLease::epoch`]).
    epoch: Option<u64>,
    /// When its guards may trust an owner record (see [`Trust`]).
    trust: Trust,
    /// The lease epoch in which this process last saw itself hold its
    /// container claim. A claim that vanished is made again only in that
    /// same epoch: after a lapse another process may have claimed the
    /// container once a prune erased the record, so it is given up.
    claim_epoch: Option<u64>,
}

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
    fn lapsed_since_start(&self, env: &Env<'_>) -> bool {
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
            } => match reply {
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
            },
            Phase::ExecRecheck { takeover } => match reply {
                Reply::Lease(now_seen, pinged) => {
                    if settled(&takeover, now_seen.as_deref(), pinged) {
                        let interrupted_only = takeover.interrupted_only;
                        self.goto(Phase::FindExisting { interrupted_only }, env)
                    } else {
                        self.goto(Phase::ExecSettle { takeover }, env)
                    }
                }
                _ => self.goto(Phase::ExecRecheck { takeover }, env),
            },
            Phase::ExecSettle { takeover } => {
                let interrupted_only = takeover.interrupted_only;
                self.goto(Phase::FindExisting { interrupted_only }, env)
            }
            Phase::FindExisting { interrupted_only } => match reply {
                Reply::Execution(view) => match view.container {
                    Some(_) => {
                        self.phase = Phase::Follow;
                        self.on_exec(view, env)
                    }
                    None if interrupted_only => self.exec_report(Outcome::Interrupted, env),
                    None => self.goto(Phase::Prepare, env),
                },
                _ => self.goto(Phase::FindExisting { interrupted_only }, env),
            },
            Phase::Prepare => match reply {
                Reply::Done if self.dedupe => {
                    self.goto(Phase::CreateGuard { renewing: false }, env)
                }
                Reply::Done => self.goto(Phase::Create, env),
                _ => self.exec_report(Outcome::Failed, env),
            },
            Phase::CreateGuard { renewing } => match reply {
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
            },
            Phase::CreateReclaim => match reply {
                Reply::Holder(h) if h == env.me => {
                    self.goto(Phase::CreateGuard { renewing: false }, env)
                }
                _ => self.goto(Phase::Follow, env),
            },
            Phase::Create => match reply {
                Reply::Lapsed if self.dedupe => {
                    self.goto(Phase::CreateGuard { renewing: false }, env)
                }
                Reply::Lapsed => self.pause_and_retry(Phase::Create),
                Reply::Created(id) => self.goto(Phase::Check { id }, env),
                Reply::NameTaken => self.goto(Phase::Follow, env),
                _ => self.exec_report(Outcome::Failed, env),
            },
            Phase::Check { id } => match reply {
                Reply::Done if env.cancel.is_none() => self.guard(id, 0, Action::Start, env),
                Reply::Done => self.guard(id, 0, Action::Report(Outcome::Cancelled), env),
                _ => self.guard(id, 0, Action::Report(Outcome::Failed), env),
            },
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

    /// Reports `outcome` of a task that has no container, once this
    /// process is seen to hold its execution (without dedupe: at once).
    fn exec_report(&mut self, outcome: Outcome, env: &mut Env<'_>) -> Step {
        self.goto(
            Phase::ExecReport {
                outcome,
                stage: GuardStage::Renew,
            },
            env,
        )
    }

    fn on_exec_report(
        &mut self,
        outcome: Outcome,
        stage: GuardStage,
        reply: Reply,
        env: &mut Env<'_>,
    ) -> Step {
        let phase = |stage| Phase::ExecReport { outcome, stage };
        match (stage, reply) {
            (GuardStage::Renew, _) if env.lease.safe(env.now) => {
                self.goto(phase(GuardStage::Renew), env)
            }
            (GuardStage::Renew, _) => self.pause_and_retry(phase(GuardStage::Renew)),
            (GuardStage::Settle, _) => {
                self.trust.settled(env.lease);
                self.goto(phase(GuardStage::Renew), env)
            }
            (GuardStage::Read, _) if self.trust.must_settle(env.lease) => {
                self.goto(phase(GuardStage::Renew), env)
            }
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

    fn goto(&mut self, phase: Phase, env: &mut Env<'_>) -> Step {
        self.phase = phase;
        self.enter(env)
    }

    fn pause_and_retry(&mut self, phase: Phase) -> Step {
        debug_assert!(!matches!(phase, Phase::Ended));
        self.phase = phase;
        self.retrying = true;
        Step::Call(Call::Pause(RETRY))
    }

    /// The daemon did not answer the last call.
    fn unreachable(&mut self, env: &mut Env<'_>) -> Step {
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
    fn enter(&mut self, env: &mut Env<'_>) -> Step {
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
            } => match stage {
                AdoptStage::Claim
                    if takeover.previous != env.me
                        && !gone(env.live, &takeover.previous, &owner_subject(id), env.now) =>
                {
                    // The judgement went stale before the claim: look again.
                    return self.goto(Phase::Follow, env);
                }
                AdoptStage::Claim => Call::Claim {
                    id: id.clone(),
                    generation: *generation,
                },
                AdoptStage::Fresh => Call::Pause(FRESH),
                AdoptStage::Recheck => Call::ReadLease {
                    instance: takeover.previous.clone(),
                },
                AdoptStage::Settle => Call::Pause(env.lease.ttl()),
                AdoptStage::Inspect => Call::ReadOwner { id: id.clone() },
            },
            Phase::ExecReport { stage, .. } => match stage {
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
            },
            Phase::Ended => return Step::Silent(Silence::Lost),
        };
        Step::Call(call)
    }

    fn set_exec_stage(&mut self, to: GuardStage) {
        if let Phase::ExecReport { stage, .. } = &mut self.phase {
            *stage = to;
        }
    }

    fn report(&mut self, outcome: Outcome, container: Option<(String, u64)>) -> Step {
        self.phase = Phase::Ended;
        Step::Report { outcome, container }
    }

    fn silent(&mut self, why: Silence) -> Step {
        self.phase = Phase::Ended;
        Step::Silent(why)
    }

    fn exec_subject(&self) -> String {
        format!("exec:{}", self.tag)
    }

    fn on_exec(&mut self, view: ExecView, env: &mut Env<'_>) -> Step {
        if view.done {
            return self.silent(Silence::AlreadyDone);
        }
        let subject = self.exec_subject();
        match view.container {
            Some((id, owner)) => {
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
            None => match view.holder {
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
            },
        }
    }

    fn guard(&mut self, id: String, generation: u64, action: Action, env: &mut Env<'_>) -> Step {
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
    fn guard_next(&mut self, env: &mut Env<'_>) -> Step {
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

    fn on_guard(
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
        match (stage, reply) {
            // Renewed: the lease had lapsed, so the guard settles first (a
            // live holder of a claim that a prune removed makes it again
            // within a renewal period; a taker's claim lands meanwhile).
            (GuardStage::Renew, _) if env.lease.safe(env.now) => {
                self.goto(phase(GuardStage::Renew), env)
            }
            (GuardStage::Renew, _) => self.pause_and_retry(phase(GuardStage::Renew)),
            (GuardStage::Settle, _) => {
                self.trust.settled(env.lease);
                self.goto(phase(GuardStage::Renew), env)
            }
            // Read before a lapse this process only now learns of: settle
            // and read again.
            (GuardStage::Read, _) if self.trust.must_settle(env.lease) => {
                self.goto(phase(GuardStage::Renew), env)
            }
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

    fn act(
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

    fn acted(
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

    fn on_adopt(
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

fn action_again() -> Action {
    Action::Report(Outcome::Failed)
}

/// Whether a takeover may act at once: the taker's ping to the previous
/// holder is still unanswered (it has not renewed since it was judged
/// gone, so any check it makes from now on sees the new claim), or it
/// released its lease. Otherwise it may have checked before the
/// claim existed: the taker waits one ttl, by when whatever it did on that
/// check is over.
fn settled(takeover: &Takeover, now_seen: Option<&str>, pinged: bool) -> bool {
    let _ = &takeover.seen;
    pinged || now_seen == Some(RELEASED)
}

/// Whether this process is stopping (a follower then leaves its task).
fn leaving(env: &Env<'_>) -> bool {
    matches!(env.cancel, Some(Cancel::Detach | Cancel::Shutdown))
}

/// A takeover from this very process (a container it gave up, handed back
/// to it by a prune) has nobody to wait for.
fn from_self(takeover: &Takeover, me: &str) -> bool {
    takeover.previous == me
}

/// How long a process whose lease lapsed waits after renewing before it
/// trusts an owner record: a whole ttl. A holder whose claim a prune
/// erased makes it again at its next renewal (every third of a ttl) if its
/// lease is still safe; if it cannot renew, its safe window (shorter than a
/// ttl) ends meanwhile, and it never acts on the claim again without
/// reading. Either way the record read after the wait is the truth.
pub fn settle_after_lapse(lease: &OwnLease) -> Mono {
    lease.ttl()
}

/// When a guard may trust what the daemon's records say about what this
/// process holds. After its lease lapsed, another process may have taken
/// a claim over; after a `docker volume prune`, that claim's record may be
/// gone while its holder has yet to make it again. Either way the guard
/// waits [`settle_after_lapse`] and reads again: by then a holder whose
/// lease held has made its claim again (it renews every third of a ttl),
/// and one whose lease did not never acts on it again without reading. A
/// prune shows as an erasure a renewal found ([`OwnLease::erased`]) less
/// than a ttl ago, or, with no renewal since, as this process's own lease
/// missing from the very record it reads.
#[derive(Debug, Clone, Default)]
struct Trust {
    /// The lease epoch of the last completed wait (`None`: wait first).
    validated: Option<u64>,
}

impl Trust {
    /// Trusted as long as the lease does not lapse after `epoch`.
    fn in_epoch(epoch: u64) -> Self {
        Self {
            validated: Some(epoch),
        }
    }

    /// Whether the guard must wait before it reads.
    fn must_settle(&self, lease: &OwnLease) -> bool {
        self.validated != Some(lease.epoch())
    }

    /// The wait is over.
    fn settled(&mut self, lease: &OwnLease) {
        self.validated = Some(lease.epoch());
    }

    /// A record just read at `now`: `false` (wait, then read again) when
    /// records were erased less than a ttl ago, or `own_lease_missing`
    /// (the record names this process, whose lease is not there).
    fn confirm(&mut self, lease: &OwnLease, now: Mono, own_lease_missing: bool) -> bool {
        if own_lease_missing || lease.erased_within(now, lease.ttl()) {
            self.validated = None;
            return false;
        }
        true
    }
}

/// Records an owner record in `live`: the owner tuple and its lease.
pub fn observe_owner(live: &mut Liveness, id: &str, view: &OwnerView, now: Mono) {
    live.observe(
        &owner_subject(id),
        &format!("{}/{}", view.instance, view.generation),
        now,
    );
    observe_lease(
        live,
        &view.instance,
        view.lease.as_deref(),
        Some(view.pinged),
        now,
    );
}

/// Records an instance's lease value in `live`, and whether the reader's
/// ping to it is there (`None`: not read).
pub fn observe_lease(
    live: &mut Liveness,
    instance: &str,
    lease: Option<&str>,
    pinged: Option<bool>,
    now: Mono,
) {
    if lease == Some(RELEASED) {
        live.observe_released(instance, now);
    }
    live.observe(&lease_subject(instance), lease.unwrap_or("absent"), now);
    if let Some(pinged) = pinged {
        live.observe(
            &ping_subject(instance),
            if pinged { PINGED } else { "absent" },
            now,
        );
    }
}

/// The subject of this process's ping to `instance`.
pub fn ping_subject(instance: &str) -> String {
    format!("ping:{instance}")
}

const PINGED: &str = "pinged";

/// Whether `instance` is gone, with `record` (its claim on something)
/// unchanged for as long: released (the record unchanged for half a ttl),
/// or this process's ping to it seen
/// unanswered for a whole ttl (the instance's own, if longer). A live
/// instance removes the pings addressed to it at every renewal; only the
/// pinging process makes its ping, and only after it saw none, so a ping
/// seen all along is one ping never answered — a prune can remove it, never
/// fake it.
pub fn gone(live: &Liveness, instance: &str, record: &str, now: Mono) -> bool {
    let window = live.ttl_of(instance);
    let ping = ping_subject(instance);
    // A released instance never acts again, but a record naming it may be
    // one a prune just reverted to it while a live holder has yet to make its
    // claim again (within a renewal period): half a ttl of the same record.
    (live.is_released(instance) && live.unchanged_for(record, now, window / 2))
        || (live.value(&ping) == Some(PINGED)
            && live.unchanged_for(&ping, now, window)
            && live.unchanged_for(record, now, window))
}

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
    /// [`TaskMachine`]'s).
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
            (GuardStage::Read, Reply::Owner(view)) => {
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
