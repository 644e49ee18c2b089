//! A process's reaper pass: it reads a snapshot, lets the real
//! [`observe`] and [`plan`] decide, and carries out their plans (removals,
//! pings, adoptions of abandoned tasks).

use std::collections::BTreeSet;

use super::super::machine::{Origin, TaskMachine};
use super::super::{Plan, observe, plan};
use super::TTL;
use super::daemon::Vol;
use super::world::World;

impl World {
    /// Process `i`'s reaper pass.
    pub(super) fn reap(&mut self, i: usize) {
        let mono = self.now + self.procs[i].offset;
        self.procs[i].reap_at = self.now + 5_000 + self.rng.below(15_000);
        if !self.reachable(i) {
            self.procs[i].live.cut_off();
            return;
        }
        let snap = self.daemon.snapshot();
        let me = self.procs[i].inst.clone();
        let busy = self.busy(i);
        let plans = {
            let p = &mut self.procs[i];
            observe(&snap, &mut p.live, &me, mono);
            plan(&snap, &p.live, &me, mono, TTL, &|k| busy.contains(k))
        };
        for pl in plans {
            self.carry_out(i, &me, pl);
        }
    }

    /// The executions process `i` is working on (the reaper leaves them be).
    fn busy(&self, i: usize) -> BTreeSet<String> {
        let p = &self.procs[i];
        let mut b: BTreeSet<String> = p
            .actors
            .keys()
            .map(|e| self.execs[*e].key.clone())
            .collect();
        b.extend(p.cleanups.iter().map(|c| self.execs[c.exec].key.clone()));
        b.extend(p.unacked.iter().map(|u| self.execs[u.exec].key.clone()));
        b
    }

    fn carry_out(&mut self, i: usize, me: &str, pl: Plan) {
        match pl {
            Plan::RemoveVolume(name) => {
                self.daemon.vols.remove(&name);
            }
            Plan::Ping(to) => {
                self.daemon.create_volume(
                    format!("ping-{me}-{to}"),
                    Vol::Ping {
                        from: me.to_owned(),
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
                let line = format!("{me} reaper: adopt {id} from {previous} at gen {generation}");
                let origin = Origin::Adopted {
                    id,
                    generation,
                    previous,
                    seen,
                };
                self.take_over(i, &key, line, origin);
            }
            Plan::Abandoned {
                key,
                generation,
                previous,
                seen,
            } => {
                let line = format!("{me} reaper: execution {key} of {previous} abandoned");
                let origin = Origin::Abandoned {
                    generation,
                    previous,
                    seen,
                };
                self.take_over(i, &key, line, origin);
            }
        }
    }

    /// Starts a machine for an adopted or abandoned task, unless process `i`
    /// already runs one for that execution.
    fn take_over(&mut self, i: usize, key: &str, line: String, origin: Origin) {
        let e = self.exec_of(key);
        if self.procs[i].actors.contains_key(&e) {
            return;
        }
        self.log(line);
        let m = TaskMachine::new(origin, key);
        self.start_actor(i, e, m);
    }

    fn exec_of(&self, key: &str) -> usize {
        self.execs.iter().position(|e| e.key == key).unwrap_or(0)
    }
}
