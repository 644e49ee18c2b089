//! Who owns each of a worker id's objects on the Docker daemon, and the
//! protocol by which several worker processes share one daemon without
//! ever running a task twice, losing one, or acting on one another holds.
//!
//! # The objects (all labelled with the worker id; the daemon is the only
//! thing the processes share)
//!
//! - **Instance.** Each process has a random instance id.
//! - **Lease** `oz-lease-<instance>-<seq>`: renewed every `ttl / 3` by
//!   creating `seq + 1` and removing `seq`; at each renewal the process also
//!   makes again every claim it holds (a `docker volume prune` removes them
//!   all). A clean stop replaces the lease with a *released* marker: the
//!   process never acts again, so others may take over at once.
//! - **Execution claim** `oz-exec-<key>-<gen>` (`key` hashes worker, task
//!   and execution id): made *before anything is pulled*. Creating a volume
//!   whose name exists returns the first creator's labels, so of two
//!   processes given the same execution exactly one holds it; the other
//!   follows. The task container's name is derived from the key too, so a
//!   second create of the same execution fails on the daemon (409) even if
//!   a prune removed the claim. An empty execution id gets a random key: it
//!   never matches another run. After the task's terminal message was read,
//!   the execution is marked *done* (a tombstone kept for a while, so a
//!   late duplicate of the assignment does not run it again).
//! - **Container claim** `oz-claim-<container>-<gen>`: how a container
//!   moves from a gone process to a live one. The owner is the highest
//!   generation's creator, else the creator named in the container's
//!   labels (generation 0).
//!
//! # Liveness ([`liveness`])
//!
//! Every process *pings* every other process a record names
//! (`oz-ping-<from>-<to>`, made only by the pinging process and only after
//! it saw none); a live process removes the pings addressed to it at every
//! renewal. A process judges another gone only after *its own* ping stayed
//! unanswered, and the record in question (the container's owner, the
//! execution's holder) unchanged, for a whole ttl (the other's own ttl if
//! longer) of its own monotonic clock, while it reached the daemon all
//! along — never by comparing two clocks, never while it was itself cut off
//! (a failed call or a pause restarts every window), never because a volume
//! vanished (a prune can remove a ping, never make one). The last sight must
//! be fresh ([`liveness::FRESH`]) when it acts on the judgement, and a claim
//! made on a judgement that went stale in between is refused
//! ([`machine::Call::needs_fresh`]). A released instance is taken over once
//! the record has stayed the same for half a ttl (a prune may have just
//! reverted it to the released instance while a live holder has yet to make
//! its claim again).
//!
//! # Fencing ([`machine`])
//!
//! A process starts, stops or removes a container, or sends its terminal
//! message, only right after reading its owner record and finding itself
//! the holder, and only while its own lease is *safe*: before `ttl -
//! margin` after the start of its last successful renewal. No observer can
//! have seen that renewal unchanged for a whole ttl by then, so nobody else
//! can have judged it gone. Every such call must also be *fresh*: made
//! within [`liveness::FRESH`] of the read it rests on, or the record is
//! read again ([`machine::Call::needs_fresh`]). A process whose lease
//! lapsed (frozen, cut off) renews, waits a whole ttl (by then a holder
//! whose claim a prune erased has made it again, or its own safe window
//! ended), reads again, and gives up what it lost; a prune during that wait
//! starts it over. A process that wins a claim waits [`liveness::FRESH`]
//! before it reads and acts, so whatever another process decided before the
//! claim existed is over by then. A taker, once its
//! claim is written, reads the previous holder's lease again: unchanged
//! means every later read by that holder sees the claim; changed means the
//! holder came back and may have read before the claim existed, so the
//! taker waits one ttl first. A process that only follows another live
//! process's container never stops, removes or reports it. A process that
//! finds an execution held by another — when it comes to report or create,
//! or when its takeover's judgement went stale or another won the takeover
//! — follows it rather than dropping it: it ends when the holder reports
//! (the execution is done), or takes over when the holder is judged gone,
//! or reports it interrupted when a prune left no record for a whole ttl.
//! A claim the daemon refuses (a full disk) is tried three times; an
//! assigned task then fails plainly, a takeover is left to a later pass.
//!
//! # Invariants (checked by the simulator, [`sim`], after every step)
//!
//! 1. No execution has two running containers, and none is started twice.
//! 2. No container is started after its task was reported.
//! 3. No process starts, stops, removes or reports a container (or an
//!    execution) that another live process holds.
//! 4. At quiescence every claimed task was reported at least once — twice
//!    only when a reporter lost its lease (killed, frozen, cut off) between
//!    the two reports — and nothing is left on the daemon but live
//!    processes' leases and pings.
//!
//! A `docker volume prune` erases the records themselves. Live processes
//! make theirs again within a renewal period (a renewal that finds its
//! previous lease volume gone counts an *erasure*), and a process whose
//! lease lapsed gives up a claim it can no longer prove; 1 (concurrently)
//! and 3 hold under prunes too. 2 and 4 are relaxed to "a second start or
//! report only after a prune erased the first one's record": a finished
//! execution whose tombstone was pruned runs again if Oz sends it again.
//!
//! What the daemon cannot give, the protocol does not claim: a request the
//! daemon holds back longer than the lease margin (a stalled daemon that
//! answers a start long after it was sent) can still land after a
//! takeover; a process frozen for longer than the done-tombstone retention
//! with an assignment in hand reports it interrupted, never runs it.
//!
//! This module and its children do no I/O: the executor (`follow`,
//! `cleanup`, `reaper`) and the simulator drive them. The daemon's records
//! are read into a [`Snapshot`] (`snapshot`); the reaper's decisions are
//! [`observe`] and [`plan`] (`reaper_plan`); the machines are in `machine`,
//! the judging of others in `liveness`.

pub mod liveness;
pub mod machine;
#[doc(hidden)]
pub mod sim;

mod reaper_plan;
mod snapshot;

use std::collections::BTreeMap;

use liveness::{Liveness, Mono, lease_subject};

use super::names::{LABEL_ROLE, ROLE_FILL};
use crate::container_spec::{LABEL_EXECUTION_ID, LABEL_TASK_ID};
use crate::docker::ContainerSummary;

pub use reaper_plan::{Plan, observe, plan};
pub use snapshot::{ExecRecord, Snapshot, TaskRecord};

/// How long a done tombstone is kept, in ttls.
pub const DONE_RETENTION_TTLS: u64 = 10;

/// A label's value; an empty value is no value (the worker writes every
/// label it reads, empty where it has none, so an image cannot set them).
pub fn label<'a>(labels: &'a BTreeMap<String, String>, key: &str) -> Option<&'a str> {
    labels
        .get(key)
        .map(String::as_str)
        .filter(|v| !v.is_empty())
}

/// The subject of an execution's holder record.
pub fn exec_subject(key: &str) -> String {
    format!("exec:{key}")
}

/// The subject of an execution's done tombstone.
fn done_subject(key: &str) -> String {
    format!("done:{key}")
}

/// A task container (not a helper) of this worker id.
pub fn is_task(c: &ContainerSummary) -> bool {
    label(&c.labels, LABEL_TASK_ID).is_some() && label(&c.labels, LABEL_ROLE).is_none()
}

/// A sidecar fill or probe container.
pub fn is_helper(c: &ContainerSummary) -> bool {
    label(&c.labels, LABEL_ROLE) == Some(ROLE_FILL)
}

/// Whether `instance` (the owner of a helper or a private sidecar volume)
/// is this process or not yet judged gone. Objects without an owner are
/// not live.
pub fn instance_is_live(live: &Liveness, instance: Option<&str>, me: &str, now: Mono) -> bool {
    match instance {
        None => false,
        Some(i) if i == me => true,
        Some(i) => {
            !(live.is_released(i) || live.unchanged_for(&lease_subject(i), now, live.ttl_of(i)))
        }
    }
}

/// The task and execution ids of a task container.
pub fn task_ids(c: &ContainerSummary) -> (String, String) {
    (
        label(&c.labels, LABEL_TASK_ID).unwrap_or("").to_owned(),
        label(&c.labels, LABEL_EXECUTION_ID)
            .unwrap_or("")
            .to_owned(),
    )
}

#[cfg(test)]
mod tests;
