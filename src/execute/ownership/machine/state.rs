//! The task machine's state, apart from its behaviour: the [`TaskMachine`]
//! itself, its [`Phase`], and the stages of the phases that take several
//! calls (guard, adopt). Types only (and [`Trust`]'s small rules), so that
//! each stage's file (`claim`, `follow`, `guard`, `adopt`, `exec_report`)
//! and the dispatcher in `task` import them from here and never from each
//! other. Performs nothing; decides nothing beyond [`Trust`].

use super::super::liveness::{Mono, OwnLease};
use super::protocol::Outcome;

#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) enum Phase {
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
    pub(super) phase: Phase,
    /// Names this task's subjects in the shared [`Liveness`](super::super::liveness::Liveness).
    pub(super) tag: String,
    /// The last call was a pause before retrying the current phase.
    pub(super) retrying: bool,
    /// The container was started by this process (or found running).
    pub(super) started: bool,
    /// The execution is claimed on the daemon.
    pub(super) dedupe: bool,
    /// This process has the assignment, so it can run the task itself.
    pub(super) dedupe_can_run: bool,
    /// The generation of the execution claim this process won.
    pub(super) held_generation: u64,
    /// How many times the daemon refused the execution claim.
    pub(super) refusals: u32,
    /// The lease epoch when the task began (see [`OwnLease::epoch`](super::super::liveness::OwnLease::epoch)).
    pub(super) epoch: Option<u64>,
    /// When its guards may trust an owner record (see [`Trust`]).
    pub(super) trust: Trust,
    /// The lease epoch in which this process last saw itself hold its
    /// container claim. A claim that vanished is made again only in that
    /// same epoch: after a lapse another process may have claimed the
    /// container once a prune erased the record, so it is given up.
    pub(super) claim_epoch: Option<u64>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum AdoptStage {
    Claim,
    /// Won: waiting out [`FRESH`](super::super::liveness::FRESH) (see [`GuardStage::Fresh`]).
    Fresh,
    Recheck,
    Settle,
    Inspect,
}

/// Taking over an execution (or container) whose holder is gone.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct Takeover {
    pub(super) previous: String,
    pub(super) seen: Option<String>,
    /// Only report it interrupted (the reaper's takeover); a follower's
    /// takeover runs the task.
    pub(super) interrupted_only: bool,
}

/// A fenced action waiting for its guard.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) enum Action {
    Start,
    Stop,
    /// Remove a never-started container, then report `Interrupted`.
    RemoveUnstarted,
    Report(Outcome),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum GuardStage {
    /// Renewing the own lease (it was not safe).
    Renew,
    /// The lease had lapsed: waiting for every live holder to re-create
    /// a claim a prune may have removed, before reading.
    Settle,
    /// Reading the owner record.
    Read,
    /// Re-creating this process's vanished claim.
    Reclaim,
    /// A claim just won: waiting out [`FRESH`](super::super::liveness::FRESH)
    /// before reading (see [`Call::needs_fresh`](super::protocol::Call::needs_fresh)).
    Fresh,
    /// The action's own call.
    Act,
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
pub(super) struct Trust {
    /// The lease epoch of the last completed wait (`None`: wait first).
    validated: Option<u64>,
}

impl Trust {
    /// Trusted as long as the lease does not lapse after `epoch`.
    pub(super) fn in_epoch(epoch: u64) -> Self {
        Self {
            validated: Some(epoch),
        }
    }

    /// Whether the guard must wait before it reads.
    pub(super) fn must_settle(&self, lease: &OwnLease) -> bool {
        self.validated != Some(lease.epoch())
    }

    /// The wait is over.
    pub(super) fn settled(&mut self, lease: &OwnLease) {
        self.validated = Some(lease.epoch());
    }

    /// A record just read at `now`: `false` (wait, then read again) when
    /// records were erased less than a ttl ago, or `own_lease_missing`
    /// (the record names this process, whose lease is not there).
    pub(super) fn confirm(&mut self, lease: &OwnLease, now: Mono, own_lease_missing: bool) -> bool {
        if own_lease_missing || lease.erased_within(now, lease.ttl()) {
            self.validated = None;
            return false;
        }
        true
    }
}
