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
//!
//! | file | owns |
//! |---|---|
//! | `protocol` | the calls, replies, views and ends shared with the executor |
//! | `task` | [`TaskMachine`]: its phases, the reply dispatch, each phase's call |
//! | `claim` | claiming the execution, preparing and creating the container |
//! | `follow` | reading the record of an execution another process holds |
//! | `guard` | the guard before a fenced action, and the action |
//! | `adopt` | taking over a container whose owner is gone |
//! | `exec_report` | reporting a task that has no container |
//! | `observe` | recording what is seen of others; whether one is gone |
//! | `cleanup` | [`CleanupMachine`], after the terminal message was read |

mod adopt;
mod claim;
mod cleanup;
mod exec_report;
mod follow;
mod guard;
mod observe;
mod protocol;
mod state;
mod task;

use super::liveness::Mono;

pub use cleanup::{CleanupMachine, CleanupStep};
pub use observe::{gone, observe_lease, observe_owner, ping_subject};
pub use protocol::{
    Call, Cancel, Env, ExecView, Outcome, OwnerView, RELEASED, Reply, Silence, Stage, Step,
};
pub use state::settle_after_lapse;
pub use state::{Origin, TaskMachine};

/// How often a follower looks at its owner again.
pub const FOLLOW_POLL: Mono = 2_000;
/// How long to wait before asking an unreachable daemon again.
pub const RETRY: Mono = 1_000;
