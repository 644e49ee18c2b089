//! A process's records on the daemon: lease renewals (which also make
//! again the claims a prune erased), container and execution claims, and
//! marking an execution done. Keeps the ghost ownership in step with the
//! claims made.

use std::collections::BTreeMap;

use super::RENEW_EVERY;
use super::daemon::Vol;
use super::world::World;

impl World {
    pub(super) fn mark_done(&mut self, key: &str, p: usize) {
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

    pub(super) fn renew(&mut self, i: usize) {
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
        let held = if safe {
            held_in(&self.procs[i].held, epoch)
        } else {
            Vec::new()
        };
        for (cid, generation) in held {
            if generation > 0 && self.daemon.ctrs.contains_key(&cid) {
                self.claim_volume(i, &cid, generation);
            }
        }
        let execs = if safe {
            held_in(&self.procs[i].held_execs, epoch)
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

    pub(super) fn claim_volume(&mut self, p: usize, cid: &str, generation: u64) -> String {
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

    pub(super) fn exec_volume(&mut self, p: usize, key: &str, generation: u64) -> String {
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
}

/// The claims of `held` last seen held in lease `epoch`: name and generation.
fn held_in(held: &BTreeMap<String, (u64, u64)>, epoch: u64) -> Vec<(String, u64)> {
    held.iter()
        .filter(|(_, v)| v.1 == epoch)
        .map(|(k, v)| (k.clone(), v.0))
        .collect()
}
