//! The ownership protocol under a seeded random scheduler with faults
//! (`execute::ownership::sim`): the real state machines of several worker
//! processes against a simulated daemon, every invariant checked after
//! every step. A failure prints its seed and the trace that led to it.
//! This debug-build run is a smoke run; `.ci/run` runs 100,000 schedules
//! of the release build (`examples/ownership_sim.rs`).

use oz_agent_worker::execute::ownership::sim::{self, Options};

#[test]
fn every_invariant_holds_under_kills_freezes_cuts_restarts_prunes_and_resends() {
    let opts = Options::default();
    match sim::run_many(1, 1_500, &opts) {
        Ok(stats) => {
            assert_eq!(stats.schedules, 1_500);
            // The faults did happen: a run without them would prove nothing.
            for fault in [
                "sigkill",
                "freeze past ttl",
                "process cut off",
                "daemon restart",
                "volume prune",
            ] {
                assert!(
                    stats.faults.get(fault).copied().unwrap_or(0) > 100,
                    "{fault}: {stats:?}"
                );
            }
            assert!(stats.reports > 3_000, "{stats:?}");
        }
        Err(failure) => panic!("{failure}"),
    }
}

/// Schedules where `docker volume prune` erased a claim and two processes
/// then acted on one container, found by the simulator before the fix (a
/// holder frozen inside its safe window; a prune landing during a lapsed
/// process's wait; two claims of one generation after a prune).
#[test]
fn the_prune_schedules_that_broke_ownership_hold_now() {
    let opts = Options::default();
    for seed in [11_514, 35_256, 36_598, 43_794, 66_576] {
        if let Err(failure) = sim::run(seed, &opts) {
            panic!("{failure}");
        }
    }
}

#[test]
fn a_failure_names_its_seed_and_replays_identically() {
    let opts = Options::default();
    let a = sim::run(42, &opts).map(|s| (s.steps, s.reports));
    let b = sim::run(42, &opts).map(|s| (s.steps, s.reports));
    match (a, b) {
        (Ok(a), Ok(b)) => assert_eq!(a, b),
        (Err(a), Err(b)) => {
            assert_eq!(a.seed, 42);
            assert_eq!(a.trace, b.trace);
        }
        (a, b) => panic!("the same seed ran two ways: {a:?} / {b:?}"),
    }
}
