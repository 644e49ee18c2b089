//! Performing a machine's call against the simulated daemon, for one
//! process: the reply it gets, and the invariants a start, stop or removal
//! must keep (checked before the call takes effect).

use super::super::liveness::Mono;
use super::super::machine::{Call, Cancel, ExecView, Reply};
use super::Failure;
use super::daemon::{CState, Ctr};
use super::world::World;

impl World {
    /// Performs `call` for process `p` against the daemon.
    pub(super) fn execute(
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
            Call::ReadExecution => self.read_execution(p, &key, &inst),
            Call::Prepare | Call::Pause(_) => Reply::Done,
            Call::Create => self.create(p, e, &key, &inst),
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
            Call::ReadOwner { id } => self.read_owner(p, id, &inst),
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
            Call::Start { id } => self.start(&inst, id)?,
            Call::Wait { id, .. } => self.wait(p, e, id, cancel),
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

    fn read_execution(&mut self, p: usize, key: &str, inst: &str) -> Reply {
        let view = self.exec_view(key, inst);
        if let Some((h, g)) = &view.holder
            && *h == inst
        {
            let epoch = self.procs[p].own.epoch();
            self.procs[p].held_execs.insert(key.to_owned(), (*g, epoch));
        }
        Reply::Execution(view)
    }

    fn create(&mut self, p: usize, e: usize, key: &str, inst: &str) -> Reply {
        if self.daemon.ctrs.values().any(|c| c.key == key) {
            return Reply::NameTaken;
        }
        self.daemon.next_id += 1;
        let id = format!("c{}", self.daemon.next_id);
        let exit_at = self.now + 1_000 + self.rng.below(60_000);
        let code = [0, 0, 1, 3][self.rng.below(4) as usize];
        self.daemon.ctrs.insert(
            id.clone(),
            Ctr {
                exec: e,
                key: key.to_owned(),
                creator: inst.to_owned(),
                state: CState::Created,
                exit_at,
                code,
            },
        );
        self.ghost.insert(id.clone(), (inst.to_owned(), 0));
        self.ghost_since.insert(id.clone(), self.now);
        let epoch = self.procs[p].own.epoch();
        self.procs[p].held.insert(id.clone(), (0, epoch));
        Reply::Created(id)
    }

    fn read_owner(&mut self, p: usize, id: &str, inst: &str) -> Reply {
        match self.daemon.snapshot().owner_view(id, inst) {
            Some(v) => {
                if v.instance == inst && v.generation > 0 {
                    let epoch = self.procs[p].own.epoch();
                    self.procs[p]
                        .held
                        .insert(id.to_owned(), (v.generation, epoch));
                }
                Reply::Owner(v)
            }
            None => Reply::Gone,
        }
    }

    /// Starts container `id`, checking invariants 1, 2 and 3 first.
    fn start(&mut self, inst: &str, id: &str) -> Result<Reply, Box<Failure>> {
        self.check_holder(inst, id, "start")?;
        let exec = match self.daemon.ctrs.get(id) {
            None => return Ok(Reply::Gone),
            Some(c) if c.state != CState::Created => return Ok(Reply::Failed),
            Some(c) => c.exec,
        };
        self.check_first_start(inst, id, exec)?;
        let now = self.now;
        if let Some(c) = self.daemon.ctrs.get_mut(id) {
            c.state = CState::Running;
            c.exit_at = c.exit_at.max(now + 1);
        }
        Ok(Reply::Done)
    }

    /// Invariants 1 and 2: no start after a report, no second start (both
    /// allowed only after a prune erased the daemon's record of the first).
    /// A report lost with its killed process never reached the
    /// orchestrator: it does not count.
    fn check_first_start(&mut self, inst: &str, id: &str, exec: usize) -> Result<(), Box<Failure>> {
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
                return Err(self.fail(format!("e{exec} started twice ({inst} starts {id})")));
            }
            self.stats.after_prune += 1;
        }
        Ok(())
    }

    fn wait(&mut self, p: usize, e: usize, id: &str, cancel: Option<Cancel>) -> Reply {
        let epoch_changed = self.procs[p]
            .actors
            .get(&e)
            .and_then(|a| a.wait.as_ref())
            .is_some_and(|w| w.epoch != self.daemon.epoch);
        if epoch_changed {
            return Reply::Unreachable;
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

    fn exec_view(&self, key: &str, me: &str) -> ExecView {
        self.daemon.snapshot().exec_view(key, me)
    }
}
