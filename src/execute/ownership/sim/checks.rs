//! The invariants of the ownership protocol, checked against the ghost
//! ownership: one running container per execution, only the holder acts on
//! or reports what it holds, nothing reported twice without a disturbance,
//! nothing left behind at quiescence.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt::Write as _;

use super::Failure;
use super::daemon::{CState, Vol};
use super::world::{Proc, World};

impl World {
    /// Ends the holds a prune erased whose holder can no longer make the
    /// claim again: the container's creator (generation 0, its label) holds
    /// it then, and nobody holds the execution.
    pub(super) fn void_unrecorded(&mut self) {
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

    pub(super) fn alive_inst(&self, inst: &str) -> bool {
        self.procs.iter().any(|p| p.alive && p.inst == inst)
    }

    /// Invariant 3 for a container.
    pub(super) fn check_holder(
        &mut self,
        inst: &str,
        cid: &str,
        what: &str,
    ) -> Result<(), Box<Failure>> {
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
    pub(super) fn check_exec_holder(&mut self, inst: &str, key: &str) -> Result<(), Box<Failure>> {
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
    pub(super) fn check(&mut self) -> Result<(), Box<Failure>> {
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

    pub(super) fn check_quiescent(&mut self) -> Result<(), Box<Failure>> {
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
