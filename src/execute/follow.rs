//! Task containers this process did not start: the container of an
//! execution the orchestrator sent again (found before creating another),
//! and containers adopted from a worker process that is gone.
//!
//! Owns turning such a container into a task outcome: watch it when it
//! runs, read the daemon's record when it ended while nobody watched,
//! remove it when it never started. Who may take a container over is
//! decided by [`super::ownership`]; this module only acts on the verdict.

use std::sync::Arc;
use std::time::{Duration, SystemTime};

use super::names::{self, LABEL_DEADLINE, LABEL_KEEP};
use super::ownership::{self, Leases, OrphanState, TaskVerdict};
use super::{DockerRunner, TaskContainer, claims, exited};
use crate::calendar::parse_rfc3339;
use crate::container_spec::{LABEL_EXECUTION_ID, LABEL_TASK_ID, LABEL_WORKER_ID};
use crate::dispatch::AdoptedTask;
use crate::docker::{ContainerSummary, DockerError};
use crate::logging;
use crate::task::{CancelToken, TaskOutcome};
use crate::wire::{FailureReason, TaskAssignment};

/// Environment names the worker itself sets; their values are not secrets
/// (masking `TASK_ID` would blank the task id out of its own log lines).
const NOT_SECRET: [&str; 4] = [
    "TASK_ID",
    "GIT_TERMINAL_PROMPT",
    "GH_PROMPT_DISABLED",
    "WARP_SERVER_ROOT_URL",
];

/// A container found for a task, and what this process may do with it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct Found {
    id: String,
    state: OrphanState,
    /// This process owns it now: it removes (or keeps) it at the end.
    owned: bool,
    generation: u64,
    has_claims: bool,
    keep: bool,
}

impl DockerRunner {
    /// The container of this very execution (same task and execution id),
    /// if one exists, with the verdict on who may finish it.
    pub(super) fn existing(&self, task: &TaskAssignment) -> Result<Option<Found>, DockerError> {
        let worker = names::label(LABEL_WORKER_ID, &self.settings.spec.worker_id);
        let task_label = names::label(LABEL_TASK_ID, &task.task_id);
        let exec_label = names::label(LABEL_EXECUTION_ID, &task.execution_id);
        let mut list = self
            .docker
            .list_by_label(&[&worker, &task_label, &exec_label])?;
        list.retain(ownership::is_task);
        let Some(c) = list.into_iter().max_by_key(|c| c.created) else {
            return Ok(None);
        };
        let now = self.clock.now_synced(&self.docker)?;
        let volumes = self.docker.volume_list_by_label(&[&worker])?;
        let leases = Leases::from_volumes(&volumes);
        let owner = ownership::owner(&c, &volumes);
        let keep = c.labels.get(LABEL_KEEP).is_some_and(|k| k == "true");
        let found = |state, owned, generation, has_claims| Found {
            id: c.id.clone(),
            state,
            owned,
            generation,
            has_claims,
            keep,
        };
        let state = orphan_state(&c.state);
        let me = &self.settings.instance;
        Ok(Some(
            match ownership::task_verdict(&c, &owner, &leases, me, now) {
                TaskVerdict::Mine => found(state, true, owner.generation, owner.generation > 0),
                TaskVerdict::Theirs => found(state, false, 0, false),
                TaskVerdict::Kept => found(OrphanState::Exited, false, 0, false),
                TaskVerdict::RemoveReported | TaskVerdict::Gone => {
                    found(OrphanState::Exited, true, owner.generation, true)
                }
                TaskVerdict::Orphan { generation, .. } => {
                    let won = claims::try_claim(
                        &self.docker,
                        &self.settings.spec.worker_id,
                        me,
                        &c.id,
                        generation,
                    )?;
                    found(state, won, generation, won)
                }
            },
        ))
    }

    /// Ends `task_id` through a container it did not create.
    pub(super) fn follow(&self, task_id: &str, found: Found, cancel: &CancelToken) -> TaskOutcome {
        let mut container = TaskContainer {
            cleanups: &self.cleanups,
            task_id: task_id.to_owned(),
            id: found.id.clone(),
            keep: found.keep,
            generation: found.generation,
            has_claims: found.has_claims,
            // Not ours to remove: its owner is alive and finishes it.
            detached: !found.owned,
            // An earlier process's private sidecar volumes: the reaper's.
            volumes: Vec::new(),
        };
        let id = found.id;
        match found.state {
            OrphanState::Running => {
                log::info!("watching container {id}, started by an earlier worker process");
                self.watch(&mut container, cancel)
            }
            OrphanState::NeverStarted => {
                log::info!(
                    "removing container {id}: an earlier worker process created it but never started it"
                );
                container.keep = false;
                TaskOutcome::Interrupted
            }
            OrphanState::Exited => match self.docker.inspect(&id) {
                Ok(state) if state.status == "created" => {
                    container.keep = false;
                    TaskOutcome::Interrupted
                }
                Ok(state) => {
                    log::info!(
                        "container {id} exited {} while no worker process watched it",
                        state.exit_code
                    );
                    self.log_tail(&id, state.exit_code);
                    match state.exit_code {
                        0 => TaskOutcome::Completed,
                        code => exited(code, state.oom_killed),
                    }
                }
                Err(e) => TaskOutcome::failed(
                    FailureReason::ContainerWait,
                    format!("reading the state of container {id}: {e}"),
                ),
            },
        }
    }

    /// Claims `orphan` (a task container of a gone worker process) at
    /// `generation` and returns the task that watches it to its end; `None`
    /// when another process won the claim.
    pub fn adopt(
        self: &Arc<Self>,
        orphan: &ContainerSummary,
        generation: u64,
        state: OrphanState,
        previous: &str,
    ) -> Result<Option<AdoptedTask>, DockerError> {
        let worker_id = &self.settings.spec.worker_id;
        let me = &self.settings.instance;
        if !claims::try_claim(&self.docker, worker_id, me, &orphan.id, generation)? {
            return Ok(None);
        }
        let details = self.docker.inspect_details(&orphan.id)?;
        let labels = &details.config.labels;
        let task_id = labels.get(LABEL_TASK_ID).cloned().unwrap_or_default();
        let execution_id = labels.get(LABEL_EXECUTION_ID).cloned().unwrap_or_default();
        let deadline = labels
            .get(LABEL_DEADLINE)
            .and_then(|d| d.parse::<u64>().ok())
            .map(|d| SystemTime::now() + self.clock.until(d));
        let now = self.clock.now();
        let running_for = parse_rfc3339(&details.state.started_at).map_or(Duration::ZERO, |t| {
            Duration::from_secs(now.saturating_sub(t))
        });
        let secrets: Vec<String> = details
            .config
            .env
            .iter()
            .filter_map(|e| e.split_once('='))
            .filter(|(k, _)| !NOT_SECRET.contains(k))
            .map(|(_, v)| v.to_owned())
            .collect();
        let short: String = orphan.id.chars().take(12).collect();
        let what = match state {
            OrphanState::Running => "running",
            OrphanState::Exited => "exited",
            OrphanState::NeverStarted => "never started",
        };
        let from = if previous.is_empty() {
            "an earlier worker process".to_owned()
        } else {
            format!("worker process {previous}")
        };
        log::info!("adopted task {task_id} from {from} (container {short}, {what})");
        let found = Found {
            id: orphan.id.clone(),
            state,
            owned: true,
            generation,
            has_claims: true,
            keep: labels.get(LABEL_KEEP).is_some_and(|k| k == "true"),
        };
        let runner = Arc::clone(self);
        let id = task_id.clone();
        let work = move |cancel: &CancelToken| {
            // Its environment is masked in its own lines, as a task's env_vars are.
            let _scope = logging::TaskScope::with_secrets(&id, Arc::new(EnvSecrets(secrets)));
            runner.as_active(&id, cancel, || runner.follow(&id, found, cancel))
        };
        Ok(Some(AdoptedTask {
            task_id,
            execution_id,
            deadline,
            running_for,
            image: orphan.image.clone(),
            work: Box::new(work),
        }))
    }
}

/// An adopted container's environment values, masked in its task's lines.
struct EnvSecrets(Vec<String>);

impl logging::TaskSecrets for EnvSecrets {
    fn each_secret<'s>(&'s self, f: &mut dyn FnMut(&'s str)) {
        for v in &self.0 {
            f(v);
        }
    }
}

/// The life stage a container's `State` names.
fn orphan_state(state: &str) -> OrphanState {
    match state {
        "created" => OrphanState::NeverStarted,
        "running" | "paused" | "restarting" => OrphanState::Running,
        _ => OrphanState::Exited,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn container_states_map_to_life_stages() {
        assert_eq!(orphan_state("created"), OrphanState::NeverStarted);
        assert_eq!(orphan_state("running"), OrphanState::Running);
        assert_eq!(orphan_state("paused"), OrphanState::Running);
        assert_eq!(orphan_state("exited"), OrphanState::Exited);
        assert_eq!(orphan_state("dead"), OrphanState::Exited);
    }
}
