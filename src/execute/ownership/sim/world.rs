//! One schedule's world: the simulated processes (their machines in
//! flight, claims held, unacknowledged reports), the orchestrator's view of
//! each execution, and the ghost ownership the invariants are checked
//! against. Owns the state and how a process starts; what happens to it is
//! the scheduler's and the faults' business.

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use super::super::liveness::{Liveness, Mono, OwnLease};
use super::super::machine::{Call, Cancel, CleanupMachine, CleanupStep, TaskMachine};
use super::daemon::{Daemon, Vol};
use super::{Failure, MARGIN, Options, RENEW_EVERY, Rng, Stats, TTL};

#[derive(Debug)]
pub(super) struct WaitState {
    pub(super) cid: String,
    pub(super) until: Option<Mono>,
    pub(super) epoch: u64,
}

#[derive(Debug)]
pub(super) struct Actor {
    pub(super) exec: usize,
    pub(super) machine: TaskMachine,
    pub(super) call: Option<Call>,
    pub(super) wake: Mono,
    pub(super) wait: Option<WaitState>,
    pub(super) cancel: Option<Cancel>,
    /// The lease epoch when the machine chose `call`.
    pub(super) decided: u64,
    /// When the machine chose `call`.
    pub(super) chosen_at: Mono,
}

#[derive(Debug)]
pub(super) struct Cleaning {
    pub(super) exec: usize,
    pub(super) machine: CleanupMachine,
    pub(super) next: CleanupStep,
    pub(super) wake: Mono,
    /// The lease epoch when the machine chose `next`.
    pub(super) decided: u64,
    /// When the machine chose `next`.
    pub(super) chosen_at: Mono,
}

#[derive(Debug)]
pub(super) struct Unacked {
    pub(super) exec: usize,
    pub(super) container: Option<(String, u64)>,
    pub(super) ack_at: Mono,
    /// The lease epoch when it was reported.
    pub(super) epoch: u64,
}

#[derive(Debug)]
pub(super) struct Proc {
    pub(super) inst: String,
    pub(super) alive: bool,
    pub(super) frozen_until: Mono,
    pub(super) cut_until: Mono,
    pub(super) own: OwnLease,
    pub(super) live: Liveness,
    pub(super) seq: u64,
    pub(super) renew_at: Mono,
    pub(super) reap_at: Mono,
    pub(super) actors: BTreeMap<usize, Actor>,
    pub(super) cleanups: Vec<Cleaning>,
    /// Claims held: generation and the lease epoch they were last seen held in.
    pub(super) held: BTreeMap<String, (u64, u64)>,
    pub(super) held_execs: BTreeMap<String, (u64, u64)>,
    pub(super) unacked: Vec<Unacked>,
    pub(super) stopping: bool,
    /// This process's monotonic origin (its clock reads now + offset).
    pub(super) offset: Mono,
}

#[derive(Debug, Default)]
pub(super) struct ExecState {
    pub(super) key: String,
    pub(super) sends: Vec<(Mono, usize)>,
    /// Assigned to some process at least once.
    pub(super) assigned: bool,
    /// Claimed on the daemon by some process (so it must be reported: a
    /// process killed before its first call leaves nothing to recover
    /// from; the orchestrator's resend or timeout covers that).
    pub(super) claimed: bool,
    pub(super) delivered: Vec<(String, Mono)>,
    /// Every report made (delivered or not): instance and time.
    pub(super) reports: Vec<(String, Mono)>,
    pub(super) starts: u32,
}

/// One schedule.
pub(super) struct World {
    pub(super) seed: u64,
    pub(super) rng: Rng,
    pub(super) now: Mono,
    pub(super) daemon: Daemon,
    pub(super) procs: Vec<Proc>,
    pub(super) restarts: Vec<(Mono, usize)>,
    pub(super) execs: Vec<ExecState>,
    /// Ghost ownership: who really holds each container / execution.
    pub(super) ghost: BTreeMap<String, (String, u64)>,
    pub(super) ghost_exec: BTreeMap<String, (String, u64)>,
    /// Holds a prune erased the record of while their holder could still
    /// make it again (containers, executions): the hold is void once that
    /// holder can no longer (its lease was no longer safe, or it lapsed)
    /// before it did — it then never acts on it again without reading.
    pub(super) unrecorded: BTreeSet<String>,
    pub(super) unrecorded_exec: BTreeSet<String>,
    /// When each container hold in `ghost` began.
    pub(super) ghost_since: BTreeMap<String, Mono>,
    /// When the call being performed was chosen (the read it rests on).
    pub(super) deciding_at: Mono,
    /// When each instance could not renew its lease (killed, frozen, cut
    /// off, daemon down): from, to.
    pub(super) disturbed: BTreeMap<String, Vec<(Mono, Mono)>>,
    pub(super) incarnations: usize,
    /// When volumes were pruned.
    pub(super) prunes: Vec<Mono>,
    pub(super) trace: Vec<String>,
    pub(super) stats: Stats,
    pub(super) faults: bool,
    pub(super) prune: bool,
}

impl World {
    pub(super) fn new(seed: u64, opts: &Options) -> Self {
        let mut w = World {
            seed,
            rng: Rng::new(seed),
            now: 0,
            daemon: Daemon::default(),
            procs: Vec::new(),
            restarts: Vec::new(),
            execs: Vec::new(),
            ghost: BTreeMap::new(),
            ghost_exec: BTreeMap::new(),
            unrecorded: BTreeSet::new(),
            unrecorded_exec: BTreeSet::new(),
            ghost_since: BTreeMap::new(),
            deciding_at: 0,
            disturbed: BTreeMap::new(),
            incarnations: 0,
            prunes: Vec::new(),
            trace: Vec::new(),
            stats: Stats::default(),
            faults: opts.faults,
            prune: opts.prune,
        };
        for slot in 0..opts.processes {
            let p = w.new_proc(slot);
            w.procs.push(p);
        }
        for e in 0..opts.executions {
            let at = w.rng.below(20_000);
            let slot = w.rng.below(opts.processes as u64) as usize;
            let mut st = ExecState {
                key: format!("e{e}"),
                ..ExecState::default()
            };
            st.sends.push((at, slot));
            // The same execution to a second process.
            if w.rng.chance(300) {
                let other = w.rng.below(opts.processes as u64) as usize;
                st.sends.push((at + w.rng.below(5_000), other));
                *w.stats.faults.entry("duplicate send").or_default() += 1;
            }
            w.execs.push(st);
        }
        w
    }

    pub(super) fn new_proc(&mut self, slot: usize) -> Proc {
        self.incarnations += 1;
        let inst = format!("p{slot}.{}", self.incarnations);
        let offset = self.rng.below(1_000_000_000);
        let mut own = OwnLease::new(Duration::from_millis(TTL), Duration::from_millis(MARGIN));
        let mut p = Proc {
            inst: inst.clone(),
            alive: true,
            frozen_until: 0,
            cut_until: 0,
            own: own.clone(),
            live: Liveness::new(Duration::from_millis(TTL)),
            seq: 1,
            renew_at: self.now + RENEW_EVERY,
            reap_at: self.now,
            actors: BTreeMap::new(),
            cleanups: Vec::new(),
            held: BTreeMap::new(),
            held_execs: BTreeMap::new(),
            unacked: Vec::new(),
            stopping: false,
            offset,
        };
        // The first lease is made at start (a start-up error otherwise).
        self.daemon.create_volume(
            format!("lease-{inst}-1"),
            Vol::Lease {
                inst: inst.clone(),
                seq: 1,
            },
        );
        own.renewed(self.now + offset);
        p.own = own;
        p.live.reached(self.now + offset);
        p
    }

    pub(super) fn log(&mut self, line: String) {
        self.trace.push(format!("t={:>7} {line}", self.now));
    }

    pub(super) fn fail(&self, violation: String) -> Box<Failure> {
        Box::new(Failure {
            seed: self.seed,
            violation,
            trace: self.trace.clone(),
        })
    }

    pub(super) fn reachable(&self, p: usize) -> bool {
        self.now >= self.daemon.down_until && self.now >= self.procs[p].cut_until
    }

    pub(super) fn runnable(&self, p: usize) -> bool {
        self.procs[p].alive && self.now >= self.procs[p].frozen_until
    }

    pub(super) fn disturb(&mut self, inst: &str, until: Mono) {
        let from = self.now;
        self.disturbed
            .entry(inst.to_owned())
            .or_default()
            .push((from, until));
    }
}
