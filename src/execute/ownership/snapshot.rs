//! The daemon snapshot: one worker id's containers and volumes read into
//! the records the machines and the reaper's plan judge (task containers
//! and their owners, executions and their claims, leases, pings). Reads
//! labels only; decides nothing.

use std::collections::{BTreeMap, HashMap};

use super::liveness::Mono;
use super::machine::{ExecView, OwnerView, RELEASED, Stage};
use super::{is_helper, is_task, label};
use crate::container_spec::{LABEL_EXECUTION_ID, LABEL_TASK_ID, LABEL_WORKER_ID};
use crate::docker::{ContainerSummary, VolumeInfo};
use crate::execute::names::{
    self, LABEL_CONTAINER, LABEL_EXEC_KEY, LABEL_GENERATION, LABEL_INSTANCE, LABEL_KEEP,
    LABEL_LEASE_SEQ, LABEL_LEASE_TTL, LABEL_REPORTED, LABEL_ROLE, LABEL_TARGET, ROLE_CLAIM,
    ROLE_EXEC, ROLE_EXEC_DONE, ROLE_LEASE, ROLE_PING, ROLE_RELEASED, ROLE_TASK_SIDECAR,
};

/// A task container as the reaper sees it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TaskRecord {
    /// Container id.
    pub id: String,
    /// Its execution key.
    pub key: String,
    /// Its owner record.
    pub owner: OwnerView,
    /// Cleanup was off when it was made.
    pub keep: bool,
}

/// An execution's claims as the reaper sees them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ExecRecord {
    /// The execution key.
    pub key: String,
    /// The highest claim: holder and generation (`None`: only a tombstone).
    pub holder: Option<(String, u64)>,
    /// The holder's lease.
    pub holder_lease: Option<String>,
    /// Marked done.
    pub done: bool,
    /// Every volume of it (claims and tombstone).
    pub volumes: Vec<String>,
    /// The task id its claims name.
    pub task_id: String,
    /// The execution id its claims name.
    pub execution_id: String,
}

/// One look at the daemon's records of a worker id.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Snapshot {
    /// Task containers.
    pub tasks: Vec<TaskRecord>,
    /// Executions.
    pub execs: Vec<ExecRecord>,
    /// Each instance's lease value and its lease volumes.
    pub leases: BTreeMap<String, (String, Vec<String>)>,
    /// Claim volumes: name and the container they are about.
    pub claims: Vec<(String, String)>,
    /// Each instance's lease ttl as its lease says, milliseconds.
    pub lease_ttls: BTreeMap<String, Mono>,
    /// Pings: from, to, volume name.
    pub pings: Vec<(String, String, String)>,
    /// Instances named by helper containers and private sidecar volumes.
    pub others: Vec<String>,
}
impl Snapshot {
    /// The execution record of `key`, as `me` sees it (its pings).
    pub fn exec_view(&self, key: &str, me: &str) -> ExecView {
        let exec = self.execs.iter().find(|e| e.key == key);
        let container = self
            .tasks
            .iter()
            .filter(|t| t.key == key)
            .max_by_key(|t| t.owner.stage == Stage::Running)
            .map(|t| (t.id.clone(), self.seen_by(t.owner.clone(), me)));
        let holder = exec.and_then(|e| e.holder.clone());
        ExecView {
            holder_pinged: holder.as_ref().is_some_and(|(h, _)| self.pinged(me, h)),
            holder,
            holder_lease: exec.and_then(|e| e.holder_lease.clone()),
            done: exec.is_some_and(|e| e.done),
            container,
        }
    }

    /// The owner record of container `id`, as `me` sees it.
    pub fn owner_view(&self, id: &str, me: &str) -> Option<OwnerView> {
        self.tasks
            .iter()
            .find(|t| t.id == id)
            .map(|t| self.seen_by(t.owner.clone(), me))
    }

    pub(super) fn seen_by(&self, mut view: OwnerView, me: &str) -> OwnerView {
        view.pinged = self.pinged(me, &view.instance);
        view
    }

    /// Whether `from`'s ping to `to` is there.
    pub fn pinged(&self, from: &str, to: &str) -> bool {
        self.pings.iter().any(|(f, t, _)| f == from && t == to)
    }

    /// An instance's lease value (`None`: none seen).
    pub fn lease(&self, instance: &str) -> Option<String> {
        self.leases.get(instance).map(|(v, _)| v.clone())
    }

    /// Builds a snapshot from the daemon's lists of one worker id's
    /// containers and volumes. Objects with unreadable labels are skipped.
    pub fn from_daemon(containers: &[ContainerSummary], volumes: &[VolumeInfo]) -> Self {
        let mut snap = Snapshot::default();
        snap.read_leases_and_pings(volumes);
        snap.read_others(containers, volumes);
        let claims = snap.read_claims_and_execs(volumes);
        snap.read_tasks(containers, &claims);
        snap
    }

    /// Leases (the highest sequence of each instance, or released), their
    /// ttls, and pings.
    fn read_leases_and_pings(&mut self, volumes: &[VolumeInfo]) {
        let mut best_lease: HashMap<String, u64> = HashMap::new();
        for v in volumes {
            let Some(instance) = label(&v.labels, LABEL_INSTANCE) else {
                continue;
            };
            match label(&v.labels, LABEL_ROLE) {
                Some(ROLE_LEASE) => {
                    let Some(seq) = label(&v.labels, LABEL_LEASE_SEQ).and_then(|s| s.parse().ok())
                    else {
                        continue;
                    };
                    if let Some(ttl) = label(&v.labels, LABEL_LEASE_TTL)
                        .and_then(|t| t.parse::<u64>().ok())
                        .and_then(|t| t.checked_mul(1000))
                    {
                        self.lease_ttls.insert(instance.to_owned(), ttl);
                    }
                    let e = self
                        .leases
                        .entry(instance.to_owned())
                        .or_insert_with(|| (String::new(), Vec::new()));
                    e.1.push(v.name.clone());
                    let best = best_lease.entry(instance.to_owned()).or_insert(0);
                    if e.0 != RELEASED && seq >= *best {
                        *best = seq;
                        e.0 = seq.to_string();
                    }
                }
                Some(ROLE_PING) => {
                    if let Some(to) = label(&v.labels, LABEL_TARGET) {
                        self.pings
                            .push((instance.to_owned(), to.to_owned(), v.name.clone()));
                    }
                }
                Some(ROLE_RELEASED) => {
                    let e = self
                        .leases
                        .entry(instance.to_owned())
                        .or_insert_with(|| (String::new(), Vec::new()));
                    e.1.push(v.name.clone());
                    e.0 = RELEASED.to_owned();
                }
                _ => {}
            }
        }
    }

    /// Instances named by helper containers and private sidecar volumes.
    fn read_others(&mut self, containers: &[ContainerSummary], volumes: &[VolumeInfo]) {
        for instance in containers
            .iter()
            .filter(|c| is_helper(c))
            .filter_map(|c| label(&c.labels, LABEL_INSTANCE))
            .chain(
                volumes
                    .iter()
                    .filter(|v| label(&v.labels, LABEL_ROLE) == Some(ROLE_TASK_SIDECAR))
                    .filter_map(|v| label(&v.labels, LABEL_INSTANCE)),
            )
        {
            if !self.others.iter().any(|o| o == instance) {
                self.others.push(instance.to_owned());
            }
        }
    }

    /// Claim volumes and executions (their holders' leases need the leases
    /// read first). Returns each container's claims: generation, instance,
    /// reported.
    fn read_claims_and_execs<'a>(&mut self, volumes: &'a [VolumeInfo]) -> Claims<'a> {
        let mut claims: Claims<'a> = HashMap::new();
        let mut execs: BTreeMap<String, ExecRecord> = BTreeMap::new();
        for v in volumes {
            let role = label(&v.labels, LABEL_ROLE);
            let instance = label(&v.labels, LABEL_INSTANCE).unwrap_or("");
            let generation: Option<u64> =
                label(&v.labels, LABEL_GENERATION).and_then(|g| g.parse().ok());
            match role {
                Some(ROLE_CLAIM) => {
                    let Some(container) = label(&v.labels, LABEL_CONTAINER) else {
                        continue;
                    };
                    self.claims.push((v.name.clone(), container.to_owned()));
                    if let Some(g) = generation {
                        let reported = label(&v.labels, LABEL_REPORTED) == Some("true");
                        claims
                            .entry(container)
                            .or_default()
                            .push((g, instance, reported));
                    }
                }
                Some(ROLE_EXEC) | Some(ROLE_EXEC_DONE) => {
                    let Some(key) = label(&v.labels, LABEL_EXEC_KEY) else {
                        continue;
                    };
                    let e = execs.entry(key.to_owned()).or_insert_with(|| ExecRecord {
                        key: key.to_owned(),
                        holder: None,
                        holder_lease: None,
                        done: false,
                        volumes: Vec::new(),
                        task_id: label(&v.labels, LABEL_TASK_ID).unwrap_or("").to_owned(),
                        execution_id: label(&v.labels, LABEL_EXECUTION_ID)
                            .unwrap_or("")
                            .to_owned(),
                    });
                    e.volumes.push(v.name.clone());
                    if role == Some(ROLE_EXEC_DONE) {
                        e.done = true;
                    } else if let Some(g) = generation
                        && e.holder.as_ref().is_none_or(|(_, best)| g > *best)
                    {
                        e.holder = Some((instance.to_owned(), g));
                    }
                }
                _ => {}
            }
        }
        for e in execs.values_mut() {
            e.holder_lease = e.holder.as_ref().and_then(|(h, _)| self.lease(h));
        }
        self.execs = execs.into_values().collect();
        claims
    }

    /// Task containers with their owner records: the highest claim's
    /// instance (else the container's own), reported by a claim or the
    /// execution's tombstone.
    fn read_tasks(&mut self, containers: &[ContainerSummary], claims: &Claims<'_>) {
        let done: Vec<&str> = self
            .execs
            .iter()
            .filter(|e| e.done)
            .map(|e| e.key.as_str())
            .collect();
        let mut tasks = Vec::new();
        for c in containers.iter().filter(|c| is_task(c)) {
            let key = task_key(c);
            let key = key.as_str();
            let mut instance = label(&c.labels, LABEL_INSTANCE).unwrap_or("").to_owned();
            let mut generation = 0;
            let mut reported = false;
            for (g, i, r) in claims.get(c.id.as_str()).into_iter().flatten() {
                reported |= *r;
                if *g > generation {
                    generation = *g;
                    instance = (*i).to_owned();
                }
            }
            reported |= done.contains(&key);
            let lease = self.lease(&instance);
            tasks.push(TaskRecord {
                id: c.id.clone(),
                key: key.to_owned(),
                owner: OwnerView {
                    instance,
                    generation,
                    reported,
                    stage: stage_of(&c.state),
                    lease,
                    pinged: false,
                },
                keep: label(&c.labels, LABEL_KEEP) == Some("true"),
            });
        }
        self.tasks.extend(tasks);
    }
}

/// Each container's claims: generation, instance, reported.
type Claims<'a> = HashMap<&'a str, Vec<(u64, &'a str, bool)>>;

/// A task container's execution key. A container of an earlier version has
/// no key: its execution's own, or (no execution id) one of its own.
fn task_key(c: &ContainerSummary) -> String {
    match label(&c.labels, LABEL_EXEC_KEY) {
        Some(key) => key.to_owned(),
        None => match label(&c.labels, LABEL_EXECUTION_ID) {
            Some(e) => names::exec_key(
                label(&c.labels, LABEL_WORKER_ID).unwrap_or(""),
                label(&c.labels, LABEL_TASK_ID).unwrap_or(""),
                e,
            ),
            None => format!("legacy-{}", c.id),
        },
    }
}

/// A container state's stage.
fn stage_of(state: &str) -> Stage {
    match state {
        "created" => Stage::Created,
        "running" | "paused" | "restarting" | "removing" => Stage::Running,
        // The summary has no exit code; readers that need it inspect.
        _ => Stage::Exited(0),
    }
}
