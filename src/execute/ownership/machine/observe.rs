//! What this process has seen of others, recorded in the shared
//! [`Liveness`], and the judgement built on it: whether an instance is
//! gone (its ping unanswered, or its lease released, for long enough).

use super::super::liveness::{Liveness, Mono, lease_subject, owner_subject};
use super::protocol::{Cancel, Env, OwnerView, RELEASED};

/// Whether this process is stopping (a follower then leaves its task).
pub(super) fn leaving(env: &Env<'_>) -> bool {
    matches!(env.cancel, Some(Cancel::Detach | Cancel::Shutdown))
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
