//! The executor's reads of the daemon's records: a snapshot of every
//! record of this worker id, and the calls made from it (an execution's
//! record, a container's owner, a process's lease and ping). A read that
//! shows this process as holder is remembered as held; it changes nothing
//! on the daemon.

use super::super::names::{
    self, LABEL_INSTANCE, LABEL_LEASE_SEQ, LABEL_ROLE, ROLE_LEASE, ROLE_RELEASED,
};
use super::super::ownership::Snapshot;
use super::super::ownership::label;
use super::super::ownership::machine::{OwnerView, RELEASED, Reply, Stage};
use super::{Executor, TaskIds, reply_of};
use crate::container_spec::LABEL_WORKER_ID;
use crate::docker::DockerError;

impl Executor {
    pub(super) fn read_execution(&self, ids: &TaskIds<'_>) -> Reply {
        let o = &self.ownership;
        match self.snapshot() {
            Ok(snap) => {
                let mut view = snap.exec_view(ids.key, o.instance());
                if let Some((id, owner)) = &mut view.container {
                    self.exit_code(id, owner);
                    if owner.instance == o.instance() {
                        o.hold(id, owner.generation);
                    }
                }
                if let Some((h, g)) = &view.holder
                    && h == o.instance()
                {
                    o.hold_exec(ids.key, *g, (ids.task_id, ids.execution_id));
                }
                Reply::Execution(view)
            }
            Err(e) => reply_of(&e),
        }
    }

    pub(super) fn read_owner(&self, id: &str) -> Reply {
        let o = &self.ownership;
        match self.snapshot() {
            Ok(snap) => match snap.owner_view(id, o.instance()) {
                Some(mut view) => {
                    self.exit_code(id, &mut view);
                    if view.instance == o.instance() && view.generation > 0 {
                        o.hold(id, view.generation);
                    }
                    Reply::Owner(view)
                }
                None => Reply::Gone,
            },
            Err(e) => reply_of(&e),
        }
    }

    /// `instance`'s lease value, and whether this process pinged it.
    pub(super) fn read_lease(&self, instance: &str) -> Reply {
        let me = self.ownership.instance();
        match self.lease_of(instance) {
            Ok(value) => match self.docker.volume_inspect(&names::ping_name(me, instance)) {
                Ok(ping) => Reply::Lease(value, ping.is_some()),
                Err(e) => reply_of(&e),
            },
            Err(e) => reply_of(&e),
        }
    }

    /// One look at every record of this worker id.
    fn snapshot(&self) -> Result<Snapshot, DockerError> {
        let worker = names::label(LABEL_WORKER_ID, self.ownership.worker_id());
        let containers = self.docker.list_by_label(&[&worker])?;
        let volumes = self.docker.volume_list_by_label(&[&worker])?;
        Ok(Snapshot::from_daemon(&containers, &volumes))
    }

    /// The real exit code of an ended container (a list has none).
    fn exit_code(&self, id: &str, view: &mut OwnerView) {
        if let Stage::Exited(_) = view.stage
            && let Ok(state) = self.docker.inspect(id)
        {
            view.stage = match state.status.as_str() {
                "created" => Stage::Created,
                _ if state.running => Stage::Running,
                _ => Stage::Exited(state.exit_code),
            };
        }
    }

    /// `instance`'s lease value: its newest sequence number, or released.
    fn lease_of(&self, instance: &str) -> Result<Option<String>, DockerError> {
        let worker = names::label(LABEL_WORKER_ID, self.ownership.worker_id());
        let of = names::label(LABEL_INSTANCE, instance);
        let mut best: Option<u64> = None;
        for v in self.docker.volume_list_by_label(&[&worker, &of])? {
            match label(&v.labels, LABEL_ROLE) {
                Some(ROLE_RELEASED) => return Ok(Some(RELEASED.to_owned())),
                Some(ROLE_LEASE) => {
                    if let Some(seq) =
                        label(&v.labels, LABEL_LEASE_SEQ).and_then(|s| s.parse().ok())
                    {
                        best = Some(best.map_or(seq, |b: u64| b.max(seq)));
                    }
                }
                _ => {}
            }
        }
        Ok(best.map(|s| s.to_string()))
    }
}
