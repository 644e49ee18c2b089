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
//! `cleanup`, `reaper`) and the simulator drive them.

pub mod liveness;
pub mod machine;
#[doc(hidden)]
pub mod sim;

use std::collections::{BTreeMap, HashMap};

use liveness::{Liveness, Mono, lease_subject, owner_subject};
use machine::{ExecView, OwnerView, RELEASED, Stage, gone, observe_lease, observe_owner};

use super::names::{
    LABEL_CONTAINER, LABEL_EXEC_KEY, LABEL_GENERATION, LABEL_INSTANCE, LABEL_KEEP, LABEL_LEASE_SEQ,
    LABEL_LEASE_TTL, LABEL_REPORTED, LABEL_ROLE, LABEL_TARGET, ROLE_CLAIM, ROLE_EXEC,
    ROLE_EXEC_DONE, ROLE_FILL, ROLE_LEASE, ROLE_PING, ROLE_RELEASED, ROLE_TASK_SIDECAR,
};
use crate::container_spec::{LABEL_EXECUTION_ID, LABEL_TASK_ID, LABEL_WORKER_ID};
use crate::docker::{ContainerSummary, VolumeInfo};

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

/// A task container as the reaper sees it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TaskRecord {
    /// Container id.
    pub id: String,
    /// Its execution key.
    pub key: String,
    /// Its owner record.
    pub owner: OwnerView,
    /// Cleanup was off when it was made.
    pub keep: bool,
}

/// An execution's claims as the reaper sees them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ExecRecord {
    /// The execution key.
    pub key: String,
    /// The highest claim: holder and generation (`None`: only a tombstone).
    pub holder: Option<(String, u64)>,
    /// The holder's lease.
    pub holder_lease: Option<String>,
    /// Marked done.
    pub done: bool,
    /// Every volume of it (claims and tombstone).
    pub volumes: Vec<String>,
    /// The task id its claims name.
    pub task_id: String,
    /// The execution id its claims name.
    pub execution_id: String,
}

/// One look at the daemon's records of a worker id.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Snapshot {
    /// Task containers.
    pub tasks: Vec<TaskRecord>,
    /// Executions.
    pub execs: Vec<ExecRecord>,
    /// Each instance's lease value and its lease volumes.
    pub leases: BTreeMap<String, (String, Vec<String>)>,
    /// Claim volumes: name and the container they are about.
    pub claims: Vec<(String, String)>,
    /// Each instance's lease ttl as its lease says, milliseconds.
    pub lease_ttls: BTreeMap<String, Mono>,
    /// Pings: from, to, volume name.
    pub pings: Vec<(String, String, String)>,
    /// Instances named by helper containers and private sidecar volumes.
    pub others: Vec<String>,
}

impl Snapshot {
    /// The execution record of `key`, as `me` sees it (its pings).
    pub fn exec_view(&self, key: &str, me: &str) -> ExecView {
        let exec = self.execs.iter().find(|e| e.key == key);
        let container = self
            .tasks
            .iter()
            .filter(|t| t.key == key)
            .max_by_key(|t| t.owner.stage == Stage::Running)
            .map(|t| (t.id.clone(), self.seen_by(t.owner.clone(), me)));
        let holder = exec.and_then(|e| e.holder.clone());
        ExecView {
            holder_pinged: holder.as_ref().is_some_and(|(h, _)| self.pinged(me, h)),
            holder,
            holder_lease: exec.and_then(|e| e.holder_lease.clone()),
            done: exec.is_some_and(|e| e.done),
            container,
        }
    }

    /// The owner record of container `id`, as `me` sees it.
    pub fn owner_view(&self, id: &str, me: &str) -> Option<OwnerView> {
        self.tasks
            .iter()
            .find(|t| t.id == id)
            .map(|t| self.seen_by(t.owner.clone(), me))
    }

    fn seen_by(&self, mut view: OwnerView, me: &str) -> OwnerView {
        view.pinged = self.pinged(me, &view.instance);
        view
    }

    /// Whether `from`'s ping to `to` is there.
    pub fn pinged(&self, from: &str, to: &str) -> bool {
        self.pings.iter().any(|(f, t, _)| f == from && t == to)
    }

    /// An instance's lease value (`None`: none seen).
    pub fn lease(&self, instance: &str) -> Option<String> {
        self.leases.get(instance).map(|(v, _)| v.clone())
    }

    /// Builds a snapshot from the daemon's lists of one worker id's
    /// containers and volumes. Objects with unreadable labels are skipped.
    pub fn from_daemon(containers: &[ContainerSummary], volumes: &[VolumeInfo]) -> Self {
        let mut snap = Snapshot::default();
        let mut best_lease: HashMap<String, u64> = HashMap::new();
        for v in volumes {
            let Some(instance) = label(&v.labels, LABEL_INSTANCE) else {
                continue;
            };
            match label(&v.labels, LABEL_ROLE) {
                Some(ROLE_LEASE) => {
                    let Some(seq) = label(&v.labels, LABEL_LEASE_SEQ).and_then(|s| s.parse().ok())
                    else {
                        continue;
                    };
                    if let Some(ttl) = label(&v.labels, LABEL_LEASE_TTL)
                        .and_then(|t| t.parse::<u64>().ok())
                        .and_then(|t| t.checked_mul(1000))
                    {
                        snap.lease_ttls.insert(instance.to_owned(), ttl);
                    }
                    let e = snap
                        .leases
                        .entry(instance.to_owned())
                        .or_insert_with(|| (String::new(), Vec::new()));
                    e.1.push(v.name.clone());
                    let best = best_lease.entry(instance.to_owned()).or_insert(0);
                    if e.0 != RELEASED && seq >= *best {
                        *best = seq;
                        e.0 = seq.to_string();
                    }
                }
                Some(ROLE_PING) => {
                    if let Some(to) = label(&v.labels, LABEL_TARGET) {
                        snap.pings
                            .push((instance.to_owned(), to.to_owned(), v.name.clone()));
                    }
                }
                Some(ROLE_RELEASED) => {
                    let e = snap
                        .leases
                        .entry(instance.to_owned())
                        .or_insert_with(|| (String::new(), Vec::new()));
                    e.1.push(v.name.clone());
                    e.0 = RELEASED.to_owned();
                }
                _ => {}
            }
        }
        for instance in containers
            .iter()
            .filter(|c| is_helper(c))
            .filter_map(|c| label(&c.labels, LABEL_INSTANCE))
            .chain(
                volumes
                    .iter()
                    .filter(|v| label(&v.labels, LABEL_ROLE) == Some(ROLE_TASK_SIDECAR))
                    .filter_map(|v| label(&v.labels, LABEL_INSTANCE)),
            )
        {
            if !snap.others.iter().any(|o| o == instance) {
                snap.others.push(instance.to_owned());
            }
        }
        // Claims and executions.
        let mut claims: HashMap<&str, Vec<(u64, &str, bool)>> = HashMap::new();
        let mut execs: BTreeMap<String, ExecRecord> = BTreeMap::new();
        for v in volumes {
            let role = label(&v.labels, LABEL_ROLE);
            let instance = label(&v.labels, LABEL_INSTANCE).unwrap_or("");
            let generation: Option<u64> =
                label(&v.labels, LABEL_GENERATION).and_then(|g| g.parse().ok());
            match role {
                Some(ROLE_CLAIM) => {
                    let Some(container) = label(&v.labels, LABEL_CONTAINER) else {
                        continue;
                    };
                    snap.claims.push((v.name.clone(), container.to_owned()));
                    if let Some(g) = generation {
                        let reported = label(&v.labels, LABEL_REPORTED) == Some("true");
                        claims
                            .entry(container)
                            .or_default()
                            .push((g, instance, reported));
                    }
                }
                Some(ROLE_EXEC) | Some(ROLE_EXEC_DONE) => {
                    let Some(key) = label(&v.labels, LABEL_EXEC_KEY) else {
                        continue;
                    };
                    let e = execs.entry(key.to_owned()).or_insert_with(|| ExecRecord {
                        key: key.to_owned(),
                        holder: None,
                        holder_lease: None,
                        done: false,
                        volumes: Vec::new(),
                        task_id: label(&v.labels, LABEL_TASK_ID).unwrap_or("").to_owned(),
                        execution_id: label(&v.labels, LABEL_EXECUTION_ID)
                            .unwrap_or("")
                            .to_owned(),
                    });
                    e.volumes.push(v.name.clone());
                    if role == Some(ROLE_EXEC_DONE) {
                        e.done = true;
                    } else if let Some(g) = generation
                        && e.holder.as_ref().is_none_or(|(_, best)| g > *best)
                    {
                        e.holder = Some((instance.to_owned(), g));
                    }
                }
                _ => {}
            }
        }
        for e in execs.values_mut() {
            e.holder_lease = e.holder.as_ref().and_then(|(h, _)| snap.lease(h));
        }
        snap.execs = execs.into_values().collect();
        let done: Vec<&str> = snap
            .execs
            .iter()
            .filter(|e| e.done)
            .map(|e| e.key.as_str())
            .collect();
        for c in containers.iter().filter(|c| is_task(c)) {
            // A container of an earlier version has no key: its execution's
            // own, or (no execution id) one of its own.
            let key = match label(&c.labels, LABEL_EXEC_KEY) {
                Some(key) => key.to_owned(),
                None => match label(&c.labels, LABEL_EXECUTION_ID) {
                    Some(e) => super::names::exec_key(
                        label(&c.labels, LABEL_WORKER_ID).unwrap_or(""),
                        label(&c.labels, LABEL_TASK_ID).unwrap_or(""),
                        e,
                    ),
                    None => format!("legacy-{}", c.id),
                },
            };
            let key = key.as_str();
            let mut instance = label(&c.labels, LABEL_INSTANCE).unwrap_or("").to_owned();
            let mut generation = 0;
            let mut reported = false;
            for (g, i, r) in claims.get(c.id.as_str()).into_iter().flatten() {
                reported |= *r;
                if *g > generation {
                    generation = *g;
                    instance = (*i).to_owned();
                }
            }
            reported |= done.contains(&key);
            let stage = match c.state.as_str() {
                "created" => Stage::Created,
                "running" | "paused" | "restarting" | "removing" => Stage::Running,
                // The summary has no exit code; readers that need it inspect.
                _ => Stage::Exited(0),
            };
            let lease = snap.lease(&instance);
            snap.tasks.push(TaskRecord {
                id: c.id.clone(),
                key: key.to_owned(),
                owner: OwnerView {
                    instance,
                    generation,
                    reported,
                    stage,
                    lease,
                    pinged: false,
                },
                keep: label(&c.labels, LABEL_KEEP) == Some("true"),
            });
        }
        snap
    }
}

/// What the reaper should do, from one snapshot.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Plan {
    /// Take over container `id` from `previous` (gone) at `generation`.
    Adopt {
        /// The container.
        id: String,
        /// Its execution key.
        key: String,
        /// The claim to create.
        generation: u64,
        /// The owner judged gone.
        previous: String,
        /// Its lease when judged.
        seen: Option<String>,
    },
    /// An execution whose holder is gone without a container: report it
    /// interrupted after claiming it at `generation`.
    Abandoned {
        /// The execution key.
        key: String,
        /// The claim to create.
        generation: u64,
        /// The holder judged gone.
        previous: String,
        /// Its lease when judged.
        seen: Option<String>,
    },
    /// Remove this volume (a record nobody needs any more).
    RemoveVolume(String),
    /// Ping this instance (make `oz-ping-<me>-<it>`): it is named by a
    /// record here and no ping of this process to it is there.
    Ping(String),
}

/// Feeds one snapshot into `live` (taken at `now`, after a successful list).
pub fn observe(snap: &Snapshot, live: &mut Liveness, me: &str, now: Mono) {
    live.reached(now);
    for (instance, ttl) in &snap.lease_ttls {
        live.observe_ttl(instance, *ttl);
    }
    for (instance, (value, _)) in &snap.leases {
        observe_lease(
            live,
            instance,
            Some(value),
            Some(snap.pinged(me, instance)),
            now,
        );
    }
    for t in &snap.tasks {
        observe_owner(live, &t.id, &snap.seen_by(t.owner.clone(), me), now);
    }
    for instance in snap.others.iter().filter(|i| !snap.leases.contains_key(*i)) {
        observe_lease(live, instance, None, Some(snap.pinged(me, instance)), now);
    }
    for e in &snap.execs {
        let value = match &e.holder {
            Some((h, g)) => format!("{h}/{g}"),
            None => "absent".to_owned(),
        };
        live.observe(&exec_subject(&e.key), &value, now);
        live.observe(
            &done_subject(&e.key),
            if e.done { "done" } else { "open" },
            now,
        );
        if let Some((h, _)) = &e.holder {
            observe_lease(
                live,
                h,
                e.holder_lease.as_deref(),
                Some(snap.pinged(me, h)),
                now,
            );
        }
    }
}

/// The subject of an execution's holder record.
pub fn exec_subject(key: &str) -> String {
    format!("exec:{key}")
}

fn done_subject(key: &str) -> String {
    format!("done:{key}")
}

/// The reaper's decisions about tasks and records. `busy(key)`: this
/// process runs, follows or finishes that execution (hands off: its own
/// machine decides). Call [`observe`] with the same snapshot first.
pub fn plan(
    snap: &Snapshot,
    live: &Liveness,
    me: &str,
    now: Mono,
    ttl: Mono,
    busy: &dyn Fn(&str) -> bool,
) -> Vec<Plan> {
    let mut plans = Vec::new();
    for t in &snap.tasks {
        let o = &t.owner;
        if busy(&t.key) || (o.reported && t.keep) {
            continue;
        }
        // A container the record says is this process's, that no task of
        // it watches (it gave it up, and a prune handed it back): it is
        // taken up again like any orphan, so nothing claimed is orphaned.
        if o.instance == me || gone(live, &o.instance, &owner_subject(&t.id), now) {
            plans.push(Plan::Adopt {
                id: t.id.clone(),
                key: t.key.clone(),
                generation: o.generation + 1,
                previous: o.instance.clone(),
                seen: o.lease.clone(),
            });
        }
    }
    for e in &snap.execs {
        let has_container = snap.tasks.iter().any(|t| t.key == e.key);
        if e.done {
            // The tombstone and every claim go once it was kept long enough.
            if !has_container
                && !busy(&e.key)
                && live.unchanged_for(&done_subject(&e.key), now, ttl * DONE_RETENTION_TTLS)
            {
                plans.extend(e.volumes.iter().cloned().map(Plan::RemoveVolume));
            }
            continue;
        }
        let Some((holder, generation)) = &e.holder else {
            continue;
        };
        if has_container || holder == me || busy(&e.key) {
            continue;
        }
        if gone(live, holder, &exec_subject(&e.key), now) {
            plans.push(Plan::Abandoned {
                key: e.key.clone(),
                generation: generation + 1,
                previous: holder.clone(),
                seen: e.holder_lease.clone(),
            });
        }
    }
    // Leases of gone instances; released markers once nothing names them.
    for (instance, (value, names)) in &snap.leases {
        if instance == me {
            continue;
        }
        let named = snap.tasks.iter().any(|t| &t.owner.instance == instance)
            || snap
                .execs
                .iter()
                .any(|e| e.holder.as_ref().is_some_and(|(h, _)| h == instance) && !e.done);
        let remove = if value == RELEASED {
            !named
        } else {
            gone(live, instance, &lease_subject(instance), now) && !named
        };
        if remove {
            plans.extend(names.iter().cloned().map(Plan::RemoveVolume));
        }
    }
    // Claims of containers that are gone.
    for (name, container) in &snap.claims {
        if !snap.tasks.iter().any(|t| &t.id == container) {
            plans.push(Plan::RemoveVolume(name.clone()));
        }
    }
    // Every other instance a record names is pinged; pings to an instance
    // nothing names any more (and without a lease) go.
    let mut named: Vec<&str> = snap
        .tasks
        .iter()
        .map(|t| t.owner.instance.as_str())
        .chain(
            snap.execs
                .iter()
                .filter(|e| !e.done)
                .filter_map(|e| e.holder.as_ref().map(|(h, _)| h.as_str())),
        )
        .chain(snap.leases.keys().map(String::as_str))
        .chain(snap.others.iter().map(String::as_str))
        .filter(|i| *i != me && !i.is_empty())
        .collect();
    named.sort_unstable();
    named.dedup();
    for instance in &named {
        let released = snap.lease(instance).as_deref() == Some(RELEASED);
        if !released && !snap.pinged(me, instance) {
            plans.push(Plan::Ping((*instance).to_owned()));
        }
    }
    for (_, to, name) in &snap.pings {
        let released = snap.lease(to).as_deref() == Some(RELEASED);
        if released || !named.contains(&to.as_str()) && to != me {
            plans.push(Plan::RemoveVolume(name.clone()));
        }
    }
    plans
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
