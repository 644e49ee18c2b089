//! The simulated daemon: its containers and volumes, and the snapshot a
//! process reads back from them (what `docker ps` and `docker volume ls`
//! would show). Owns only the daemon's state; it must not know about
//! processes or the scheduler.

use std::collections::{BTreeMap, BTreeSet};

use super::super::liveness::Mono;
use super::super::machine::{OwnerView, RELEASED, Stage};
use super::super::{ExecRecord, Snapshot, TaskRecord};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum CState {
    Created,
    Running,
    Exited(i64),
}

#[derive(Debug, Clone)]
pub(super) struct Ctr {
    pub(super) exec: usize,
    pub(super) key: String,
    pub(super) creator: String,
    pub(super) state: CState,
    pub(super) exit_at: Mono,
    pub(super) code: i64,
}

#[derive(Debug, Clone)]
pub(super) enum Vol {
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
pub(super) struct Daemon {
    pub(super) ctrs: BTreeMap<String, Ctr>,
    pub(super) vols: BTreeMap<String, Vol>,
    pub(super) down_until: Mono,
    /// Bumped when the daemon restarts: waits in flight break.
    pub(super) epoch: u64,
    pub(super) next_id: u64,
}

impl Daemon {
    pub(super) fn create_volume(&mut self, name: String, vol: Vol) -> &Vol {
        self.vols.entry(name).or_insert(vol)
    }

    pub(super) fn snapshot(&self) -> Snapshot {
        let mut snap = Snapshot::default();
        self.leases_claims_pings(&mut snap);
        let mut execs = self.exec_records();
        for e in execs.values_mut() {
            e.holder_lease = e.holder.as_ref().and_then(|(h, _)| snap.lease(h));
        }
        snap.execs = execs.into_values().collect();
        self.task_records(&mut snap);
        snap
    }

    /// The leases (each instance's newest, or released), claims and pings.
    fn leases_claims_pings(&self, snap: &mut Snapshot) {
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
    }

    /// Each execution's record: its volumes, highest holder and done mark.
    fn exec_records(&self) -> BTreeMap<String, ExecRecord> {
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
        execs
    }

    /// Each container with the owner its claims name.
    fn task_records(&self, snap: &mut Snapshot) {
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
    }

    pub(super) fn owner(&self, cid: &str, c: &Ctr) -> (String, u64, bool) {
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
