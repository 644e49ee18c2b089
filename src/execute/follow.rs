//! Task containers this process did not create: containers of worker
//! processes judged gone, found by the reaper, and executions whose holder
//! is gone before it made a container. Each becomes an [`AdoptedTask`]
//! whose work drives the ownership machine from its adoption: it claims
//! the container (or the execution) on its own thread, so nothing is
//! claimed that no thread of this process watches.
//!
//! Owns turning a reaper's plan into an adopted task; who may take what
//! over is [`super::ownership`]'s decision, the calls are [`super::drive`]'s.

use std::sync::Arc;
use std::time::{Duration, SystemTime};

use super::DockerRunner;
use super::drive::{NoWork, TaskIds};
use super::names::LABEL_DEADLINE;
use super::ownership::label;
use super::ownership::machine::{Origin, TaskMachine};
use crate::calendar::parse_rfc3339;
use crate::container_spec::{LABEL_EXECUTION_ID, LABEL_TASK_ID};
use crate::dispatch::AdoptedTask;
use crate::docker::DockerError;
use crate::logging;
use crate::task::{CancelToken, TaskOutcome};

/// Environment names the worker itself sets; their values are not secrets
/// (masking `TASK_ID` would blank the task id out of its own log lines).
const NOT_SECRET: [&str; 4] = [
    "TASK_ID",
    "GIT_TERMINAL_PROMPT",
    "GH_PROMPT_DISABLED",
    "WARP_SERVER_ROOT_URL",
];

/// The latest deadline a label may name: ten years on. A later one (or an
/// unreadable one) is no deadline at all, logged.
const LONGEST_DEADLINE: Duration = Duration::from_secs(10 * 365 * 24 * 3600);

impl DockerRunner {
    /// The task that takes over container `id` of `previous` (judged gone)
    /// at `generation` and watches it to its end. Reads the container only
    /// (its claim is made by the task's own thread).
    pub fn adopt(
        self: &Arc<Self>,
        id: &str,
        key: &str,
        generation: u64,
        previous: &str,
        seen: Option<String>,
    ) -> Result<AdoptedTask, DockerError> {
        let details = self.docker.inspect_details(id)?;
        let labels = &details.config.labels;
        let task_id = label(labels, LABEL_TASK_ID).unwrap_or("").to_owned();
        let execution_id = label(labels, LABEL_EXECUTION_ID).unwrap_or("").to_owned();
        let deadline = label(labels, LABEL_DEADLINE).and_then(|d| self.deadline_of(id, d));
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
        let short: String = id.chars().take(12).collect();
        let from = if previous.is_empty() {
            "an earlier worker process".to_owned()
        } else {
            format!("worker process {previous}")
        };
        let what = details.state.status.clone();
        let origin = Origin::Adopted {
            id: id.to_owned(),
            generation,
            previous: previous.to_owned(),
            seen,
        };
        let runner = Arc::clone(self);
        let (t, e, k) = (task_id.clone(), execution_id.clone(), key.to_owned());
        let work = move |cancel: &CancelToken| {
            // Its environment is masked in its own lines, as a task's env_vars are.
            let _scope = logging::TaskScope::with_secrets(&t, Arc::new(EnvSecrets(secrets)));
            log::info!(
                "adopted task {} from {from} (container {short}, {what})",
                crate::untrusted::Escaped(&t)
            );
            runner.as_active(&t, cancel, || {
                runner.run_machine(origin, &k, &t, &e, cancel)
            })
        };
        Ok(AdoptedTask {
            task_id,
            execution_id,
            deadline,
            running_for,
            image: details.config.image.clone(),
            work: Box::new(work),
        })
    }

    /// The task that reports execution `key` interrupted: its holder
    /// `previous` is gone and made no container.
    pub fn abandoned(
        self: &Arc<Self>,
        key: &str,
        ids: (&str, &str),
        generation: u64,
        previous: &str,
        seen: Option<String>,
    ) -> AdoptedTask {
        let origin = Origin::Abandoned {
            generation,
            previous: previous.to_owned(),
            seen,
        };
        let runner = Arc::clone(self);
        let (t, e, k) = (ids.0.to_owned(), ids.1.to_owned(), key.to_owned());
        let from = previous.to_owned();
        let work = move |cancel: &CancelToken| {
            log::info!(
                "task {} was claimed by worker process {from}, which is gone and never made its container",
                crate::untrusted::Escaped(&t)
            );
            runner.as_active(&t, cancel, || {
                runner.run_machine(origin, &k, &t, &e, cancel)
            })
        };
        AdoptedTask {
            task_id: ids.0.to_owned(),
            execution_id: ids.1.to_owned(),
            deadline: None,
            running_for: Duration::ZERO,
            image: String::new(),
            work: Box::new(work),
        }
    }

    /// Drives a machine of `origin` for an adopted task to its outcome.
    fn run_machine(
        &self,
        origin: Origin,
        key: &str,
        task_id: &str,
        execution_id: &str,
        cancel: &CancelToken,
    ) -> TaskOutcome {
        let ids = TaskIds {
            key,
            task_id,
            execution_id,
        };
        self.executor
            .ownership()
            .note_exec_ids(key, (task_id, execution_id));
        self.busy(key, true);
        let mut machine = TaskMachine::new(origin, key);
        let step = self
            .executor
            .drive(&mut machine, &ids, &mut NoWork, cancel, &|f| {
                self.holding(task_id, f)
            });
        self.finish(step, &ids, None, Vec::new(), cancel)
    }

    /// The deadline a label names, as a local time; `None` (logged) when
    /// it is not a number or absurdly far away.
    fn deadline_of(&self, id: &str, label: &str) -> Option<SystemTime> {
        let at: u64 = match label.parse() {
            Ok(at) => at,
            Err(_) => {
                log::warn!(
                    "container {id} has an unreadable deadline label; adopting it without one"
                );
                return None;
            }
        };
        let left = self.clock.until(at);
        if left > LONGEST_DEADLINE {
            log::warn!("container {id} has a deadline label years away; adopting it without one");
            return None;
        }
        SystemTime::now().checked_add(left)
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
