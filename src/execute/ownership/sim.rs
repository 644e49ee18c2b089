//! A deterministic simulator of the ownership protocol: N worker processes'
//! real state machines ([`super::machine`], [`super::plan`]) against a
//! simulated daemon, under a seeded random scheduler that injects faults.
//! Every step is checked against the invariants of [`super`]'s module doc;
//! a failure carries its seed and the trace that led to it.
//!
//! Owns the simulated daemon, processes and orchestrator; it must not
//! decide anything the protocol decides (it only performs calls and
//! schedules). Used by `tests/ownership_sim.rs` and the
//! `ownership_sim` example (`--schedules N` for long runs).
//!
//! Faults: SIGKILL at any step (a successor starts later), a freeze past the
//! ttl, a process cut off from the daemon, the daemon down (restarting with
//! or without live-restore), `docker volume prune`, an execution sent to two
//! processes, resends after a process is gone, a clean stop in detach mode,
//! cancellations. Clocks: each process has its own monotonic origin; the
//! protocol reads no wall clock, so wall-clock steps cannot reach it.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt::Write as _;
use std::time::Duration;

use super::liveness::{FRESH, Liveness, Mono, OwnLease};
use super::machine::{
    Call, Cancel, CleanupMachine, CleanupStep, Env, ExecView, OwnerView, RELEASED, Reply, Stage,
    Step, TaskMachine,
};
use super::{ExecRecord, Plan, Snapshot, TaskRecord, observe, plan};

/// The lease ttl the simulated processes use.
pub const TTL: Mono = 30_000;
const MARGIN: Mono = 5_000;
const RENEW_EVERY: Mono = TTL / 3;

/// What a run is made of.
#[derive(Debug, Clone)]
pub struct Options {
    /// Worker processes sharing the daemon (2–5).
    pub processes: usize,
    /// Executions the orchestrator sends.
    pub executions: usize,
    /// Inject faults.
    pub faults: bool,
    /// Steps with faults before the run settles.
    pub fault_steps: usize,
    /// Include `docker volume prune` among the faults.
    pub prune: bool,
}

impl Default for Options {
    fn default() -> Self {
        Self {
            processes: 3,
            executions: 4,
            faults: true,
            fault_steps: 400,
            prune: true,
        }
    }
}

/// What runs counted.
#[derive(Debug, Clone, Default)]
pub struct Stats {
    /// Schedules run.
    pub schedules: u64,
    /// Steps taken.
    pub steps: u64,
    /// Faults injected, by kind.
    pub faults: BTreeMap<&'static str, u64>,
    /// Invariant checks made.
    pub checks: u64,
    /// Terminal messages delivered.
    pub reports: u64,
    /// Executions reported twice (allowed only after a disturbance).
    pub duplicates: u64,
    /// Starts after a report, or second starts, that followed a prune
    /// (the daemon's record of the first was erased).
    pub after_prune: u64,
}

impl Stats {
    /// Adds `other`'s counts.
    pub fn add(&mut self, other: &Stats) {
        self.schedules += other.schedules;
        self.steps += other.steps;
        self.checks += other.checks;
        self.reports += other.reports;
        self.duplicates += other.duplicates;
        self.after_prune += other.after_prune;
        for (k, v) in &other.faults {
            *self.faults.entry(k).or_default() += v;
        }
    }
}

/// A broken invariant.
#[derive(Debug, Clone)]
pub struct Failure {
    /// The schedule's seed.
    pub seed: u64,
    /// What broke.
    pub violation: String,
    /// The steps that led there.
    pub trace: Vec<String>,
}

impl std::fmt::Display for Failure {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        writeln!(f, "seed {:#x}: {}", self.seed, self.violation)?;
        let skip = self.trace.len().saturating_sub(400);
        if skip > 0 {
            writeln!(f, "  ... {skip} earlier steps")?;
        }
        for line in &self.trace[skip..] {
            writeln!(f, "  {line}")?;
        }
        Ok(())
    }
}

/// xorshift64*: small, seedable, good enough for schedules.
#[derive(Debug, Clone)]
pub struct Rng(u64);

impl Rng {
    /// A generator from `seed` (any value).
    pub fn new(seed: u64) -> Self {
        Self(seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1)
    }
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }
    fn below(&mut self, n: u64) -> u64 {
        if n == 0 { 0 } else { self.next() % n }
    }
    fn chance(&mut self, per_mille: u64) -> bool {
        self.below(1000) < per_mille
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum CState {
    Created,
    Running,
    Exited(i64),
}

#[derive(Debug, Clone)]
struct Ctr {
    exec: usize,
    key: String,
    creator: String,
    state: CState,
    exit_at: Mono,
    code: i64,
}

#[derive(Debug, Clone)]
enum Vol {
    Lease {
        inst: String,
        seq: u64,
    },
    Released {
        inst: String,
    },
    Claim {
        cid: String,
        generation: u64,
        inst: String,
        reported: bool,
    },
    Exec {
        key: String,
        generation: u64,
        inst: String,
    },
    Done {
        key: String,
    },
    Ping {
        from: String,
        to: String,
    },
}

#[derive(Debug, Default)]
struct Daemon {
    ctrs: BTreeMap<String, Ctr>,
    vols: BTreeMap<String, Vol>,
    down_until: Mono,
    /// Bumped when the daemon restarts: waits in flight break.
    epoch: u64,
    next_id: u64,
}

impl Daemon {
    fn create_volume(&mut self, name: String, vol: Vol) -> &Vol {
        self.vols.entry(name).or_insert(vol)
    }

    fn snapshot(&self) -> Snapshot {
        let mut snap = Snapshot::default();
        for (name, v) in &self.vols {
            match v {
                Vol::Lease { inst, seq } => {
                    let e = snap
                        .leases
                        .entry(inst.clone())
                        .or_insert_with(|| (String::new(), Vec::new()));
                    e.1.push(name.clone());
                    let better = e.0 != RELEASED && e.0.parse::<u64>().map_or(true, |s| *seq >= s);
                    if better {
                        e.0 = seq.to_string();
                    }
                }
                Vol::Released { inst } => {
                    let e = snap
                        .leases
                        .entry(inst.clone())
                        .or_insert_with(|| (String::new(), Vec::new()));
                    e.1.push(name.clone());
                    e.0 = RELEASED.to_owned();
                }
                Vol::Claim { cid, .. } => snap.claims.push((name.clone(), cid.clone())),
                Vol::Ping { from, to } => snap.pings.push((from.clone(), to.clone(), name.clone())),
                _ => {}
            }
        }
        let mut execs: BTreeMap<String, ExecRecord> = BTreeMap::new();
        for (name, v) in &self.vols {
            let (key, holder, done) = match v {
                Vol::Exec {
                    key,
                    generation,
                    inst,
                } => (key, Some((inst.clone(), *generation)), false),
                Vol::Done { key } => (key, None, true),
                _ => continue,
            };
            let e = execs.entry(key.clone()).or_insert_with(|| ExecRecord {
                key: key.clone(),
                holder: None,
                holder_lease: None,
                done: false,
                volumes: Vec::new(),
                task_id: key.clone(),
                execution_id: key.clone(),
            });
            e.volumes.push(name.clone());
            e.done |= done;
            if let Some((i, g)) = holder
                && e.holder.as_ref().is_none_or(|(_, best)| g > *best)
            {
                e.holder = Some((i, g));
            }
        }
        for e in execs.values_mut() {
            e.holder_lease = e.holder.as_ref().and_then(|(h, _)| snap.lease(h));
        }
        snap.execs = execs.into_values().collect();
        let done: BTreeSet<&str> = snap
            .execs
            .iter()
            .filter(|e| e.done)
            .map(|e| e.key.as_str())
            .collect();
        for (cid, c) in &self.ctrs {
            let (instance, generation, reported) = self.owner(cid, c);
            let reported = reported || done.contains(c.key.as_str());
            let stage = match c.state {
                CState::Created => Stage::Created,
                CState::Running => Stage::Running,
                CState::Exited(code) => Stage::Exited(code),
            };
            let lease = snap.lease(&instance);
            snap.tasks.push(TaskRecord {
                id: cid.clone(),
                key: c.key.clone(),
                owner: OwnerView {
                    instance,
                    generation,
                    reported,
                    stage,
                    lease,
                    pinged: false,
                },
                keep: false,
            });
        }
        snap
    }

    fn owner(&self, cid: &str, c: &Ctr) -> (String, u64, bool) {
        let mut best = (c.creator.clone(), 0, false);
        for v in self.vols.values() {
            if let Vol::Claim {
                cid: of,
                generation,
                inst,
                reported,
            } = v
                && of == cid
            {
                best.2 |= *reported;
                if *generation > best.1 {
                    best.0 = inst.clone();
                    best.1 = *generation;
                }
            }
        }
        best
    }
}

#[derive(Debug)]
struct WaitState {
    cid: String,
    until: Option<Mono>,
    epoch: u64,
}

#[derive(Debug)]
struct Actor {
    exec: usize,
    machine: TaskMachine,
    call: Option<Call>,
    wake: Mono,
    wait: Option<WaitState>,
    cancel: Option<Cancel>,
    /// The lease epoch when the machine chose `call`.
    decided: u64,
    /// When the machine chose `call`.
    chosen_at: Mono,
}

#[derive(Debug)]
struct Cleaning {
    exec: usize,
    machine: CleanupMachine,
    next: CleanupStep,
    wake: Mono,
    /// The lease epoch when the machine chose `next`.
    decided: u64,
    /// When the machine chose `next`.
    chosen_at: Mono,
}

#[derive(Debug)]
struct Unacked {
    exec: usize,
    container: Option<(String, u64)>,
    ack_at: Mono,
    /// The lease epoch when it was reported.
    epoch: u64,
}

#[derive(Debug)]
struct Proc {
    inst: String,
    alive: bool,
    frozen_until: Mono,
    cut_until: Mono,
    own: OwnLease,
    live: Liveness,
    seq: u64,
    renew_at: Mono,
    reap_at: Mono,
    actors: BTreeMap<usize, Actor>,
    cleanups: Vec<Cleaning>,
    /// Claims held: generation and the lease epoch they were last seen held in.
    held: BTreeMap<String, (u64, u64)>,
    held_execs: BTreeMap<String, (u64, u64)>,
    unacked: Vec<Unacked>,
    stopping: bool,
    /// This process's monotonic origin (its clock reads now + offset).
    offset: Mono,
}

#[derive(Debug, Default)]
struct ExecState {
    key: String,
    sends: Vec<(Mono, usize)>,
    /// Assigned to some process at least once.
    assigned: bool,
    /// Claimed on the daemon by some process (so it must be reported: a
    /// process killed before its first call leaves nothing to recover
    /// from; the orchestrator's resend or timeout covers that).
    claimed: bool,
    delivered: Vec<(String, Mono)>,
    /// Every report made (delivered or not): instance and time.
    reports: Vec<(String, Mono)>,
    starts: u32,
}

/// One schedule.
struct World {
    seed: u64,
    rng: Rng,
    now: Mono,
    daemon: Daemon,
    procs: Vec<Proc>,
    restarts: Vec<(Mono, usize)>,
    execs: Vec<ExecState>,
    /// Ghost ownership: who really holds each container / execution.
    ghost: BTreeMap<String, (String, u64)>,
    ghost_exec: BTreeMap<String, (String, u64)>,
    /// Holds a prune erased the record of while their holder could still
    /// make it again (containers, executions): the hold is void once that
    /// holder can no longer (its lease was no longer safe, or it lapsed)
    /// before it did — it then never acts on it again without reading.
    unrecorded: BTreeSet<String>,
    unrecorded_exec: BTreeSet<String>,
    /// When each container hold in `ghost` began.
    ghost_since: BTreeMap<String, Mono>,
    /// When the call being performed was chosen (the read it rests on).
    deciding_at: Mono,
    /// When each instance could not renew its lease (killed, frozen, cut
    /// off, daemon down): from, to.
    disturbed: BTreeMap<String, Vec<(Mono, Mono)>>,
    incarnations: usize,
    /// When volumes were pruned.
    prunes: Vec<Mono>,
    trace: Vec<String>,
    stats: Stats,
    faults: bool,
    prune: bool,
}

/// Runs one schedule from `seed`.
pub fn run(seed: u64, opts: &Options) -> Result<Stats, Box<Failure>> {
    let mut w = World::new(seed, opts);
    w.run(opts)?;
    w.stats.schedules = 1;
    Ok(w.stats)
}

/// Runs `count` schedules from seeds `first..first + count`.
pub fn run_many(first: u64, count: u64, opts: &Options) -> Result<Stats, Box<Failure>> {
    let mut total = Stats::default();
    for seed in first..first + count {
        let mut o = opts.clone();
        // Vary the shape from the seed itself, so one number reproduces it.
        let mut r = Rng::new(seed ^ 0x5151);
        o.processes = 2 + r.below(4) as usize;
        o.executions = 1 + r.below(5) as usize;
        total.add(&run(seed, &o)?);
    }
    Ok(total)
}

impl World {
    fn new(seed: u64, opts: &Options) -> Self {
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

    fn new_proc(&mut self, slot: usize) -> Proc {
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

    fn log(&mut self, line: String) {
        self.trace.push(format!("t={:>7} {line}", self.now));
    }

    fn fail(&self, violation: String) -> Box<Failure> {
        Box::new(Failure {
            seed: self.seed,
            violation,
            trace: self.trace.clone(),
        })
    }

    fn reachable(&self, p: usize) -> bool {
        self.now >= self.daemon.down_until && self.now >= self.procs[p].cut_until
    }

    fn runnable(&self, p: usize) -> bool {
        self.procs[p].alive && self.now >= self.procs[p].frozen_until
    }

    fn disturb(&mut self, inst: &str, until: Mono) {
        let from = self.now;
        self.disturbed
            .entry(inst.to_owned())
            .or_default()
            .push((from, until));
    }

    fn run(&mut self, opts: &Options) -> Result<(), Box<Failure>> {
        let mut steps = 0usize;
        let mut settled_at: Option<Mono> = None;
        loop {
            steps += 1;
            if steps > 50_000 {
                let state = self.state();
                return Err(self.fail(format!("no quiescence after 50000 steps: {state}")));
            }
            let faulting = self.faults && steps < opts.fault_steps;
            if faulting && self.rng.chance(25) {
                self.inject()?;
            }
            if !faulting && settled_at.is_none() {
                settled_at = Some(self.now);
                self.settle();
            }
            let choices = self.choices();
            if choices.is_empty() {
                let Some(next) = self.next_time() else { break };
                if let Some(s) = settled_at
                    && next > s + TTL * (super::DONE_RETENTION_TTLS + 6)
                    && self.idle()
                {
                    break;
                }
                self.now = next.max(self.now + 1);
                continue;
            }
            let pick = choices[self.rng.below(choices.len() as u64) as usize].clone();
            self.perform(pick)?;
            self.stats.steps += 1;
            self.check()?;
            self.now += self.rng.below(400);
            if let Some(s) = settled_at
                && self.now > s + TTL * (super::DONE_RETENTION_TTLS + 6)
                && self.idle()
            {
                break;
            }
        }
        self.check_quiescent()
    }

    /// What is left, for a failure message.
    fn state(&self) -> String {
        let mut out = format!(
            "t={} containers {:?}; volumes {:?}; ",
            self.now,
            self.daemon.ctrs.keys().collect::<Vec<_>>(),
            self.daemon.vols.keys().collect::<Vec<_>>()
        );
        for p in self.procs.iter().filter(|p| p.alive) {
            let _ = write!(
                out,
                "{}: actors {:?} cleanups {} unacked {}; ",
                p.inst,
                p.actors
                    .values()
                    .map(|a| (a.exec, a.call.clone()))
                    .collect::<Vec<_>>(),
                p.cleanups.len(),
                p.unacked.len()
            );
        }
        let _ = write!(
            out,
            "sends {:?}",
            self.execs.iter().map(|e| e.sends.len()).collect::<Vec<_>>()
        );
        out
    }

    /// Whether nothing but renewals and reaper passes is left to do.
    fn idle(&self) -> bool {
        self.restarts.is_empty()
            && self.execs.iter().all(|e| e.sends.is_empty())
            && self.procs.iter().all(|p| {
                !p.alive || (p.actors.is_empty() && p.cleanups.is_empty() && p.unacked.is_empty())
            })
            && self.daemon.ctrs.is_empty()
            && self
                .daemon
                .vols
                .values()
                .all(|v| matches!(v, Vol::Lease { .. } | Vol::Ping { .. }))
    }

    /// Ends every fault: the run must now reach quiescence by itself.
    fn settle(&mut self) {
        self.log("settle: faults end".into());
        self.daemon.down_until = self.daemon.down_until.min(self.now);
        for p in &mut self.procs {
            p.frozen_until = p.frozen_until.min(self.now);
            p.cut_until = p.cut_until.min(self.now);
        }
    }

    fn inject(&mut self) -> Result<(), Box<Failure>> {
        let slot = self.rng.below(self.procs.len() as u64) as usize;
        let kind = self.rng.below(9);
        let name: &'static str = match kind {
            0 if self.procs[slot].alive => {
                let inst = self.procs[slot].inst.clone();
                self.log(format!("FAULT SIGKILL {inst}"));
                self.kill(slot);
                "sigkill"
            }
            1 if self.procs[slot].alive => {
                let d = TTL + self.rng.below(3 * TTL);
                self.procs[slot].frozen_until = self.now + d;
                let inst = self.procs[slot].inst.clone();
                self.disturb(&inst, self.now + d);
                self.log(format!("FAULT freeze {inst} for {d}ms"));
                "freeze past ttl"
            }
            2 if self.procs[slot].alive => {
                let d = self.rng.below(3 * TTL);
                self.procs[slot].cut_until = self.now + d;
                let inst = self.procs[slot].inst.clone();
                self.disturb(&inst, self.now + d);
                self.log(format!("FAULT cut {inst} off the daemon for {d}ms"));
                "process cut off"
            }
            3 => {
                let d = self.rng.below(2 * TTL);
                let live_restore = self.rng.chance(500);
                self.daemon.down_until = self.now + d;
                self.daemon.epoch += 1;
                let insts: Vec<String> = self.procs.iter().map(|p| p.inst.clone()).collect();
                for i in insts {
                    self.disturb(&i, self.now + d);
                }
                if !live_restore {
                    for c in self.daemon.ctrs.values_mut() {
                        if c.state == CState::Running {
                            c.state = CState::Exited(143);
                        }
                    }
                }
                self.log(format!(
                    "FAULT daemon restart, down {d}ms, live-restore {live_restore}"
                ));
                if live_restore {
                    "daemon restart (live-restore)"
                } else {
                    "daemon restart"
                }
            }
            4 if self.prune && self.now >= self.daemon.down_until => {
                // Engine 20.10: every volume no container uses. The records
                // of who holds what go with them: a holder whose lease held
                // makes its claim again within a renewal; one whose lease
                // lapsed gives it up.
                self.daemon.vols.clear();
                // Every hold with a claim volume is now only in its holder's
                // memory; [`World::void_unrecorded`] ends it once the holder
                // cannot make the claim again.
                self.unrecorded.extend(
                    self.ghost
                        .iter()
                        .filter(|(_, (_, g))| *g > 0)
                        .map(|(id, _)| id.clone()),
                );
                self.unrecorded_exec.extend(self.ghost_exec.keys().cloned());
                self.void_unrecorded();
                self.prunes.push(self.now);
                self.log("FAULT docker volume prune".into());
                "volume prune"
            }
            5 if self.procs[slot].alive && !self.procs[slot].stopping => {
                let inst = self.procs[slot].inst.clone();
                self.log(format!("FAULT clean stop (detach) {inst}"));
                self.procs[slot].stopping = true;
                for a in self.procs[slot].actors.values_mut() {
                    a.cancel = Some(Cancel::Detach);
                }
                // The orchestrator routes what it had sent there, and has no
                // terminal message of yet, to another process.
                self.resend_undelivered();
                "clean stop"
            }
            6 => {
                // A cancellation (user or timeout) to a process that has the task.
                let candidates: Vec<(usize, usize)> = self
                    .procs
                    .iter()
                    .enumerate()
                    .filter(|(_, p)| p.alive)
                    .flat_map(|(i, p)| p.actors.keys().map(move |e| (i, *e)))
                    .collect();
                if candidates.is_empty() {
                    return Ok(());
                }
                let (p, e) = candidates[self.rng.below(candidates.len() as u64) as usize];
                if let Some(a) = self.procs[p].actors.get_mut(&e) {
                    a.cancel.get_or_insert(Cancel::Stop);
                }
                self.log(format!("FAULT cancel e{e} at {}", self.procs[p].inst));
                "cancel"
            }
            7 => {
                // A resend of an execution not yet delivered.
                let open: Vec<usize> = (0..self.execs.len())
                    .filter(|e| self.execs[*e].delivered.is_empty() && self.execs[*e].assigned)
                    .collect();
                if open.is_empty() {
                    return Ok(());
                }
                let e = open[self.rng.below(open.len() as u64) as usize];
                let at = self.now + self.rng.below(5_000);
                self.execs[e].sends.push((at, slot));
                self.log(format!("FAULT resend e{e} to slot {slot}"));
                "resend"
            }
            _ => return Ok(()),
        };
        *self.stats.faults.entry(name).or_default() += 1;
        Ok(())
    }

    fn kill(&mut self, slot: usize) {
        let inst = self.procs[slot].inst.clone();
        self.disturb(&inst, Mono::MAX);
        self.procs[slot].alive = false;
        self.procs[slot].actors.clear();
        self.procs[slot].cleanups.clear();
        self.procs[slot].unacked.clear();
        // The orchestrator sends what that process had, undelivered, again
        // (to whichever process; a volume prune may have removed the only
        // record of a task killed before its container existed).
        self.resend_undelivered();
        let at = self.now + 500 + self.rng.below(10_000);
        self.restarts.push((at, slot));
    }

    fn resend_undelivered(&mut self) {
        for e in 0..self.execs.len() {
            if self.execs[e].delivered.is_empty() && self.execs[e].assigned {
                let to = self.rng.below(self.procs.len() as u64) as usize;
                let at = self.now + 1_000 + self.rng.below(10_000);
                self.execs[e].sends.push((at, to));
            }
        }
    }

    fn next_time(&self) -> Option<Mono> {
        let mut t: Vec<Mono> = Vec::new();
        t.extend(self.restarts.iter().map(|r| r.0));
        t.extend(self.execs.iter().flat_map(|e| e.sends.iter().map(|s| s.0)));
        if self.daemon.down_until > self.now {
            t.push(self.daemon.down_until);
        }
        for c in self.daemon.ctrs.values() {
            if c.state == CState::Running {
                t.push(c.exit_at.max(self.daemon.down_until));
            }
        }
        for p in self.procs.iter().filter(|p| p.alive) {
            let f = p.frozen_until.max(self.now);
            t.push(p.renew_at.max(f));
            t.push(p.reap_at.max(f));
            if p.cut_until > self.now {
                t.push(p.cut_until);
            }
            for a in p.actors.values() {
                t.push(a.wake.max(f));
                if let Some(w) = &a.wait
                    && let Some(u) = w.until
                {
                    t.push(u.max(f));
                }
            }
            t.extend(p.cleanups.iter().map(|c| c.wake.max(f)));
            t.extend(p.unacked.iter().map(|u| u.ack_at.max(f)));
        }
        t.into_iter().filter(|&x| x > self.now).min()
    }

    fn choices(&self) -> Vec<Choice> {
        let mut c = Vec::new();
        for (i, r) in self.restarts.iter().enumerate() {
            if r.0 <= self.now {
                c.push(Choice::Restart(i));
            }
        }
        for (e, st) in self.execs.iter().enumerate() {
            for (i, s) in st.sends.iter().enumerate() {
                if s.0 <= self.now {
                    c.push(Choice::Send(e, i));
                }
            }
        }
        if self.now >= self.daemon.down_until {
            for (id, ctr) in &self.daemon.ctrs {
                if ctr.state == CState::Running && ctr.exit_at <= self.now {
                    c.push(Choice::Exit(id.clone()));
                }
            }
        }
        for (i, p) in self.procs.iter().enumerate() {
            if !self.runnable(i) {
                continue;
            }
            if p.renew_at <= self.now {
                c.push(Choice::Renew(i));
            }
            if p.reap_at <= self.now && !p.stopping {
                c.push(Choice::Reap(i));
            }
            for (e, a) in &p.actors {
                if a.wake > self.now {
                    continue;
                }
                if let Some(w) = &a.wait {
                    let ended = match self.daemon.ctrs.get(&w.cid) {
                        Some(ctr) => matches!(ctr.state, CState::Exited(_)),
                        None => true,
                    };
                    let ready = ended && self.reachable(i)
                        || w.until.is_some_and(|u| u <= self.now)
                        || a.cancel.is_some()
                        || w.epoch != self.daemon.epoch
                        || !self.reachable(i);
                    if !ready {
                        continue;
                    }
                }
                c.push(Choice::Task(i, *e));
            }
            for (k, cl) in p.cleanups.iter().enumerate() {
                if cl.wake <= self.now {
                    c.push(Choice::Cleanup(i, k));
                }
            }
            for (k, u) in p.unacked.iter().enumerate() {
                if u.ack_at <= self.now && self.now >= p.cut_until {
                    c.push(Choice::Ack(i, k));
                }
            }
            if p.stopping && p.actors.is_empty() && p.cleanups.is_empty() && p.unacked.is_empty() {
                c.push(Choice::Release(i));
            }
        }
        c
    }

    fn perform(&mut self, choice: Choice) -> Result<(), Box<Failure>> {
        match choice {
            Choice::Restart(i) => {
                let (_, slot) = self.restarts.remove(i);
                let p = self.new_proc(slot);
                self.log(format!("start {} in slot {slot}", p.inst));
                self.procs[slot] = p;
            }
            Choice::Send(e, i) => {
                let (_, slot) = self.execs[e].sends.remove(i);
                if !self.procs[slot].alive || self.procs[slot].stopping {
                    // Nobody there: the orchestrator tries again later.
                    if self.execs[e].delivered.is_empty() {
                        let to = self.rng.below(self.procs.len() as u64) as usize;
                        let at = self.now + 2_000 + self.rng.below(5_000);
                        self.execs[e].sends.push((at, to));
                    }
                    return Ok(());
                }
                if !self.execs[e].delivered.is_empty() {
                    return Ok(());
                }
                self.execs[e].assigned = true;
                let inst = self.procs[slot].inst.clone();
                if self.procs[slot].actors.contains_key(&e)
                    || self.procs[slot].unacked.iter().any(|u| u.exec == e)
                    || self.procs[slot].cleanups.iter().any(|c| c.exec == e)
                {
                    self.log(format!("e{e} sent to {inst} again: already active there"));
                    return Ok(());
                }
                self.log(format!("e{e} assigned to {inst}"));
                let key = self.execs[e].key.clone();
                let machine =
                    TaskMachine::new(super::machine::Origin::Assigned { dedupe: true }, &key);
                self.start_actor(slot, e, machine);
            }
            Choice::Exit(id) => {
                let code = self.daemon.ctrs[&id].code;
                if let Some(c) = self.daemon.ctrs.get_mut(&id) {
                    c.state = CState::Exited(code);
                }
                self.log(format!("container {id} exits {code}"));
            }
            Choice::Renew(i) => self.renew(i),
            Choice::Reap(i) => self.reap(i),
            Choice::Task(i, e) => self.task_step(i, e)?,
            Choice::Cleanup(i, k) => self.cleanup_step(i, k)?,
            Choice::Ack(i, k) => {
                let u = self.procs[i].unacked.remove(k);
                let inst = self.procs[i].inst.clone();
                self.log(format!(
                    "orchestrator reads e{}'s terminal from {inst}",
                    u.exec
                ));
                self.execs[u.exec].delivered.push((inst, self.now));
                self.stats.reports += 1;
                let key = self.execs[u.exec].key.clone();
                match u.container {
                    Some((id, generation)) => {
                        let machine = CleanupMachine::new(id, generation, false, u.epoch);
                        self.procs[i].cleanups.push(Cleaning {
                            exec: u.exec,
                            machine,
                            next: CleanupStep::Finished,
                            wake: self.now,
                            decided: 0,
                            chosen_at: self.now,
                        });
                        let k = self.procs[i].cleanups.len() - 1;
                        self.start_cleanup(i, k);
                    }
                    None => {
                        // Only the execution's records: marked done, retried
                        // until the daemon answers.
                        let _ = key;
                        self.procs[i].cleanups.push(Cleaning {
                            exec: u.exec,
                            machine: CleanupMachine::new(String::new(), 0, false, 0),
                            next: CleanupStep::RemoveRecords { id: String::new() },
                            wake: self.now,
                            decided: 0,
                            chosen_at: self.now,
                        });
                    }
                }
            }
            Choice::Release(i) => {
                let inst = self.procs[i].inst.clone();
                if !self.reachable(i) {
                    return Ok(());
                }
                self.daemon
                    .vols
                    .retain(|_, v| !matches!(v, Vol::Lease { inst: l, .. } if *l == inst));
                self.daemon.create_volume(
                    format!("lease-{inst}-released"),
                    Vol::Released { inst: inst.clone() },
                );
                self.log(format!("{inst} released its lease and exits"));
                self.procs[i].alive = false;
                let at = self.now + 500 + self.rng.below(5_000);
                self.restarts.push((at, i));
            }
        }
        Ok(())
    }

    fn mark_done(&mut self, key: &str, p: usize) {
        if !self.reachable(p) {
            return;
        }
        self.daemon.create_volume(
            format!("exec-{key}-done"),
            Vol::Done {
                key: key.to_owned(),
            },
        );
        self.daemon
            .vols
            .retain(|_, v| !matches!(v, Vol::Exec { key: k, .. } if k == key));
        self.procs[p].held_execs.remove(key);
        // Done: nobody holds the execution any more.
        self.ghost_exec.remove(key);
    }

    fn renew(&mut self, i: usize) {
        let mono = self.now + self.procs[i].offset;
        if !self.reachable(i) {
            self.procs[i].live.cut_off();
            self.procs[i].renew_at = self.now + 1_000;
            return;
        }
        let inst = self.procs[i].inst.clone();
        let seq = self.procs[i].seq + 1;
        self.daemon.create_volume(
            format!("lease-{inst}-{seq}"),
            Vol::Lease {
                inst: inst.clone(),
                seq,
            },
        );
        let previous = self
            .daemon
            .vols
            .remove(&format!("lease-{inst}-{}", seq - 1));
        if previous.is_none() && seq > 1 {
            // Gone since the renewal before: records were erased.
            self.procs[i].own.erased(mono);
        }
        // Every ping to this process is answered.
        self.daemon
            .vols
            .retain(|_, v| !matches!(v, Vol::Ping { to, .. } if *to == inst));
        // Claims a prune removed are made again — only by a process whose
        // lease never lapsed (one that did re-checks each by its guards).
        let safe = self.procs[i].own.safe(mono);
        let epoch = self.procs[i].own.epoch();
        let held: Vec<(String, u64)> = if safe {
            self.procs[i]
                .held
                .iter()
                .filter(|(_, v)| v.1 == epoch)
                .map(|(k, v)| (k.clone(), v.0))
                .collect()
        } else {
            Vec::new()
        };
        for (cid, generation) in held {
            if generation > 0 && self.daemon.ctrs.contains_key(&cid) {
                self.claim_volume(i, &cid, generation);
            }
        }
        let execs: Vec<(String, u64)> = if safe {
            self.procs[i]
                .held_execs
                .iter()
                .filter(|(_, v)| v.1 == epoch)
                .map(|(k, v)| (k.clone(), v.0))
                .collect()
        } else {
            Vec::new()
        };
        for (key, generation) in execs {
            self.exec_volume(i, &key, generation);
        }
        let p = &mut self.procs[i];
        p.seq = seq;
        p.own.renewed(mono);
        p.live.reached(mono);
        p.renew_at = self.now + RENEW_EVERY;
    }

    fn claim_volume(&mut self, p: usize, cid: &str, generation: u64) -> String {
        let inst = self.procs[p].inst.clone();
        let name = format!("claim-{cid}-{generation}");
        let existed = self.daemon.vols.contains_key(&name);
        let holder = match self.daemon.create_volume(
            name,
            Vol::Claim {
                cid: cid.to_owned(),
                generation,
                inst: inst.clone(),
                reported: false,
            },
        ) {
            Vol::Claim { inst, .. } => inst.clone(),
            _ => String::new(),
        };
        if !existed && holder == inst {
            // The true holder is whoever the daemon's record names once a
            // claim was made (after a prune erased the record, a new claim of
            // any generation decides).
            if let Some(c) = self.daemon.ctrs.get(cid) {
                let (owner, g, _) = self.daemon.owner(cid, c);
                self.ghost.insert(cid.to_owned(), (owner, g));
                self.ghost_since.insert(cid.to_owned(), self.now);
            }
            self.unrecorded.remove(cid);
        }
        if holder == inst {
            let epoch = self.procs[p].own.epoch();
            self.procs[p]
                .held
                .insert(cid.to_owned(), (generation, epoch));
        }
        holder
    }

    fn exec_volume(&mut self, p: usize, key: &str, generation: u64) -> String {
        let inst = self.procs[p].inst.clone();
        let name = format!("exec-{key}-{generation}");
        let existed = self.daemon.vols.contains_key(&name);
        if self.daemon.vols.contains_key(&format!("exec-{key}-done")) {
            // Done already: creating a claim would reopen it.
            return String::from("(done)");
        }
        let holder = match self.daemon.create_volume(
            name,
            Vol::Exec {
                key: key.to_owned(),
                generation,
                inst: inst.clone(),
            },
        ) {
            Vol::Exec { inst, .. } => inst.clone(),
            _ => String::new(),
        };
        if !existed && holder == inst {
            if let Some(e) = self.execs.iter_mut().find(|e| e.key == key) {
                e.claimed = true;
            }
            // Likewise the execution's highest claim on the daemon now.
            let best = self
                .daemon
                .vols
                .values()
                .filter_map(|v| match v {
                    Vol::Exec {
                        key: k,
                        generation,
                        inst,
                    } if k == key => Some((inst.clone(), *generation)),
                    _ => None,
                })
                .max_by_key(|(_, g)| *g);
            if let Some(best) = best {
                self.ghost_exec.insert(key.to_owned(), best);
            }
            self.unrecorded_exec.remove(key);
        }
        if holder == inst {
            let epoch = self.procs[p].own.epoch();
            self.procs[p]
                .held_execs
                .insert(key.to_owned(), (generation, epoch));
        }
        holder
    }

    fn reap(&mut self, i: usize) {
        let mono = self.now + self.procs[i].offset;
        self.procs[i].reap_at = self.now + 5_000 + self.rng.below(15_000);
        if !self.reachable(i) {
            self.procs[i].live.cut_off();
            return;
        }
        let snap = self.daemon.snapshot();
        let me = self.procs[i].inst.clone();
        let busy: BTreeSet<String> = {
            let p = &self.procs[i];
            let mut b: BTreeSet<String> = p
                .actors
                .keys()
                .map(|e| self.execs[*e].key.clone())
                .collect();
            b.extend(p.cleanups.iter().map(|c| self.execs[c.exec].key.clone()));
            b.extend(p.unacked.iter().map(|u| self.execs[u.exec].key.clone()));
            b
        };
        let plans = {
            let p = &mut self.procs[i];
            observe(&snap, &mut p.live, &me, mono);
            plan(&snap, &p.live, &me, mono, TTL, &|k| busy.contains(k))
        };
        for pl in plans {
            match pl {
                Plan::RemoveVolume(name) => {
                    self.daemon.vols.remove(&name);
                }
                Plan::Ping(to) => {
                    self.daemon.create_volume(
                        format!("ping-{me}-{to}"),
                        Vol::Ping {
                            from: me.clone(),
                            to,
                        },
                    );
                }
                Plan::Adopt {
                    id,
                    key,
                    generation,
                    previous,
                    seen,
                } => {
                    let e = self.exec_of(&key);
                    if self.procs[i].actors.contains_key(&e) {
                        continue;
                    }
                    self.log(format!(
                        "{me} reaper: adopt {id} from {previous} at gen {generation}"
                    ));
                    let origin = super::machine::Origin::Adopted {
                        id,
                        generation,
                        previous,
                        seen,
                    };
                    let m = TaskMachine::new(origin, &key);
                    self.start_actor(i, e, m);
                }
                Plan::Abandoned {
                    key,
                    generation,
                    previous,
                    seen,
                } => {
                    let e = self.exec_of(&key);
                    if self.procs[i].actors.contains_key(&e) {
                        continue;
                    }
                    self.log(format!(
                        "{me} reaper: execution {key} of {previous} abandoned"
                    ));
                    let origin = super::machine::Origin::Abandoned {
                        generation,
                        previous,
                        seen,
                    };
                    let m = TaskMachine::new(origin, &key);
                    self.start_actor(i, e, m);
                }
            }
        }
    }

    fn exec_of(&self, key: &str) -> usize {
        self.execs.iter().position(|e| e.key == key).unwrap_or(0)
    }

    fn start_actor(&mut self, p: usize, e: usize, machine: TaskMachine) {
        let mut a = Actor {
            exec: e,
            machine,
            call: None,
            wake: self.now,
            wait: None,
            cancel: if self.procs[p].stopping {
                Some(Cancel::Detach)
            } else {
                None
            },
            decided: 0,
            chosen_at: self.now,
        };
        let mono = self.now + self.procs[p].offset;
        let proc_ = &mut self.procs[p];
        let mut env = Env {
            me: &proc_.inst,
            now: mono,
            lease: &proc_.own,
            live: &mut proc_.live,
            cancel: a.cancel,
        };
        let step = a.machine.start(&mut env);
        proc_.actors.insert(e, a);
        let _ = self.after(p, e, step);
    }

    /// Acts on a machine's step; false when the actor ended.
    fn after(&mut self, p: usize, e: usize, step: Step) -> Result<bool, Box<Failure>> {
        let inst = self.procs[p].inst.clone();
        match step {
            Step::Call(call) => {
                let epoch = self.procs[p].own.epoch();
                let now = self.now;
                let a = self.procs[p].actors.get_mut(&e).expect("actor");
                a.decided = epoch;
                a.chosen_at = now;
                a.wait = None;
                a.wake = self.now;
                if let Call::Pause(d) = &call {
                    a.wake = self.now + d;
                }
                if let Call::Wait { id, poll } = &call {
                    a.wait = Some(WaitState {
                        cid: id.clone(),
                        until: poll.then_some(self.now + super::machine::FOLLOW_POLL),
                        epoch: self.daemon.epoch,
                    });
                }
                a.call = Some(call);
                Ok(true)
            }
            Step::Report { outcome, container } => {
                self.procs[p].actors.remove(&e);
                let key = self.execs[e].key.clone();
                self.log(format!(
                    "{inst} REPORTS e{e} {outcome:?} (container {container:?})"
                ));
                // Invariant 3: the reporter holds what it reports.
                self.deciding_at = self.now;
                match &container {
                    Some((cid, _)) => self.check_holder(&inst, cid, "report")?,
                    None => self.check_exec_holder(&inst, &key)?,
                }
                self.execs[e].reports.push((inst, self.now));
                let ack_at = self.now + self.rng.below(3_000);
                let epoch = self.procs[p].own.epoch();
                self.procs[p].unacked.push(Unacked {
                    exec: e,
                    container,
                    ack_at,
                    epoch,
                });
                Ok(false)
            }
            Step::Silent(why) => {
                self.procs[p].actors.remove(&e);
                self.log(format!("{inst} silent on e{e}: {why:?}"));
                self.forget_holdings(p, e);
                Ok(false)
            }
            Step::Cleanup {
                container,
                generation,
            } => {
                self.procs[p].actors.remove(&e);
                self.forget_holdings(p, e);
                let epoch = self.procs[p].own.epoch();
                self.procs[p]
                    .held
                    .insert(container.clone(), (generation, epoch));
                self.log(format!("{inst} cleans up reported {container}"));
                let epoch = self.procs[p].own.epoch();
                let machine = CleanupMachine::new(container, generation, false, epoch);
                self.procs[p].cleanups.push(Cleaning {
                    exec: e,
                    machine,
                    next: CleanupStep::Finished,
                    wake: self.now,
                    decided: 0,
                    chosen_at: self.now,
                });
                let k = self.procs[p].cleanups.len() - 1;
                self.start_cleanup(p, k);
                Ok(false)
            }
        }
    }

    /// A task that ended without a report holds nothing any more: its
    /// claims are not made again at renewals.
    fn forget_holdings(&mut self, p: usize, e: usize) {
        let key = self.execs[e].key.clone();
        self.procs[p].held_execs.remove(&key);
        let ids: Vec<String> = self
            .daemon
            .ctrs
            .iter()
            .filter(|(_, c)| c.exec == e)
            .map(|(id, _)| id.clone())
            .collect();
        for id in ids {
            self.procs[p].held.remove(&id);
        }
    }

    fn task_step(&mut self, p: usize, e: usize) -> Result<(), Box<Failure>> {
        let Some(a) = self.procs[p].actors.get(&e) else {
            return Ok(());
        };
        let Some(call) = a.call.clone() else {
            return Ok(());
        };
        let cancel = a.cancel;
        let decided = a.decided;
        let stale = call.needs_fresh() && self.now.saturating_sub(a.chosen_at) > FRESH;
        self.deciding_at = a.chosen_at;
        let reply = if (call.is_fenced() && decided != self.procs[p].own.epoch()) || stale {
            // Decided before a lapse, or on a judgement gone stale: the
            // machine must look again.
            Reply::Lapsed
        } else {
            self.execute(p, e, &call, cancel)?
        };
        let inst = self.procs[p].inst.clone();
        self.log(format!("{inst} e{e} {call:?} -> {reply:?}"));
        let mono = self.now + self.procs[p].offset;
        let proc_ = &mut self.procs[p];
        let a = proc_.actors.get_mut(&e).expect("actor");
        if reply != Reply::Unreachable && !matches!(call, Call::Pause(_)) {
            proc_.live.reached(mono);
        }
        let mut env = Env {
            me: &proc_.inst,
            now: mono,
            lease: &proc_.own,
            live: &mut proc_.live,
            cancel: a.cancel,
        };
        let step = a.machine.step(reply, &mut env);
        self.after(p, e, step)?;
        Ok(())
    }

    /// Performs `call` for process `p` against the daemon.
    fn execute(
        &mut self,
        p: usize,
        e: usize,
        call: &Call,
        cancel: Option<Cancel>,
    ) -> Result<Reply, Box<Failure>> {
        if let Call::Pause(_) = call {
            return Ok(Reply::Done);
        }
        if let Call::Prepare = call {
            // Pulls and sidecars: they take time, and sometimes fail.
            return Ok(if self.rng.chance(30) {
                Reply::Failed
            } else {
                Reply::Done
            });
        }
        if !self.reachable(p) {
            return Ok(Reply::Unreachable);
        }
        let mono = self.now + self.procs[p].offset;
        if call.is_fenced() && !self.procs[p].own.safe(mono) {
            return Ok(Reply::Lapsed);
        }
        let inst = self.procs[p].inst.clone();
        let key = self.execs[e].key.clone();
        Ok(match call {
            Call::ClaimExecution { generation } => {
                Reply::Holder(self.exec_volume(p, &key, *generation))
            }
            Call::ReadExecution => {
                let view = self.exec_view(&key, &inst);
                if let Some((h, g)) = &view.holder
                    && *h == inst
                {
                    let epoch = self.procs[p].own.epoch();
                    self.procs[p].held_execs.insert(key.clone(), (*g, epoch));
                }
                Reply::Execution(view)
            }
            Call::Prepare | Call::Pause(_) => Reply::Done,
            Call::Create => {
                if self.daemon.ctrs.values().any(|c| c.key == key) {
                    Reply::NameTaken
                } else {
                    self.daemon.next_id += 1;
                    let id = format!("c{}", self.daemon.next_id);
                    let exit_at = self.now + 1_000 + self.rng.below(60_000);
                    let code = [0, 0, 1, 3][self.rng.below(4) as usize];
                    self.daemon.ctrs.insert(
                        id.clone(),
                        Ctr {
                            exec: e,
                            key: key.clone(),
                            creator: inst.clone(),
                            state: CState::Created,
                            exit_at,
                            code,
                        },
                    );
                    self.ghost.insert(id.clone(), (inst.clone(), 0));
                    self.ghost_since.insert(id.clone(), self.now);
                    let epoch = self.procs[p].own.epoch();
                    self.procs[p].held.insert(id.clone(), (0, epoch));
                    Reply::Created(id)
                }
            }
            Call::Check { id } => {
                if self.daemon.ctrs.contains_key(id) {
                    Reply::Done
                } else {
                    Reply::Gone
                }
            }
            Call::Renew => {
                self.renew(p);
                Reply::Done
            }
            Call::ReadOwner { id } => match self.daemon.snapshot().owner_view(id, &inst) {
                Some(v) => {
                    if v.instance == inst && v.generation > 0 {
                        let epoch = self.procs[p].own.epoch();
                        self.procs[p].held.insert(id.clone(), (v.generation, epoch));
                    }
                    Reply::Owner(v)
                }
                None => Reply::Gone,
            },
            Call::Claim { id, generation } => {
                if !self.daemon.ctrs.contains_key(id) {
                    Reply::Holder(String::new())
                } else {
                    Reply::Holder(self.claim_volume(p, id, *generation))
                }
            }
            Call::ReadLease { instance } => {
                let snap = self.daemon.snapshot();
                Reply::Lease(snap.lease(instance), snap.pinged(&inst, instance))
            }
            Call::Start { id } => {
                self.check_holder(&inst, id, "start")?;
                let exec = match self.daemon.ctrs.get(id) {
                    None => return Ok(Reply::Gone),
                    Some(c) if c.state != CState::Created => return Ok(Reply::Failed),
                    Some(c) => c.exec,
                };
                // Invariants 1 and 2 (a report lost with its killed
                // process never reached the orchestrator: it does not count).
                let counted: Vec<Mono> = self.execs[exec]
                    .reports
                    .iter()
                    .filter(|(i, _)| {
                        self.alive_inst(i) || self.execs[exec].delivered.iter().any(|d| &d.0 == i)
                    })
                    .map(|r| r.1)
                    .collect();
                if let Some(first) = counted.iter().min() {
                    if !self.prunes.iter().any(|t| t >= first) {
                        return Err(self.fail(format!(
                            "{inst} starts {id} of e{exec} after it was reported"
                        )));
                    }
                    self.stats.after_prune += 1;
                }
                self.execs[exec].starts += 1;
                if self.execs[exec].starts > 1 {
                    if self.prunes.is_empty() {
                        return Err(
                            self.fail(format!("e{exec} started twice ({inst} starts {id})"))
                        );
                    }
                    self.stats.after_prune += 1;
                }
                let now = self.now;
                if let Some(c) = self.daemon.ctrs.get_mut(id) {
                    c.state = CState::Running;
                    c.exit_at = c.exit_at.max(now + 1);
                }
                Reply::Done
            }
            Call::Wait { id, .. } => {
                let epoch_changed = self.procs[p]
                    .actors
                    .get(&e)
                    .and_then(|a| a.wait.as_ref())
                    .is_some_and(|w| w.epoch != self.daemon.epoch);
                if epoch_changed {
                    return Ok(Reply::Unreachable);
                }
                match self.daemon.ctrs.get(id) {
                    None => Reply::Gone,
                    Some(c) => match c.state {
                        CState::Exited(code) => Reply::Exited(code),
                        _ if cancel.is_some() => Reply::Cancelled,
                        _ => Reply::StillRunning,
                    },
                }
            }
            Call::Stop { id } => {
                self.check_holder(&inst, id, "stop")?;
                match self.daemon.ctrs.get_mut(id) {
                    None => Reply::Gone,
                    Some(c) => {
                        if c.state != CState::Created {
                            c.state = CState::Exited(143);
                        }
                        Reply::Done
                    }
                }
            }
            Call::Remove { id } => {
                self.check_holder(&inst, id, "remove")?;
                match self.daemon.ctrs.remove(id) {
                    None => Reply::Gone,
                    Some(_) => Reply::Done,
                }
            }
        })
    }

    fn exec_view(&self, key: &str, me: &str) -> ExecView {
        self.daemon.snapshot().exec_view(key, me)
    }

    fn start_cleanup(&mut self, p: usize, k: usize) {
        let mono = self.now + self.procs[p].offset;
        let proc_ = &mut self.procs[p];
        let mut env = Env {
            me: &proc_.inst,
            now: mono,
            lease: &proc_.own,
            live: &mut proc_.live,
            cancel: None,
        };
        let step = proc_.cleanups[k].machine.start(&mut env);
        proc_.cleanups[k].next = step;
        proc_.cleanups[k].decided = proc_.own.epoch();
        proc_.cleanups[k].chosen_at = self.now;
    }

    fn cleanup_step(&mut self, p: usize, k: usize) -> Result<(), Box<Failure>> {
        let next = self.procs[p].cleanups[k].next.clone();
        let e = self.procs[p].cleanups[k].exec;
        let inst = self.procs[p].inst.clone();
        let decided = self.procs[p].cleanups[k].decided;
        let stale = self.now.saturating_sub(self.procs[p].cleanups[k].chosen_at) > FRESH;
        let reply = match &next {
            CleanupStep::Call(call)
                if (call.is_fenced() && decided != self.procs[p].own.epoch())
                    || (call.needs_fresh() && stale) =>
            {
                self.log(format!(
                    "{inst} cleanup e{e} {call:?} -> Lapsed (decided before a lapse, or stale)"
                ));
                Reply::Lapsed
            }
            CleanupStep::Call(call) => {
                self.deciding_at = self.procs[p].cleanups[k].chosen_at;
                let r = self.execute(p, e, call, None)?;
                self.log(format!("{inst} cleanup e{e} {call:?} -> {r:?}"));
                if let Call::Pause(d) = call {
                    self.procs[p].cleanups[k].wake = self.now + d;
                }
                r
            }
            CleanupStep::MarkDone { .. } => {
                if self.reachable(p) {
                    let key = self.execs[e].key.clone();
                    self.mark_done(&key, p);
                    self.log(format!("{inst} cleanup e{e}: execution marked done"));
                    Reply::Done
                } else {
                    Reply::Unreachable
                }
            }
            CleanupStep::MarkReported { .. } | CleanupStep::Finished => {
                self.procs[p].cleanups.remove(k);
                return Ok(());
            }
            CleanupStep::RemoveRecords { id } => {
                if !self.reachable(p) {
                    self.procs[p].cleanups[k].wake = self.now + 1_000;
                    return Ok(());
                }
                let key = self.execs[e].key.clone();
                let id = id.clone();
                self.daemon
                    .vols
                    .retain(|_, v| !matches!(v, Vol::Claim { cid, .. } if *cid == id));
                self.procs[p].held.remove(&id);
                self.mark_done(&key, p);
                self.log(format!("{inst} removed the records of {id}, e{e} done"));
                self.procs[p].cleanups.remove(k);
                return Ok(());
            }
        };
        let mono = self.now + self.procs[p].offset;
        let proc_ = &mut self.procs[p];
        if reply != Reply::Unreachable {
            proc_.live.reached(mono);
        }
        let mut env = Env {
            me: &proc_.inst,
            now: mono,
            lease: &proc_.own,
            live: &mut proc_.live,
            cancel: None,
        };
        let step = proc_.cleanups[k].machine.step(reply, &mut env);
        proc_.cleanups[k].next = step;
        proc_.cleanups[k].decided = proc_.own.epoch();
        proc_.cleanups[k].chosen_at = self.now;
        Ok(())
    }

    /// Ends the holds a prune erased whose holder can no longer make the
    /// claim again: the container's creator (generation 0, its label) holds
    /// it then, and nobody holds the execution.
    fn void_unrecorded(&mut self) {
        let now = self.now;
        let can_remake = |procs: &[Proc], inst: &str, key: &str, exec: bool| {
            procs.iter().any(|p| {
                let held = if exec { &p.held_execs } else { &p.held };
                p.alive
                    && p.inst == inst
                    && p.own.safe(now + p.offset)
                    && held.get(key).is_some_and(|v| v.1 == p.own.epoch())
            })
        };
        let void: Vec<String> = self
            .unrecorded
            .iter()
            .filter(|id| {
                self.ghost
                    .get(*id)
                    .is_none_or(|(h, _)| !can_remake(&self.procs, h, id, false))
            })
            .cloned()
            .collect();
        for id in void {
            self.unrecorded.remove(&id);
            match self.daemon.ctrs.get(&id) {
                Some(c) => {
                    let (owner, g, _) = self.daemon.owner(&id, c);
                    self.ghost_since.insert(id.clone(), self.now);
                    self.ghost.insert(id, (owner, g));
                }
                None => {
                    self.ghost.remove(&id);
                }
            }
        }
        let void: Vec<String> = self
            .unrecorded_exec
            .iter()
            .filter(|k| {
                self.ghost_exec
                    .get(*k)
                    .is_none_or(|(h, _)| !can_remake(&self.procs, h, k, true))
            })
            .cloned()
            .collect();
        for k in void {
            self.unrecorded_exec.remove(&k);
            self.ghost_exec.remove(&k);
        }
    }

    fn alive_inst(&self, inst: &str) -> bool {
        self.procs.iter().any(|p| p.alive && p.inst == inst)
    }

    /// Invariant 3 for a container.
    fn check_holder(&mut self, inst: &str, cid: &str, what: &str) -> Result<(), Box<Failure>> {
        self.stats.checks += 1;
        self.void_unrecorded();
        if what != "report" && !self.daemon.ctrs.contains_key(cid) {
            // Acting on a container that is gone changes nothing.
            return Ok(());
        }
        // A process may act on what it read just before another's claim
        // existed (a prune had erased its own): it acts within FRESH of that
        // read, and the new holder waits FRESH after its claim before it
        // reads and acts.
        let since = self.ghost_since.get(cid).copied().unwrap_or(0);
        if let Some((holder, generation)) = self.ghost.get(cid)
            && holder != inst
            && self.alive_inst(holder)
            && since <= self.deciding_at
        {
            return Err(self.fail(format!(
                "{inst} does {what} on {cid}, which live {holder} holds at generation {generation}"
            )));
        }
        Ok(())
    }

    /// Invariant 3 for an execution reported without a container.
    fn check_exec_holder(&mut self, inst: &str, key: &str) -> Result<(), Box<Failure>> {
        self.stats.checks += 1;
        self.void_unrecorded();
        if let Some((holder, generation)) = self.ghost_exec.get(key)
            && holder != inst
            && self.alive_inst(holder)
        {
            return Err(self.fail(format!(
                "{inst} reports execution {key}, which live {holder} holds at generation {generation}"
            )));
        }
        Ok(())
    }

    /// Invariants checked after every step.
    fn check(&mut self) -> Result<(), Box<Failure>> {
        self.stats.checks += 1;
        let mut running: BTreeMap<usize, usize> = BTreeMap::new();
        for c in self.daemon.ctrs.values() {
            if c.state == CState::Running {
                *running.entry(c.exec).or_default() += 1;
            }
        }
        if let Some((e, n)) = running.iter().find(|(_, n)| **n > 1) {
            return Err(self.fail(format!("{n} running containers for e{e}")));
        }
        Ok(())
    }

    fn check_quiescent(&mut self) -> Result<(), Box<Failure>> {
        self.stats.checks += 1;
        for (e, st) in self.execs.iter().enumerate() {
            if (st.claimed || st.assigned) && st.delivered.is_empty() {
                return Err(self.fail(format!("e{e} was claimed but never reported")));
            }
            if st.delivered.len() > 1 {
                // Allowed only when a reporter lost its lease between the
                // first report and the last (then the daemon's record of
                // the first may be gone: a crash before the removal, or a
                // prune while it was away).
                let first = st.reports.iter().map(|r| r.1).min().unwrap_or(0);
                let last = st.reports.iter().map(|r| r.1).max().unwrap_or(0);
                let disturbed = st.reports.iter().any(|(inst, _)| {
                    self.disturbed.get(inst).is_some_and(|spans| {
                        spans.iter().any(|(from, to)| *from <= last && *to >= first)
                    })
                });
                let pruned = self.prunes.iter().any(|t| *t >= first && *t <= last);
                if !disturbed && !pruned {
                    return Err(self.fail(format!(
                        "e{e} reported {} times, though no reporter lost its lease and nothing was pruned in between",
                        st.delivered.len()
                    )));
                }
                self.stats.duplicates += 1;
            }
        }
        if !self.daemon.ctrs.is_empty() {
            let left: Vec<&String> = self.daemon.ctrs.keys().collect();
            return Err(self.fail(format!("containers left behind: {left:?}")));
        }
        let live: BTreeSet<&str> = self
            .procs
            .iter()
            .filter(|p| p.alive)
            .map(|p| p.inst.as_str())
            .collect();
        let mut left = String::new();
        for (name, v) in &self.daemon.vols {
            // A live process's lease, and pings between live processes
            // (answered at the target's next renewal).
            let ok = match v {
                Vol::Lease { inst, .. } => live.contains(inst.as_str()),
                Vol::Ping { from, to } => {
                    live.contains(from.as_str()) && live.contains(to.as_str())
                }
                _ => false,
            };
            if !ok {
                let _ = write!(left, "{name} ");
            }
        }
        if !left.is_empty() {
            return Err(self.fail(format!("volumes left behind: {left}")));
        }
        Ok(())
    }
}

#[derive(Debug, Clone)]
enum Choice {
    Restart(usize),
    Send(usize, usize),
    Exit(String),
    Renew(usize),
    Reap(usize),
    Task(usize, usize),
    Cleanup(usize, usize),
    Ack(usize, usize),
    Release(usize),
}
