//! The words between a machine and whoever drives it: the [`Call`] it
//! wants next, the [`Reply`] that comes back (with the daemon's records,
//! [`OwnerView`] and [`ExecView`]), what it knows of its process
//! ([`Env`]), and how a task ends ([`Step`], [`Outcome`], [`Silence`]).
//! Plain data; what each answer means is the machines'.

use super::super::liveness::{Liveness, Mono, OwnLease};

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
    /// [`FOLLOW_POLL`](super::FOLLOW_POLL) at most. Reply: [`Reply::Exited`],
    /// [`Reply::StillRunning`], [`Reply::Gone`], [`Reply::Cancelled`].
    Wait {
        /// The container.
        id: String,
        /// Return after [`FOLLOW_POLL`](super::FOLLOW_POLL) even if it still runs.
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
    /// than [`FRESH`](super::super::liveness::FRESH) passed since the machine chose it (the
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
