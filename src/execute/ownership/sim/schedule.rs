//! The seeded scheduler: the run loop, what may happen next (its choices
//! and the next time anything is due), and performing one choice. It picks
//! among what is possible; it must not decide what a process does.

use std::fmt::Write as _;

use super::super::liveness::Mono;
use super::super::machine::{CleanupMachine, CleanupStep, TaskMachine};
use super::daemon::{CState, Vol};
use super::world::{Cleaning, World};
use super::{Failure, Options, TTL};

impl World {
    pub(super) fn run(&mut self, opts: &Options) -> Result<(), Box<Failure>> {
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
                    && next > s + TTL * (super::super::DONE_RETENTION_TTLS + 6)
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
                && self.now > s + TTL * (super::super::DONE_RETENTION_TTLS + 6)
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
            Choice::Restart(i) => self.restart(i),
            Choice::Send(e, i) => self.deliver(e, i),
            Choice::Exit(id) => self.exit(&id),
            Choice::Renew(i) => self.renew(i),
            Choice::Reap(i) => self.reap(i),
            Choice::Task(i, e) => self.task_step(i, e)?,
            Choice::Cleanup(i, k) => self.cleanup_step(i, k)?,
            Choice::Ack(i, k) => self.ack(i, k),
            Choice::Release(i) => self.release(i),
        }
        Ok(())
    }

    /// A killed or stopped process's successor starts in its slot.
    fn restart(&mut self, i: usize) {
        let (_, slot) = self.restarts.remove(i);
        let p = self.new_proc(slot);
        self.log(format!("start {} in slot {slot}", p.inst));
        self.procs[slot] = p;
    }

    /// The orchestrator's `i`th send of execution `e` arrives.
    fn deliver(&mut self, e: usize, i: usize) {
        let (_, slot) = self.execs[e].sends.remove(i);
        if !self.procs[slot].alive || self.procs[slot].stopping {
            // Nobody there: the orchestrator tries again later.
            if self.execs[e].delivered.is_empty() {
                let to = self.rng.below(self.procs.len() as u64) as usize;
                let at = self.now + 2_000 + self.rng.below(5_000);
                self.execs[e].sends.push((at, to));
            }
            return;
        }
        if !self.execs[e].delivered.is_empty() {
            return;
        }
        self.execs[e].assigned = true;
        let inst = self.procs[slot].inst.clone();
        if self.procs[slot].actors.contains_key(&e)
            || self.procs[slot].unacked.iter().any(|u| u.exec == e)
            || self.procs[slot].cleanups.iter().any(|c| c.exec == e)
        {
            self.log(format!("e{e} sent to {inst} again: already active there"));
            return;
        }
        self.log(format!("e{e} assigned to {inst}"));
        let key = self.execs[e].key.clone();
        let machine = TaskMachine::new(
            super::super::machine::Origin::Assigned { dedupe: true },
            &key,
        );
        self.start_actor(slot, e, machine);
    }

    /// A running container's process ends.
    fn exit(&mut self, id: &str) {
        let code = self.daemon.ctrs[id].code;
        if let Some(c) = self.daemon.ctrs.get_mut(id) {
            c.state = CState::Exited(code);
        }
        self.log(format!("container {id} exits {code}"));
    }

    /// The orchestrator reads a terminal message; the process cleans up.
    fn ack(&mut self, i: usize, k: usize) {
        let u = self.procs[i].unacked.remove(k);
        let inst = self.procs[i].inst.clone();
        self.log(format!(
            "orchestrator reads e{}'s terminal from {inst}",
            u.exec
        ));
        self.execs[u.exec].delivered.push((inst, self.now));
        self.stats.reports += 1;
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

    /// A stopping process with nothing left releases its lease and exits.
    fn release(&mut self, i: usize) {
        let inst = self.procs[i].inst.clone();
        if !self.reachable(i) {
            return;
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

#[derive(Debug, Clone)]
/// What may happen next.
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
