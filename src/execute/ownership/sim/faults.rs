//! The faults the scheduler injects: SIGKILL, freezes, processes cut off,
//! daemon restarts, volume prunes, clean stops, cancellations and resends,
//! and the orchestrator's resends after a process is gone.

use super::super::liveness::Mono;
use super::super::machine::Cancel;
use super::daemon::CState;
use super::world::World;
use super::{Failure, TTL};

impl World {
    pub(super) fn inject(&mut self) -> Result<(), Box<Failure>> {
        let slot = self.rng.below(self.procs.len() as u64) as usize;
        let kind = self.rng.below(9);
        let alive = self.procs[slot].alive;
        let name = match kind {
            0 if alive => Some(self.sigkill(slot)),
            1 if alive => Some(self.freeze(slot)),
            2 if alive => Some(self.cut_off(slot)),
            3 => Some(self.daemon_restart()),
            4 if self.prune && self.now >= self.daemon.down_until => Some(self.prune_volumes()),
            5 if alive && !self.procs[slot].stopping => Some(self.clean_stop(slot)),
            6 => self.cancel_one(),
            7 => self.resend_one(slot),
            _ => None,
        };
        if let Some(name) = name {
            *self.stats.faults.entry(name).or_default() += 1;
        }
        Ok(())
    }

    fn sigkill(&mut self, slot: usize) -> &'static str {
        let inst = self.procs[slot].inst.clone();
        self.log(format!("FAULT SIGKILL {inst}"));
        self.kill(slot);
        "sigkill"
    }

    fn freeze(&mut self, slot: usize) -> &'static str {
        let d = TTL + self.rng.below(3 * TTL);
        self.procs[slot].frozen_until = self.now + d;
        let inst = self.procs[slot].inst.clone();
        self.disturb(&inst, self.now + d);
        self.log(format!("FAULT freeze {inst} for {d}ms"));
        "freeze past ttl"
    }

    fn cut_off(&mut self, slot: usize) -> &'static str {
        let d = self.rng.below(3 * TTL);
        self.procs[slot].cut_until = self.now + d;
        let inst = self.procs[slot].inst.clone();
        self.disturb(&inst, self.now + d);
        self.log(format!("FAULT cut {inst} off the daemon for {d}ms"));
        "process cut off"
    }

    fn daemon_restart(&mut self) -> &'static str {
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

    fn prune_volumes(&mut self) -> &'static str {
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

    fn clean_stop(&mut self, slot: usize) -> &'static str {
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

    /// A cancellation (user or timeout) to a process that has the task.
    fn cancel_one(&mut self) -> Option<&'static str> {
        let candidates: Vec<(usize, usize)> = self
            .procs
            .iter()
            .enumerate()
            .filter(|(_, p)| p.alive)
            .flat_map(|(i, p)| p.actors.keys().map(move |e| (i, *e)))
            .collect();
        if candidates.is_empty() {
            return None;
        }
        let (p, e) = candidates[self.rng.below(candidates.len() as u64) as usize];
        if let Some(a) = self.procs[p].actors.get_mut(&e) {
            a.cancel.get_or_insert(Cancel::Stop);
        }
        self.log(format!("FAULT cancel e{e} at {}", self.procs[p].inst));
        Some("cancel")
    }

    /// A resend of an execution not yet delivered.
    fn resend_one(&mut self, slot: usize) -> Option<&'static str> {
        let open: Vec<usize> = (0..self.execs.len())
            .filter(|e| self.execs[*e].delivered.is_empty() && self.execs[*e].assigned)
            .collect();
        if open.is_empty() {
            return None;
        }
        let e = open[self.rng.below(open.len() as u64) as usize];
        let at = self.now + self.rng.below(5_000);
        self.execs[e].sends.push((at, slot));
        self.log(format!("FAULT resend e{e} to slot {slot}"));
        Some("resend")
    }

    pub(super) fn kill(&mut self, slot: usize) {
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

    pub(super) fn resend_undelivered(&mut self) {
        for e in 0..self.execs.len() {
            if self.execs[e].delivered.is_empty() && self.execs[e].assigned {
                let to = self.rng.below(self.procs.len() as u64) as usize;
                let at = self.now + 1_000 + self.rng.below(10_000);
                self.execs[e].sends.push((at, to));
            }
        }
    }
}
