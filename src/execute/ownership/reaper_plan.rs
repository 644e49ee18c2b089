//! The reaper's plan: one snapshot fed into the liveness judge
//! ([`observe`]), then what the reaper should do about it ([`plan`]): adopt
//! orphaned containers, report abandoned executions, remove records nobody
//! needs, ping the instances records name. Pure: the reaper performs it.

use super::liveness::{Liveness, Mono, lease_subject, owner_subject};
use super::machine::{RELEASED, gone, observe_lease, observe_owner};
use super::snapshot::Snapshot;
use super::{DONE_RETENTION_TTLS, done_subject, exec_subject};

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
    plan_adoptions(&mut plans, snap, live, me, now, busy);
    plan_executions(&mut plans, snap, live, me, now, ttl, busy);
    plan_leases(&mut plans, snap, live, me, now);
    // Claims of containers that are gone.
    for (name, container) in &snap.claims {
        if !snap.tasks.iter().any(|t| &t.id == container) {
            plans.push(Plan::RemoveVolume(name.clone()));
        }
    }
    plan_pings(&mut plans, snap, me);
    plans
}

/// Task containers whose owner is gone (or is this process, which does not
/// watch them): adopted.
fn plan_adoptions(
    plans: &mut Vec<Plan>,
    snap: &Snapshot,
    live: &Liveness,
    me: &str,
    now: Mono,
    busy: &dyn Fn(&str) -> bool,
) {
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
}

/// Executions: a done one's volumes go once kept long enough; one whose
/// holder is gone without a container is abandoned.
fn plan_executions(
    plans: &mut Vec<Plan>,
    snap: &Snapshot,
    live: &Liveness,
    me: &str,
    now: Mono,
    ttl: Mono,
    busy: &dyn Fn(&str) -> bool,
) {
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
}

/// Leases of gone instances; released markers once nothing names them.
fn plan_leases(plans: &mut Vec<Plan>, snap: &Snapshot, live: &Liveness, me: &str, now: Mono) {
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
}

/// Every other instance a record names is pinged; pings to an instance
/// nothing names any more (and without a lease) go.
fn plan_pings(plans: &mut Vec<Plan>, snap: &Snapshot, me: &str) {
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
}
