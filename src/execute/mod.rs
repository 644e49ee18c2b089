//! The Docker task runner: one task assignment, run to its end in a real
//! container (`shared/spec/TASK.md` end to end).
//!
//! Owns [`DockerRunner`] (the flow: spec → image → sidecar volumes → create
//! → musl probe → start → wait → exit status → logs) and the mapping of each
//! step's failure to its `failure_reason`. Image pulls live in [`image`],
//! sidecar volumes in [`sidecar`] (a `read_write` sidecar's private volume in
//! [`sidecar::task_copy`]), host log limits in [`logconf`], what happens to an ended task's container
//! in [`cleanup`], containers started by an earlier worker process in
//! `follow` (with [`ownership`], [`claims`] and [`lease`] for who may take
//! them over), leftovers in [`reaper`], pure names in [`names`]. Cancel hooks
//! registered here only abort in-flight I/O; stopping happens on the task's
//! own thread. A detach (the worker stops, the task goes on) leaves a started
//! container running and labelled for the next process to adopt.

pub mod claims;
pub mod cleanup;
mod follow;
pub mod image;
pub mod lease;
pub mod logconf;
pub mod names;
pub mod ownership;
pub mod progress;
pub mod reaper;
pub mod sidecar;

use std::collections::HashSet;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use crate::config::{Config, ContainerLogs};
use crate::container_spec::{self, Limits, SpecInputs};
use crate::docker::auth::CredentialEnv;
use crate::docker::{AbortSlot, Docker, DockerError};
use crate::logging;
use crate::outside::Shown;
use crate::task::{CancelCause, CancelToken, TaskOutcome, TaskRunner};
use crate::telemetry::{self, AttrValue};
use crate::wire::{FailureReason, TaskAssignment};

pub use image::{ImageError, ImageSettings, PULL_STALL_TIMEOUT, PreparedImage};
use sidecar::task_copy::{TaskRef, TaskVolumes};
pub use sidecar::{SidecarError, SidecarVolumes};

use cleanup::{Cleanups, Leftover};
use lease::DaemonClock;

/// Lines of container output logged when a task ends.
const LOG_TAIL_LINES: u32 = 100;
/// Bytes of container output logged at most.
const LOG_TAIL_BYTES: usize = 64 * 1024;
/// What every logged line of container output starts with.
pub const CONTAINER_LINE: &str = "[container] ";

/// What the runner needs from the configuration.
#[derive(Debug, Clone)]
pub struct RunnerSettings {
    /// Inputs of the container spec.
    pub spec: SpecInputs,
    /// Pull policy, mirrors, credentials and the daemon platform.
    pub images: ImageSettings,
    /// Remove task containers when they end (cancelled ones are always removed).
    pub cleanup: bool,
    /// SIGTERM → SIGKILL grace when stopping a cancelled task.
    pub stop_grace: Duration,
    /// Replaces the limits from `instance_shape` for every task. Not a config
    /// option: `memory_gb` only speaks whole GiB, tests need megabytes.
    pub limits_override: Option<Limits>,
    /// This worker process's instance id, labelled on what it creates.
    pub instance: String,
    /// Keep an ended task's container until the orchestrator has read its
    /// terminal message ([`TaskRunner::delivered`]), so a crash in between
    /// loses nothing; false removes it at once (a runner driven without a
    /// dispatcher, as in tests).
    pub remove_after_delivery: bool,
    /// Bounds on container logs on the host.
    pub container_logs: ContainerLogs,
}

impl RunnerSettings {
    /// Settings from a validated configuration; `platform` is the daemon's
    /// `os/arch`, `instance` this process's instance id.
    pub fn from_config(cfg: &Config, platform: String, instance: String) -> Self {
        Self {
            spec: SpecInputs::from_config(cfg),
            images: ImageSettings {
                platform,
                policy: cfg.docker.image_pull_policy,
                mirrors: cfg.docker.registry_mirrors.clone(),
                credentials: CredentialEnv::from_process(),
                pull_stall_timeout: image::PULL_STALL_TIMEOUT,
            },
            cleanup: cfg.cleanup,
            stop_grace: cfg.docker.stop_grace,
            limits_override: None,
            instance,
            remove_after_delivery: true,
            container_logs: cfg.docker.container_logs,
        }
    }
}

/// Runs tasks in Docker containers. Share one per worker (its sidecar volume
/// record and active-task set are process-wide).
pub struct DockerRunner {
    docker: Docker,
    settings: RunnerSettings,
    volumes: Arc<SidecarVolumes>,
    active: Arc<Mutex<HashSet<String>>>,
    clock: Arc<DaemonClock>,
    cleanups: Arc<Cleanups>,
    logs: logconf::HostLogs,
}

impl DockerRunner {
    /// A runner on `docker` with `settings`.
    pub fn new(docker: Docker, settings: RunnerSettings) -> Self {
        let worker_id = settings.spec.worker_id.clone();
        let volumes =
            SidecarVolumes::new(docker.clone(), worker_id.clone(), settings.instance.clone());
        let cleanups = Arc::new(Cleanups::new(
            docker.clone(),
            worker_id,
            settings.instance.clone(),
            settings.remove_after_delivery,
        ));
        let logs = logconf::HostLogs::new(settings.container_logs);
        Self {
            docker,
            settings,
            volumes,
            active: Arc::default(),
            clock: DaemonClock::new(),
            cleanups,
            logs,
        }
    }

    /// The sidecar volumes (fill count, observer; the reaper asks which are busy).
    pub fn volumes(&self) -> &Arc<SidecarVolumes> {
        &self.volumes
    }

    /// The daemon's clock as this runner knows it (the lease keeps it in sync).
    pub fn clock(&self) -> &Arc<DaemonClock> {
        &self.clock
    }

    /// This runner's settings.
    pub fn settings(&self) -> &RunnerSettings {
        &self.settings
    }

    /// Whether `task_id` is running in this runner now, or its container
    /// waits for its terminal message to be read.
    pub fn is_active(&self, task_id: &str) -> bool {
        lock(&self.active).contains(task_id) || self.cleanups.is_waiting(task_id)
    }

    /// Starts a thread that, every `interval` (sooner when another
    /// process's lease is about to run out), reaps leftovers and hands the
    /// tasks of gone worker processes to `adopt`, sparing containers younger
    /// than `grace`. Stops when the handle is dropped.
    pub fn spawn_reaper(
        self: &Arc<Self>,
        adopt: reaper::AdoptSink,
        interval: Duration,
        grace: Duration,
    ) -> reaper::ReaperHandle {
        reaper::spawn_periodic(Arc::clone(self), adopt, interval, grace)
    }

    fn execute(&self, task: &TaskAssignment, cancel: &CancelToken) -> TaskOutcome {
        let spec = match container_spec::build(task, &self.settings.spec) {
            Ok(spec) => spec,
            Err(e) => return TaskOutcome::failed(e.failure_reason(), e.to_string()),
        };
        // This very execution has a container already: an earlier worker
        // process started it and the orchestrator sent the task again.
        // Watch that one; a task never runs twice.
        match self.existing(task) {
            Ok(Some(found)) => return self.follow(&task.task_id, found, cancel),
            Ok(None) => {}
            Err(e) => log::warn!("could not look for an earlier container of this task: {e}"),
        }
        if let Some(env) = container_spec::environment_without_image(task) {
            log::warn!(
                "task names environment {} but no image came with it; using {}",
                Shown(env),
                Shown(&spec.image)
            );
        }
        // The dispatcher masks env_vars; the operator's values are secrets too.
        let _secrets: Vec<_> = self
            .settings
            .spec
            .operator_env
            .values()
            .map(|v| logging::register_secret(v))
            .collect();

        let image = match image::ensure(&self.docker, &self.settings.images, &spec.image, cancel) {
            Ok(image) => image,
            Err(e) => return TaskOutcome::failed(FailureReason::ImagePull, e.to_string()),
        };
        let mut sidecar_volumes = Vec::with_capacity(spec.sidecars.len());
        let mut sidecar_images = Vec::with_capacity(spec.sidecars.len());
        // A read_write sidecar's own volumes; the task container takes them over.
        let mut task_volumes = TaskVolumes::new(Arc::clone(&self.volumes));
        for sidecar in &spec.sidecars {
            if cancel.is_cancelled() {
                return TaskOutcome::failed(FailureReason::SidecarPrep, "cancelled");
            }
            // Ends when this iteration does; marked ok only at its end.
            let mut span = Phase(telemetry::phase(
                "oz_worker.sidecar_prep",
                vec![
                    ("sidecar.image", AttrValue::Str(sidecar.image.clone())),
                    (
                        "sidecar.mount_path",
                        AttrValue::Str(sidecar.mount_path.clone()),
                    ),
                ],
            ));
            let prepared =
                match image::ensure(&self.docker, &self.settings.images, &sidecar.image, cancel) {
                    Ok(p) => p,
                    Err(e) => {
                        let detail = format!("sidecar {}: {e}", sidecar.mount_path);
                        return span.fail(TaskOutcome::failed(FailureReason::SidecarPrep, detail));
                    }
                };
            let shared = self.volumes.ensure(
                &sidecar.image,
                &prepared.reference,
                &prepared.info.repo_digests,
                &prepared.info.id,
                cancel,
            );
            let volume = match shared {
                Ok(shared) if !sidecar.read_only => {
                    // A shared volume is never mounted writable: this task gets its own.
                    let owner = TaskRef {
                        task_id: &task.task_id,
                        execution_id: &task.execution_id,
                    };
                    let reference = &prepared.reference;
                    (self.volumes).task_copy(&shared, reference, owner, &mut task_volumes, cancel)
                }
                other => other,
            };
            match volume {
                Ok(v) => sidecar_volumes.push(v),
                Err(e) => {
                    return span.fail(TaskOutcome::failed(
                        FailureReason::SidecarPrep,
                        e.to_string(),
                    ));
                }
            }
            sidecar_images.push(prepared);
            span.ok();
        }
        if cancel.is_cancelled() {
            return TaskOutcome::failed(FailureReason::ContainerCreate, "cancelled");
        }

        let mut spec = spec;
        if let Some(limits) = self.settings.limits_override {
            spec.limits = limits;
        }
        let mut body = container_spec::create_body(&spec, &image.reference, &sidecar_volumes);
        let deadline = cancel.deadline().map(|t| self.clock.to_daemon(t));
        let keep = !self.settings.cleanup;
        for (key, value) in names::lifecycle_labels(&self.settings.instance, deadline, keep) {
            body["Labels"][key] = value.into();
        }
        let name = names::container_name(&task.task_id, &task.execution_id, names::nonce());
        let id = match self.logs.create(&self.docker, &name, &mut body) {
            Ok(id) => id,
            Err(e) => {
                let detail = format!("failed to create container: {e}");
                return TaskOutcome::failed(FailureReason::ContainerCreate, detail);
            }
        };
        let mut container = self.container(&task.task_id, id, keep);
        container.volumes = task_volumes.hand_over();
        log::debug!("created container {name} ({})", container.id);

        // The musl probe runs on the real task container (created, not
        // started) after the sidecars because its body names their volumes,
        // and a bind to a missing volume would make Docker create it empty.
        let loader = names::musl_loader(&self.settings.images.platform);
        match self.docker.head_archive(&container.id, loader) {
            Ok(true) => {
                container.keep = false;
                let detail = format!(
                    "image {} uses musl libc (for example Alpine Linux); the Warp agent needs a glibc-based image such as Debian or Ubuntu",
                    Shown(&spec.image)
                );
                return TaskOutcome::failed(FailureReason::ImagePull, detail);
            }
            Ok(false) => {}
            Err(e) => log::warn!(
                "could not check image {} for musl libc: {e}",
                Shown(&spec.image)
            ),
        }
        let mut span = Phase(telemetry::phase(
            "oz_worker.container_run",
            vec![("container.id", AttrValue::Str(container.id.clone()))],
        ));
        let outcome = match self.run_container(&mut container, cancel) {
            TaskOutcome::Completed => {
                span.ok();
                TaskOutcome::Completed
            }
            other => span.fail(other),
        };
        if let TaskOutcome::Failed {
            reason: FailureReason::ContainerStart,
            ..
        } = &outcome
        {
            // A volume replaced or emptied behind the worker's back shows here:
            // the next task checks them again rather than trusting the record.
            self.volumes.forget(&sidecar_volumes);
        }
        outcome
    }

    /// The guard of a task container of `task_id` this process owns.
    fn container<'a>(&'a self, task_id: &str, id: String, keep: bool) -> TaskContainer<'a> {
        TaskContainer {
            cleanups: &self.cleanups,
            task_id: task_id.to_owned(),
            id,
            keep,
            generation: 0,
            has_claims: false,
            detached: false,
            volumes: Vec::new(),
        }
    }

    /// Start, then watch to the end.
    fn run_container(
        &self,
        container: &mut TaskContainer<'_>,
        cancel: &CancelToken,
    ) -> TaskOutcome {
        if cancel.is_cancelled() {
            return TaskOutcome::failed(FailureReason::ContainerStart, "cancelled");
        }
        if let Err(e) = self.docker.start(&container.id) {
            let detail = format!("failed to start container: {e}");
            return TaskOutcome::failed(FailureReason::ContainerStart, detail);
        }
        log::info!("started container {}", container.id);
        self.watch(container, cancel)
    }

    /// Waits for a started container to stop, reads its exit status; on a
    /// cancel stops it, on a detach leaves it running.
    fn watch(&self, container: &mut TaskContainer<'_>, cancel: &CancelToken) -> TaskOutcome {
        let slot = AbortSlot::new();
        let hook_slot = slot.clone();
        let hook = cancel.on_cancel(move |_| hook_slot.abort());
        let waited = self.docker.wait(&container.id, &slot);
        drop(hook);
        let status = match waited {
            Ok(result) => {
                if let Some(error) = result.error {
                    log::warn!("waiting for container {}: {error}", container.id);
                }
                result.status_code
            }
            Err(_) if cancel.cause() == Some(CancelCause::Detach) => {
                log::info!(
                    "leaving container {} running for the next worker process",
                    container.id
                );
                container.detached = true;
                return TaskOutcome::Detached;
            }
            Err(_) if cancel.is_cancelled() => {
                self.stop(container, cancel);
                return TaskOutcome::failed(FailureReason::ContainerWait, "cancelled");
            }
            Err(e) => match self.docker.inspect(&container.id) {
                Ok(state) if !state.running && state.status != "created" => state.exit_code,
                _ => {
                    let detail = format!("error waiting for container: {e}");
                    return TaskOutcome::failed(FailureReason::ContainerWait, detail);
                }
            },
        };
        if status != 0 && cancel.is_cancelled() {
            // Ended by our cancel (e.g. SIGTERM during shutdown): no copy to keep.
            container.keep = false;
        }
        self.exit_outcome(&container.id, status)
    }

    /// The outcome of a container that exited with `status`, its output
    /// logged (at debug on success) and `OOMKilled` read for a failure.
    fn exit_outcome(&self, id: &str, status: i64) -> TaskOutcome {
        self.log_tail(id, status);
        if status == 0 {
            log::info!("container {id} exited 0");
            return TaskOutcome::Completed;
        }
        let oom = match self.docker.inspect(id) {
            Ok(state) => state.oom_killed,
            Err(e) => {
                log::warn!("inspecting container {id}: {e}");
                false
            }
        };
        exited(status, oom)
    }

    /// SIGTERM, the grace (cut to what the canceller's stop deadline
    /// leaves), SIGKILL; the container is then removed whatever `cleanup` says.
    fn stop(&self, container: &mut TaskContainer<'_>, cancel: &CancelToken) {
        let grace = match cancel.stop_by() {
            Some(by) => self
                .settings
                .stop_grace
                .min(by.saturating_duration_since(Instant::now())),
            None => self.settings.stop_grace,
        };
        log::info!(
            "stopping container {} ({}s before SIGKILL)",
            container.id,
            grace.as_secs()
        );
        match self.docker.stop(&container.id, grace) {
            Ok(()) | Err(DockerError::Api { status: 404, .. }) => {}
            Err(e) => log::warn!("stopping container {}: {e}", container.id),
        }
        container.keep = false;
    }

    fn log_tail(&self, id: &str, status: i64) {
        let level = if status == 0 {
            log::Level::Debug
        } else {
            log::Level::Info
        };
        if !log::log_enabled!(level) {
            return;
        }
        match self.docker.logs_tail(id, LOG_TAIL_LINES, LOG_TAIL_BYTES) {
            Ok(out) if !out.is_empty() => {
                // One record per line, each marked as the container's (the
                // logger escapes what a line holds), so no output line can
                // pass for one the worker wrote.
                log::log!(
                    level,
                    "container output (last {} lines):",
                    out.lines().count()
                );
                for line in out.lines() {
                    log::log!(level, "{CONTAINER_LINE}{line}");
                }
            }
            Ok(_) => {}
            Err(e) => log::warn!("reading the output of container {id}: {e}"),
        }
    }

    /// Runs `work` as task `task_id` of this runner: marked active while it
    /// runs, its outcome settled against why it was cancelled.
    fn as_active(
        &self,
        task_id: &str,
        cancel: &CancelToken,
        work: impl FnOnce() -> TaskOutcome,
    ) -> TaskOutcome {
        lock(&self.active).insert(task_id.to_owned());
        let outcome = work();
        lock(&self.active).remove(task_id);
        self.cleanups.forget_delivery(task_id);
        settle(outcome, cancel.cause())
    }
}

/// The outcome of a non-zero exit.
fn exited(status: i64, oom: bool) -> TaskOutcome {
    let reason = if oom {
        FailureReason::ContainerOom
    } else {
        FailureReason::ContainerExit
    };
    TaskOutcome::Failed {
        reason,
        detail: format!("container exited with non-zero status: {status}"),
        exit_code: status,
    }
}

/// What a task reports, given how it ended and why it was cancelled (if
/// it was): a cancelled task reports its cancel, a detach that found no
/// started container to leave behind ends it as a shutdown does.
fn settle(outcome: TaskOutcome, cause: Option<CancelCause>) -> TaskOutcome {
    match (outcome, cause) {
        (o @ (TaskOutcome::Completed | TaskOutcome::Detached), _) => o,
        (_, Some(CancelCause::Detach)) => TaskOutcome::Cancelled(CancelCause::Shutdown),
        (_, Some(cause)) => TaskOutcome::Cancelled(cause),
        (o, None) => o,
    }
}

impl TaskRunner for DockerRunner {
    fn run(&self, task: &TaskAssignment, cancel: &CancelToken) -> TaskOutcome {
        self.as_active(&task.task_id, cancel, || self.execute(task, cancel))
    }

    fn delivered(&self, task_id: &str) {
        let running = lock(&self.active).contains(task_id);
        self.cleanups.delivered(task_id, running);
    }

    fn settle(&self, until: Instant) {
        self.cleanups.settle(until);
    }
}

/// A step's child span (when traces are on), failed with the outcome's words.
struct Phase(Option<telemetry::ChildSpan>);

impl Phase {
    fn ok(&mut self) {
        if let Some(s) = &mut self.0 {
            s.ok();
        }
    }

    fn fail(&mut self, outcome: TaskOutcome) -> TaskOutcome {
        if let (
            Some(s),
            TaskOutcome::Failed {
                reason, exit_code, ..
            },
        ) = (&mut self.0, &outcome)
        {
            s.error(reason.as_str());
            if *exit_code != 0 {
                s.attribute("container.exit_code", AttrValue::Int(*exit_code));
            }
        }
        outcome
    }
}

/// A task container of this process; when dropped it goes to [`Cleanups`]
/// (removed once its task's terminal message is read, or kept when
/// `keep`), unless it was detached to run on under the next process.
struct TaskContainer<'a> {
    cleanups: &'a Cleanups,
    task_id: String,
    id: String,
    keep: bool,
    /// The generation this process owns it at (0: it created it).
    generation: u64,
    /// Claim volumes exist for it.
    has_claims: bool,
    detached: bool,
    /// Its private sidecar volumes, removed after it.
    volumes: Vec<String>,
}

impl Drop for TaskContainer<'_> {
    fn drop(&mut self) {
        if self.detached {
            return;
        }
        self.cleanups.hold(
            &self.task_id,
            Leftover {
                id: std::mem::take(&mut self.id),
                keep: self.keep,
                generation: self.generation,
                has_claims: self.has_claims,
                volumes: std::mem::take(&mut self.volumes),
            },
        );
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn outcomes_settle_against_the_cancel_cause() {
        let failed = || TaskOutcome::failed(FailureReason::ContainerWait, "cancelled");
        assert_eq!(
            settle(TaskOutcome::Completed, Some(CancelCause::User)),
            TaskOutcome::Completed
        );
        assert_eq!(
            settle(TaskOutcome::Detached, Some(CancelCause::Detach)),
            TaskOutcome::Detached
        );
        assert_eq!(
            settle(failed(), Some(CancelCause::Detach)),
            TaskOutcome::Cancelled(CancelCause::Shutdown)
        );
        assert_eq!(
            settle(failed(), Some(CancelCause::Timeout)),
            TaskOutcome::Cancelled(CancelCause::Timeout)
        );
        assert_eq!(settle(failed(), None), failed());
        assert_eq!(
            exited(137, true),
            TaskOutcome::Failed {
                reason: FailureReason::ContainerOom,
                detail: "container exited with non-zero status: 137".into(),
                exit_code: 137
            }
        );
    }
}
