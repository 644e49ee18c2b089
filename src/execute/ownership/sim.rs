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
//!
//! Its children, by concern: `daemon` (the simulated daemon and what it
//! reads back as a snapshot), `world` (the processes, executions and
//! ghost ownership one schedule is made of), `schedule` (the seeded
//! scheduler: what may happen next, and doing it), `faults` (the faults it
//! injects), `records` (leases, claims and done marks on the daemon),
//! `reaper` (a process's reaper pass), `actors` (driving the task and
//! cleanup machines), `calls` (performing a machine's call) and
//! `checks` (the invariants).

mod actors;
mod calls;
mod checks;
mod daemon;
mod faults;
mod reaper;
mod records;
mod schedule;
mod world;

use std::collections::BTreeMap;

use super::liveness::Mono;
use world::World;

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
