//! Who owns each of a worker id's objects on the Docker daemon, and what this
//! worker process should do about each: a pure function of one snapshot of
//! the daemon (its containers, its volumes, its clock) and of what this
//! process is doing.
//!
//! # Design
//!
//! Several worker processes may share one worker id and one daemon: two
//! replicas, a start-first upgrade, a restart after a crash, possibly on
//! different hosts through `DOCKER_HOST`. The daemon is the only thing they
//! share, so every fact they need lives there as labels, which nobody can
//! change after creation:
//!
//! - **Instances.** Every process has a random *instance* id. Each task
//!   container, and each sidecar helper container, names its instance in a
//!   label, with the task's deadline (daemon clock) and cleanup policy.
//! - **Leases.** A live instance keeps a *lease volume* (`oz-lease-<instance>-<n>`,
//!   no content, no image needed): every `ttl / 3` it creates the next one,
//!   then removes the previous one. An instance is alive while one of its
//!   lease volumes is younger than its `lease-ttl` label, by the daemon's
//!   `CreatedAt` against the daemon's `Date`: no two hosts' clocks are ever
//!   compared. A stopping instance removes its leases, so its successor need
//!   not wait for the expiry. Default expiry: 30 s after the last renewal.
//! - **Claims.** Ownership moves only by a *claim volume*
//!   `oz-claim-<container id>-<generation>` naming the new owner. The effective
//!   owner of a container is its highest-generation claim, else its own
//!   instance label (generation 0). Creating a volume whose name exists
//!   returns the existing one with its first creator's labels, so two
//!   instances racing for generation g+1 both read back one winner. A claim
//!   labelled `reported` says the terminal message was sent (kept containers
//!   stay after they end; this keeps them from being reported again).
//!
//! Only the objects of an instance that is neither this one nor alive are
//! adopted or reaped. In a race (an instance that stalls past its expiry and
//! then carries on; a crash between sending a terminal message and removing
//! the container) a task may be reported twice — at least once, never zero
//! times — but it is never run twice: adoption only ever watches a container
//! that exists, it never creates one.
//!
//! This module must not do I/O: the reaper takes the snapshot and carries
//! out the verdicts.

use std::collections::{BTreeMap, HashMap};

use super::names::{
    LABEL_CONTAINER, LABEL_GENERATION, LABEL_INSTANCE, LABEL_KEEP, LABEL_LEASE_TTL, LABEL_REPORTED,
    LABEL_ROLE, ROLE_CLAIM, ROLE_FILL, ROLE_LEASE,
};
use crate::calendar::parse_rfc3339;
use crate::container_spec::LABEL_TASK_ID;
use crate::docker::{ContainerSummary, VolumeInfo};

/// The owner recorded for objects made before instances existed (or by a
/// worker that does not label them): never alive, so always adoptable.
const NO_INSTANCE: &str = "";

/// When each instance's lease runs out, daemon clock (Unix seconds).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Leases {
    expiries: HashMap<String, u64>,
}

impl Leases {
    /// Reads every lease volume among `volumes`; a lease without a readable
    /// creation time or ttl counts as already expired.
    pub fn from_volumes(volumes: &[VolumeInfo]) -> Self {
        let mut expiries: HashMap<String, u64> = HashMap::new();
        for v in volumes
            .iter()
            .filter(|v| role(&v.labels) == Some(ROLE_LEASE))
        {
            let Some(instance) = v.labels.get(LABEL_INSTANCE) else {
                continue;
            };
            let created = parse_rfc3339(&v.created_at).unwrap_or(0);
            let ttl: u64 = v
                .labels
                .get(LABEL_LEASE_TTL)
                .and_then(|t| t.parse().ok())
                .unwrap_or(0);
            let expiry = created.saturating_add(ttl);
            let e = expiries.entry(instance.clone()).or_insert(expiry);
            *e = (*e).max(expiry);
        }
        Self { expiries }
    }

    /// Whether `instance` held a lease at `now`.
    pub fn is_alive(&self, instance: &str, now: u64) -> bool {
        instance != NO_INSTANCE && self.expiries.get(instance).is_some_and(|&e| e > now)
    }

    /// When `instance`'s lease runs out, if it has one.
    pub fn expiry(&self, instance: &str) -> Option<u64> {
        self.expiries.get(instance).copied()
    }
}

/// Who owns a task container now.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Owner {
    /// The owning instance (empty for containers made before instances).
    pub instance: String,
    /// 0 for the creator; each claim adds one.
    pub generation: u64,
    /// The owner sent the task's terminal message.
    pub reported: bool,
}

/// The effective owner of `container` given every claim volume in `volumes`.
pub fn owner(container: &ContainerSummary, volumes: &[VolumeInfo]) -> Owner {
    let mut best = Owner {
        instance: container
            .labels
            .get(LABEL_INSTANCE)
            .cloned()
            .unwrap_or_default(),
        generation: 0,
        reported: false,
    };
    for claim in claims_of(&container.id, volumes) {
        let generation = claim
            .labels
            .get(LABEL_GENERATION)
            .and_then(|g| g.parse().ok())
            .unwrap_or(0);
        if generation > best.generation {
            best = Owner {
                instance: claim
                    .labels
                    .get(LABEL_INSTANCE)
                    .cloned()
                    .unwrap_or_default(),
                generation,
                reported: claim
                    .labels
                    .get(LABEL_REPORTED)
                    .is_some_and(|r| r == "true"),
            };
        }
    }
    best
}

/// The claim volumes about container `id`.
pub fn claims_of<'a>(
    id: &'a str,
    volumes: &'a [VolumeInfo],
) -> impl Iterator<Item = &'a VolumeInfo> {
    volumes.iter().filter(move |v| {
        role(&v.labels) == Some(ROLE_CLAIM)
            && v.labels.get(LABEL_CONTAINER).is_some_and(|c| c == id)
    })
}

/// Where an orphaned task container is in its life.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OrphanState {
    /// Running (or paused): watch it to its end.
    Running,
    /// Ended while nobody watched: report it from the daemon's record.
    Exited,
    /// Created but never started: the task never began; remove it.
    NeverStarted,
}

/// What to do about one task container.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TaskVerdict {
    /// This process owns it.
    Mine,
    /// A live instance owns it: hands off.
    Theirs,
    /// Ended and reported, kept because cleanup was off: leave it.
    Kept,
    /// Ended and reported, but still here (its owner died before removing it).
    RemoveReported,
    /// Its owner is gone: claim it at `generation`, then act on `state`.
    Orphan {
        /// The generation of the claim to create.
        generation: u64,
        /// What the container is doing.
        state: OrphanState,
        /// The instance that owned it.
        previous: String,
    },
    /// The daemon is removing it already.
    Gone,
}

/// The verdict on one task container.
pub fn task_verdict(
    container: &ContainerSummary,
    owner: &Owner,
    leases: &Leases,
    me: &str,
    now: u64,
) -> TaskVerdict {
    if container.state == "removing" {
        return TaskVerdict::Gone;
    }
    let running = matches!(
        container.state.as_str(),
        "running" | "paused" | "restarting"
    );
    if owner.reported {
        let keep = container
            .labels
            .get(LABEL_KEEP)
            .is_some_and(|k| k == "true");
        return match (keep, running) {
            (_, true) if owner.instance == me || leases.is_alive(&owner.instance, now) => {
                TaskVerdict::Theirs
            }
            (true, false) => TaskVerdict::Kept,
            _ => TaskVerdict::RemoveReported,
        };
    }
    if owner.instance == me {
        return TaskVerdict::Mine;
    }
    if leases.is_alive(&owner.instance, now) {
        return TaskVerdict::Theirs;
    }
    let state = match container.state.as_str() {
        "created" => OrphanState::NeverStarted,
        _ if running => OrphanState::Running,
        _ => OrphanState::Exited,
    };
    TaskVerdict::Orphan {
        generation: owner.generation + 1,
        state,
        previous: owner.instance.clone(),
    }
}

/// Whether a sidecar helper container belongs to a live instance (this one
/// included): helpers of a gone instance are leftovers of an interrupted fill.
pub fn helper_is_live(container: &ContainerSummary, leases: &Leases, me: &str, now: u64) -> bool {
    let instance = container
        .labels
        .get(LABEL_INSTANCE)
        .map_or(NO_INSTANCE, String::as_str);
    instance == me || leases.is_alive(instance, now)
}

/// The lease volumes of other instances that have run out, and claim
/// volumes whose container is gone: both safe to remove.
pub fn stale_records<'a>(
    containers: &[ContainerSummary],
    volumes: &'a [VolumeInfo],
    leases: &Leases,
    me: &str,
    now: u64,
) -> Vec<&'a str> {
    volumes
        .iter()
        .filter(|v| match role(&v.labels) {
            Some(ROLE_LEASE) => v
                .labels
                .get(LABEL_INSTANCE)
                .is_some_and(|i| i != me && !leases.is_alive(i, now)),
            Some(ROLE_CLAIM) => v
                .labels
                .get(LABEL_CONTAINER)
                .is_none_or(|id| !containers.iter().any(|c| &c.id == id)),
            _ => false,
        })
        .map(|v| v.name.as_str())
        .collect()
}

/// The earliest moment after `now` at which some other instance's lease
/// runs out while it still owns a task container here: the reaper looks
/// again then rather than a whole interval later.
pub fn next_expiry(
    containers: &[ContainerSummary],
    volumes: &[VolumeInfo],
    leases: &Leases,
    me: &str,
    now: u64,
) -> Option<u64> {
    containers
        .iter()
        .filter(|c| is_task(c))
        .map(|c| owner(c, volumes))
        .filter(|o| o.instance != me && !o.reported)
        .filter_map(|o| leases.expiry(&o.instance))
        .filter(|&e| e > now)
        .min()
}

/// A task container (not a helper) of this worker id.
pub fn is_task(c: &ContainerSummary) -> bool {
    c.labels.contains_key(LABEL_TASK_ID) && role(&c.labels).is_none()
}

/// A sidecar fill or probe container.
pub fn is_helper(c: &ContainerSummary) -> bool {
    role(&c.labels) == Some(ROLE_FILL)
}

fn role(labels: &BTreeMap<String, String>) -> Option<&str> {
    labels.get(LABEL_ROLE).map(String::as_str)
}

#[cfg(test)]
mod tests;
