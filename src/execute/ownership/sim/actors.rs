//! Driving a process's machines: starting a task or cleanup machine,
//! stepping it with the reply to its last call (or `Lapsed` when that call
//! was decided before a lapse or on a stale read), and acting on the step
//! it takes next (a call, a report, silence, a cleanup).

use super::super::liveness::FRESH;
use super::super::machine::{
    Call, Cancel, CleanupMachine, CleanupStep, Env, Reply, Step, TaskMachine,
};
use super::Failure;
use super::daemon::Vol;
use super::world::{Actor, Cleaning, Unacked, WaitState, World};

impl World {
    pub(super) fn start_actor(&mut self, p: usize, e: usize, machine: TaskMachine) {
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
    pub(super) fn after(&mut self, p: usize, e: usize, step: Step) -> Result<bool, Box<Failure>> {
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
                        until: poll.then_some(self.now + super::super::machine::FOLLOW_POLL),
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
    pub(super) fn forget_holdings(&mut self, p: usize, e: usize) {
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

    pub(super) fn task_step(&mut self, p: usize, e: usize) -> Result<(), Box<Failure>> {
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

    pub(super) fn start_cleanup(&mut self, p: usize, k: usize) {
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

    pub(super) fn cleanup_step(&mut self, p: usize, k: usize) -> Result<(), Box<Failure>> {
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
}
