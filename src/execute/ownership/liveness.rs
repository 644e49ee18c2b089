//! Liveness without wall clocks: how this process decides that another
//! worker process is gone, and how it knows its own lease still protects
//! what it holds. Pure: every moment is a [`Mono`] reading of this
//! process's own monotonic clock, passed in by the caller.
//!
//! Owns [`Liveness`] (the observer's windows) and [`OwnLease`] (this
//! process's safe window); it must not read the daemon or any clock itself.
//!
//! The rules (why they hold is in [`super`]'s module doc):
//! - A *subject* (an instance's lease, a container's owner record) is dead
//!   only after this process has seen it unchanged for a whole `ttl` of its
//!   own clock, counted only while this process itself reached the daemon.
//!   Any change — a renewal, a vanished volume, a new claim — restarts the
//!   window. A failed call, or a gap longer than [`Liveness::max_gap`]
//!   between successful ones, means this process may have been cut off or
//!   frozen: every window starts afresh.
//! - This process may act on what it holds only while `now` is before
//!   `ttl - margin` after the *start* of its last successful renewal: no
//!   observer can have seen that renewal's lease for a whole `ttl` by then.

use std::collections::HashMap;
use std::time::Duration;

/// A reading of this process's monotonic clock, in milliseconds since an
/// arbitrary origin (the simulator's virtual clock, or process start).
pub type Mono = u64;

/// Milliseconds of `d`, saturating.
pub fn millis(d: Duration) -> Mono {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX)
}

/// How recent the last sight of a subject must be to judge it: a judgement
/// acts on what the daemon holds now, not on what it held before this
/// process paused (a claim made on a stale judgement could race an owner
/// that came back meanwhile).
pub const FRESH: Mono = 2_000;

/// What one process has seen of others' leases and records.
#[derive(Debug, Clone)]
pub struct Liveness {
    ttl: Mono,
    /// Since when this process has reached the daemon without a break
    /// (None: the last call failed).
    reachable_since: Option<Mono>,
    /// The last successful call.
    last_ok: Option<Mono>,
    /// Each subject's last seen value, when it was first seen so, and
    /// when it was last seen at all.
    seen: HashMap<String, (String, Mono, Mono)>,
    /// Instances that said they will never act again.
    released: HashMap<String, Mono>,
    /// Each instance's own lease ttl, when longer than this process's:
    /// an instance is judged with the longer of the two.
    ttls: HashMap<String, Mono>,
}

impl Liveness {
    /// An observer judging with `ttl`.
    pub fn new(ttl: Duration) -> Self {
        Self {
            ttl: millis(ttl),
            reachable_since: None,
            last_ok: None,
            seen: HashMap::new(),
            released: HashMap::new(),
            ttls: HashMap::new(),
        }
    }

    /// `instance` renews its lease on a ttl of `ttl` milliseconds.
    pub fn observe_ttl(&mut self, instance: &str, ttl: Mono) {
        if ttl > self.ttl {
            self.ttls.insert(instance.to_owned(), ttl);
        }
    }

    /// The window after which `instance` may be judged: the longer of
    /// this process's ttl and the instance's own.
    pub fn ttl_of(&self, instance: &str) -> Mono {
        self.ttls.get(instance).copied().unwrap_or(self.ttl)
    }

    /// The longest pause between two successful calls that still counts
    /// as "reached the daemon all along": half the ttl (the lease is
    /// renewed every third of it, so a working process calls more often).
    pub fn max_gap(&self) -> Mono {
        self.ttl / 2
    }

    /// A call to the daemon succeeded at `now`.
    pub fn reached(&mut self, now: Mono) {
        let continuous = self
            .last_ok
            .is_some_and(|t| now.saturating_sub(t) <= self.max_gap());
        if !continuous || self.reachable_since.is_none() {
            self.reachable_since = Some(now);
            self.seen.clear();
        }
        self.last_ok = Some(now.max(self.last_ok.unwrap_or(0)));
    }

    /// A call to the daemon failed at `now` without an answer: whatever
    /// this process saw before no longer counts.
    pub fn cut_off(&mut self) {
        self.reachable_since = None;
        self.seen.clear();
    }

    /// `subject` had `value` in a snapshot taken at `now` (after
    /// [`Liveness::reached`] for that snapshot's call).
    pub fn observe(&mut self, subject: &str, value: &str, now: Mono) {
        match self.seen.get_mut(subject) {
            Some((v, _, last)) if v == value => *last = now.max(*last),
            Some(entry) => *entry = (value.to_owned(), now, now),
            None => {
                self.seen
                    .insert(subject.to_owned(), (value.to_owned(), now, now));
            }
        }
    }

    /// `instance` released its lease on a clean stop: it will never act again.
    pub fn observe_released(&mut self, instance: &str, now: Mono) {
        self.released.entry(instance.to_owned()).or_insert(now);
    }

    /// Whether `instance` was seen to release its lease.
    pub fn is_released(&self, instance: &str) -> bool {
        self.released.contains_key(instance)
    }

    /// Whether `subject` has been seen unchanged for a whole ttl while
    /// this process reached the daemon all along, up to `now`.
    pub fn unchanged_for_ttl(&self, subject: &str, now: Mono) -> bool {
        self.unchanged_for(subject, now, self.ttl)
    }

    /// Whether `subject` has been seen unchanged for `window` while this
    /// process reached the daemon all along, up to `now`.
    pub fn unchanged_for(&self, subject: &str, now: Mono, window: Mono) -> bool {
        let (Some(since), Some(last)) = (self.reachable_since, self.last_ok) else {
            return false;
        };
        if now.saturating_sub(last) > self.max_gap() {
            return false;
        }
        self.seen.get(subject).is_some_and(|(_, first, seen)| {
            now.saturating_sub(*seen) <= FRESH && now.saturating_sub((*first).max(since)) >= window
        })
    }

    /// The value last seen for `subject`.
    pub fn value(&self, subject: &str) -> Option<&str> {
        self.seen.get(subject).map(|(v, _, _)| v.as_str())
    }

    /// How long until `subject` could be judged unchanged for a ttl, if it
    /// stays as it is and this process keeps reaching the daemon.
    pub fn until_judged(&self, subject: &str, now: Mono) -> Option<Mono> {
        let since = self.reachable_since?;
        let (_, first, _) = self.seen.get(subject)?;
        Some(((*first).max(since) + self.ttl).saturating_sub(now))
    }

    /// Forgets subjects not seen in the latest full snapshot.
    pub fn retain(&mut self, keep: impl Fn(&str) -> bool) {
        self.seen.retain(|k, _| keep(k));
        self.released.retain(|k, _| keep(&lease_subject(k)));
    }
}

/// The subject of `instance`'s lease.
pub fn lease_subject(instance: &str) -> String {
    format!("lease:{instance}")
}

/// The subject of container `id`'s owner record.
pub fn owner_subject(id: &str) -> String {
    format!("owner:{id}")
}

/// This process's own lease, as the process itself sees it.
#[derive(Debug, Clone)]
pub struct OwnLease {
    ttl: Mono,
    margin: Mono,
    /// When the last successful renewal was *started*.
    renewed_from: Option<Mono>,
    /// How many times the lease was renewed after it had lapsed: what a
    /// task checked before a lapse must be checked again after it.
    epoch: u64,
    /// When a renewal last found this process's previous lease volume gone:
    /// a `docker volume prune` (or a hand) erased records before then.
    erased_at: Option<Mono>,
}

impl OwnLease {
    /// A lease of `ttl`, acted on only up to `margin` before it could run out.
    pub fn new(ttl: Duration, margin: Duration) -> Self {
        Self {
            ttl: millis(ttl),
            margin: millis(margin),
            renewed_from: None,
            epoch: 0,
            erased_at: None,
        }
    }

    /// A renewal begun at `started` succeeded.
    pub fn renewed(&mut self, started: Mono) {
        if !self.safe(started) {
            self.epoch += 1;
        }
        self.renewed_from = Some(started.max(self.renewed_from.unwrap_or(0)));
    }

    /// A renewal found the previous lease volume gone at `now`: the
    /// daemon's records were erased before then.
    pub fn erased(&mut self, now: Mono) {
        self.erased_at = Some(self.erased_at.map_or(now, |t| t.max(now)));
    }

    /// Whether records were found erased less than `window` before `now`.
    pub fn erased_within(&self, now: Mono, window: Mono) -> bool {
        self.erased_at
            .is_some_and(|t| now.saturating_sub(t) < window)
    }

    /// The number of lapses so far (see [`OwnLease::renewed`]).
    pub fn epoch(&self) -> u64 {
        self.epoch
    }

    /// Whether this process may act at `now` on what it holds.
    pub fn safe(&self, now: Mono) -> bool {
        self.renewed_from
            .is_some_and(|t| now < t.saturating_add(self.ttl.saturating_sub(self.margin)))
    }

    /// When the safe window ends.
    pub fn safe_until(&self) -> Option<Mono> {
        self.renewed_from
            .map(|t| t.saturating_add(self.ttl.saturating_sub(self.margin)))
    }

    /// The lease ttl, milliseconds.
    pub fn ttl(&self) -> Mono {
        self.ttl
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const TTL: Duration = Duration::from_secs(30);

    #[test]
    fn a_subject_is_dead_only_after_a_whole_ttl_unchanged_while_reachable() {
        let mut l = Liveness::new(TTL);
        for t in (0..=30_000).step_by(5_000) {
            l.reached(t);
            l.observe("lease:a", "3", t);
        }
        assert!(l.unchanged_for_ttl("lease:a", 30_000));
        assert!(!l.unchanged_for_ttl("lease:a", 29_999));
        // A judgement needs a recent sight of the subject.
        l.reached(32_001);
        assert!(!l.unchanged_for_ttl("lease:a", 32_001));
        // A renewal restarts the window.
        l.reached(35_000);
        l.observe("lease:a", "4", 35_000);
        assert!(!l.unchanged_for_ttl("lease:a", 35_000));
        assert_eq!(l.until_judged("lease:a", 35_000), Some(30_000));
    }

    #[test]
    fn being_cut_off_or_pausing_starts_every_window_afresh() {
        let mut l = Liveness::new(TTL);
        l.reached(0);
        l.observe("lease:a", "1", 0);
        l.reached(10_000);
        l.cut_off();
        l.reached(40_000);
        l.observe("lease:a", "1", 40_000);
        assert!(!l.unchanged_for_ttl("lease:a", 40_000));
        // A gap longer than max_gap counts as a cut too.
        l.reached(55_000);
        l.reached(80_000);
        l.observe("lease:a", "1", 80_000);
        assert!(!l.unchanged_for_ttl("lease:a", 80_000));
        // No call for a while: nothing is judged at all.
        assert!(!l.unchanged_for_ttl("lease:a", 200_000));
    }

    #[test]
    fn the_own_lease_is_safe_until_ttl_less_margin_after_the_renewal_began() {
        let mut own = OwnLease::new(TTL, Duration::from_secs(5));
        assert!(!own.safe(0));
        own.renewed(1_000);
        assert!(own.safe(25_999));
        assert!(!own.safe(26_000));
        own.renewed(500); // an older renewal finishing late changes nothing
        assert_eq!(own.safe_until(), Some(26_000));
    }
}
